/* spec.c - job specs: YAML and JSON in, one validator, struct job_spec out.
 *
 * Both input formats are first turned into the same small tree (struct snode)
 * that keeps each value's text as written and, for YAML, its line and column.
 * One validator then walks that tree, so the same mistake gives the same
 * message from a YAML file and from a JSON body (only without a position):
 *
 *     YAML text --libyaml events--> snode tree --+
 *                                                 +--> validator --> job_spec
 *     json_t ---------------------> snode tree --+
 *
 * The validator stops at the first error; every error is
 *     FILE:LINE:COL: FIELD.PATH: expected WHAT, found 'TEXT'
 * ('TEXT' is the user's text, quoted; descriptions such as "nothing" or
 * "a map" are not quoted). docs/spec.md is the user reference for the fields.
 */
#include "core/spec.h"
#include "core/cron.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Limits. Each keeps a hostile or mistaken spec from costing the daemon
 * (recursion, memory, arithmetic overflow in other modules), far above what a
 * real job needs. docs/spec.md lists them. */
#define SPEC_MAX_DEPTH 32			     /* nesting of maps and lists */
#define SPEC_MAX_CPU 4096.0			     /* cores */
#define SPEC_MAX_SIZE (1ULL << 60)		     /* 1EiB: fits a JSON integer */
#define SPEC_MAX_DURATION_MS (8760ULL * 3600 * 1000) /* 365 days */
#define SPEC_MAX_PORTS 64
#define SPEC_MAX_NAME 64       /* port names, attributes, users */
#define SPEC_MAX_COUNT 1000000 /* failures, priorities, limits */
#define SPEC_FOUND_MAX 60      /* characters of user text in a message */

/* ------------------------------------------------------------------------ */
/* The intermediate tree                                                     */

enum snode_kind { SN_NULL, SN_BOOL, SN_INT, SN_REAL, SN_STR, SN_SEQ, SN_MAP };

struct snode {
	enum snode_kind kind;
	int line, col; /* 1-based; 0 when the input has no positions (JSON) */
	char *text;    /* scalars: the text as written; NUL-terminated, but may
			* hold NUL bytes itself (see len) */
	size_t len;
	bool bval;
	int64_t ival;
	double dval;
	struct snode **kids; /* SN_SEQ: items; SN_MAP: key, value, key, value, ... */
	size_t nkids, cap;
};

static struct snode *snode_new(enum snode_kind kind, int line, int col)
{
	struct snode *n = xcalloc(1, sizeof *n);
	n->kind = kind;
	n->line = line;
	n->col = col;
	return n;
}

static void snode_set_text(struct snode *n, const char *s, size_t len)
{
	n->text = xmalloc(len + 1);
	memcpy(n->text, s, len);
	n->text[len] = 0;
	n->len = len;
}

static void snode_add(struct snode *n, struct snode *kid)
{
	if (n->nkids == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 8;
		n->kids = xrealloc(n->kids, n->cap * sizeof *n->kids);
	}
	n->kids[n->nkids++] = kid;
}

/* Recursion is bounded by SPEC_MAX_DEPTH: deeper trees are never built. */
static void snode_free(struct snode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		snode_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

static bool snode_is_scalar(const struct snode *n)
{
	return n && n->kind != SN_SEQ && n->kind != SN_MAP;
}

static bool snode_has_nul(const struct snode *n)
{
	return n->text && strlen(n->text) != n->len;
}

static bool key_is(const struct snode *key, const char *name)
{
	return key->text && key->len == strlen(name) && !memcmp(key->text, name, key->len);
}

/* The value of `name` in map `m`, or NULL. */
static const struct snode *map_get(const struct snode *m, const char *name)
{
	if (!m || m->kind != SN_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < m->nkids; i += 2)
		if (key_is(m->kids[i], name))
			return m->kids[i + 1];
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */

struct sctx {
	const char *file; /* NULL for JSON: messages carry no position */
	struct berr *err;
	struct sbuf path; /* dotted path of the value being looked at */
	bool json;	  /* bare integer durations are ms in JSON, seconds in YAML */
};

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	if (s[0] < 0x80)
		return 1;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* No overlong forms, surrogates or code points above U+10FFFF: what
	 * jansson refuses must not get into a spec. */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return len;
}

static bool utf8_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq((const unsigned char *)s + i, len - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

/* Append user text to a message: at most SPEC_FOUND_MAX characters, control
 * and invalid bytes escaped, so that no value can forge lines in a log or
 * flood it. */
static void add_sanitized(struct sbuf *sb, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t shown = 0;
	for (size_t i = 0; i < len;) {
		if (shown++ == SPEC_FOUND_MAX) {
			sbuf_adds(sb, "...");
			return;
		}
		size_t k = utf8_seq(u + i, len - i);
		if (k == 1 && u[i] >= 0x20 && u[i] != 0x7f) {
			sbuf_add(sb, s + i, 1);
		} else if (k > 1) {
			sbuf_add(sb, s + i, k);
		} else if (u[i] == '\n') {
			sbuf_adds(sb, "\\n");
		} else if (u[i] == '\t') {
			sbuf_adds(sb, "\\t");
		} else if (u[i] == '\r') {
			sbuf_adds(sb, "\\r");
		} else {
			sbuf_addf(sb, "\\x%02x", u[i]);
		}
		i += k ? k : 1;
	}
}

static void add_quoted(struct sbuf *sb, const char *s, size_t len)
{
	sbuf_adds(sb, "'");
	add_sanitized(sb, s, len);
	sbuf_adds(sb, "'");
}

/* What was found, for "found ...": user text quoted, structure described. */
static void add_found(struct sbuf *sb, const struct snode *n)
{
	if (!n)
		sbuf_adds(sb, "nothing");
	else if (n->kind == SN_MAP)
		sbuf_adds(sb, n->nkids ? "a map" : "an empty map");
	else if (n->kind == SN_SEQ)
		sbuf_adds(sb, n->nkids ? "a list" : "an empty list");
	else if (n->kind == SN_NULL && !n->len)
		sbuf_adds(sb, "nothing");
	else
		add_quoted(sb, n->text, n->len);
}

static size_t path_push(struct sctx *c, const char *key, size_t len)
{
	size_t old = c->path.len;
	if (old)
		sbuf_add(&c->path, ".", 1);
	add_sanitized(&c->path, key, len);
	return old;
}

static size_t path_push_key(struct sctx *c, const struct snode *key)
{
	return path_push(c, key->text ? key->text : "", key->len);
}

static size_t path_push_index(struct sctx *c, size_t i)
{
	size_t old = c->path.len;
	sbuf_addf(&c->path, "[%zu]", i);
	return old;
}

static void path_pop(struct sctx *c, size_t old)
{
	c->path.len = old;
	c->path.buf[old] = 0;
}

/* The one place errors are made: "FILE:LINE:COL: PATH: expected WHAT, found
 * FOUND". The position is left out for JSON, the path at the top level. */
static int fail_at(struct sctx *c, int line, int col, const char *found, const char *fmt,
		   va_list ap)
{
	struct sbuf sb;
	sbuf_init(&sb);
	if (c->file && line > 0)
		sbuf_addf(&sb, "%s:%d:%d: ", c->file, line, col);
	if (c->path.len)
		sbuf_addf(&sb, "%s: ", c->path.buf);
	sbuf_adds(&sb, "expected ");
	sbuf_vaddf(&sb, fmt, ap);
	sbuf_addf(&sb, ", found %s", found);
	berr_set(c->err, 400, "%s", sb.buf);
	sbuf_release(&sb);
	return -1;
}

/* Error at node `at` (its position; NULL: none) showing `found`. */
static int expect(struct sctx *c, const struct snode *at, const struct snode *found,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int expect(struct sctx *c, const struct snode *at, const struct snode *found,
		  const char *fmt, ...)
{
	struct sbuf f;
	sbuf_init(&f);
	add_found(&f, found);
	va_list ap;
	va_start(ap, fmt);
	fail_at(c, at ? at->line : 0, at ? at->col : 0, f.buf, fmt, ap);
	va_end(ap);
	sbuf_release(&f);
	return -1;
}

/* Error at node `at` with a prepared found-description (see quote()). */
static int expect_found(struct sctx *c, const struct snode *at, const char *found, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));
static int expect_found(struct sctx *c, const struct snode *at, const char *found, const char *fmt,
			...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_at(c, at ? at->line : 0, at ? at->col : 0, found, fmt, ap);
	va_end(ap);
	return -1;
}

/* User text as it appears after "found": sanitized and quoted. Caller frees. */
static char *quote(const char *s, size_t len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	add_quoted(&sb, s, len);
	return sbuf_detach(&sb);
}

/* Error at a raw position with a prepared found-description. */
static int expect_pos(struct sctx *c, int line, int col, const char *found, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int expect_pos(struct sctx *c, int line, int col, const char *found, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_at(c, line, col, found, fmt, ap);
	va_end(ap);
	return -1;
}

/* "a, b or c" */
static void add_choices(struct sbuf *sb, const char *const *names, size_t n, const char *last)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_adds(sb, i + 1 == n ? last : ", ");
		sbuf_adds(sb, names[i]);
	}
}

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* YAML integers: [-+]?[0-9]+, 0x[0-9a-fA-F]+, 0o[0-7]+. 0, -EINVAL or
 * -ERANGE. */
static int text_to_int(const char *t, int64_t *out)
{
	const char *p = t;
	int base = 10;
	bool neg = false;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o') && t == p) {
		base = p[1] == 'x' ? 16 : 8;
		p += 2;
	}
	if (!*p)
		return -EINVAL;
	uint64_t v = 0;
	for (; *p; p++) {
		int d;
		if (is_digit(*p))
			d = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			return -EINVAL;
		if (d >= base)
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			return -ERANGE;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
		return -ERANGE;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* YAML floats: [-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, .nan */
static bool text_to_real(const char *t, double *out)
{
	const char *p = t;
	if (*p == '-' || *p == '+')
		p++;
	if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF")) {
		*out = *t == '-' ? -INFINITY : INFINITY;
		return true;
	}
	if (p == t && (!strcmp(p, ".nan") || !strcmp(p, ".NaN") || !strcmp(p, ".NAN"))) {
		*out = NAN;
		return true;
	}
	bool digits = false;
	while (is_digit(*p))
		p++, digits = true;
	if (*p == '.') {
		p++;
		while (is_digit(*p))
			p++, digits = true;
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!is_digit(*p))
			return false;
		while (is_digit(*p))
			p++;
	}
	if (*p)
		return false;
	*out = strtod(t, NULL);
	return true;
}

/* Give an untagged plain YAML scalar its type (YAML 1.1 booleans, which is
 * what libyaml speaks, and 1.2-style numbers). The text is kept either way,
 * so "PORT: 8080" in env still reads as "8080". */
static void resolve_plain(struct snode *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes",
					    "YES",  "on",   "On",   "ON"};
	static const char *const falses[] = {"false", "False", "FALSE", "no", "No",
					     "NO",    "off",   "Off",	"OFF"};
	const char *t = n->text;
	n->kind = SN_STR;
	if (snode_has_nul(n))
		return;
	for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
		if (!strcmp(t, nulls[i]))
			n->kind = SN_NULL;
	for (size_t i = 0; i < ARRAY_SIZE(trues); i++) {
		if (!strcmp(t, trues[i]))
			n->kind = SN_BOOL, n->bval = true;
		if (!strcmp(t, falses[i]))
			n->kind = SN_BOOL, n->bval = false;
	}
	if (n->kind != SN_STR)
		return;
	int r = text_to_int(t, &n->ival);
	if (r == 0)
		n->kind = SN_INT;
	else if (text_to_real(t, &n->dval))
		n->kind = SN_REAL; /* also integers too large for int64: the text stays */
}

