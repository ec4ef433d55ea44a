/* placement.h - choosing nodes for tasks: feasibility, then scoring.
 *
 * The scheduler hands placement a view of the nodes (free resources,
 * attributes, how many tasks of the job each already holds) and a request
 * for `count` tasks of one job with one config: an equivalence class, placed
 * as a group (feasibility and scores are computed once per node and updated
 * incrementally as tasks land). Large clusters are sampled: after
 * `sample_limit` feasible nodes have been scored the best of them is taken,
 * starting each round at a rotating offset so load spreads over the fleet.
 *
 * Feasibility: node schedulable (ACTIVE); cpu, memory, disk and the number of
 * named ports fit; value constraints match the node's attributes (a node
 * without the attribute fails a positive constraint and passes a negated
 * one); limit constraints: fewer than `limit` active tasks of this job on
 * nodes with the same attribute value.
 * Scoring: PLACE_BINPACK prefers the fullest node that fits (fewer, fuller
 * machines); PLACE_SPREAD prefers the node with the fewest tasks of the job,
 * then the emptiest.
 *
 * When a task cannot be placed, the reason counts nodes by the first failing
 * check, e.g. "insufficient memory on 9,998 nodes; limit constraint
 * host:limit:1 on 2 nodes".
 */
#ifndef BERTH_PLACEMENT_H
#define BERTH_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"

struct placement_node {
	const char *name;
	bool schedulable;                  /* ACTIVE, not draining/down */
	const struct spec_kv *attributes;  /* includes "host" */
	size_t nattributes;
	double cpu_free;
	uint64_t mem_free, disk_free;
	uint32_t ports_free;
	/* Active tasks of the job being placed on this node (set by the caller,
	 * incremented by placement as it places). */
	uint32_t job_tasks;
};

struct placement_request {
	const struct job_spec *job;  /* resources, constraints, strategy */
	size_t count;                /* how many tasks to place */
	size_t sample_limit;         /* 0 = score every feasible node */
	size_t start_offset;         /* where to start scanning (rotate per call) */
};

struct placement_result {
	int *node_index;  /* count entries: index into nodes, or -1 when unplaced */
	size_t placed;
	char *reason;     /* NULL when all were placed; else why (caller frees) */
};

/* Place req->count tasks. Updates nodes[i] free resources and job_tasks for
 * every task placed. out->node_index is allocated (caller frees). */
void placement_place(struct placement_node *nodes, size_t nnodes,
		     const struct placement_request *req, struct placement_result *out);
void placement_result_release(struct placement_result *r);

#endif
