/* clang-format off */
/* fuzz_replica.c - libFuzzer target for the HA follower's replica
 * (cluster_replica_reset/apply/refresh/promote in src/server/cluster_replica.c): a
 * follower applies the store's records one by one, in the store's order, and
 * a corrupted or hostile store must never make it crash, leak or hit UB.
 *
 * fuzz-sources: src/core/util.c src/core/spec.c src/core/spec_yaml.c src/core/spec_json.c src/core/spec_validate.c src/core/spec_fields.c src/core/spec_template.c src/core/cron.c src/core/lifecycle.c src/core/hmap.c src/core/log.c src/sched/placement.c src/sched/ports.c src/store/store.c src/store/store_sqlite.c src/store/store_etcd.c src/store/store_etcd_follow.c src/store/etcd_client.c src/core/base64.c src/server/cluster.c src/server/cluster_secrets.c src/server/cluster_quota.c src/sched/quota.c src/server/secret_box.c src/server/cluster_records.c src/server/cluster_replica.c src/server/cluster_jobs.c src/server/cluster_mesh.c src/server/cluster_updates.c src/server/cluster_cron.c src/server/cluster_nodes.c src/server/cluster_sched.c src/server/cluster_system.c src/server/cluster_views.c src/server/cluster_endpoints.c src/server/liveness.c src/server/tokens.c src/core/pki.c src/core/cidr.c src/core/intern.c src/server/cluster_logtail.c src/server/cluster_notes.c src/server/cluster_preempt.c src/sched/preemption.c src/server/events.c src/core/metrics_text.c
 * fuzz-libs: -lcrypto -ljansson -lyaml -lsqlite3 -lcurl -lpthread -lm -Wl,--wrap=time_mono_ms -Wl,--wrap=time_now_ms -Wl,--wrap=random_hex
 * (the two lines above stay one line each: scripts/fuzz.sh reads them)
 *
 * Each input gets a new replica (cluster_new without a store: a replica
 * never writes until promoted) beside a model of the store, the records put
 * and not deleted since, and frees both at its end: an input does the same
 * thing whenever it runs, alone or in a session, so a crash reproduces from
 * its file and a leak is one (libFuzzer's leak check looks at what one input
 * did not free). State builds up within an input: a list of at most 64
 * operations, each a selector byte and its bytes (reads past the end give
 * zeros):
 *
 *   0, 1 put        a record made from a template of its kind, as the leader
 *                   writes it (write_task, persist_job, persist_node,
 *                   persist_update in cluster_records.c; or meta/, or
 *                   quotas/ROLE as cluster_quota.c writes it), its fields
 *                   chosen by the bytes: names from small pools (unknown
 *                   jobs and nodes, so records become orphans; one task id
 *                   under several keys), integers out of range (negative,
 *                   INT_MAX + 1, INT64_MIN, SPEC_MAX_INSTANCES), unknown
 *                   states, messages sometimes long and multi-byte (a copy
 *                   into a fixed buffer may cut a character); then up to 4
 *                   edits of the JSON tree (a field deleted or given another
 *                   type) and maybe its text cut or a byte flipped
 *   2    put raw    a key, then a length (a byte; from 240 on, two: up to
 *                   4095) and that many bytes of value
 *   3    delete     a key (value NULL)
 *   4    refresh    cluster_replica_refresh, checks and every view
 *   5    promote    cluster_replica_promote, then a few cluster_ticks with
 *                   the clock moving, every view after each; the records
 *                   the new leader wrote go into the store model, and the
 *                   replica starts over from a full copy of it (reset, then
 *                   every record in key order), as another follower would
 *   6    reset      a full copy again: the records in key order, or in
 *                   reverse order (tasks and updates before their jobs and
 *                   nodes), or the store wiped
 *   7    clock      move the clock on
 *
 * A key is a kind byte (jobs/ tasks/ nodes/ updates/ meta/, or raw bytes)
 * and a name byte (a pool entry, printable bytes from the input, or a name
 * longer than the 512-byte key buffers in cluster_records.c).
 *
 * Time is virtual (the link wraps time_mono_ms and time_now_ms) and starts
 * from a fixed date at each input; ids (random_hex, wrapped too) come from a
 * generator seeded at each input, so hash orders repeat. At the end of each
 * input (and at each refresh) the replica is refreshed and checked: every
 * task, job and node that derived state points to is one the replica holds;
 * live counts and the waiting list match. Then every view is rendered, and
 * must render whole: the job list, each job's status (all=true) and update,
 * the node list, each node's desired set, each task, the cron list (after
 * each tick of a promoted replica too). Promoting is skipped when
 * the jobs' specs ask for more than 32 instances, and an input makes at most
 * 8 full copies (promote and reset): more only costs time.
 */
