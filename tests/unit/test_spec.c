/* test_spec.c - job specs: fields, defaults, errors with positions, templates,
 * sizes, durations, job keys and the canonical JSON round trip. */
#include "core/spec.h"

#include <errno.h>
#include <math.h>

#include "unit.h"

/* ---- helpers ---- */

static struct job_spec *yaml_ok(const char *text)
{
	struct job_spec *s = NULL;
	struct berr e = {0};
	if (spec_parse_yaml(text, strlen(text), "web.yaml", &s, &e) < 0) {
		fprintf(stderr, "    unexpected error: %s\n", e.msg);
		unit_failures++;
		return NULL;
	}
	return s;
}

/* The message for a spec that must be refused (static buffer). */
static const char *yaml_err_n(const char *text, size_t len)
{
	static struct berr e;
	struct job_spec *s = (struct job_spec *)1;
	berr_clear(&e);
	int r = spec_parse_yaml(text, len, "web.yaml", &s, &e);
	CHECK(r == -1);
	CHECK(s == NULL);
	CHECK(e.code == 400);
	if (r == 0)
		spec_free(s);
	return e.msg;
}

static const char *yaml_err(const char *text)
{
	return yaml_err_n(text, strlen(text));
}

static struct job_spec *json_ok(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	struct job_spec *s = NULL;
	struct berr e = {0};
	CHECK(j != NULL);
	if (spec_parse_json(j, &s, &e) < 0) {
		fprintf(stderr, "    unexpected error: %s\n", e.msg);
		unit_failures++;
	}
	json_decref(j);
	return s;
}

static const char *json_err(const char *text)
{
	static struct berr e;
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
	struct job_spec *s = NULL;
	berr_clear(&e);
	CHECK(j != NULL);
	int r = spec_parse_json(j, &s, &e);
	CHECK(r == -1);
	CHECK(s == NULL);
	CHECK(e.code == 400);
	if (r == 0)
		spec_free(s);
	json_decref(j);
	return e.msg;
}

/* spec -> JSON -> spec -> JSON must give back the same JSON, byte for byte. */
static void check_round_trip(const struct job_spec *s)
{
	json_t *j1 = spec_to_json(s);
	struct job_spec *s2 = NULL;
	struct berr e = {0};
	CHECK(spec_parse_json(j1, &s2, &e) == 0);
	if (!s2) {
		fprintf(stderr, "    round trip refused: %s\n", e.msg);
		json_decref(j1);
		return;
	}
	json_t *j2 = spec_to_json(s2);
	CHECK(json_equal(j1, j2));
	char *d1 = json_dumps(j1, 0), *d2 = json_dumps(j2, 0);
	CHECK_STR(d1, d2);
	free(d1);
	free(d2);
	json_decref(j1);
	json_decref(j2);
	spec_free(s2);
}

#define MIN "job: alice/devel/web\ntask:\n  command: [/bin/true]\n"

/* ---- fields and defaults ---- */

TEST(defaults_minimal)
{
	struct job_spec *s = yaml_ok(MIN);
	if (!s)
		return;
	CHECK_STR(s->key, "alice/devel/web");
	CHECK_STR(s->role, "alice");
	CHECK_STR(s->environment, "devel");
	CHECK_STR(s->name, "web");
	CHECK(s->type == JOB_SERVICE);
	CHECK(s->instances == 1);
	CHECK_STR(s->schedule, "");
	CHECK(s->cron_collision == CRON_KILL_EXISTING);
	CHECK(s->priority == 0);
	CHECK(s->max_task_failures == 1);
	CHECK(s->placement == PLACE_BINPACK);
	CHECK(s->task.driver == DRIVER_EXEC);
	CHECK_STR(s->task.image, "");
	CHECK(s->task.ncommand == 1);
	CHECK_STR(s->task.command[0], "/bin/true");
	CHECK(s->task.nenv == 0);
	CHECK_STR(s->task.user, "");
	CHECK(s->task.resources.cpu == 1.0);
	CHECK(s->task.resources.memory == 128ULL << 20);
	CHECK(s->task.resources.disk == 0);
	CHECK(s->task.resources.nports == 0);
	CHECK(s->task.nconstraints == 0);
	CHECK(s->task.health.kind == HEALTH_NONE);
	CHECK(s->task.health.interval_ms == 10000);
	CHECK(s->task.health.timeout_ms == 1000);
	CHECK(s->task.health.failures == 3);
	CHECK(s->task.health.successes == 1);
	CHECK(s->task.health.initial_delay_ms == 15000);
	CHECK(s->task.stop_grace_ms == 10000);
	CHECK(s->update.batch_size == 1);
	CHECK(s->update.watch_ms == 10000);
	CHECK(s->update.max_instance_failures == 0);
	CHECK(s->update.max_total_failures == 0);
	CHECK(s->update.rollback_on_failure);
	CHECK(s->update.order == UPDATE_STOP_FIRST);
	spec_free(s);
}

/* A spec with every field set (docs/spec.md). */
static const char design_example[] =
    "job: alice/devel/web            # role/environment/name\n"
    "type: service\n"
    "instances: 3\n"
    "priority: 5\n"
    "max_task_failures: -1\n"
    "placement: spread\n"
    "cron_collision: cancel_new\n"
    "task:\n"
    "  driver: exec\n"
    "  image: \"\"\n"
    "  command: [\"/bin/sh\", \"-c\", \"echo hi {{instance}}; exec my-server --port "
    "{{ports.http}}\"]\n"
    "  env: {GREETING: hi}\n"
    "  user: nobody\n"
    "  resources: {cpu: 0.5, memory: 64MiB, disk: 256MiB, ports: [http]}\n"
    "  constraints: {rack: \"!r3\", host: \"limit:1\", zone: \"a,b\"}\n"
    "  health: {http: /health, port: http, interval: 5s, timeout: 2s, failures: 4, successes: 2, "
    "initial_delay: 30s}\n"
    "  stop_grace: 20s\n"
    "update: {batch_size: 2, watch: 30s, max_instance_failures: 1, max_total_failures: 3,\n"
    "         rollback_on_failure: false, order: start_first}\n";

TEST(full_example)
{
	struct job_spec *s = yaml_ok(design_example);
	if (!s)
		return;
	CHECK(s->instances == 3);
	CHECK(s->priority == 5);
	CHECK(s->max_task_failures == -1);
	CHECK(s->placement == PLACE_SPREAD);
	CHECK(s->cron_collision == CRON_CANCEL_NEW);
	CHECK(s->task.ncommand == 3);
	CHECK_STR(s->task.command[2], "echo hi {{instance}}; exec my-server --port {{ports.http}}");
	CHECK(s->task.nenv == 1);
	CHECK_STR(s->task.env[0].key, "GREETING");
	CHECK_STR(s->task.env[0].value, "hi");
	CHECK_STR(s->task.user, "nobody");
	CHECK(s->task.resources.cpu == 0.5);
	CHECK(s->task.resources.memory == 64ULL << 20);
	CHECK(s->task.resources.disk == 256ULL << 20);
	CHECK(s->task.resources.nports == 1);
	CHECK_STR(s->task.resources.ports[0], "http");
	CHECK(s->task.nconstraints == 3);
	CHECK(s->task.health.kind == HEALTH_HTTP);
	CHECK_STR(s->task.health.http_path, "/health");
	CHECK_STR(s->task.health.port, "http");
	CHECK(s->task.health.interval_ms == 5000);
	CHECK(s->task.health.timeout_ms == 2000);
	CHECK(s->task.health.failures == 4);
	CHECK(s->task.health.successes == 2);
	CHECK(s->task.health.initial_delay_ms == 30000);
	CHECK(s->task.stop_grace_ms == 20000);
	CHECK(s->update.batch_size == 2);
	CHECK(s->update.watch_ms == 30000);
	CHECK(s->update.max_instance_failures == 1);
	CHECK(s->update.max_total_failures == 3);
	CHECK(!s->update.rollback_on_failure);
	CHECK(s->update.order == UPDATE_START_FIRST);
	check_round_trip(s);
	spec_free(s);
}

TEST(command_forms)
{
	struct job_spec *s = yaml_ok("job: a/prod/b\ntask:\n  command: echo hi; sleep 1\n");
	if (s) {
		CHECK(s->task.ncommand == 3);
		CHECK_STR(s->task.command[0], "/bin/sh");
		CHECK_STR(s->task.command[1], "-c");
		CHECK_STR(s->task.command[2], "echo hi; sleep 1");
		check_round_trip(s);
		spec_free(s);
	}
	/* Block scalars and numbers in a list are text. */
	s = yaml_ok("job: a/prod/b\ntask:\n  command: |\n    echo a\n    echo b\n");
	if (s) {
		CHECK_STR(s->task.command[2], "echo a\necho b\n");
		spec_free(s);
	}
	s = yaml_ok("job: a/prod/b\ntask:\n  command: [sleep, 10]\n");
	if (s) {
		CHECK(s->task.ncommand == 2);
		CHECK_STR(s->task.command[1], "10");
		spec_free(s);
	}
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntask:\n  command: []\n"),
	    "web.yaml:3:12: task.command: expected a command (a list of strings or a string), "
	    "found an empty list");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntask:\n  command: \"  \"\n"),
	    "web.yaml:3:12: task.command: expected a command (a list of strings or a string), "
	    "found '  '");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntask:\n  command: {a: b}\n"),
	    "web.yaml:3:12: task.command: expected a command (a list of strings or a string), "
	    "found a map");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: [a, [b]]\n"),
		  "web.yaml:3:16: task.command[1]: expected a string, found a list");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: [\"\", b]\n"),
		  "web.yaml:3:13: task.command[0]: expected a program to run, found ''");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntask:\n  command:\n"),
	    "web.yaml:3:11: task.command: expected a command (a list of strings or a string), "
	    "found nothing");
}

