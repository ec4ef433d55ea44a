/* httpd-tiny - a very small HTTP server that tests run as a task.
 *
 *   httpd-tiny PORT [BODY]
 *
 * Answers every request with 200 and BODY (default "ok"), except
 * GET /fail which answers 500. Exits 0 on SIGTERM (it honours graceful
 * stops), so tests can tell a graceful stop from a kill; POST /quitquitquit
 * makes it exit 0 at once, saying so on stdout. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: httpd-tiny PORT [BODY]\n");
		return 2;
	}
	const char *body = argc > 2 ? argv[2] : "ok";
	struct sigaction sa = {0};
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((unsigned short)atoi(argv[1]))};
	a.sin_addr.s_addr = htonl(INADDR_ANY);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
		perror("httpd-tiny: bind");
		return 1;
	}
	printf("httpd-tiny listening on %s\n", argv[1]);
	fflush(stdout);
	while (!stop) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		char req[2048];
		ssize_t n = read(c, req, sizeof req - 1);
		req[n > 0 ? n : 0] = 0;
		int fail = strncmp(req, "GET /fail", 9) == 0;
		if (!strncmp(req, "POST /quitquitquit", 18)) {
			const char *ok = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
			if (write(c, ok, strlen(ok)) < 0) {
				/* the client went away */
			}
			close(c);
			printf("httpd-tiny: quitquitquit\n");
			return 0;
		}
		char resp[4096];
		int len =
		    snprintf(resp, sizeof resp,
			     "HTTP/1.0 %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			     fail ? "500 Internal Server Error" : "200 OK", strlen(body), body);
		if (write(c, resp, (size_t)len) < 0) {
			/* the client went away */
		}
		close(c);
	}
	printf("httpd-tiny stopping on SIGTERM\n");
	return 0;
}
