/* test_health.c - health checks against real sockets and processes.
 *
 * An HTTP server is forked per test from a script: the i-th connection is
 * answered by the i-th letter (the last letter repeats), so a test decides
 * exactly which checks pass and fail:
 *   P 200   R 302   F 500   N 404   G a line that is not HTTP
 *   C close without answering   S hold the connection, never answer
 *   H 200 only if the request line and Host header are as expected, else 400
 * Time is real (small intervals, ~50 ms) and a poll loop drives the check as
 * the agent's loop would; tests that only need "is it due yet" pass
 * synthetic times. httpd-tiny ($BERTH_TOOLS or build/tests) is used by one
 * test, skipped when it is not built. */
#include "agent/health.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* ---- helpers ---- */

static struct health_spec spec_of(enum health_kind kind, int interval, int timeout, int failures,
				  int successes)
{
	struct health_spec s = {0};
	s.kind = kind;
	s.interval_ms = (uint64_t)interval;
	s.timeout_ms = (uint64_t)timeout;
	s.failures = failures;
	s.successes = successes;
	return s;
}

/* A listening socket on 127.0.0.1, any port. */
static int listen_any(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("listen_any");
		exit(2);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

struct server {
	pid_t pid;
	int port;
};

static void serve(int lfd, const char *script, int port)
{
	size_t i = 0, n = strlen(script);
	char expect[128];
	snprintf(expect, sizeof expect, "Host: 127.0.0.1:%d\r\n", port);
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			continue;
		char mode = script[i < n ? i : n - 1];
		i++;
		char req[2048];
		ssize_t r = read(c, req, sizeof req - 1);
		req[r > 0 ? r : 0] = 0;
		const char *resp = NULL;
		switch (mode) {
		case 'P':
			resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
			break;
		case 'R':
			resp = "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n";
			break;
		case 'F':
			resp = "HTTP/1.0 500 Internal Server Error\r\n\r\n";
			break;
		case 'N':
			resp = "HTTP/1.0 404 Not Found\r\n\r\n";
			break;
		case 'G':
			resp = "hello\x01 there\n";
			break;
		case 'H':
			resp =
			    !strncmp(req, "GET /ready?x=1 HTTP/1.0\r\n", 25) && strstr(req, expect)
				? "HTTP/1.0 200 OK\r\n\r\n"
				: "HTTP/1.0 400 Bad Request\r\n\r\n";
			break;
		case 'S':
			continue; /* c stays open, unanswered, until we die */
		}
		if (resp && write(c, resp, strlen(resp)) < 0) {
			/* the check gave up first */
		}
		close(c);
	}
}

static struct server server_start(const char *script)
{
	struct server s;
	int lfd = listen_any(&s.port);
	s.pid = fork();
	if (s.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		serve(lfd, script, s.port);
		_exit(0);
	}
	close(lfd);
	return s;
}

static void server_stop(struct server *s)
{
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
}

/* A port where nothing listens: bound (so nobody else takes it) but not
 * listening, so a connect is refused. */
static int closed_port(int *fd)
{
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	bind(*fd, (struct sockaddr *)&a, sizeof a);
	getsockname(*fd, (struct sockaddr *)&a, &len);
	return ntohs(a.sin_port);
}

enum stop_when { UNTIL_VERDICT, UNTIL_CHECKS };

/* The agent's loop in small: poll the check, wait on its fds until its
 * next time, again. Stops when the verdict is `v` (UNTIL_VERDICT) or `n`
 * checks completed (UNTIL_CHECKS), or after max_ms. */
static enum health_verdict drive(struct health_check *hc, enum stop_when when,
				 enum health_verdict v, uint64_t n, int64_t max_ms)
{
	int64_t t0 = time_mono_ms();
	for (;;) {
		int64_t now = time_mono_ms();
		enum health_verdict got = health_check_poll(hc, now);
		struct health_counts c;
		health_check_counters(hc, &c);
		if (when == UNTIL_VERDICT && got == v)
			return got;
		if (when == UNTIL_CHECKS && c.checks >= n)
			return got;
		if (now - t0 >= max_ms)
			return got;
		struct pollfd fds[HEALTH_CHECK_MAX_FDS];
		int nfds = health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS);
		int64_t wait = health_check_next_ms(hc) - now;
		if (wait > t0 + max_ms - now)
			wait = t0 + max_ms - now;
		if (wait < 0)
			wait = 0;
		poll(fds, (nfds_t)nfds, (int)wait);
	}
}

