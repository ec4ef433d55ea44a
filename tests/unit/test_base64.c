/* test_base64.c - core/base64: RFC 4648 vectors, every byte value, the
 * URL-safe alphabet, missing padding, garbage refused, and base64_add2 (the
 * base64 of a prefix then a key) equal to the base64 of the concatenation. */
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "unit.h"

TEST(base64_round_trips_and_rejects_garbage)
{
	/* RFC 4648 section 10. */
	const char *vec[][2] = {{"", ""},
				{"f", "Zg=="},
				{"fo", "Zm8="},
				{"foo", "Zm9v"},
				{"foob", "Zm9vYg=="},
				{"fooba", "Zm9vYmE="},
				{"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < ARRAY_SIZE(vec); i++) {
		char *enc = base64_encode(vec[i][0], strlen(vec[i][0]));
		CHECK_STR(enc, vec[i][1]);
		free(enc);
		char *dec = NULL;
		size_t len = 99;
		CHECK(base64_decode(vec[i][1], strlen(vec[i][1]), &dec, &len) == 0);
		CHECK(len == strlen(vec[i][0]));
		CHECK_STR(dec, vec[i][0]);
		free(dec);
	}
	/* Every byte value, at every length mod 3. */
	unsigned char all[258];
	for (size_t i = 0; i < sizeof all; i++)
		all[i] = (unsigned char)(255 - i % 256);
	for (size_t n = 250; n <= sizeof all; n++) {
		char *enc = base64_encode(all, n);
		CHECK(strlen(enc) == (n + 2) / 3 * 4);
		char *dec = NULL;
		size_t len = 0;
		CHECK(base64_decode(enc, strlen(enc), &dec, &len) == 0);
		CHECK(len == n && dec && !memcmp(dec, all, n) && dec[n] == 0);
		free(dec);
		free(enc);
	}
	/* Without padding, and the URL-safe alphabet. */
	char *dec = NULL;
	size_t len = 0;
	CHECK(base64_decode("Zm8", 3, &dec, &len) == 0 && len == 2);
	CHECK_STR(dec, "fo");
	free(dec);
	CHECK(base64_decode("-_8=", 4, &dec, &len) == 0 && len == 2);
	CHECK(dec && (unsigned char)dec[0] == 0xfb && (unsigned char)dec[1] == 0xff);
	free(dec);
	/* Not base64: a bad character, a lone sextet, bad or extra padding. */
	const char *bad[] = {"Zm9v!", "Z", "Zm9vY", "Zg=", "Zg===", "=Zg=", "Zm 9v", "Zg==Zg=="};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		dec = (char *)"x";
		CHECK(base64_decode(bad[i], strlen(bad[i]), &dec, &len) == -1);
		CHECK(dec == NULL);
	}
}

TEST(add2_is_the_base64_of_the_concatenation)
{
	const char *s = "abcdefgh";
	for (size_t alen = 0; alen <= 7; alen++)
		for (size_t blen = 0; alen + blen <= 8; blen++) {
			struct sbuf two, one;
			sbuf_init(&two);
			sbuf_init(&one);
			base64_add2(&two, s, alen, s + alen, blen);
			base64_add(&one, s, alen + blen);
			CHECK_STR(two.buf, one.buf);
			sbuf_release(&two);
			sbuf_release(&one);
		}
}

UNIT_MAIN(base64_round_trips_and_rejects_garbage, add2_is_the_base64_of_the_concatenation)
