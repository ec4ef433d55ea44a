/* metrics_text.h - the Prometheus text exposition format (version 0.0.4),
 * written into an sbuf, and the histograms and counters it shows.
 *
 * A scrape is built as:
 *
 *     metrics_family(&sb, "berth_tasks", "gauge", "Tasks by state.");
 *     metrics_sample(&sb, "berth_tasks", 3, "state", "RUNNING", NULL);
 *
 * Label values are escaped (backslash, double quote, newline) as the format
 * asks; label names and metric names are the caller's constants. Values
 * are written as integers when they are, else with 17 significant digits;
 * NaN and infinities as "NaN", "+Inf", "-Inf".
 */
#ifndef BERTH_METRICS_TEXT_H
#define BERTH_METRICS_TEXT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* The Content-Type of a scrape's answer. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge,
 * histogram). */
void metrics_family(struct sbuf *sb, const char *name, const char *type, const char *help);
/* One sample: name{k1="v1",...} value. The labels are pairs of strings
 * ending with NULL; a NULL value skips its pair. */
void metrics_sample(struct sbuf *sb, const char *name, double value, ...) __attribute__((sentinel));
/* The same with the labels already rendered (`k="v",...` or ""). */
void metrics_sample_raw(struct sbuf *sb, const char *name, const char *labels, double value);
/* Append `k="v"` (escaped) to a rendered label list, with a comma when
 * it is not empty. */
void metrics_label(struct sbuf *labels, const char *key, const char *value);
/* A label value escaped as the text format wants. */
void metrics_escape(struct sbuf *sb, const char *value);

/* A histogram with fixed upper bounds (ascending, +Inf implied). Thread-
 * safe: observations and the writer take its own lock. */
#define METRICS_MAX_BUCKETS 24
struct metrics_hist {
	pthread_mutex_t lock;
	size_t nbounds;
	double bounds[METRICS_MAX_BUCKETS];
	uint64_t counts[METRICS_MAX_BUCKETS]; /* per bucket, not cumulative */
	uint64_t count;
	double sum;
};
/* Bounds in seconds for latencies from a millisecond to a minute. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;
/* Bounds for sizes (1, 2, 5, 10 ... 100000). */
extern const double metrics_size_bounds[];
extern const size_t metrics_size_nbounds;

void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t n);
void metrics_hist_destroy(struct metrics_hist *h);
void metrics_hist_observe(struct metrics_hist *h, double v);
/* name_bucket{labels,le="B"} (cumulative, then le="+Inf"), name_sum,
 * name_count. labels: rendered as by metrics_label, or NULL. */
void metrics_hist_write(struct sbuf *sb, const char *name, const char *labels,
			struct metrics_hist *h);

#endif
