/* test_store.c - the store API on the SQLite backend: round trips, batch
 * semantics, atomicity, durability across close and crash, and errors.
 * Each test works in its own mkdtemp directory and removes it. */
#include "store/store.h"
#include "store/store-internal.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "unit.h"

/* ---- fixtures ---- */

struct fx {
	char dir[64];
	char *path;
	struct store *st;
	struct berr err;
};

static void fx_setup(struct fx *f)
{
	memset(f, 0, sizeof *f);
	strcpy(f->dir, "/tmp/berth-test-store.XXXXXX");
	if (!mkdtemp(f->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	f->path = xasprintf("%s/state.db", f->dir);
	f->st = store_open(f->path, &f->err);
	if (!f->st) {
		fprintf(stderr, "    store_open: %s\n", f->err.msg);
		exit(1);
	}
}

static void fx_reopen(struct fx *f)
{
	store_close(f->st);
	f->st = store_open(f->path, &f->err);
	if (!f->st) {
		fprintf(stderr, "    store_open: %s\n", f->err.msg);
		exit(1);
	}
}

static void fx_teardown(struct fx *f)
{
	store_close(f->st);
	rm_rf(f->dir);
	free(f->path);
}

static int commit(struct fx *f, struct store_batch *b)
{
	int r = store_commit(f->st, b, &f->err);
	if (r < 0)
		fprintf(stderr, "    store_commit: %s\n", f->err.msg);
	store_batch_free(b);
	return r;
}

static void put_str(struct store_batch *b, const char *key, const char *value)
{
	store_batch_put(b, key, value, strlen(value));
}

/* The value of key as a string, "<absent>" or "<error>"; caller frees. */
static char *get_str(struct fx *f, const char *key)
{
	char *v = NULL;
	size_t len = 0;
	int r = store_get(f->st, key, &v, &len, &f->err);
	if (r == 1)
		return xstrdup("<absent>");
	if (r < 0)
		return xstrdup("<error>");
	return v;
}

#define CHECK_VALUE(f, key, want)                                                                  \
	do {                                                                                       \
		char *got_ = get_str((f), (key));                                                  \
		CHECK_STR(got_, (want));                                                           \
		free(got_);                                                                        \
	} while (0)

/* Scan into "k1=v1;k2=v2;" so that a whole result is one CHECK_STR. */
static int collect(const char *key, const char *value, size_t len, void *ud)
{
	struct sbuf *sb = ud;
	sbuf_addf(sb, "%s=%.*s;", key, (int)len, value);
	return 0;
}

static char *scan_str(struct fx *f, const char *prefix)
{
	struct sbuf sb;
	sbuf_init(&sb);
	if (store_scan(f->st, prefix, collect, &sb, &f->err) != 0) {
		sbuf_release(&sb);
		return xstrdup("<error>");
	}
	return sbuf_detach(&sb);
}

#define CHECK_SCAN(f, prefix, want)                                                                \
	do {                                                                                       \
		char *got_ = scan_str((f), (prefix));                                              \
		CHECK_STR(got_, (want));                                                           \
		free(got_);                                                                        \
	} while (0)

/* Run one SQL statement on the file behind the store's back. */
static int raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;
	int rc = sqlite3_open(path, &db);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "    raw sql: %s\n", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	sqlite3_close(db);
	return rc;
}

/* The single text answer of a query on the file; caller frees. */
static char *raw_query(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	char *out = xstrdup("<none>");
	if (sqlite3_open(path, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW) {
		free(out);
		out = xstrdup((const char *)sqlite3_column_text(stmt, 0));
	}
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return out;
}

/* ---- opening ---- */

TEST(open_creates_wal_file_with_schema)
{
	struct fx f;
	fx_setup(&f);
	struct stat sb;
	CHECK(stat(f.path, &sb) == 0 && S_ISREG(sb.st_mode));
	CHECK_STR(store_backend_name(f.st), "sqlite");
	char *mode = raw_query(f.path, "PRAGMA journal_mode");
	CHECK_STR(mode, "wal");
	free(mode);
	char *ver = raw_query(f.path, "SELECT value FROM meta WHERE name = 'schema_version'");
	CHECK_STR(ver, "1");
	free(ver);
	/* kv keeps its rows in the primary key: no rowid, no second index. */
	char *sql = raw_query(f.path, "SELECT sql FROM sqlite_master WHERE name = 'kv'");
	CHECK_CONTAINS(sql, "WITHOUT ROWID");
	free(sql);
	fx_teardown(&f);
}

TEST(open_sqlite_scheme_and_reopen)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	put_str(b, "jobs/alice/prod/web", "{}");
	CHECK(commit(&f, b) == 0);
	store_close(f.st);

	char *loc = xasprintf("sqlite:%s", f.path);
	f.st = store_open(loc, &f.err);
	free(loc);
	CHECK(f.st != NULL);
	if (f.st)
		CHECK_VALUE(&f, "jobs/alice/prod/web", "{}");
	fx_teardown(&f);
}

TEST(open_unwritable_path_names_the_path)
{
	struct berr err = {0};
	/* /dev/null is not a directory: no file can be created under it, even
	 * by root, who ignores permission bits. */
	CHECK(store_open("/dev/null/state.db", &err) == NULL);
	CHECK_CONTAINS(err.msg, "store: cannot open '/dev/null/state.db'");
	CHECK_CONTAINS(err.msg, "not a directory");

	berr_clear(&err);
	CHECK(store_open("sqlite:/nonexistent-berth-dir/x/state.db", &err) == NULL);
	CHECK_CONTAINS(err.msg, "'/nonexistent-berth-dir/x/state.db'");
	CHECK_CONTAINS(err.msg, "no such file or directory");

	/* The data dir itself instead of a file in it. */
	char dir[] = "/tmp/berth-test-store.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	berr_clear(&err);
	CHECK(store_open(dir, &err) == NULL);
	CHECK_CONTAINS(err.msg, dir);
	rm_rf(dir);
}

TEST(open_rejects_bad_locations)
{
	struct berr err = {0};
	CHECK(store_open("etcd://127.0.0.1:2379", &err) == NULL);
	CHECK_STR(err.msg, "store: etcd backend not built");

	berr_clear(&err);
	CHECK(store_open("consul://127.0.0.1:8500", &err) == NULL);
	CHECK_CONTAINS(err.msg, "unknown store 'consul://127.0.0.1:8500'");

	berr_clear(&err);
	CHECK(store_open("", &err) == NULL);
	CHECK_CONTAINS(err.msg, "store: ");

	berr_clear(&err);
	CHECK(store_open("sqlite:", &err) == NULL);
	CHECK_CONTAINS(err.msg, "no path");
}

TEST(open_rejects_a_file_that_is_not_a_database)
{
	char dir[] = "/tmp/berth-test-store.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *path = xasprintf("%s/state.db", dir);
	const char junk[] = "this is not a database, just some text that is long enough to "
			    "cover a sqlite header of one hundred bytes, really it is not";
	CHECK(file_write_atomic(path, junk, sizeof junk - 1) == 0);
	struct berr err = {0};
	CHECK(store_open(path, &err) == NULL);
	CHECK_CONTAINS(err.msg, path);
	CHECK_CONTAINS(err.msg, "not a database");
	rm_rf(dir);
	free(path);
}

TEST(open_refuses_a_newer_schema)
{
	struct fx f;
	fx_setup(&f);
	store_close(f.st);
	f.st = NULL;
	CHECK(raw_exec(f.path, "UPDATE meta SET value = 7 WHERE name = 'schema_version'") ==
	      SQLITE_OK);
	CHECK(store_open(f.path, &f.err) == NULL);
	CHECK_CONTAINS(f.err.msg, "schema version 7");
	CHECK_CONTAINS(f.err.msg, f.path);
	fx_teardown(&f);
}

/* ---- round trips ---- */

TEST(put_get_delete_round_trip)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	put_str(b, "nodes/n1", "{\"name\":\"n1\"}");
	put_str(b, "nodes/n2", "{\"name\":\"n2\"}");
	CHECK(store_batch_count(b) == 2);
	CHECK(commit(&f, b) == 0);
	CHECK_VALUE(&f, "nodes/n1", "{\"name\":\"n1\"}");
	CHECK_VALUE(&f, "nodes/n2", "{\"name\":\"n2\"}");

	b = store_batch_new();
	store_batch_delete(b, "nodes/n1");
	store_batch_delete(b, "nodes/never-existed"); /* not an error */
	CHECK(commit(&f, b) == 0);
	CHECK_VALUE(&f, "nodes/n1", "<absent>");
	CHECK_VALUE(&f, "nodes/n2", "{\"name\":\"n2\"}");
	fx_teardown(&f);
}

