/* cluster_records.c - the store's records: the only code that knows their
 * keys and field names. Each kind of record is written and read side by side:
 *
 *   tasks/ID      record_write_task   apply_task
 *   jobs/KEY      persist_job         apply_job
 *   nodes/NAME    persist_node        apply_node
 *   updates/KEY   persist_update      apply_update
 *   secrets/ROLE/NAME  (cluster_secrets.c: persist_secret, secret_record_apply)
 *   quotas/ROLE   (cluster_quota.c: persist_quota, quota_record_apply)
 *
 * Reading never trusts a record: fields are kept in ranges the code can do
 * arithmetic in, and a record that does not parse is dropped with a log line.
 */
#include "server/cluster-internal.h"
#include "server/cluster_system.h"
#include "server/logtail.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/intern.h"
#include "core/log.h"
#include "server/cluster_quota.h"

static void put_json(struct cluster *c, const char *key, json_t *v)
{
	c->changes++;
	char *s = json_dumps(v, JSON_COMPACT);
	store_batch_put(c->pending, key, s, strlen(s));
	free(s);
}

/* The task's store record, written as text: this runs for every task at
 * every commit that touched it, so it avoids building a JSON tree. */
static void sbuf_add_i64(struct sbuf *sb, long long v)
{
	char buf[24], *p = buf + sizeof buf;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	sbuf_add(sb, p, (size_t)(buf + sizeof buf - p));
}

/* "key":integer, */
void sbuf_add_int_field(struct sbuf *sb, const char *key, long long v)
{
	sbuf_adds(sb, key);
	sbuf_add_i64(sb, v);
}

static void add_nonzero(struct sbuf *sb, const char *key, long long v)
{
	if (v)
		sbuf_add_int_field(sb, key, v);
}

/* The message each state's event has on a task's usual way to RUNNING
 * (the texts of task_create, the PENDING transition, cluster_sched.c and
 * apply_agent_task_to): records leave it out, apply_task puts it back. */
static bool event_message_is_common(enum task_state s, const char *node, const char *msg)
{
	switch (s) {
	case TASK_INIT:
		return !strcmp(msg, "task created");
	case TASK_PENDING:
		return !strcmp(msg, "waiting for a node");
	case TASK_ASSIGNED:
		return node && !strncmp(msg, "assigned to node ", 17) && !strcmp(msg + 17, node);
	case TASK_STARTING:
		return node && !strncmp(msg, "STARTING on ", 12) && !strcmp(msg + 12, node);
	case TASK_RUNNING:
		return node && !strncmp(msg, "running on ", 11) && !strcmp(msg + 11, node);
	default:
		return false;
	}
}

/* The message event_message_is_common leaves out, written into buf. */
static const char *event_message_common(enum task_state s, const char *node, char *buf, size_t size)
{
	switch (s) {
	case TASK_INIT:
		return "task created";
	case TASK_PENDING:
		return "waiting for a node";
	case TASK_ASSIGNED:
		snprintf(buf, size, "assigned to node %s", node ? node : "");
		return buf;
	case TASK_STARTING:
		snprintf(buf, size, "STARTING on %s", node ? node : "");
		return buf;
	case TASK_RUNNING:
		snprintf(buf, size, "running on %s", node ? node : "");
		return buf;
	default:
		return "";
	}
}

/* The task's store record, written as text: this runs for every task at
 * every commit that touched it, so it builds no JSON tree and no printf. */
