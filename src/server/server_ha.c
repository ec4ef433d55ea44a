/* server_ha.c - high availability (docs/store.md): a follower answers reads
 * from its replica and redirects the rest to the leader; the replica is kept
 * by a store watch on its own thread; once elected, a server leads from its
 * replica (or loads the state) and starts the commit loop. */
#include "server/server-internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "server/leader.h"

struct query_ctx {
	struct sbuf *sb;
	int n;
};

static enum MHD_Result add_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				     const char *value)
{
	struct query_ctx *qc = cls;
	(void)kind;
	char *k = curl_easy_escape(NULL, key, 0),
	     *v = value ? curl_easy_escape(NULL, value, 0) : NULL;
	sbuf_addf(qc->sb, "%c%s%s%s", qc->n++ ? '&' : '?', k, v ? "=" : "", v ? v : "");
	curl_free(k);
	curl_free(v);
	return MHD_YES;
}

/* A follower answers with a redirect to the leader (clients and agents
 * follow it), or 503 while no leader is known. */
enum MHD_Result server_follower_answer(struct server *s, struct request *q, const char *url)
{
	char *leader = s->leader ? leader_current(s->leader) : NULL;
	if (!leader) {
		reply_error(q, 503, "no leader elected yet");
		return send_ready(q);
	}
	struct sbuf sb;
	sbuf_init(&sb);
	sbuf_addf(&sb, "%s%s", leader, url);
	struct query_ctx qc = {&sb, 0};
	MHD_get_connection_values(q->conn, MHD_GET_ARGUMENT_KIND, add_query_arg, &qc);
	free(leader);
	q->location = sbuf_detach(&sb);
	q->status = 307;
	q->phase = REQ_READY;
	return send_ready(q);
}

/* HA: the leader's lease is surely valid (leader_lease_fresh). Without
 * HA there is no lease: always. */
bool server_lease_ok(struct server *s)
{
	return !s->leader || leader_lease_fresh(s->leader);
}

/* Reads a follower answers from its replica: the job, task, update and cron
 * views. Node liveness is known to the leader only (agents talk to it), and
 * writes go to it: those are redirected. */
bool server_replica_read_route(const char *method, const char *url)
{
	return !strcmp(method, "GET") &&
	       (!strcmp(url, "/v1/jobs") || !strncmp(url, "/v1/jobs/", 9) ||
		!strncmp(url, "/v1/tasks/", 10) || !strcmp(url, "/v1/cron"));
}

/* A follower answers a read from its replica once it holds a full copy. Not
 * found is the leader's to say (the replica may be a few milliseconds behind
 * a write just acknowledged): false, and the caller redirects. */
bool server_follower_read(struct server *s, struct request *q, const char *method, const char *url)
{
	struct cluster *c = s->c;
	pthread_mutex_lock(&c->lock);
	if (!s->replica_synced || s->leading) {
		pthread_mutex_unlock(&c->lock);
		return false;
	}
	cluster_replica_refresh(c);
	server_route(q, method, url);
	pthread_mutex_unlock(&c->lock);
	if (q->phase != REQ_READY || q->status == 404) {
		json_decref(q->reply);
		q->reply = NULL;
		free(q->location);
		q->location = NULL;
		q->status = 0;
		q->phase = REQ_NEW;
		return false;
	}
	q->from_replica = true;
	return true;
}

/* The store watch of a follower: every change goes to the replica, under
 * the cluster lock, one message at a time (readers see whole revisions). */
static int on_store_change(void *ud, enum store_follow_event ev, const struct store_change *ch,
			   size_t n, int64_t revision)
{
	struct server *s = ud;
	struct cluster *c = s->c;
	bool leader_gone = false;
	pthread_mutex_lock(&c->lock);
	if (s->follow_stop) {
		/* Promoted: the state is the leader's own from now on. */
		pthread_mutex_unlock(&c->lock);
		return 1;
	}
	switch (ev) {
	case STORE_FOLLOW_RESET:
		cluster_replica_reset(c);
		s->replica_synced = false;
		break;
	case STORE_FOLLOW_CHANGES:
		for (size_t i = 0; i < n; i++) {
			if (!ch[i].value && !strcmp(ch[i].key, "meta/leader"))
				leader_gone = true;
			cluster_replica_apply(c, ch[i].key, ch[i].value, ch[i].len);
		}
		break;
	case STORE_FOLLOW_SYNCED:
		s->replica_synced = true;
		log_info("replica synced at revision %lld: %zu jobs, %zu tasks, %zu nodes",
			 (long long)revision, c->jobs.count, c->tasks.count, c->nodes.count);
		break;
	}
	if (revision > s->replica_rev)
		s->replica_rev = revision;
	pthread_cond_broadcast(&s->replica_moved);
	pthread_mutex_unlock(&c->lock);
	/* The leader's lease expired: campaign now, not at the next look. */
	if (leader_gone && s->leader)
		leader_poke(s->leader);
	return 0;
}

