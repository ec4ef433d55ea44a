/* cluster.c - the cluster's state: the one place that links tasks into
 * jobs and nodes, and the tick that calls each controller.
 *
 * See cluster.h for the write path and cluster-internal.h for the rooms of
 * this module. The life of a task:
 *
 *   created (INIT) -> PENDING (or THROTTLED when its instance flaps)
 *   scheduler: PENDING -> ASSIGNED (node, ports chosen; in the node's
 *              desired set from now on)
 *   agent:     ASSIGNED -> STARTING -> RUNNING -> FINISHED | FAILED | KILLED
 *   server:    -> KILLING (job kill, scale down), -> RESTARTING (restart),
 *              -> LOST (node down, or the agent does not hold it)
 *   on a terminal state: a service instance gets a new task (ancestor
 *   recorded); a batch instance only when it failed fewer than
 *   max_task_failures times (cluster_jobs.c, job_task_ended).
 */
#include "server/cluster-internal.h"
#include "server/cluster_system.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/intern.h"
#include "core/log.h"
#include "server/cluster_quota.h"
#include "sched/ports.h"

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
	cfg->preempt_max_victims = 1000;
	cfg->max_heartbeats = 4000;
	cfg->flap_backoff_base_ms = 5000;
	cfg->flap_backoff_max_ms = 300000;
	cfg->flap_stable_ms = 600000;
	cfg->cluster_cidr = (struct cidr){.base = 0x0af40000u, .prefix = 16}; /* 10.244.0.0/16 */
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
	hmap_init(&c->secrets);
	hmap_init(&c->quotas);
	hmap_init(&c->quota_use);
	c->pending = store_batch_new();
	c->loaded_mono = time_mono_ms();
	c->tokens = token_table_new();
	c->live = liveness_new(stall_threshold(&c->cfg), 2 * JUDGE_EVERY_MS);
	/* From the clock, as desired versions: an agent never keeps a stale
	 * view of its peers across a server restart. */
	c->net_version = (uint64_t)time_now_ms() * 1000;
	c->endpoints_version = (uint64_t)time_now_ms() * 1000;
	cluster_notes_init(c);
	return c;
}

void task_message_release(struct task *t)
{
	if (!t->message_shared)
		free(t->message);
	t->message = NULL;
	t->message_shared = false;
}

void task_clear_record(struct task *t)
{
	task_message_release(t);
	free(t->ancestor);
	json_decref(t->ports);
	for (size_t i = 0; i < t->nevents; i++)
		if (!t->events[i].interned)
			free(t->events[i].message);
	free(t->events);
	t->message = t->ancestor = NULL;
	t->ports = NULL;
	t->events = NULL;
	t->nevents = 0;
}

static void task_free(struct task *t)
{
	task_clear_record(t);
	free(t->reserved_node);
	free(t->id);
	free(t);
}

void job_free(struct job *j)
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
	system_slots_free(j->system);
	update_free(j->update);
	free(j->cron_message);
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
void cluster_release_state(struct cluster *c)
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
	memset(c->stats.tasks, 0, sizeof c->stats.tasks);
	hmap_release(&c->jobs);
	hmap_release(&c->nodes);
	hmap_release(&c->orphans);
	secrets_release(c);
	quotas_release(c);
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
	free(c->record_buf.buf);
	free(c->changed);
	free(c->node_index.items);
	free(c->job_index.items);
	store_batch_free(c->pending);
	liveness_free(c->live);
	token_table_free(c->tokens);
	endpoints_release(c);
	cluster_notes_release(c);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->wake);
	free(c);
}

uint64_t cluster_touched(struct cluster *c)
{
	c->applied_seq++;
	pthread_cond_signal(&c->wake);
	return c->applied_seq;
}

/* A task changes several times per tick (INIT -> PENDING -> ASSIGNED): mark
 * it and write its record once, when the batch is taken. */
void persist_task(struct cluster *c, struct task *t)
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

void task_destroy(struct cluster *c, struct task *t)
{
	record_delete_task(c, t);
	note_task_gone(c, t);
	hmap_del(&c->tasks, t->id);
	task_forget_dirty(c, t);
	task_free(t);
}

struct store_batch *cluster_take_pending(struct cluster *c, uint64_t *seq)
{
	*seq = c->applied_seq;
	for (size_t i = 0; i < c->ndirty; i++) {
		struct task *t = c->dirty[i];
		if (!t)
			continue;
		t->dirty_slot = 0;
		record_write_task(c, t);
	}
	c->ndirty = 0;
	if (!store_batch_count(c->pending))
		return NULL;
	struct store_batch *b = c->pending;
	c->pending = store_batch_new();
	return b;
}

void cluster_set_committed(struct cluster *c, uint64_t seq)
{
	if (seq > c->committed_seq)
		c->committed_seq = seq;
}

bool cluster_committed(const struct cluster *c, uint64_t seq)
{
	return seq <= c->committed_seq;
}

bool cluster_uncommitted(const struct cluster *c)
{
	return c->applied_seq > c->committed_seq;
}

