/* simulator.c - N simulated agents over the real protocol, in one process.
 *
 * Each loop (thread) owns a slice of the agents and one epoll set. An agent
 * is a small state machine over one keep-alive connection:
 *
 *   (start or retry) -> connect -> register -> watch -> watch -> ...
 *
 * Against a TLS server, join and renewal come first (sim_tls.c):
 *
 *   connect -> TLS -> join -> reconnect with the certificate -> register ...
 *
 * It always has exactly one request in flight, as the real agent's watch
 * thread does: the watch is the long poll that carries the heartbeat, so its
 * answer comes after wait_ms or as soon as the node's desired set changes.
 *
 * Reports: the protocol's full report goes with the register, with any watch
 * after the task set changed (until a watch carrying it is acknowledged), and
 * at least every FULL_REPORT_EVERY_MS; other watches leave "tasks" out, which
 * the server takes as a pure heartbeat. This keeps the steady-state cost of
 * 10,000 agents at a heartbeat each, not at a report of every task.
 *
 * Memory: an agent is ~100 bytes; a task is its id and a state (16 bytes
 * plus the id); buffers exist only while a request or response is in flight.
 */
#include "tools/simulator-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include "core/addr.h"
#include "core/lifecycle.h"
#include "core/log.h"
#include "core/util.h"

void simulator_options_defaults(struct simulator_options *o)
{
	memset(o, 0, sizeof *o);
	o->prefix = "sim";
	o->servers = "127.0.0.1:7070";
	o->cpu = 8;
	o->memory = 16ull << 30;
	o->disk = 100ull << 30;
	o->port_lo = 20000;
	o->port_hi = 32767;
	o->register_rate = 2000;
	o->threads = 1;
}

uint32_t rnd_next(struct sim_loop *l)
{
	/* xorshift64: jitter only, no quality needed */
	l->rnd ^= l->rnd << 13;
	l->rnd ^= l->rnd >> 7;
	l->rnd ^= l->rnd << 17;
	return (uint32_t)(l->rnd >> 11);
}

void agent_name(const struct sim *s, const struct sim_agent *a, char *buf, size_t n)
{
	snprintf(buf, n, "%s-%u", s->o.prefix, (unsigned)s->o.first + a->index);
}

/* Rate-limited warnings: thousands of agents hitting the same wall would
 * otherwise print thousands of the same line. */
static void loop_warn(struct sim_loop *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void loop_warn(struct sim_loop *l, const char *fmt, ...)
{
	int64_t now = time_mono_ms();
	if (now - l->last_warn < WARN_EVERY_MS) {
		l->suppressed++;
		return;
	}
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (l->suppressed)
		log_warn("%s (and %u more warnings)", msg, l->suppressed);
	else
		log_warn("%s", msg);
	l->suppressed = 0;
	l->last_warn = now;
}

/* ---- a min-heap of timers ------------------------------------------------- */

static void heap_push(struct heap *h, struct timer t)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xrealloc(h->v, h->cap * sizeof *h->v);
	}
	size_t i = h->n++;
	while (i && h->v[(i - 1) / 2].due > t.due) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = t;
}

static struct timer heap_pop(struct heap *h)
{
	struct timer top = h->v[0], last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].due < h->v[c].due)
			c++;
		if (h->v[c].due >= last.due)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

static void heap_release(struct heap *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->v[i].id);
	free(h->v);
	memset(h, 0, sizeof *h);
}

static int cmp_slice(const char *a, size_t an, const char *b, size_t bn)
{
	int c = memcmp(a, b, an < bn ? an : bn);
	return c ? c : (an > bn) - (an < bn);
}

static int cmp_desired(const void *x, const void *y)
{
	const struct desired *a = x, *b = y;
	return cmp_slice(a->id, a->len, b->id, b->len);
}

