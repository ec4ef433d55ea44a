/* tls_front.c - TLS in front of the agent's listener (tls_front.h). */
#include "agent/tls_front.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* A TLS record's largest plaintext: what one read of the plain side takes,
 * what one record carries. */
#define FRONT_CHUNK 16384

/* A certificate and key, shared by the connections that started with it. */
struct front_cred {
	gnutls_certificate_credentials_t creds;
	int refs; /* under tls_front.lock */
};

struct front_conn {
	struct tls_front *f;
	struct front_cred *cred; /* set before the thread starts, then read-only */
	int tcp;		 /* the client's connection */
	int plain;		 /* our end of the socketpair; -1 before the handoff */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	struct front_conn *prev, *next; /* tls_front.conns */
};

struct tls_front {
	int listen_fd;
	int stop_pipe[2];
	pthread_t acceptor;
	tls_front_handoff_fn handoff;
	void *cls;
	pthread_mutex_t lock; /* cred, conns, nconns, stopping, warned */
	pthread_cond_t idle;  /* nconns went to 0 */
	struct front_cred *cred;
	struct front_conn *conns;
	int nconns;
	bool stopping;
	bool warned; /* at TLS_FRONT_MAX_CONNS, said once */
};

/* ---- certificates ----------------------------------------------------------- */

static struct front_cred *cred_new(const char *cert_pem, const char *key_pem, struct berr *err)
{
	struct front_cred *c = xcalloc(1, sizeof *c);
	gnutls_datum_t cert = {.data = (unsigned char *)cert_pem, .size = strlen(cert_pem)};
	gnutls_datum_t key = {.data = (unsigned char *)key_pem, .size = strlen(key_pem)};
	int r = gnutls_certificate_allocate_credentials(&c->creds);
	if (r >= 0)
		r = gnutls_certificate_set_x509_key_mem(c->creds, &cert, &key, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		if (c->creds)
			gnutls_certificate_free_credentials(c->creds);
		free(c);
		berr_set(err, 500, "cannot serve TLS with the node certificate: %s",
			 gnutls_strerror(r));
		return NULL;
	}
	c->refs = 1;
	return c;
}

/* Under tls_front.lock. */
static void cred_unref(struct front_cred *c)
{
	if (--c->refs > 0)
		return;
	gnutls_certificate_free_credentials(c->creds);
	free(c);
}

/* ---- one connection ------------------------------------------------------------ */

static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r;
	while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	return r;
}

static int conn_handshake(struct front_conn *c, gnutls_session_t *out)
{
	gnutls_session_t s;
	if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0)
		return -1;
	*out = s;
	if (gnutls_set_default_priority(s) < 0 ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->cred->creds) < 0)
		return -1;
	gnutls_transport_set_int(s, c->tcp);
	int64_t deadline = time_mono_ms() + TLS_FRONT_HANDSHAKE_MS;
	for (;;) {
		int r = gnutls_handshake(s);
		if (r == GNUTLS_E_SUCCESS)
			return 0;
		if (gnutls_error_is_fatal(r)) {
			log_debug("listener: a TLS handshake failed: %s", gnutls_strerror(r));
			return -1;
		}
		int64_t left = deadline - time_mono_ms();
		short ev = gnutls_record_get_direction(s) ? POLLOUT : POLLIN;
		if (left <= 0 || wait_fd(c->tcp, ev, (int)left) <= 0)
			return -1;
	}
}

/* Give the daemon the plain end of a socketpair; ours is c->plain. */
static int conn_handoff(struct front_conn *c)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0) {
		log_warn("listener: socketpair: %s", strerror(errno));
		return -1;
	}
	/* Published under the lock: tls_front_stop either shuts it down or
	 * we see that it stops (and the daemon never gets the other end). */
	pthread_mutex_lock(&c->f->lock);
	c->plain = sp[0];
	bool stopping = c->f->stopping;
	pthread_mutex_unlock(&c->f->lock);
	if (stopping) {
		close(sp[1]);
		return -1;
	}
	c->f->handoff(c->f->cls, sp[1], (struct sockaddr *)&c->peer, c->peer_len);
	return 0;
}

/* Bytes on their way from one side to the other: at most one chunk. */
struct leg {
	uint8_t buf[FRONT_CHUNK];
	size_t len, off;
};