/* ------------------------------------------------------------------------ */
/* YAML to tree                                                              */

struct ybuild {
	yaml_parser_t parser;
	const char *text;
	size_t len;
};

/* Byte offset of 1-based (line, col) in the text; col counts characters as
 * libyaml does. Only used to quote the text at a syntax error. */
static size_t yaml_offset(const struct ybuild *y, int line, int col)
{
	size_t i = 0;
	for (int l = 1; l < line && i < y->len; i++) {
		if (y->text[i] == '\n' ||
		    (y->text[i] == '\r' && (i + 1 >= y->len || y->text[i + 1] != '\n')))
			l++;
	}
	for (int k = 1; k < col && i < y->len; k++) {
		i++;
		while (i < y->len && ((unsigned char)y->text[i] & 0xc0) == 0x80)
			i++;
	}
	return i;
}

static int yaml_syntax_error(struct sctx *c, struct ybuild *y)
{
	yaml_parser_t *p = &y->parser;
	const char *problem = p->problem ? p->problem : "unknown error";
	struct sbuf f;
	int line, col;
	sbuf_init(&f);
	if (p->error == YAML_MEMORY_ERROR) {
		sbuf_release(&f);
		return berr_set(c->err, 400, "%s: out of memory reading yaml", c->file);
	}
	if (p->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		size_t off = p->problem_offset < y->len ? p->problem_offset : y->len;
		line = 1, col = 1;
		for (size_t i = 0; i < off; i++) {
			unsigned char ch = (unsigned char)y->text[i];
			if (ch == '\n')
				line++, col = 1;
			else if ((ch & 0xc0) != 0x80)
				col++;
		}
		if (off < y->len)
			sbuf_addf(&f, "'\\x%02x'", (unsigned char)y->text[off]);
		else
			sbuf_adds(&f, "end of input");
	} else {
		line = (int)p->problem_mark.line + 1;
		col = (int)p->problem_mark.column + 1;
		size_t off = yaml_offset(y, line, col), end = off;
		while (end < y->len && y->text[end] != '\n' && y->text[end] != '\r')
			end++;
		if (off >= y->len)
			sbuf_adds(&f, "end of input");
		else if (end == off)
			sbuf_adds(&f, "end of line");
		else
			add_quoted(&f, y->text + off, end - off);
	}
	expect_pos(c, line, col, f.buf, "valid yaml (%s)", problem);
	sbuf_release(&f);
	return -1;
}

static int yaml_next(struct sctx *c, struct ybuild *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->parser, ev))
		return yaml_syntax_error(c, y);
	return 0;
}

static int ev_line(const yaml_event_t *ev)
{
	return (int)ev->start_mark.line + 1;
}

static int ev_col(const yaml_event_t *ev)
{
	return (int)ev->start_mark.column + 1;
}

/* Tags: "!" and !!str make a string; the standard scalar, map and list tags
 * change nothing; anything else (!!binary, !foo) is refused rather than
 * silently read as text. 0: string, 1: resolve, -1: refuse. */
static int tag_kind(const yaml_char_t *tag, bool plain)
{
	const char *t = (const char *)tag;
	if (!t)
		return plain ? 1 : 0;
	if (!strcmp(t, "!") || !strcmp(t, YAML_STR_TAG))
		return 0;
	if (!strcmp(t, YAML_INT_TAG) || !strcmp(t, YAML_FLOAT_TAG) || !strcmp(t, YAML_BOOL_TAG) ||
	    !strcmp(t, YAML_NULL_TAG) || !strcmp(t, YAML_MAP_TAG) || !strcmp(t, YAML_SEQ_TAG))
		return 1;
	return -1;
}

static int refuse_tag(struct sctx *c, const yaml_event_t *ev, const yaml_char_t *tag)
{
	const char *t = (const char *)tag;
	/* Show the tag as written: !!binary rather than its expanded form. */
	_cleanup_free_ char *shown =
	    !strncmp(t, "tag:yaml.org,2002:", 18) ? xasprintf("!!%s", t + 18) : xstrdup(t);
	_cleanup_free_ char *q = quote(shown, strlen(shown));
	return expect_pos(c, ev_line(ev), ev_col(ev), q, "a value without a tag");
}

static int yaml_node(struct sctx *c, struct ybuild *y, yaml_event_t *ev, int depth,
		     struct snode **out);

/* After a map is read: refuse a key given twice (the later one is reported,
 * the earliest such in the document). Sorting keeps this O(n log n) for
 * env maps with many keys. */
struct keyref {
	const struct snode *key;
	size_t index;
};

static bool keys_equal(const struct snode *a, const struct snode *b)
{
	return a->len == b->len && !memcmp(a->text, b->text, a->len);
}

static int keyref_cmp(const void *a, const void *b)
{
	const struct keyref *x = a, *y = b;
	size_t n = x->key->len < y->key->len ? x->key->len : y->key->len;
	int r = memcmp(x->key->text, y->key->text, n);
	if (r)
		return r;
	if (x->key->len != y->key->len)
		return x->key->len < y->key->len ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

static int check_duplicate_keys(struct sctx *c, const struct snode *m)
{
	size_t n = m->nkids / 2;
	if (n < 2)
		return 0;
	struct keyref *refs = xcalloc(n, sizeof *refs);
	for (size_t i = 0; i < n; i++)
		refs[i] = (struct keyref){m->kids[2 * i], i};
	qsort(refs, n, sizeof *refs, keyref_cmp);
	size_t dup = SIZE_MAX;
	for (size_t i = 1; i < n; i++)
		if (keys_equal(refs[i - 1].key, refs[i].key) && refs[i].index < dup)
			dup = refs[i].index;
	free(refs);
	if (dup == SIZE_MAX)
		return 0;
	const struct snode *key = m->kids[2 * dup];
	_cleanup_free_ char *q = quote(key->text, key->len);
	_cleanup_free_ char *found = xasprintf("%s again", q);
	path_push_key(c, key);
	return expect_found(c, key, found, "each key once");
}

static int yaml_scalar(struct sctx *c, yaml_event_t *ev, struct snode **out)
{
	bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	int tk = tag_kind(ev->data.scalar.tag, plain);
	if (tk < 0)
		return refuse_tag(c, ev, ev->data.scalar.tag);
	struct snode *n = snode_new(SN_STR, ev_line(ev), ev_col(ev));
	snode_set_text(n, (const char *)ev->data.scalar.value, ev->data.scalar.length);
	if (tk == 1)
		resolve_plain(n);
	*out = n;
	return 0;
}

static int yaml_seq(struct sctx *c, struct ybuild *y, yaml_event_t *start, int depth,
		    struct snode **out)
{
	struct snode *n = snode_new(SN_SEQ, ev_line(start), ev_col(start));
	yaml_event_t ev;
	for (;;) {
		if (yaml_next(c, y, &ev) < 0)
			goto error;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		struct snode *kid = NULL;
		size_t saved = path_push_index(c, n->nkids);
		if (yaml_node(c, y, &ev, depth + 1, &kid) < 0)
			goto error;
		path_pop(c, saved);
		snode_add(n, kid);
	}
	*out = n;
	return 0;
error:
	snode_free(n);
	return -1;
}

static int yaml_map(struct sctx *c, struct ybuild *y, yaml_event_t *start, int depth,
		    struct snode **out)
{
	struct snode *n = snode_new(SN_MAP, ev_line(start), ev_col(start));
	yaml_event_t ev;
	for (;;) {
		if (yaml_next(c, y, &ev) < 0)
			goto error;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			const char *what = ev.type == YAML_MAPPING_START_EVENT	  ? "a map"
					   : ev.type == YAML_SEQUENCE_START_EVENT ? "a list"
										  : "an alias";
			expect_pos(c, ev_line(&ev), ev_col(&ev), what, "a plain key");
			yaml_event_delete(&ev);
			goto error;
		}
		struct snode *key = NULL, *val = NULL;
		if (yaml_node(c, y, &ev, depth + 1, &key) < 0)
			goto error;
		snode_add(n, key);
		if (snode_has_nul(key)) {
			path_push_key(c, key);
			expect(c, key, key, "a key without NUL bytes");
			goto error;
		}
		size_t saved = path_push_key(c, key);
		if (yaml_next(c, y, &ev) < 0 || yaml_node(c, y, &ev, depth + 1, &val) < 0)
			goto error;
		path_pop(c, saved);
		snode_add(n, val);
	}
	if (check_duplicate_keys(c, n) < 0)
		goto error;
	*out = n;
	return 0;
error:
	snode_free(n);
	return -1;
}