TEST(get_of_missing_key_returns_1)
{
	struct fx f;
	fx_setup(&f);
	char *v = (char *)"garbage";
	size_t len = 99;
	CHECK(store_get(f.st, "tasks/none", &v, &len, &f.err) == 1);
	CHECK(v == NULL);
	CHECK(len == 0);
	/* A prefix of an existing key is not that key. */
	struct store_batch *b = store_batch_new();
	put_str(b, "tasks/abc", "x");
	CHECK(commit(&f, b) == 0);
	CHECK(store_get(f.st, "tasks/ab", &v, &len, &f.err) == 1);
	CHECK(store_get(f.st, "tasks/abcd", &v, &len, &f.err) == 1);
	/* value and len may be NULL to test for presence. */
	CHECK(store_get(f.st, "tasks/abc", NULL, NULL, &f.err) == 0);
	fx_teardown(&f);
}

TEST(overwrite_keeps_the_last_value)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	put_str(b, "jobs/a/prod/x", "v1");
	CHECK(commit(&f, b) == 0);
	b = store_batch_new();
	put_str(b, "jobs/a/prod/x", "version two, longer");
	CHECK(commit(&f, b) == 0);
	CHECK_VALUE(&f, "jobs/a/prod/x", "version two, longer");
	b = store_batch_new();
	put_str(b, "jobs/a/prod/x", "3");
	CHECK(commit(&f, b) == 0);
	CHECK_VALUE(&f, "jobs/a/prod/x", "3");
	CHECK_SCAN(&f, "jobs/", "jobs/a/prod/x=3;");
	fx_teardown(&f);
}

