/* spec_template.c - "{{ NAME }}" templates in commands and env values: at
 * submit time every template must be known ({{instance}}, {{task_id}},
 * {{host}}, {{ports.NAME}} of a declared port); at start spec_expand()
 * fills them in.
 */
#include "core/spec-internal.h"

#include <stdlib.h>
#include <string.h>

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

bool spec__port_declared(const struct resources *r, const char *name, size_t nlen)
{
	for (size_t i = 0; i < r->nports; i++)
		if (name_is(name, nlen, r->ports[i]))
			return true;
	return false;
}

/* Every template in a scalar must be known, and every {{ports.NAME}} a
 * declared port: a typo is found at submit time, not when the task starts. */
int spec__check_templates(struct sctx *c, const struct snode *n, const struct resources *r)
{
	const char *p = n->text, *open, *name, *end;
	size_t nlen;
	while (template_next(p, &open, &name, &nlen, &end)) {
		if (!end) {
			_cleanup_free_ char *q = spec__quote(open, strlen(open));
			return spec__expect_found(c, n, q, "a template closed by }}");
		}
		_cleanup_free_ char *q = spec__quote(open, (size_t)(end - open));
		if (name_is(name, nlen, "instance") || name_is(name, nlen, "task_id") ||
		    name_is(name, nlen, "host")) {
			/* known */
		} else if (nlen > 6 && !memcmp(name, "ports.", 6)) {
			if (!spec__port_declared(r, name + 6, nlen - 6))
				return spec__expect_found(
				    c, n, q, "a port declared in task.resources.ports");
		} else {
			return spec__expect_found(
			    c, n, q,
			    "a template {{instance}}, {{task_id}}, {{host}} or "
			    "{{ports.NAME}}");
		}
		p = end;
	}
	return 0;
}

/* Templates in a command node (list or string) under path FIELD. */
int spec__check_command_templates(struct sctx *c, const struct snode *n, const char *field,
				  const struct resources *r)
{
	if (!n)
		return 0;
	size_t saved = spec__path_push(c, field, strlen(field));
	if (n->kind == SN_SEQ) {
		for (size_t i = 0; i < n->nkids; i++) {
			size_t s2 = spec__path_push_index(c, i);
			if (spec__check_templates(c, n->kids[i], r) < 0)
				return -1;
			spec__path_pop(c, s2);
		}
	} else if (spec__check_templates(c, n, r) < 0) {
		return -1;
	}
	spec__path_pop(c, saved);
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
