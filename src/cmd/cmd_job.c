/* berth job run | plan | status | list | kill | restart */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/cmd_quota.h"
#include "cmd/commands.h"

enum { J_ADDR, J_JSON, J_ALL, J_DETACH, J_TIMEOUT, J_INSTANCES, J_ALL_AT_ONCE, J_HELP, J_COUNT };

static void job_opts(struct cli_opt *o)
{
	struct cli_opt all[J_COUNT] = {
	    [J_ADDR] = {"--addr", NULL, true, false, "server address (default $BERTH_ADDR)"},
	    [J_JSON] = {"--json", NULL, false, false, "print JSON"},
	    [J_ALL] = {"--all", NULL, false, false, "include ended tasks"},
	    [J_DETACH] = {"--detach", "-d", false, false, "do not follow the rollout"},
	    [J_TIMEOUT] = {"--timeout", NULL, true, false,
			   "give up following after this long (default 10m)"},
	    [J_INSTANCES] = {"--instances", NULL, true, false,
			     "update only these instances: A or A-B (a canary)"},
	    [J_ALL_AT_ONCE] = {"--all-at-once", NULL, false, false,
			       "restart: every task at once, not in batches"},
	    [J_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	memcpy(o, all, sizeof all);
}

static const char *job_usage =
    "berth job run [--detach] [--instances A-B] FILE | plan FILE | status KEY [--json] [--all] |\n"
    "       list [--json] | kill KEY | restart KEY[/INSTANCE] [--all-at-once] |\n"
    "       logs KEY [--stderr] [-f]";

static void status_path(char *path, size_t size, const char *key, bool all)
{
	snprintf(path, size, "/v1/jobs/%s%s", key, all ? "?all=1" : "");
}

static json_t *get_status(struct http_client *hc, const char *key, bool all, struct berr *err)
{
	char path[600];
	status_path(path, sizeof path, key, all);
	json_t *o = NULL;
	if (http_json(hc, "GET", path, NULL, 10000, &o, err) < 0)
		return NULL;
	return o;
}

/* Follow a rollout until every instance runs `version` (service) or the
 * job ends (batch). Returns the exit status. */
static int follow(struct http_client *hc, const char *key, int version, int64_t timeout_ms)
{
	int64_t start = time_mono_ms();
	char last[600] = "";
	for (;;) {
		struct berr err = {0};
		json_t *st = get_status(hc, key, false, &err);
		if (!st)
			return cli_fail("%s", err.msg);
		const char *type = json_string_value(json_object_get(st, "type"));
		const char *status = json_string_value(json_object_get(st, "status"));
		int instances = (int)json_integer_value(json_object_get(st, "instances"));
		int running = 0, finished = 0, failed = 0, pending = 0, throttled = 0, total = 0;
		size_t i;
		json_t *t;
		const char *fail_msg = NULL;
		json_array_foreach(json_object_get(st, "tasks"), i, t)
		{
			const char *s = json_string_value(json_object_get(t, "state"));
			int v = (int)json_integer_value(json_object_get(t, "version"));
			total++;
			if (v != version)
				continue;
			if (!strcmp(s, "RUNNING"))
				running++;
			else if (!strcmp(s, "FINISHED"))
				finished++;
			else if (!strcmp(s, "FAILED"))
				failed++;
			else if (!strcmp(s, "THROTTLED")) {
				throttled++;
				fail_msg = json_string_value(json_object_get(t, "message"));
			} else if (!strcmp(s, "PENDING")) {
				pending++;
				if (!fail_msg)
					fail_msg = json_string_value(json_object_get(t, "message"));
			}
		}
		char line[600];
		snprintf(line, sizeof line, "%s v%d: %d/%d running, %d pending%s%s%s", key, version,
			 running, instances, pending, throttled ? ", some instances flapping" : "",
			 pending && fail_msg ? ": " : "", pending && fail_msg ? fail_msg : "");
		if (strcmp(line, last)) {
			printf("%s\n", line);
			fflush(stdout);
			snprintf(last, sizeof last, "%s", line);
		}
		if (type && !strcmp(type, "cron")) {
			printf("%s: a cron job; see 'berth cron list' for its next run\n", key);
			json_decref(st);
			return 0;
		}
		bool batch = type && strcmp(type, "service") && strcmp(type, "system");
		if (batch && status && (!strcmp(status, "finished") || !strcmp(status, "failed"))) {
			printf("%s %s\n", key, status);
			int rc = !strcmp(status, "finished") ? 0 : 1;
			json_decref(st);
			return rc;
		}
		if (!batch && running == instances && total == instances) {
			printf("%s: all %d instances running version %d\n", key, instances,
			       version);
			json_decref(st);
			return 0;
		}
		if (!batch && throttled) {
			int r =
			    cli_fail("rollout of %s is failing: %s", key, fail_msg ? fail_msg : "");
			json_decref(st);
			return r;
		}
		json_decref(st);
		if (timeout_ms > 0 && time_mono_ms() - start > timeout_ms)
			return cli_fail("gave up following %s after %llds (the job keeps running)",
					key, (long long)(timeout_ms / 1000));
		usleep(100000);
	}
}

/* Follow a rolling update until it ends: 0 when it rolled forward. */
static int follow_update(struct http_client *hc, const char *key, int64_t timeout_ms)
{
	int64_t start = time_mono_ms();
	char last[400] = "";
	char path[600];
	snprintf(path, sizeof path, "/v1/jobs/%s/update", key);
	for (;;) {
		json_t *u = NULL;
		struct berr err = {0};
		if (http_json(hc, "GET", path, NULL, 10000, &u, &err) < 0)
			return cli_fail("%s", err.msg);
		const char *state = json_string_value(json_object_get(u, "state"));
		char line[400];
		snprintf(line, sizeof line,
			 "%s: update %s v%d -> v%d: %d/%d updated, %d healthy, %d failed%s%s", key,
			 state, (int)json_integer_value(json_object_get(u, "from_version")),
			 (int)json_integer_value(json_object_get(u, "to_version")),
			 (int)json_integer_value(json_object_get(u, "updated")),
			 (int)json_integer_value(json_object_get(u, "total")),
			 (int)json_integer_value(json_object_get(u, "healthy")),
			 (int)json_integer_value(json_object_get(u, "failed")),
			 *json_string_value(json_object_get(u, "message")) ? ": " : "",
			 json_string_value(json_object_get(u, "message")));
		if (strcmp(line, last)) {
			printf("%s\n", line);
			fflush(stdout);
			snprintf(last, sizeof last, "%s", line);
		}
		bool active = !strcmp(state, "ROLLING_FORWARD") || !strcmp(state, "ROLLING_BACK") ||
			      !strcmp(state, "ROLL_FORWARD_PAUSED") ||
			      !strcmp(state, "ROLL_BACK_PAUSED");
		int rc = !strcmp(state, "ROLLED_FORWARD") ? 0 : 1;
		if (!active && rc)
			cli_fail("update of %s ended %s: %s", key, state,
				 json_string_value(json_object_get(u, "message")));
		json_decref(u);
		if (!active)
			return rc;
		if (timeout_ms > 0 && time_mono_ms() - start > timeout_ms)
			return cli_fail("gave up following the update of %s (it goes on)", key);
		usleep(100000);
	}
}

static int job_run(struct cli_opt *o, const char *file)
{
	struct job_spec *spec = cli_load_spec(file);
	if (!spec)
		return 1;
	json_t *body = spec_to_json(spec);
	char *key = xstrdup(spec->key);
	spec_free(spec);
	struct http_client *hc = cli_client(o[J_ADDR].value);
	json_t *reply = NULL;
	struct berr err = {0};
	char path[128] = "/v1/jobs";
	if (o[J_INSTANCES].set)
		snprintf(path, sizeof path, "/v1/jobs?instances=%s", o[J_INSTANCES].value);
	int r = http_json(hc, "POST", path, body, 30000, &reply, &err);
	json_decref(body);
	if (r < 0) {
		http_client_free(hc);
		free(key);
		return cli_fail("%s", err.msg);
	}
	int version = (int)json_integer_value(json_object_get(reply, "version"));
	bool update = json_is_true(json_object_get(reply, "update"));
	bool created = json_is_true(json_object_get(reply, "created"));
	bool changed = json_is_true(json_object_get(reply, "changed"));
	printf("%s: %s (version %d)\n", key,
	       created	 ? "created"
	       : changed ? "updated"
			 : "unchanged",
	       version);
	json_decref(reply);
	int rc = 0;
	if (!o[J_DETACH].set) {
		uint64_t tmo = 600000;
		if (o[J_TIMEOUT].set && parse_duration(o[J_TIMEOUT].value, &tmo) < 0) {
			rc = cli_fail("bad --timeout '%s'", o[J_TIMEOUT].value);
		} else {
			rc = update ? follow_update(hc, key, (int64_t)tmo)
				    : follow(hc, key, version, (int64_t)tmo);
		}
	}
	http_client_free(hc);
	free(key);
	return rc;
}

static void print_index_list(const char *what, json_t *arr)
{
	if (!json_array_size(arr))
		return;
	printf("  %s:", what);
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) printf(" %d", (int)json_integer_value(v));
	printf("\n");
}

/* The plan's "would preempt" section: the tasks preempted to place the
 * instances that fit nowhere (docs/scheduling.md). */
static void print_plan_preemption(json_t *plan)
{
	json_t *ids = json_object_get(plan, "preempt");
	if (json_is_true(json_object_get(plan, "fits")) || !json_is_array(ids))
		return;
	if (!json_array_size(ids)) {
		if (!json_is_true(json_object_get(plan, "fits_with_preemption")))
			printf("  preempting lower-ranked tasks would not make room either\n");
		return;
	}
	printf("  would preempt %zu task%s%s:\n", json_array_size(ids),
	       json_array_size(ids) == 1 ? "" : "s",
	       json_is_true(json_object_get(plan, "fits_with_preemption"))
		   ? ""
		   : " (and still not fit every instance)");
	size_t i;
	json_t *id;
	json_array_foreach(ids, i, id) printf("    - %s\n", json_string_value(id));
}

/* Exit status: 0 no change, 1 changes, 2 error (a contract: docs/targets.md). */
static int job_plan(struct cli_opt *o, const char *file)
{
	struct job_spec *spec = cli_load_spec(file);
	if (!spec)
		return 2;
	json_t *body = spec_to_json(spec);
	spec_free(spec);
	struct http_client *hc = cli_client(o[J_ADDR].value);
	json_t *plan = NULL;
	struct berr err = {0};
	int r = http_json(hc, "POST", "/v1/jobs/plan", body, 30000, &plan, &err);
	json_decref(body);
	http_client_free(hc);
	if (r < 0) {
		cli_fail("%s", err.msg);
		return 2;
	}
	bool changed = json_is_true(json_object_get(plan, "changed"));
	if (o[J_JSON].set) {
		cli_print_json(plan);
	} else if (!changed) {
		printf("%s: no changes\n", json_string_value(json_object_get(plan, "job")));
	} else {
		printf("%s: %s (version %d -> %d)\n",
		       json_string_value(json_object_get(plan, "job")),
		       json_is_true(json_object_get(plan, "create")) ? "would be created"
								     : "would change",
		       (int)json_integer_value(json_object_get(plan, "version")),
		       (int)json_integer_value(json_object_get(plan, "next_version")));
		size_t i;
		json_t *d;
		json_array_foreach(json_object_get(plan, "diff"), i, d)
		{
			char *a =
			    json_dumps(json_object_get(d, "old"), JSON_COMPACT | JSON_ENCODE_ANY);
			char *b =
			    json_dumps(json_object_get(d, "new"), JSON_COMPACT | JSON_ENCODE_ANY);
			printf("  ~ %s: %s -> %s\n", json_string_value(json_object_get(d, "field")),
			       a, b);
			free(a);
			free(b);
		}
		json_t *inst = json_object_get(plan, "instances");
		print_index_list("instances added", json_object_get(inst, "add"));
		print_index_list("instances updated", json_object_get(inst, "update"));
		print_index_list("instances removed", json_object_get(inst, "remove"));
		if (json_is_true(json_object_get(plan, "fits")))
			printf("  fits the cluster\n");
		else
			printf("  does NOT fit the cluster now: %s\n",
			       json_string_value(json_object_get(plan, "fit_message")) ?: "");
		print_plan_preemption(plan);
		quota_print_plan(plan);
	}
	json_decref(plan);
	return changed ? 1 : 0;
}

static void print_status(json_t *st)
{
	printf("job %s  version %d  %s  %s\n", json_string_value(json_object_get(st, "job")),
	       (int)json_integer_value(json_object_get(st, "version")),
	       json_string_value(json_object_get(st, "type")),
	       json_string_value(json_object_get(st, "status")));
	const char *why = json_string_value(json_object_get(st, "message"));
	if (why)
		printf("%s\n", why); /* a cron run that did not start */
	printf("%-5s %-40s %-11s %-12s %-8s %-4s %-15s %s\n", "INST", "TASK", "STATE", "NODE",
	       "PID", "VER", "ADDRESS", "MESSAGE");
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(st, "tasks"), i, t)
	{
		const char *node = json_string_value(json_object_get(t, "node"));
		const char *address = json_string_value(json_object_get(t, "address"));
		printf("%-5d %-40s %-11s %-12s %-8d %-4d %-15s %s\n",
		       (int)json_integer_value(json_object_get(t, "instance")),
		       json_string_value(json_object_get(t, "id")),
		       json_string_value(json_object_get(t, "state")), node ? node : "-",
		       (int)json_integer_value(json_object_get(t, "pid")),
		       (int)json_integer_value(json_object_get(t, "version")),
		       address ? address : "-", json_string_value(json_object_get(t, "message")));
		size_t k;
		json_t *e;
		json_array_foreach(json_object_get(t, "events"), k, e)
		{
			printf("        %s  %-11s %s\n",
			       json_string_value(json_object_get(e, "time")),
			       json_string_value(json_object_get(e, "state")),
			       json_string_value(json_object_get(e, "message")));
		}
	}
}

