/* cluster_nodes.c - nodes and their agents: register, watch (heartbeat +
 * full report), status updates, desired sets, the heartbeat judge, drains,
 * the flap back-off, and taking back tasks a returning node still runs.
 *
 *   DOWN --register/watch--> ACTIVE (or DRAINING when drained by the operator)
 *   ACTIVE/DRAINING --silent past down_after--> DOWN (tasks LOST, held)
 *   DRAINING --no task left--> DRAINED
 */
#include "server/cluster-internal.h"
#include "server/logtail.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent_report.h"
#include "core/log.h"
#include "sched/ports.h"

/* A node back from DOWN keeps the tasks it ran in its desired set this
 * long at most, waiting for the full report that says which still run
 * (agents send one at least every 10 s). */
#define HELD_REPORT_MS 15000

void node_set_attrs(struct node *n, json_t *attrs)
{
	for (size_t i = 0; i < n->nattrs; i++) {
		free(n->attrs[i].key);
		free(n->attrs[i].value);
	}
	free(n->attrs);
	n->attrs = NULL;
	n->nattrs = 0;
	size_t cap = json_object_size(attrs) + 1;
	n->attrs = xcalloc(cap, sizeof *n->attrs);
	const char *k;
	json_t *v;
	bool has_host = false;
	json_object_foreach(attrs, k, v)
	{
		if (!json_is_string(v))
			continue;
		n->attrs[n->nattrs].key = xstrdup(k);
		n->attrs[n->nattrs].value = xstrdup(json_string_value(v));
		n->nattrs++;
		if (!strcmp(k, "host"))
			has_host = true;
	}
	if (!has_host) {
		n->attrs[n->nattrs].key = xstrdup("host");
		n->attrs[n->nattrs].value = xstrdup(n->name);
		n->nattrs++;
	}
}

void node_set_resources(struct node *n, json_t *res)
{
	n->cpu_total = json_number_value(json_object_get(res, "cpu"));
	n->mem_total = (uint64_t)json_integer_value(json_object_get(res, "memory"));
	n->disk_total = (uint64_t)json_integer_value(json_object_get(res, "disk"));
	int lo = (int)json_integer_value(json_object_get(res, "port_lo"));
	int hi = (int)json_integer_value(json_object_get(res, "port_hi"));
	if (lo > 0 && hi >= lo && hi < 65536 && (lo != n->port_lo || hi != n->port_hi)) {
		struct port_pool *p = port_pool_new(lo, hi);
		/* Keep the ports of tasks already here. */
		size_t it = 0;
		void *v;
		while (hmap_next(&n->tasks, &it, NULL, &v)) {
			const char *k;
			json_t *pv;
			json_object_foreach(((struct task *)v)->ports, k, pv)
			    port_pool_reserve(p, (int)json_integer_value(pv));
		}
		port_pool_free(n->ports);
		n->ports = p;
		n->port_lo = lo;
		n->port_hi = hi;
	}
}

static bool node_holds(const struct node *n, const char *id);
static void node_drop_held(struct cluster *c, struct node *n);
static void node_prune_held(struct cluster *c, struct node *n);

/* A node back from DOWN flapped: no new placements on it for a back-off
 * that doubles per flap, forgotten once it stayed up for flap_stable_ms. */
static void node_flapped(struct cluster *c, struct node *n, int64_t mono)
{
	if (n->up_since_mono && n->down_mono - n->up_since_mono >= c->cfg.flap_stable_ms)
		n->flaps = 0;
	n->flaps++;
	int64_t b = c->cfg.flap_backoff_base_ms;
	for (int i = 1; i < n->flaps && b < c->cfg.flap_backoff_max_ms; i++)
		b *= 2;
	if (b > c->cfg.flap_backoff_max_ms)
		b = c->cfg.flap_backoff_max_ms;
	n->backoff_until_mono = mono + b;
	n->in_backoff = b > 0;
	log_info("node %s is up again (%s) after %.1fs DOWN; flap %d: no new tasks for %.0fs",
		 n->name, node_state_name(n->state), (double)(mono - n->down_mono) / 1000.0,
		 n->flaps, (double)b / 1000.0);
}