void record_write_task(struct cluster *c, struct task *t)
{
	struct sbuf sb = c->record_buf; /* no allocation per record once it is big enough */
	if (!sb.buf)
		sbuf_init(&sb);
	sb.len = 0;
	sbuf_adds(&sb, "{\"id\":");
	sbuf_add_json_str(&sb, t->id);
	sbuf_adds(&sb, ",\"job\":");
	sbuf_add_json_str(&sb, t->job->key);
	sbuf_add_int_field(&sb, ",\"instance\":", t->instance);
	sbuf_add_int_field(&sb, ",\"version\":", t->version);
	sbuf_adds(&sb, ",\"state\":\"");
	sbuf_adds(&sb, task_state_name(t->state));
	sbuf_adds(&sb, "\"");
	/* Fields at their zero value are left out: apply_task reads a missing
	 * one as zero (exit_code as 0, so it is written unless 0). A task's
	 * record is written two or three times on its way to RUNNING: fewer
	 * bytes are less SQLite work on the commit thread. */
	add_nonzero(&sb, ",\"pid\":", t->pid);
	add_nonzero(&sb, ",\"exit_code\":", t->exit_code);
	sbuf_add_int_field(&sb, ",\"created_ms\":", t->created_ms);
	add_nonzero(&sb, ",\"running_since_ms\":", t->running_since_ms);
	add_nonzero(&sb, ",\"failures\":", t->failures);
	add_nonzero(&sb, ",\"quick_deaths\":", t->quick_deaths);
	add_nonzero(&sb, ",\"throttle_until_ms\":", t->throttle_until_ms);
	add_nonzero(&sb, ",\"replace_version\":", t->replace_version);
	add_nonzero(&sb, ",\"restarts\":", t->restarts);
	add_nonzero(&sb, ",\"restart_window_ms\":", t->restart_window_ms);
	if (t->replace_on_end)
		sbuf_adds(&sb, ",\"replace_on_end\":true");
	if (t->no_replace)
		sbuf_adds(&sb, ",\"no_replace\":true");
	/* The message is most often the newest event's: then it is left out,
	 * and apply_task takes that event's. */
	const char *msg = t->message ? t->message : "";
	if (!t->nevents || strcmp(msg, t->events[t->nevents - 1].message)) {
		sbuf_adds(&sb, ",\"message\":");
		sbuf_add_json_str(&sb, msg);
	}
	if (t->node) {
		sbuf_adds(&sb, ",\"node\":");
		sbuf_add_json_str(&sb, t->node->name);
	}
	if (t->ancestor) {
		sbuf_adds(&sb, ",\"ancestor\":");
		sbuf_add_json_str(&sb, t->ancestor);
	}
	if (t->ports) {
		char *p = json_dumps(t->ports, JSON_COMPACT);
		sbuf_adds(&sb, ",\"ports\":");
		sbuf_adds(&sb, p);
		free(p);
	}
	if (t->address) {
		char ip[16];
		sbuf_adds(&sb, ",\"address\":\"");
		sbuf_adds(&sb, ip4_format(t->address, ip));
		sbuf_adds(&sb, "\"");
	}
	/* The events, compact: [TIME,"STATE"] with TIME the ms since the
	 * previous event (the first: since the epoch), and the message third
	 * only when it is not the one the state has on its way to RUNNING
	 * (event_message_is_common): a RUNNING task's record was ~600 bytes
	 * with {"time_ms","state","message"} objects, ~250 with these. */
	sbuf_adds(&sb, ",\"ev\":[");
	const char *node = t->node ? t->node->name : NULL;
	int64_t prev = 0;
	for (size_t i = 0; i < t->nevents; i++) {
		const struct task_event *e = &t->events[i];
		sbuf_add_int_field(&sb, i ? ",[" : "[", e->time_ms - prev);
		prev = e->time_ms;
		sbuf_adds(&sb, ",\"");
		sbuf_adds(&sb, task_state_name(e->state));
		sbuf_adds(&sb, "\"");
		if (!event_message_is_common(e->state, node, e->message)) {
			sbuf_adds(&sb, ",");
			sbuf_add_json_str(&sb, e->message);
		}
		sbuf_adds(&sb, "]");
	}
	sbuf_adds(&sb, "]}");
	char key[512];
	size_t kl = strlen(t->id);
	if (kl + 7 < sizeof key) {
		memcpy(key, "tasks/", 6);
		memcpy(key + 6, t->id, kl + 1);
		store_batch_put(c->pending, key, sb.buf, sb.len);
	}
	c->record_buf = sb;
}