void *server_follow_main(void *ud)
{
	struct server *s = ud;
	while (!s->follow_stop) {
		struct berr err = {0};
		struct store *st = store_open(s->store_location, &err);
		if (!st) {
			log_warn("replica: %s; trying again", err.msg);
			usleep(500 * 1000);
			continue;
		}
		int r = store_follow(st, on_store_change, s, &s->follow_stop, &err);
		store_close(st);
		if (r < 0) {
			log_error("replica: %s", err.msg);
			break;
		}
	}
	return NULL;
}

/* How long a new leader waits for its replica to reach the revision of its
 * election (every write of the previous leader) before it loads the state
 * from the store instead. */
#define REPLICA_CATCH_UP_MS 1500

/* Elected at `revision`: lead from the replica once it holds everything up
 * to the election (the old leader is fenced from there on), or load the
 * state from the store. Runs on its own thread: the election thread must go
 * on renewing the lease meanwhile. */
static void *become_leader(void *ud)
{
	struct server *s = ud;
	struct berr err = {0};
	int64_t t0 = time_mono_ms();
	/* Every commit from now on is fenced on the election key. */
	pthread_mutex_lock(&s->store_lock);
	store_set_guard(s->store, "meta/leader", s->self_url, &err);
	pthread_mutex_unlock(&s->store_lock);
	struct cluster *c = s->c;
	pthread_mutex_lock(&c->lock);
	struct timespec deadline = time_deadline_ms(REPLICA_CATCH_UP_MS);
	while (s->follow_started && !(s->replica_synced && s->replica_rev >= s->elected_rev))
		if (pthread_cond_timedwait(&s->replica_moved, &c->lock, &deadline) != 0)
			break;
	bool warm = s->follow_started && s->replica_synced && s->replica_rev >= s->elected_rev;
	s->follow_stop = true; /* the watch applies nothing more */
	const char *how = "from its replica";
	int r = 0;
	if (warm) {
		cluster_replica_promote(c);
	} else {
		log_warn(
		    "replica at revision %lld, elected at %lld: loading the state from the store",
		    (long long)s->replica_rev, (long long)s->elected_rev);
		how = "from the store";
		cluster_replica_reset(c);
		r = cluster_load(c, &err);
	}
	pthread_mutex_unlock(&c->lock);
	if (r < 0) {
		log_error("fatal: elected but %s", err.msg);
		_exit(3);
	}
	if (pthread_create(&s->commit_thread, NULL, server_commit_loop, s) != 0) {
		log_error("fatal: cannot start the commit thread");
		_exit(3);
	}
	s->commit_started = true;
	pthread_mutex_lock(&c->lock);
	cluster_note_leader(c, "leader", "this server was elected leader");
	pthread_mutex_unlock(&c->lock);
	server_metrics_leader_seen(s, s->self_url);
	s->leading = true;
	log_info("leading: state loaded %s in %lld ms", how, (long long)(time_mono_ms() - t0));
	return NULL;
}

void server_on_elected(void *ud, int64_t revision)
{
	struct server *s = ud;
	pthread_mutex_lock(&s->c->lock);
	s->elected_rev = revision;
	pthread_mutex_unlock(&s->c->lock);
	if (pthread_create(&s->elect_thread, NULL, become_leader, s) != 0) {
		log_error("fatal: cannot start loading the state");
		_exit(3);
	}
	s->elect_started = true;
}

/* The lease is gone: another server may lead already. Not one more write. */
void server_on_lost(void *ud)
{
	(void)ud;
	log_error("fatal: leadership lost; exiting so that only one leader writes");
	_exit(3);
}