static struct health_counts counts(struct health_check *hc)
{
	struct health_counts c;
	health_check_counters(hc, &c);
	return c;
}

/* True when this process has no child at all (running or zombie). */
static bool no_children(void)
{
	return waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD;
}

/* ---- http ---- */

TEST(http_passing_after_successes)
{
	struct server srv = server_start("P");
	struct health_spec s = spec_of(HEALTH_HTTP, 50, 500, 3, 3);
	s.http_path = "/health";
	struct health_check *hc = health_check_new(&s, "127.0.0.1", srv.port, NULL, NULL);
	CHECK(hc);
	/* Two passes are not enough... */
	CHECK(drive(hc, UNTIL_CHECKS, 0, 2, 3000) == HEALTH_UNKNOWN);
	CHECK(counts(hc).passes == 2);
	/* ...the third is, about two intervals after the first. */
	int64_t t0 = time_mono_ms();
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_PASSING, 0, 3000) == HEALTH_PASSING);
	CHECK(time_mono_ms() - t0 >= 30);
	struct health_counts c = counts(hc);
	CHECK(c.checks == 3 && c.passes == 3 && c.failures == 0);
	CHECK(c.consecutive_passes == 3 && c.consecutive_failures == 0);
	CHECK_STR(health_check_last_error(hc), "");
	health_check_free(hc);
	server_stop(&srv);
}

TEST(http_fail_path_is_failing_after_failures)
{
	struct server srv = server_start("F");
	struct health_spec s = spec_of(HEALTH_HTTP, 50, 500, 3, 1);
	s.http_path = "/fail";
	struct health_check *hc = health_check_new(&s, NULL, srv.port, NULL, NULL);
	/* failures-1 failures are tolerated, even while STARTING... */
	CHECK(drive(hc, UNTIL_CHECKS, 0, 2, 3000) == HEALTH_UNKNOWN);
	CHECK(counts(hc).consecutive_failures == 2);
	/* ...the failures-th kills: a task that never became healthy. */
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	char want[128];
	snprintf(want, sizeof want, "http GET /fail on port %d: status 500", srv.port);
	CHECK_STR(health_check_last_error(hc), want);
	CHECK(counts(hc).checks == 3 && counts(hc).failures == 3);
	/* FAILING is final: no more checks, nothing to wait for. */
	CHECK(health_check_next_ms(hc) == INT64_MAX);
	CHECK(health_check_poll(hc, time_mono_ms() + 10000) == HEALTH_FAILING);
	CHECK(counts(hc).checks == 3);
	health_check_free(hc);
	server_stop(&srv);
}

TEST(http_passing_tolerates_failures_and_a_pass_resets_the_count)
{
	/* Passing, then F F (2 < 3 tolerated), P resets, F F still
	 * tolerated, then F F F kills. */
	struct server srv = server_start("PFFPFFPFFF");
	struct health_spec s = spec_of(HEALTH_HTTP, 50, 500, 3, 1);
	s.http_path = "/health";
	struct health_check *hc = health_check_new(&s, "127.0.0.1", srv.port, NULL, NULL);
	const char *script = "PFFPFFPFFF";
	for (uint64_t i = 1; i <= 9; i++) {
		CHECK(drive(hc, UNTIL_CHECKS, 0, i, 3000) == HEALTH_PASSING);
		struct health_counts c = counts(hc);
		if (script[i - 1] == 'P')
			CHECK(c.consecutive_failures == 0 && c.consecutive_passes == 1);
		else
			CHECK(c.consecutive_failures >= 1 && c.consecutive_passes == 0);
	}
	CHECK(counts(hc).consecutive_failures == 2);
	CHECK(drive(hc, UNTIL_CHECKS, 0, 10, 3000) == HEALTH_FAILING);
	struct health_counts c = counts(hc);
	CHECK(c.checks == 10 && c.passes == 3 && c.failures == 7 && c.consecutive_failures == 3);
	health_check_free(hc);
	server_stop(&srv);
}

