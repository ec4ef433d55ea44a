/* orphans.h - what a crashed or killed berth left behind on a node.
 *
 * A task's cgroup is removed by its supervisor when the task ends. A
 * supervisor that was killed (kill -9, the OOM killer, a reboot of the
 * agent's cgroup) cannot: its cgroup stays, possibly with processes of the
 * task in it. When an agent starts it sweeps them: every cgroup under the
 * tasks' parent whose task has no live supervisor on this host (any agent's:
 * several agents may share one parent) has its processes killed and is
 * removed.
 */
#ifndef BERTH_ORPHANS_H
#define BERTH_ORPHANS_H

#include <stddef.h>

/* Sweep <cgroup root>/<parent>. Returns how many cgroups were removed. */
size_t orphans_sweep_cgroups(const char *parent);

#endif