TEST(binary_values_keep_every_byte)
{
	struct fx f;
	fx_setup(&f);
	char all[512];
	for (size_t i = 0; i < sizeof all; i++)
		all[i] = (char)(i & 0xff); /* starts with NUL, has NULs inside */
	struct store_batch *b = store_batch_new();
	store_batch_put(b, "bin/all", all, sizeof all);
	store_batch_put(b, "bin/nul", "\0\0\0", 3);
	CHECK(commit(&f, b) == 0);

	char *v = NULL;
	size_t len = 0;
	CHECK(store_get(f.st, "bin/all", &v, &len, &f.err) == 0);
	CHECK(len == sizeof all);
	CHECK(v && memcmp(v, all, sizeof all) == 0);
	CHECK(v && v[len] == 0);
	free(v);
	CHECK(store_get(f.st, "bin/nul", &v, &len, &f.err) == 0);
	CHECK(len == 3 && v && !memcmp(v, "\0\0\0", 4));
	free(v);
	fx_teardown(&f);
}

struct bin_seen {
	int n;
	size_t lens[4];
	int ok;
};

static int check_bin(const char *key, const char *value, size_t len, void *ud)
{
	struct bin_seen *s = ud;
	if (s->n < 4)
		s->lens[s->n] = len;
	s->n++;
	if (value[len] != 0)
		s->ok = 0;
	for (size_t i = 0; i < len && !strcmp(key, "bin/all"); i++)
		if ((unsigned char)value[i] != (i & 0xff))
			s->ok = 0;
	return 0;
}

TEST(binary_and_empty_values_through_scan)
{
	struct fx f;
	fx_setup(&f);
	char all[300];
	for (size_t i = 0; i < sizeof all; i++)
		all[i] = (char)i;
	struct store_batch *b = store_batch_new();
	store_batch_put(b, "bin/all", all, sizeof all);
	store_batch_put(b, "bin/empty", "", 0);
	store_batch_put(b, "bin/null", NULL, 0);
	CHECK(commit(&f, b) == 0);
	struct bin_seen s = {.ok = 1};
	CHECK(store_scan(f.st, "bin/", check_bin, &s, &f.err) == 0);
	CHECK(s.n == 3);
	CHECK(s.lens[0] == sizeof all && s.lens[1] == 0 && s.lens[2] == 0);
	CHECK(s.ok);
	fx_teardown(&f);
}

TEST(empty_value_is_present_not_absent)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	store_batch_put(b, "meta/empty", "", 0);
	CHECK(commit(&f, b) == 0);
	char *v = NULL;
	size_t len = 7;
	CHECK(store_get(f.st, "meta/empty", &v, &len, &f.err) == 0);
	CHECK(len == 0);
	CHECK_STR(v, "");
	free(v);
	fx_reopen(&f);
	CHECK_VALUE(&f, "meta/empty", "");
	fx_teardown(&f);
}