TEST(http_starting_failures_reset_by_a_pass)
{
	/* successes 2: F P F P P - the passes are never consecutive until
	 * the end; the failures are never 2 in a row, so no kill. */
	struct server srv = server_start("FPFPP");
	struct health_spec s = spec_of(HEALTH_HTTP, 30, 500, 2, 2);
	struct health_check *hc = health_check_new(&s, "127.0.0.1", srv.port, NULL, NULL);
	CHECK(drive(hc, UNTIL_CHECKS, 0, 4, 3000) == HEALTH_UNKNOWN);
	CHECK(counts(hc).consecutive_passes == 1);
	CHECK(drive(hc, UNTIL_CHECKS, 0, 5, 3000) == HEALTH_PASSING);
	CHECK(counts(hc).failures == 2);
	health_check_free(hc);
	server_stop(&srv);
}

TEST(http_3xx_passes_4xx_fails_request_is_well_formed)
{
	struct server srv = server_start("HRN");
	struct health_spec s = spec_of(HEALTH_HTTP, 20, 500, 5, 2);
	s.http_path = "/ready?x=1";
	struct health_check *hc = health_check_new(&s, "127.0.0.1", srv.port, NULL, NULL);
	/* H checks "GET /ready?x=1 HTTP/1.0" and the Host header; R is 302. */
	CHECK(drive(hc, UNTIL_CHECKS, 0, 2, 3000) == HEALTH_PASSING);
	CHECK(counts(hc).passes == 2);
	CHECK(drive(hc, UNTIL_CHECKS, 0, 3, 3000) == HEALTH_PASSING);
	CHECK_CONTAINS(health_check_last_error(hc), ": status 404");
	health_check_free(hc);
	server_stop(&srv);
}

TEST(http_timeout_garbage_and_early_close)
{
	struct server srv = server_start("SGC");
	/* interval > timeout: after the timeout the next check is not due at
	 * once, so one poll cannot end a check and also run the next. */
	struct health_spec s = spec_of(HEALTH_HTTP, 250, 200, 10, 1);
	s.http_path = "/health";
	struct health_check *hc = health_check_new(&s, "127.0.0.1", srv.port, NULL, NULL);
	char want[128];

	/* S: the server never answers. While in flight the check asks to be
	 * polled on its socket and woken at its deadline. */
	int64_t t0 = time_mono_ms();
	health_check_poll(hc, t0);
	struct pollfd fds[HEALTH_CHECK_MAX_FDS];
	CHECK(health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS) == 1);
	CHECK(health_check_next_ms(hc) == t0 + 200);
	CHECK(drive(hc, UNTIL_CHECKS, 0, 1, 3000) == HEALTH_UNKNOWN);
	CHECK(time_mono_ms() - t0 >= 195);
	snprintf(want, sizeof want, "http GET /health on port %d: timed out after 200ms", srv.port);
	CHECK_STR(health_check_last_error(hc), want);

	drive(hc, UNTIL_CHECKS, 0, 2, 3000);
	CHECK_CONTAINS(health_check_last_error(hc), "not an HTTP status line: 'hello  there'");
	drive(hc, UNTIL_CHECKS, 0, 3, 3000);
	CHECK_CONTAINS(health_check_last_error(hc), "connection closed before a status line");
	CHECK(counts(hc).failures == 3);
	health_check_free(hc);
	server_stop(&srv);
}

