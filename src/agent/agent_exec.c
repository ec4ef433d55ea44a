/* agent_exec.c - `berth task exec` on the agent (agent_exec.h).
 *
 * One thread per exec relays between the upgraded connection and the
 * command:
 *
 *   client --stdin/resize frames--> thread --> pipe or pty master --> task-exec
 *   client <--stdout/stderr/exit--- thread <-- pipes or pty master <--
 *
 * The exit frame goes out once the command's output reached EOF and
 * task-exec was reaped; a client gone first gets the command killed
 * (task-exec's process group; the command inside dies with its parent,
 * PR_SET_PDEATHSIG, or its driver's guard for oci and docker). */
#include "agent/agent_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "agent/task_exec.h"
#include "core/base64.h"
#include "core/exec_stream.h"
#include "core/log.h"
#include "core/pki.h"

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The sessions under way: the listener's daemon must not stop under an
 * upgraded connection (the agent stops), so agent_exec_cut_all() ends
 * them first. */
static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sessions_done = PTHREAD_COND_INITIALIZER;
static int sessions_active;
static _Atomic bool sessions_cut;

struct exec_session {
	struct agent *a;
	char *task_id;
	char **argv; /* task-exec's */
	bool tty;
	unsigned cols, rows;
	char *extra; /* bytes read past the request (already frames) */
	size_t nextra;
	int sock;
	struct MHD_UpgradeResponseHandle *urh;
	/* stdin not yet taken by the command: while there is some, the
	 * client's frames wait in the socket (back-pressure), so a command
	 * that writes before it reads never deadlocks with us. */
	struct sbuf pend;
	size_t pend_off;
	bool close_in; /* stdin closed by the client: close once pend is out */
};

static void session_free(struct exec_session *x)
{
	free(x->task_id);
	strv_free(x->argv);
	free(x->extra);
	sbuf_release(&x->pend);
	free(x);
}

/* ---- the ticket ---------------------------------------------------------------- */

static bool exec_ticket_ok(struct agent *a, const char *task, bool tty, const char *command,
			   const char *ticket)
{
	int64_t expiry = agent_ticket_expiry(ticket);
	if (expiry < 0)
		return false;
	char *data = xasprintf("exec|%s|%lld|%d|%s", task, (long long)expiry, tty ? 1 : 0, command);
	bool ok = agent_ticket_signed(a, ticket, data);
	free(data);
	return ok;
}

/* The words of X-Berth-Command: NULL when it is not the base64 of a JSON
 * list of 1..256 non-empty strings. */
static char **command_words(const char *b64, size_t *n)
{
	char *raw = NULL;
	size_t len = 0;
	if (!b64 || base64_decode(b64, strlen(b64), &raw, &len) < 0)
		return NULL;
	json_t *j = json_loadb(raw, len, 0, NULL);
	free(raw);
	size_t k = json_array_size(j);
	if (!json_is_array(j) || k == 0 || k > 256) {
		json_decref(j);
		return NULL;
	}
	char **w = xcalloc(k + 1, sizeof *w);
	for (size_t i = 0; i < k; i++) {
		const char *s = json_string_value(json_array_get(j, i));
		if (!s || (i == 0 && !*s)) {
			strv_free(w);
			json_decref(j);
			return NULL;
		}
		w[i] = xstrdup(s);
	}
	json_decref(j);
	*n = k;
	return w;
}

/* ---- relaying ------------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && (errno == EINTR))
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			if (poll(&pf, 1, 30000) <= 0)
				return -1;
			continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* One write for header and payload: the listener's TLS front then reads
 * them together, into as few records as they fit (not a 5-byte record
 * for every header). */
static int send_frame(int sock, enum exec_frame_kind k, const void *data, size_t len)
{
	uint8_t hdr[EXEC_HEADER_LEN];
	exec_frame_header(hdr, k, (uint32_t)len);
	struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof hdr},
			       {.iov_base = (void *)data, .iov_len = len}};
	ssize_t w;
	while ((w = writev(sock, iov, len ? 2 : 1)) < 0 && errno == EINTR)
		;
	if (w < 0 && errno != EAGAIN)
		return -1;
	size_t done = w > 0 ? (size_t)w : 0;
	if (done < sizeof hdr && write_all(sock, hdr + done, sizeof hdr - done) < 0)
		return -1;
	done = done > sizeof hdr ? done - sizeof hdr : 0;
	return done < len ? write_all(sock, (const char *)data + done, len - done) : 0;
}

