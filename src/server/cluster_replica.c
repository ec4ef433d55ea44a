/* cluster_replica.c - loading the state at start, and an HA follower's replica.
 *
 * The store's records are applied one at a time: all of them at start
 * (cluster_load scans them), or one by one on an HA follower as the store's
 * watch delivers them (cluster_replica_*). A record holds facts (a task's job,
 * node, state and history); what follows from all of them together (per node
 * its tasks and the resources and ports they use; per job its active, ended
 * and live tasks; the waiting list) is derived afterwards in one pass,
 * cluster_derive() (cluster.c). So records may come in any order, be
 * replaced in place or deleted, and a follower pays for a change only what
 * the change costs. The records themselves are cluster_records.c's.
 *
 * A record that names a job (or node) not known yet is kept aside, an orphan,
 * and tried again when jobs or nodes arrive: a batch too big for one etcd
 * transaction reaches a follower as several, in any order. What is still an
 * orphan when the replica is promoted is dropped, as a load drops it.
 */
#include "server/cluster-internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct orphan {
	size_t len;
	char value[];
};

/* After a load or a promotion: the server leads from this state. */
void cluster_load_finish(struct cluster *c)
{
	/* Leading from here: endpoints versions from the clock again, past any
	 * an agent may hold from the previous leader, and no delta across. */
	uint64_t ev = (uint64_t)time_now_ms() * 1000;
	if (c->endpoints_version < ev)
		c->endpoints_version = ev;
	endpoints_touch(c);
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

int cluster_load(struct cluster *c, struct berr *err)
{
	if (records_load(c, err) < 0)
		return berr_prefix(err, "cannot load the cluster state");
	cluster_derive(c);
	cluster_load_finish(c);
	return 0;
}

void cluster_replica_reset(struct cluster *c)
{
	cluster_release_state(c);
	hmap_init_borrowed(&c->tasks);
	hmap_init(&c->jobs);
	hmap_init(&c->nodes);
	hmap_init(&c->orphans);
	token_table_clear(c->tokens);
	hmap_init(&c->secrets);
	hmap_init(&c->quotas);
	hmap_init(&c->quota_use);
	c->job_index.gen++;
	c->node_index.gen++;
	c->orphans_retry = false;
	c->derived_stale = false;
}

void cluster_replica_apply(struct cluster *c, const char *key, const char *value, size_t len)
{
	free(hmap_del(&c->orphans, key)); /* this change supersedes it */
	if (!value) {
		record_apply_delete(c, key);
		return;
	}
	if (record_apply(c, key, value, len, false) == ORPHAN) {
		struct orphan *o = xmalloc(sizeof *o + len + 1);
		o->len = len;
		memcpy(o->value, value, len);
		o->value[len] = 0;
		hmap_put(&c->orphans, key, o);
	} else if (c->orphans.count && record_is_parent(key)) {
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
		if (record_apply(c, key, o->value, o->len, final) == ORPHAN)
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
		cluster_derive(c);
}

void cluster_replica_promote(struct cluster *c)
{
	orphans_retry(c, true);
	cluster_derive(c);
	cluster_load_finish(c);
}