void persist_job(struct cluster *c, struct job *j)
{
	quota_job_recount(c, j); /* every change of what it counts is persisted */
	char key[512];
	snprintf(key, sizeof key, "jobs/%s", j->key);
	json_t *versions = json_array();
	for (size_t i = 0; i < j->nversions; i++)
		json_array_append_new(versions,
				      json_pack("{s:i,s:O}", "version", j->versions[i].version,
						"spec", j->versions[i].json));
	json_t *done = json_array();
	for (size_t i = 0; i < j->ninstance_done; i++)
		json_array_append_new(done, json_boolean(j->instance_done[i]));
	json_t *r =
	    json_pack("{s:s,s:i,s:b,s:I,s:I,s:o,s:o,s:I,s:i}", "job", j->key, "version", j->version,
		      "killed", j->killed, "created_ms", (json_int_t)j->created_ms, "updated_ms",
		      (json_int_t)j->updated_ms, "versions", versions, "instance_done", done,
		      "cron_last_ms", (json_int_t)j->cron_last_ms, "cron_runs", j->cron_runs);
	json_t *system = system_record_json(j);
	if (system)
		json_object_set_new(r, "system", system);
	if (j->cron_message)
		json_object_set_new(r, "cron_message", json_string(j->cron_message));
	put_json(c, key, r);
	json_decref(r);
}

static uint64_t text_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h ? h : 1;
}

/* The node's record, written only when it differs from the last one: an
 * agent that registers again unchanged costs no commit. */
void persist_node(struct cluster *c, struct node *n)
{
	char key[512];
	snprintf(key, sizeof key, "nodes/%s", n->name);
	json_t *attrs = json_object();
	for (size_t i = 0; i < n->nattrs; i++)
		json_object_set_new(attrs, n->attrs[i].key, json_string(n->attrs[i].value));
	json_t *r = json_pack("{s:s,s:s,s:b,s:o,s:f,s:I,s:I,s:i,s:i,s:s}", "name", n->name, "id",
			      n->id, "drain_requested", n->drain_requested, "attributes", attrs,
			      "cpu", n->cpu_total, "memory", (json_int_t)n->mem_total, "disk",
			      (json_int_t)n->disk_total, "port_lo", n->port_lo, "port_hi",
			      n->port_hi, "addr", n->addr ? n->addr : "");
	if (n->subnet >= 0)
		json_object_set_new(r, "subnet", json_integer(n->subnet));
	char *text = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	size_t len = strlen(text);
	uint64_t h = text_hash(text, len);
	if (h != n->record_hash) {
		n->record_hash = h;
		c->changes++;
		c->net_version++;
		store_batch_put(c->pending, key, text, len);
	}
	free(text);
}

void persist_update(struct cluster *c, struct job *j)
{
	struct update *u = j->update;
	if (!u)
		return;
	json_t *inst = json_array();
	for (size_t k = 0; k < u->n; k++)
		json_array_append_new(
		    inst, json_pack("{s:i,s:s,s:i,s:s?}", "instance", u->instances[k], "status",
				    update_instance_status_name(u->status[k]), "failures",
				    u->failures[k], "old_task", u->old_task[k]));
	json_t *r = json_pack(
	    "{s:s,s:s,s:i,s:i,s:{s:i,s:I,s:i,s:i,s:b,s:s},s:i,s:I,s:I,s:s,s:o}", "job", j->key,
	    "state", update_state_name(u->state), "from_version", u->from_version, "to_version",
	    u->to_version, "policy", "batch_size", u->policy.batch_size, "watch_ms",
	    (json_int_t)u->policy.watch_ms, "max_instance_failures",
	    u->policy.max_instance_failures, "max_total_failures", u->policy.max_total_failures,
	    "rollback_on_failure", u->policy.rollback_on_failure, "order",
	    u->policy.order == UPDATE_START_FIRST ? "start_first" : "stop_first",
	    "failed_instances", u->failed_instances, "started_ms", (json_int_t)u->started_ms,
	    "finished_ms", (json_int_t)u->finished_ms, "message", u->message, "instances", inst);
	if (u->restart)
		json_object_set_new(r, "restart", json_true());
	char key[512];
	snprintf(key, sizeof key, "updates/%s", j->key);
	put_json(c, key, r);
	json_decref(r);
}

