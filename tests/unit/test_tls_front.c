/* test_tls_front.c - the agent listener's TLS front against an OpenSSL
 * client and an echoing "daemon": bytes both ways, byte for byte; a new
 * certificate for new connections only; a stop that ends open and
 * half-open connections at once; a client that does not speak TLS. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/tls_front.h"
#include "core/pki.h"
#include "unit.h"

struct certs {
	char *ca, *cakey, *cert, *key;
};

static void certs_make(struct certs *c, const char *cn)
{
	struct berr err = {0};
	char *csr = NULL;
	CHECK(pki_ca_new("berth test CA", 3600, &c->ca, &c->cakey, &err) == 0);
	CHECK(pki_key_new(&c->key, &err) == 0);
	CHECK(pki_csr_new(c->key, cn, &csr, &err) == 0);
	struct pki_issue what = {
	    .cn = cn, .ou = "node", .sans = "IP:127.0.0.1", .ttl_s = 3600, .server_auth = true};
	CHECK(pki_issue(c->ca, c->cakey, csr, &what, &c->cert, &err) == 0);
	free(csr);
}

static void certs_free(struct certs *c)
{
	free(c->ca);
	free(c->cakey);
	free(c->cert);
	free(c->key);
}

/* The "daemon": each handed-over connection is echoed until its EOF. */
static int handoffs;

static void *echo_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, -1);
		ssize_t n = read(fd, buf, sizeof buf);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		for (ssize_t off = 0; n > 0 && off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w > 0) {
				off += w;
			} else {
				struct pollfd q = {.fd = fd, .events = POLLOUT};
				poll(&q, 1, -1);
			}
		}
	}
	close(fd);
	return NULL;
}

static void echo_handoff(void *cls, int fd, const struct sockaddr *peer, socklen_t len)
{
	(void)cls;
	CHECK(peer->sa_family == AF_INET && len == sizeof(struct sockaddr_in));
	__atomic_add_fetch(&handoffs, 1, __ATOMIC_SEQ_CST);
	pthread_t t;
	pthread_create(&t, NULL, echo_main, (void *)(intptr_t)fd);
	pthread_detach(t);
}

static int listen_any(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sa;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	*port = ntohs(sa.sin_port);
	return fd;
}

static int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A TLS client that trusts ca_pem only. */
static SSL *tls_dial(int port, const char *ca_pem, SSL_CTX **ctx_out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	BIO *b = BIO_new_mem_buf(ca_pem, -1);
	X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
	X509_free(ca);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	*ctx_out = ctx;
	int fd = dial(port);
	if (fd < 0)
		return NULL;
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		SSL_free(ssl);
		close(fd);
		return NULL;
	}
	return ssl;
}

static void tls_close(SSL *ssl, SSL_CTX *ctx)
{
	if (ssl) {
		int fd = SSL_get_fd(ssl);
		SSL_free(ssl);
		close(fd);
	}
	SSL_CTX_free(ctx);
}

/* The common name of the certificate the server showed. */
static void peer_cn(SSL *ssl, char *cn, size_t n)
{
	cn[0] = 0;
	X509 *x = SSL_get1_peer_certificate(ssl);
	if (x)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, (int)n);
	X509_free(x);
}

/* Send len bytes in pieces of 64 KiB, reading each piece's echo back. */
static bool echo_round_trip(SSL *ssl, size_t len)
{
	static uint8_t out[65536], in[65536];
	size_t sent = 0;
	bool same = true;
	while (sent < len) {
		size_t n = len - sent < sizeof out ? len - sent : sizeof out;
		for (size_t i = 0; i < n; i++)
			out[i] = (uint8_t)((sent + i) * 2654435761u >> 13);
		if (SSL_write(ssl, out, (int)n) != (int)n)
			return false;
		size_t got = 0;
		while (got < n) {
			int r = SSL_read(ssl, in + got, (int)(n - got));
			if (r <= 0)
				return false;
			got += (size_t)r;
		}
		same = same && !memcmp(in, out, n);
		sent += n;
	}
	return same;
}

