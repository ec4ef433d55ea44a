/* spec.h - job specs: YAML and JSON parsing, validation, canonical JSON,
 * templates, sizes and durations.
 *
 * A job spec is what a user writes (YAML, see docs/spec.md) or what the API
 * receives (the same document as JSON). Both go through one validator and
 * produce a `struct job_spec`. spec_to_json() gives the canonical JSON form
 * (every field present, defaults filled in, sizes in bytes, durations in ms)
 * that the server stores and that the CLI POSTs; spec_parse_json() of that
 * form gives back an equal spec.
 *
 * Errors: YAML errors read
 *     web.yaml:7:12: task.resources.memory: expected a size such as 64MiB, found '64 potatoes'
 * JSON errors (no positions) read
 *     task.resources.memory: expected a size such as 64MiB, found '64 potatoes'
 * and set berr.code = 400.
 */
#ifndef BERTH_SPEC_H
#define BERTH_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/util.h"

/* The most instances a job may have (docs/spec.md lists every limit). */
#define SPEC_MAX_INSTANCES 100000
/* The default task.drain_delay (ms). */
#define SPEC_DEFAULT_DRAIN_DELAY_MS 2000

enum job_type { JOB_SERVICE = 0, JOB_BATCH, JOB_CRON };
enum cron_collision { CRON_KILL_EXISTING = 0, CRON_CANCEL_NEW };
enum placement_strategy { PLACE_BINPACK = 0, PLACE_SPREAD };
enum update_order { UPDATE_STOP_FIRST = 0, UPDATE_START_FIRST };
/* Aurora's tiers (docs/scheduling.md): preferred work is production: it
 * counts against its role's quota and is never preempted by other tiers;
 * preemptible work fills the rest and steps aside. The default is preferred
 * for the prod environment, preemptible for every other one. */
enum job_tier { TIER_PREFERRED = 0, TIER_PREEMPTIBLE };

struct spec_kv {
	char *key;
	char *value;
};

/* Aurora constraints:
 *   rack: r1        value, the attribute must equal one of values
 *   rack: "!r3"     value, negated: must equal none of values
 *   zone: "a,b"     value with two alternatives
 *   host: "limit:1" limit: at most `limit` active tasks of this job per
 *                   distinct value of the attribute */
enum constraint_kind { CONSTRAINT_VALUE = 0, CONSTRAINT_LIMIT };
struct constraint {
	char *attribute;
	enum constraint_kind kind;
	bool negated;
	char **values;
	size_t nvalues;
	int limit;
};

struct resources {
	double cpu;	 /* cores, > 0 */
	uint64_t memory; /* bytes, > 0 */
	uint64_t disk;	 /* bytes, 0 = not set */
	char **ports;	 /* named ports, unique names */
	size_t nports;
};

enum health_kind { HEALTH_NONE = 0, HEALTH_HTTP, HEALTH_TCP, HEALTH_COMMAND };
struct health_spec {
	enum health_kind kind;
	char *http_path; /* HEALTH_HTTP */
	char *port;	 /* HEALTH_HTTP / HEALTH_TCP: a named port */
	char **command;	 /* HEALTH_COMMAND */
	size_t ncommand;
	uint64_t interval_ms, timeout_ms, initial_delay_ms;
	int failures;  /* consecutive failures tolerated before the task is killed */
	int successes; /* consecutive successes needed to become RUNNING */
};

/* A graceful step before SIGTERM (Aurora's /quitquitquit): the agent POSTs
 * to http_path on the named port, waits up to wait_ms for the task to exit,
 * then the usual SIGTERM, stop_grace, SIGKILL. */
struct shutdown_spec {
	char *http_path; /* "" = no graceful step */
	char *port;
	uint64_t wait_ms;
};

/* How a service instance is restarted when its task ends. Unset (the
 * default), Aurora's flapping throttle applies. When set: the n-th restart
 * within `window_ms` waits delay_ms * 2^(n-1), capped at max_delay_ms; more
 * than max_attempts restarts within the window (0 = no limit) and the
 * instance is given up. */
struct restart_policy {
	bool set;
	uint64_t delay_ms;
	uint64_t max_delay_ms;
	int max_attempts;
	uint64_t window_ms;
};

/* A host path bound into the task at `path`. For the exec driver the task
 * sees the host's root, so `path` is a host path that the bind overlays
 * inside the task's private mount namespace. */
struct volume {
	char *host;	/* absolute, no ".." */
	char *path;	/* absolute, no "..", unique within the task */
	bool read_only; /* default false */
};

/* A secret of the job's role (berth secret create ROLE/NAME) that the agent
 * writes on a tmpfs and shows the task at `path`, mode 0400, owned by the
 * task's user (docs/security.md, "Secrets"). `version` is not the user's:
 * the server sets it at submit to the secret's newest version, so a new
 * version of a secret is a new task config (a rolling update). */
struct secret_ref {
	char *name;  /* NAME within the job's role: [a-z0-9_-], at most 64 */
	char *path;  /* absolute, no "..", unique within the task; default /run/secrets/NAME */
	int version; /* 0 = not resolved yet */
};