/* clang-format on */
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "core/lifecycle.h"
#include "core/log.h"
#include "core/spec.h"
#include "core/util.h"
#include "server/cluster.h"
#include "server/cluster_quota.h"
#include "store/store-internal.h" /* to read the batch a promoted replica writes */

#define MAX_OPS 64
#define MAX_COPIES 8		 /* full copies (promote, reset) per input */
#define MAX_PROMOTE_INSTANCES 32 /* more: promoting only costs time */
#define BASE_WALL_MS 1700000000000LL
#define BASE_MONO_MS 1000000000LL

static int64_t clock_offset_ms;
static uint64_t id_state;

int64_t __wrap_time_mono_ms(void);
int64_t __wrap_time_now_ms(void);
void __wrap_random_hex(char *buf, size_t n);

int64_t __wrap_time_mono_ms(void)
{
	return BASE_MONO_MS + clock_offset_ms;
}

int64_t __wrap_time_now_ms(void)
{
	return BASE_WALL_MS + clock_offset_ms;
}

/* Ids as unique as the real ones within an input, and the same at each run. */
void __wrap_random_hex(char *buf, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (n > 63)
		n = 63;
	uint64_t r = 0;
	for (size_t i = 0; i < n; i++) {
		if (i % 16 == 0) {
			id_state += 0x9e3779b97f4a7c15ULL; /* splitmix64 */
			r = id_state;
			r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ULL;
			r = (r ^ (r >> 27)) * 0x94d049bb133111ebULL;
			r ^= r >> 31;
		}
		buf[i] = hex[r & 0xf];
		r >>= 4;
	}
	buf[n] = 0;
}

static struct cluster *c;
static struct cluster_config cfg;
static int copies; /* full copies made by this input */

/* The store model: key -> struct rec. */
struct rec {
	size_t len;
	char value[]; /* not NUL-terminated: an over-read is caught */
};
static struct hmap store;

/* ---- input bytes ---------------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t n;
};

static unsigned u8(struct rd *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

static uint64_t raw(struct rd *r, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v = v << 8 | u8(r);
	return v;
}

/* Mostly small, sometimes at or past a limit. */
static json_int_t pick_int(struct rd *r)
{
	unsigned b = u8(r);
	if (b < 160)
		return b % 5;
	switch (b % 16) {
	case 0:
		return -1;
	case 1:
		return -2;
	case 2:
		return INT_MAX;
	case 3:
		return INT_MIN;
	case 4:
		return (json_int_t)INT_MAX + 1;
	case 5:
		return (json_int_t)INT_MIN - 1;
	case 6:
		return INT64_MAX;
	case 7:
		return INT64_MIN;
	case 8:
		return SPEC_MAX_INSTANCES - 1;
	case 9:
		return SPEC_MAX_INSTANCES;
	case 10:
		return 65535;
	case 11:
		return 65536;
	case 12:
		return (int32_t)raw(r, 4);
	case 13:
		return (json_int_t)raw(r, 8);
	default:
		return u8(r);
	}
}

/* A time in ms: mostly around now, sometimes absurd. */
static json_int_t pick_time(struct rd *r)
{
	unsigned b = u8(r);
	int64_t now = __wrap_time_now_ms();
	if (b < 128)
		return now + ((json_int_t)b - 100) * 1000;
	switch (b % 8) {
	case 0:
		return 0;
	case 1:
		return -1;
	case 2:
		return INT64_MAX;
	case 3:
		return INT64_MIN;
	case 4:
		return INT64_MAX / 1000 - (json_int_t)(b % 3) * 60000;
	case 5:
		return (json_int_t)raw(r, 8);
	case 6:
		return now + 400LL * 24 * 3600 * 1000;
	default:
		return pick_int(r);
	}
}

static bool pick_bool(struct rd *r)
{
	return u8(r) & 1;
}

/* Names live in an arena cleared for each record. */
static char arena[16384];
static size_t arena_used;

static const char *arena_name(struct rd *r, bool longname)
{
	size_t len = longname ? 600 : u8(r) % 24;
	if (arena_used + len + 1 > sizeof arena)
		return "full";
	char *s = arena + arena_used;
	for (size_t i = 0; i < len; i++)
		s[i] = longname ? (char)('a' + i % 26) : (char)(0x20 + u8(r) % 95);
	s[len] = 0;
	arena_used += len + 1;
	return s;
}

