/* store_etcd.c - the HA backend: an etcd v3 cluster through its JSON gateway,
 * spoken to by store/etcd_client.h (the location, the API prefix, endpoint
 * failover and retries are the client's). store_follow is in
 * store_etcd_follow.c.
 *
 * Keys map one to one: store key K is etcd key PREFIX+K, its value the etcd
 * value. Requests: POST <api>/kv/range and <api>/kv/txn (keys and values
 * base64).
 *
 * A commit becomes etcd transactions (see docs/store.md): the batch is first
 * reduced to its net effect, because etcd refuses a txn that puts one key
 * twice or puts a key that a delete of the same txn covers. Per key, the last
 * op wins; a delete_prefix drops the earlier puts under it and its range is
 * cut around the later ones ([P, k) and [k"\0", end(P)): k"\0" is the first
 * key after k). The result is a set of ops that commute, so they can go in
 * one txn, or, past etcd's limits (128 ops, 1.5 MiB by default), in several
 * txns in any order: a batch split that way is not atomic as a whole. etcd
 * answers a txn once a quorum has it in its log (fsynced), so a commit that
 * returned is durable.
 *
 * Reads are linearizable range requests. A scan reads pages (limit, then
 * from the last key + "\0") pinned to the revision of its first page, so it
 * is one consistent snapshot however long it is.
 *
 * A txn that gets no answer in time (TXN_TIMEOUT_MS) is sent again, to the
 * next endpoint: that is safe, since it writes final values, so applying it
 * twice is applying it once.
 */
#include "store/store-internal.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "store/etcd_client.h"
#include "store/store_etcd-internal.h"

/* etcd limits the encoded (protobuf) size of a request: keys and values as
 * bytes plus framing. Per op: RequestOp, RequestPut or RequestDeleteRange and
 * two fields, each a tag and a length varint (at most 24 bytes); per txn: the
 * raft request header. Both rounded up. */
#define OP_OVERHEAD 32
#define TXN_OVERHEAD 1024
_Static_assert(ETCD_MIN_REQUEST_BYTES >= TXN_OVERHEAD + 4096, "room for a txn");
/* A txn sent to a follower just as the leader dies is lost, and etcd only
 * says so after its own request timeout (7 s with default settings). So a
 * txn gets TXN_TIMEOUT_MS for its first try, twice that for the next, and
 * so on; a healthy txn, even of 1.5 MiB, takes tens of milliseconds. Sending
 * it again is safe (see the top of this file). */
#define TXN_TIMEOUT_MS 2000L
/* Scan pages: the limit starts small (most scans are small), doubles while
 * answers stay under PAGE_GROW_BYTES and halves above PAGE_SHRINK_BYTES.
 * etcd 3.4 walks the rest of the range in its index on every page, so few
 * large pages are much cheaper than many small ones on a big scan. */
#define PAGE_FIRST 512
#define PAGE_MIN 16
#define PAGE_MAX 16384
#define PAGE_GROW_BYTES (4u << 20)
#define PAGE_SHRINK_BYTES (32u << 20)
/* Requests in flight at once: the txns of a split commit (etcd puts
 * concurrent proposals in one raft round, one fsync) and a scan's next page,
 * fetched while the caller works through the current one. */
#define POOL 8

/* A request sent without waiting for its answer (curl multi). */
struct async {
	CURL *h;
	struct sbuf body, resp;
	char *url;
	size_t tag; /* the caller's: which txn */
	bool active, done;
	CURLcode rc;
};

struct etcd_store {
	struct etcd_client *etcd;
	const char *prefix; /* the client's: "" or "name/" */
	size_t prefix_len;
	size_t max_ops;
	size_t max_bytes;
	struct sbuf req; /* the request body being built */
	CURLM *multi;
	struct async pool[POOL];
	int scan_depth;	       /* only the outermost scan fetches ahead */
	int64_t last_scan_rev; /* the outermost scan's revision (0 before its first page) */
	char *guard_key;       /* fencing: commits apply only while it holds guard_value */
	char *guard_value;
};

static void buf_reset(struct sbuf *sb)
{
	sb->len = 0;
	sb->buf[0] = 0;
}

