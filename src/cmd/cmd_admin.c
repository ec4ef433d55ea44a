/* berth admin backup FILE | restore FILE: snapshots of the cluster state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "store/store.h"

enum { A_ADDR, A_DATA, A_STORE, A_HELP, A_COUNT };

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
		int r = file_write_atomic(file, resp.body, resp.len);
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
	if (!o[A_STORE].set || !strcmp(o[A_STORE].value, "sqlite"))
		mkdir_p(dir, 0755);
	struct berr err = {0};
	int rc = 0;
	struct store *st = store_open(loc, &err);
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
	free(loc);
	free(text);
	return rc;
}

int cmd_admin(int argc, char **argv)
{
	struct cli_opt o[A_COUNT] = {
	    [A_ADDR] = {"--addr", NULL, true, false, "server address (backup)"},
	    [A_DATA] = {"--data-dir", NULL, true, false,
			"data dir to restore into (default ./berth-data)"},
	    [A_STORE] = {"--store", NULL, true, false,
			 "store to restore into: sqlite (default) or etcd://..."},
	    [A_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	const char *usage =
	    "berth admin backup FILE | restore FILE [--data-dir DIR | --store LOC]\n\n"
	    "backup asks the running server for a consistent snapshot; restore loads\n"
	    "one into an empty store while no server uses it.";
	if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
		cli_usage(usage, o, A_COUNT);
		return argc < 1 ? 2 : 0;
	}
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	if (cli_parse(argc - 1, argv + 1, o, A_COUNT, &pos, &npos) < 0)
		return 2;
	int rc;
	if (o[A_HELP].set) {
		cli_usage(usage, o, A_COUNT);
		rc = 0;
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
