/* cluster.c - the in-memory cluster state and every change to it.
 *
 * See cluster.h for the write path. The life of a task:
 *
 *   created (INIT) -> PENDING (or THROTTLED when its instance flaps)
 *   scheduler: PENDING -> ASSIGNED (node, ports chosen; in the node's
 *              desired set from now on)
 *   agent:     ASSIGNED -> STARTING -> RUNNING -> FINISHED | FAILED | KILLED
 *   server:    -> KILLING (job kill, scale down), -> RESTARTING (restart),
 *              -> LOST (node down, or the agent does not hold it)
 *   on a terminal state: a service instance gets a new task (ancestor
 *   recorded); a batch instance only when it failed fewer than
 *   max_task_failures times.
 */
#include "server/cluster.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sched/placement.h"
#include "sched/ports.h"

#define MAX_EVENTS 16
/* A node back from DOWN keeps the tasks it ran in its desired set this
 * long at most, waiting for the full report that says which still run
 * (agents send one at least every 10 s). */
#define HELD_REPORT_MS 15000
/* The heartbeat judge looks this often at most. */
#define JUDGE_EVERY_MS 50

static const char *const node_state_names[] = {"ACTIVE", "DRAINING", "DRAINED", "DOWN"};

const char *node_state_name(enum node_state s)
{
	return (unsigned)s < ARRAY_SIZE(node_state_names) ? node_state_names[s] : "UNKNOWN";
}

void cluster_config_defaults(struct cluster_config *cfg)
{
	cfg->heartbeat_ms = 1000;
	cfg->down_after_ms = 3000;
	cfg->flap_threshold_ms = 10000;
	cfg->throttle_base_ms = 1000;
	cfg->throttle_max_ms = 60000;
	cfg->ended_keep = 100;
	cfg->ended_max_age_ms = 24 * 3600 * 1000LL;
	cfg->sample_limit = 64;
	cfg->flap_backoff_base_ms = 5000;
	cfg->flap_backoff_max_ms = 300000;
	cfg->flap_stable_ms = 600000;
}

/* A request thread busy this long in one handler made the server deaf
 * (liveness.h): a small part of the detection window. */
static int64_t stall_threshold(const struct cluster_config *cfg)
{
	int64_t t = cfg->down_after_ms / 4;
	return t > 250 ? 250 : t < 10 ? 10 : t;
}

struct cluster *cluster_new(struct store *st, const struct cluster_config *cfg)
{
	struct cluster *c = xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->wake, NULL);
	if (cfg)
		c->cfg = *cfg;
	else
		cluster_config_defaults(&c->cfg);
	c->store = st;
	hmap_init(&c->jobs);
	hmap_init_borrowed(&c->tasks); /* keyed by each task's own id */
	hmap_init(&c->nodes);
	hmap_init(&c->orphans);
	c->pending = store_batch_new();
	c->loaded_mono = time_mono_ms();
	c->live = liveness_new(stall_threshold(&c->cfg), 2 * JUDGE_EVERY_MS);
	return c;
}

static void task_free(struct task *t)
{
	free(t->id);
	free(t->message);
	free(t->ancestor);
	json_decref(t->ports);
	for (size_t i = 0; i < t->nevents; i++)
		free(t->events[i].message);
	free(t->events);
	free(t);
}

static void update_free(struct update *u);
static void update_advance(struct cluster *c, struct job *j, int64_t now);

static void job_free(struct job *j)
{
	free(j->key);
	for (size_t i = 0; i < j->nversions; i++) {
		spec_free(j->versions[i].spec);
		json_decref(j->versions[i].json);
		free(j->versions[i].task_text);
	}
	free(j->versions);
	free(j->active);
	free(j->ended);
	free(j->instance_done);
	update_free(j->update);
	free(j);
}

static void node_free(struct node *n)
{
	free(n->name);
	free(n->id);
	for (size_t i = 0; i < n->nattrs; i++) {
		free(n->attrs[i].key);
		free(n->attrs[i].value);
	}
	free(n->attrs);
	if (n->ports)
		port_pool_free(n->ports);
	free(n->addr);
	for (size_t i = 0; i < n->nheld; i++)
		free(n->held[i]);
	free(n->held);
	hmap_release(&n->tasks);
	free(n);
}

/* Free every task, job, node and set-aside record, and their maps (left
 * released: cluster_free ends there, a replica reset makes them anew). */
static void cluster_release_state(struct cluster *c)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->tasks, &it, NULL, &v))
		task_free(v);
	it = 0;
	while (hmap_next(&c->jobs, &it, NULL, &v))
		job_free(v);
	it = 0;
	while (hmap_next(&c->nodes, &it, NULL, &v))
		node_free(v);
	it = 0;
	while (hmap_next(&c->orphans, &it, NULL, &v))
		free(v);
	hmap_release(&c->tasks);
	hmap_release(&c->jobs);
	hmap_release(&c->nodes);
	hmap_release(&c->orphans);
	c->ndirty = 0; /* it named tasks just freed */
	c->waiting = NULL;
	c->nwaiting = 0;
	c->nchanged = 0;
}

void cluster_free(struct cluster *c)
{
	if (!c)
		return;
	cluster_release_state(c);
	free(c->dirty);
	free(c->changed);
	free(c->node_index.items);
	free(c->job_index.items);
	store_batch_free(c->pending);
	liveness_free(c->live);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->wake);
	free(c);
}

/* ---- persistence ------------------------------------------------------ */

static uint64_t touched(struct cluster *c)
{
	c->applied_seq++;
	pthread_cond_signal(&c->wake);
	return c->applied_seq;
}

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
static void add_int_field(struct sbuf *sb, const char *key, long long v)
{
	sbuf_adds(sb, key);
	sbuf_add_i64(sb, v);
}

/* The task's store record, written as text: this runs for every task at
 * every commit that touched it, so it builds no JSON tree and no printf. */
static void write_task(struct cluster *c, struct task *t)
{
	struct sbuf sb;
	sbuf_init(&sb);
	sbuf_adds(&sb, "{\"id\":");
	sbuf_add_json_str(&sb, t->id);
	sbuf_adds(&sb, ",\"job\":");
	sbuf_add_json_str(&sb, t->job->key);
	add_int_field(&sb, ",\"instance\":", t->instance);
	add_int_field(&sb, ",\"version\":", t->version);
	sbuf_adds(&sb, ",\"state\":\"");
	sbuf_adds(&sb, task_state_name(t->state));
	add_int_field(&sb, "\",\"pid\":", t->pid);
	add_int_field(&sb, ",\"exit_code\":", t->exit_code);
	add_int_field(&sb, ",\"created_ms\":", t->created_ms);
	add_int_field(&sb, ",\"running_since_ms\":", t->running_since_ms);
	add_int_field(&sb, ",\"failures\":", t->failures);
	add_int_field(&sb, ",\"quick_deaths\":", t->quick_deaths);
	add_int_field(&sb, ",\"throttle_until_ms\":", t->throttle_until_ms);
	add_int_field(&sb, ",\"replace_version\":", t->replace_version);
	add_int_field(&sb, ",\"restarts\":", t->restarts);
	add_int_field(&sb, ",\"restart_window_ms\":", t->restart_window_ms);
	sbuf_adds(&sb,
		  t->replace_on_end ? ",\"replace_on_end\":true" : ",\"replace_on_end\":false");
	sbuf_adds(&sb, t->no_replace ? ",\"no_replace\":true" : ",\"no_replace\":false");
	sbuf_adds(&sb, ",\"message\":");
	sbuf_add_json_str(&sb, t->message ? t->message : "");
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
	sbuf_adds(&sb, ",\"events\":[");
	for (size_t i = 0; i < t->nevents; i++) {
		add_int_field(&sb, i ? ",{\"time_ms\":" : "{\"time_ms\":", t->events[i].time_ms);
		sbuf_adds(&sb, ",\"state\":\"");
		sbuf_adds(&sb, task_state_name(t->events[i].state));
		sbuf_adds(&sb, "\",\"message\":");
		sbuf_add_json_str(&sb, t->events[i].message);
		sbuf_adds(&sb, "}");
	}
	sbuf_adds(&sb, "]}");
	char key[512];
	size_t kl = strlen(t->id);
	if (kl + 7 < sizeof key) {
		memcpy(key, "tasks/", 6);
		memcpy(key + 6, t->id, kl + 1);
		store_batch_put(c->pending, key, sb.buf, sb.len);
	}
	sbuf_release(&sb);
}

/* A task changes several times per tick (INIT -> PENDING -> ASSIGNED): mark
 * it and write its record once, when the batch is taken. */
static void persist_task(struct cluster *c, struct task *t)
{
	if (t->dirty_slot)
		return;
	if (c->ndirty == c->dirty_cap) {
		c->dirty_cap = c->dirty_cap ? c->dirty_cap * 2 : 1024;
		c->dirty = xrealloc(c->dirty, c->dirty_cap * sizeof *c->dirty);
	}
	c->dirty[c->ndirty++] = t;
	t->dirty_slot = c->ndirty;
}

/* A task about to be freed must not stay in the dirty list. */
static void task_forget_dirty(struct cluster *c, struct task *t)
{
	if (t->dirty_slot) {
		c->dirty[t->dirty_slot - 1] = NULL;
		t->dirty_slot = 0;
	}
}

static void persist_job(struct cluster *c, struct job *j)
{
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
static void persist_node(struct cluster *c, struct node *n)
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
	char *text = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	size_t len = strlen(text);
	uint64_t h = text_hash(text, len);
	if (h != n->record_hash) {
		n->record_hash = h;
		c->changes++;
		store_batch_put(c->pending, key, text, len);
	}
	free(text);
}

struct store_batch *cluster_take_pending(struct cluster *c, uint64_t *seq)
{
	*seq = c->applied_seq;
	for (size_t i = 0; i < c->ndirty; i++) {
		struct task *t = c->dirty[i];
		if (!t)
			continue;
		t->dirty_slot = 0;
		write_task(c, t);
	}
	c->ndirty = 0;
	if (!store_batch_count(c->pending))
		return NULL;
	struct store_batch *b = c->pending;
	c->pending = store_batch_new();
	return b;
}

/* ---- tasks -------------------------------------------------------------- */

static struct job_version *job_version_get(struct job *j, int version)
{
	for (size_t i = 0; i < j->nversions; i++)
		if (j->versions[i].version == version)
			return &j->versions[i];
	return NULL;
}

static const struct job_spec *task_spec_of(const struct task *t)
{
	struct job_version *v = job_version_get(t->job, t->version);
	return v ? v->spec : NULL;
}

static void task_add_event(struct task *t, enum task_state s, const char *msg, int64_t now)
{
	if (t->nevents == MAX_EVENTS) {
		/* Keep the first transition (creation) and the newest ones. */
		free(t->events[1].message);
		memmove(&t->events[1], &t->events[2], (MAX_EVENTS - 2) * sizeof *t->events);
		t->nevents--;
	}
	t->events = xrealloc(t->events, (t->nevents + 1) * sizeof *t->events);
	char *m = xstrdup(msg);
	utf8_clean(m); /* messages are cut by snprintf: keep them valid JSON strings */
	t->events[t->nevents++] = (struct task_event){now, s, m};
	free(t->message);
	t->message = xstrdup(m);
}

/* The node's desired task set changed: bump its version and note it so the
 * server answers its agent's long poll without scanning every watcher. */
static void node_touch(struct cluster *c, struct node *n)
{
	c->changes++;
	n->desired_version++;
	if (n->changed)
		return;
	n->changed = true;
	if (c->nchanged == c->changed_cap) {
		c->changed_cap = c->changed_cap ? c->changed_cap * 2 : 64;
		c->changed = xrealloc(c->changed, c->changed_cap * sizeof *c->changed);
	}
	c->changed[c->nchanged++] = n;
}

static void task_release_node(struct cluster *c, struct task *t)
{
	struct node *n = t->node;
	if (!n)
		return;
	if (hmap_del(&n->tasks, t->id)) {
		const struct job_spec *s = task_spec_of(t);
		if (s) {
			n->cpu_used -= s->task.resources.cpu;
			n->mem_used -= s->task.resources.memory;
			n->disk_used -= s->task.resources.disk;
		}
		const char *k;
		json_t *v;
		json_object_foreach(t->ports, k, v)
		    port_pool_release(n->ports, (int)json_integer_value(v));
		node_touch(c, n);
		c->sched_needed = true;
	}
}

static void handle_task_end(struct cluster *c, struct task *t, int64_t now);

/* Keep the waiting list (PENDING + THROTTLED) in step with a task's state,
 * so the scheduler and the throttle timer never scan every task. */
static void waiting_update(struct cluster *c, struct task *t, enum task_state to)
{
	bool want = to == TASK_PENDING || to == TASK_THROTTLED;
	if (want == t->waiting)
		return;
	if (want) {
		t->wprev = NULL;
		t->wnext = c->waiting;
		if (c->waiting)
			c->waiting->wprev = t;
		c->waiting = t;
		c->nwaiting++;
	} else {
		if (t->wprev)
			t->wprev->wnext = t->wnext;
		else
			c->waiting = t->wnext;
		if (t->wnext)
			t->wnext->wprev = t->wprev;
		t->wprev = t->wnext = NULL;
		c->nwaiting--;
	}
	t->waiting = want;
}

