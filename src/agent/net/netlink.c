/* netlink.c - rtnetlink over libnl-route-3 (see netlink.h). */
#include <errno.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <stdlib.h>
#include <string.h>

#include "agent/net/netlink.h"

static struct nl_sock *route_socket(struct berr *err)
{
	struct nl_sock *sk = nl_socket_alloc();
	if (!sk) {
		berr_set(err, 0, "cannot allocate a netlink socket");
		return NULL;
	}
	int r = nl_connect(sk, NETLINK_ROUTE);
	if (r < 0) {
		berr_set(err, 0, "cannot open a netlink socket: %s", nl_geterror(r));
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

static struct nl_addr *addr_of(uint32_t ip, int prefix)
{
	uint32_t be = htonl(ip);
	struct nl_addr *a = nl_addr_build(AF_INET, &be, 4);
	if (a)
		nl_addr_set_prefixlen(a, prefix);
	return a;
}

static int link_up(struct nl_sock *sk, const char *name, int master, struct berr *err)
{
	struct rtnl_link *link = NULL;
	int r = rtnl_link_get_kernel(sk, 0, name, &link);
	if (r < 0)
		return berr_set(err, 0, "cannot find link '%s': %s", name, nl_geterror(r));
	struct rtnl_link *chg = rtnl_link_alloc();
	rtnl_link_set_flags(chg, IFF_UP);
	if (master > 0)
		rtnl_link_set_master(chg, master);
	r = rtnl_link_change(sk, link, chg, 0);
	rtnl_link_put(chg);
	rtnl_link_put(link);
	if (r < 0)
		return berr_set(err, 0, "cannot bring link '%s' up: %s", name, nl_geterror(r));
	return 0;
}

static int addr_add(struct nl_sock *sk, const char *name, uint32_t ip, int prefix, struct berr *err)
{
	struct rtnl_link *link = NULL;
	int r = rtnl_link_get_kernel(sk, 0, name, &link);
	if (r < 0)
		return berr_set(err, 0, "cannot find link '%s': %s", name, nl_geterror(r));
	int idx = rtnl_link_get_ifindex(link);
	rtnl_link_put(link);
	struct rtnl_addr *a = rtnl_addr_alloc();
	struct nl_addr *local = addr_of(ip, prefix);
	rtnl_addr_set_ifindex(a, idx);
	rtnl_addr_set_local(a, local);
	r = rtnl_addr_add(sk, a, 0);
	nl_addr_put(local);
	rtnl_addr_put(a);
	if (r < 0 && r != -NLE_EXIST) {
		char buf[16];
		return berr_set(err, 0, "cannot add address %s/%d to '%s': %s", ip4_format(ip, buf),
				prefix, name, nl_geterror(r));
	}
	return 0;
}

/* The bridge's MAC, set once and for all. A Linux bridge without one of
 * its own takes its lowest port's: a new task's veth could change the
 * gateway's MAC under the running tasks, whose frames then went to the old
 * one and were dropped until their ARP entry aged out (15-45 s). A bridge
 * made now gets one from its address (locally administered: 02:62 and the
 * IPv4 address); one an earlier agent made keeps the MAC it has, pinned
 * (setting a MAC marks it as chosen; changing it would cut the running
 * tasks off the same way). */
static int bridge_pin_mac(struct nl_sock *sk, const char *name, uint32_t ip, bool made,
			  struct berr *err)
{
	struct rtnl_link *link = NULL;
	int r = rtnl_link_get_kernel(sk, 0, name, &link);
	if (r < 0)
		return berr_set(err, 0, "cannot find bridge '%s': %s", name, nl_geterror(r));
	unsigned char mac[6] = {0x02,
				0x62,
				(unsigned char)(ip >> 24),
				(unsigned char)(ip >> 16),
				(unsigned char)(ip >> 8),
				(unsigned char)ip};
	struct nl_addr *own = nl_addr_build(AF_LLC, mac, sizeof mac);
	struct nl_addr *cur = rtnl_link_get_addr(link);
	if (!own || (cur && !nl_addr_cmp(cur, own))) {
		nl_addr_put(own); /* ours already (or no memory: left as it is) */
		rtnl_link_put(link);
		return 0;
	}
	struct rtnl_link *chg = rtnl_link_alloc();
	rtnl_link_set_addr(chg, made || !cur ? own : cur);
	r = rtnl_link_change(sk, link, chg, 0);
	rtnl_link_put(chg);
	rtnl_link_put(link);
	nl_addr_put(own);
	if (r < 0)
		return berr_set(err, 0, "cannot set the MAC address of bridge '%s': %s", name,
				nl_geterror(r));
	return 0;
}

int netlink_bridge_ensure(const char *name, uint32_t ip, int prefix, struct berr *err)
{
	struct nl_sock *sk = route_socket(err);
	if (!sk)
		return -1;
	int rc = -1;
	struct rtnl_link *link = NULL;
	bool made = false;
	if (rtnl_link_get_kernel(sk, 0, name, &link) < 0) {
		int r = rtnl_link_bridge_add(sk, name);
		if (r < 0 && r != -NLE_EXIST) {
			berr_set(err, 0, "cannot create bridge '%s': %s", name, nl_geterror(r));
			goto out;
		}
		made = r == 0;
	} else {
		rtnl_link_put(link);
	}
	if (bridge_pin_mac(sk, name, ip, made, err) < 0 ||
	    addr_add(sk, name, ip, prefix, err) < 0 || link_up(sk, name, 0, err) < 0)
		goto out;
	rc = 0;
out:
	nl_socket_free(sk);
	return rc;
}

/* Hairpin mode on a bridge port: a frame may leave by the port it came in.
 * With br_netfilter, a task's connection to a port map of its own node is
 * translated on the bridge and must go back out of the task's own port. */
static int port_hairpin(struct nl_sock *sk, const char *name, struct berr *err)
{
	struct rtnl_link *link = NULL;
	int r = rtnl_link_get_kernel(sk, 0, name, &link);
	if (r < 0)
		return berr_set(err, 0, "cannot find link '%s': %s", name, nl_geterror(r));
	/* Both objects of the AF_BRIDGE family (libnl asserts it: the kernel's
	 * link, of family AF_UNSPEC, cannot be the original). */
	int idx = rtnl_link_get_ifindex(link);
	rtnl_link_put(link);
	struct rtnl_link *orig = rtnl_link_alloc(), *chg = rtnl_link_alloc();
	rtnl_link_set_family(orig, AF_BRIDGE);
	rtnl_link_set_ifindex(orig, idx);
	rtnl_link_set_family(chg, AF_BRIDGE);
	rtnl_link_set_ifindex(chg, idx);
	rtnl_link_bridge_set_flags(chg, RTNL_BRIDGE_HAIRPIN_MODE);
	r = rtnl_link_change(sk, orig, chg, 0);
	rtnl_link_put(chg);
	rtnl_link_put(orig);
	if (r < 0)
		return berr_set(err, 0, "cannot set hairpin mode on '%s': %s", name,
				nl_geterror(r));
	return 0;
}

int netlink_veth_create(const char *host_name, const char *peer_name, int netns_fd,
			const char *master, struct berr *err)
{
	struct nl_sock *sk = route_socket(err);
	if (!sk)
		return -1;
	int rc = -1;
	struct rtnl_link *br = NULL;
	int r = rtnl_link_get_kernel(sk, 0, master, &br);
	if (r < 0) {
		berr_set(err, 0, "cannot find bridge '%s': %s", master, nl_geterror(r));
		goto out;
	}
	int br_idx = rtnl_link_get_ifindex(br);
	rtnl_link_put(br);
	struct rtnl_link *veth = rtnl_link_veth_alloc();
	if (!veth) {
		berr_set(err, 0, "cannot allocate a veth link");
		goto out;
	}
	rtnl_link_set_name(veth, host_name);
	struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
	rtnl_link_set_name(peer, peer_name);
	rtnl_link_set_ns_fd(peer, netns_fd);
	rtnl_link_put(peer);
	r = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_put(veth);
	if (r < 0) {
		berr_set(err, 0, "cannot create veth '%s': %s", host_name, nl_geterror(r));
		goto out;
	}
	if (link_up(sk, host_name, br_idx, err) < 0 || port_hairpin(sk, host_name, err) < 0)
		goto out;
	rc = 0;
out:
	nl_socket_free(sk);
	return rc;
}

bool netlink_link_exists(const char *name)
{
	struct berr err = {0};
	struct nl_sock *sk = route_socket(&err);
	if (!sk)
		return false;
	struct rtnl_link *link = NULL;
	bool yes = rtnl_link_get_kernel(sk, 0, name, &link) == 0;
	if (link)
		rtnl_link_put(link);
	nl_socket_free(sk);
	return yes;
}

int netlink_link_delete(const char *name, struct berr *err)
{
	struct nl_sock *sk = route_socket(err);
	if (!sk)
		return -1;
	struct rtnl_link *link = rtnl_link_alloc();
	rtnl_link_set_name(link, name);
	int r = rtnl_link_delete(sk, link);
	rtnl_link_put(link);
	nl_socket_free(sk);
	if (r < 0 && r != -NLE_NODEV && r != -NLE_OBJ_NOTFOUND)
		return berr_set(err, 0, "cannot delete link '%s': %s", name, nl_geterror(r));
	return 0;
}

static int route_add(struct nl_sock *sk, const struct cidr *dst, uint32_t gw, int proto,
		     struct berr *err)
{
	struct rtnl_route *rt = rtnl_route_alloc();
	struct nl_addr *d = addr_of(dst->base, dst->prefix);
	struct nl_addr *g = addr_of(gw, 32);
	rtnl_route_set_family(rt, AF_INET);
	rtnl_route_set_dst(rt, d);
	rtnl_route_set_protocol(rt, (uint8_t)proto);
	rtnl_route_set_table(rt, RT_TABLE_MAIN);
	rtnl_route_set_scope(rt, RT_SCOPE_UNIVERSE);
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	rtnl_route_nh_set_gateway(nh, g);
	rtnl_route_add_nexthop(rt, nh);
	int r = rtnl_route_add(sk, rt, NLM_F_REPLACE);
	nl_addr_put(d);
	nl_addr_put(g);
	rtnl_route_put(rt);
	if (r < 0) {
		char a[CIDR_TEXT_MAX], b[16];
		return berr_set(err, 0, "cannot add route to %s via %s: %s", cidr_format(dst, a),
				ip4_format(gw, b), nl_geterror(r));
	}
	return 0;
}

int netlink_task_iface_setup(const char *ifname, uint32_t ip, int prefix, uint32_t gw,
			     struct berr *err)
{
	struct nl_sock *sk = route_socket(err);
	if (!sk)
		return -1;
	int rc = -1;
	struct cidr any = {0, 0};
	if (link_up(sk, "lo", 0, err) < 0 || addr_add(sk, ifname, ip, prefix, err) < 0 ||
	    link_up(sk, ifname, 0, err) < 0 || route_add(sk, &any, gw, RTPROT_STATIC, err) < 0)
		goto out;
	rc = 0;
out:
	nl_socket_free(sk);
	return rc;
}

int netlink_route_replace(const struct cidr *dst, uint32_t gw, struct berr *err)
{
	struct nl_sock *sk = route_socket(err);
	if (!sk)
		return -1;
	int rc = route_add(sk, dst, gw, NETLINK_BERTH_ROUTE_PROTO, err);
	nl_socket_free(sk);
	return rc;
}

struct prune_ctx {
	struct nl_sock *sk;
	bool (*keep)(void *ud, const struct cidr *dst);
	void *ud;
	int failures;
};

static void prune_one(struct nl_object *obj, void *arg)
{
	struct prune_ctx *p = arg;
	struct rtnl_route *rt = (struct rtnl_route *)obj;
	if (rtnl_route_get_protocol(rt) != NETLINK_BERTH_ROUTE_PROTO ||
	    rtnl_route_get_family(rt) != AF_INET)
		return;
	struct nl_addr *d = rtnl_route_get_dst(rt);
	if (!d || nl_addr_get_len(d) != 4)
		return;
	uint32_t be;
	memcpy(&be, nl_addr_get_binary_addr(d), 4);
	struct cidr dst = {ntohl(be), (int)nl_addr_get_prefixlen(d)};
	if (p->keep(p->ud, &dst))
		return;
	if (rtnl_route_delete(p->sk, rt, 0) < 0)
		p->failures++;
}

int netlink_routes_prune(bool (*keep)(void *ud, const struct cidr *dst), void *ud, struct berr *err)
{
	struct nl_sock *sk = route_socket(err);
	if (!sk)
		return -1;
	struct nl_cache *cache = NULL;
	int r = rtnl_route_alloc_cache(sk, AF_INET, 0, &cache);
	if (r < 0) {
		nl_socket_free(sk);
		return berr_set(err, 0, "cannot list routes: %s", nl_geterror(r));
	}
	struct prune_ctx p = {sk, keep, ud, 0};
	nl_cache_foreach(cache, prune_one, &p);
	nl_cache_free(cache);
	nl_socket_free(sk);
	if (p.failures)
		return berr_set(err, 0, "cannot remove %d stale route(s)", p.failures);
	return 0;
}