static struct sim_task *task_find(struct sim_agent *a, const char *id)
{
	size_t lo = 0, hi = a->ntasks;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(a->tasks[mid].id, id);
		if (!c)
			return &a->tasks[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void merge_push(struct sim_loop *l, size_t *n, struct sim_task t)
{
	if (*n == l->merge_cap) {
		l->merge_cap = l->merge_cap ? l->merge_cap * 2 : 256;
		l->merge = xrealloc(l->merge, l->merge_cap * sizeof *l->merge);
	}
	l->merge[(*n)++] = t;
}

/* Hold what is desired and not held (RUNNING from the next report on);
 * report KILLED what is held and no longer desired. Both lists sorted. */
static void reconcile(struct sim_loop *l, struct sim_agent *a, struct desired *want, size_t nwant)
{
	if (nwant > 1)
		qsort(want, nwant, sizeof *want, cmp_desired);
	int64_t now = time_mono_ms();
	size_t i = 0, j = 0, n = 0;
	while (i < a->ntasks || j < nwant) {
		if (j > 0 && j < nwant && !cmp_desired(&want[j - 1], &want[j])) {
			j++; /* a duplicate */
			continue;
		}
		int c = i == a->ntasks ? 1
			: j == nwant   ? -1
				       : -cmp_slice(want[j].id, want[j].len, a->tasks[i].id,
						    strlen(a->tasks[i].id));
		if (c < 0) {
			struct sim_task t = a->tasks[i++];
			if (t.state == TASK_RUNNING) {
				t.state = TASK_KILLED;
				t.exit_code = KILLED_EXIT_CODE;
				a->gen++;
			}
			merge_push(l, &n, t);
		} else if (c > 0) {
			struct sim_task t = {.id = xstrndup(want[j].id, want[j].len),
					     .state = TASK_RUNNING};
			if (want[j].fail_after_ms >= 0)
				heap_push(&l->fails,
					  (struct timer){.due = now + want[j].fail_after_ms,
							 .id = xstrdup(t.id),
							 .agent = (uint32_t)(a - l->agents),
							 .exit_code = want[j].exit_code});
			a->gen++;
			merge_push(l, &n, t);
			j++;
		} else {
			merge_push(l, &n, a->tasks[i++]);
			j++;
		}
	}
	if (n > a->task_cap || n < a->task_cap / 4) {
		a->task_cap = (uint32_t)n;
		a->tasks = xrealloc(a->tasks, (n ? n : 1) * sizeof *a->tasks);
	}
	if (n)
		memcpy(a->tasks, l->merge, n * sizeof *a->tasks);
	a->ntasks = (uint32_t)n;
}

/* The report that carried them was acknowledged: forget ended tasks. */
static void drop_reported_ends(struct sim_agent *a)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < a->ntasks; i++) {
		if (a->tasks[i].flags & TF_END_REPORTED)
			free(a->tasks[i].id);
		else
			a->tasks[k++] = a->tasks[i];
	}
	a->ntasks = k;
}

static void agent_free_tasks(struct sim_agent *a)
{
	for (uint32_t i = 0; i < a->ntasks; i++)
		free(a->tasks[i].id);
	free(a->tasks);
	a->tasks = NULL;
	a->ntasks = a->task_cap = 0;
}

/* ---- connections ------------------------------------------------------------ */

static void agent_kick(struct sim_loop *l, struct sim_agent *a);

static void handshake_over(struct sim_loop *l, struct sim_agent *a)
{
	if (a->handshaking) {
		a->handshaking = false;
		l->handshaking--;
	}
}

static void conn_close(struct sim_loop *l, struct sim_agent *a)
{
	handshake_over(l, a);
	sim_tls_close(a);
	if (a->fd >= 0)
		close(a->fd); /* also leaves the epoll set */
	a->fd = -1;
	free(a->out);
	free(a->in);
	a->out = a->in = NULL;
	a->out_len = a->out_off = a->in_len = a->in_cap = 0;
	a->phase = PH_IDLE;
}

/* The next request after a back-off with full jitter (a random delay up to
 * a cap that doubles per consecutive failure): agents that failed together,
 * e.g. every agent of a busy server, must not come back together. */
static void agent_retry_later(struct sim_loop *l, struct sim_agent *a)
{
	int shift = a->failures < 6 ? a->failures : 6;
	int64_t cap = (int64_t)250 << shift;
	if (cap > BACKOFF_MAX_MS)
		cap = BACKOFF_MAX_MS;
	int64_t delay = rnd_next(l) % (uint32_t)(cap + 1);
	heap_push(&l->retries, (struct timer){.due = time_mono_ms() + delay,
					      .agent = (uint32_t)(a - l->agents)});
}

/* Something went wrong with the connection or the request: start over on a
 * new connection after a back-off, with a full report. */
static void agent_fail(struct sim_loop *l, struct sim_agent *a, const char *what)
{
	char name[160];
	agent_name(l->sim, a, name, sizeof name);
	loop_warn(l, "%s: %s", name, what);
	__atomic_fetch_add(&l->nfailures, 1, __ATOMIC_RELAXED);
	conn_close(l, a);
	a->force_full = true;
	if (a->failures < 1000)
		a->failures++;
	/* Try the next server of the list, as the real agent does. */
	a->server = (uint8_t)((a->server + 1) % l->sim->naddrs);
	agent_retry_later(l, a);
}

/* --sim-source-addrs: agent i comes from 127.0.(i/250).(i%250+1), so that
 * a server limiting connections per address sees machines, not one host.
 * The port is chosen at connect (IP_BIND_ADDRESS_NO_PORT): 10,000 binds
 * would otherwise exhaust the ephemeral ports of one address. */
static int bind_source(const struct sim *s, const struct sim_agent *a, int fd)
{
	uint32_t i = ((uint32_t)s->o.first + a->index) % (250u * 256u);
	struct sockaddr_in src = {.sin_family = AF_INET};
	src.sin_addr.s_addr = htonl((127u << 24) | ((i / 250) << 8) | (i % 250 + 1));
	int one = 1;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	return bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ? -errno : 0;
}