/* Apply a transition if the table allows it. Returns false (and counts the
 * refusal) when it does not. */
static bool task_transition(struct cluster *c, struct task *t, enum task_state to, const char *msg)
{
	if (!task_transition_check(t->state, to)) {
		log_warn("task %s: refused transition %s -> %s (%s)", t->id,
			 task_state_name(t->state), task_state_name(to), msg);
		return false;
	}
	int64_t now = time_now_ms();
	c->changes++;
	waiting_update(c, t, to);
	t->state = to;
	task_add_event(t, to, msg, now);
	if (to == TASK_RUNNING && !t->running_since_ms)
		t->running_since_ms = now;
	if (task_state_terminal(to))
		handle_task_end(c, t, now);
	persist_task(c, t);
	return true;
}

static char *new_task_id(const struct job *j, int instance)
{
	char rnd[9];
	random_hex(rnd, 8);
	char *id = xasprintf("%s-%d-%s", j->key, instance, rnd);
	for (char *p = id; *p; p++)
		if (*p == '/')
			*p = '-';
	return id;
}

static void job_ensure_instances(struct job *j, size_t n)
{
	if (n <= j->nactive)
		return;
	j->active = xrealloc(j->active, n * sizeof *j->active);
	memset(j->active + j->nactive, 0, (n - j->nactive) * sizeof *j->active);
	j->nactive = n;
	j->instance_done = xrealloc(j->instance_done, n * sizeof *j->instance_done);
	memset(j->instance_done + j->ninstance_done, 0, (n - j->ninstance_done) * sizeof(bool));
	j->ninstance_done = n;
}

static struct task *task_create(struct cluster *c, struct job *j, int instance,
				const struct task *ancestor, const char *why, int64_t throttle_ms)
{
	struct task *t = xcalloc(1, sizeof *t);
	t->id = new_task_id(j, instance);
	t->job = j;
	t->instance = instance;
	/* A successor runs its ancestor's config unless an update moves it. */
	t->version = !ancestor			 ? j->version
		     : ancestor->replace_version ? ancestor->replace_version
						 : ancestor->version;
	t->state = TASK_INIT;
	t->exit_code = -1;
	t->created_ms = time_now_ms();
	if (ancestor) {
		t->ancestor = xstrdup(ancestor->id);
		t->failures = ancestor->failures;
		t->quick_deaths = ancestor->quick_deaths;
		t->restarts = ancestor->restarts;
		t->restart_window_ms = ancestor->restart_window_ms;
	}
	task_add_event(t, TASK_INIT, why, t->created_ms);
	hmap_put(&c->tasks, t->id, t);
	j->live++;
	job_ensure_instances(j, (size_t)instance + 1);
	j->active[instance] = t;
	if (throttle_ms > 0) {
		t->throttle_until_ms = t->created_ms + throttle_ms;
		char msg[128];
		snprintf(msg, sizeof msg, "throttled for %.1fs: instance is flapping",
			 (double)throttle_ms / 1000.0);
		task_transition(c, t, TASK_THROTTLED, msg);
	} else {
		task_transition(c, t, TASK_PENDING, "waiting for a node");
	}
	c->sched_needed = true;
	return t;
}

static int64_t task_end_ms(const struct task *t)
{
	return t->nevents ? t->events[t->nevents - 1].time_ms : t->created_ms;
}

/* Ended tasks are kept ordered by when they ended (then id), the same
 * order a reload rebuilds. */
static int cmp_task_ended(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;
	int64_t ex = task_end_ms(x), ey = task_end_ms(y);
	if (ex != ey)
		return ex < ey ? -1 : 1;
	return strcmp(x->id, y->id);
}

static void job_keep_ended(struct cluster *c, struct job *j, struct task *t)
{
	j->ended = xrealloc(j->ended, (j->nended + 1) * sizeof *j->ended);
	size_t at = j->nended;
	while (at > 0 && cmp_task_ended(&j->ended[at - 1], &t) > 0)
		at--;
	memmove(j->ended + at + 1, j->ended + at, (j->nended - at) * sizeof *j->ended);
	j->ended[at] = t;
	j->nended++;
	/* The task that just ended is still in use by the caller: never prune it. */
	while (j->nended > c->cfg.ended_keep && j->nended > 1) {
		size_t victim = j->ended[0] == t ? 1 : 0;
		struct task *old = j->ended[victim];
		memmove(j->ended + victim, j->ended + victim + 1,
			(j->nended - victim - 1) * sizeof *j->ended);
		j->nended--;
		char key[512];
		snprintf(key, sizeof key, "tasks/%s", old->id);
		store_batch_delete(c->pending, key);
		hmap_del(&c->tasks, old->id);
		task_forget_dirty(c, old);
		task_free(old);
	}
}

/* ---- rolling updates ------------------------------------------------------ */

static const char *const update_state_names[] = {
    "ROLLING_FORWARD",	"ROLL_FORWARD_PAUSED", "ROLLED_FORWARD", "ROLLING_BACK",
    "ROLL_BACK_PAUSED", "ROLLED_BACK",	       "ABORTED",	 "FAILED"};
static const char *const ui_names[] = {"PENDING", "UPDATING", "WATCHING", "DONE", "FAILED"};

const char *update_state_name(enum update_state s)
{
	return (unsigned)s < ARRAY_SIZE(update_state_names) ? update_state_names[s] : "UNKNOWN";
}

bool update_state_active(enum update_state s)
{
	return s == UPDATE_ROLLING_FORWARD || s == UPDATE_ROLL_FORWARD_PAUSED ||
	       s == UPDATE_ROLLING_BACK || s == UPDATE_ROLL_BACK_PAUSED;
}

static void update_free(struct update *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n; i++)
		free(u->old_task[i]);
	free(u->old_task);
	free(u->instances);
	free(u->status);
	free(u->failures);
	free(u);
}

static int update_target(const struct update *u)
{
	return u->state == UPDATE_ROLLING_BACK || u->state == UPDATE_ROLL_BACK_PAUSED ||
		       u->state == UPDATE_ROLLED_BACK
		   ? u->from_version
		   : u->to_version;
}

static ssize_t update_slot(const struct update *u, int instance)
{
	for (size_t k = 0; k < u->n; k++)
		if (u->instances[k] == instance)
			return (ssize_t)k;
	return -1;
}

