/* cmd_quota.h - what other commands print of quotas. */
#ifndef BERTH_CMD_QUOTA_H
#define BERTH_CMD_QUOTA_H

#include <jansson.h>

/* `berth job plan`: the plan's "quota" object as one line,
 * "  quota alice: cpu 2.0 → 3.5 of 4.0, memory 1GiB → 2GiB of 8GiB" or
 * "  quota alice: would exceed: cpu 4.5 of 4.0" (nothing without it). */
void quota_print_plan(json_t *plan);

#endif
