/* server_pki.c - the cluster's CA and the server's TLS (docs/security.md).
 *
 * The CA lives in the store (auth/ca), so that every server of an HA group
 * signs with it; the first server to start makes it. Each server then issues
 * itself a serving certificate (a fresh key, its addresses as names) at
 * every start, and writes what a client needs into DATA/client/:
 *
 *   ca.pem        the CA certificate (verify the servers)
 *   admin.token   a token of the cluster's admin
 *   join.token    the token an agent presents once to get its certificate
 *
 * The tokens are made when a server finds no valid one in its data dir: the
 * store keeps only their hashes, so a server of an HA group makes its own. */
#include "server/server-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pki.h"

#define CA_TTL_S (10LL * 365 * 86400)
#define SERVER_CERT_TTL_S (398LL * 86400)

/* Write a file atomically, mode 0600. */
int server_write_private(const char *path, const char *text, struct berr *err)
{
	char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int r = 0;
	if (fd < 0) {
		r = berr_set(err, 500, "cannot write '%s': %s", tmp, strerror(errno));
	} else {
		size_t n = strlen(text);
		if (write(fd, text, n) != (ssize_t)n || fsync(fd) < 0)
			r = berr_set(err, 500, "cannot write '%s': %s", tmp, strerror(errno));
		close(fd);
		if (r == 0 && rename(tmp, path) < 0)
			r = berr_set(err, 500, "cannot rename '%s': %s", tmp, strerror(errno));
	}
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}

static char *read_small(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char buf[512];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	return xstrdup(buf);
}

static int store_put_now(struct server *s, const char *key, const char *text, struct berr *err)
{
	struct store_batch *b = store_batch_new();
	store_batch_put(b, key, text, strlen(text));
	pthread_mutex_lock(&s->store_lock);
	int r = store_commit(s->store, b, err);
	pthread_mutex_unlock(&s->store_lock);
	store_batch_free(b);
	return r;
}

/* The CA from the store, made there by the first server. */
static int ca_load_or_make(struct server *s, struct berr *err)
{
	char *text = NULL;
	size_t len = 0;
	pthread_mutex_lock(&s->store_lock);
	int r = store_get(s->store, "auth/ca", &text, &len, err);
	pthread_mutex_unlock(&s->store_lock);
	if (r < 0)
		return berr_prefix(err, "cannot read the cluster CA");
	if (r == 1) {
		char *cert = NULL, *key = NULL;
		if (pki_ca_new("berth cluster CA", CA_TTL_S, &cert, &key, err) < 0)
			return -1;
		json_t *j = json_pack("{s:s,s:s}", "cert", cert, "key", key);
		text = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		free(cert);
		free(key);
		/* Servers starting together on an empty store: the first CA
		 * stored is everyone's. */
		pthread_mutex_lock(&s->store_lock);
		r = store_create(s->store, "auth/ca", text, strlen(text), err);
		pthread_mutex_unlock(&s->store_lock);
		free(text);
		text = NULL;
		if (r < 0)
			return berr_prefix(err, "cannot store the cluster CA");
		if (r == 0)
			log_info("made the cluster CA");
		pthread_mutex_lock(&s->store_lock);
		r = store_get(s->store, "auth/ca", &text, &len, err);
		pthread_mutex_unlock(&s->store_lock);
		if (r != 0) {
			free(text);
			return r < 0 ? berr_prefix(err, "cannot read the cluster CA")
				     : berr_set(err, 500, "the cluster CA vanished from the store");
		}
	}
	json_t *j = json_loadb(text, len, 0, NULL);
	free(text);
	const char *cert = json_string_value(json_object_get(j, "cert"));
	const char *key = json_string_value(json_object_get(j, "key"));
	struct pki_cert_info info;
	if (!cert || !key || pki_cert_info(cert, &info, err) < 0 || !pki_key_matches(cert, key)) {
		json_decref(j);
		return berr_set(err, 500, "the cluster CA in the store (auth/ca) is damaged");
	}
	s->ca_cert = xstrdup(cert);
	s->ca_key = xstrdup(key);
	memcpy(s->cafp, info.fingerprint, sizeof s->cafp);
	json_decref(j);
	return 0;
}