/* Who runs the task on the node: the agent's drivers (agent/driver/).
 * Written "exec", "oci" or "docker" in specs, launch.json and the wire
 * protocol. */
enum task_driver { DRIVER_EXEC = 0, DRIVER_OCI, DRIVER_DOCKER };
#define TASK_DRIVER_COUNT 3

/* "exec", "oci", "docker" ("exec" for a value out of range). */
const char *task_driver_name(enum task_driver d);
/* The driver called `name`; 0, or -EINVAL for an unknown name. */
int task_driver_parse(const char *name, enum task_driver *out);

/* host: the node's network; bridge: a network namespace of its own with an
 * address on the node's subnet (docs/networking.md). */
enum task_network { NETWORK_HOST = 0, NETWORK_BRIDGE };
const char *task_network_name(enum task_network n);
/* A task without `network`: bridge, for every driver (kept a function of
 * the driver so that one may differ again). */
enum task_network task_network_default(enum task_driver d);

struct task_spec {
	enum task_driver driver;   /* default DRIVER_EXEC */
	enum task_network network; /* default: task_network_default(driver) */
	char *image;		   /* "" for exec */
	char **command;		   /* argv; a YAML/JSON string becomes {"/bin/sh","-c",s} */
	size_t ncommand;
	struct spec_kv *env;
	size_t nenv;
	char *user; /* "" = the agent's user */
	struct resources resources;
	struct constraint *constraints;
	size_t nconstraints;
	struct health_spec health;
	struct shutdown_spec shutdown;
	uint64_t stop_grace_ms;
	struct volume *volumes;
	size_t nvolumes;
	struct secret_ref *secrets;
	size_t nsecrets;
	/* How long an instance of a published job stays out of the mesh's
	 * rotation, still running, before its graceful step and SIGTERM. */
	uint64_t drain_delay_ms;
};

/* The routing mesh (docs/networking.md): a port every node accepts on
 * (ingress) or only the nodes running an instance (host), spread over the
 * job's instances in rotation, on their named port `target`. */
enum publish_mode { PUBLISH_INGRESS = 0, PUBLISH_HOST };
struct publish_spec {
	int port;     /* 1..65535, outside the agents' task port range */
	char *target; /* a port declared in task.resources.ports */
	enum publish_mode mode;
};
/* "preferred", "preemptible". */
const char *job_tier_name(enum job_tier t);
/* "ingress", "host" ("ingress" for a value out of range). */
const char *publish_mode_name(enum publish_mode m);

struct update_spec {
	int batch_size;
	uint64_t watch_ms;
	int max_instance_failures;
	int max_total_failures;
	bool rollback_on_failure;
	enum update_order order;
};

struct job_spec {
	char *key; /* role/environment/name */
	char *role, *environment, *name;
	enum job_type type;
	int instances;	/* >= 0 */
	char *schedule; /* cron only, else "" */
	enum cron_collision cron_collision;
	int priority;
	enum job_tier tier;
	int max_task_failures; /* -1 unlimited */
	enum placement_strategy placement;
	struct task_spec task;
	struct update_spec update;
	struct restart_policy restart;
	struct publish_spec *publish; /* unique ports */
	size_t npublish;
};

/* Parse and validate a YAML document. `filename` is used in messages only.
 * On success *out is a new spec (spec_free it) and 0 is returned. */
int spec_parse_yaml(const char *text, size_t len, const char *filename, struct job_spec **out,
		    struct berr *err);
/* Parse and validate a JSON object (as POSTed to /v1/jobs). Does not take
 * ownership of obj. */
int spec_parse_json(json_t *obj, struct job_spec **out, struct berr *err);
/* Canonical JSON (new reference). */
json_t *spec_to_json(const struct job_spec *spec);
/* Canonical JSON of the task section only: two specs whose task JSON is equal
 * run identical tasks (this defines a config version and an equivalence
 * class for placement). New reference. */
json_t *spec_task_to_json(const struct job_spec *spec);
void spec_free(struct job_spec *spec);

/* "alice/prod/web": role and name are [a-z0-9_-]{1,64} starting with a letter
 * or digit; environment is prod, devel, test or staging<digits>. */
int job_key_check(const char *key, struct berr *err);
/* A role alone ("alice"): the first part of a job key. */
int role_name_check(const char *role, struct berr *err);

/* "alice/db-pass": a secret's full name, ROLE/NAME, both parts as a job
 * key's role. */
int secret_name_check(const char *name, struct berr *err);

/* Sizes take bytes or IEC units: "512", "64KiB", "64MiB", "1GiB", "1TiB". */
int parse_size(const char *s, uint64_t *bytes);
/* Durations: "250ms", "10s", "5m", "1h"; a bare integer is seconds. */
int parse_duration(const char *s, uint64_t *ms);

/* Templates: {{instance}}, {{task_id}}, {{host}}, {{ports.NAME}}.
 * spec validation already refused unknown templates and undeclared ports. */
struct template_ctx {
	int instance;
	const char *task_id;
	const char *host;
	char *const *port_names;
	const int *port_values;
	size_t nports;
};
/* Expand a template string; returns a new string. */
char *spec_expand(const char *tmpl, const struct template_ctx *ctx);

#endif
