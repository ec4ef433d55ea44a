/* test_agent_report.c - an agent's watch and status bodies read without a
 * tree: the members the server uses, and the same acceptance and messages
 * as jansson (differential, agent_report_same.h). */
#include "core/agent_report.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent_report_same.h"
#include "core/json_scan.h"
#include "core/lifecycle.h"
#include "unit.h"

static struct agent_report *parse(const char *text, enum agent_call call, struct berr *err)
{
	return agent_report_parse(text, strlen(text), call, err);
}

/* Both calls' readings agree with jansson. */
static void check_same(const char *text, size_t len)
{
	const char *why = agent_report_differs(text, len, AGENT_CALL_WATCH);
	if (!why)
		why = agent_report_differs(text, len, AGENT_CALL_STATUS);
	if (why)
		fprintf(stderr, "    differs (%s) on: %.*s\n", why, (int)(len > 200 ? 200 : len),
			text);
	CHECK(why == NULL);
}

static void check_same_s(const char *text)
{
	check_same(text, strlen(text));
}

TEST(a_watch_is_read_member_by_member)
{
	struct berr err = {0};
	const char *text =
	    "{\"name\":\"n1\",\"known_version\":7,\"wait_ms\":1000,\"endpoints_version\":0,"
	    "\"extra\":{\"deep\":[1,2,{\"x\":null}]},\"tasks\":["
	    "{\"id\":\"a/prod/web/0-1\",\"state\":\"RUNNING\",\"pid\":42,\"address\":\"10.0.0.2\"},"
	    "{\"state\":\"RUNNING\"},"
	    "7,"
	    "{\"id\":\"a/prod/web/1-1\",\"state\":\"FAILED\",\"exit_code\":-3,"
	    "\"message\":\"exited \\\"3\\\"\\n\\u00e9\\ud83d\\ude00\",\"pid\":1.5,"
	    "\"logs\":{\"stdout\":\"aGk=\",\"stderr\":5,\"other\":[]}},"
	    "{\"id\":\"x\",\"state\":\"SLEEPING\",\"address\":\"not an ip\",\"logs\":[]}]}";
	struct agent_report *r = parse(text, AGENT_CALL_WATCH, &err);
	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_STR(r->name, "n1");
	CHECK(r->has_known_version && r->known_version == 7);
	CHECK(r->has_wait_ms && r->wait_ms == 1000);
	CHECK(r->has_endpoints_version && r->endpoints_version == 0);
	CHECK(r->list == AGENT_LIST_ARRAY);
	/* Entries without a string id are left out. */
	CHECK(r->ntasks == 3);
	const struct agent_task_report *t = &r->tasks[0];
	CHECK_STR(t->id, "a/prod/web/0-1");
	CHECK(t->state == TASK_RUNNING);
	CHECK(t->has_pid && t->pid == 42 && !t->has_exit_code);
	CHECK(t->has_address && t->address == 0x0a000002);
	CHECK(t->message == NULL && !t->has_logs);
	t = &r->tasks[1];
	CHECK(t->state == TASK_FAILED);
	CHECK(t->has_exit_code && t->exit_code == -3);
	CHECK(!t->has_pid); /* 1.5 is not an integer */
	/* Escapes decoded, a surrogate pair into one 4-byte sequence. */
	CHECK_STR(t->message, "exited \"3\"\n\xc3\xa9\xf0\x9f\x98\x80");
	CHECK(t->has_logs && t->out.given && t->out.len == 4 && !memcmp(t->out.text, "aGk=", 4));
	CHECK(t->err.given && t->err.text == NULL); /* not a string */
	t = &r->tasks[2];
	CHECK(t->state == -1 && !t->has_address && !t->has_logs);
	agent_report_free(r);
	check_same_s(text);

	/* A status reads "updates", a watch "tasks". */
	r = parse("{\"name\":\"n\",\"updates\":[{\"id\":\"a\"}],\"tasks\":5}", AGENT_CALL_STATUS,
		  &err);
	CHECK(r && r->list == AGENT_LIST_ARRAY && r->ntasks == 1);
	agent_report_free(r);
	r = parse("{\"name\":\"n\",\"updates\":[{\"id\":\"a\"}],\"tasks\":5}", AGENT_CALL_WATCH,
		  &err);
	CHECK(r && r->list == AGENT_LIST_NOT_ARRAY && r->ntasks == 0);
	agent_report_free(r);
	r = parse("{\"name\":7,\"known_version\":\"7\",\"tasks\":null}", AGENT_CALL_WATCH, &err);
	CHECK(r && !r->name && !r->has_known_version && r->list == AGENT_LIST_NOT_ARRAY);
	agent_report_free(r);
	r = parse(" {} ", AGENT_CALL_STATUS, &err);
	CHECK(r && !r->name && r->list == AGENT_LIST_ABSENT);
	agent_report_free(r);
}