/* Is the token in `path` one the store knows (its record)? */
static bool token_file_valid(struct server *s, const char *path, enum token_kind want)
{
	char *text = read_small(path);
	enum token_kind kind;
	char id[TOKEN_ID_LEN + 1], secret[TOKEN_SECRET_LEN + 1], cafp[65];
	bool ok = false;
	if (text && token_parse(text, &kind, id, secret, cafp) == 0 &&
	    (want == TOKEN_JOIN) == (kind == TOKEN_JOIN) &&
	    (kind != TOKEN_JOIN || !strcmp(cafp, s->cafp))) {
		char key[64], *rec_text = NULL;
		size_t len = 0;
		snprintf(key, sizeof key, "auth/tokens/%s", id);
		struct berr e = {0};
		pthread_mutex_lock(&s->store_lock);
		int r = store_get(s->store, key, &rec_text, &len, &e);
		pthread_mutex_unlock(&s->store_lock);
		struct token_rec rec;
		char hash[65];
		pki_sha256_hex(secret, TOKEN_SECRET_LEN, hash);
		ok = r == 0 && token_rec_from_json(rec_text, len, &rec) == 0 && rec.kind == want &&
		     pki_equal_secret(rec.hash, hash) &&
		     (!rec.expires || rec.expires > time_now_ms() / 1000);
		free(rec_text);
	}
	free(text);
	return ok;
}

/* A token file for this data dir: kept when the store still knows it, else
 * a new token (its record stored first, then the file written). */
static int token_file_ensure(struct server *s, const char *path, enum token_kind kind,
			     struct berr *err)
{
	if (token_file_valid(s, path, kind))
		return 0;
	struct token_rec rec;
	char *token = token_make(kind, NULL, 0, s->cafp, &rec);
	json_t *j = token_rec_json(&rec);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	char key[64];
	snprintf(key, sizeof key, "auth/tokens/%s", rec.id);
	int r = store_put_now(s, key, text, err);
	free(text);
	if (r == 0) {
		char *line = xasprintf("%s\n", token);
		r = server_write_private(path, line, err);
		free(line);
		token_table_put(s->c->tokens, &rec);
		log_info("wrote a new %s token to %s", kind == TOKEN_JOIN ? "join" : "admin", path);
	}
	free(token);
	return r;
}

static void san_add(struct sbuf *sb, const char *kind, const char *name)
{
	char item[300];
	snprintf(item, sizeof item, "%s:%s", kind, name);
	/* once each */
	const char *p = sb->buf;
	size_t n = strlen(item);
	while (p && (p = strstr(p, item))) {
		if ((p == sb->buf || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return;
		p += n;
	}
	if (sb->len)
		sbuf_adds(sb, ",");
	sbuf_adds(sb, item);
}

/* The names a client may reach this server by: its listen address (every
 * local IPv4 address when it listens on all), loopback, its host name, and
 * the operator's --tls-san. */
static char *server_sans(const struct sockaddr_in *sa, const char *extra)
{
	struct sbuf sb;
	sbuf_init(&sb);
	san_add(&sb, "IP", "127.0.0.1");
	san_add(&sb, "DNS", "localhost");
	char ip[INET_ADDRSTRLEN];
	if (sa->sin_addr.s_addr != htonl(INADDR_ANY)) {
		inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
		san_add(&sb, "IP", ip);
	} else {
		struct ifaddrs *ifs = NULL, *i;
		if (getifaddrs(&ifs) == 0) {
			for (i = ifs; i; i = i->ifa_next)
				if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
					struct sockaddr_in *a = (struct sockaddr_in *)i->ifa_addr;
					inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
					san_add(&sb, "IP", ip);
				}
			freeifaddrs(ifs);
		}
	}
	char host[256];
	if (gethostname(host, sizeof host) == 0 && *host && strlen(host) < 200 &&
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
		strlen(host))
		san_add(&sb, "DNS", host);
	char *copy = xstrdup(extra ? extra : ""), *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		struct in_addr a;
		san_add(&sb, inet_pton(AF_INET, t, &a) == 1 ? "IP" : "DNS", t);
	}
	free(copy);
	return sbuf_detach(&sb);
}