/* Heard from the node. Returns true when it was DOWN and is up now. */
static bool node_mark_up(struct cluster *c, struct node *n)
{
	int64_t mono = time_mono_ms();
	n->last_seen_mono = mono;
	liveness_heard(c->live, n->live, mono);
	if (n->state != NODE_DOWN)
		return false;
	c->nodes_gen++;
	n->state = n->drain_requested ? NODE_DRAINING : NODE_ACTIVE;
	if (n->down_mono)
		node_flapped(c, n, mono);
	else
		log_info("node %s is up (%s)", n->name, node_state_name(n->state));
	n->down_mono = 0;
	n->up_since_mono = mono;
	c->sched_needed = true;
	note_node(c, n, "agent heard: the node is up");
	if (n->nheld) {
		n->held_until_mono = mono + HELD_REPORT_MS;
		node_prune_held(c, n);
	}
	return true;
}

/* Apply what the agent says of task t (the one its id names, or NULL). */
static void pace_heartbeats(struct cluster *c);

static void apply_agent_task_to(struct cluster *c, struct node *n,
				const struct agent_task_report *u, struct task *t)
{
	int st = u->state;
	if (st < 0)
		return;
	/* Agents report what happened to a task; the stopping states are the
	 * server's decisions (docs/protocol.md). */
	if (st != TASK_STARTING && st != TASK_RUNNING && st != TASK_FINISHED && st != TASK_FAILED &&
	    st != TASK_KILLED && st != TASK_LOST)
		return;
	if (!t || task_state_terminal(t->state) || t->node != n)
		return; /* not wanted here: left out of the desired set, the agent kills it */
	if (u->has_address && u->address != t->address) {
		t->address = u->address;
		persist_task(c, t);
	}
	if (u->has_pid && u->pid > 0)
		t->pid = (int)u->pid;
	const char *msg = u->message;
	if (u->has_exit_code)
		t->exit_code = (int)u->exit_code;
	if ((enum task_state)st == t->state)
		return;
	/* A stale report: a watch's full report built before a status update
	 * that reached us first. A running task never starts again. */
	if (t->state == TASK_RUNNING && st == TASK_STARTING)
		return;
	if (t->state == TASK_PARTITIONED && !task_state_terminal(st)) {
		task_transition(c, t, (enum task_state)st, "agent reconnected");
		return;
	}
	if ((t->state == TASK_KILLING || t->state == TASK_RESTARTING || t->state == TASK_DRAINING ||
	     t->state == TASK_PREEMPTING) &&
	    !task_state_terminal(st))
		return; /* still stopping */
	char buf[160];
	if (!msg || !*msg) {
		/* No pid in the message (the task's pid field has it): one text
		 * per node and state, shared by all its tasks (core/intern.h),
		 * where a pid made each one unique and filled the intern table
		 * with texts that never recur. */
		if (st == TASK_RUNNING)
			snprintf(buf, sizeof buf, "running on %s", n->name);
		else
			snprintf(buf, sizeof buf, "%s on %s", task_state_name(st), n->name);
		msg = buf;
	}
	/* A task the agent ran straight to an end passes through RUNNING only
	 * when the table needs it. */
	task_transition(c, t, (enum task_state)st, msg);
	if (task_state_terminal(t->state))
		cluster_logtail_keep(c, n, t, u);
}

/* The not-yet-started replacement of a task LOST with node n, or NULL
 * when the task cannot be taken back (gone, its replacement started, the
 * job killed or changed). */
static struct task *take_back_target(struct cluster *c, struct node *n, struct task *t)
{
	if (!t || t->state != TASK_LOST || t->node != n || t->job->killed || t->no_replace)
		return NULL;
	struct job *j = t->job;
	struct task *r = (size_t)t->instance < j->nactive ? j->active[t->instance] : NULL;
	if (!task_spec_of(t) || !r || r->version != t->version ||
	    (r->state != TASK_PENDING && r->state != TASK_THROTTLED && r->state != TASK_ASSIGNED))
		return NULL;
	/* r descends from t through replacements that never ran (each placed
	 * on a node that went DOWN too before starting it, say). */
	const struct task *cur = r;
	for (int depth = 0; depth < 32 && cur->ancestor; depth++) {
		if (!strcmp(cur->ancestor, t->id))
			return r;
		cur = hmap_get(&c->tasks, cur->ancestor);
		if (!cur || cur->running_since_ms || cur->instance != t->instance)
			return NULL;
	}
	return NULL;
}

/* A task LOST with its node, reported RUNNING (or STARTING) by the node's
 * agent now that it is back: when its replacement has not started yet
 * (PENDING, THROTTLED, or ASSIGNED and not reported STARTING), the
 * replacement is cancelled and the task taken back, so the instance keeps
 * the process that runs and nothing else moves. Where the replacement
 * started already, nothing is taken back: the agent stops the old one. */
