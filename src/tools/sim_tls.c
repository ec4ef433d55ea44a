/* sim_tls.c - TLS for the simulated agents (docs/security.md).
 *
 * With a join token, each simulated agent does what a real agent does:
 *
 *   connect, no certificate ── POST /v1/agent/join (Bearer join token, CSR)
 *        │                        → its node certificate
 *   reconnect with it (mutual TLS) ── register ── watch ── watch …
 *        │  half the certificate's life gone:
 *        └─ POST /v1/agent/renew (mutual TLS, CSR) → reconnect with the new one
 *   a call refused with 401 (certificate expired, CA changed): join again
 *
 * The server's certificate is checked against the cluster CA (--cacert, or
 * GET /v1/ca checked against the CA fingerprint the join token carries) and
 * against the address dialled. OpenSSL runs non-blocking: SSL_connect,
 * SSL_read and SSL_write are called again at the next readiness event of
 * the (edge-triggered) socket.
 *
 * Memory: an agent keeps its key and certificate as DER (~600 bytes, read
 * into each new connection); an idle connection's OpenSSL buffers are
 * released (SSL_MODE_RELEASE_BUFFERS). The server issues no session tickets
 * (libmicrohttpd's GnuTLS setup), so there is no session to resume: every
 * connection is a full handshake, which only reconnects pay for.
 */
#include "tools/simulator-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/log.h"
#include "core/pki.h"
#include "core/util.h"

#define CA_FETCH_TRIES 60 /* every 0.5 s: the server may still be starting */

struct sim_tls {
	SSL_CTX *ctx;
	char *token;
	char cafp[65];	  /* the CA's fingerprint the token names */
	char *shared_pem; /* --sim-shared-key: every agent's key */
	char *shared_csr; /* and its one request: the server names the node
			     from the join's "name", never from the CSR */
	unsigned char *shared_der;
	uint16_t shared_len;
};

static void ssl_why(char *why, size_t n, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	snprintf(why, n, "%s%s%s", what, *buf ? ": " : "", buf);
}

/* bj1.CAFP64.ID16.SECRET64: the shape only (the server checks the rest). */
static int token_cafp(const char *t, char cafp[65])
{
	static const char hex[] = "0123456789abcdef";
	size_t lens[3] = {64, 16, 64};
	if (strncmp(t, "bj1.", 4))
		return -1;
	const char *p = t + 4;
	for (int f = 0; f < 3; f++) {
		if (strspn(p, hex) != lens[f])
			return -1;
		if (f == 0) {
			memcpy(cafp, p, 64);
			cafp[64] = 0;
		}
		p += lens[f];
		if (f < 2 && *p++ != '.')
			return -1;
	}
	return *p ? -1 : 0;
}

static X509 *pem_cert(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	return x;
}

static void cert_fingerprint(X509 *x, char out[65])
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	pki_sha256_hex(der, n > 0 ? (size_t)n : 0, out);
	OPENSSL_free(der);
}

/* The CA as the first server that answers GET /v1/ca gives it (checked
 * by the caller against the token): a blocking exchange, once, at start. */
static char *fetch_ca(struct sim *s)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char *ca = NULL;
	char why[300] = "";
	for (int t = 0; t < CA_FETCH_TRIES && !ca; t++) {
		if (t)
			usleep(500000);
		size_t k = (size_t)t % s->naddrs;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct timeval tv = {.tv_sec = 10};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		if (connect(fd, (struct sockaddr *)&s->addrs[k], sizeof s->addrs[k]) < 0) {
			snprintf(why, sizeof why, "cannot connect to %s: %s", s->hosts[k],
				 strerror(errno));
			close(fd);
			continue;
		}
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		struct sbuf in;
		sbuf_init(&in);
		char *req = xasprintf(
		    "GET /v1/ca HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", s->hosts[k]);
		if (SSL_connect(ssl) != 1) {
			ssl_why(why, sizeof why, "TLS handshake");
		} else if (SSL_write(ssl, req, (int)strlen(req)) <= 0) {
			ssl_why(why, sizeof why, "TLS write");
		} else {
			char buf[4096];
			int n;
			while ((n = SSL_read(ssl, buf, sizeof buf)) > 0 && in.len < (1u << 20))
				sbuf_add(&in, buf, (size_t)n);
			ERR_clear_error();
			struct http_reply r;
			json_t *j = NULL;
			if (http_parse(in.buf, in.len, true, &r) == 1 && r.status == 200)
				j = json_loadb(r.body, r.body_len, 0, NULL);
			const char *pem = json_string_value(json_object_get(j, "ca"));
			if (pem)
				ca = xstrdup(pem);
			else
				snprintf(why, sizeof why, "GET /v1/ca from %s: no CA in the reply",
					 s->hosts[k]);
			json_decref(j);
		}
		free(req);
		sbuf_release(&in);
		SSL_free(ssl);
		close(fd);
	}
	SSL_CTX_free(ctx);
	if (!ca)
		log_error("cannot get the cluster CA: %s", why);
	return ca;
}