int server_pki_start(struct server *s, const struct server_options *o, const struct sockaddr_in *sa,
		     struct berr *err)
{
	s->data_dir = xstrdup(o->data_dir);
	s->node_cert_ttl_s = o->node_cert_ttl_s > 0 ? o->node_cert_ttl_s : 86400;
	if (o->insecure)
		return 0;
	if (ca_load_or_make(s, err) < 0)
		return -1;
	char *dir = xasprintf("%s/client", o->data_dir);
	int r = mkdir_p(dir, 0700);
	chmod(dir, 0700);
	if (r < 0) {
		berr_set(err, 500, "cannot create '%s': %s", dir, strerror(-r));
		free(dir);
		return -1;
	}
	char *ca_path = xasprintf("%s/ca.pem", dir);
	char *admin_path = xasprintf("%s/admin.token", dir);
	char *join_path = xasprintf("%s/join.token", dir);
	r = server_write_private(ca_path, s->ca_cert, err);
	if (r == 0)
		r = token_file_ensure(s, admin_path, TOKEN_ADMIN, err);
	if (r == 0)
		r = token_file_ensure(s, join_path, TOKEN_JOIN, err);
	free(ca_path);
	free(admin_path);
	free(join_path);
	free(dir);
	if (r < 0)
		return -1;
	/* The serving certificate: a fresh key at every start. */
	char *key = NULL, *csr = NULL, *cert = NULL;
	char *sans = server_sans(sa, o->tls_sans);
	struct pki_issue what = {.cn = "berth server",
				 .ou = "server",
				 .sans = sans,
				 .ttl_s = SERVER_CERT_TTL_S,
				 .server_auth = true};
	r = pki_key_new(&key, err);
	if (r == 0)
		r = pki_csr_new(key, "berth server", &csr, err);
	if (r == 0)
		r = pki_issue(s->ca_cert, s->ca_key, csr, &what, &cert, err);
	free(csr);
	free(sans);
	if (r < 0) {
		free(key);
		return berr_prefix(err, "cannot issue the server's certificate");
	}
	s->tls_key = key;
	s->tls_cert = cert;
	s->tls = true;
	return 0;
}

void server_pki_free(struct server *s)
{
	free(s->ca_cert);
	free(s->ca_key);
	free(s->tls_cert);
	if (s->tls_key) {
		explicit_bzero(s->tls_key, strlen(s->tls_key));
		free(s->tls_key);
	}
	free(s->data_dir);
}

/* A node's name, as a certificate can carry it: printable, no '/'. */
static bool node_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (!n || n >= PKI_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x21 || name[i] == 0x7f || name[i] == '/')
			return false;
	return true;
}

/* A node certificate for `name`, from the CSR of its join or renewal. */
static json_t *node_cert(struct server *s, struct request *q, const char *name, json_t *body)
{
	const char *csr = json_string_value(json_object_get(body, "csr"));
	json_t *sans = json_object_get(body, "sans");
	if (!csr) {
		reply_error(q, 400, "field 'csr': expected a PEM certificate request");
		return NULL;
	}
	struct sbuf sb;
	sbuf_init(&sb);
	if (sans && !json_is_array(sans)) {
		reply_error(q, 400, "field 'sans': expected an array of \"IP:…\" or \"DNS:…\"");
		return NULL;
	}
	size_t i;
	json_t *v;
	json_array_foreach(sans, i, v)
	{
		const char *t = json_string_value(v);
		if (!t || i >= 16) {
			sbuf_release(&sb);
			reply_error(q, 400,
				    "field 'sans': at most 16 strings \"IP:…\" or \"DNS:…\"");
			return NULL;
		}
		if (sb.len)
			sbuf_adds(&sb, ",");
		sbuf_adds(&sb, t);
	}
	struct berr err = {0};
	char *cert = NULL;
	int64_t not_after = 0;
	/* pki_issue checks the CSR's signature: one decoding of it, none of
	 * the certificate made (each costs ~1 ms with OpenSSL 3). */
	struct pki_issue what = {.cn = name,
				 .ou = "node",
				 .sans = sb.len ? sb.buf : NULL,
				 .ttl_s = s->node_cert_ttl_s,
				 .server_auth = true,
				 .not_after = &not_after};
	if (pki_issue(s->ca_cert, s->ca_key, csr, &what, &cert, &err) < 0) {
		sbuf_release(&sb);
		reply_error(q, err.code ? err.code : 400, err.msg);
		return NULL;
	}
	sbuf_release(&sb);
	json_t *reply = json_pack("{s:s,s:s,s:I}", "cert", cert, "ca", s->ca_cert, "not_after",
				  (json_int_t)not_after);
	free(cert);
	return reply;
}

