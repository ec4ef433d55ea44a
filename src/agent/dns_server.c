/* dns_server.c - the agent's name server (dns_server.h).
 *
 * One thread around poll():
 *
 *   udp  ──query──► berth name? ──yes──► answer from the endpoints table
 *   tcp  ──query──►      │
 *                        no ──► forward: new id, kept in `fwd` with the
 *                               client and a deadline, sent to upstream k
 *   up   ◄─answer── the id and the upstream's address must match; the
 *                   client's id is put back and the answer relayed
 *   deadline passed: upstream k+1, or SERVFAIL after the last one
 *
 * The thread never blocks but in poll(); a TCP client whose answer cannot
 * be written at once is dropped (answers are small; clients retry).
 */
#include "agent/dns_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/log.h"

#define MAX_FORWARDS 512
#define MAX_TCP 64
#define TCP_IDLE_MS 10000
#define TCP_MSG_MAX 4096
#define BERTH_TTL 0

struct forward {
	bool used;
	uint16_t id, client_id;
	struct sockaddr_in client; /* UDP client */
	int tcp;		   /* TCP client: index in tcp[] + 1, 0 for UDP */
	unsigned tcp_gen;
	size_t upstream;
	int64_t deadline;
	uint8_t *query;
	size_t len;
};

struct tcp_conn {
	int fd; /* -1: free */
	unsigned gen;
	uint8_t *in; /* 2 + TCP_MSG_MAX bytes while open (an idle server keeps none) */
	size_t nin;
	int64_t idle_deadline;
};

struct dns_server {
	struct endpoints *endpoints;
	int udp, tcp_listen, up;
	int wake[2];
	struct sockaddr_in listen;
	char address[INET_ADDRSTRLEN];
	char upstream_text[DNS_MAX_UPSTREAMS * 24 + 8];
	struct sockaddr_in upstreams[DNS_MAX_UPSTREAMS];
	size_t nupstreams;
	struct forward fwd[MAX_FORWARDS];
	size_t nfwd;
	struct tcp_conn tcp[MAX_TCP];
	uint64_t rnd;
	pthread_t thread;
	bool started;
};

/* ---- berth names ---------------------------------------------------------- */

#define BERTH_SUFFIX ".berth"

struct name_parts {
	char key[ENDPOINT_KEY_MAX];  /* ROLE/ENV/NAME */
	char base[DNS_NAME_MAX + 1]; /* NAME.ENV.ROLE.berth, as the client wrote it */
	int instance;		     /* -1: the job */
	char port[64];		     /* SRV: the port's name, "" otherwise */
};

/* The labels of name, up to max (pointers into a copy in buf). */
static size_t split_labels(char *buf, char **labels, size_t max)
{
	size_t n = 0;
	for (char *p = buf; p && n < max;) {
		labels[n++] = p;
		char *dot = strchr(p, '.');
		if (dot)
			*dot++ = 0;
		p = dot;
	}
	return n;
}

static bool parse_instance(const char *s, int *out)
{
	if (!*s || strlen(s) > 7 || (s[0] == '0' && s[1]))
		return false;
	int v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return true;
}

/* What a name under .berth asks for; false when it has no valid shape. */
static bool name_parse(const struct dns_query *q, struct name_parts *np)
{
	char buf[DNS_NAME_MAX + 1];
	char *l[8];
	memcpy(buf, q->name, sizeof buf);
	size_t n = split_labels(buf, l, 8);
	memset(np, 0, sizeof *np);
	np->instance = -1;
	if (n < 4 || strcmp(l[n - 1], "berth"))
		return false;
	/* ... NAME . ENV . ROLE . berth */
	int w = snprintf(np->key, sizeof np->key, "%s/%s/%s", l[n - 2], l[n - 3], l[n - 4]);
	if (w < 0 || (size_t)w >= sizeof np->key)
		return false;
	size_t extra = n - 4;
	if (extra == 0) {
	} else if (extra == 1) {
		if (!parse_instance(l[0], &np->instance))
			return false;
	} else if (extra == 2) {
		if (l[0][0] != '_' || !l[0][1] || strcmp(l[1], "_tcp") ||
		    strlen(l[0] + 1) >= sizeof np->port)
			return false;
		snprintf(np->port, sizeof np->port, "%s", l[0] + 1);
	} else {
		return false;
	}
	/* The base name as the client wrote it (the last four labels). */
	const char *e = q->echo;
	for (size_t i = 0; i < extra; i++)
		e = strchr(e, '.') + 1;
	snprintf(np->base, sizeof np->base, "%s", e);
	return true;
}

