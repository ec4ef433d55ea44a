/* mem_trim.c - see mem_trim.h. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mimalloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/mem_trim.h"

/* mimalloc's API, weak: the binary is linked with it (Makefile MALLOC_LIB),
 * sanitizer builds are not and mi_collect stays NULL. */
#pragma weak mi_collect

struct mem_trim_scanner {
	void (*drop)(unsigned long start, unsigned long len, void *arg);
	void *arg;
	unsigned long start, end;
	bool candidate, locked;
	long anon_kib;
};

static void flush(struct mem_trim_scanner *m)
{
	if (m->candidate && m->anon_kib == 0 && !m->locked && m->end > m->start)
		m->drop(m->start, m->end - m->start, m->arg);
	m->candidate = false;
}

/* One line of smaps: a mapping's header or one of its fields. */
static void scan_line(struct mem_trim_scanner *m, const char *line)
{
	unsigned long start, end;
	char perms[8];
	int used = 0;
	/* "start-end perms offset dev inode [path]" */
	if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, perms, &used) == 3 &&
	    used > 0) {
		flush(m);
		m->start = start;
		m->end = end;
		m->anon_kib = 0;
		m->locked = false;
		/* A file's pages, never writable, private: what it maps is the
		 * page cache's, unless a write copied a page (Anonymous > 0). */
		m->candidate = line[used] == '/' && strlen(perms) == 4 && perms[0] == 'r' &&
			       perms[1] != 'w' && perms[3] == 'p';
		return;
	}
	long kib;
	if (sscanf(line, "Anonymous: %ld kB", &kib) == 1)
		m->anon_kib = kib;
	else if (!strncmp(line, "VmFlags:", 8) && strstr(line + 8, " lo"))
		m->locked = true;
}

void mem_trim_scan(const char *text,
		   void (*drop)(unsigned long start, unsigned long len, void *arg), void *arg)
{
	struct mem_trim_scanner m = {.drop = drop, .arg = arg};
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char buf[512];
		if (n >= sizeof buf)
			n = sizeof buf - 1;
		memcpy(buf, line, n);
		buf[n] = 0;
		line = nl ? nl + 1 : NULL;
		scan_line(&m, buf);
	}
	flush(&m);
}

static void drop_range(unsigned long start, unsigned long len, void *arg)
{
	int *dropped = arg;
	if (madvise((void *)start, len, MADV_DONTNEED) == 0)
		(*dropped)++;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	long size = 0, resident = -1;
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &resident) != 2)
			resident = -1;
		fclose(f);
	}
	return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int mem_trim(struct mem_trim_result *result)
{
	struct mem_trim_result r = {.rss_before_kib = rss_kib()};
	if (mi_collect)
		mi_collect(true);
	/* Read line by line: a whole copy of smaps (100-300 KiB) would grow the
	 * very heap this trims. */
	FILE *f = fopen("/proc/self/smaps", "re");
	if (f) {
		struct mem_trim_scanner m = {.drop = drop_range, .arg = &r.mappings_dropped};
		char line[512];
		while (fgets(line, sizeof line, f)) {
			size_t n = strlen(line);
			if (n && line[n - 1] == '\n')
				line[n - 1] = 0;
			else if (n == sizeof line - 1) {
				/* a longer line (a long path): skip its rest */
				int c;
				while ((c = fgetc(f)) != EOF && c != '\n')
					;
			}
			scan_line(&m, line);
		}
		flush(&m);
		fclose(f);
	}
	r.rss_after_kib = rss_kib();
	if (result)
		*result = r;
	return f ? 0 : -1;
}
