/* health.c - task health checks (see health.h), Aurora/Mesos style.
 *
 * The rule, exactly:
 *  - Time starts at the first health_check_poll() (t0, the task's start).
 *    The first check starts at t0 + initial_delay; nothing is checked, so
 *    nothing can count, before that (docs/spec.md: "time after start before
 *    the first check").
 *  - A check starts `interval` after the previous one started; checks never
 *    overlap, and when one ran past its successor's start time (timeout >
 *    interval, or a late poll) the next starts as soon as it ends - one
 *    check, never a burst of catch-up checks.
 *  - A check passes (2xx/3xx status line; connect completes; exit 0) or
 *    fails (anything else, including not finishing within timeout and
 *    errors of our own such as EMFILE: the task is still not shown healthy).
 *    A result already available when poll runs counts even if poll runs
 *    after the deadline: the loop being late is not the task's fault.
 *  - A pass resets the consecutive failures; a failure resets the
 *    consecutive passes.
 *  - STARTING (verdict UNKNOWN): `successes` consecutive passes make the
 *    verdict PASSING (the task is RUNNING). PASSING then stays through up to
 *    failures-1 consecutive failures (it is not taken back to UNKNOWN).
 *  - `failures` consecutive failures make the verdict FAILING, in either
 *    phase: as in Aurora, failures after the initial delay count while the
 *    task is still STARTING, so a task that never becomes healthy is
 *    killed. FAILING is final: no further check starts.
 *  - Known gap: in STARTING, a check that alternates pass/fail with
 *    successes >= 2 reaches neither limit and stays UNKNOWN; a start
 *    deadline, if wanted, belongs to whoever watches STARTING tasks.
 *
 * Why a command check runs in its own process group: `sh -c "..."` forks,
 * and killing only the shell at the timeout would leave its children
 * running. The group is SIGKILLed at the timeout and also when the command
 * exits (health checks must not leave processes behind); the leader is
 * still unreaped (a zombie) at that moment, so its pid - the group id -
 * cannot have been reused.
 *
 * Exit is noticed through a pidfd (the loop polls it); without pidfd_open
 * (kernel < 5.3) the next poll is at most POLL_TICK_MS away instead.
 */
#include "agent/health.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"

extern char **environ;

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_INTERVAL_MS 10000
#define DEFAULT_TIMEOUT_MS 1000
#define DEFAULT_FAILURES 3
#define DEFAULT_SUCCESSES 1
/* How often to look at a command without a pidfd to wait on. */
#define POLL_TICK_MS 10
/* The status line we read at most: "HTTP/1.1 200 OK" needs 15 bytes; a
 * server may send a long reason phrase, which we do not need. */
#define STATUS_MAX 256
/* The tail of a command's output kept for the failure message. */
#define OUT_TAIL 1024
#define ERR_MAX 512

enum phase { PH_IDLE, PH_CONNECTING, PH_SENDING, PH_READING, PH_COMMAND };

struct health_check {
	enum health_kind kind;
	char *path;  /* http */
	char **argv; /* command, NULL-terminated */
	char **env;  /* NULL-terminated copy, or NULL = environ */
	char *cwd;   /* NULL = ours */
	int64_t interval, timeout, initial_delay;
	int need_failures, need_successes;

	/* Where http/tcp connect; addr_err says why there is no address. */
	int port;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_err[128];
	char where[96]; /* "port 31001" or "10.0.0.5 port 31001" */
	char *request;	/* the whole HTTP request */
	size_t request_len;

	bool started;
	int64_t due; /* next check start */
	int64_t last_now;
	enum health_verdict verdict;
	struct health_counts c;
	char last_error[ERR_MAX];

	/* The check in flight. */
	enum phase phase;
	int64_t check_start, deadline;
	int fd; /* socket */
	size_t sent;
	char status[STATUS_MAX + 1];
	size_t status_len;
	pid_t pid;
	int pidfd, outfd;
	char out[2 * OUT_TAIL];
	size_t out_len;

	/* A command killed at its timeout, not yet reaped. */
	pid_t zpid;
	int zpidfd;
};

/* ---- small helpers -------------------------------------------------------- */

/* strerror, lowercased as our messages are. Thread-local: the agent has
 * several threads, and one call per message suffices. */
