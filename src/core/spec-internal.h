/* spec-internal.h - what the files of the spec module share; not for other
 * modules (core/spec.h is the public header).
 *
 *     spec_yaml.c      YAML text -> snode tree, with line and column
 *     spec_json.c      json_t -> snode tree; job_spec -> canonical json_t
 *     spec_validate.c  snode tree -> job_spec: one table of fields per map
 *     spec_fields.c    typed getters and the field-table reader (spec-fields.h)
 *     spec_template.c  {{...}} templates: checked at submit, expanded at start
 *     spec.c           the tree, error messages, the public entry points,
 *                      defaults, spec_free, job keys, sizes and durations
 *
 * Names shared between these files start with spec__ (or snode_ for the
 * tree); everything else stays static in its file.
 */
#ifndef BERTH_SPEC_INTERNAL_H
#define BERTH_SPEC_INTERNAL_H

#include "core/spec.h"
#include "core/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Limits. Each keeps a hostile or mistaken spec from costing the daemon
 * (recursion, memory, arithmetic overflow in other modules), far above what a
 * real job needs. docs/spec.md lists them. */
#define SPEC_MAX_DEPTH 32			     /* nesting of maps and lists */
#define SPEC_MAX_CPU 4096.0			     /* cores */
#define SPEC_MAX_SIZE (1ULL << 60)		     /* 1EiB: fits a JSON integer */
#define SPEC_MAX_DURATION_MS (8760ULL * 3600 * 1000) /* 365 days */
#define SPEC_MAX_PORTS 64
#define SPEC_MAX_VOLUMES 64
#define SPEC_MAX_PUBLISH 16
#define SPEC_MAX_VOLUME_PATH 4096
#define SPEC_MAX_SECRETS 64
#define SPEC_MAX_NAME 64       /* port names, attributes, users */
#define SPEC_MAX_COUNT 1000000 /* failures, priorities, limits */
#define SPEC_FOUND_MAX 60      /* characters of user text in a message */

/* ------------------------------------------------------------------------ */
/* The intermediate tree (spec.c)                                            */

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

struct snode *snode_new(enum snode_kind kind, int line, int col);
/* Copy len bytes of s (NUL bytes included) as n's text. */
void snode_set_text(struct snode *n, const char *s, size_t len);
void snode_add(struct snode *n, struct snode *kid);
/* Free n and its kids; NULL is fine. */
void snode_free(struct snode *n);

static inline bool snode_is_scalar(const struct snode *n)
{
	return n && n->kind != SN_SEQ && n->kind != SN_MAP;
}

static inline bool snode_has_nul(const struct snode *n)
{
	return n->text && strlen(n->text) != n->len;
}

static inline bool snode_key_is(const struct snode *key, const char *name)
{
	return key->text && key->len == strlen(name) && !memcmp(key->text, name, key->len);
}

static inline bool spec__is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* ------------------------------------------------------------------------ */
/* Messages (spec.c)                                                         */

/* One parse: where errors go and the dotted path of the value being looked
 * at, which every message starts with. */
struct sctx {
	const char *file; /* NULL for JSON: messages carry no position */
	struct berr *err;
	struct sbuf path; /* dotted path of the value being looked at */
	bool json;	  /* bare integer durations are ms in JSON, seconds in YAML */
};

/* Append user text quoted, at most SPEC_FOUND_MAX characters, control and
 * invalid bytes escaped. */
void spec__add_quoted(struct sbuf *sb, const char *s, size_t len);
/* The same as a new string. Caller frees. */
char *spec__quote(const char *s, size_t len);

/* Add ".key" (or "key" at the top) or "[i]" to the path; each returns the
 * old length for spec__path_pop. */
size_t spec__path_push(struct sctx *c, const char *key, size_t len);
size_t spec__path_push_key(struct sctx *c, const struct snode *key);
size_t spec__path_push_index(struct sctx *c, size_t i);
void spec__path_pop(struct sctx *c, size_t old);

/* The errors: "FILE:LINE:COL: PATH: expected WHAT, found FOUND"; each
 * returns -1. spec__expect positions the message at `at` (NULL: none) and
 * describes `found` (user text quoted, structure described);
 * spec__expect_found takes a prepared found-description (see spec__quote),
 * spec__expect_pos a raw position as well. */
int spec__expect(struct sctx *c, const struct snode *at, const struct snode *found, const char *fmt,
		 ...) __attribute__((format(printf, 4, 5)));
int spec__expect_found(struct sctx *c, const struct snode *at, const char *found, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));
int spec__expect_pos(struct sctx *c, int line, int col, const char *found, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Names of the enums of spec.h, indexed by their values. */
extern const char *const spec__job_type_names[JOB_SYSTEM + 1];
extern const char *const spec__cron_collision_names[CRON_CANCEL_NEW + 1];
extern const char *const spec__placement_names[PLACE_SPREAD + 1];
extern const char *const spec__tier_names[TIER_PREEMPTIBLE + 1];
extern const char *const spec__update_order_names[UPDATE_START_FIRST + 1];
extern const char *const spec__publish_mode_names[PUBLISH_HOST + 1];
extern const char *const spec__driver_names[DRIVER_DOCKER + 1];
extern const char *const spec__network_names[NETWORK_BRIDGE + 1];

/* ------------------------------------------------------------------------ */
/* The front ends and the validator                                          */

/* YAML scalars (spec_yaml.c): integers [-+]?[0-9]+, 0x.., 0o..: 0, -EINVAL
 * or -ERANGE; floats as YAML 1.2 writes them, .inf and .nan. */
int spec__text_to_int(const char *t, int64_t *out);
bool spec__text_to_real(const char *t, double *out);

/* Exactly one YAML document (spec_yaml.c); its root node in *root. */
int spec__yaml_tree(struct sctx *c, const char *text, size_t len, struct snode **root);
/* A JSON value as a tree (spec_json.c); its root node in *root. */
int spec__json_tree(struct sctx *c, json_t *j, struct snode **root);

/* The tree as a job spec (spec_validate.c): fills s, which holds the
 * defaults; stops at the first error. */
int spec__validate(struct sctx *c, const struct snode *root, struct job_spec *s);

/* Templates (spec_template.c). Whether port `name` (nlen bytes) is in r. */
bool spec__port_declared(const struct resources *r, const char *name, size_t nlen);
/* Every template in scalar n must be known, every {{ports.NAME}} declared. */
int spec__check_templates(struct sctx *c, const struct snode *n, const struct resources *r);
/* The same for a command node (list or string; NULL is fine) under FIELD. */
int spec__check_command_templates(struct sctx *c, const struct snode *n, const char *field,
				  const struct resources *r);

#endif