TEST(env_values_are_text)
{
	struct job_spec *s = yaml_ok("job: a/prod/b\ntask:\n  command: x\n  env:\n    B: 8080\n"
				     "    A: yes\n    C: 1.50\n    D: '007'\n    E: \"\"\n");
	if (!s)
		return;
	CHECK(s->task.nenv == 5);
	/* Document order is kept. */
	CHECK_STR(s->task.env[0].key, "B");
	CHECK_STR(s->task.env[0].value, "8080");
	CHECK_STR(s->task.env[1].value, "yes");
	CHECK_STR(s->task.env[2].value, "1.50");
	CHECK_STR(s->task.env[3].value, "007");
	CHECK_STR(s->task.env[4].value, "");
	check_round_trip(s);
	spec_free(s);
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: x\n  env: {1A: x}\n"),
		  "web.yaml:4:9: task.env.1A: expected an environment variable name such as "
		  "GREETING, found '1A'");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: x\n  env: {A: [x]}\n"),
		  "web.yaml:4:12: task.env.A: expected a string, found a list");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: x\n  env: {A: }\n"),
		  "web.yaml:4:12: task.env.A: expected a string, found nothing");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: x\n  env: [A]\n"),
		  "web.yaml:4:8: task.env: expected a map of environment variables, found a list");
}

TEST(empty_sections_are_empty)
{
	/* "env:" with its entries commented out is an empty map. */
	struct job_spec *s =
	    yaml_ok("job: a/prod/b\ntask:\n  command: x\n  env:\n  #  A: b\n"
		    "  constraints:\n  resources:\n    ports:\n  health:\nupdate:\n");
	if (!s)
		return;
	CHECK(s->task.nenv == 0);
	CHECK(s->task.nconstraints == 0);
	CHECK(s->task.resources.nports == 0);
	CHECK(s->task.health.kind == HEALTH_NONE);
	CHECK(s->update.batch_size == 1);
	check_round_trip(s);
	spec_free(s);
}

/* ---- sizes, durations, job keys ---- */

TEST(sizes)
{
	uint64_t b = 7;
	CHECK(parse_size("512", &b) == 0 && b == 512);
	CHECK(parse_size("0", &b) == 0 && b == 0);
	CHECK(parse_size("512B", &b) == 0 && b == 512);
	CHECK(parse_size("64KiB", &b) == 0 && b == 64 << 10);
	CHECK(parse_size("64MiB", &b) == 0 && b == 64ULL << 20);
	CHECK(parse_size("64 MiB", &b) == 0 && b == 64ULL << 20);
	CHECK(parse_size("1GiB", &b) == 0 && b == 1ULL << 30);
	CHECK(parse_size("1TiB", &b) == 0 && b == 1ULL << 40);
	CHECK(parse_size("2PiB", &b) == 0 && b == 2ULL << 50);
	CHECK(parse_size("15EiB", &b) == 0 && b == 15ULL << 60);
	CHECK(parse_size("1.5GiB", &b) == 0 && b == 3ULL << 29);
	CHECK(parse_size("0.5KiB", &b) == 0 && b == 512);
	CHECK(parse_size("18446744073709551615", &b) == 0 && b == UINT64_MAX);
	CHECK(parse_size("18446744073709551616", &b) == -ERANGE);
	CHECK(parse_size("16EiB", &b) == -ERANGE);
	CHECK(parse_size("99999999999999999999999999GiB", &b) == -ERANGE);
	CHECK(parse_size("64MB", &b) == -EINVAL);
	CHECK(parse_size("64mib", &b) == -EINVAL);
	CHECK(parse_size("64 potatoes", &b) == -EINVAL);
	CHECK(parse_size("1.5", &b) == -EINVAL);
	CHECK(parse_size("-1", &b) == -EINVAL);
	CHECK(parse_size("", &b) == -EINVAL);
	CHECK(parse_size("MiB", &b) == -EINVAL);
	CHECK(parse_size("1.KiB", &b) == -EINVAL);
	CHECK(parse_size(" 1", &b) == -EINVAL);
	CHECK(parse_size("1  MiB", &b) == -EINVAL);
	CHECK(parse_size(NULL, &b) == -EINVAL);
}

TEST(durations)
{
	uint64_t ms = 7;
	CHECK(parse_duration("250ms", &ms) == 0 && ms == 250);
	CHECK(parse_duration("10s", &ms) == 0 && ms == 10000);
	CHECK(parse_duration("5m", &ms) == 0 && ms == 300000);
	CHECK(parse_duration("1h", &ms) == 0 && ms == 3600000);
	CHECK(parse_duration("10", &ms) == 0 && ms == 10000); /* bare integer: seconds */
	CHECK(parse_duration("0", &ms) == 0 && ms == 0);
	CHECK(parse_duration("1h30m", &ms) == 0 && ms == 5400000);
	CHECK(parse_duration("1m30s500ms", &ms) == 0 && ms == 90500);
	CHECK(parse_duration("1.5s", &ms) == 0 && ms == 1500);
	CHECK(parse_duration("0.25h", &ms) == 0 && ms == 900000);
	CHECK(parse_duration("18446744073709551s", &ms) == 0 && ms == 18446744073709551000ULL);
	CHECK(parse_duration("18446744073709552s", &ms) == -ERANGE);
	CHECK(parse_duration("18446744073709552", &ms) == -ERANGE);
	CHECK(parse_duration("99999999999999999999999h", &ms) == -ERANGE);
	CHECK(parse_duration("", &ms) == -EINVAL);
	CHECK(parse_duration("s", &ms) == -EINVAL);
	CHECK(parse_duration("10 s", &ms) == -EINVAL);
	CHECK(parse_duration("-1s", &ms) == -EINVAL);
	CHECK(parse_duration("1.5", &ms) == -EINVAL);
	CHECK(parse_duration("1d", &ms) == -EINVAL);
	CHECK(parse_duration("10sx", &ms) == -EINVAL);
	CHECK(parse_duration(NULL, &ms) == -EINVAL);
}

TEST(job_keys)
{
	struct berr e = {0};
	CHECK(job_key_check("alice/prod/web", &e) == 0);
	CHECK(job_key_check("a/devel/b", &e) == 0);
	CHECK(job_key_check("9x/test/web-1_a", &e) == 0);
	CHECK(job_key_check("alice/staging/web", &e) == 0);
	CHECK(job_key_check("alice/staging12/web", &e) == 0);
	CHECK(
	    job_key_check("a234567890123456789012345678901234567890123456789012345678901234/prod/w",
			  &e) == 0);
	CHECK(job_key_check(
		  "a2345678901234567890123456789012345678901234567890123456789012345/prod/w", &e) ==
	      -1);
	CHECK_STR(e.msg, "expected a role of 1 to 64 characters a-z, 0-9, _ or - starting with a "
			 "letter or digit, found "
			 "'a23456789012345678901234567890123456789012345678901234567890...'");
	CHECK(job_key_check("alice/web", &e) == -1);
	CHECK(e.code == 400);
	CHECK_STR(e.msg, "expected a job key role/environment/name such as alice/prod/web, found "
			 "'alice/web'");
	CHECK(job_key_check("a/prod/b/c", &e) == -1);
	CHECK(job_key_check("Alice/prod/web", &e) == -1);
	CHECK_CONTAINS(e.msg, "expected a role of 1 to 64 characters");
	CHECK_CONTAINS(e.msg, "found 'Alice'");
	CHECK(job_key_check("_a/prod/web", &e) == -1);
	CHECK(job_key_check("/prod/web", &e) == -1);
	CHECK(job_key_check("alice/production/web", &e) == -1);
	CHECK_STR(e.msg, "expected an environment prod, devel, test or staging<digits>, found "
			 "'production'");
	CHECK(job_key_check("alice/staging1a/web", &e) == -1);
	CHECK(job_key_check("alice/prod/", &e) == -1);
	CHECK_STR(e.msg, "expected a name of 1 to 64 characters a-z, 0-9, _ or - starting with a "
			 "letter or digit, found ''");
	CHECK(job_key_check("alice/prod/we b", &e) == -1);
	CHECK(job_key_check("alice/prod/web\n", &e) == -1);
	CHECK_CONTAINS(e.msg, "found 'web\\n'");
	CHECK(job_key_check(NULL, &e) == -1);
	CHECK(job_key_check("", NULL) == -1);
}

TEST(job_key_in_spec)
{
	CHECK_STR(yaml_err("job: Alice/prod/web\ntask: {command: x}\n"),
		  "web.yaml:1:6: job: expected a role of 1 to 64 characters a-z, 0-9, _ or - "
		  "starting with a letter or digit, found 'Alice'");
	CHECK_STR(
	    yaml_err("job: alice/prd/web\ntask: {command: x}\n"),
	    "web.yaml:1:6: job: expected an environment prod, devel, test or staging<digits>, "
	    "found 'prd'");
	CHECK_STR(yaml_err("job: [a]\ntask: {command: x}\n"),
		  "web.yaml:1:6: job: expected a job key such as alice/prod/web, found a list");
	CHECK_STR(json_err("{\"job\": \"a/b/c\", \"task\": {\"command\": \"x\"}}"),
		  "job: expected an environment prod, devel, test or staging<digits>, found 'b'");
}

/* ---- errors ---- */

TEST(tier_defaults_by_environment)
{
	struct job_spec *s = yaml_ok("job: a/prod/b\ntask: {command: x}\n");
	if (s) {
		CHECK(s->tier == TIER_PREFERRED);
		spec_free(s);
	}
	s = yaml_ok("job: a/devel/b\ntask: {command: x}\n");
	if (s) {
		CHECK(s->tier == TIER_PREEMPTIBLE);
		json_t *j = spec_to_json(s);
		CHECK_STR(json_string_value(json_object_get(j, "tier")), "preemptible");
		json_decref(j);
		spec_free(s);
	}
	s = yaml_ok("job: a/prod/b\ntier: preemptible\ntask: {command: x}\n");
	if (s) {
		CHECK(s->tier == TIER_PREEMPTIBLE);
		spec_free(s);
	}
	s = yaml_ok("job: a/test/b\ntier: preferred\ntask: {command: x}\n");
	if (s) {
		CHECK(s->tier == TIER_PREFERRED);
		spec_free(s);
	}
	CHECK_STR(yaml_err("job: a/prod/b\ntier: gold\ntask: {command: x}\n"),
		  "web.yaml:2:7: tier: expected preferred or preemptible, found 'gold'");
}

