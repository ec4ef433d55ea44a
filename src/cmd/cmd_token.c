/* berth token: the admin makes, lists and revokes roles' tokens
 * (docs/security.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"

enum { K_ADDR, K_ROLE, K_TTL, K_JSON, K_HELP, K_COUNT };

static void token_opts(struct cli_opt *o)
{
	struct cli_opt all[K_COUNT] = {
	    [K_ADDR] = {"--addr", NULL, true, false, "server address (default $BERTH_ADDR)"},
	    [K_ROLE] = {"--role", NULL, true, false, "create: the role the token acts for"},
	    [K_TTL] = {"--ttl", NULL, true, false, "create: lifetime, e.g. 24h (default: none)"},
	    [K_JSON] = {"--json", NULL, false, false, "print JSON"},
	    [K_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	memcpy(o, all, sizeof all);
}

static int token_create(struct http_client *hc, struct cli_opt *o)
{
	struct berr err = {0};
	if (!o[K_ROLE].set)
		return cli_fail("usage: berth token create --role ROLE [--ttl DURATION]");
	if (role_name_check(o[K_ROLE].value, &err) < 0)
		return cli_fail("bad --role: %s", err.msg);
	uint64_t ms = 0;
	if (o[K_TTL].set && (parse_duration(o[K_TTL].value, &ms) < 0 || ms < 1000))
		return cli_fail("bad --ttl '%s': expected a duration such as 24h", o[K_TTL].value);
	json_t *body =
	    json_pack("{s:s,s:I}", "role", o[K_ROLE].value, "ttl", (json_int_t)(ms / 1000));
	json_t *r = NULL;
	int rc = http_json(hc, "POST", "/v1/tokens", body, 10000, &r, &err);
	json_decref(body);
	if (rc < 0)
		return cli_fail("%s", err.msg);
	if (o[K_JSON].set) {
		cli_print_json(r);
	} else {
		/* The token on the last line, alone: shown this once. */
		fprintf(stderr, "token %s for role %s (shown once; keep it secret):\n",
			json_string_value(json_object_get(r, "id")), o[K_ROLE].value);
		printf("%s\n", json_string_value(json_object_get(r, "token")));
	}
	json_decref(r);
	return 0;
}

static int token_list(struct http_client *hc, struct cli_opt *o)
{
	struct berr err = {0};
	json_t *r = NULL;
	if (http_json(hc, "GET", "/v1/tokens", NULL, 10000, &r, &err) < 0)
		return cli_fail("%s", err.msg);
	json_t *arr = json_object_get(r, "tokens");
	if (o[K_JSON].set) {
		cli_print_json(arr);
	} else {
		printf("%-18s %-6s %-20s %-12s %s\n", "ID", "KIND", "ROLE", "CREATED", "EXPIRES");
		size_t i;
		json_t *t;
		json_array_foreach(arr, i, t)
		{
			long long exp =
			    (long long)json_integer_value(json_object_get(t, "expires"));
			char exps[40];
			if (!exp)
				snprintf(exps, sizeof exps, "never");
			else
				time_format_ms(exp * 1000, exps, sizeof exps);
			printf("%-18s %-6s %-20s %-12lld %s%s\n",
			       json_string_value(json_object_get(t, "id")),
			       json_string_value(json_object_get(t, "kind")),
			       json_string_value(json_object_get(t, "role")),
			       (long long)json_integer_value(json_object_get(t, "created")), exps,
			       json_is_true(json_object_get(t, "expired")) ? " (expired)" : "");
		}
	}
	json_decref(r);
	return 0;
}

/* berth token create --role ROLE [--ttl D] | list [--json] | revoke ID */
int cmd_token(int argc, char **argv)
{
	struct cli_opt o[K_COUNT];
	token_opts(o);
	const char *usage = "berth token create --role ROLE [--ttl DURATION] | list [--json] | "
			    "revoke ID\n\nRoles' tokens (the admin's token only). A role's token "
			    "acts on the jobs and\nsecrets of its role alone.";
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, K_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	struct http_client *hc = cli_client(o[K_ADDR].value);
	int rc;
	if (!strcmp(argv[0], "create") && !npos) {
		rc = token_create(hc, o);
	} else if (!strcmp(argv[0], "list") && !npos) {
		rc = token_list(hc, o);
	} else if (!strcmp(argv[0], "revoke") && npos == 1) {
		struct berr err = {0};
		char path[128];
		if (strlen(pos[0]) > 64 || strchr(pos[0], '/')) {
			rc = cli_fail("bad token id '%s'", pos[0]);
		} else {
			snprintf(path, sizeof path, "/v1/tokens/%s", pos[0]);
			rc = http_json(hc, "DELETE", path, NULL, 10000, NULL, &err) < 0
				 ? cli_fail("%s", err.msg)
				 : (printf("token %s revoked\n", pos[0]), 0);
		}
	} else {
		rc = cli_fail("usage: %s",
			      "berth token create --role ROLE [--ttl D] | list | revoke ID");
	}
	http_client_free(hc);
	return rc;
}