/* Build the node that starts with event `ev` (consumed here). */
static int yaml_node(struct sctx *c, struct ybuild *y, yaml_event_t *ev, int depth,
		     struct snode **out)
{
	int r;
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		r = yaml_scalar(c, ev, out);
		break;
	case YAML_ALIAS_EVENT: {
		const char *anchor = (const char *)ev->data.alias.anchor;
		_cleanup_free_ char *name = xasprintf("*%s", anchor ? anchor : "");
		_cleanup_free_ char *q = quote(name, strlen(name));
		r = expect_pos(c, ev_line(ev), ev_col(ev), q,
			       "a value, not an alias (anchors and aliases are not supported)");
		break;
	}
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		const yaml_char_t *tag = ev->type == YAML_SEQUENCE_START_EVENT
					     ? ev->data.sequence_start.tag
					     : ev->data.mapping_start.tag;
		if (tag && tag_kind(tag, true) < 0) {
			r = refuse_tag(c, ev, tag);
		} else if (depth >= SPEC_MAX_DEPTH) {
			r = expect_pos(c, ev_line(ev), ev_col(ev), "deeper nesting",
				       "at most %d levels of nesting", SPEC_MAX_DEPTH);
		} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
			r = yaml_seq(c, y, ev, depth, out);
		} else {
			r = yaml_map(c, y, ev, depth, out);
		}
		break;
	}
	default:
		r = expect_pos(c, ev_line(ev), ev_col(ev), "something else", "a yaml value");
		break;
	}
	yaml_event_delete(ev);
	return r;
}

/* Exactly one document; its root node in *root. */
static int yaml_tree(struct sctx *c, const char *text, size_t len, struct snode **root)
{
	/* libyaml skips a byte order mark only when it detects the encoding
	 * itself, which it must not (below). */
	if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
		text += 3, len -= 3;
	struct ybuild y = {.text = text, .len = len};
	yaml_event_t ev;
	int r = -1;
	if (!yaml_parser_initialize(&y.parser))
		return berr_set(c->err, 400, "%s: out of memory reading yaml", c->file);
	/* Specs are UTF-8: a UTF-16 file is refused at its first byte rather
	 * than decoded, so positions and quoted text stay byte-exact. */
	yaml_parser_set_encoding(&y.parser, YAML_UTF8_ENCODING);
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);
	if (yaml_next(c, &y, &ev) < 0)
		goto out;
	yaml_event_delete(&ev); /* stream start */
	if (yaml_next(c, &y, &ev) < 0)
		goto out;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		expect_pos(c, 1, 1, "an empty document",
			   "a map of job fields such as job and task");
		goto out;
	}
	yaml_event_delete(&ev); /* document start */
	if (yaml_next(c, &y, &ev) < 0 || yaml_node(c, &y, &ev, 0, root) < 0)
		goto out;
	if (yaml_next(c, &y, &ev) < 0)
		goto out;
	yaml_event_delete(&ev); /* document end */
	if (yaml_next(c, &y, &ev) < 0)
		goto out;
	if (ev.type != YAML_STREAM_END_EVENT) {
		expect_pos(c, ev_line(&ev), ev_col(&ev), "another document",
			   "a single yaml document");
		yaml_event_delete(&ev);
		goto out;
	}
	yaml_event_delete(&ev);
	r = 0;
out:
	if (r < 0) {
		snode_free(*root);
		*root = NULL;
	}
	yaml_parser_delete(&y.parser);
	return r;
}

/* ------------------------------------------------------------------------ */
/* JSON to tree                                                              */

/* Shortest text that reads back as the same double. */
static void real_text(struct snode *n, double d)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%.15g", d);
	if (strtod(buf, NULL) != d)
		snprintf(buf, sizeof buf, "%.17g", d);
	snode_set_text(n, buf, strlen(buf));
}

static int json_node(struct sctx *c, json_t *j, int depth, struct snode **out)
{
	struct snode *n;
	char buf[32];
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		if (depth >= SPEC_MAX_DEPTH)
			return expect_pos(c, 0, 0, "deeper nesting", "at most %d levels of nesting",
					  SPEC_MAX_DEPTH);
		n = snode_new(SN_MAP, 0, 0);
		for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
			const char *k = json_object_iter_key(it);
			size_t klen = json_object_iter_key_len(it);
			struct snode *key = snode_new(SN_STR, 0, 0), *val = NULL;
			snode_set_text(key, k, klen);
			snode_add(n, key);
			size_t saved = path_push_key(c, key);
			if (snode_has_nul(key)) {
				expect(c, NULL, key, "a key without NUL bytes");
				snode_free(n);
				return -1;
			}
			if (json_node(c, json_object_iter_value(it), depth + 1, &val) < 0) {
				snode_free(n);
				return -1;
			}
			path_pop(c, saved);
			snode_add(n, val);
		}
		break;
	}
	case JSON_ARRAY:
		if (depth >= SPEC_MAX_DEPTH)
			return expect_pos(c, 0, 0, "deeper nesting", "at most %d levels of nesting",
					  SPEC_MAX_DEPTH);
		n = snode_new(SN_SEQ, 0, 0);
		for (size_t i = 0; i < json_array_size(j); i++) {
			struct snode *val = NULL;
			size_t saved = path_push_index(c, i);
			if (json_node(c, json_array_get(j, i), depth + 1, &val) < 0) {
				snode_free(n);
				return -1;
			}
			path_pop(c, saved);
			snode_add(n, val);
		}
		break;
	case JSON_STRING:
		n = snode_new(SN_STR, 0, 0);
		snode_set_text(n, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		n = snode_new(SN_INT, 0, 0);
		n->ival = json_integer_value(j);
		snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		snode_set_text(n, buf, strlen(buf));
		break;
	case JSON_REAL:
		n = snode_new(SN_REAL, 0, 0);
		n->dval = json_real_value(j);
		real_text(n, n->dval);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		n = snode_new(SN_BOOL, 0, 0);
		n->bval = json_is_true(j);
		snode_set_text(n, n->bval ? "true" : "false", n->bval ? 4 : 5);
		break;
	default:
		n = snode_new(SN_NULL, 0, 0);
		snode_set_text(n, "null", 4);
		break;
	}
	*out = n;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Typed getters: each checks one value and reports with the current path    */

static const char *const job_keys[] = {
    "job",	 "type", "instances", "schedule", "cron_collision", "priority", "max_task_failures",
    "placement", "task", "update",    "restart"};
static const char *const task_keys[] = {"driver",     "image",	   "command",	  "env",
					"user",	      "resources", "constraints", "health",
					"stop_grace", "shutdown",  "volumes"};
static const char *const shutdown_keys[] = {"http", "port", "wait"};
static const char *const volume_keys[] = {"host", "path", "read_only"};
#define SPEC_MAX_VOLUMES 64
static const char *const restart_keys[] = {"delay", "max_delay", "max_attempts", "window"};
static const char *const resource_keys[] = {"cpu", "memory", "disk", "ports"};
static const char *const health_keys[] = {"http",     "tcp",	   "command",
					  "port",     "interval",  "timeout",
					  "failures", "successes", "initial_delay"};
static const char *const update_keys[] = {
    "batch_size",	   "watch", "max_instance_failures", "max_total_failures",
    "rollback_on_failure", "order"};
/* Indexed by the enums of spec.h. */
static const char *const type_names[] = {"service", "batch", "cron"};
static const char *const collision_names[] = {"kill_existing", "cancel_new"};
static const char *const placement_names[] = {"binpack", "spread"};
static const char *const order_names[] = {"stop_first", "start_first"};
static const char *const driver_names[] = {"exec", "oci", "docker"};

const char *task_driver_name(enum task_driver d)
{
	return (unsigned)d < ARRAY_SIZE(driver_names) ? driver_names[d] : driver_names[0];
}

int task_driver_parse(const char *name, enum task_driver *out)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(driver_names); i++)
		if (!strcmp(name, driver_names[i])) {
			*out = (enum task_driver)i;
			return 0;
		}
	return -EINVAL;
}

static int key_index(const struct snode *key, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (key_is(key, names[i]))
			return (int)i;
	return -1;
}

static int unknown_key(struct sctx *c, const struct snode *key, const char *const *names, size_t n)
{
	struct sbuf sb;
	sbuf_init(&sb);
	add_choices(&sb, names, n, " or ");
	expect(c, key, key, "one of %s", sb.buf);
	sbuf_release(&sb);
	return -1;
}

/* A missing required field: reported at the map that lacks it. */
static int missing(struct sctx *c, const struct snode *map, const char *field, const char *what)
{
	path_push(c, field, strlen(field));
	return expect(c, map, NULL, "%s", what);
}

/* A section: a map, or nothing at all (an empty "env:" whose entries are
 * commented out), which reads as an empty map. */
static int check_section(struct sctx *c, const struct snode *n, const char *what)
{
	if (n->kind == SN_MAP || n->kind == SN_NULL)
		return 0;
	return expect(c, n, n, "%s", what);
}