static void send_exit(int sock, int status)
{
	uint8_t b[4];
	exec_put_u32(b, (uint32_t)status);
	send_frame(sock, EXEC_EXIT, b, 4);
}

static void set_winsize(int fd, unsigned cols, unsigned rows)
{
	if (!cols || !rows)
		return;
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
	ioctl(fd, TIOCSWINSZ, &ws);
}

/* Start task-exec: *in gets the fd to write its stdin to, out[0]/out[1]
 * the fds to read its stdout/stderr from (the pty master for both with a
 * TTY: out[1] = -1). Returns its pid, or -errno. */
static pid_t spawn_task_exec(struct exec_session *x, int *in, int out[2])
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	int p_in[2] = {-1, -1}, p_out[2] = {-1, -1}, p_err[2] = {-1, -1}, master = -1;
	char slave[64];
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	int r = 0;
	if (x->tty) {
		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
		    ptsname_r(master, slave, sizeof slave)) {
			r = -errno;
			goto out;
		}
		set_winsize(master, x->cols, x->rows);
		/* A session leader opening a terminal makes it its controlling
		 * one: glibc starts the session before the file actions. */
		flags |= POSIX_SPAWN_SETSID;
		posix_spawn_file_actions_addopen(&fa, 0, slave, O_RDWR, 0);
		posix_spawn_file_actions_adddup2(&fa, 0, 1);
		posix_spawn_file_actions_adddup2(&fa, 0, 2);
	} else {
		if (pipe2(p_in, O_CLOEXEC) < 0 || pipe2(p_out, O_CLOEXEC) < 0 ||
		    pipe2(p_err, O_CLOEXEC) < 0) {
			r = -errno;
			goto out;
		}
		posix_spawn_file_actions_adddup2(&fa, p_in[0], 0);
		posix_spawn_file_actions_adddup2(&fa, p_out[1], 1);
		posix_spawn_file_actions_adddup2(&fa, p_err[1], 2);
		flags |= POSIX_SPAWN_SETPGROUP;
		posix_spawnattr_setpgroup(&at, 0);
	}
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, flags);
	pid_t pid;
	/* The agent's environment, and BERTH_EXEC_STDIN: the docker driver
	 * then attaches the command's stdin (a health check's is not). */
	extern char **environ;
	size_t ne = 0;
	while (environ[ne])
		ne++;
	char **env = xcalloc(ne + 2, sizeof *env);
	memcpy(env, environ, ne * sizeof *env);
	env[ne] = "BERTH_EXEC_STDIN=1";
	r = -posix_spawn(&pid, x->argv[0], &fa, &at, x->argv, env);
	free(env);
out:
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close_fd(&p_in[0]);
	close_fd(&p_out[1]);
	close_fd(&p_err[1]);
	if (r < 0) {
		close_fd(&master);
		close_fd(&p_in[1]);
		close_fd(&p_out[0]);
		close_fd(&p_err[0]);
		return r;
	}
	if (x->tty) {
		*in = master;
		out[0] = master;
		out[1] = -1;
	} else {
		*in = p_in[1];
		out[0] = p_out[0];
		out[1] = p_err[0];
	}
	return pid;
}

/* Apply one frame from the client. -1: protocol error. */
static int client_frame(struct exec_session *x, const struct exec_frame *f, int *in)
{
	switch (f->kind) {
	case EXEC_STDIN:
		if (*in < 0)
			return 0;
		if (!f->len) {
			if (x->tty) /* a terminal has no end: ^D at the start of a line */
				sbuf_add(&x->pend, "\004", 1);
			else
				x->close_in = true;
			return 0;
		}
		sbuf_add(&x->pend, (const char *)f->data, f->len);
		return 0;
	case EXEC_RESIZE:
		if (x->tty && *in >= 0) {
			uint32_t v = exec_get_u32(f->data);
			set_winsize(*in, v >> 16, v & 0xffff);
		}
		return 0;
	default:
		return -1;
	}
}

