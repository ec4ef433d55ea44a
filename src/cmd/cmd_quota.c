/* berth quota set ROLE RES=AMOUNT... | set ROLE --clear | delete ROLE |
 * get ROLE [--json] | list [--json]: quotas per role (docs/scheduling.md,
 * "Quotas"). Setting and deleting are the admin's; a role's token reads
 * its own role's. */
#include "cmd/cmd_quota.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "sched/quota.h"

enum { Q_ADDR, Q_JSON, Q_CLEAR, Q_HELP, Q_COUNT };

static const char *const resources[] = {"cpu", "memory", "disk", "tasks"};

static int64_t cpu_milli_of(json_t *v)
{
	return (int64_t)llround(json_number_value(v) * 1000.0);
}

/* One resource's amount as text: "2.5", "8GiB", "3". */
static void format_amount(size_t r, json_t *v, char *buf, size_t n)
{
	if (!v || json_is_null(v))
		snprintf(buf, n, "-");
	else if (r == 0)
		quota_format_cpu(cpu_milli_of(v), buf, n);
	else if (r == 3)
		snprintf(buf, n, "%lld", (long long)json_integer_value(v));
	else
		quota_format_size((int64_t)json_integer_value(v), buf, n);
}

/* "cpu=4 memory=8GiB" into {"cpu": "4", "memory": "8GiB"}; NULL with the
 * error printed. */
static json_t *parse_amounts(const char **args, size_t n)
{
	json_t *body = json_object();
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(args[i], '=');
		size_t r = ARRAY_SIZE(resources);
		for (size_t k = 0; eq && k < ARRAY_SIZE(resources); k++)
			if (strlen(resources[k]) == (size_t)(eq - args[i]) &&
			    !strncmp(args[i], resources[k], (size_t)(eq - args[i])))
				r = k;
		if (!eq || r == ARRAY_SIZE(resources) || !eq[1]) {
			cli_fail("'%s': expected RESOURCE=AMOUNT with RESOURCE one of cpu, memory, "
				 "disk, tasks (e.g. cpu=4 memory=8GiB)",
				 args[i]);
			json_decref(body);
			return NULL;
		}
		if (json_object_get(body, resources[r])) {
			cli_fail("'%s': %s given twice", args[i], resources[r]);
			json_decref(body);
			return NULL;
		}
		json_object_set_new(body, resources[r], json_string(eq + 1));
	}
	return body;
}

static void print_row(json_t *q)
{
	char cols[ARRAY_SIZE(resources)][80];
	json_t *use = json_object_get(q, "use"), *lim = json_object_get(q, "limit");
	for (size_t r = 0; r < ARRAY_SIZE(resources); r++) {
		char u[32], l[32];
		format_amount(r, json_object_get(use, resources[r]), u, sizeof u);
		format_amount(r, json_object_get(lim, resources[r]), l, sizeof l);
		snprintf(cols[r], sizeof cols[r], "%s/%s", u, l);
	}
	printf("%-20s %-16s %-20s %-20s %-12s %s\n", json_string_value(json_object_get(q, "role")),
	       cols[0], cols[1], cols[2], cols[3],
	       json_is_null(lim)			  ? "no quota"
	       : json_is_true(json_object_get(q, "over")) ? "OVER QUOTA"
							  : "");
}

/* Takes arr's reference. */
static void print_table(json_t *arr)
{
	printf("%-20s %-16s %-20s %-20s %-12s %s\n", "ROLE", "CPU", "MEMORY", "DISK", "TASKS", "");
	size_t i;
	json_t *q;
	json_array_foreach(arr, i, q) print_row(q);
	printf("(use/limit of production work, tier preferred; - is unlimited)\n");
	json_decref(arr);
}

void quota_print_plan(json_t *plan)
{
	json_t *q = json_object_get(plan, "quota");
	if (!json_is_object(q))
		return;
	const char *role = json_string_value(json_object_get(q, "role"));
	if (!json_is_true(json_object_get(q, "counted"))) {
		printf("  quota %s: not counted (tier %s)\n", role,
		       json_string_value(json_object_get(q, "tier")));
		return;
	}
	if (!json_is_true(json_object_get(q, "fits"))) {
		const char *msg = json_string_value(json_object_get(q, "message"));
		const char *colon = msg ? strstr(msg, ": ") : NULL;
		printf("  quota %s: would exceed: %s\n", role, colon ? colon + 2 : "");
		return;
	}
	json_t *lim = json_object_get(q, "limit"), *use = json_object_get(q, "use"),
	       *after = json_object_get(q, "after");
	struct sbuf sb;
	sbuf_init(&sb);
	for (size_t r = 0; r < ARRAY_SIZE(resources); r++) {
		json_t *l = json_object_get(lim, resources[r]);
		if (json_is_object(lim) && !l)
			continue; /* unlimited: not worth a word */
		if (!json_is_object(lim) && (r == 2 || r == 3))
			continue; /* no quota: cpu and memory tell enough */
		char a[32], b[32], c[32];
		format_amount(r, json_object_get(use, resources[r]), a, sizeof a);
		format_amount(r, json_object_get(after, resources[r]), b, sizeof b);
		format_amount(r, l, c, sizeof c);
		sbuf_addf(&sb, "%s%s %s → %s", sb.len ? ", " : "", resources[r], a, b);
		if (l)
			sbuf_addf(&sb, " of %s", c);
	}
	if (!json_is_object(lim))
		printf("  quota %s: none set (%s)\n", role, sb.len ? sb.buf : "");
	else
		printf("  quota %s: %s\n", role, sb.len ? sb.buf : "no limits");
	sbuf_release(&sb);
}

