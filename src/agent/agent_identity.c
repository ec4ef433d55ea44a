/* agent_identity.c - the node's identity in a TLS cluster (docs/security.md).
 *
 * An agent whose servers speak HTTPS holds a node certificate in
 * DATA/node/ (ca.pem, key.pem 0600, cert.pem; the directory 0700). It gets
 * one by joining: it fetches the cluster CA from GET /v1/ca, checks it
 * against the fingerprint its join token carries (the token pins the CA,
 * so the first contact needs no trust in the network), and sends a CSR with
 * the join token to POST /v1/agent/join. Every later call is mutual TLS.
 * At two thirds of its lifetime the certificate is renewed over mutual TLS
 * (POST /v1/agent/renew, same key); an expired or refused certificate is
 * replaced by joining again when the agent still has its join token.
 *
 * The watch thread owns the identity; the other threads only read the
 * files, through http clients made by agent_identity_client() and brought
 * up to date by agent_identity_refresh() after a renewal. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "core/addr.h"
#include "core/http_client.h"
#include "core/log.h"
#include "core/pki.h"

/* Renewal is attempted from 2/3 of the lifetime, then again every tenth of
 * the lifetime, within these bounds. */
#define RENEW_RETRY_MIN_MS 1000
#define RENEW_RETRY_MAX_MS 30000

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* A join token "bj1.CAFP.ID.SECRET": the CA fingerprint it pins. */
static int join_token_ca(const char *tok, char fp[65], struct berr *err)
{
	const char *p = tok;
	if (strncmp(p, "bj1.", 4) || strlen(p) < 4 + 64 + 1 || !is_hex(p + 4, 64) ||
	    p[4 + 64] != '.' || !strchr(p + 4 + 64 + 1, '.'))
		return berr_set(err, 400,
				"the join token is not one: expected bj1.… as the server wrote in "
				"DATA/client/join.token");
	for (int i = 0; i < 64; i++)
		fp[i] = (char)tolower((unsigned char)p[4 + i]);
	fp[64] = 0;
	return 0;
}

static char *read_trimmed(const char *path)
{
	char *s = NULL;
	if (file_read_all(path, &s, NULL) < 0)
		return NULL;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

/* Servers without a scheme speak HTTPS when the agent has a way into a TLS
 * cluster (a join token or a certificate), else plain HTTP. */
static char *servers_with_scheme(const char *servers, bool tls)
{
	struct sbuf sb;
	sbuf_init(&sb);
	char *copy = xstrdup(servers ? servers : "");
	char *save = NULL;
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*s))
			s++;
		if (!*s)
			continue;
		if (sb.len)
			sbuf_adds(&sb, ",");
		if (!strstr(s, "://"))
			sbuf_adds(&sb, tls ? "https://" : "http://");
		sbuf_adds(&sb, s);
	}
	free(copy);
	return sbuf_detach(&sb);
}

/* Read what DATA/node holds; 0 and have_cert=false when it holds nothing
 * usable. */
static void load_certificate(struct agent *a)
{
	struct agent_identity *id = &a->id;
	char *cert = NULL, *key = NULL;
	id->have_cert = false;
	if (file_read_all(id->cert_path, &cert, NULL) < 0 ||
	    file_read_all(id->key_path, &key, NULL) < 0 || access(id->ca_path, R_OK) < 0)
		goto out;
	struct pki_cert_info info;
	struct berr err = {0};
	if (pki_cert_info(cert, &info, &err) < 0) {
		log_warn("ignoring %s: %s", id->cert_path, err.msg);
		goto out;
	}
	if (strcmp(info.cn, a->name)) {
		log_warn("ignoring %s: it names node '%s', this agent is '%s'", id->cert_path,
			 info.cn, a->name);
		goto out;
	}
	if (!pki_key_matches(cert, key)) {
		log_warn("ignoring %s: %s is not its key", id->cert_path, id->key_path);
		goto out;
	}
	id->not_before = info.not_before + 60; /* issued then (see pki_issue) */
	id->not_after = info.not_after;
	if (id->not_before >= id->not_after)
		id->not_before = id->not_after - 1;
	id->have_cert = true;
out:
	free(cert);
	if (key)
		memset(key, 0, strlen(key));
	free(key);
}