/* Give the command what stdin it takes now (in is non-blocking). */
static void feed_stdin(struct exec_session *x, int *in)
{
	while (*in >= 0 && x->pend_off < x->pend.len) {
		ssize_t w = write(*in, x->pend.buf + x->pend_off, x->pend.len - x->pend_off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w <= 0) { /* the command stopped reading: drop the rest */
			x->pend_off = x->pend.len;
			if (!x->tty)
				close_fd(in);
			break;
		}
		x->pend_off += (size_t)w;
	}
	if (x->pend_off >= x->pend.len) {
		x->pend.len = x->pend_off = 0;
		if (x->close_in && !x->tty)
			close_fd(in);
	}
}

static void *session_main(void *arg)
{
	struct exec_session *x = arg;
	int sock = x->sock;
	/* The socket is non-blocking (libmicrohttpd made it so): the plain end
	 * of the TLS front's socketpair, or the client's connection without TLS. */
	int in = -1, out[2] = {-1, -1};
	pid_t pid = spawn_task_exec(x, &in, out);
	if (pid < 0) {
		char msg[200];
		snprintf(msg, sizeof msg, "cannot start 'berth task-exec': %s", err_str((int)pid));
		send_frame(sock, EXEC_ERROR, msg, strlen(msg));
		send_exit(sock, 126);
		goto done;
	}
	/* In a TTY the pty master is both ends; keep out[0] as the reader. */
	if (x->tty)
		in = fcntl(out[0], F_DUPFD_CLOEXEC, 3);
	if (in >= 0)
		fcntl(in, F_SETFL, fcntl(in, F_GETFL) | O_NONBLOCK);
	struct exec_reader rd;
	exec_reader_init(&rd);
	bool client_gone = false;
	if (x->nextra) {
		const uint8_t *p = (const uint8_t *)x->extra;
		size_t left = x->nextra;
		while (left) {
			size_t used;
			struct exec_frame f;
			int k = exec_reader_next(&rd, p, left, &used, &f);
			if (k < 0 || (k == 1 && client_frame(x, &f, &in) < 0)) {
				client_gone = true;
				break;
			}
			p += used;
			left -= used;
		}
	}
	char *obuf = xmalloc(EXEC_FRAME_MAX);
	uint8_t *ib = xmalloc(EXEC_FRAME_MAX);
	while (!client_gone && (out[0] >= 0 || out[1] >= 0)) {
		if (sessions_cut) {
			client_gone = true;
			break;
		}
		feed_stdin(x, &in);
		bool pending = in >= 0 && x->pend.len > 0;
		struct pollfd pf[4] = {
		    {.fd = pending ? -1 : sock, .events = POLLIN},
		    {.fd = out[0], .events = POLLIN},
		    {.fd = out[1], .events = POLLIN},
		    {.fd = pending ? in : -1, .events = POLLOUT},
		};
		if (poll(pf, 4, 1000) < 0 && errno != EINTR)
			break;
		for (int s = 0; s < 2; s++) {
			if (out[s] < 0 || !(pf[1 + s].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t r = read(out[s], obuf, EXEC_FRAME_MAX);
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (r <= 0) { /* EOF; EIO on a pty whose slave side closed */
				if (x->tty)
					close_fd(&in);
				close_fd(&out[s]);
				continue;
			}
			if (send_frame(sock, s ? EXEC_STDERR : EXEC_STDOUT, obuf, (size_t)r) < 0)
				client_gone = true;
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(sock, ib, EXEC_FRAME_MAX);
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (r <= 0) {
				client_gone = true;
				break;
			}
			const uint8_t *p = ib;
			size_t left = (size_t)r;
			while (left) {
				size_t used;
				struct exec_frame f;
				int k = exec_reader_next(&rd, p, left, &used, &f);
				if (k < 0 || (k == 1 && client_frame(x, &f, &in) < 0)) {
					client_gone = true;
					break;
				}
				p += used;
				left -= used;
			}
		}
	}
	free(obuf);
	free(ib);
	exec_reader_release(&rd);
	if (client_gone) {
		log_info("exec in task %s: the client went away, killing the command", x->task_id);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (!client_gone)
		send_exit(sock, status);
	log_info("exec in task %s: '%s' exited %d", x->task_id, x->argv[4], status);
done:
	close_fd(&in);
	close_fd(&out[0]);
	close_fd(&out[1]);
	MHD_upgrade_action(x->urh, MHD_UPGRADE_ACTION_CLOSE);
	session_free(x);
	pthread_mutex_lock(&sessions_lock);
	sessions_active--;
	pthread_cond_broadcast(&sessions_done);
	pthread_mutex_unlock(&sessions_lock);
	return NULL;
}

void agent_exec_cut_all(void)
{
	pthread_mutex_lock(&sessions_lock);
	if (sessions_active)
		log_info("ending %d exec session(s): the listener restarts", sessions_active);
	sessions_cut = true;
	/* A session notices within its poll timeout (1 s). */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	while (sessions_active > 0 &&
	       pthread_cond_timedwait(&sessions_done, &sessions_lock, &until) == 0)
		;
	sessions_cut = false;
	pthread_mutex_unlock(&sessions_lock);
}

static void upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
		     size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct exec_session *x = cls;
	(void)conn;
	(void)con_cls;
	x->sock = sock;
	x->urh = urh;
	/* libmicrohttpd turns Nagle on for an upgraded connection: a frame's
	 * tail (a terminal's echo, the exit) would wait for the client's
	 * delayed ACK. Without TLS this is the client's TCP connection; behind
	 * the TLS front (tls_front.h) a socketpair, and this does nothing. */
	int one = 1;
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (extra_in_size) {
		x->extra = xmalloc(extra_in_size);
		memcpy(x->extra, extra_in, extra_in_size);
		x->nextra = extra_in_size;
	}
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&sessions_lock);
	sessions_active++;
	pthread_mutex_unlock(&sessions_lock);
	if (pthread_create(&th, &attr, session_main, x)) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		session_free(x);
		pthread_mutex_lock(&sessions_lock);
		sessions_active--;
		pthread_mutex_unlock(&sessions_lock);
	}
	pthread_attr_destroy(&attr);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *msg)
{
	char *body = xasprintf("{\"error\":\"%s\",\"status\":%u}\n", msg, status);
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static unsigned query_uint(struct MHD_Connection *conn, const char *name, unsigned max)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
	int64_t n;
	if (!v || parse_int64(v, &n) < 0 || n < 0 || n > max)
		return 0;
	return (unsigned)n;
}