/* Fields of a record, kept in ranges the code that uses them can do
 * arithmetic in: a damaged or hostile store cannot overflow anything. */
#define RECORD_MAX_MS 253402300799999LL /* the end of year 9999 */

static int64_t rec_time(json_t *r, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(r, k));
	return v < 0 ? 0 : v > RECORD_MAX_MS ? RECORD_MAX_MS : (int64_t)v;
}

static int rec_int(json_t *r, const char *k, int lo, int hi)
{
	json_int_t v = json_integer_value(json_object_get(r, k));
	return v < lo ? lo : v > hi ? hi : (int)v;
}

/* Counters and versions: far from INT_MAX, so that +1 never overflows. */
#define REC_COUNT_MAX (INT_MAX / 2)

static int apply_job(struct cluster *c, const char *key, const char *value, size_t len)
{
	json_error_t je;
	json_t *r = json_loadb(value, len, 0, &je);
	const char *name = r ? json_string_value(json_object_get(r, "job")) : NULL;
	if (!name || !*name) {
		log_error("store: cannot parse '%s': %s", key, r ? "no job name" : je.text);
		json_decref(r);
		return APPLIED;
	}
	/* The versions first, into a scratch job: a record that does not load
	 * leaves the job as it was. */
	struct job tmp = {0};
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(r, "versions"), i, v)
	{
		struct berr err;
		struct job_spec *spec;
		if (spec_parse_json(json_object_get(v, "spec"), &spec, &err) < 0) {
			log_error("store: job '%s' version %d: %s", name,
				  (int)json_integer_value(json_object_get(v, "version")), err.msg);
			continue;
		}
		job_add_version(&tmp, rec_int(v, "version", 0, REC_COUNT_MAX), spec,
				json_incref(json_object_get(v, "spec")));
	}
	int version = rec_int(r, "version", 0, REC_COUNT_MAX);
	if (!job_version_get(&tmp, version)) {
		/* Its current version did not load (a spec this build refuses):
		 * fall back to the newest that did, or drop the job. */
		int best = job_max_version(&tmp);
		if (!best) {
			log_error("store: job '%s' has no loadable version: dropped", name);
			job_clear_versions(&tmp); /* versions numbered 0 or less, if any */
			struct job *old = hmap_get(&c->jobs, name);
			if (old)
				job_remove(c, old);
			json_decref(r);
			return APPLIED;
		}
		log_warn("store: job '%s' version %d did not load; using version %d", name, version,
			 best);
		version = best;
	}
	struct job *j = hmap_get(&c->jobs, name);
	if (!j)
		j = job_new(c, name);
	job_clear_versions(j);
	j->versions = tmp.versions;
	j->nversions = tmp.nversions;
	j->version = version;
	j->killed = json_is_true(json_object_get(r, "killed"));
	j->created_ms = rec_time(r, "created_ms");
	j->updated_ms = rec_time(r, "updated_ms");
	j->cron_last_ms = rec_time(r, "cron_last_ms");
	j->cron_runs = rec_int(r, "cron_runs", 0, REC_COUNT_MAX);
	const char *cm = json_string_value(json_object_get(r, "cron_message"));
	free(j->cron_message);
	j->cron_message = cm ? xstrndup(cm, 512) : NULL;
	json_t *done = json_object_get(r, "instance_done");
	size_t ndone = json_array_size(done);
	job_ensure_instances(j, ndone < SPEC_MAX_INSTANCES ? ndone : SPEC_MAX_INSTANCES);
	for (i = 0; i < j->ninstance_done; i++)
		j->instance_done[i] = json_is_true(json_array_get(done, i));
	system_record_apply(j, json_object_get(r, "system"));
	json_decref(r);
	c->derived_stale = true;
	return APPLIED;
}