TEST(large_values_round_trip)
{
	struct fx f;
	fx_setup(&f);
	size_t n = 8u << 20; /* 8 MiB: many overflow pages */
	char *big = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)(i * 7 + (i >> 13));
	struct store_batch *b = store_batch_new();
	store_batch_put(b, "big/one", big, n);
	CHECK(commit(&f, b) == 0);
	fx_reopen(&f);
	char *v = NULL;
	size_t len = 0;
	CHECK(store_get(f.st, "big/one", &v, &len, &f.err) == 0);
	CHECK(len == n);
	CHECK(v && memcmp(v, big, n) == 0 && v[n] == 0);
	free(v);
	free(big);
	fx_teardown(&f);
}

/* ---- prefixes and scans ---- */

TEST(scan_is_in_key_order_within_the_prefix)
{
	struct fx f;
	fx_setup(&f);
	/* Added out of order, with neighbours of the prefix on both sides. */
	const char *keys[] = {"tasks/c", "tasks",  "tasks/a", "tasks0", "tasks/b/1", "task",
			      "tasks/B", "tasks.", "tasks/b", "zzz",	"tasks/"};
	struct store_batch *b = store_batch_new();
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		put_str(b, keys[i], "v");
	CHECK(commit(&f, b) == 0);
	/* Byte order: "B" < "a", "b" < "b/1". */
	CHECK_SCAN(&f, "tasks/", "tasks/=v;tasks/B=v;tasks/a=v;tasks/b=v;tasks/b/1=v;tasks/c=v;");
	CHECK_SCAN(&f, "tasks/b", "tasks/b=v;tasks/b/1=v;");
	CHECK_SCAN(&f, "tasks/b/", "tasks/b/1=v;");
	CHECK_SCAN(&f, "tasks/d", "");
	CHECK_SCAN(&f, "tasks",
		   "tasks=v;tasks.=v;tasks/=v;tasks/B=v;tasks/a=v;tasks/b=v;tasks/b/1=v;tasks/c=v;"
		   "tasks0=v;");
	CHECK_SCAN(&f, "",
		   "task=v;tasks=v;tasks.=v;tasks/=v;tasks/B=v;tasks/a=v;tasks/b=v;"
		   "tasks/b/1=v;tasks/c=v;tasks0=v;zzz=v;");
	fx_teardown(&f);
}

TEST(scan_prefix_is_literal_not_a_pattern)
{
	struct fx f;
	fx_setup(&f);
	/* LIKE would read % and _ as wildcards and ignore case. */
	struct store_batch *b = store_batch_new();
	put_str(b, "a%b/1", "pct");
	put_str(b, "axb/1", "x");
	put_str(b, "a_b/1", "us");
	put_str(b, "A_B/1", "upper");
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "a%", "a%b/1=pct;");
	CHECK_SCAN(&f, "a_", "a_b/1=us;");
	CHECK_SCAN(&f, "A", "A_B/1=upper;");
	fx_teardown(&f);
}

TEST(delete_prefix_respects_bounds)
{
	struct fx f;
	fx_setup(&f);
	const char *keys[] = {
	    "events/t1/0000000001", "events/t1/0000000002", "events/t1", "events/t10/0000000001",
	    "events/t0/x",	    "events/t1.",	    "events/t2"};
	struct store_batch *b = store_batch_new();
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		put_str(b, keys[i], "e");
	CHECK(commit(&f, b) == 0);

	b = store_batch_new();
	store_batch_delete_prefix(b, "events/t1/");
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "events/",
		   "events/t0/x=e;events/t1=e;events/t1.=e;events/t10/0000000001=e;events/t2=e;");

	b = store_batch_new();
	store_batch_delete_prefix(b, "events/t1");
	store_batch_delete_prefix(b, "nothing/");
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "events/", "events/t0/x=e;events/t2=e;");
	fx_teardown(&f);
}

