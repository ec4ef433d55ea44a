#include "core/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const field_names[] = {"minute", "hour", "day of month", "month", "day of week"};
static const int field_min[] = {0, 0, 1, 1, 0};
static const int field_max[] = {59, 23, 31, 12, 7};
static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
				     "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* A number or (for months and weekdays) a name. */
static int parse_atom(const char **p, int field, int *out)
{
	const char *s = *p;
	if (isdigit((unsigned char)*s)) {
		long v = 0;
		while (isdigit((unsigned char)*s) && v < 1000)
			v = v * 10 + (*s++ - '0');
		*out = (int)v;
		*p = s;
		return 0;
	}
	const char *const *names = field == 3 ? months : field == 4 ? days : NULL;
	int n = field == 3 ? 12 : 7;
	if (!names)
		return -1;
	for (int i = 0; i < n; i++)
		if (!strncasecmp(s, names[i], 3) && !isalpha((unsigned char)s[3])) {
			*out = field == 3 ? i + 1 : i;
			*p = s + 3;
			return 0;
		}
	return -1;
}

static int parse_field(const char *text, int field, uint64_t *bits, bool *star, struct berr *err)
{
	const char *name = field_names[field];
	int lo = field_min[field], hi = field_max[field];
	*bits = 0;
	*star = false;
	const char *p = text;
	for (;;) {
		int a, b, step = 1;
		bool whole = false;
		if (*p == '*') {
			a = lo;
			b = hi;
			whole = true;
			p++;
		} else {
			if (parse_atom(&p, field, &a) < 0)
				return berr_set(err, 400, "cron %s: expected a value, found '%s'",
						name, text);
			b = a;
			if (*p == '-') {
				p++;
				if (parse_atom(&p, field, &b) < 0)
					return berr_set(err, 400, "cron %s: bad range in '%s'",
							name, text);
			}
		}
		if (*p == '/') {
			p++;
			if (!isdigit((unsigned char)*p))
				return berr_set(err, 400, "cron %s: bad step in '%s'", name, text);
			step = 0;
			while (isdigit((unsigned char)*p) && step < 1000)
				step = step * 10 + (*p++ - '0');
			if (step < 1)
				return berr_set(err, 400,
						"cron %s: step must be at least 1 in '%s'", name,
						text);
			if (!whole && b == a)
				b = hi; /* "5/15" means 5-max/15 */
		}
		if (a < lo || b > hi || a > b)
			return berr_set(err, 400, "cron %s: %d-%d is outside %d-%d in '%s'", name,
					a, b, lo, hi, text);
		if (whole && step == 1)
			*star = true;
		for (int v = a; v <= b; v += step)
			*bits |= 1ULL << (field == 4 ? v % 7 : v);
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p)
			return berr_set(err, 400, "cron %s: unexpected '%s'", name, p);
		return 0;
	}
}

int cron_parse(const char *text, struct cron_expr *out, struct berr *err)
{
	memset(out, 0, sizeof *out);
	char buf[256];
	if (!text || strlen(text) >= sizeof buf)
		return berr_set(err, 400, "cron schedule: expected five fields");
	snprintf(buf, sizeof buf, "%s", text);
	char *fields[6] = {0};
	int n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (n == 5)
			return berr_set(
			    err, 400, "cron schedule '%s': expected five fields, found more", text);
		fields[n++] = tok;
	}
	if (n != 5)
		return berr_set(err, 400, "cron schedule '%s': expected five fields, found %d",
				text, n);
	uint64_t bits[5];
	bool star[5];
	for (int i = 0; i < 5; i++)
		if (parse_field(fields[i], i, &bits[i], &star[i], err) < 0)
			return -1;
	out->minute = bits[0];
	out->hour = (uint32_t)bits[1];
	out->mday = (uint32_t)bits[2];
	out->month = (uint16_t)bits[3];
	out->wday = (uint8_t)bits[4];
	out->mday_star = star[2];
	out->wday_star = star[4];
	return 0;
}

static bool day_matches(const struct cron_expr *e, const struct tm *tm)
{
	bool md = (e->mday >> tm->tm_mday) & 1, wd = (e->wday >> tm->tm_wday) & 1;
	if (e->mday_star || e->wday_star)
		return md && wd;
	return md || wd; /* both restricted: either (Vixie cron) */
}

static time_t to_time(struct tm *tm, bool utc)
{
	tm->tm_isdst = -1;
	return utc ? timegm(tm) : mktime(tm);
}

/* Past year 9999 there is no next run worth computing (and a time from a
 * damaged record must not overflow the arithmetic below). */
#define CRON_MAX_MS 253402300799000LL

int64_t cron_next(const struct cron_expr *e, int64_t after_ms, bool utc)
{
	if (after_ms < -CRON_MAX_MS || after_ms > CRON_MAX_MS)
		return -1;
	time_t t = (time_t)(after_ms / 1000);
	t = t - t % 60 + 60; /* the next whole minute */
	time_t limit = t + (time_t)5 * 366 * 24 * 3600;
	struct tm tm;
	while (t < limit) {
		if (utc)
			gmtime_r(&t, &tm);
		else
			localtime_r(&t, &tm);
		if (!((e->month >> (tm.tm_mon + 1)) & 1)) {
			tm.tm_mon++;
			tm.tm_mday = 1;
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		} else if (!day_matches(e, &tm)) {
			tm.tm_mday++;
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		} else if (!((e->hour >> tm.tm_hour) & 1)) {
			tm.tm_hour++;
			tm.tm_min = tm.tm_sec = 0;
		} else if (!((e->minute >> tm.tm_min) & 1)) {
			tm.tm_min++;
			tm.tm_sec = 0;
		} else {
			return (int64_t)t * 1000;
		}
		time_t next = to_time(&tm, utc);
		/* A DST gap can map a local time backwards: always move on. */
		t = next > t ? next : t + 60;
	}
	return -1;
}
