/* spec.c - job specs: YAML and JSON in, one validator, struct job_spec out.
 * This file holds the tree both front ends build, the one place error
 * messages are made, the public entry points with the defaults, and the
 * small public parsers (job keys, sizes, durations); spec-internal.h lists
 * the other files of the module.
 *
 * Both input formats are first turned into the same small tree (struct snode)
 * that keeps each value's text as written and, for YAML, its line and column.
 * One validator then walks that tree, so the same mistake gives the same
 * message from a YAML file and from a JSON body (only without a position):
 *
 *     YAML text --libyaml events--> snode tree --+
 *                                                 +--> validator --> job_spec
 *     json_t ---------------------> snode tree --+
 *
 * The validator stops at the first error; every error is
 *     FILE:LINE:COL: FIELD.PATH: expected WHAT, found 'TEXT'
 * ('TEXT' is the user's text, quoted; descriptions such as "nothing" or
 * "a map" are not quoted). docs/spec.md is the user reference for the fields.
 */
#include "core/spec.h"
#include "core/spec-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The intermediate tree                                                     */

struct snode *snode_new(enum snode_kind kind, int line, int col)
{
	struct snode *n = xcalloc(1, sizeof *n);
	n->kind = kind;
	n->line = line;
	n->col = col;
	return n;
}

void snode_set_text(struct snode *n, const char *s, size_t len)
{
	n->text = xmalloc(len + 1);
	memcpy(n->text, s, len);
	n->text[len] = 0;
	n->len = len;
}

void snode_add(struct snode *n, struct snode *kid)
{
	if (n->nkids == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 8;
		n->kids = xrealloc(n->kids, n->cap * sizeof *n->kids);
	}
	n->kids[n->nkids++] = kid;
}