static bool task_take_back(struct cluster *c, struct node *n, struct task *t, int st)
{
	struct task *r = take_back_target(c, n, t);
	if (!r || (st != TASK_RUNNING && st != TASK_STARTING))
		return false;
	struct job *j = t->job;
	const struct job_spec *spec = task_spec_of(t);
	const struct resources *res = &spec->task.resources;
	if (n->cpu_total - n->cpu_used < res->cpu - 1e-9 ||
	    n->mem_used + res->memory > n->mem_total)
		return false;
	char msg[300];
	snprintf(msg, sizeof msg, "cancelled: %s still runs on %s, which came back", t->id,
		 n->name);
	if (!task_transition_check(r->state, TASK_KILLED))
		return false;
	/* Out of the job's history first: ending r prunes the oldest of it. */
	for (size_t e = 0; e < j->nended; e++)
		if (j->ended[e] == t) {
			memmove(j->ended + e, j->ended + e + 1,
				(j->nended - e - 1) * sizeof *j->ended);
			j->nended--;
			break;
		}
	r->no_replace = true;
	task_transition(c, r, TASK_KILLED, msg);
	/* Outside the transition table on purpose: LOST was the server's
	 * guess, and the agent's report proves it wrong. */
	enum task_state was = t->state;
	int64_t was_ms = t->nevents ? t->events[t->nevents - 1].time_ms : t->created_ms;
	t->state = (enum task_state)st;
	snprintf(msg, sizeof msg, "taken back: node %s came back and still runs it", n->name);
	task_add_event(t, t->state, msg, time_now_ms());
	note_task_state(c, t, was, was_ms, msg);
	j->active[t->instance] = t;
	j->live++;
	task_charge_node(n, t);
	node_touch(c, n);
	t->assigned_at = n->desired_version;
	persist_task(c, t);
	log_info("%s instance %d: task %s taken back on %s (replacement %s cancelled)", j->key,
		 t->instance, t->id, n->name, r->id);
	return true;
}

/* Level-triggered reconcile: the agent reports every task it holds. Tasks
 * this node should hold but the agent does not are LOST, except those
 * assigned after the desired version the agent has seen. */
static void reconcile_report(struct cluster *c, struct node *n, const struct agent_report *report,
			     uint64_t known, bool registering)
{
	/* The tasks the report names are marked (no set of ids to build): a
	 * task of this node is missing when it does not carry this report's
	 * mark. */
	uint32_t mark = ++c->report_mark;
	for (size_t i = 0; i < report->ntasks; i++) {
		const struct agent_task_report *u = &report->tasks[i];
		struct task *t = hmap_get(&c->tasks, u->id);
		if (t)
			t->report_mark = mark;
		if (n->nheld && node_holds(n, u->id))
			task_take_back(c, n, t, u->state);
		apply_agent_task_to(c, n, u, t);
	}
	struct task **missing = NULL;
	size_t nmissing = 0;
	size_t it = 0;
	void *v;
	while (hmap_next(&n->tasks, &it, NULL, &v)) {
		struct task *t = v;
		if (t->report_mark == mark)
			continue;
		if (t->state == TASK_ASSIGNED && (registering || t->assigned_at > known))
			continue; /* not delivered yet */
		missing = xrealloc(missing, (nmissing + 1) * sizeof *missing);
		missing[nmissing++] = t;
	}
	for (size_t k = 0; k < nmissing; k++) {
		struct task *t = missing[k];
		if (t->state == TASK_KILLING || t->state == TASK_RESTARTING ||
		    t->state == TASK_DRAINING || t->state == TASK_PREEMPTING)
			task_transition(c, t, TASK_KILLED, "killed (no longer on the agent)");
		else {
			char msg[300];
			snprintf(msg, sizeof msg, "task not found on agent %s", n->name);
			task_transition(c, t, TASK_LOST, msg);
		}
	}
	free(missing);
	/* The report says what runs: the held tasks not taken back go. */
	node_drop_held(c, n);
}

/* The node's IP: the host of the address its agent advertises (the address
 * it reaches the server from), "" when it has none. */
static void node_ip(const struct node *n, char *buf, size_t size)
{
	buf[0] = 0;
	const char *a = n->addr ? strstr(n->addr, "://") : NULL;
	if (!a)
		return;
	a += 3;
	size_t len = strcspn(a, ":/");
	uint32_t ip;
	char tmp[16];
	if (len >= sizeof tmp)
		return;
	memcpy(tmp, a, len);
	tmp[len] = 0;
	if (ip4_parse(tmp, &ip) == 0)
		snprintf(buf, size, "%s", tmp);
}

