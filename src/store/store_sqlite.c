/* store_sqlite.c - the embedded backend: one SQLite file in WAL mode.
 *
 * Schema (version 1):
 *   kv(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID
 *       WITHOUT ROWID stores the rows in the primary key's b-tree, so a
 *       prefix scan is one range walk in key order and a put is one b-tree
 *       insert instead of a table insert plus an index insert.
 *   meta(name TEXT PRIMARY KEY, value) WITHOUT ROWID
 *       the backend's own bookkeeping: schema_version.
 *
 * Keys are bound as TEXT and compared with the BINARY collation, i.e. memcmp
 * order, which is what makes the range [prefix, store_prefix_end(prefix)) the
 * same set as "starts with prefix" (LIKE would be case-insensitive, treat '_'
 * and '%' as wildcards and not use the index).
 */
#include "store/store-internal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
/* How long a writer waits for another connection (the sqlite3 shell, a second
 * server pointed at the same data dir by mistake) before giving up. */
#define BUSY_TIMEOUT_MS 5000

enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_PUT,
	ST_DELETE,
	ST_DELETE_RANGE,
	ST_DELETE_FROM,
	ST_GET,
	ST_SCAN_RANGE,
	ST_SCAN_FROM,
	ST_COUNT
};

/* The *_FROM forms serve prefixes without an upper bound ("" or all 0xff). */
static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* An upsert, not INSERT OR REPLACE: replacing deletes the old row and
     * inserts the new one, where the upsert updates the row where it is.
     * Rewriting 100,000 existing task records in batches of 1,000 random
     * keys costs ~25 % less CPU (docs/scheduling.md, "Scale"). */
    [ST_PUT] = "INSERT INTO kv(key, value) VALUES(?1, ?2) "
	       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_DELETE] = "DELETE FROM kv WHERE key = ?1",
    [ST_DELETE_RANGE] = "DELETE FROM kv WHERE key >= ?1 AND key < ?2",
    [ST_DELETE_FROM] = "DELETE FROM kv WHERE key >= ?1",
    [ST_GET] = "SELECT value FROM kv WHERE key = ?1",
    [ST_SCAN_RANGE] = "SELECT key, value FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key",
    [ST_SCAN_FROM] = "SELECT key, value FROM kv WHERE key >= ?1 ORDER BY key",
};

/* Puts of distinct keys go PUT_ROWS at a time in one statement: each
 * statement has a fixed cost (step, a statement savepoint for the upsert,
 * halt, reset) that one row per statement paid per record. */
#define PUT_ROWS 32

struct sqlite_store {
	sqlite3 *db;
	char *path;
	/* Prepared once at open: parsing SQL per put would dominate a large
	 * batch. */
	sqlite3_stmt *stmt[ST_COUNT];
	sqlite3_stmt *put_rows; /* PUT_ROWS rows of (key, value) */
};

static int db_error(struct berr *err, sqlite3 *db, const char *what, const char *path)
{
	int sys = sqlite3_system_errno(db);
	int code = sqlite3_extended_errcode(db) & 0xff;
	/* SQLite's own words ("unable to open database file") do not say why;
	 * the OS error does. */
	if (sys && (code == SQLITE_CANTOPEN || code == SQLITE_IOERR || code == SQLITE_READONLY ||
		    code == SQLITE_FULL)) {
		char why[128];
		snprintf(why, sizeof why, "%s", strerror(sys));
		/* Messages are lowercase (core/util.h): "not a directory". */
		if (why[0] >= 'A' && why[0] <= 'Z')
			why[0] = (char)(why[0] - 'A' + 'a');
		return berr_set(err, 0, "store: %s '%s': %s (%s)", what, path, sqlite3_errmsg(db),
				why);
	}
	return berr_set(err, 0, "store: %s '%s': %s", what, path, sqlite3_errmsg(db));
}

