/* orphans.c - sweep task cgroups whose supervisor is gone (orphans.h). */
#include "agent/orphans.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cgroup.h"
#include "agent/supervisor.h"
#include "core/hmap.h"
#include "core/log.h"

/* The task ids (sandbox basenames) of every live `berth supervise`. */
static void live_supervised_tasks(struct hmap *ids)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		char path[300], *text;
		size_t len;
		snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
		if (file_read_all(path, &text, &len) < 0)
			continue;
		const char *sb = supervisor_cmdline_sandbox(text, len);
		const char *slash = sb ? strrchr(sb, '/') : NULL;
		const char *id = slash ? slash + 1 : sb;
		if (id && *id && !hmap_get(ids, id))
			hmap_put(ids, id, (void *)1);
		free(text);
	}
	closedir(d);
}

size_t orphans_sweep_cgroups(const char *parent)
{
	enum cgroup_version v = cgroup_detect();
	char **names = NULL;
	size_t n = 0, removed = 0;
	if (v == CGROUP_NONE || cgroup_list(v, NULL, parent, &names, &n) < 0 || !n)
		return 0;
	/* After the listing: a cgroup listed was made by a supervisor that was
	 * alive before, so a live one shows here. */
	struct hmap live;
	hmap_init(&live);
	live_supervised_tasks(&live);
	for (size_t i = 0; i < n; i++) {
		struct cgroup *cg = NULL;
		if (hmap_get(&live, names[i]) || cgroup_open(v, NULL, parent, names[i], &cg) < 0) {
			free(names[i]);
			continue;
		}
		int r = cgroup_kill(cg);
		if (r == 0)
			r = cgroup_remove(cg);
		if (r == 0) {
			removed++;
			log_info("removed the cgroup of task %s: its supervisor is gone", names[i]);
		} else {
			log_warn("cannot remove the orphan cgroup of task %s: %s", names[i],
				 strerror(-r));
		}
		cgroup_free(cg);
		free(names[i]);
	}
	free(names);
	hmap_release(&live);
	return removed;
}