static void persist_update(struct cluster *c, struct job *j)
{
	struct update *u = j->update;
	if (!u)
		return;
	json_t *inst = json_array();
	for (size_t k = 0; k < u->n; k++)
		json_array_append_new(inst,
				      json_pack("{s:i,s:s,s:i,s:s?}", "instance", u->instances[k],
						"status", ui_names[u->status[k]], "failures",
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
	char key[512];
	snprintf(key, sizeof key, "updates/%s", j->key);
	put_json(c, key, r);
	json_decref(r);
}

static void task_stop(struct cluster *c, struct task *t, enum task_state via, const char *msg);

static bool task_stopping(const struct task *t)
{
	return t->state == TASK_KILLING || t->state == TASK_RESTARTING ||
	       t->state == TASK_DRAINING || t->state == TASK_PREEMPTING;
}

/* start_first keeps an instance's old task running beside its new one
 * (old_task[k]) until the new one runs. An update that ends (aborted,
 * failed, superseded) before that stops those old tasks: each instance
 * keeps the one task the update gave it. A task that task_stop would end at
 * once (its node is gone) is left to end on its own, so that no task ends
 * inside another task's end (update_note_failure runs in handle_task_end). */
static void update_stop_old_tasks(struct cluster *c, struct job *j)
{
	struct update *u = j->update;
	for (size_t k = 0; k < u->n; k++) {
		if (!u->old_task[k])
			continue;
		struct task *old = hmap_get(&c->tasks, u->old_task[k]);
		free(u->old_task[k]);
		u->old_task[k] = NULL;
		if (old && !task_state_terminal(old->state) && old->node &&
		    old->node->state != NODE_DOWN && old->state != TASK_PARTITIONED)
			task_stop(c, old, TASK_KILLING, "replaced by an update");
	}
}

static void update_set_state(struct cluster *c, struct job *j, enum update_state st,
			     const char *msg)
{
	struct update *u = j->update;
	u->state = st;
	if (msg) {
		snprintf(u->message, sizeof u->message, "%s", msg);
		utf8_clean(u->message); /* a cut may split a character */
	}
	if (!update_state_active(st)) {
		u->finished_ms = time_now_ms();
		update_stop_old_tasks(c, j);
	}
	log_info("update of %s: %s%s%s", j->key, update_state_name(st), msg ? ": " : "",
		 msg ? msg : "");
	persist_update(c, j);
}

/* Roll back: every instance of the update goes back to the old version. */
static void update_start_rollback(struct cluster *c, struct job *j, const char *why)
{
	struct update *u = j->update;
	for (size_t k = 0; k < u->n; k++) {
		u->status[k] = UI_PENDING;
		u->failures[k] = 0;
	}
	u->failed_instances = 0;
	j->version = u->from_version;
	update_set_state(c, j, UPDATE_ROLLING_BACK, why);
	persist_job(c, j);
}

/* Instance k of the update has failed: count it, and past the policy's
 * max_total_failures the update fails (rolls back, or stops as FAILED). */
static void update_fail_instance(struct cluster *c, struct job *j, size_t k, const char *why)
{
	struct update *u = j->update;
	u->status[k] = UI_FAILED;
	u->failed_instances++;
	if (u->failed_instances <= u->policy.max_total_failures) {
		persist_update(c, j);
		return;
	}
	if ((u->state == UPDATE_ROLLING_FORWARD || u->state == UPDATE_ROLL_FORWARD_PAUSED) &&
	    u->policy.rollback_on_failure)
		update_start_rollback(c, j, why);
	else
		update_set_state(c, j, UPDATE_FAILED, why);
}

/* A task of the update's target version ended badly: count it. */
static void update_note_failure(struct cluster *c, struct job *j, const struct task *t)
{
	struct update *u = j->update;
	if (!u || !update_state_active(u->state) || t->version != update_target(u) ||
	    t->no_replace || t->replace_on_end ||
	    (t->state != TASK_FAILED && t->state != TASK_LOST && t->state != TASK_KILLED))
		return;
	ssize_t k = update_slot(u, t->instance);
	if (k < 0 || u->status[k] == UI_DONE || u->status[k] == UI_FAILED ||
	    u->status[k] == UI_PENDING)
		return;
	u->failures[k]++;
	if (u->failures[k] <= u->policy.max_instance_failures) {
		persist_update(c, j);
		return;
	}
	char why[300];
	snprintf(why, sizeof why, "instance %d failed (%s)", t->instance, t->message);
	update_fail_instance(c, j, (size_t)k, why);
}

static void handle_task_end(struct cluster *c, struct task *t, int64_t now)
{
	struct job *j = t->job;
	if (j->live)
		j->live--;
	task_release_node(c, t);
	if ((size_t)t->instance < j->nactive && j->active[t->instance] == t)
		j->active[t->instance] = NULL;
	job_keep_ended(c, j, t);
	update_note_failure(c, j, t);

	const struct job_version *cjv = job_version_get(j, j->version);
	const struct job_spec *cur = cjv ? cjv->spec : NULL;
	if (j->killed || t->no_replace || !cur || t->instance >= cur->instances)
		return;

	char why[300];
	if (cur->type != JOB_SERVICE && t->state == TASK_FINISHED) {
		/* Ran to completion, even if a drain or restart was stopping it. */
		j->instance_done[t->instance] = true;
		persist_job(c, j);
		return;
	}
	if (t->replace_on_end) {
		if (t->replace_version && t->replace_version != t->version)
			snprintf(why, sizeof why, "update to version %d: replaces %s",
				 t->replace_version, t->id);
		else
			snprintf(why, sizeof why, "restart: replaces %s", t->id);
		task_create(c, j, t->instance, t, why, 0);
		return;
	}
	if (cur->type == JOB_BATCH || cur->type == JOB_CRON) {
		if (t->state == TASK_FINISHED) {
			j->instance_done[t->instance] = true;
			persist_job(c, j);
			return;
		}
		if (t->state == TASK_FAILED)
			t->failures++;
		if (t->state == TASK_FAILED && cur->max_task_failures >= 0 &&
		    t->failures >= cur->max_task_failures) {
			j->instance_done[t->instance] = true;
			persist_job(c, j);
			return;
		}
		snprintf(why, sizeof why, "retry %d: replaces %s (%s)", t->failures, t->id,
			 t->message);
		task_create(c, j, t->instance, t, why, 0);
		return;
	}
	if (cur->restart.set) {
		/* The job's restart policy: a doubling delay from `delay`, and a
		 * limit on restarts within a window. */
		const struct restart_policy *rp = &cur->restart;
		if (!t->restart_window_ms || now - t->restart_window_ms > (int64_t)rp->window_ms) {
			t->restart_window_ms = now;
			t->restarts = 0;
		}
		t->restarts++;
		if (rp->max_attempts > 0 && t->restarts > rp->max_attempts) {
			char msg[300];
			snprintf(
			    msg, sizeof msg,
			    "instance given up: %d restarts within %llds (restart.max_attempts %d)",
			    t->restarts - 1, (long long)(rp->window_ms / 1000), rp->max_attempts);
			task_add_event(t, t->state, msg, now);
			log_warn("%s instance %d: %s", j->key, t->instance, msg);
			j->instance_done[t->instance] = true;
			persist_job(c, j);
			return;
		}
		int64_t delay = (int64_t)rp->delay_ms;
		for (int i = 1; i < t->restarts && delay < (int64_t)rp->max_delay_ms; i++)
			delay *= 2;
		if (delay > (int64_t)rp->max_delay_ms)
			delay = (int64_t)rp->max_delay_ms;
		snprintf(why, sizeof why, "restart %d: replaces %s (%s)", t->restarts, t->id,
			 t->message);
		task_create(c, j, t->instance, t, why, delay);
		return;
	}
	/* A service: always replaced. Aurora's flapping throttle: the first quick
	 * death is replaced at once, then the back-off doubles per quick death. */
	int64_t ran = t->running_since_ms ? now - t->running_since_ms : 0;
	if (t->state != TASK_LOST && ran < c->cfg.flap_threshold_ms)
		t->quick_deaths++;
	else
		t->quick_deaths = 0;
	int64_t backoff = 0;
	if (t->quick_deaths >= 2) {
		backoff = c->cfg.throttle_base_ms;
		for (int i = 2; i < t->quick_deaths && backoff < c->cfg.throttle_max_ms; i++)
			backoff *= 2;
		if (backoff > c->cfg.throttle_max_ms)
			backoff = c->cfg.throttle_max_ms;
	}
	snprintf(why, sizeof why, "replaces %s (%s)", t->id, t->message);
	task_create(c, j, t->instance, t, why, backoff);
}

/* Stop a task on purpose. Tasks not yet on an agent end at once. */
static void task_stop(struct cluster *c, struct task *t, enum task_state via, const char *msg)
{
	/* Already stopping (by any path): the flags the caller set decide what
	 * happens when it ends; a second stop transition would be refused. */
	if (task_state_terminal(t->state) || t->state == TASK_KILLING ||
	    t->state == TASK_RESTARTING || t->state == TASK_DRAINING || t->state == TASK_PREEMPTING)
		return;
	if (t->state == TASK_INIT || t->state == TASK_PENDING || t->state == TASK_THROTTLED) {
		bool replace = t->replace_on_end;
		task_transition(c, t, TASK_KILLED, msg);
		(void)replace;
		return;
	}
	if (t->state == TASK_PARTITIONED || !t->node || t->node->state == NODE_DOWN) {
		task_transition(c, t, TASK_KILLED, msg);
		return;
	}
	if (task_transition(c, t, via, msg) && t->node) {
		node_touch(c, t->node);
	}
}

/* ---- jobs ------------------------------------------------------------- */

static struct job *job_new(struct cluster *c, const char *key)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->key = xstrdup(key);
	j->created_ms = j->updated_ms = time_now_ms();
	hmap_put(&c->jobs, key, j);
	c->job_index.gen++;
	return j;
}

static void job_add_version(struct job *j, int version, struct job_spec *spec, json_t *json)
{
	j->versions = xrealloc(j->versions, (j->nversions + 1) * sizeof *j->versions);
	struct job_version *v = &j->versions[j->nversions++];
	*v = (struct job_version){.version = version, .spec = spec, .json = json};
	if (spec->type == JOB_CRON)
		cron_parse(spec->schedule, &v->cron, NULL); /* validated with the spec */
	j->version = version;
}

static bool job_has_active(const struct job *j)
{
	for (size_t i = 0; i < j->nactive; i++)
		if (j->active[i])
			return true;
	return false;
}

static void job_forget(struct cluster *c, struct job *j)
{
	char key[512];
	snprintf(key, sizeof key, "jobs/%s", j->key);
	store_batch_delete(c->pending, key);
	snprintf(key, sizeof key, "updates/%s", j->key);
	store_batch_delete(c->pending, key);
	for (size_t i = 0; i < j->nended; i++) {
		snprintf(key, sizeof key, "tasks/%s", j->ended[i]->id);
		store_batch_delete(c->pending, key);
		hmap_del(&c->tasks, j->ended[i]->id);
		task_forget_dirty(c, j->ended[i]);
		task_free(j->ended[i]);
	}
	j->nended = 0;
	hmap_del(&c->jobs, j->key);
	c->job_index.gen++;
	job_free(j);
}

static int job_max_version(const struct job *j)
{
	int m = 0;
	for (size_t i = 0; i < j->nversions; i++)
		if (j->versions[i].version > m)
			m = j->versions[i].version;
	return m;
}

/* Start a rolling update of instances [first, last] to the job's current
 * version. An update in flight is superseded (ABORTED where it stands). */
static void update_begin(struct cluster *c, struct job *j, int from, int first, int last)
{
	const struct job_spec *spec = job_version_get(j, j->version)->spec;
	if (j->update && update_state_active(j->update->state))
		update_set_state(c, j, UPDATE_ABORTED, "superseded by a newer update");
	update_free(j->update);
	struct update *u = xcalloc(1, sizeof *u);
	j->update = u;
	u->from_version = from;
	u->to_version = j->version;
	u->policy = spec->update;
	if (u->policy.batch_size < 1)
		u->policy.batch_size = 1;
	u->started_ms = time_now_ms();
	for (int i = first; i <= last && i < spec->instances; i++) {
		struct task *t = (size_t)i < j->nactive ? j->active[i] : NULL;
		if (!t || t->version == j->version)
			continue;
		u->instances = xrealloc(u->instances, (u->n + 1) * sizeof *u->instances);
		u->instances[u->n++] = i;
	}
	u->status = xcalloc(u->n + 1, sizeof *u->status);
	u->failures = xcalloc(u->n + 1, sizeof *u->failures);
	u->old_task = xcalloc(u->n + 1, sizeof *u->old_task);
	char msg[128];
	snprintf(msg, sizeof msg, "%zu instances from version %d to %d", u->n, from, j->version);
	update_set_state(c, j, u->n ? UPDATE_ROLLING_FORWARD : UPDATE_ROLLED_FORWARD, msg);
	update_advance(c, j, time_now_ms()); /* the first batch starts now */
}

uint64_t cluster_job_submit(struct cluster *c, struct job_spec *spec, struct submit_result *res,
			    struct berr *err)
{
	return cluster_job_submit_instances(c, spec, 0, INT_MAX, res, err);
}

uint64_t cluster_job_submit_instances(struct cluster *c, struct job_spec *spec, int first, int last,
				      struct submit_result *res, struct berr *err)
{
	memset(res, 0, sizeof *res);
	struct job *j = hmap_get(&c->jobs, spec->key);
	json_t *json = spec_to_json(spec);
	if (j && j->killed) {
		/* A job being killed cannot be resubmitted until its tasks are gone. */
		json_decref(json);
		spec_free(spec);
		berr_set(err, 409, "job '%s' is being killed; submit again once its tasks ended",
			 j->key);
		return 0;
	}
	if (!j) {
		j = job_new(c, spec->key);
		job_add_version(j, 1, spec, json);
		res->created = res->changed = true;
		res->version = 1;
		if (spec->type == JOB_CRON)
			j->cron_last_ms = time_now_ms(); /* runs start at the next slot */
		else
			for (int i = 0; i < spec->instances; i++)
				task_create(c, j, i, NULL, "task created", 0);
		persist_job(c, j);
		return touched(c);
	}
	struct job_version *cur = job_version_get(j, j->version);
	if (json_equal(cur->json, json)) {
		json_decref(json);
		spec_free(spec);
		res->version = j->version;
		/* The same spec again after a canary: the instances still on an
		 * older version are updated now. */
		bool behind = false;
		for (int i = first < 0 ? 0 : first;
		     i <= last && (size_t)i < j->nactive && i < cur->spec->instances; i++)
			behind = behind || (j->active[i] && j->active[i]->version != j->version);
		if (behind && cur->spec->type != JOB_CRON &&
		    (!j->update || !update_state_active(j->update->state))) {
			int from = j->update ? j->update->from_version : j->version;
			update_begin(c, j, from, first < 0 ? 0 : first, last);
			res->update = res->changed = true;
			persist_job(c, j);
		}
		return touched(c);
	}
	res->changed = true;
	json_t *old_task = spec_task_to_json(cur->spec), *new_task = spec_task_to_json(spec);
	bool task_changed = !json_equal(old_task, new_task) || cur->spec->type != spec->type;
	json_decref(old_task);
	json_decref(new_task);
	int old_instances = cur->spec->instances;
	int from = j->version;
	if (task_changed) {
		job_add_version(j, job_max_version(j) + 1, spec, json);
	} else {
		/* Same task config: the version stays, the spec (instances,
		 * update policy...) is replaced in place. */
		spec_free(cur->spec);
		json_decref(cur->json);
		free(cur->task_text);
		cur->task_text = NULL;
		cur->spec = spec;
		cur->json = json;
		if (spec->type == JOB_CRON)
			cron_parse(spec->schedule, &cur->cron, NULL);
	}
	res->version = j->version;
	j->updated_ms = time_now_ms();
	/* Scale down: stop instances beyond the new count. */
	for (size_t i = (size_t)spec->instances; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t) {
			t->no_replace = true;
			task_stop(c, t, TASK_KILLING, "instance removed by a job update");
		}
	}
	/* Scale up, and batch instances that ended are not re-run. */
	job_ensure_instances(j, (size_t)spec->instances);
	for (int i = old_instances; i < spec->instances && spec->type != JOB_CRON; i++) {
		struct task *t = j->active[i];
		if (!t) {
			j->instance_done[i] = false;
			task_create(c, j, i, NULL, "task created (scale up)", 0);
		} else if (t->no_replace) {
			/* Removed by an earlier update and still stopping: it gets a
			 * successor when it ends. */
			t->no_replace = false;
			t->replace_on_end = true;
		}
	}
	/* A new task config rolls out with the update policy. */
	if (task_changed) {
		update_begin(c, j, from, first < 0 ? 0 : first, last);
		res->update = true;
	}
	persist_job(c, j);
	return touched(c);
}

uint64_t cluster_job_kill(struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	j->killed = true;
	for (size_t k = 0; j->update && k < j->update->n; k++) {
		struct task *old =
		    j->update->old_task[k] ? hmap_get(&c->tasks, j->update->old_task[k]) : NULL;
		if (old)
			task_stop(c, old, TASK_KILLING, "killed by user (job kill)");
	}
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t) {
			t->no_replace = true;
			task_stop(c, t, TASK_KILLING, "killed by user (job kill)");
		}
	}
	persist_job(c, j);
	/* Forgotten only when no task of it lives, in active[] or not (start
	 * first or cron runs leave tasks outside it): they point at the job. */
	if (!j->live)
		job_forget(c, j);
	return touched(c);
}

uint64_t cluster_job_restart(struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j || j->killed) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	struct job_version *jv = job_version_get(j, j->version);
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (!t) {
			/* A service instance its restart policy gave up: start over. */
			if (jv && jv->spec->type == JOB_SERVICE && (int)i < jv->spec->instances &&
			    i < j->ninstance_done && j->instance_done[i]) {
				j->instance_done[i] = false;
				task_create(c, j, (int)i, NULL, "restarted by user", 0);
				persist_job(c, j);
			}
			continue;
		}
		t->replace_on_end = true;
		t->quick_deaths = 0;
		t->restarts = 0;
		t->restart_window_ms = 0;
		task_stop(c, t, TASK_RESTARTING, "restarted by user");
	}
	return touched(c);
}

/* ---- nodes and agents ------------------------------------------------- */

static void node_set_attrs(struct node *n, json_t *attrs)
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

static struct node *node_new(struct cluster *c, const char *name)
{
	struct node *n = xcalloc(1, sizeof *n);
	n->name = xstrdup(name);
	char rnd[17];
	random_hex(rnd, 16);
	n->id = xstrdup(rnd);
	n->state = NODE_DOWN;
	/* Desired versions start from the clock, so that after a server restart
	 * they never repeat one an agent already saw (its long poll would not
	 * answer). */
	n->desired_version = (uint64_t)time_now_ms() * 1000;
	n->port_lo = 20000;
	n->port_hi = 32767;
	n->ports = port_pool_new(n->port_lo, n->port_hi);
	hmap_init_borrowed(&n->tasks);
	hmap_put(&c->nodes, name, n);
	c->node_index.gen++;
	n->live = liveness_node(c->live, name);
	return n;
}

