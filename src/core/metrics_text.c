/* metrics_text.c - the Prometheus text format (metrics_text.h). */
#include "core/metrics_text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					 0.5,	1,	2.5,   5,    10,    30,	  60};
const size_t metrics_latency_nbounds = ARRAY_SIZE(metrics_latency_bounds);
const double metrics_size_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10000, 100000};
const size_t metrics_size_nbounds = ARRAY_SIZE(metrics_size_bounds);

void metrics_escape(struct sbuf *sb, const char *value)
{
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			sbuf_adds(sb, "\\\\");
		else if (*p == '"')
			sbuf_adds(sb, "\\\"");
		else if (*p == '\n')
			sbuf_adds(sb, "\\n");
		else
			sbuf_add(sb, p, 1);
	}
}

/* HELP text escapes only backslash and newline. */
static void add_help(struct sbuf *sb, const char *help)
{
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			sbuf_adds(sb, "\\\\");
		else if (*p == '\n')
			sbuf_adds(sb, "\\n");
		else
			sbuf_add(sb, p, 1);
	}
}

void metrics_family(struct sbuf *sb, const char *name, const char *type, const char *help)
{
	sbuf_addf(sb, "# HELP %s ", name);
	add_help(sb, help);
	sbuf_addf(sb, "\n# TYPE %s %s\n", name, type);
}

/* The shortest of %.15g and %.17g that reads back the same. */
static void add_double(struct sbuf *sb, double v)
{
	char buf[40];
	snprintf(buf, sizeof buf, "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof buf, "%.17g", v);
	sbuf_adds(sb, buf);
}

static void add_value(struct sbuf *sb, double v)
{
	if (isnan(v))
		sbuf_adds(sb, "NaN");
	else if (isinf(v))
		sbuf_adds(sb, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		sbuf_addf(sb, "%lld", (long long)v);
	else
		add_double(sb, v);
}

void metrics_label(struct sbuf *labels, const char *key, const char *value)
{
	if (labels->len)
		sbuf_adds(labels, ",");
	sbuf_adds(labels, key);
	sbuf_adds(labels, "=\"");
	metrics_escape(labels, value);
	sbuf_adds(labels, "\"");
}

void metrics_sample_raw(struct sbuf *sb, const char *name, const char *labels, double value)
{
	sbuf_adds(sb, name);
	if (labels && *labels) {
		sbuf_adds(sb, "{");
		sbuf_adds(sb, labels);
		sbuf_adds(sb, "}");
	}
	sbuf_adds(sb, " ");
	add_value(sb, value);
	sbuf_adds(sb, "\n");
}

void metrics_sample(struct sbuf *sb, const char *name, double value, ...)
{
	struct sbuf labels;
	sbuf_init(&labels);
	va_list ap;
	va_start(ap, value);
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		if (v)
			metrics_label(&labels, k, v);
	}
	va_end(ap);
	metrics_sample_raw(sb, name, labels.buf, value);
	sbuf_release(&labels);
}

void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->lock, NULL);
	if (n > METRICS_MAX_BUCKETS)
		n = METRICS_MAX_BUCKETS;
	memcpy(h->bounds, bounds, n * sizeof *bounds);
	h->nbounds = n;
}

void metrics_hist_destroy(struct metrics_hist *h)
{
	pthread_mutex_destroy(&h->lock);
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
	if (isnan(v))
		return;
	pthread_mutex_lock(&h->lock);
	size_t i = 0;
	while (i < h->nbounds && v > h->bounds[i])
		i++;
	if (i < h->nbounds)
		h->counts[i]++;
	h->count++;
	h->sum += v;
	pthread_mutex_unlock(&h->lock);
}

void metrics_hist_write(struct sbuf *sb, const char *name, const char *labels,
			struct metrics_hist *h)
{
	pthread_mutex_lock(&h->lock);
	uint64_t counts[METRICS_MAX_BUCKETS], count = h->count;
	double sum = h->sum;
	size_t n = h->nbounds;
	memcpy(counts, h->counts, sizeof counts);
	pthread_mutex_unlock(&h->lock);
	char *bucket = xasprintf("%s_bucket", name);
	uint64_t cum = 0;
	for (size_t i = 0; i <= n; i++) {
		struct sbuf l;
		sbuf_init(&l);
		if (labels && *labels)
			sbuf_adds(&l, labels);
		char le[40];
		if (i < n) {
			cum += counts[i];
			snprintf(le, sizeof le, "%g", h->bounds[i]);
		} else {
			cum = count;
			snprintf(le, sizeof le, "+Inf");
		}
		metrics_label(&l, "le", le);
		metrics_sample_raw(sb, bucket, l.buf, (double)cum);
		sbuf_release(&l);
	}
	free(bucket);
	char *s = xasprintf("%s_sum", name), *c = xasprintf("%s_count", name);
	metrics_sample_raw(sb, s, labels, sum);
	metrics_sample_raw(sb, c, labels, (double)count);
	free(s);
	free(c);
}