TEST(http_against_httpd_tiny)
{
	char bin[512];
	const char *tools = getenv("BERTH_TOOLS");
	snprintf(bin, sizeof bin, "%s/httpd-tiny", tools && *tools ? tools : "build/tests");
	if (access(bin, X_OK) != 0)
		SKIP("httpd-tiny is not built");
	int hold, port = closed_port(&hold);
	close(hold); /* httpd-tiny binds it itself (SO_REUSEADDR) */
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execl(bin, "httpd-tiny", portstr, (char *)NULL);
		_exit(127);
	}
	struct health_spec s = spec_of(HEALTH_HTTP, 50, 500, 2, 2);
	s.http_path = "/health";
	/* It takes a moment to listen: failures are tolerated meanwhile. */
	s.failures = 20;
	struct health_check *ok = health_check_new(&s, "127.0.0.1", port, NULL, NULL);
	CHECK(drive(ok, UNTIL_VERDICT, HEALTH_PASSING, 0, 5000) == HEALTH_PASSING);
	health_check_free(ok);

	s.http_path = "/fail";
	s.failures = 2;
	struct health_check *bad = health_check_new(&s, "127.0.0.1", port, NULL, NULL);
	CHECK(drive(bad, UNTIL_VERDICT, HEALTH_FAILING, 0, 5000) == HEALTH_FAILING);
	CHECK_CONTAINS(health_check_last_error(bad), "http GET /fail on port");
	CHECK_CONTAINS(health_check_last_error(bad), ": status 500");
	health_check_free(bad);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* ---- tcp ---- */

TEST(tcp_closed_port_fails_with_message)
{
	int hold, port = closed_port(&hold);
	struct health_spec s = spec_of(HEALTH_TCP, 30, 500, 2, 1);
	struct health_check *hc = health_check_new(&s, "127.0.0.1", port, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	char want[128];
	snprintf(want, sizeof want, "tcp connect to port %d: connection refused", port);
	CHECK_STR(health_check_last_error(hc), want);
	CHECK(counts(hc).failures == 2);
	health_check_free(hc);
	close(hold);
}

TEST(tcp_connect_passes)
{
	int port, lfd = listen_any(&port); /* the kernel completes handshakes */
	struct health_spec s = spec_of(HEALTH_TCP, 30, 500, 3, 2);
	struct health_check *hc = health_check_new(&s, "127.0.0.1", port, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_PASSING, 0, 3000) == HEALTH_PASSING);
	CHECK(counts(hc).passes == 2 && counts(hc).failures == 0);
	health_check_free(hc);

	/* IPv6 loopback too, when this host has it. */
	int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	socklen_t len = sizeof a6;
	if (fd6 >= 0 && bind(fd6, (struct sockaddr *)&a6, sizeof a6) == 0 && listen(fd6, 8) == 0 &&
	    getsockname(fd6, (struct sockaddr *)&a6, &len) == 0) {
		hc = health_check_new(&s, "::1", ntohs(a6.sin6_port), NULL, NULL);
		CHECK(drive(hc, UNTIL_VERDICT, HEALTH_PASSING, 0, 3000) == HEALTH_PASSING);
		health_check_free(hc);
	}
	if (fd6 >= 0)
		close(fd6);
	close(lfd);
}

TEST(tcp_without_port_or_address_fails_each_check)
{
	struct health_spec s = spec_of(HEALTH_TCP, 30, 500, 1, 1);
	struct health_check *hc = health_check_new(&s, "127.0.0.1", 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 1000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc), "tcp connect to port 0: no port given");
	health_check_free(hc);
	hc = health_check_new(&s, "example.com", 80, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 1000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc),
		  "tcp connect to example.com port 80: 'example.com' is not an IP address");
	health_check_free(hc);
}

/* ---- timing ---- */

