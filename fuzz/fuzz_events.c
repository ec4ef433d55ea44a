/* clang-format off */
/* fuzz_events.c - libFuzzer target for what GET /v1/events and /metrics
 * take from callers and agents: the type list of ?type= (event_types_parse),
 * filters and messages through the event log (events_append, events_read),
 * and label values through the Prometheus encoder (metrics_sample).
 *
 * fuzz-sources: src/core/util.c src/core/metrics_text.c src/server/events.c
 * fuzz-libs: -lpthread -lm
 * (the two lines above stay one line each: scripts/fuzz.sh reads them)
 *
 * The input is split at NUL bytes: types, job, node, message. */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics_text.h"
#include "server/events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = 0;
	const char *part[4] = {"", "", "", ""};
	size_t np = 0, start = 0;
	for (size_t i = 0; i <= size && np < 4; i++)
		if (i == size || buf[i] == 0) {
			part[np++] = buf + start;
			start = i + 1;
		}
	/* Messages and names arrive as UTF-8 (agents' reports are JSON). */
	char *msg = strdup(part[3]), *job = strdup(part[1]), *node = strdup(part[2]);
	utf8_clean(msg);
	utf8_clean(job);
	utf8_clean(node);
	unsigned mask = 0;
	struct berr err = {0};
	event_types_parse(part[0], &mask, &err);
	struct event_log *log = events_new(4, 1);
	for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
		struct event_fields f = {.type = (enum event_type)t,
					 .job = *job ? job : NULL,
					 .instance = t - 1,
					 .node = *node ? node : NULL,
					 .state = "RUNNING",
					 .message = msg};
		events_append(log, &f);
	}
	struct event_filter flt = {.job = *job ? job : NULL, .types = mask, .role = job};
	struct sbuf sb;
	sbuf_init(&sb);
	uint64_t cur = 0, missed = 0;
	while (events_read(log, &cur, &flt, &sb, 64, &missed) || missed)
		;
	metrics_sample(&sb, "berth_x", 1, "job", job, "node", node, NULL);
	sbuf_release(&sb);
	events_free(log);
	free(msg);
	free(job);
	free(node);
	free(buf);
	return 0;
}
