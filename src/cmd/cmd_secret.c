/* berth secret create ROLE/NAME FILE|- | list [--role R] [--json] | rm ROLE/NAME:
 * secrets, stored sealed by the server and given only to the tasks that
 * list them (docs/security.md, "Secrets"). No command prints a value. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "core/base64.h"

/* The server refuses more; reading stops a little beyond it. */
#define SECRET_READ_MAX (512 * 1024)

enum { S_ADDR, S_ROLE, S_JSON, S_HELP, S_COUNT };

/* The value: a file's bytes, or stdin's with "-". */
static int read_value(const char *src, struct sbuf *out)
{
	FILE *f = strcmp(src, "-") ? fopen(src, "rb") : stdin;
	if (!f)
		return cli_fail("cannot read '%s': %s", src, strerror(errno));
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0 && out->len <= SECRET_READ_MAX)
		sbuf_add(out, buf, n);
	int bad = ferror(f);
	if (f != stdin)
		fclose(f);
	memset(buf, 0, sizeof buf);
	if (bad)
		return cli_fail("cannot read '%s'", strcmp(src, "-") ? src : "stdin");
	if (out->len > SECRET_READ_MAX)
		return cli_fail("'%s' is larger than a secret may be (%d KiB)",
				strcmp(src, "-") ? src : "stdin", SECRET_READ_MAX / 1024);
	return 0;
}

static int create(struct cli_opt *o, const char *name, const char *src)
{
	struct berr err = {0};
	if (secret_name_check(name, &err) < 0)
		return cli_fail("%s", err.msg);
	struct sbuf v;
	sbuf_init(&v);
	if (read_value(src, &v)) {
		if (v.buf)
			memset(v.buf, 0, v.len);
		sbuf_release(&v);
		return 1;
	}
	char *b64 = base64_encode(v.buf ? v.buf : "", v.len);
	size_t size = v.len;
	if (v.buf)
		memset(v.buf, 0, v.len);
	sbuf_release(&v);
	json_t *body = json_pack("{s:s,s:s}", "name", name, "data", b64);
	memset(b64, 0, strlen(b64));
	free(b64);
	struct http_client *hc = cli_client(o[S_ADDR].value);
	json_t *reply = NULL;
	int r = http_json(hc, "POST", "/v1/secrets", body, 30000, &reply, &err);
	/* The body's text held the value: jansson frees it, not zeroed. */
	json_decref(body);
	http_client_free(hc);
	if (r < 0)
		return cli_fail("%s", err.msg);
	int version = (int)json_integer_value(json_object_get(reply, "version"));
	printf("secret %s version %d (%zu bytes) stored\n", name, version, size);
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(reply, "jobs"), i, j) printf(
	    "job %s rolls out to version %lld\n", json_string_value(json_object_get(j, "job")),
	    (long long)json_integer_value(json_object_get(j, "version")));
	json_decref(reply);
	return 0;
}

static int list(struct cli_opt *o)
{
	struct http_client *hc = cli_client(o[S_ADDR].value);
	struct berr err = {0};
	json_t *reply = NULL;
	char *path = o[S_ROLE].set ? xasprintf("/v1/secrets?role=%s", o[S_ROLE].value)
				   : xstrdup("/v1/secrets");
	int r = http_json(hc, "GET", path, NULL, 30000, &reply, &err);
	free(path);
	http_client_free(hc);
	if (r < 0)
		return cli_fail("%s", err.msg);
	if (o[S_JSON].set) {
		cli_print_json(reply);
	} else {
		printf("%-40s %-8s %-10s %-20s %s\n", "NAME", "VERSION", "SIZE", "CREATED", "JOBS");
		size_t i;
		json_t *s;
		json_array_foreach(reply, i, s)
		{
			char size[32];
			cli_format_size(
			    (unsigned long long)json_integer_value(json_object_get(s, "size")),
			    size, sizeof size);
			struct sbuf jobs;
			sbuf_init(&jobs);
			size_t k;
			json_t *jk;
			json_array_foreach(json_object_get(s, "jobs"), k, jk)
			    sbuf_addf(&jobs, "%s%s", k ? "," : "", json_string_value(jk));
			printf("%-40s %-8lld %-10s %-20s %s\n",
			       json_string_value(json_object_get(s, "name")),
			       (long long)json_integer_value(json_object_get(s, "version")), size,
			       json_string_value(json_object_get(s, "created")),
			       jobs.len ? jobs.buf : "-");
			sbuf_release(&jobs);
		}
	}
	json_decref(reply);
	return 0;
}

static int rm(struct cli_opt *o, const char *name)
{
	struct berr err = {0};
	if (secret_name_check(name, &err) < 0)
		return cli_fail("%s", err.msg);
	struct http_client *hc = cli_client(o[S_ADDR].value);
	char *path = xasprintf("/v1/secrets/%s", name);
	json_t *reply = NULL;
	int r = http_json(hc, "DELETE", path, NULL, 30000, &reply, &err);
	free(path);
	http_client_free(hc);
	json_decref(reply);
	if (r < 0)
		return cli_fail("%s", err.msg);
	printf("secret %s removed\n", name);
	return 0;
}

int cmd_secret(int argc, char **argv)
{
	struct cli_opt o[S_COUNT] = {
	    [S_ADDR] = {"--addr", NULL, true, false, "server address"},
	    [S_ROLE] = {"--role", NULL, true, false, "list: only this role's secrets"},
	    [S_JSON] = {"--json", NULL, false, false, "list: print JSON"},
	    [S_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	const char *usage =
	    "berth secret create ROLE/NAME FILE|-\n"
	    "berth secret list [--role ROLE] [--json]\n"
	    "berth secret rm ROLE/NAME\n\n"
	    "create stores FILE's bytes (stdin with -) as a secret, encrypted at rest;\n"
	    "again on an existing name makes a new version, rolled out to the jobs that\n"
	    "use it. A job of role ROLE lists it as task.secrets: [{name: NAME}] and its\n"
	    "tasks read it at /run/secrets/NAME. No command shows a secret's value.";
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, S_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	if (!strcmp(argv[0], "create"))
		return npos == 2 ? create(o, pos[0], pos[1])
				 : cli_fail("usage: berth secret create ROLE/NAME FILE|-");
	if (!strcmp(argv[0], "list") || !strcmp(argv[0], "ls"))
		return npos ? cli_fail("usage: berth secret list [--role ROLE] [--json]") : list(o);
	if (!strcmp(argv[0], "rm") || !strcmp(argv[0], "remove"))
		return npos == 1 ? rm(o, pos[0]) : cli_fail("usage: berth secret rm ROLE/NAME");
	return cli_fail("unknown command 'secret %s' (see 'berth secret --help')", argv[0]);
}