/* ---- requests in flight ----
 * Sent to the endpoint that answered last, without failing over: whoever
 * waits for one (async_finish) redoes it with api_call() when it failed in any
 * way, which fails over and reports. */

static void async_start(struct etcd_store *e, struct async *a, const char *what)
{
	free(a->url);
	a->url = etcd_client_url(e->etcd, what);
	curl_easy_setopt(a->h, CURLOPT_URL, a->url);
	curl_easy_setopt(a->h, CURLOPT_POSTFIELDS, a->body.buf);
	curl_easy_setopt(a->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)a->body.len);
	curl_easy_setopt(a->h, CURLOPT_TIMEOUT_MS,
			 strcmp(what, "kv/txn") ? ETCD_REQUEST_TIMEOUT_MS : TXN_TIMEOUT_MS);
	buf_reset(&a->resp);
	a->active = true;
	a->done = false;
	a->rc = CURLE_OK;
	curl_multi_add_handle(e->multi, a->h);
	int running;
	curl_multi_perform(e->multi, &running);
}

/* Move the requests in flight along, waiting up to wait_ms for the network
 * when none can move now; finished ones are marked done. */
static void async_pump(struct etcd_store *e, int wait_ms)
{
	int running = 0, left;
	curl_multi_perform(e->multi, &running);
	if (running && wait_ms > 0) {
		curl_multi_poll(e->multi, NULL, 0, wait_ms, NULL);
		curl_multi_perform(e->multi, &running);
	}
	CURLMsg *m;
	while ((m = curl_multi_info_read(e->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct async *a = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&a);
		a->rc = m->data.result;
		a->done = true;
		curl_multi_remove_handle(e->multi, m->easy_handle);
	}
}

/* Wait for a: 0 with *out its parsed answer, -1 when it failed. */
static int async_finish(struct etcd_store *e, struct async *a, json_t **out)
{
	while (!a->done)
		async_pump(e, 1000);
	a->active = false;
	*out = NULL;
	long status = 0;
	if (a->rc == CURLE_OK)
		curl_easy_getinfo(a->h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return -1;
	json_t *j = json_loadb(a->resp.buf, a->resp.len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return -1;
	}
	*out = j;
	return 0;
}

static void async_cancel(struct etcd_store *e, struct async *a)
{
	if (a->active && !a->done)
		curl_multi_remove_handle(e->multi, a->h);
	a->active = false;
}

/* A blocking call of <api>/<what> with e->req as the body; a txn gets
 * TXN_TIMEOUT_MS for its first try (see the top). */
static int api_call(struct etcd_store *e, const char *what, json_t **out, size_t *answer_bytes,
		    struct berr *err)
{
	struct etcd_call call = {.path = what,
				 .body = e->req.buf,
				 .len = e->req.len,
				 .timeout_ms = strcmp(what, "kv/txn") ? 0 : TXN_TIMEOUT_MS};
	int r = etcd_client_call(e->etcd, &call, out, err);
	if (answer_bytes)
		*answer_bytes = call.answer_bytes;
	return r;
}

/* ---- open and close ---- */

static void et_free(struct etcd_store *e)
{
	for (size_t i = 0; i < POOL; i++) {
		struct async *a = &e->pool[i];
		if (a->h) {
			async_cancel(e, a);
			curl_easy_cleanup(a->h);
		}
		sbuf_release(&a->body);
		sbuf_release(&a->resp);
		free(a->url);
	}
	if (e->multi)
		curl_multi_cleanup(e->multi);
	etcd_client_free(e->etcd);
	sbuf_release(&e->req);
	free(e->guard_key);
	free(e->guard_value);
	free(e);
}

static int et_open(struct store *st, const char *location, struct berr *err)
{
	struct etcd_store *e = xcalloc(1, sizeof *e);
	sbuf_init(&e->req);
	for (size_t i = 0; i < POOL; i++) {
		sbuf_init(&e->pool[i].body);
		sbuf_init(&e->pool[i].resp);
	}
	e->etcd = etcd_client_new(location, err);
	if (!e->etcd)
		goto fail;
	const struct etcd_location *loc = etcd_client_location(e->etcd);
	e->prefix = loc->prefix;
	e->prefix_len = loc->prefix_len;
	e->max_ops = loc->max_txn_ops;
	e->max_bytes = loc->max_request_bytes;
	e->multi = curl_multi_init();
	if (!e->multi) {
		berr_set(err, 0, "store: cannot open '%s': cannot create a curl handle", location);
		goto fail;
	}
	for (size_t i = 0; i < POOL; i++) {
		struct async *a = &e->pool[i];
		a->h = curl_easy_init();
		if (!a->h) {
			berr_set(err, 0, "store: cannot open '%s': cannot create a curl handle",
				 location);
			goto fail;
		}
		etcd_client_setup_handle(e->etcd, a->h, &a->resp);
		curl_easy_setopt(a->h, CURLOPT_PRIVATE, a);
	}
	if (etcd_client_detect(e->etcd, 0, false, err) < 0) {
		berr_prefix(err, "store: cannot open '%s'", location);
		goto fail;
	}
	st->data = e;
	return 0;

fail:
	et_free(e);
	return -1;
}

static void et_close(struct store *st)
{
	if (st->data)
		et_free(st->data);
	st->data = NULL;
}

struct etcd_client *etcd_store_client(struct store *st)
{
	struct etcd_store *e = st->data;
	return e->etcd;
}

int64_t etcd_store_scan_revision(struct store *st)
{
	struct etcd_store *e = st->data;
	return e->last_scan_rev;
}

static int et_set_guard(struct store *st, const char *key, const char *value, struct berr *err)
{
	struct etcd_store *e = st->data;
	(void)err;
	free(e->guard_key);
	free(e->guard_value);
	e->guard_key = key ? xstrdup(key) : NULL;
	e->guard_value = key ? xstrdup(value) : NULL;
	return 0;
}

/* ---- commit ---- */

/* One op of the net effect of a batch. */
enum xkind { X_PUT, X_DELETE, X_RANGE };
struct xop {
	enum xkind kind;
	const struct store_op *op; /* X_PUT, X_DELETE: the batch's op */
	/* X_RANGE: whole etcd keys (with the store's prefix), owned; end NULL
	 * is open-ended. */
	char *start, *end;
	size_t start_len, end_len;
};

struct point {
	const struct store_op *op;
	size_t pos; /* in the batch */
};

static int point_cmp(const void *pa, const void *pb)
{
	const struct point *a = pa, *b = pb;
	int c = strcmp(a->op->key, b->op->key);
	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int str_ptr_cmp(const void *pa, const void *pb)
{
	return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

/* The delete_prefix ops of a batch: prefix -> position of its last
 * occurrence. Open addressing, FNV-1a, so that "is key k covered by a later
 * delete_prefix" costs one lookup per prefix of k. */
struct pmap_ent {
	const char *key;
	size_t len;
	uint64_t hash;
	size_t pos;
};
struct pmap {
	struct pmap_ent *ents;
	size_t mask;
};

#define FNV_INIT 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = FNV_INIT;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * FNV_PRIME;
	return h;
}

static struct pmap_ent *pmap_slot(struct pmap *m, const char *key, size_t len, uint64_t hash)
{
	for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
		struct pmap_ent *ent = &m->ents[i];
		if (!ent->key ||
		    (ent->hash == hash && ent->len == len && !memcmp(ent->key, key, len)))
			return ent;
	}
}

/* The position of the last delete_prefix that covers key, or -1. */
static long pmap_last_cover(struct pmap *m, const char *key, size_t len)
{
	long last = -1;
	uint64_t h = FNV_INIT;
	for (size_t l = 0;; l++) {
		struct pmap_ent *ent = pmap_slot(m, key, l, h);
		if (ent->key && (long)ent->pos > last)
			last = (long)ent->pos;
		if (l == len)
			break;
		h = (h ^ (unsigned char)key[l]) * FNV_PRIME;
	}
	return last;
}

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

struct xops {
	struct xop *v;
	size_t n, cap;
};

static struct xop *xops_add(struct xops *x, enum xkind kind)
{
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 64;
		x->v = xrealloc(x->v, x->cap * sizeof *x->v);
	}
	struct xop *o = &x->v[x->n++];
	memset(o, 0, sizeof *o);
	o->kind = kind;
	return o;
}

static void xops_free(struct xops *x)
{
	for (size_t i = 0; i < x->n; i++) {
		free(x->v[i].start);
		free(x->v[i].end);
	}
	free(x->v);
}

/* The range [prefix, end(prefix)) minus the keys puts[0..n) (sorted, all
 * under prefix), as X_RANGE ops. */
static void add_ranges(const struct etcd_store *e, struct xops *x, const char *prefix,
		       const struct store_op **puts, size_t n)
{
	size_t start_len;
	char *start = etcd_key(e->etcd, prefix, strlen(prefix), false, &start_len);
	for (size_t i = 0; i < n; i++) {
		size_t end_len;
		char *end = etcd_key(e->etcd, puts[i]->key, puts[i]->key_len, false, &end_len);
		if (bytes_cmp(start, start_len, end, end_len) < 0) {
			struct xop *o = xops_add(x, X_RANGE);
			o->start = start;
			o->start_len = start_len;
			o->end = end;
			o->end_len = end_len;
		} else {
			free(start);
			free(end);
		}
		start = etcd_key(e->etcd, puts[i]->key, puts[i]->key_len, true, &start_len);
	}
	/* The end of the whole prefix, in etcd's key space. */
	size_t plen;
	char *whole = etcd_key(e->etcd, prefix, strlen(prefix), false, &plen);
	char *end = plen == 1 && whole[0] == 0 ? NULL : store_prefix_end(whole);
	free(whole);
	struct xop *o = xops_add(x, X_RANGE);
	o->start = start;
	o->start_len = start_len;
	o->end = end;
	o->end_len = end ? strlen(end) : 0;
}

/* Reduce b to its net effect: ops that commute (no key put twice, no put
 * under a delete), so that any grouping of them into txns gives the state
 * that applying b in order gives. */
static void net_effect(const struct etcd_store *e, const struct store_batch *b, struct xops *x)
{
	struct point *pts = xmalloc((b->n ? b->n : 1) * sizeof *pts);
	size_t npts = 0, nranges = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->ops[i].kind == STORE_OP_DELETE_PREFIX)
			nranges++;
		else
			pts[npts++] = (struct point){&b->ops[i], i};
	}
	qsort(pts, npts, sizeof *pts, point_cmp);

	struct pmap m = {0};
	if (nranges) {
		size_t cap = 16;
		while (cap < nranges * 2)
			cap *= 2;
		m.ents = xcalloc(cap, sizeof *m.ents);
		m.mask = cap - 1;
		for (size_t i = 0; i < b->n; i++) {
			const struct store_op *op = &b->ops[i];
			if (op->kind != STORE_OP_DELETE_PREFIX)
				continue;
			uint64_t h = fnv(op->key, op->key_len);
			struct pmap_ent *ent = pmap_slot(&m, op->key, op->key_len, h);
			*ent = (struct pmap_ent){op->key, op->key_len, h, i};
		}
	}

	/* Per key, the last op, unless a later delete_prefix covers it. */
	const struct store_op **puts = xmalloc((npts ? npts : 1) * sizeof *puts);
	size_t nputs = 0;
	for (size_t i = 0; i < npts; i++) {
		if (i + 1 < npts && !strcmp(pts[i].op->key, pts[i + 1].op->key))
			continue;
		if (nranges &&
		    pmap_last_cover(&m, pts[i].op->key, pts[i].op->key_len) > (long)pts[i].pos)
			continue;
		bool put = pts[i].op->kind == STORE_OP_PUT;
		xops_add(x, put ? X_PUT : X_DELETE)->op = pts[i].op;
		if (put)
			puts[nputs++] = pts[i].op;
	}

	if (nranges) {
		/* One range per distinct prefix, leaving out those inside
		 * another (sorted, a prefix comes right before the prefixes it
		 * covers). */
		const char **pfx = xmalloc(nranges * sizeof *pfx);
		size_t np = 0;
		for (size_t i = 0; i <= m.mask; i++)
			if (m.ents[i].key)
				pfx[np++] = m.ents[i].key;
		qsort(pfx, np, sizeof *pfx, str_ptr_cmp);
		const char *kept = NULL;
		size_t lo = 0;
		for (size_t i = 0; i < np; i++) {
			if (kept && !strncmp(pfx[i], kept, strlen(kept)))
				continue;
			kept = pfx[i];
			size_t plen = strlen(kept);
			/* The puts under it that come after it in the batch
			 * (the others were dropped above). puts is sorted and
			 * so are the kept prefixes, which do not overlap. */
			while (lo < nputs && strcmp(puts[lo]->key, kept) < 0)
				lo++;
			size_t hi = lo;
			while (hi < nputs && !strncmp(puts[hi]->key, kept, plen))
				hi++;
			add_ranges(e, x, kept, puts + lo, hi - lo);
			lo = hi;
		}
		free(pfx);
	}
	free(puts);
	free(m.ents);
	free(pts);
}