/* The fingerprint of the CA in DATA/node/ca.pem ("" when none). */
static void stored_ca_fingerprint(const struct agent *a, char fp[65])
{
	char *ca = NULL;
	struct pki_cert_info info;
	struct berr err = {0};
	fp[0] = 0;
	if (file_read_all(a->id.ca_path, &ca, NULL) == 0 && pki_cert_info(ca, &info, &err) == 0)
		snprintf(fp, 65, "%s", info.fingerprint);
	free(ca);
}

int agent_identity_init(struct agent *a, struct berr *err)
{
	struct agent_identity *id = &a->id;
	id->node_dir = xasprintf("%s/node", a->o.data_dir);
	id->ca_path = xasprintf("%s/ca.pem", id->node_dir);
	id->cert_path = xasprintf("%s/cert.pem", id->node_dir);
	id->key_path = xasprintf("%s/key.pem", id->node_dir);
	if (a->o.join_token && *a->o.join_token) {
		id->join_token = xstrdup(a->o.join_token);
	} else if (a->o.join_token_file) {
		id->join_token = read_trimmed(a->o.join_token_file);
		if (!id->join_token)
			return berr_set(err, 400, "cannot read the join token file '%s': %s",
					a->o.join_token_file, strerror(errno));
	}
	if (id->join_token && join_token_ca(id->join_token, id->join_ca_fp, err) < 0)
		return -1;
	bool cert_file = access(id->cert_path, F_OK) == 0;
	id->servers = servers_with_scheme(a->o.servers, id->join_token || cert_file);
	a->o.servers = id->servers;
	id->tls = strstr(id->servers, "https://") != NULL;
	if (!id->tls) {
		if (id->join_token)
			log_warn("the join token is not used: the servers speak plain HTTP "
				 "(--insecure)");
		return 0;
	}
	int r = mkdir_p(id->node_dir, 0700);
	if (r < 0 || chmod(id->node_dir, 0700) < 0)
		return berr_set(err, 500, "cannot create '%s': %s", id->node_dir,
				strerror(r < 0 ? -r : errno));
	load_certificate(a);
	if (id->have_cert && id->join_token) {
		char fp[65];
		stored_ca_fingerprint(a, fp);
		if (strcmp(fp, id->join_ca_fp)) {
			log_info("the join token names another cluster CA than %s: joining again",
				 id->ca_path);
			id->have_cert = false;
		}
	}
	if (!id->have_cert && !id->join_token)
		return berr_set(err, 400,
				"this agent has no node certificate in %s and no join token: give "
				"--join-token-file FILE (the server's DATA/client/join.token) or "
				"--join-token TOKEN",
				id->node_dir);
	return 0;
}

void agent_identity_free(struct agent *a)
{
	struct agent_identity *id = &a->id;
	free(id->node_dir);
	free(id->ca_path);
	free(id->cert_path);
	free(id->key_path);
	free(id->servers);
	if (id->join_token)
		memset(id->join_token, 0, strlen(id->join_token));
	free(id->join_token);
	free(id->sans);
}

bool agent_identity_ready(const struct agent *a)
{
	return !a->id.tls || a->id.have_cert;
}

struct http_client *agent_identity_client(struct agent *a, unsigned *gen)
{
	struct http_client *hc = http_client_new(a->o.servers);
	http_client_set_header(hc, "X-Berth-Node", a->name);
	if (a->id.tls)
		http_client_set_tls(hc, a->id.ca_path, a->id.cert_path, a->id.key_path);
	if (gen)
		*gen = __atomic_load_n(&a->id.gen, __ATOMIC_ACQUIRE);
	return hc;
}

void agent_identity_refresh(struct agent *a, struct http_client *hc, unsigned *gen)
{
	unsigned now = __atomic_load_n(&a->id.gen, __ATOMIC_ACQUIRE);
	if (now != *gen) {
		http_client_reconnect(hc);
		*gen = now;
	}
}

/* The names the certificate gives the node's logs listener: the address
 * the servers see it at, loopback, its host name. */