static int load_ca(struct sim *s, struct sim_tls *t)
{
	char *pem = NULL;
	size_t len = 0;
	const char *from = s->o.cacert;
	if (from) {
		int r = file_read_all(from, &pem, &len);
		if (r < 0) {
			log_error("cannot read --cacert '%s': %s", from, strerror(-r));
			return -1;
		}
	} else {
		pem = fetch_ca(s);
		if (!pem)
			return -1;
		len = strlen(pem);
		from = "GET /v1/ca";
	}
	X509 *ca = pem_cert(pem, len);
	free(pem);
	if (!ca) {
		log_error("'%s' holds no PEM certificate", from);
		return -1;
	}
	char fp[65];
	cert_fingerprint(ca, fp);
	if (strcmp(fp, t->cafp)) {
		log_error("the CA from '%s' (sha256 %.16s…) is not the cluster CA the join token "
			  "names (%.16s…): wrong token or wrong server",
			  from, fp, t->cafp);
		X509_free(ca);
		return -1;
	}
	X509_STORE_add_cert(SSL_CTX_get_cert_store(t->ctx), ca);
	X509_free(ca);
	return 0;
}

static int make_shared_key(struct sim_tls *t)
{
	struct berr err = {0};
	if (pki_key_new(&t->shared_pem, &err) < 0) {
		log_error("%s", err.msg);
		return -1;
	}
	BIO *b = BIO_new_mem_buf(t->shared_pem, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	int n = k ? i2d_PrivateKey(k, &t->shared_der) : -1;
	EVP_PKEY_free(k);
	if (n <= 0 || n > 65535) {
		log_error("cannot encode the shared key");
		return -1;
	}
	t->shared_len = (uint16_t)n;
	if (pki_csr_new(t->shared_pem, "berth-sim", &t->shared_csr, &err) < 0) {
		log_error("%s", err.msg);
		return -1;
	}
	return 0;
}

int sim_tls_init(struct sim *s)
{
	if (!s->o.join_token)
		return 0;
	struct sim_tls *t = xcalloc(1, sizeof *t);
	s->tls = t;
	if (token_cafp(s->o.join_token, t->cafp) < 0) {
		log_error("bad join token: expected bj1.CAFP.ID.SECRET (the content of "
			  "DATA/client/join.token)");
		return -1;
	}
	t->token = xstrdup(s->o.join_token);
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (!t->ctx) {
		log_error("cannot set up TLS");
		return -1;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				     SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Read ahead: a reply (two records, header and body) is one recv, not
	 * a 5-byte header read and a body read per record (5 syscalls per
	 * heartbeat, the simulator's largest cost at 10,000 agents). */
	SSL_CTX_set_read_ahead(t->ctx, 1);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	if (load_ca(s, t) < 0)
		return -1;
	if (s->o.shared_key && make_shared_key(t) < 0)
		return -1;
	return 0;
}

void sim_tls_free(struct sim *s)
{
	struct sim_tls *t = s->tls;
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	if (t->token)
		explicit_bzero(t->token, strlen(t->token));
	free(t->token);
	if (t->shared_pem)
		explicit_bzero(t->shared_pem, strlen(t->shared_pem));
	free(t->shared_pem);
	free(t->shared_csr);
	OPENSSL_clear_free(t->shared_der, t->shared_len);
	free(t);
	s->tls = NULL;
}

const char *sim_tls_join_token(const struct sim *s)
{
	return s->tls ? s->tls->token : NULL;
}

int sim_tls_open(struct sim *s, struct sim_agent *a, char *why, size_t n)
{
	struct sim_tls *t = s->tls;
	ERR_clear_error();
	SSL *ssl = SSL_new(t->ctx);
	if (!ssl) {
		ssl_why(why, n, "cannot start TLS");
		return -1;
	}
	a->ssl = ssl;
	SSL_set_fd(ssl, a->fd);
	/* The certificate must name the address dialled. */
	const char *host = s->names[a->server % s->naddrs];
	struct in_addr ip;
	if (inet_pton(AF_INET, host, &ip) == 1)
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	else
		SSL_set1_host(ssl, host);
	if (a->cert_der) {
		const unsigned char *kd = t->shared_der ? t->shared_der : a->key_der;
		long kl = t->shared_der ? t->shared_len : a->key_len;
		int ok = a->x509 ? SSL_use_certificate(ssl, a->x509)
				 : SSL_use_certificate_ASN1(ssl, a->cert_der, a->cert_len);
		if (ok == 1)
			ok = a->pkey && !t->shared_der
				 ? SSL_use_PrivateKey(ssl, a->pkey)
				 : SSL_use_PrivateKey_ASN1(EVP_PKEY_EC, ssl, kd, kl);
		sim_tls_drop_decoded(a); /* the connection holds its own references */
		if (ok != 1) {
			ssl_why(why, n, "cannot use the node certificate");
			return -1;
		}
	}
	return 0;
}

void sim_tls_drop_decoded(struct sim_agent *a)
{
	EVP_PKEY_free(a->pkey);
	X509_free(a->x509);
	a->pkey = NULL;
	a->x509 = NULL;
}

int sim_tls_handshake(struct sim_agent *a, char *why, size_t n)
{
	ERR_clear_error();
	int r = SSL_connect(a->ssl);
	if (r == 1)
		return 1;
	int e = SSL_get_error(a->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	long v = SSL_get_verify_result(a->ssl);
	if (v != X509_V_OK) {
		ERR_clear_error();
		snprintf(why, n, "TLS: the server's certificate: %s",
			 X509_verify_cert_error_string(v));
	} else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
		snprintf(why, n, "TLS handshake: %s",
			 errno ? strerror(errno) : "connection closed by the server");
	} else {
		ssl_why(why, n, "TLS handshake");
	}
	return -1;
}

static long io_error(struct sim_agent *a, int r, char *why, size_t n)
{
	int e = SSL_get_error(a->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return -EAGAIN;
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
		if (!errno)
			return 0;
		snprintf(why, n, "%s", strerror(errno));
	} else {
		ssl_why(why, n, "TLS");
	}
	return -EIO;
}

long sim_io_send(struct sim_agent *a, const char *buf, size_t len, char *why, size_t n)
{
	if (!a->ssl) {
		ssize_t k = send(a->fd, buf, len, MSG_NOSIGNAL);
		if (k >= 0)
			return (long)k;
		if (errno == EAGAIN || errno == EINTR)
			return -EAGAIN;
		snprintf(why, n, "%s", strerror(errno));
		return -EIO;
	}
	ERR_clear_error();
	int r = SSL_write(a->ssl, buf, len > (1u << 30) ? 1 << 30 : (int)len);
	if (r > 0)
		return r;
	long e = io_error(a, r, why, n);
	if (e == 0) {
		snprintf(why, n, "connection closed by the server");
		return -EIO;
	}
	return e;
}

long sim_io_recv(struct sim_agent *a, char *buf, size_t len, char *why, size_t n)
{
	if (!a->ssl) {
		for (;;) {
			ssize_t k = recv(a->fd, buf, len, 0);
			if (k >= 0)
				return (long)k;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return -EAGAIN;
			snprintf(why, n, "%s", strerror(errno));
			return -EIO;
		}
	}
	ERR_clear_error();
	int r = SSL_read(a->ssl, buf, len > (1u << 30) ? 1 << 30 : (int)len);
	return r > 0 ? r : io_error(a, r, why, n);
}

void sim_tls_close(struct sim_agent *a)
{
	/* No close_notify: the socket goes at once, as a dead agent's would. */
	SSL_free(a->ssl);
	a->ssl = NULL;
}

/* The agent's key (made at its first join, kept across renewals as DER):
 * the decoded one it still holds, else decoded from the DER, else a new
 * one. A new reference for the caller. */
static EVP_PKEY *agent_key(struct sim_agent *a, char *why, size_t n)
{
	if (a->pkey) {
		EVP_PKEY_up_ref(a->pkey);
		return a->pkey;
	}
	if (a->key_der) {
		const unsigned char *p = a->key_der;
		EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &p, a->key_len);
		if (!k)
			ssl_why(why, n, "cannot read the node key");
		return k;
	}
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	unsigned char *der = NULL;
	int len = k ? i2d_PrivateKey(k, &der) : -1;
	if (len <= 0 || len > 65535) {
		OPENSSL_free(der);
		EVP_PKEY_free(k);
		ssl_why(why, n, "cannot make a key");
		return NULL;
	}
	a->key_der = xmalloc((size_t)len);
	memcpy(a->key_der, der, (size_t)len);
	a->key_len = (uint16_t)len;
	OPENSSL_clear_free(der, (size_t)len);
	EVP_PKEY_up_ref(k);
	a->pkey = k; /* for the first mutual-TLS connection */
	return k;
}

/* A PEM certificate request for key k naming cn (what pki_csr_new makes,
 * without reading the key back from PEM). */
static char *csr_of(EVP_PKEY *k, const char *cn, char *why, size_t n)
{
	X509_REQ *rq = X509_REQ_new();
	char *pem = NULL;
	if (rq && X509_REQ_set_version(rq, 0) &&
	    X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(rq), NID_commonName, MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1, 0) &&
	    X509_REQ_set_pubkey(rq, k) && X509_REQ_sign(rq, k, EVP_sha256())) {
		BIO *b = BIO_new(BIO_s_mem());
		if (b && PEM_write_bio_X509_REQ(b, rq)) {
			char *data;
			long len = BIO_get_mem_data(b, &data);
			pem = xstrndup(data, (size_t)len);
		}
		BIO_free(b);
	}
	X509_REQ_free(rq);
	if (!pem)
		ssl_why(why, n, "cannot make the certificate request");
	return pem;
}

int sim_tls_csr_body(struct sim *s, struct sim_agent *a, struct sbuf *b, char *why, size_t n)
{
	char name[160];
	agent_name(s, a, name, sizeof name);
	char *csr = s->tls->shared_csr;
	if (!csr) {
		EVP_PKEY *k = agent_key(a, why, n);
		if (!k)
			return -1;
		csr = csr_of(k, name, why, n);
		EVP_PKEY_free(k);
		if (!csr)
			return -1;
	}
	sbuf_adds(b, "{\"name\":");
	json_strz(b, name);
	sbuf_adds(b, ",\"csr\":");
	json_strz(b, csr);
	sbuf_adds(b, "}");
	if (csr != s->tls->shared_csr)
		free(csr);
	return 0;
}

int sim_tls_take_cert(struct sim_loop *l, struct sim_agent *a, const char *body, size_t len,
		      char *why, size_t n)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	const char *pem = json_string_value(json_object_get(j, "cert"));
	json_int_t not_after = json_integer_value(json_object_get(j, "not_after"));
	X509 *x = pem ? pem_cert(pem, strlen(pem)) : NULL;
	json_decref(j);
	unsigned char *der = NULL;
	int dl = x ? i2d_X509(x, &der) : -1;
	if (dl <= 0 || dl > 65535 || not_after <= 0) {
		X509_free(x);
		OPENSSL_free(der);
		ERR_clear_error();
		snprintf(why, n, "no certificate in the reply");
		return -1;
	}
	X509_free(a->x509);
	a->x509 = x; /* for the next connection */
	free(a->cert_der);
	a->cert_der = xmalloc((size_t)dl);
	memcpy(a->cert_der, der, (size_t)dl);
	a->cert_len = (uint16_t)dl;
	OPENSSL_free(der);
	/* Renew when half the life left is gone (a slow or restarting server
	 * leaves time to try again), jittered by a tenth so that agents that
	 * joined together do not renew together. The watch in flight is cut
	 * short for it (build_watch). */
	int64_t left_ms = ((int64_t)not_after * 1000 - time_now_ms());
	if (left_ms < 1000)
		left_ms = 1000;
	int64_t at = left_ms / 2;
	at -= (int64_t)(rnd_next(l) % (uint32_t)(at / 10 + 1));
	a->renew_ms = time_mono_ms() + at;
	return 0;
}

void sim_tls_forget(struct sim *s, struct sim_agent *a)
{
	(void)s;
	sim_tls_drop_decoded(a);
	free(a->cert_der);
	a->cert_der = NULL;
	a->cert_len = 0;
	a->renew_ms = 0;
}