static int conn_open(struct sim_loop *l, struct sim_agent *a)
{
	const struct sockaddr_in *sa = &l->sim->addrs[a->server % l->sim->naddrs];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	a->fd = fd;
	if (l->sim->o.source_addrs) {
		int r = bind_source(l->sim, a, fd);
		if (r < 0)
			return r;
	}
	a->sent_ms = time_mono_ms();
	/* Edge-triggered, registered once: writable after the connect and
	 * whenever a blocked send can go on; readable when a reply arrives. */
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
				 .data.ptr = a};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS)
		return -errno;
	a->phase = PH_CONNECTING;
	return 0;
}

static void conn_flush(struct sim_loop *l, struct sim_agent *a)
{
	while (a->out_off < a->out_len) {
		char why[300];
		long n =
		    sim_io_send(a, a->out + a->out_off, a->out_len - a->out_off, why, sizeof why);
		if (n == -EAGAIN)
			return; /* the next event on the socket resumes us */
		if (n < 0) {
			agent_fail(l, a, why);
			return;
		}
		a->out_off += (uint32_t)n;
	}
	explicit_bzero(a->out, a->out_len); /* a join carries the token */
	free(a->out);
	a->out = NULL;
	a->out_len = a->out_off = 0;
	a->phase = PH_RECEIVING;
}

static void send_request(struct sim_loop *l, struct sim_agent *a, const char *path,
			 struct sbuf *body)
{
	struct sbuf req;
	sbuf_init(&req);
	char name[160];
	agent_name(l->sim, a, name, sizeof name);
	/* X-Berth-Node: the server stamps the heartbeat before the body. */
	sbuf_addf(&req,
		  "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
		  "X-Berth-Node: %s\r\nContent-Length: %zu\r\n",
		  path, l->sim->hosts[a->server % l->sim->naddrs], name, body->len);
	if (a->req == RQ_JOIN)
		sbuf_addf(&req, "Authorization: Bearer %s\r\n", sim_tls_join_token(l->sim));
	else if (a->echo_clock)
		sbuf_addf(&req, "X-Berth-Echo: %lld-%08x %lld\r\n", (long long)a->echo_clock,
			  a->echo_id, (long long)(time_mono_ms() - a->echo_at));
	sbuf_adds(&req, "\r\n");
	sbuf_add(&req, body->buf, body->len);
	explicit_bzero(body->buf, body->len);
	sbuf_release(body);
	l->bytes_out += req.len;
	a->out_len = (uint32_t)req.len;
	a->out_off = 0;
	a->out = sbuf_detach(&req);
	a->phase = PH_SENDING;
	a->sent_ms = time_mono_ms();
	conn_flush(l, a);
}

/* The next request on a connected agent. */
static void agent_send_next(struct sim_loop *l, struct sim_agent *a)
{
	struct sbuf body;
	sbuf_init(&body);
	int64_t now = time_mono_ms();
	if (l->sim->tls && (!a->cert_der || now >= a->renew_ms)) {
		/* Join on a connection without a certificate; renew over the
		 * agent's mutual TLS. */
		a->req = a->cert_der ? RQ_RENEW : RQ_JOIN;
		char why[300];
		if (sim_tls_csr_body(l->sim, a, &body, why, sizeof why) < 0) {
			sbuf_release(&body);
			agent_fail(l, a, why);
			return;
		}
		send_request(l, a, a->cert_der ? "/v1/agent/renew" : "/v1/agent/join", &body);
		return;
	}
	if (!a->registered) {
		a->req = RQ_REGISTER;
		a->sent_full = true;
		a->sent_gen = a->gen;
		build_register(l, a, &body);
		send_request(l, a, "/v1/agent/register", &body);
		return;
	}
	bool full = want_full_report(a, now);
	a->req = RQ_WATCH;
	a->sent_full = full;
	a->sent_gen = a->gen;
	build_watch(l, a, &body, full);
	send_request(l, a, "/v1/agent/watch", &body);
}

static void agent_kick(struct sim_loop *l, struct sim_agent *a)
{
	if (a->fd < 0) {
		int64_t now = time_mono_ms();
		if (!a->ever_registered && now < l->behind_until) {
			/* The loop is behind: the agents in keep their
			 * heartbeats; this one starts a little later. */
			heap_push(&l->retries,
				  (struct timer){.due = l->behind_until + rnd_next(l) % 50,
						 .agent = (uint32_t)(a - l->agents)});
			return;
		}
		if (l->sim->tls && l->handshaking >= MAX_HANDSHAKES) {
			/* A moment later: at most MAX_HANDSHAKES handshakes
			 * at once per loop (each costs CPU on both sides). */
			heap_push(&l->retries, (struct timer){.due = now + 5 + rnd_next(l) % 10,
							      .agent = (uint32_t)(a - l->agents)});
			return;
		}
		if (l->sim->tls) {
			a->handshaking = true;
			l->handshaking++;
		}
		int r = conn_open(l, a);
		if (r < 0) {
			char msg[128];
			snprintf(msg, sizeof msg, "cannot connect: %s", strerror(-r));
			agent_fail(l, a, msg);
		}
		return; /* EPOLLOUT says when it is connected */
	}
	agent_send_next(l, a);
}