static int check_name(const char *name, struct berr *err)
{
	if (!name || !*name || strlen(name) > 128 || strchr(name, '/'))
		return berr_set(err, 400, "field 'name': expected a node name");
	return 0;
}

/* The registered node an agent's call names, or NULL with err set. */
static struct node *registered_node(struct cluster *c, const char *name, struct berr *err)
{
	if (check_name(name, err) < 0)
		return NULL;
	struct node *n = hmap_get(&c->nodes, name);
	if (!n)
		berr_set(err, 404, "node '%s' is not registered", name);
	return n;
}

/* Give node n a /24 of the cluster network: the lowest one no other node
 * holds. -1 with err (503) when every one is taken. */
static int node_assign_subnet(struct cluster *c, struct node *n, struct berr *err)
{
	if (n->subnet >= 0)
		return 0;
	uint32_t count = cidr_subnet_count(&c->cfg.cluster_cidr, 24);
	if (count > 1u << 16)
		count = 1u << 16;
	uint8_t *used = xcalloc(count ? count : 1, 1);
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *o = v;
		if (o->subnet >= 0 && (uint32_t)o->subnet < count)
			used[o->subnet] = 1;
	}
	uint32_t i = 0;
	while (i < count && used[i])
		i++;
	free(used);
	if (i == count) {
		char range[CIDR_TEXT_MAX];
		return berr_set(err, 503,
				"cluster network %s is exhausted: no free /24 for node '%s' "
				"(remove a node or start the server with a larger --cluster-cidr)",
				cidr_format(&c->cfg.cluster_cidr, range), n->name);
	}
	n->subnet = (int)i;
	return 0;
}

/* The cluster network as node n sees it: its subnet and every peer's. */
json_t *cluster_node_network(struct cluster *c, const char *name, struct berr *err)
{
	struct node *self = hmap_get(&c->nodes, name ? name : "");
	if (!self) {
		berr_set(err, 404, "node '%s' is not registered", name ? name : "");
		return NULL;
	}
	char buf[CIDR_TEXT_MAX];
	json_t *peers = json_array();
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		if (n == self || n->subnet < 0)
			continue;
		char ip[64] = "";
		node_ip(n, ip, sizeof ip);
		if (!*ip)
			continue;
		struct cidr sn = cidr_subnet(&c->cfg.cluster_cidr, 24, (uint32_t)n->subnet);
		json_array_append_new(peers, json_pack("{s:s,s:s,s:s}", "name", n->name, "ip", ip,
						       "subnet", cidr_format(&sn, buf)));
	}
	json_t *r =
	    json_pack("{s:I,s:s,s:o}", "version", (json_int_t)c->net_version, "cluster_cidr",
		      cidr_format(&c->cfg.cluster_cidr, buf), "peers", peers);
	if (self->subnet >= 0) {
		struct cidr sn = cidr_subnet(&c->cfg.cluster_cidr, 24, (uint32_t)self->subnet);
		json_object_set_new(r, "subnet", json_string(cidr_format(&sn, buf)));
	}
	return r;
}

