/* masquerade.h - berth's nftables table (family ip, name "berth"), written
 * through libnftnl + libmnl in one transaction:
 *
 *   table ip berth {
 *     chain postrouting { type nat hook postrouting priority srcnat;
 *       ip saddr CLUSTER ip daddr != CLUSTER masquerade } }
 *
 * Tasks reach the outside world with the node's address; traffic between
 * tasks of the cluster (on any node) keeps its source address. The table
 * is rebuilt whole at each call (idempotent: an agent restart rewrites the
 * same rules) and left in place while the agent runs. */
#ifndef BERTH_NET_MASQUERADE_H
#define BERTH_NET_MASQUERADE_H

#include "core/cidr.h"
#include "core/util.h"

#define MASQUERADE_TABLE "berth"

/* Write the table for the cluster network. 0, or -1 with err. */
int masquerade_ensure(const struct cidr *cluster, struct berr *err);
/* Remove the table (no error when absent). */
int masquerade_remove(struct berr *err);

#endif