/* ---- HTTP responses --------------------------------------------------------- */

static void on_register_reply(struct sim_loop *l, struct sim_agent *a, struct http_reply *r)
{
	if (r->status != 200) {
		char msg[256];
		snprintf(msg, sizeof msg, "register: HTTP %d: %.160s", r->status, r->body);
		if (r->status == 401 && l->sim->tls)
			sim_tls_forget(l->sim, a); /* the certificate is refused: join again */
		agent_fail(l, a, msg);
		return;
	}
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	json_t *hb = json_object_get(j, "heartbeat_ms");
	if (json_is_integer(hb) && json_integer_value(hb) >= 100 && json_integer_value(hb) <= 60000)
		a->heartbeat_ms = (int32_t)json_integer_value(hb);
	json_decref(j);
	a->registered = true;
	a->known_version = 0; /* the server bumped its version: we fetch at once */
	a->acked_gen = a->sent_gen;
	a->force_full = false;
	a->last_full_ms = a->sent_ms;
	drop_reported_ends(a);
	if (!a->ever_registered) {
		a->ever_registered = true;
		__atomic_store_n(&l->last_register_ms, time_mono_ms(), __ATOMIC_RELAXED);
		__atomic_fetch_add(&l->nregistered, 1, __ATOMIC_RELAXED);
	}
}

static void on_watch_reply(struct sim_loop *l, struct sim_agent *a, struct http_reply *r)
{
	if (r->status == 404) {
		/* The server forgot us: register again, after a jittered delay
		 * (a server that forgot one agent forgot them all). */
		a->registered = false;
		a->force_full = true;
		if (a->failures < 1000)
			a->failures++;
		a->deferred = true;
		return;
	}
	if (r->status != 200) {
		char msg[256];
		snprintf(msg, sizeof msg, "watch: HTTP %d: %.160s", r->status, r->body);
		if (r->status >= 500)
			a->registered = false;
		if (r->status == 401 && l->sim->tls)
			sim_tls_forget(l->sim, a);
		agent_fail(l, a, msg);
		return;
	}
	if (a->sent_full) {
		a->acked_gen = a->sent_gen;
		a->force_full = false;
		a->last_full_ms = a->sent_ms;
		drop_reported_ends(a);
	}
	uint64_t version = 0;
	bool report = false;
	long n = scan_watch_reply(l, r->body, r->body_len, a->known_version, &version, &report,
				  &a->heartbeat_ms);
	if (report)
		a->force_full = true; /* the server asks what we hold (back from DOWN) */
	if (n == -2) {
		agent_fail(l, a, "watch: malformed reply");
		return;
	}
	if (n >= 0) {
		l->desired_sets++;
		l->desired_tasks += (uint64_t)n;
		reconcile(l, a, l->want, (size_t)n);
		a->known_version = version;
	}
}

/* A join's or a renewal's reply: the certificate is for the next
 * connection (the server knows a connection by the certificate it began
 * with), so this one closes. */
static void on_identity_reply(struct sim_loop *l, struct sim_agent *a, struct http_reply *r)
{
	bool join = a->req == RQ_JOIN;
	char why[300];
	if (r->status != 200) {
		snprintf(why, sizeof why, "%s: HTTP %d: %.200s", join ? "join" : "renew", r->status,
			 r->body);
		if (!join && r->status == 401)
			sim_tls_forget(l->sim, a); /* expired or unknown: join again */
		agent_fail(l, a, why);
		return;
	}
	if (sim_tls_take_cert(l, a, r->body, r->body_len, why, sizeof why) < 0) {
		char msg[360];
		snprintf(msg, sizeof msg, "%s: %s", join ? "join" : "renew", why);
		agent_fail(l, a, msg);
		return;
	}
	r->close = true;
	if (!join) {
		l->renewals++;
		return;
	}
	if (!a->ever_joined) {
		a->ever_joined = true;
		__atomic_store_n(&l->last_join_ms, time_mono_ms(), __ATOMIC_RELAXED);
		__atomic_fetch_add(&l->njoined, 1, __ATOMIC_RELAXED);
	}
}

static void agent_on_reply(struct sim_loop *l, struct sim_agent *a, struct http_reply *r)
{
	l->replies++;
	l->bytes_in += r->total;
	if (r->server_clock) {
		a->echo_clock = r->server_clock;
		a->echo_id = r->server_clock_id;
		a->echo_at = time_mono_ms();
	}
	a->phase = PH_IDLE;
	if (a->req == RQ_REGISTER)
		on_register_reply(l, a, r);
	else if (a->req == RQ_WATCH)
		on_watch_reply(l, a, r);
	else
		on_identity_reply(l, a, r);
	bool close_after = r->close;
	if (a->fd < 0)
		return; /* failed: a retry is scheduled */
	free(a->in);
	a->in = NULL;
	a->in_len = a->in_cap = 0;
	if (close_after)
		conn_close(l, a);
	if (a->deferred) {
		a->deferred = false;
		agent_retry_later(l, a);
		return;
	}
	a->failures = 0;
	/* Always one request in flight: the next one goes now. */
	agent_kick(l, a);
}

