#include <time.h>

#include "core/cron.h"
#include "unit.h"

static int64_t utc_ms(int y, int mo, int d, int h, int mi)
{
	struct tm tm = {
	    .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
	return (int64_t)timegm(&tm) * 1000;
}

static int64_t next_of(const char *expr, int64_t after)
{
	struct cron_expr e;
	struct berr err = {0};
	if (cron_parse(expr, &e, &err) < 0) {
		fprintf(stderr, "    parse '%s': %s\n", expr, err.msg);
		return -2;
	}
	return cron_next(&e, after, true);
}

TEST(every_minute_is_the_next_whole_minute)
{
	CHECK(next_of("* * * * *", utc_ms(2026, 11, 25, 10, 0) + 1500) ==
	      utc_ms(2026, 11, 25, 10, 1));
	/* strictly after: on the minute itself gives the next one */
	CHECK(next_of("* * * * *", utc_ms(2026, 11, 25, 10, 0)) == utc_ms(2026, 11, 25, 10, 1));
}

TEST(steps_ranges_and_lists)
{
	int64_t base = utc_ms(2026, 11, 25, 10, 7);
	CHECK(next_of("*/5 * * * *", base) == utc_ms(2026, 11, 25, 10, 10));
	CHECK(next_of("0 9-17 * * *", utc_ms(2026, 11, 25, 17, 30)) == utc_ms(2026, 11, 26, 9, 0));
	CHECK(next_of("15,45 * * * *", base) == utc_ms(2026, 11, 25, 10, 15));
	CHECK(next_of("10-20/5 * * * *", base) == utc_ms(2026, 11, 25, 10, 10));
	CHECK(next_of("5/20 * * * *", base) == utc_ms(2026, 11, 25, 10, 25));
}

TEST(names_for_months_and_weekdays)
{
	/* 2026-11-25 is a Wednesday */
	CHECK(next_of("0 8 * * MON", utc_ms(2026, 11, 25, 0, 0)) == utc_ms(2026, 11, 30, 8, 0));
	CHECK(next_of("0 8 * * mon-fri", utc_ms(2026, 11, 27, 9, 0)) == utc_ms(2026, 11, 30, 8, 0));
	CHECK(next_of("0 0 1 jan *", utc_ms(2026, 11, 25, 0, 0)) == utc_ms(2027, 1, 1, 0, 0));
	CHECK(next_of("0 0 * * 7", utc_ms(2026, 11, 25, 0, 0)) == utc_ms(2026, 11, 29, 0, 0));
}

TEST(day_of_month_or_day_of_week_when_both_restricted)
{
	/* the 1st of the month or any Friday: Friday 27th comes first */
	CHECK(next_of("0 0 1 * fri", utc_ms(2026, 11, 25, 0, 0)) == utc_ms(2026, 11, 27, 0, 0));
	CHECK(next_of("0 0 1 * fri", utc_ms(2026, 11, 28, 0, 0)) == utc_ms(2026, 12, 1, 0, 0));
}

TEST(impossible_dates_give_no_next_run)
{
	CHECK(next_of("0 0 30 2 *", utc_ms(2026, 1, 1, 0, 0)) == -1);
	CHECK(next_of("0 0 29 2 *", utc_ms(2026, 3, 1, 0, 0)) == utc_ms(2028, 2, 29, 0, 0));
}

TEST(bad_expressions_are_refused_with_the_field)
{
	struct cron_expr e;
	struct berr err = {0};
	CHECK(cron_parse("* * * *", &e, &err) < 0);
	CHECK_CONTAINS(err.msg, "five fields");
	CHECK(cron_parse("* * * * * *", &e, &err) < 0);
	CHECK(cron_parse("60 * * * *", &e, &err) < 0);
	CHECK_CONTAINS(err.msg, "minute");
	CHECK(cron_parse("* 24 * * *", &e, &err) < 0);
	CHECK_CONTAINS(err.msg, "hour");
	CHECK(cron_parse("* * 0 * *", &e, &err) < 0);
	CHECK_CONTAINS(err.msg, "day of month");
	CHECK(cron_parse("* * * foo *", &e, &err) < 0);
	CHECK_CONTAINS(err.msg, "month");
	CHECK(cron_parse("*/0 * * * *", &e, &err) < 0);
	CHECK(cron_parse("5-1 * * * *", &e, &err) < 0);
	CHECK(cron_parse("1,,2 * * * *", &e, &err) < 0);
	CHECK(cron_parse("", &e, &err) < 0);
}

TEST(local_time_zone_is_honoured)
{
	setenv("TZ", "America/New_York", 1);
	tzset();
	struct cron_expr e;
	struct berr err = {0};
	CHECK(cron_parse("0 9 * * *", &e, &err) == 0);
	/* 9:00 in New York on 2026-11-25 (EST, UTC-5) is 14:00 UTC */
	int64_t n = cron_next(&e, utc_ms(2026, 11, 25, 12, 0), false);
	if (n == utc_ms(2026, 11, 25, 9, 0))
		SKIP("no time zone data (tzdata) on this machine");
	CHECK(n == utc_ms(2026, 11, 25, 14, 0));
}

UNIT_MAIN(every_minute_is_the_next_whole_minute, steps_ranges_and_lists,
	  names_for_months_and_weekdays, day_of_month_or_day_of_week_when_both_restricted,
	  impossible_dates_give_no_next_run, bad_expressions_are_refused_with_the_field,
	  local_time_zone_is_honoured)