static size_t section_size(const struct snode *n)
{
	return n->kind == SN_MAP ? n->nkids : 0;
}

/* Strings: any scalar but null reads as its text ("user: 1000" is the user
 * "1000"); NUL bytes are refused because the result is a C string. */
static int get_string(struct sctx *c, const struct snode *n, const char *what, char **out)
{
	if (!snode_is_scalar(n) || n->kind == SN_NULL)
		return expect(c, n, n, "%s", what);
	if (snode_has_nul(n))
		return expect(c, n, n, "%s without NUL bytes", what);
	if (!utf8_ok(n->text, n->len))
		return expect(c, n, n, "%s of valid utf-8", what);
	free(*out);
	*out = xstrdup(n->text);
	return 0;
}

/* An integer: a number, or a string holding one ("3" from a template). */
static bool node_int(const struct snode *n, int64_t *v)
{
	if (n->kind == SN_INT) {
		*v = n->ival;
		return true;
	}
	return n->kind == SN_STR && !snode_has_nul(n) && text_to_int(n->text, v) == 0;
}

static int get_int(struct sctx *c, const struct snode *n, int64_t min, int64_t max, int *out)
{
	int64_t v = 0;
	if (!node_int(n, &v) || v < min || v > max)
		return expect(c, n, n, "an integer between %lld and %lld", (long long)min,
			      (long long)max);
	*out = (int)v;
	return 0;
}

static int get_bool(struct sctx *c, const struct snode *n, bool *out)
{
	if (n->kind == SN_BOOL) {
		*out = n->bval;
		return 0;
	}
	if (n->kind == SN_STR && (!strcmp(n->text, "true") || !strcmp(n->text, "false")) &&
	    !snode_has_nul(n)) {
		*out = n->text[0] == 't';
		return 0;
	}
	return expect(c, n, n, "true or false");
}

static int get_enum(struct sctx *c, const struct snode *n, const char *const *names, size_t count,
		    int *out)
{
	if (snode_is_scalar(n) && n->kind != SN_NULL) {
		int i = key_index(n, names, count);
		if (i >= 0) {
			*out = i;
			return 0;
		}
	}
	struct sbuf sb;
	sbuf_init(&sb);
	add_choices(&sb, names, count, " or ");
	expect(c, n, n, "%s", sb.buf);
	sbuf_release(&sb);
	return -1;
}

static int get_cpu(struct sctx *c, const struct snode *n, double *out)
{
	double d = NAN;
	if (n->kind == SN_INT)
		d = (double)n->ival;
	else if (n->kind == SN_REAL)
		d = n->dval;
	else if (n->kind == SN_STR && !snode_has_nul(n) && !text_to_real(n->text, &d))
		d = NAN;
	if (!(d > 0 && d <= SPEC_MAX_CPU)) /* also refuses NaN */
		return expect(c, n, n, "a number of cores above 0 and at most %g", SPEC_MAX_CPU);
	*out = d;
	return 0;
}

static int get_size(struct sctx *c, const struct snode *n, uint64_t min, uint64_t *out)
{
	uint64_t b = 0;
	bool ok = false;
	if (n->kind == SN_INT && n->ival >= 0)
		b = (uint64_t)n->ival, ok = true;
	else if (n->kind == SN_STR && !snode_has_nul(n))
		ok = parse_size(n->text, &b) == 0;
	if (!ok)
		return expect(c, n, n, "a size such as 64MiB");
	if (b < min)
		return expect(c, n, n, "a size above 0 such as 64MiB");
	if (b > SPEC_MAX_SIZE)
		return expect(c, n, n, "a size of at most 1EiB");
	*out = b;
	return 0;
}

/* A bare integer is seconds in YAML (as parse_duration reads "10") but
 * milliseconds in JSON, where the canonical form writes durations as ms. */
static int get_duration(struct sctx *c, const struct snode *n, uint64_t min, uint64_t *out)
{
	uint64_t ms = 0;
	bool ok = false;
	if (n->kind == SN_INT && n->ival >= 0) {
		ms = (uint64_t)n->ival;
		ok = c->json || !__builtin_mul_overflow(ms, 1000, &ms);
	} else if (n->kind == SN_STR && !snode_has_nul(n)) {
		ok = parse_duration(n->text, &ms) == 0;
	}
	if (!ok)
		return expect(c, n, n, "a duration such as 10s");
	if (ms < min)
		return expect(c, n, n, "a duration above 0 such as 10s");
	if (ms > SPEC_MAX_DURATION_MS)
		return expect(c, n, n, "a duration of at most 8760h");
	*out = ms;
	return 0;
}