/* What an op counts against etcd's request size limit. */
static size_t xop_size(const struct etcd_store *e, const struct xop *o)
{
	switch (o->kind) {
	case X_PUT:
		return OP_OVERHEAD + e->prefix_len + o->op->key_len + o->op->len;
	case X_DELETE:
		return OP_OVERHEAD + e->prefix_len + o->op->key_len;
	case X_RANGE:
		return OP_OVERHEAD + o->start_len + (o->end ? o->end_len : 1);
	}
	return OP_OVERHEAD;
}

static void req_xop(const struct etcd_store *e, struct sbuf *sb, const struct xop *o)
{
	switch (o->kind) {
	case X_PUT:
		sbuf_adds(sb, "{\"request_put\":{");
		etcd_add_key(e->etcd, sb, "key", o->op->key, o->op->key_len);
		sbuf_adds(sb, ",\"value\":\"");
		base64_add(sb, o->op->value, o->op->len);
		sbuf_adds(sb, "\"}}");
		break;
	case X_DELETE:
		sbuf_adds(sb, "{\"request_delete_range\":{");
		etcd_add_key(e->etcd, sb, "key", o->op->key, o->op->key_len);
		sbuf_adds(sb, "}}");
		break;
	case X_RANGE:
		sbuf_adds(sb, "{\"request_delete_range\":{");
		etcd_add_raw(sb, "key", o->start, o->start_len);
		sbuf_adds(sb, ",");
		etcd_add_raw(sb, "range_end", o->end, o->end_len);
		sbuf_adds(sb, "}}");
		break;
	}
}

