/* task_net.h - one task's network: a network namespace of its own, kept as
 * a bind mount at a path (so that it outlives the agent and the processes
 * in it until the task ends), and a veth pair: the host end a port of the
 * node's bridge, the other end `eth0` inside, with the task's address and
 * the default route via the bridge.
 *
 *   host netns                          task netns (PATH)
 *   berth0 (SUBNET.1) -- bvXXXXXXXX <==> eth0 (SUBNET.n), lo
 *
 * Must run on a thread that may switch network namespaces (the calls
 * switch the calling thread only, and back before they return). */
#ifndef BERTH_NET_TASK_NET_H
#define BERTH_NET_TASK_NET_H

#include <net/if.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util.h"

/* The host end's name for a task: "bv" and a hash of its id. */
void task_net_host_ifname(const char *task_id, char buf[IFNAMSIZ]);

/* Create the namespace at netns_path and the veth pair, configure eth0 with
 * ip/prefix and the route via gw. Whatever was made is removed on failure. */
int task_net_create(const char *netns_path, const char *host_if, const char *bridge, uint32_t ip,
		    int prefix, uint32_t gw, struct berr *err);

/* The same for a namespace made by someone else (a docker container's,
 * which Docker makes when it starts the container with NetworkMode none):
 * bind the namespace of process `pid` at netns_path, then the veth pair
 * and eth0 as task_net_create does. Done already (the same namespace bound
 * there and host_if present: a supervisor adopting its container) is no
 * error and changes nothing. Whatever was made is removed on failure. */
int task_net_attach(const char *netns_path, pid_t pid, const char *host_if, const char *bridge,
		    uint32_t ip, int prefix, uint32_t gw, struct berr *err);

/* Remove the veth pair and the namespace's mount and file. Missing pieces
 * are no error. */
int task_net_destroy(const char *netns_path, const char *host_if, struct berr *err);

#endif