uint64_t cluster_agent_register(struct cluster *c, json_t *body, json_t **reply, struct berr *err)
{
	const char *name = json_string_value(json_object_get(body, "name"));
	if (check_name(name, err) < 0)
		return 0;
	json_t *res = json_object_get(body, "resources");
	json_t *attrs = json_object_get(body, "attributes");
	json_t *report = json_object_get(body, "tasks");
	if (!json_is_object(res) || !json_is_number(json_object_get(res, "cpu")) ||
	    !json_is_integer(json_object_get(res, "memory")) ||
	    json_number_value(json_object_get(res, "cpu")) < 0 ||
	    json_integer_value(json_object_get(res, "memory")) < 0 ||
	    json_integer_value(json_object_get(res, "disk")) < 0) {
		berr_set(err, 400,
			 "field 'resources': expected {cpu, memory, disk, port_lo, port_hi}");
		return 0;
	}
	if (attrs && !json_is_object(attrs)) {
		berr_set(err, 400, "field 'attributes': expected an object of strings");
		return 0;
	}
	if (report && !json_is_array(report)) {
		berr_set(err, 400, "field 'tasks': expected an array");
		return 0;
	}
	struct node *n = hmap_get(&c->nodes, name);
	if (!n)
		n = node_new(c, name);
	/* Agents that run bridge networks ask for a subnet (simulated ones do
	 * not: ten thousand of them would exhaust any range). */
	if (json_is_true(json_object_get(body, "network")) && node_assign_subnet(c, n, err) < 0)
		return 0;
	node_set_attrs(n, attrs);
	node_set_resources(n, res);
	c->nodes_gen++;
	const char *addr = json_string_value(json_object_get(body, "addr"));
	if (!n->addr || !addr || strcmp(n->addr, addr))
		endpoints_touch(c); /* its tasks' address */
	free(n->addr);
	n->addr = xstrdup(addr);
	node_mark_up(c, n);
	if (report) {
		/* Read as a watch's report is (agent_report.h): registering is
		 * rare, one reader is enough. */
		struct agent_report *r = agent_report_from_json(body, AGENT_CALL_REGISTER, err);
		if (!r)
			return 0;
		reconcile_report(c, n, r, n->desired_version, true);
		agent_report_free(r);
	}
	node_touch(c, n); /* the agent starts from 0: it always fetches */
	persist_node(c, n);
	c->sched_needed = true;
	pace_heartbeats(c); /* this node counts from now */
	*reply = json_pack("{s:s,s:s,s:I}", "node_id", n->id, "name", n->name, "heartbeat_ms",
			   (json_int_t)cluster_heartbeat_ms(c));
	if (n->subnet >= 0) {
		char buf[CIDR_TEXT_MAX];
		struct cidr sn = cidr_subnet(&c->cfg.cluster_cidr, 24, (uint32_t)n->subnet);
		json_object_set_new(*reply, "subnet", json_string(cidr_format(&sn, buf)));
		json_object_set_new(*reply, "cluster_cidr",
				    json_string(cidr_format(&c->cfg.cluster_cidr, buf)));
	}
	log_info("node %s registered (%.1f cpu, %llu MiB)", n->name, n->cpu_total,
		 (unsigned long long)(n->mem_total >> 20));
	return cluster_touched(c);
}

uint64_t cluster_agent_watch(struct cluster *c, const struct agent_report *body,
			     struct node **node_out, struct berr *err)
{
	struct node *n = registered_node(c, body->name, err);
	if (!n)
		return 0;
	if (body->list == AGENT_LIST_NOT_ARRAY) {
		berr_set(err, 400, "field 'tasks': expected an array");
		return 0;
	}
	uint64_t changes = c->changes;
	bool came_up = node_mark_up(c, n);
	if (body->list == AGENT_LIST_ARRAY && body->has_known_version)
		reconcile_report(c, n, body, (uint64_t)body->known_version, false);
	*node_out = n;
	/* A pure heartbeat changes nothing: it must not wake the commit loop
	 * (ten thousand agents would keep it spinning, lock held). */
	if (came_up || c->changes != changes || !c->applied_seq)
		return cluster_touched(c);
	return c->applied_seq;
}

uint64_t cluster_agent_status(struct cluster *c, const struct agent_report *body, struct berr *err)
{
	struct node *n = registered_node(c, body->name, err);
	if (!n)
		return 0;
	if (body->list != AGENT_LIST_ARRAY) {
		berr_set(err, 400, "field 'updates': expected an array");
		return 0;
	}
	node_mark_up(c, n);
	for (size_t i = 0; i < body->ntasks; i++)
		apply_agent_task_to(c, n, &body->tasks[i], hmap_get(&c->tasks, body->tasks[i].id));
	return cluster_touched(c);
}

/* The task section of a version as JSON text, made once per version. */
static const char *job_version_task_text(struct job_version *jv)
{
	if (!jv->task_text)
		jv->task_text = json_dumps(json_object_get(jv->json, "task"), JSON_COMPACT);
	return jv->task_text;
}

/* One entry of a desired set: in full, or by id when the agent has it. */
static void add_desired_task(struct sbuf *sb, struct node *n, struct task *t, bool by_id,
			     bool *first)
{
	struct job_version *jv = job_version_get(t->job, t->version);
	if (!jv)
		return;
	sbuf_adds(sb, *first ? "{\"id\":" : ",{\"id\":");
	*first = false;
	sbuf_add_json_str(sb, t->id);
	if (by_id) {
		sbuf_adds(sb, "}");
		return;
	}
	sbuf_adds(sb, ",\"job\":");
	sbuf_add_json_str(sb, t->job->key);
	/* No printf here: this runs for every task of every desired set. */
	sbuf_add_int_field(sb, ",\"instance\":", t->instance);
	sbuf_add_int_field(sb, ",\"version\":", t->version);
	sbuf_adds(sb, ",\"host\":");
	sbuf_add_json_str(sb, n->name);
	if (t->ports) {
		char *p = json_dumps(t->ports, JSON_COMPACT);
		sbuf_adds(sb, ",\"ports\":");
		sbuf_adds(sb, p);
		free(p);
	} else {
		sbuf_adds(sb, ",\"ports\":{}");
	}
	sbuf_adds(sb, ",\"task\":");
	sbuf_adds(sb, job_version_task_text(jv));
	sbuf_adds(sb, "}");
}