/* The body of a txn of ops[0..n), into sb. No compare: the success branch
 * always runs. */
static void txn_body(const struct etcd_store *e, struct sbuf *sb, const struct xop *ops, size_t n)
{
	buf_reset(sb);
	sbuf_adds(sb, "{");
	if (e->guard_key) {
		/* Fenced: only while this server still holds the leadership. */
		sbuf_adds(sb, "\"compare\":[{");
		etcd_add_key(e->etcd, sb, "key", e->guard_key, strlen(e->guard_key));
		sbuf_adds(sb, ",\"target\":\"VALUE\",\"result\":\"EQUAL\",");
		etcd_add_raw(sb, "value", e->guard_value, strlen(e->guard_value));
		sbuf_adds(sb, "}],");
	}
	sbuf_adds(sb, "\"success\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_adds(sb, ",");
		req_xop(e, sb, &ops[i]);
	}
	sbuf_adds(sb, "]}");
}

static int txn_answer(struct etcd_store *e, json_t *j, struct berr *err)
{
	int ok = json_is_true(json_object_get(j, "succeeded"));
	json_decref(j);
	if (!ok && e->guard_key)
		return berr_set(err, 409,
				"fenced: '%s' no longer names this server (leadership lost); "
				"the transaction was not applied",
				e->guard_key);
	if (!ok)
		return berr_set(err, 0, "etcd %s: the transaction was not applied",
				etcd_client_endpoint(e->etcd));
	return 0;
}

