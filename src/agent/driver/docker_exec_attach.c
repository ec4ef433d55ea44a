/* docker_exec_attach.c - an exec started attached, with stdin and maybe a
 * TTY (docker.h): what `berth task exec -i/-t` needs from a docker task.
 *
 * curl cannot hand over an upgraded connection both ways, so this speaks
 * HTTP/1.1 itself on the Engine's unix socket: the start request with
 * "Upgrade: tcp", Docker's 101 (or 200 from older engines), then raw bytes
 * both ways. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "agent/driver/docker-internal.h"

static volatile sig_atomic_t winch;
static void on_winch(int sig)
{
	(void)sig;
	winch = 1;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static void resize(const char *sock, const char *exec_id)
{
	struct winsize ws;
	struct berr err = {0};
	if (ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
		docker_exec_resize(sock, exec_id, ws.ws_row, ws.ws_col, &err);
}

int docker_exec_attach(const char *sock, const char *exec_id, bool tty, docker_output_fn cb,
		       void *ud, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof sa.sun_path)
		return berr_set(err, 500, "docker: socket path '%s' is too long", sock);
	strcpy(sa.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return berr_set(err, 502, "docker: cannot connect to '%s': %s", sock, strerror(e));
	}
	const char *body =
	    tty ? "{\"Detach\":false,\"Tty\":true}" : "{\"Detach\":false,\"Tty\":false}";
	char *req = xasprintf("POST /exec/%s/start HTTP/1.1\r\nHost: docker\r\n"
			      "Content-Type: application/json\r\nConnection: Upgrade\r\n"
			      "Upgrade: tcp\r\nContent-Length: %zu\r\n\r\n%s",
			      exec_id, strlen(body), body);
	int rc = write_all(fd, req, strlen(req));
	free(req);
	char buf[16384];
	size_t have = 0;
	char *end = NULL;
	while (rc == 0 && !end && have < sizeof buf - 1) {
		ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
		buf[have] = 0;
		end = strstr(buf, "\r\n\r\n");
	}
	int status = 0;
	if (end)
		sscanf(buf, "HTTP/1.%*d %d", &status);
	if (rc < 0 || (status != 101 && status != 200)) {
		close(fd);
		return berr_set(err, 502, "docker: cannot start exec '%.12s' attached (HTTP %d)",
				exec_id, status);
	}
	struct termios saved;
	bool raw = false;
	struct sigaction old_sa;
	if (tty) {
		if (tcgetattr(0, &saved) == 0) {
			/* Docker's terminal does the line discipline: ours passes
			 * bytes through. */
			struct termios t = saved;
			cfmakeraw(&t);
			raw = tcsetattr(0, TCSANOW, &t) == 0;
		}
		struct sigaction act = {.sa_handler = on_winch};
		sigemptyset(&act.sa_mask);
		sigaction(SIGWINCH, &act, &old_sa);
		resize(sock, exec_id);
	}
	struct docker_demux dm;
	memset(&dm, 0, sizeof dm);
	size_t pre = have - (size_t)(end + 4 - buf);
	if (pre)
		tty ? cb(ud, 1, end + 4, pre) : docker_demux_feed(&dm, end + 4, pre, cb, ud);
	bool in_open = true;
	for (;;) {
		if (winch) {
			winch = 0;
			resize(sock, exec_id);
		}
		struct pollfd pf[2] = {{.fd = fd, .events = POLLIN},
				       {.fd = in_open ? 0 : -1, .events = POLLIN}};
		if (poll(pf, 2, 1000) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(0, buf, sizeof buf);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 || write_all(fd, buf, (size_t)r) < 0) {
				in_open = false;
				shutdown(fd, SHUT_WR); /* the command's stdin ends */
			}
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(fd, buf, sizeof buf);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break; /* the command's output ended */
			if (tty)
				cb(ud, 1, buf, (size_t)r);
			else
				docker_demux_feed(&dm, buf, (size_t)r, cb, ud);
		}
	}
	if (raw)
		tcsetattr(0, TCSANOW, &saved);
	if (tty)
		sigaction(SIGWINCH, &old_sa, NULL);
	close(fd);
	return 0;
}
