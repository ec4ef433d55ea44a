/* store_bench.c - store throughput on one backend: big batched commits and a
 * big scan, the two things the server does at scale (placement commits,
 * loading the state at start).
 *
 *   store_bench LOCATION [--puts N] [--batch B] [--keys K] [--value BYTES]
 *               [--rounds R]
 *
 * LOCATION is anything store_open takes: a file path (SQLite) or
 * etcd://127.0.0.1:2379/bench (the bench writes under its own key prefix
 * there and deletes it at the end; see docs/store.md to start an etcd).
 * Defaults: 10,000 puts committed in batches of 10,000, a scan of 100,000
 * keys (R times), 512-byte values (about a task record). Prints:
 *   backend=etcd puts=10000 batch=10000 commit_ms=... puts_per_s=...
 *   backend=etcd keys=100000 scan_ms=... keys_per_s=... bytes=...
 *
 * Build: make build/libberth.a && gcc -std=gnu11 -O2 -Isrc -D_GNU_SOURCE \
 *   -o build/store_bench bench/store_bench.c build/libberth.a \
 *   -lmicrohttpd -ljansson -lyaml -lsqlite3 -lcurl -lpthread -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "store/store.h"

static void die(const char *what, const struct berr *err)
{
	fprintf(stderr, "store_bench: %s: %s\n", what, err->msg);
	exit(1);
}

struct seen {
	size_t n, bytes;
};

static int count(const char *key, const char *value, size_t len, void *ud)
{
	struct seen *s = ud;
	s->n++;
	s->bytes += len;
	return 0;
}

/* Write n keys "<prefix><id>" in batches of batch; the time it took in ms. */
static int64_t fill(struct store *st, const char *prefix, size_t n, size_t batch, size_t vlen)
{
	struct berr err = {0};
	char *val = xmalloc(vlen);
	memset(val, 'v', vlen);
	struct store_batch *b = store_batch_new();
	int64_t t0 = time_mono_ms();
	for (size_t i = 0; i < n;) {
		store_batch_clear(b);
		for (size_t j = 0; j < batch && i < n; j++, i++) {
			char key[64];
			/* Scrambled, as random task ids are. */
			snprintf(key, sizeof key, "%s%08x-%zu", prefix, (unsigned)(i * 2654435761u),
				 i);
			store_batch_put(b, key, val, vlen);
		}
		if (store_commit(st, b, &err) < 0)
			die("commit", &err);
	}
	int64_t ms = time_mono_ms() - t0;
	store_batch_free(b);
	free(val);
	return ms;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: store_bench LOCATION [--puts N] [--batch B] [--keys K] "
				"[--value BYTES] [--rounds R]\n");
		return 2;
	}
	const char *loc = argv[1];
	size_t puts = 10000, batch = 10000, keys = 100000, vlen = 512, rounds = 1;
	for (int i = 2; i + 1 < argc; i += 2) {
		int64_t v = 0;
		if (parse_int64(argv[i + 1], &v) < 0 || v <= 0) {
			fprintf(stderr, "store_bench: bad number '%s'\n", argv[i + 1]);
			return 2;
		}
		if (!strcmp(argv[i], "--puts"))
			puts = (size_t)v;
		else if (!strcmp(argv[i], "--batch"))
			batch = (size_t)v;
		else if (!strcmp(argv[i], "--keys"))
			keys = (size_t)v;
		else if (!strcmp(argv[i], "--value"))
			vlen = (size_t)v;
		else if (!strcmp(argv[i], "--rounds"))
			rounds = (size_t)v;
		else {
			fprintf(stderr, "store_bench: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	struct berr err = {0};
	struct store *st = store_open(loc, &err);
	if (!st)
		die("open", &err);
	const char *name = store_backend_name(st);
	struct store_batch *b = store_batch_new();
	store_batch_delete_prefix(b, "bench/");
	if (store_commit(st, b, &err) < 0)
		die("clean", &err);

	int64_t ms = fill(st, "bench/c/", puts, batch, vlen);
	printf("backend=%s puts=%zu batch=%zu value=%zu commit_ms=%lld puts_per_s=%.0f\n", name,
	       puts, batch, vlen, (long long)ms, ms ? puts * 1000.0 / (double)ms : 0.0);

	/* The scan: keys in batches of 10,000, then one scan of them all. */
	fill(st, "bench/s/", keys, 10000, vlen);
	for (size_t r = 0; r < rounds; r++) {
		struct seen s = {0};
		int64_t t0 = time_mono_ms();
		if (store_scan(st, "bench/s/", count, &s, &err) != 0)
			die("scan", &err);
		ms = time_mono_ms() - t0;
		if (s.n != keys) {
			fprintf(stderr, "store_bench: scan saw %zu keys, not %zu\n", s.n, keys);
			return 1;
		}
		printf("backend=%s keys=%zu value=%zu scan_ms=%lld keys_per_s=%.0f bytes=%zu\n",
		       name, s.n, vlen, (long long)ms, ms ? s.n * 1000.0 / (double)ms : 0.0,
		       s.bytes);
	}

	store_batch_clear(b);
	store_batch_delete_prefix(b, "bench/");
	if (store_commit(st, b, &err) < 0)
		die("clean", &err);
	store_batch_free(b);
	store_close(st);
	return 0;
}