/* A message: mostly short; sometimes long and multi-byte, so that a copy
 * into a fixed buffer may cut a character in two. */
static const char *pick_text(struct rd *r)
{
	static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x9a\xa2"};
	unsigned b = u8(r);
	if (b < 200)
		return "m";
	const char *ch = chars[b % ARRAY_SIZE(chars)];
	size_t chl = strlen(ch), lead = u8(r) % 4, n = 50 + u8(r) % 250;
	if (arena_used + lead + n * chl + 1 > sizeof arena)
		return "full";
	char *s = arena + arena_used, *p = s;
	for (size_t i = 0; i < lead; i++)
		*p++ = 'x';
	for (size_t i = 0; i < n; i++, p += chl)
		memcpy(p, ch, chl);
	*p = 0;
	arena_used += (size_t)(p - s) + 1;
	return s;
}

static const char *const job_pool[] = {"a/prod/web", "a/test/batch", "a/prod/cron",
				       "r/devel/x",  "weird",	     ""};
static const char *const task_pool[] = {"t0", "t1", "t2", "t3", "a-prod-web-0-00000000", ""};
static const char *const node_pool[] = {"n0", "n1", "n2", "ghost", ""};
static const char *const meta_pool[] = {"leader", "schema", "x"};

static const char *pick_name_from(struct rd *r, const char *const *pool, size_t n)
{
	size_t k = u8(r) % (n + 2);
	if (k < n)
		return pool[k];
	return arena_name(r, k == n + 1);
}

#define PICK_NAME(r, pool) pick_name_from(r, pool, ARRAY_SIZE(pool))

static const char *pick_state(struct rd *r)
{
	unsigned k = u8(r) % (TASK_STATE_COUNT + 2);
	if (k < TASK_STATE_COUNT)
		return task_state_name((enum task_state)k);
	return k == TASK_STATE_COUNT ? "BOGUS" : "";
}

/* ---- record templates ----------------------------------------------------- */

/* Canonical specs (spec_to_json), as the leader stores them. */
static const char *const spec_texts[] = {
    "{\"job\":\"a/prod/web\",\"instances\":2,\"task\":{\"command\":[\"true\"],"
    "\"resources\":{\"cpu\":0.1,\"memory\":1048576,\"ports\":[\"http\"]}},"
    "\"update\":{\"batch_size\":1,\"watch\":\"1s\",\"order\":\"start_first\","
    "\"rollback_on_failure\":true}}",
    "{\"job\":\"a/prod/web\",\"instances\":3,\"task\":{\"command\":[\"sleep\",\"1\"],"
    "\"resources\":{\"cpu\":0.5,\"memory\":2097152,\"disk\":1048576}},"
    "\"update\":{\"batch_size\":2,\"max_instance_failures\":1,\"max_total_failures\":1}}",
    "{\"job\":\"a/test/batch\",\"type\":\"batch\",\"instances\":2,\"max_task_failures\":2,"
    "\"task\":{\"command\":[\"true\"],\"resources\":{\"cpu\":0.1,\"memory\":1048576}}}",
    "{\"job\":\"a/prod/cron\",\"type\":\"cron\",\"schedule\":\"* * * * *\","
    "\"cron_collision\":\"cancel_new\",\"instances\":1,"
    "\"task\":{\"command\":[\"true\"],\"resources\":{\"cpu\":0.1,\"memory\":1048576}}}",
    "{\"job\":\"r/devel/x\",\"instances\":1,\"restart\":{\"delay\":\"1s\",\"max_delay\":\"4s\","
    "\"max_attempts\":2,\"window\":\"1m\"},"
    "\"task\":{\"command\":[\"true\"],\"resources\":{\"cpu\":0.2,\"memory\":1048576},"
    "\"constraints\":{\"rack\":\"r1\"}}}",
    "{\"job\":\"a/prod/web\",\"instances\":0,"
    "\"task\":{\"command\":[\"true\"],\"resources\":{\"cpu\":0.1,\"memory\":1048576}}}",
    "{\"job\":\"a/prod/web\",\"type\":\"system\",\"instances\":0,"
    "\"task\":{\"command\":[\"true\"],\"resources\":{\"cpu\":0.1,\"memory\":1048576},"
    "\"constraints\":{\"rack\":\"r1\"}}}",
};
static json_t *specs[ARRAY_SIZE(spec_texts)];

static json_t *pick_spec(struct rd *r)
{
	unsigned b = u8(r);
	json_t *s = json_deep_copy(specs[b % ARRAY_SIZE(specs)]);
	if (b & 0x80)
		json_object_set_new(s, "instances", json_integer(pick_int(r)));
	return s;
}