char *cluster_node_desired_text(struct cluster *c, struct node *n, uint64_t known)
{
	/* Written as text: with thousands of agents polling this is the
	 * server's hottest path. A task's spec goes out only when the agent may
	 * not have it yet (assigned after the version it knows); the rest are
	 * listed by id, which keeps the reply level-triggered but small. */
	struct sbuf sb;
	sbuf_init(&sb);
	/* A node back from DOWN is asked for its full report (new agents send
	 * it at once; others within their 10 s), to know what it still runs. */
	const char *ask = n->nheld ? ",\"report\":true" : "";
	if (known && known == n->desired_version) {
		/* Nothing changed since the agent's version: a heartbeat answer. */
		sbuf_addf(&sb, "{\"version\":%llu,\"net\":%llu,\"heartbeat_ms\":%lld%s}",
			  (unsigned long long)n->desired_version,
			  (unsigned long long)c->net_version, (long long)cluster_heartbeat_ms(c),
			  ask);
		return sbuf_detach(&sb);
	}
	sbuf_addf(&sb, "{\"version\":%llu,\"net\":%llu,\"heartbeat_ms\":%lld,\"tasks\":[",
		  (unsigned long long)n->desired_version, (unsigned long long)c->net_version,
		  (long long)cluster_heartbeat_ms(c));
	bool first = true;
	size_t it = 0;
	void *v;
	while (hmap_next(&n->tasks, &it, NULL, &v)) {
		struct task *t = v;
		if (t->state == TASK_ASSIGNED || t->state == TASK_STARTING ||
		    t->state == TASK_RUNNING || t->state == TASK_PARTITIONED)
			add_desired_task(&sb, n, t, known && t->assigned_at <= known, &first);
	}
	/* Until its report says which it still runs, the tasks it ran when it
	 * went DOWN stay in its set: by id (it has them), or in full when it
	 * asks for everything (known 0), so that it stops none of them. */
	for (size_t i = 0; i < n->nheld; i++) {
		struct task *t = hmap_get(&c->tasks, n->held[i]);
		if (t)
			add_desired_task(&sb, n, t, known != 0, &first);
	}
	sbuf_addf(&sb, "]%s}", ask);
	return sbuf_detach(&sb);
}

json_t *cluster_node_desired(struct cluster *c, struct node *n)
{
	char *text = cluster_node_desired_text(c, n, 0);
	json_t *j = json_loads(text, 0, NULL);
	free(text);
	return j;
}

uint64_t cluster_node_drain(struct cluster *c, const char *name, bool drain, struct berr *err)
{
	struct node *n = hmap_get(&c->nodes, name);
	if (!n) {
		berr_set(err, 404, "node '%s' not found", name);
		return 0;
	}
	n->drain_requested = drain;
	c->nodes_gen++;
	enum node_state was = n->state;
	if (n->state != NODE_DOWN)
		n->state = drain ? NODE_DRAINING : NODE_ACTIVE;
	if (n->state != was)
		note_node(c, n, drain ? "drained by the operator" : "activated by the operator");
	persist_node(c, n);
	c->sched_needed = true;
	return cluster_touched(c);
}

/* The node is judged DOWN: its tasks are LOST (and replaced); those it ran
 * are remembered, to be taken back if it returns before their
 * replacements start. */
static void node_down(struct cluster *c, struct node *n, int64_t silence, int64_t mono)
{
	n->state = NODE_DOWN;
	c->nodes_gen++;
	n->down_mono = mono;
	n->held_until_mono = 0;
	__atomic_fetch_add(&c->nodes_down_total, 1, __ATOMIC_RELAXED);
	char msg[300];
	snprintf(msg, sizeof msg, "agent %s missed heartbeats for %.1fs", n->name,
		 (double)silence / 1000.0);
	log_warn("node %s is down: %s", n->name, msg);
	note_node(c, n, msg);
	struct task **lost = NULL;
	size_t nlost = 0;
	size_t jt = 0;
	void *tv;
	while (hmap_next(&n->tasks, &jt, NULL, &tv)) {
		lost = xrealloc(lost, (nlost + 1) * sizeof *lost);
		lost[nlost++] = tv;
	}
	for (size_t k = 0; k < nlost; k++) {
		struct task *t = lost[k];
		if (task_state_terminal(t->state))
			continue;
		if (t->state == TASK_RUNNING || t->state == TASK_STARTING) {
			n->held = xrealloc(n->held, (n->nheld + 1) * sizeof *n->held);
			n->held[n->nheld++] = xstrdup(t->id);
		}
		if (!task_transition(c, t, TASK_LOST, msg))
			task_transition(c, t, TASK_KILLED, msg);
	}
	free(lost);
	c->sched_needed = true;
}