struct collect {
	struct in_addr addr[64];
	int instance[64];
	int port[64];
	size_t n;
	const struct name_parts *np;
};

static void collect_endpoint(void *ud, const char *key, const struct endpoint *e)
{
	(void)key;
	struct collect *c = ud;
	struct in_addr a;
	if (c->n >= 64 || !*e->address || inet_pton(AF_INET, e->address, &a) != 1)
		return;
	if (c->np->instance >= 0 && e->instance != c->np->instance)
		return;
	int port = 0;
	if (*c->np->port && (port = endpoint_port(e, c->np->port)) < 0)
		return;
	c->addr[c->n] = a;
	c->instance[c->n] = e->instance;
	c->port[c->n] = port;
	c->n++;
}

size_t dns_answer_berth(struct endpoints *t, const struct dns_query *q, uint8_t *buf, size_t cap)
{
	size_t nl = strlen(q->name);
	if (strcmp(q->name, "berth") &&
	    (nl < sizeof BERTH_SUFFIX ||
	     strcmp(q->name + nl - (sizeof BERTH_SUFFIX - 1), BERTH_SUFFIX)))
		return 0;
	struct dns_writer w;
	struct name_parts np;
	struct collect c = {.np = &np};
	int njob = -1;
	if (name_parse(q, &np))
		njob = endpoints_each(t, np.key, collect_endpoint, &c);
	/* An instance or a port that no RUNNING instance has: no such name. */
	bool exists = njob >= 0 && (np.instance < 0 && !*np.port ? true : c.n > 0);
	if (q->qclass != 1 && q->qclass != 255)
		exists = false;
	dns_reply_begin(&w, buf, cap, q, exists ? DNS_NOERROR : DNS_NXDOMAIN, true);
	bool any = q->qtype == DNS_TYPE_ANY;
	if (exists && !*np.port && (q->qtype == DNS_TYPE_A || any)) {
		for (size_t i = 0; i < c.n; i++) {
			bool dup = false; /* two instances behind one address */
			for (size_t k = 0; k < i; k++)
				dup |= c.addr[k].s_addr == c.addr[i].s_addr;
			if (!dup)
				dns_reply_a(&w, DNS_ANSWER, q->echo, BERTH_TTL, c.addr[i]);
		}
	} else if (exists && *np.port && (q->qtype == DNS_TYPE_SRV || any)) {
		char target[DNS_NAME_MAX + 1];
		for (size_t i = 0; i < c.n; i++) {
			snprintf(target, sizeof target, "%d.%s", c.instance[i], np.base);
			dns_reply_srv(&w, DNS_ANSWER, q->echo, BERTH_TTL, 0, 0, (uint16_t)c.port[i],
				      target);
		}
		for (size_t i = 0; i < c.n && !w.truncated; i++) {
			snprintf(target, sizeof target, "%d.%s", c.instance[i], np.base);
			dns_reply_a(&w, DNS_ADDITIONAL, target, BERTH_TTL, c.addr[i]);
		}
	}
	if (q->edns)
		dns_reply_opt(&w, DNS_UDP_MAX);
	return dns_reply_finish(&w);
}

/* ---- upstreams ------------------------------------------------------------ */