TEST(error_unknown_key)
{
	CHECK_STR(yaml_err(MIN "jobb: x\n"),
		  "web.yaml:4:1: jobb: expected one of job, type, instances, schedule, "
		  "cron_collision, priority, tier, max_task_failures, placement, task, update, "
		  "restart or publish, found "
		  "'jobb'");
	CHECK_STR(yaml_err(MIN "  resourcs: {}\n"),
		  "web.yaml:4:3: task.resourcs: expected one of driver, image, command, env, user, "
		  "resources, constraints, health, stop_grace, shutdown, volumes, secrets, "
		  "drain_delay or network, found "
		  "'resourcs'");
	CHECK_STR(yaml_err(MIN "  resources: {gpu: 1}\n"),
		  "web.yaml:4:15: task.resources.gpu: expected one of cpu, memory, disk or ports, "
		  "found 'gpu'");
	CHECK_STR(yaml_err(MIN "  health: {grpc: x}\n"),
		  "web.yaml:4:12: task.health.grpc: expected one of http, tcp, command, port, "
		  "interval, timeout, failures, successes or initial_delay, found 'grpc'");
	CHECK_STR(yaml_err(MIN "update: {parallelism: 2}\n"),
		  "web.yaml:4:10: update.parallelism: expected one of batch_size, watch, "
		  "max_instance_failures, max_total_failures, rollback_on_failure or order, found "
		  "'parallelism'");
	/* A null key ("? " or ": x") is no field either. */
	CHECK_STR(
	    yaml_err(MIN "? \n: x\n"),
	    "web.yaml:4:2: expected one of job, type, instances, schedule, cron_collision, "
	    "priority, tier, max_task_failures, placement, task, update, restart or publish, found "
	    "nothing");
}

TEST(error_wrong_type)
{
	CHECK_STR(yaml_err("job: a/prod/b\ninstances: three\ntask: {command: x}\n"),
		  "web.yaml:2:12: instances: expected an integer between 0 and 100000, found "
		  "'three'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ninstances: 1.5\ntask: {command: x}\n"),
	    "web.yaml:2:12: instances: expected an integer between 0 and 100000, found '1.5'");
	CHECK_STR(yaml_err("job: a/prod/b\ntask: 5\n"),
		  "web.yaml:2:7: task: expected a map of task fields such as command and "
		  "resources, found '5'");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n"),
		  "web.yaml:2:6: task: expected a map of task fields such as command and "
		  "resources, found nothing");
	CHECK_STR(yaml_err(MIN "  resources: [1]\n"),
		  "web.yaml:4:14: task.resources: expected a map of resources (cpu, memory, disk, "
		  "ports), found a list");
	CHECK_STR(
	    yaml_err(MIN "update: {rollback_on_failure: maybe}\n"),
	    "web.yaml:4:31: update.rollback_on_failure: expected true or false, found 'maybe'");
	CHECK_STR(yaml_err(MIN "  user: {a: b}\n"),
		  "web.yaml:4:9: task.user: expected a user name or uid, found a map");
	CHECK_STR(
	    yaml_err(MIN "  resources: {cpu: lots}\n"),
	    "web.yaml:4:20: task.resources.cpu: expected a number of cores above 0 and at most "
	    "4096, found 'lots'");
	/* Quoted numbers are still numbers. */
	struct job_spec *s = yaml_ok("job: a/prod/b\ninstances: \"4\"\ntask: {command: x}\n");
	if (s) {
		CHECK(s->instances == 4);
		spec_free(s);
	}
}

TEST(error_sizes_and_durations)
{
	/* The example of spec.h, exactly. */
	CHECK_STR(yaml_err(MIN "  resources:\n    memory: 64 potatoes\n"),
		  "web.yaml:5:13: task.resources.memory: expected a size such as 64MiB, found '64 "
		  "potatoes'");
	CHECK_STR(yaml_err(MIN "  resources: {memory: 0}\n"),
		  "web.yaml:4:23: task.resources.memory: expected a size above 0 such as 64MiB, "
		  "found '0'");
	CHECK_STR(yaml_err(MIN "  resources: {memory: 2EiB}\n"),
		  "web.yaml:4:23: task.resources.memory: expected a size of at most 1EiB, found "
		  "'2EiB'");
	CHECK_STR(yaml_err(MIN "  resources: {disk: -1}\n"),
		  "web.yaml:4:21: task.resources.disk: expected a size such as 64MiB, found '-1'");
	CHECK_STR(yaml_err(MIN "  stop_grace: 10 parsecs\n"),
		  "web.yaml:4:15: task.stop_grace: expected a duration such as 10s, found '10 "
		  "parsecs'");
	CHECK_STR(yaml_err(MIN "  health: {interval: 0s}\n"),
		  "web.yaml:4:22: task.health.interval: expected a duration above 0 such as 10s, "
		  "found '0s'");
	CHECK_STR(
	    yaml_err(MIN "update: {watch: 9000h}\n"),
	    "web.yaml:4:17: update.watch: expected a duration of at most 8760h, found '9000h'");
	/* A YAML integer is bytes for a size, seconds for a duration. */
	struct job_spec *s = yaml_ok(MIN "  resources: {memory: 1048576, disk: 0x1fF}\n"
					 "  stop_grace: 3\n");
	if (s) {
		CHECK(s->task.resources.memory == 1048576);
		CHECK(s->task.resources.disk == 511);
		CHECK(s->task.stop_grace_ms == 3000);
		spec_free(s);
	}
}

TEST(error_missing_fields)
{
	CHECK_STR(yaml_err("task: {command: x}\n"),
		  "web.yaml:1:1: job: expected a job key such as alice/prod/web, found nothing");
	CHECK_STR(yaml_err("job: a/prod/b\n"),
		  "web.yaml:1:1: task: expected a task section with a command, found nothing");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  user: nobody\n"),
		  "web.yaml:3:3: task.command: expected a command (a list of strings or a string), "
		  "found nothing");
	CHECK_STR(yaml_err("job:\ntask: {command: x}\n"),
		  "web.yaml:1:5: job: expected a job key such as alice/prod/web, found nothing");
}

TEST(error_enums)
{
	CHECK_STR(yaml_err("job: a/prod/b\ntype: daemon\ntask: {command: x}\n"),
		  "web.yaml:2:7: type: expected service, batch or cron, found 'daemon'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ncron_collision: both\ntask: {command: x}\n"),
	    "web.yaml:2:17: cron_collision: expected kill_existing or cancel_new, found 'both'");
	CHECK_STR(yaml_err("job: a/prod/b\nplacement: random\ntask: {command: x}\n"),
		  "web.yaml:2:12: placement: expected binpack or spread, found 'random'");
	CHECK_STR(yaml_err(MIN "  driver: lxc\n"),
		  "web.yaml:4:11: task.driver: expected exec, oci or docker, found 'lxc'");
	CHECK_STR(yaml_err(MIN "update: {order: Stop_First}\n"),
		  "web.yaml:4:17: update.order: expected stop_first or start_first, found "
		  "'Stop_First'");
	struct job_spec *s = yaml_ok("job: a/prod/b\ntype: batch\ntask: {command: x}\n");
	if (s) {
		CHECK(s->type == JOB_BATCH);
		spec_free(s);
	}
}

TEST(error_integer_ranges)
{
	CHECK_STR(yaml_err("job: a/prod/b\ninstances: -1\ntask: {command: x}\n"),
		  "web.yaml:2:12: instances: expected an integer between 0 and 100000, found '-1'");
	CHECK_STR(yaml_err("job: a/prod/b\ninstances: 100001\ntask: {command: x}\n"),
		  "web.yaml:2:12: instances: expected an integer between 0 and 100000, found "
		  "'100001'");
	CHECK_STR(yaml_err("job: a/prod/b\nmax_task_failures: -2\ntask: {command: x}\n"),
		  "web.yaml:2:20: max_task_failures: expected an integer between -1 and 1000000, "
		  "found '-2'");
	CHECK_STR(yaml_err(MIN "update: {batch_size: 0}\n"),
		  "web.yaml:4:22: update.batch_size: expected an integer between 1 and 100000, "
		  "found '0'");
	CHECK_STR(yaml_err(MIN "update: {max_total_failures: -1}\n"),
		  "web.yaml:4:30: update.max_total_failures: expected an integer between 0 and "
		  "1000000, found '-1'");
	CHECK_STR(yaml_err(MIN "  health: {failures: 0}\n"),
		  "web.yaml:4:22: task.health.failures: expected an integer between 1 and 1000000, "
		  "found '0'");
	struct job_spec *s =
	    yaml_ok("job: a/prod/b\ninstances: 0\npriority: -7\ntask: {command: x}\n");
	if (s) {
		CHECK(s->instances == 0);
		CHECK(s->priority == -7);
		spec_free(s);
	}
	s = yaml_ok("job: a/prod/b\ninstances: 100000\ntask: {command: x}\n");
	if (s) {
		CHECK(s->instances == 100000);
		spec_free(s);
	}
}

