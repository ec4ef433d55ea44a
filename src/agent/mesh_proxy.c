/* mesh_proxy.c - the routing mesh's L4 proxy (mesh_proxy.h).
 *
 * Objects on the loop, each with an epoll tag:
 *
 *   wake      eventfd: a new table is waiting (mesh_proxy_set)
 *   listener  one per published port, level-triggered, accept4 in a loop
 *   conn      client fd + backend fd, edge-triggered on both; every event
 *             pumps both directions until they would block
 *
 * A direction (client->backend, backend->client) is a pipe: splice from the
 * source socket into it, splice from it into the other socket. EOF from a
 * source, once its pipe is empty, becomes shutdown(SHUT_WR) on the other
 * side; the conn closes when both directions are shut, or on an error.
 * While the backend connect is in progress the client's first bytes wait
 * in the pipe, so a refused connect can be tried on the next backend.
 * Conns that die during an epoll batch are freed after it (another event
 * of the batch may name them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/mesh_proxy.h"
#include "core/log.h"

enum tag_kind { TAG_WAKE = 0, TAG_LISTENER, TAG_CLIENT, TAG_BACKEND };

struct tag {
	enum tag_kind kind;
	void *obj;
};

struct listener {
	struct tag tag;
	int fd;
	int port;
	char *job;
	struct mesh_backend *backends;
	size_t nbackends;
	size_t rr; /* round robin cursor */
	bool bind_logged;
	struct listener *next;
};

struct half {
	int pipe[2];
	size_t inpipe;
	bool eof;  /* the source said EOF */
	bool shut; /* shutdown(SHUT_WR) sent to the destination */
};

struct conn {
	struct tag ctag, btag;
	int cfd, bfd;
	struct half h[2]; /* 0: client->backend, 1: backend->client */
	bool connecting;
	int64_t connect_deadline;
	struct mesh_backend *backends; /* the listener's table when accepted */
	size_t nbackends, first, tries;
	bool dead;
	struct conn *prev, *next; /* all conns */
	struct conn *dead_next;	  /* freed after the batch */
};

struct mesh_proxy {
	int epfd, wakefd;
	struct tag wake_tag;
	pthread_t thread;
	_Atomic bool stopping;
	pthread_mutex_t lock; /* pending, stats */
	struct mesh_service *pending;
	size_t npending;
	bool have_pending;
	struct listener *listeners;
	struct conn *conns, *dead;
	/* Listeners of ports no longer published: freed after the event
	 * batch, which may still hold their tag. */
	struct listener *dead_listeners;
	size_t nconnecting;
	struct mesh_stats stats;
};

/* ---- the table --------------------------------------------------------- */

static struct mesh_backend *backends_dup(const struct mesh_backend *b, size_t n)
{
	struct mesh_backend *out = xcalloc(n ? n : 1, sizeof *out);
	if (n)
		memcpy(out, b, n * sizeof *b);
	return out;
}

static void services_free(struct mesh_service *s, size_t n)
{
	for (size_t i = 0; s && i < n; i++) {
		free((char *)s[i].job);
		free((void *)s[i].backends);
	}
	free(s);
}

void mesh_proxy_set(struct mesh_proxy *m, const struct mesh_service *svcs, size_t n)
{
	struct mesh_service *copy = xcalloc(n ? n : 1, sizeof *copy);
	for (size_t i = 0; i < n; i++) {
		copy[i].port = svcs[i].port;
		copy[i].job = xstrdup(svcs[i].job ? svcs[i].job : "");
		copy[i].backends = backends_dup(svcs[i].backends, svcs[i].nbackends);
		copy[i].nbackends = svcs[i].nbackends;
	}
	pthread_mutex_lock(&m->lock);
	services_free(m->pending, m->npending);
	m->pending = copy;
	m->npending = n;
	m->have_pending = true;
	pthread_mutex_unlock(&m->lock);
	uint64_t one = 1;
	if (write(m->wakefd, &one, sizeof one) < 0) {
		/* the counter is already non-zero: the loop will look */
	}
}