TEST(relays_both_ways_byte_for_byte)
{
	struct certs c;
	certs_make(&c, "n1");
	int port, lfd = listen_any(&port);
	struct berr err = {0};
	struct tls_front *f = tls_front_start(lfd, c.cert, c.key, echo_handoff, NULL, &err);
	CHECK(f != NULL);
	SSL_CTX *ctx;
	SSL *ssl = tls_dial(port, c.ca, &ctx);
	CHECK(ssl != NULL);
	if (ssl) {
		char cn[64];
		peer_cn(ssl, cn, sizeof cn);
		CHECK_STR(cn, "n1");
		CHECK(echo_round_trip(ssl, 8u << 20));
	}
	tls_close(ssl, ctx);
	tls_front_stop(f);
	close(lfd);
	CHECK(handoffs == 1);
	certs_free(&c);
}

TEST(a_new_certificate_serves_new_connections)
{
	struct certs c1, c2;
	certs_make(&c1, "old");
	certs_make(&c2, "new");
	int port, lfd = listen_any(&port);
	struct berr err = {0};
	struct tls_front *f = tls_front_start(lfd, c1.cert, c1.key, echo_handoff, NULL, &err);
	CHECK(f != NULL);
	SSL_CTX *ctx1, *ctx2;
	SSL *before = tls_dial(port, c1.ca, &ctx1);
	CHECK(before != NULL);
	/* A certificate gnutls cannot use is refused; the old one stays. */
	CHECK(tls_front_set_cert(f, "not a certificate", c2.key, &err) < 0);
	CHECK_CONTAINS(err.msg, "node certificate");
	CHECK(tls_front_set_cert(f, c2.cert, c2.key, &err) == 0);
	SSL *after = tls_dial(port, c2.ca, &ctx2);
	CHECK(after != NULL);
	char cn[64];
	if (after) {
		peer_cn(after, cn, sizeof cn);
		CHECK_STR(cn, "new");
		CHECK(echo_round_trip(after, 100000));
	}
	/* The connection made before goes on with its certificate. */
	if (before) {
		peer_cn(before, cn, sizeof cn);
		CHECK_STR(cn, "old");
		CHECK(echo_round_trip(before, 100000));
	}
	tls_close(before, ctx1);
	tls_close(after, ctx2);
	tls_front_stop(f);
	close(lfd);
	certs_free(&c1);
	certs_free(&c2);
}

TEST(stop_ends_open_and_half_open_connections)
{
	struct certs c;
	certs_make(&c, "n1");
	int port, lfd = listen_any(&port);
	struct berr err = {0};
	struct tls_front *f = tls_front_start(lfd, c.cert, c.key, echo_handoff, NULL, &err);
	CHECK(f != NULL);
	SSL_CTX *ctx;
	SSL *ssl = tls_dial(port, c.ca, &ctx);
	CHECK(ssl != NULL);
	CHECK(ssl && echo_round_trip(ssl, 1000));
	int silent = dial(port); /* connected, never says hello */
	CHECK(silent >= 0);
	usleep(100000);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tls_front_stop(f);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(s < 2); /* not the handshake's 10 s, not the daemon's idle timeout */
	/* The client sees its connection end. */
	char b;
	CHECK(ssl && SSL_read(ssl, &b, 1) <= 0);
	tls_close(ssl, ctx);
	close(silent);
	close(lfd);
	certs_free(&c);
}

TEST(a_client_that_is_not_tls_is_closed)
{
	struct certs c;
	certs_make(&c, "n1");
	int port, lfd = listen_any(&port);
	struct berr err = {0};
	struct tls_front *f = tls_front_start(lfd, c.cert, c.key, echo_handoff, NULL, &err);
	CHECK(f != NULL);
	int fd = dial(port);
	const char req[] = "GET /v1/logs/x HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK(write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
	char buf[256];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		;		/* a TLS alert, maybe */
	CHECK(n == 0 || n < 0); /* closed, never handed over */
	CHECK(handoffs == 0);
	close(fd);
	tls_front_stop(f);
	close(lfd);
	certs_free(&c);
}

UNIT_MAIN(relays_both_ways_byte_for_byte, a_new_certificate_serves_new_connections,
	  stop_ends_open_and_half_open_connections, a_client_that_is_not_tls_is_closed)