TEST(error_huge_numbers)
{
	CHECK_STR(
	    yaml_err("job: a/prod/b\ninstances: 99999999999999999999999\ntask: {command: x}\n"),
	    "web.yaml:2:12: instances: expected an integer between 0 and 100000, found "
	    "'99999999999999999999999'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\npriority: -9223372036854775809\ntask: {command: x}\n"),
	    "web.yaml:2:11: priority: expected an integer between -1000000 and 1000000, found "
	    "'-9223372036854775809'");
	CHECK_STR(
	    yaml_err(MIN "  resources: {cpu: 1e999}\n"),
	    "web.yaml:4:20: task.resources.cpu: expected a number of cores above 0 and at most "
	    "4096, found '1e999'");
	CHECK_STR(
	    yaml_err(MIN "  resources: {cpu: .nan}\n"),
	    "web.yaml:4:20: task.resources.cpu: expected a number of cores above 0 and at most "
	    "4096, found '.nan'");
	CHECK_STR(yaml_err(MIN "  resources: {memory: 99999999999999999999999}\n"),
		  "web.yaml:4:23: task.resources.memory: expected a size such as 64MiB, found "
		  "'99999999999999999999999'");
	CHECK_STR(yaml_err(MIN "  stop_grace: 99999999999999999999\n"),
		  "web.yaml:4:15: task.stop_grace: expected a duration such as 10s, found "
		  "'99999999999999999999'");
	/* Long values are cut in messages. */
	char big[400];
	memset(big, 'x', sizeof big);
	memcpy(big, "job: ", 5);
	big[sizeof big - 1] = 0;
	const char *m = yaml_err(big);
	CHECK(strlen(m) < 300);
	CHECK_CONTAINS(m, "xxx...'");
}

TEST(error_duplicate_keys)
{
	CHECK_STR(yaml_err("job: a/prod/b\ntask: {command: x}\njob: a/prod/c\n"),
		  "web.yaml:3:1: job: expected each key once, found 'job' again");
	CHECK_STR(yaml_err(MIN "  env:\n    A: 1\n    B: 2\n    A: 3\n"),
		  "web.yaml:7:5: task.env.A: expected each key once, found 'A' again");
	/* The earliest repeat in the document is the one reported. */
	CHECK_STR(yaml_err(MIN "  env: {Z: 1, A: 1, Z: 2, A: 2}\n"),
		  "web.yaml:4:21: task.env.Z: expected each key once, found 'Z' again");
	CHECK_STR(
	    yaml_err(MIN "  resources: {ports: [http, admin, http]}\n"),
	    "web.yaml:4:36: task.resources.ports[2]: expected each port name once, found 'http' "
	    "again");
}

TEST(error_yaml_syntax)
{
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: [a, b\n"),
		  "web.yaml:4:1: task.command: expected valid yaml (did not find expected ',' or "
		  "']'), found end of input");
	CHECK_STR(yaml_err("job: a\n  b: c\n"),
		  "web.yaml:2:4: expected valid yaml (mapping values are not allowed in this "
		  "context), found ': c'");
	CHECK_STR(yaml_err("job: a/prod/b\n\ttask: x\n"),
		  "web.yaml:2:1: job: expected valid yaml (found a tab character that violates "
		  "indentation), found '\\ttask: x'");
	CHECK_STR(
	    yaml_err("job: \"abc\n"),
	    "web.yaml:2:1: job: expected valid yaml (found unexpected end of stream), found end "
	    "of input");
	CHECK_STR(yaml_err("job: a/prod/b\ntask: {command: x}\n]\n"),
		  "web.yaml:3:1: expected valid yaml (did not find expected key), "
		  "found ']'");
}

TEST(error_aliases_tags_and_keys)
{
	CHECK_STR(yaml_err("job: &k a/prod/b\ntask: {command: x}\nx: *k\n"),
		  "web.yaml:3:4: x: expected a value, not an alias (anchors and aliases are not "
		  "supported), found '*k'");
	CHECK_STR(yaml_err("base: &b {command: x}\njob: a/prod/b\ntask:\n  <<: *b\n"),
		  "web.yaml:4:7: task.<<: expected a value, not an alias (anchors and aliases are "
		  "not supported), found '*b'");
	CHECK_STR(yaml_err(MIN "  user: !!binary aGVsbG8=\n"),
		  "web.yaml:4:9: task.user: expected a value without a tag, found '!!binary'");
	CHECK_STR(yaml_err(MIN "  env: !custom {A: b}\n"),
		  "web.yaml:4:8: task.env: expected a value without a tag, found '!custom'");
	CHECK_STR(yaml_err("? [a]\n: b\n"), "web.yaml:1:3: expected a plain key, found a list");
	/* An anchor alone is harmless; !!str makes a string of anything. */
	struct job_spec *s = yaml_ok("job: &k a/prod/b\ninstances: !!str 2\ntask: {command: x}\n");
	if (s) {
		CHECK(s->instances == 2);
		spec_free(s);
	}
	s = yaml_ok(MIN "  env: {A: !!str true}\n");
	if (s) {
		CHECK_STR(s->task.env[0].value, "true");
		spec_free(s);
	}
}

TEST(error_documents)
{
	CHECK_STR(yaml_err(""), "web.yaml:1:1: expected a map of job fields such as job and task, "
				"found an empty document");
	CHECK_STR(yaml_err("# nothing here\n\n"),
		  "web.yaml:1:1: expected a map of job fields such as job and task, found an empty "
		  "document");
	CHECK_STR(yaml_err("---\n"),
		  "web.yaml:2:1: expected a map of job fields such as job and task, found nothing");
	CHECK_STR(yaml_err("hello\n"),
		  "web.yaml:1:1: expected a map of job fields such as job and task, found 'hello'");
	CHECK_STR(yaml_err("- a\n"),
		  "web.yaml:1:1: expected a map of job fields such as job and task, found a list");
	CHECK_STR(yaml_err(MIN "---\n" MIN),
		  "web.yaml:4:1: expected a single yaml document, found another document");
	struct job_spec *s = yaml_ok("---\n" MIN "...\n");
	spec_free(s);
	/* A NULL filename still gives a position. */
	struct berr e = {0};
	CHECK(spec_parse_yaml("x", 1, NULL, &s, &e) == -1);
	CHECK_STR(e.msg,
		  "<input>:1:1: expected a map of job fields such as job and task, found 'x'");
	CHECK(spec_parse_yaml(NULL, 0, "a.yaml", &s, &e) == -1);
	CHECK_CONTAINS(e.msg, "a.yaml:1:1: ");
}

TEST(error_bytes)
{
	CHECK_STR(yaml_err_n("job: a\0b\n", 9),
		  "web.yaml:1:7: expected valid yaml (control characters are not allowed), found "
		  "'\\x00'");
	CHECK_STR(yaml_err("job: \"a/prod/b\\0\"\ntask: {command: x}\n"),
		  "web.yaml:1:6: job: expected a job key such as alice/prod/web without NUL bytes, "
		  "found 'a/prod/b\\x00'");
	CHECK_STR(yaml_err("\"a\\0b\": 1\n"),
		  "web.yaml:1:1: a\\x00b: expected a key without NUL bytes, found 'a\\x00b'");
	CHECK_STR(yaml_err("job: \xff\xfe\n"),
		  "web.yaml:1:6: expected valid yaml (invalid leading UTF-8 octet), found '\\xff'");
	CHECK_STR(yaml_err("\xff\xfej\0o\0b\0"),
		  "web.yaml:1:1: expected valid yaml (invalid leading UTF-8 octet), found '\\xff'");
	CHECK_STR(yaml_err("job: \x1b[31mred\n"),
		  "web.yaml:1:6: expected valid yaml (control characters are not allowed), found "
		  "'\\x1b'");
	/* UTF-8 is fine, and columns count characters. */
	CHECK_STR(yaml_err(MIN "  env: {É: x}\n"),
		  "web.yaml:4:9: task.env.É: expected an environment variable name such as "
		  "GREETING, found 'É'");
	CHECK_STR(yaml_err(MIN "  env: {A: \"é\", B: [x]}\n"),
		  "web.yaml:4:20: task.env.B: expected a string, found a list");
	/* A UTF-8 byte order mark is skipped. */
	struct job_spec *s = yaml_ok("\xef\xbb\xbf" MIN);
	spec_free(s);
}

TEST(error_deep_nesting)
{
	char buf[4096];
	size_t n = 0;
	n += (size_t)snprintf(buf, sizeof buf, "job: ");
	for (int i = 0; i < 1000; i++)
		buf[n++] = '[';
	buf[n] = 0;
	const char *m = yaml_err(buf);
	CHECK_CONTAINS(m, "expected at most 32 levels of nesting, found deeper nesting");
	CHECK_CONTAINS(m, "web.yaml:1:37: job[0][0]");
	/* 10000 levels of flow maps: refused without recursing that deep. */
	static char deep[50000];
	n = 0;
	for (int i = 0; i < 10000; i++)
		deep[n++] = '{', deep[n++] = 'a', deep[n++] = ':', deep[n++] = ' ';
	deep[n] = 0;
	CHECK_CONTAINS(yaml_err(deep), "expected at most 32 levels of nesting");
}

TEST(only_first_error)
{
	const char *m = yaml_err("job: a/prod/b\ninstances: x\ntype: y\ntask: {command: x}\n");
	CHECK_STR(m,
		  "web.yaml:2:12: instances: expected an integer between 0 and 100000, found 'x'");
	/* A stale message from the caller is replaced, not appended to. */
	struct berr e;
	struct job_spec *s;
	berr_set(&e, 500, "old");
	CHECK(spec_parse_yaml("job: x", 6, "f.yaml", &s, &e) == -1);
	CHECK(e.code == 400);
	CHECK(!strstr(e.msg, "old"));
}

/* ---- cron ---- */