TEST(bad_bodies_get_the_messages_jansson_gave)
{
	struct berr err = {0};
	CHECK(parse("[1]", AGENT_CALL_WATCH, &err) == NULL);
	CHECK(err.code == 400);
	CHECK_STR(err.msg, "malformed request: expected a JSON object");
	CHECK(parse("{\"name\":\"n\",\"name\":\"m\"}", AGENT_CALL_WATCH, &err) == NULL);
	CHECK(err.code == 400);
	CHECK(strstr(err.msg, "malformed JSON at line 1 column") == err.msg);
	CHECK(strstr(err.msg, "duplicate object key") != NULL);
	CHECK(parse("", AGENT_CALL_STATUS, &err) == NULL);
	CHECK(strstr(err.msg, "malformed JSON at line") == err.msg);
	CHECK(agent_report_parse(NULL, 0, AGENT_CALL_STATUS, &err) == NULL);
	CHECK(err.code == 400);
	static const char *bad[] = {
	    "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}",
	    "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 2]}", "{\"a\":01}", "{\"a\":-}",
	    "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":tru}", "{\"a\":truex}",
	    "{\"a\":nul}", "{\"a\":NaN}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
	    "{\"a\":\"\\u12g4\"}", "{\"a\":\"tab\there\"}", "{\"a\":1} {}", "{\"a\":1}x", "{'a':1}",
	    "{\"a\":1}\x01", "\xef\xbb\xbf{}",
	    /* duplicates, anywhere, compared decoded */
	    "{\"tasks\":[],\"tasks\":[]}", "{\"tasks\":[{\"id\":\"a\",\"id\":\"b\"}]}",
	    "{\"x\":{\"y\":{\"k\":1,\"k\":2}}}", "{\"a\":1,\"\\u0061\":2}",
	    "{\"updates\":[{\"logs\":{\"stdout\":\"\",\"stdout\":\"\"}}]}",
	    "{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,\"i\":0,\"j\":0,"
	    "\"k\":0,\"l\":0,\"m\":0,\"n\":0,\"o\":0,\"p\":0,\"q\":0,\"c\":0}",
	    /* NUL, surrogates */
	    "{\"a\":\"\\u0000\"}", "{\"\\u0000\":1}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}",
	    "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\\ud800x\"}", "{\"a\":\"\\ud800\\n\"}",
	    /* numbers beyond jansson's range */
	    "{\"a\":9223372036854775808}", "{\"a\":-9223372036854775809}",
	    "{\"a\":99999999999999999999999}", "{\"a\":1e309}", "{\"a\":-1e999}",
	    /* bad UTF-8: overlong, surrogate, past U+10FFFF, cut, stray */
	    "{\"a\":\"\xc0\x80\"}", "{\"a\":\"\xc1\xbf\"}", "{\"a\":\"\xe0\x80\xaf\"}",
	    "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}",
	    "{\"a\":\"\xf5\x80\x80\x80\"}", "{\"a\":\"\xe2\x82\"}", "{\"a\":\"\x80\"}",
	    "{\"a\":\"\xff\"}", "{\"\xc3\":1}"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct agent_report *r = parse(bad[i], AGENT_CALL_WATCH, &err);
		if (r)
			fprintf(stderr, "    accepted: %s\n", bad[i]);
		CHECK(r == NULL);
		check_same_s(bad[i]);
	}
	/* A NUL byte in the text. */
	static const char nul1[] = "{\"a\":\"x\0\"}", nul2[] = "{\"a\":1}\0";
	check_same(nul1, sizeof nul1 - 1);
	check_same(nul2, sizeof nul2 - 1);
	/* One NUL right after a number or a literal: jansson loses it (and
	 * accepts), two it does not. */
	static const char nul3[] = "{\"a\":2\0,\"b\":true\0}", nul4[] = "{\"a\":2\0\0}",
			  nul5[] = "{\"a\":2 \0}";
	check_same(nul3, sizeof nul3 - 1);
	check_same(nul4, sizeof nul4 - 1);
	check_same(nul5, sizeof nul5 - 1);
	CHECK(agent_report_parse(nul4, sizeof nul4 - 1, AGENT_CALL_WATCH, &err) == NULL);
}

TEST(edge_values_are_accepted_as_jansson_does)
{
	static const char *good[] = {
	    "{\"a\":9223372036854775807}",
	    "{\"a\":-9223372036854775808}",
	    "{\"a\":-0}",
	    "{\"a\":1e308}",
	    "{\"a\":1e-400}",
	    "{\"a\":-0.0e+0}",
	    "{\"a\":1E2}",
	    "{\"known_version\":-1}",
	    "{\"known_version\":1.0}",
	    "{\"a\":\"\\u00e9\\/\\b\\f\\r\\t\"}",
	    "{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\x7f\"}",
	    "{\"a\":\"\\udbff\\udfff\"}",
	    "{\"\":1,\"a\\u0062\":2,\"ab\\u0000\":3}",
	    " \t\r\n{ \"tasks\" : [ { \"id\" : \"a\" , \"state\" : \"RUNNING\" } ] } \n",
	    "{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,\"i\":0,\"j\":0,"
	    "\"k\":0,\"l\":0,\"m\":0,\"n\":0,\"o\":0,\"p\":0,\"q\":0,\"r\":0}",
	    "{\"tasks\":[{\"id\":\"a\",\"logs\":{}}],\"updates\":{\"id\":1}}",
	    "{\"a\":[],\"b\":{},\"c\":[[],{}],\"d\":true,\"e\":false,\"f\":null}"};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		check_same_s(good[i]);
	struct berr err = {0};
	struct agent_report *r = parse(good[0], AGENT_CALL_WATCH, &err);
	CHECK(r != NULL);
	agent_report_free(r);
}

