/* json_scan.c - untrusted JSON text read in place, as jansson would accept
 * it (json_scan.h). */
#include "core/json_scan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct json_scan_key {
	const char *p; /* the decoded key; NULL: a container's marker */
	size_t len;    /* a marker: the enclosing container's marker (SIZE_MAX: none) */
	char *owned;   /* a key spelled with escapes, decoded */
	char kind;     /* a marker: '{' or '[' */
	bool first;    /* a marker: no member read yet */
};

void json_scan_init(struct json_scan *sc, const char *s, size_t len)
{
	memset(sc, 0, sizeof *sc);
	sc->s = s ? s : "";
	sc->len = s ? len : 0;
	sc->top = SIZE_MAX;
}

void json_scan_release(struct json_scan *sc)
{
	for (size_t k = 0; k < sc->nkeys; k++)
		free(sc->keys[k].owned);
	free(sc->keys);
	sc->keys = NULL;
	sc->nkeys = sc->capkeys = 0;
}

int json_scan_peek(struct json_scan *sc)
{
	const char *s = sc->s;
	size_t i = sc->i, len = sc->len;
	while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
		i++;
	sc->i = i;
	return i < len ? (unsigned char)s[i] : -1;
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at s[0..4) (the caller checked there are four bytes). */
static long hex4(const unsigned char *s)
{
	long v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hex_value(s[k]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* The length of the well-formed UTF-8 sequence at s[0..avail), 0 when it
 * is not one (jansson's rules: no overlong forms, no surrogates, nothing
 * over U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
	unsigned c = s[0];
	size_t n;
	uint32_t v;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		v = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		v = c & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (size_t k = 1; k < n; k++) {
		if (s[k] < 0x80 || s[k] > 0xBF)
			return 0;
		v = (v << 6) | (s[k] & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (n == 3 && v < 0x800) ||
	    (n == 4 && v < 0x10000))
		return 0;
	return n;
}

static size_t utf8_put(char *out, uint32_t v)
{
	if (v < 0x80) {
		out[0] = (char)v;
		return 1;
	}
	if (v < 0x800) {
		out[0] = (char)(0xC0 | (v >> 6));
		out[1] = (char)(0x80 | (v & 0x3F));
		return 2;
	}
	if (v < 0x10000) {
		out[0] = (char)(0xE0 | (v >> 12));
		out[1] = (char)(0x80 | ((v >> 6) & 0x3F));
		out[2] = (char)(0x80 | (v & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (v >> 18));
	out[1] = (char)(0x80 | ((v >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((v >> 6) & 0x3F));
	out[3] = (char)(0x80 | (v & 0x3F));
	return 4;
}

/* The string at the cursor (s[i] is '"'), decoded into out when not NULL. */
static bool string_scan(struct json_scan *sc, char *out, size_t *outlen, bool *escaped)
{
	const unsigned char *s = (const unsigned char *)sc->s;
	size_t len = sc->len, i = sc->i + 1, o = 0;
	bool esc = false;
	for (;;) {
		size_t run = i;
		while (i < len && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
			i++;
		if (out && i > run)
			memcpy(out + o, s + run, i - run);
		o += i - run;
		if (i >= len)
			return false;
		unsigned c = s[i];
		if (c == '"')
			break;
		if (c < 0x20)
			return false;
		if (c >= 0x80) {
			size_t n = utf8_len(s + i, len - i);
			if (!n)
				return false;
			if (out)
				memcpy(out + o, s + i, n);
			o += n;
			i += n;
			continue;
		}
		/* A backslash. */
		esc = true;
		if (++i >= len)
			return false;
		char ch;
		switch (s[i]) {
		case '"':
		case '\\':
		case '/':
			ch = (char)s[i];
			break;
		case 'b':
			ch = '\b';
			break;
		case 'f':
			ch = '\f';
			break;
		case 'n':
			ch = '\n';
			break;
		case 'r':
			ch = '\r';
			break;
		case 't':
			ch = '\t';
			break;
		case 'u': {
			if (len - i < 5)
				return false;
			long v = hex4(s + i + 1);
			i += 5;
			if (v < 0)
				return false;
			if (v >= 0xD800 && v <= 0xDBFF) {
				/* A pair's first half: its second must follow. */
				if (len - i < 6 || s[i] != '\\' || s[i + 1] != 'u')
					return false;
				long lo = hex4(s + i + 2);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return false;
				i += 6;
				v = ((v - 0xD800) << 10) + (lo - 0xDC00) + 0x10000;
			} else if ((v >= 0xDC00 && v <= 0xDFFF) || v == 0) {
				return false; /* a lone second half; NUL (jansson refuses it) */
			}
			if (out)
				utf8_put(out + o, (uint32_t)v);
			o += v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4;
			continue;
		}
		default:
			return false;
		}
		if (out)
			out[o] = ch;
		o++;
		i++;
	}
	if (out)
		out[o] = 0;
	if (outlen)
		*outlen = o;
	if (escaped)
		*escaped = esc;
	sc->i = i + 1;
	return true;
}

static bool value_room(const struct json_scan *sc)
{
	return sc->depth < JSON_SCAN_DEPTH_MAX;
}

bool json_scan_string(struct json_scan *sc, char *out, size_t *outlen)
{
	return value_room(sc) && json_scan_peek(sc) == '"' && string_scan(sc, out, outlen, NULL);
}

/* jansson reads one byte past a number or a literal and puts it back; a
 * NUL byte put back is lost (its stream takes NUL for "buffer empty"), so
 * one NUL right after such a token is ignored. Ignored here too: the same
 * bodies are accepted. */
static void skip_lookahead_nul(struct json_scan *sc)
{
	if (sc->i < sc->len && !sc->s[sc->i])
		sc->i++;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

bool json_scan_number(struct json_scan *sc, int64_t *iv, bool *is_int)
{
	if (!value_room(sc))
		return false;
	json_scan_peek(sc);
	const unsigned char *s = (const unsigned char *)sc->s;
	size_t len = sc->len, b = sc->i, i = b;
	bool neg = i < len && s[i] == '-';
	if (neg)
		i++;
	if (i >= len || !is_digit(s[i]))
		return false;
	/* Integers beyond int64 are refused, as jansson does. */
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, mag = 0;
	bool over = false;
	if (s[i] == '0') {
		i++;
	} else {
		for (; i < len && is_digit(s[i]); i++) {
			unsigned d = s[i] - '0';
			if (!over && mag > (limit - d) / 10)
				over = true;
			else if (!over)
				mag = mag * 10 + d;
		}
	}
	bool real = false;
	if (i < len && s[i] == '.') {
		real = true;
		if (++i >= len || !is_digit(s[i]))
			return false;
		while (i < len && is_digit(s[i]))
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		real = true;
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || !is_digit(s[i]))
			return false;
		while (i < len && is_digit(s[i]))
			i++;
	}
	if (!real) {
		if (over)
			return false;
		*iv = !neg ? (int64_t)mag : mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag;
	} else {
		/* A real that overflows a double is refused (jansson's strtod
		 * check); one that underflows is not. */
		char small[64];
		size_t n = i - b;
		char *text = n < sizeof small ? small : xmalloc(n + 1);
		memcpy(text, s + b, n);
		text[n] = 0;
		errno = 0;
		double v = strtod(text, NULL);
		bool overflow = (v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE;
		if (text != small)
			free(text);
		if (overflow)
			return false;
	}
	*is_int = !real;
	sc->i = i;
	skip_lookahead_nul(sc);
	return true;
}

static bool word(struct json_scan *sc, const char *w, size_t n)
{
	if (sc->len - sc->i < n || memcmp(sc->s + sc->i, w, n))
		return false;
	sc->i += n;
	skip_lookahead_nul(sc);
	return true;
}

static bool scalar_skip(struct json_scan *sc)
{
	if (!value_room(sc))
		return false;
	int64_t iv;
	bool is_int;
	switch (json_scan_peek(sc)) {
	case '"':
		return string_scan(sc, NULL, NULL, NULL);
	case 't':
		return word(sc, "true", 4);
	case 'f':
		return word(sc, "false", 5);
	case 'n':
		return word(sc, "null", 4);
	default:
		return json_scan_number(sc, &iv, &is_int);
	}
}

static struct json_scan_key *key_push(struct json_scan *sc)
{
	if (sc->nkeys == sc->capkeys) {
		sc->capkeys = sc->capkeys ? sc->capkeys * 2 : 32;
		sc->keys = xrealloc(sc->keys, sc->capkeys * sizeof *sc->keys);
	}
	struct json_scan_key *k = &sc->keys[sc->nkeys++];
	memset(k, 0, sizeof *k);
	return k;
}

bool json_scan_open(struct json_scan *sc)
{
	int c = json_scan_peek(sc);
	if ((c != '{' && c != '[') || !value_room(sc))
		return false;
	size_t m = sc->nkeys;
	struct json_scan_key *k = key_push(sc);
	k->kind = (char)c;
	k->first = true;
	k->len = sc->top;
	sc->top = m;
	sc->depth++;
	sc->i++;
	return true;
}

static int key_cmp(const void *a, const void *b)
{
	const struct json_scan_key *x = a, *y = b;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->p, y->p, x->len);
}

/* True when no two of the n keys are the same. */
static bool keys_unique(struct json_scan_key *k, size_t n)
{
	if (n <= 8) {
		for (size_t a = 0; a < n; a++)
			for (size_t b = a + 1; b < n; b++)
				if (k[a].len == k[b].len && !memcmp(k[a].p, k[b].p, k[a].len))
					return false;
		return true;
	}
	/* Many keys: sorted (the object is done with them), then neighbours
	 * compared, so that a large object costs n log n, not n^2. */
	qsort(k, n, sizeof *k, key_cmp);
	for (size_t a = 1; a < n; a++)
		if (!key_cmp(&k[a - 1], &k[a]))
			return false;
	return true;
}

static bool container_close(struct json_scan *sc)
{
	size_t m = sc->top;
	struct json_scan_key *k = sc->keys;
	bool ok = k[m].kind != '{' || keys_unique(k + m + 1, sc->nkeys - m - 1);
	for (size_t a = m + 1; a < sc->nkeys; a++)
		free(k[a].owned);
	sc->nkeys = m;
	sc->top = k[m].len;
	sc->depth--;
	sc->i++;
	return ok;
}

int json_scan_next(struct json_scan *sc, const char **key, size_t *klen)
{
	if (!sc->depth)
		return -1;
	struct json_scan_key *m = &sc->keys[sc->top];
	char kind = m->kind;
	int c = json_scan_peek(sc);
	if (c == (kind == '{' ? '}' : ']'))
		return container_close(sc) ? 0 : -1;
	if (!m->first) {
		if (c != ',')
			return -1;
		sc->i++;
		c = json_scan_peek(sc);
	}
	m->first = false;
	if (kind == '[')
		return c < 0 ? -1 : 1;
	if (c != '"')
		return -1;
	size_t b = sc->i, n;
	bool esc;
	if (!string_scan(sc, NULL, &n, &esc))
		return -1;
	struct json_scan_key *k = key_push(sc);
	if (esc) {
		size_t e = sc->i;
		k->owned = xmalloc(e - b);
		sc->i = b;
		string_scan(sc, k->owned, &n, NULL);
		k->p = k->owned;
	} else {
		k->p = sc->s + b + 1;
	}
	k->len = n;
	if (json_scan_peek(sc) != ':')
		return -1;
	sc->i++;
	if (key)
		*key = k->p;
	if (klen)
		*klen = n;
	return 1;
}

bool json_scan_skip(struct json_scan *sc)
{
	int c = json_scan_peek(sc);
	if (c != '{' && c != '[')
		return scalar_skip(sc);
	int base = sc->depth;
	if (!json_scan_open(sc))
		return false;
	/* Iterative: a value nested 2048 deep costs no stack. */
	while (sc->depth > base) {
		int r = json_scan_next(sc, NULL, NULL);
		if (r < 0)
			return false;
		if (!r)
			continue;
		c = json_scan_peek(sc);
		if (c == '{' || c == '[' ? !json_scan_open(sc) : !scalar_skip(sc))
			return false;
	}
	return true;
}

bool json_scan_end(struct json_scan *sc)
{
	return !sc->depth && json_scan_peek(sc) < 0;
}