static void node_set_resources(struct node *n, json_t *res)
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
	n->state = n->drain_requested ? NODE_DRAINING : NODE_ACTIVE;
	if (n->down_mono)
		node_flapped(c, n, mono);
	else
		log_info("node %s is up (%s)", n->name, node_state_name(n->state));
	n->down_mono = 0;
	n->up_since_mono = mono;
	c->sched_needed = true;
	if (n->nheld) {
		n->held_until_mono = mono + HELD_REPORT_MS;
		node_prune_held(c, n);
	}
	return true;
}

static int agent_state_parse(json_t *v)
{
	const char *s = json_string_value(v);
	return s ? task_state_parse(s) : -1;
}

/* Apply what the agent says of one task. */
static void apply_agent_task(struct cluster *c, struct node *n, json_t *u)
{
	const char *id = json_string_value(json_object_get(u, "id"));
	int st = agent_state_parse(json_object_get(u, "state"));
	if (!id || st < 0)
		return;
	/* Agents report what happened to a task; the stopping states are the
	 * server's decisions (docs/protocol.md). */
	if (st != TASK_STARTING && st != TASK_RUNNING && st != TASK_FINISHED && st != TASK_FAILED &&
	    st != TASK_KILLED && st != TASK_LOST)
		return;
	struct task *t = hmap_get(&c->tasks, id);
	if (!t || task_state_terminal(t->state) || t->node != n)
		return; /* not wanted here: left out of the desired set, the agent kills it */
	json_t *pid = json_object_get(u, "pid");
	if (json_is_integer(pid) && json_integer_value(pid) > 0)
		t->pid = (int)json_integer_value(pid);
	const char *msg = json_string_value(json_object_get(u, "message"));
	json_t *ec = json_object_get(u, "exit_code");
	if (json_is_integer(ec))
		t->exit_code = (int)json_integer_value(ec);
	if ((enum task_state)st == t->state)
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
		if (st == TASK_RUNNING)
			snprintf(buf, sizeof buf, "running on %s as pid %d", n->name, t->pid);
		else
			snprintf(buf, sizeof buf, "%s on %s", task_state_name(st), n->name);
		msg = buf;
	}
	/* A task the agent ran straight to an end passes through RUNNING only
	 * when the table needs it. */
	task_transition(c, t, (enum task_state)st, msg);
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
	t->state = (enum task_state)st;
	snprintf(msg, sizeof msg, "taken back: node %s came back and still runs it", n->name);
	task_add_event(t, t->state, msg, time_now_ms());
	j->active[t->instance] = t;
	j->live++;
	hmap_put(&n->tasks, t->id, t);
	n->cpu_used += res->cpu;
	n->mem_used += res->memory;
	n->disk_used += res->disk;
	const char *k;
	json_t *pv;
	json_object_foreach(t->ports, k, pv)
	    port_pool_reserve(n->ports, (int)json_integer_value(pv));
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
static void reconcile_report(struct cluster *c, struct node *n, json_t *report, uint64_t known,
			     bool registering)
{
	struct hmap seen;
	hmap_init(&seen);
	size_t i;
	json_t *u;
	json_array_foreach(report, i, u)
	{
		const char *id = json_string_value(json_object_get(u, "id"));
		if (id)
			hmap_put(&seen, id, u);
		if (id && n->nheld && node_holds(n, id))
			task_take_back(c, n, hmap_get(&c->tasks, id),
				       agent_state_parse(json_object_get(u, "state")));
		apply_agent_task(c, n, u);
	}
	struct task **missing = NULL;
	size_t nmissing = 0;
	size_t it = 0;
	void *v;
	while (hmap_next(&n->tasks, &it, NULL, &v)) {
		struct task *t = v;
		if (hmap_get(&seen, t->id))
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
	hmap_release(&seen);
	/* The report says what runs: the held tasks not taken back go. */
	node_drop_held(c, n);
}

static int check_name(json_t *body, const char **name, struct berr *err)
{
	*name = json_string_value(json_object_get(body, "name"));
	if (!*name || !**name || strlen(*name) > 128 || strchr(*name, '/'))
		return berr_set(err, 400, "field 'name': expected a node name");
	return 0;
}

uint64_t cluster_agent_register(struct cluster *c, json_t *body, json_t **reply, struct berr *err)
{
	const char *name;
	if (check_name(body, &name, err) < 0)
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
	node_set_attrs(n, attrs);
	node_set_resources(n, res);
	free(n->addr);
	n->addr = xstrdup(json_string_value(json_object_get(body, "addr")));
	node_mark_up(c, n);
	if (report)
		reconcile_report(c, n, report, n->desired_version, true);
	node_touch(c, n); /* the agent starts from 0: it always fetches */
	persist_node(c, n);
	c->sched_needed = true;
	*reply = json_pack("{s:s,s:s,s:I}", "node_id", n->id, "name", n->name, "heartbeat_ms",
			   (json_int_t)c->cfg.heartbeat_ms);
	log_info("node %s registered (%.1f cpu, %llu MiB)", n->name, n->cpu_total,
		 (unsigned long long)(n->mem_total >> 20));
	return touched(c);
}

uint64_t cluster_agent_watch(struct cluster *c, json_t *body, struct node **node_out,
			     struct berr *err)
{
	const char *name;
	if (check_name(body, &name, err) < 0)
		return 0;
	struct node *n = hmap_get(&c->nodes, name);
	if (!n) {
		berr_set(err, 404, "node '%s' is not registered", name);
		return 0;
	}
	json_t *report = json_object_get(body, "tasks");
	json_t *known = json_object_get(body, "known_version");
	if (report && !json_is_array(report)) {
		berr_set(err, 400, "field 'tasks': expected an array");
		return 0;
	}
	uint64_t changes = c->changes;
	bool came_up = node_mark_up(c, n);
	if (report && json_is_integer(known))
		reconcile_report(c, n, report, (uint64_t)json_integer_value(known), false);
	*node_out = n;
	/* A pure heartbeat changes nothing: it must not wake the commit loop
	 * (ten thousand agents would keep it spinning, lock held). */
	if (came_up || c->changes != changes || !c->applied_seq)
		return touched(c);
	return c->applied_seq;
}

uint64_t cluster_agent_status(struct cluster *c, json_t *body, struct berr *err)
{
	const char *name;
	if (check_name(body, &name, err) < 0)
		return 0;
	struct node *n = hmap_get(&c->nodes, name);
	if (!n) {
		berr_set(err, 404, "node '%s' is not registered", name);
		return 0;
	}
	json_t *updates = json_object_get(body, "updates");
	if (!json_is_array(updates)) {
		berr_set(err, 400, "field 'updates': expected an array");
		return 0;
	}
	node_mark_up(c, n);
	size_t i;
	json_t *u;
	json_array_foreach(updates, i, u) apply_agent_task(c, n, u);
	return touched(c);
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
	sbuf_addf(sb, ",\"instance\":%d,\"version\":%d,\"host\":", t->instance, t->version);
	sbuf_add_json_str(sb, n->name);
	if (t->ports) {
		char *p = json_dumps(t->ports, JSON_COMPACT);
		sbuf_addf(sb, ",\"ports\":%s", p);
		free(p);
	} else {
		sbuf_adds(sb, ",\"ports\":{}");
	}
	sbuf_addf(sb, ",\"task\":%s}", job_version_task_text(jv));
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
		sbuf_addf(&sb, "{\"version\":%llu%s}", (unsigned long long)n->desired_version, ask);
		return sbuf_detach(&sb);
	}
	sbuf_addf(&sb, "{\"version\":%llu,\"tasks\":[", (unsigned long long)n->desired_version);
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
	if (n->state != NODE_DOWN)
		n->state = drain ? NODE_DRAINING : NODE_ACTIVE;
	persist_node(c, n);
	c->sched_needed = true;
	return touched(c);
}

/* ---- the periodic work ------------------------------------------------ */

/* The node is judged DOWN: its tasks are LOST (and replaced); those it ran
 * are remembered, to be taken back if it returns before their
 * replacements start. */
static void node_down(struct cluster *c, struct node *n, int64_t silence, int64_t mono)
{
	n->state = NODE_DOWN;
	n->down_mono = mono;
	n->held_until_mono = 0;
	__atomic_fetch_add(&c->nodes_down_total, 1, __ATOMIC_RELAXED);
	char msg[300];
	snprintf(msg, sizeof msg, "agent %s missed heartbeats for %.1fs", n->name,
		 (double)silence / 1000.0);
	log_warn("node %s is down: %s", n->name, msg);
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

/* A node is DOWN when it was silent for down_after, not counting the time
 * the server itself could not hear (liveness.h): a busy or paused server
 * never blames its agents for its own lateness. */
static void nodes_check_heartbeats(struct cluster *c, int64_t mono)
{
	if (c->judged_mono && mono - c->judged_mono < JUDGE_EVERY_MS)
		return;
	c->judged_mono = mono;
	liveness_account(c->live, mono);
	/* After a server (re)start agents get a full detection window. */
	bool judge = mono - c->loaded_mono >= c->cfg.down_after_ms;
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
		if (silence > c->cfg.down_after_ms)
			node_down(c, n, silence, mono);
	}
}

static void tasks_unthrottle(struct cluster *c, int64_t now)
{
	for (struct task *t = c->waiting, *next; t; t = next) {
		next = t->wnext;
		if (t->state == TASK_THROTTLED && now >= t->throttle_until_ms) {
			task_transition(c, t, TASK_PENDING, "throttle expired; waiting for a node");
			c->sched_needed = true;
		}
	}
}

/* Drain: move tasks off DRAINING nodes, a few at a time per job (never
 * all instances of a job at once); a node with nothing left is DRAINED. */
static void nodes_drain(struct cluster *c)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		if (n->state != NODE_DRAINING)
			continue;
		if (n->tasks.count == 0) {
			n->state = NODE_DRAINED;
			log_info("node %s drained", n->name);
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

static int cmp_task_class(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;
	if (x->job != y->job)
		return (uintptr_t)x->job < (uintptr_t)y->job ? -1 : 1;
	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	return (x->instance > y->instance) - (x->instance < y->instance);
}

/* Place one equivalence class: the PENDING tasks group[0..ng) share a job
 * and a config version. */
static void place_class(struct cluster *c, struct node **nodes, struct placement_node *pn,
			size_t nn, struct task **group, size_t ng)
{
	struct job *j = group[0]->job;
	struct job_version *jv = job_version_get(j, group[0]->version);
	if (!jv)
		return;
	/* Tasks of the job per node, for limit constraints and spreading. */
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t && t->node)
			pn[t->node->sched_index].job_tasks++;
	}
	struct placement_request req = {
	    .job = jv->spec,
	    .count = ng,
	    .sample_limit = c->cfg.sample_limit,
	    .start_offset = nn ? c->sched_offset % nn : 0,
	};
	struct placement_result res = {0};
	placement_place(pn, nn, &req, &res);
	c->sched_offset = res.next_offset;
	const struct resources *r = &jv->spec->task.resources;
	for (size_t g = 0; g < ng; g++) {
		struct task *t = group[g];
		int ni = res.node_index[g];
		if (ni < 0) {
			const char *why = res.reason ? res.reason : "no nodes registered";
			if (!t->message || strcmp(t->message, why)) {
				free(t->message);
				t->message = xstrdup(why);
			}
			continue;
		}
		struct node *n = nodes[ni];
		/* Most tasks have no ports: no object for them (memory per task). */
		json_t *ports = r->nports ? json_object() : NULL;
		for (size_t p = 0; p < r->nports; p++)
			json_object_set_new(ports, r->ports[p],
					    json_integer(port_pool_take(n->ports)));
		json_decref(t->ports);
		t->ports = ports;
		n->cpu_used += r->cpu;
		n->mem_used += r->memory;
		n->disk_used += r->disk;
		t->node = n;
		hmap_put(&n->tasks, t->id, t);
		node_touch(c, n);
		t->assigned_at = n->desired_version;
		char msg[300];
		snprintf(msg, sizeof msg, "assigned to node %s", n->name);
		task_transition(c, t, TASK_ASSIGNED, msg);
	}
	placement_result_release(&res);
	for (size_t i = 0; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t && t->node)
			pn[t->node->sched_index].job_tasks = 0;
	}
}

/* The scheduler's view of every node: free resources, attributes, state. */
static void node_view(struct cluster *c, struct node ***nodes_out, struct placement_node **pn_out,
		      size_t *nn_out)
{
	size_t nn = c->nodes.count;
	struct node **nodes = xcalloc(nn + 1, sizeof *nodes);
	struct placement_node *pn = xcalloc(nn + 1, sizeof *pn);
	size_t k = 0, it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		n->sched_index = k;
		nodes[k] = n;
		pn[k].name = n->name;
		/* A flapping node takes no new tasks until its back-off ends. */
		pn[k].schedulable = n->state == NODE_ACTIVE && !n->in_backoff;
		pn[k].attributes = n->attrs;
		pn[k].nattributes = n->nattrs;
		pn[k].cpu_free = n->cpu_total - n->cpu_used;
		pn[k].mem_free = n->mem_total > n->mem_used ? n->mem_total - n->mem_used : 0;
		pn[k].disk_free = n->disk_total > n->disk_used ? n->disk_total - n->disk_used : 0;
		pn[k].ports_free = port_pool_available(n->ports);
		k++;
	}
	*nodes_out = nodes;
	*pn_out = pn;
	*nn_out = nn;
}

