/* test_preemption.c - victim selection: tier rules, fewest and lowest
 * victims, ports and addresses, no room at all, the choice over nodes. */
#include "unit.h"

#include <limits.h>

#include "sched/placement.h"
#include "sched/preemption.h"

#define MiB (1024LL * 1024)

static struct preempt_task dev(int prio, double cpu, int64_t mem)
{
	return (struct preempt_task){TIER_PREEMPTIBLE, prio, {cpu, mem, 0, 0, 0}, false};
}

static struct preempt_task prod(int prio, double cpu, int64_t mem)
{
	return (struct preempt_task){TIER_PREFERRED, prio, {cpu, mem, 0, 0, 0}, false};
}

static struct preempt_need need(enum job_tier tier, int prio, double cpu, int64_t mem)
{
	return (struct preempt_need){tier, prio, {cpu, mem, 0, 0, 0}};
}

static struct preempt_res room(double cpu, int64_t mem)
{
	return (struct preempt_res){cpu, mem, 0, 100, PREEMPT_ADDRS_ANY};
}

TEST(tier_rules)
{
	struct preempt_need p = need(TIER_PREFERRED, 0, 1, 0);
	struct preempt_need d5 = need(TIER_PREEMPTIBLE, 5, 1, 0);
	struct preempt_task dev9 = dev(9, 1, 0), dev4 = dev(4, 1, 0), dev5 = dev(5, 1, 0);
	struct preempt_task prod0 = prod(0, 1, 0);
	/* production preempts preemptible work of any priority */
	CHECK(preempt_may(&p, &dev9));
	CHECK(preempt_may(&p, &dev4));
	/* never within the production tier, whatever the priorities */
	CHECK(!preempt_may(&p, &prod0));
	struct preempt_need p100 = need(TIER_PREFERRED, 100, 1, 0);
	CHECK(!preempt_may(&p100, &prod0));
	/* preemptible: strictly lower priority only */
	CHECK(preempt_may(&d5, &dev4));
	CHECK(!preempt_may(&d5, &dev5));
	CHECK(!preempt_may(&d5, &dev9));
	CHECK(!preempt_may(&d5, &prod0));
}

TEST(no_ping_pong_and_no_cascade)
{
	/* For every pair of ranks: if a may preempt b, b may not preempt a,
	 * and nothing b may preempt ranks at or above a. */
	for (int ta = 0; ta < 2; ta++)
		for (int pa = 0; pa < 4; pa++)
			for (int tb = 0; tb < 2; tb++)
				for (int pb = 0; pb < 4; pb++) {
					struct preempt_need a = need(ta, pa, 1, 0);
					struct preempt_need b = need(tb, pb, 1, 0);
					struct preempt_task ta_ = {ta, pa, {1, 0, 0, 0, 0}, 0};
					struct preempt_task tb_ = {tb, pb, {1, 0, 0, 0, 0}, 0};
					if (preempt_may(&a, &tb_))
						CHECK(!preempt_may(&b, &ta_));
				}
}

TEST(fits_already_no_victims)
{
	struct preempt_task ts[] = {dev(0, 1, 0)};
	struct preempt_node nd = {room(1, 0), ts, 1};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	size_t v[2];
	struct preempt_cost cost;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 0);
	CHECK(cost.nvictims == 0);
}

TEST(lowest_priority_first)
{
	struct preempt_task ts[] = {dev(7, 1, 0), dev(2, 1, 0), dev(5, 1, 0)};
	struct preempt_node nd = {room(0, 0), ts, 3};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	size_t v[3];
	struct preempt_cost cost;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 1);
	CHECK(v[0] == 1);
	CHECK(cost.max_priority == 2);
	/* two needed: the two lowest */
	n.res.cpu = 2;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 2);
	CHECK((v[0] == 1 && v[1] == 2) || (v[0] == 2 && v[1] == 1));
}

TEST(fewest_victims_on_a_node)
{
	/* one big task of priority 0 beats four small ones of the same priority */
	struct preempt_task ts[] = {dev(0, 0.25, 0), dev(0, 0.25, 0), dev(0, 1, 0), dev(0, 0.25, 0),
				    dev(0, 0.25, 0)};
	struct preempt_node nd = {room(0, 0), ts, 5};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	size_t v[5];
	struct preempt_cost cost;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 1);
	CHECK(v[0] == 2);
}

