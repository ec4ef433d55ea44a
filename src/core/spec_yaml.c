/* spec_yaml.c - the YAML front end of job specs: libyaml events to the snode
 * tree (spec-internal.h), each node with its 1-based line and column, and
 * YAML's own errors (syntax, tags, aliases, duplicate keys, nesting) with
 * the same FILE:LINE:COL: PATH: expected WHAT, found 'TEXT' form as the
 * validator's. Plain scalars get their YAML 1.1 type here; their text is
 * kept either way.
 */
#include "core/spec-internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */

/* YAML integers: [-+]?[0-9]+, 0x[0-9a-fA-F]+, 0o[0-7]+. 0, -EINVAL or
 * -ERANGE. */
int spec__text_to_int(const char *t, int64_t *out)
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
		if (spec__is_digit(*p))
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
bool spec__text_to_real(const char *t, double *out)
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
	while (spec__is_digit(*p))
		p++, digits = true;
	if (*p == '.') {
		p++;
		while (spec__is_digit(*p))
			p++, digits = true;
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!spec__is_digit(*p))
			return false;
		while (spec__is_digit(*p))
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
	int r = spec__text_to_int(t, &n->ival);
	if (r == 0)
		n->kind = SN_INT;
	else if (spec__text_to_real(t, &n->dval))
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
 * libyaml does. Only used to spec__quote the text at a syntax error. */
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
			spec__add_quoted(&f, y->text + off, end - off);
	}
	spec__expect_pos(c, line, col, f.buf, "valid yaml (%s)", problem);
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
	_cleanup_free_ char *q = spec__quote(shown, strlen(shown));
	return spec__expect_pos(c, ev_line(ev), ev_col(ev), q, "a value without a tag");
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
	_cleanup_free_ char *q = spec__quote(key->text, key->len);
	_cleanup_free_ char *found = xasprintf("%s again", q);
	spec__path_push_key(c, key);
	return spec__expect_found(c, key, found, "each key once");
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
		size_t saved = spec__path_push_index(c, n->nkids);
		if (yaml_node(c, y, &ev, depth + 1, &kid) < 0)
			goto error;
		spec__path_pop(c, saved);
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
			spec__expect_pos(c, ev_line(&ev), ev_col(&ev), what, "a plain key");
			yaml_event_delete(&ev);
			goto error;
		}
		struct snode *key = NULL, *val = NULL;
		if (yaml_node(c, y, &ev, depth + 1, &key) < 0)
			goto error;
		snode_add(n, key);
		if (snode_has_nul(key)) {
			spec__path_push_key(c, key);
			spec__expect(c, key, key, "a key without NUL bytes");
			goto error;
		}
		size_t saved = spec__path_push_key(c, key);
		if (yaml_next(c, y, &ev) < 0 || yaml_node(c, y, &ev, depth + 1, &val) < 0)
			goto error;
		spec__path_pop(c, saved);
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
		_cleanup_free_ char *q = spec__quote(name, strlen(name));
		r = spec__expect_pos(
		    c, ev_line(ev), ev_col(ev), q,
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
			r = spec__expect_pos(c, ev_line(ev), ev_col(ev), "deeper nesting",
					     "at most %d levels of nesting", SPEC_MAX_DEPTH);
		} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
			r = yaml_seq(c, y, ev, depth, out);
		} else {
			r = yaml_map(c, y, ev, depth, out);
		}
		break;
	}
	default:
		r = spec__expect_pos(c, ev_line(ev), ev_col(ev), "something else", "a yaml value");
		break;
	}
	yaml_event_delete(ev);
	return r;
}

/* Exactly one document; its root node in *root. */
int spec__yaml_tree(struct sctx *c, const char *text, size_t len, struct snode **root)
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
		spec__expect_pos(c, 1, 1, "an empty document",
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
		spec__expect_pos(c, ev_line(&ev), ev_col(&ev), "another document",
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