/* Send ops[0..n) as one txn and wait for it. */
static int send_txn(struct etcd_store *e, const struct xop *ops, size_t n, struct berr *err)
{
	txn_body(e, &e->req, ops, n);
	json_t *j = NULL;
	if (api_call(e, "kv/txn", &j, NULL, err) < 0)
		return -1;
	return txn_answer(e, j, err);
}

/* The end of the txn that starts at x->v[i]: as many ops as etcd takes in
 * one request, at least one. */
static size_t txn_end(const struct etcd_store *e, const struct xops *x, size_t i)
{
	size_t budget = e->max_bytes - TXN_OVERHEAD, size = 0, j = i;
	while (j < x->n && j - i < e->max_ops) {
		size_t s = xop_size(e, &x->v[j]);
		if (j > i && size + s > budget)
			break;
		size += s;
		j++;
	}
	return j;
}

/* Put key = value only if the key does not exist (compare on its create
 * revision): 0 when put, 1 when it was there. Unfenced: for what any
 * server may make first, such as the cluster CA. */
static int et_create(struct store *st, const char *key, const char *value, size_t len,
		     struct berr *err)
{
	struct etcd_store *e = st->data;
	size_t klen = strlen(key);
	struct sbuf *sb = &e->req;
	buf_reset(sb);
	sbuf_adds(sb, "{\"compare\":[{");
	etcd_add_key(e->etcd, sb, "key", key, klen);
	sbuf_adds(sb, ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"0\"}],"
		      "\"success\":[{\"request_put\":{");
	etcd_add_key(e->etcd, sb, "key", key, klen);
	sbuf_adds(sb, ",\"value\":\"");
	base64_add(sb, value, len);
	sbuf_adds(sb, "\"}}]}");
	json_t *j = NULL;
	if (api_call(e, "kv/txn", &j, NULL, err) < 0)
		return -1;
	int made = json_is_true(json_object_get(j, "succeeded"));
	json_decref(j);
	return made ? 0 : 1;
}