static void print_list(json_t *arr)
{
	printf("%-40s %-9s %-4s %-10s %s\n", "JOB", "INSTANCES", "VER", "STATUS", "TASKS");
	size_t i;
	json_t *j;
	json_array_foreach(arr, i, j)
	{
		struct sbuf sb;
		sbuf_init(&sb);
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(j, "states"), k, v)
		    sbuf_addf(&sb, "%s%s=%d", sb.len ? " " : "", k, (int)json_integer_value(v));
		printf("%-40s %-9d %-4d %-10s %s\n", json_string_value(json_object_get(j, "job")),
		       (int)json_integer_value(json_object_get(j, "instances")),
		       (int)json_integer_value(json_object_get(j, "version")),
		       json_string_value(json_object_get(j, "status")), sb.buf);
		sbuf_release(&sb);
	}
}

int cmd_job(int argc, char **argv)
{
	struct cli_opt o[J_COUNT];
	job_opts(o);
	if (argc >= 1 && !strcmp(argv[0], "logs"))
		return cmd_job_logs(argc, argv);
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int begun = cli_begin(argc, argv, job_usage, o, J_COUNT, &pos, &npos);
	if (begun >= 0)
		return begun;
	const char *verb = argv[0];
	int rc = 0;
	struct berr err = {0};
	if (!strcmp(verb, "run")) {
		rc = npos == 1 ? job_run(o, pos[0])
			       : cli_fail("usage: berth job run [--detach] FILE");
	} else if (!strcmp(verb, "plan")) {
		if (npos != 1) {
			cli_fail("usage: berth job plan FILE");
			rc = 2;
		} else {
			rc = job_plan(o, pos[0]);
		}
	} else if (!strcmp(verb, "list")) {
		struct http_client *hc = cli_client(o[J_ADDR].value);
		json_t *arr = NULL;
		if (o[J_JSON].set ? cli_print_all_pages(hc, "/v1/jobs", NULL, "jobs", &err)
				  : cli_get_all_pages(hc, "/v1/jobs", NULL, "jobs", &arr, &err))
			rc = cli_fail("%s", err.msg);
		else if (!o[J_JSON].set)
			print_list(arr);
		json_decref(arr);
		http_client_free(hc);
	} else if (!strcmp(verb, "status") || !strcmp(verb, "kill") || !strcmp(verb, "restart")) {
		if (npos != 1) {
			return cli_fail("usage: berth job %s KEY", verb);
		}
		/* restart KEY/INSTANCE: one instance. */
		char key[400];
		snprintf(key, sizeof key, "%s", pos[0]);
		long instance = -1;
		char *slash = strrchr(key, '/');
		if (!strcmp(verb, "restart") && slash && job_key_check(key, &err) < 0) {
			char *end = NULL;
			instance = strtol(slash + 1, &end, 10);
			if (slash[1] < '0' || slash[1] > '9' || *end || instance > 1000000)
				return cli_fail("restart %s: expected ROLE/ENV/NAME or "
						"ROLE/ENV/NAME/INSTANCE",
						pos[0]);
			*slash = 0;
			memset(&err, 0, sizeof err);
		}
		if (job_key_check(key, &err) < 0) {
			return cli_fail("%s", err.msg);
		}
		struct http_client *hc = cli_client(o[J_ADDR].value);
		if (!strcmp(verb, "status") && o[J_JSON].set) {
			/* Printed from the reply's text: a job of thousands of
			 * tasks is polled by scripts. */
			char path[600];
			status_path(path, sizeof path, pos[0], o[J_ALL].set);
			struct http_response r;
			if (http_text(hc, "GET", path, NULL, 10000, &r, &err) < 0) {
				rc = cli_fail("%s", err.msg);
			} else {
				if (cli_print_json_text(r.body, r.len, &err) < 0)
					rc = cli_fail("%s", err.msg);
				http_response_release(&r);
			}
		} else if (!strcmp(verb, "status")) {
			json_t *st = get_status(hc, pos[0], o[J_ALL].set, &err);
			if (!st)
				rc = cli_fail("%s", err.msg);
			else if (o[J_JSON].set)
				cli_print_json(st);
			else
				print_status(st);
			json_decref(st);
		} else {
			char path[700];
			bool all = o[J_ALL_AT_ONCE].set;
			if (instance >= 0)
				snprintf(path, sizeof path, "/v1/jobs/%s/restart?instance=%ld", key,
					 instance);
			else
				snprintf(path, sizeof path, "/v1/jobs/%s/%s%s", key, verb,
					 all && !strcmp(verb, "restart") ? "?all_at_once=1" : "");
			json_t *reply = NULL;
			if (http_json(hc, "POST", path, NULL, 30000, &reply, &err) < 0)
				rc = cli_fail("%s", err.msg);
			else if (!strcmp(verb, "kill"))
				printf("%s: killed\n", key);
			else if (!json_is_true(json_object_get(reply, "rolling")))
				printf("%s: restarting\n", pos[0]);
			else
				printf("%s: restarting in batches of its update policy "
				       "(berth update status %s)\n",
				       key, key);
			json_decref(reply);
		}
		http_client_free(hc);
	} else {
		rc = cli_fail("unknown command 'job %s' (see 'berth job --help')", verb);
		rc = 2;
	}
	return rc;
}
