/* server_quota.c - the quota routes (docs/api.md, "Quotas"):
 *
 *   GET    /v1/quotas        every role with a quota or a use (the admin);
 *                            a role's token sees its own role only
 *   GET    /v1/quotas/ROLE   one role (the admin, or the role's token)
 *   PUT    /v1/quotas/ROLE   set it: {"cpu", "memory", "disk", "tasks"}, a
 *                            resource left out is unlimited (the admin)
 *   DELETE /v1/quotas/ROLE   remove it (the admin) */
#include "server/server-internal.h"

#include <string.h>

#include "server/cluster_quota.h"

void route_quotas(struct request *q, const char *method, const char *rest)
{
	struct cluster *c = q->srv->c;
	struct berr err = {0};
	if (!*rest) {
		if (strcmp(method, "GET")) {
			reply_error(q, 405, "method not allowed");
			return;
		}
		const char *role = q->who.kind == PRINCIPAL_ROLE ? q->who.name : NULL;
		if (role ? !auth_role(q, role) : !auth_admin(q))
			return;
		reply_ok(q, cluster_quotas_json(c, role));
		return;
	}
	if (role_name_check(rest, &err) < 0) {
		reply_error(q, 400, err.msg);
		return;
	}
	if (!strcmp(method, "GET")) {
		if (auth_role(q, rest))
			reply_ok(q, cluster_quota_json(c, rest));
		return;
	}
	if (strcmp(method, "PUT") && strcmp(method, "DELETE")) {
		reply_error(q, 405, "method not allowed");
		return;
	}
	/* A role's token may read its quota, never set it. */
	if (!auth_admin(q))
		return;
	uint64_t seq;
	json_t *reply = NULL;
	if (!strcmp(method, "PUT")) {
		json_t *body = parse_body(q);
		if (!body)
			return;
		struct quota_limit lim;
		int r = quota_limit_from_json(body, NULL, &lim, &err);
		json_decref(body);
		if (r < 0) {
			reply_error(q, 400, err.msg);
			return;
		}
		seq = cluster_quota_set(c, rest, &lim, &reply);
	} else {
		seq = cluster_quota_delete(c, rest, &err);
		if (seq)
			reply = json_pack("{s:s,s:b}", "role", rest, "ok", 1);
	}
	if (seq)
		reply_after_commit(q, seq, reply);
	else
		reply_error(q, err.code ? err.code : 500, err.msg);
}