/* Send the txns of a split batch, POOL at a time: their ops commute, so
 * they may be applied in any order. A txn that fails in any way here is sent
 * again with api_call(), which fails over to the other endpoints and says what
 * went wrong. *done counts the txns known to be applied. */
static int commit_split(struct etcd_store *e, const struct xops *x, const size_t *starts,
			size_t ntxn, size_t *done, struct berr *err)
{
	size_t *redo = xmalloc(ntxn * sizeof *redo), nredo = 0, next = 0;
	for (;;) {
		size_t active = 0;
		for (size_t k = 0; k < POOL; k++) {
			struct async *a = &e->pool[k];
			if (!a->active && next < ntxn) {
				a->tag = next++;
				txn_body(e, &a->body, x->v + starts[a->tag],
					 starts[a->tag + 1] - starts[a->tag]);
				async_start(e, a, "kv/txn");
			}
			active += a->active;
		}
		if (!active)
			break;
		async_pump(e, 1000);
		for (size_t k = 0; k < POOL; k++) {
			struct async *a = &e->pool[k];
			if (!a->active || !a->done)
				continue;
			json_t *j = NULL;
			struct berr ignored;
			if (async_finish(e, a, &j) == 0 && txn_answer(e, j, &ignored) == 0)
				(*done)++;
			else
				redo[nredo++] = a->tag;
		}
	}
	int r = 0;
	for (size_t i = 0; i < nredo && r == 0; i++) {
		size_t t = redo[i];
		r = send_txn(e, x->v + starts[t], starts[t + 1] - starts[t], err);
		if (r == 0)
			(*done)++;
	}
	free(redo);
	return r;
}

