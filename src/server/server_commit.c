/* server_commit.c - the commit loop: the tick (cluster_tick), the pending
 * batch committed (one fsync for many requests), then the writes that
 * waited for it and the watches whose node changed are answered. */
#include "server/server-internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define COMMIT_TICK_MS 50

/* Seconds on the monotonic clock, finer than time_mono_ms (commit times). */
static double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Under c->lock: move the writes whose commit is durable (or all, at
 * shutdown) from the waiting list to *ready. */
static void collect_commits(struct server *s, struct request **ready, bool all)
{
	struct request **pp = &s->waiting;
	while (*pp) {
		struct request *q = *pp;
		if (all || cluster_committed(s->c, q->wait_seq)) {
			if (all)
				reply_error(q, 503, "server is shutting down");
			else
				q->phase = REQ_READY;
			*pp = q->next;
			q->next = *ready;
			*ready = q;
		} else {
			pp = &q->next;
		}
	}
}

bool watch_has_news(const struct cluster *c, const struct request *q, const struct node *n)
{
	return n->desired_version != q->known_version ||
	       (q->endpoints_follow && q->endpoints_known != c->endpoints_version);
}

void watch_answer(struct cluster *c, struct request *q, struct node *n)
{
	free(q->text);
	q->text = cluster_node_desired_text(c, n, q->known_version);
	if (!q->endpoints_follow || q->endpoints_known == c->endpoints_version)
		return;
	/* The desired text is one JSON object: the endpoints go in before its
	 * closing brace. What changed since the agent's version when the log
	 * reaches back that far, else the whole table; either rendered once
	 * for every agent at the same version. */
	const char *delta =
	    q->endpoints_known ? cluster_endpoints_delta_text(c, q->endpoints_known) : NULL;
	const char *table = delta ? NULL : cluster_endpoints_text(c);
	size_t len = strlen(q->text);
	if ((!delta && !table) || !len || q->text[len - 1] != '}')
		return;
	q->text[len - 1] = 0;
	char *t = delta ? xasprintf("%s,\"endpoints_version\":%llu,\"endpoints_base\":%llu,"
				    "\"endpoints_delta\":%s}",
				    q->text, (unsigned long long)c->endpoints_version,
				    (unsigned long long)q->endpoints_known, delta)
			: xasprintf("%s,\"endpoints_version\":%llu,\"endpoints\":%s}", q->text,
				    (unsigned long long)c->endpoints_version, table);
	free(q->text);
	q->text = t;
}

/* Answer the watches of node n that can be answered: its desired set moved
 * past what they know, their wait is over, or the server stops. */
static void collect_node_watches(struct server *s, struct node *n, struct request **ready, bool all,
				 int64_t mono)
{
	struct request **pp = (struct request **)cluster_node_watchers(n);
	while (*pp) {
		struct request *q = *pp;
		if (all) {
			reply_error(q, 503, "server is shutting down");
		} else if (watch_has_news(s->c, q, n) || mono >= q->deadline_mono) {
			/* A desired set may go out before it is durable: if the server
			 * dies first, the restarted one does not know those tasks and
			 * the agent's next report gets them killed. Launch latency
			 * does not pay for an fsync. */
			watch_answer(s->c, q, n);
			q->phase = REQ_READY;
		} else {
			pp = &q->next;
			continue;
		}
		*pp = q->next;
		q->next = *ready;
		*ready = q;
	}
}

struct watch_collect {
	struct server *s;
	struct request **ready;
	bool all;
	int64_t mono;
};

static void collect_node(void *ud, struct node *n)
{
	struct watch_collect *wc = ud;
	collect_node_watches(wc->s, n, wc->ready, wc->all, wc->mono);
}

/* Under c->lock: the watches to answer now. Only nodes whose desired set
 * changed are looked at, plus a sweep for expired waits every 100 ms, so
 * ten thousand idle agents cost nothing per commit. */
static void collect_watches(struct server *s, struct request **ready, bool all)
{
	struct watch_collect wc = {s, ready, all, time_mono_ms()};
	cluster_take_changed_nodes(s->c, collect_node, &wc);
	if (!all && wc.mono - s->last_sweep_mono < 100)
		return;
	s->last_sweep_mono = wc.mono;
	cluster_each_watched_node(s->c, collect_node, &wc);
}

static void resume_all(struct request *ready)
{
	while (ready) {
		struct request *next = ready->next;
		ready->suspended = false;
		MHD_resume_connection(ready->conn);
		ready = next;
	}
}

void *server_commit_loop(void *arg)
{
	struct server *s = arg;
	struct cluster *c = s->c;
	pthread_mutex_lock(&c->lock);
	while (!s->stopping) {
		if (!server_lease_ok(s)) {
			/* The lease is late (etcd electing, or this server cut
			 * off): decide nothing, tell agents nothing, commit
			 * nothing until it is renewed or lost. */
			pthread_mutex_unlock(&c->lock);
			usleep(20 * 1000);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		cluster_tick(c);
		server_events_tick(s, time_mono_ms());
		uint64_t seq;
		struct store_batch *b = cluster_take_pending(c, &seq);
		struct request *early = NULL;
		collect_watches(s, &early, false);
		if (early) {
			pthread_mutex_unlock(&c->lock);
			resume_all(early);
			pthread_mutex_lock(&c->lock);
		}
		if (b) {
			pthread_mutex_unlock(&c->lock);
			while (!server_lease_ok(s) && !s->stopping)
				usleep(20 * 1000);
			struct berr err = {0};
			size_t records = store_batch_count(b);
			double t0 = mono_seconds();
			pthread_mutex_lock(&s->store_lock);
			int r = store_commit(s->store, b, &err);
			pthread_mutex_unlock(&s->store_lock);
			store_batch_free(b);
			metrics_hist_observe(&s->commit_seconds, mono_seconds() - t0);
			metrics_hist_observe(&s->commit_records, (double)records);
			if (r < 0) {
				/* Memory is ahead of the disk: the only safe move is to stop
				 * and let a restart reload what is durable. */
				log_error("fatal: %s", err.msg);
				abort();
			}
			pthread_mutex_lock(&c->lock);
		}
		cluster_set_committed(c, seq);
		struct request *ready = NULL;
		collect_commits(s, &ready, false);
		collect_watches(s, &ready, false);
		if (ready) {
			pthread_mutex_unlock(&c->lock);
			resume_all(ready);
			pthread_mutex_lock(&c->lock);
		}
		if (cluster_uncommitted(c) || s->stopping)
			continue;
		struct timespec ts = time_deadline_ms(COMMIT_TICK_MS);
		pthread_cond_timedwait(&c->wake, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* At stop, the commit thread gone: commit what is left, then answer
 * everyone still waiting. */
void server_commit_final(struct server *s)
{
	pthread_mutex_lock(&s->c->lock);
	uint64_t seq;
	struct store_batch *b = cluster_take_pending(s->c, &seq);
	if (b) {
		struct berr err;
		pthread_mutex_lock(&s->store_lock);
		int cr = store_commit(s->store, b, &err);
		pthread_mutex_unlock(&s->store_lock);
		if (cr < 0)
			log_error("%s", err.msg);
		else
			cluster_set_committed(s->c, seq);
		store_batch_free(b);
	}
	struct request *ready = NULL;
	collect_commits(s, &ready, false);
	collect_commits(s, &ready, true);
	collect_watches(s, &ready, true);
	pthread_mutex_unlock(&s->c->lock);
	resume_all(ready);
}