TEST(redundant_victims_are_dropped)
{
	/* lowest first takes the 0.5 of priority 0, then needs more: the big
	 * one of priority 1 alone is enough, so the first is spared. */
	struct preempt_task ts[] = {dev(0, 0.5, 0), dev(1, 1, 0)};
	struct preempt_node nd = {room(0, 0), ts, 2};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	size_t v[2];
	struct preempt_cost cost;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 1);
	CHECK(v[0] == 1);
}

TEST(no_victims_when_nothing_makes_room)
{
	/* all eligible tasks together free 1.5 of the 2 cpus needed */
	struct preempt_task ts[] = {dev(0, 1, 0), dev(0, 0.5, 0), prod(0, 4, 0)};
	struct preempt_node nd = {room(0, 0), ts, 3};
	struct preempt_need n = need(TIER_PREFERRED, 0, 2, 0);
	size_t v[3];
	struct preempt_cost cost;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == -1);
	/* preemptible preemptor: only lower priorities count */
	struct preempt_task ts2[] = {dev(3, 1, 0), dev(1, 1, 0)};
	struct preempt_node nd2 = {room(0, 0), ts2, 2};
	struct preempt_need d = need(TIER_PREEMPTIBLE, 3, 2, 0);
	CHECK(preempt_select_node(&d, &nd2, v, &cost) == -1);
	d.priority = 4;
	CHECK(preempt_select_node(&d, &nd2, v, &cost) == 2);
}

TEST(taken_tasks_are_not_victims_again)
{
	struct preempt_task ts[] = {dev(0, 1, 0), dev(0, 1, 0)};
	ts[0].taken = true;
	struct preempt_node nd = {room(0, 0), ts, 2};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	size_t v[2];
	struct preempt_cost cost;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 1);
	CHECK(v[0] == 1);
	ts[1].taken = true;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == -1);
}

TEST(memory_counts)
{
	struct preempt_task ts[] = {dev(0, 0.1, 512 * MiB), dev(1, 0.1, 2048 * MiB)};
	struct preempt_node nd = {room(4, 256 * MiB), ts, 2};
	struct preempt_need n = need(TIER_PREFERRED, 0, 0.1, 1024 * MiB);
	size_t v[2];
	struct preempt_cost cost;
	/* 256 + 512 < 1024: the priority-0 task alone is not enough */
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 1);
	CHECK(v[0] == 1);
}

TEST(ports_are_counted)
{
	struct preempt_task ts[] = {dev(0, 0.1, 0), dev(1, 0.1, 0)};
	ts[1].res.ports = 2;
	struct preempt_node nd = {room(4, 0), ts, 2};
	nd.room.ports = 0;
	struct preempt_need n = need(TIER_PREFERRED, 0, 0.1, 0);
	n.res.ports = 2;
	size_t v[2];
	struct preempt_cost cost;
	/* cpu is plenty: only the task holding ports frees what is missing */
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 1);
	CHECK(v[0] == 1);
	n.res.ports = 3;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == -1);
}

TEST(addresses_are_counted)
{
	struct preempt_task ts[] = {dev(0, 0.1, 0), dev(1, 0.1, 0)};
	ts[1].res.addrs = 1; /* a bridge task holds an address of the subnet */
	struct preempt_node nd = {room(4, 0), ts, 2};
	nd.room.addrs = 0;
	struct preempt_need n = need(TIER_PREFERRED, 0, 0.1, 0);
	n.res.addrs = 1;
	size_t v[2];
	struct preempt_cost cost;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 1);
	CHECK(v[0] == 1);
	/* a host-network preemptor needs no address */
	n.res.addrs = 0;
	CHECK(preempt_select_node(&n, &nd, v, &cost) == 0);
}

struct nodes {
	struct preempt_node *n;
	bool *skip;
};

static const struct preempt_node *get(void *ctx, size_t i)
{
	struct nodes *ns = ctx;
	return ns->skip && ns->skip[i] ? NULL : &ns->n[i];
}

TEST(choose_prefers_lowest_priority_then_fewest)
{
	struct preempt_task a[] = {dev(5, 1, 0)};		    /* 1 victim, priority 5 */
	struct preempt_task b[] = {dev(1, 0.5, 0), dev(1, 0.5, 0)}; /* 2 victims, priority 1 */
	struct preempt_task c[] = {dev(1, 1, 0), dev(1, 0.5, 0)};   /* 1 victim, priority 1 */
	struct preempt_node ns[] = {{room(0, 0), a, 1}, {room(0, 0), b, 2}, {room(0, 0), c, 2}};
	struct nodes ctx = {ns, NULL};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	struct preempt_result r;
	CHECK(preempt_choose(&n, 3, get, &ctx, 0, 0, &r) == 0);
	CHECK(r.node == 2);
	CHECK(r.nvictims == 1 && r.victims[0] == 0);
	CHECK(r.visited == 3);
	preempt_result_release(&r);
	/* without node c: lowest priority beats fewest */
	bool skip[] = {false, false, true};
	ctx.skip = skip;
	CHECK(preempt_choose(&n, 3, get, &ctx, 0, 0, &r) == 0);
	CHECK(r.node == 1);
	CHECK(r.nvictims == 2);
	CHECK(r.cost.max_priority == 1);
	preempt_result_release(&r);
}

