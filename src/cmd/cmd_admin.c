/* berth admin backup FILE | restore FILE: snapshots of the cluster state.
 * berth admin servers: each server of an HA group, its role and leader. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "core/addr.h"
#include "core/lockfile.h"
#include "cmd/commands.h"
#include "store/store.h"

enum { A_ADDR, A_DATA, A_STORE, A_JSON, A_DAYS, A_HELP, A_COUNT };

static int backup(struct cli_opt *o, const char *file)
{
	struct http_client *hc = cli_client(o[A_ADDR].value);
	struct http_response resp;
	struct berr err = {0};
	int rc = 0;
	if (http_request(hc, "GET", "/v1/admin/backup", NULL, 600000, &resp, &err) < 0) {
		rc = cli_fail("%s", err.msg);
	} else if (resp.status != 200) {
		json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
		const char *m = j ? json_string_value(json_object_get(j, "error")) : NULL;
		rc = cli_fail("backup failed: %s", m ? m : "server error");
		json_decref(j);
		http_response_release(&resp);
	} else {
		/* 0600: a backup is the whole state, env values included. */
		int r = file_write_atomic_mode(file, resp.body, resp.len, 0600);
		size_t lines = 0;
		for (size_t i = 0; i < resp.len; i++)
			lines += resp.body[i] == '\n';
		if (r < 0)
			rc = cli_fail("cannot write '%s': %s", file, strerror(-r));
		else
			printf("backup of %zu keys written to %s\n", lines, file);
		http_response_release(&resp);
	}
	http_client_free(hc);
	return rc;
}

static int any_key(const char *key, const char *value, size_t len, void *ud)
{
	(void)key;
	(void)value;
	(void)len;
	(void)ud;
	return 1;
}

static int restore(struct cli_opt *o, const char *file)
{
	char *text;
	size_t len;
	int r = file_read_all(file, &text, &len);
	if (r < 0)
		return cli_fail("cannot read '%s': %s", file, strerror(-r));
	const char *dir = o[A_DATA].set ? o[A_DATA].value : "berth-data";
	char *loc = o[A_STORE].set && strcmp(o[A_STORE].value, "sqlite")
			? xstrdup(o[A_STORE].value)
			: xasprintf("sqlite:%s/state.db", dir);
	struct berr err = {0};
	int rc = 0;
	int lock_fd = -1;
	struct store *st = NULL;
	if (!o[A_STORE].set || !strcmp(o[A_STORE].value, "sqlite")) {
		/* Not under a running server's feet (it holds DATA/lock). */
		mkdir_p(dir, 0700);
		char *lock = xasprintf("%s/lock", dir);
		lock_fd = lockfile_acquire(lock, "(berth admin restore)", &err);
		free(lock);
		if (lock_fd < 0) {
			long pid;
			char addr[400];
			char *path = xasprintf("%s/lock", dir);
			lockfile_holder(path, &pid, addr, sizeof addr);
			free(path);
			if (err.code == 409)
				rc = cli_fail("data dir '%s' is in use by a berth server (pid %ld, "
					      "serving %s): stop it before a restore",
					      dir, pid, *addr ? addr : "an unknown address");
			else
				rc = cli_fail("%s", err.msg);
			free(loc);
			free(text);
			return rc;
		}
	}
	st = store_open(loc, &err);
	struct store_batch *b = store_batch_new();
	if (!st) {
		rc = cli_fail("%s", err.msg);
		goto out;
	}
	r = store_scan(st, "", any_key, NULL, &err);
	if (r < 0) {
		rc = cli_fail("%s", err.msg);
		goto out;
	}
	if (r > 0) {
		rc = cli_fail("the store '%s' is not empty: restore only into an empty one", loc);
		goto out;
	}
	size_t n = 0, line = 0;
	for (char *p = text, *nl; p < text + len; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(text + len - p));
		if (!nl)
			nl = text + len;
		line++;
		if (nl == p)
			continue;
		json_error_t je;
		json_t *j = json_loadb(p, (size_t)(nl - p), 0, &je);
		const char *k = json_string_value(json_object_get(j, "key"));
		json_t *v = json_object_get(j, "value");
		if (!k || !json_is_string(v)) {
			json_decref(j);
			rc =
			    cli_fail("%s:%zu: expected {\"key\": ..., \"value\": ...}", file, line);
			goto out;
		}
		store_batch_put(b, k, json_string_value(v), json_string_length(v));
		n++;
		json_decref(j);
	}
	if (store_commit(st, b, &err) < 0) {
		rc = cli_fail("%s", err.msg);
		goto out;
	}
	printf("restored %zu keys into %s\n", n, loc);
out:
	store_batch_free(b);
	store_close(st);
	if (lock_fd >= 0)
		close(lock_fd);
	free(loc);
	free(text);
	return rc;
}

/* Ask every server of the list (--addr or BERTH_ADDR) itself, without
 * following redirects, what it is and whom it follows. */
