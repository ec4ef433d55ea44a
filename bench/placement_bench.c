/* placement_bench.c - placement throughput on a large simulated cluster.
 *
 * Builds N nodes (16 cores, 64 GiB, 1 TiB disk, 10,000 ports; attributes
 * host, rack (100 racks), zone (a/b/c by rack)) and places T tasks in jobs
 * of 100 instances (0.1 cpu, 64 MiB, one port), the way the scheduler
 * does: one placement_place call per job, start_offset chained from the
 * previous call's next_offset. Jobs cycle through a mix of constraints
 * (rack limit:2, host limit:1, zone values, a negated rack, none) and
 * alternate BINPACK and SPREAD.
 *
 * Measures placement only (no store, no network); the caller's work of
 * resetting job_tasks between jobs is included.
 *
 *   placement_bench [--nodes N] [--tasks T] [--sample K]...
 * Default: 10,000 nodes, 1,000,000 tasks, sample limits 64 and 0. Prints
 * one line per sample limit:
 *   sample_limit=64 placed=... unplaced=... nodes_used=... max_per_node=...
 *   placements_per_s=... ns_per_placement=...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "sched/placement.h"

#define GiB (1024ULL * 1024 * 1024)
#define MiB (1024ULL * 1024)
#define JOB_SIZE 100

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct fleet {
	struct placement_node *nodes;
	struct spec_kv *attrs;
	char **strs;
	size_t n;
};

static void fleet_init(struct fleet *f, size_t n)
{
	static const char *zones[] = {"a", "b", "c"};
	f->n = n;
	f->nodes = xcalloc(n, sizeof *f->nodes);
	f->attrs = xcalloc(3 * n, sizeof *f->attrs);
	f->strs = xcalloc(2 * n, sizeof *f->strs);
	size_t per_rack = n >= 100 ? n / 100 : 1;
	for (size_t i = 0; i < n; i++) {
		size_t rack = i / per_rack;
		char *host = f->strs[2 * i] = xasprintf("node-%05zu", i);
		char *rk = f->strs[2 * i + 1] = xasprintf("r%zu", rack);
		f->attrs[3 * i] = (struct spec_kv){"host", host};
		f->attrs[3 * i + 1] = (struct spec_kv){"rack", rk};
		f->attrs[3 * i + 2] = (struct spec_kv){"zone", (char *)zones[rack % 3]};
		f->nodes[i] = (struct placement_node){
		    .name = host,
		    .schedulable = true,
		    .attributes = &f->attrs[3 * i],
		    .nattributes = 3,
		    .cpu_free = 16,
		    .mem_free = 64 * GiB,
		    .disk_free = 1024 * GiB,
		    .ports_free = 10000,
		    .addrs_free = UINT32_MAX,
		};
	}
}

static void fleet_free(struct fleet *f)
{
	for (size_t k = 0; k < 2 * f->n; k++)
		free(f->strs[k]);
	free(f->strs);
	free(f->attrs);
	free(f->nodes);
}

static char *zone_ab[] = {"a", "b"}, *zone_a[] = {"a"}, *rack_r3[] = {"r3"};
static char *port_names[] = {"http"};

/* The constraint mix, by job number. */
static size_t job_constraints(size_t j, struct constraint *c)
{
	switch (j % 10) {
	case 0:
	case 1:
		c[0] =
		    (struct constraint){.attribute = "rack", .kind = CONSTRAINT_LIMIT, .limit = 2};
		return 1;
	case 2:
	case 3:
		c[0] =
		    (struct constraint){.attribute = "host", .kind = CONSTRAINT_LIMIT, .limit = 1};
		return 1;
	case 4:
		c[0] = (struct constraint){
		    .attribute = "zone", .kind = CONSTRAINT_VALUE, .values = zone_ab, .nvalues = 2};
		return 1;
	case 5:
		c[0] = (struct constraint){.attribute = "rack",
					   .kind = CONSTRAINT_VALUE,
					   .negated = true,
					   .values = rack_r3,
					   .nvalues = 1};
		return 1;
	case 6:
		c[0] = (struct constraint){
		    .attribute = "zone", .kind = CONSTRAINT_VALUE, .values = zone_a, .nvalues = 1};
		c[1] =
		    (struct constraint){.attribute = "host", .kind = CONSTRAINT_LIMIT, .limit = 1};
		return 2;
	default:
		return 0;
	}
}

static void run(size_t nnodes, size_t ntasks, size_t sample)
{
	struct fleet f;
	fleet_init(&f, nnodes);
	size_t njobs = (ntasks + JOB_SIZE - 1) / JOB_SIZE, placed = 0, offset = 0;
	double t0 = now_s();
	for (size_t j = 0; j < njobs; j++) {
		struct constraint cons[2];
		struct job_spec job = {0};
		job.key = "bench/prod/job";
		job.placement = (j / 10) % 2 ? PLACE_SPREAD : PLACE_BINPACK;
		job.task.resources = (struct resources){
		    .cpu = 0.1, .memory = 64 * MiB, .ports = port_names, .nports = 1};
		job.task.constraints = cons;
		job.task.nconstraints = job_constraints(j, cons);
		size_t count = ntasks - j * JOB_SIZE < JOB_SIZE ? ntasks - j * JOB_SIZE : JOB_SIZE;
		struct placement_request req = {&job, count, sample, offset};
		struct placement_result r;
		placement_place(f.nodes, f.n, &req, &r);
		placed += r.placed;
		offset = r.next_offset;
		/* The next job has none of its tasks anywhere yet. */
		for (size_t t = 0; t < r.placed; t++)
			f.nodes[r.node_index[t]].job_tasks = 0;
		if (r.reason && j < 3)
			fprintf(stderr, "job %zu: %s\n", j, r.reason);
		placement_result_release(&r);
	}
	double dt = now_s() - t0;
	size_t used = 0, maxper = 0;
	for (size_t i = 0; i < f.n; i++) {
		size_t tasks = 10000 - f.nodes[i].ports_free;
		used += tasks > 0;
		maxper = tasks > maxper ? tasks : maxper;
	}
	printf("sample_limit=%zu nodes=%zu placed=%zu unplaced=%zu nodes_used=%zu max_per_node=%zu "
	       "seconds=%.3f placements_per_s=%.0f ns_per_placement=%.0f\n",
	       sample, nnodes, placed, ntasks - placed, used, maxper, dt, (double)placed / dt,
	       dt * 1e9 / (double)(placed ? placed : 1));
	fflush(stdout);
	fleet_free(&f);
}

int main(int argc, char **argv)
{
	size_t nnodes = 10000, ntasks = 1000000, samples[16], nsamples = 0;
	for (int a = 1; a + 1 < argc; a += 2) {
		size_t v = strtoull(argv[a + 1], NULL, 10);
		if (!strcmp(argv[a], "--nodes") && v)
			nnodes = v;
		else if (!strcmp(argv[a], "--tasks"))
			ntasks = v;
		else if (!strcmp(argv[a], "--sample") && nsamples < ARRAY_SIZE(samples))
			samples[nsamples++] = v;
		else {
			fprintf(stderr, "usage: %s [--nodes N] [--tasks T] [--sample K]...\n",
				argv[0]);
			return 2;
		}
	}
	if (!nsamples) {
		samples[nsamples++] = PLACEMENT_DEFAULT_SAMPLE_LIMIT;
		samples[nsamples++] = 0;
	}
	for (size_t k = 0; k < nsamples; k++)
		run(nnodes, ntasks, samples[k]);
	return 0;
}
