/* cron.h - five-field cron expressions, as crontab(5) writes them.
 *
 *   minute hour day-of-month month day-of-week
 *   "0-59/5 * * * *"   "0 9-17 * * mon-fri"   "30 2 1,15 jan,jul *"
 *
 * Each field takes *, a value, a range a-b, a step (a-b/n, or * followed by /n) and lists
 * of those separated by commas. Months and days of the week take names
 * (jan..dec, sun..sat; case-insensitive); day of week 7 is Sunday too. As in
 * Vixie cron, when both day-of-month and day-of-week are restricted a day
 * matches if either does.
 */
#ifndef BERTH_CRON_H
#define BERTH_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "core/util.h"

struct cron_expr {
	uint64_t minute; /* bit n set: minute n matches (0-59) */
	uint32_t hour;	 /* 0-23 */
	uint32_t mday;	 /* 1-31 */
	uint16_t month;	 /* 1-12 */
	uint8_t wday;	 /* 0-6, Sunday = 0 */
	bool mday_star, wday_star;
};

/* Parse; on error berr says which field and why (code 400). */
int cron_parse(const char *text, struct cron_expr *out, struct berr *err);

/* The first matching minute strictly after `after_ms` (Unix ms), read in
 * UTC when `utc`, else in the process's local time zone (the server sets TZ
 * from --cron-timezone at start). Returns Unix ms, or -1 when nothing
 * matches within five years (e.g. "0 0 30 2 *"), or after_ms is beyond
 * year 9999 either way. */
int64_t cron_next(const struct cron_expr *e, int64_t after_ms, bool utc);

#endif
