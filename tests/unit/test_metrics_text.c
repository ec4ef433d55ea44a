/* test_metrics_text.c - the Prometheus text encoder (core/metrics_text.h). */
#include "core/metrics_text.h"

#include <math.h>

#include "unit.h"

TEST(escapes_label_values)
{
	struct sbuf sb;
	sbuf_init(&sb);
	metrics_sample(&sb, "berth_x", 1, "job", "a\"b\\c\nd", "node", "n1", NULL);
	CHECK_STR(sb.buf, "berth_x{job=\"a\\\"b\\\\c\\nd\",node=\"n1\"} 1\n");
	sbuf_release(&sb);
}

TEST(skips_null_labels_and_writes_bare_names)
{
	struct sbuf sb;
	sbuf_init(&sb);
	metrics_sample(&sb, "berth_y", 2.5, "job", NULL, NULL);
	metrics_sample(&sb, "berth_z", 1796598384899000.0, NULL);
	CHECK_STR(sb.buf, "berth_y 2.5\nberth_z 1796598384899000\n");
	sbuf_release(&sb);
}

TEST(writes_special_values)
{
	struct sbuf sb;
	sbuf_init(&sb);
	metrics_sample(&sb, "a", NAN, NULL);
	metrics_sample(&sb, "b", INFINITY, NULL);
	metrics_sample(&sb, "c", -INFINITY, NULL);
	metrics_sample(&sb, "d", 0.1, NULL);
	CHECK_STR(sb.buf, "a NaN\nb +Inf\nc -Inf\nd 0.1\n");
	sbuf_release(&sb);
}

TEST(family_header_escapes_help)
{
	struct sbuf sb;
	sbuf_init(&sb);
	metrics_family(&sb, "berth_tasks", "gauge", "Tasks\nby \\state.");
	CHECK_STR(sb.buf, "# HELP berth_tasks Tasks\\nby \\\\state.\n# TYPE berth_tasks gauge\n");
	sbuf_release(&sb);
}

TEST(histogram_buckets_are_cumulative)
{
	static const double b[] = {0.1, 1, 10};
	struct metrics_hist h;
	metrics_hist_init(&h, b, 3);
	metrics_hist_observe(&h, 0.05);
	metrics_hist_observe(&h, 0.1); /* le is inclusive */
	metrics_hist_observe(&h, 5);
	metrics_hist_observe(&h, 100);
	metrics_hist_observe(&h, NAN); /* not counted */
	struct sbuf sb;
	sbuf_init(&sb);
	metrics_hist_write(&sb, "lat_seconds", "job=\"j\"", &h);
	CHECK_STR(sb.buf, "lat_seconds_bucket{job=\"j\",le=\"0.1\"} 2\n"
			  "lat_seconds_bucket{job=\"j\",le=\"1\"} 2\n"
			  "lat_seconds_bucket{job=\"j\",le=\"10\"} 3\n"
			  "lat_seconds_bucket{job=\"j\",le=\"+Inf\"} 4\n"
			  "lat_seconds_sum{job=\"j\"} 105.15\n"
			  "lat_seconds_count{job=\"j\"} 4\n");
	sbuf_release(&sb);
	metrics_hist_destroy(&h);
}

TEST(histogram_without_labels)
{
	struct metrics_hist h;
	metrics_hist_init(&h, metrics_latency_bounds, metrics_latency_nbounds);
	struct sbuf sb;
	sbuf_init(&sb);
	metrics_hist_write(&sb, "x_seconds", NULL, &h);
	CHECK_CONTAINS(sb.buf, "x_seconds_bucket{le=\"0.0025\"} 0\n");
	CHECK_CONTAINS(sb.buf,
		       "x_seconds_bucket{le=\"+Inf\"} 0\nx_seconds_sum 0\nx_seconds_count 0\n");
	sbuf_release(&sb);
	metrics_hist_destroy(&h);
}

UNIT_MAIN(escapes_label_values, skips_null_labels_and_writes_bare_names, writes_special_values,
	  family_header_escapes_help, histogram_buckets_are_cumulative, histogram_without_labels)