static int apply_node(struct cluster *c, const char *key, const char *value, size_t len)
{
	json_t *r = json_loadb(value, len, 0, NULL);
	const char *name = r ? json_string_value(json_object_get(r, "name")) : NULL;
	if (!name || !*name) {
		log_error("store: cannot parse '%s'", key);
		json_decref(r);
		return APPLIED;
	}
	struct node *n = hmap_get(&c->nodes, name);
	if (!n)
		n = node_new(c, name);
	/* Its tasks are derived again (derive()); until then the list may
	 * name tasks a follower has deleted since: not to be looked at. */
	hmap_release(&n->tasks);
	hmap_init_borrowed(&n->tasks);
	free(n->id);
	n->id = xstrdup(json_string_value(json_object_get(r, "id")) ?: "");
	n->drain_requested = json_is_true(json_object_get(r, "drain_requested"));
	node_set_attrs(n, json_object_get(r, "attributes"));
	json_t *res =
	    json_pack("{s:O,s:O,s:O,s:O,s:O}", "cpu", json_object_get(r, "cpu"), "memory",
		      json_object_get(r, "memory"), "disk", json_object_get(r, "disk"), "port_lo",
		      json_object_get(r, "port_lo"), "port_hi", json_object_get(r, "port_hi"));
	if (res)
		node_set_resources(n, res);
	json_decref(res);
	free(n->addr);
	n->addr = xstrdup(json_string_value(json_object_get(r, "addr")) ?: "");
	json_t *subnet = json_object_get(r, "subnet");
	n->subnet = json_is_integer(subnet) && json_integer_value(subnet) >= 0 &&
			    json_integer_value(subnet) < 1 << 24
			? (int)json_integer_value(subnet)
			: -1;
	c->net_version++;
	/* Known nodes are given a detection window to reconnect (load_finish):
	 * a server restart does not mark healthy agents down. */
	n->state = n->drain_requested ? NODE_DRAINING : NODE_ACTIVE;
	n->last_seen_mono = time_mono_ms();
	n->record_hash = text_hash(value, len);
	json_decref(r);
	c->derived_stale = true;
	return APPLIED;
}

/* final: nothing more will come, so a task whose job is unknown is dropped
 * and one whose node is unknown is kept without a node (as a load does). */