static int et_commit(struct store *st, const struct store_batch *b, struct berr *err)
{
	struct etcd_store *e = st->data;
	size_t budget = e->max_bytes - TXN_OVERHEAD;

	/* Refuse what etcd would refuse before writing anything. */
	for (size_t i = 0; i < b->n; i++) {
		const struct store_op *op = &b->ops[i];
		if (op->kind != STORE_OP_DELETE_PREFIX && op->key_len + e->prefix_len == 0)
			return berr_set(err, 0,
					"store: cannot commit: %s '': etcd has no empty key",
					store_op_name(op->kind));
		size_t size = OP_OVERHEAD + e->prefix_len + op->key_len + op->len;
		if (size > budget)
			return berr_set(err, 0,
					"store: cannot commit: %s '%.200s' is %zu bytes, more than "
					"one etcd request may carry (%zu bytes: etcd's "
					"--max-request-bytes)",
					store_op_name(op->kind), op->key, op->key_len + op->len,
					e->max_bytes);
	}

	struct xops x = {0};
	net_effect(e, b, &x);

	/* Where each txn starts; starts[ntxn] = x.n. */
	size_t ntxn = 0, cap = 16;
	size_t *starts = xmalloc(cap * sizeof *starts);
	for (size_t i = 0; i < x.n; i = txn_end(e, &x, i)) {
		if (ntxn + 2 > cap)
			starts = xrealloc(starts, (cap *= 2) * sizeof *starts);
		starts[ntxn++] = i;
	}
	starts[ntxn] = x.n;

	int r = 0;
	size_t done = 0;
	if (ntxn == 1) {
		r = send_txn(e, x.v, x.n, err);
		if (r < 0)
			berr_prefix(err, "store: cannot commit");
	} else if (ntxn > 1) {
		r = commit_split(e, &x, starts, ntxn, &done, err);
		if (r < 0)
			berr_prefix(
			    err,
			    "store: cannot commit (the batch was split into %zu etcd "
			    "transactions and %zu of them were applied: the batch is partly "
			    "applied)",
			    ntxn, done);
	}
	free(starts);
	xops_free(&x);
	return r;
}

/* ---- reads ---- */

static int et_get(struct store *st, const char *key, char **value, size_t *len, struct berr *err)
{
	struct etcd_store *e = st->data;
	size_t klen = strlen(key);
	if (klen + e->prefix_len == 0)
		return 1; /* etcd has no empty key */
	buf_reset(&e->req);
	sbuf_adds(&e->req, "{");
	etcd_add_key(e->etcd, &e->req, "key", key, klen);
	sbuf_adds(&e->req, "}");
	json_t *j = NULL;
	if (api_call(e, "kv/range", &j, NULL, err) < 0)
		return berr_prefix(err, "store: cannot get '%.200s'", key);
	json_t *kvs = json_object_get(j, "kvs");
	if (json_array_size(kvs) == 0) {
		json_decref(j);
		return 1;
	}
	struct sbuf v;
	sbuf_init(&v);
	if (etcd_kv_bytes(json_array_get(kvs, 0), "value", &v) < 0) {
		json_decref(j);
		sbuf_release(&v);
		return berr_set(err, 0, "store: cannot get '%.200s': etcd %s: bad value", key,
				etcd_client_endpoint(e->etcd));
	}
	json_decref(j);
	if (len)
		*len = v.len;
	if (value)
		*value = sbuf_detach(&v);
	else
		sbuf_release(&v);
	return 0;
}

/* The body of a scan page: keys from start (a whole etcd key) to end (NULL:
 * no end), at revision rev (0: the current one). */
static void page_body(struct sbuf *sb, const char *start, size_t start_len, const char *end,
		      size_t limit, int64_t rev)
{
	buf_reset(sb);
	sbuf_adds(sb, "{");
	etcd_add_raw(sb, "key", start, start_len);
	sbuf_adds(sb, ",");
	etcd_add_raw(sb, "range_end", end, end ? strlen(end) : 0);
	sbuf_addf(sb, ",\"limit\":%zu", limit);
	if (rev > 0)
		sbuf_addf(sb, ",\"revision\":%lld", (long long)rev);
	sbuf_adds(sb, "}");
}