TEST(prefix_end_increments_the_last_byte)
{
	struct {
		const char *prefix, *end;
	} cases[] = {
	    {"ab", "ac"},     {"a/", "a0"}, {"a\xff", "b"}, {"a\xff\xff", "b"}, {"a\xfe", "a\xff"},
	    {"\x7f", "\x80"}, {"", NULL},   {"\xff", NULL}, {"\xff\xff", NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *end = store_prefix_end(cases[i].prefix);
		if (!cases[i].end)
			CHECK(end == NULL);
		else
			CHECK(end && !strcmp(end, cases[i].end));
		free(end);
	}
}

TEST(prefixes_ending_in_0xff)
{
	struct fx f;
	fx_setup(&f);
	const char *keys[] = {"a\xfe", "a\xff", "a\xff\xff", "a\xffz", "b", "\xff", "\xff\x01"};
	struct store_batch *b = store_batch_new();
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		put_str(b, keys[i], "v");
	CHECK(commit(&f, b) == 0);
	/* "z" (0x7a) sorts before 0xff. */
	CHECK_SCAN(&f, "a\xff", "a\xff=v;a\xffz=v;a\xff\xff=v;");
	CHECK_SCAN(&f, "\xff", "\xff=v;\xff\x01=v;");

	b = store_batch_new();
	store_batch_delete_prefix(b, "a\xff");
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "", "a\xfe=v;b=v;\xff=v;\xff\x01=v;");

	/* No upper bound at all: everything from the prefix on. */
	b = store_batch_new();
	store_batch_delete_prefix(b, "\xff");
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "", "a\xfe=v;b=v;");
	fx_teardown(&f);
}

TEST(delete_prefix_empty_deletes_everything)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	put_str(b, "a", "1");
	put_str(b, "m/n", "2");
	put_str(b, "\xff\xff", "3");
	CHECK(commit(&f, b) == 0);
	b = store_batch_new();
	store_batch_delete_prefix(b, "");
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "", "");
	fx_teardown(&f);
}

struct stop_at {
	int seen;
	int stop_after;
};

static int stop_cb(const char *key, const char *value, size_t len, void *ud)
{
	struct stop_at *s = ud;
	s->seen++;
	return s->seen == s->stop_after ? 42 : 0;
}

TEST(scan_stops_when_fn_returns_nonzero)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	for (int i = 0; i < 10; i++) {
		char key[32];
		snprintf(key, sizeof key, "k/%02d", i);
		put_str(b, key, "v");
	}
	CHECK(commit(&f, b) == 0);
	struct stop_at s = {.stop_after = 3};
	CHECK(store_scan(f.st, "k/", stop_cb, &s, &f.err) == 42);
	CHECK(s.seen == 3);
	/* The store is usable after an early stop, and the next scan starts
	 * from the beginning. */
	s = (struct stop_at){.stop_after = 100};
	CHECK(store_scan(f.st, "k/", stop_cb, &s, &f.err) == 0);
	CHECK(s.seen == 10);
	b = store_batch_new();
	put_str(b, "k/99", "v");
	CHECK(commit(&f, b) == 0);
	fx_teardown(&f);
}

struct nested {
	struct fx *f;
	struct sbuf out;
	int commit_result;
};

static int nested_cb(const char *key, const char *value, size_t len, void *ud)
{
	struct nested *n = ud;
	/* Loading a task then its events: a scan inside a scan. */
	char *prefix = xasprintf("events/%s/", key + strlen("tasks/"));
	sbuf_addf(&n->out, "%s[", key);
	store_scan(n->f->st, prefix, collect, &n->out, &n->f->err);
	sbuf_adds(&n->out, "]");
	free(prefix);
	struct store_batch *b = store_batch_new();
	put_str(b, "x", "y");
	n->commit_result = store_commit(n->f->st, b, &n->f->err);
	store_batch_free(b);
	return 0;
}

TEST(scan_may_nest_but_not_commit)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	put_str(b, "tasks/t1", "T1");
	put_str(b, "tasks/t2", "T2");
	put_str(b, "events/t1/1", "a");
	put_str(b, "events/t1/2", "b");
	put_str(b, "events/t2/1", "c");
	CHECK(commit(&f, b) == 0);
	struct nested n = {.f = &f};
	sbuf_init(&n.out);
	CHECK(store_scan(f.st, "tasks/", nested_cb, &n, &f.err) == 0);
	CHECK_STR(n.out.buf, "tasks/t1[events/t1/1=a;events/t1/2=b;]tasks/t2[events/t2/1=c;]");
	CHECK(n.commit_result == -1);
	CHECK_CONTAINS(f.err.msg, "store: cannot commit: a scan");
	sbuf_release(&n.out);
	CHECK_VALUE(&f, "x", "<absent>");
	fx_teardown(&f);
}

