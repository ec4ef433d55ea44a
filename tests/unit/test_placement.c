/* test_placement.c - feasibility, scoring, sampling and reasons. */
#include "unit.h"

#include "core/util.h"
#include "sched/placement.h"

#define GiB (1024ULL * 1024 * 1024)
#define MiB (1024ULL * 1024)

/* A test cluster: n identical nodes named n0..n(N-1), attributes host=name,
 * rack=r(i / per_rack), zone=a|b|c by i % 3. */
struct cluster {
	struct placement_node *nodes;
	struct spec_kv *attrs; /* 3 per node */
	char **strs;
	size_t n, nstrs;
};

static char *keep(struct cluster *c, char *s)
{
	c->strs[c->nstrs++] = s;
	return s;
}

static struct cluster *cluster_new(size_t n, size_t per_rack, double cpu, uint64_t mem)
{
	struct cluster *c = xcalloc(1, sizeof *c);
	c->n = n;
	c->nodes = xcalloc(n ? n : 1, sizeof *c->nodes);
	c->attrs = xcalloc(n ? 3 * n : 1, sizeof *c->attrs);
	c->strs = xcalloc(n ? 3 * n : 1, sizeof *c->strs);
	static const char *zones[] = {"a", "b", "c"};
	for (size_t i = 0; i < n; i++) {
		struct placement_node *nd = &c->nodes[i];
		char *name = keep(c, xasprintf("n%zu", i));
		c->attrs[3 * i] = (struct spec_kv){"host", name};
		c->attrs[3 * i + 1] =
		    (struct spec_kv){"rack", keep(c, xasprintf("r%zu", i / per_rack))};
		c->attrs[3 * i + 2] = (struct spec_kv){"zone", keep(c, xstrdup(zones[i % 3]))};
		*nd = (struct placement_node){
		    .name = name,
		    .schedulable = true,
		    .attributes = &c->attrs[3 * i],
		    .nattributes = 3,
		    .cpu_free = cpu,
		    .mem_free = mem,
		    .disk_free = 100 * GiB,
		    .ports_free = 1000,
		    .addrs_free = UINT32_MAX,
		};
	}
	return c;
}

static void cluster_free(struct cluster *c)
{
	for (size_t k = 0; k < c->nstrs; k++)
		free(c->strs[k]);
	free(c->strs);
	free(c->attrs);
	free(c->nodes);
	free(c);
}

static struct job_spec job_new(double cpu, uint64_t mem)
{
	struct job_spec j = {0};
	j.key = "alice/devel/web";
	j.placement = PLACE_BINPACK;
	j.task.resources.cpu = cpu;
	j.task.resources.memory = mem;
	return j;
}

static struct constraint value_c(const char *attr, bool negated, char **values, size_t n)
{
	return (struct constraint){.attribute = (char *)attr,
				   .kind = CONSTRAINT_VALUE,
				   .negated = negated,
				   .values = values,
				   .nvalues = n};
}

static struct constraint limit_c(const char *attr, int limit)
{
	return (struct constraint){
	    .attribute = (char *)attr, .kind = CONSTRAINT_LIMIT, .limit = limit};
}

static struct placement_result place(struct cluster *c, const struct job_spec *j, size_t count,
				     size_t sample, size_t start)
{
	struct placement_request req = {j, count, sample, start};
	struct placement_result r;
	placement_place(c->nodes, c->n, &req, &r);
	return r;
}

static size_t tasks_on(const struct placement_result *r, size_t count, int node)
{
	size_t k = 0;
	for (size_t t = 0; t < count; t++)
		k += r->node_index[t] == node;
	return k;
}

/* ---- resources ---- */