static int servers(struct cli_opt *o)
{
	const char *list = o[A_ADDR].set ? o[A_ADDR].value : getenv("BERTH_ADDR");
	if (!list || !*list)
		list = "https://127.0.0.1:7070";
	_cleanup_free_ char *copy = cli_server_urls(list);
	/* Absolute URLs only; the client's CA (and token) from cli_client. */
	struct http_client *hc = cli_client(copy);
	json_t *all = json_array();
	int leaders = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!*tok)
			continue;
		_cleanup_free_ char *base = addr_to_url(tok);
		_cleanup_free_ char *url = xasprintf("%s/v1/leader", base);
		struct http_response resp;
		struct berr err = {0};
		json_t *row = NULL;
		if (http_request_url(hc, "GET", url, NULL, 2000, &resp, &err) < 0) {
			row = json_pack("{s:s,s:s,s:s}", "server", base, "role", "unreachable",
					"error", err.msg);
		} else {
			json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
			const char *role = json_string_value(json_object_get(j, "role"));
			const char *leader = json_string_value(json_object_get(j, "leader"));
			row = json_pack("{s:s,s:s,s:s?}", "server", base, "role",
					role ? role : "unknown", "leader", leader);
			if (role && !strcmp(role, "leader"))
				leaders++;
			json_decref(j);
			http_response_release(&resp);
		}
		json_array_append_new(all, row);
	}
	http_client_free(hc);
	if (o[A_JSON].set) {
		cli_print_json(all);
	} else {
		printf("%-32s %-12s %s\n", "SERVER", "ROLE", "LEADER");
		size_t i;
		json_t *r;
		json_array_foreach(all, i, r)
		{
			const char *e = json_string_value(json_object_get(r, "error"));
			const char *l = json_string_value(json_object_get(r, "leader"));
			printf("%-32s %-12s %s\n", json_string_value(json_object_get(r, "server")),
			       json_string_value(json_object_get(r, "role")),
			       e   ? e
			       : l ? l
				   : "-");
		}
	}
	json_decref(all);
	/* Exactly one server leads: anything else is worth an exit status. */
	return leaders == 1 ? 0 : 1;
}

/* The bearer token for agents' /metrics (docs/operations.md "Metrics"). */
static int metrics_ticket(struct cli_opt *o)
{
	struct http_client *hc = cli_client(o[A_ADDR].value);
	char *path = xasprintf("/v1/admin/metrics-ticket%s%s", o[A_DAYS].set ? "?days=" : "",
			       o[A_DAYS].set ? o[A_DAYS].value : "");
	json_t *r = NULL;
	struct berr err = {0};
	int rc = 0;
	if (o[A_DAYS].set && strspn(o[A_DAYS].value, "0123456789") != strlen(o[A_DAYS].value))
		rc = cli_fail("--days '%s': a whole number of days", o[A_DAYS].value);
	else if (http_json(hc, "GET", path, NULL, 10000, &r, &err) < 0)
		rc = cli_fail("%s", err.msg);
	else
		printf("%s\n", json_string_value(json_object_get(r, "ticket")));
	json_decref(r);
	free(path);
	http_client_free(hc);
	return rc;
}

int cmd_admin(int argc, char **argv)
{
	struct cli_opt o[A_COUNT] = {
	    [A_ADDR] = {"--addr", NULL, true, false,
			"server address (backup), or the servers' list (servers)"},
	    [A_DATA] = {"--data-dir", NULL, true, false,
			"data dir to restore into (default ./berth-data)"},
	    [A_STORE] = {"--store", NULL, true, false,
			 "store to restore into: sqlite (default) or etcd://..."},
	    [A_JSON] = {"--json", NULL, false, false, "print JSON (servers)"},
	    [A_DAYS] = {"--days", NULL, true, false,
			"how long a metrics ticket is good for (default 365)"},
	    [A_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	const char *usage =
	    "berth admin backup FILE | restore FILE [--data-dir DIR | --store LOC]\n"
	    "berth admin servers [--addr H1:P1,H2:P2,...] [--json]\n"
	    "berth admin metrics-ticket [--days N]\n\n"
	    "backup asks the running server for a consistent snapshot; restore loads\n"
	    "one into an empty store while no server uses it. servers asks each\n"
	    "server of the list (--addr or BERTH_ADDR) for its role and its leader;\n"
	    "it exits 1 unless exactly one of them leads. metrics-ticket prints the\n"
	    "bearer token Prometheus shows to every agent's /metrics.";
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, A_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	int rc;
	if (!strcmp(argv[0], "metrics-ticket")) {
		rc = npos ? cli_fail("usage: berth admin metrics-ticket [--days N]")
			  : metrics_ticket(o);
	} else if (!strcmp(argv[0], "servers")) {
		rc = npos ? cli_fail("usage: berth admin servers [--addr LIST] [--json]")
			  : servers(o);
	} else if (npos != 1) {
		rc = cli_fail("usage: berth admin backup|restore FILE");
	} else if (!strcmp(argv[0], "backup")) {
		rc = backup(o, pos[0]);
	} else if (!strcmp(argv[0], "restore")) {
		rc = restore(o, pos[0]);
	} else {
		rc = cli_fail("unknown command 'admin %s' (see 'berth admin --help')", argv[0]);
	}
	return rc;
}