/* ---- batches ---- */

TEST(batch_ops_apply_in_order)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	put_str(b, "old/1", "o");
	put_str(b, "gone/1", "g");
	CHECK(commit(&f, b) == 0);

	b = store_batch_new();
	/* Keys out of order, the same key several times: the last op on a
	 * key wins whatever the backend does to go fast. */
	put_str(b, "z", "1");
	put_str(b, "a", "1");
	put_str(b, "z", "2");
	store_batch_delete(b, "a");
	put_str(b, "m", "1");
	store_batch_delete(b, "m");
	put_str(b, "m", "final");
	/* put then delete_prefix: gone; delete_prefix then put: kept. */
	put_str(b, "old/2", "x");
	store_batch_delete_prefix(b, "old/");
	put_str(b, "old/3", "kept");
	store_batch_delete_prefix(b, "gone/");
	put_str(b, "b", "1");
	put_str(b, "b", "2");
	CHECK(store_batch_count(b) == 13);
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "", "b=2;m=final;old/3=kept;z=2;");
	fx_teardown(&f);
}

TEST(batch_merge_appends_and_leaves_src_alone)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *dst = store_batch_new(), *src = store_batch_new();
	put_str(dst, "k", "from-dst");
	put_str(dst, "d", "dst-only");
	store_batch_delete(src, "d");
	put_str(src, "k", "from-src");
	put_str(src, "s", "src-only");
	store_batch_merge(dst, src);
	CHECK(store_batch_count(dst) == 5);
	CHECK(store_batch_count(src) == 3);
	/* src still applies on its own, in its own order. */
	CHECK(commit(&f, dst) == 0);
	CHECK_SCAN(&f, "", "k=from-src;s=src-only;");

	struct store_batch *again = store_batch_new();
	put_str(again, "k", "again");
	store_batch_merge(again, src); /* src is unchanged: k from src wins */
	CHECK(commit(&f, again) == 0);
	CHECK_VALUE(&f, "k", "from-src");

	/* Merging a batch into itself doubles it. */
	store_batch_merge(src, src);
	CHECK(store_batch_count(src) == 6);
	CHECK(commit(&f, src) == 0);

	/* Merging an empty batch changes nothing. */
	struct store_batch *empty = store_batch_new(), *one = store_batch_new();
	put_str(one, "e", "1");
	store_batch_merge(one, empty);
	CHECK(store_batch_count(one) == 1);
	store_batch_free(empty);
	store_batch_free(one);
	fx_teardown(&f);
}

TEST(batch_clear_and_empty_commit)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	CHECK(store_batch_count(b) == 0);
	CHECK(store_commit(f.st, b, &f.err) == 0); /* nothing to do */
	put_str(b, "a", "1");
	put_str(b, "b", "2");
	store_batch_clear(b);
	CHECK(store_batch_count(b) == 0);
	put_str(b, "c", "3");
	CHECK(store_batch_count(b) == 1);
	CHECK(commit(&f, b) == 0);
	CHECK_SCAN(&f, "", "c=3;");
	fx_teardown(&f);
}

TEST(large_batch_commits_whole)
{
	struct fx f;
	fx_setup(&f);
	enum { N = 20000 };
	struct store_batch *b = store_batch_new();
	char val[120];
	memset(val, 'v', sizeof val);
	for (int i = 0; i < N; i++) {
		char key[40];
		/* Scrambled order, as random task ids would be. */
		snprintf(key, sizeof key, "tasks/%08x", (unsigned)i * 2654435761u);
		store_batch_put(b, key, val, sizeof val);
	}
	CHECK(commit(&f, b) == 0);
	struct stop_at s = {.stop_after = -1};
	CHECK(store_scan(f.st, "tasks/", stop_cb, &s, &f.err) == 0);
	CHECK(s.seen == N);
	fx_teardown(&f);
}

/* ---- atomicity and durability ---- */

