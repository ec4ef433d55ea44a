/* preemption.h - choosing the tasks a pending task preempts (Borg's and
 * Aurora's rules, docs/scheduling.md "Tiers, priorities and preemption").
 *
 * Pure: no I/O, no clocks. The caller (src/server/cluster_sched.c) describes
 * the preemptor (tier, priority, what it needs) and, node by node, the room
 * free there and the tasks running there; this module picks the node and the
 * victims.
 *
 * Who may preempt whom (preempt_may):
 *  - a preferred (production) task may preempt any preemptible task;
 *  - a preemptible task may preempt preemptible tasks of strictly lower
 *    priority;
 *  - nothing ever preempts a preferred task.
 * The relation is a strict order (tier, then priority), so there is no
 * cycle: a victim's replacement can never preempt its preemptor (no
 * ping-pong), nor anything at or above its preemptor's rank (no cascade).
 *
 * On one node (preempt_select_node): when the room fits the need, no victim
 * (the caller waits). Otherwise the eligible tasks that free something the
 * node lacks are taken lowest priority first, and within one priority those
 * that cover most of what is missing first, until the need fits; then every
 * chosen victim whose removal still leaves enough room is dropped again,
 * highest priority first. When even all eligible tasks do not make room:
 * none (-1). Cpu, memory, disk, ports (a count) and subnet addresses are all
 * counted.
 *
 * Over nodes (preempt_choose): the best node is the one whose victims have
 * the lowest highest-priority, then the fewest victims, then the lowest sum
 * of priorities, then the first in scan order (from `start`, wrapping).
 * A node needing no victim wins at once. `sample` > 0 stops the scan after
 * that many nodes where preemption works (bounded work on large clusters).
 */
#ifndef BERTH_PREEMPTION_H
#define BERTH_PREEMPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"

/* Amounts, signed: a node's room may be short of a reservation. addrs is
 * PREEMPT_ADDRS_ANY in a room when the node has no subnet of its own. */
struct preempt_res {
	double cpu;
	int64_t mem, disk, ports, addrs;
};

/* a += sign * b (sign +1 or -1); an addrs of PREEMPT_ADDRS_ANY stays so. */
void preempt_res_add(struct preempt_res *a, const struct preempt_res *b, int sign);
#define PREEMPT_ADDRS_ANY INT64_MAX

struct preempt_task {
	enum job_tier tier;
	int priority;
	struct preempt_res res; /* what it frees when it goes */
	bool taken;		/* a victim already (of another preemptor) */
};

struct preempt_need {
	enum job_tier tier;
	int priority;
	struct preempt_res res; /* what the preemptor needs (addrs 0 or 1) */
};

struct preempt_node {
	struct preempt_res room; /* free on the node for the preemptor */
	const struct preempt_task *tasks;
	size_t ntasks;
};

struct preempt_cost {
	size_t nvictims;
	int max_priority; /* of the victims (INT32_MIN when none) */
	long long sum_priority;
};

/* The tier rules above: may a task with `need` preempt `victim`? */
bool preempt_may(const struct preempt_need *need, const struct preempt_task *victim);

/* True when cost a is better than cost b (see the top). */
bool preempt_cost_better(const struct preempt_cost *a, const struct preempt_cost *b);

/* Victims on one node: their indices into node->tasks go to victims (room
 * for node->ntasks entries), in the order chosen. Returns their number (0:
 * the room fits already), or -1 when no set of eligible tasks makes room. */
int preempt_select_node(const struct preempt_need *need, const struct preempt_node *node,
			size_t *victims, struct preempt_cost *cost);

/* The node i as the scan sees it, or NULL when the preemptor may not go
 * there at all (constraints, draining...). */
typedef const struct preempt_node *(*preempt_node_fn)(void *ctx, size_t i);

struct preempt_result {
	long node;	 /* index of the chosen node, -1 when none */
	size_t *victims; /* indices into that node's tasks (caller frees) */
	size_t nvictims;
	struct preempt_cost cost;
	size_t visited; /* nodes the scan examined (get returned one) */
	size_t next;	/* where the scan stopped: the next call's start */
};

/* Scan nnodes nodes from `start`; fills out (release it). Returns 0 when a
 * node was chosen, -1 when none can make room. */
int preempt_choose(const struct preempt_need *need, size_t nnodes, preempt_node_fn get, void *ctx,
		   size_t start, size_t sample, struct preempt_result *out);
void preempt_result_release(struct preempt_result *r);

#endif