static char *node_sans(const struct agent *a, const char *local_ip)
{
	json_t *arr = json_array();
	if (local_ip && *local_ip && strcmp(local_ip, "127.0.0.1"))
		json_array_append_new(arr, json_sprintf("IP:%s", local_ip));
	json_array_append_new(arr, json_string("IP:127.0.0.1"));
	json_array_append_new(arr, json_string("DNS:localhost"));
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	bool host_ok = *host && strcmp(host, "localhost");
	for (const char *p = host; *p && host_ok; p++)
		host_ok = isalnum((unsigned char)*p) || *p == '-' || *p == '.';
	if (host_ok)
		json_array_append_new(arr, json_sprintf("DNS:%s", host));
	(void)a;
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
}

/* The CSR for this node's key (made, 0600, when there is none). */
static char *node_csr(struct agent *a, bool new_key, struct berr *err)
{
	struct agent_identity *id = &a->id;
	char *key = NULL, *csr = NULL;
	if (new_key || file_read_all(id->key_path, &key, NULL) < 0) {
		free(key);
		key = NULL;
		if (pki_key_new(&key, err) < 0)
			return NULL;
		int r = file_write_atomic_mode(id->key_path, key, strlen(key), 0600);
		if (r < 0) {
			berr_set(err, 500, "cannot write '%s': %s", id->key_path, strerror(-r));
			goto out;
		}
	}
	pki_csr_new(key, a->name, &csr, err);
out:
	memset(key, 0, strlen(key));
	free(key);
	return csr;
}

/* Keep the certificate the server issued (checked against our CA and key). */
static int store_certificate(struct agent *a, json_t *reply, struct berr *err)
{
	struct agent_identity *id = &a->id;
	const char *cert = json_string_value(json_object_get(reply, "cert"));
	char *ca = NULL, *key = NULL;
	int rc = -1;
	struct pki_cert_info info;
	if (!cert) {
		berr_set(err, 502, "the server's reply has no certificate");
		goto out;
	}
	if (file_read_all(id->ca_path, &ca, NULL) < 0 ||
	    file_read_all(id->key_path, &key, NULL) < 0) {
		berr_set(err, 500, "cannot read %s or %s", id->ca_path, id->key_path);
		goto out;
	}
	if (pki_verify_pem(ca, cert, time_now_ms() / 1000, &info, err) < 0) {
		berr_prefix(err, "the certificate the server sent");
		goto out;
	}
	if (strcmp(info.cn, a->name) || !pki_key_matches(cert, key)) {
		berr_set(err, 502, "the certificate the server sent is not for this node");
		goto out;
	}
	int r = file_write_atomic_mode(id->cert_path, cert, strlen(cert), 0600);
	if (r < 0) {
		berr_set(err, 500, "cannot write '%s': %s", id->cert_path, strerror(-r));
		goto out;
	}
	/* Its lifetime counts from now: not_before is set back for clocks
	 * slightly behind. */
	id->not_before = time_now_ms() / 1000;
	id->not_after = info.not_after;
	id->have_cert = true;
	id->rejoin = false;
	__atomic_add_fetch(&id->gen, 1, __ATOMIC_RELEASE);
	rc = 0;
out:
	free(ca);
	if (key)
		memset(key, 0, strlen(key));
	free(key);
	return rc;
}

