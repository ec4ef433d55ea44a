/* berth task exec KEY/INSTANCE|TASK_ID [-i] [-t] -- COMMAND [ARG...]
 *
 * Asks the server where to go (POST /v1/tasks/REF/exec: the role check,
 * the audit, the agent's URL and a ticket), then upgrades a connection to
 * the agent to the "berth-exec" stream (core/exec_stream.h) and relays:
 * our stdin (with -i) to the command, its stdout and stderr to ours, the
 * terminal's size (with -t) as it changes. The exit status is the
 * command's; 126 when it could not be run in the task at all (unknown
 * task, not running, forbidden, agent unreachable), 127 when the command
 * is not found there (task-exec's). */
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "core/exec_stream.h"

#define EXEC_CANNOT 126

static const char *usage =
    "berth task exec KEY/INSTANCE|TASK_ID [-i] [-t] [--addr URL] -- COMMAND [ARG...]";

static volatile sig_atomic_t winch = 1;
static void on_winch(int sig)
{
	(void)sig;
	winch = 1;
}

/* ---- the connection ----------------------------------------------------------- */

static int wait_sock(curl_socket_t s, short ev, int ms)
{
	struct pollfd pf = {.fd = s, .events = ev};
	return poll(&pf, 1, ms);
}

static int sock_send(CURL *h, curl_socket_t s, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(h, p, len, &n);
		if (rc == CURLE_AGAIN) {
			wait_sock(s, POLLOUT, 1000);
			continue;
		}
		if (rc != CURLE_OK)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static struct termios saved_tio;
static bool raw_on;
static void raw_restore(void)
{
	if (raw_on)
		tcsetattr(0, TCSADRAIN, &saved_tio);
	raw_on = false;
}

static void raw_mode(void)
{
	if (tcgetattr(0, &saved_tio) < 0)
		return;
	struct termios t = saved_tio;
	cfmakeraw(&t);
	if (tcsetattr(0, TCSADRAIN, &t) == 0) {
		raw_on = true;
		atexit(raw_restore);
	}
}

/* The agent's answer to the Upgrade: 0 when 101 (rest: bytes after the
 * headers, already frames), else -1 with the reason printed. */
static int read_upgrade(CURL *h, curl_socket_t s, char **rest, size_t *nrest)
{
	char buf[16384];
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		if (len + 1 >= sizeof buf) {
			cli_fail("the agent's answer is too long");
			return -1;
		}
		size_t n = 0;
		CURLcode rc = curl_easy_recv(h, buf + len, sizeof buf - 1 - len, &n);
		if (rc == CURLE_AGAIN) {
			if (wait_sock(s, POLLIN, 30000) <= 0) {
				cli_fail("the agent did not answer");
				return -1;
			}
			continue;
		}
		if (rc != CURLE_OK || n == 0)
			break;
		len += n;
		buf[len] = 0;
		end = strstr(buf, "\r\n\r\n");
	}
	buf[len] = 0;
	if (end && !strncmp(buf, "HTTP/1.1 101", 12)) {
		end += 4;
		*nrest = len - (size_t)(end - buf);
		*rest = xmalloc(*nrest + 1);
		memcpy(*rest, end, *nrest);
		return 0;
	}
	/* An error: its JSON body (the agent closes or sends it whole). */
	int code = 0;
	sscanf(buf, "HTTP/1.%*d %d", &code);
	json_t *j = end ? json_loads(end + 4, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
	const char *m = json_string_value(json_object_get(j, "error"));
	cli_fail("the agent refused the exec (%d): %s", code, m ? m : "no reason given");
	json_decref(j);
	return -1;
}

/* ---- the relay ----------------------------------------------------------------- */

/* Our stdin goes in frames of this much: with its header, 64 KiB (four
 * full TLS records). */
#define STDIN_CHUNK (65536 - EXEC_HEADER_LEN)

/* The frame on its way to the agent, sent as one write. curl_easy_send may
 * take it in parts or not at all (CURLE_AGAIN), and OpenSSL then wants the
 * same bytes again: nothing is added until all of it went. Meanwhile the
 * relay goes on reading the agent's frames: a command that writes while it
 * reads (cat) would otherwise fill every buffer on the way, and neither
 * side would move. */
struct outbox {
	uint8_t buf[EXEC_HEADER_LEN + STDIN_CHUNK];
	size_t len, off;
};

static void outbox_frame(struct outbox *o, enum exec_frame_kind k, const void *d, size_t n)
{
	exec_frame_header(o->buf, k, (uint32_t)n);
	if (n)
		memcpy(o->buf + EXEC_HEADER_LEN, d, n);
	o->len = EXEC_HEADER_LEN + n;
	o->off = 0;
}

/* Send what the connection takes now; o->len is 0 once all of it went.
 * -1 when the connection failed. */
static int outbox_push(CURL *h, struct outbox *o)
{
	while (o->off < o->len) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(h, o->buf + o->off, o->len - o->off, &n);
		if (rc == CURLE_AGAIN)
			return 0;
		if (rc != CURLE_OK)
			return -1;
		o->off += n;
	}
	o->len = o->off = 0;
	return 0;
}

