/* tokens.h - the cluster's tokens (docs/security.md): the admin's, a
 * role's, and the join token agents present once to get their certificate.
 *
 * A token is "bt1.ID.SECRET" (admin and roles) or "bj1.CAFP.ID.SECRET"
 * (join: CAFP, the sha256 of the cluster CA's certificate, lets an agent
 * check the server it joins). ID (16 hex) is public: it names the token in
 * lists, revocations and the audit log. SECRET (64 hex) is never stored:
 * the store keeps its sha256 (auth/tokens/ID), so a stolen store or backup
 * gives no token.
 *
 * The table is read by every request thread before the cluster lock: it
 * has a lock of its own. */
#ifndef BERTH_TOKENS_H
#define BERTH_TOKENS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum token_kind { TOKEN_ADMIN = 1, TOKEN_ROLE, TOKEN_JOIN };

#define TOKEN_ID_LEN 16
#define TOKEN_SECRET_LEN 64

struct token_rec {
	char id[TOKEN_ID_LEN + 1];
	enum token_kind kind;
	char role[128];	 /* TOKEN_ROLE */
	char hash[65];	 /* sha256 of the secret, hex */
	int64_t created; /* unix seconds */
	int64_t expires; /* unix seconds, 0 = never */
};

/* The parts of a token's text (untrusted). 0, or -1 when it is not one. */
int token_parse(const char *text, enum token_kind *kind, char id[TOKEN_ID_LEN + 1],
		char secret[TOKEN_SECRET_LEN + 1], char cafp[65]);

struct token_table;
struct token_table *token_table_new(void);
void token_table_free(struct token_table *tt);

/* Make a new token: its text (caller frees) and record (to store and put). */
char *token_make(enum token_kind kind, const char *role, int64_t ttl_s, const char *cafp,
		 struct token_rec *rec);
/* The store's record of a token, and back (untrusted: -1 when bad). */
json_t *token_rec_json(const struct token_rec *rec);
int token_rec_from_json(const char *text, size_t len, struct token_rec *rec);

void token_table_put(struct token_table *tt, const struct token_rec *rec);
bool token_table_delete(struct token_table *tt, const char *id);
/* A revoked (deleted) id is remembered: token_table_adopt refuses it. */
/* Forget every token (an HA follower's replica starts over). */
void token_table_clear(struct token_table *tt);
/* Check a presented token at time now: 0 and *rec, or -1 with why. */
int token_table_check(struct token_table *tt, const char *text, int64_t now, struct token_rec *rec,
		      char *why, size_t whylen);
/* Every token's record (no secrets), for `berth token list`. */
json_t *token_table_json(struct token_table *tt, int64_t now);
/* Is there a token of this kind (e.g. the admin's, at bootstrap)? */
bool token_table_has(struct token_table *tt, enum token_kind kind);

/* A token another server wrote to the store after this one loaded its
 * state (an HA group started together: docs/security.md) is fetched from
 * the store at its first use. May the presented id be looked up now? Only
 * when it is neither known nor revoked here, and within a budget (a burst
 * of TOKEN_FETCH_BURST, then TOKEN_FETCH_PER_S a second, for the whole
 * table), so that made-up tokens cannot flood the store with reads. */
#define TOKEN_FETCH_BURST 20
#define TOKEN_FETCH_PER_S 10
bool token_table_may_fetch(struct token_table *tt, const char *id, int64_t now_ms);
/* Is this a token id's form (16 hex)? */
bool token_id_ok(const char *id);
bool token_table_has_id(struct token_table *tt, const char *id);
/* Add a record read from the store, unless its id was revoked here. */
bool token_table_adopt(struct token_table *tt, const struct token_rec *rec);

#endif
