/* test_store.c - the store API on both backends: round trips, batch
 * semantics, atomicity, durability across close and crash, and errors.
 *
 * STORE_TEST(name) tests run twice: name_sqlite on a file in its own mkdtemp
 * directory, name_etcd on a real etcd that this binary starts once (on
 * loopback ports, in a temp dir, stopped at exit) when the `etcd` binary is
 * installed (Debian etcd-server); without it the etcd variants are skipped.
 * Each etcd test works under its own key prefix (etcd://.../t-<random>) and
 * deletes it at the end. */
#include "store/store.h"
#include "store/store-internal.h"
#include "store/etcd_client.h"

#include "core/base64.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>

#include "unit.h"

/* ---- the test etcd ---- */

enum backend { BE_SQLITE, BE_ETCD };

/* Set in the parent before any test runs; the forked tests inherit them. */
static char etcd_addr[64];     /* "127.0.0.1:PORT" when running */
static char etcd_skip[256];    /* why the etcd tests are skipped */
static char etcd_failed[4096]; /* why etcd did not start */
static char etcd_dir[64];
static pid_t etcd_pid, etcd_owner;

static size_t raw_body(char *data, size_t size, size_t n, void *ud)
{
	sbuf_add(ud, data, size * n);
	return size * n;
}

/* A raw request to the test etcd, behind the store's back: the parsed
 * answer of POST body to path (GET when body is NULL), NULL on failure. */
