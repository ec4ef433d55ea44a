/* node_net.h - the node's side of the cluster network, as the agent runs
 * it: its subnet (given by the server at registration), the bridge
 * `berth0` holding the subnet's .1, forwarding on, berth's nftables table
 * (masquerade.h), routes to every peer node's subnet via that node's
 * address, and the tasks' networks (task_net.h) with their addresses
 * (ipam.h).
 *
 * Nothing is set up on the host until the first task with
 * `network: bridge` (or a re-adopted one): a node that runs none keeps its
 * network untouched. Then the bridge, the table and the routes stay while
 * the agent runs (and across its restarts: set-up is idempotent).
 *
 * State on disk, under DATA/net/: netns/ID (each task's namespace, a bind
 * mount), addrs/ (ipam.h) and ports/ID (the node's ports sent to the task,
 * from which the nftables table is rebuilt). The garbage collector removes what belongs to
 * tasks no longer live; a restarted agent thus keeps what its re-adopted
 * tasks hold and frees the rest.
 *
 * Thread-safe: one lock inside; the calls that set up a task switch the
 * calling thread's network namespace for a moment (launcher threads). */
#ifndef BERTH_NET_NODE_NET_H
#define BERTH_NET_NODE_NET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/cidr.h"
#include "core/util.h"

#define NODE_NET_BRIDGE "berth0"

struct node_net;

struct node_net *node_net_new(const char *data_dir);
void node_net_free(struct node_net *n);

/* The server's answer (register reply or POST /v1/agent/network):
 * {cluster_cidr, subnet, peers?: [{name, ip, subnet}]}. Peers' routes are
 * programmed at once when the network is up, else when it comes up. A
 * reply without a subnet leaves the node without one (bridge tasks fail). */
int node_net_configure(struct node_net *n, json_t *net, struct berr *err);

/* Set up the task's network: its address (the one it holds, else a new
 * one), namespace and veth, and the node's ports[0..nports) sent to it
 * (nat_rules.h). *ip: its address; *netns_path: new string. */
int node_net_task_setup(struct node_net *n, const char *task_id, const int *ports, size_t nports,
			uint32_t *ip, char **netns_path, struct berr *err);
/* The same without the namespace and veth, for a namespace the task's
 * runtime makes (docker: task_net_attach once the container started): the
 * address (*prefix: the subnet's), the port maps, and *netns_path, where
 * the namespace is to be bound (nothing there yet). Torn down and
 * collected like the others. */
int node_net_task_reserve(struct node_net *n, const char *task_id, const int *ports, size_t nports,
			  uint32_t *ip, int *prefix, char **netns_path, struct berr *err);
/* The tasks' gateway (the bridge's address, .1 of the subnet), or 0 before
 * the node has a subnet. */
uint32_t node_net_gateway(struct node_net *n);
/* The bridge is up (a bridge task ran or runs here). */
bool node_net_active(struct node_net *n);
/* The address a task holds on this node, or 0. */
uint32_t node_net_task_address(struct node_net *n, const char *task_id);
/* Remove the task's namespace, veth and address. */
void node_net_task_teardown(struct node_net *n, const char *task_id);
/* What the garbage collector is told of a task: its network stays, goes,
 * or, not known to the caller (a launch racing the look), goes only once
 * its traces are older than NODE_NET_UNKNOWN_GRACE_S. */
enum node_net_task_fate { NODE_NET_KEEP, NODE_NET_GONE, NODE_NET_UNKNOWN };
#define NODE_NET_UNKNOWN_GRACE_S 60
/* Tear down the networks of the tasks fate() says are gone. fate must not
 * call into node_net. */
void node_net_gc(struct node_net *n, enum node_net_task_fate (*fate)(void *ud, const char *task_id),
		 void *ud);

#endif
