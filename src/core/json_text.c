/* json_text.c - JSON as text, without building a tree (json_text.h). */
#include "core/json_text.h"

#include <jansson.h>
#include <string.h>

static size_t skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* s[i] is '"': the end of the string, or 0. */
static size_t string_end(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c > '\\' || (c >= 0x20 && c != '"' && c != '\\'))
			continue;
		if (c == '"')
			return i + 1;
		if (c < 0x20)
			return 0;
		if (c != '\\')
			continue;
		if (++i >= len)
			return 0;
		switch (s[i]) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			break;
		case 'u':
			if (len - i < 5 || !is_hex(s[i + 1]) || !is_hex(s[i + 2]) ||
			    !is_hex(s[i + 3]) || !is_hex(s[i + 4]))
				return 0;
			i += 4;
			break;
		default:
			return 0;
		}
	}
	return 0;
}

static size_t number_end(const char *s, size_t len, size_t i)
{
	if (i < len && s[i] == '-')
		i++;
	if (i >= len || !is_digit(s[i]))
		return 0;
	if (s[i] == '0')
		i++;
	else
		while (i < len && is_digit(s[i]))
			i++;
	if (i < len && s[i] == '.') {
		if (++i >= len || !is_digit(s[i]))
			return 0;
		while (i < len && is_digit(s[i]))
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || !is_digit(s[i]))
			return 0;
		while (i < len && is_digit(s[i]))
			i++;
	}
	return i;
}

static size_t word_end(const char *s, size_t len, size_t i, const char *w)
{
	size_t n = strlen(w);
	return len - i >= n && !memcmp(s + i, w, n) ? i + n : 0;
}

static size_t value_end(const char *s, size_t len, size_t i, int depth)
{
	i = skip_ws(s, len, i);
	if (i >= len)
		return 0;
	char open = s[i];
	switch (open) {
	case '"':
		return string_end(s, len, i);
	case 't':
		return word_end(s, len, i, "true");
	case 'f':
		return word_end(s, len, i, "false");
	case 'n':
		return word_end(s, len, i, "null");
	case '{':
	case '[':
		break;
	default:
		return number_end(s, len, i);
	}
	if (depth >= JSON_TEXT_DEPTH_MAX)
		return 0;
	char close = open == '{' ? '}' : ']';
	i = skip_ws(s, len, i + 1);
	if (i < len && s[i] == close)
		return i + 1;
	for (;;) {
		if (open == '{') {
			i = skip_ws(s, len, i);
			if (i >= len || s[i] != '"' || !(i = string_end(s, len, i)))
				return 0;
			i = skip_ws(s, len, i);
			if (i >= len || s[i] != ':')
				return 0;
			i++;
		}
		if (!(i = value_end(s, len, i, depth + 1)))
			return 0;
		i = skip_ws(s, len, i);
		if (i >= len)
			return 0;
		if (s[i] == close)
			return i + 1;
		if (s[i] != ',')
			return 0;
		i++;
	}
}

size_t json_text_value_end(const char *s, size_t len, size_t i)
{
	return s ? value_end(s, len, i, 0) : 0;
}

size_t json_text_skip_ws(const char *s, size_t len, size_t i)
{
	return skip_ws(s, len, i);
}

bool json_text_whole(const char *s, size_t len, size_t *start, size_t *end)
{
	size_t b = skip_ws(s, len, 0);
	size_t e = json_text_value_end(s, len, b);
	if (!e || skip_ws(s, len, e) != len)
		return false;
	*start = b;
	*end = e;
	return true;
}

int json_text_members(const char *s, size_t len, const char *const *keys, size_t nkeys,
		      size_t *start, size_t *end)
{
	/* One pass: every member checked as it is walked. */
	for (size_t k = 0; k < nkeys; k++)
		start[k] = end[k] = 0;
	int found = 0;
	size_t i = skip_ws(s, len, 0);
	if (i >= len || s[i] != '{')
		return -1;
	i = skip_ws(s, len, i + 1);
	if (i < len && s[i] == '}')
		return skip_ws(s, len, i + 1) == len ? 0 : -1;
	for (;;) {
		size_t key = i, kend;
		if (i >= len || s[i] != '"' || !(kend = string_end(s, len, i)))
			return -1;
		i = skip_ws(s, len, kend);
		if (i >= len || s[i] != ':')
			return -1;
		size_t v = skip_ws(s, len, i + 1);
		size_t vend = value_end(s, len, v, 1);
		if (!vend)
			return -1;
		for (size_t k = 0; k < nkeys; k++) {
			size_t klen = strlen(keys[k]);
			if (!end[k] && kend - key - 2 == klen &&
			    !memcmp(s + key + 1, keys[k], klen)) {
				start[k] = v;
				end[k] = vend;
				found++;
			}
		}
		i = skip_ws(s, len, vend);
		if (i < len && s[i] == '}')
			return skip_ws(s, len, i + 1) == len ? found : -1;
		if (i >= len || s[i] != ',')
			return -1;
		i = skip_ws(s, len, i + 1);
	}
}

int json_text_member(const char *s, size_t len, const char *key, size_t *start, size_t *end)
{
	return json_text_members(s, len, &key, 1, start, end);
}

static void newline(struct sbuf *out, int level)
{
	char pad[64];
	sbuf_add(out, "\n", 1);
	size_t n = level > 0 ? (size_t)level * 2 : 0;
	memset(pad, ' ', sizeof pad);
	while (n) {
		size_t k = n < sizeof pad ? n : sizeof pad;
		sbuf_add(out, pad, k);
		n -= k;
	}
}

void json_text_indent(struct sbuf *out, const char *s, size_t start, size_t end, int level)
{
	size_t i = start;
	while (i < end) {
		char c = s[i];
		switch (c) {
		case ' ':
		case '\t':
		case '\n':
		case '\r':
			i++;
			break;
		case '"': {
			size_t e = string_end(s, end, i);
			if (!e)
				e = end; /* not valid: copied as it is */
			sbuf_add(out, s + i, e - i);
			i = e;
			break;
		}
		case '{':
		case '[': {
			size_t next = skip_ws(s, end, i + 1);
			if (next < end && s[next] == (c == '{' ? '}' : ']')) {
				sbuf_add(out, c == '{' ? "{}" : "[]", 2);
				i = next + 1;
				break;
			}
			sbuf_add(out, &c, 1);
			newline(out, ++level);
			i = next;
			break;
		}
		case '}':
		case ']':
			newline(out, --level);
			sbuf_add(out, &c, 1);
			i++;
			break;
		case ',':
			sbuf_add(out, ",", 1);
			newline(out, level);
			i = skip_ws(s, end, i + 1);
			break;
		case ':':
			sbuf_add(out, ": ", 2);
			i = skip_ws(s, end, i + 1);
			break;
		default: {
			size_t j = i;
			while (j < end && !strchr(" \t\n\r\"{}[],:", s[j]))
				j++;
			sbuf_add(out, s + i, j - i);
			i = j;
		}
		}
	}
}

char *json_text_string(const char *s, size_t start, size_t end)
{
	if (end <= start + 1 || s[start] != '"' || string_end(s, end, start) != end)
		return NULL;
	if (!memchr(s + start, '\\', end - start))
		return xstrndup(s + start + 1, end - start - 2);
	json_t *v = json_loadb(s + start, end - start, JSON_DECODE_ANY, NULL);
	char *r = json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)
		      ? xstrdup(json_string_value(v))
		      : NULL;
	json_decref(v);
	return r;
}