static void conn_readable(struct sim_loop *l, struct sim_agent *a)
{
	bool eof = false;
	/* A reply complete after a read is handled at once: reading on to
	 * EAGAIN would cost a syscall per reply for nothing (one request is in
	 * flight, so nothing follows it). */
	struct http_reply r;
	int c = 0;
	for (;;) {
		if (a->in_cap - a->in_len < 4096 + 1) {
			if (a->in_cap > RESPONSE_MAX) {
				agent_fail(l, a, "reply too large");
				return;
			}
			/* 64 KiB from the start: a desired set of 100 tasks is
			 * ~50 KiB, and growing by doubling copied it three times
			 * (the simulator's biggest cost at 1M tasks). Freed after
			 * each reply, so only replies in flight hold one. */
			a->in_cap = a->in_cap ? a->in_cap * 2 : 65536;
			a->in = xrealloc(a->in, a->in_cap);
		}
		char why[300];
		long n =
		    sim_io_recv(a, a->in + a->in_len, a->in_cap - a->in_len - 1, why, sizeof why);
		if (n > 0) {
			a->in_len += (uint32_t)n;
			a->in[a->in_len] = 0; /* so that number parsing stops here */
			if ((a->phase == PH_RECEIVING || a->phase == PH_SENDING) &&
			    (c = http_parse(a->in, a->in_len, false, &r)) != 0)
				break;
			continue;
		}
		if (n == 0) {
			eof = true;
			break;
		}
		if (n == -EAGAIN)
			break;
		agent_fail(l, a, why);
		return;
	}
	if (a->phase != PH_RECEIVING && a->phase != PH_SENDING) {
		if (eof || a->in_len)
			agent_fail(l, a, "unexpected data or close from the server");
		return;
	}
	if (!a->in_len) {
		if (eof)
			agent_fail(l, a, "connection closed by the server");
		return;
	}
	if (!c)
		c = http_parse(a->in, a->in_len, eof, &r);
	if (c < 0) {
		agent_fail(l, a, "malformed HTTP reply");
	} else if (c == 0) {
		if (eof)
			agent_fail(l, a, "connection closed mid-reply");
	} else {
		if (eof)
			r.close = true;
		agent_on_reply(l, a, &r);
	}
}

static void conn_event(struct sim_loop *l, struct sim_agent *a, uint32_t ev)
{
	if (a->phase == PH_CONNECTING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			char msg[128];
			snprintf(msg, sizeof msg, "cannot connect: %s", strerror(err));
			agent_fail(l, a, msg);
			return;
		}
		if (l->sim->tls) {
			char why[300];
			if (sim_tls_open(l->sim, a, why, sizeof why) < 0) {
				agent_fail(l, a, why);
				return;
			}
			a->phase = PH_HANDSHAKE;
		} else {
			a->phase = PH_IDLE;
			agent_send_next(l, a);
			if (a->fd < 0)
				return;
		}
	} else if (a->phase == PH_SENDING && (ev & EPOLLOUT || a->ssl)) {
		/* (TLS may want to read before it can write) */
		conn_flush(l, a);
		if (a->fd < 0)
			return;
	}
	if (a->phase == PH_HANDSHAKE) {
		char why[300];
		int r = sim_tls_handshake(a, why, sizeof why);
		if (r < 0)
			agent_fail(l, a, why);
		if (r <= 0)
			return;
		handshake_over(l, a);
		a->phase = PH_IDLE;
		agent_send_next(l, a);
		if (a->fd < 0)
			return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		conn_readable(l, a);
}

/* ---- the loop --------------------------------------------------------------- */

static int64_t start_due(const struct sim_loop *l, size_t local)
{
	const struct sim *s = l->sim;
	uint64_t global = (uint64_t)local * (uint64_t)s->nloops + (uint64_t)l->id;
	return s->start_ms + (int64_t)(global * 1000 / (uint64_t)s->o.register_rate);
}

static void fire_fail(struct sim_loop *l, struct timer *t)
{
	struct sim_agent *a = &l->agents[t->agent];
	struct sim_task *task = task_find(a, t->id);
	if (task && task->state == TASK_RUNNING) {
		task->state = TASK_FAILED;
		task->exit_code = t->exit_code;
		a->gen++; /* reported with the next watch */
	}
	free(t->id);
}

