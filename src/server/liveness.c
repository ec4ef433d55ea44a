/* liveness.c - heartbeat stamps and the server's deaf time (liveness.h). */
#include "server/liveness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/hmap.h"
#include "core/util.h"

#define INTAKE_SLOTS 64
#define LAG_SAMPLES 512
#define LAG_WINDOW_MS 2000
#define LAG_MIN_SAMPLES 5
#define LAG_CREDIT_MAX_MS 60000

struct node_live {
	int64_t heard_mono;    /* last heard (or released from a held watch) */
	int64_t deaf_at_heard; /* the deaf total then */
	int held;	       /* watches held by the server right now */
};

struct liveness {
	pthread_mutex_t lock; /* guards the map, the entries and the totals */
	struct hmap nodes;    /* name -> struct node_live* */
	int64_t stall_ms;
	int64_t period_ms; /* how often the judge looks when all is well */
	int64_t deaf_total;
	int64_t last_account; /* the judge's previous look, 0 before the first */
	int64_t ended_stall;  /* deaf ms of stalls that ended since the last look */
	/* Recent intake lags (a ring) and the credit the judge derived. */
	struct {
		int64_t mono;
		int32_t lag_ms;
	} lags[LAG_SAMPLES];
	unsigned nlags;
	int64_t lag_credit;
	/* Per request thread: when its current handler began, 0 when idle. */
	_Atomic int64_t busy_since[INTAKE_SLOTS];
};

static _Atomic int next_slot;
static _Thread_local int my_slot = -1;

struct liveness *liveness_new(int64_t stall_ms, int64_t period_ms)
{
	struct liveness *lv = xcalloc(1, sizeof *lv);
	pthread_mutex_init(&lv->lock, NULL);
	hmap_init(&lv->nodes);
	lv->stall_ms = stall_ms > 0 ? stall_ms : 250;
	lv->period_ms = period_ms > 0 ? period_ms : 0;
	return lv;
}

void liveness_free(struct liveness *lv)
{
	if (!lv)
		return;
	size_t it = 0;
	void *v;
	while (hmap_next(&lv->nodes, &it, NULL, &v))
		free(v);
	hmap_release(&lv->nodes);
	pthread_mutex_destroy(&lv->lock);
	free(lv);
}

int64_t liveness_stall_ms(const struct liveness *lv)
{
	return lv->stall_ms;
}

struct node_live *liveness_node(struct liveness *lv, const char *name)
{
	pthread_mutex_lock(&lv->lock);
	struct node_live *nl = hmap_get(&lv->nodes, name);
	if (!nl) {
		nl = xcalloc(1, sizeof *nl);
		nl->deaf_at_heard = lv->deaf_total;
		hmap_put(&lv->nodes, name, nl);
	}
	pthread_mutex_unlock(&lv->lock);
	return nl;
}

struct node_live *liveness_find(struct liveness *lv, const char *name)
{
	pthread_mutex_lock(&lv->lock);
	struct node_live *nl = hmap_get(&lv->nodes, name);
	pthread_mutex_unlock(&lv->lock);
	return nl;
}

static void stamp(struct liveness *lv, struct node_live *nl, int64_t mono)
{
	if (mono >= nl->heard_mono) {
		nl->heard_mono = mono;
		nl->deaf_at_heard = lv->deaf_total;
	}
}

void liveness_heard(struct liveness *lv, struct node_live *nl, int64_t mono)
{
	if (!nl)
		return;
	pthread_mutex_lock(&lv->lock);
	stamp(lv, nl, mono);
	pthread_mutex_unlock(&lv->lock);
}

void liveness_watch_begin(struct liveness *lv, struct node_live *nl, int64_t mono)
{
	if (!nl)
		return;
	pthread_mutex_lock(&lv->lock);
	stamp(lv, nl, mono);
	nl->held++;
	pthread_mutex_unlock(&lv->lock);
}

void liveness_watch_end(struct liveness *lv, struct node_live *nl, int64_t mono, int64_t wait_ms)
{
	if (!nl)
		return;
	pthread_mutex_lock(&lv->lock);
	if (nl->held > 0)
		nl->held--;
	/* Answered on time: the agent's silence runs from its request. Answered
	 * late: from the answer less the wait it asked for. */
	stamp(lv, nl, mono - (wait_ms > 0 ? wait_ms : 0));
	pthread_mutex_unlock(&lv->lock);
}

void liveness_all_heard(struct liveness *lv, int64_t mono)
{
	pthread_mutex_lock(&lv->lock);
	size_t it = 0;
	void *v;
	while (hmap_next(&lv->nodes, &it, NULL, &v))
		stamp(lv, v, mono);
	pthread_mutex_unlock(&lv->lock);
}

