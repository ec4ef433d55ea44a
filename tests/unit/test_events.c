/* test_events.c - the event log (server/events.h): order, filters, the
 * ring's overflow, parking readers. */
#include "server/events.h"

#include "unit.h"

static uint64_t add(struct event_log *log, enum event_type type, const char *job, const char *node,
		    const char *state)
{
	struct event_fields f = {
	    .type = type, .job = job, .instance = job ? 0 : -1, .node = node, .state = state};
	return events_append(log, &f);
}

/* The indexes of the frames in text, space-separated. */
static void ids_of(const char *text, char *out, size_t n)
{
	out[0] = 0;
	size_t len = 0;
	for (const char *p = strstr(text, "id: "); p; p = strstr(p + 1, "\nid: ")) {
		const char *s = *p == '\n' ? p + 5 : p + 4;
		len += (size_t)snprintf(out + len, n - len, "%s%llu", len ? " " : "",
					strtoull(s, NULL, 10));
	}
}

TEST(indexes_increase_from_the_first)
{
	struct event_log *log = events_new(8, 100);
	CHECK(events_newest(log) == 99);
	CHECK(add(log, EVENT_TASK, "r/prod/a", "n1", "PENDING") == 100);
	CHECK(add(log, EVENT_NODE, NULL, "n1", "DOWN") == 101);
	CHECK(events_oldest(log) == 100 && events_newest(log) == 101);
	struct sbuf sb;
	sbuf_init(&sb);
	uint64_t cur = 99, missed = 0;
	CHECK(events_read(log, &cur, NULL, &sb, 1 << 20, &missed) == 2);
	CHECK(cur == 101 && missed == 0);
	CHECK_CONTAINS(sb.buf, "id: 100\ndata: {\"index\":100,\"time\":");
	CHECK_CONTAINS(sb.buf, "\"type\":\"task\",\"job\":\"r/prod/a\",\"instance\":0,"
			       "\"node\":\"n1\",\"state\":\"PENDING\"}\n\n");
	CHECK_CONTAINS(sb.buf, "\"type\":\"node\",\"node\":\"n1\",\"state\":\"DOWN\"}\n\n");
	char ids[200];
	ids_of(sb.buf, ids, sizeof ids);
	CHECK_STR(ids, "100 101");
	/* Resuming from an index gives only later events. */
	sb.len = 0;
	sb.buf[0] = 0;
	cur = 100;
	CHECK(events_read(log, &cur, NULL, &sb, 1 << 20, &missed) == 1);
	ids_of(sb.buf, ids, sizeof ids);
	CHECK_STR(ids, "101");
	sbuf_release(&sb);
	events_free(log);
}

TEST(filters_by_job_node_type_and_role)
{
	struct event_log *log = events_new(64, 1);
	add(log, EVENT_JOB, "alice/prod/web", NULL, "SUBMITTED"); /* 1 */
	add(log, EVENT_TASK, "alice/prod/web", "n1", "RUNNING");  /* 2 */
	add(log, EVENT_TASK, "bob/prod/db", "n2", "RUNNING");	  /* 3 */
	add(log, EVENT_NODE, NULL, "n1", "DRAINING");		  /* 4 */
	add(log, EVENT_LEADER, NULL, NULL, "leader");		  /* 5 */
	add(log, EVENT_TASK, "alice/prod/webx", "n2", "PENDING"); /* 6 */
	struct {
		struct event_filter f;
		const char *want;
	} cases[] = {
	    {{.job = "alice/prod/web"}, "1 2"},
	    {{.node = "n1"}, "2 4"},
	    {{.types = 1u << EVENT_TASK}, "2 3 6"},
	    {{.types = (1u << EVENT_NODE) | (1u << EVENT_LEADER)}, "4 5"},
	    {{.role = "alice"}, "1 2 6"},
	    {{.role = "bob", .types = 1u << EVENT_TASK}, "3"},
	    {{.job = "alice/prod/web", .node = "n2"}, ""},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct sbuf sb;
		sbuf_init(&sb);
		uint64_t cur = 0, missed = 0;
		events_read(log, &cur, &cases[i].f, &sb, 1 << 20, &missed);
		CHECK(cur == 6); /* every event was looked at */
		char ids[200];
		ids_of(sb.buf, ids, sizeof ids);
		CHECK_STR(ids, cases[i].want);
		sbuf_release(&sb);
	}
	events_free(log);
}