size_t dns_parse_resolv_conf(const char *text, struct sockaddr_in *out, size_t max)
{
	size_t n = 0;
	const char *p = text;
	while (p && *p && n < max) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[256];
		if (len < sizeof line) {
			memcpy(line, p, len);
			line[len] = 0;
			char kw[32], ip[64];
			if (sscanf(line, " %31s %63s", kw, ip) == 2 && !strcmp(kw, "nameserver")) {
				struct sockaddr_in a = {.sin_family = AF_INET,
							.sin_port = htons(53)};
				if (inet_pton(AF_INET, ip, &a.sin_addr) == 1)
					out[n++] = a;
			}
		}
		p = eol ? eol + 1 : NULL;
	}
	return n;
}

static int load_upstreams(struct dns_server *s, const struct dns_server_options *o,
			  struct berr *err)
{
	if (o->nupstreams) {
		for (size_t i = 0; i < o->nupstreams && s->nupstreams < DNS_MAX_UPSTREAMS; i++) {
			const char *u = o->upstreams[i];
			char *full = strchr(u, ':') ? xstrdup(u) : xasprintf("%s:53", u);
			int r = addr_parse(full, &s->upstreams[s->nupstreams], err);
			free(full);
			if (r < 0)
				return berr_prefix(err, "--dns-upstream");
			s->nupstreams++;
		}
	} else {
		const char *path = o->resolv_conf ? o->resolv_conf : "/etc/resolv.conf";
		char *text = NULL;
		FILE *f = fopen(path, "r");
		if (f) {
			size_t cap = 0;
			ssize_t r = getdelim(&text, &cap, 0, f);
			if (r < 0) {
				free(text);
				text = NULL;
			}
			fclose(f);
		}
		s->nupstreams =
		    text ? dns_parse_resolv_conf(text, s->upstreams, DNS_MAX_UPSTREAMS) : 0;
		free(text);
	}
	/* Never forward to ourselves (a resolv.conf already pointing here). */
	size_t k = 0;
	for (size_t i = 0; i < s->nupstreams; i++)
		if (!(s->upstreams[i].sin_addr.s_addr == s->listen.sin_addr.s_addr &&
		      s->upstreams[i].sin_port == s->listen.sin_port))
			s->upstreams[k++] = s->upstreams[i];
	s->nupstreams = k;
	size_t off = 0;
	s->upstream_text[0] = 0;
	for (size_t i = 0; i < k; i++) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &s->upstreams[i].sin_addr, ip, sizeof ip);
		off +=
		    (size_t)snprintf(s->upstream_text + off, sizeof s->upstream_text - off,
				     "%s%s:%d", i ? ", " : "", ip, ntohs(s->upstreams[i].sin_port));
	}
	if (!k)
		snprintf(s->upstream_text, sizeof s->upstream_text, "none");
	return 0;
}

/* ---- the loop ------------------------------------------------------------- */

static uint16_t next_id(struct dns_server *s)
{
	/* xorshift64*, seeded from getrandom: ids a task cannot guess. */
	s->rnd ^= s->rnd >> 12;
	s->rnd ^= s->rnd << 25;
	s->rnd ^= s->rnd >> 27;
	return (uint16_t)((s->rnd * 2685821657736338717ULL) >> 48);
}

static void tcp_close(struct tcp_conn *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	free(t->in);
	t->in = NULL;
	t->nin = 0;
	t->gen++;
}

static void send_tcp(struct tcp_conn *t, const uint8_t *msg, size_t len)
{
	uint8_t buf[2 + 65535];
	if (t->fd < 0 || len > 65535)
		return;
	buf[0] = (uint8_t)(len >> 8);
	buf[1] = (uint8_t)len;
	memcpy(buf + 2, msg, len);
	ssize_t w = send(t->fd, buf, len + 2, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w != (ssize_t)(len + 2))
		tcp_close(t); /* cannot take it at once: drop the client */
}

