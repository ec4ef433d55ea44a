/* test_mesh_proxy.c - the routing mesh's L4 proxy against small backends:
 * round robin, a refused backend skipped, bytes in both directions, a
 * new table keeping open connections. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/mesh_proxy.h"
#include "unit.h"

/* A backend: answers each connection with its name, or echoes with
 * `echo`, then closes. */
struct backend {
	int fd, port;
	char name[16];
	bool echo;
};

static void *backend_main(void *arg)
{
	struct backend *b = arg;
	for (;;) {
		int c = accept(b->fd, NULL, NULL);
		if (c < 0)
			return NULL;
		if (b->echo) {
			char buf[65536];
			ssize_t n;
			while ((n = read(c, buf, sizeof buf)) > 0)
				if (write(c, buf, (size_t)n) != n)
					break;
		} else {
			char buf[256];
			if (read(c, buf, sizeof buf) >= 0 &&
			    write(c, b->name, strlen(b->name)) < 0) {
				/* the client went away */
			}
		}
		close(c);
	}
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

static void backend_start(struct backend *b, const char *name, bool echo)
{
	snprintf(b->name, sizeof b->name, "%s", name);
	b->echo = echo;
	b->fd = listen_any(&b->port);
	pthread_t t;
	pthread_create(&t, NULL, backend_main, b);
	pthread_detach(t);
}

/* A free port for the proxy to publish. */
static int free_port(void)
{
	int port = 0, fd = listen_any(&port);
	close(fd);
	return port;
}

static int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 100; i++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
			return fd;
		close(fd);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		usleep(10000);
	}
	close(fd);
	return -1;
}

/* One request: "hi", then the whole answer. */
static void ask(int port, char *out, size_t cap)
{
	out[0] = 0;
	int fd = dial(port);
	if (fd < 0)
		return;
	if (write(fd, "hi", 2) != 2) {
		close(fd);
		return;
	}
	shutdown(fd, SHUT_WR);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < cap && (r = read(fd, out + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(fd);
}

static void set_one(struct mesh_proxy *m, int port, const struct mesh_backend *b, size_t n)
{
	struct mesh_service s = {
	    .port = port, .job = "alice/prod/web", .backends = b, .nbackends = n};
	mesh_proxy_set(m, &s, 1);
	usleep(50000);
}

TEST(spreads_round_robin)
{
	struct backend b1, b2;
	backend_start(&b1, "one", false);
	backend_start(&b2, "two", false);
	struct berr err = {0};
	struct mesh_proxy *m = mesh_proxy_start(&err);
	CHECK(m != NULL);
	int port = free_port();
	struct mesh_backend bs[2] = {{"127.0.0.1", b1.port}, {"127.0.0.1", b2.port}};
	set_one(m, port, bs, 2);
	int ones = 0, twos = 0;
	for (int i = 0; i < 10; i++) {
		char buf[64];
		ask(port, buf, sizeof buf);
		ones += !strcmp(buf, "one");
		twos += !strcmp(buf, "two");
	}
	CHECK(ones == 5);
	CHECK(twos == 5);
	struct mesh_stats st;
	mesh_proxy_stats(m, &st);
	CHECK(st.accepted == 10);
	CHECK(st.listening_ports == 1);
	mesh_proxy_stop(m);
}

TEST(skips_a_refused_backend)
{
	struct backend b1;
	backend_start(&b1, "one", false);
	struct berr err = {0};
	struct mesh_proxy *m = mesh_proxy_start(&err);
	int port = free_port(), dead = free_port();
	struct mesh_backend bs[2] = {{"127.0.0.1", dead}, {"127.0.0.1", b1.port}};
	set_one(m, port, bs, 2);
	for (int i = 0; i < 6; i++) {
		char buf[64];
		ask(port, buf, sizeof buf);
		CHECK_STR(buf, "one");
	}
	struct mesh_stats st;
	mesh_proxy_stats(m, &st);
	CHECK(st.retried == 3);
	CHECK(st.no_backend == 0);
	mesh_proxy_stop(m);
}

TEST(moves_bytes_both_ways)
{
	struct backend e;
	backend_start(&e, "echo", true);
	struct berr err = {0};
	struct mesh_proxy *m = mesh_proxy_start(&err);
	int port = free_port();
	struct mesh_backend bs[1] = {{"127.0.0.1", e.port}};
	set_one(m, port, bs, 1);
	int fd = dial(port);
	CHECK(fd >= 0);
	size_t total = 4 << 20, sent = 0, got = 0;
	char *out = malloc(total), *in = malloc(total);
	for (size_t i = 0; i < total; i++)
		out[i] = (char)(i * 7 + 3);
	struct pollfd p = {.fd = fd};
	while (got < total) {
		p.events = POLLIN | (sent < total ? POLLOUT : 0);
		if (poll(&p, 1, 5000) <= 0)
			break;
		if ((p.revents & POLLOUT) && sent < total) {
			ssize_t n =
			    write(fd, out + sent, total - sent > 65536 ? 65536 : total - sent);
			if (n > 0)
				sent += (size_t)n;
			if (sent == total)
				shutdown(fd, SHUT_WR);
		}
		if (p.revents & POLLIN) {
			ssize_t n = read(fd, in + got, total - got);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
	}
	CHECK(got == total);
	CHECK(memcmp(in, out, total) == 0);
	char c;
	CHECK(read(fd, &c, 1) == 0); /* the backend's EOF came through */
	close(fd);
	free(in);
	free(out);
	mesh_proxy_stop(m);
}

TEST(new_table_keeps_open_connections)
{
	struct backend e, b2;
	backend_start(&e, "echo", true);
	backend_start(&b2, "two", false);
	struct berr err = {0};
	struct mesh_proxy *m = mesh_proxy_start(&err);
	int port = free_port();
	struct mesh_backend first[1] = {{"127.0.0.1", e.port}};
	set_one(m, port, first, 1);
	int fd = dial(port);
	CHECK(write(fd, "a", 1) == 1);
	char c = 0;
	CHECK(read(fd, &c, 1) == 1 && c == 'a');
	/* The echo backend leaves the rotation: new connections go to two,
	 * the open one still reaches echo. */
	struct mesh_backend second[1] = {{"127.0.0.1", b2.port}};
	set_one(m, port, second, 1);
	char buf[64];
	ask(port, buf, sizeof buf);
	CHECK_STR(buf, "two");
	CHECK(write(fd, "b", 1) == 1);
	CHECK(read(fd, &c, 1) == 1 && c == 'b');
	close(fd);
	/* The port leaves the table: it stops accepting. */
	mesh_proxy_set(m, NULL, 0);
	usleep(50000);
	struct mesh_stats st;
	mesh_proxy_stats(m, &st);
	CHECK(st.listening_ports == 0);
	mesh_proxy_stop(m);
}

TEST(no_backend_closes)
{
	struct berr err = {0};
	struct mesh_proxy *m = mesh_proxy_start(&err);
	int port = free_port();
	set_one(m, port, NULL, 0);
	char buf[64];
	ask(port, buf, sizeof buf);
	CHECK_STR(buf, "");
	struct mesh_stats st;
	mesh_proxy_stats(m, &st);
	CHECK(st.no_backend == 1);
	CHECK(st.active == 0);
	mesh_proxy_stop(m);
}

UNIT_MAIN(spreads_round_robin, skips_a_refused_backend, moves_bytes_both_ways,
	  new_table_keeps_open_connections, no_backend_closes)