static void sq_free(struct sqlite_store *s)
{
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_finalize(s->put_rows);
	/* All statements are finalized, so close cannot be SQLITE_BUSY; the
	 * last close also checkpoints and removes the -wal file. */
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

/* Run one pragma that answers with a single text row and return a copy of
 * the answer (NULL on error, with err set). */
static char *pragma(struct sqlite_store *s, const char *sql, struct berr *err)
{
	sqlite3_stmt *stmt = NULL;
	char *out = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		db_error(err, s->db, "cannot open", s->path);
		return NULL;
	}
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(stmt, 0);
		out = xstrdup(t ? (const char *)t : "");
	} else if (rc == SQLITE_DONE) {
		out = xstrdup("");
	} else {
		db_error(err, s->db, "cannot open", s->path);
	}
	sqlite3_finalize(stmt);
	return out;
}

static int exec(struct sqlite_store *s, const char *sql, struct berr *err)
{
	char *msg = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		db_error(err, s->db, "cannot open", s->path);
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Create the tables on a new file, or check that an existing one has a
 * schema this code understands. */
static int setup_schema(struct sqlite_store *s, struct berr *err)
{
	static const char create[] =
	    "BEGIN IMMEDIATE;"
	    "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value) WITHOUT ROWID;"
	    "CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) "
	    "WITHOUT ROWID;"
	    "INSERT OR IGNORE INTO meta(name, value) VALUES('schema_version', 1);"
	    "COMMIT;";
	if (exec(s, create, err) < 0) {
		if (!sqlite3_get_autocommit(s->db))
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}

	sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE name = 'schema_version'", -1,
			       &stmt, NULL) != SQLITE_OK)
		return db_error(err, s->db, "cannot open", s->path);
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			berr_set(err, 0, "store: cannot open '%s': no schema version", s->path);
		else
			db_error(err, s->db, "cannot open", s->path);
		sqlite3_finalize(stmt);
		return -1;
	}
	int type = sqlite3_column_type(stmt, 0);
	sqlite3_int64 version = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	if (type != SQLITE_INTEGER || version < 1)
		return berr_set(err, 0, "store: cannot open '%s': bad schema version", s->path);
	if (version > SCHEMA_VERSION)
		return berr_set(err, 0,
				"store: cannot open '%s': schema version %lld is newer than this "
				"berth understands (%d); upgrade berth",
				s->path, (long long)version, SCHEMA_VERSION);
	return 0;
}