TEST(overflow_reports_what_was_missed)
{
	struct event_log *log = events_new(4, 1);
	for (int i = 0; i < 10; i++)
		add(log, EVENT_TASK, "r/prod/a", NULL, "RUNNING");
	CHECK(events_oldest(log) == 7 && events_newest(log) == 10);
	struct sbuf sb;
	sbuf_init(&sb);
	uint64_t cur = 2, missed = 0;
	CHECK(events_read(log, &cur, NULL, &sb, 1 << 20, &missed) == 0);
	CHECK(missed == 4); /* 3, 4, 5, 6 */
	CHECK(cur == 6);
	CHECK(events_read(log, &cur, NULL, &sb, 1 << 20, &missed) == 4);
	CHECK(missed == 0 && cur == 10);
	char ids[200];
	ids_of(sb.buf, ids, sizeof ids);
	CHECK_STR(ids, "7 8 9 10");
	sbuf_release(&sb);
	events_free(log);
}

TEST(reads_stop_at_the_byte_budget)
{
	struct event_log *log = events_new(16, 1);
	for (int i = 0; i < 10; i++)
		add(log, EVENT_TASK, "r/prod/a", NULL, "RUNNING");
	struct sbuf sb;
	sbuf_init(&sb);
	uint64_t cur = 0, missed = 0;
	CHECK(events_read(log, &cur, NULL, &sb, 1, &missed) == 1);
	CHECK(cur == 1);
	sbuf_release(&sb);
	events_free(log);
}

TEST(messages_are_escaped_and_cut)
{
	struct event_log *log = events_new(4, 1);
	char big[EVENT_MESSAGE_MAX * 2];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	struct event_fields f = {
	    .type = EVENT_TASK, .instance = -1, .message = "a \"quoted\"\nline"};
	events_append(log, &f);
	f.message = big;
	events_append(log, &f);
	struct sbuf sb;
	sbuf_init(&sb);
	uint64_t cur = 0, missed = 0;
	events_read(log, &cur, NULL, &sb, 1 << 20, &missed);
	CHECK_CONTAINS(sb.buf, "\"message\":\"a \\\"quoted\\\"\\nline\"}");
	CHECK_CONTAINS(sb.buf, "xxx...\"}");
	CHECK(sb.len < 2 * EVENT_MESSAGE_MAX);
	sbuf_release(&sb);
	events_free(log);
}

TEST(parses_type_lists)
{
	unsigned m;
	struct berr err = {0};
	CHECK(event_types_parse("task,node", &m, &err) == 0);
	CHECK(m == ((1u << EVENT_TASK) | (1u << EVENT_NODE)));
	CHECK(event_types_parse("", &m, &err) == 0 && m == 0);
	CHECK(event_types_parse("task,bogus", &m, &err) < 0);
	CHECK_CONTAINS(err.msg, "unknown event type 'bogus'");
}

static int wakes;
static void on_wake(void *ud)
{
	(void)ud;
	wakes++;
}
static int parks;
static void on_park(void *ud)
{
	(void)ud;
	parks++;
}

TEST(parked_readers_wake_once_per_park)
{
	struct event_log *log = events_new(8, 1);
	struct event_sub sub = {.wake = on_wake};
	events_subscribe(log, &sub);
	add(log, EVENT_TASK, "r/prod/a", NULL, "RUNNING");
	CHECK(wakes == 0);				  /* not parked */
	CHECK(!events_park(log, &sub, 0, on_park, NULL)); /* news: not parked */
	CHECK(events_park(log, &sub, 1, on_park, NULL) && parks == 1);
	add(log, EVENT_TASK, "r/prod/a", NULL, "KILLED");
	add(log, EVENT_TASK, "r/prod/a", NULL, "KILLED");
	CHECK(wakes == 1);
	CHECK(events_park(log, &sub, 3, on_park, NULL));
	events_close(log);
	CHECK(wakes == 2);
	CHECK(!events_park(log, &sub, 3, on_park, NULL)); /* closed: never parks */
	events_unsubscribe(log, &sub);
	events_free(log);
}

UNIT_MAIN(indexes_increase_from_the_first, filters_by_job_node_type_and_role,
	  overflow_reports_what_was_missed, reads_stop_at_the_byte_budget,
	  messages_are_escaped_and_cut, parses_type_lists, parked_readers_wake_once_per_park)