struct job_version *job_version_get(struct job *j, int version)
{
	for (size_t i = 0; i < j->nversions; i++)
		if (j->versions[i].version == version)
			return &j->versions[i];
	return NULL;
}

const struct job_spec *task_spec_of(const struct task *t)
{
	struct job_version *v = job_version_get(t->job, t->version);
	return v ? v->spec : NULL;
}

void task_add_event(struct task *t, enum task_state s, const char *msg, int64_t now)
{
	if (t->nevents == MAX_EVENTS) {
		/* Keep the first transition (creation) and the newest ones. */
		if (!t->events[1].interned)
			free(t->events[1].message);
		memmove(&t->events[1], &t->events[2], (MAX_EVENTS - 2) * sizeof *t->events);
		t->nevents--;
	}
	t->events = xrealloc(t->events, (t->nevents + 1) * sizeof *t->events);
	char *m = xstrdup(msg);
	utf8_clean(m); /* messages are cut by snprintf: keep them valid JSON strings */
	/* The same messages recur over many tasks: one shared copy each. */
	const char *shared = intern(m);
	task_message_release(t);
	if (shared) {
		/* The task's message is the shared copy too: a million tasks
		 * each kept their own "assigned to ..." (32 MiB). */
		t->events[t->nevents++] = (struct task_event){now, s, true, (char *)shared};
		free(m);
		t->message = (char *)shared;
		t->message_shared = true;
	} else {
		t->events[t->nevents++] = (struct task_event){now, s, false, m};
		t->message = xstrdup(m);
	}
}

/* The node's desired task set changed: bump its version and note it so the
 * server answers its agent's long poll without scanning every watcher. */
void node_touch(struct cluster *c, struct node *n)
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
			if (s->task.network == NETWORK_BRIDGE && n->addrs_used)
				n->addrs_used--;
		}
		const char *k;
		json_t *v;
		json_object_foreach(t->ports, k, v)
		    port_pool_release(n->ports, (int)json_integer_value(v));
		node_touch(c, n);
		c->sched_needed = true;
	}
}

void task_charge_node(struct node *n, struct task *t)
{
	hmap_put(&n->tasks, t->id, t);
	const struct job_spec *s = task_spec_of(t);
	if (s) {
		n->cpu_used += s->task.resources.cpu;
		n->mem_used += s->task.resources.memory;
		n->disk_used += s->task.resources.disk;
		if (s->task.network == NETWORK_BRIDGE)
			n->addrs_used++;
	}
	const char *k;
	json_t *pv;
	json_object_foreach(t->ports, k, pv)
	    port_pool_reserve(n->ports, (int)json_integer_value(pv));
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
bool task_transition(struct cluster *c, struct task *t, enum task_state to, const char *msg)
{
	if (!task_transition_check(t->state, to)) {
		log_warn("task %s: refused transition %s -> %s (%s)", t->id,
			 task_state_name(t->state), task_state_name(to), msg);
		return false;
	}
	int64_t now = time_now_ms();
	/* A preempted task's end says who preempted it ("preempted by
	 * alice/prod/web/3 (killed by signal 15)"). */
	char why[512];
	if (t->state == TASK_PREEMPTING && task_state_terminal(to) && t->nevents &&
	    t->events[t->nevents - 1].state == TASK_PREEMPTING) {
		snprintf(why, sizeof why, "%s (%s)", t->events[t->nevents - 1].message, msg);
		msg = why;
	}
	c->changes++;
	if (endpoints_moved(t->state, to))
		endpoints_touch_job(c, t->job->key);
	waiting_update(c, t, to);
	enum task_state from = t->state;
	int64_t from_ms = t->nevents ? t->events[t->nevents - 1].time_ms : t->created_ms;
	t->state = to;
	task_add_event(t, to, msg, now);
	note_task_state(c, t, from, from_ms, msg);
	if (to == TASK_RUNNING && !t->running_since_ms)
		t->running_since_ms = now;
	if (task_state_terminal(to))
		handle_task_end(c, t, now);
	persist_task(c, t);
	return true;
}

/* KEY-INSTANCE-RANDOM with the key's '/' as '-'. No printf: a burst of a
 * thousand-instance job makes a thousand of them under the lock. */
static char *new_task_id(const struct job *j, int instance)
{
	char digits[12];
	size_t nd = 0;
	unsigned v = instance < 0 ? 0 : (unsigned)instance;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	/* Exactly its length: a million ids, and the allocator rounds up. */
	size_t kl = strlen(j->key);
	char *id = xmalloc(kl + 1 + nd + 1 + 8 + 1);
	char *p = id;
	for (size_t i = 0; i < kl; i++)
		*p++ = j->key[i] == '/' ? '-' : j->key[i];
	*p++ = '-';
	while (nd)
		*p++ = digits[--nd];
	*p++ = '-';
	random_hex(p, 8);
	return id;
}

void job_ensure_instances(struct job *j, size_t n)
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

struct task *task_create(struct cluster *c, struct job *j, int instance,
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
	note_task_created(c, t);
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
		task_destroy(c, old);
	}
}