/* The terminal's size as a resize frame (nothing when it has none). */
static void outbox_size(struct outbox *o)
{
	struct winsize ws;
	if (ioctl(1, TIOCGWINSZ, &ws) < 0 && ioctl(0, TIOCGWINSZ, &ws) < 0)
		return;
	uint8_t b[4];
	exec_put_u32(b, (uint32_t)ws.ws_col << 16 | ws.ws_row);
	outbox_frame(o, EXEC_RESIZE, b, 4);
}

/* Read our stdin into the outbox as one stdin frame: 1, or 0 at its end
 * (*eof set), or -1 when interrupted. */
static int outbox_stdin(struct outbox *o, bool *eof)
{
	ssize_t r = read(0, o->buf + EXEC_HEADER_LEN, STDIN_CHUNK);
	if (r < 0 && errno == EINTR)
		return -1;
	if (r <= 0) {
		*eof = true;
		return 0;
	}
	exec_frame_header(o->buf, EXEC_STDIN, (uint32_t)r);
	o->len = EXEC_HEADER_LEN + (size_t)r;
	o->off = 0;
	return 1;
}

static void write_fd(int fd, const uint8_t *d, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(fd, d + off, n - off);
		if (w <= 0 && errno != EINTR)
			break;
		off += w > 0 ? (size_t)w : 0;
	}
}

/* Act on the whole frames in *p (*left bytes): the command's output to
 * ours, its exit status into *status. -1 on a malformed frame. */
static int take_frames(struct exec_reader *rd, const uint8_t **p, size_t *left, int *status)
{
	while (*left && *status < 0) {
		size_t used;
		struct exec_frame f;
		int k = exec_reader_next(rd, *p, *left, &used, &f);
		if (k < 0) {
			cli_fail("the agent sent a malformed frame");
			return -1;
		}
		*p += used;
		*left -= used;
		if (k == 0)
			break;
		if (f.kind == EXEC_STDOUT || f.kind == EXEC_STDERR) {
			write_fd(f.kind == EXEC_STDOUT ? 1 : 2, f.data, f.len);
		} else if (f.kind == EXEC_ERROR) {
			raw_restore();
			cli_fail("%.*s", (int)f.len, (const char *)f.data);
		} else if (f.kind == EXEC_EXIT) {
			*status = (int)exec_get_u32(f.data) & 0xff;
		}
	}
	return 0;
}

/* Relay until the exit frame: its status, or EXEC_CANNOT. Each turn: the
 * frames received, the next frame out (a resize first, then stdin's end),
 * what curl has decrypted; then wait for the agent, for room to send, or
 * for stdin when nothing waits to go. */
static int relay(CURL *h, curl_socket_t s, bool in, bool tty, const char *pre, size_t npre)
{
	struct exec_reader rd;
	exec_reader_init(&rd);
	struct outbox *ob = xcalloc(1, sizeof *ob);
	uint8_t *buf = xmalloc(EXEC_FRAME_MAX);
	int status = -1;
	bool stdin_open = in, eof_due = !in && !tty;
	const uint8_t *p = (const uint8_t *)pre;
	size_t left = npre;
	for (;;) {
		if (take_frames(&rd, &p, &left, &status) < 0 || status >= 0)
			break;
		if (!ob->len && tty && winch) {
			winch = 0;
			outbox_size(ob);
		}
		if (!ob->len && eof_due) {
			outbox_frame(ob, EXEC_STDIN, NULL, 0);
			eof_due = false;
		}
		if (ob->len && outbox_push(h, ob) < 0)
			break;
		size_t n = 0;
		CURLcode rc = curl_easy_recv(h, buf, EXEC_FRAME_MAX, &n);
		if (rc == CURLE_OK && n > 0) {
			p = buf;
			left = n;
			continue;
		}
		if (rc != CURLE_AGAIN)
			break; /* closed, or failed */
		bool want_stdin = stdin_open && !ob->len && !eof_due;
		struct pollfd pf[2] = {
		    {.fd = s, .events = (short)(POLLIN | (ob->len ? POLLOUT : 0))},
		    {.fd = want_stdin ? 0 : -1, .events = POLLIN},
		};
		if (poll(pf, 2, 500) < 0 && errno != EINTR)
			break;
		if (want_stdin && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    outbox_stdin(ob, &eof_due) == 0)
			stdin_open = false;
	}
	free(buf);
	free(ob);
	exec_reader_release(&rd);
	if (status < 0) {
		raw_restore();
		cli_fail("the connection to the agent ended before the command's exit status");
		return EXEC_CANNOT;
	}
	return status;
}