TEST(initial_delay_and_interval_respected)
{
	int port, lfd = listen_any(&port);
	struct health_spec s = spec_of(HEALTH_TCP, 100, 500, 3, 5);
	s.initial_delay_ms = 300;
	struct health_check *hc = health_check_new(&s, "127.0.0.1", port, NULL, NULL);
	struct pollfd fds[HEALTH_CHECK_MAX_FDS];
	/* Synthetic times: only "is it due" depends on them. */
	const int64_t t0 = 1000000;
	CHECK(health_check_next_ms(hc) == 0); /* never polled: poll at once */
	CHECK(health_check_poll(hc, t0) == HEALTH_UNKNOWN);
	CHECK(health_check_next_ms(hc) == t0 + 300);
	CHECK(health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS) == 0);
	CHECK(health_check_poll(hc, t0 + 299) == HEALTH_UNKNOWN);
	CHECK(health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS) == 0);
	CHECK(counts(hc).checks == 0);
	/* Due: the check starts (a loopback connect may even finish now). */
	health_check_poll(hc, t0 + 300);
	int n = health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS);
	if (n) {
		CHECK(health_check_next_ms(hc) == t0 + 300 + 500); /* its deadline */
		poll(fds, (nfds_t)n, 1000);
		health_check_poll(hc, t0 + 301);
	}
	CHECK(counts(hc).checks == 1 && counts(hc).passes == 1);
	/* The next one is an interval after this one started. */
	CHECK(health_check_next_ms(hc) == t0 + 400);
	health_check_poll(hc, t0 + 399);
	CHECK(counts(hc).checks == 1);
	CHECK(health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS) == 0);
	/* A loop that comes back late gets one check, not a catch-up burst. */
	health_check_poll(hc, t0 + 5000);
	if ((n = health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS))) {
		poll(fds, (nfds_t)n, 1000);
		health_check_poll(hc, t0 + 5001);
	}
	CHECK(counts(hc).checks == 2);
	CHECK(health_check_next_ms(hc) == t0 + 5100);
	health_check_free(hc);
	close(lfd);
}

TEST(failures_during_initial_delay_do_not_count)
{
	/* Refused from the start, but the first check is only after 200ms;
	 * then the failures count, though the task never passed. */
	int hold, port = closed_port(&hold);
	struct health_spec s = spec_of(HEALTH_TCP, 30, 500, 2, 1);
	s.initial_delay_ms = 200;
	struct health_check *hc = health_check_new(&s, "127.0.0.1", port, NULL, NULL);
	int64_t t0 = time_mono_ms();
	CHECK(drive(hc, UNTIL_CHECKS, 0, 1, 3000) == HEALTH_UNKNOWN);
	CHECK(time_mono_ms() - t0 >= 195);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK(counts(hc).checks == 2);
	health_check_free(hc);
	close(hold);
}

/* ---- commands ---- */

static char *argv_true[] = {"true"};
static char *argv_false[] = {"/bin/false"};
static char *argv_sleep[] = {"sleep", "5"};

TEST(command_true_passes_false_fails)
{
	struct health_spec s = spec_of(HEALTH_COMMAND, 30, 1000, 2, 2);
	s.command = argv_true;
	s.ncommand = 1;
	struct health_check *hc = health_check_new(&s, NULL, 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_PASSING, 0, 3000) == HEALTH_PASSING);
	CHECK(counts(hc).passes == 2);
	health_check_free(hc);

	s.command = argv_false;
	hc = health_check_new(&s, NULL, 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc), "command exited 1");
	health_check_free(hc);
	CHECK(no_children());
}

TEST(command_failure_message_has_last_output_line)
{
	char *argv[] = {"/bin/sh", "-c", "echo starting; echo 'db down: no route' >&2; exit 3"};
	struct health_spec s = spec_of(HEALTH_COMMAND, 30, 1000, 1, 1);
	s.command = argv;
	s.ncommand = 3;
	struct health_check *hc = health_check_new(&s, NULL, 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc), "command exited 3: db down: no route");
	health_check_free(hc);

	char *argv2[] = {"/bin/sh", "-c", "kill -TERM $$"};
	s.command = argv2;
	hc = health_check_new(&s, NULL, 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc), "command killed by signal 15");
	health_check_free(hc);

	/* posix_spawn reports a bad cwd (and reaps its failed child). */
	char *argv_true2[] = {"true"};
	s.command = argv_true2;
	s.ncommand = 1;
	hc = health_check_new(&s, NULL, 0, NULL, "/nonexistent-berth-dir");
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc),
		  "command 'true' could not be started in "
		  "'/nonexistent-berth-dir': no such file or directory");
	health_check_free(hc);
	CHECK(no_children());

	char *argv3[] = {"no-such-health-program"};
	s.command = argv3;
	s.ncommand = 1;
	hc = health_check_new(&s, NULL, 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc),
		  "command 'no-such-health-program' not found in PATH");
	health_check_free(hc);
	CHECK(no_children());
}