/* Forget the tasks a returning node ran when it went DOWN: those not taken
 * back leave its desired set, so its agent stops them. */
static void node_drop_held(struct cluster *c, struct node *n)
{
	if (!n->nheld)
		return;
	for (size_t i = 0; i < n->nheld; i++)
		free(n->held[i]);
	free(n->held);
	n->held = NULL;
	n->nheld = 0;
	n->held_until_mono = 0;
	node_touch(c, n);
}

static bool node_holds(const struct node *n, const char *id)
{
	for (size_t i = 0; i < n->nheld; i++)
		if (!strcmp(n->held[i], id))
			return true;
	return false;
}

/* Held tasks that can no longer be taken back (their replacement started)
 * leave the node's desired set at once: its agent stops them. */
static void node_prune_held(struct cluster *c, struct node *n)
{
	size_t k = 0;
	for (size_t i = 0; i < n->nheld; i++) {
		if (take_back_target(c, n, hmap_get(&c->tasks, n->held[i])))
			n->held[k++] = n->held[i];
		else
			free(n->held[i]);
	}
	if (k == n->nheld)
		return;
	n->nheld = k;
	if (!k) {
		free(n->held);
		n->held = NULL;
		n->held_until_mono = 0;
	}
	node_touch(c, n);
}

/* Timers of a node that is up: its flap back-off and its held tasks. */
static void node_timers(struct cluster *c, struct node *n, int64_t mono)
{
	if (n->nheld)
		node_prune_held(c, n);
	if (n->in_backoff && mono >= n->backoff_until_mono) {
		n->in_backoff = false;
		c->sched_needed = true;
	}
	if (n->nheld && n->held_until_mono && mono >= n->held_until_mono)
		node_drop_held(c, n);
}

/* Most heartbeats scale to: 10 s, and down_after in proportion. */
#define HEARTBEAT_MAX_MS 10000

/* Pace the heartbeats to the node count: N nodes heartbeating every
 * heartbeat_ms send N * 1000 / heartbeat_ms per second; above
 * max_heartbeats both the heartbeat and down_after grow by that ratio, so
 * that the server's cost of hearing its agents stays bounded (ten thousand
 * agents at 1 s cost a TLS server most of a core) and failure detection
 * slows in proportion, as the operator's two flags had it. */
static void pace_heartbeats(struct cluster *c)
{
	int64_t hb = c->cfg.heartbeat_ms, down = c->cfg.down_after_ms;
	int64_t want = c->cfg.max_heartbeats > 0 && hb > 0
			   ? (int64_t)c->nodes.count * 1000 / c->cfg.max_heartbeats
			   : 0;
	if (want > hb) {
		if (want > HEARTBEAT_MAX_MS)
			want = hb > HEARTBEAT_MAX_MS ? hb : HEARTBEAT_MAX_MS;
		down = down * want / hb;
		hb = want;
	}
	atomic_store(&c->heartbeat_now_ms, hb);
	atomic_store(&c->down_after_now_ms, down);
	/* Said when it changed, at most every 10 s (nodes join one by one). */
	int64_t mono = time_mono_ms();
	if (!c->paced_logged_hb)
		c->paced_logged_hb = c->cfg.heartbeat_ms;
	if (hb != c->paced_logged_hb &&
	    (!c->paced_logged_mono || mono - c->paced_logged_mono >= 10000)) {
		c->paced_logged_mono = mono;
		c->paced_logged_hb = hb;
		log_info("%zu nodes: heartbeats every %.1f s, DOWN after %.1f s of silence "
			 "(--max-heartbeats %lld/s)",
			 c->nodes.count, (double)hb / 1000, (double)down / 1000,
			 (long long)c->cfg.max_heartbeats);
	}
}

int64_t cluster_heartbeat_ms(const struct cluster *c)
{
	int64_t v = atomic_load(&c->heartbeat_now_ms);
	return v > 0 ? v : c->cfg.heartbeat_ms;
}

int64_t cluster_down_after_ms(const struct cluster *c)
{
	int64_t v = atomic_load(&c->down_after_now_ms);
	return v > 0 ? v : c->cfg.down_after_ms;
}

