#include "core/base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Room for extra bytes and the NUL after them. */
static void reserve(struct sbuf *sb, size_t extra)
{
	if (sb->len + extra + 1 <= sb->cap)
		return;
	size_t cap = sb->cap ? sb->cap : 64;
	while (sb->len + extra + 1 > cap)
		cap *= 2;
	sb->buf = xrealloc(sb->buf, cap);
	sb->cap = cap;
}

void base64_add(struct sbuf *sb, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t out = (len + 2) / 3 * 4;
	reserve(sb, out);
	char *o = sb->buf + sb->len;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
		*o++ = alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	sb->len += out;
	sb->buf[sb->len] = 0;
}

void base64_add2(struct sbuf *sb, const char *a, size_t alen, const char *b, size_t blen)
{
	/* a's whole groups of three, then one group bridging a's tail and b's
	 * head, then the rest of b. */
	size_t whole = alen / 3 * 3;
	base64_add(sb, a, whole);
	unsigned char bridge[3] = {0};
	size_t nb = 0, took = 0;
	for (size_t i = whole; i < alen; i++)
		bridge[nb++] = (unsigned char)a[i];
	while (nb > 0 && nb < 3 && took < blen)
		bridge[nb++] = (unsigned char)b[took++];
	base64_add(sb, bridge, nb);
	if (nb == 0 || nb == 3)
		base64_add(sb, b + took, blen - took);
}

static int sextet(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	/* The URL-safe alphabet too: protobuf's JSON parsers accept both. */
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int base64_decode_add(struct sbuf *out, const char *in, size_t n)
{
	size_t pad = 0;
	while (n > 0 && in[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (n % 4 == 1 || (pad && (n + pad) % 4))
		return -1;
	reserve(out, n / 4 * 3 + 2);
	unsigned char *o = (unsigned char *)out->buf + out->len;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = sextet((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*o++ = (unsigned char)(acc >> bits);
		}
	}
	out->len = (size_t)((char *)o - out->buf);
	out->buf[out->len] = 0;
	return 0;
}

char *base64_encode(const void *data, size_t len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	base64_add(&sb, data, len);
	return sbuf_detach(&sb);
}

int base64_decode(const char *in, size_t n, char **out, size_t *out_len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	if (base64_decode_add(&sb, in, n) < 0) {
		sbuf_release(&sb);
		*out = NULL;
		*out_len = 0;
		return -1;
	}
	*out_len = sb.len;
	*out = sbuf_detach(&sb);
	return 0;
}