static void set_int(json_t *o, const char *k, json_int_t v)
{
	json_object_set_new(o, k, json_integer(v));
}

static void set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, json_string(v));
}

/* persist_job */
static json_t *job_record(struct rd *r, const char *name)
{
	json_t *o = json_object();
	set_str(o, "job", name);
	set_int(o, "version", pick_int(r));
	json_object_set_new(o, "killed", json_boolean(u8(r) % 4 == 0));
	set_int(o, "created_ms", pick_time(r));
	set_int(o, "updated_ms", pick_time(r));
	json_t *versions = json_array();
	unsigned nv = u8(r) % 4;
	for (unsigned i = 0; i < nv; i++) {
		json_t *v = json_object();
		set_int(v, "version", pick_int(r));
		json_object_set_new(v, "spec", pick_spec(r));
		json_array_append_new(versions, v);
	}
	json_object_set_new(o, "versions", versions);
	json_t *done = json_array();
	unsigned nd = u8(r) % 6;
	for (unsigned i = 0; i < nd; i++)
		json_array_append_new(done, json_boolean(pick_bool(r)));
	json_object_set_new(o, "instance_done", done);
	set_int(o, "cron_last_ms", pick_time(r));
	set_int(o, "cron_runs", pick_int(r));
	if (u8(r) % 2) {
		/* System jobs: the slot table (cluster_system.c). */
		json_t *nodes = json_array(), *vacant = json_array();
		unsigned ns = u8(r) % 5;
		for (unsigned i = 0; i < ns; i++) {
			json_array_append_new(nodes, json_string(PICK_NAME(r, node_pool)));
			json_array_append_new(vacant, json_boolean(pick_bool(r)));
		}
		json_object_set_new(o, "system",
				    json_pack("{s:o,s:o}", "nodes", nodes, "vacant", vacant));
	}
	return o;
}

static json_int_t pick_port(struct rd *r)
{
	unsigned b = u8(r);
	return b < 200 ? 20000 + b % 16 : pick_int(r);
}

/* write_task */
static json_t *task_record(struct rd *r, const char *id)
{
	json_t *o = json_object();
	set_str(o, "id", id);
	set_str(o, "job", PICK_NAME(r, job_pool));
	set_int(o, "instance", pick_int(r));
	set_int(o, "version", pick_int(r));
	set_str(o, "state", pick_state(r));
	set_int(o, "pid", pick_int(r));
	set_int(o, "exit_code", pick_int(r));
	set_int(o, "created_ms", pick_time(r));
	set_int(o, "running_since_ms", pick_time(r));
	set_int(o, "failures", pick_int(r));
	set_int(o, "quick_deaths", pick_int(r));
	set_int(o, "throttle_until_ms", pick_time(r));
	set_int(o, "replace_version", pick_int(r));
	set_int(o, "restarts", pick_int(r));
	set_int(o, "restart_window_ms", pick_time(r));
	json_object_set_new(o, "replace_on_end", json_boolean(pick_bool(r)));
	json_object_set_new(o, "no_replace", json_boolean(pick_bool(r)));
	set_str(o, "message", pick_text(r));
	unsigned flags = u8(r);
	if (!(flags & 1))
		set_str(o, "node", PICK_NAME(r, node_pool));
	if (flags & 2)
		set_str(o, "ancestor", PICK_NAME(r, task_pool));
	if (flags & 4) {
		json_t *ports = json_object();
		set_int(ports, "http", pick_port(r));
		if (flags & 8)
			set_int(ports, "admin", pick_port(r));
		json_object_set_new(o, "ports", ports);
	}
	json_t *evs = json_array();
	unsigned ne = (flags >> 4) % 4;
	for (unsigned i = 0; i < ne; i++) {
		json_t *ev = json_object();
		set_int(ev, "time_ms", pick_time(r));
		set_str(ev, "state", pick_state(r));
		set_str(ev, "message", pick_text(r));
		json_array_append_new(evs, ev);
	}
	json_object_set_new(o, "events", evs);
	return o;
}