static void schedule_pending(struct cluster *c)
{
	c->sched_needed = false;
	size_t np = 0;
	struct task **pending = xcalloc(c->nwaiting + 1, sizeof *pending);
	for (struct task *t = c->waiting; t; t = t->wnext)
		if (t->state == TASK_PENDING)
			pending[np++] = t;
	if (!np) {
		free(pending);
		return;
	}
	size_t nn;
	struct node **nodes;
	struct placement_node *pn;
	node_view(c, &nodes, &pn, &nn);
	/* Higher priority jobs first would go here; for now oldest job first
	 * within one pass is not guaranteed, classes are placed in address order. */
	qsort(pending, np, sizeof *pending, cmp_task_class);
	for (size_t i = 0; i < np;) {
		size_t e = i + 1;
		while (e < np && pending[e]->job == pending[i]->job &&
		       pending[e]->version == pending[i]->version)
			e++;
		place_class(c, nodes, pn, nn, pending + i, e - i);
		i = e;
	}
	free(pending);
	free(nodes);
	free(pn);
}

/* A rollback reaches an instance whose start_first old task still runs
 * beside the new one: the old task runs the version the rollback goes back
 * to, so it becomes the instance's task again and the new one stops. */
static void update_restore_old_task(struct cluster *c, struct job *j, size_t k)
{
	struct update *u = j->update;
	struct task *old = hmap_get(&c->tasks, u->old_task[k]);
	free(u->old_task[k]);
	u->old_task[k] = NULL;
	int i = u->instances[k];
	if (!old || task_state_terminal(old->state) || task_stopping(old))
		return;
	if (old->version != update_target(u) || (size_t)i >= j->nactive) {
		task_stop(c, old, TASK_KILLING, "replaced by an update");
		return;
	}
	struct task *cur = j->active[i];
	if (cur && cur != old) {
		cur->no_replace = true;
		cur->replace_on_end = false;
		if (task_stopping(cur))
			persist_task(c, cur);
		else
			task_stop(c, cur, TASK_KILLING, "rolled back: the old task runs on");
	}
	old->no_replace = false;
	persist_task(c, old);
	j->active[i] = old;
}

/* Before a rollback moves instances: old tasks kept by start_first come
 * back, and the job goes back to the old config's instance count (instances
 * the new config added stop, instances it removed come back). Runs from the
 * tick, never inside a task's end. */
static void update_rollback_prepare(struct cluster *c, struct job *j)
{
	struct update *u = j->update;
	for (size_t k = 0; k < u->n; k++)
		if (u->old_task[k])
			update_restore_old_task(c, j, k);
	const struct job_version *fv = job_version_get(j, u->from_version);
	if (!fv || j->killed || fv->spec->type == JOB_CRON)
		return;
	int want = fv->spec->instances;
	for (size_t i = (size_t)want; i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (t && !t->no_replace) {
			t->no_replace = true;
			t->replace_on_end = false;
			if (task_stopping(t))
				persist_task(c, t);
			else
				task_stop(c, t, TASK_KILLING, "instance removed by a rollback");
		}
	}
	job_ensure_instances(j, (size_t)want);
	for (int i = 0; i < want; i++) {
		struct task *t = j->active[i];
		if (!t && !j->instance_done[i]) {
			task_create(c, j, i, NULL, "task created by a rollback", 0);
		} else if (t && t->no_replace && task_stopping(t)) {
			/* Removed by the new config and still stopping: it gets a
			 * successor on the old version when it ends. */
			t->no_replace = false;
			t->replace_on_end = true;
			t->replace_version = u->from_version;
			persist_task(c, t);
		}
	}
}

/* Move one job's update along: start instances up to the batch size, watch
 * the new tasks, finish when every instance is done. */
static void update_advance(struct cluster *c, struct job *j, int64_t now)
{
	struct update *u = j->update;
	if (!u || (u->state != UPDATE_ROLLING_FORWARD && u->state != UPDATE_ROLLING_BACK))
		return;
	int target = update_target(u);
	const struct job_version *tv = job_version_get(j, target);
	if (!tv)
		return;
	if (u->state == UPDATE_ROLLING_BACK)
		update_rollback_prepare(c, j);
	size_t inflight = 0, finished = 0;
	bool changed = false;
	for (size_t k = 0; k < u->n; k++)
		if (u->status[k] == UI_UPDATING || u->status[k] == UI_WATCHING)
			inflight++;
	for (size_t k = 0; k < u->n; k++) {
		int i = u->instances[k];
		struct task *t = (size_t)i < j->nactive ? j->active[i] : NULL;
		switch (u->status[k]) {
		case UI_PENDING: {
			/* A task not placed yet has nothing to protect: it is
			 * replaced at once, outside the batch. */
			bool unplaced = t && (t->state == TASK_PENDING ||
					      t->state == TASK_THROTTLED || t->state == TASK_INIT);
			if (!unplaced && inflight >= (size_t)u->policy.batch_size)
				break;
			if (!unplaced)
				inflight++;
			changed = true;
			u->status[k] = UI_UPDATING;
			if (t && t->version == target) {
				/* A rollback caught its old task stopping for the new
				 * version: the successor runs the target instead. */
				if (t->replace_on_end && t->replace_version &&
				    t->replace_version != target) {
					t->replace_version = target;
					persist_task(c, t);
				}
				break;
			}
			if (!t) {
				if ((size_t)i < j->ninstance_done && j->instance_done[i]) {
					if (tv->spec->type != JOB_SERVICE) {
						/* A batch instance that ran to its end: nothing
						 * to update, and it is not run again. */
						u->status[k] = UI_DONE;
						break;
					}
					/* A service instance its restart policy gave up:
					 * the update gives it a new start. */
					j->instance_done[i] = false;
					persist_job(c, j);
				}
				if (i >= 0 && i < tv->spec->instances) {
					struct task tmp = {.id = "", .version = target};
					task_create(c, j, i, &tmp, "task created by an update", 0);
					free(j->active[i]->ancestor);
					j->active[i]->ancestor = NULL;
				}
				break;
			}
			char msg[128];
			snprintf(msg, sizeof msg, "%s to version %d",
				 u->state == UPDATE_ROLLING_BACK ? "rolling back" : "updating",
				 target);
			if (u->policy.order == UPDATE_START_FIRST &&
			    !task_state_terminal(t->state) && t->node) {
				/* Start the new task first; the old one stops once the
				 * new one runs. */
				free(u->old_task[k]);
				u->old_task[k] = xstrdup(t->id);
				t->no_replace = true;
				j->active[i] = NULL;
				struct task tmp = {.id = t->id, .version = target};
				task_create(c, j, i, &tmp, msg, 0);
			} else {
				t->replace_on_end = true;
				t->replace_version = target;
				task_stop(c, t, TASK_RESTARTING, msg);
			}
			break;
		}
		case UI_UPDATING:
			if (t && t->version == target && t->state == TASK_RUNNING) {
				u->status[k] = UI_WATCHING;
				changed = true;
				if (u->old_task[k]) {
					struct task *old = hmap_get(&c->tasks, u->old_task[k]);
					if (old)
						task_stop(c, old, TASK_KILLING,
							  "replaced by an update");
					free(u->old_task[k]);
					u->old_task[k] = NULL;
				}
			} else if (!t && i >= tv->spec->instances) {
				u->status[k] = UI_DONE; /* the instance went away */
				changed = true;
			} else if (!t && (size_t)i < j->ninstance_done && j->instance_done[i]) {
				changed = true;
				if (tv->spec->type != JOB_SERVICE) {
					u->status[k] = UI_DONE; /* ran to its end */
				} else {
					/* Its restart policy gave the instance up. */
					enum update_state before = u->state;
					char why[160];
					snprintf(
					    why, sizeof why,
					    "instance %d failed (given up by its restart policy)",
					    i);
					update_fail_instance(c, j, k, why);
					if (u->state != before)
						return; /* rolling back or failed: a new pass */
				}
			}
			break;
		case UI_WATCHING:
			if (!t || t->version != target || t->state != TASK_RUNNING) {
				u->status[k] = UI_UPDATING;
				changed = true;
			} else if (now - t->running_since_ms >= (int64_t)u->policy.watch_ms) {
				u->status[k] = UI_DONE;
				changed = true;
			}
			break;
		case UI_DONE:
		case UI_FAILED:
			break;
		}
		if (u->status[k] == UI_DONE || u->status[k] == UI_FAILED)
			finished++;
	}
	if (finished == u->n) {
		bool back = u->state == UPDATE_ROLLING_BACK;
		char msg[sizeof u->message];
		/* A rollback keeps saying why it happened. */
		if (back)
			snprintf(msg, sizeof msg, "%zu instances back on version %d (%s)", u->n,
				 target, u->message);
		else
			snprintf(msg, sizeof msg, "%zu instances on version %d", u->n, target);
		update_set_state(c, j, back ? UPDATE_ROLLED_BACK : UPDATE_ROLLED_FORWARD, msg);
	} else if (changed) {
		persist_update(c, j);
	}
}

static void updates_advance(struct cluster *c)
{
	int64_t now = time_now_ms();
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		if (j->update && !j->killed)
			update_advance(c, j, now);
	}
}

uint64_t cluster_update_control(struct cluster *c, const char *key, const char *action,
				struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j || j->killed) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	struct update *u = j->update;
	if (!u || !update_state_active(u->state)) {
		berr_set(err, 409, "job '%s' has no update in progress", key);
		return 0;
	}
	enum update_state st = u->state;
	if (!strcmp(action, "pause")) {
		if (st == UPDATE_ROLLING_FORWARD)
			update_set_state(c, j, UPDATE_ROLL_FORWARD_PAUSED, "paused by user");
		else if (st == UPDATE_ROLLING_BACK)
			update_set_state(c, j, UPDATE_ROLL_BACK_PAUSED, "paused by user");
	} else if (!strcmp(action, "resume")) {
		if (st == UPDATE_ROLL_FORWARD_PAUSED)
			update_set_state(c, j, UPDATE_ROLLING_FORWARD, "resumed by user");
		else if (st == UPDATE_ROLL_BACK_PAUSED)
			update_set_state(c, j, UPDATE_ROLLING_BACK, "resumed by user");
	} else if (!strcmp(action, "abort")) {
		update_set_state(c, j, UPDATE_ABORTED, "aborted by user");
	} else if (!strcmp(action, "rollback")) {
		if (st == UPDATE_ROLLING_BACK || st == UPDATE_ROLL_BACK_PAUSED) {
			berr_set(err, 409, "job '%s' is already rolling back", key);
			return 0;
		}
		update_start_rollback(c, j, "rollback asked by user");
	} else {
		berr_set(err, 404, "unknown update action '%s'", action);
		return 0;
	}
	return touched(c);
}

json_t *cluster_update_json(struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j) {
		berr_set(err, 404, "job '%s' not found", key);
		return NULL;
	}
	struct update *u = j->update;
	if (!u) {
		berr_set(err, 404, "job '%s' has had no update", key);
		return NULL;
	}
	json_t *inst = json_array();
	int updated = 0, failed = 0, watching = 0;
	for (size_t k = 0; k < u->n; k++) {
		json_array_append_new(inst, json_pack("{s:i,s:s,s:i}", "instance", u->instances[k],
						      "status", ui_names[u->status[k]], "failures",
						      u->failures[k]));
		updated += u->status[k] == UI_DONE;
		failed += u->status[k] == UI_FAILED;
		watching += u->status[k] == UI_WATCHING;
	}
	(void)c;
	return json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:I,s:I,s:o}", "job", j->key,
			 "state", update_state_name(u->state), "from_version", u->from_version,
			 "to_version", u->to_version, "updated", updated, "healthy",
			 updated + watching, "failed", failed, "total", (int)u->n, "message",
			 u->message, "started_ms", (json_int_t)u->started_ms, "finished_ms",
			 (json_int_t)u->finished_ms, "instances", inst);
}

/* ---- cron ----------------------------------------------------------------- */

/* Start one run of a cron job: every instance gets a new task. A run still
 * going is killed first (kill_existing) or this run is skipped (cancel_new). */
static bool cron_fire(struct cluster *c, struct job *j, const char *why)
{
	struct job_version *jv = job_version_get(j, j->version);
	if (!jv || j->killed)
		return false;
	bool running = job_has_active(j);
	if (running && jv->spec->cron_collision == CRON_CANCEL_NEW) {
		log_info("cron %s: run skipped, the previous one is still going (cancel_new)",
			 j->key);
		return false;
	}
	for (size_t i = 0; running && i < j->nactive; i++) {
		struct task *t = j->active[i];
		if (!t)
			continue;
		/* The old run's task leaves its slot and is stopped. */
		t->no_replace = true;
		t->replace_on_end = false;
		j->active[i] = NULL;
		task_stop(c, t, TASK_KILLING, "killed by the next cron run (kill_existing)");
	}
	job_ensure_instances(j, (size_t)jv->spec->instances);
	for (int i = 0; i < jv->spec->instances; i++) {
		j->instance_done[i] = false;
		task_create(c, j, i, NULL, why, 0);
	}
	if (j->cron_runs < INT_MAX)
		j->cron_runs++;
	persist_job(c, j);
	return true;
}

