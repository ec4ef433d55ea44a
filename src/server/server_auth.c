/* server_auth.c - the caller of a request and the checks of auth.h. */
#include "server/server-internal.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pki.h"

/* A connection's TLS peer, checked once (server_on_connection). */
struct conn_peer {
	bool checked;
	bool requested;	      /* a request came: the TLS handshake is done */
	struct principal who; /* NODE, or NOBODY with why */
	int64_t not_after;    /* the certificate's end (unix seconds) */
};

void server_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct server *s = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = xcalloc(1, sizeof(struct conn_peer));
		/* Until its first request, a TLS connection gets a few
		 * seconds: libmicrohttpd (0.9.75) spins on a handshake that
		 * stalls halfway (a partial record), which this bounds. */
		if (s->tls)
			MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
						  (unsigned)HANDSHAKE_TIMEOUT_S);
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		free(*socket_context);
		*socket_context = NULL;
	}
}

void server_connection_request(struct server *s, struct MHD_Connection *conn)
{
	if (!s->tls)
		return;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_peer *p = ci ? ci->socket_context : NULL;
	if (p && !p->requested) {
		p->requested = true;
		MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
					  (unsigned)CONNECTION_TIMEOUT_S);
	}
}

/* The node a connection's client certificate names, checked against the
 * cluster CA (an agent's node certificate; the CLI presents none). */
static void peer_check(struct server *s, struct MHD_Connection *conn, struct conn_peer *p)
{
	p->checked = true;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!ci || !ci->tls_session)
		return;
	unsigned int n = 0;
	const gnutls_datum_t *certs =
	    gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
	if (!certs || !n)
		return;
	struct pki_cert_info info;
	struct berr err = {0};
	if (pki_verify_der(s->ca_cert, certs[0].data, certs[0].size, time_now_ms() / 1000, &info,
			   &err) < 0) {
		snprintf(p->who.why, sizeof p->who.why, "%s", err.msg);
		return;
	}
	if (strcmp(info.ou, "node") || !*info.cn) {
		snprintf(p->who.why, sizeof p->who.why, "certificate refused: not a node's");
		return;
	}
	p->who.kind = PRINCIPAL_NODE;
	snprintf(p->who.name, sizeof p->who.name, "%s", info.cn);
	p->not_after = info.not_after;
}

/* A token record from the store into the table (unless revoked here). */
static bool token_adopt_text(struct server *s, const char *id, const char *text, size_t len)
{
	struct token_rec rec;
	if (token_rec_from_json(text, len, &rec) < 0 || strcmp(rec.id, id)) {
		log_warn("ignoring a bad token record 'auth/tokens/%s' in the store", id);
		return false;
	}
	return token_table_adopt(s->c->tokens, &rec);
}

bool server_token_fetch(struct server *s, const char *id)
{
	char key[64], *text = NULL;
	size_t len = 0;
	struct berr err = {0};
	snprintf(key, sizeof key, "auth/tokens/%s", id);
	pthread_mutex_lock(&s->store_lock);
	int r = store_get(s->store, key, &text, &len, &err);
	pthread_mutex_unlock(&s->store_lock);
	if (r < 0)
		log_warn("cannot look token %s up in the store: %s", id, err.msg);
	bool ok = r == 0 && token_adopt_text(s, id, text, len);
	free(text);
	if (ok)
		log_info("token %s: learned from the store (written by another server)", id);
	return ok;
}

struct tokens_scan {
	struct server *s;
	int learned;
};

static int token_scan_one(const char *key, const char *value, size_t len, void *ud)
{
	struct tokens_scan *ts = ud;
	const char *id = key + strlen("auth/tokens/");
	if (!token_table_has_id(ts->s->c->tokens, id) && token_adopt_text(ts->s, id, value, len))
		ts->learned++;
	return 0;
}

void server_tokens_refresh(struct server *s)
{
	struct tokens_scan ts = {s, 0};
	struct berr err = {0};
	pthread_mutex_lock(&s->store_lock);
	int r = store_scan(s->store, "auth/tokens/", token_scan_one, &ts, &err);
	pthread_mutex_unlock(&s->store_lock);
	if (r < 0)
		log_warn("cannot list the tokens in the store: %s", err.msg);
	else if (ts.learned)
		log_info("learned %d tokens from the store (written by other servers)", ts.learned);
}

/* The token in the table; when its id is unknown here, once from the store
 * (tokens.h token_table_may_fetch). */
static int token_check(struct server *s, const char *text, struct token_rec *rec, char *why,
		       size_t whylen)
{
	struct token_table *tt = s->c->tokens;
	if (token_table_check(tt, text, time_now_ms() / 1000, rec, why, whylen) == 0)
		return 0;
	enum token_kind kind;
	char id[TOKEN_ID_LEN + 1], secret[TOKEN_SECRET_LEN + 1], cafp[65];
	if (token_parse(text, &kind, id, secret, cafp) < 0 ||
	    (kind == TOKEN_JOIN && strcmp(cafp, s->cafp)) ||
	    !token_table_may_fetch(tt, id, time_mono_ms()) || !server_token_fetch(s, id))
		return -1;
	return token_table_check(tt, text, time_now_ms() / 1000, rec, why, whylen);
}

