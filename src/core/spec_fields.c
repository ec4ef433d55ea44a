/* spec_fields.c - reading the values of a spec: typed getters that check one
 * value and report with the current path, and maps of fields (spec-fields.h)
 * read by table. spec_validate.c holds the tables and the rules. */
#include "core/spec-fields.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of `name` in map `m`, or NULL. */
const struct snode *spec__map_get(const struct snode *m, const char *name)
{
	if (!m || m->kind != SN_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < m->nkids; i += 2)
		if (snode_key_is(m->kids[i], name))
			return m->kids[i + 1];
	return NULL;
}

/* Name i of n in a list "a, b or c". */
static void add_choice(struct sbuf *sb, size_t i, size_t n, const char *name)
{
	if (i)
		sbuf_adds(sb, i + 1 == n ? " or " : ", ");
	sbuf_adds(sb, name);
}

/* ------------------------------------------------------------------------ */
/* Typed getters: each checks one value and reports with the current path    */

/* A missing required field: reported at the map that lacks it. */
int spec__missing(struct sctx *c, const struct snode *map, const char *field, const char *what)
{
	spec__path_push(c, field, strlen(field));
	return spec__expect(c, map, NULL, "%s", what);
}

/* A section: a map, or nothing at all (an empty "env:" whose entries are
 * commented out), which reads as an empty map. */
int spec__check_section(struct sctx *c, const struct snode *n, const char *what)
{
	if (n->kind == SN_MAP || n->kind == SN_NULL)
		return 0;
	return spec__expect(c, n, n, "%s", what);
}

size_t spec__section_size(const struct snode *n)
{
	return n->kind == SN_MAP ? n->nkids : 0;
}

/* Strings: any scalar but null reads as its text ("user: 1000" is the user
 * "1000"); NUL bytes are refused because the result is a C string. */
int spec__get_string(struct sctx *c, const struct snode *n, const char *what, char **out)
{
	if (!snode_is_scalar(n) || n->kind == SN_NULL)
		return spec__expect(c, n, n, "%s", what);
	if (snode_has_nul(n))
		return spec__expect(c, n, n, "%s without NUL bytes", what);
	if (!utf8_valid(n->text, n->len))
		return spec__expect(c, n, n, "%s of valid utf-8", what);
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
	return n->kind == SN_STR && !snode_has_nul(n) && spec__text_to_int(n->text, v) == 0;
}

int spec__get_int(struct sctx *c, const struct snode *n, int64_t min, int64_t max, int *out)
{
	int64_t v = 0;
	if (!node_int(n, &v) || v < min || v > max)
		return spec__expect(c, n, n, "an integer between %lld and %lld", (long long)min,
				    (long long)max);
	*out = (int)v;
	return 0;
}

int spec__get_bool(struct sctx *c, const struct snode *n, bool *out)
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
	return spec__expect(c, n, n, "true or false");
}

int spec__get_enum(struct sctx *c, const struct snode *n, const char *const *names, size_t count,
		   int *out)
{
	for (size_t i = 0; snode_is_scalar(n) && n->kind != SN_NULL && i < count; i++) {
		if (snode_key_is(n, names[i])) {
			*out = (int)i;
			return 0;
		}
	}
	struct sbuf sb;
	sbuf_init(&sb);
	for (size_t i = 0; i < count; i++)
		add_choice(&sb, i, count, names[i]);
	spec__expect(c, n, n, "%s", sb.buf);
	sbuf_release(&sb);
	return -1;
}

int spec__get_cpu(struct sctx *c, const struct snode *n, double *out)
{
	double d = NAN;
	if (n->kind == SN_INT)
		d = (double)n->ival;
	else if (n->kind == SN_REAL)
		d = n->dval;
	else if (n->kind == SN_STR && !snode_has_nul(n) && !spec__text_to_real(n->text, &d))
		d = NAN;
	if (!(d > 0 && d <= SPEC_MAX_CPU)) /* also refuses NaN */
		return spec__expect(c, n, n, "a number of cores above 0 and at most %g",
				    SPEC_MAX_CPU);
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
		return spec__expect(c, n, n, "a size such as 64MiB");
	if (b < min)
		return spec__expect(c, n, n, "a size above 0 such as 64MiB");
	if (b > SPEC_MAX_SIZE)
		return spec__expect(c, n, n, "a size of at most 1EiB");
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
		return spec__expect(c, n, n, "a duration such as 10s");
	if (ms < min)
		return spec__expect(c, n, n, "a duration above 0 such as 10s");
	if (ms > SPEC_MAX_DURATION_MS)
		return spec__expect(c, n, n, "a duration of at most 8760h");
	*out = ms;
	return 0;
}

