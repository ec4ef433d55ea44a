/* nat_rules.h - berth's nftables table (family ip, name "berth"), written
 * whole through libnftnl + libmnl in one transaction:
 *
 *   table ip berth {
 *     chain prerouting { type nat hook prerouting priority dstnat;
 *       fib daddr type local tcp dport P dnat to ADDR     (one per port map,
 *       fib daddr type local udp dport P dnat to ADDR      tcp and udp) }
 *     chain output { type nat hook output priority -100;  (the same rules:
 *       ... }                                              the node's own)
 *     chain postrouting { type nat hook postrouting priority srcnat;
 *       ip saddr CLUSTER ip daddr != CLUSTER masquerade
 *       oifname BRIDGE ct status dnat ip saddr CLUSTER masquerade   (hairpin)
 *       oifname BRIDGE ip saddr 127.0.0.0/8 masquerade }
 *     chain input { type filter hook input priority filter;
 *       iifname BRIDGE ip daddr 127.0.0.0/8 ct state new drop } }
 *
 * Tasks reach the outside world with the node's address; traffic between
 * tasks of the cluster (on any node) keeps its source address. A port map
 * sends what reaches one of the node's own addresses on port P (as
 * {{ports.NAME}} gave it) to the bridge task that holds it, on the same
 * port, so `curl NODE:P` works as with host networking; connections from
 * the node's loopback are masqueraded (and the bridge gets route_localnet,
 * which the input rule keeps tasks from abusing to reach 127.0.0.1).
 *
 * The table is rebuilt whole at each call (idempotent; established
 * connections keep their translation in conntrack) and left in place
 * while the agent runs. */
#ifndef BERTH_NET_NAT_RULES_H
#define BERTH_NET_NAT_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "core/cidr.h"
#include "core/util.h"

#define NAT_RULES_TABLE "berth"

struct nat_port_map {
	uint32_t addr; /* the task's address */
	uint16_t port; /* on the node and in the task */
};

/* Write the table. 0, or -1 with err. */
int nat_rules_write(const struct cidr *cluster, const char *bridge, const struct nat_port_map *maps,
		    size_t nmaps, struct berr *err);
/* Remove the table (no error when absent). */
int nat_rules_remove(struct berr *err);

#endif