static void crons_fire(struct cluster *c, int64_t now)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		struct job_version *jv = j->killed ? NULL : job_version_get(j, j->version);
		if (!jv || jv->spec->type != JOB_CRON)
			continue;
		bool utc = !c->cfg.cron_local_time;
		int64_t next = cron_next(&jv->cron, j->cron_last_ms, utc);
		if (next < 0 || next > now)
			continue;
		/* Missed slots (the server was down) make one run, not one each:
		 * take the newest slot not after now. Looked for in the last hour,
		 * day, month, year first, so that a long gap (a minutely job whose
		 * last run is a year old) costs a few steps, not one per slot. */
		static const int64_t windows_ms[] = {3600000LL, 86400000LL, 32 * 86400000LL,
						     400 * 86400000LL};
		for (size_t w = 0; w < ARRAY_SIZE(windows_ms); w++) {
			if (now - windows_ms[w] <= next)
				break;
			int64_t recent = cron_next(&jv->cron, now - windows_ms[w], utc);
			if (recent >= 0 && recent <= now) {
				next = recent;
				break;
			}
		}
		for (int guard = 0; guard < 100000; guard++) {
			int64_t after = cron_next(&jv->cron, next, utc);
			if (after < 0 || after > now)
				break;
			next = after;
		}
		j->cron_last_ms = next;
		char ts[40], why[80];
		time_format_ms(next, ts, sizeof ts);
		snprintf(why, sizeof why, "cron run scheduled for %s", ts);
		if (!cron_fire(c, j, why))
			persist_job(c, j); /* the slot is used up all the same */
	}
}

uint64_t cluster_cron_start(struct cluster *c, const char *key, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	struct job_version *jv = j && !j->killed ? job_version_get(j, j->version) : NULL;
	if (!jv) {
		berr_set(err, 404, "job '%s' not found", key);
		return 0;
	}
	if (jv->spec->type != JOB_CRON) {
		berr_set(err, 400, "job '%s' is not a cron job", key);
		return 0;
	}
	if (!cron_fire(c, j, "cron run started by user")) {
		berr_set(err, 409,
			 "job '%s' is still running and its collision policy is cancel_new", key);
		return 0;
	}
	return touched(c);
}

json_t *cluster_cron_list_json(struct cluster *c)
{
	json_t *arr = json_array();
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		struct job_version *jv = j->killed ? NULL : job_version_get(j, j->version);
		if (!jv || jv->spec->type != JOB_CRON)
			continue;
		int64_t next = cron_next(&jv->cron, j->cron_last_ms, !c->cfg.cron_local_time);
		int running = 0;
		for (size_t i = 0; i < j->nactive; i++)
			running += j->active[i] != NULL;
		char ts[40] = "";
		if (next >= 0)
			time_format_ms(next, ts, sizeof ts);
		json_array_append_new(
		    arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:i,s:i}", "job", j->key, "schedule",
				   jv->spec->schedule, "collision",
				   jv->spec->cron_collision == CRON_CANCEL_NEW ? "cancel_new"
									       : "kill_existing",
				   "last_run_ms", (json_int_t)j->cron_last_ms, "next_run_ms",
				   (json_int_t)next, "next_run", ts, "running", running, "runs",
				   j->cron_runs));
	}
	return arr;
}

/* Ended tasks are history: kept per job by count (job_keep_ended) and by
 * age, checked every ten seconds. */
static void ended_prune_by_age(struct cluster *c, int64_t now, int64_t mono)
{
	if (mono - c->pruned_mono < 10000)
		return;
	c->pruned_mono = mono;
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		size_t drop = 0;
		while (drop < j->nended &&
		       now - task_end_ms(j->ended[drop]) > c->cfg.ended_max_age_ms)
			drop++;
		for (size_t i = 0; i < drop; i++) {
			struct task *old = j->ended[i];
			char key[512];
			snprintf(key, sizeof key, "tasks/%s", old->id);
			store_batch_delete(c->pending, key);
			hmap_del(&c->tasks, old->id);
			task_forget_dirty(c, old);
			task_free(old);
		}
		if (drop) {
			memmove(j->ended, j->ended + drop, (j->nended - drop) * sizeof *j->ended);
			j->nended -= drop;
		}
	}
}

static void jobs_forget_killed(struct cluster *c)
{
	struct job **gone = NULL;
	size_t ngone = 0, it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		if (j->killed && !j->live) {
			gone = xrealloc(gone, (ngone + 1) * sizeof *gone);
			gone[ngone++] = j;
		}
	}
	for (size_t i = 0; i < ngone; i++)
		job_forget(c, gone[i]);
	free(gone);
}

uint64_t cluster_tick(struct cluster *c)
{
	uint64_t before = c->applied_seq;
	int64_t mono = time_mono_ms(), now = time_now_ms();
	nodes_check_heartbeats(c, mono);
	tasks_unthrottle(c, now);
	nodes_drain(c);
	updates_advance(c);
	crons_fire(c, now);
	ended_prune_by_age(c, now, mono);
	if (c->sched_needed)
		schedule_pending(c);
	jobs_forget_killed(c);
	if ((store_batch_count(c->pending) || c->ndirty) && c->applied_seq == before)
		return touched(c);
	return c->applied_seq != before ? c->applied_seq : 0;
}

/* ---- plan ----------------------------------------------------------------- */

static void json_diff(json_t *old, json_t *new, const char *path, json_t *out)
{
	if (json_equal(old, new))
		return;
	if (json_is_object(old) && json_is_object(new)) {
		const char *k;
		json_t *v;
		json_object_foreach(old, k, v)
		{
			char *p = *path ? xasprintf("%s.%s", path, k) : xstrdup(k);
			json_t *nv = json_object_get(new, k);
			json_diff(v, nv ? nv : json_null(), p, out);
			free(p);
		}
		json_object_foreach(new, k, v)
		{
			if (json_object_get(old, k))
				continue;
			char *p = *path ? xasprintf("%s.%s", path, k) : xstrdup(k);
			json_diff(json_null(), v, p, out);
			free(p);
		}
		return;
	}
	json_array_append_new(out,
			      json_pack("{s:s,s:O,s:O}", "field", path, "old", old, "new", new));
}

json_t *cluster_job_plan(struct cluster *c, struct job_spec *spec, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, spec->key);
	if (j && j->killed) {
		berr_set(err, 409, "job '%s' is being killed; plan again once its tasks ended",
			 j->key);
		return NULL;
	}
	json_t *newj = spec_to_json(spec);
	json_t *diff = json_array();
	json_t *add = json_array(), *remove = json_array(), *update = json_array(),
	       *keep = json_array();
	struct job_version *cur = j && !j->killed ? job_version_get(j, j->version) : NULL;
	bool task_changed = true;
	if (cur) {
		json_diff(cur->json, newj, "", diff);
		json_t *a = spec_task_to_json(cur->spec), *b = spec_task_to_json(spec);
		task_changed = !json_equal(a, b) || cur->spec->type != spec->type;
		json_decref(a);
		json_decref(b);
	} else {
		json_array_append_new(diff, json_pack("{s:s,s:n,s:O}", "field", "job", "old", "new",
						      json_object_get(newj, "job")));
	}
	size_t nn;
	struct node **nodes;
	struct placement_node *pn;
	node_view(c, &nodes, &pn, &nn);
	size_t need = 0;
	for (int i = 0; i < spec->instances; i++) {
		struct task *t = cur && (size_t)i < j->nactive ? j->active[i] : NULL;
		if (!t) {
			bool done = cur && (size_t)i < j->ninstance_done && j->instance_done[i];
			json_array_append_new(done ? keep : add, json_integer(i));
			need += !done;
		} else if (task_changed) {
			json_array_append_new(update, json_integer(i));
			need++;
			/* Its replacement may use what it frees. */
			const struct job_spec *os = task_spec_of(t);
			if (t->node && os) {
				struct placement_node *p = &pn[t->node->sched_index];
				p->cpu_free += os->task.resources.cpu;
				p->mem_free += os->task.resources.memory;
				p->disk_free += os->task.resources.disk;
				p->ports_free += (uint32_t)os->task.resources.nports;
			}
		} else {
			json_array_append_new(keep, json_integer(i));
		}
	}
	if (cur)
		for (size_t i = (size_t)spec->instances; i < j->nactive; i++)
			if (j->active[i])
				json_array_append_new(remove, json_integer((json_int_t)i));
	bool fits = true;
	char *why = NULL;
	if (need) {
		struct placement_request req = {.job = spec, .count = need, .sample_limit = 0};
		struct placement_result res = {0};
		placement_place(pn, nn, &req, &res);
		fits = res.placed == need;
		if (!fits && res.reason)
			why = xstrdup(res.reason);
		placement_result_release(&res);
	}
	free(nodes);
	free(pn);
	bool changed = !cur || json_array_size(diff) > 0;
	json_t *o = json_pack(
	    "{s:s,s:b,s:b,s:i,s:i,s:o,s:{s:o,s:o,s:o,s:o},s:b}", "job", spec->key, "changed",
	    changed, "create", !cur, "version", cur ? j->version : 0, "next_version",
	    !cur ? 1 : (task_changed ? j->version + 1 : j->version), "diff", diff, "instances",
	    "add", add, "remove", remove, "update", update, "unchanged", keep, "fits", fits);
	if (why)
		json_object_set_new(o, "fit_message", json_string(why));
	free(why);
	json_decref(newj);
	return o;
}

/* ---- views ------------------------------------------------------------ */

static json_t *task_view(const struct task *t, bool history)
{
	json_t *o = json_pack("{s:i,s:s,s:s,s:s?,s:i,s:i,s:s}", "instance", t->instance, "id",
			      t->id, "state", task_state_name(t->state), "node",
			      t->node ? t->node->name : NULL, "pid", t->pid, "version", t->version,
			      "message", t->message ? t->message : "");
	if (!t->node)
		json_object_set_new(o, "node", json_null());
	if (t->ancestor)
		json_object_set_new(o, "ancestor", json_string(t->ancestor));
	if (t->exit_code >= 0)
		json_object_set_new(o, "exit_code", json_integer(t->exit_code));
	if (t->ports)
		json_object_set(o, "ports", t->ports);
	if (t->node && t->node->addr && *t->node->addr)
		json_object_set_new(o, "agent_addr", json_string(t->node->addr));
	json_object_set_new(o, "created_ms", json_integer(t->created_ms));
	if (history) {
		json_t *ev = json_array();
		for (size_t i = 0; i < t->nevents; i++) {
			char ts[40];
			time_format_ms(t->events[i].time_ms, ts, sizeof ts);
			json_array_append_new(ev,
					      json_pack("{s:s,s:I,s:s,s:s}", "time", ts, "time_ms",
							(json_int_t)t->events[i].time_ms, "state",
							task_state_name(t->events[i].state),
							"message", t->events[i].message));
		}
		json_object_set_new(o, "events", ev);
	}
	return o;
}

static const char *job_outcome(const struct job *j)
{
	const struct job_version *jv = NULL;
	for (size_t i = 0; i < j->nversions; i++)
		if (j->versions[i].version == j->version)
			jv = &j->versions[i];
	if (j->killed)
		return "killing";
	if (!jv || jv->spec->type == JOB_SERVICE)
		return "running";
	if (jv->spec->type == JOB_CRON && !job_has_active(j))
		return "scheduled";
	bool all_done = true, failed = false;
	for (int i = 0; i < jv->spec->instances; i++) {
		if ((size_t)i >= j->ninstance_done || !j->instance_done[i]) {
			all_done = false;
			continue;
		}
		/* An instance done for good failed when its last task did. */
		for (size_t e = j->nended; e-- > 0;)
			if (j->ended[e]->instance == i) {
				if (j->ended[e]->state != TASK_FINISHED)
					failed = true;
				break;
			}
	}
	if (!all_done)
		return failed ? "failing" : "running";
	return failed ? "failed" : "finished";
}

json_t *cluster_job_status_json(struct cluster *c, const char *key, bool all, struct berr *err)
{
	struct job *j = hmap_get(&c->jobs, key);
	if (!j) {
		berr_set(err, 404, "job '%s' not found", key);
		return NULL;
	}
	json_t *tasks = json_array();
	for (size_t i = 0; i < j->nactive; i++)
		if (j->active[i])
			json_array_append_new(tasks, task_view(j->active[i], true));
	if (all)
		for (size_t i = 0; i < j->nended; i++)
			json_array_append_new(tasks, task_view(j->ended[i], true));
	struct job_version *jv = job_version_get(j, j->version);
	json_t *o = json_pack("{s:s,s:i,s:i,s:s,s:s,s:O,s:o}", "job", j->key, "version", j->version,
			      "instances", jv ? jv->spec->instances : 0, "type",
			      jv && jv->spec->type == JOB_BATCH	 ? "batch"
			      : jv && jv->spec->type == JOB_CRON ? "cron"
								 : "service",
			      "status", job_outcome(j), "spec", jv ? jv->json : json_null(),
			      "tasks", tasks);
	(void)c;
	return o;
}