void server_authenticate(struct server *s, struct request *q)
{
	memset(&q->who, 0, sizeof q->who);
	if (!s->tls) {
		q->who.kind = PRINCIPAL_ADMIN; /* --insecure: nobody is checked */
		return;
	}
	const char *authz =
	    MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (authz) {
		if (strncasecmp(authz, "Bearer ", 7)) {
			snprintf(q->who.why, sizeof q->who.why,
				 "expected 'Authorization: Bearer TOKEN'");
			return;
		}
		const char *text = authz + 7;
		while (*text == ' ')
			text++;
		struct token_rec rec;
		if (token_check(s, text, &rec, q->who.why, sizeof q->who.why) < 0)
			return;
		q->who.kind = rec.kind == TOKEN_ADMIN  ? PRINCIPAL_ADMIN
			      : rec.kind == TOKEN_JOIN ? PRINCIPAL_JOIN
						       : PRINCIPAL_ROLE;
		snprintf(q->who.name, sizeof q->who.name, "%s", rec.role);
		snprintf(q->who.token_id, sizeof q->who.token_id, "%s", rec.id);
		return;
	}
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(q->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_peer *p = ci ? ci->socket_context : NULL;
	if (!p)
		return;
	if (!p->checked)
		peer_check(s, q->conn, p);
	if (p->who.kind == PRINCIPAL_NODE && time_now_ms() / 1000 >= p->not_after) {
		snprintf(q->who.why, sizeof q->who.why,
			 "certificate refused: certificate has expired");
		return;
	}
	q->who = p->who;
}

/* Who, for the audit log. */
static void who_text(const struct principal *w, char *buf, size_t n)
{
	switch (w->kind) {
	case PRINCIPAL_ADMIN:
		snprintf(buf, n, "admin%s%s", *w->token_id ? ":" : "", w->token_id);
		break;
	case PRINCIPAL_ROLE:
		snprintf(buf, n, "role:%s:%s", w->name, w->token_id);
		break;
	case PRINCIPAL_NODE:
		snprintf(buf, n, "node:%s", w->name);
		break;
	case PRINCIPAL_JOIN:
		snprintf(buf, n, "join:%s", w->token_id);
		break;
	default:
		snprintf(buf, n, "anonymous");
	}
}

void server_audit(struct server *s, struct request *q, const char *method, const char *url)
{
	if (s->audit_fd < 0)
		return;
	/* Reads are not acts, except those that hand out the whole state (a
	 * backup) or a credential (a metrics ticket). */
	if ((!strcmp(method, "GET") || !strcmp(method, "HEAD")) &&
	    strcmp(url, "/v1/admin/backup") && strcmp(url, "/v1/admin/metrics-ticket"))
		return;
	/* Agents' reports and polls are the protocol, not acts: their joins
	 * and renewals are. */
	if (!strncmp(url, "/v1/agent/", 10) && strcmp(url, "/v1/agent/join") &&
	    strcmp(url, "/v1/agent/renew") && q->status < 400)
		return;
	char who[200], when[40];
	who_text(&q->who, who, sizeof who);
	time_format_ms(time_now_ms(), when, sizeof when);
	json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:i}", "time", when, "who", who, "method", method,
			      "path", url, "status", q->status);
	const char *err =
	    q->status >= 400 ? json_string_value(json_object_get(q->reply, "error")) : NULL;
	if (err)
		json_object_set_new(j, "error", json_string(err));
	char *line = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	size_t n = strlen(line);
	line = xrealloc(line, n + 2);
	line[n++] = '\n';
	/* O_APPEND: one write is one line, whole, among several threads. */
	if (write(s->audit_fd, line, n) < 0)
		log_warn("cannot write the audit log: %s", strerror(errno));
	free(line);
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
	if (q->who.kind == PRINCIPAL_JOIN)
		return refuse(q, 403, "forbidden: the join token only joins agents");
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
	snprintf(msg, sizeof msg, "forbidden: %s '%s' may not act on role '%.*s'",
		 q->who.kind == PRINCIPAL_ROLE ? "a token of role" : "the caller", q->who.name,
		 (int)strcspn(key_or_role ? key_or_role : "", "/"), key_or_role ? key_or_role : "");
	return refuse(q, 403, msg);
}

bool auth_node(struct request *q, const char *node)
{
	if (q->who.kind == PRINCIPAL_NODE && node && !strcmp(q->who.name, node))
		return true;
	if (q->who.kind == PRINCIPAL_ADMIN && !q->srv->tls)
		return true; /* --insecure: no identities */
	if (q->who.kind == PRINCIPAL_NOBODY)
		return refuse_nobody(q);
	char msg[400];
	snprintf(msg, sizeof msg, "forbidden: this call may be made only by node '%s' itself",
		 node ? node : "");
	return refuse(q, 403, msg);
}