/* Run what is due; return how long epoll may sleep. */
static int loop_timers(struct sim_loop *l)
{
	int64_t now = time_mono_ms();
	while (l->next_start < l->nagents && start_due(l, l->next_start) <= now)
		agent_kick(l, &l->agents[l->next_start++]);
	while (l->retries.n && l->retries.v[0].due <= now) {
		struct timer t = heap_pop(&l->retries);
		struct sim_agent *a = &l->agents[t.agent];
		if (a->phase == PH_IDLE)
			agent_kick(l, a);
	}
	while (l->fails.n && l->fails.v[0].due <= now) {
		struct timer t = heap_pop(&l->fails);
		fire_fail(l, &t);
	}
	if (now - l->last_sweep >= SWEEP_EVERY_MS) {
		l->last_sweep = now;
		for (size_t i = 0; i < l->next_start; i++) {
			struct sim_agent *a = &l->agents[i];
			int64_t limit = a->phase == PH_CONNECTING || a->phase == PH_HANDSHAKE
					    ? CONNECT_TIMEOUT_MS
					    : REQUEST_TIMEOUT_MS;
			if (a->phase != PH_IDLE && now - a->sent_ms > limit)
				agent_fail(l, a, "no reply from the server: timed out");
		}
	}
	int64_t next = l->last_sweep + SWEEP_EVERY_MS;
	if (l->next_start < l->nagents && start_due(l, l->next_start) < next)
		next = start_due(l, l->next_start);
	if (l->retries.n && l->retries.v[0].due < next)
		next = l->retries.v[0].due;
	if (l->fails.n && l->fails.v[0].due < next)
		next = l->fails.v[0].due;
	return next > now ? (int)(next - now) : 0;
}

/* The calling thread's CPU time, in ms. */
static int64_t thread_cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *loop_main(void *arg)
{
	struct sim_loop *l = arg;
	struct epoll_event evs[512];
	while (!__atomic_load_n(&l->sim->stopping, __ATOMIC_ACQUIRE)) {
		int timeout = loop_timers(l);
		int n = epoll_wait(l->epfd, evs, (int)ARRAY_SIZE(evs), timeout);
		if (n < 0 && errno != EINTR) {
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		int64_t t0 = time_mono_ms(), c0 = thread_cpu_ms();
		for (int i = 0; i < n; i++) {
			if (!evs[i].data.ptr)
				continue; /* the stop eventfd: the loop condition sees it */
			conn_event(l, evs[i].data.ptr, evs[i].events);
		}
		/* A pass that waited for the CPU (the machine is short of it):
		 * new agents wait. A long pass of its own work is not that: at
		 * 10,000 agents passes are long, and joins must go on. */
		int64_t t1 = time_mono_ms();
		if ((t1 - t0) - (thread_cpu_ms() - c0) >= BEHIND_MS) {
			l->behind_until = t1 + BEHIND_PAUSE_MS;
			l->paused_passes++;
		}
	}
	return NULL;
}

/* ---- setup and teardown ----------------------------------------------------- */

/* As many descriptors as the system allows: raise the hard limit too when
 * we may (root), up to fs.nr_open. */
static rlim_t raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	char *s = NULL;
	size_t n;
	if (file_read_all("/proc/sys/fs/nr_open", &s, &n) == 0) {
		rlim_t max = (rlim_t)strtoull(s, NULL, 10);
		struct rlimit want = {max, max};
		if (max > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &want) == 0) {
			free(s);
			return max;
		}
	}
	free(s);
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur;
}

/* The servers: "h:p", "http://h:p" (plain) or "https://h:p" (TLS: needs
 * the join token; a scheme-less address follows the token). */
static int parse_servers(struct sim *s)
{
	char *list = xstrdup(s->o.servers), *save = NULL;
	bool tls = s->o.join_token != NULL;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!*tok)
			continue;
		bool https = !strncmp(tok, "https://", 8);
		if (https && !tls) {
			log_error(
			    "server '%s' speaks TLS: the simulated agents need its join token "
			    "(--join-token-file DATA/client/join.token)",
			    tok);
			free(list);
			return -1;
		}
		if (!strncmp(tok, "http://", 7) && tls) {
			log_error("server '%s' is plain HTTP but a join token was given: use "
				  "https://, or no token for a server run with --insecure",
				  tok);
			free(list);
			return -1;
		}
		const char *hp = https ? tok + 8 : !strncmp(tok, "http://", 7) ? tok + 7 : tok;
		struct sockaddr_in sa;
		struct berr err = {0};
		if (addr_parse(hp, &sa, &err) < 0) {
			log_error("bad --server '%s': %s", tok, err.msg);
			free(list);
			return -1;
		}
		if (s->naddrs == 255)
			break;
		s->addrs = xrealloc(s->addrs, (s->naddrs + 1) * sizeof *s->addrs);
		s->hosts = xrealloc(s->hosts, (s->naddrs + 1) * sizeof *s->hosts);
		s->names = xrealloc(s->names, (s->naddrs + 1) * sizeof *s->names);
		s->addrs[s->naddrs] = sa;
		size_t n = strcspn(hp, "/");
		while (n && hp[n - 1] == '/')
			n--;
		s->hosts[s->naddrs] = xstrndup(hp, n);
		/* The name its certificate must carry: the host dialled (all
		 * interfaces is dialled as loopback). */
		const char *colon = strrchr(s->hosts[s->naddrs], ':');
		size_t hl = colon ? (size_t)(colon - s->hosts[s->naddrs]) : 0;
		char *host = xstrndup(s->hosts[s->naddrs], hl);
		if (!*host || !strcmp(host, "0.0.0.0")) {
			free(host);
			host = xstrdup("127.0.0.1");
		}
		s->names[s->naddrs] = host;
		s->naddrs++;
	}
	free(list);
	if (!s->naddrs) {
		log_error("no server address to connect to");
		return -1;
	}
	return 0;
}