int etcd_store_scan(struct store *st, const char *prefix, store_scan_fn fn, void *ud,
		    struct berr *err)
{
	struct etcd_store *e = st->data;
	size_t plen = strlen(prefix);
	/* start: where the next page begins (a whole etcd key); end: the
	 * first key after the prefix, NULL for none. */
	size_t start_len;
	char *start = etcd_key(e->etcd, prefix, plen, false, &start_len);
	char *end = start_len == 1 && start[0] == 0 ? NULL : store_prefix_end(start);
	/* The outermost scan asks for the next page before it hands out the
	 * current one, so that etcd works on it meanwhile. A scan from a scan
	 * callback (rare, small) does not. */
	struct async *ahead = e->scan_depth == 0 ? &e->pool[0] : NULL;
	if (e->scan_depth == 0)
		e->last_scan_rev = 0;
	e->scan_depth++;
	struct sbuf kb, vb;
	sbuf_init(&kb);
	sbuf_init(&vb);
	int64_t rev = 0;
	size_t limit = PAGE_FIRST;
	int result = 0;
	for (;;) {
		json_t *j = NULL;
		size_t answer_bytes = 0;
		if (ahead && ahead->active && async_finish(e, ahead, &j) == 0) {
			answer_bytes = ahead->resp.len;
		} else {
			page_body(&e->req, start, start_len, end, limit, rev);
			if (api_call(e, "kv/range", &j, &answer_bytes, err) < 0) {
				result = berr_prefix(err, "store: cannot scan '%.200s'", prefix);
				break;
			}
		}
		if (rev == 0) {
			rev = etcd_int64(json_object_get(json_object_get(j, "header"), "revision"));
			if (e->scan_depth == 1)
				e->last_scan_rev = rev;
		}
		json_t *kvs = json_object_get(j, "kvs");
		size_t n = json_array_size(kvs);
		bool more = json_is_true(json_object_get(j, "more")) && n > 0;
		if (more) {
			/* The next page starts just after the last key. */
			if (etcd_kv_bytes(json_array_get(kvs, n - 1), "key", &kb) < 0) {
				json_decref(j);
				result = berr_set(err, 0,
						  "store: cannot scan '%.200s': etcd %s: bad key "
						  "in the answer",
						  prefix, etcd_client_endpoint(e->etcd));
				break;
			}
			free(start);
			start_len = kb.len + 1;
			start = xmalloc(start_len + 1);
			memcpy(start, kb.buf, kb.len);
			start[kb.len] = 0;
			start[start_len] = 0;
			if (answer_bytes < PAGE_GROW_BYTES && limit < PAGE_MAX)
				limit *= 2;
			else if (answer_bytes > PAGE_SHRINK_BYTES && limit > PAGE_MIN)
				limit /= 2;
			if (ahead) {
				page_body(&ahead->body, start, start_len, end, limit, rev);
				async_start(e, ahead, "kv/range");
			}
		}
		for (size_t i = 0; i < n && !result; i++) {
			json_t *kv = json_array_get(kvs, i);
			if (etcd_kv_bytes(kv, "key", &kb) < 0 ||
			    etcd_kv_bytes(kv, "value", &vb) < 0 || kb.len < e->prefix_len ||
			    memcmp(kb.buf, e->prefix, e->prefix_len)) {
				result = berr_set(err, 0,
						  "store: cannot scan '%.200s': etcd %s: bad key "
						  "or value in the answer",
						  prefix, etcd_client_endpoint(e->etcd));
				break;
			}
			/* fn may scan or get again: e->req and the client are
			 * reused, the page (j) and kb/vb are not. */
			result = fn(kb.buf + e->prefix_len, vb.buf, vb.len, ud);
			/* Keep the next page coming while fn works. */
			if (ahead && ahead->active && i % 64 == 63)
				async_pump(e, 0);
		}
		json_decref(j);
		if (result || !more)
			break;
	}
	if (ahead)
		async_cancel(e, ahead);
	e->scan_depth--;
	sbuf_release(&kb);
	sbuf_release(&vb);
	free(start);
	free(end);
	return result;
}

const struct store_ops store_etcd_ops = {
    .name = "etcd",
    .open = et_open,
    .close = et_close,
    .commit = et_commit,
    .get = et_get,
    .scan = etcd_store_scan,
    .set_guard = et_set_guard,
    .create = et_create,
    .follow = etcd_store_follow,
};
