/* server_auth.c - the caller of a request and the checks of auth.h. */
#include "server/server-internal.h"

#include <stdio.h>
#include <string.h>

void server_authenticate(struct server *s, struct request *q)
{
	(void)s;
	memset(&q->who, 0, sizeof q->who);
	q->who.kind = PRINCIPAL_ADMIN;
}

static bool refuse(struct request *q, int status, const char *msg)
{
	reply_error(q, status, msg);
	return false;
}

static bool refuse_nobody(struct request *q)
{
	char msg[256];
	snprintf(msg, sizeof msg, "unauthenticated: %s",
		 *q->who.why ? q->who.why : "a token is required (Authorization: Bearer TOKEN)");
	return refuse(q, 401, msg);
}

bool auth_any(struct request *q)
{
	return q->who.kind == PRINCIPAL_NOBODY ? refuse_nobody(q) : true;
}

bool auth_admin(struct request *q)
{
	if (q->who.kind == PRINCIPAL_ADMIN)
		return true;
	if (q->who.kind == PRINCIPAL_NOBODY)
		return refuse_nobody(q);
	return refuse(q, 403, "forbidden: only the admin may do this");
}

bool auth_role(struct request *q, const char *key_or_role)
{
	if (q->who.kind == PRINCIPAL_ADMIN)
		return true;
	if (q->who.kind == PRINCIPAL_NOBODY)
		return refuse_nobody(q);
	if (q->who.kind == PRINCIPAL_ROLE && key_or_role) {
		size_t n = strcspn(key_or_role, "/");
		if (n == strlen(q->who.name) && !strncmp(key_or_role, q->who.name, n))
			return true;
	}
	char msg[400];
	snprintf(msg, sizeof msg, "forbidden: %s '%s' may not act on '%.*s'",
		 q->who.kind == PRINCIPAL_ROLE ? "a token of role" : "node", q->who.name,
		 (int)strcspn(key_or_role ? key_or_role : "", "/"), key_or_role ? key_or_role : "");
	return refuse(q, 403, msg);
}

bool auth_node(struct request *q, const char *node)
{
	if (q->who.kind == PRINCIPAL_NODE && node && !strcmp(q->who.name, node))
		return true;
	if (q->who.kind == PRINCIPAL_ADMIN && q->who.token_id[0] == 0)
		return true; /* --insecure: no identities */
	if (q->who.kind == PRINCIPAL_NOBODY)
		return refuse_nobody(q);
	char msg[400];
	snprintf(msg, sizeof msg, "forbidden: this call may be made only by node '%s' itself",
		 node ? node : "");
	return refuse(q, 403, msg);
}