TEST(cron_schedule)
{
	struct job_spec *s =
	    yaml_ok("job: a/prod/b\ntype: cron\nschedule: \"*/5  *\t* * MON-FRI\"\n"
		    "cron_collision: cancel_new\ntask: {command: x}\n");
	if (s) {
		CHECK(s->type == JOB_CRON);
		CHECK_STR(s->schedule, "*/5 * * * MON-FRI");
		CHECK(s->cron_collision == CRON_CANCEL_NEW);
		check_round_trip(s);
		spec_free(s);
	}
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntype: cron\ntask: {command: x}\n"),
	    "web.yaml:2:7: schedule: expected a cron schedule such as '*/5 * * * *' for a cron "
	    "job, found nothing");
	CHECK_STR(yaml_err("job: a/prod/b\ntype: cron\nschedule: \"\"\ntask: {command: x}\n"),
		  "web.yaml:3:11: schedule: expected a cron schedule such as '*/5 * * * *' for a "
		  "cron job, found ''");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntype: cron\nschedule: \"* * * *\"\ntask: {command: x}\n"),
	    "web.yaml:3:11: schedule: expected a cron schedule of 5 fields such as '*/5 * * * "
	    "*', found '* * * *'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntype: cron\nschedule: \"* * * * * *\"\ntask: {command: "
		     "x}\n"),
	    "web.yaml:3:11: schedule: expected a cron schedule of 5 fields such as '*/5 * * * "
	    "*', found '* * * * * *'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntype: cron\nschedule: \"* * * * ;\"\ntask: {command: x}\n"),
	    "web.yaml:3:11: schedule: expected a cron schedule of 5 fields such as '*/5 * * * "
	    "*', found '* * * * ;'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\nschedule: \"* * * * *\"\ntask: {command: x}\n"),
	    "web.yaml:2:11: schedule: expected no schedule for a service job (use type: cron), "
	    "found '* * * * *'");
	/* The order of type and schedule does not matter. */
	s = yaml_ok("job: a/prod/b\nschedule: 0 3 * * *\ntask: {command: x}\ntype: cron\n");
	if (s) {
		CHECK_STR(s->schedule, "0 3 * * *");
		spec_free(s);
	}
}

/* ---- constraints ---- */

TEST(constraints)
{
	struct job_spec *s = yaml_ok(MIN "  constraints:\n    rack: r1\n    zone: \"!a, b\"\n"
					 "    host: limit:1\n    os.version: 12\n    dc: \"!x\"\n");
	if (!s)
		return;
	CHECK(s->task.nconstraints == 5);
	struct constraint *k = s->task.constraints;
	CHECK_STR(k[0].attribute, "rack");
	CHECK(k[0].kind == CONSTRAINT_VALUE && !k[0].negated && k[0].nvalues == 1);
	CHECK_STR(k[0].values[0], "r1");
	CHECK_STR(k[1].attribute, "zone");
	CHECK(k[1].kind == CONSTRAINT_VALUE && k[1].negated && k[1].nvalues == 2);
	CHECK_STR(k[1].values[0], "a");
	CHECK_STR(k[1].values[1], "b");
	CHECK(k[2].kind == CONSTRAINT_LIMIT && k[2].limit == 1);
	CHECK_STR(k[3].values[0], "12");
	CHECK(k[4].negated);
	json_t *j = spec_task_to_json(s);
	json_t *c = json_object_get(j, "constraints");
	CHECK_STR(json_string_value(json_object_get(c, "zone")), "!a,b");
	CHECK_STR(json_string_value(json_object_get(c, "host")), "limit:1");
	CHECK_STR(json_string_value(json_object_get(c, "rack")), "r1");
	json_decref(j);
	check_round_trip(s);
	spec_free(s);

	const char *bad[] = {"\"limit:0\"", "\"limit:x\"", "\"limit:\"", "\"!limit:1\"",
			     "\"a,,b\"",    "\"!\"",	   "\"a,!b\"",	 "\"a b\"",
			     "\"\"",	    "\"limit:-1\""};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char text[256], want[256];
		snprintf(text, sizeof text, MIN "  constraints: {rack: %s}\n", bad[i]);
		snprintf(
		    want, sizeof want,
		    "web.yaml:4:23: task.constraints.rack: expected a constraint such as 'r1', "
		    "'!r3', 'a,b' or 'limit:1', found '%.*s'",
		    (int)strlen(bad[i]) - 2, bad[i] + 1);
		CHECK_STR(yaml_err(text), want);
	}
	CHECK_STR(yaml_err(MIN "  constraints: {\"ra ck\": x}\n"),
		  "web.yaml:4:17: task.constraints.ra ck: expected an attribute name such as rack, "
		  "found 'ra ck'");
	CHECK_STR(
	    yaml_err(MIN "  constraints: {rack: [a, b]}\n"),
	    "web.yaml:4:23: task.constraints.rack: expected a constraint such as 'r1', '!r3', "
	    "'a,b' or 'limit:1', found a list");
}

/* ---- health ---- */

TEST(health_checks)
{
	struct job_spec *s =
	    yaml_ok(MIN "  resources: {ports: [admin]}\n  health: {tcp: true, port: "
			"admin}\n");
	if (s) {
		CHECK(s->task.health.kind == HEALTH_TCP);
		CHECK_STR(s->task.health.port, "admin");
		check_round_trip(s);
		spec_free(s);
	}
	s = yaml_ok(MIN "  health:\n    command: [check, --fast]\n    interval: 1s\n");
	if (s) {
		CHECK(s->task.health.kind == HEALTH_COMMAND);
		CHECK(s->task.health.ncommand == 2);
		CHECK_STR(s->task.health.command[1], "--fast");
		CHECK_STR(s->task.health.port, "");
		check_round_trip(s);
		spec_free(s);
	}
	s = yaml_ok(MIN "  health: {command: test -f /ready, tcp: false}\n");
	if (s) {
		CHECK(s->task.health.kind == HEALTH_COMMAND);
		CHECK_STR(s->task.health.command[2], "test -f /ready");
		spec_free(s);
	}
	/* Timings without a check are kept (and round trip) but check nothing. */
	s = yaml_ok(MIN "  health: {interval: 3s}\n");
	if (s) {
		CHECK(s->task.health.kind == HEALTH_NONE);
		CHECK(s->task.health.interval_ms == 3000);
		check_round_trip(s);
		spec_free(s);
	}
	CHECK_STR(yaml_err(MIN "  health: {http: /h}\n  resources: {ports: [http]}\n"),
		  "web.yaml:4:11: task.health.port: expected a port from task.resources.ports for "
		  "the check, found nothing");
	CHECK_STR(yaml_err(MIN "  health: {http: /h, port: admin}\n  resources: {ports: [http]}\n"),
		  "web.yaml:4:28: task.health.port: expected a port declared in "
		  "task.resources.ports, found 'admin'");
	CHECK_STR(yaml_err(MIN "  health: {http: health}\n"),
		  "web.yaml:4:18: task.health.http: expected an http path such as /health, found "
		  "'health'");
	CHECK_STR(
	    yaml_err(MIN "  health: {http: /h, tcp: true}\n"),
	    "web.yaml:4:27: task.health.tcp: expected only one of http, tcp or command, found "
	    "'true'");
	CHECK_STR(
	    yaml_err(MIN "  health: {command: x, port: http}\n  resources: {ports: [http]}\n"),
	    "web.yaml:4:30: task.health.port: expected no port without an http or tcp check, "
	    "found 'http'");
	CHECK_STR(yaml_err(MIN "  health: {tcp: 1}\n"),
		  "web.yaml:4:17: task.health.tcp: expected true or false, found '1'");
	CHECK_STR(yaml_err(MIN "  health: {command: []}\n"),
		  "web.yaml:4:21: task.health.command: expected a command (a list of strings or a "
		  "string), found an empty list");
}

/* ---- ports, image, user ---- */

TEST(ports)
{
	struct job_spec *s = yaml_ok(MIN "  resources: {ports: [http, admin-2, x_y]}\n");
	if (s) {
		CHECK(s->task.resources.nports == 3);
		CHECK_STR(s->task.resources.ports[1], "admin-2");
		spec_free(s);
	}
	CHECK_STR(yaml_err(MIN "  resources: {ports: [Http]}\n"),
		  "web.yaml:4:23: task.resources.ports[0]: expected a port name such as http "
		  "([a-z][a-z0-9_-]*), found 'Http'");
	CHECK_STR(yaml_err(MIN "  resources: {ports: [a, 8080]}\n"),
		  "web.yaml:4:26: task.resources.ports[1]: expected a port name such as http "
		  "([a-z][a-z0-9_-]*), found '8080'");
	CHECK_STR(
	    yaml_err(MIN "  resources: {ports: http}\n"),
	    "web.yaml:4:22: task.resources.ports: expected a list of port names, found 'http'");
	struct sbuf sb;
	sbuf_init(&sb);
	sbuf_adds(&sb, MIN "  resources: {ports: [");
	for (int i = 0; i < 65; i++)
		sbuf_addf(&sb, "%sp%d", i ? ", " : "", i);
	sbuf_adds(&sb, "]}\n");
	CHECK_STR(yaml_err(sb.buf),
		  "web.yaml:4:22: task.resources.ports: expected at most 64 ports, found 65 ports");
	sbuf_release(&sb);
}

TEST(image_and_driver)
{
	struct job_spec *s = yaml_ok(MIN "  driver: oci\n  image: /var/lib/images/web\n");
	if (s) {
		CHECK(s->task.driver == DRIVER_OCI);
		CHECK_STR(s->task.image, "/var/lib/images/web");
		check_round_trip(s);
		spec_free(s);
	}
	s = yaml_ok(MIN "  driver: docker\n  image: docker.io/library/nginx:1.25\n");
	if (s) {
		CHECK(s->task.driver == DRIVER_DOCKER);
		spec_free(s);
	}
	CHECK_STR(yaml_err(MIN "  driver: docker\n"),
		  "web.yaml:4:11: task.image: expected an image for driver docker, found nothing");
	CHECK_STR(yaml_err(MIN "  driver: oci\n  image: \"\"\n"),
		  "web.yaml:5:10: task.image: expected an image for driver oci, found ''");
	CHECK_STR(
	    yaml_err(MIN "  image: nginx\n"),
	    "web.yaml:4:10: task.image: expected no image for driver exec (use oci or docker), "
	    "found 'nginx'");
}

