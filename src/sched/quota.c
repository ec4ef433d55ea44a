/* quota.c - quotas per role: the arithmetic of admission (quota.h). */
#include "sched/quota.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int64_t quota_cpu_milli(double cpu)
{
	if (!(cpu > 0))
		return 0;
	if (cpu >= (double)INT64_MAX / 1000.0)
		return INT64_MAX;
	double m = ceil(cpu * 1000.0 - 1e-6);
	return m < 1 ? 1 : (int64_t)m;
}

bool quota_counts(const struct job_spec *spec)
{
	return spec && spec->tier == TIER_PREFERRED;
}

static int64_t sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static int64_t sat_mul(int64_t a, int64_t b)
{
	if (a <= 0 || b <= 0)
		return 0;
	return a > INT64_MAX / b ? INT64_MAX : a * b;
}

static int64_t clamp_size(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

void quota_amount_of(const struct job_spec *spec, int64_t instances, struct quota_amount *out)
{
	memset(out, 0, sizeof *out);
	if (!quota_counts(spec) || instances <= 0)
		return;
	const struct resources *r = &spec->task.resources;
	out->cpu_milli = sat_mul(quota_cpu_milli(r->cpu), instances);
	out->memory = sat_mul(clamp_size(r->memory), instances);
	out->disk = sat_mul(clamp_size(r->disk), instances);
	out->tasks = instances;
}

void quota_amount_add(struct quota_amount *a, const struct quota_amount *b)
{
	a->cpu_milli = sat_add(a->cpu_milli, b->cpu_milli);
	a->memory = sat_add(a->memory, b->memory);
	a->disk = sat_add(a->disk, b->disk);
	a->tasks = sat_add(a->tasks, b->tasks);
}

static int64_t sat_sub(int64_t a, int64_t b)
{
	return a > b ? a - b : 0;
}

void quota_amount_sub(struct quota_amount *a, const struct quota_amount *b)
{
	a->cpu_milli = sat_sub(a->cpu_milli, b->cpu_milli);
	a->memory = sat_sub(a->memory, b->memory);
	a->disk = sat_sub(a->disk, b->disk);
	a->tasks = sat_sub(a->tasks, b->tasks);
}

void quota_limit_unlimited(struct quota_limit *lim)
{
	lim->cpu_milli = lim->memory = lim->disk = lim->tasks = QUOTA_UNLIMITED;
}

void quota_format_cpu(int64_t milli, char *buf, size_t n)
{
	/* Three decimals, trailing zeros cut, but always one: 4.0, 4.5, 0.01. */
	snprintf(buf, n, "%lld.%03lld", (long long)(milli / 1000), (long long)(milli % 1000));
	size_t len = strlen(buf);
	while (len > 2 && buf[len - 1] == '0' && buf[len - 2] != '.')
		buf[--len] = 0;
}

void quota_format_size(int64_t bytes, char *buf, size_t n)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	size_t u = 0;
	double v = (double)bytes;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (v == floor(v))
		snprintf(buf, n, "%.0f%s", v, units[u]);
	else
		snprintf(buf, n, "%.1f%s", v, units[u]);
}

enum quota_resource { Q_CPU, Q_MEMORY, Q_DISK, Q_TASKS, Q_COUNT };
static const char *const resource_names[Q_COUNT] = {"cpu", "memory", "disk", "tasks"};

static int64_t limit_of(const struct quota_limit *l, int r)
{
	return r == Q_CPU      ? l->cpu_milli
	       : r == Q_MEMORY ? l->memory
	       : r == Q_DISK   ? l->disk
			       : l->tasks;
}

static int64_t amount_of(const struct quota_amount *a, int r)
{
	return r == Q_CPU      ? a->cpu_milli
	       : r == Q_MEMORY ? a->memory
	       : r == Q_DISK   ? a->disk
			       : a->tasks;
}

static void format_resource(int r, int64_t v, char *buf, size_t n)
{
	if (r == Q_CPU)
		quota_format_cpu(v, buf, n);
	else if (r == Q_TASKS)
		snprintf(buf, n, "%lld", (long long)v);
	else
		quota_format_size(v, buf, n);
}

int quota_admit(const char *role, const struct quota_limit *lim, const struct quota_amount *before,
		const struct quota_amount *after, char *why, size_t whylen)
{
	if (whylen)
		why[0] = 0;
	if (!lim)
		return 0;
	struct sbuf sb;
	sbuf_init(&sb);
	for (int r = 0; r < Q_COUNT; r++) {
		int64_t limit = limit_of(lim, r), was = amount_of(before, r),
			now = amount_of(after, r);
		if (limit < 0 || now <= limit || now <= was)
			continue;
		char a[48], b[48];
		format_resource(r, now, a, sizeof a);
		format_resource(r, limit, b, sizeof b);
		sbuf_addf(&sb, "%s%s %s of %s", sb.len ? ", " : "", resource_names[r], a, b);
	}
	int rc = 0;
	if (sb.len) {
		snprintf(why, whylen, "quota exceeded for role %s: %s", role, sb.buf);
		rc = -1;
	}
	sbuf_release(&sb);
	return rc;
}

