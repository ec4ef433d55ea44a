/* spec-fields.h - shared by the files that turn a spec's snode tree into a
 * struct job_spec (spec_fields.c: getters and field tables; spec_validate.c:
 * the tables and rules). Internal to the spec module, like spec-internal.h.
 * Every getter checks one value and reports the first error with the
 * current path (returns -1), else returns 0. */
#ifndef BERTH_SPEC_FIELDS_H
#define BERTH_SPEC_FIELDS_H

#include "core/spec-internal.h"

/* One key of a map in a spec and how its value is read into the object the
 * map describes (obj: the struct named in the table's comment). Plain values
 * are read by kind into the member at `offset`; anything else by a function
 * of its own. Each map has one table, so a key and what reads it sit side by
 * side; the order of a table is only the order in which the message for an
 * unknown key lists the keys. */
enum field_kind { FIELD_READ, FIELD_STRING, FIELD_INT, FIELD_BOOL, FIELD_DURATION, FIELD_SIZE };

struct field {
	const char *key;
	enum field_kind kind;
	size_t offset;	  /* of the member in obj; not for FIELD_READ */
	int64_t min, max; /* FIELD_INT: the range; FIELD_DURATION, FIELD_SIZE: min */
	const char *what; /* FIELD_STRING: what the message says is expected */
	int (*read)(struct sctx *c, const struct snode *v, void *obj); /* FIELD_READ */
};

/* offsetof(type, member), which compiles only when the member is a ctype:
 * comparing pointers to distinct types is an error with -Werror. */
#define FIELD_AT(type, member, ctype)                                                              \
	(offsetof(type, member) + 0 * sizeof((ctype *)0 == &((type *)0)->member))

#define F_READ(k, fn)                                                                              \
	{                                                                                          \
		.key = k, .kind = FIELD_READ, .read = fn                                           \
	}
#define F_STRING(k, type, m, w)                                                                    \
	{                                                                                          \
		.key = k, .kind = FIELD_STRING, .offset = FIELD_AT(type, m, char *), .what = w     \
	}
#define F_INT(k, type, m, lo, hi)                                                                  \
	{                                                                                          \
		.key = k, .kind = FIELD_INT, .offset = FIELD_AT(type, m, int), .min = lo,          \
		.max = hi                                                                          \
	}
#define F_BOOL(k, type, m)                                                                         \
	{                                                                                          \
		.key = k, .kind = FIELD_BOOL, .offset = FIELD_AT(type, m, bool)                    \
	}
#define F_DURATION(k, type, m, lo)                                                                 \
	{                                                                                          \
		.key = k, .kind = FIELD_DURATION, .offset = FIELD_AT(type, m, uint64_t), .min = lo \
	}
#define F_SIZE(k, type, m, lo)                                                                     \
	{                                                                                          \
		.key = k, .kind = FIELD_SIZE, .offset = FIELD_AT(type, m, uint64_t), .min = lo     \
	}

const struct snode *spec__map_get(const struct snode *m, const char *name);
int spec__missing(struct sctx *c, const struct snode *map, const char *field, const char *what);
int spec__check_section(struct sctx *c, const struct snode *n, const char *what);
size_t spec__section_size(const struct snode *n);
int spec__get_string(struct sctx *c, const struct snode *n, const char *what, char **out);
int spec__get_int(struct sctx *c, const struct snode *n, int64_t min, int64_t max, int *out);
int spec__get_bool(struct sctx *c, const struct snode *n, bool *out);
int spec__get_enum(struct sctx *c, const struct snode *n, const char *const *names, size_t count,
		   int *out);
int spec__get_cpu(struct sctx *c, const struct snode *n, double *out);
bool spec__port_name_ok(const char *s);
bool spec__word_ok(const char *s, const char *extra, size_t max);
int spec__get_command(struct sctx *c, const struct snode *n, char ***argv, size_t *argc);
int spec__read_fields(struct sctx *c, const struct snode *n, const struct field *fields,
		      size_t nfields, void *obj);

#endif