static json_t *etcd_raw(const char *path, const char *body)
{
	CURL *c = curl_easy_init();
	struct sbuf out;
	sbuf_init(&out);
	char *url = xasprintf("http://%s%s", etcd_addr, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	json_t *j = NULL;
	if (rc == CURLE_OK && status == 200)
		j = json_loadb(out.buf, out.len, 0, NULL);
	sbuf_release(&out);
	free(url);
	curl_easy_cleanup(c);
	return j;
}

/* The current revision of the test etcd: every txn adds one. */
static int64_t etcd_revision(void)
{
	json_t *j = etcd_raw("/v3/kv/range", "{\"key\":\"AA==\",\"limit\":1,\"keys_only\":true}");
	const char *r =
	    json_string_value(json_object_get(json_object_get(j, "header"), "revision"));
	int64_t rev = -1;
	if (!r || parse_int64(r, &rev) < 0)
		rev = -1;
	json_decref(j);
	return rev;
}

static int free_port(int *fd)
{
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	if (*fd < 0 || bind(*fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(*fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	return ntohs(sa.sin_port);
}

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char *copy = xstrdup(path ? path : "/usr/bin:/bin"), *save = NULL;
	bool found = false;
	for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *p = xasprintf("%s/%s", d, prog);
		found = access(p, X_OK) == 0;
		free(p);
	}
	free(copy);
	return found;
}

static void etcd_log_tail(void)
{
	char *log = xasprintf("%s/etcd.log", etcd_dir), *text = NULL;
	size_t len = 0;
	if (file_read_all(log, &text, &len) == 0) {
		const char *tail = len > 2000 ? text + len - 2000 : text;
		snprintf(etcd_failed + strlen(etcd_failed),
			 sizeof etcd_failed - strlen(etcd_failed), "; its log ends with:\n%s",
			 tail);
	}
	free(text);
	free(log);
}

/* Start one etcd for the whole run, unless UNIT_ONLY names a test that does
 * not need it. */
__attribute__((constructor)) static void etcd_start(void)
{
	const char *only = getenv("UNIT_ONLY");
	if (only && !strstr(only, "etcd"))
		return;
	if (!in_path("etcd")) {
		snprintf(etcd_skip, sizeof etcd_skip,
			 "no etcd binary in PATH (install the Debian package etcd-server)");
		return;
	}
	curl_global_init(CURL_GLOBAL_ALL);
	strcpy(etcd_dir, "/tmp/berth-test-etcd.XXXXXX");
	if (!mkdtemp(etcd_dir)) {
		snprintf(etcd_failed, sizeof etcd_failed, "mkdtemp: %s", strerror(errno));
		return;
	}
	int fd1, fd2;
	int client = free_port(&fd1), peer = free_port(&fd2);
	close(fd1);
	close(fd2);
	if (client < 0 || peer < 0) {
		snprintf(etcd_failed, sizeof etcd_failed, "no free loopback port");
		return;
	}
	char *data = xasprintf("%s/data", etcd_dir), *log = xasprintf("%s/etcd.log", etcd_dir);
	char *curl = xasprintf("http://127.0.0.1:%d", client);
	char *purl = xasprintf("http://127.0.0.1:%d", peer);
	char *cluster = xasprintf("default=%s", purl);
	fflush(NULL);
	etcd_owner = getpid();
	etcd_pid = fork();
	if (etcd_pid == 0) {
		/* Dies with this binary, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("etcd", "etcd", "--name", "default", "--data-dir", data,
		       "--listen-client-urls", curl, "--advertise-client-urls", curl,
		       "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
		       "--initial-cluster", cluster, "--logger", "zap", "--log-level", "warn",
		       (char *)NULL);
		_exit(127);
	}
	snprintf(etcd_addr, sizeof etcd_addr, "127.0.0.1:%d", client);
	bool ready = false;
	for (int i = 0; i < 200 && !ready; i++) {
		int st;
		if (waitpid(etcd_pid, &st, WNOHANG) == etcd_pid) {
			etcd_pid = 0;
			break;
		}
		json_t *j = etcd_raw("/health", NULL);
		ready = json_is_string(json_object_get(j, "health")) &&
			!strcmp(json_string_value(json_object_get(j, "health")), "true");
		json_decref(j);
		if (!ready)
			usleep(100 * 1000);
	}
	if (!ready) {
		snprintf(etcd_failed, sizeof etcd_failed,
			 "etcd at %s did not become healthy in 20 s", etcd_addr);
		etcd_log_tail();
		etcd_addr[0] = 0;
	}
	free(data);
	free(log);
	free(curl);
	free(purl);
	free(cluster);
}

__attribute__((destructor)) static void etcd_stop(void)
{
	if (getpid() != etcd_owner)
		return;
	if (etcd_pid > 0) {
		kill(etcd_pid, SIGTERM);
		int st;
		waitpid(etcd_pid, &st, 0);
		etcd_pid = 0;
	}
	if (etcd_dir[0])
		rm_rf(etcd_dir);
}

/* Skip (no etcd) or fail (etcd did not start) an etcd test. */
static void need_etcd(void)
{
	if (etcd_skip[0])
		SKIP(etcd_skip);
	if (!etcd_addr[0]) {
		fprintf(stderr, "    %s\n", etcd_failed[0] ? etcd_failed : "etcd did not start");
		_exit(1);
	}
}

/* A test body run on both backends. */
#define STORE_TEST(name)                                                                           \
	static void name(enum backend be);                                                         \
	TEST(name##_sqlite)                                                                        \
	{                                                                                          \
		name(BE_SQLITE);                                                                   \
	}                                                                                          \
	TEST(name##_etcd)                                                                          \
	{                                                                                          \
		name(BE_ETCD);                                                                     \
	}                                                                                          \
	static void name(enum backend be)
#define BOTH(name) name##_sqlite, name##_etcd

/* ---- fixtures ---- */

struct fx {
	enum backend be;
	char dir[64];
	char *path;  /* the store's location */
	char ns[32]; /* etcd: the key prefix of this test, "t-<hex>/" */
	struct store *st;
	struct berr err;
};

static void fx_open(struct fx *f)
{
	f->st = store_open(f->path, &f->err);
	if (!f->st) {
		fprintf(stderr, "    store_open: %s\n", f->err.msg);
		exit(1);
	}
}

static void fx_setup(struct fx *f, enum backend be)
{
	memset(f, 0, sizeof *f);
	f->be = be;
	if (be == BE_ETCD) {
		need_etcd();
		char hex[11];
		random_hex(hex, 10);
		snprintf(f->ns, sizeof f->ns, "t-%s/", hex);
		f->path = xasprintf("etcd://%s/%s", etcd_addr, f->ns);
		fx_open(f);
		return;
	}
	strcpy(f->dir, "/tmp/berth-test-store.XXXXXX");
	if (!mkdtemp(f->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	f->path = xasprintf("%s/state.db", f->dir);
	fx_open(f);
}

static void fx_reopen(struct fx *f)
{
	store_close(f->st);
	fx_open(f);
}

static void fx_teardown(struct fx *f)
{
	if (f->be == BE_ETCD) {
		/* Leave the shared etcd as it was found. */
		if (!f->st)
			f->st = store_open(f->path, &f->err);
		struct store_batch *b = store_batch_new();
		store_batch_delete_prefix(b, "");
		if (f->st && store_commit(f->st, b, &f->err) < 0)
			fprintf(stderr, "    teardown: %s\n", f->err.msg);
		store_batch_free(b);
	}
	store_close(f->st);
	if (f->dir[0])
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
	fx_setup(&f, BE_SQLITE);
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
	fx_setup(&f, BE_SQLITE);
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
	fx_setup(&f, BE_SQLITE);
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

STORE_TEST(put_get_delete_round_trip)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(get_of_missing_key_returns_1)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(overwrite_keeps_the_last_value)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(binary_values_keep_every_byte)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(binary_and_empty_values_through_scan)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(empty_value_is_present_not_absent)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(large_values_round_trip)
{
	struct fx f;
	fx_setup(&f, be);
	/* SQLite: 8 MiB, many overflow pages. etcd refuses a request over
	 * --max-request-bytes (1.5 MiB by default): 1 MiB, and 8 MiB is
	 * refused up front with the limit in the message. */
	size_t n = be == BE_ETCD ? 1u << 20 : 8u << 20;
	char *big = xmalloc(8u << 20);
	for (size_t i = 0; i < 8u << 20; i++)
		big[i] = (char)(i * 7 + (i >> 13));
	struct store_batch *b;
	if (be == BE_ETCD) {
		b = store_batch_new();
		put_str(b, "big/small", "s");
		store_batch_put(b, "big/huge", big, 8u << 20);
		CHECK(store_commit(f.st, b, &f.err) == -1);
		store_batch_free(b);
		CHECK_CONTAINS(f.err.msg, "store: cannot commit: put 'big/huge' is 8388616 bytes");
		CHECK_CONTAINS(f.err.msg, "1572864 bytes: etcd's --max-request-bytes");
		CHECK_SCAN(&f, "big/", "");
	}
	b = store_batch_new();
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

STORE_TEST(scan_is_in_key_order_within_the_prefix)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(scan_prefix_is_literal_not_a_pattern)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(delete_prefix_respects_bounds)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(prefixes_ending_in_0xff)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(delete_prefix_empty_deletes_everything)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(scan_stops_when_fn_returns_nonzero)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(scan_may_nest_but_not_commit)
{
	struct fx f;
	fx_setup(&f, be);
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

/* Runs of puts go several rows to a statement (SQLite): repeats of a key,
 * deletes and values of every size in between keep batch order. */
STORE_TEST(many_puts_with_repeats_keep_the_last)
{
	struct fx f;
	fx_setup(&f, be);
	struct store_batch *b = store_batch_new();
	char key[32], val[64], want[300][64];
	memset(want, 0, sizeof want);
	for (int i = 0; i < 1000; i++) {
		int k = (i * 7919) % 300;
		snprintf(key, sizeof key, "k/%03d", k);
		if (i % 97 == 5) {
			store_batch_delete(b, key);
			want[k][0] = 0;
			continue;
		}
		snprintf(val, sizeof val, "v%d%.*s", i, i % 40,
			 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		put_str(b, key, val);
		snprintf(want[k], sizeof want[k], "%s", val);
	}
	CHECK(commit(&f, b) == 0);
	int bad = 0;
	for (int k = 0; k < 300; k++) {
		snprintf(key, sizeof key, "k/%03d", k);
		char *got = get_str(&f, key);
		if (strcmp(got, want[k][0] ? want[k] : "<absent>"))
			bad++;
		free(got);
	}
	CHECK(bad == 0);
	fx_teardown(&f);
}

STORE_TEST(batch_ops_apply_in_order)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(batch_merge_appends_and_leaves_src_alone)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(batch_clear_and_empty_commit)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(large_batch_commits_whole)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(failed_commit_applies_nothing)
{
	struct fx f;
	fx_setup(&f, be);
	struct store_batch *b = store_batch_new();
	put_str(b, "c", "before");
	put_str(b, "keep/1", "before");
	CHECK(commit(&f, b) == 0);
	store_close(f.st);
	f.st = NULL;
	size_t boom_len = 1;
	if (be == BE_SQLITE) {
		/* Make one write of the next batch fail, in the middle, from
		 * inside the database itself. */
		CHECK(raw_exec(f.path,
			       "CREATE TRIGGER boom BEFORE INSERT ON kv WHEN NEW.key = 'boom' "
			       "BEGIN SELECT RAISE(ABORT, 'injected failure'); END") == SQLITE_OK);
	} else {
		/* Tell the store that etcd takes 8 MiB requests: the batch goes
		 * out as one txn with a 1.8 MiB value in the middle, and etcd
		 * (at its default 1.5 MiB) refuses the whole txn. */
		char *loc = xasprintf("%s?max-request-bytes=8388608", f.path);
		free(f.path);
		f.path = loc;
		boom_len = 1800u << 10;
	}
	fx_reopen(&f);

	char *boom = xmalloc(boom_len);
	memset(boom, 'x', boom_len);
	b = store_batch_new();
	put_str(b, "a", "new");
	store_batch_delete(b, "c");
	store_batch_put(b, "boom", boom, boom_len);
	put_str(b, "z", "new");
	store_batch_delete_prefix(b, "keep/");
	CHECK(store_commit(f.st, b, &f.err) == -1);
	store_batch_free(b);
	free(boom);
	CHECK_CONTAINS(f.err.msg, "store: cannot commit: ");
	if (be == BE_SQLITE) {
		CHECK_CONTAINS(f.err.msg, "'boom'");
		CHECK_CONTAINS(f.err.msg, "injected failure");
	} else {
		CHECK_CONTAINS(f.err.msg, "etcd 127.0.0.1:");
		CHECK_CONTAINS(f.err.msg, "request is too large");
	}
	CHECK_SCAN(&f, "", "c=before;keep/1=before;");

	/* The store is still usable, and a reopen sees the same thing. */
	b = store_batch_new();
	put_str(b, "after", "ok");
	CHECK(commit(&f, b) == 0);
	fx_reopen(&f);
	CHECK_SCAN(&f, "", "after=ok;c=before;keep/1=before;");
	fx_teardown(&f);
}

STORE_TEST(committed_data_survives_close_and_reopen)
{
	struct fx f;
	fx_setup(&f, be);
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

STORE_TEST(committed_data_survives_a_crash)
{
	struct fx f;
	fx_setup(&f, be);
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

/* ---- etcd only ---- */

TEST(etcd_open_errors_name_the_endpoints)
{
	struct berr err = {0};
	/* Nothing listens on port 1. */
	CHECK(store_open("etcd://127.0.0.1:1", &err) == NULL);
	CHECK_CONTAINS(err.msg, "store: cannot open 'etcd://127.0.0.1:1': etcd 127.0.0.1:1: ");
	CHECK_CONTAINS(err.msg, "couldn't connect to server");

	berr_clear(&err);
	CHECK(store_open("etcd://127.0.0.1:1, 127.0.0.1:2", &err) == NULL);
	CHECK_CONTAINS(err.msg, "etcd 127.0.0.1:1: couldn't connect to server; "
				"etcd 127.0.0.1:2: couldn't connect to server");

	const char *bad[][2] = {
	    {"etcd://", "store: no etcd endpoint in 'etcd://'"},
	    {"etcd:///prefix", "store: no etcd endpoint in 'etcd:///prefix'"},
	    {"etcd://a,,b", "store: bad etcd location 'etcd://a,,b'"},
	    {"etcd://a b:1", "store: bad etcd location"},
	    {"etcd://user@h:1", "store: bad etcd location"},
	    {"etcd://h:1?max-txn-ops=x", "store: bad option 'max-txn-ops=x'"},
	    {"etcd://h:1?max-txn-ops=0", "store: bad option 'max-txn-ops=0'"},
	    {"etcd://h:1?max-request-bytes=10", "max-request-bytes 10 is too small"},
	    {"etcd://h:1/p?colour=red", "store: unknown option 'colour'"},
	    {"etcd://h:1?cacert=", "store: bad option 'cacert=' in 'etcd://h:1?cacert=' (expected "
				   "cacert=FILE)"},
	    {"etcd://h:1?cert=/c.pem", "a client certificate needs its key: give both cert and key "
				       "(--etcd-cert and --etcd-key)"},
	    {"etcd://h:1?key=/k.pem", "a client certificate needs its key"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		berr_clear(&err);
		CHECK(store_open(bad[i][0], &err) == NULL);
		CHECK_CONTAINS(err.msg, bad[i][1]);
	}
}

/* TLS options make https endpoints with the files given; a member that
 * speaks plain HTTP then fails the handshake, and the message says so. */
TEST(etcd_tls_options_make_https_endpoints)
{
	struct berr err = {0};
	struct etcd_client *c = etcd_client_new(
	    "etcd://127.0.0.1:1,h2/p?cacert=/ca.pem&cert=/c.pem&key=/k.pem&max-txn-ops=64", &err);
	CHECK(c != NULL);
	if (!c)
		return;
	const struct etcd_location *loc = etcd_client_location(c);
	CHECK(loc->n_endpoints == 2);
	CHECK_STR(loc->urls[0], "https://127.0.0.1:1");
	CHECK_STR(loc->urls[1], "https://h2:2379");
	CHECK_STR(loc->cacert, "/ca.pem");
	CHECK_STR(loc->cert, "/c.pem");
	CHECK_STR(loc->key, "/k.pem");
	CHECK_STR(loc->prefix, "p/");
	CHECK(loc->max_txn_ops == 64);
	etcd_client_free(c);
	c = etcd_client_new("etcd://h:1", &err);
	CHECK(c && !strcmp(etcd_client_location(c)->urls[0], "http://h:1"));
	etcd_client_free(c);
}

TEST(etcd_tries_endpoints_in_order)
{
	need_etcd();
	struct berr err = {0};
	/* A dead endpoint before and after the live one. */
	const char *fmt[] = {"etcd://127.0.0.1:1,%s/t-order/", "etcd://%s,127.0.0.1:1/t-order/"};
	for (size_t i = 0; i < ARRAY_SIZE(fmt); i++) {
		char *loc = xasprintf(fmt[i], etcd_addr);
		struct store *st = store_open(loc, &err);
		CHECK(st != NULL);
		if (!st) {
			fprintf(stderr, "    %s\n", err.msg);
			free(loc);
			continue;
		}
		CHECK_STR(store_backend_name(st), "etcd");
		struct store_batch *b = store_batch_new();
		store_batch_put(b, "k", "v", 1);
		CHECK(store_commit(st, b, &err) == 0);
		char *v = NULL;
		CHECK(store_get(st, "k", &v, NULL, &err) == 0);
		CHECK_STR(v, "v");
		free(v);
		store_batch_clear(b);
		store_batch_delete_prefix(b, "");
		CHECK(store_commit(st, b, &err) == 0);
		store_batch_free(b);
		store_close(st);
		free(loc);
	}
}

static int count_cb(const char *key, const char *value, size_t len, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

TEST(etcd_key_prefixes_keep_stores_apart)
{
	need_etcd();
	/* Prefixes of every length mod 3 (the base64 of prefix + key is built
	 * without joining them), written with and without the final '/'. */
	const char *names[] = {"a", "ab/", "abc", ""};
	struct store *st[4];
	struct berr err = {0};
	for (size_t i = 0; i < 4; i++) {
		char *loc = names[i][0] ? xasprintf("etcd://%s/%s", etcd_addr, names[i])
					: xasprintf("etcd://%s", etcd_addr);
		st[i] = store_open(loc, &err);
		free(loc);
		if (!st[i]) {
			fprintf(stderr, "    %s\n", err.msg);
			exit(1);
		}
	}
	/* Without a prefix the store sees the whole etcd: start empty. */
	struct store_batch *b = store_batch_new();
	store_batch_delete_prefix(b, "");
	CHECK(store_commit(st[3], b, &err) == 0);
	const char *keys[] = {"k", "kk", "kkk", "kkkk", "\xff"};
	for (size_t i = 0; i < 3; i++) {
		store_batch_clear(b);
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
			store_batch_put(b, keys[k], names[i], strlen(names[i]));
		CHECK(store_commit(st[i], b, &err) == 0);
	}
	for (size_t i = 0; i < 3; i++) {
		struct sbuf sb;
		sbuf_init(&sb);
		CHECK(store_scan(st[i], "", collect, &sb, &err) == 0);
		char *want = xasprintf("k=%s;kk=%s;kkk=%s;kkkk=%s;\xff=%s;", names[i], names[i],
				       names[i], names[i], names[i]);
		CHECK_STR(sb.buf, want);
		free(want);
		sbuf_release(&sb);
		char *v = NULL;
		size_t len = 0;
		CHECK(store_get(st[i], "kkk", &v, &len, &err) == 0);
		CHECK(v && len == strlen(names[i]) && !memcmp(v, names[i], len));
		free(v);
	}
	/* The bare store sees everything, under the prefixes. */
	struct sbuf sb;
	sbuf_init(&sb);
	CHECK(store_scan(st[3], "ab/", collect, &sb, &err) == 0);
	CHECK_STR(sb.buf, "ab/k=ab/;ab/kk=ab/;ab/kkk=ab/;ab/kkkk=ab/;ab/\xff=ab/;");
	sbuf_release(&sb);
	CHECK(store_get(st[3], "", NULL, NULL, &err) == 1); /* etcd has no empty key */
	/* Deleting everything in one prefixed store leaves the others. */
	store_batch_clear(b);
	store_batch_delete_prefix(b, "");
	CHECK(store_commit(st[1], b, &err) == 0);
	int n = 0;
	CHECK(store_scan(st[3], "", count_cb, &n, &err) == 0);
	CHECK(n == 10);
	/* An empty key is refused before anything is written. */
	store_batch_clear(b);
	store_batch_put(b, "x", "1", 1);
	store_batch_put(b, "", "1", 1);
	CHECK(store_commit(st[3], b, &err) == -1);
	CHECK_STR(err.msg, "store: cannot commit: put '': etcd has no empty key");
	CHECK(store_get(st[3], "x", NULL, NULL, &err) == 1);
	/* ...but under a prefix the empty key is just the prefix. */
	CHECK(store_commit(st[0], b, &err) == 0);
	CHECK(store_get(st[0], "", NULL, NULL, &err) == 0);
	/* delete_prefix "" without a prefix: the whole of etcd. */
	store_batch_clear(b);
	store_batch_delete_prefix(b, "");
	CHECK(store_commit(st[3], b, &err) == 0);
	n = 0;
	CHECK(store_scan(st[3], "", count_cb, &n, &err) == 0);
	CHECK(n == 0);
	store_batch_free(b);
	for (size_t i = 0; i < 4; i++)
		store_close(st[i]);
}

TEST(etcd_1000_puts_in_one_batch_are_split_into_txns)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	struct store_batch *b = store_batch_new();
	for (int i = 0; i < 1000; i++) {
		char key[32], val[32];
		snprintf(key, sizeof key, "tasks/%08x", (unsigned)i * 2654435761u);
		snprintf(val, sizeof val, "{\"i\":%d}", i);
		put_str(b, key, val);
	}
	int64_t before = etcd_revision();
	CHECK(commit(&f, b) == 0);
	/* etcd's default --max-txn-ops is 128: 8 txns, one revision each. */
	CHECK(etcd_revision() - before == 8);
	int n = 0;
	CHECK(store_scan(f.st, "tasks/", count_cb, &n, &f.err) == 0);
	CHECK(n == 1000);
	CHECK_VALUE(&f, "tasks/00000000", "{\"i\":0}");

	/* delete_prefix then 300 puts under it: the range is cut around the
	 * puts (301 ranges + 300 puts = 601 ops, 5 txns) and they all land. */
	b = store_batch_new();
	store_batch_delete_prefix(b, "tasks/");
	for (int i = 0; i < 300; i++) {
		char key[32];
		snprintf(key, sizeof key, "tasks/%08x", (unsigned)i * 2654435761u);
		put_str(b, key, "again");
	}
	before = etcd_revision();
	CHECK(commit(&f, b) == 0);
	CHECK(etcd_revision() - before == 5);
	n = 0;
	CHECK(store_scan(f.st, "tasks/", count_cb, &n, &f.err) == 0);
	CHECK(n == 300);
	CHECK_VALUE(&f, "tasks/00000000", "again");
	fx_teardown(&f);
}

TEST(etcd_batches_are_split_by_request_size)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	/* Values sized so that 128 puts come within a few KiB of etcd's 1.5
	 * MiB: if the size estimate were short, etcd would refuse a txn. */
	size_t vlen = (1536 * 1024 - 1024) / 128 - 32 - 24 - strlen(f.ns) - 2;
	char *val = xmalloc(vlen);
	memset(val, 'v', vlen);
	struct store_batch *b = store_batch_new();
	for (int i = 0; i < 300; i++) {
		char key[32];
		snprintf(key, sizeof key, "n/%020d", i);
		store_batch_put(b, key, val, vlen);
	}
	int64_t before = etcd_revision();
	CHECK(commit(&f, b) == 0);
	CHECK(etcd_revision() - before == 3);
	/* Large values: 20 of 600 KiB, two per txn. */
	free(val);
	vlen = 600 << 10;
	val = xmalloc(vlen);
	memset(val, 'w', vlen);
	b = store_batch_new();
	for (int i = 0; i < 20; i++) {
		char key[32];
		snprintf(key, sizeof key, "w/%02d", i);
		store_batch_put(b, key, val, vlen);
	}
	before = etcd_revision();
	CHECK(commit(&f, b) == 0);
	CHECK(etcd_revision() - before == 10);
	int n = 0;
	CHECK(store_scan(f.st, "", count_cb, &n, &f.err) == 0);
	CHECK(n == 320);
	free(val);
	fx_teardown(&f);
}

struct snap {
	struct fx *f;
	int seen;
	bool saw_deleted, saw_added;
	char last[64];
	bool in_order;
};

static int snap_cb(const char *key, const char *value, size_t len, void *ud)
{
	struct snap *s = ud;
	if (s->seen && strcmp(s->last, key) >= 0)
		s->in_order = false;
	snprintf(s->last, sizeof s->last, "%s", key);
	if (!strcmp(key, "s/04000"))
		s->saw_deleted = true;
	if (!strcmp(key, "s/zzz"))
		s->saw_added = true;
	if (++s->seen == 1500) {
		/* Another writer, mid-scan: the scan keeps its snapshot. */
		char *k1 = xasprintf("%ss/04000", s->f->ns), *k2 = xasprintf("%ss/zzz", s->f->ns);
		char *b1 = base64_encode(k1, strlen(k1)), *b2 = base64_encode(k2, strlen(k2));
		char *body = xasprintf("{\"success\":[{\"request_delete_range\":{\"key\":\"%s\"}},"
				       "{\"request_put\":{\"key\":\"%s\",\"value\":\"eA==\"}}]}",
				       b1, b2);
		json_t *j = etcd_raw("/v3/kv/txn", body);
		if (!j)
			fprintf(stderr, "    raw txn failed\n");
		json_decref(j);
		free(body);
		free(b1);
		free(b2);
		free(k1);
		free(k2);
	}
	return 0;
}

TEST(etcd_scan_of_5000_keys_pages_through_one_snapshot)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	struct store_batch *b = store_batch_new();
	for (int i = 4999; i >= 0; i--) {
		char key[32];
		snprintf(key, sizeof key, "s/%05d", i);
		put_str(b, key, "v");
	}
	put_str(b, "s", "before the prefix");
	put_str(b, "s0", "after the prefix");
	CHECK(commit(&f, b) == 0);
	struct snap s = {.f = &f, .in_order = true};
	CHECK(store_scan(f.st, "s/", snap_cb, &s, &f.err) == 0);
	CHECK(s.seen == 5000);
	CHECK(s.in_order);
	CHECK(s.saw_deleted && !s.saw_added);
	CHECK_STR(s.last, "s/04999");
	/* A new scan sees the other writer's txn. */
	s = (struct snap){.f = &f, .in_order = true, .seen = 2000};
	CHECK(store_scan(f.st, "s/", snap_cb, &s, &f.err) == 0);
	CHECK(s.seen == 2000 + 5000);
	CHECK(!s.saw_deleted && s.saw_added);
	/* Stopping on a later page. */
	struct stop_at st = {.stop_after = 4321};
	CHECK(store_scan(f.st, "s/", stop_cb, &st, &f.err) == 42);
	CHECK(st.seen == 4321);
	fx_teardown(&f);
}

/* A small deterministic generator, so that a failure replays. */
static uint32_t rnd(uint64_t *state)
{
	*state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(*state >> 33);
}

TEST(etcd_matches_sqlite_on_random_batches)
{
	/* The etcd backend rewrites a batch into commuting ops; applying
	 * random batches to both backends must give the same states. Tiny
	 * txns (max-txn-ops=5) make most batches split. */
	struct fx sq, et;
	fx_setup(&sq, BE_SQLITE);
	fx_setup(&et, BE_ETCD);
	store_close(et.st);
	char *loc = xasprintf("%s?max-txn-ops=5", et.path);
	free(et.path);
	et.path = loc;
	fx_open(&et);
	const char *keys[] = {"a",   "a/",  "a/b", "a/b/c", "a/c",	 "ab",	 "b",	     "b/x",
			      "b/y", "b/z", "c",   "a\xff", "a\xff\x01", "\xff", "\xff\xff", "a0"};
	const char *prefixes[] = {"", "a", "a/", "a/b", "b/", "b/x", "c", "a\xff", "\xff", "zz"};
	uint64_t seed = 42;
	for (int round = 0; round < 120; round++) {
		struct store_batch *b = store_batch_new();
		int n = 1 + (int)(rnd(&seed) % 30);
		for (int i = 0; i < n; i++) {
			uint32_t r = rnd(&seed) % 10;
			const char *k = keys[rnd(&seed) % ARRAY_SIZE(keys)];
			if (r < 6) {
				char val[16];
				snprintf(val, sizeof val, "%d.%d", round, i);
				put_str(b, k, val);
			} else if (r < 8) {
				store_batch_delete(b, k);
			} else {
				store_batch_delete_prefix(
				    b, prefixes[rnd(&seed) % ARRAY_SIZE(prefixes)]);
			}
		}
		struct store_batch *copy = store_batch_new();
		store_batch_merge(copy, b);
		CHECK(commit(&sq, b) == 0);
		CHECK(commit(&et, copy) == 0);
		char *want = scan_str(&sq, ""), *got = scan_str(&et, "");
		if (strcmp(want, got)) {
			fprintf(stderr, "    round %d: sqlite '%s', etcd '%s'\n", round, want, got);
			unit_failures++;
			free(want);
			free(got);
			break;
		}
		free(want);
		free(got);
	}
	fx_teardown(&sq);
	fx_teardown(&et);
}

/* HA fencing: with a guard set, commits apply only while the guard key holds
 * this server's value; once another value is there, nothing more lands. */
TEST(etcd_guarded_commits_stop_when_the_guard_changes)
{
	need_etcd();
	struct berr err = {0};
	char *loc = xasprintf("etcd://%s/fence%d", etcd_addr, (int)getpid());
	struct store *st = store_open(loc, &err);
	free(loc);
	CHECK(st != NULL);
	if (!st)
		return;
	struct store_batch *b = store_batch_new();
	store_batch_put(b, "meta/leader", "http://me", 9);
	CHECK(store_commit(st, b, &err) == 0);
	store_batch_free(b);
	CHECK(store_set_guard(st, "meta/leader", "http://me", &err) == 0);
	b = store_batch_new();
	store_batch_put(b, "jobs/a", "1", 1);
	CHECK(store_commit(st, b, &err) == 0);
	store_batch_free(b);
	/* Another server takes over (here: we write its name ourselves). */
	b = store_batch_new();
	store_batch_put(b, "meta/leader", "http://other", 12);
	CHECK(store_commit(st, b, &err) == 0);
	store_batch_free(b);
	b = store_batch_new();
	store_batch_put(b, "jobs/b", "2", 1);
	CHECK(store_commit(st, b, &err) < 0);
	CHECK_CONTAINS(err.msg, "fenced");
	store_batch_free(b);
	char *v = NULL;
	size_t len;
	CHECK(store_get(st, "jobs/b", &v, &len, &err) == 1); /* not written */
	free(v);
	store_close(st);
}

/* SQLite has one server: a guard changes nothing. */
TEST(sqlite_guard_is_a_no_op)
{
	char dir[] = "/tmp/berth-test-guard.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *loc = xasprintf("sqlite:%s/state.db", dir);
	struct berr err = {0};
	struct store *st = store_open(loc, &err);
	free(loc);
	CHECK(st && store_set_guard(st, "meta/leader", "x", &err) == 0);
	struct store_batch *b = store_batch_new();
	store_batch_put(b, "jobs/a", "1", 1);
	CHECK(store_commit(st, b, &err) == 0);
	store_batch_free(b);
	store_close(st);
	rm_rf(dir);
}

/* ---- following (store_follow) ----
 * A follower runs store_follow on a thread with a store of its own and keeps
 * a replica (a sorted array) that the tests compare with store_scan. */

struct rentry {
	char *key;
	char *value;
	size_t len;
};

struct follower {
	pthread_mutex_t mu;
	struct rentry *v; /* the replica, sorted by key */
	size_t n, cap;
	int resets, synced, pages; /* pages: CHANGES calls of the current copy */
	size_t max_page;
	bool in_copy;
	int64_t rev; /* the last revision delivered */
	int64_t synced_rev;
	char bad[256]; /* the first thing fn saw that it should not have */
	int answer;    /* what fn returns for changes after SYNCED */
	/* the thread */
	struct store *st;
	_Atomic bool stop, done;
	int result;
	struct berr err;
	pthread_t th;
};

static size_t replica_find(struct follower *fl, const char *key, bool *found)
{
	size_t lo = 0, hi = fl->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(fl->v[mid].key, key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static void replica_apply(struct follower *fl, const struct store_change *c)
{
	bool found;
	size_t i = replica_find(fl, c->key, &found);
	if (!c->value) {
		if (found) {
			free(fl->v[i].key);
			free(fl->v[i].value);
			memmove(&fl->v[i], &fl->v[i + 1], (fl->n - i - 1) * sizeof *fl->v);
			fl->n--;
		}
		return;
	}
	char *value = xmalloc(c->len + 1);
	memcpy(value, c->value, c->len + 1);
	if (found) {
		free(fl->v[i].value);
	} else {
		if (fl->n == fl->cap) {
			fl->cap = fl->cap ? fl->cap * 2 : 64;
			fl->v = xrealloc(fl->v, fl->cap * sizeof *fl->v);
		}
		memmove(&fl->v[i + 1], &fl->v[i], (fl->n - i) * sizeof *fl->v);
		fl->v[i].key = xstrdup(c->key);
		fl->n++;
	}
	fl->v[i].value = value;
	fl->v[i].len = c->len;
}

static void replica_clear(struct follower *fl)
{
	for (size_t i = 0; i < fl->n; i++) {
		free(fl->v[i].key);
		free(fl->v[i].value);
	}
	fl->n = 0;
}

static void follower_bad(struct follower *fl, const char *what)
{
	if (!fl->bad[0])
		snprintf(fl->bad, sizeof fl->bad, "%s", what);
}

static int follow_cb(void *ud, enum store_follow_event ev, const struct store_change *ch, size_t n,
		     int64_t rev)
{
	struct follower *fl = ud;
	int r = 0;
	pthread_mutex_lock(&fl->mu);
	switch (ev) {
	case STORE_FOLLOW_RESET:
		replica_clear(fl);
		fl->resets++;
		fl->pages = 0;
		fl->in_copy = true;
		break;
	case STORE_FOLLOW_CHANGES:
		if (!fl->resets)
			follower_bad(fl, "changes before the first RESET");
		if (n == 0)
			follower_bad(fl, "a call with no changes");
		if (rev < fl->rev)
			follower_bad(fl, "the revision went down");
		if (fl->in_copy) {
			fl->pages++;
			if (n > fl->max_page)
				fl->max_page = n;
		}
		for (size_t i = 0; i < n; i++) {
			if (fl->in_copy && !ch[i].value)
				follower_bad(fl, "a NULL value in the copy");
			if (ch[i].value && ch[i].value[ch[i].len])
				follower_bad(fl, "a value not NUL-terminated");
			replica_apply(fl, &ch[i]);
		}
		fl->rev = rev;
		if (!fl->in_copy)
			r = fl->answer;
		break;
	case STORE_FOLLOW_SYNCED:
		if (!fl->in_copy)
			follower_bad(fl, "SYNCED without a copy");
		if (rev < fl->rev)
			follower_bad(fl, "the revision went down at SYNCED");
		fl->in_copy = false;
		fl->synced++;
		fl->synced_rev = fl->rev = rev;
		break;
	}
	pthread_mutex_unlock(&fl->mu);
	return r;
}

static void *follow_thread(void *arg)
{
	struct follower *fl = arg;
	fl->result = store_follow(fl->st, follow_cb, fl, &fl->stop, &fl->err);
	fl->done = true;
	return NULL;
}

static void follower_start(struct follower *fl, const char *location, int answer)
{
	memset(fl, 0, sizeof *fl);
	pthread_mutex_init(&fl->mu, NULL);
	fl->answer = answer;
	fl->st = store_open(location, &fl->err);
	if (!fl->st) {
		fprintf(stderr, "    follower: store_open: %s\n", fl->err.msg);
		exit(1);
	}
	pthread_create(&fl->th, NULL, follow_thread, fl);
}

/* Wait (5 s at most) until the follower has made `synced` copies and
 * delivered revision rev. */
static bool follower_wait(struct follower *fl, int synced, int64_t rev)
{
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&fl->mu);
		bool ok = fl->synced >= synced && !fl->in_copy && fl->rev >= rev;
		pthread_mutex_unlock(&fl->mu);
		if (ok)
			return true;
		if (fl->done)
			break;
		usleep(10 * 1000);
	}
	fprintf(stderr, "    follower: %d copies, revision %lld; wanted %d, %lld\n", fl->synced,
		(long long)fl->rev, synced, (long long)rev);
	return false;
}

/* The replica as scan_str writes a store; caller frees. */
static char *replica_str(struct follower *fl)
{
	struct sbuf sb;
	sbuf_init(&sb);
	pthread_mutex_lock(&fl->mu);
	for (size_t i = 0; i < fl->n; i++)
		collect(fl->v[i].key, fl->v[i].value, fl->v[i].len, &sb);
	pthread_mutex_unlock(&fl->mu);
	return sbuf_detach(&sb);
}

#define CHECK_REPLICA(fl, f)                                                                       \
	do {                                                                                       \
		char *want_ = scan_str((f), ""), *got_ = replica_str(fl);                          \
		CHECK_STR(got_, want_);                                                            \
		free(want_);                                                                       \
		free(got_);                                                                        \
	} while (0)

/* Stop the follower: store_follow's result. */
static int follower_stop(struct follower *fl)
{
	fl->stop = true;
	pthread_join(fl->th, NULL);
	if (fl->bad[0]) {
		fprintf(stderr, "    follower: %s\n", fl->bad);
		unit_failures++;
	}
	store_close(fl->st);
	replica_clear(fl);
	free(fl->v);
	pthread_mutex_destroy(&fl->mu);
	return fl->result;
}

/* Put or delete a raw etcd key (value NULL), behind the store's back. */
static void etcd_raw_put(const char *key, const char *value)
{
	char *k = base64_encode(key, strlen(key));
	char *body = value ? xasprintf("{\"key\":\"%s\",\"value\":\"%s\"}", k,
				       value) /* value: already base64 */
			   : xasprintf("{\"key\":\"%s\"}", k);
	json_t *j = etcd_raw(value ? "/v3/kv/put" : "/v3/kv/deleterange", body);
	CHECK(j != NULL);
	json_decref(j);
	free(body);
	free(k);
}

/* A TCP proxy to the test etcd that a test can cut: while cut, it closes
 * every connection it has and every new one at once. */
struct proxy {
	int lfd, port, target;
	_Atomic bool cut, quit;
	pthread_t th;
};

static void *proxy_thread(void *arg)
{
	struct proxy *p = arg;
	struct pollfd pf[1 + 2 * 16];
	int peer[2 * 16]; /* pairs: fds 2i and 2i+1 talk to each other */
	int npairs = 0;
	char buf[65536];
	while (!p->quit) {
		if (p->cut) {
			for (int i = 0; i < 2 * npairs; i++)
				close(peer[i]);
			npairs = 0;
		}
		pf[0] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
		for (int i = 0; i < 2 * npairs; i++)
			pf[1 + i] = (struct pollfd){.fd = peer[i], .events = POLLIN};
		if (poll(pf, (nfds_t)(1 + 2 * npairs), 20) <= 0)
			continue;
		for (int i = 0; i < 2 * npairs; i++) {
			if (!(pf[1 + i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(peer[i], buf, sizeof buf);
			bool ok = n > 0;
			for (ssize_t off = 0; ok && off < n;) {
				ssize_t w = write(peer[i ^ 1], buf + off, (size_t)(n - off));
				ok = w > 0;
				off += w > 0 ? w : 0;
			}
			if (!ok) {
				/* Drop the pair: the last one moves into its place. */
				int pair = i / 2;
				close(peer[2 * pair]);
				close(peer[2 * pair + 1]);
				npairs--;
				peer[2 * pair] = peer[2 * npairs];
				peer[2 * pair + 1] = peer[2 * npairs + 1];
				break; /* pf[] is stale now */
			}
		}
		if (pf[0].revents & POLLIN) {
			int c = accept(p->lfd, NULL, NULL);
			if (c < 0)
				continue;
			int t = socket(AF_INET, SOCK_STREAM, 0);
			struct sockaddr_in sa = {.sin_family = AF_INET,
						 .sin_port = htons((uint16_t)p->target),
						 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
			if (p->cut || npairs == 16 || t < 0 ||
			    connect(t, (struct sockaddr *)&sa, sizeof sa) < 0) {
				close(c);
				if (t >= 0)
					close(t);
				continue;
			}
			peer[2 * npairs] = c;
			peer[2 * npairs + 1] = t;
			npairs++;
		}
	}
	for (int i = 0; i < 2 * npairs; i++)
		close(peer[i]);
	return NULL;
}

static void proxy_start(struct proxy *p)
{
	memset(p, 0, sizeof *p);
	p->port = free_port(&p->lfd);
	const char *colon = strrchr(etcd_addr, ':');
	p->target = colon ? atoi(colon + 1) : 0;
	if (p->port < 0 || listen(p->lfd, 16) < 0) {
		perror("proxy");
		exit(1);
	}
	pthread_create(&p->th, NULL, proxy_thread, p);
}

static void proxy_stop(struct proxy *p)
{
	p->quit = true;
	pthread_join(p->th, NULL);
	close(p->lfd);
}

static void put_keys(struct fx *f, const char *fmt, int from, int to, const char *value)
{
	struct store_batch *b = store_batch_new();
	for (int i = from; i < to; i++) {
		char key[64];
		snprintf(key, sizeof key, fmt, i);
		put_str(b, key, value);
	}
	CHECK(commit(f, b) == 0);
}

TEST(etcd_follow_delivers_snapshot_then_changes_in_order)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	/* 2,500 keys (three pages of the copy at least), an empty value,
	 * bytes that are not text, and the empty key (the prefix itself). */
	put_keys(&f, "a/%05d", 0, 2500, "v");
	struct store_batch *b = store_batch_new();
	put_str(b, "empty", "");
	put_str(b, "bin", "\x01\xff\x7f");
	put_str(b, "", "the prefix itself");
	CHECK(commit(&f, b) == 0);
	/* Neighbours of the prefix: not the store's. */
	char *before = xasprintf("%.*s.", (int)strlen(f.ns) - 1, f.ns);
	char *after = xasprintf("%.*s0", (int)strlen(f.ns) - 1, f.ns);
	etcd_raw_put(before, "eA==");
	etcd_raw_put(after, "eA==");

	struct follower fl;
	follower_start(&fl, f.path, 0);
	int64_t rev = etcd_revision();
	CHECK(follower_wait(&fl, 1, rev));
	CHECK(fl.resets == 1 && fl.synced == 1);
	CHECK(fl.synced_rev == rev);
	CHECK(fl.pages >= 3 && fl.max_page <= 1024);
	CHECK(fl.n == 2503);
	CHECK_REPLICA(&fl, &f);

	/* Changes, one revision each unless split: overwrites, new keys, a
	 * delete, a delete_prefix with puts after it, an empty value, one
	 * key changed again and again, a batch split into 3 txns, a large
	 * value, and writes next to the prefix. */
	b = store_batch_new();
	put_str(b, "a/00000", "changed");
	put_str(b, "new", "1");
	store_batch_delete(b, "a/00001");
	CHECK(commit(&f, b) == 0);
	b = store_batch_new();
	store_batch_delete_prefix(b, "a/00");
	put_str(b, "a/00050", "kept");
	put_str(b, "empty2", "");
	CHECK(commit(&f, b) == 0);
	const char *seq[] = {"1", "2", NULL, "3", NULL, "4"};
	for (size_t i = 0; i < ARRAY_SIZE(seq); i++) {
		b = store_batch_new();
		if (seq[i])
			put_str(b, "again", seq[i]);
		else
			store_batch_delete(b, "again");
		CHECK(commit(&f, b) == 0);
	}
	etcd_raw_put(after, "eQ==");
	etcd_raw_put(before, NULL);
	put_keys(&f, "s/%05d", 0, 300, "split"); /* 3 txns */
	/* A message of more than 1 MiB comes in many pieces. */
	size_t big = 1200 * 1000;
	char *val = xmalloc(big);
	memset(val, 'L', big);
	b = store_batch_new();
	store_batch_put(b, "large", val, big);
	CHECK(commit(&f, b) == 0);
	free(val);
	etcd_raw_put(after, NULL);
	b = store_batch_new();
	store_batch_delete_prefix(b, "a/01");
	store_batch_delete(b, "bin");
	store_batch_delete(b, "");
	CHECK(commit(&f, b) == 0);
	rev = etcd_revision();
	CHECK(follower_wait(&fl, 1, rev));
	CHECK(fl.rev == rev);
	CHECK(fl.resets == 1 && fl.synced == 1);
	CHECK_REPLICA(&fl, &f);
	CHECK_VALUE(&f, "again", "4");
	CHECK(follower_stop(&fl) == 0);
	free(before);
	free(after);
	fx_teardown(&f);
}

/* The connection to etcd is lost while following: the watch is made again
 * from the next revision, without a new copy. */
TEST(etcd_follow_resumes_after_a_lost_connection)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	put_keys(&f, "k/%03d", 0, 100, "v");
	struct proxy p;
	proxy_start(&p);
	char *loc = xasprintf("etcd://127.0.0.1:%d/%s", p.port, f.ns);
	struct follower fl;
	follower_start(&fl, loc, 0);
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	char *outside = xasprintf("%.*s0", (int)strlen(f.ns) - 1, f.ns);
	for (int round = 0; round < 2; round++) {
		p.cut = true;
		usleep(300 * 1000);
		put_keys(&f, "k/%03d", 0, 10, round ? "round 1" : "round 0");
		struct store_batch *b = store_batch_new();
		store_batch_delete_prefix(b, round ? "k/02" : "k/01");
		CHECK(commit(&f, b) == 0);
		int64_t rev = etcd_revision();
		/* A later write outside the prefix: the watch's catch-up
		 * message then says that revision in its header, but the
		 * replica is only at rev (resuming after the header's
		 * revision could skip changes: etcd sends at most 1000
		 * revisions per message, each with the current revision). */
		etcd_raw_put(outside, round ? NULL : "eA==");
		p.cut = false;
		CHECK(follower_wait(&fl, 1, rev));
		CHECK_REPLICA(&fl, &f);
		usleep(100 * 1000);
		CHECK(fl.rev == rev);
	}
	free(outside);
	CHECK(fl.resets == 1 && fl.synced == 1);
	CHECK(follower_stop(&fl) == 0);
	proxy_stop(&p);
	free(loc);
	fx_teardown(&f);
}

/* While the follower is cut off, etcd compacts the revisions it has not
 * seen: it gets RESET and a whole new copy. */
TEST(etcd_follow_survives_compaction)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	put_keys(&f, "k/%03d", 0, 100, "v");
	struct proxy p;
	proxy_start(&p);
	char *loc = xasprintf("etcd://127.0.0.1:%d/%s", p.port, f.ns);
	struct follower fl;
	follower_start(&fl, loc, 0);
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	put_keys(&f, "w/%d", 0, 1, "watched");
	CHECK(follower_wait(&fl, 1, etcd_revision()));

	p.cut = true;
	usleep(300 * 1000);
	/* 20 revisions the follower misses, deletes among them: a follower
	 * that kept its old replica would still have those keys. */
	for (int i = 0; i < 20; i++) {
		struct store_batch *b = store_batch_new();
		char key[32];
		snprintf(key, sizeof key, "k/%03d", i * 5);
		if (i % 2)
			store_batch_delete(b, key);
		else
			put_str(b, key, "while cut");
		CHECK(commit(&f, b) == 0);
	}
	int64_t rev = etcd_revision();
	char *body = xasprintf("{\"revision\":\"%lld\",\"physical\":true}", (long long)rev);
	json_t *j = etcd_raw("/v3/kv/compaction", body);
	CHECK(j != NULL);
	json_decref(j);
	free(body);
	p.cut = false;

	CHECK(follower_wait(&fl, 2, rev));
	CHECK(fl.resets == 2 && fl.synced == 2);
	CHECK(fl.synced_rev >= rev);
	CHECK_REPLICA(&fl, &f);
	/* ...and it follows on from the new copy. */
	put_keys(&f, "w/%d", 1, 2, "after");
	CHECK(follower_wait(&fl, 2, etcd_revision()));
	CHECK_REPLICA(&fl, &f);
	CHECK(fl.resets == 2);
	CHECK(follower_stop(&fl) == 0);
	proxy_stop(&p);
	free(loc);
	fx_teardown(&f);
}

TEST(etcd_follow_stops_when_asked)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	put_keys(&f, "k/%d", 0, 10, "v");
	/* Idle: nothing changes while it watches. */
	struct follower fl;
	follower_start(&fl, f.path, 0);
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	usleep(500 * 1000);
	int64_t t0 = time_mono_ms();
	CHECK(follower_stop(&fl) == 0);
	int64_t took = time_mono_ms() - t0;
	CHECK(took < 1000);
	fprintf(stderr, "    stopped in %lld ms while idle\n", (long long)took);

	/* Cut off: it keeps trying to watch again, and still stops. */
	struct proxy p;
	proxy_start(&p);
	char *loc = xasprintf("etcd://127.0.0.1:%d/%s", p.port, f.ns);
	follower_start(&fl, loc, 0);
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	p.cut = true;
	usleep(500 * 1000);
	t0 = time_mono_ms();
	CHECK(follower_stop(&fl) == 0);
	took = time_mono_ms() - t0;
	CHECK(took < 1000);
	fprintf(stderr, "    stopped in %lld ms while cut off\n", (long long)took);
	proxy_stop(&p);
	free(loc);

	/* fn's non-zero answer ends it with that value. */
	follower_start(&fl, f.path, 42);
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	put_keys(&f, "k/%d", 0, 1, "changed");
	for (int i = 0; i < 500 && !fl.done; i++)
		usleep(10 * 1000);
	CHECK(fl.done);
	CHECK(follower_stop(&fl) == 42);
	fx_teardown(&f);
}

/* Without a prefix the store is the whole etcd: so is the copy, and the
 * watch covers every key ("\0" to "\0"). */
TEST(etcd_follow_without_a_prefix_sees_every_key)
{
	struct fx f;
	fx_setup(&f, BE_ETCD);
	put_keys(&f, "k/%d", 0, 3, "v");
	struct fx bare = f;
	bare.path = xasprintf("etcd://%s", etcd_addr);
	fx_open(&bare);
	struct follower fl;
	follower_start(&fl, bare.path, 0);
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	CHECK_REPLICA(&fl, &bare);
	char *key = xasprintf("%sk/0", f.ns);
	char *all = replica_str(&fl);
	CHECK_CONTAINS(all, key);
	free(all);
	struct store_batch *b = store_batch_new();
	put_str(b, "\x01first", "1");
	put_str(b, "\xff\xfflast", "2");
	CHECK(commit(&bare, b) == 0);
	put_keys(&f, "k/%d", 3, 4, "v");
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	CHECK_REPLICA(&fl, &bare);
	b = store_batch_new();
	store_batch_delete(b, "\x01first");
	store_batch_delete(b, "\xff\xfflast");
	CHECK(commit(&bare, b) == 0);
	CHECK(follower_wait(&fl, 1, etcd_revision()));
	CHECK_REPLICA(&fl, &bare);
	CHECK(follower_stop(&fl) == 0);
	free(key);
	store_close(bare.st);
	free(bare.path);
	fx_teardown(&f);
}

static int never_cb(void *ud, enum store_follow_event ev, const struct store_change *ch, size_t n,
		    int64_t revision)
{
	(*(int *)ud)++;
	return 0;
}

TEST(follow_sqlite_refused)
{
	struct fx f;
	fx_setup(&f, BE_SQLITE);
	_Atomic bool stop = false;
	int calls = 0;
	CHECK(store_follow(f.st, never_cb, &calls, &stop, &f.err) == -1);
	CHECK_CONTAINS(f.err.msg, "sqlite");
	CHECK_CONTAINS(f.err.msg, "cannot be followed");
	CHECK(calls == 0);
	fx_teardown(&f);
}

#define STORE_MAIN(...) UNIT_MAIN(__VA_ARGS__)
STORE_MAIN(etcd_tls_options_make_https_endpoints, open_creates_wal_file_with_schema,
	   open_sqlite_scheme_and_reopen, open_unwritable_path_names_the_path,
	   open_rejects_bad_locations, open_rejects_a_file_that_is_not_a_database,
	   open_refuses_a_newer_schema, BOTH(put_get_delete_round_trip),
	   BOTH(get_of_missing_key_returns_1), BOTH(overwrite_keeps_the_last_value),
	   BOTH(binary_values_keep_every_byte), BOTH(binary_and_empty_values_through_scan),
	   BOTH(empty_value_is_present_not_absent), BOTH(large_values_round_trip),
	   BOTH(scan_is_in_key_order_within_the_prefix), BOTH(scan_prefix_is_literal_not_a_pattern),
	   BOTH(delete_prefix_respects_bounds), prefix_end_increments_the_last_byte,
	   BOTH(prefixes_ending_in_0xff), BOTH(delete_prefix_empty_deletes_everything),
	   BOTH(scan_stops_when_fn_returns_nonzero), BOTH(scan_may_nest_but_not_commit),
	   BOTH(batch_ops_apply_in_order), BOTH(many_puts_with_repeats_keep_the_last),
	   BOTH(batch_merge_appends_and_leaves_src_alone), BOTH(batch_clear_and_empty_commit),
	   BOTH(large_batch_commits_whole), BOTH(failed_commit_applies_nothing),
	   BOTH(committed_data_survives_close_and_reopen), BOTH(committed_data_survives_a_crash),
	   etcd_open_errors_name_the_endpoints, etcd_tries_endpoints_in_order,
	   etcd_key_prefixes_keep_stores_apart, etcd_1000_puts_in_one_batch_are_split_into_txns,
	   etcd_batches_are_split_by_request_size,
	   etcd_scan_of_5000_keys_pages_through_one_snapshot, etcd_matches_sqlite_on_random_batches,
	   etcd_guarded_commits_stop_when_the_guard_changes, sqlite_guard_is_a_no_op,
	   etcd_follow_delivers_snapshot_then_changes_in_order,
	   etcd_follow_resumes_after_a_lost_connection, etcd_follow_survives_compaction,
	   etcd_follow_stops_when_asked, etcd_follow_without_a_prefix_sees_every_key,
	   follow_sqlite_refused)