/* [a-z][a-z0-9_-]*, at most SPEC_MAX_NAME: port names. */
bool spec__port_name_ok(const char *s)
{
	size_t len = strlen(s);
	if (!len || len > SPEC_MAX_NAME || !(*s >= 'a' && *s <= 'z'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || spec__is_digit(*s) || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* A run of characters from [A-Za-z0-9] plus `extra`, 1..max long. */
bool spec__word_ok(const char *s, const char *extra, size_t max)
{
	size_t len = strlen(s);
	if (!len || len > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || spec__is_digit(*s) ||
		      strchr(extra, *s)))
			return false;
	return true;
}

/* A command: a list of strings, or one string run by /bin/sh -c. */
int spec__get_command(struct sctx *c, const struct snode *n, char ***argv, size_t *argc)
{
	const char *what = "a command (a list of strings or a string)";
	if (snode_is_scalar(n) && n->kind != SN_NULL) {
		char *s = NULL;
		if (spec__get_string(c, n, what, &s) < 0)
			return -1;
		if (!s[strspn(s, " \t\n\r")]) {
			free(s);
			return spec__expect(c, n, n, "%s", what);
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
		return spec__expect(c, n, n, "%s", what);
	char **v = xcalloc(n->nkids, sizeof *v);
	for (size_t i = 0; i < n->nkids; i++) {
		size_t saved = spec__path_push_index(c, i);
		if (spec__get_string(c, n->kids[i], "a string", &v[i]) < 0) {
			strv_free_n(v, n->nkids);
			return -1;
		}
		if (i == 0 && !*v[0]) {
			spec__expect(c, n->kids[i], n->kids[i], "a program to run");
			strv_free_n(v, n->nkids);
			return -1;
		}
		spec__path_pop(c, saved);
	}
	strv_free_n(*argv, *argc);
	*argv = v;
	*argc = n->nkids;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Maps of fields                                                            */

static int unknown_key(struct sctx *c, const struct snode *key, const struct field *fields,
		       size_t n)
{
	struct sbuf sb;
	sbuf_init(&sb);
	for (size_t i = 0; i < n; i++)
		add_choice(&sb, i, n, fields[i].key);
	spec__expect(c, key, key, "one of %s", sb.buf);
	sbuf_release(&sb);
	return -1;
}

static int read_field(struct sctx *c, const struct field *f, const struct snode *v, void *obj)
{
	void *at = (char *)obj + f->offset;
	switch (f->kind) {
	case FIELD_STRING:
		return spec__get_string(c, v, f->what, at);
	case FIELD_INT:
		return spec__get_int(c, v, f->min, f->max, at);
	case FIELD_BOOL:
		return spec__get_bool(c, v, at);
	case FIELD_DURATION:
		return get_duration(c, v, (uint64_t)f->min, at);
	case FIELD_SIZE:
		return get_size(c, v, (uint64_t)f->min, at);
	case FIELD_READ:
		break;
	}
	return f->read(c, v, obj);
}

/* Read every key of map n (or of nothing: null) with its entry in fields,
 * in the order the spec gives them; an unknown key is an error. */
int spec__read_fields(struct sctx *c, const struct snode *n, const struct field *fields,
		      size_t nfields, void *obj)
{
	for (size_t i = 0; i < spec__section_size(n); i += 2) {
		const struct snode *k = n->kids[i], *v = n->kids[i + 1];
		size_t saved = spec__path_push_key(c, k);
		const struct field *f = NULL;
		for (size_t j = 0; j < nfields && !f; j++)
			if (snode_key_is(k, fields[j].key))
				f = &fields[j];
		if (!f)
			return unknown_key(c, k, fields, nfields);
		if (read_field(c, f, v, obj) < 0)
			return -1;
		spec__path_pop(c, saved);
	}
	return 0;
}