TEST(fits_exactly_in_every_dimension)
{
	struct cluster *c = cluster_new(1, 1, 1.5, 1 * GiB);
	c->nodes[0].disk_free = 2 * GiB;
	c->nodes[0].ports_free = 2;
	struct job_spec j = job_new(1.5, 1 * GiB);
	j.task.resources.disk = 2 * GiB;
	char *ports[] = {"http", "admin"};
	j.task.resources.ports = ports;
	j.task.resources.nports = 2;
	struct placement_result r = place(c, &j, 1, 0, 0);
	CHECK(r.placed == 1 && r.node_index[0] == 0 && r.reason == NULL);
	CHECK(c->nodes[0].cpu_free == 0 && c->nodes[0].mem_free == 0);
	CHECK(c->nodes[0].disk_free == 0 && c->nodes[0].ports_free == 0);
	CHECK(c->nodes[0].job_tasks == 1);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(no_fit_in_each_dimension)
{
	static const char *want[] = {"insufficient cpu on 1 node", "insufficient memory on 1 node",
				     "insufficient disk on 1 node", "insufficient ports on 1 node"};
	for (int dim = 0; dim < 4; dim++) {
		struct cluster *c = cluster_new(1, 1, 2, 2 * GiB);
		c->nodes[0].disk_free = 1 * GiB;
		c->nodes[0].ports_free = 1;
		struct job_spec j = job_new(1, 1 * GiB);
		char *ports[] = {"http", "admin"};
		if (dim == 0)
			j.task.resources.cpu = 2.5;
		if (dim == 1)
			j.task.resources.memory = 3 * GiB;
		if (dim == 2)
			j.task.resources.disk = 1 * GiB + 1;
		if (dim == 3)
			j.task.resources.ports = ports, j.task.resources.nports = 2;
		struct placement_result r = place(c, &j, 1, 0, 0);
		CHECK(r.placed == 0 && r.node_index[0] == -1);
		CHECK_STR(r.reason, want[dim]);
		CHECK(c->nodes[0].cpu_free == 2 && c->nodes[0].job_tasks == 0);
		placement_result_release(&r);
		cluster_free(c);
	}
}

TEST(cpu_fractions_add_up)
{
	/* ten times 0.1 from 1.0 must fit despite floating point */
	struct cluster *c = cluster_new(1, 1, 1.0, 64 * GiB);
	struct job_spec j = job_new(0.1, 1 * MiB);
	struct placement_result r = place(c, &j, 11, 0, 0);
	CHECK(r.placed == 10);
	CHECK(r.node_index[10] == -1);
	CHECK_STR(r.reason, "insufficient cpu on 1 node");
	CHECK(c->nodes[0].cpu_free >= 0);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(ports_count_per_task)
{
	struct cluster *c = cluster_new(1, 1, 16, 64 * GiB);
	c->nodes[0].ports_free = 7;
	struct job_spec j = job_new(0.1, 1 * MiB);
	char *ports[] = {"http", "admin", "debug"};
	j.task.resources.ports = ports;
	j.task.resources.nports = 3;
	struct placement_result r = place(c, &j, 3, 0, 0);
	CHECK(r.placed == 2);
	CHECK(c->nodes[0].ports_free == 1);
	CHECK_STR(r.reason, "insufficient ports on 1 node");
	placement_result_release(&r);
	cluster_free(c);
}

/* A bridge task takes an address of its node's subnet; host tasks none. */
TEST(bridge_tasks_count_addresses)
{
	struct cluster *c = cluster_new(2, 1, 16, 64 * GiB);
	c->nodes[0].addrs_free = 2;
	c->nodes[1].addrs_free = 1;
	struct job_spec j = job_new(0.1, 1 * MiB);
	j.task.network = NETWORK_BRIDGE;
	struct placement_result r = place(c, &j, 4, 0, 0);
	CHECK(r.placed == 3);
	CHECK(c->nodes[0].addrs_free == 0 && c->nodes[1].addrs_free == 0);
	CHECK_STR(r.reason, "no free address in the node's subnet on 2 nodes");
	placement_result_release(&r);
	j.task.network = NETWORK_HOST;
	r = place(c, &j, 2, 0, 0);
	CHECK(r.placed == 2);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(zero_count_and_no_nodes)
{
	struct cluster *c = cluster_new(2, 1, 4, 4 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	struct placement_result r = place(c, &j, 0, 0, 0);
	CHECK(r.placed == 0 && r.reason == NULL && r.node_index != NULL);
	placement_result_release(&r);
	cluster_free(c);

	c = cluster_new(0, 1, 4, 4 * GiB);
	r = place(c, &j, 3, 0, 0);
	CHECK(r.placed == 0);
	CHECK(r.node_index[0] == -1 && r.node_index[2] == -1);
	CHECK_STR(r.reason, "no nodes registered");
	placement_result_release(&r);
	cluster_free(c);
}

/* ---- scoring ---- */

TEST(binpack_fills_one_node_before_another)
{
	struct cluster *c = cluster_new(3, 1, 2, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	struct placement_result r = place(c, &j, 5, 0, 0);
	CHECK(r.placed == 5);
	int want[] = {0, 0, 1, 1, 2};
	for (int t = 0; t < 5; t++)
		CHECK(r.node_index[t] == want[t]);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(binpack_prefers_the_fuller_node)
{
	struct cluster *c = cluster_new(3, 1, 8, 64 * GiB);
	c->nodes[2].cpu_free = 3; /* already busy */
	struct job_spec j = job_new(1, 1 * GiB);
	struct placement_result r = place(c, &j, 4, 0, 0);
	CHECK(r.placed == 4);
	CHECK(tasks_on(&r, 4, 2) == 3); /* fills node 2 to the brim first */
	CHECK(r.node_index[3] == 0);
	CHECK(c->nodes[2].cpu_free == 0);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(binpack_weighs_the_tightest_resource)
{
	/* node 0: lots of cpu, memory for 2 more; node 1: room for 10 more of
	 * each. Best fit is node 0. */
	struct cluster *c = cluster_new(2, 1, 16, 11 * GiB);
	c->nodes[0].mem_free = 3 * GiB;
	struct job_spec j = job_new(1, 1 * GiB);
	struct placement_result r = place(c, &j, 1, 0, 1);
	CHECK(r.node_index[0] == 0);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(spread_spreads_evenly)
{
	struct cluster *c = cluster_new(4, 1, 16, 64 * GiB);
	c->nodes[1].job_tasks = 2; /* already holds two of this job */
	struct job_spec j = job_new(1, 1 * GiB);
	j.placement = PLACE_SPREAD;
	struct placement_result r = place(c, &j, 10, 0, 0);
	CHECK(r.placed == 10);
	for (int i = 0; i < 4; i++)
		CHECK(c->nodes[i].job_tasks == 3);
	CHECK(tasks_on(&r, 10, 1) == 1);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(spread_prefers_the_emptiest_on_equal_tasks)
{
	struct cluster *c = cluster_new(3, 1, 16, 64 * GiB);
	c->nodes[0].cpu_free = 4;
	c->nodes[2].cpu_free = 8;
	struct job_spec j = job_new(1, 1 * GiB);
	j.placement = PLACE_SPREAD;
	struct placement_result r = place(c, &j, 3, 0, 0);
	CHECK(r.node_index[0] == 1 && r.node_index[1] == 2 && r.node_index[2] == 0);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(ties_follow_start_offset_and_are_deterministic)
{
	struct job_spec j = job_new(1, 1 * GiB);
	for (size_t start = 0; start < 5; start++) {
		struct cluster *c = cluster_new(4, 1, 16, 64 * GiB);
		struct placement_result r = place(c, &j, 1, 0, start);
		CHECK(r.node_index[0] == (int)(start % 4));
		placement_result_release(&r);
		cluster_free(c);
	}
	/* same inputs, same answer, in both modes */
	j.placement = PLACE_SPREAD;
	j.task.constraints = (struct constraint[]){limit_c("rack", 3)};
	j.task.nconstraints = 1;
	for (size_t sample = 0; sample <= 2; sample += 2) { /* 70 * 2 < 200: sampled */
		struct cluster *c1 = cluster_new(200, 10, 4, 8 * GiB);
		struct cluster *c2 = cluster_new(200, 10, 4, 8 * GiB);
		struct placement_result r1 = place(c1, &j, 70, sample, 33);
		struct placement_result r2 = place(c2, &j, 70, sample, 33);
		CHECK(r1.placed == 60 && r2.placed == 60);
		CHECK(!memcmp(r1.node_index, r2.node_index, 70 * sizeof(int)));
		CHECK(r1.next_offset == r2.next_offset);
		CHECK_STR(r1.reason, r2.reason);
		placement_result_release(&r1);
		placement_result_release(&r2);
		cluster_free(c1);
		cluster_free(c2);
	}
}

/* ---- constraints ---- */

TEST(value_constraint_single_value)
{
	struct cluster *c = cluster_new(9, 3, 16, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	j.placement = PLACE_SPREAD;
	j.task.constraints = (struct constraint[]){value_c("zone", false, (char *[]){"b"}, 1)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 6, 0, 0);
	CHECK(r.placed == 6);
	for (int t = 0; t < 6; t++)
		CHECK(r.node_index[t] % 3 == 1);
	for (int i = 1; i < 9; i += 3)
		CHECK(c->nodes[i].job_tasks == 2);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(value_constraint_negated)
{
	struct cluster *c = cluster_new(9, 3, 16, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	j.placement = PLACE_SPREAD;
	j.task.constraints = (struct constraint[]){value_c("rack", true, (char *[]){"r1"}, 1)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 12, 0, 0);
	CHECK(r.placed == 12);
	for (int t = 0; t < 12; t++)
		CHECK(r.node_index[t] < 3 || r.node_index[t] >= 6);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(value_constraint_multi_value_and_reason)
{
	struct cluster *c = cluster_new(9, 3, 2, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	j.task.constraints = (struct constraint[]){value_c("zone", false, (char *[]){"a", "c"}, 2)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 13, 0, 0);
	CHECK(r.placed == 12);
	for (int t = 0; t < 12; t++)
		CHECK(r.node_index[t] % 3 != 1);
	CHECK_STR(r.reason, "value constraint zone:a,c on 3 nodes; insufficient cpu on 6 nodes");
	placement_result_release(&r);

	cluster_free(c);

	c = cluster_new(9, 3, 2, 64 * GiB);
	j.task.constraints =
	    (struct constraint[]){value_c("rack", true, (char *[]){"r0", "r1"}, 2)};
	r = place(c, &j, 7, 0, 0);
	CHECK(r.placed == 6);
	CHECK_STR(r.reason, "value constraint rack:!r0,r1 on 6 nodes; insufficient cpu on 3 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

/* 4 nodes: n0 has only host, n1 host and rack, n2 (zone c) and n3 (zone a)
 * have all three. */
static struct cluster *sparse_cluster(double cpu)
{
	struct cluster *c = cluster_new(4, 1, cpu, 64 * GiB);
	c->nodes[0].nattributes = 1;
	c->nodes[1].nattributes = 2;
	return c;
}

TEST(missing_attributes)
{
	struct job_spec j = job_new(1, 1 * GiB);
	j.placement = PLACE_SPREAD;
	j.task.nconstraints = 1;

	/* positive: a node without the attribute fails */
	struct cluster *c = sparse_cluster(1);
	j.task.constraints = (struct constraint[]){value_c("zone", false, (char *[]){"a"}, 1)};
	struct placement_result r = place(c, &j, 2, 0, 0);
	CHECK(r.placed == 1 && r.node_index[0] == 3);
	CHECK_STR(r.reason, "value constraint zone:a on 3 nodes; insufficient cpu on 1 node");
	placement_result_release(&r);
	cluster_free(c);

	/* negated: a node without the attribute passes */
	c = sparse_cluster(1);
	j.task.constraints = (struct constraint[]){value_c("zone", true, (char *[]){"a"}, 1)};
	r = place(c, &j, 3, 0, 0);
	CHECK(r.placed == 3 && r.reason == NULL);
	CHECK(tasks_on(&r, 3, 3) == 0);
	placement_result_release(&r);
	cluster_free(c);

	/* limit: a node without the attribute is not feasible */
	c = sparse_cluster(16);
	j.task.constraints = (struct constraint[]){limit_c("rack", 5)};
	r = place(c, &j, 16, 0, 0);
	CHECK(r.placed == 15);
	CHECK(tasks_on(&r, 16, 0) == 0);
	CHECK_STR(r.reason, "limit constraint rack:limit:5 on 4 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

TEST(host_limit_one_per_host_rest_unplaced)
{
	struct cluster *c = cluster_new(5, 1, 16, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	j.task.constraints = (struct constraint[]){limit_c("host", 1)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 8, 0, 0);
	CHECK(r.placed == 5);
	for (int i = 0; i < 5; i++)
		CHECK(c->nodes[i].job_tasks == 1 && tasks_on(&r, 8, i) == 1);
	for (int t = 5; t < 8; t++)
		CHECK(r.node_index[t] == -1);
	CHECK_STR(r.reason, "limit constraint host:limit:1 on 5 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

TEST(host_limit_counts_existing_tasks)
{
	struct cluster *c = cluster_new(4, 1, 16, 64 * GiB);
	c->nodes[0].job_tasks = 2;
	c->nodes[2].job_tasks = 1;
	struct job_spec j = job_new(1, 1 * GiB);
	j.task.constraints = (struct constraint[]){limit_c("host", 2)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 10, 0, 0);
	CHECK(r.placed == 5);
	CHECK(tasks_on(&r, 10, 0) == 0 && tasks_on(&r, 10, 2) == 1);
	CHECK_STR(r.reason, "limit constraint host:limit:2 on 4 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

TEST(rack_limit_two_across_racks)
{
	/* 3 racks of 4 nodes; rack r1 already holds one task, on a drained node */
	struct cluster *c = cluster_new(12, 4, 16, 64 * GiB);
	c->nodes[5].job_tasks = 1;
	c->nodes[5].schedulable = false;
	struct job_spec j = job_new(1, 1 * GiB);
	j.task.constraints = (struct constraint[]){limit_c("rack", 2)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 10, 0, 0);
	CHECK(r.placed == 5);
	size_t per_rack[3] = {0};
	for (size_t t = 0; t < r.placed; t++)
		per_rack[r.node_index[t] / 4]++;
	CHECK(per_rack[0] == 2 && per_rack[1] == 1 && per_rack[2] == 2);
	CHECK_STR(r.reason, "node not schedulable (draining or down) on 1 node; "
			    "limit constraint rack:limit:2 on 11 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

TEST(rack_limit_with_spread_and_value)
{
	struct cluster *c = cluster_new(60, 6, 16, 64 * GiB); /* 10 racks */
	struct job_spec j = job_new(1, 1 * GiB);
	j.placement = PLACE_SPREAD;
	j.task.constraints = (struct constraint[]){
	    limit_c("rack", 3), value_c("rack", true, (char *[]){"r0"}, 1), limit_c("host", 1)};
	j.task.nconstraints = 3;
	struct placement_result r = place(c, &j, 40, 0, 0);
	CHECK(r.placed == 27);
	size_t per_rack[10] = {0};
	for (size_t t = 0; t < r.placed; t++)
		per_rack[r.node_index[t] / 6]++;
	CHECK(per_rack[0] == 0);
	for (int k = 1; k < 10; k++)
		CHECK(per_rack[k] == 3);
	for (int i = 0; i < 60; i++)
		CHECK(c->nodes[i].job_tasks <= 1);
	/* every rack is full, and the rack limit is checked before the host one */
	CHECK_STR(r.reason, "value constraint rack:!r0 on 6 nodes; "
			    "limit constraint rack:limit:3 on 54 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

TEST(drained_nodes_never_get_tasks)
{
	struct cluster *c = cluster_new(6, 1, 16, 64 * GiB);
	c->nodes[0].schedulable = false;
	c->nodes[2].schedulable = false;
	c->nodes[4].schedulable = false;
	struct job_spec j = job_new(4, 1 * GiB);
	for (size_t sample = 0; sample < 3; sample += 2) {
		struct placement_result r = place(c, &j, 20, sample, 0);
		for (size_t t = 0; t < r.placed; t++)
			CHECK(r.node_index[t] % 2 == 1);
		placement_result_release(&r);
	}
	CHECK(c->nodes[0].job_tasks == 0 && c->nodes[2].job_tasks == 0);
	CHECK(c->nodes[0].cpu_free == 16);
	cluster_free(c);

	c = cluster_new(3, 1, 16, 64 * GiB);
	for (int i = 0; i < 3; i++)
		c->nodes[i].schedulable = false;
	struct placement_result r = place(c, &j, 1, 0, 0);
	CHECK_STR(r.reason, "node not schedulable (draining or down) on 3 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

/* ---- reasons ---- */

TEST(reason_counts_with_thousands_separators)
{
	struct cluster *c = cluster_new(10000, 100, 16, 1 * GiB);
	c->nodes[17].mem_free = 64 * GiB;
	c->nodes[9000].mem_free = 64 * GiB;
	struct job_spec j = job_new(0.5, 2 * GiB);
	j.task.constraints = (struct constraint[]){limit_c("host", 1)};
	j.task.nconstraints = 1;
	for (size_t sample = 0; sample <= 64; sample += 64) {
		struct placement_result r = place(c, &j, 100, sample, 123);
		CHECK(r.placed == (sample ? 0 : 2));
		CHECK_STR(r.reason, "insufficient memory on 9,998 nodes; "
				    "limit constraint host:limit:1 on 2 nodes");
		placement_result_release(&r);
	}
	cluster_free(c);
}

TEST(reason_first_failing_check_in_fixed_order)
{
	struct cluster *c = cluster_new(6, 1, 1, 1 * GiB);
	c->nodes[0].schedulable = false;
	c->nodes[0].cpu_free = 0; /* not schedulable comes first */
	c->nodes[1].cpu_free = 0;
	c->nodes[1].mem_free = 0; /* cpu comes before memory */
	c->nodes[2].mem_free = 0;
	c->nodes[3].disk_free = 0;
	c->nodes[3].ports_free = 0; /* disk before ports */
	c->nodes[4].ports_free = 0;
	c->nodes[5].job_tasks = 1; /* limit last */
	struct job_spec j = job_new(1, 1 * GiB);
	j.task.resources.disk = 1;
	char *ports[] = {"http"};
	j.task.resources.ports = ports;
	j.task.resources.nports = 1;
	j.task.constraints = (struct constraint[]){limit_c("host", 1)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 1, 0, 0);
	CHECK_STR(r.reason, "node not schedulable (draining or down) on 1 node; "
			    "insufficient cpu on 1 node; insufficient memory on 1 node; "
			    "insufficient disk on 1 node; insufficient ports on 1 node; "
			    "limit constraint host:limit:1 on 1 node");
	placement_result_release(&r);
	cluster_free(c);
}

/* ---- sampling ---- */

TEST(sampling_respects_constraints)
{
	/* 1,200 tasks * 2 samples < 3,000 nodes: the sampled path */
	struct cluster *c = cluster_new(3000, 10, 16, 64 * GiB);
	struct job_spec j = job_new(0.5, 1 * GiB);
	j.task.constraints =
	    (struct constraint[]){limit_c("host", 1), value_c("zone", false, (char *[]){"a"}, 1)};
	j.task.nconstraints = 2;
	struct placement_result r = place(c, &j, 1200, 2, 500);
	CHECK(r.placed == 1000);
	for (size_t t = 0; t < r.placed; t++)
		CHECK(r.node_index[t] % 3 == 0);
	for (size_t i = 0; i < 3000; i++)
		CHECK(c->nodes[i].job_tasks == (i % 3 == 0));
	CHECK(r.node_index[1000] == -1 && r.node_index[1199] == -1);
	CHECK_STR(r.reason, "value constraint zone:a on 2,000 nodes; "
			    "limit constraint host:limit:1 on 1,000 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

TEST(sampling_rack_limit)
{
	struct cluster *c = cluster_new(2000, 20, 16, 64 * GiB); /* 100 racks */
	struct job_spec j = job_new(0.1, 64 * MiB);
	j.placement = PLACE_SPREAD;
	j.task.constraints = (struct constraint[]){limit_c("rack", 2)};
	j.task.nconstraints = 1;
	struct placement_result r = place(c, &j, 250, 4, 7); /* 1,000 < 2,000: sampled */
	CHECK(r.placed == 200);
	size_t per_rack[100] = {0};
	for (size_t t = 0; t < r.placed; t++)
		per_rack[r.node_index[t] / 20]++;
	for (int k = 0; k < 100; k++)
		CHECK(per_rack[k] == 2);
	CHECK_STR(r.reason, "limit constraint rack:limit:2 on 2,000 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

TEST(sampling_binpack_still_fills_nodes)
{
	/* room for 10 per node; a window of 4 must not scatter 30 tasks */
	struct cluster *c = cluster_new(200, 10, 10, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	struct placement_result r = place(c, &j, 30, 4, 0);
	CHECK(r.placed == 30);
	size_t used = 0;
	for (int i = 0; i < 200; i++)
		used += c->nodes[i].job_tasks > 0;
	CHECK(used == 3);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(sampling_spread_is_even)
{
	struct cluster *c = cluster_new(1000, 10, 16, 64 * GiB);
	c->nodes[4].job_tasks = 1;
	struct job_spec j = job_new(0.1, 64 * MiB);
	j.placement = PLACE_SPREAD;
	struct placement_result r = place(c, &j, 240, 4, 0);
	CHECK(r.placed == 240);
	/* every window holds an empty node: no node gets a second task */
	for (int i = 0; i < 1000; i++)
		CHECK(c->nodes[i].job_tasks <= 1);
	CHECK(tasks_on(&r, 240, 4) == 0);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(sampling_continues_where_the_last_scan_stopped)
{
	struct cluster *c = cluster_new(100, 10, 16, 64 * GiB);
	struct job_spec j = job_new(0.1, 64 * MiB);
	j.placement = PLACE_SPREAD;
	/* each task scores the next 5 nodes: task t lands in window t */
	struct placement_result r = place(c, &j, 3, 5, 40);
	CHECK(r.node_index[0] == 40 && r.node_index[1] == 45 && r.node_index[2] == 50);
	CHECK(r.next_offset == 55);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(sampling_stops_when_nothing_fits)
{
	struct cluster *c = cluster_new(5000, 50, 16, 64 * MiB);
	struct job_spec j = job_new(0.1, 128 * MiB);
	/* 50 tasks: sampled; 100,000: exact. Both give up after one pass. */
	struct placement_result r = place(c, &j, 50, 64, 0);
	CHECK(r.placed == 0);
	CHECK(r.node_index[49] == -1);
	CHECK_STR(r.reason, "insufficient memory on 5,000 nodes");
	placement_result_release(&r);
	r = place(c, &j, 100000, 64, 0);
	CHECK(r.placed == 0);
	CHECK(r.node_index[99999] == -1);
	CHECK_STR(r.reason, "insufficient memory on 5,000 nodes");
	placement_result_release(&r);
	cluster_free(c);
}

/* The exact mode (a heap) against a brute-force O(count * n) scan of the
 * documented rules, on random clusters with limits, values and drains. */
static double headroom(const struct placement_node *nd, const struct resources *res)
{
	double h = 1e300, v;
	v = (nd->cpu_free - res->cpu) / res->cpu;
	h = v < h ? v : h;
	v = (double)(nd->mem_free - res->memory) / (double)res->memory;
	h = v < h ? v : h;
	return h;
}

static const char *attr_of(const struct placement_node *nd, const char *k)
{
	for (size_t a = 0; a < nd->nattributes; a++)
		if (!strcmp(nd->attributes[a].key, k))
			return nd->attributes[a].value;
	return NULL;
}

/* The rules for the constraints used below: rack limit:3, zone !c. */
static bool brute_feasible(const struct placement_node *nodes, size_t n, const struct job_spec *j,
			   size_t i)
{
	const struct resources *res = &j->task.resources;
	const struct placement_node *nd = &nodes[i];
	if (!nd->schedulable || nd->cpu_free + 1e-9 < res->cpu || nd->mem_free < res->memory)
		return false;
	if (!strcmp(attr_of(nd, "zone"), "c"))
		return false;
	uint32_t inrack = 0;
	for (size_t o = 0; o < n; o++)
		if (!strcmp(attr_of(&nodes[o], "rack"), attr_of(nd, "rack")))
			inrack += nodes[o].job_tasks;
	return inrack < 3;
}

static void brute_place(struct placement_node *nd, const struct job_spec *j)
{
	nd->cpu_free -= j->task.resources.cpu;
	if (nd->cpu_free < 0)
		nd->cpu_free = 0;
	nd->mem_free -= j->task.resources.memory;
	nd->job_tasks++;
}

static int brute_pick(struct placement_node *nodes, size_t n, const struct job_spec *j,
		      size_t start)
{
	const struct resources *res = &j->task.resources;
	int best = -1;
	double bsec = 0;
	uint32_t bprim = 0;
	for (size_t p = 0; p < n; p++) {
		size_t i = (start + p) % n;
		struct placement_node *nd = &nodes[i];
		if (!brute_feasible(nodes, n, j, i))
			continue;
		double h = headroom(nd, res);
		uint32_t prim = j->placement == PLACE_SPREAD ? nd->job_tasks : 0;
		double sec = j->placement == PLACE_SPREAD ? -h : h;
		if (best < 0 || prim < bprim || (prim == bprim && sec < bsec))
			best = (int)i, bprim = prim, bsec = sec;
	}
	return best;
}

/* Random free resources, drains and existing tasks, the same for every
 * cluster built from one seed. */
static void randomise(struct cluster *c, unsigned seed)
{
	for (size_t i = 0; i < c->n; i++) {
		seed = seed * 1103515245 + 12345;
		c->nodes[i].cpu_free = (double)(seed >> 16 & 7) * 0.5;
		c->nodes[i].mem_free = (uint64_t)(seed >> 8 & 15) * 512 * MiB;
		c->nodes[i].schedulable = (seed >> 4 & 7) != 0;
		c->nodes[i].job_tasks = (seed >> 20 & 3) == 0;
	}
}

TEST(exact_mode_matches_brute_force)
{
	int full = 0, partial = 0; /* both cases must occur */
	for (unsigned round = 0; round < 40; round++) {
		size_t n = 30 + round;
		struct cluster *a = cluster_new(n, 4, 4, 8 * GiB);
		struct cluster *b = cluster_new(n, 4, 4, 8 * GiB);
		randomise(a, round);
		randomise(b, round);
		struct job_spec j = job_new(0.5, 512 * MiB);
		j.placement = round % 2 ? PLACE_SPREAD : PLACE_BINPACK;
		j.task.constraints = (struct constraint[]){
		    limit_c("rack", 3), value_c("zone", true, (char *[]){"c"}, 1)};
		j.task.nconstraints = 2;
		size_t start = round * 7 % n, count = 5 + round;
		struct placement_result r = place(a, &j, count, 0, start);
		size_t placed = 0;
		for (size_t t = 0; t < count; t++) {
			int want = brute_pick(b->nodes, n, &j, start);
			CHECK(r.node_index[t] == want);
			if (want < 0)
				break;
			placed++;
			brute_place(&b->nodes[want], &j);
		}
		CHECK(r.placed == placed);
		CHECK((r.reason == NULL) == (placed == count));
		full += placed == count;
		partial += placed > 0 && placed < count;
		placement_result_release(&r);
		cluster_free(a);
		cluster_free(b);
		if (unit_failures)
			break;
	}
	CHECK(full > 0 && partial > 0);
}

TEST(sampled_mode_follows_the_rules)
{
	/* Sampling is not exact, but every pick must be feasible and it may
	 * only give up when nothing is. */
	int full = 0, partial = 0;
	for (unsigned round = 0; round < 40; round++) {
		/* count * 2 samples < n: the sampled path */
		size_t n = 200 + 5 * round;
		struct cluster *a = cluster_new(n, 4, 4, 8 * GiB);
		struct cluster *b = cluster_new(n, 4, 4, 8 * GiB);
		randomise(a, round);
		randomise(b, round);
		struct job_spec j = job_new(0.5, 512 * MiB);
		j.placement = round % 2 ? PLACE_SPREAD : PLACE_BINPACK;
		j.task.constraints = (struct constraint[]){
		    limit_c("rack", 3), value_c("zone", true, (char *[]){"c"}, 1)};
		j.task.nconstraints = 2;
		size_t count = round < 20 ? 20 + round : (n - 1) / 2;
		struct placement_result r = place(a, &j, count, 2, round);
		for (size_t t = 0; t < r.placed; t++) {
			int i = r.node_index[t];
			CHECK(i >= 0 && brute_feasible(b->nodes, n, &j, (size_t)i));
			if (i >= 0)
				brute_place(&b->nodes[i], &j);
		}
		for (size_t t = r.placed; t < count; t++)
			CHECK(r.node_index[t] == -1);
		if (r.placed < count)
			CHECK(brute_pick(b->nodes, n, &j, 0) == -1);
		full += r.placed == count;
		partial += r.placed > 0 && r.placed < count;
		for (size_t i = 0; i < n; i++)
			CHECK(a->nodes[i].job_tasks == b->nodes[i].job_tasks &&
			      a->nodes[i].mem_free == b->nodes[i].mem_free);
		placement_result_release(&r);
		cluster_free(a);
		cluster_free(b);
		if (unit_failures)
			break;
	}
	CHECK(full > 0 && partial > 0);
}

TEST(sampling_sees_every_live_node_when_few_are)
{
	/* 50 schedulable nodes of 1,000 and a sample of 60: each window covers
	 * every live node, so sampling gives the exact answer. */
	struct job_spec j = job_new(0.5, 1 * GiB);
	j.placement = PLACE_SPREAD;
	j.task.constraints = (struct constraint[]){limit_c("rack", 4)};
	j.task.nconstraints = 1;
	struct cluster *a = cluster_new(1000, 5, 4, 8 * GiB);
	struct cluster *b = cluster_new(1000, 5, 4, 8 * GiB);
	for (int i = 0; i < 1000; i++)
		a->nodes[i].schedulable = b->nodes[i].schedulable = i % 20 == 3;
	for (int i = 3; i < 1000; i += 140)
		a->nodes[i].cpu_free = b->nodes[i].cpu_free = 1;
	struct placement_result r1 = place(a, &j, 15, 0, 11);
	struct placement_result r2 = place(b, &j, 15, 60, 11); /* 15 * 60 < 1,000 */
	CHECK(r1.placed == 15 && r2.placed == 15);
	CHECK(!memcmp(r1.node_index, r2.node_index, 15 * sizeof(int)));
	placement_result_release(&r1);
	placement_result_release(&r2);
	cluster_free(a);
	cluster_free(b);
}

/* A job on the docker or oci driver goes only where the agent offers it
 * (the node attribute driver.NAME: "true"); exec runs everywhere. */
TEST(driver_must_be_offered)
{
	struct cluster *c = cluster_new(3, 1, 2, 64 * GiB);
	c->attrs[3 * 1 + 2] = (struct spec_kv){"driver.docker", "true"};
	struct job_spec j = job_new(1, 1 * GiB);
	j.task.driver = DRIVER_DOCKER;
	struct placement_result r = place(c, &j, 3, 0, 0);
	CHECK(r.placed == 2);
	for (size_t t = 0; t < r.placed; t++)
		CHECK(r.node_index[t] == 1);
	CHECK_STR(r.reason, "driver docker not offered on 2 nodes; insufficient cpu on 1 node");
	placement_result_release(&r);
	j.task.driver = DRIVER_OCI;
	r = place(c, &j, 1, 0, 0);
	CHECK(r.placed == 0);
	CHECK_STR(r.reason, "driver oci not offered on 3 nodes");
	placement_result_release(&r);
	j.task.driver = DRIVER_EXEC;
	r = place(c, &j, 2, 0, 0);
	CHECK(r.placed == 2);
	placement_result_release(&r);
	cluster_free(c);
}

/* ---- task.prefer (soft constraints) ---- */

static struct preference pref_c(struct constraint c, int weight)
{
	return (struct preference){.c = c, .weight = weight};
}

static int rack_of(int node, int per_rack)
{
	return node / per_rack;
}

TEST(prefer_lands_on_matching_nodes_while_they_fit)
{
	for (size_t sample = 0; sample <= 2; sample += 2) {
		/* 10 nodes, 2 per rack; each takes 2 tasks. */
		struct cluster *c = cluster_new(10, 2, 2, 64 * GiB);
		struct job_spec j = job_new(1, 1 * GiB);
		j.task.prefer =
		    (struct preference[]){pref_c(value_c("rack", false, (char *[]){"r3"}, 1), 50)};
		j.task.nprefer = 1;
		struct placement_result r = place(c, &j, 7, sample, 0);
		CHECK(r.placed == 7);
		/* The 4 slots of rack r3 (nodes 6 and 7) first, then elsewhere. */
		for (size_t t = 0; t < 4; t++)
			CHECK(rack_of(r.node_index[t], 2) == 3);
		for (size_t t = 4; t < 7; t++)
			CHECK(rack_of(r.node_index[t], 2) != 3);
		CHECK(r.reason == NULL);
		placement_result_release(&r);
		cluster_free(c);
	}
}

TEST(prefer_still_places_when_none_match)
{
	struct cluster *a = cluster_new(6, 2, 2, 64 * GiB), *b = cluster_new(6, 2, 2, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	struct placement_result ra = place(a, &j, 12, 0, 0);
	j.task.prefer =
	    (struct preference[]){pref_c(value_c("rack", false, (char *[]){"r9"}, 1), 50),
				  pref_c(value_c("gpu", false, (char *[]){"yes"}, 1), 20)};
	j.task.nprefer = 2;
	struct placement_result rb = place(b, &j, 13, 0, 0);
	/* Nothing matches: the same nodes as without preferences, and one more
	 * task than fits is refused for lack of room, not for the preference. */
	CHECK(ra.placed == 12 && rb.placed == 12);
	for (size_t t = 0; t < 12; t++)
		CHECK(ra.node_index[t] == rb.node_index[t]);
	CHECK_STR(rb.reason, "insufficient cpu on 6 nodes");
	placement_result_release(&ra);
	placement_result_release(&rb);
	cluster_free(a);
	cluster_free(b);
}

TEST(prefer_weights_add_and_compare)
{
	/* 10 nodes, 2 per rack, zones a,b,c by i % 3; one task per node.
	 * rack r1 = nodes 2, 3; zone a = nodes 0, 3, 6, 9. */
	struct cluster *c = cluster_new(10, 2, 1, 64 * GiB);
	struct job_spec j = job_new(1, 1 * GiB);
	j.task.prefer =
	    (struct preference[]){pref_c(value_c("rack", false, (char *[]){"r1"}, 1), 10),
				  pref_c(value_c("zone", false, (char *[]){"a"}, 1), 50),
				  pref_c(value_c("zone", true, (char *[]){"c"}, 1), 1)};
	j.task.nprefer = 3;
	struct placement_result r = place(c, &j, 10, 0, 0);
	CHECK(r.placed == 10);
	/* n3: 10 + 50 + 1; n0, n6, n9: 50 + 1; n2 (zone c): 10; then the
	 * zone-b nodes (1) before the zone-c ones (0). */
	int want[] = {3, 0, 6, 9, 2, 1, 4, 7, 5, 8};
	for (size_t t = 0; t < 10; t++)
		CHECK(r.node_index[t] == want[t]);
	placement_result_release(&r);
	cluster_free(c);
}

TEST(prefer_limit_spreads_over_racks_without_refusing)
{
	for (size_t sample = 0; sample <= 3; sample += 3) {
		/* 5 racks of 2 nodes, 4 tasks per node; rack r0 already holds
		 * one task. Binpack alone would fill node after node. */
		struct cluster *c = cluster_new(10, 2, 4, 64 * GiB);
		c->nodes[1].job_tasks = 1;
		struct job_spec j = job_new(1, 1 * GiB);
		j.task.prefer = (struct preference[]){pref_c(limit_c("rack", 1), 50),
						      pref_c(limit_c("host", 2), 5)};
		j.task.nprefer = 2;
		struct placement_result r = place(c, &j, 39, sample, 0);
		CHECK(r.placed == 39); /* 40 slots, one taken */
		/* Racks r1..r4 first, one task each. */
		bool seen[5] = {false};
		for (size_t t = 0; t < 4; t++) {
			int rk = rack_of(r.node_index[t], 2);
			CHECK(rk != 0 && !seen[rk]);
			seen[rk] = true;
		}
		/* Then host:limit:2 spreads over the nodes before any fills. */
		for (int i = 0; i < 10; i++)
			CHECK(c->nodes[i].job_tasks == 4);
		placement_result_release(&r);
		cluster_free(c);
	}
}

TEST(prefer_with_spread_and_hard_constraints)
{
	struct cluster *c = cluster_new(12, 4, 8, 64 * GiB); /* racks r0..r2 */
	struct job_spec j = job_new(1, 1 * GiB);
	j.placement = PLACE_SPREAD;
	j.task.constraints = (struct constraint[]){value_c("rack", true, (char *[]){"r0"}, 1)};
	j.task.nconstraints = 1;
	j.task.prefer =
	    (struct preference[]){pref_c(value_c("rack", false, (char *[]){"r2"}, 1), 30)};
	j.task.nprefer = 1;
	struct placement_result r = place(c, &j, 40, 0, 0);
	/* r2's 32 slots first, spread evenly over its 4 nodes; then r1; never
	 * r0 (the hard constraint). */
	CHECK(r.placed == 40);
	for (size_t t = 0; t < 32; t++)
		CHECK(rack_of(r.node_index[t], 4) == 2);
	for (size_t t = 0; t < 8; t++) {
		size_t per[4] = {0};
		for (size_t u = 0; u < 4 * (t + 1) && u < 32; u++)
			per[r.node_index[u] - 8]++;
		CHECK(per[0] == per[1] && per[1] == per[2] && per[2] == per[3]);
	}
	for (size_t t = 32; t < 40; t++)
		CHECK(rack_of(r.node_index[t], 4) == 1);
	placement_result_release(&r);
	cluster_free(c);
}

UNIT_MAIN(bridge_tasks_count_addresses, fits_exactly_in_every_dimension, no_fit_in_each_dimension,
	  cpu_fractions_add_up, ports_count_per_task, zero_count_and_no_nodes,
	  binpack_fills_one_node_before_another, binpack_prefers_the_fuller_node,
	  binpack_weighs_the_tightest_resource, spread_spreads_evenly,
	  spread_prefers_the_emptiest_on_equal_tasks,
	  ties_follow_start_offset_and_are_deterministic, value_constraint_single_value,
	  value_constraint_negated, value_constraint_multi_value_and_reason, missing_attributes,
	  host_limit_one_per_host_rest_unplaced, host_limit_counts_existing_tasks,
	  rack_limit_two_across_racks, rack_limit_with_spread_and_value,
	  drained_nodes_never_get_tasks, reason_counts_with_thousands_separators,
	  reason_first_failing_check_in_fixed_order, sampling_respects_constraints,
	  sampling_rack_limit, sampling_binpack_still_fills_nodes, sampling_spread_is_even,
	  sampling_continues_where_the_last_scan_stopped, sampling_stops_when_nothing_fits,
	  exact_mode_matches_brute_force, sampled_mode_follows_the_rules, driver_must_be_offered,
	  sampling_sees_every_live_node_when_few_are, prefer_lands_on_matching_nodes_while_they_fit,
	  prefer_still_places_when_none_match, prefer_weights_add_and_compare,
	  prefer_limit_spreads_over_racks_without_refusing, prefer_with_spread_and_hard_constraints)