/* Send an answer to a forward's client. */
static void forward_reply(struct dns_server *s, struct forward *f, uint8_t *msg, size_t len)
{
	msg[0] = (uint8_t)(f->client_id >> 8);
	msg[1] = (uint8_t)f->client_id;
	if (f->tcp) {
		struct tcp_conn *t = &s->tcp[f->tcp - 1];
		if (t->gen == f->tcp_gen)
			send_tcp(t, msg, len);
	} else {
		sendto(s->udp, msg, len, MSG_DONTWAIT, (struct sockaddr *)&f->client,
		       sizeof f->client);
	}
}

static void forward_free(struct dns_server *s, struct forward *f)
{
	free(f->query);
	memset(f, 0, sizeof *f);
	s->nfwd--;
}

static void forward_fail(struct dns_server *s, struct forward *f)
{
	uint8_t buf[DNS_HEADER_SIZE + DNS_NAME_MAX + 16];
	struct dns_query q;
	enum dns_parse_result r = dns_query_parse(f->query, f->len, &q);
	struct dns_writer w;
	dns_reply_begin(&w, buf, sizeof buf, &q, DNS_SERVFAIL, r == DNS_PARSE_OK);
	size_t len = dns_reply_finish(&w);
	forward_reply(s, f, buf, len);
	forward_free(s, f);
}

static void forward_send(struct dns_server *s, struct forward *f)
{
	f->query[0] = (uint8_t)(f->id >> 8);
	f->query[1] = (uint8_t)f->id;
	f->deadline = time_mono_ms() + DNS_FORWARD_TIMEOUT_MS;
	sendto(s->up, f->query, f->len, MSG_DONTWAIT, (struct sockaddr *)&s->upstreams[f->upstream],
	       sizeof s->upstreams[f->upstream]);
}

static void forward_start(struct dns_server *s, const struct dns_query *q, const uint8_t *msg,
			  size_t len, const struct sockaddr_in *client, int tcp)
{
	struct forward *f = NULL;
	for (size_t i = 0; i < MAX_FORWARDS && !f; i++)
		if (!s->fwd[i].used)
			f = &s->fwd[i];
	uint8_t buf[DNS_HEADER_SIZE + DNS_NAME_MAX + 16];
	if (!f || !s->nupstreams) {
		/* Nobody to ask, or too much in flight: SERVFAIL now. */
		struct dns_writer w;
		dns_reply_begin(&w, buf, sizeof buf, q, DNS_SERVFAIL, true);
		size_t n = dns_reply_finish(&w);
		struct forward tmp = {.client_id = q->id, .tcp = tcp};
		if (client)
			tmp.client = *client;
		if (tcp)
			tmp.tcp_gen = s->tcp[tcp - 1].gen;
		forward_reply(s, &tmp, buf, n);
		return;
	}
	memset(f, 0, sizeof *f);
	f->used = true;
	s->nfwd++;
	f->client_id = q->id;
	if (client)
		f->client = *client;
	f->tcp = tcp;
	if (tcp)
		f->tcp_gen = s->tcp[tcp - 1].gen;
	f->query = xmalloc(len);
	memcpy(f->query, msg, len);
	f->len = len;
	/* An id no other query in flight has. */
	for (;;) {
		f->id = next_id(s);
		bool taken = false;
		for (size_t i = 0; i < MAX_FORWARDS; i++)
			taken |= s->fwd[i].used && &s->fwd[i] != f && s->fwd[i].id == f->id;
		if (!taken)
			break;
	}
	forward_send(s, f);
}

/* One query from a client (UDP: client set; TCP: tcp = index + 1). */
static void handle_query(struct dns_server *s, const uint8_t *msg, size_t len,
			 const struct sockaddr_in *client, int tcp)
{
	struct dns_query q;
	enum dns_parse_result r = dns_query_parse(msg, len, &q);
	if (r == DNS_PARSE_DROP)
		return;
	uint8_t out[TCP_MSG_MAX];
	size_t n = 0;
	if (r != DNS_PARSE_OK) {
		struct dns_writer w;
		dns_reply_begin(&w, out, sizeof out, &q,
				r == DNS_PARSE_NOTIMP ? DNS_NOTIMP : DNS_FORMERR, false);
		n = dns_reply_finish(&w);
	} else {
		size_t cap = tcp ? sizeof out : q.udp_size;
		n = dns_answer_berth(s->endpoints, &q, out, cap);
		if (!n) {
			forward_start(s, &q, msg, len, client, tcp);
			return;
		}
	}
	if (tcp)
		send_tcp(&s->tcp[tcp - 1], out, n);
	else
		sendto(s->udp, out, n, MSG_DONTWAIT, (const struct sockaddr *)client,
		       sizeof *client);
}