static int join(struct agent *a, struct berr *err)
{
	struct agent_identity *id = &a->id;
	if (!id->join_token)
		return berr_set(err, 401,
				"the node certificate expired or was refused, and this agent has "
				"no join token to get another: restart it with --join-token-file");
	/* The CA, from whoever answers: trusted only if the token pins it. */
	struct http_client *hc = http_client_new(a->o.servers);
	http_client_set_tls_unverified(hc);
	json_t *reply = NULL;
	struct http_response probe;
	int rc = -1;
	char *csr = NULL, *body_sans = NULL;
	if (http_request(hc, "GET", "/v1/ca", NULL, 5000, &probe, err) < 0)
		goto out;
	json_t *doc = probe.status == 200 ? json_loads(probe.body, 0, NULL) : NULL;
	const char *ca = json_string_value(json_object_get(doc, "ca"));
	struct pki_cert_info info;
	if (!ca || pki_cert_info(ca, &info, err) < 0) {
		berr_set(err, 502, "%s did not send the cluster CA (HTTP %ld)",
			 http_client_server(hc), probe.status);
		json_decref(doc);
		http_response_release(&probe);
		goto out;
	}
	if (strcmp(info.fingerprint, id->join_ca_fp)) {
		berr_set(err, 401,
			 "%s serves a cluster CA (sha256 %.16s…) other than the one the join "
			 "token names (%.16s…): a wrong server, or a token of another cluster",
			 http_client_server(hc), info.fingerprint, id->join_ca_fp);
		json_decref(doc);
		http_response_release(&probe);
		goto out;
	}
	int w = file_write_atomic_mode(id->ca_path, ca, strlen(ca), 0644);
	json_decref(doc);
	free(id->sans);
	id->sans = node_sans(a, probe.local_ip);
	http_response_release(&probe);
	if (w < 0) {
		berr_set(err, 500, "cannot write '%s': %s", id->ca_path, strerror(-w));
		goto out;
	}
	/* Now the join itself, the server checked against that CA. */
	http_client_free(hc);
	hc = http_client_new(a->o.servers);
	http_client_set_tls(hc, id->ca_path, NULL, NULL);
	http_client_set_token(hc, id->join_token);
	csr = node_csr(a, true, err);
	if (!csr)
		goto out;
	json_t *body = json_pack("{s:s,s:s,s:o}", "name", a->name, "csr", csr, "sans",
				 json_loads(id->sans, 0, NULL));
	int r = http_json(hc, "POST", "/v1/agent/join", body, 10000, &reply, err);
	json_decref(body);
	if (r < 0) {
		berr_prefix(err, "cannot join");
		goto out;
	}
	rc = store_certificate(a, reply, err);
	if (rc == 0)
		log_info("joined the cluster: node certificate for '%s' valid until %lld", a->name,
			 (long long)id->not_after);
out:
	free(csr);
	free(body_sans);
	json_decref(reply);
	http_client_free(hc);
	return rc;
}

static int renew(struct agent *a, struct berr *err)
{
	struct agent_identity *id = &a->id;
	struct http_client *hc = agent_identity_client(a, NULL);
	json_t *reply = NULL;
	int rc = -1;
	char *csr = node_csr(a, false, err);
	if (!csr)
		goto out;
	if (!id->sans)
		id->sans = node_sans(a, NULL);
	json_t *body = json_pack("{s:s,s:s,s:o}", "name", a->name, "csr", csr, "sans",
				 json_loads(id->sans, 0, NULL));
	int r = http_json(hc, "POST", "/v1/agent/renew", body, 10000, &reply, err);
	json_decref(body);
	if (r < 0) {
		if (err->code == 401 || err->code == 403)
			id->rejoin = true;
		berr_prefix(err, "cannot renew the node certificate");
		goto out;
	}
	rc = store_certificate(a, reply, err);
	if (rc == 0)
		log_info("renewed the node certificate: valid until %lld",
			 (long long)id->not_after);
out:
	free(csr);
	json_decref(reply);
	http_client_free(hc);
	return rc;
}

int agent_identity_ensure(struct agent *a, struct berr *err)
{
	struct agent_identity *id = &a->id;
	if (!id->tls)
		return 0;
	int64_t now = time_now_ms() / 1000;
	bool had = id->have_cert;
	if (!id->have_cert || id->rejoin || now >= id->not_after) {
		if (join(a, err) < 0)
			return -1;
	} else {
		int64_t due = id->not_before + (id->not_after - id->not_before) * 2 / 3;
		int64_t retry = (id->not_after - id->not_before) * 100; /* a tenth, in ms */
		retry = retry < RENEW_RETRY_MIN_MS   ? RENEW_RETRY_MIN_MS
			: retry > RENEW_RETRY_MAX_MS ? RENEW_RETRY_MAX_MS
						     : retry;
		if (now < due || time_mono_ms() - id->last_renew_try_mono < retry)
			return 0;
		id->last_renew_try_mono = time_mono_ms();
		if (renew(a, err) < 0) {
			/* Not fatal while the certificate lasts: try again soon. */
			log_warn("%s", err->msg);
			berr_clear(err);
			return 0;
		}
	}
	/* The logs listener serves with the new certificate. */
	if (agent_logs_serve(a, err) < 0) {
		if (!had)
			return -1;
		log_warn("logs listener: %s", err->msg);
		berr_clear(err);
	}
	return 0;
}

void agent_identity_refused(struct agent *a)
{
	if (a->id.tls)
		a->id.rejoin = a->id.join_token != NULL;
}