TEST(choose_none_when_no_node_makes_room)
{
	struct preempt_task a[] = {prod(0, 8, 0)};
	struct preempt_task b[] = {dev(9, 1, 0)};
	struct preempt_node ns[] = {{room(0, 0), a, 1}, {room(0, 0), b, 1}};
	struct nodes ctx = {ns, NULL};
	/* a preemptible task of priority 9 may not preempt b's priority 9 */
	struct preempt_need n = need(TIER_PREEMPTIBLE, 9, 1, 0);
	struct preempt_result r;
	CHECK(preempt_choose(&n, 2, get, &ctx, 1, 0, &r) == -1);
	CHECK(r.node == -1);
	CHECK(r.nvictims == 0);
	preempt_result_release(&r);
}

TEST(choose_waits_for_room_without_victims)
{
	struct preempt_task a[] = {dev(0, 1, 0)};
	struct preempt_node ns[] = {{room(0, 0), a, 1}, {room(1, 0), a, 1}};
	struct nodes ctx = {ns, NULL};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	struct preempt_result r;
	CHECK(preempt_choose(&n, 2, get, &ctx, 0, 0, &r) == 0);
	CHECK(r.node == 1 && r.nvictims == 0);
	preempt_result_release(&r);
}

TEST(choose_sample_bounds_the_scan)
{
	struct preempt_task a[] = {dev(0, 1, 0)};
	struct preempt_node ns[8];
	for (int i = 0; i < 8; i++)
		ns[i] = (struct preempt_node){room(0, 0), a, 1};
	struct nodes ctx = {ns, NULL};
	struct preempt_need n = need(TIER_PREFERRED, 0, 1, 0);
	struct preempt_result r;
	CHECK(preempt_choose(&n, 8, get, &ctx, 6, 2, &r) == 0);
	CHECK(r.visited == 2);
	CHECK(r.node == 6); /* ties: the first in scan order */
	CHECK(r.next == 0); /* stopped after node 7 */
	preempt_result_release(&r);
}

TEST(eligible_nodes_ignore_resources_only)
{
	/* n0 fine but full, n1 draining, n2 in the wrong zone, n3 holds a task
	 * of the job already (host limit 1). */
	struct spec_kv attrs[4][2] = {
	    {{"host", "n0"}, {"zone", "a"}},
	    {{"host", "n1"}, {"zone", "a"}},
	    {{"host", "n2"}, {"zone", "b"}},
	    {{"host", "n3"}, {"zone", "a"}},
	};
	struct placement_node nodes[4];
	for (int i = 0; i < 4; i++)
		nodes[i] = (struct placement_node){.name = attrs[i][0].value,
						   .schedulable = i != 1,
						   .attributes = attrs[i],
						   .nattributes = 2,
						   .cpu_free = 0,
						   .job_tasks = i == 3};
	struct constraint cs[2] = {
	    {.attribute = "zone",
	     .kind = CONSTRAINT_VALUE,
	     .values = (char *[]){"a"},
	     .nvalues = 1},
	    {.attribute = "host", .kind = CONSTRAINT_LIMIT, .limit = 1},
	};
	struct job_spec j = {0};
	j.task.resources.cpu = 1;
	j.task.constraints = cs;
	j.task.nconstraints = 2;
	bool ok[4];
	placement_eligible(nodes, 4, &j, ok);
	CHECK(ok[0]);
	CHECK(!ok[1]);
	CHECK(!ok[2]);
	CHECK(!ok[3]);
}

UNIT_MAIN(tier_rules, no_ping_pong_and_no_cascade, fits_already_no_victims, lowest_priority_first,
	  fewest_victims_on_a_node, redundant_victims_are_dropped,
	  no_victims_when_nothing_makes_room, taken_tasks_are_not_victims_again, memory_counts,
	  ports_are_counted, addresses_are_counted, choose_prefers_lowest_priority_then_fewest,
	  choose_none_when_no_node_makes_room, choose_waits_for_room_without_victims,
	  choose_sample_bounds_the_scan, eligible_nodes_ignore_resources_only)