static void read_udp(struct dns_server *s)
{
	uint8_t buf[TCP_MSG_MAX];
	for (int i = 0; i < 64; i++) {
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n =
		    recvfrom(s->udp, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		if (fl == sizeof from && from.sin_family == AF_INET)
			handle_query(s, buf, (size_t)n, &from, 0);
	}
}

static void read_upstream(struct dns_server *s)
{
	uint8_t buf[65535];
	for (int i = 0; i < 64; i++) {
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n =
		    recvfrom(s->up, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		if (n < DNS_HEADER_SIZE || !(buf[2] & 0x80))
			continue;
		uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
		for (size_t k = 0; k < MAX_FORWARDS; k++) {
			struct forward *f = &s->fwd[k];
			const struct sockaddr_in *u = &s->upstreams[f->upstream];
			if (!f->used || f->id != id || from.sin_addr.s_addr != u->sin_addr.s_addr ||
			    from.sin_port != u->sin_port)
				continue;
			forward_reply(s, f, buf, (size_t)n);
			forward_free(s, f);
			break;
		}
	}
}

static void accept_tcp(struct dns_server *s)
{
	int fd = accept4(s->tcp_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	for (size_t i = 0; i < MAX_TCP; i++)
		if (s->tcp[i].fd < 0) {
			s->tcp[i].fd = fd;
			s->tcp[i].in = xmalloc(2 + TCP_MSG_MAX);
			s->tcp[i].nin = 0;
			s->tcp[i].idle_deadline = time_mono_ms() + TCP_IDLE_MS;
			return;
		}
	close(fd); /* too many clients */
}

static void read_tcp(struct dns_server *s, size_t i)
{
	struct tcp_conn *t = &s->tcp[i];
	ssize_t n = recv(t->fd, t->in + t->nin, 2 + TCP_MSG_MAX - t->nin, MSG_DONTWAIT);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			tcp_close(t);
		return;
	}
	t->nin += (size_t)n;
	t->idle_deadline = time_mono_ms() + TCP_IDLE_MS;
	while (t->fd >= 0 && t->nin >= 2) {
		size_t len = (size_t)(t->in[0] << 8 | t->in[1]);
		if (len > TCP_MSG_MAX || len < DNS_HEADER_SIZE) {
			tcp_close(t);
			return;
		}
		if (t->nin < 2 + len)
			return;
		handle_query(s, t->in + 2, len, NULL, (int)i + 1);
		if (t->fd < 0)
			return;
		memmove(t->in, t->in + 2 + len, t->nin - 2 - len);
		t->nin -= 2 + len;
	}
}

static void expire(struct dns_server *s, int64_t now)
{
	for (size_t i = 0; i < MAX_FORWARDS && s->nfwd; i++) {
		struct forward *f = &s->fwd[i];
		if (!f->used || now < f->deadline)
			continue;
		if (f->upstream + 1 < s->nupstreams) {
			f->upstream++;
			forward_send(s, f);
		} else {
			forward_fail(s, f);
		}
	}
	for (size_t i = 0; i < MAX_TCP; i++)
		if (s->tcp[i].fd >= 0 && now >= s->tcp[i].idle_deadline)
			tcp_close(&s->tcp[i]);
}

static void *dns_main(void *arg)
{
	struct dns_server *s = arg;
	struct pollfd p[4 + MAX_TCP];
	size_t map[MAX_TCP];
	for (;;) {
		p[0] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
		p[1] = (struct pollfd){.fd = s->udp, .events = POLLIN};
		p[2] = (struct pollfd){.fd = s->tcp_listen, .events = POLLIN};
		p[3] = (struct pollfd){.fd = s->up, .events = POLLIN};
		size_t np = 4;
		for (size_t i = 0; i < MAX_TCP; i++)
			if (s->tcp[i].fd >= 0) {
				map[np - 4] = i;
				p[np++] = (struct pollfd){.fd = s->tcp[i].fd, .events = POLLIN};
			}
		int timeout = s->nfwd ? 100 : 1000;
		if (poll(p, np, timeout) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN)
			read_udp(s);
		if (p[3].revents & POLLIN)
			read_upstream(s);
		for (size_t k = 4; k < np; k++)
			if (p[k].revents && s->tcp[map[k - 4]].fd == p[k].fd)
				read_tcp(s, map[k - 4]);
		if (p[2].revents & POLLIN)
			accept_tcp(s);
		expire(s, time_mono_ms());
	}
	return NULL;
}

static int bind_socket(int type, const struct sockaddr_in *a, struct berr *err)
{
	int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return berr_set(err, 500, "socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)a, sizeof *a) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 64) < 0)) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		berr_set(err, 500, "cannot listen on %s:%d (%s): %s", ip, ntohs(a->sin_port),
			 type == SOCK_STREAM ? "tcp" : "udp", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct dns_server *dns_server_start(const struct dns_server_options *o, struct berr *err)
{
	struct dns_server *s = xcalloc(1, sizeof *s);
	s->udp = s->tcp_listen = s->up = s->wake[0] = s->wake[1] = -1;
	for (size_t i = 0; i < MAX_TCP; i++)
		s->tcp[i].fd = -1;
	s->endpoints = o->endpoints;
	if (addr_parse(o->listen, &s->listen, err) < 0) {
		berr_prefix(err, "--dns-listen");
		goto fail;
	}
	if (s->listen.sin_addr.s_addr == htonl(INADDR_ANY) || !s->listen.sin_port) {
		berr_set(err, 400,
			 "--dns-listen '%s': expected one address and a port "
			 "(tasks' resolv.conf names it)",
			 o->listen);
		goto fail;
	}
	inet_ntop(AF_INET, &s->listen.sin_addr, s->address, sizeof s->address);
	if (load_upstreams(s, o, err) < 0)
		goto fail;
	if (getrandom(&s->rnd, sizeof s->rnd, 0) != sizeof s->rnd || !s->rnd)
		s->rnd = (uint64_t)time_mono_ms() | 1;
	struct sockaddr_in any = {.sin_family = AF_INET};
	if ((s->udp = bind_socket(SOCK_DGRAM, &s->listen, err)) < 0 ||
	    (s->tcp_listen = bind_socket(SOCK_STREAM, &s->listen, err)) < 0 ||
	    (s->up = bind_socket(SOCK_DGRAM, &any, err)) < 0)
		goto fail;
	if (pipe2(s->wake, O_CLOEXEC) < 0) {
		berr_set(err, 500, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (pthread_create(&s->thread, NULL, dns_main, s) != 0) {
		berr_set(err, 500, "cannot start the dns thread");
		goto fail;
	}
	s->started = true;
	return s;
fail:
	dns_server_stop(s);
	return NULL;
}

void dns_server_stop(struct dns_server *s)
{
	if (!s)
		return;
	if (s->started) {
		ssize_t w = write(s->wake[1], "x", 1);
		(void)w;
		pthread_join(s->thread, NULL);
	}
	int fds[] = {s->udp, s->tcp_listen, s->up, s->wake[0], s->wake[1]};
	for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (size_t i = 0; i < MAX_TCP; i++)
		tcp_close(&s->tcp[i]);
	for (size_t i = 0; i < MAX_FORWARDS; i++)
		free(s->fwd[i].query);
	free(s);
}

const char *dns_server_address(const struct dns_server *s)
{
	return s->address;
}

const char *dns_server_upstreams(const struct dns_server *s)
{
	return s->upstream_text;
}
