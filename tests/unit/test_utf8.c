/* test_utf8.c - log bytes made valid UTF-8 for the UI's logs route. */
#include <jansson.h>

#include "core/utf8.h"
#include "unit.h"

static size_t clean(const char *in, size_t n, char *out, size_t cap)
{
	struct sbuf sb;
	sbuf_init(&sb);
	size_t used = utf8_sanitize(&sb, in, n);
	snprintf(out, cap, "%.*s", (int)sb.len, sb.buf);
	sbuf_release(&sb);
	return used;
}

TEST(valid_text_is_kept)
{
	char out[64];
	const char *s = "plain ascii, é, €, 𝄞\n";
	CHECK(clean(s, strlen(s), out, sizeof out) == strlen(s));
	CHECK_STR(out, s);
}

TEST(invalid_bytes_become_replacement_characters)
{
	char out[64];
	/* a stray continuation byte, an overlong '/', a surrogate, over U+10FFFF */
	const char *s = "a\x80"
			"b\xC0\xAF"
			"c\xED\xA0\x80"
			"d\xF4\x90\x80\x80"
			"e";
	CHECK(clean(s, strlen(s), out, sizeof out) == strlen(s));
	CHECK_STR(out, "a\xEF\xBF\xBD"
		       "b\xEF\xBF\xBD\xEF\xBF\xBD"
		       "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
		       "d\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
		       "e");
	/* what comes out is always text JSON takes */
	json_t *j = json_string(out);
	CHECK(j != NULL);
	json_decref(j);
}

TEST(a_character_cut_at_the_end_waits_for_the_next_read)
{
	char out[64];
	const char *s = "ab\xE2\x82"; /* the first two bytes of € */
	CHECK(clean(s, 4, out, sizeof out) == 2);
	CHECK_STR(out, "ab");
	/* but a cut sequence that is already wrong is replaced at once */
	CHECK(clean("ab\xE2\x41", 4, out, sizeof out) == 4);
	CHECK_STR(out, "ab\xEF\xBF\xBD"
		       "A");
	CHECK(clean("", 0, out, sizeof out) == 0);
}

UNIT_MAIN(valid_text_is_kept, invalid_bytes_become_replacement_characters,
	  a_character_cut_at_the_end_waits_for_the_next_read)