static int intake_slot(void)
{
	if (my_slot < 0)
		my_slot = atomic_fetch_add(&next_slot, 1);
	return my_slot < INTAKE_SLOTS ? my_slot : -1;
}

void liveness_intake_begin(struct liveness *lv, int64_t mono)
{
	int s = intake_slot();
	if (s >= 0)
		atomic_store_explicit(&lv->busy_since[s], mono, memory_order_relaxed);
}

void liveness_intake_end(struct liveness *lv, int64_t mono)
{
	int s = intake_slot();
	if (s < 0)
		return;
	int64_t since = atomic_exchange_explicit(&lv->busy_since[s], 0, memory_order_relaxed);
	if (!since || mono - since <= lv->stall_ms)
		return;
	/* A long handler that ended before the judge looked: its part after
	 * the judge's last look is deaf time still to count. */
	pthread_mutex_lock(&lv->lock);
	int64_t from = since > lv->last_account ? since : lv->last_account;
	if (mono - from > lv->ended_stall)
		lv->ended_stall = mono - from;
	pthread_mutex_unlock(&lv->lock);
}

void liveness_intake_lag(struct liveness *lv, int64_t lag_ms, int64_t mono)
{
	if (lag_ms < 0)
		lag_ms = 0;
	if (lag_ms > LAG_CREDIT_MAX_MS)
		lag_ms = LAG_CREDIT_MAX_MS;
	pthread_mutex_lock(&lv->lock);
	unsigned i = lv->nlags++ % LAG_SAMPLES;
	lv->lags[i].mono = mono;
	lv->lags[i].lag_ms = (int32_t)lag_ms;
	pthread_mutex_unlock(&lv->lock);
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* The 90th percentile of the lags read in the window before mono (lock
 * held); 0 with too few of them. */
static int64_t lag_p90(struct liveness *lv, int64_t mono)
{
	int32_t v[LAG_SAMPLES];
	size_t n = 0, have = lv->nlags < LAG_SAMPLES ? lv->nlags : LAG_SAMPLES;
	for (size_t i = 0; i < have; i++)
		if (mono - lv->lags[i].mono <= LAG_WINDOW_MS)
			v[n++] = lv->lags[i].lag_ms;
	if (n < LAG_MIN_SAMPLES)
		return 0;
	qsort(v, n, sizeof *v, cmp_i32);
	return v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1];
}

int64_t liveness_lag_credit(struct liveness *lv)
{
	pthread_mutex_lock(&lv->lock);
	int64_t c = lv->lag_credit;
	pthread_mutex_unlock(&lv->lock);
	return c;
}

void liveness_account(struct liveness *lv, int64_t mono)
{
	pthread_mutex_lock(&lv->lock);
	lv->lag_credit = lag_p90(lv, mono);
	int64_t deaf = lv->ended_stall;
	if (lv->last_account) {
		/* The judge itself was late: nothing was judged, and whatever
		 * kept it (a pause, the cluster lock, no CPU) kept the server
		 * from hearing too. */
		int64_t late = mono - lv->last_account - lv->period_ms;
		if (late > lv->stall_ms && late > deaf)
			deaf = late;
		for (int s = 0; s < INTAKE_SLOTS; s++) {
			int64_t since =
			    atomic_load_explicit(&lv->busy_since[s], memory_order_relaxed);
			if (!since || mono - since <= lv->stall_ms)
				continue;
			int64_t from = since > lv->last_account ? since : lv->last_account;
			if (mono - from > deaf)
				deaf = mono - from;
		}
	}
	if (deaf > 0)
		lv->deaf_total += deaf;
	lv->ended_stall = 0;
	lv->last_account = mono;
	pthread_mutex_unlock(&lv->lock);
}

int64_t liveness_deaf_total(struct liveness *lv)
{
	pthread_mutex_lock(&lv->lock);
	int64_t d = lv->deaf_total;
	pthread_mutex_unlock(&lv->lock);
	return d;
}

int64_t liveness_silence(struct liveness *lv, struct node_live *nl, int64_t mono)
{
	if (!nl)
		return 0;
	pthread_mutex_lock(&lv->lock);
	int64_t s = 0;
	if (!nl->held) {
		s = mono - nl->heard_mono - (lv->deaf_total - nl->deaf_at_heard) - lv->lag_credit;
		if (s < 0)
			s = 0;
	}
	pthread_mutex_unlock(&lv->lock);
	return s;
}

int64_t liveness_since_heard(struct liveness *lv, struct node_live *nl, int64_t mono)
{
	if (!nl)
		return 0;
	pthread_mutex_lock(&lv->lock);
	int64_t s = nl->held ? 0 : mono - nl->heard_mono;
	pthread_mutex_unlock(&lv->lock);
	return s < 0 ? 0 : s;
}