static void prepare_attrs(struct sim *s)
{
	struct sbuf b;
	sbuf_init(&b);
	for (size_t i = 0; i < s->o.nattrs; i++) {
		const struct spec_kv *kv = &s->o.attrs[i];
		s->has_host |= !strcmp(kv->key, "host");
		s->has_os |= !strcmp(kv->key, "os");
		s->has_rack |= !strcmp(kv->key, "rack");
		s->has_zone |= !strcmp(kv->key, "zone");
		sbuf_adds(&b, ",");
		json_strz(&b, kv->key);
		sbuf_adds(&b, ":");
		json_strz(&b, kv->value);
	}
	s->user_attrs = sbuf_detach(&b);
}

static int loops_start(struct sim *s)
{
	s->loops = xcalloc((size_t)s->nloops, sizeof *s->loops);
	for (int k = 0; k < s->nloops; k++)
		s->loops[k].epfd = s->loops[k].evfd = -1;
	for (int k = 0; k < s->nloops; k++) {
		struct sim_loop *l = &s->loops[k];
		l->sim = s;
		l->id = k;
		l->rnd = 0x9e3779b97f4a7c15ull ^ ((uint64_t)k << 32) ^ (uint64_t)time_now_ms();
		l->nagents = (size_t)(s->o.count / s->nloops + (k < s->o.count % s->nloops));
		l->agents = xcalloc(l->nagents ? l->nagents : 1, sizeof *l->agents);
		for (size_t i = 0; i < l->nagents; i++) {
			struct sim_agent *a = &l->agents[i];
			a->fd = -1;
			a->index = (uint32_t)(i * (size_t)s->nloops + (size_t)k);
			a->server = (uint8_t)(a->index % s->naddrs);
			a->heartbeat_ms = 1000;
		}
		l->epfd = epoll_create1(EPOLL_CLOEXEC);
		l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		if (l->epfd < 0 || l->evfd < 0 ||
		    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) {
			log_error("cannot set up the event loop: %s", strerror(errno));
			return -1;
		}
	}
	s->start_ms = time_mono_ms();
	for (int k = 0; k < s->nloops; k++) {
		if (pthread_create(&s->loops[k].thread, NULL, loop_main, &s->loops[k]) != 0) {
			log_error("cannot start a simulator thread");
			return -1;
		}
		s->loops[k].started = true;
	}
	return 0;
}

static void log_traffic(struct sim *s)
{
	uint64_t in = 0, out = 0, replies = 0, sets = 0, tasks = 0, renewals = 0, paused = 0;
	for (int k = 0; k < s->nloops; k++) {
		renewals += s->loops[k].renewals;
		paused += s->loops[k].paused_passes;
		in += s->loops[k].bytes_in;
		out += s->loops[k].bytes_out;
		replies += s->loops[k].replies;
		sets += s->loops[k].desired_sets;
		tasks += s->loops[k].desired_tasks;
	}
	double secs = (double)(time_mono_ms() - s->start_ms) / 1000.0;
	log_info("traffic over %.0fs: %llu replies, %.1f MiB in, %.1f MiB out; %llu changed "
		 "desired sets listing %llu tasks",
		 secs, (unsigned long long)replies, (double)in / 1048576.0, (double)out / 1048576.0,
		 (unsigned long long)sets, (unsigned long long)tasks);
	if (s->tls)
		log_info("certificates renewed: %llu", (unsigned long long)renewals);
	if (paused)
		log_info("loop passes that waited %d ms or more for the CPU (new agents waited %d "
			 "ms): %llu",
			 BEHIND_MS, BEHIND_PAUSE_MS, (unsigned long long)paused);
}

static void loops_stop(struct sim *s)
{
	__atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
	for (int k = 0; k < s->nloops; k++) {
		uint64_t one = 1;
		if (s->loops[k].evfd >= 0 && write(s->loops[k].evfd, &one, sizeof one) < 0) {
			/* the counter is full: the loop is awake anyway */
		}
	}
	for (int k = 0; k < s->nloops; k++) {
		struct sim_loop *l = &s->loops[k];
		if (l->started)
			pthread_join(l->thread, NULL);
	}
	log_traffic(s);
	for (int k = 0; k < s->nloops; k++) {
		struct sim_loop *l = &s->loops[k];
		for (size_t i = 0; i < l->nagents; i++) {
			struct sim_agent *a = &l->agents[i];
			conn_close(l, a);
			agent_free_tasks(a);
			sim_tls_drop_decoded(a);
			free(a->cert_der);
			if (a->key_der)
				explicit_bzero(a->key_der, a->key_len);
			free(a->key_der);
		}
		free(l->agents);
		heap_release(&l->retries);
		heap_release(&l->fails);
		free(l->want);
		free(l->merge);
		if (l->epfd >= 0)
			close(l->epfd);
		if (l->evfd >= 0)
			close(l->evfd);
	}
	free(s->loops);
}