static int sq_open(struct store *st, const char *path, struct berr *err)
{
	struct sqlite_store *s = xcalloc(1, sizeof *s);
	s->path = xstrdup(path);

	/* 0600 before SQLite creates it (its -wal and -shm files copy the
	 * database's mode): the state holds every job's env values. */
	if (path[0] && path[0] != ':') {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0) {
			fchmod(fd, 0600);
			close(fd);
		}
		const char *sfx[] = {"-wal", "-shm"};
		for (size_t i = 0; i < 2; i++) {
			char *p = xasprintf("%s%s", path, sfx[i]);
			chmod(p, 0600);
			free(p);
		}
	}
	/* NOMUTEX: a store is used from one thread at a time (store.h), so
	 * SQLite's per-call locking would only cost time. */
	int rc = sqlite3_open_v2(
	    path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (s->db)
			db_error(err, s->db, "cannot open", path);
		else
			berr_set(err, 0, "store: cannot open '%s': %s", path, sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);

	/* SQLite silently falls back to read-only when the file is not
	 * writable; the first commit would then fail far from the cause. */
	if (sqlite3_db_readonly(s->db, "main") == 1) {
		berr_set(err, 0, "store: cannot open '%s': the file is read-only", path);
		goto fail;
	}

	/* 8 KiB pages for a new file (a no-op on an existing one, which keeps
	 * its page size): a task record is 0.5-1 KiB, and a b-tree cell of
	 * this WITHOUT ROWID table stays on its page up to ~1 KiB with 4 KiB
	 * pages but ~2 KiB with 8 KiB ones (larger ones spill to overflow
	 * pages); half as many pages also means half as many WAL frames and
	 * checkpoint copies for a batch of new records. Must come before
	 * journal_mode=WAL, which creates the file. */
	if (exec(s, "PRAGMA page_size=8192;", err) < 0)
		goto fail;
	/* The first read of the file: a file that is not a database fails
	 * here ("file is not a database"). */
	char *mode = pragma(s, "PRAGMA journal_mode=WAL", err);
	if (!mode)
		goto fail;
	/* WAL is what makes synchronous=FULL cost one fsync per commit; a
	 * filesystem without shared memory (NFS) cannot do it, and running
	 * there would be a silent change of the durability model. */
	if (strcmp(mode, "wal")) {
		berr_set(err, 0,
			 "store: cannot open '%s': cannot use WAL mode (journal mode is '%s')",
			 path, mode);
		free(mode);
		goto fail;
	}
	free(mode);
	/* FULL: the WAL is fsynced at every commit, so a commit that returned
	 * survives power loss (NORMAL would only survive a process crash).
	 * cache_size: a big batch of random keys touches many b-tree pages; with
	 * the default 2 MiB cache they spill mid-transaction. temp_store: large
	 * range deletes may sort in memory. journal_size_limit: after a huge
	 * batch, shrink the WAL back instead of keeping it at its peak size. */
	if (exec(s,
		 "PRAGMA synchronous=FULL;"
		 "PRAGMA cache_size=-65536;"
		 "PRAGMA temp_store=MEMORY;"
		 "PRAGMA journal_size_limit=67108864;"
		 /* Checkpoint every ~32 MiB of WAL (4,096 pages of 8 KiB, 8,192
		  * of 4 KiB in files made before pages were 8 KiB) rather than 4
		  * MiB: the same task records are rewritten many times in a
		  * burst, and a rarer checkpoint copies each page once. */
		 "PRAGMA wal_autocheckpoint=4096;",
		 err) < 0)
		goto fail;
	if (setup_schema(s, err) < 0)
		goto fail;

	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &s->stmt[i], NULL) != SQLITE_OK) {
			db_error(err, s->db, "cannot open", path);
			goto fail;
		}
	}
	struct sbuf sql;
	sbuf_init(&sql);
	sbuf_adds(&sql, "INSERT INTO kv(key, value) VALUES");
	for (int i = 0; i < PUT_ROWS; i++)
		sbuf_addf(&sql, "%s(?%d, ?%d)", i ? "," : "", 2 * i + 1, 2 * i + 2);
	sbuf_adds(&sql, " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
	int prc =
	    sqlite3_prepare_v3(s->db, sql.buf, -1, SQLITE_PREPARE_PERSISTENT, &s->put_rows, NULL);
	sbuf_release(&sql);
	if (prc != SQLITE_OK) {
		db_error(err, s->db, "cannot open", path);
		goto fail;
	}
	st->data = s;
	return 0;

fail:
	sq_free(s);
	return -1;
}

static void sq_close(struct store *st)
{
	sq_free(st->data);
	st->data = NULL;
}

