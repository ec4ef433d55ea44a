/* test_mem_trim.c - which mappings the idle trim drops, and that nothing
 * the process wrote is lost by it. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/mem_trim.h"
#include "unit.h"

struct dropped {
	unsigned long start[8], len[8];
	int n;
};

static void record(unsigned long start, unsigned long len, void *arg)
{
	struct dropped *d = arg;
	if (d->n < 8) {
		d->start[d->n] = start;
		d->len[d->n] = len;
	}
	d->n++;
}

TEST(only_clean_read_only_file_mappings_are_dropped)
{
	const char *smaps =
	    /* the binary's text: dropped */
	    "55e9c0400000-55e9c0600000 r-xp 00020000 fe:00 12 /usr/bin/berth\n"
	    "Size:               2048 kB\n"
	    "Rss:                 628 kB\n"
	    "Anonymous:             0 kB\n"
	    "VmFlags: rd ex mr mw me sd\n"
	    /* relro: read-only now, but relocated (copied) pages: kept */
	    "55e9c0600000-55e9c0608000 r--p 00220000 fe:00 12 /usr/bin/berth\n"
	    "Rss:                  32 kB\n"
	    "Anonymous:            32 kB\n"
	    "VmFlags: rd mr mw me ac sd\n"
	    /* .data: writable: kept */
	    "55e9c0608000-55e9c060a000 rw-p 00228000 fe:00 12 /usr/bin/berth\n"
	    "Anonymous:             0 kB\n"
	    /* heap, stack, vdso: not files: kept */
	    "2a4b2000000-2a4b4200000 rw-p 00000000 00:00 0\n"
	    "Anonymous:          1308 kB\n"
	    "7ffd21640000-7ffd21661000 rw-p 00000000 00:00 0                          [stack]\n"
	    "7ffd2166e000-7ffd21670000 r-xp 00000000 00:00 0                          [vdso]\n"
	    "Anonymous:             0 kB\n"
	    /* a shared mapping of a file: kept */
	    "7f0000000000-7f0000001000 r--s 00000000 fe:00 99 /dev/shm/x\n"
	    "Anonymous:             0 kB\n"
	    /* locked: kept */
	    "7f0000010000-7f0000011000 r--p 00000000 fe:00 98 /usr/lib/locked.so\n"
	    "Anonymous:             0 kB\n"
	    "VmFlags: rd mr mw me lo sd\n"
	    /* a library's rodata, last in the file, no newline: dropped */
	    "7f44a5220000-7f44a5282000 r--p 00000000 fe:00 77 /usr/lib/libcrypto.so.3\n"
	    "Anonymous:             0 kB";
	struct dropped d = {0};
	mem_trim_scan(smaps, record, &d);
	CHECK(d.n == 2);
	CHECK(d.start[0] == 0x55e9c0400000UL && d.len[0] == 0x200000UL);
	CHECK(d.start[1] == 0x7f44a5220000UL && d.len[1] == 0x62000UL);
	d.n = 0;
	mem_trim_scan("", record, &d);
	mem_trim_scan("garbage\nno mapping here\nAnonymous: 0 kB\n", record, &d);
	CHECK(d.n == 0);
}

/* Resident KiB of the mapping that starts at p (from /proc/self/smaps). */
static long mapping_rss(void *p)
{
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");
	long rss = -1;
	bool in = false;
	while (f && fgets(line, sizeof line, f)) {
		unsigned long start, end;
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			in = start == (unsigned long)p;
		else if (in && sscanf(line, "Rss: %ld kB", &rss) == 1)
			break;
	}
	if (f)
		fclose(f);
	return rss;
}

TEST(a_trim_drops_clean_file_pages_and_keeps_everything_written)
{
	char path[] = "/tmp/berth-mem-trim-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	size_t len = 64 * 4096;
	char *content = malloc(len);
	for (size_t i = 0; i < len; i++)
		content[i] = (char)('a' + i % 26);
	CHECK(write(fd, content, len) == (ssize_t)len);
	/* read-only, never written: its pages are dropped */
	char *ro = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	/* written, then made read-only (what relocations look like): kept */
	char *relro = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	/* written and writable: kept */
	char *rw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	unlink(path);
	CHECK(ro != MAP_FAILED && relro != MAP_FAILED && rw != MAP_FAILED);
	long sum = 0;
	for (size_t i = 0; i < len; i += 4096)
		sum += ro[i];
	relro[0] = 'X';
	relro[len - 1] = 'Y';
	CHECK(mprotect(relro, len, PROT_READ) == 0);
	rw[100] = 'Z';
	char *heap = malloc(1 << 20);
	memset(heap, 'h', 1 << 20);
	CHECK(mapping_rss(ro) == (long)(len / 1024));

	struct mem_trim_result r;
	CHECK(mem_trim(&r) == 0);
	CHECK(r.mappings_dropped >= 1);
	CHECK(r.rss_after_kib > 0 && r.rss_after_kib <= r.rss_before_kib);
	CHECK(mapping_rss(ro) == 0);
	/* the file's content comes back on use */
	long sum2 = 0;
	for (size_t i = 0; i < len; i += 4096)
		sum2 += ro[i];
	CHECK(sum2 == sum && sum > 0);
	CHECK(memcmp(ro, content, len) == 0);
	/* what was written is intact */
	CHECK(relro[0] == 'X' && relro[len - 1] == 'Y');
	CHECK(memcmp(relro + 1, content + 1, len - 2) == 0);
	CHECK(rw[100] == 'Z');
	for (size_t i = 0; i < (1 << 20); i += 4096)
		CHECK(heap[i] == 'h');
	free(heap);
	free(content);
	munmap(ro, len);
	munmap(relro, len);
	munmap(rw, len);
}

UNIT_MAIN(only_clean_read_only_file_mappings_are_dropped,
	  a_trim_drops_clean_file_pages_and_keeps_everything_written)