void mesh_proxy_stats(struct mesh_proxy *m, struct mesh_stats *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->stats;
	pthread_mutex_unlock(&m->lock);
}

static int listener_open(struct listener *l)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)l->port)};
	sa.sin_addr.s_addr = htonl(INADDR_ANY);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	l->fd = fd;
	return 0;
}

static void listener_close(struct mesh_proxy *m, struct listener *l)
{
	if (l->fd >= 0) {
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, l->fd, NULL);
		close(l->fd);
		l->fd = -1;
	}
}

static void listener_free(struct listener *l)
{
	free(l->job);
	free(l->backends);
	free(l);
}

/* Apply the pending table: new ports listen, gone ports stop (their conns
 * stay), every port gets its new backends. */
static void apply_table(struct mesh_proxy *m)
{
	pthread_mutex_lock(&m->lock);
	if (!m->have_pending) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	struct mesh_service *svcs = m->pending;
	size_t n = m->npending;
	m->pending = NULL;
	m->npending = 0;
	m->have_pending = false;
	pthread_mutex_unlock(&m->lock);

	struct listener **pl = &m->listeners;
	while (*pl) {
		struct listener *l = *pl;
		bool keep = false;
		for (size_t i = 0; i < n && !keep; i++)
			keep = svcs[i].port == l->port;
		if (keep) {
			pl = &l->next;
			continue;
		}
		log_info("mesh: port %d is no longer published (job %s)", l->port, l->job);
		listener_close(m, l);
		*pl = l->next;
		l->next = m->dead_listeners;
		m->dead_listeners = l;
	}
	for (size_t i = 0; i < n; i++) {
		struct listener *l = m->listeners;
		while (l && l->port != svcs[i].port)
			l = l->next;
		if (!l) {
			l = xcalloc(1, sizeof *l);
			l->fd = -1;
			l->port = svcs[i].port;
			l->tag.kind = TAG_LISTENER;
			l->tag.obj = l;
			l->next = m->listeners;
			m->listeners = l;
		}
		free(l->job);
		l->job = xstrdup(svcs[i].job);
		free(l->backends);
		l->backends = backends_dup(svcs[i].backends, svcs[i].nbackends);
		l->nbackends = svcs[i].nbackends;
		if (l->fd < 0) {
			int r = listener_open(l);
			if (r < 0) {
				if (!l->bind_logged)
					log_warn("mesh: cannot listen on port %d for job %s: %s",
						 l->port, l->job, strerror(-r));
				l->bind_logged = true;
				continue;
			}
			struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->tag};
			epoll_ctl(m->epfd, EPOLL_CTL_ADD, l->fd, &ev);
			log_info("mesh: port %d published for job %s", l->port, l->job);
		}
	}
	uint64_t listening = 0;
	for (struct listener *l = m->listeners; l; l = l->next)
		listening += l->fd >= 0;
	pthread_mutex_lock(&m->lock);
	m->stats.listening_ports = listening;
	pthread_mutex_unlock(&m->lock);
	services_free(svcs, n);
}

/* ---- connections ------------------------------------------------------- */

static void conn_kill(struct mesh_proxy *m, struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	pthread_mutex_lock(&m->lock);
	m->stats.active--;
	pthread_mutex_unlock(&m->lock);
	if (c->connecting)
		m->nconnecting--;
	c->connecting = false;
	/* Out of the epoll set before close: a fork elsewhere in the agent
	 * may hold the socket a moment longer, and its events must not
	 * reach a freed conn. */
	if (c->cfd >= 0) {
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, c->cfd, NULL);
		close(c->cfd);
	}
	if (c->bfd >= 0) {
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, c->bfd, NULL);
		close(c->bfd);
	}
	c->cfd = c->bfd = -1;
	for (int d = 0; d < 2; d++)
		for (int k = 0; k < 2; k++)
			if (c->h[d].pipe[k] >= 0)
				close(c->h[d].pipe[k]);
	if (c->prev)
		c->prev->next = c->next;
	else
		m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->dead_next = m->dead;
	m->dead = c;
}