/* persist_node */
static json_t *node_record(struct rd *r, const char *name)
{
	static const double odd_cpus[] = {-1.0, 1e300, DBL_MAX};
	static const int port_ranges[][2] = {{20000, 20010}, {20000, 20001}, {1, 65535},
					     {0, 0},	     {30000, 20000}, {65535, 65535},
					     {20005, 20020}, {-5, 70000}};
	json_t *o = json_object();
	set_str(o, "name", name);
	set_str(o, "id", "nid");
	json_object_set_new(o, "drain_requested", json_boolean(u8(r) % 4 == 0));
	json_t *attrs = json_object();
	unsigned a = u8(r);
	if (a & 1)
		set_str(attrs, "rack", a & 2 ? "r1" : "r2");
	if (a & 4)
		set_str(attrs, "host", "h");
	if (a & 8)
		set_int(attrs, "zone", 5);
	json_object_set_new(o, "attributes", attrs);
	unsigned b = u8(r);
	if (b < 200)
		json_object_set_new(o, "cpu", json_real((b % 17) * 0.5));
	else if (b < 230)
		json_object_set_new(o, "cpu", json_real(odd_cpus[b % ARRAY_SIZE(odd_cpus)]));
	else
		set_int(o, "cpu", pick_int(r));
	b = u8(r);
	set_int(o, "memory", b < 200 ? (json_int_t)(b % 8) << 30 : pick_int(r));
	b = u8(r);
	set_int(o, "disk", b < 200 ? (json_int_t)(b % 8) << 30 : pick_int(r));
	b = u8(r);
	if (b < 224) {
		set_int(o, "port_lo", port_ranges[b % ARRAY_SIZE(port_ranges)][0]);
		set_int(o, "port_hi", port_ranges[b % ARRAY_SIZE(port_ranges)][1]);
	} else {
		set_int(o, "port_lo", pick_int(r));
		set_int(o, "port_hi", pick_int(r));
	}
	set_str(o, "addr", u8(r) & 1 ? "http://127.0.0.1:1" : "");
	return o;
}

/* persist_update */
static json_t *update_record(struct rd *r, const char *job)
{
	static const char *const ui[] = {"PENDING", "UPDATING", "WATCHING", "DONE", "FAILED", "X"};
	json_t *o = json_object();
	set_str(o, "job", job);
	unsigned s = u8(r) % 10;
	set_str(o, "state", s < 8 ? update_state_name((enum update_state)s) : "BOGUS");
	set_int(o, "from_version", pick_int(r));
	set_int(o, "to_version", pick_int(r));
	json_t *p = json_object();
	set_int(p, "batch_size", pick_int(r));
	set_int(p, "watch_ms", pick_int(r));
	set_int(p, "max_instance_failures", pick_int(r));
	set_int(p, "max_total_failures", pick_int(r));
	json_object_set_new(p, "rollback_on_failure", json_boolean(pick_bool(r)));
	set_str(p, "order", pick_bool(r) ? "start_first" : "stop_first");
	json_object_set_new(o, "policy", p);
	set_int(o, "failed_instances", pick_int(r));
	set_int(o, "started_ms", pick_time(r));
	set_int(o, "finished_ms", pick_time(r));
	set_str(o, "message", pick_text(r));
	json_t *inst = json_array();
	unsigned n = u8(r) % 5;
	for (unsigned i = 0; i < n; i++) {
		json_t *e = json_object();
		set_int(e, "instance", pick_int(r));
		set_str(e, "status", ui[u8(r) % ARRAY_SIZE(ui)]);
		set_int(e, "failures", pick_int(r));
		unsigned f = u8(r);
		if (f & 1)
			set_str(e, "old_task", PICK_NAME(r, task_pool));
		json_array_append_new(inst, e);
	}
	json_object_set_new(o, "instances", inst);
	return o;
}

/* ---- edits of a record ---------------------------------------------------- */

static json_t *fuzz_value(struct rd *r)
{
	switch (u8(r) % 8) {
	case 0:
		return json_null();
	case 1:
		return json_string(u8(r) & 1 ? pick_text(r) : pick_state(r));
	case 2:
		return json_integer(pick_int(r));
	case 3:
		return json_real(-0.5);
	case 4:
		return json_boolean(pick_bool(r));
	case 5:
		return json_array();
	case 6:
		return json_object();
	default:
		return json_integer(pick_time(r));
	}
}

/* Change one member of container v (or one below it): delete it, or give
 * it another value (often of another type). */
