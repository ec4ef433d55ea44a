/* ipam.h - the addresses of the node's subnet, one file per address in use:
 * DIR/A.B.C.D holds the id of the task that has it. Creating the file with
 * O_EXCL is the allocation, so an address is never handed out twice while
 * its file exists, across agent restarts too; the agent's garbage collector
 * (task_net.h) removes the files of tasks that are gone.
 *
 * .0 is the network, .1 the bridge (the tasks' gateway), the last the
 * broadcast: tasks get .2 onwards. Allocation goes round the subnet from
 * after the last address given, so a freed address is not reused at once
 * (peers' ARP caches and connection tracking forget it meanwhile). */
#ifndef BERTH_NET_IPAM_H
#define BERTH_NET_IPAM_H

#include <stdint.h>

#include "core/cidr.h"
#include "core/util.h"

struct ipam;

/* dir is made if missing. */
struct ipam *ipam_new(const char *dir, const struct cidr *subnet);
void ipam_free(struct ipam *p);

/* The address of task_id: the one it holds already, else a free one.
 * -1 with err (503) when the subnet is full. */
int ipam_acquire(struct ipam *p, const char *task_id, uint32_t *ip, struct berr *err);
/* The address task_id holds, or 0. */
uint32_t ipam_lookup(struct ipam *p, const char *task_id);
/* Give back task_id's address (nothing when it holds none). */
void ipam_release(struct ipam *p, const char *task_id);
/* Call fn for every address in use, with the task that holds it. */
void ipam_each(struct ipam *p, void (*fn)(void *ud, uint32_t ip, const char *task_id), void *ud);

#endif