enum MHD_Result agent_exec_request(struct agent *a, struct MHD_Connection *conn, const char *id,
				   const char *method)
{
	if (strcmp(method, "GET"))
		return reply(conn, 405, "method not allowed");
	if (!*id || strchr(id, '/') || strstr(id, ".."))
		return reply(conn, 404, "unknown route");
	const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
	if (!up || strcasecmp(up, "berth-exec"))
		return reply(conn, 426, "an exec needs 'Upgrade: berth-exec'");
	const char *cmd = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Berth-Command");
	const char *ticket = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ticket");
	bool tty = query_uint(conn, "tty", 1) == 1;
	size_t n = 0;
	char **words = command_words(cmd, &n);
	if (!words)
		return reply(conn, 400,
			     "X-Berth-Command: expected the base64 of a JSON list of words");
	if (a->id.tls && !exec_ticket_ok(a, id, tty, cmd, ticket)) {
		strv_free(words);
		return reply(conn, 403,
			     "an exec needs a valid ticket from the server (POST "
			     "/v1/tasks/ID/exec there)");
	}
	char *sandbox = xasprintf("%s/%s", a->tasks_dir, id);
	struct stat st;
	if (stat(sandbox, &st) < 0) {
		free(sandbox);
		strv_free(words);
		return reply(conn, 404, "no such task on this node");
	}
	struct exec_session *x = xcalloc(1, sizeof *x);
	x->a = a;
	x->task_id = xstrdup(id);
	x->tty = tty;
	x->cols = query_uint(conn, "cols", 65535);
	x->rows = query_uint(conn, "rows", 65535);
	size_t argc;
	x->argv = task_exec_argv(a->o.exe, sandbox, words, n, &argc);
	free(sandbox);
	strv_free(words);
	x->sock = -1;
	sbuf_init(&x->pend);
	log_info("exec in task %s: '%s'%s", id, x->argv[4], tty ? " with a tty" : "");
	struct MHD_Response *r = MHD_create_response_for_upgrade(upgraded, x);
	MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "berth-exec");
	enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, r);
	MHD_destroy_response(r);
	if (ret != MHD_YES)
		session_free(x);
	return ret;
}
