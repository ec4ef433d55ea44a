/* test_json_text.c - JSON as text: the CLI's --json lists without a tree. */
#include <jansson.h>

#include "core/json_text.h"
#include "unit.h"

static bool valid(const char *s)
{
	size_t end = json_text_value_end(s, strlen(s), 0);
	return end && end == strlen(s);
}

/* The text re-indented must be what jansson prints for the same value. */
static void check_same_as_jansson(const char *s)
{
	struct sbuf out;
	sbuf_init(&out);
	size_t b = 0;
	while (s[b] == ' ' || s[b] == '\n')
		b++;
	json_text_indent(&out, s, b, json_text_value_end(s, strlen(s), 0), 0);
	json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
	CHECK(j != NULL);
	char *want = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	CHECK_STR(out.buf, want);
	free(want);
	json_decref(j);
	sbuf_release(&out);
}

TEST(valid_values_are_measured_whole)
{
	CHECK(valid("{}"));
	CHECK(valid("[]"));
	CHECK(valid(" [1, -2.5e+3, 0, \"a\\\"b\\u00e9\", true, false, null, {\"k\": []}]"));
	CHECK(valid("\"x\""));
	CHECK(valid("-0.125"));
	/* the value ends where it ends: what follows is the caller's */
	CHECK(json_text_value_end("[1] [2]", 7, 0) == 3);
}

TEST(invalid_text_is_refused)
{
	const char *bad[] = {"",
			     "[",
			     "[1,]",
			     "[1 2]",
			     "{\"a\" 1}",
			     "{\"a\":}",
			     "{1: 2}",
			     "\"abc",
			     "\"a\\x\"",
			     "01",
			     "1.",
			     "-",
			     "tru",
			     "[}",
			     "{]",
			     "\"\\u12\"",
			     "\"tab\there\"",
			     "{\"a\":1,}"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		size_t end = json_text_value_end(bad[i], strlen(bad[i]), 0);
		if (end == strlen(bad[i]) && end) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(false);
		}
	}
	/* nested deeper than the limit */
	char deep[JSON_TEXT_DEPTH_MAX * 2 + 8];
	size_t n = 0;
	for (int i = 0; i <= JSON_TEXT_DEPTH_MAX; i++)
		deep[n++] = '[';
	for (int i = 0; i <= JSON_TEXT_DEPTH_MAX; i++)
		deep[n++] = ']';
	CHECK(json_text_value_end(deep, n, 0) == 0);
}

TEST(indentation_matches_jansson)
{
	check_same_as_jansson("[]");
	check_same_as_jansson("{}");
	check_same_as_jansson("[{\"id\":\"n1\",\"attributes\":{},\"tags\":[],\"r\":{\"cpu\":8.5,"
			      "\"memory\":1024},\"addr\":null,\"ok\":true}, {\"id\":\"n2\"}]");
	check_same_as_jansson("  {\"nodes\" : [ 1 , [ [ ] , { } ] ], \"s\": \"a,b:{c}[d]\\\"\"}");
	check_same_as_jansson("\"just a string\"");
}

TEST(a_member_is_found_by_its_key)
{
	const char *page = "{\"nodes\": [{\"next\": \"inner\"}], \"next\": \"sim-41\"}";
	size_t b, e;
	CHECK(json_text_member(page, strlen(page), "next", &b, &e) == 1);
	char *next = json_text_string(page, b, e);
	CHECK_STR(next, "sim-41");
	free(next);
	CHECK(json_text_member(page, strlen(page), "nodes", &b, &e) == 1);
	CHECK(page[b] == '[' && page[e - 1] == ']');
	CHECK(json_text_member(page, strlen(page), "jobs", &b, &e) == 0);
	CHECK(json_text_member("[1]", 3, "nodes", &b, &e) == -1);
	CHECK(json_text_member("{\"a\":1} x", 9, "a", &b, &e) == -1);
	CHECK(json_text_member("{\"a\":1,}", 8, "a", &b, &e) == -1);
	/* escaped strings are decoded; one with a NUL is refused */
	const char *esc = "{\"next\":\"a\\/b\\u00e9\"}";
	CHECK(json_text_member(esc, strlen(esc), "next", &b, &e) == 1);
	next = json_text_string(esc, b, e);
	CHECK_STR(next, "a/b\xc3\xa9");
	free(next);
	const char *nul = "{\"next\":\"a\\u0000b\"}";
	CHECK(json_text_member(nul, strlen(nul), "next", &b, &e) == 1);
	CHECK(json_text_string(nul, b, e) == NULL);
	CHECK(json_text_string("12", 0, 2) == NULL);
}

UNIT_MAIN(valid_values_are_measured_whole, invalid_text_is_refused, indentation_matches_jansson,
	  a_member_is_found_by_its_key)