bool quota_over(const struct quota_limit *lim, const struct quota_amount *use)
{
	for (int r = 0; lim && r < Q_COUNT; r++)
		if (limit_of(lim, r) >= 0 && amount_of(use, r) > limit_of(lim, r))
			return true;
	return false;
}

/* ---- JSON ---- */

static int parse_cpu(const json_t *v, int64_t *out, struct berr *err)
{
	double d = NAN;
	if (json_is_number(v)) {
		d = json_number_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end = NULL;
		/* Plain decimals only: no hex, inf, nan, exponents or spaces. */
		if (*s && strspn(s, "0123456789.") == strlen(s) &&
		    strchr(s, '.') == strrchr(s, '.') && strcmp(s, "."))
			d = strtod(s, &end);
		if (!end || *end)
			d = NAN;
	}
	if (!(d >= 0 && d <= QUOTA_MAX_CPU))
		return berr_set(err, 400,
				"cpu: expected a number of cores from 0 to %g, such as 4 or 0.5",
				QUOTA_MAX_CPU);
	*out = (int64_t)llround(d * 1000.0);
	return 0;
}

static int parse_size_field(const char *name, const json_t *v, int64_t *out, struct berr *err)
{
	uint64_t b = 0;
	bool ok = false;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		b = (uint64_t)json_integer_value(v);
		ok = true;
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		ok = strlen(s) == json_string_length(v) && parse_size(s, &b) == 0;
	}
	if (!ok)
		return berr_set(err, 400, "%s: expected a size such as 8GiB or a number of bytes",
				name);
	if (b > (uint64_t)QUOTA_MAX_SIZE)
		return berr_set(err, 400, "%s: expected a size of at most 1EiB", name);
	*out = (int64_t)b;
	return 0;
}

static int parse_tasks(const json_t *v, int64_t *out, struct berr *err)
{
	int64_t n = -1;
	if (json_is_integer(v))
		n = json_integer_value(v);
	else if (json_is_string(v) && parse_int64(json_string_value(v), &n) < 0)
		n = -1;
	if (n < 0 || n > QUOTA_MAX_TASKS)
		return berr_set(err, 400, "tasks: expected a number of tasks from 0 to %lld",
				QUOTA_MAX_TASKS);
	*out = n;
	return 0;
}

int quota_limit_from_json(const json_t *body, const char *const *extra_ok, struct quota_limit *out,
			  struct berr *err)
{
	quota_limit_unlimited(out);
	if (!json_is_object(body))
		return berr_set(
		    err, 400, "expected a JSON object such as {\"cpu\": 4, \"memory\": \"8GiB\"}");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)body, k, v)
	{
		if (json_is_null(v))
			continue; /* unlimited */
		int r = 0;
		if (!strcmp(k, "cpu"))
			r = parse_cpu(v, &out->cpu_milli, err);
		else if (!strcmp(k, "memory"))
			r = parse_size_field("memory", v, &out->memory, err);
		else if (!strcmp(k, "disk"))
			r = parse_size_field("disk", v, &out->disk, err);
		else if (!strcmp(k, "tasks"))
			r = parse_tasks(v, &out->tasks, err);
		else {
			bool extra = false;
			for (size_t i = 0; extra_ok && extra_ok[i] && !extra; i++)
				extra = !strcmp(k, extra_ok[i]);
			if (!extra)
				return berr_set(err, 400,
						"unknown field '%.64s': a quota has cpu, memory, "
						"disk and tasks",
						k);
		}
		if (r < 0)
			return -1;
	}
	return 0;
}

json_t *quota_limit_json(const struct quota_limit *lim)
{
	json_t *o = json_object();
	if (lim->cpu_milli >= 0)
		json_object_set_new(o, "cpu", json_real((double)lim->cpu_milli / 1000.0));
	if (lim->memory >= 0)
		json_object_set_new(o, "memory", json_integer(lim->memory));
	if (lim->disk >= 0)
		json_object_set_new(o, "disk", json_integer(lim->disk));
	if (lim->tasks >= 0)
		json_object_set_new(o, "tasks", json_integer(lim->tasks));
	return o;
}

json_t *quota_amount_json(const struct quota_amount *a)
{
	return json_pack("{s:f,s:I,s:I,s:I}", "cpu", (double)a->cpu_milli / 1000.0, "memory",
			 (json_int_t)a->memory, "disk", (json_int_t)a->disk, "tasks",
			 (json_int_t)a->tasks);
}