static void leg_filled(struct leg *l, size_t n, bool *moved)
{
	l->len = n;
	l->off = 0;
	*moved = true;
}

static void leg_sent(struct leg *l, size_t n, bool *moved)
{
	l->off += n;
	if (l->off == l->len)
		l->len = 0;
	*moved = true;
}

/* client -> daemon. Sets *moved on progress; -1 when the daemon is gone. */
static int pump_in(struct front_conn *c, gnutls_session_t s, struct leg *l, bool *tls_open,
		   bool *moved)
{
	if (*tls_open && !l->len) {
		ssize_t r = gnutls_record_recv(s, l->buf, sizeof l->buf);
		if (r > 0)
			leg_filled(l, (size_t)r, moved);
		else if (r == 0 || gnutls_error_is_fatal((int)r)) {
			/* The client is done sending: the daemon sees EOF (an
			 * exec session takes it as the client gone). */
			*tls_open = false;
			shutdown(c->plain, SHUT_WR);
			*moved = true;
		}
	}
	if (l->len) {
		ssize_t w = send(c->plain, l->buf + l->off, l->len - l->off, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (w > 0)
			leg_sent(l, (size_t)w, moved);
	}
	return 0;
}

/* daemon -> client. Sets *moved on progress; -1 when either side is done. */
static int pump_out(struct front_conn *c, gnutls_session_t s, struct leg *l, bool *moved)
{
	if (!l->len) {
		ssize_t r = read(c->plain, l->buf, sizeof l->buf);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return -1; /* the daemon closed the connection */
		if (r > 0)
			leg_filled(l, (size_t)r, moved);
	}
	if (l->len) {
		/* After GNUTLS_E_AGAIN, the same bytes again: gnutls wants that. */
		ssize_t w = gnutls_record_send(s, l->buf + l->off, l->len - l->off);
		if (w < 0 && gnutls_error_is_fatal((int)w))
			return -1;
		if (w > 0)
			leg_sent(l, (size_t)w, moved);
	}
	return 0;
}

/* Relay until the daemon closes its end or the client cannot be written
 * to. Both sockets are non-blocking; poll waits only for what would let a
 * side move (a socket with nothing to wait for is left out, else its
 * hang-up would spin the loop). */
static void conn_relay(struct front_conn *c, gnutls_session_t s)
{
	struct leg *in = xmalloc(sizeof *in), *out = xmalloc(sizeof *out);
	in->len = out->len = 0;
	bool tls_open = true;
	for (;;) {
		bool moved = false;
		if (pump_in(c, s, in, &tls_open, &moved) < 0 || pump_out(c, s, out, &moved) < 0)
			break;
		if (moved)
			continue;
		short tev = (short)((tls_open && !in->len ? POLLIN : 0) | (out->len ? POLLOUT : 0));
		short pev = (short)((in->len ? POLLOUT : 0) | (!out->len ? POLLIN : 0));
		struct pollfd p[2] = {{.fd = tev ? c->tcp : -1, .events = tev},
				      {.fd = pev ? c->plain : -1, .events = pev}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
	}
	if (!out->len)
		gnutls_bye(s, GNUTLS_SHUT_WR); /* close_notify, if it goes at once */
	free(in);
	free(out);
}

static void conn_end(struct front_conn *c)
{
	struct tls_front *f = c->f;
	pthread_mutex_lock(&f->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		f->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	cred_unref(c->cred);
	if (--f->nconns == 0)
		pthread_cond_broadcast(&f->idle);
	pthread_mutex_unlock(&f->lock);
	/* Not in the list any more: tls_front_stop no longer touches them. */
	close(c->tcp);
	if (c->plain >= 0)
		close(c->plain);
	free(c);
}

static void *conn_main(void *arg)
{
	struct front_conn *c = arg;
	gnutls_session_t s = NULL;
	if (conn_handshake(c, &s) == 0 && conn_handoff(c) == 0)
		conn_relay(c, s);
	if (s)
		gnutls_deinit(s);
	conn_end(c);
	return NULL;
}

/* ---- accepting ----------------------------------------------------------------- */

static void conn_start(struct tls_front *f, int fd, const struct sockaddr_storage *peer,
		       socklen_t peer_len)
{
	/* Records go out whole; Nagle would hold a frame's tail (an exit
	 * status, a terminal's echo) for the client's delayed ACK. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct front_conn *c = xcalloc(1, sizeof *c);
	c->f = f;
	c->tcp = fd;
	c->plain = -1;
	memcpy(&c->peer, peer, peer_len);
	c->peer_len = peer_len;
	pthread_mutex_lock(&f->lock);
	if (f->nconns >= TLS_FRONT_MAX_CONNS) {
		if (!f->warned)
			log_warn("listener: %d connections at once: closing new ones",
				 TLS_FRONT_MAX_CONNS);
		f->warned = true;
		pthread_mutex_unlock(&f->lock);
		close(fd);
		free(c);
		return;
	}
	f->warned = false;
	c->cred = f->cred;
	c->cred->refs++;
	c->next = f->conns;
	if (f->conns)
		f->conns->prev = c;
	f->conns = c;
	f->nconns++;
	pthread_mutex_unlock(&f->lock);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t th;
	if (pthread_create(&th, &attr, conn_main, c) != 0) {
		log_warn("listener: cannot start a connection's thread");
		conn_end(c);
	}
	pthread_attr_destroy(&attr);
}

static void *accept_main(void *arg)
{
	struct tls_front *f = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = f->listen_fd, .events = POLLIN},
				      {.fd = f->stop_pipe[0], .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("listener: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		struct sockaddr_storage peer;
		socklen_t len = sizeof peer;
		int fd = accept4(f->listen_fd, (struct sockaddr *)&peer, &len,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			conn_start(f, fd, &peer, len);
		} else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			   errno == ENOMEM) {
			/* Out of descriptors: the backlog waits a little. */
			wait_fd(f->stop_pipe[0], POLLIN, 100);
		}
	}
	return NULL;
}

/* ---- the front ----------------------------------------------------------------- */

struct tls_front *tls_front_start(int listen_fd, const char *cert_pem, const char *key_pem,
				  tls_front_handoff_fn handoff, void *cls, struct berr *err)
{
	struct front_cred *cred = cred_new(cert_pem, key_pem, err);
	if (!cred)
		return NULL;
	struct tls_front *f = xcalloc(1, sizeof *f);
	f->listen_fd = listen_fd;
	f->handoff = handoff;
	f->cls = cls;
	f->cred = cred;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->idle, NULL);
	/* One acceptor, but a connection reset between poll and accept must
	 * not block it. */
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	if (pipe2(f->stop_pipe, O_CLOEXEC) < 0) {
		berr_set(err, 500, "pipe: %s", strerror(errno));
		f->stop_pipe[0] = f->stop_pipe[1] = -1;
		goto fail;
	}
	if (pthread_create(&f->acceptor, NULL, accept_main, f) != 0) {
		berr_set(err, 500, "cannot start the listener's thread");
		close(f->stop_pipe[0]);
		close(f->stop_pipe[1]);
		goto fail;
	}
	return f;
fail:
	cred_unref(f->cred);
	pthread_cond_destroy(&f->idle);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return NULL;
}