TEST(user_field)
{
	struct job_spec *s = yaml_ok(MIN "  user: 1000\n");
	if (s) {
		CHECK_STR(s->task.user, "1000");
		spec_free(s);
	}
	s = yaml_ok(MIN "  user: www-data\n");
	if (s) {
		CHECK_STR(s->task.user, "www-data");
		spec_free(s);
	}
	CHECK_STR(yaml_err(MIN "  user: \"root; rm\"\n"),
		  "web.yaml:4:9: task.user: expected a user name or uid, found 'root; rm'");
	CHECK_STR(yaml_err(MIN "  user: -x\n"),
		  "web.yaml:4:9: task.user: expected a user name or uid, found '-x'");
}

/* ---- templates ---- */

TEST(template_validation)
{
	/* Ports may be declared after the command that uses them; spaces
	 * inside the braces are allowed. */
	struct job_spec *s = yaml_ok(
	    "job: a/prod/b\ntask:\n  command: [srv, \"--port={{ ports.http }}\", \"{{instance}}\", "
	    "\"{{task_id}}@{{host}}\"]\n  env: {P: \"{{ports.http}}\"}\n  resources: {ports: "
	    "[http]}\n");
	spec_free(s);
	CHECK_STR(
	    yaml_err(MIN "  env: {A: \"{{instanse}}\"}\n"),
	    "web.yaml:4:12: task.env.A: expected a template {{instance}}, {{task_id}}, {{host}} "
	    "or {{ports.NAME}}, found '{{instanse}}'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntask:\n  command: [a, \"x {{ports.admin}}\"]\n"
		     "  resources: {ports: [http]}\n"),
	    "web.yaml:3:16: task.command[1]: expected a port declared in task.resources.ports, "
	    "found '{{ports.admin}}'");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: echo {{host\n"),
		  "web.yaml:3:12: task.command: expected a template closed by }}, found '{{host'");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: echo {{}}\n"),
		  "web.yaml:3:12: task.command: expected a template {{instance}}, {{task_id}}, "
		  "{{host}} or {{ports.NAME}}, found '{{}}'");
	CHECK_STR(yaml_err("job: a/prod/b\ntask:\n  command: echo {{ports.}}\n"),
		  "web.yaml:3:12: task.command: expected a template {{instance}}, {{task_id}}, "
		  "{{host}} or {{ports.NAME}}, found '{{ports.}}'");
	CHECK_STR(yaml_err(MIN "  health: {command: [\"{{ports.x}}\"]}\n"),
		  "web.yaml:4:22: task.health.command[0]: expected a port declared in "
		  "task.resources.ports, found '{{ports.x}}'");
	/* Single braces are plain text. */
	s = yaml_ok("job: a/prod/b\ntask:\n  command: \"awk '{print $1}' {x}\"\n");
	spec_free(s);
}

TEST(template_expansion)
{
	char *names[] = {"http", "admin"};
	int values[] = {31000, 31001};
	struct template_ctx ctx = {.instance = 7,
				   .task_id = "t-123",
				   .host = "n1",
				   .port_names = names,
				   .port_values = values,
				   .nports = 2};
	char *r = spec_expand("srv --port {{ports.http}} --admin={{ ports.admin }} #{{instance}} "
			      "{{task_id}}@{{host}}",
			      &ctx);
	CHECK_STR(r, "srv --port 31000 --admin=31001 #7 t-123@n1");
	free(r);
	r = spec_expand("no templates {x} }} {", &ctx);
	CHECK_STR(r, "no templates {x} }} {");
	free(r);
	/* What the context cannot fill stays visible as written. */
	r = spec_expand("{{ports.grpc}} {{nope}} {{host", &ctx);
	CHECK_STR(r, "{{ports.grpc}} {{nope}} {{host");
	free(r);
	struct template_ctx empty = {0};
	r = spec_expand("[{{task_id}}][{{host}}][{{instance}}]", &empty);
	CHECK_STR(r, "[][][0]");
	free(r);
	r = spec_expand(NULL, NULL);
	CHECK_STR(r, "");
	free(r);
	r = spec_expand("{{instance}}", NULL);
	CHECK_STR(r, "0");
	free(r);
}

/* ---- JSON ---- */

TEST(json_input_forms)
{
	struct job_spec *s =
	    json_ok("{\"job\": \"a/prod/b\", \"task\": {\"command\": \"echo hi\", "
		    "\"resources\": {\"memory\": 1048576, \"disk\": \"1GiB\", \"cpu\": 2}, "
		    "\"stop_grace\": 2500, \"health\": {\"interval\": \"2s\", \"timeout\": 500, "
		    "\"initial_delay\": \"10\"}}, \"update\": {\"watch\": 0}}");
	if (!s)
		return;
	CHECK(s->task.resources.memory == 1048576);
	CHECK(s->task.resources.disk == 1ULL << 30);
	CHECK(s->task.resources.cpu == 2.0);
	CHECK(s->task.stop_grace_ms == 2500); /* a JSON number is ms */
	CHECK(s->task.health.interval_ms == 2000);
	CHECK(s->task.health.timeout_ms == 500);
	CHECK(s->task.health.initial_delay_ms == 10000); /* a bare string integer is seconds */
	CHECK(s->update.watch_ms == 0);
	CHECK(s->task.ncommand == 3);
	spec_free(s);
}

TEST(json_errors)
{
	CHECK_STR(json_err("{\"job\": \"a/prod/b\", \"task\": {\"command\": \"x\", \"resources\": "
			   "{\"memory\": \"64 potatoes\"}}}"),
		  "task.resources.memory: expected a size such as 64MiB, found '64 potatoes'");
	CHECK_STR(
	    json_err("{\"job\": \"a/prod/b\", \"task\": {\"command\": \"x\"}, \"x\": 1}"),
	    "x: expected one of job, type, instances, schedule, cron_collision, priority, "
	    "tier, max_task_failures, placement, task, update, restart or publish, found 'x'");
	CHECK_STR(
	    json_err("{\"job\": \"a/prod/b\", \"instances\": -3, \"task\": {\"command\": \"x\"}}"),
	    "instances: expected an integer between 0 and 100000, found '-3'");
	CHECK_STR(json_err("{\"job\": \"a/prod/b\", \"instances\": 2.5, \"task\": {\"command\": "
			   "\"x\"}}"),
		  "instances: expected an integer between 0 and 100000, found '2.5'");
	CHECK_STR(json_err("{\"job\": \"a/prod/b\", \"task\": {\"command\": [\"a\", null]}}"),
		  "task.command[1]: expected a string, found 'null'");
	CHECK_STR(json_err("{\"job\": \"a/prod/b\", \"task\": {\"command\": \"x\", \"stop_grace\": "
			   "-1}}"),
		  "task.stop_grace: expected a duration such as 10s, found '-1'");
	CHECK_STR(json_err("{\"job\": \"a/prod/b\"}"),
		  "task: expected a task section with a command, found nothing");
	CHECK_STR(json_err("[1, 2]"),
		  "expected a map of job fields such as job and task, found a list");
	CHECK_STR(json_err("\"job\""),
		  "expected a map of job fields such as job and task, found 'job'");
	json_t *j = json_loads("{\"job\": \"a/prod/b\", \"task\": {\"command\": \"x\", \"env\": "
			       "{\"A\": \"\\u0000\"}}}",
			       JSON_ALLOW_NUL, NULL);
	struct job_spec *s = NULL;
	struct berr e = {0};
	CHECK(spec_parse_json(j, &s, &e) == -1);
	CHECK_STR(e.msg, "task.env.A: expected a string without NUL bytes, found '\\x00'");
	json_decref(j);
	CHECK(spec_parse_json(NULL, &s, &e) == -1);
	CHECK_STR(e.msg, "expected a map of job fields such as job and task, found nothing");
	CHECK(e.code == 400);
	/* Deep JSON is refused with a message, not recursed into. */
	json_t *deep = json_object(), *cur = deep;
	for (int i = 0; i < 100; i++) {
		json_t *k = json_object();
		json_object_set_new(cur, "job", k);
		cur = k;
	}
	CHECK(spec_parse_json(deep, &s, &e) == -1);
	CHECK_CONTAINS(e.msg, "expected at most 32 levels of nesting, found deeper nesting");
	json_decref(deep);
	deep = json_array();
	cur = deep;
	for (int i = 0; i < 100; i++) {
		json_t *k = json_array();
		json_array_append_new(cur, k);
		cur = k;
	}
	CHECK(spec_parse_json(deep, &s, &e) == -1);
	CHECK_STR(e.msg,
		  "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
		  "[0][0][0][0][0][0][0][0]: expected at most 32 levels of nesting, found deeper "
		  "nesting");
	json_decref(deep);
	/* Keys with NUL bytes and strings that are not UTF-8 can be built with
	 * jansson's *n and nocheck calls; neither gets into a spec. */
	j = json_loads("{\"job\": \"a/prod/b\", \"task\": {\"command\": \"x\"}}", 0, NULL);
	json_object_setn_new(j, "jo\0b", 4, json_string("x"));
	CHECK(spec_parse_json(j, &s, &e) == -1);
	CHECK_STR(e.msg, "jo\\x00b: expected a key without NUL bytes, found 'jo\\x00b'");
	json_object_deln(j, "jo\0b", 4);
	json_object_set_new(json_object_get(j, "task"), "user",
			    json_stringn_nocheck("a\xff"
						 "b",
						 3));
	CHECK(spec_parse_json(j, &s, &e) == -1);
	CHECK_STR(e.msg, "task.user: expected a user name or uid of valid utf-8, found 'a\\xffb'");
	json_decref(j);
}

TEST(json_env_numbers_are_text)
{
	struct job_spec *s =
	    json_ok("{\"job\": \"a/prod/b\", \"task\": {\"command\": [\"sleep\", 5], "
		    "\"env\": {\"N\": 42, \"B\": true, \"R\": 0.1, \"S\": "
		    "0.30000000000000004}}}");
	if (!s)
		return;
	CHECK_STR(s->task.command[1], "5");
	CHECK_STR(s->task.env[0].value, "42");
	CHECK_STR(s->task.env[1].value, "true");
	CHECK_STR(s->task.env[2].value, "0.1");
	CHECK_STR(s->task.env[3].value, "0.30000000000000004");
	spec_free(s);
}