static void edit(struct rd *r, json_t *v, int depth)
{
	size_t n = json_is_object(v) ? json_object_size(v) : json_array_size(v);
	if (!n)
		return;
	size_t k = u8(r) % n;
	json_t *child = NULL;
	char *key = NULL;
	if (json_is_object(v)) {
		const char *kk;
		json_t *cv;
		size_t i = 0;
		json_object_foreach(v, kk, cv)
		{
			if (i++ == k) {
				key = xstrdup(kk);
				child = cv;
				break;
			}
		}
	} else {
		child = json_array_get(v, k);
	}
	unsigned a = u8(r) % 4;
	if (a == 0 && depth < 4 && (json_is_object(child) || json_is_array(child)))
		edit(r, child, depth + 1);
	else if (a == 1 && key)
		json_object_del(v, key);
	else if (a == 1)
		json_array_remove(v, k);
	else if (key)
		json_object_set_new(v, key, fuzz_value(r));
	else
		json_array_set_new(v, k, fuzz_value(r));
	free(key);
}

/* ---- the store model and the replica -------------------------------------- */

static void store_set(const char *key, const char *value, size_t len)
{
	struct rec *rc = xmalloc(sizeof *rc + len);
	rc->len = len;
	memcpy(rc->value, value, len);
	free(hmap_put(&store, key, rc));
}

static void put(const char *key, const char *value, size_t len)
{
	store_set(key, value, len);
	struct rec *rc = hmap_get(&store, key);
	cluster_replica_apply(c, key, rc->value, rc->len);
}

static void del(const char *key)
{
	free(hmap_del(&store, key));
	cluster_replica_apply(c, key, NULL, 0);
}

static void store_wipe(void)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&store, &it, NULL, &v))
		free(v);
	hmap_release(&store);
	hmap_init(&store);
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A full copy of the store: reset, every record in key order (or the
 * reverse), refresh. */
static void full_copy(bool reverse)
{
	cluster_replica_reset(c);
	size_t n = store.count, i = 0, it = 0;
	const char **keys = xcalloc(n + 1, sizeof *keys);
	const char *k;
	while (hmap_next(&store, &it, &k, NULL))
		keys[i++] = k;
	qsort(keys, n, sizeof *keys, cmp_key);
	for (i = 0; i < n; i++) {
		const char *key = keys[reverse ? n - 1 - i : i];
		struct rec *rc = hmap_get(&store, key);
		cluster_replica_apply(c, key, rc->value, rc->len);
	}
	free(keys);
	cluster_replica_refresh(c);
}

/* What a promoted replica wrote goes into the store model. */
static void commit(void)
{
	uint64_t seq = 0;
	struct store_batch *b = cluster_take_pending(c, &seq);
	c->committed_seq = seq;
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		const struct store_op *op = &b->ops[i];
		if (op->kind == STORE_OP_PUT) {
			store_set(op->key, op->value, op->len);
		} else if (op->kind == STORE_OP_DELETE) {
			free(hmap_del(&store, op->key));
		} else {
			size_t it = 0;
			const char *k;
			void *v;
			while (hmap_next(&store, &it, &k, &v))
				if (!strncmp(k, op->key, op->key_len))
					free(hmap_del(&store, k));
		}
	}
	store_batch_free(b);
}

/* ---- checks and views ----------------------------------------------------- */

static void check_task(struct task *t)
{
	if (hmap_get(&c->tasks, t->id) != t)
		abort(); /* derived state points to a task the replica does not hold */
	if (hmap_get(&c->jobs, t->job->key) != t->job)
		abort();
	if (t->node && hmap_get(&c->nodes, t->node->name) != t->node)
		abort();
}

/* After a refresh, what derive() built matches the records. */
static void check_replica(void)
{
	size_t it = 0;
	const char *k;
	void *v;
	while (hmap_next(&c->tasks, &it, &k, &v)) {
		check_task(v);
		if (strcmp(k, ((struct task *)v)->id))
			abort();
	}
	it = 0;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		size_t live = 0;
		for (size_t i = 0; i < j->nactive; i++) {
			struct task *t = j->active[i];
			if (!t)
				continue;
			check_task(t);
			if (t->job != j || (size_t)t->instance != i ||
			    task_state_terminal(t->state))
				abort();
			live++;
		}
		if (j->live < live)
			abort();
		for (size_t i = 0; i < j->nended; i++) {
			check_task(j->ended[i]);
			if (j->ended[i]->job != j || !task_state_terminal(j->ended[i]->state))
				abort();
		}
	}
	it = 0;
	while (hmap_next(&c->nodes, &it, NULL, &v)) {
		struct node *n = v;
		size_t jt = 0;
		void *tv;
		while (hmap_next(&n->tasks, &jt, NULL, &tv)) {
			check_task(tv);
			if (((struct task *)tv)->node != n)
				abort();
		}
	}
	size_t nw = 0;
	for (struct task *t = c->waiting; t; t = t->wnext) {
		check_task(t);
		if (t->state != TASK_PENDING && t->state != TASK_THROTTLED)
			abort();
		if (++nw > c->tasks.count)
			abort(); /* a cycle */
	}
	if (nw != c->nwaiting)
		abort();
}