/* CPU in the views: sums of fractions drift (1.05 - 0.35 - 0.7 is not 0). */
static double cpu_view(double v)
{
	if (!isfinite(v))
		return 0; /* JSON has no inf (a damaged node record) */
	if (fabs(v) > 1e12)
		return v;
	double r = round(v * 1e6) / 1e6;
	return r == 0 ? 0.0 : r; /* not -0.0 */
}

/* ---- large views: a snapshot under the lock, text outside it ----------- */

struct node_row {
	size_t name, id, addr, attrs; /* offsets in the arena; attrs: k\0v\0 pairs */
	size_t nattrs;
	enum node_state state;
	double cpu_total, cpu_used;
	uint64_t mem_total, mem_used, disk_total, disk_used;
	uint32_t ports_free;
	size_t ntasks;
	int64_t last_seen_ms_ago;
	int64_t backoff_until_ms; /* wall clock, 0: none */
	int flaps;
};

struct job_row {
	size_t key; /* offset in the arena */
	int instances, version;
	const char *status;
	uint32_t states[TASK_STATE_COUNT];
};

struct view_rows {
	bool jobs;
	bool more;	   /* items past the page match too: "next" is set */
	struct sbuf arena; /* every string of the snapshot, NUL-terminated */
	void *rows;
	size_t n, cap;
};

static size_t arena_add(struct sbuf *a, const char *s)
{
	size_t off = a->len;
	sbuf_add(a, s ? s : "", strlen(s ? s : "") + 1);
	return off;
}

static void *rows_push(struct view_rows *r, size_t size)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->rows = xrealloc(r->rows, r->cap * size);
	}
	void *row = (char *)r->rows + r->n++ * size;
	memset(row, 0, size);
	return row;
}

static struct view_rows *rows_new(bool jobs, const struct view_filter *f)
{
	struct view_rows *r = xcalloc(1, sizeof *r);
	r->jobs = jobs;
	sbuf_init(&r->arena);
	return r;
}

void view_rows_free(struct view_rows *r)
{
	if (!r)
		return;
	sbuf_release(&r->arena);
	free(r->rows);
	free(r);
}

static int cmp_node_name(const void *a, const void *b)
{
	return strcmp((*(struct node *const *)a)->name, (*(struct node *const *)b)->name);
}

static int cmp_job_key(const void *a, const void *b)
{
	return strcmp((*(struct job *const *)a)->key, (*(struct job *const *)b)->key);
}

/* The map's items sorted by name, rebuilt only after one came or went. */
static void index_refresh(struct name_index *ix, const struct hmap *m,
			  int (*cmp)(const void *, const void *))
{
	if (ix->items && ix->built_gen == ix->gen && ix->n == m->count)
		return;
	ix->items = xrealloc(ix->items, (m->count + 1) * sizeof *ix->items);
	ix->n = 0;
	size_t it = 0;
	void *v;
	while (hmap_next(m, &it, NULL, &v))
		ix->items[ix->n++] = v;
	qsort(ix->items, ix->n, sizeof *ix->items, cmp);
	ix->built_gen = ix->gen;
}

/* The first item of the index whose name is after `after`. */
static size_t index_start(const struct name_index *ix, const char *after, bool jobs)
{
	if (!after)
		return 0;
	size_t lo = 0, hi = ix->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *name = jobs ? ((struct job *)ix->items[mid])->key
					: ((struct node *)ix->items[mid])->name;
		if (strcmp(name, after) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct view_rows *cluster_node_rows(struct cluster *c, const struct view_filter *f)
{
	struct view_rows *r = rows_new(false, f);
	int64_t mono = time_mono_ms(), now = time_now_ms();
	index_refresh(&c->node_index, &c->nodes, cmp_node_name);
	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	for (size_t i = index_start(&c->node_index, f ? f->after : NULL, false);
	     i < c->node_index.n; i++) {
		struct node *n = c->node_index.items[i];
		if (f && f->state >= 0 && (int)n->state != f->state)
			continue;
		if (r->n == limit) {
			r->more = true;
			break;
		}
		struct node_row *w = rows_push(r, sizeof *w);
		w->name = arena_add(&r->arena, n->name);
		w->id = arena_add(&r->arena, n->id);
		w->addr = arena_add(&r->arena, n->addr);
		w->attrs = r->arena.len;
		w->nattrs = n->nattrs;
		for (size_t i = 0; i < n->nattrs; i++) {
			arena_add(&r->arena, n->attrs[i].key);
			arena_add(&r->arena, n->attrs[i].value);
		}
		w->state = n->state;
		w->cpu_total = n->cpu_total;
		w->cpu_used = n->cpu_used;
		w->mem_total = n->mem_total;
		w->mem_used = n->mem_used;
		w->disk_total = n->disk_total;
		w->disk_used = n->disk_used;
		w->ports_free = port_pool_available(n->ports);
		w->ntasks = n->tasks.count;
		w->last_seen_ms_ago = liveness_since_heard(c->live, n->live, mono);
		if (n->in_backoff && n->backoff_until_mono > mono)
			w->backoff_until_ms = now + (n->backoff_until_mono - mono);
		w->flaps = n->flaps;
	}
	return r;
}

struct view_rows *cluster_job_rows(struct cluster *c, const struct view_filter *f)
{
	struct view_rows *r = rows_new(true, f);
	size_t rlen = f && f->role ? strlen(f->role) : 0;
	index_refresh(&c->job_index, &c->jobs, cmp_job_key);
	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	for (size_t i = index_start(&c->job_index, f ? f->after : NULL, true); i < c->job_index.n;
	     i++) {
		struct job *j = c->job_index.items[i];
		if (rlen && (strncmp(j->key, f->role, rlen) || j->key[rlen] != '/'))
			continue;
		if (r->n == limit) {
			r->more = true;
			break;
		}
		struct job_row *w = rows_push(r, sizeof *w);
		struct job_version *jv = job_version_get(j, j->version);
		w->key = arena_add(&r->arena, j->key);
		w->instances = jv ? jv->spec->instances : 0;
		w->version = j->version;
		w->status = job_outcome(j); /* a static string */
		for (size_t i = 0; i < j->nactive; i++)
			if (j->active[i] && (unsigned)j->active[i]->state < TASK_STATE_COUNT)
				w->states[j->active[i]->state]++;
	}
	return r;
}

static const char *row_name(const struct view_rows *r, size_t i)
{
	size_t off = r->jobs ? ((const struct job_row *)r->rows)[i].key
			     : ((const struct node_row *)r->rows)[i].name;
	return r->arena.buf + off;
}

/* A real as jansson writes it: always with a fraction or an exponent. */
static void sbuf_add_real(struct sbuf *sb, double v)
{
	char buf[40];
	snprintf(buf, sizeof buf, "%.15g", isfinite(v) ? v : 0.0);
	sbuf_adds(sb, buf);
	if (!strpbrk(buf, ".eEni"))
		sbuf_adds(sb, ".0");
}

static void render_node(struct sbuf *sb, const struct view_rows *r, const struct node_row *w)
{
	const char *a = r->arena.buf;
	sbuf_adds(sb, "{\"id\":");
	sbuf_add_json_str(sb, a + w->id);
	sbuf_adds(sb, ",\"name\":");
	sbuf_add_json_str(sb, a + w->name);
	sbuf_adds(sb, ",\"state\":\"");
	sbuf_adds(sb, node_state_name(w->state));
	sbuf_adds(sb, "\",\"attributes\":{");
	const char *p = a + w->attrs;
	for (size_t i = 0; i < w->nattrs; i++) {
		if (i)
			sbuf_adds(sb, ",");
		sbuf_add_json_str(sb, p);
		p += strlen(p) + 1;
		sbuf_adds(sb, ":");
		sbuf_add_json_str(sb, p);
		p += strlen(p) + 1;
	}
	sbuf_adds(sb, "},\"resources\":{\"cpu\":");
	sbuf_add_real(sb, w->cpu_total);
	add_int_field(sb, ",\"memory\":", (long long)w->mem_total);
	add_int_field(sb, ",\"disk\":", (long long)w->disk_total);
	sbuf_adds(sb, ",\"cpu_used\":");
	sbuf_add_real(sb, cpu_view(w->cpu_used));
	add_int_field(sb, ",\"memory_used\":", (long long)w->mem_used);
	add_int_field(sb, ",\"disk_used\":", (long long)w->disk_used);
	sbuf_adds(sb, ",\"cpu_free\":");
	sbuf_add_real(sb, cpu_view(w->cpu_total - w->cpu_used));
	add_int_field(sb, ",\"memory_free\":",
		      (long long)(w->mem_total > w->mem_used ? w->mem_total - w->mem_used : 0));
	add_int_field(sb, ",\"disk_free\":",
		      (long long)(w->disk_total > w->disk_used ? w->disk_total - w->disk_used : 0));
	add_int_field(sb, ",\"ports_free\":", (long long)w->ports_free);
	add_int_field(sb, ",\"tasks\":", (long long)w->ntasks);
	sbuf_adds(sb, "},\"addr\":");
	sbuf_add_json_str(sb, a + w->addr);
	add_int_field(sb, ",\"last_seen_ms_ago\":", (long long)w->last_seen_ms_ago);
	add_int_field(sb, ",\"flaps\":", w->flaps);
	if (w->backoff_until_ms) {
		char ts[40];
		time_format_ms(w->backoff_until_ms, ts, sizeof ts);
		add_int_field(sb, ",\"backoff_until_ms\":", (long long)w->backoff_until_ms);
		sbuf_adds(sb, ",\"backoff_until\":");
		sbuf_add_json_str(sb, ts);
		sbuf_addf(sb,
			  ",\"backoff_reason\":\"flapping: back from DOWN %d time%s; no new "
			  "tasks until then\"",
			  w->flaps, w->flaps == 1 ? "" : "s");
	} else {
		sbuf_adds(sb, ",\"backoff_until_ms\":null");
	}
	sbuf_adds(sb, "}");
}

static void render_job(struct sbuf *sb, const struct view_rows *r, const struct job_row *w)
{
	sbuf_adds(sb, "{\"job\":");
	sbuf_add_json_str(sb, r->arena.buf + w->key);
	add_int_field(sb, ",\"instances\":", w->instances);
	add_int_field(sb, ",\"version\":", w->version);
	sbuf_adds(sb, ",\"status\":");
	sbuf_add_json_str(sb, w->status);
	sbuf_adds(sb, ",\"states\":{");
	bool first = true;
	for (int s = 0; s < TASK_STATE_COUNT; s++) {
		if (!w->states[s])
			continue;
		sbuf_adds(sb, first ? "\"" : ",\"");
		first = false;
		sbuf_adds(sb, task_state_name((enum task_state)s));
		add_int_field(sb, "\":", w->states[s]);
	}
	sbuf_adds(sb, "}}");
}

char *view_rows_render(struct view_rows *r, bool paged)
{
	size_t n = r->n; /* in name order already */
	struct sbuf sb;
	sbuf_init(&sb);
	if (paged)
		sbuf_adds(&sb, r->jobs ? "{\"jobs\":[" : "{\"nodes\":[");
	else
		sbuf_adds(&sb, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_adds(&sb, ",");
		if (r->jobs)
			render_job(&sb, r, &((struct job_row *)r->rows)[i]);
		else
			render_node(&sb, r, &((struct node_row *)r->rows)[i]);
	}
	sbuf_adds(&sb, "]");
	if (paged) {
		sbuf_adds(&sb, ",\"next\":");
		if (r->more && n)
			sbuf_add_json_str(&sb, row_name(r, n - 1));
		else
			sbuf_adds(&sb, "null");
		sbuf_adds(&sb, "}");
	}
	sbuf_adds(&sb, "\n");
	view_rows_free(r);
	return sbuf_detach(&sb);
}

static json_t *rows_json(struct view_rows *r)
{
	char *text = view_rows_render(r, false);
	json_t *j = json_loads(text, 0, NULL);
	free(text);
	return j ? j : json_array();
}

json_t *cluster_job_list_json(struct cluster *c)
{
	return rows_json(cluster_job_rows(c, NULL));
}

json_t *cluster_node_list_json(struct cluster *c)
{
	return rows_json(cluster_node_rows(c, NULL));
}

struct task *cluster_find_task(struct cluster *c, const char *ref)
{
	struct task *t = hmap_get(&c->tasks, ref);
	if (t)
		return t;
	const char *slash = strrchr(ref, '/');
	if (!slash)
		return NULL;
	int64_t inst;
	if (parse_int64(slash + 1, &inst) < 0 || inst < 0)
		return NULL;
	char *key = xstrndup(ref, (size_t)(slash - ref));
	struct job *j = hmap_get(&c->jobs, key);
	free(key);
	if (!j)
		return NULL;
	if ((size_t)inst < j->nactive && j->active[inst])
		return j->active[inst];
	for (size_t e = j->nended; e-- > 0;)
		if (j->ended[e]->instance == inst)
			return j->ended[e];
	return NULL;
}

json_t *cluster_task_json(struct cluster *c, const char *id, struct berr *err)
{
	struct task *t = cluster_find_task(c, id);
	if (!t) {
		berr_set(err, 404, "task '%s' not found", id);
		return NULL;
	}
	json_t *o = task_view(t, true);
	json_object_set_new(o, "job", json_string(t->job->key));
	return o;
}

/* ---- loading, and replicas ------------------------------------------------
 *
 * The store's records are applied one at a time: all of them at start
 * (cluster_load scans them), or one by one on an HA follower as the store's
 * watch delivers them (cluster_replica_*). A record holds facts (a task's job,
 * node, state and history); what follows from all of them together (per node
 * its tasks and the resources and ports they use; per job its active, ended
 * and live tasks; the waiting list) is derived afterwards in one pass,
 * derive(). So records may come in any order, be replaced in place or
 * deleted, and a follower pays for a change only what the change costs.
 *
 * A record that names a job (or node) not known yet is kept aside, an orphan,
 * and tried again when jobs or nodes arrive: a batch too big for one etcd
 * transaction reaches a follower as several, in any order. What is still an
 * orphan when the replica is promoted is dropped, as a load drops it. */

enum apply_result { APPLIED = 0, ORPHAN = 1 };

struct orphan {
	size_t len;
	char value[];
};

static void job_clear_versions(struct job *j)
{
	for (size_t i = 0; i < j->nversions; i++) {
		spec_free(j->versions[i].spec);
		json_decref(j->versions[i].json);
		free(j->versions[i].task_text);
	}
	free(j->versions);
	j->versions = NULL;
	j->nversions = 0;
}

/* Forget job j and every task of it (a follower saw its record deleted). */
static void replica_job_remove(struct cluster *c, struct job *j)
{
	struct task **gone = NULL;
	size_t ngone = 0, it = 0;
	void *v;
	while (hmap_next(&c->tasks, &it, NULL, &v))
		if (((struct task *)v)->job == j) {
			gone = xrealloc(gone, (ngone + 1) * sizeof *gone);
			gone[ngone++] = v;
		}
	for (size_t i = 0; i < ngone; i++) {
		hmap_del(&c->tasks, gone[i]->id);
		task_forget_dirty(c, gone[i]);
		task_free(gone[i]);
	}
	free(gone);
	char *key = xstrdup(j->key);
	hmap_del(&c->jobs, key);
	c->job_index.gen++;
	free(key);
	job_free(j);
	c->derived_stale = true;
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
				replica_job_remove(c, old);
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
	json_t *done = json_object_get(r, "instance_done");
	size_t ndone = json_array_size(done);
	job_ensure_instances(j, ndone < SPEC_MAX_INSTANCES ? ndone : SPEC_MAX_INSTANCES);
	for (i = 0; i < j->ninstance_done; i++)
		j->instance_done[i] = json_is_true(json_array_get(done, i));
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
	/* Known nodes are given a detection window to reconnect (load_finish):
	 * a server restart does not mark healthy agents down. */
	n->state = n->drain_requested ? NODE_DRAINING : NODE_ACTIVE;
	n->last_seen_mono = time_mono_ms();
	n->record_hash = text_hash(value, len);
	json_decref(r);
	c->derived_stale = true;
	return APPLIED;
}

static void task_clear_record(struct task *t)
{
	free(t->message);
	free(t->ancestor);
	json_decref(t->ports);
	for (size_t i = 0; i < t->nevents; i++)
		free(t->events[i].message);
	free(t->events);
	t->message = t->ancestor = NULL;
	t->ports = NULL;
	t->events = NULL;
	t->nevents = 0;
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
	t->message = xstrdup(json_string_value(json_object_get(r, "message")) ?: "");
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
	json_t *evs = json_object_get(r, "events");
	size_t nev = json_array_size(evs);
	if (nev)
		t->events = xcalloc(nev, sizeof *t->events);
	for (size_t i = 0; i < nev; i++) {
		json_t *ev = json_array_get(evs, i);
		int es = task_state_parse(json_string_value(json_object_get(ev, "state")) ?: "");
		t->events[t->nevents++] = (struct task_event){
		    rec_time(ev, "time_ms"), es < 0 ? TASK_INIT : (enum task_state)es,
		    xstrdup(json_string_value(json_object_get(ev, "message")) ?: "")};
	}
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
	for (size_t i = 0; i < ARRAY_SIZE(update_state_names); i++)
		if (!strcmp(st, update_state_names[i]))
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
		for (size_t k = 0; k < ARRAY_SIZE(ui_names); k++)
			if (!strcmp(ss, ui_names[k]))
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
static int apply_record(struct cluster *c, const char *key, const char *value, size_t len,
			bool final)
{
	if (has_prefix(key, "jobs/"))
		return apply_job(c, key, value, len);
	if (has_prefix(key, "nodes/"))
		return apply_node(c, key, value, len);
	if (has_prefix(key, "tasks/"))
		return apply_task(c, key, value, len, final);
	if (has_prefix(key, "updates/"))
		return apply_update(c, key, value, len, final);
	return APPLIED; /* meta/, events/: not state the server keeps */
}

/* A record deleted (followers only: a load sees no deletes). */
static void apply_delete(struct cluster *c, const char *key)
{
	if (has_prefix(key, "jobs/")) {
		struct job *j = hmap_get(&c->jobs, key + 5);
		if (j)
			replica_job_remove(c, j);
	} else if (has_prefix(key, "tasks/")) {
		struct task *t = hmap_del(&c->tasks, key + 6);
		if (t) {
			task_forget_dirty(c, t);
			task_free(t);
			c->derived_stale = true;
		}
	} else if (has_prefix(key, "updates/")) {
		struct job *j = hmap_get(&c->jobs, key + 8);
		if (j) {
			update_free(j->update);
			j->update = NULL;
		}
	} else if (has_prefix(key, "nodes/")) {
		struct node *n = hmap_get(&c->nodes, key + 6);
		if (!n)
			return;
		size_t it = 0;
		void *v;
		while (hmap_next(&c->tasks, &it, NULL, &v))
			if (((struct task *)v)->node == n)
				((struct task *)v)->node = NULL;
		char *name = xstrdup(n->name);
		hmap_del(&c->nodes, name);
		c->node_index.gen++;
		free(name);
		node_free(n);
		c->derived_stale = true;
	}
}

/* Attach a task to what derives from it (see the top of this section). */
static void task_attach(struct cluster *c, struct task *t)
{
	struct job *j = t->job;
	waiting_update(c, t, t->state);
	if (task_state_terminal(t->state)) {
		j->ended = xrealloc(j->ended, (j->nended + 1) * sizeof *j->ended);
		j->ended[j->nended++] = t;
		return;
	}
	j->live++;
	job_ensure_instances(j, (size_t)t->instance + 1);
	/* start_first: an instance may have its old task (no_replace) and its
	 * new one alive at once; the new one is the instance's. */
	if (!j->active[t->instance] || j->active[t->instance]->no_replace)
		j->active[t->instance] = t;
	struct node *n = t->node;
	if (!n || t->state == TASK_PENDING || t->state == TASK_THROTTLED || t->state == TASK_INIT)
		return;
	hmap_put(&n->tasks, t->id, t);
	t->assigned_at = n->desired_version; /* delivered or not, not missing yet */
	const struct job_spec *s = task_spec_of(t);
	if (s) {
		n->cpu_used += s->task.resources.cpu;
		n->mem_used += s->task.resources.memory;
		n->disk_used += s->task.resources.disk;
	}
	const char *k;
	json_t *pv;
	json_object_foreach(t->ports, k, pv)
	    port_pool_reserve(n->ports, (int)json_integer_value(pv));
}

static void derive(struct cluster *c)
{
	/* Desired versions start from the clock, so that a new leader never
	 * repeats one an agent already saw (its long poll would not answer). */
	uint64_t dv = (uint64_t)time_now_ms() * 1000;
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		n->cpu_used = 0;
		n->mem_used = n->disk_used = 0;
		port_pool_free(n->ports);
		n->ports = port_pool_new(n->port_lo, n->port_hi);
		hmap_release(&n->tasks);
		hmap_init_borrowed(&n->tasks);
		if (n->desired_version < dv)
			n->desired_version = dv;
	}
	it = 0;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		j->live = 0;
		if (j->nactive)
			memset(j->active, 0, j->nactive * sizeof *j->active);
		j->nended = 0;
	}
	c->waiting = NULL;
	c->nwaiting = 0;
	it = 0;
	while (hmap_next(&c->tasks, &it, NULL, &v)) {
		struct task *t = v;
		t->waiting = false;
		t->wprev = t->wnext = NULL;
		task_attach(c, t);
	}
	it = 0;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		if (j->nended > 1)
			qsort(j->ended, j->nended, sizeof *j->ended, cmp_task_ended);
	}
	c->derived_stale = false;
}