TEST(round_trip)
{
	const char *docs[] = {
	    design_example,
	    MIN,
	    "job: b/staging3/c\ntype: batch\ninstances: 0\nmax_task_failures: -1\ntask:\n"
	    "  command: [a, \"é ü \\t\"]\n  env: {Z: \"\", A: \"{{instance}}\"}\n"
	    "  resources: {cpu: 0.1, memory: 1.5GiB, disk: 1}\n"
	    "  health: {command: check}\n  stop_grace: 0\n"
	    "update: {watch: 250ms, rollback_on_failure: no}\n",
	    "job: c/test/d\ntype: cron\nschedule: '0 * * * *'\ntask:\n  driver: docker\n"
	    "  image: busybox\n  command: [\"true\"]\n  resources: {cpu: 3.14159265358979, "
	    "memory: 1}\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(docs); i++) {
		struct job_spec *s = yaml_ok(docs[i]);
		if (!s)
			continue;
		check_round_trip(s);
		spec_free(s);
	}
	/* The canonical form is fully specified. */
	struct job_spec *s = yaml_ok(MIN);
	if (!s)
		return;
	json_t *j = spec_to_json(s);
	char *d = json_dumps(j, 0);
	CHECK_STR(
	    d, "{\"job\": \"alice/devel/web\", \"type\": \"service\", \"instances\": 1, "
	       "\"schedule\": \"\", \"cron_collision\": \"kill_existing\", \"priority\": 0, "
	       "\"tier\": \"preemptible\", "
	       "\"max_task_failures\": 1, \"placement\": \"binpack\", \"task\": {\"driver\": "
	       "\"exec\", \"image\": \"\", \"command\": [\"/bin/true\"], \"env\": {}, \"user\": "
	       "\"\", \"resources\": {\"cpu\": 1.0, \"memory\": 134217728, \"disk\": 0, \"ports\": "
	       "[]}, \"constraints\": {}, \"health\": {\"interval\": 10000, \"timeout\": 1000, "
	       "\"failures\": 3, \"successes\": 1, \"initial_delay\": 15000}, \"stop_grace\": "
	       "10000}, \"update\": {\"batch_size\": 1, \"watch\": 10000, "
	       "\"max_instance_failures\": 0, \"max_total_failures\": 0, \"rollback_on_failure\": "
	       "true, \"order\": \"stop_first\"}}");
	free(d);
	json_decref(j);
	spec_free(s);
}

TEST(task_json_equivalence)
{
	struct job_spec *a = yaml_ok(MIN "  env: {A: x, B: y}\n");
	struct job_spec *b =
	    yaml_ok("job: bob/prod/other\ninstances: 9\ntask:\n  env: {B: y, A: x}\n"
		    "  command: [/bin/true]\n");
	struct job_spec *c = yaml_ok(MIN "  env: {A: x, B: z}\n");
	if (!a || !b || !c)
		return;
	json_t *ja = spec_task_to_json(a), *jb = spec_task_to_json(b), *jc = spec_task_to_json(c);
	CHECK(json_equal(ja, jb)); /* same task, other job fields */
	CHECK(!json_equal(ja, jc));
	char *da = json_dumps(ja, JSON_SORT_KEYS), *db = json_dumps(jb, JSON_SORT_KEYS);
	CHECK_STR(da, db);
	free(da);
	free(db);
	json_decref(ja);
	json_decref(jb);
	json_decref(jc);
	spec_free(a);
	spec_free(b);
	spec_free(c);
}

TEST(update_section)
{
	struct job_spec *s = yaml_ok(MIN "update:\n  batch_size: 10\n  watch: 0\n  order: "
					 "start_first\n  rollback_on_failure: off\n");
	struct job_spec *q = yaml_ok(MIN "update: {rollback_on_failure: \"false\"}\n");
	if (q) {
		CHECK(!q->update.rollback_on_failure);
		spec_free(q);
	}
	if (!s)
		return;
	CHECK(s->update.batch_size == 10);
	CHECK(s->update.watch_ms == 0);
	CHECK(s->update.order == UPDATE_START_FIRST);
	CHECK(!s->update.rollback_on_failure);
	spec_free(s);
	CHECK_STR(yaml_err(MIN "update: 3\n"),
		  "web.yaml:4:9: update: expected a map of update settings, found '3'");
}

TEST(volumes)
{
	struct job_spec *s = yaml_ok(MIN "  volumes:\n"
					 "    - {host: /srv/data, path: /data, read_only: true}\n"
					 "    - {host: /srv/scratch, path: /scratch}\n");
	if (s) {
		CHECK(s->task.nvolumes == 2);
		CHECK_STR(s->task.volumes[0].host, "/srv/data");
		CHECK_STR(s->task.volumes[0].path, "/data");
		CHECK(s->task.volumes[0].read_only);
		CHECK_STR(s->task.volumes[1].host, "/srv/scratch");
		CHECK(!s->task.volumes[1].read_only);
		json_t *j = spec_task_to_json(s);
		char *txt = json_dumps(json_object_get(j, "volumes"), JSON_COMPACT);
		CHECK_STR(txt,
			  "[{\"host\":\"/srv/data\",\"path\":\"/data\",\"read_only\":true},"
			  "{\"host\":\"/srv/scratch\",\"path\":\"/scratch\",\"read_only\":false}]");
		free(txt);
		/* The canonical JSON parses back to the same volumes. */
		json_t *full = spec_to_json(s);
		struct job_spec *r = NULL;
		struct berr e = {0};
		CHECK(spec_parse_json(full, &r, &e) == 0);
		if (r) {
			json_t *j2 = spec_task_to_json(r);
			CHECK(json_equal(j, j2));
			json_decref(j2);
			spec_free(r);
		}
		json_decref(full);
		json_decref(j);
		spec_free(s);
	}
	/* No volumes: no "volumes" key, so existing canonical JSON is unchanged. */
	s = yaml_ok(MIN "  volumes: []\n");
	if (s) {
		json_t *j = spec_task_to_json(s);
		CHECK(json_object_get(j, "volumes") == NULL);
		json_decref(j);
		spec_free(s);
	}

	CHECK_STR(yaml_err(MIN "  volumes: /srv\n"),
		  "web.yaml:4:12: task.volumes: expected a list of volumes such as "
		  "{host: /srv/data, path: /data}, found '/srv'");
	CHECK_STR(yaml_err(MIN "  volumes: [/srv]\n"),
		  "web.yaml:4:13: task.volumes[0]: expected a map with host, path and read_only, "
		  "found '/srv'");
	CHECK_STR(yaml_err(MIN "  volumes: [{host: srv, path: /data}]\n"),
		  "web.yaml:4:20: task.volumes[0].host: expected an absolute path without '..', "
		  "found 'srv'");
	CHECK_STR(yaml_err(MIN "  volumes: [{host: /srv, path: /data/../etc}]\n"),
		  "web.yaml:4:32: task.volumes[0].path: expected an absolute path without '..', "
		  "found '/data/../etc'");
	/* Bind-string separators, the root and control characters: refused at
	 * submit (a ':' once injected Docker bind options). */
	CHECK_STR(yaml_err(MIN "  volumes: [{host: '/srv:/etc:rw', path: /data}]\n"),
		  "web.yaml:4:20: task.volumes[0].host: expected a path other than '/' without "
		  "':', ',' or control characters (this one has a ':'), found '/srv:/etc:rw'");
	CHECK(strstr(yaml_err(MIN "  volumes: [{host: /, path: /data}]\n"),
		     "(this one has nothing but '/'), found '/'") != NULL);
	CHECK(strstr(yaml_err(MIN "  volumes: [{host: /srv, path: '/a,b'}]\n"),
		     "task.volumes[0].path: expected a path other than '/'") != NULL);
	CHECK(strstr(yaml_err(MIN "  volumes: [{host: /srv, path: /}]\n"), "nothing but '/'") !=
	      NULL);
	CHECK(strstr(yaml_err(MIN "  volumes: [{host: \"/srv\\nx\", path: /d}]\n"),
		     "a control character") != NULL);
	CHECK_STR(yaml_err(MIN "  volumes: [{path: /data}]\n"),
		  "web.yaml:4:13: task.volumes[0].host: expected a host path such as /srv/data, "
		  "found nothing");
	CHECK_STR(yaml_err(MIN "  volumes: [{host: /srv}]\n"),
		  "web.yaml:4:13: task.volumes[0].path: expected a path in the task such as /data, "
		  "found nothing");
	CHECK_STR(yaml_err(MIN "  volumes: [{host: /a, path: /d, read_only: yes please}]\n"),
		  "web.yaml:4:45: task.volumes[0].read_only: expected true or false, "
		  "found 'yes please'");
	CHECK_STR(yaml_err(MIN "  volumes: [{host: /a, path: /d, mode: ro}]\n"),
		  "web.yaml:4:34: task.volumes[0].mode: expected one of host, path or read_only, "
		  "found 'mode'");
	CHECK_STR(
	    yaml_err(MIN "  volumes:\n    - {host: /a, path: /d}\n    - {host: /b, path: /d}\n"),
	    "web.yaml:6:24: task.volumes[1].path: expected each volume path once, "
	    "found '/d' again");
	CHECK_STR(json_err("{\"job\": \"a/devel/c\", \"task\": {\"command\": \"x\", "
			   "\"volumes\": [{\"host\": \"/a\", \"path\": \"rel\"}]}}"),
		  "task.volumes[0].path: expected an absolute path without '..', found 'rel'");
}

TEST(spec_free_null)
{
	spec_free(NULL);
	CHECK(1);
}