static void dump_check(json_t *v)
{
	if (!v)
		abort();
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s)
		abort(); /* a view that does not serialise */
	free(s);
	json_decref(v);
}

static void views(void)
{
	json_t *l = cluster_job_list_json(c);
	if (json_array_size(l) != c->jobs.count)
		abort(); /* an entry that did not pack */
	dump_check(l);
	l = cluster_node_list_json(c);
	if (json_array_size(l) != c->nodes.count)
		abort();
	dump_check(l);
	dump_check(cluster_cron_list_json(c, NULL));
	/* The roles' quota use, kept as running sums, is what a count from
	 * scratch finds. */
	json_t *kept = cluster_quotas_json(c, NULL);
	quotas_recount(c);
	json_t *counted = cluster_quotas_json(c, NULL);
	if (!json_equal(kept, counted))
		abort();
	json_decref(counted);
	dump_check(kept);
	size_t it = 0;
	const char *key;
	void *v;
	while (hmap_next(&c->jobs, &it, &key, &v)) {
		struct job *j = v;
		struct berr err = {0};
		json_t *s = cluster_job_status_json(c, key, true, &err);
		size_t want = j->nended;
		for (size_t i = 0; i < j->nactive; i++)
			want += j->active[i] != NULL;
		if (json_array_size(json_object_get(s, "tasks")) != want)
			abort(); /* a task view that did not pack */
		dump_check(s);
		json_t *u = cluster_update_json(c, key, &err);
		if (!u != !j->update)
			abort();
		if (u)
			dump_check(u);
	}
	it = 0;
	while (hmap_next(&c->nodes, &it, NULL, &v))
		dump_check(cluster_node_desired(c, v));
	it = 0;
	while (hmap_next(&c->tasks, &it, &key, NULL)) {
		struct berr err = {0};
		dump_check(cluster_task_json(c, key, &err));
	}
}

static void refresh(void)
{
	cluster_replica_refresh(c);
	check_replica();
	views();
}

/* ---- operations ----------------------------------------------------------- */

static const char *const prefixes[] = {"jobs/", "tasks/", "nodes/", "updates/", "meta/"};

/* A key: a kind byte, then a name. */
static void pick_key(struct rd *r, char *key, size_t size)
{
	unsigned kind = u8(r) % 6;
	const char *name;
	switch (kind) {
	case 0:
	case 3:
		name = PICK_NAME(r, job_pool);
		break;
	case 1:
		name = PICK_NAME(r, task_pool);
		break;
	case 2:
		name = PICK_NAME(r, node_pool);
		break;
	case 4:
		name = PICK_NAME(r, meta_pool);
		break;
	default: /* raw: "jobs" without its slash, "events/...", anything */
		snprintf(key, size, "%s", arena_name(r, false));
		return;
	}
	snprintf(key, size, "%s%s", prefixes[kind], name);
}

/* The key a record goes under: mostly its own name. */
static void record_key(struct rd *r, char *key, size_t size, unsigned kind, const char *name,
		       const char *const *pool, size_t npool)
{
	if (u8(r) >= 192)
		name = pick_name_from(r, pool, npool);
	snprintf(key, size, "%s%s", prefixes[kind], name);
}

