/* utf8.c - well-formed UTF-8 (RFC 3629, table 3-7 of the Unicode
 * standard) from arbitrary bytes. */
#include "core/utf8.h"

#include <stdbool.h>

static const char replacement[] = "\xEF\xBF\xBD";

/* The length of the well-formed sequence at p (n bytes left): 1-4; 0 when
 * it is cut off by the end; -1 when p[0] starts no well-formed sequence. */
static int sequence_length(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	int len;
	unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong forms */
		else if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F; /* nothing over U+10FFFF */
	} else
		return -1;
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return 0;
		unsigned char b = p[i];
		bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
		if (!ok)
			return -1;
	}
	return len;
}

size_t utf8_sanitize(struct sbuf *out, const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t i = 0, run = 0; /* run: valid bytes not yet copied, ending at i */
	while (i < len) {
		int n = sequence_length(p + i, len - i);
		if (n == 0)
			break;
		if (n > 0) {
			i += (size_t)n;
			run += (size_t)n;
			continue;
		}
		sbuf_add(out, buf + i - run, run);
		sbuf_add(out, replacement, 3);
		run = 0;
		i++;
	}
	sbuf_add(out, buf + i - run, run);
	return i;
}
