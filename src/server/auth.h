/* auth.h - who is calling the server, and what they may do (docs/security.md).
 *
 * Every request gets a principal when its headers arrive: the cluster's
 * admin (the admin token), a role's token (acts only on the jobs and
 * secrets of its role), a node (an agent's client certificate, bound to its node name),
 * or nobody. With --insecure there is no authentication: every caller is
 * the admin.
 *
 * The checks reply 401/403 on the request themselves and return false; a
 * route calls them before touching anything:
 *
 *     if (!auth_job(q, key)) return;
 */
#ifndef BERTH_AUTH_H
#define BERTH_AUTH_H

#include <stdbool.h>

struct request;

enum principal_kind {
	PRINCIPAL_NOBODY = 0, /* no (valid) credentials */
	PRINCIPAL_ADMIN,      /* the admin token, or --insecure */
	PRINCIPAL_ROLE,	      /* a role's token: name is the role */
	PRINCIPAL_NODE,	      /* an agent's certificate: name is the node */
};

struct principal {
	enum principal_kind kind;
	char name[128];	   /* the role or the node */
	char token_id[32]; /* a token's public id (audit), "" otherwise */
	char why[160];	   /* NOBODY: why the credentials were refused */
};

/* The admin: anyone else gets 401 (nobody) or 403. */
bool auth_admin(struct request *q);
/* The admin, or a role token whose role is the first part of `key_or_role`
 * (ROLE, ROLE/ENV/NAME or ROLE/NAME). */
bool auth_role(struct request *q, const char *key_or_role);
/* The node `node` itself (its certificate), or the admin when insecure. */
bool auth_node(struct request *q, const char *node);
/* Any authenticated caller (401 otherwise). */
bool auth_any(struct request *q);

#endif
