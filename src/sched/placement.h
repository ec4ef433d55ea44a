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
 *
 * Details (added by the implementation, see placement.c):
 *  - Check order (used for the reason): node not schedulable, value
 *    constraints (spec order), cpu, memory, disk, ports, limit constraints
 *    (spec order). Reason fragments: "node not schedulable (draining or
 *    down)", "value constraint zone:a,b" / "value constraint rack:!r3",
 *    "insufficient cpu|memory|disk|ports", "limit constraint host:limit:1";
 *    joined with "; ", counts with thousands separators, "1 node" singular;
 *    "no nodes registered" when nnodes == 0.
 *  - A node without the attribute of a limit constraint is infeasible for
 *    it (we cannot tell which group it belongs to).
 *  - Limit on "host" uses the node's own job_tasks: the caller sets the
 *    "host" attribute to the node name, so it is unique per node. Other
 *    attributes are counted per value over all nodes (any state) once per
 *    call, then kept up to date as tasks land.
 *  - Score: headroom = min over requested resources (cpu, memory, disk if
 *    > 0, ports if any) of free_after_placement / request, i.e. how many
 *    more tasks of this shape would still fit. BINPACK takes the smallest
 *    headroom (best fit); SPREAD takes the fewest job_tasks, then the
 *    largest headroom. Ties go to the first node in index order starting at
 *    start_offset, so results are deterministic.
 *  - Cpu is compared with a 1e-9 tolerance: ten subtractions of 0.1 from 1.0
 *    do not leave exactly 0.1.
 *  - sample_limit > 0: each task scores the node the previous task took
 *    (only its own score changed; keeps BINPACK filling one node) plus the
 *    next sample_limit feasible nodes from where the previous scan stopped.
 *    sample_limit == 0 finds the exact best with a heap over all feasible
 *    nodes: O(n + count log n), not O(count * n). When count * sample_limit
 *    >= nnodes, sampling would look at every node anyway and the heap is
 *    cheaper and exact, so it is used instead.
 *    Within a call a node found infeasible stays infeasible (resources only
 *    shrink, counts only grow) and is skipped from then on; when a scan
 *    finds no feasible node the rest of the class is left unplaced.
 */
#ifndef BERTH_PLACEMENT_H
#define BERTH_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"

struct placement_node {
	const char *name;
	bool schedulable;		  /* ACTIVE, not draining/down */
	const struct spec_kv *attributes; /* includes "host" */
	size_t nattributes;
	double cpu_free;
	uint64_t mem_free, disk_free;
	uint32_t ports_free;
	/* Addresses of the node's subnet not taken (a network: bridge task
	 * takes one); UINT32_MAX when the node has no subnet (its agent
	 * decides). */
	uint32_t addrs_free;
	/* Active tasks of the job being placed on this node (set by the caller,
	 * incremented by placement as it places). */
	uint32_t job_tasks;
};

/* A sensible sample_limit for large clusters (Borg/Nomad-style "power of k
 * choices"): quality close to a full scan at a fraction of the cost. */
#define PLACEMENT_DEFAULT_SAMPLE_LIMIT 64

struct placement_request {
	const struct job_spec *job; /* resources, constraints, strategy */
	size_t count;		    /* how many tasks to place */
	size_t sample_limit;	    /* 0 = score every feasible node */
	size_t start_offset;	    /* where to start scanning (rotate per call) */
};

struct placement_result {
	int *node_index; /* count entries: index into nodes, or -1 when unplaced */
	size_t placed;
	char *reason;	    /* NULL when all were placed; else why (caller frees) */
	size_t next_offset; /* where the scan stopped: pass as the next call's
			     * start_offset so successive calls spread load */
};

/* Place req->count tasks. Updates nodes[i] free resources and job_tasks for
 * every task placed. out->node_index is allocated (caller frees). */
void placement_place(struct placement_node *nodes, size_t nnodes,
		     const struct placement_request *req, struct placement_result *out);
void placement_result_release(struct placement_result *r);

/* For each node, whether a task of job could go there if resources were no
 * object (schedulable, value and driver constraints, limit constraints with
 * the nodes' job_tasks): out[i] for nodes[i]. For preemption, which frees
 * resources but changes nothing else. */
void placement_eligible(struct placement_node *nodes, size_t nnodes, const struct job_spec *job,
			bool *out);

#endif