/* [a-z][a-z0-9_-]*, at most SPEC_MAX_NAME: port names. */
static bool port_name_ok(const char *s)
{
	size_t len = strlen(s);
	if (!len || len > SPEC_MAX_NAME || !(*s >= 'a' && *s <= 'z'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || is_digit(*s) || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* A run of characters from [A-Za-z0-9] plus `extra`, 1..max long. */
static bool word_ok(const char *s, const char *extra, size_t max)
{
	size_t len = strlen(s);
	if (!len || len > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || is_digit(*s) ||
		      strchr(extra, *s)))
			return false;
	return true;
}

/* A command: a list of strings, or one string run by /bin/sh -c. */
static int get_command(struct sctx *c, const struct snode *n, char ***argv, size_t *argc)
{
	const char *what = "a command (a list of strings or a string)";
	if (snode_is_scalar(n) && n->kind != SN_NULL) {
		char *s = NULL;
		if (get_string(c, n, what, &s) < 0)
			return -1;
		if (!s[strspn(s, " \t\n\r")]) {
			free(s);
			return expect(c, n, n, "%s", what);
		}
		strv_free_n(*argv, *argc);
		*argv = xcalloc(3, sizeof **argv);
		(*argv)[0] = xstrdup("/bin/sh");
		(*argv)[1] = xstrdup("-c");
		(*argv)[2] = s;
		*argc = 3;
		return 0;
	}
	if (n->kind != SN_SEQ || !n->nkids)
		return expect(c, n, n, "%s", what);
	char **v = xcalloc(n->nkids, sizeof *v);
	for (size_t i = 0; i < n->nkids; i++) {
		size_t saved = path_push_index(c, i);
		if (get_string(c, n->kids[i], "a string", &v[i]) < 0) {
			strv_free_n(v, n->nkids);
			return -1;
		}
		if (i == 0 && !*v[0]) {
			expect(c, n->kids[i], n->kids[i], "a program to run");
			strv_free_n(v, n->nkids);
			return -1;
		}
		path_pop(c, saved);
	}
	strv_free_n(*argv, *argc);
	*argv = v;
	*argc = n->nkids;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Templates                                                                 */

/* The next "{{ ... }}" in s: *open at "{{", *name and *nlen the trimmed inside,
 * *end after "}}". Returns false when there is none; *end = NULL when a "{{"
 * is not closed. */
static bool template_next(const char *s, const char **open, const char **name, size_t *nlen,
			  const char **end)
{
	const char *o = strstr(s, "{{");
	if (!o)
		return false;
	*open = o;
	const char *close = strstr(o + 2, "}}");
	if (!close) {
		*end = NULL;
		return true;
	}
	const char *a = o + 2, *b = close;
	while (a < b && (*a == ' ' || *a == '\t'))
		a++;
	while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
		b--;
	*name = a;
	*nlen = (size_t)(b - a);
	*end = close + 2;
	return true;
}

static bool name_is(const char *name, size_t nlen, const char *lit)
{
	return nlen == strlen(lit) && !memcmp(name, lit, nlen);
}

static bool port_declared(const struct resources *r, const char *name, size_t nlen)
{
	for (size_t i = 0; i < r->nports; i++)
		if (name_is(name, nlen, r->ports[i]))
			return true;
	return false;
}

/* Every template in a scalar must be known, and every {{ports.NAME}} a
 * declared port: a typo is found at submit time, not when the task starts. */
static int check_templates(struct sctx *c, const struct snode *n, const struct resources *r)
{
	const char *p = n->text, *open, *name, *end;
	size_t nlen;
	while (template_next(p, &open, &name, &nlen, &end)) {
		if (!end) {
			_cleanup_free_ char *q = quote(open, strlen(open));
			return expect_found(c, n, q, "a template closed by }}");
		}
		_cleanup_free_ char *q = quote(open, (size_t)(end - open));
		if (name_is(name, nlen, "instance") || name_is(name, nlen, "task_id") ||
		    name_is(name, nlen, "host")) {
			/* known */
		} else if (nlen > 6 && !memcmp(name, "ports.", 6)) {
			if (!port_declared(r, name + 6, nlen - 6))
				return expect_found(c, n, q,
						    "a port declared in task.resources.ports");
		} else {
			return expect_found(c, n, q,
					    "a template {{instance}}, {{task_id}}, {{host}} or "
					    "{{ports.NAME}}");
		}
		p = end;
	}
	return 0;
}

/* Templates in a command node (list or string) under path FIELD. */
static int check_command_templates(struct sctx *c, const struct snode *n, const char *field,
				   const struct resources *r)
{
	if (!n)
		return 0;
	size_t saved = path_push(c, field, strlen(field));
	if (n->kind == SN_SEQ) {
		for (size_t i = 0; i < n->nkids; i++) {
			size_t s2 = path_push_index(c, i);
			if (check_templates(c, n->kids[i], r) < 0)
				return -1;
			path_pop(c, s2);
		}
	} else if (check_templates(c, n, r) < 0) {
		return -1;
	}
	path_pop(c, saved);
	return 0;
}

char *spec_expand(const char *tmpl, const struct template_ctx *ctx)
{
	static const struct template_ctx none;
	const char *p = tmpl ? tmpl : "", *open, *name, *end;
	size_t nlen;
	struct sbuf sb;
	if (!ctx)
		ctx = &none;
	sbuf_init(&sb);
	while (template_next(p, &open, &name, &nlen, &end) && end) {
		sbuf_add(&sb, p, (size_t)(open - p));
		if (name_is(name, nlen, "instance")) {
			sbuf_addf(&sb, "%d", ctx->instance);
		} else if (name_is(name, nlen, "task_id")) {
			sbuf_adds(&sb, ctx->task_id ? ctx->task_id : "");
		} else if (name_is(name, nlen, "host")) {
			sbuf_adds(&sb, ctx->host ? ctx->host : "");
		} else {
			/* A port the context lacks stays as written, so the
			 * mistake is visible rather than an empty argument. */
			bool done = false;
			if (nlen > 6 && !memcmp(name, "ports.", 6) && ctx->port_names &&
			    ctx->port_values) {
				for (size_t i = 0; i < ctx->nports && !done; i++) {
					if (ctx->port_names[i] &&
					    name_is(name + 6, nlen - 6, ctx->port_names[i])) {
						sbuf_addf(&sb, "%d", ctx->port_values[i]);
						done = true;
					}
				}
			}
			if (!done)
				sbuf_add(&sb, open, (size_t)(end - open));
		}
		p = end;
	}
	sbuf_adds(&sb, p);
	return sbuf_detach(&sb);
}

/* ------------------------------------------------------------------------ */
/* Sections                                                                  */

static int v_env(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (check_section(c, n, "a map of environment variables") < 0)
		return -1;
	size_t count = section_size(n) / 2;
	t->env = xcalloc(count ? count : 1, sizeof *t->env);
	for (size_t i = 0; i < count; i++) {
		const struct snode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		size_t saved = path_push_key(c, k);
		if (k->kind == SN_NULL || snode_has_nul(k) || !word_ok(k->text, "_", 256) ||
		    is_digit(k->text[0]))
			return expect(c, k, k, "an environment variable name such as GREETING");
		/* Values: numbers and booleans are their text ("8080",
		 * "yes"), which is what a shell would see. */
		struct spec_kv *kv = &t->env[t->nenv++];
		kv->key = xstrdup(k->text);
		if (get_string(c, v, "a string", &kv->value) < 0)
			return -1;
		path_pop(c, saved);
	}
	return 0;
}

static int v_ports(struct sctx *c, const struct snode *n, struct resources *r)
{
	if (n->kind == SN_NULL)
		return 0;
	if (n->kind != SN_SEQ)
		return expect(c, n, n, "a list of port names");
	if (n->nkids > SPEC_MAX_PORTS) {
		_cleanup_free_ char *found = xasprintf("%zu ports", n->nkids);
		return expect_found(c, n, found, "at most %d ports", SPEC_MAX_PORTS);
	}
	r->ports = xcalloc(n->nkids ? n->nkids : 1, sizeof *r->ports);
	for (size_t i = 0; i < n->nkids; i++) {
		const struct snode *p = n->kids[i];
		size_t saved = path_push_index(c, i);
		char *name = NULL;
		if (get_string(c, p, "a port name", &name) < 0)
			return -1;
		r->ports[r->nports++] = name;
		if (!port_name_ok(name))
			return expect(c, p, p, "a port name such as http ([a-z][a-z0-9_-]*)");
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(r->ports[j], name)) {
				_cleanup_free_ char *q = quote(name, strlen(name));
				_cleanup_free_ char *found = xasprintf("%s again", q);
				return expect_found(c, p, found, "each port name once");
			}
		}
		path_pop(c, saved);
	}
	return 0;
}

static int v_resources(struct sctx *c, const struct snode *n, struct resources *r)
{
	if (check_section(c, n, "a map of resources (cpu, memory, disk, ports)") < 0)
		return -1;
	for (size_t i = 0; i < section_size(n); i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc;
		switch (key_index(k, resource_keys, ARRAY_SIZE(resource_keys))) {
		case 0:
			rc = get_cpu(c, v, &r->cpu);
			break;
		case 1:
			rc = get_size(c, v, 1, &r->memory);
			break;
		case 2:
			rc = get_size(c, v, 0, &r->disk);
			break;
		case 3:
			rc = v_ports(c, v, r);
			break;
		default:
			rc = unknown_key(c, k, resource_keys, ARRAY_SIZE(resource_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}
	return 0;
}

static void constraint_free(struct constraint *k)
{
	free(k->attribute);
	strv_free_n(k->values, k->nvalues);
}

/* One constraint string: "v", "!v", "a,b", "!a,b" or "limit:N". */
static int parse_constraint(const char *s, struct constraint *k)
{
	if (!strncmp(s, "limit:", 6)) {
		int64_t v;
		if (text_to_int(s + 6, &v) < 0 || v < 1 || v > SPEC_MAX_INSTANCES || s[6] == '+' ||
		    s[6] == '-')
			return -1;
		k->kind = CONSTRAINT_LIMIT;
		k->limit = (int)v;
		return 0;
	}
	k->kind = CONSTRAINT_VALUE;
	k->negated = *s == '!';
	if (k->negated)
		s++;
	if (!strncmp(s, "limit:", 6))
		return -1;
	size_t n = 1;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	k->values = xcalloc(n, sizeof *k->values);
	for (;;) {
		size_t len = strcspn(s, ",");
		const char *a = s, *b = s + len;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a == b || *a == '!')
			return -1;
		for (const char *p = a; p < b; p++)
			if ((unsigned char)*p <= ' ' || *p == 0x7f)
				return -1;
		k->values[k->nvalues++] = xstrndup(a, (size_t)(b - a));
		if (!s[len])
			return 0;
		s += len + 1;
	}
}

static int v_constraints(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (check_section(c, n, "a map of attribute constraints") < 0)
		return -1;
	size_t count = section_size(n) / 2;
	t->constraints = xcalloc(count ? count : 1, sizeof *t->constraints);
	for (size_t i = 0; i < count; i++) {
		const struct snode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		size_t saved = path_push_key(c, k);
		if (k->kind == SN_NULL || snode_has_nul(k) ||
		    !word_ok(k->text, "_.-", SPEC_MAX_NAME))
			return expect(c, k, k, "an attribute name such as rack");
		struct constraint *ck = &t->constraints[t->nconstraints++];
		ck->attribute = xstrdup(k->text);
		char *s = NULL;
		const char *what = "a constraint such as 'r1', '!r3', 'a,b' or 'limit:1'";
		if (get_string(c, v, what, &s) < 0)
			return -1;
		int r = parse_constraint(s, ck);
		free(s);
		if (r < 0)
			return expect(c, v, v, "%s", what);
		path_pop(c, saved);
	}
	return 0;
}

/* Health check kinds are exclusive: the second one given is refused. */
static int set_health_kind(struct sctx *c, const struct snode *v, struct health_spec *h,
			   enum health_kind kind)
{
	if (h->kind != HEALTH_NONE)
		return expect(c, v, v, "only one of http, tcp or command");
	h->kind = kind;
	return 0;
}

static int v_health(struct sctx *c, const struct snode *n, struct health_spec *h)
{
	if (check_section(c, n, "a map with one of http, tcp or command") < 0)
		return -1;
	for (size_t i = 0; i < section_size(n); i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc = 0;
		bool tcp = false;
		switch (key_index(k, health_keys, ARRAY_SIZE(health_keys))) {
		case 0:
			rc = get_string(c, v, "an http path such as /health", &h->http_path);
			if (!rc && (h->http_path[0] != '/' || strpbrk(h->http_path, " \t\r\n")))
				rc = expect(c, v, v, "an http path such as /health");
			if (!rc)
				rc = set_health_kind(c, v, h, HEALTH_HTTP);
			break;
		case 1:
			/* tcp: false is the same as no tcp check. */
			rc = get_bool(c, v, &tcp);
			if (!rc && tcp)
				rc = set_health_kind(c, v, h, HEALTH_TCP);
			break;
		case 2:
			rc = get_command(c, v, &h->command, &h->ncommand);
			if (!rc)
				rc = set_health_kind(c, v, h, HEALTH_COMMAND);
			break;
		case 3:
			rc = get_string(c, v, "a port name", &h->port);
			break;
		case 4:
			rc = get_duration(c, v, 1, &h->interval_ms);
			break;
		case 5:
			rc = get_duration(c, v, 1, &h->timeout_ms);
			break;
		case 6:
			rc = get_int(c, v, 1, SPEC_MAX_COUNT, &h->failures);
			break;
		case 7:
			rc = get_int(c, v, 1, SPEC_MAX_COUNT, &h->successes);
			break;
		case 8:
			rc = get_duration(c, v, 0, &h->initial_delay_ms);
			break;
		default:
			rc = unknown_key(c, k, health_keys, ARRAY_SIZE(health_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}
	return 0;
}

/* Cross-field checks of the health section, once the ports are known. */
static int check_health(struct sctx *c, const struct snode *hn, const struct task_spec *t)
{
	const struct health_spec *h = &t->health;
	const struct snode *port = map_get(hn, "port");
	size_t saved = path_push(c, "health", 6);
	if (h->kind == HEALTH_HTTP || h->kind == HEALTH_TCP) {
		if (!port)
			return missing(c, hn, "port",
				       "a port from task.resources.ports for the check");
		path_push(c, "port", 4);
		if (!port_declared(&t->resources, h->port, strlen(h->port)))
			return expect(c, port, port, "a port declared in task.resources.ports");
	} else if (port) {
		path_push(c, "port", 4);
		return expect(c, port, port, "no port without an http or tcp check");
	}
	path_pop(c, saved);
	return 0;
}

static int v_shutdown(struct sctx *c, const struct snode *n, struct shutdown_spec *sh);
static int v_volumes(struct sctx *c, const struct snode *n, struct task_spec *t);

static int v_task(struct sctx *c, const struct snode *n, struct job_spec *s)
{
	struct task_spec *t = &s->task;
	if (n->kind != SN_MAP)
		return expect(c, n, n, "a map of task fields such as command and resources");
	for (size_t i = 0; i < n->nkids; i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc = 0, e = 0;
		switch (key_index(k, task_keys, ARRAY_SIZE(task_keys))) {
		case 0:
			rc = get_enum(c, v, driver_names, ARRAY_SIZE(driver_names), &e);
			if (!rc)
				t->driver = (enum task_driver)e;
			break;
		case 1:
			rc = get_string(c, v, "an image reference or path", &t->image);
			break;
		case 2:
			rc = get_command(c, v, &t->command, &t->ncommand);
			break;
		case 3:
			rc = v_env(c, v, t);
			break;
		case 4:
			rc = get_string(c, v, "a user name or uid", &t->user);
			if (!rc && *t->user &&
			    (!word_ok(t->user, "_.-", SPEC_MAX_NAME) || *t->user == '-'))
				rc = expect(c, v, v, "a user name or uid");
			break;
		case 5:
			rc = v_resources(c, v, &t->resources);
			break;
		case 6:
			rc = v_constraints(c, v, t);
			break;
		case 7:
			rc = v_health(c, v, &t->health);
			break;
		case 8:
			rc = get_duration(c, v, 0, &t->stop_grace_ms);
			break;
		case 9:
			rc = v_shutdown(c, v, &t->shutdown);
			break;
		case 10:
			rc = v_volumes(c, v, t);
			break;
		default:
			rc = unknown_key(c, k, task_keys, ARRAY_SIZE(task_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}

	if (!t->command)
		return missing(c, n, "command", "a command (a list of strings or a string)");
	const struct snode *image = map_get(n, "image"), *driver = map_get(n, "driver");
	if (t->driver != DRIVER_EXEC && !*t->image) {
		path_push(c, "image", 5);
		return expect(c, image ? image : driver, image, "an image for driver %s",
			      task_driver_name(t->driver));
	}
	if (t->driver == DRIVER_EXEC && *t->image) {
		path_push(c, "image", 5);
		return expect(c, image, image, "no image for driver exec (use oci or docker)");
	}
	if (check_health(c, map_get(n, "health"), t) < 0)
		return -1;
	if (*t->shutdown.http_path || *t->shutdown.port) {
		const struct snode *sn = map_get(n, "shutdown");
		bool declared = false;
		for (size_t i = 0; i < t->resources.nports; i++)
			declared = declared || !strcmp(t->resources.ports[i], t->shutdown.port);
		if (!*t->shutdown.http_path) {
			path_push(c, "shutdown", 8);
			return missing(c, sn, "http", "an http path such as /quitquitquit");
		}
		if (!declared) {
			const struct snode *pn = map_get(sn, "port");
			path_push(c, "shutdown", 8);
			path_push(c, "port", 4);
			return expect(c, pn ? pn : sn, pn,
				      "a port declared in task.resources.ports");
		}
	}
	/* Templates last: {{ports.NAME}} may come before the ports it names. */
	if (check_command_templates(c, map_get(n, "command"), "command", &t->resources) < 0)
		return -1;
	const struct snode *env = map_get(n, "env");
	for (size_t i = 0; env && i < section_size(env); i += 2) {
		size_t saved = path_push(c, "env", 3);
		path_push_key(c, env->kids[i]);
		if (check_templates(c, env->kids[i + 1], &t->resources) < 0)
			return -1;
		path_pop(c, saved);
	}
	const struct snode *health = map_get(n, "health");
	size_t saved = path_push(c, "health", 6);
	if (check_command_templates(c, map_get(health, "command"), "command", &t->resources) < 0)
		return -1;
	path_pop(c, saved);
	return 0;
}

static int v_shutdown(struct sctx *c, const struct snode *n, struct shutdown_spec *sh)
{
	if (check_section(c, n, "a map with http, port and wait") < 0)
		return -1;
	for (size_t i = 0; i < section_size(n); i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc;
		switch (key_index(k, shutdown_keys, ARRAY_SIZE(shutdown_keys))) {
		case 0:
			rc = get_string(c, v, "an http path such as /quitquitquit", &sh->http_path);
			if (!rc && (sh->http_path[0] != '/' || strpbrk(sh->http_path, " \t\r\n")))
				rc = expect(c, v, v, "an http path such as /quitquitquit");
			break;
		case 1:
			rc = get_string(c, v, "a port name", &sh->port);
			break;
		case 2:
			rc = get_duration(c, v, 0, &sh->wait_ms);
			break;
		default:
			rc = unknown_key(c, k, shutdown_keys, ARRAY_SIZE(shutdown_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}
	return 0;
}

/* An absolute path without ".." components. */
static bool volume_path_ok(const char *p)
{
	if (p[0] != '/')
		return false;
	for (const char *s = p; *s;) {
		size_t len = strcspn(s, "/");
		if (len == 2 && s[0] == '.' && s[1] == '.')
			return false;
		s += len;
		if (*s)
			s++;
	}
	return true;
}

static int get_volume_path(struct sctx *c, const struct snode *v, char **out)
{
	const char *what = "an absolute path without '..'";
	if (get_string(c, v, what, out) < 0)
		return -1;
	if (!volume_path_ok(*out))
		return expect(c, v, v, "%s", what);
	return 0;
}

static int v_volume(struct sctx *c, const struct snode *n, struct volume *vol)
{
	if (n->kind != SN_MAP)
		return expect(c, n, n, "a map with host, path and read_only");
	for (size_t i = 0; i < n->nkids; i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc;
		switch (key_index(k, volume_keys, ARRAY_SIZE(volume_keys))) {
		case 0:
			rc = get_volume_path(c, v, &vol->host);
			break;
		case 1:
			rc = get_volume_path(c, v, &vol->path);
			break;
		case 2:
			rc = get_bool(c, v, &vol->read_only);
			break;
		default:
			rc = unknown_key(c, k, volume_keys, ARRAY_SIZE(volume_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}
	if (!vol->host)
		return missing(c, n, "host", "a host path such as /srv/data");
	if (!vol->path)
		return missing(c, n, "path", "a path in the task such as /data");
	return 0;
}

static int v_volumes(struct sctx *c, const struct snode *n, struct task_spec *t)
{
	if (n->kind == SN_NULL)
		return 0;
	if (n->kind != SN_SEQ)
		return expect(c, n, n, "a list of volumes such as {host: /srv/data, path: /data}");
	if (n->nkids > SPEC_MAX_VOLUMES) {
		_cleanup_free_ char *found = xasprintf("%zu volumes", n->nkids);
		return expect_found(c, n, found, "at most %d volumes", SPEC_MAX_VOLUMES);
	}
	t->volumes = xcalloc(n->nkids ? n->nkids : 1, sizeof *t->volumes);
	for (size_t i = 0; i < n->nkids; i++) {
		const struct snode *vn = n->kids[i];
		size_t saved = path_push_index(c, i);
		struct volume *vol = &t->volumes[t->nvolumes++];
		if (v_volume(c, vn, vol) < 0)
			return -1;
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(t->volumes[j].path, vol->path)) {
				const struct snode *pn = map_get(vn, "path");
				path_push(c, "path", 4);
				_cleanup_free_ char *q = quote(vol->path, strlen(vol->path));
				_cleanup_free_ char *found = xasprintf("%s again", q);
				return expect_found(c, pn, found, "each volume path once");
			}
		}
		path_pop(c, saved);
	}
	return 0;
}

static int v_restart(struct sctx *c, const struct snode *n, struct restart_policy *r)
{
	if (check_section(c, n, "a map of restart settings") < 0)
		return -1;
	r->set = true;
	for (size_t i = 0; i < section_size(n); i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc;
		switch (key_index(k, restart_keys, ARRAY_SIZE(restart_keys))) {
		case 0:
			rc = get_duration(c, v, 0, &r->delay_ms);
			break;
		case 1:
			rc = get_duration(c, v, 0, &r->max_delay_ms);
			break;
		case 2:
			rc = get_int(c, v, 0, SPEC_MAX_COUNT, &r->max_attempts);
			break;
		case 3:
			rc = get_duration(c, v, 1, &r->window_ms);
			break;
		default:
			rc = unknown_key(c, k, restart_keys, ARRAY_SIZE(restart_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}
	return 0;
}

static int v_update(struct sctx *c, const struct snode *n, struct update_spec *u)
{
	if (check_section(c, n, "a map of update settings") < 0)
		return -1;
	for (size_t i = 0; i < section_size(n); i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc, e = 0;
		switch (key_index(k, update_keys, ARRAY_SIZE(update_keys))) {
		case 0:
			rc = get_int(c, v, 1, SPEC_MAX_INSTANCES, &u->batch_size);
			break;
		case 1:
			rc = get_duration(c, v, 0, &u->watch_ms);
			break;
		case 2:
			rc = get_int(c, v, 0, SPEC_MAX_COUNT, &u->max_instance_failures);
			break;
		case 3:
			rc = get_int(c, v, 0, SPEC_MAX_COUNT, &u->max_total_failures);
			break;
		case 4:
			rc = get_bool(c, v, &u->rollback_on_failure);
			break;
		case 5:
			rc = get_enum(c, v, order_names, ARRAY_SIZE(order_names), &e);
			u->order = (enum update_order)e;
			break;
		default:
			rc = unknown_key(c, k, update_keys, ARRAY_SIZE(update_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}
	return 0;
}

/* Numbers, names (JAN, MON), ranges, steps, lists and Quartz-style ?#. */
static bool cron_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) ||
	       (ch && strchr("*/,-?#", ch));
}

/* Five whitespace-separated cron fields; kept with single spaces. */
static int v_schedule(struct sctx *c, const struct snode *n, char **out)
{
	const char *what = "a cron schedule of 5 fields such as '*/5 * * * *'";
	char *s = NULL;
	if (get_string(c, n, what, &s) < 0)
		return -1;
	struct sbuf sb;
	int fields = 0;
	bool ok = true;
	sbuf_init(&sb);
	for (char *p = s; *p;) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t");
		if (!len)
			break;
		for (size_t i = 0; i < len; i++)
			if (!cron_char_ok(p[i]))
				ok = false;
		if (fields++)
			sbuf_adds(&sb, " ");
		sbuf_add(&sb, p, len);
		p += len;
	}
	free(s);
	/* "" is what the canonical form of a non-cron job holds. */
	if (!ok || (fields != 5 && fields != 0) || (fields == 0 && sb.len != n->len)) {
		sbuf_release(&sb);
		return expect(c, n, n, "%s", what);
	}
	/* The fields must also mean something (ranges, names, steps). */
	struct cron_expr ce;
	struct berr cerr = {0};
	if (fields == 5 && cron_parse(sb.buf, &ce, &cerr) < 0) {
		int r = expect(c, n, n, "%s (%s)", what, cerr.msg);
		sbuf_release(&sb);
		return r;
	}
	free(*out);
	*out = sbuf_detach(&sb);
	return 0;
}

static int v_jobkey(struct sctx *c, const struct snode *n, struct job_spec *s)
{
	struct berr e = {0};
	if (get_string(c, n, "a job key such as alice/prod/web", &s->key) < 0)
		return -1;
	if (job_key_check(s->key, &e) < 0) {
		if (c->file && n->line > 0)
			return berr_set(c->err, 400, "%s:%d:%d: %s: %s", c->file, n->line, n->col,
					c->path.buf, e.msg);
		return berr_set(c->err, 400, "%s: %s", c->path.buf, e.msg);
	}
	char *a = strchr(s->key, '/'), *b = strchr(a + 1, '/');
	free(s->role);
	free(s->environment);
	free(s->name);
	s->role = xstrndup(s->key, (size_t)(a - s->key));
	s->environment = xstrndup(a + 1, (size_t)(b - a - 1));
	s->name = xstrdup(b + 1);
	return 0;
}

static int v_job(struct sctx *c, const struct snode *root, struct job_spec *s)
{
	if (!root || root->kind != SN_MAP)
		return expect(c, root, root, "a map of job fields such as job and task");
	for (size_t i = 0; i < root->nkids; i += 2) {
		const struct snode *k = root->kids[i], *v = root->kids[i + 1];
		size_t saved = path_push_key(c, k);
		int rc, e = 0;
		switch (key_index(k, job_keys, ARRAY_SIZE(job_keys))) {
		case 0:
			rc = v_jobkey(c, v, s);
			break;
		case 1:
			rc = get_enum(c, v, type_names, ARRAY_SIZE(type_names), &e);
			s->type = (enum job_type)e;
			break;
		case 2:
			rc = get_int(c, v, 0, SPEC_MAX_INSTANCES, &s->instances);
			break;
		case 3:
			rc = v_schedule(c, v, &s->schedule);
			break;
		case 4:
			rc = get_enum(c, v, collision_names, ARRAY_SIZE(collision_names), &e);
			s->cron_collision = (enum cron_collision)e;
			break;
		case 5:
			rc = get_int(c, v, -SPEC_MAX_COUNT, SPEC_MAX_COUNT, &s->priority);
			break;
		case 6:
			rc = get_int(c, v, -1, SPEC_MAX_COUNT, &s->max_task_failures);
			break;
		case 7:
			rc = get_enum(c, v, placement_names, ARRAY_SIZE(placement_names), &e);
			s->placement = (enum placement_strategy)e;
			break;
		case 8:
			rc = v_task(c, v, s);
			break;
		case 9:
			rc = v_update(c, v, &s->update);
			break;
		case 10:
			rc = v_restart(c, v, &s->restart);
			break;
		default:
			rc = unknown_key(c, k, job_keys, ARRAY_SIZE(job_keys));
		}
		if (rc < 0)
			return -1;
		path_pop(c, saved);
	}
	if (!map_get(root, "job"))
		return missing(c, root, "job", "a job key such as alice/prod/web");
	if (!map_get(root, "task"))
		return missing(c, root, "task", "a task section with a command");
	if (s->type == JOB_CRON && !*s->schedule) {
		const struct snode *sched = map_get(root, "schedule");
		path_push(c, "schedule", 8);
		return expect(c, sched ? sched : map_get(root, "type"), sched,
			      "a cron schedule such as '*/5 * * * *' for a cron job");
	}
	if (s->type != JOB_CRON && *s->schedule) {
		const struct snode *sched = map_get(root, "schedule");
		path_push(c, "schedule", 8);
		return expect(c, sched, sched, "no schedule for a %s job (use type: cron)",
			      type_names[s->type]);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Public: parsing                                                           */

static struct job_spec *spec_new(void)
{
	struct job_spec *s = xcalloc(1, sizeof *s);
	s->key = xstrdup("");
	s->role = xstrdup("");
	s->environment = xstrdup("");
	s->name = xstrdup("");
	s->type = JOB_SERVICE;
	s->instances = 1;
	s->schedule = xstrdup("");
	s->cron_collision = CRON_KILL_EXISTING;
	s->max_task_failures = 1;
	s->placement = PLACE_BINPACK;
	struct task_spec *t = &s->task;
	t->driver = DRIVER_EXEC;
	t->image = xstrdup("");
	t->user = xstrdup("");
	t->resources.cpu = 1.0;
	t->resources.memory = 128ULL << 20;
	t->health.kind = HEALTH_NONE;
	t->health.http_path = xstrdup("");
	t->health.port = xstrdup("");
	t->health.interval_ms = 10000;
	t->health.timeout_ms = 1000;
	t->health.failures = 3;
	t->health.successes = 1;
	t->health.initial_delay_ms = 15000;
	t->stop_grace_ms = 10000;
	t->shutdown.http_path = xstrdup("");
	t->shutdown.port = xstrdup("");
	t->shutdown.wait_ms = 5000;
	s->restart.max_delay_ms = 60000;
	s->restart.window_ms = 600000;
	s->update.batch_size = 1;
	s->update.watch_ms = 10000;
	s->update.rollback_on_failure = true;
	s->update.order = UPDATE_STOP_FIRST;
	return s;
}

static int spec_from_tree(struct sctx *c, const struct snode *root, struct job_spec **out)
{
	struct job_spec *s = spec_new();
	if (v_job(c, root, s) < 0) {
		spec_free(s);
		return -1;
	}
	*out = s;
	return 0;
}

int spec_parse_yaml(const char *text, size_t len, const char *filename, struct job_spec **out,
		    struct berr *err)
{
	struct sctx c = {.file = filename ? filename : "<input>", .err = err};
	struct snode *root = NULL;
	*out = NULL;
	sbuf_init(&c.path);
	int r = yaml_tree(&c, text ? text : "", text ? len : 0, &root);
	if (r == 0)
		r = spec_from_tree(&c, root, out);
	snode_free(root);
	sbuf_release(&c.path);
	return r;
}

int spec_parse_json(json_t *obj, struct job_spec **out, struct berr *err)
{
	struct sctx c = {.file = NULL, .err = err, .json = true};
	struct snode *root = NULL;
	int r = 0;
	*out = NULL;
	sbuf_init(&c.path);
	if (obj)
		r = json_node(&c, obj, 0, &root);
	if (r == 0)
		r = spec_from_tree(&c, root, out);
	snode_free(root);
	sbuf_release(&c.path);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Public: canonical JSON                                                    */

static json_t *strv_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* The string form a constraint was written in, normalized ("a, b" → "a,b"). */
static json_t *constraint_json(const struct constraint *k)
{
	struct sbuf sb;
	sbuf_init(&sb);
	if (k->kind == CONSTRAINT_LIMIT) {
		sbuf_addf(&sb, "limit:%d", k->limit);
	} else {
		if (k->negated)
			sbuf_adds(&sb, "!");
		for (size_t i = 0; i < k->nvalues; i++)
			sbuf_addf(&sb, "%s%s", i ? "," : "", k->values[i]);
	}
	json_t *j = json_string(sb.buf);
	sbuf_release(&sb);
	return j;
}

static json_t *task_json(const struct task_spec *t)
{
	json_t *task = json_object(), *env = json_object(), *res = json_object();
	json_t *cons = json_object(), *health = json_object();
	const struct health_spec *h = &t->health;

	json_object_set_new(task, "driver", json_string(task_driver_name(t->driver)));
	json_object_set_new(task, "image", json_string(t->image));
	json_object_set_new(task, "command", strv_json(t->command, t->ncommand));
	for (size_t i = 0; i < t->nenv; i++)
		json_object_set_new(env, t->env[i].key, json_string(t->env[i].value));
	json_object_set_new(task, "env", env);
	json_object_set_new(task, "user", json_string(t->user));
	json_object_set_new(res, "cpu", json_real(t->resources.cpu));
	json_object_set_new(res, "memory", json_integer((json_int_t)t->resources.memory));
	json_object_set_new(res, "disk", json_integer((json_int_t)t->resources.disk));
	json_object_set_new(res, "ports", strv_json(t->resources.ports, t->resources.nports));
	json_object_set_new(task, "resources", res);
	for (size_t i = 0; i < t->nconstraints; i++)
		json_object_set_new(cons, t->constraints[i].attribute,
				    constraint_json(&t->constraints[i]));
	json_object_set_new(task, "constraints", cons);
	/* The check kinds are alternatives: only the one in use appears. */
	if (h->kind == HEALTH_HTTP)
		json_object_set_new(health, "http", json_string(h->http_path));
	else if (h->kind == HEALTH_TCP)
		json_object_set_new(health, "tcp", json_true());
	else if (h->kind == HEALTH_COMMAND)
		json_object_set_new(health, "command", strv_json(h->command, h->ncommand));
	if (h->kind == HEALTH_HTTP || h->kind == HEALTH_TCP)
		json_object_set_new(health, "port", json_string(h->port));
	json_object_set_new(health, "interval", json_integer((json_int_t)h->interval_ms));
	json_object_set_new(health, "timeout", json_integer((json_int_t)h->timeout_ms));
	json_object_set_new(health, "failures", json_integer(h->failures));
	json_object_set_new(health, "successes", json_integer(h->successes));
	json_object_set_new(health, "initial_delay", json_integer((json_int_t)h->initial_delay_ms));
	json_object_set_new(task, "health", health);
	json_object_set_new(task, "stop_grace", json_integer((json_int_t)t->stop_grace_ms));
	if (*t->shutdown.http_path)
		json_object_set_new(task, "shutdown",
				    json_pack("{s:s,s:s,s:I}", "http", t->shutdown.http_path,
					      "port", t->shutdown.port, "wait",
					      (json_int_t)t->shutdown.wait_ms));
	/* Only when set: specs without volumes keep their canonical JSON. */
	if (t->nvolumes) {
		json_t *vols = json_array();
		for (size_t i = 0; i < t->nvolumes; i++)
			json_array_append_new(vols,
					      json_pack("{s:s,s:s,s:b}", "host", t->volumes[i].host,
							"path", t->volumes[i].path, "read_only",
							t->volumes[i].read_only));
		json_object_set_new(task, "volumes", vols);
	}
	return task;
}

json_t *spec_task_to_json(const struct job_spec *spec)
{
	return task_json(&spec->task);
}

json_t *spec_to_json(const struct job_spec *s)
{
	json_t *j = json_object(), *u = json_object();
	json_object_set_new(j, "job", json_string(s->key));
	json_object_set_new(j, "type", json_string(type_names[s->type]));
	json_object_set_new(j, "instances", json_integer(s->instances));
	json_object_set_new(j, "schedule", json_string(s->schedule));
	json_object_set_new(j, "cron_collision", json_string(collision_names[s->cron_collision]));
	json_object_set_new(j, "priority", json_integer(s->priority));
	json_object_set_new(j, "max_task_failures", json_integer(s->max_task_failures));
	json_object_set_new(j, "placement", json_string(placement_names[s->placement]));
	json_object_set_new(j, "task", task_json(&s->task));
	json_object_set_new(u, "batch_size", json_integer(s->update.batch_size));
	json_object_set_new(u, "watch", json_integer((json_int_t)s->update.watch_ms));
	json_object_set_new(u, "max_instance_failures",
			    json_integer(s->update.max_instance_failures));
	json_object_set_new(u, "max_total_failures", json_integer(s->update.max_total_failures));
	json_object_set_new(u, "rollback_on_failure", json_boolean(s->update.rollback_on_failure));
	json_object_set_new(u, "order", json_string(order_names[s->update.order]));
	json_object_set_new(j, "update", u);
	if (s->restart.set)
		json_object_set_new(
		    j, "restart",
		    json_pack("{s:I,s:I,s:i,s:I}", "delay", (json_int_t)s->restart.delay_ms,
			      "max_delay", (json_int_t)s->restart.max_delay_ms, "max_attempts",
			      s->restart.max_attempts, "window", (json_int_t)s->restart.window_ms));
	return j;
}

void spec_free(struct job_spec *s)
{
	if (!s)
		return;
	struct task_spec *t = &s->task;
	free(s->key);
	free(s->role);
	free(s->environment);
	free(s->name);
	free(s->schedule);
	free(t->image);
	strv_free_n(t->command, t->ncommand);
	for (size_t i = 0; t->env && i < t->nenv; i++) {
		free(t->env[i].key);
		free(t->env[i].value);
	}
	free(t->env);
	free(t->user);
	free(t->shutdown.http_path);
	free(t->shutdown.port);
	strv_free_n(t->resources.ports, t->resources.nports);
	for (size_t i = 0; t->constraints && i < t->nconstraints; i++)
		constraint_free(&t->constraints[i]);
	free(t->constraints);
	free(t->health.http_path);
	free(t->health.port);
	strv_free_n(t->health.command, t->health.ncommand);
	for (size_t i = 0; t->volumes && i < t->nvolumes; i++) {
		free(t->volumes[i].host);
		free(t->volumes[i].path);
	}
	free(t->volumes);
	free(s);
}

/* ------------------------------------------------------------------------ */
/* Public: job keys, sizes, durations                                        */

/* [a-z0-9_-]{1,64}, starting with a letter or digit. */
static bool key_part_ok(const char *s, size_t len)
{
	if (!len || len > 64 || !((s[0] >= 'a' && s[0] <= 'z') || is_digit(s[0])))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || is_digit(s[i]) || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static bool environment_ok(const char *s, size_t len)
{
	if ((len == 4 && !memcmp(s, "prod", 4)) || (len == 5 && !memcmp(s, "devel", 5)) ||
	    (len == 4 && !memcmp(s, "test", 4)))
		return true;
	if (len < 7 || len > 64 || memcmp(s, "staging", 7))
		return false;
	for (size_t i = 7; i < len; i++)
		if (!is_digit(s[i]))
			return false;
	return true;
}

static int key_error(struct berr *err, const char *what, const char *found, size_t len)
{
	struct sbuf sb;
	sbuf_init(&sb);
	add_quoted(&sb, found, len);
	berr_set(err, 400, "expected %s, found %s", what, sb.buf);
	sbuf_release(&sb);
	return -1;
}

int job_key_check(const char *key, struct berr *err)
{
	if (!key)
		key = "";
	const char *a = strchr(key, '/'), *b = a ? strchr(a + 1, '/') : NULL;
	if (!a || !b || strchr(b + 1, '/'))
		return key_error(err, "a job key role/environment/name such as alice/prod/web", key,
				 strlen(key));
	if (!key_part_ok(key, (size_t)(a - key)))
		return key_error(err,
				 "a role of 1 to 64 characters a-z, 0-9, _ or - starting with a "
				 "letter or digit",
				 key, (size_t)(a - key));
	if (!environment_ok(a + 1, (size_t)(b - a - 1)))
		return key_error(err, "an environment prod, devel, test or staging<digits>", a + 1,
				 (size_t)(b - a - 1));
	if (!key_part_ok(b + 1, strlen(b + 1)))
		return key_error(err,
				 "a name of 1 to 64 characters a-z, 0-9, _ or - starting with a "
				 "letter or digit",
				 b + 1, strlen(b + 1));
	return 0;
}

/* Digits, then an optional fraction: value = *whole + *frac / *den.
 * Fractions beyond 19 digits are read but ignored (far below 1 byte or 1 ms). */
static int parse_decimal(const char **pp, unsigned __int128 *whole, uint64_t *frac, uint64_t *den)
{
	const char *p = *pp;
	if (!is_digit(*p))
		return -EINVAL;
	*whole = 0;
	*frac = 0;
	*den = 1;
	for (; is_digit(*p); p++) {
		*whole = *whole * 10 + (unsigned)(*p - '0');
		if (*whole > UINT64_MAX)
			return -ERANGE;
	}
	if (*p == '.') {
		p++;
		if (!is_digit(*p))
			return -EINVAL;
		for (int k = 0; is_digit(*p); p++, k++) {
			if (k < 19) {
				*frac = *frac * 10 + (unsigned)(*p - '0');
				*den *= 10;
			}
		}
	}
	*pp = p;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *unit;
		unsigned shift;
	} units[] = {{"", 0},	  {"B", 0},    {"KiB", 10}, {"MiB", 20},
		     {"GiB", 30}, {"TiB", 40}, {"PiB", 50}, {"EiB", 60}};
	unsigned __int128 whole;
	uint64_t frac, den;
	if (!s)
		return -EINVAL;
	int r = parse_decimal(&s, &whole, &frac, &den);
	if (r < 0)
		return r;
	if (*s == ' ')
		s++;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(s, units[i].unit))
			continue;
		if (den > 1 && !units[i].shift)
			return -EINVAL; /* no fractions of a byte */
		unsigned __int128 total =
		    (whole << units[i].shift) + (((unsigned __int128)frac << units[i].shift) / den);
		if (total > UINT64_MAX)
			return -ERANGE;
		*bytes = (uint64_t)total;
		return 0;
	}
	return -EINVAL;
}

int parse_duration(const char *s, uint64_t *ms)
{
	unsigned __int128 total = 0, whole;
	uint64_t frac, den;
	if (!s || !*s)
		return -EINVAL;
	if (s[strspn(s, "0123456789")] == 0) {
		/* A bare integer is seconds. */
		int r = parse_decimal(&s, &whole, &frac, &den);
		if (r < 0)
			return r;
		if (whole * 1000 > UINT64_MAX)
			return -ERANGE;
		*ms = (uint64_t)(whole * 1000);
		return 0;
	}
	/* One or more NUMBER UNIT, as in "1h30m" or "1.5s". */
	while (*s) {
		int r = parse_decimal(&s, &whole, &frac, &den);
		if (r < 0)
			return r;
		uint64_t unit;
		if (!strncmp(s, "ms", 2))
			unit = 1, s += 2;
		else if (*s == 's')
			unit = 1000, s++;
		else if (*s == 'm')
			unit = 60000, s++;
		else if (*s == 'h')
			unit = 3600000, s++;
		else
			return -EINVAL;
		total += whole * unit + (unsigned __int128)frac * unit / den;
		if (total > UINT64_MAX)
			return -ERANGE;
	}
	*ms = (uint64_t)total;
	return 0;
}