/* A join may not take the name of a live node. Takes the cluster lock for
 * the look-up only. */
static bool join_name_free(struct server *s, struct request *q, const char *name)
{
	struct cluster *c = s->c;
	pthread_mutex_lock(&c->lock);
	bool stopping = s->stopping;
	struct node *n = hmap_get(&c->nodes, name);
	bool taken = n && n->state != NODE_DOWN &&
		     time_mono_ms() - n->last_seen_mono < 2 * cluster_down_after_ms(c);
	pthread_mutex_unlock(&c->lock);
	if (stopping) {
		reply_error(q, 503, "server is shutting down");
		return false;
	}
	if (taken) {
		char msg[300];
		snprintf(msg, sizeof msg,
			 "node '%s' is up: another machine cannot join under its name", name);
		reply_error(q, 409, msg);
		return false;
	}
	return true;
}

/* POST /v1/agent/join (the join token) and /v1/agent/renew (the node's
 * certificate): a certificate naming the node. Not under the cluster lock:
 * signing takes milliseconds, and a join storm must not keep the lock from
 * the heartbeats of the nodes already in (docs/security.md). */
void route_agent_identity(struct request *q, bool join)
{
	struct server *s = q->srv;
	if (!s->tls) {
		reply_error(q, 400, "this server runs --insecure: agents need no certificate");
		return;
	}
	if (join && q->who.kind != PRINCIPAL_JOIN) {
		reply_error(q, 401,
			    *q->who.why ? q->who.why
					: "joining needs the join token (Authorization: Bearer)");
		return;
	}
	json_t *body = parse_body(q);
	if (!body)
		return;
	const char *name = json_string_value(json_object_get(body, "name"));
	if (!node_name_ok(name)) {
		reply_error(q, 400, "field 'name': expected the node's name (printable, no '/')");
		json_decref(body);
		return;
	}
	if ((!join && !auth_node(q, name)) || (join && !join_name_free(s, q, name))) {
		json_decref(body);
		return;
	}
	json_t *reply = node_cert(s, q, name, body);
	if (reply) {
		log_info("%s node '%s' a certificate (%s)", join ? "issued" : "renewed", name,
			 join ? "join token" : "renewal");
		reply_ok(q, reply);
	}
	json_decref(body);
}

char *server_ticket(struct server *s, const char *what, int64_t expiry, const char *data)
{
	char *sig = NULL;
	struct berr err = {0};
	char *ticket = NULL;
	if (pki_sign_hex(s->ca_key, data, strlen(data), &sig, &err) == 0)
		ticket = xasprintf("%lld.%s", (long long)expiry, sig);
	else
		log_warn("cannot sign %s ticket: %s", what, err.msg);
	free(sig);
	return ticket;
}

/* The ticket that lets a client read a task's logs from its agent: the
 * CA's signature of "logs|TASK|EXPIRY". */
char *server_logs_ticket(struct server *s, const char *task_id)
{
	if (!s->tls)
		return NULL;
	int64_t expiry = time_now_ms() / 1000 + 300;
	char *data = xasprintf("logs|%s|%lld", task_id, (long long)expiry);
	char *ticket = server_ticket(s, "a logs", expiry, data);
	free(data);
	return ticket;
}