static size_t count_registered(struct sim *s, size_t *failures, int64_t *last_ms, size_t *joined,
			       int64_t *last_join_ms)
{
	size_t n = 0;
	*failures = *joined = 0;
	*last_ms = *last_join_ms = 0;
	for (int k = 0; k < s->nloops; k++) {
		int64_t t = __atomic_load_n(&s->loops[k].last_register_ms, __ATOMIC_RELAXED);
		int64_t tj = __atomic_load_n(&s->loops[k].last_join_ms, __ATOMIC_RELAXED);
		n += __atomic_load_n(&s->loops[k].nregistered, __ATOMIC_RELAXED);
		*joined += __atomic_load_n(&s->loops[k].njoined, __ATOMIC_RELAXED);
		*failures += __atomic_load_n(&s->loops[k].nfailures, __ATOMIC_RELAXED);
		if (t > *last_ms)
			*last_ms = t;
		if (tj > *last_join_ms)
			*last_join_ms = tj;
	}
	return n;
}

/* Wait for SIGINT/SIGTERM, logging registration progress meanwhile. */
static void wait_for_stop(struct sim *s, const sigset_t *set)
{
	bool all = false, all_joined = !s->tls;
	int64_t last_log = time_mono_ms();
	for (;;) {
		struct timespec ts = {.tv_sec = 1};
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM) {
			log_info("signal %d: stopping %d simulated agents", sig, s->o.count);
			return;
		}
		size_t fails, joined;
		int64_t last, last_join;
		size_t n = count_registered(s, &fails, &last, &joined, &last_join);
		int64_t now = time_mono_ms();
		if (!all_joined && joined == (size_t)s->o.count) {
			all_joined = true;
			log_info(
			    "all %d simulated agents joined (a node certificate each) in %.2fs",
			    s->o.count, (double)(last_join - s->start_ms) / 1000.0);
		}
		if (!all && n == (size_t)s->o.count) {
			all = true;
			log_info("all %d simulated agents registered in %.2fs", s->o.count,
				 (double)(last - s->start_ms) / 1000.0);
		} else if (!all && now - last_log >= 5000) {
			last_log = now;
			if (s->tls)
				log_info("%zu of %d simulated agents joined, %zu registered (%zu "
					 "errors)",
					 joined, s->o.count, n, fails);
			else
				log_info("%zu of %d simulated agents registered (%zu connection "
					 "errors)",
					 n, s->o.count, fails);
		}
	}
}

int simulator_run(const struct simulator_options *o)
{
	if (o->count <= 0 || !o->prefix || !*o->prefix || strlen(o->prefix) > 100) {
		log_error("simulate: need a positive agent count and a name prefix");
		return 1;
	}
	/* A server that closes a connection while a TLS write is under way
	 * must cost that agent a reconnect, not the process (SIGPIPE). */
	signal(SIGPIPE, SIG_IGN);
	struct sim s = {.o = *o};
	if (s.o.register_rate <= 0)
		s.o.register_rate = 2000;
	if (s.o.threads <= 0)
		s.o.threads = 1;
	s.nloops = s.o.threads > s.o.count ? s.o.count : s.o.threads;
	if (s.nloops > 64)
		s.nloops = 64;
	/* Every thread inherits the mask; this one waits for the signals. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	rlim_t nofile = raise_nofile();
	if ((rlim_t)s.o.count + 64 > nofile)
		log_warn("open-file limit %llu is below %d agents: some cannot connect",
			 (unsigned long long)nofile, s.o.count);
	int rc = 0;
	if (parse_servers(&s) < 0 || sim_tls_init(&s) < 0) {
		rc = 1;
	} else {
		prepare_attrs(&s);
		if (loops_start(&s) < 0) {
			rc = 1;
		} else {
			log_info("simulating %d agents %s-%d..%s-%d against %s (%s; %d thread%s, "
				 "%d registrations/s)",
				 s.o.count, s.o.prefix, s.o.first, s.o.prefix,
				 s.o.first + s.o.count - 1, s.o.servers,
				 s.tls ? (s.o.shared_key ? "mutual TLS, one shared key"
							 : "mutual TLS, a key per agent")
				       : "plain HTTP",
				 s.nloops, s.nloops == 1 ? "" : "s", s.o.register_rate);
			wait_for_stop(&s, &set);
		}
		loops_stop(&s);
	}
	sim_tls_free(&s);
	for (size_t i = 0; i < s.naddrs; i++) {
		free(s.hosts[i]);
		free(s.names[i]);
	}
	free(s.names);
	free(s.hosts);
	free(s.addrs);
	free(s.user_attrs);
	return rc;
}