/* Recursion is bounded by SPEC_MAX_DEPTH: deeper trees are never built. */
void snode_free(struct snode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		snode_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* Append user text to a message: at most SPEC_FOUND_MAX characters, control
 * and invalid bytes escaped, so that no value can forge lines in a log or
 * flood it. */
static void add_sanitized(struct sbuf *sb, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t shown = 0;
	for (size_t i = 0; i < len;) {
		if (shown++ == SPEC_FOUND_MAX) {
			sbuf_adds(sb, "...");
			return;
		}
		size_t k = utf8_seq_len(u + i, len - i);
		if (k == 1 && u[i] >= 0x20 && u[i] != 0x7f) {
			sbuf_add(sb, s + i, 1);
		} else if (k > 1) {
			sbuf_add(sb, s + i, k);
		} else if (u[i] == '\n') {
			sbuf_adds(sb, "\\n");
		} else if (u[i] == '\t') {
			sbuf_adds(sb, "\\t");
		} else if (u[i] == '\r') {
			sbuf_adds(sb, "\\r");
		} else {
			sbuf_addf(sb, "\\x%02x", u[i]);
		}
		i += k ? k : 1;
	}
}

void spec__add_quoted(struct sbuf *sb, const char *s, size_t len)
{
	sbuf_adds(sb, "'");
	add_sanitized(sb, s, len);
	sbuf_adds(sb, "'");
}

/* What was found, for "found ...": user text quoted, structure described. */
static void add_found(struct sbuf *sb, const struct snode *n)
{
	if (!n)
		sbuf_adds(sb, "nothing");
	else if (n->kind == SN_MAP)
		sbuf_adds(sb, n->nkids ? "a map" : "an empty map");
	else if (n->kind == SN_SEQ)
		sbuf_adds(sb, n->nkids ? "a list" : "an empty list");
	else if (n->kind == SN_NULL && !n->len)
		sbuf_adds(sb, "nothing");
	else
		spec__add_quoted(sb, n->text, n->len);
}

size_t spec__path_push(struct sctx *c, const char *key, size_t len)
{
	size_t old = c->path.len;
	if (old)
		sbuf_add(&c->path, ".", 1);
	add_sanitized(&c->path, key, len);
	return old;
}

size_t spec__path_push_key(struct sctx *c, const struct snode *key)
{
	return spec__path_push(c, key->text ? key->text : "", key->len);
}

size_t spec__path_push_index(struct sctx *c, size_t i)
{
	size_t old = c->path.len;
	sbuf_addf(&c->path, "[%zu]", i);
	return old;
}

void spec__path_pop(struct sctx *c, size_t old)
{
	c->path.len = old;
	c->path.buf[old] = 0;
}

/* The one place errors are made: "FILE:LINE:COL: PATH: expected WHAT, found
 * FOUND". The position is left out for JSON, the path at the top level. */
static int fail_at(struct sctx *c, int line, int col, const char *found, const char *fmt,
		   va_list ap)
{
	struct sbuf sb;
	sbuf_init(&sb);
	if (c->file && line > 0)
		sbuf_addf(&sb, "%s:%d:%d: ", c->file, line, col);
	if (c->path.len)
		sbuf_addf(&sb, "%s: ", c->path.buf);
	sbuf_adds(&sb, "expected ");
	sbuf_vaddf(&sb, fmt, ap);
	sbuf_addf(&sb, ", found %s", found);
	berr_set(c->err, 400, "%s", sb.buf);
	sbuf_release(&sb);
	return -1;
}

int spec__expect(struct sctx *c, const struct snode *at, const struct snode *found, const char *fmt,
		 ...)
{
	struct sbuf f;
	sbuf_init(&f);
	add_found(&f, found);
	va_list ap;
	va_start(ap, fmt);
	fail_at(c, at ? at->line : 0, at ? at->col : 0, f.buf, fmt, ap);
	va_end(ap);
	sbuf_release(&f);
	return -1;
}

int spec__expect_found(struct sctx *c, const struct snode *at, const char *found, const char *fmt,
		       ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_at(c, at ? at->line : 0, at ? at->col : 0, found, fmt, ap);
	va_end(ap);
	return -1;
}

/* User text as it appears after "found": sanitized and quoted. Caller frees. */
char *spec__quote(const char *s, size_t len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	spec__add_quoted(&sb, s, len);
	return sbuf_detach(&sb);
}

int spec__expect_pos(struct sctx *c, int line, int col, const char *found, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_at(c, line, col, found, fmt, ap);
	va_end(ap);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Names of the enums of spec.h                                              */

const char *const spec__job_type_names[JOB_CRON + 1] = {
    [JOB_SERVICE] = "service", [JOB_BATCH] = "batch", [JOB_CRON] = "cron"};
const char *const spec__cron_collision_names[CRON_CANCEL_NEW + 1] = {
    [CRON_KILL_EXISTING] = "kill_existing", [CRON_CANCEL_NEW] = "cancel_new"};
const char *const spec__placement_names[PLACE_SPREAD + 1] = {
    [PLACE_BINPACK] = "binpack", [PLACE_SPREAD] = "spread"};
const char *const spec__publish_mode_names[PUBLISH_HOST + 1] = {"ingress", "host"};
const char *const spec__tier_names[TIER_PREEMPTIBLE + 1] = {
    [TIER_PREFERRED] = "preferred", [TIER_PREEMPTIBLE] = "preemptible"};

const char *job_tier_name(enum job_tier t)
{
	return t == TIER_PREEMPTIBLE ? "preemptible" : "preferred";
}

const char *publish_mode_name(enum publish_mode m)
{
	return m == PUBLISH_HOST ? "host" : "ingress";
}

const char *const spec__update_order_names[UPDATE_START_FIRST + 1] = {
    [UPDATE_STOP_FIRST] = "stop_first", [UPDATE_START_FIRST] = "start_first"};
const char *const spec__driver_names[DRIVER_DOCKER + 1] = {
    [DRIVER_EXEC] = "exec", [DRIVER_OCI] = "oci", [DRIVER_DOCKER] = "docker"};

const char *const spec__network_names[NETWORK_BRIDGE + 1] = {
    [NETWORK_HOST] = "host", [NETWORK_BRIDGE] = "bridge"};

const char *task_network_name(enum task_network n)
{
	return (unsigned)n < ARRAY_SIZE(spec__network_names) ? spec__network_names[n]
							     : spec__network_names[0];
}

enum task_network task_network_default(enum task_driver d)
{
	(void)d; /* bridge for exec, oci and docker alike */
	return NETWORK_BRIDGE;
}

const char *task_driver_name(enum task_driver d)
{
	return (unsigned)d < ARRAY_SIZE(spec__driver_names) ? spec__driver_names[d]
							    : spec__driver_names[0];
}

int task_driver_parse(const char *name, enum task_driver *out)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(spec__driver_names); i++)
		if (!strcmp(name, spec__driver_names[i])) {
			*out = (enum task_driver)i;
			return 0;
		}
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Public: parsing                                                           */

static struct job_spec *spec_new(void)
{
	struct job_spec *s = xcalloc(1, sizeof *s);
	s->key = xstrdup("");
	s->role = xstrdup("");
	s->environment = xstrdup("");
	s->name = xstrdup("");
	s->type = JOB_SERVICE;
	s->instances = 1;
	s->schedule = xstrdup("");
	s->cron_collision = CRON_KILL_EXISTING;
	s->max_task_failures = 1;
	s->placement = PLACE_BINPACK;
	struct task_spec *t = &s->task;
	t->driver = DRIVER_EXEC;
	t->image = xstrdup("");
	t->user = xstrdup("");
	t->resources.cpu = 1.0;
	t->resources.memory = 128ULL << 20;
	t->health.kind = HEALTH_NONE;
	t->health.http_path = xstrdup("");
	t->health.port = xstrdup("");
	t->health.interval_ms = 10000;
	t->health.timeout_ms = 1000;
	t->health.failures = 3;
	t->health.successes = 1;
	t->health.initial_delay_ms = 15000;
	t->stop_grace_ms = 10000;
	t->shutdown.http_path = xstrdup("");
	t->shutdown.port = xstrdup("");
	t->shutdown.wait_ms = 5000;
	t->drain_delay_ms = SPEC_DEFAULT_DRAIN_DELAY_MS;
	s->restart.max_delay_ms = 60000;
	s->restart.window_ms = 600000;
	s->update.batch_size = 1;
	s->update.watch_ms = 10000;
	s->update.rollback_on_failure = true;
	s->update.order = UPDATE_STOP_FIRST;
	return s;
}

static int spec_from_tree(struct sctx *c, const struct snode *root, struct job_spec **out)
{
	struct job_spec *s = spec_new();
	if (spec__validate(c, root, s) < 0) {
		spec_free(s);
		return -1;
	}
	*out = s;
	return 0;
}

int spec_parse_yaml(const char *text, size_t len, const char *filename, struct job_spec **out,
		    struct berr *err)
{
	struct sctx c = {.file = filename ? filename : "<input>", .err = err};
	struct snode *root = NULL;
	*out = NULL;
	sbuf_init(&c.path);
	int r = spec__yaml_tree(&c, text ? text : "", text ? len : 0, &root);
	if (r == 0)
		r = spec_from_tree(&c, root, out);
	snode_free(root);
	sbuf_release(&c.path);
	return r;
}

int spec_parse_json(json_t *obj, struct job_spec **out, struct berr *err)
{
	struct sctx c = {.file = NULL, .err = err, .json = true};
	struct snode *root = NULL;
	int r = 0;
	*out = NULL;
	sbuf_init(&c.path);
	if (obj)
		r = spec__json_tree(&c, obj, &root);
	if (r == 0)
		r = spec_from_tree(&c, root, out);
	snode_free(root);
	sbuf_release(&c.path);
	return r;
}
static void constraint_free(struct constraint *k)
{
	free(k->attribute);
	strv_free_n(k->values, k->nvalues);
}

void spec_free(struct job_spec *s)
{
	if (!s)
		return;
	struct task_spec *t = &s->task;
	free(s->key);
	free(s->role);
	free(s->environment);
	free(s->name);
	free(s->schedule);
	free(t->image);
	strv_free_n(t->command, t->ncommand);
	for (size_t i = 0; t->env && i < t->nenv; i++) {
		free(t->env[i].key);
		free(t->env[i].value);
	}
	free(t->env);
	free(t->user);
	free(t->shutdown.http_path);
	free(t->shutdown.port);
	strv_free_n(t->resources.ports, t->resources.nports);
	for (size_t i = 0; t->constraints && i < t->nconstraints; i++)
		constraint_free(&t->constraints[i]);
	free(t->constraints);
	free(t->health.http_path);
	free(t->health.port);
	strv_free_n(t->health.command, t->health.ncommand);
	for (size_t i = 0; t->volumes && i < t->nvolumes; i++) {
		free(t->volumes[i].host);
		free(t->volumes[i].path);
	}
	free(t->volumes);
	for (size_t i = 0; t->secrets && i < t->nsecrets; i++) {
		free(t->secrets[i].name);
		free(t->secrets[i].path);
	}
	free(t->secrets);
	for (size_t i = 0; s->publish && i < s->npublish; i++)
		free(s->publish[i].target);
	free(s->publish);
	free(s);
}

/* ------------------------------------------------------------------------ */
/* Public: job keys, sizes, durations                                        */

/* [a-z0-9_-]{1,64}, starting with a letter or digit. */
static bool key_part_ok(const char *s, size_t len)
{
	if (!len || len > 64 || !((s[0] >= 'a' && s[0] <= 'z') || spec__is_digit(s[0])))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || spec__is_digit(s[i]) || s[i] == '_' ||
		      s[i] == '-'))
			return false;
	return true;
}