static void op_put_template(struct rd *r)
{
	char key[1024];
	unsigned kind = u8(r) % 5;
	const char *name;
	json_t *o;
	switch (kind) {
	case 0:
		name = PICK_NAME(r, job_pool);
		o = job_record(r, name);
		record_key(r, key, sizeof key, kind, name, job_pool, ARRAY_SIZE(job_pool));
		break;
	case 1:
		name = PICK_NAME(r, task_pool);
		o = task_record(r, name);
		record_key(r, key, sizeof key, kind, name, task_pool, ARRAY_SIZE(task_pool));
		break;
	case 2:
		name = PICK_NAME(r, node_pool);
		o = node_record(r, name);
		record_key(r, key, sizeof key, kind, name, node_pool, ARRAY_SIZE(node_pool));
		break;
	case 3:
		name = PICK_NAME(r, job_pool);
		o = update_record(r, name);
		record_key(r, key, sizeof key, kind, name, job_pool, ARRAY_SIZE(job_pool));
		break;
	default:
		name = PICK_NAME(r, meta_pool);
		o = json_pack("{s:s}", "url", "http://127.0.0.1:1");
		record_key(r, key, sizeof key, kind, name, meta_pool, ARRAY_SIZE(meta_pool));
		if (u8(r) & 1) {
			/* A role's quota (cluster_quota.c: persist_quota): the roles
			 * of the job pool, limits in and out of range. */
			static const char *const roles[] = {"a", "r", "Bad", ""};
			const char *role = pick_name_from(r, roles, ARRAY_SIZE(roles));
			json_decref(o);
			o = json_pack("{s:s,s:I,s:I,s:I}", "role", role, "cpu", pick_int(r),
				      "memory", pick_int(r), "tasks", pick_int(r));
			snprintf(key, sizeof key, "quotas/%s", role);
		}
		break;
	}
	unsigned m = u8(r);
	unsigned nedits = m < 128 ? 0 : 1 + m % 4;
	for (unsigned i = 0; i < nedits; i++)
		edit(r, o, 0);
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	size_t len = strlen(text);
	unsigned cut = u8(r);
	if (cut >= 240 && len)
		len = u8(r) % len; /* a record cut short */
	else if (cut >= 224 && len)
		text[u8(r) % len] ^= (char)(1 + u8(r) % 255);
	put(key, text, len);
	free(text);
}

static void op_put_raw(struct rd *r)
{
	char key[1024], value[4096];
	pick_key(r, key, sizeof key);
	size_t len = u8(r);
	if (len >= 240)
		len = (len - 240) * 256 + u8(r); /* up to 4095 */
	for (size_t i = 0; i < len; i++)
		value[i] = (char)u8(r);
	put(key, value, len);
}

/* The instances the jobs' specs (every version) and updates may create. */
static bool promote_cheap(void)
{
	size_t total = 0, it = 0;
	void *v;
	while (hmap_next(&c->jobs, &it, NULL, &v)) {
		struct job *j = v;
		int most = 0;
		for (size_t i = 0; i < j->nversions; i++)
			if (j->versions[i].spec->instances > most)
				most = j->versions[i].spec->instances;
		total += (size_t)most + (j->update ? j->update->n : 0);
	}
	return total <= MAX_PROMOTE_INSTANCES;
}

static void op_promote(struct rd *r)
{
	cluster_replica_refresh(c);
	if (copies++ >= MAX_COPIES || !promote_cheap())
		return;
	cluster_replica_promote(c);
	views();
	unsigned rounds = 1 + u8(r) % 4;
	for (unsigned i = 0; i < rounds; i++) {
		unsigned b = u8(r);
		clock_offset_ms += (int64_t)(b % 16) * 500 + (b & 0x80 ? 60000 : 0);
		cluster_tick(c);
		views();
	}
	commit();
	full_copy(false);
}

static void run(struct rd *r)
{
	for (int ops = 0; r->n && ops < MAX_OPS; ops++) {
		arena_used = 0;
		switch (u8(r) % 8) {
		case 0:
		case 1:
			op_put_template(r);
			break;
		case 2:
			op_put_raw(r);
			break;
		case 3: {
			char key[1024];
			pick_key(r, key, sizeof key);
			del(key);
			break;
		}
		case 4:
			refresh();
			break;
		case 5:
			op_promote(r);
			break;
		case 6: {
			unsigned how = u8(r) % 3;
			if (copies++ >= MAX_COPIES)
				break;
			if (how == 2)
				store_wipe();
			full_copy(how == 1);
			break;
		}
		default:
			clock_offset_ms += (int64_t)(u8(r) % 16) * 1000;
			break;
		}
	}
}

static void cleanup(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(specs); i++)
		json_decref(specs[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_OFF);
	for (size_t i = 0; i < ARRAY_SIZE(spec_texts); i++) {
		json_t *in = json_loads(spec_texts[i], 0, NULL);
		struct job_spec *spec = NULL;
		struct berr err = {0};
		if (!in || spec_parse_json(in, &spec, &err) < 0) {
			fprintf(stderr, "fuzz_replica: spec %zu: %s\n", i, err.msg);
			abort();
		}
		specs[i] = spec_to_json(spec);
		spec_free(spec);
		json_decref(in);
	}
	cluster_config_defaults(&cfg);
	cfg.ended_keep = 4;
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = {data, size};
	clock_offset_ms = 0;
	id_state = 0;
	copies = 0;
	hmap_init(&store);
	c = cluster_new(NULL, &cfg);
	pthread_mutex_lock(&c->lock);
	run(&r);
	refresh();
	pthread_mutex_unlock(&c->lock);
	cluster_free(c);
	c = NULL;
	store_wipe();
	return 0;
}
