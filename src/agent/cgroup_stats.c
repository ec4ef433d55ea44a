/* cgroup_stats.c - a task cgroup's usage figures (cgroup.h): CPU time and
 * processes, read from the files each cgroup version has. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cgroup.h"

/* The first number of a file, or the number after `key ` in it. */
static int read_number(const char *dir, const char *file, const char *key, uint64_t *out)
{
	if (!dir)
		return -ENOENT;
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[256];
	int r = -ENODATA;
	size_t kl = key ? strlen(key) : 0;
	while (fgets(line, sizeof line, f)) {
		const char *p = line;
		if (key) {
			if (strncmp(line, key, kl) || line[kl] != ' ')
				continue;
			p = line + kl + 1;
		}
		char *end;
		unsigned long long v = strtoull(p, &end, 10);
		if (end != p) {
			*out = v;
			r = 0;
		}
		break;
	}
	fclose(f);
	return r;
}

int cgroup_cpu_usage_ns(struct cgroup *cg, uint64_t *ns)
{
	*ns = 0;
	if (cgroup_version(cg) == CGROUP_V2) {
		uint64_t us = 0;
		int r = read_number(cgroup_dir(cg, "cpu"), "cpu.stat", "usage_usec", &us);
		*ns = us * 1000;
		return r;
	}
	return read_number(cgroup_dir(cg, "cpuacct"), "cpuacct.usage", NULL, ns);
}

int cgroup_pids_current(struct cgroup *cg, uint64_t *n)
{
	*n = 0;
	return read_number(cgroup_dir(cg, "pids"), "pids.current", NULL, n);
}