static bool environment_ok(const char *s, size_t len)
{
	if ((len == 4 && !memcmp(s, "prod", 4)) || (len == 5 && !memcmp(s, "devel", 5)) ||
	    (len == 4 && !memcmp(s, "test", 4)))
		return true;
	if (len < 7 || len > 64 || memcmp(s, "staging", 7))
		return false;
	for (size_t i = 7; i < len; i++)
		if (!spec__is_digit(s[i]))
			return false;
	return true;
}

static int key_error(struct berr *err, const char *what, const char *found, size_t len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	spec__add_quoted(&sb, found, len);
	berr_set(err, 400, "expected %s, found %s", what, sb.buf);
	sbuf_release(&sb);
	return -1;
}

int job_key_check(const char *key, struct berr *err)
{
	if (!key)
		key = "";
	const char *a = strchr(key, '/'), *b = a ? strchr(a + 1, '/') : NULL;
	if (!a || !b || strchr(b + 1, '/'))
		return key_error(err, "a job key role/environment/name such as alice/prod/web", key,
				 strlen(key));
	if (!key_part_ok(key, (size_t)(a - key)))
		return key_error(err,
				 "a role of 1 to 64 characters a-z, 0-9, _ or - starting with a "
				 "letter or digit",
				 key, (size_t)(a - key));
	if (!environment_ok(a + 1, (size_t)(b - a - 1)))
		return key_error(err, "an environment prod, devel, test or staging<digits>", a + 1,
				 (size_t)(b - a - 1));
	if (!key_part_ok(b + 1, strlen(b + 1)))
		return key_error(err,
				 "a name of 1 to 64 characters a-z, 0-9, _ or - starting with a "
				 "letter or digit",
				 b + 1, strlen(b + 1));
	return 0;
}

