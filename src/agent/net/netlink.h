/* netlink.h - the few rtnetlink operations the node network needs, over
 * libnl-route-3: links (bridge, veth), addresses and routes, in the
 * calling thread's network namespace. Every call opens its own socket, so
 * a thread that switched namespaces (setns) works in the new one.
 *
 * Each returns 0, or -1 with err filled ("cannot create bridge 'berth0':
 * Object exists"). Addresses are host byte order (core/cidr.h). */
#ifndef BERTH_NET_NETLINK_H
#define BERTH_NET_NETLINK_H

#include <stdbool.h>
#include <stdint.h>

#include "core/cidr.h"
#include "core/util.h"

/* The routes berth adds (to peers' subnets) carry this protocol number, so
 * that the ones no longer wanted can be found and removed. */
#define NETLINK_BERTH_ROUTE_PROTO 77

/* A bridge named `name` exists, holds ip/prefix, is up (made if missing) and
 * keeps its MAC whatever ports come (made: 02:62 and ip; else its own). */
int netlink_bridge_ensure(const char *name, uint32_t ip, int prefix, struct berr *err);

/* A veth pair: `host_name` here, a port of bridge `master`, up; its peer
 * named `peer_name` in the network namespace open at netns_fd. */
int netlink_veth_create(const char *host_name, const char *peer_name, int netns_fd,
			const char *master, struct berr *err);

/* Remove link `name`; a link that does not exist is no error. */
int netlink_link_delete(const char *name, struct berr *err);
bool netlink_link_exists(const char *name);

/* Inside a task's namespace: lo up; `ifname` up with ip/prefix; the
 * default route via gw. */
int netlink_task_iface_setup(const char *ifname, uint32_t ip, int prefix, uint32_t gw,
			     struct berr *err);

/* The route to dst via gw (replacing any route to dst), marked as berth's. */
int netlink_route_replace(const struct cidr *dst, uint32_t gw, struct berr *err);
/* Remove berth's routes whose destination keep() refuses. */
int netlink_routes_prune(bool (*keep)(void *ud, const struct cidr *dst), void *ud,
			 struct berr *err);

#endif