bool task_stopping(const struct task *t)
{
	return t->state == TASK_KILLING || t->state == TASK_RESTARTING ||
	       t->state == TASK_DRAINING || t->state == TASK_PREEMPTING;
}

/* A task ended: it leaves its node and its instance's slot for the job's
 * history; the update counts it, and the job decides what replaces it. */
static void handle_task_end(struct cluster *c, struct task *t, int64_t now)
{
	struct job *j = t->job;
	if (j->live)
		j->live--;
	task_release_node(c, t);
	if ((size_t)t->instance < j->nactive && j->active[t->instance] == t)
		j->active[t->instance] = NULL;
	quota_job_slot_freed(c, j); /* a cron run may have ended */
	job_keep_ended(c, j, t);
	update_note_failure(c, j, t);
	job_task_ended(c, t, now);
}

/* Stop a task on purpose. Tasks not yet on an agent end at once. */
void task_stop(struct cluster *c, struct task *t, enum task_state via, const char *msg)
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

struct job *job_new(struct cluster *c, const char *key)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->key = xstrdup(key);
	j->created_ms = j->updated_ms = time_now_ms();
	hmap_put(&c->jobs, key, j);
	c->job_index.gen++;
	return j;
}

void job_add_version(struct job *j, int version, struct job_spec *spec, json_t *json)
{
	j->versions = xrealloc(j->versions, (j->nversions + 1) * sizeof *j->versions);
	struct job_version *v = &j->versions[j->nversions++];
	*v = (struct job_version){.version = version, .spec = spec, .json = json};
	if (spec->type == JOB_CRON)
		cron_parse(spec->schedule, &v->cron, NULL); /* validated with the spec */
	j->version = version;
}

bool job_has_active(const struct job *j)
{
	for (size_t i = 0; i < j->nactive; i++)
		if (j->active[i])
			return true;
	return false;
}

void job_forget(struct cluster *c, struct job *j)
{
	record_delete_job(c, j);
	for (size_t i = 0; i < j->nended; i++)
		task_destroy(c, j->ended[i]);
	j->nended = 0;
	endpoints_touch_job(c, j->key);
	quota_job_gone(c, j);
	hmap_del(&c->jobs, j->key);
	c->job_index.gen++;
	job_free(j);
}

int job_max_version(const struct job *j)
{
	int m = 0;
	for (size_t i = 0; i < j->nversions; i++)
		if (j->versions[i].version > m)
			m = j->versions[i].version;
	return m;
}

struct node *node_new(struct cluster *c, const char *name)
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
	n->subnet = -1;
	hmap_init_borrowed(&n->tasks);
	hmap_put(&c->nodes, name, n);
	c->node_index.gen++;
	n->live = liveness_node(c->live, name);
	return n;
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
		for (size_t i = 0; i < drop; i++)
			task_destroy(c, j->ended[i]);
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
	systems_reconcile(c); /* before the drain: system tasks are not moved */
	nodes_drain(c);
	updates_advance(c);
	crons_fire(c, now);
	ended_prune_by_age(c, now, mono);
	if (c->sched_needed) {
		schedule_pending(c);
		note_pending_reasons(c);
	}
	jobs_forget_killed(c);
	if ((store_batch_count(c->pending) || c->ndirty) && c->applied_seq == before)
		return cluster_touched(c);
	return c->applied_seq != before ? c->applied_seq : 0;
}

void job_clear_versions(struct job *j)
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
void task_remove(struct cluster *c, struct task *t)
{
	note_task_gone(c, t);
	hmap_del(&c->tasks, t->id);
	task_forget_dirty(c, t);
	task_free(t);
	c->derived_stale = true;
}

void node_remove(struct cluster *c, struct node *n)
{
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
	endpoints_touch(c);
}

void job_remove(struct cluster *c, struct job *j)
{
	struct task **gone = NULL;
	size_t ngone = 0, it = 0;
	void *v;
	while (hmap_next(&c->tasks, &it, NULL, &v))
		if (((struct task *)v)->job == j) {
			gone = xrealloc(gone, (ngone + 1) * sizeof *gone);
			gone[ngone++] = v;
		}
	for (size_t i = 0; i < ngone; i++)
		task_remove(c, gone[i]);
	free(gone);
	quota_job_gone(c, j);
	char *key = xstrdup(j->key);
	hmap_del(&c->jobs, key);
	c->job_index.gen++;
	free(key);
	job_free(j);
	c->derived_stale = true;
	endpoints_touch(c);
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
	t->assigned_at = n->desired_version; /* delivered or not, not missing yet */
	task_charge_node(n, t);
}

void cluster_derive(struct cluster *c)
{
	endpoints_touch(c);
	/* Desired versions start from the clock, so that a new leader never
	 * repeats one an agent already saw (its long poll would not answer). */
	uint64_t dv = (uint64_t)time_now_ms() * 1000;
	size_t it = 0;
	void *v;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		n->cpu_used = 0;
		n->mem_used = n->disk_used = 0;
		n->addrs_used = 0;
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
	quotas_recount(c);
	note_tasks_recount(c);
	c->derived_stale = false;
}