/* Step a write statement to completion and reset it for the next use. */
static int step_done(sqlite3_stmt *stmt)
{
	int rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int apply_op(struct sqlite_store *s, const struct store_op *op)
{
	sqlite3_stmt *stmt;
	int rc;
	switch (op->kind) {
	case STORE_OP_PUT:
		stmt = s->stmt[ST_PUT];
		/* STATIC: the batch outlives the step. A zero-length blob from a
		 * non-NULL pointer is an empty value, not SQL NULL. */
		sqlite3_bind_text(stmt, 1, op->key, (int)op->key_len, SQLITE_STATIC);
		sqlite3_bind_blob64(stmt, 2, op->value, op->len, SQLITE_STATIC);
		return step_done(stmt);
	case STORE_OP_DELETE:
		stmt = s->stmt[ST_DELETE];
		sqlite3_bind_text(stmt, 1, op->key, (int)op->key_len, SQLITE_STATIC);
		return step_done(stmt);
	case STORE_OP_DELETE_PREFIX: {
		char *end = store_prefix_end(op->key);
		stmt = s->stmt[end ? ST_DELETE_RANGE : ST_DELETE_FROM];
		sqlite3_bind_text(stmt, 1, op->key, (int)op->key_len, SQLITE_STATIC);
		if (end)
			sqlite3_bind_text(stmt, 2, end, -1, SQLITE_STATIC);
		rc = step_done(stmt);
		free(end);
		return rc;
	}
	}
	return SQLITE_MISUSE;
}

/* qsort comparator for op pointers: byte order of keys, then batch order,
 * which makes the sort stable (qsort is not). */
static int op_cmp(const void *pa, const void *pb)
{
	const struct store_op *a = *(const struct store_op *const *)pa;
	const struct store_op *b = *(const struct store_op *const *)pb;
	int c = strcmp(a->key, b->key);
	if (c)
		return c;
	return a < b ? -1 : a > b;
}

/* The order to apply b's ops in. Inserting keys in b-tree order touches each
 * page once, where random keys (task ids) dirty pages all over the table:
 * 100,000 puts of random keys commit 1.5-2x faster sorted. Puts and deletes of distinct
 * keys commute and the sort is stable, so the result is the same as batch
 * order; a delete_prefix does not commute with the ops around it, so ops are
 * only sorted between delete_prefix ops. NULL when b is already in order. */
static const struct store_op **apply_order(const struct store_batch *b)
{
	size_t i;
	for (i = 1; i < b->n; i++)
		if (b->ops[i].kind != STORE_OP_DELETE_PREFIX &&
		    b->ops[i - 1].kind != STORE_OP_DELETE_PREFIX &&
		    strcmp(b->ops[i - 1].key, b->ops[i].key) > 0)
			break;
	if (i >= b->n)
		return NULL;
	const struct store_op **v = xmalloc(b->n * sizeof *v);
	size_t start = 0;
	for (i = 0; i <= b->n; i++) {
		if (i < b->n && b->ops[i].kind != STORE_OP_DELETE_PREFIX) {
			v[i] = &b->ops[i];
			continue;
		}
		if (i > start + 1)
			qsort(v + start, i - start, sizeof *v, op_cmp);
		if (i < b->n)
			v[i] = &b->ops[i];
		start = i + 1;
	}
	return v;
}

/* How many puts of distinct keys follow from op i on (at most PUT_ROWS):
 * sorted, a key's puts are adjacent, and a run stops before a repeat (one
 * statement must not upsert a row it inserted). */
static size_t put_run(const struct store_batch *b, const struct store_op **order, size_t i)
{
	size_t n = 0;
	const struct store_op *prev = NULL;
	for (; i < b->n && n < PUT_ROWS; i++, n++) {
		const struct store_op *op = order ? order[i] : &b->ops[i];
		if (op->kind != STORE_OP_PUT || (prev && prev->key_len == op->key_len &&
						 !memcmp(prev->key, op->key, op->key_len)))
			break;
		prev = op;
	}
	return n;
}

static int sq_commit(struct store *st, const struct store_batch *b, struct berr *err)
{
	struct sqlite_store *s = st->data;
	const struct store_op **order = apply_order(b);
	/* IMMEDIATE takes the write lock now, so a busy database fails (after
	 * the busy timeout) before any work, never half-way. */
	if (step_done(s->stmt[ST_BEGIN]) != SQLITE_OK) {
		free(order);
		return berr_set(err, 0,
				"store: cannot commit: cannot begin a transaction on '%s': %s",
				s->path, sqlite3_errmsg(s->db));
	}

	for (size_t i = 0; i < b->n; i++) {
		const struct store_op *op = order ? order[i] : &b->ops[i];
		size_t rows = put_run(b, order, i);
		if (rows == PUT_ROWS) {
			sqlite3_stmt *stmt = s->put_rows;
			for (size_t k = 0; k < rows; k++) {
				const struct store_op *o = order ? order[i + k] : &b->ops[i + k];
				sqlite3_bind_text(stmt, (int)(2 * k + 1), o->key, (int)o->key_len,
						  SQLITE_STATIC);
				sqlite3_bind_blob64(stmt, (int)(2 * k + 2), o->value, o->len,
						    SQLITE_STATIC);
			}
			if (step_done(stmt) != SQLITE_OK) {
				berr_set(err, 0,
					 "store: cannot commit: put of %zu records from "
					 "'%.200s' in '%s': %s",
					 rows, op->key, s->path, sqlite3_errmsg(s->db));
				goto rollback;
			}
			i += rows - 1;
			continue;
		}
		if (apply_op(s, op) != SQLITE_OK) {
			/* Take the message before ROLLBACK replaces it. */
			berr_set(err, 0, "store: cannot commit: %s '%.200s' in '%s': %s",
				 store_op_name(op->kind), op->key, s->path, sqlite3_errmsg(s->db));
			goto rollback;
		}
	}
	if (step_done(s->stmt[ST_COMMIT]) != SQLITE_OK) {
		berr_set(err, 0, "store: cannot commit: '%s': %s", s->path, sqlite3_errmsg(s->db));
		goto rollback;
	}
	free(order);
	return 0;

rollback:
	free(order);
	/* Some errors (disk full, I/O) make SQLite roll back by itself; a
	 * second ROLLBACK would only fail. */
	if (!sqlite3_get_autocommit(s->db))
		step_done(s->stmt[ST_ROLLBACK]);
	return -1;
}

static int sq_get(struct store *st, const char *key, char **value, size_t *len, struct berr *err)
{
	struct sqlite_store *s = st->data;
	sqlite3_stmt *stmt = s->stmt[ST_GET];
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		/* column_blob before column_bytes: the documented safe order. */
		const void *blob = sqlite3_column_blob(stmt, 0);
		size_t n = (size_t)sqlite3_column_bytes(stmt, 0);
		if (value) {
			*value = xmalloc(n + 1);
			if (n)
				memcpy(*value, blob, n);
			(*value)[n] = 0;
		}
		if (len)
			*len = n;
		sqlite3_reset(stmt);
		return 0;
	}
	if (rc == SQLITE_DONE) {
		sqlite3_reset(stmt);
		return 1;
	}
	berr_set(err, 0, "store: cannot get '%.200s' from '%s': %s", key, s->path,
		 sqlite3_errmsg(s->db));
	sqlite3_reset(stmt);
	return -1;
}