static int apply_task(struct cluster *c, const char *key, const char *value, size_t len, bool final)
{
	json_t *r = json_loadb(value, len, 0, NULL);
	if (!r) {
		log_warn("store: cannot parse '%s'", key);
		return APPLIED;
	}
	const char *id = json_string_value(json_object_get(r, "id"));
	struct job *j = hmap_get(&c->jobs, json_string_value(json_object_get(r, "job")) ?: "");
	int st = task_state_parse(json_string_value(json_object_get(r, "state")) ?: "");
	json_int_t instance = json_integer_value(json_object_get(r, "instance"));
	if (!id || !*id || st < 0 || instance < 0 || instance >= SPEC_MAX_INSTANCES) {
		log_warn("store: dropping bad task record '%s'", key);
		json_decref(r);
		return APPLIED;
	}
	if (!j && !final) {
		json_decref(r);
		return ORPHAN;
	}
	if (!j) {
		log_warn("store: dropping orphan task record '%s'", key);
		json_decref(r);
		return APPLIED;
	}
	const char *nodename = json_string_value(json_object_get(r, "node"));
	struct node *n = nodename ? hmap_get(&c->nodes, nodename) : NULL;
	bool placed = !task_state_terminal((enum task_state)st) && st != TASK_PENDING &&
		      st != TASK_THROTTLED && st != TASK_INIT;
	if (placed && nodename && !n && !final) {
		json_decref(r);
		return ORPHAN;
	}
	struct task *t = hmap_get(&c->tasks, id);
	if (t) {
		task_clear_record(t);
	} else {
		t = xcalloc(1, sizeof *t);
		t->id = xstrdup(id);
		hmap_put(&c->tasks, t->id, t);
	}
	t->job = j;
	t->instance = (int)instance;
	t->version = rec_int(r, "version", 0, REC_COUNT_MAX);
	t->state = (enum task_state)st;
	/* An ended task keeps the node it ran on (its logs are there). */
	t->node = placed || task_state_terminal(t->state) ? n : NULL;
	t->pid = rec_int(r, "pid", 0, INT_MAX);
	t->exit_code = rec_int(r, "exit_code", -1, 255 + 128);
	json_t *message = json_object_get(r, "message");
	const char *anc = json_string_value(json_object_get(r, "ancestor"));
	t->ancestor = anc ? xstrdup(anc) : NULL;
	t->created_ms = rec_time(r, "created_ms");
	t->running_since_ms = rec_time(r, "running_since_ms");
	t->failures = rec_int(r, "failures", 0, REC_COUNT_MAX);
	t->quick_deaths = rec_int(r, "quick_deaths", 0, REC_COUNT_MAX);
	t->throttle_until_ms = rec_time(r, "throttle_until_ms");
	t->replace_on_end = json_is_true(json_object_get(r, "replace_on_end"));
	t->replace_version = rec_int(r, "replace_version", 0, REC_COUNT_MAX);
	t->restarts = rec_int(r, "restarts", 0, REC_COUNT_MAX);
	t->restart_window_ms = rec_time(r, "restart_window_ms");
	t->no_replace = json_is_true(json_object_get(r, "no_replace"));
	json_t *ports = json_object_get(r, "ports");
	if (json_is_object(ports))
		t->ports = json_incref(ports);
	if (ip4_parse(json_string_value(json_object_get(r, "address")), &t->address) < 0)
		t->address = 0;
	/* Events: "ev" (compact, record_write_task) or, in records written
	 * before it, "events" of {time_ms, state, message} objects. */
	json_t *evs = json_object_get(r, "ev");
	bool compact = json_is_array(evs);
	if (!compact)
		evs = json_object_get(r, "events");
	size_t nev = json_array_size(evs);
	if (nev > MAX_EVENTS)
		nev = MAX_EVENTS;
	if (nev)
		t->events = xcalloc(nev, sizeof *t->events);
	int64_t at = 0;
	for (size_t i = 0; i < nev; i++) {
		json_t *ev = json_array_get(evs, i);
		const char *state, *msg;
		char buf[200];
		int64_t time_ms;
		if (compact) {
			json_int_t d = json_integer_value(json_array_get(ev, 0));
			at = d < -RECORD_MAX_MS || d > RECORD_MAX_MS ? at : at + (int64_t)d;
			time_ms = at < 0 ? 0 : at > RECORD_MAX_MS ? RECORD_MAX_MS : at;
			state = json_string_value(json_array_get(ev, 1));
			msg = json_string_value(json_array_get(ev, 2));
		} else {
			time_ms = rec_time(ev, "time_ms");
			state = json_string_value(json_object_get(ev, "state"));
			msg = json_string_value(json_object_get(ev, "message")) ?: "";
		}
		int es = task_state_parse(state ?: "");
		enum task_state s = es < 0 ? TASK_INIT : (enum task_state)es;
		if (!msg)
			msg = event_message_common(s, nodename, buf, sizeof buf);
		const char *shared = intern(msg);
		t->events[t->nevents++] =
		    (struct task_event){.time_ms = time_ms,
					.state = s,
					.interned = shared != NULL,
					.message = shared ? (char *)shared : xstrdup(msg)};
	}
	/* No message: the newest event's (record_write_task leaves it out
	 * then). Records written before that always have one. */
	const char *m = json_string_value(message);
	if (!m)
		m = !message && t->nevents ? t->events[t->nevents - 1].message : "";
	const char *shared = intern(m);
	t->message = shared ? (char *)shared : xstrdup(m);
	t->message_shared = shared != NULL;
	json_decref(r);
	c->derived_stale = true;
	return APPLIED;
}