/* "1s", "200ms", "1500ms": the user wrote durations like these. */
static void fmt_ms(char *buf, size_t n, int64_t ms)
{
	if (ms >= 1000 && ms % 1000 == 0)
		snprintf(buf, n, "%llds", (long long)(ms / 1000));
	else
		snprintf(buf, n, "%lldms", (long long)ms);
}

static char **strv_dup(char *const *v, size_t n)
{
	char **out = xcalloc(n + 1, sizeof *out);
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* Reap pid, retrying on EINTR. Blocking: only used on a child already dead
 * or SIGKILLed. Returns the status, or -1 when it was reaped elsewhere. */
static int reap(pid_t pid)
{
	int st;
	pid_t r;
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	return r == pid ? st : -1;
}

/* Keep text from a task (output, a bad status line) printable and short. */
static void sanitize(char *dst, size_t n, const char *src, size_t len)
{
	size_t j = 0;
	for (size_t i = 0; i < len && j + 1 < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	dst[j] = 0;
}

/* ---- results -------------------------------------------------------------- */

static void end_check_resources(struct health_check *hc)
{
	close_fd(&hc->fd);
	close_fd(&hc->outfd);
	close_fd(&hc->pidfd);
	hc->pid = 0;
	hc->sent = 0;
	hc->status_len = 0;
	hc->out_len = 0;
}

static void record(struct health_check *hc, bool pass, int64_t now)
{
	end_check_resources(hc);
	hc->phase = PH_IDLE;
	hc->due = hc->check_start + hc->interval;
	if (hc->due < now)
		hc->due = now;
	hc->c.checks++;
	if (pass) {
		hc->c.passes++;
		hc->c.consecutive_passes++;
		hc->c.consecutive_failures = 0;
		if (hc->verdict == HEALTH_UNKNOWN && hc->c.consecutive_passes >= hc->need_successes)
			hc->verdict = HEALTH_PASSING;
	} else {
		hc->c.failures++;
		hc->c.consecutive_failures++;
		hc->c.consecutive_passes = 0;
		if (hc->c.consecutive_failures >= hc->need_failures)
			hc->verdict = HEALTH_FAILING;
	}
}

static void pass(struct health_check *hc, int64_t now)
{
	record(hc, true, now);
}

static void fail(struct health_check *hc, int64_t now, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct health_check *hc, int64_t now, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(hc->last_error, sizeof hc->last_error, fmt, ap);
	va_end(ap);
	record(hc, false, now);
}

/* The subject of a socket check's messages. */
static void sock_fail(struct health_check *hc, int64_t now, const char *what)
{
	if (hc->kind == HEALTH_HTTP)
		fail(hc, now, "http GET %s on %s: %s", hc->path, hc->where, what);
	else
		fail(hc, now, "tcp connect to %s: %s", hc->where, what);
}

/* ---- http and tcp ----------------------------------------------------------- */

static void sock_start(struct health_check *hc, int64_t now)
{
	if (hc->addr_err[0]) {
		sock_fail(hc, now, hc->addr_err);
		return;
	}
	hc->fd = socket(hc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (hc->fd < 0) {
		char what[160];
		snprintf(what, sizeof what, "cannot create a socket: %s", err_str(errno));
		sock_fail(hc, now, what);
		return;
	}
	if (connect(hc->fd, (struct sockaddr *)&hc->addr, hc->addrlen) == 0)
		hc->phase = hc->kind == HEALTH_HTTP ? PH_SENDING : PH_CONNECTING;
	else if (errno == EINPROGRESS || errno == EINTR)
		hc->phase = PH_CONNECTING;
	else
		sock_fail(hc, now, err_str(errno));
}

/* "HTTP/1.1 200 OK" -> 200; -1 when it is not a status line. */
static int parse_status(const char *s, size_t n)
{
	if (n < 12 || strncmp(s, "HTTP/", 5))
		return -1;
	size_t i = 5;
	while (i < n && s[i] != ' ')
		i++;
	while (i < n && s[i] == ' ')
		i++;
	if (i + 3 > n)
		return -1;
	for (size_t k = 0; k < 3; k++)
		if (!isdigit((unsigned char)s[i + k]))
			return -1;
	if (i + 3 < n && s[i + 3] != ' ' && s[i + 3] != '\r' && s[i + 3] != '\n')
		return -1;
	return (s[i] - '0') * 100 + (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
}

static void http_judge(struct health_check *hc, int64_t now)
{
	const char *s = hc->status;
	size_t n = hc->status_len;
	const char *nl = memchr(s, '\n', n);
	if (nl)
		n = (size_t)(nl - s);
	if (n && s[n - 1] == '\r')
		n--;
	int code = parse_status(s, n);
	char what[160];
	if (code < 0) {
		char shown[48];
		sanitize(shown, sizeof shown, s, n);
		snprintf(what, sizeof what, "not an HTTP status line: '%s'", shown);
		sock_fail(hc, now, what);
	} else if (code >= 200 && code < 400) {
		pass(hc, now);
	} else {
		snprintf(what, sizeof what, "status %d", code);
		sock_fail(hc, now, what);
	}
}

/* Move a socket check as far as it can go without blocking. */
static void sock_advance(struct health_check *hc, int64_t now)
{
	if (hc->phase == PH_CONNECTING) {
		struct pollfd p = {.fd = hc->fd, .events = POLLOUT};
		if (poll(&p, 1, 0) <= 0)
			return;
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(hc->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			sock_fail(hc, now, err_str(err));
			return;
		}
		if (hc->kind == HEALTH_TCP) {
			pass(hc, now);
			return;
		}
		hc->phase = PH_SENDING;
	}
	if (hc->phase == PH_SENDING) {
		while (hc->sent < hc->request_len) {
			ssize_t w = send(hc->fd, hc->request + hc->sent, hc->request_len - hc->sent,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (w < 0) {
				char what[160];
				snprintf(what, sizeof what, "cannot send the request: %s",
					 err_str(errno));
				sock_fail(hc, now, what);
				return;
			}
			hc->sent += (size_t)w;
		}
		hc->phase = PH_READING;
	}
	if (hc->phase == PH_READING) {
		for (;;) {
			ssize_t r = recv(hc->fd, hc->status + hc->status_len,
					 STATUS_MAX - hc->status_len, MSG_DONTWAIT);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (r < 0 && !hc->status_len) {
				sock_fail(hc, now, err_str(errno));
				return;
			}
			if (r <= 0 && !hc->status_len) {
				sock_fail(hc, now, "connection closed before a status line");
				return;
			}
			if (r > 0)
				hc->status_len += (size_t)r;
			/* The status line alone decides: stop at its end, at the
			 * end of the stream, or when our buffer is full. */
			if (r <= 0 || hc->status_len == STATUS_MAX ||
			    memchr(hc->status, '\n', hc->status_len)) {
				http_judge(hc, now);
				return;
			}
		}
	}
}

/* ---- commands ----------------------------------------------------------------- */

static const char *env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);
	for (char *const *e = env; e && *e; e++)
		if (!strncmp(*e, name, n) && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

/* The program to run: argv[0] itself when it has a '/', else its first
 * match in the *task's* PATH (posix_spawnp would use the agent's). */
static char *find_program(const char *name, char *const *env)
{
	if (strchr(name, '/'))
		return xstrdup(name);
	const char *path = env_get(env, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	for (const char *p = path;;) {
		const char *end = strchrnul(p, ':');
		char *cand = end == p ? xasprintf("./%s", name)
				      : xasprintf("%.*s/%s", (int)(end - p), p, name);
		struct stat st;
		if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
			return cand;
		free(cand);
		if (!*end)
			return NULL;
		p = end + 1;
	}
}

static void out_drain(struct health_check *hc)
{
	/* Bounded: a command writing without end (`yes`) must not hold the
	 * loop here; what is left wakes the loop again. */
	for (int reads = 0; hc->outfd >= 0 && reads < 32; reads++) {
		char buf[4096];
		ssize_t r = read(hc->outfd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			/* EOF (the command closed its output): stop polling the
			 * pipe, its POLLHUP would wake the loop for nothing. */
			close_fd(&hc->outfd);
			return;
		}
		/* Keep the last OUT_TAIL bytes at least: the end of the output
		 * is what explains a failure. */
		const char *src = buf;
		size_t n = (size_t)r;
		if (n > OUT_TAIL) {
			src += n - OUT_TAIL;
			n = OUT_TAIL;
		}
		if (hc->out_len + n > sizeof hc->out) {
			size_t keep = OUT_TAIL - n;
			if (keep > hc->out_len)
				keep = hc->out_len;
			memmove(hc->out, hc->out + hc->out_len - keep, keep);
			hc->out_len = keep;
		}
		memcpy(hc->out + hc->out_len, src, n);
		hc->out_len += n;
	}
}

/* ": <last non-empty line of the output>", or "" without output. */
static void out_last_line(struct health_check *hc, char *dst, size_t n)
{
	size_t end = hc->out_len;
	while (end && isspace((unsigned char)hc->out[end - 1]))
		end--;
	size_t start = end;
	while (start && hc->out[start - 1] != '\n')
		start--;
	dst[0] = 0;
	if (end == start)
		return;
	char line[200];
	sanitize(line, sizeof line, hc->out + start, end - start);
	snprintf(dst, n, ": %s", line);
}

static void cmd_start(struct health_check *hc, int64_t now)
{
	char *const *env = hc->env ? hc->env : environ;
	/* The previous check's command, killed at its timeout an interval
	 * ago, is certainly dead by now: reap it so one slot is enough. */
	if (hc->zpid > 0) {
		reap(hc->zpid);
		hc->zpid = 0;
		close_fd(&hc->zpidfd);
	}
	_cleanup_free_ char *prog = find_program(hc->argv[0], env);
	if (!prog) {
		fail(hc, now, "command '%s' not found in PATH", hc->argv[0]);
		return;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		fail(hc, now, "command '%s' could not be started: %s", hc->argv[0], err_str(errno));
		return;
	}
	/* dup2 onto itself would keep O_CLOEXEC: keep the write end off 0-2
	 * (possible only when the agent's own stdio is closed). */
	if (p[1] < 3) {
		int w = fcntl(p[1], F_DUPFD_CLOEXEC, 3);
		close(p[1]);
		p[1] = w;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	/* The agent's own fds (sockets, the store) are none of its business. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (hc->cwd)
		posix_spawn_file_actions_addchdir_np(&fa, hc->cwd);
	/* The agent blocks or ignores signals (SIGPIPE ignored, a supervisor
	 * blocks SIGCHLD/SIGTERM): a check starts from defaults, and in its
	 * own process group so the timeout can kill all of it. */
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					  POSIX_SPAWN_SETPGROUP);
	pid_t pid = 0;
	int r = p[1] < 0 ? errno : posix_spawn(&pid, prog, &fa, &at, hc->argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close_fd(&p[1]);
	if (r) {
		close(p[0]);
		if (hc->cwd)
			fail(hc, now, "command '%s' could not be started in '%s': %s", hc->argv[0],
			     hc->cwd, err_str(r));
		else
			fail(hc, now, "command '%s' could not be started: %s", hc->argv[0],
			     err_str(r));
		return;
	}
	hc->pid = pid;
	hc->outfd = p[0];
	hc->pidfd = pidfd_open_(pid);
	hc->phase = PH_COMMAND;
}

static void cmd_advance(struct health_check *hc, int64_t now)
{
	out_drain(hc);
	/* Peek (WNOWAIT): the group must be killed before the leader is
	 * reaped, while its pid cannot be reused. */
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PID, (id_t)hc->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
		if (errno == EINTR)
			return;
		hc->pid = 0;
		fail(hc, now, "command exit status lost: it was reaped by someone else");
		return;
	}
	if (si.si_pid == 0)
		return; /* still running */
	kill(-hc->pid, SIGKILL);
	int st = reap(hc->pid);
	hc->pid = 0;
	out_drain(hc);
	char tail[210];
	out_last_line(hc, tail, sizeof tail);
	if (st < 0)
		fail(hc, now, "command exit status lost: it was reaped by someone else");
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		pass(hc, now);
	else if (WIFEXITED(st))
		fail(hc, now, "command exited %d%s", WEXITSTATUS(st), tail);
	else
		fail(hc, now, "command killed by signal %d%s", WTERMSIG(st), tail);
}

/* ---- the state machine ---------------------------------------------------------- */

static void advance(struct health_check *hc, int64_t now)
{
	if (hc->phase == PH_COMMAND)
		cmd_advance(hc, now);
	else if (hc->phase != PH_IDLE)
		sock_advance(hc, now);
}

static void time_out(struct health_check *hc, int64_t now)
{
	char t[32];
	fmt_ms(t, sizeof t, hc->timeout);
	if (hc->phase == PH_COMMAND) {
		kill(-hc->pid, SIGKILL);
		/* Usually dead already; if not, reap it on a later poll
		 * rather than wait here. */
		if (waitpid(hc->pid, NULL, WNOHANG) == 0) {
			hc->zpid = hc->pid;
			hc->zpidfd = hc->pidfd;
			hc->pidfd = -1;
		}
		hc->pid = 0;
		fail(hc, now, "command timed out after %s", t);
		return;
	}
	char what[64];
	snprintf(what, sizeof what, "timed out after %s", t);
	sock_fail(hc, now, what);
}

static void start_check(struct health_check *hc, int64_t now)
{
	hc->check_start = now;
	hc->deadline = now + hc->timeout;
	if (hc->kind == HEALTH_COMMAND)
		cmd_start(hc, now);
	else
		sock_start(hc, now);
}

static void reap_zombie(struct health_check *hc)
{
	if (hc->zpid <= 0)
		return;
	pid_t r = waitpid(hc->zpid, NULL, WNOHANG);
	if (r == 0 || (r < 0 && errno == EINTR))
		return;
	hc->zpid = 0;
	close_fd(&hc->zpidfd);
}

enum health_verdict health_check_poll(struct health_check *hc, int64_t now)
{
	if (!hc)
		return HEALTH_UNKNOWN;
	hc->last_now = now;
	if (!hc->started) {
		hc->started = true;
		hc->due = now + hc->initial_delay;
	}
	reap_zombie(hc);
	if (hc->phase != PH_IDLE) {
		advance(hc, now);
		if (hc->phase != PH_IDLE && now >= hc->deadline)
			time_out(hc, now);
	}
	if (hc->phase == PH_IDLE && hc->verdict != HEALTH_FAILING && now >= hc->due) {
		start_check(hc, now);
		advance(hc, now);
	}
	return hc->verdict;
}

int health_check_fds(struct health_check *hc, struct pollfd *fds, int max)
{
	if (!hc)
		return 0;
	struct pollfd want[HEALTH_CHECK_MAX_FDS];
	int n = 0;
	switch (hc->phase) {
	case PH_CONNECTING:
	case PH_SENDING:
		want[n++] = (struct pollfd){.fd = hc->fd, .events = POLLOUT};
		break;
	case PH_READING:
		want[n++] = (struct pollfd){.fd = hc->fd, .events = POLLIN};
		break;
	case PH_COMMAND:
		if (hc->pidfd >= 0)
			want[n++] = (struct pollfd){.fd = hc->pidfd, .events = POLLIN};
		if (hc->outfd >= 0)
			want[n++] = (struct pollfd){.fd = hc->outfd, .events = POLLIN};
		break;
	case PH_IDLE:
		break;
	}
	if (hc->zpidfd >= 0)
		want[n++] = (struct pollfd){.fd = hc->zpidfd, .events = POLLIN};
	if (n > max)
		n = max < 0 ? 0 : max;
	if (n > 0)
		memcpy(fds, want, (size_t)n * sizeof *fds);
	return n;
}

int64_t health_check_next_ms(const struct health_check *hc)
{
	if (!hc)
		return INT64_MAX;
	if (!hc->started)
		return 0;
	int64_t t = INT64_MAX;
	if (hc->phase != PH_IDLE) {
		t = hc->deadline;
		if (hc->phase == PH_COMMAND && hc->pidfd < 0 && hc->last_now + POLL_TICK_MS < t)
			t = hc->last_now + POLL_TICK_MS;
	} else if (hc->verdict != HEALTH_FAILING) {
		t = hc->due;
	}
	if (hc->zpid > 0 && hc->zpidfd < 0 && hc->last_now + POLL_TICK_MS < t)
		t = hc->last_now + POLL_TICK_MS;
	return t;
}

/* ---- construction ------------------------------------------------------------------ */

static void resolve_address(struct health_check *hc, const char *host, int port)
{
	bool v6 = strchr(host, ':') != NULL;
	if (!strcmp(host, "127.0.0.1"))
		snprintf(hc->where, sizeof hc->where, "port %d", port);
	else
		snprintf(hc->where, sizeof hc->where, "%s port %d", host, port);
	if (hc->kind == HEALTH_COMMAND)
		return;
	if (port < 1 || port > 65535) {
		snprintf(hc->addr_err, sizeof hc->addr_err, "no port given");
		return;
	}
	/* Numeric only: a health check must never wait on DNS. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	int r = getaddrinfo(host, portstr, &hints, &res);
	if (r || !res || res->ai_addrlen > sizeof hc->addr) {
		snprintf(hc->addr_err, sizeof hc->addr_err, "'%s' is not an IP address", host);
		if (res)
			freeaddrinfo(res);
		return;
	}
	memcpy(&hc->addr, res->ai_addr, res->ai_addrlen);
	hc->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	if (hc->kind == HEALTH_HTTP) {
		char *req = xasprintf("GET %s HTTP/1.0\r\n"
				      "Host: %s%s%s:%d\r\n"
				      "User-Agent: berth-health/1\r\n"
				      "Connection: close\r\n"
				      "\r\n",
				      hc->path, v6 ? "[" : "", host, v6 ? "]" : "", port);
		hc->request = req;
		hc->request_len = strlen(req);
	}
}

struct health_check *health_check_new(const struct health_spec *spec, const char *host_ip, int port,
				      char *const *env, const char *cwd)
{
	if (!spec || spec->kind == HEALTH_NONE)
		return NULL;
	struct health_check *hc = xcalloc(1, sizeof *hc);
	hc->kind = spec->kind;
	hc->fd = hc->pidfd = hc->outfd = hc->zpidfd = -1;
	hc->interval = spec->interval_ms ? (int64_t)spec->interval_ms : DEFAULT_INTERVAL_MS;
	hc->timeout = spec->timeout_ms ? (int64_t)spec->timeout_ms : DEFAULT_TIMEOUT_MS;
	hc->initial_delay = (int64_t)spec->initial_delay_ms;
	hc->need_failures = spec->failures > 0 ? spec->failures : DEFAULT_FAILURES;
	hc->need_successes = spec->successes > 0 ? spec->successes : DEFAULT_SUCCESSES;
	hc->path = xstrdup(spec->http_path && *spec->http_path ? spec->http_path : "/");
	if (hc->kind == HEALTH_COMMAND) {
		if (spec->ncommand && spec->command && spec->command[0] && *spec->command[0]) {
			hc->argv = strv_dup(spec->command, spec->ncommand);
		} else {
			/* The validator refuses this; fail each check rather
			 * than pretend the task is healthy. */
			char *const empty[] = {""};
			hc->argv = strv_dup(empty, 1);
		}
		if (env) {
			size_t n = 0;
			while (env[n])
				n++;
			hc->env = strv_dup(env, n);
		}
		if (cwd && *cwd)
			hc->cwd = xstrdup(cwd);
	}
	resolve_address(hc, host_ip && *host_ip ? host_ip : "127.0.0.1", port);
	return hc;
}

void health_check_free(struct health_check *hc)
{
	if (!hc)
		return;
	if (hc->pid > 0) {
		kill(-hc->pid, SIGKILL);
		reap(hc->pid);
	}
	if (hc->zpid > 0)
		reap(hc->zpid);
	end_check_resources(hc);
	close_fd(&hc->zpidfd);
	free(hc->path);
	strv_free(hc->argv);
	strv_free(hc->env);
	free(hc->cwd);
	free(hc->request);
	free(hc);
}

/* ---- accessors -------------------------------------------------------------------- */

enum health_verdict health_check_verdict(const struct health_check *hc)
{
	return hc ? hc->verdict : HEALTH_UNKNOWN;
}

const char *health_check_last_error(const struct health_check *hc)
{
	return hc ? hc->last_error : "";
}

void health_check_counters(const struct health_check *hc, struct health_counts *out)
{
	if (hc)
		*out = hc->c;
	else
		memset(out, 0, sizeof *out);
}

const char *health_verdict_name(enum health_verdict v)
{
	switch (v) {
	case HEALTH_PASSING:
		return "passing";
	case HEALTH_FAILING:
		return "failing";
	case HEALTH_UNKNOWN:
		break;
	}
	return "unknown";
}