/* After a load or a promotion: the server leads from this state. */
static void load_finish(struct cluster *c)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		/* Instances that have no active task (e.g. a crash between a task's
		 * end and its replacement being written) are recreated. */
		struct job_version *jv = job_version_get(j, j->version);
		if (!jv || j->killed || jv->spec->type == JOB_CRON)
			continue;
		job_ensure_instances(j, (size_t)jv->spec->instances);
		for (int i = 0; i < jv->spec->instances; i++)
			if (!j->active[i] && !j->instance_done[i])
				task_create(c, j, i, NULL, "task created (recovered)", 0);
	}
	/* Every known node gets a detection window to reach this server. */
	int64_t mono = time_mono_ms();
	it = 0;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		n->last_seen_mono = mono;
		n->state = n->drain_requested ? NODE_DRAINING : NODE_ACTIVE;
	}
	c->loaded_mono = mono;
	liveness_all_heard(c->live, mono);
	c->sched_needed = true;
	log_info("loaded %zu jobs, %zu tasks, %zu nodes", c->jobs.count, c->tasks.count,
		 c->nodes.count);
}

static int load_record(const char *key, const char *value, size_t len, void *ud)
{
	apply_record(ud, key, value, len, true);
	return 0;
}

int cluster_load(struct cluster *c, struct berr *err)
{
	/* Jobs first: updates and tasks name them; nodes before tasks. */
	if (store_scan(c->store, "jobs/", load_record, c, err) < 0 ||
	    store_scan(c->store, "updates/", load_record, c, err) < 0 ||
	    store_scan(c->store, "nodes/", load_record, c, err) < 0 ||
	    store_scan(c->store, "tasks/", load_record, c, err) < 0)
		return berr_prefix(err, "cannot load the cluster state");
	derive(c);
	load_finish(c);
	return 0;
}

/* ---- replicas ---- */

void cluster_replica_reset(struct cluster *c)
{
	cluster_release_state(c);
	hmap_init_borrowed(&c->tasks);
	hmap_init(&c->jobs);
	hmap_init(&c->nodes);
	hmap_init(&c->orphans);
	c->job_index.gen++;
	c->node_index.gen++;
	c->orphans_retry = false;
	c->derived_stale = false;
}

void cluster_replica_apply(struct cluster *c, const char *key, const char *value, size_t len)
{
	free(hmap_del(&c->orphans, key)); /* this change supersedes it */
	if (!value) {
		apply_delete(c, key);
		return;
	}
	if (apply_record(c, key, value, len, false) == ORPHAN) {
		struct orphan *o = xmalloc(sizeof *o + len + 1);
		o->len = len;
		memcpy(o->value, value, len);
		o->value[len] = 0;
		hmap_put(&c->orphans, key, o);
	} else if (c->orphans.count && (has_prefix(key, "jobs/") || has_prefix(key, "nodes/"))) {
		c->orphans_retry = true;
	}
}

/* Apply the orphans that can be now (all of them when final). */
static void orphans_retry(struct cluster *c, bool final)
{
	if (!c->orphans.count)
		return;
	char **done = NULL;
	size_t ndone = 0, it = 0;
	const char *key;
	void *v;
	while (hmap_next(&c->orphans, &it, &key, &v)) {
		struct orphan *o = v;
		if (apply_record(c, key, o->value, o->len, final) == ORPHAN)
			continue;
		done = xrealloc(done, (ndone + 1) * sizeof *done);
		done[ndone++] = xstrdup(key);
	}
	for (size_t i = 0; i < ndone; i++) {
		free(hmap_del(&c->orphans, done[i]));
		free(done[i]);
	}
	free(done);
	c->orphans_retry = false;
}

void cluster_replica_refresh(struct cluster *c)
{
	if (c->orphans_retry)
		orphans_retry(c, false);
	if (c->derived_stale)
		derive(c);
}

void cluster_replica_promote(struct cluster *c)
{
	orphans_retry(c, true);
	derive(c);
	load_finish(c);
}