int tls_front_set_cert(struct tls_front *f, const char *cert_pem, const char *key_pem,
		       struct berr *err)
{
	struct front_cred *cred = cred_new(cert_pem, key_pem, err);
	if (!cred)
		return -1;
	pthread_mutex_lock(&f->lock);
	cred_unref(f->cred);
	f->cred = cred;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void tls_front_stop(struct tls_front *f)
{
	if (!f)
		return;
	if (write(f->stop_pipe[1], "x", 1) < 0)
		log_warn("listener: cannot signal its thread to stop: %s", strerror(errno));
	pthread_join(f->acceptor, NULL);
	pthread_mutex_lock(&f->lock);
	f->stopping = true;
	/* Every poll of a connection's thread wakes on the shutdown. */
	for (struct front_conn *c = f->conns; c; c = c->next) {
		shutdown(c->tcp, SHUT_RDWR);
		if (c->plain >= 0)
			shutdown(c->plain, SHUT_RDWR);
	}
	while (f->nconns > 0)
		pthread_cond_wait(&f->idle, &f->lock);
	cred_unref(f->cred);
	pthread_mutex_unlock(&f->lock);
	close(f->stop_pipe[0]);
	close(f->stop_pipe[1]);
	pthread_cond_destroy(&f->idle);
	pthread_mutex_destroy(&f->lock);
	free(f);
}