static int sockaddr_of(const struct mesh_backend *b, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, b->addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)b->port);
		*len = sizeof *s4;
		return 0;
	}
	if (inet_pton(AF_INET6, b->addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)b->port);
		*len = sizeof *s6;
		return 0;
	}
	return -EINVAL;
}

/* Start a connect to the next untried backend; -1 when none is left. */
static int conn_connect_next(struct mesh_proxy *m, struct conn *c)
{
	while (c->tries < c->nbackends) {
		const struct mesh_backend *b = &c->backends[(c->first + c->tries) % c->nbackends];
		c->tries++;
		struct sockaddr_storage ss;
		socklen_t len;
		if (sockaddr_of(b, &ss, &len) < 0)
			continue;
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		int r = connect(fd, (struct sockaddr *)&ss, len);
		if (r < 0 && errno != EINPROGRESS) {
			close(fd);
			continue;
		}
		c->bfd = fd;
		if (!c->connecting)
			m->nconnecting++;
		c->connecting = r < 0;
		if (!c->connecting)
			m->nconnecting--;
		c->connect_deadline = time_mono_ms() + MESH_CONNECT_TIMEOUT_MS;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					 .data.ptr = &c->btag};
		epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev);
		return 0;
	}
	return -1;
}

/* The connect failed or timed out: the next backend, or give up. */
static void conn_retry(struct mesh_proxy *m, struct conn *c)
{
	epoll_ctl(m->epfd, EPOLL_CTL_DEL, c->bfd, NULL);
	close(c->bfd);
	c->bfd = -1;
	c->connecting = false;
	m->nconnecting--;
	pthread_mutex_lock(&m->lock);
	m->stats.retried++;
	pthread_mutex_unlock(&m->lock);
	if (conn_connect_next(m, c) < 0) {
		pthread_mutex_lock(&m->lock);
		m->stats.no_backend++;
		pthread_mutex_unlock(&m->lock);
		conn_kill(m, c);
	}
}

/* Move what can move in one direction; -1 on an error of either socket. */
static int pump(struct conn *c, int dir)
{
	struct half *h = &c->h[dir];
	int src = dir == 0 ? c->cfd : c->bfd, dst = dir == 0 ? c->bfd : c->cfd;
	for (;;) {
		if (h->inpipe > 0 && !c->connecting) {
			ssize_t n = splice(h->pipe[0], NULL, dst, NULL, h->inpipe,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				h->inpipe -= (size_t)n;
				continue;
			}
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0 && errno == EINTR)
				continue;
			return -1;
		}
		if (h->eof || (dir == 1 && c->connecting))
			break;
		ssize_t n =
		    splice(src, NULL, h->pipe[1], NULL, 1 << 16, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			h->inpipe += (size_t)n;
			if (c->connecting)
				continue; /* fill the pipe while the connect runs */
			continue;
		}
		if (n == 0) {
			h->eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			break;
		return -1;
	}
	if (h->eof && !h->inpipe && !h->shut && !c->connecting) {
		shutdown(dst, SHUT_WR);
		h->shut = true;
	}
	return 0;
}

static void conn_pump(struct mesh_proxy *m, struct conn *c)
{
	if (c->dead)
		return;
	if (pump(c, 0) < 0 || pump(c, 1) < 0) {
		conn_kill(m, c);
		return;
	}
	if (c->h[0].shut && c->h[1].shut)
		conn_kill(m, c);
}

static void on_backend(struct mesh_proxy *m, struct conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if (c->connecting) {
		int e = 0;
		socklen_t len = sizeof e;
		getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &e, &len);
		if (e) {
			conn_retry(m, c);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		c->connecting = false;
		m->nconnecting--;
	}
	conn_pump(m, c);
}