/* Values nested around jansson's limit (2048, the top value at 1), in an
 * object member the reader skips and in the task list it reads. */
TEST(depth_is_limited_as_jansson_limits_it)
{
	for (int depth = JSON_SCAN_DEPTH_MAX - 2; depth <= JSON_SCAN_DEPTH_MAX + 2; depth++) {
		for (int form = 0; form < 4; form++) {
			struct sbuf sb;
			sbuf_init(&sb);
			sbuf_adds(&sb, form < 2 ? "{\"x\":" : "{\"tasks\":[{\"logs\":");
			int open = depth - (form < 2 ? 1 : 3);
			for (int k = 0; k < open; k++)
				sbuf_adds(&sb, form % 2 ? "{\"k\":" : "[");
			sbuf_adds(&sb, "1");
			for (int k = 0; k < open; k++)
				sbuf_adds(&sb, form % 2 ? "}" : "]");
			sbuf_adds(&sb, form < 2 ? "}" : "}]}");
			check_same(sb.buf, sb.len);
			sbuf_release(&sb);
		}
	}
	/* Far deeper: refused, no stack used for it. */
	size_t n = 200000;
	char *deep = xmalloc(n + 8);
	memcpy(deep, "{\"x\":", 5);
	memset(deep + 5, '[', n);
	struct berr err = {0};
	CHECK(agent_report_parse(deep, n + 5, AGENT_CALL_WATCH, &err) == NULL);
	CHECK(err.code == 400);
	free(deep);
}

/* Mutations of a real watch body (bytes changed, cut, doubled): both
 * readers agree on every one. A fixed seed: the same cases each run. */
TEST(mutated_watches_agree_with_jansson)
{
	const char *base =
	    "{\"name\":\"sim-00001\",\"known_version\":12,\"wait_ms\":1000,"
	    "\"endpoints_version\":3,\"tasks\":[{\"id\":\"scale/prod/j1/3-1\",\"state\":"
	    "\"RUNNING\",\"pid\":101,\"exit_code\":0,\"message\":\"\\u00e9t\\u00e9 "
	    "\\ud83d\\ude00\","
	    "\"address\":\"10.1.2.3\",\"logs\":{\"stdout\":\"aGk=\",\"stderr\":\"\"}},{\"id\":"
	    "\"scale/prod/j1/4-1\",\"state\":\"FAILED\",\"exit_code\":2,\"x\":[1,-2.5e3,true,"
	    "null,{\"y\":\"z\"}]}],\"updates\":[{\"id\":\"q\"}]}";
	size_t len = strlen(base);
	static const char alphabet[] = "{}[]:,\"\\u0aeE.-+ 9tfn\x80\xc3\xed\xf4\xff\x01";
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	char *buf = xmalloc(2 * len + 16);
	int checked = 0, accepted = 0;
	for (int round = 0; round < 30000; round++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		memcpy(buf, base, len);
		size_t n = len;
		int edits = 1 + (int)(seed % 3);
		for (int e = 0; e < edits; e++) {
			uint64_t x = seed >> (8 + e * 16);
			size_t at = (size_t)(x % n);
			switch ((x >> 40) % 4) {
			case 0: /* a byte replaced */
				buf[at] = alphabet[(x >> 20) % (sizeof alphabet - 1)];
				break;
			case 1: /* a byte removed */
				memmove(buf + at, buf + at + 1, n - at - 1);
				n--;
				break;
			case 2: /* cut */
				n = at + 1;
				break;
			default: /* a byte inserted */
				memmove(buf + at + 1, buf + at, n - at);
				buf[at] = alphabet[(x >> 24) % (sizeof alphabet - 1)];
				n++;
			}
		}
		check_same(buf, n);
		struct berr err = {0};
		struct agent_report *r = agent_report_parse(buf, n, AGENT_CALL_WATCH, &err);
		accepted += r != NULL;
		agent_report_free(r);
		checked++;
	}
	free(buf);
	/* Both kinds were tried. */
	CHECK(checked == 30000);
	CHECK(accepted > 100 && accepted < checked);
}

UNIT_MAIN(a_watch_is_read_member_by_member, bad_bodies_get_the_messages_jansson_gave,
	  edge_values_are_accepted_as_jansson_does, depth_is_limited_as_jansson_limits_it,
	  mutated_watches_agree_with_jansson)