TEST(command_timeout_kills_and_reaps)
{
	struct health_spec s = spec_of(HEALTH_COMMAND, 50, 200, 1, 1);
	s.command = argv_sleep;
	s.ncommand = 2;
	struct health_check *hc = health_check_new(&s, NULL, 0, NULL, NULL);
	int64_t t0 = time_mono_ms();
	health_check_poll(hc, t0);
	struct pollfd fds[HEALTH_CHECK_MAX_FDS];
	CHECK(health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS) >= 1); /* pidfd, output */
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	int64_t took = time_mono_ms() - t0;
	CHECK(took >= 195 && took < 1500);
	CHECK_STR(health_check_last_error(hc), "command timed out after 200ms");
	/* The killed child is reaped by the check itself, on later polls
	 * (woken by its pidfd), not left a zombie until free. */
	drive(hc, UNTIL_CHECKS, 0, 99, 200);
	CHECK(no_children());
	health_check_free(hc);
	CHECK(no_children());
}

TEST(command_output_floods_are_bounded)
{
	/* Lots of output, then the line that explains the failure. */
	char *argv[] = {"/bin/sh", "-c", "seq 1 200000; echo 'last words'; exit 4"};
	struct health_spec s = spec_of(HEALTH_COMMAND, 50, 5000, 1, 1);
	s.command = argv;
	s.ncommand = 3;
	struct health_check *hc = health_check_new(&s, NULL, 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 5000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc), "command exited 4: last words");
	health_check_free(hc);

	/* Endless output: the loop keeps its pace and the timeout holds. */
	char *argv2[] = {"yes"};
	s.command = argv2;
	s.ncommand = 1;
	s.timeout_ms = 200;
	hc = health_check_new(&s, NULL, 0, NULL, NULL);
	int64_t t0 = time_mono_ms();
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK(time_mono_ms() - t0 < 1500);
	CHECK_STR(health_check_last_error(hc), "command timed out after 200ms");
	health_check_free(hc);
	CHECK(no_children());
}

TEST(command_timeout_kills_the_whole_process_group)
{
	/* Become the orphans' reaper, so we can see how the shell's child
	 * died. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	char dir[] = "/tmp/berth-health-XXXXXX";
	CHECK(mkdtemp(dir));
	char *script = xasprintf("sleep 5 & echo $! > %s/pid; wait", dir);
	char *argv[] = {"/bin/sh", "-c", script};
	struct health_spec s = spec_of(HEALTH_COMMAND, 50, 300, 1, 1);
	s.command = argv;
	s.ncommand = 3;
	struct health_check *hc = health_check_new(&s, NULL, 0, NULL, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_FAILING, 0, 3000) == HEALTH_FAILING);
	CHECK_STR(health_check_last_error(hc), "command timed out after 300ms");
	health_check_free(hc);
	char *pidfile = xasprintf("%s/pid", dir), *text = NULL;
	size_t len;
	CHECK(file_read_all(pidfile, &text, &len) == 0);
	int64_t grandchild = 0;
	if (text) {
		text[strcspn(text, "\n")] = 0;
		CHECK(parse_int64(text, &grandchild) == 0);
	}
	if (grandchild > 0) {
		int st = 0;
		CHECK(waitpid((pid_t)grandchild, &st, 0) == (pid_t)grandchild);
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	}
	CHECK(no_children());
	unlink(pidfile);
	rmdir(dir);
	free(text);
	free(pidfile);
	free(script);
}

TEST(command_gets_env_cwd_and_clean_signals)
{
	char dir[] = "/tmp/berth-health-XXXXXX";
	CHECK(mkdtemp(dir));
	/* The agent ignores SIGPIPE and may block signals: the check must
	 * not inherit that. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* Signals 1-31 only: glibc's posix_spawn leaves its own internal
	 * signals (32, 33) ignored, which no program relies on. */
	char *script =
	    xasprintf("test \"$GREETING\" = hi && test \"$(pwd -P)\" = \"$(cd %s && pwd -P)\" "
		      "&& grep -q '^SigBlk:[[:space:]]*0*$' /proc/self/status "
		      "&& grep -q '^SigIgn:[[:space:]]*[0-9a-f]*[08]0000000$' /proc/self/status "
		      "&& my-check",
		      dir);
	char *argv[] = {"/bin/sh", "-c", script};
	/* A program found through the task's PATH, not the agent's. */
	char *prog = xasprintf("%s/my-check", dir);
	CHECK(file_write_atomic(prog, "#!/bin/sh\nexit 0\n", 17) == 0);
	chmod(prog, 0755);
	char *path = xasprintf("PATH=%s:/usr/bin:/bin", dir);
	char *env[] = {"GREETING=hi", path, NULL};
	struct health_spec s = spec_of(HEALTH_COMMAND, 30, 2000, 1, 1);
	s.command = argv;
	s.ncommand = 3;
	struct health_check *hc = health_check_new(&s, NULL, 0, env, dir);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_PASSING, 0, 5000) == HEALTH_PASSING);
	if (health_check_verdict(hc) != HEALTH_PASSING)
		fprintf(stderr, "    last error: %s\n", health_check_last_error(hc));
	health_check_free(hc);

	/* Direct lookup of argv[0] in the task's PATH. */
	char *argv2[] = {"my-check"};
	s.command = argv2;
	s.ncommand = 1;
	hc = health_check_new(&s, NULL, 0, env, NULL);
	CHECK(drive(hc, UNTIL_VERDICT, HEALTH_PASSING, 0, 5000) == HEALTH_PASSING);
	health_check_free(hc);
	CHECK(no_children());
	unlink(prog);
	rmdir(dir);
	free(prog);
	free(path);
	free(script);
}