static int sq_scan(struct store *st, const char *prefix, store_scan_fn fn, void *ud,
		   struct berr *err)
{
	struct sqlite_store *s = st->data;
	char *end = store_prefix_end(prefix);
	int idx = end ? ST_SCAN_RANGE : ST_SCAN_FROM;
	sqlite3_stmt *stmt = s->stmt[idx], *own = NULL;
	int result = 0;

	/* A scan callback may scan again (say, a task's events while loading
	 * tasks); the cached statement is then mid-walk, so use a fresh one. */
	if (sqlite3_stmt_busy(stmt)) {
		if (sqlite3_prepare_v2(s->db, stmt_sql[idx], -1, &own, NULL) != SQLITE_OK) {
			result = berr_set(err, 0, "store: cannot scan '%.200s' in '%s': %s", prefix,
					  s->path, sqlite3_errmsg(s->db));
			free(end);
			return result;
		}
		stmt = own;
	}
	sqlite3_bind_text(stmt, 1, prefix, -1, SQLITE_STATIC);
	if (end)
		sqlite3_bind_text(stmt, 2, end, -1, SQLITE_STATIC);

	/* One buffer for the whole scan: values are handed to fn
	 * NUL-terminated, which SQLite's blob pointer is not. */
	size_t cap = 256;
	char *buf = xmalloc(cap);
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const unsigned char *key = sqlite3_column_text(stmt, 0);
		const void *blob = sqlite3_column_blob(stmt, 1);
		size_t n = (size_t)sqlite3_column_bytes(stmt, 1);
		if (n + 1 > cap) {
			while (n + 1 > cap)
				cap *= 2;
			free(buf);
			buf = xmalloc(cap);
		}
		if (n)
			memcpy(buf, blob, n);
		buf[n] = 0;
		result = fn(key ? (const char *)key : "", buf, n, ud);
		if (result)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		result = berr_set(err, 0, "store: cannot scan '%.200s' in '%s': %s", prefix,
				  s->path, sqlite3_errmsg(s->db));
	if (own)
		sqlite3_finalize(own);
	else
		sqlite3_reset(stmt);
	free(buf);
	free(end);
	return result;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .commit = sq_commit,
    .get = sq_get,
    .scan = sq_scan,
};