static int apply_update(struct cluster *c, const char *key, const char *value, size_t len,
			bool final)
{
	json_t *r = json_loadb(value, len, 0, NULL);
	struct job *j =
	    r ? hmap_get(&c->jobs, json_string_value(json_object_get(r, "job")) ?: "") : NULL;
	if (r && !j && !final) {
		json_decref(r);
		return ORPHAN;
	}
	if (!j) {
		log_warn("store: dropping update record '%s'", key);
		json_decref(r);
		return APPLIED;
	}
	struct update *u = xcalloc(1, sizeof *u);
	const char *st = json_string_value(json_object_get(r, "state")) ?: "";
	u->state = UPDATE_FAILED;
	for (int i = 0; i <= UPDATE_FAILED; i++)
		if (!strcmp(st, update_state_name((enum update_state)i)))
			u->state = (enum update_state)i;
	u->from_version = rec_int(r, "from_version", 0, REC_COUNT_MAX);
	u->to_version = rec_int(r, "to_version", 0, REC_COUNT_MAX);
	json_t *p = json_object_get(r, "policy");
	u->policy.batch_size = rec_int(p, "batch_size", 1, SPEC_MAX_INSTANCES);
	if (u->policy.batch_size < 1)
		u->policy.batch_size = 1;
	u->policy.watch_ms = (uint64_t)rec_time(p, "watch_ms");
	u->policy.max_instance_failures = rec_int(p, "max_instance_failures", 0, REC_COUNT_MAX);
	u->policy.max_total_failures = rec_int(p, "max_total_failures", 0, REC_COUNT_MAX);
	u->policy.rollback_on_failure = json_is_true(json_object_get(p, "rollback_on_failure"));
	u->policy.order =
	    !strcmp(json_string_value(json_object_get(p, "order")) ?: "", "start_first")
		? UPDATE_START_FIRST
		: UPDATE_STOP_FIRST;
	u->restart = json_is_true(json_object_get(r, "restart"));
	u->failed_instances = rec_int(r, "failed_instances", 0, REC_COUNT_MAX);
	u->started_ms = rec_time(r, "started_ms");
	u->finished_ms = rec_time(r, "finished_ms");
	snprintf(u->message, sizeof u->message, "%s",
		 json_string_value(json_object_get(r, "message")) ?: "");
	utf8_clean(u->message);
	json_t *inst = json_object_get(r, "instances");
	size_t n = json_array_size(inst);
	u->instances = xcalloc(n + 1, sizeof *u->instances);
	u->status = xcalloc(n + 1, sizeof *u->status);
	u->failures = xcalloc(n + 1, sizeof *u->failures);
	u->old_task = xcalloc(n + 1, sizeof *u->old_task);
	size_t i;
	json_t *e;
	json_array_foreach(inst, i, e)
	{
		u->instances[i] = rec_int(e, "instance", 0, SPEC_MAX_INSTANCES - 1);
		const char *ss = json_string_value(json_object_get(e, "status")) ?: "";
		for (int k = 0; k <= UI_FAILED; k++)
			if (!strcmp(ss,
				    update_instance_status_name((enum update_instance_status)k)))
				u->status[i] = (enum update_instance_status)k;
		u->failures[i] = rec_int(e, "failures", 0, REC_COUNT_MAX);
		const char *ot = json_string_value(json_object_get(e, "old_task"));
		u->old_task[i] = ot ? xstrdup(ot) : NULL;
	}
	u->n = n;
	update_free(j->update);
	j->update = u;
	json_decref(r);
	return APPLIED;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* A record put: APPLIED (or ignored), or ORPHAN. */
int record_apply(struct cluster *c, const char *key, const char *value, size_t len, bool final)
{
	if (has_prefix(key, "jobs/"))
		return apply_job(c, key, value, len);
	if (has_prefix(key, "nodes/"))
		return apply_node(c, key, value, len);
	if (has_prefix(key, "tasks/"))
		return apply_task(c, key, value, len, final);
	if (has_prefix(key, "updates/"))
		return apply_update(c, key, value, len, final);
	if (has_prefix(key, "secrets/"))
		return secret_record_apply(c, key, value, len);
	if (has_prefix(key, "quotas/"))
		return quota_record_apply(c, key, value, len);
	if (has_prefix(key, "auth/tokens/")) {
		struct token_rec rec;
		if (token_rec_from_json(value, len, &rec) == 0 && !strcmp(rec.id, key + 12))
			token_table_put(c->tokens, &rec);
		else
			log_warn("dropping a bad token record '%s'", key);
		return APPLIED;
	}
	return APPLIED; /* meta/, events/, auth/ca: not state the cluster keeps */
}

/* A record deleted (followers only: a load sees no deletes). */
void record_apply_delete(struct cluster *c, const char *key)
{
	if (has_prefix(key, "jobs/")) {
		struct job *j = hmap_get(&c->jobs, key + 5);
		if (j)
			job_remove(c, j);
	} else if (has_prefix(key, "tasks/")) {
		struct task *t = hmap_get(&c->tasks, key + 6);
		if (t)
			task_remove(c, t);
	} else if (has_prefix(key, "updates/")) {
		struct job *j = hmap_get(&c->jobs, key + 8);
		if (j) {
			update_free(j->update);
			j->update = NULL;
		}
	} else if (has_prefix(key, "nodes/")) {
		struct node *n = hmap_get(&c->nodes, key + 6);
		if (n)
			node_remove(c, n);
	} else if (has_prefix(key, "auth/tokens/")) {
		token_table_delete(c->tokens, key + 12);
	} else if (has_prefix(key, "secrets/")) {
		secret_record_delete(c, key);
	} else if (has_prefix(key, "quotas/")) {
		quota_record_delete(c, key);
	}
}

bool record_is_parent(const char *key)
{
	return has_prefix(key, "jobs/") || has_prefix(key, "nodes/");
}

void record_delete_task(struct cluster *c, const struct task *t)
{
	char key[512];
	snprintf(key, sizeof key, "tasks/%s", t->id);
	store_batch_delete(c->pending, key);
}

void record_delete_job(struct cluster *c, const struct job *j)
{
	char key[512];
	snprintf(key, sizeof key, "jobs/%s", j->key);
	store_batch_delete(c->pending, key);
	snprintf(key, sizeof key, "updates/%s", j->key);
	store_batch_delete(c->pending, key);
	cluster_logtail_delete_job(c, j->key);
}

uint64_t cluster_token_put(struct cluster *c, const struct token_rec *rec)
{
	char key[64];
	snprintf(key, sizeof key, "auth/tokens/%s", rec->id);
	json_t *j = token_rec_json(rec);
	put_json(c, key, j);
	json_decref(j);
	token_table_put(c->tokens, rec);
	return cluster_touched(c);
}

uint64_t cluster_token_delete(struct cluster *c, const char *id)
{
	if (!token_table_delete(c->tokens, id))
		return 0;
	char key[64];
	snprintf(key, sizeof key, "auth/tokens/%s", id);
	store_batch_delete(c->pending, key);
	return cluster_touched(c);
}

static int load_record(const char *key, const char *value, size_t len, void *ud)
{
	record_apply(ud, key, value, len, true);
	return 0;
}

int records_load(struct cluster *c, struct berr *err)
{
	/* Jobs first: updates and tasks name them; nodes before tasks. */
	if (store_scan(c->store, "jobs/", load_record, c, err) < 0 ||
	    store_scan(c->store, "updates/", load_record, c, err) < 0 ||
	    store_scan(c->store, "nodes/", load_record, c, err) < 0 ||
	    store_scan(c->store, "tasks/", load_record, c, err) < 0 ||
	    store_scan(c->store, "auth/tokens/", load_record, c, err) < 0 ||
	    store_scan(c->store, "secrets/", load_record, c, err) < 0 ||
	    store_scan(c->store, "quotas/", load_record, c, err) < 0)
		return -1;
	return 0;
}