TEST(free_with_a_command_in_flight_leaves_no_child)
{
	struct health_spec s = spec_of(HEALTH_COMMAND, 50, 5000, 1, 1);
	s.command = argv_sleep;
	s.ncommand = 2;
	struct health_check *hc = health_check_new(&s, NULL, 0, NULL, NULL);
	health_check_poll(hc, time_mono_ms());
	struct pollfd fds[HEALTH_CHECK_MAX_FDS];
	CHECK(health_check_fds(hc, fds, HEALTH_CHECK_MAX_FDS) >= 1);
	CHECK(!no_children());
	health_check_free(hc);
	CHECK(no_children());
}

TEST(no_kind_means_no_check)
{
	struct health_spec s = spec_of(HEALTH_NONE, 10, 10, 1, 1);
	struct health_check *hc = health_check_new(&s, "127.0.0.1", 80, NULL, NULL);
	CHECK(hc == NULL);
	CHECK(health_check_poll(NULL, 0) == HEALTH_UNKNOWN);
	CHECK(health_check_next_ms(NULL) == INT64_MAX);
	health_check_free(NULL);
	CHECK_STR(health_verdict_name(HEALTH_PASSING), "passing");
	CHECK_STR(health_verdict_name(HEALTH_FAILING), "failing");
	CHECK_STR(health_verdict_name(HEALTH_UNKNOWN), "unknown");
}

UNIT_MAIN(http_passing_after_successes, http_fail_path_is_failing_after_failures,
	  http_passing_tolerates_failures_and_a_pass_resets_the_count,
	  http_starting_failures_reset_by_a_pass, http_3xx_passes_4xx_fails_request_is_well_formed,
	  http_timeout_garbage_and_early_close, http_against_httpd_tiny,
	  tcp_closed_port_fails_with_message, tcp_connect_passes,
	  tcp_without_port_or_address_fails_each_check, initial_delay_and_interval_respected,
	  failures_during_initial_delay_do_not_count, command_true_passes_false_fails,
	  command_failure_message_has_last_output_line, command_timeout_kills_and_reaps,
	  command_output_floods_are_bounded, command_timeout_kills_the_whole_process_group,
	  command_gets_env_cwd_and_clean_signals, free_with_a_command_in_flight_leaves_no_child,
	  no_kind_means_no_check)