TEST(secrets)
{
	struct job_spec *s = yaml_ok(MIN "  secrets:\n"
					 "    - {name: db-pass}\n"
					 "    - {name: tls_key, path: /etc/app/key.pem}\n");
	if (s) {
		CHECK(s->task.nsecrets == 2);
		CHECK_STR(s->task.secrets[0].name, "db-pass");
		CHECK_STR(s->task.secrets[0].path, "/run/secrets/db-pass");
		CHECK(s->task.secrets[0].version == 0);
		CHECK_STR(s->task.secrets[1].path, "/etc/app/key.pem");
		s->task.secrets[1].version = 3; /* the server resolves versions */
		json_t *j = spec_task_to_json(s);
		char *txt = json_dumps(json_object_get(j, "secrets"), JSON_COMPACT);
		CHECK_STR(txt, "[{\"name\":\"db-pass\",\"path\":\"/run/secrets/db-pass\","
			       "\"version\":0},{\"name\":\"tls_key\",\"path\":\"/etc/app/key.pem\","
			       "\"version\":3}]");
		free(txt);
		/* The canonical JSON parses back to the same secrets. */
		json_t *full = spec_to_json(s);
		struct job_spec *r = NULL;
		struct berr e = {0};
		CHECK(spec_parse_json(full, &r, &e) == 0);
		if (r) {
			json_t *j2 = spec_task_to_json(r);
			CHECK(json_equal(j, j2));
			CHECK(r->task.secrets[1].version == 3);
			json_decref(j2);
			spec_free(r);
		}
		json_decref(full);
		json_decref(j);
		spec_free(s);
	}
	s = yaml_ok(MIN "  secrets: []\n");
	if (s) {
		json_t *j = spec_task_to_json(s);
		CHECK(json_object_get(j, "secrets") == NULL);
		json_decref(j);
		spec_free(s);
	}
	CHECK_STR(yaml_err(MIN "  secrets: db-pass\n"),
		  "web.yaml:4:12: task.secrets: expected a list of secrets such as "
		  "{name: db-pass, path: /run/secrets/db-pass}, found 'db-pass'");
	CHECK_STR(yaml_err(MIN "  secrets: [{path: /x}]\n"),
		  "web.yaml:4:13: task.secrets[0].name: expected a secret name such as db-pass, "
		  "found nothing");
	CHECK_STR(yaml_err(MIN "  secrets: [{name: alice/db}]\n"),
		  "web.yaml:4:20: task.secrets[0].name: expected a secret name of the job's role "
		  "such as db-pass ([a-z0-9_-]), found 'alice/db'");
	CHECK_STR(yaml_err(MIN "  secrets: [{name: db, path: run/db}]\n"),
		  "web.yaml:4:30: task.secrets[0].path: expected an absolute path without '..', "
		  "found 'run/db'");
	CHECK_STR(yaml_err(MIN "  secrets: [{name: db, path: /run/../etc/shadow}]\n"),
		  "web.yaml:4:30: task.secrets[0].path: expected an absolute path without '..', "
		  "found '/run/../etc/shadow'");
	CHECK_STR(yaml_err(MIN "  secrets: [{name: db, path: /run/}]\n"),
		  "web.yaml:4:30: task.secrets[0].path: expected a file path such as "
		  "/run/secrets/db-pass, found '/run/'");
	CHECK_STR(yaml_err(MIN "  secrets: [{name: db}, {name: db, path: /x}]\n"),
		  "web.yaml:4:32: task.secrets[1].name: expected each secret name once, "
		  "found 'db' again");
	CHECK_STR(yaml_err(MIN "  secrets: [{name: a, path: /x}, {name: b, path: /x}]\n"),
		  "web.yaml:4:50: task.secrets[1].path: expected each secret path once, "
		  "found '/x' again");
	CHECK_STR(yaml_err(MIN "  secrets: [{name: a, mode: 0400}]\n"),
		  "web.yaml:4:23: task.secrets[0].mode: expected one of name, path or version, "
		  "found 'mode'");
	CHECK_STR(json_err("{\"job\":\"a/prod/b\",\"task\":{\"command\":\"x\","
			   "\"secrets\":[{\"name\":\"a\",\"version\":-1}]}}"),
		  "task.secrets[0].version: expected an integer between 0 and 2147483647, "
		  "found '-1'");
}

TEST(network_defaults_per_driver_and_canonical_json)
{
	struct job_spec *s = yaml_ok("job: a/prod/x\ntask:\n  command: [\"true\"]\n");
	CHECK(s->task.network == NETWORK_BRIDGE);
	json_t *j = spec_task_to_json(s);
	CHECK(json_object_get(json_object_get(j, "task"), "network") == NULL &&
	      json_object_get(j, "network") == NULL);
	json_decref(j);
	spec_free(s);
	s = yaml_ok("job: a/prod/x\ntask:\n  network: host\n  command: [\"true\"]\n");
	CHECK(s->task.network == NETWORK_HOST);
	j = spec_to_json(s);
	CHECK_STR(json_string_value(json_object_get(json_object_get(j, "task"), "network")),
		  "host");
	/* The canonical JSON parses back to the same. */
	struct job_spec *back = NULL;
	struct berr err = {0};
	CHECK(spec_parse_json(j, &back, &err) == 0);
	CHECK(back && back->task.network == NETWORK_HOST);
	spec_free(back);
	json_decref(j);
	spec_free(s);
	s = yaml_ok(
	    "job: a/prod/x\ntask:\n  driver: docker\n  image: busybox\n  command: [\"true\"]\n");
	CHECK(s->task.network == NETWORK_BRIDGE);
	spec_free(s);
	s = yaml_ok("job: a/prod/x\ntask:\n  driver: docker\n  image: busybox\n  network: host\n"
		    "  command: [\"true\"]\n");
	CHECK(s->task.network == NETWORK_HOST);
	j = spec_to_json(s);
	CHECK_STR(json_string_value(json_object_get(json_object_get(j, "task"), "network")),
		  "host");
	json_decref(j);
	spec_free(s);
}

#define PUB_TASK "task:\n  command: [/bin/true]\n  resources: {ports: [http, admin]}\n"

TEST(publish)
{
	struct job_spec *s = yaml_ok("job: alice/devel/web\n"
				     "publish: [{port: 8080, target: http}, {port: 9090, target: "
				     "admin, mode: host}]\n" PUB_TASK "  drain_delay: 500ms\n");
	if (s) {
		CHECK(s->npublish == 2);
		CHECK(s->publish[0].port == 8080);
		CHECK_STR(s->publish[0].target, "http");
		CHECK(s->publish[0].mode == PUBLISH_INGRESS);
		CHECK(s->publish[1].mode == PUBLISH_HOST);
		CHECK(s->task.drain_delay_ms == 500);
		check_round_trip(s);
		json_t *j = spec_to_json(s);
		char *txt = json_dumps(json_object_get(j, "publish"), JSON_COMPACT);
		CHECK_STR(txt, "[{\"port\":8080,\"target\":\"http\",\"mode\":\"ingress\"},"
			       "{\"port\":9090,\"target\":\"admin\",\"mode\":\"host\"}]");
		free(txt);
		json_decref(j);
		spec_free(s);
	}
	/* Defaults: no publish, a 2 s drain that the canonical task JSON
	 * leaves out (older specs keep their config version). */
	s = yaml_ok(MIN);
	if (s) {
		CHECK(s->npublish == 0);
		CHECK(s->task.drain_delay_ms == SPEC_DEFAULT_DRAIN_DELAY_MS);
		json_t *j = spec_to_json(s);
		CHECK(!json_object_get(j, "publish"));
		CHECK(!json_object_get(json_object_get(j, "task"), "drain_delay"));
		json_decref(j);
		spec_free(s);
	}
	CHECK_STR(yaml_err("job: a/prod/b\npublish: [{port: 8080, target: web}]\n" PUB_TASK),
		  "web.yaml:2:32: publish[0].target: expected a port declared in "
		  "task.resources.ports, found 'web'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\npublish: [{port: 0, target: http}]\n" PUB_TASK),
	    "web.yaml:2:18: publish[0].port: expected an integer between 1 and 65535, found '0'");
	CHECK_STR(yaml_err("job: a/prod/b\npublish: [{port: 80, target: http}, {port: 80, "
			   "target: admin}]\n" PUB_TASK),
		  "web.yaml:2:44: publish[1].port: expected each published port once, found 80 "
		  "again");
	CHECK_STR(
	    yaml_err("job: a/prod/b\npublish: [{target: http}]\n" PUB_TASK),
	    "web.yaml:2:11: publish[0].port: expected a port number such as 8080, found nothing");
	CHECK_STR(
	    yaml_err("job: a/prod/b\npublish: [{port: 80, target: http, mode: nat}]\n" PUB_TASK),
	    "web.yaml:2:42: publish[0].mode: expected ingress or host, found 'nat'");
	CHECK_STR(
	    yaml_err("job: a/prod/b\ntype: batch\npublish: [{port: 80, target: http}]\n" PUB_TASK),
	    "web.yaml:3:10: publish: expected no published port for a batch job, found a list");
	CHECK_STR(yaml_err("job: a/prod/b\npublish: 80\n" PUB_TASK),
		  "web.yaml:2:10: publish: expected a list of published ports such as {port: 8080, "
		  "target: http}, found '80'");
}

UNIT_MAIN(network_defaults_per_driver_and_canonical_json, defaults_minimal, full_example,
	  command_forms, env_values_are_text, empty_sections_are_empty, sizes, durations, job_keys,
	  job_key_in_spec, tier_defaults_by_environment, error_unknown_key, error_wrong_type,
	  error_sizes_and_durations, error_missing_fields, error_enums, error_integer_ranges,
	  error_huge_numbers, error_duplicate_keys, error_yaml_syntax, error_aliases_tags_and_keys,
	  error_documents, error_bytes, error_deep_nesting, only_first_error, cron_schedule,
	  constraints, health_checks, ports, image_and_driver, user_field, template_validation,
	  template_expansion, json_input_forms, json_errors, json_env_numbers_are_text, round_trip,
	  task_json_equivalence, update_section, volumes, secrets, publish, spec_free_null)