TEST(failed_commit_applies_nothing)
{
	struct fx f;
	fx_setup(&f);
	struct store_batch *b = store_batch_new();
	put_str(b, "c", "before");
	put_str(b, "keep/1", "before");
	CHECK(commit(&f, b) == 0);
	store_close(f.st);
	f.st = NULL;
	/* Make one write of the next batch fail, in the middle, from inside
	 * the database itself. */
	CHECK(raw_exec(f.path, "CREATE TRIGGER boom BEFORE INSERT ON kv WHEN NEW.key = 'boom' "
			       "BEGIN SELECT RAISE(ABORT, 'injected failure'); END") == SQLITE_OK);
	fx_reopen(&f);

	b = store_batch_new();
	put_str(b, "a", "new");
	store_batch_delete(b, "c");
	put_str(b, "boom", "x");
	put_str(b, "z", "new");
	store_batch_delete_prefix(b, "keep/");
	CHECK(store_commit(f.st, b, &f.err) == -1);
	store_batch_free(b);
	CHECK_CONTAINS(f.err.msg, "store: cannot commit: ");
	CHECK_CONTAINS(f.err.msg, "'boom'");
	CHECK_CONTAINS(f.err.msg, "injected failure");
	CHECK_SCAN(&f, "", "c=before;keep/1=before;");

	/* The store is still usable, and a reopen sees the same thing. */
	b = store_batch_new();
	put_str(b, "after", "ok");
	CHECK(commit(&f, b) == 0);
	fx_reopen(&f);
	CHECK_SCAN(&f, "", "after=ok;c=before;keep/1=before;");
	fx_teardown(&f);
}

TEST(committed_data_survives_close_and_reopen)
{
	struct fx f;
	fx_setup(&f);
	for (int round = 0; round < 3; round++) {
		struct store_batch *b = store_batch_new();
		for (int i = 0; i < 500; i++) {
			char key[40], val[40];
			snprintf(key, sizeof key, "tasks/r%d-%03d", round, i);
			snprintf(val, sizeof val, "{\"i\":%d}", i);
			put_str(b, key, val);
		}
		if (round == 2)
			store_batch_delete_prefix(b, "tasks/r0-");
		CHECK(commit(&f, b) == 0);
		fx_reopen(&f);
	}
	struct stop_at s = {.stop_after = -1};
	CHECK(store_scan(f.st, "tasks/", stop_cb, &s, &f.err) == 0);
	CHECK(s.seen == 1000);
	CHECK_VALUE(&f, "tasks/r0-007", "<absent>");
	CHECK_VALUE(&f, "tasks/r2-499", "{\"i\":499}");
	fx_teardown(&f);
}

TEST(committed_data_survives_a_crash)
{
	struct fx f;
	fx_setup(&f);
	store_close(f.st);
	f.st = NULL;
	int ready[2];
	CHECK(pipe(ready) == 0);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		struct berr err;
		struct store *st = store_open(f.path, &err);
		if (!st)
			_exit(2);
		struct store_batch *b = store_batch_new();
		put_str(b, "jobs/alice/prod/web", "acknowledged");
		if (store_commit(st, b, &err) < 0)
			_exit(3);
		/* Acknowledge, then wait to be killed without closing: no
		 * checkpoint, the data is only in the WAL. */
		if (write(ready[1], "k", 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c = 0;
	CHECK(read(ready[0], &c, 1) == 1 && c == 'k');
	close(ready[0]);
	kill(pid, SIGKILL);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	fx_reopen(&f);
	CHECK_VALUE(&f, "jobs/alice/prod/web", "acknowledged");
	fx_teardown(&f);
}

UNIT_MAIN(open_creates_wal_file_with_schema, open_sqlite_scheme_and_reopen,
	  open_unwritable_path_names_the_path, open_rejects_bad_locations,
	  open_rejects_a_file_that_is_not_a_database, open_refuses_a_newer_schema,
	  put_get_delete_round_trip, get_of_missing_key_returns_1, overwrite_keeps_the_last_value,
	  binary_values_keep_every_byte, binary_and_empty_values_through_scan,
	  empty_value_is_present_not_absent, large_values_round_trip,
	  scan_is_in_key_order_within_the_prefix, scan_prefix_is_literal_not_a_pattern,
	  delete_prefix_respects_bounds, prefix_end_increments_the_last_byte,
	  prefixes_ending_in_0xff, delete_prefix_empty_deletes_everything,
	  scan_stops_when_fn_returns_nonzero, scan_may_nest_but_not_commit,
	  batch_ops_apply_in_order, batch_merge_appends_and_leaves_src_alone,
	  batch_clear_and_empty_commit, large_batch_commits_whole, failed_commit_applies_nothing,
	  committed_data_survives_close_and_reopen, committed_data_survives_a_crash)