int role_name_check(const char *role, struct berr *err)
{
	if (!role || !key_part_ok(role, strlen(role)))
		return key_error(err,
				 "a role of 1 to 64 characters a-z, 0-9, _ or - starting with a "
				 "letter or digit",
				 role ? role : "", role ? strlen(role) : 0);
	return 0;
}

int secret_name_check(const char *name, struct berr *err)
{
	if (!name)
		name = "";
	const char *a = strchr(name, '/');
	if (!a || strchr(a + 1, '/'))
		return key_error(err, "a secret name ROLE/NAME such as alice/db-pass", name,
				 strlen(name));
	if (!key_part_ok(name, (size_t)(a - name)))
		return key_error(err,
				 "a role of 1 to 64 characters a-z, 0-9, _ or - starting with a "
				 "letter or digit",
				 name, (size_t)(a - name));
	if (!key_part_ok(a + 1, strlen(a + 1)))
		return key_error(err,
				 "a secret name of 1 to 64 characters a-z, 0-9, _ or - starting "
				 "with a letter or digit",
				 a + 1, strlen(a + 1));
	return 0;
}

/* Digits, then an optional fraction: value = *whole + *frac / *den.
 * Fractions beyond 19 digits are read but ignored (far below 1 byte or 1 ms). */
static int parse_decimal(const char **pp, unsigned __int128 *whole, uint64_t *frac, uint64_t *den)
{
	const char *p = *pp;
	if (!spec__is_digit(*p))
		return -EINVAL;
	*whole = 0;
	*frac = 0;
	*den = 1;
	for (; spec__is_digit(*p); p++) {
		*whole = *whole * 10 + (unsigned)(*p - '0');
		if (*whole > UINT64_MAX)
			return -ERANGE;
	}
	if (*p == '.') {
		p++;
		if (!spec__is_digit(*p))
			return -EINVAL;
		for (int k = 0; spec__is_digit(*p); p++, k++) {
			if (k < 19) {
				*frac = *frac * 10 + (unsigned)(*p - '0');
				*den *= 10;
			}
		}
	}
	*pp = p;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *unit;
		unsigned shift;
	} units[] = {{"", 0},	  {"B", 0},    {"KiB", 10}, {"MiB", 20},
		     {"GiB", 30}, {"TiB", 40}, {"PiB", 50}, {"EiB", 60}};
	unsigned __int128 whole;
	uint64_t frac, den;
	if (!s)
		return -EINVAL;
	int r = parse_decimal(&s, &whole, &frac, &den);
	if (r < 0)
		return r;
	if (*s == ' ')
		s++;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(s, units[i].unit))
			continue;
		if (den > 1 && !units[i].shift)
			return -EINVAL; /* no fractions of a byte */
		unsigned __int128 total =
		    (whole << units[i].shift) + (((unsigned __int128)frac << units[i].shift) / den);
		if (total > UINT64_MAX)
			return -ERANGE;
		*bytes = (uint64_t)total;
		return 0;
	}
	return -EINVAL;
}

int parse_duration(const char *s, uint64_t *ms)
{
	unsigned __int128 total = 0, whole;
	uint64_t frac, den;
	if (!s || !*s)
		return -EINVAL;
	if (s[strspn(s, "0123456789")] == 0) {
		/* A bare integer is seconds. */
		int r = parse_decimal(&s, &whole, &frac, &den);
		if (r < 0)
			return r;
		if (whole * 1000 > UINT64_MAX)
			return -ERANGE;
		*ms = (uint64_t)(whole * 1000);
		return 0;
	}
	/* One or more NUMBER UNIT, as in "1h30m" or "1.5s". */
	while (*s) {
		int r = parse_decimal(&s, &whole, &frac, &den);
		if (r < 0)
			return r;
		uint64_t unit;
		if (!strncmp(s, "ms", 2))
			unit = 1, s += 2;
		else if (*s == 's')
			unit = 1000, s++;
		else if (*s == 'm')
			unit = 60000, s++;
		else if (*s == 'h')
			unit = 3600000, s++;
		else
			return -EINVAL;
		total += whole * unit + (unsigned __int128)frac * unit / den;
		if (total > UINT64_MAX)
			return -ERANGE;
	}
	*ms = (uint64_t)total;
	return 0;
}