static void accept_some(struct mesh_proxy *m, struct listener *l)
{
	if (l->fd < 0)
		return; /* closed earlier in this event batch */
	for (int k = 0; k < 64; k++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or out of fds: level-triggered, we come back */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pthread_mutex_lock(&m->lock);
		m->stats.accepted++;
		m->stats.active++;
		pthread_mutex_unlock(&m->lock);
		struct conn *c = xcalloc(1, sizeof *c);
		c->cfd = fd;
		c->bfd = -1;
		c->ctag = (struct tag){TAG_CLIENT, c};
		c->btag = (struct tag){TAG_BACKEND, c};
		for (int d = 0; d < 2; d++)
			c->h[d].pipe[0] = c->h[d].pipe[1] = -1;
		c->next = m->conns;
		if (m->conns)
			m->conns->prev = c;
		m->conns = c;
		if (pipe2(c->h[0].pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
		    pipe2(c->h[1].pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
			conn_kill(m, c);
			continue;
		}
		c->backends = backends_dup(l->backends, l->nbackends);
		c->nbackends = l->nbackends;
		c->first = l->nbackends ? l->rr++ % l->nbackends : 0;
		if (conn_connect_next(m, c) < 0) {
			pthread_mutex_lock(&m->lock);
			m->stats.no_backend++;
			pthread_mutex_unlock(&m->lock);
			conn_kill(m, c);
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					 .data.ptr = &c->ctag};
		epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev);
	}
}

static void free_dead(struct mesh_proxy *m)
{
	while (m->dead_listeners) {
		struct listener *l = m->dead_listeners;
		m->dead_listeners = l->next;
		listener_free(l);
	}
	while (m->dead) {
		struct conn *c = m->dead;
		m->dead = c->dead_next;
		free(c->backends);
		free(c);
	}
}

static void check_connect_timeouts(struct mesh_proxy *m)
{
	if (!m->nconnecting)
		return;
	int64_t now = time_mono_ms();
	for (struct conn *c = m->conns, *next; c; c = next) {
		next = c->next;
		if (c->connecting && now >= c->connect_deadline)
			conn_retry(m, c);
	}
	free_dead(m);
}

static void *proxy_main(void *arg)
{
	struct mesh_proxy *m = arg;
	struct epoll_event evs[128];
	while (!m->stopping) {
		int n = epoll_wait(m->epfd, evs, 128, m->nconnecting ? 100 : 1000);
		for (int i = 0; i < n; i++) {
			struct tag *t = evs[i].data.ptr;
			switch (t->kind) {
			case TAG_WAKE: {
				uint64_t v;
				if (read(m->wakefd, &v, sizeof v) < 0) {
					/* spurious */
				}
				apply_table(m);
				break;
			}
			case TAG_LISTENER:
				accept_some(m, t->obj);
				break;
			case TAG_CLIENT:
				conn_pump(m, t->obj);
				break;
			case TAG_BACKEND:
				on_backend(m, t->obj, evs[i].events);
				break;
			}
		}
		free_dead(m);
		check_connect_timeouts(m);
	}
	return NULL;
}

struct mesh_proxy *mesh_proxy_start(struct berr *err)
{
	struct mesh_proxy *m = xcalloc(1, sizeof *m);
	pthread_mutex_init(&m->lock, NULL);
	m->epfd = epoll_create1(EPOLL_CLOEXEC);
	m->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	m->wake_tag.kind = TAG_WAKE;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &m->wake_tag};
	if (m->epfd < 0 || m->wakefd < 0 || epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->wakefd, &ev) < 0 ||
	    pthread_create(&m->thread, NULL, proxy_main, m) != 0) {
		berr_set(err, 500, "cannot start the mesh proxy: %s", strerror(errno));
		if (m->epfd >= 0)
			close(m->epfd);
		if (m->wakefd >= 0)
			close(m->wakefd);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return NULL;
	}
	return m;
}

void mesh_proxy_stop(struct mesh_proxy *m)
{
	if (!m)
		return;
	m->stopping = true;
	uint64_t one = 1;
	if (write(m->wakefd, &one, sizeof one) < 0) {
		/* the loop wakes within a second anyway */
	}
	pthread_join(m->thread, NULL);
	while (m->conns)
		conn_kill(m, m->conns);
	free_dead(m);
	while (m->listeners) {
		struct listener *l = m->listeners;
		m->listeners = l->next;
		listener_close(m, l);
		listener_free(l);
	}
	services_free(m->pending, m->npending);
	close(m->epfd);
	close(m->wakefd);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