static int request(struct cli_opt *o, const char *method, const char *path, json_t *body,
		   json_t **reply)
{
	struct http_client *hc = cli_client(o[Q_ADDR].value);
	struct berr err = {0};
	int r = http_json(hc, method, path, body, 30000, reply, &err);
	http_client_free(hc);
	if (r < 0)
		return cli_fail("%s", err.msg);
	return 0;
}

static int check_role(const char *role)
{
	struct berr err = {0};
	return role_name_check(role, &err) < 0 ? cli_fail("%s", err.msg) : 0;
}

static int quota_set(struct cli_opt *o, const char **pos, size_t npos)
{
	if (npos < 1 || check_role(pos[0]))
		return npos < 1 ? cli_fail("usage: berth quota set ROLE cpu=N memory=SIZE "
					   "[disk=SIZE] [tasks=N] | set ROLE --clear")
				: 1;
	char *path = xasprintf("/v1/quotas/%s", pos[0]);
	int rc;
	if (o[Q_CLEAR].set) {
		rc = npos == 1 ? request(o, "DELETE", path, NULL, NULL)
			       : cli_fail("--clear takes no RESOURCE=AMOUNT");
		if (!rc)
			printf("quota of role %s removed\n", pos[0]);
		free(path);
		return rc;
	}
	if (npos == 1) {
		free(path);
		return cli_fail("give RESOURCE=AMOUNT (cpu, memory, disk, tasks), or --clear");
	}
	json_t *body = parse_amounts(pos + 1, npos - 1), *reply = NULL;
	rc = body ? request(o, "PUT", path, body, &reply) : 1;
	if (!rc) {
		if (o[Q_JSON].set) {
			cli_print_json(reply);
		} else {
			printf("quota of role %s set\n", pos[0]);
			print_table(json_pack("[O]", reply));
		}
	}
	json_decref(reply);
	json_decref(body);
	free(path);
	return rc;
}

int cmd_quota(int argc, char **argv)
{
	struct cli_opt o[Q_COUNT] = {
	    [Q_ADDR] = {"--addr", NULL, true, false, "server address"},
	    [Q_JSON] = {"--json", NULL, false, false, "print JSON"},
	    [Q_CLEAR] = {"--clear", NULL, false, false, "set: remove the role's quota"},
	    [Q_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	const char *usage =
	    "berth quota set ROLE cpu=N memory=SIZE [disk=SIZE] [tasks=N]\n"
	    "berth quota set ROLE --clear | delete ROLE\n"
	    "berth quota get ROLE [--json] | list [--json]\n\n"
	    "A role's quota caps its production work (jobs of tier preferred, the\n"
	    "default in the prod environment): a submission, an update or a cron run\n"
	    "that would take more is refused. A resource left out is unlimited;\n"
	    "preemptible work is never counted. Set and delete are the admin's.";
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, usage, o, Q_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	if (!strcmp(argv[0], "set"))
		return quota_set(o, pos, npos);
	if (!strcmp(argv[0], "delete") || !strcmp(argv[0], "rm")) {
		if (npos != 1)
			return cli_fail("usage: berth quota delete ROLE");
		if (check_role(pos[0]))
			return 1;
		char *path = xasprintf("/v1/quotas/%s", pos[0]);
		int rc = request(o, "DELETE", path, NULL, NULL);
		free(path);
		if (!rc)
			printf("quota of role %s removed\n", pos[0]);
		return rc;
	}
	if (!strcmp(argv[0], "list") || !strcmp(argv[0], "ls") || !strcmp(argv[0], "get")) {
		bool one = !strcmp(argv[0], "get");
		if (one ? npos != 1 : npos != 0)
			return cli_fail("usage: berth quota %s",
					one ? "get ROLE [--json]" : "list [--json]");
		if (one && check_role(pos[0]))
			return 1;
		char *path = one ? xasprintf("/v1/quotas/%s", pos[0]) : xstrdup("/v1/quotas");
		json_t *reply = NULL;
		int rc = request(o, "GET", path, NULL, &reply);
		free(path);
		if (!rc) {
			if (o[Q_JSON].set)
				cli_print_json(reply);
			else
				print_table(one ? json_pack("[O]", reply) : json_incref(reply));
		}
		json_decref(reply);
		return rc;
	}
	return cli_fail("unknown command 'quota %s' (see 'berth quota --help')", argv[0]);
}