/* A node is DOWN when it was silent for down_after, not counting the time
 * the server itself could not hear (liveness.h): a busy or paused server
 * never blames its agents for its own lateness. */
void nodes_check_heartbeats(struct cluster *c, int64_t mono)
{
	/* Every 50 ms, less often when the heartbeats are paced (a scan of
	 * 10,000 nodes 20 times a second was ~2 % of a core). */
	int64_t every = cluster_down_after_ms(c) / 60;
	if (every < JUDGE_EVERY_MS)
		every = JUDGE_EVERY_MS;
	if (c->judged_mono && mono - c->judged_mono < every)
		return;
	c->judged_mono = mono;
	pace_heartbeats(c);
	liveness_account(c->live, mono);
	/* A backlog in front of the server (liveness.h): say so, at most every
	 * ten seconds, since the judge now waits that much longer. */
	int64_t lag = liveness_lag_credit(c->live);
	if (lag >= 1000 && mono - c->lag_logged_mono >= 10000) {
		c->lag_logged_mono = mono;
		log_warn("agents' calls wait before the server reads them: intake lag %lld ms "
			 "(not held against them)",
			 (long long)lag);
	}
	/* After a server (re)start agents get a full detection window. */
	int64_t down_after = cluster_down_after_ms(c);
	bool judge = mono - c->loaded_mono >= down_after;
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		if (n->state == NODE_DOWN) {
			continue;
		}
		node_timers(c, n, mono);
		if (!judge)
			continue;
		int64_t silence = liveness_silence(c->live, n->live, mono);
		if (silence > down_after)
			node_down(c, n, silence, mono);
	}
}

/* Drain: move tasks off DRAINING nodes, a few at a time per job (never
 * all instances of a job at once); a node with nothing left is DRAINED. */
void nodes_drain(struct cluster *c)
{
	/* This runs every tick: with no node DRAINING, the scan of every node
	 * waits for a change of the nodes (a drain bumps nodes_gen). */
	if (c->drain_scanned && !c->drain_busy && c->drain_scanned_gen == c->nodes_gen)
		return;
	c->drain_scanned = true;
	c->drain_scanned_gen = c->nodes_gen;
	c->drain_busy = false;
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		if (n->state != NODE_DRAINING)
			continue;
		c->drain_busy = true;
		if (n->tasks.count == 0) {
			n->state = NODE_DRAINED;
			log_info("node %s drained", n->name);
			note_node(c, n, "drained: no task left on it");
			continue;
		}
		struct task **move = NULL;
		size_t nmove = 0;
		size_t jt = 0;
		void *tv;
		while (hmap_next(&n->tasks, &jt, NULL, &tv)) {
			struct task *t = tv;
			if (t->state == TASK_DRAINING || t->state == TASK_KILLING ||
			    t->state == TASK_RESTARTING)
				continue;
			/* One instance of a job in motion at a time. */
			bool busy = false;
			for (size_t i = 0; i < t->job->nactive && !busy; i++) {
				struct task *o = t->job->active[i];
				busy = o && o != t &&
				       (o->state == TASK_DRAINING || o->state == TASK_PENDING ||
					o->state == TASK_THROTTLED || o->state == TASK_ASSIGNED ||
					o->state == TASK_STARTING);
			}
			for (size_t k = 0; k < nmove && !busy; k++)
				busy = move[k]->job == t->job;
			if (busy)
				continue;
			move = xrealloc(move, (nmove + 1) * sizeof *move);
			move[nmove++] = t;
		}
		for (size_t k = 0; k < nmove; k++) {
			move[k]->replace_on_end = true;
			char msg[300];
			snprintf(msg, sizeof msg, "node %s is draining", n->name);
			task_stop(c, move[k], TASK_DRAINING, msg);
		}
		free(move);
	}
}

void cluster_judge_hold(struct cluster *c)
{
	c->loaded_mono = INT64_MAX / 2;
}

void cluster_judge_grace(struct cluster *c)
{
	c->loaded_mono = time_mono_ms();
}

void **cluster_node_watchers(struct node *n)
{
	return &n->watchers;
}

void cluster_take_changed_nodes(struct cluster *c, void (*fn)(void *ud, struct node *n), void *ud)
{
	for (size_t i = 0; i < c->nchanged; i++) {
		c->changed[i]->changed = false;
		fn(ud, c->changed[i]);
	}
	c->nchanged = 0;
}

void cluster_each_watched_node(struct cluster *c, void (*fn)(void *ud, struct node *n), void *ud)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v))
		if (((struct node *)v)->watchers)
			fn(ud, v);
}