static int exec_at_agent(const char *url, const char *command, const char *cacert, bool in,
			 bool tty)
{
	CURL *h = curl_easy_init();
	/* The command's own URL part after the host. */
	const char *path = strstr(url, "://");
	path = path ? strchr(path + 3, '/') : NULL;
	if (!h || !path) {
		cli_fail("the server gave a malformed exec URL");
		return EXEC_CANNOT;
	}
	char *hostpart = xstrndup(url, (size_t)(path - url));
	curl_easy_setopt(h, CURLOPT_URL, hostpart);
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	if (cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
	int rc = EXEC_CANNOT;
	curl_socket_t s = CURL_SOCKET_BAD;
	CURLcode cr = curl_easy_perform(h);
	if (cr != CURLE_OK || curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK ||
	    s == CURL_SOCKET_BAD) {
		cli_fail("cannot reach the task's agent at %s: %s", hostpart,
			 curl_easy_strerror(cr));
		goto out;
	}
	unsigned cols = 0, rows = 0;
	struct winsize ws;
	if (tty && (ioctl(1, TIOCGWINSZ, &ws) == 0 || ioctl(0, TIOCGWINSZ, &ws) == 0)) {
		cols = ws.ws_col;
		rows = ws.ws_row;
	}
	const char *host = strstr(hostpart, "://") + 3;
	char *req = xasprintf("GET %s&cols=%u&rows=%u HTTP/1.1\r\nHost: %s\r\n"
			      "Connection: Upgrade\r\nUpgrade: berth-exec\r\n"
			      "X-Berth-Command: %s\r\n\r\n",
			      path, cols, rows, host, command);
	int sr = sock_send(h, s, req, strlen(req));
	free(req);
	char *rest = NULL;
	size_t nrest = 0;
	if (sr < 0) {
		cli_fail("cannot send the exec request to %s", hostpart);
		goto out;
	}
	if (read_upgrade(h, s, &rest, &nrest) < 0)
		goto out;
	if (tty && isatty(0)) {
		raw_mode();
		signal(SIGWINCH, on_winch);
	}
	rc = relay(h, s, in, tty, rest, nrest);
	raw_restore();
	free(rest);
out:
	free(hostpart);
	curl_easy_cleanup(h);
	return rc;
}

int cmd_task_exec_cli(int argc, char **argv)
{
	/* argv[0] = "exec"; options until "--", then the command. */
	const char *ref = NULL, *addr = NULL;
	bool in = false, tty = false;
	int i = 1;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			printf("usage: %s\n\noptions:\n"
			       "  -i, --interactive            send stdin to the command\n"
			       "  -t, --tty                    run the command in a terminal\n"
			       "  --addr VALUE                 server address (default "
			       "$BERTH_ADDR)\n",
			       usage);
			return 0;
		}
		if (!strcmp(a, "-i") || !strcmp(a, "--interactive"))
			in = true;
		else if (!strcmp(a, "-t") || !strcmp(a, "--tty"))
			tty = true;
		else if (!strcmp(a, "-it") || !strcmp(a, "-ti"))
			in = tty = true;
		else if (!strcmp(a, "--addr") && i + 1 < argc)
			addr = argv[++i];
		else if (!strncmp(a, "--addr=", 7))
			addr = a + 7;
		else if (a[0] == '-') {
			cli_fail("unknown option '%s' (see 'berth task exec --help')", a);
			return 2;
		} else if (!ref)
			ref = a;
		else {
			cli_fail("the command goes after '--': usage: %s", usage);
			return 2;
		}
	}
	if (!ref || i + 1 >= argc || !argv[i + 1][0]) {
		cli_fail("usage: %s", usage);
		return 2;
	}
	if (tty && !isatty(0) && in) {
		cli_fail("-t with -i needs a terminal as stdin (drop -t to pipe input)");
		return 2;
	}
	json_t *cmd = json_array();
	for (int k = i + 1; k < argc; k++)
		json_array_append_new(cmd, json_string(argv[k]));
	json_t *body = json_pack("{s:o,s:b}", "command", cmd, "tty", tty);
	struct http_client *hc = cli_client(addr);
	char *path = xasprintf("/v1/tasks/%s/exec", ref);
	json_t *reply = NULL;
	struct berr err = {0};
	int rc;
	if (http_json(hc, "POST", path, body, 15000, &reply, &err) < 0) {
		cli_fail("cannot exec in '%s': %s", ref, err.msg);
		rc = EXEC_CANNOT;
	} else {
		const char *url = json_string_value(json_object_get(reply, "url"));
		const char *command = json_string_value(json_object_get(reply, "command"));
		char *ca = cli_cacert(addr);
		rc = url && command ? exec_at_agent(url, command, ca, in, tty)
				    : cli_fail("the server's exec answer has no url");
		free(ca);
	}
	free(path);
	json_decref(reply);
	json_decref(body);
	http_client_free(hc);
	fflush(stdout);
	return rc;
}
