/* test_heartbeat_pace.c - heartbeats paced to the cluster's size
 * (cluster_nodes.c, pace_heartbeats): more nodes than max_heartbeats per
 * second allow at the configured heartbeat lengthen the heartbeat agents
 * are asked for and the silence that makes a node DOWN, in proportion. */
#include <string.h>

#include "core/log.h"
#include "server/cluster-internal.h"
#include "cluster_fx.h"
#include "unit.h"

static json_int_t register_reply_heartbeat(struct fx *f, const char *name)
{
	json_t *body = json_pack("{s:s,s:{s:f,s:I,s:I,s:i,s:i},s:{s:s}}", "name", name, "resources",
				 "cpu", 4.0, "memory", (json_int_t)(8 * GiB), "disk", (json_int_t)0,
				 "port_lo", 20000, "port_hi", 20999, "attributes", "host", name);
	json_t *reply = NULL;
	pthread_mutex_lock(&f->c->lock);
	cluster_agent_register(f->c, body, &reply, &f->err);
	pthread_mutex_unlock(&f->c->lock);
	json_int_t hb = json_integer_value(json_object_get(reply, "heartbeat_ms"));
	json_decref(reply);
	json_decref(body);
	return hb;
}

static const char *state_of_node(struct fx *f, const char *name)
{
	struct node *n = node_get(f, name);
	return n ? node_state_name(n->state) : "?";
}

static char *watch_reply(struct fx *f, const char *name)
{
	pthread_mutex_lock(&f->c->lock);
	char *t = cluster_node_desired_text(f->c, node_get(f, name), 0);
	pthread_mutex_unlock(&f->c->lock);
	return t;
}

TEST(heartbeat_and_down_after_grow_past_the_budget)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.heartbeat_ms = 100;
	cfg.down_after_ms = 200;
	cfg.max_heartbeats = 20; /* 2 nodes at 100 ms fill it */
	struct fx f;
	fx_setup(&f, &cfg);
	CHECK(register_reply_heartbeat(&f, "n1") == 100);
	CHECK(register_reply_heartbeat(&f, "n2") == 100);
	/* 4 nodes would send 40/s: every 200 ms instead, DOWN after 400 ms */
	CHECK(register_reply_heartbeat(&f, "n3") == 150);
	CHECK(register_reply_heartbeat(&f, "n4") == 200);
	CHECK(cluster_heartbeat_ms(f.c) == 200 && cluster_down_after_ms(f.c) == 400);
	char *t = watch_reply(&f, "n1");
	CHECK_CONTAINS(t, "\"heartbeat_ms\":200");
	free(t);
	/* Silent for 300 ms: past the configured 200, within the paced 400. */
	run_for(&f, 300);
	CHECK_STR(state_of_node(&f, "n1"), "ACTIVE");
	CHECK_STR(state_of_node(&f, "n4"), "ACTIVE");
	run_for(&f, 250);
	CHECK_STR(state_of_node(&f, "n1"), "DOWN");
	CHECK_STR(state_of_node(&f, "n4"), "DOWN");
	fx_teardown(&f);
}

TEST(no_budget_keeps_the_configured_heartbeat)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	cfg.heartbeat_ms = 100;
	cfg.down_after_ms = 200;
	cfg.max_heartbeats = 0;
	struct fx f;
	fx_setup(&f, &cfg);
	char name[16];
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof name, "n%d", i);
		CHECK(register_reply_heartbeat(&f, name) == 100);
	}
	CHECK(cluster_down_after_ms(f.c) == 200);
	run_for(&f, 350);
	CHECK_STR(state_of_node(&f, "n0"), "DOWN");
	fx_teardown(&f);
}

TEST(default_budget_leaves_small_clusters_alone_and_caps_at_10s)
{
	struct cluster_config cfg;
	cluster_config_defaults(&cfg);
	CHECK(cfg.max_heartbeats == 4000 && cfg.heartbeat_ms == 1000);
	cfg.max_heartbeats = 1; /* so that 20 nodes would want 20 s */
	struct fx f;
	fx_setup(&f, &cfg);
	char name[16];
	json_int_t hb = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "n%d", i);
		hb = register_reply_heartbeat(&f, name);
	}
	CHECK(hb == 10000);
	CHECK(cluster_down_after_ms(f.c) == 30000);
	fx_teardown(&f);
}

UNIT_MAIN(heartbeat_and_down_after_grow_past_the_budget, no_budget_keeps_the_configured_heartbeat,
	  default_budget_leaves_small_clusters_alone_and_caps_at_10s)
