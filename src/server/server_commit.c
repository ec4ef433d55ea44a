/* server_commit.c - the commit loop: the tick (cluster_tick), the pending
 * batch committed (one fsync for many requests), then the writes that
 * waited for it and the watches whose node changed are answered. */
#include "server/server-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/log.h"

#define COMMIT_TICK_MS 50
/* The commit and store-writer threads' nice value (the default is 0). */
#define COMMIT_NICE -5
/* While a batch is being written, the loop ticks at most this often: the
 * tasks it places wait for the next batch anyway, and each scheduling
 * round builds a view of every node (10,000 of them: ~0.1 ms). */
#define BUSY_TICK_MS 20

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
	/* Every 100 ms, or a tenth of the heartbeat when it is paced longer
	 * (10,000 nodes: every 250 ms; a watch is answered up to that late,
	 * which liveness does not count as silence). */
	int64_t every = cluster_heartbeat_ms(s->c) / 10;
	if (!all && wc.mono - s->last_sweep_mono < (every > 100 ? every : 100))
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

/* The commit thread's own work (the tick, scheduling, encoding records) is
 * the serial part of placing tasks: the request threads must not starve it
 * on a busy machine. Raising its priority needs CAP_SYS_NICE; without it
 * the thread keeps the default. */
static void commit_thread_priority(void)
{
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), COMMIT_NICE) < 0)
		log_debug("commit thread: cannot raise its priority (%s): it keeps the default",
			  strerror(errno));
}

/* The store writer: commits the batches the commit loop hands over, one at
 * a time and in order, so that the loop ticks (schedules, encodes the next
 * batch, answers watches) while a batch is written and fsynced. A batch's
 * seq is marked committed only once store_commit returned. */
static void *store_writer_main(void *arg)
{
	struct server *s = arg;
	struct cluster *c = s->c;
	pthread_setname_np(pthread_self(), "store-writer");
	commit_thread_priority();
	pthread_mutex_lock(&s->write_mu);
	for (;;) {
		while (!s->write_batch && !s->write_stop)
			pthread_cond_wait(&s->write_cond, &s->write_mu);
		if (!s->write_batch)
			break;
		struct store_batch *b = s->write_batch;
		uint64_t seq = s->write_seq;
		pthread_mutex_unlock(&s->write_mu);
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
		cluster_set_committed(c, seq);
		pthread_mutex_lock(&s->write_mu);
		s->write_batch = NULL;
		s->write_done++;
		pthread_cond_broadcast(&c->wake);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&s->write_mu);
	return NULL;
}

void *server_commit_loop(void *arg)
{
	struct server *s = arg;
	struct cluster *c = s->c;
	pthread_setname_np(pthread_self(), "commit");
	commit_thread_priority();
	pthread_t writer;
	pthread_cond_init(&s->write_cond, NULL);
	pthread_mutex_init(&s->write_mu, NULL);
	s->write_batch = NULL;
	s->write_stop = false;
	if (pthread_create(&writer, NULL, store_writer_main, s) != 0) {
		log_error("fatal: cannot start the store writer thread");
		abort();
	}
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
		int64_t ticked = time_mono_ms();
		cluster_tick(c);
		server_events_tick(s, ticked);
		uint64_t written = s->write_done;
		/* The next batch goes to the writer when it is idle; while it
		 * writes, changes gather in the pending batch (group commit). */
		if (!s->write_batch) {
			uint64_t seq;
			struct store_batch *b = cluster_take_pending(c, &seq);
			if (b) {
				pthread_mutex_lock(&s->write_mu);
				s->write_batch = b;
				s->write_seq = seq;
				pthread_cond_signal(&s->write_cond);
				pthread_mutex_unlock(&s->write_mu);
			} else {
				/* Nothing pending and nothing being written: all
				 * that was applied is durable. */
				cluster_set_committed(c, seq);
			}
		}
		struct request *ready = NULL;
		collect_commits(s, &ready, false);
		collect_watches(s, &ready, false);
		if (ready) {
			pthread_mutex_unlock(&c->lock);
			resume_all(ready);
			pthread_mutex_lock(&c->lock);
		}
		if (s->stopping)
			break;
		if (s->write_done != written || (cluster_uncommitted(c) && !s->write_batch))
			continue; /* a batch became durable, or more to hand over now */
		/* Woken by a request that changed something, by the writer when
		 * a batch is durable, or at the next tick. While the writer is
		 * busy, changes wait for the next batch anyway: tick at most
		 * every BUSY_TICK_MS then (thousands of reports each wake it). */
		struct timespec ts = time_deadline_ms(COMMIT_TICK_MS);
		while (!s->stopping && s->write_done == written) {
			if (pthread_cond_timedwait(&c->wake, &c->lock, &ts) == ETIMEDOUT ||
			    !s->write_batch || time_mono_ms() - ticked >= BUSY_TICK_MS)
				break;
		}
	}
	/* The batch being written is finished before the writer stops; what
	 * is left pending is server_commit_final's. */
	pthread_mutex_lock(&s->write_mu);
	s->write_stop = true;
	pthread_cond_signal(&s->write_cond);
	pthread_mutex_unlock(&s->write_mu);
	pthread_mutex_unlock(&c->lock);
	pthread_join(writer, NULL);
	pthread_cond_destroy(&s->write_cond);
	pthread_mutex_destroy(&s->write_mu);
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
