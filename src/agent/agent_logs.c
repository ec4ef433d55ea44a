/* agent_logs.c - the logs listener: GET /v1/logs/TASK?stream=&offset=
 * serves a chunk of a task's stdout or stderr from its sandbox. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "core/addr.h"

/* ---- logs ------------------------------------------------------------------- */

#define LOG_CHUNK (1 << 20)

static enum MHD_Result logs_request(void *cls, struct MHD_Connection *conn, const char *url,
				    const char *method, const char *version, const char *upload,
				    size_t *upload_size, void **con_cls)
{
	struct agent *a = cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	int status = 200;
	char *body = NULL;
	size_t len = 0;
	long long next = 0;
	const char *id = !strncmp(url, "/v1/logs/", 9) ? url + 9 : NULL;
	const char *stream = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "stream");
	const char *off = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset");
	if (!stream)
		stream = "stdout";
	if (strcmp(method, "GET")) {
		status = 405;
		body = xstrdup("{\"error\":\"method not allowed\",\"status\":405}\n");
	} else if (!id || !*id || strchr(id, '/') || strstr(id, "..") ||
		   (strcmp(stream, "stdout") && strcmp(stream, "stderr"))) {
		status = 404;
		body = xstrdup("{\"error\":\"unknown route\",\"status\":404}\n");
	} else {
		char *path = xasprintf("%s/%s/%s", a->tasks_dir, id, stream);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		free(path);
		if (fd < 0) {
			status = 404;
			body = xstrdup(
			    "{\"error\":\"no logs for this task on this node\",\"status\":404}\n");
		} else {
			struct stat st;
			fstat(fd, &st);
			long long o = 0;
			if (off) {
				int64_t v;
				if (parse_int64(off, &v) == 0)
					o = v;
			}
			if (o < 0)
				o = st.st_size + o < 0 ? 0 : st.st_size + o;
			if (o > st.st_size)
				o = 0; /* the file was rotated: start over */
			size_t want = (size_t)(st.st_size - o);
			if (want > LOG_CHUNK)
				want = LOG_CHUNK;
			body = xmalloc(want + 1);
			ssize_t r = pread(fd, body, want, o);
			len = r > 0 ? (size_t)r : 0;
			next = o + (long long)len;
			close(fd);
		}
	}
	if (status != 200)
		len = strlen(body);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	char nbuf[32];
	snprintf(nbuf, sizeof nbuf, "%lld", next);
	MHD_add_response_header(resp, "X-Berth-Offset", nbuf);
	MHD_add_response_header(resp, "Content-Type",
				status == 200 ? "application/octet-stream" : "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

int agent_logs_start(struct agent *a, const char *listen, struct berr *err)
{
	struct sockaddr_in sa;
	if (addr_parse(listen, &sa, err) < 0)
		return -1;
	a->logs = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, logs_request, a,
				   MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_TIMEOUT,
				   (unsigned)60, MHD_OPTION_END);
	if (!a->logs) {
		berr_set(err, 500, "cannot listen on '%s' for logs", listen);
		return -1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(a->logs, MHD_DAEMON_INFO_BIND_PORT);
	a->logs_port = di ? di->port : 0;
	if (sa.sin_addr.s_addr != htonl(INADDR_ANY)) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
		a->advertise = xasprintf("http://%s:%d", ip, a->logs_port);
	}
	return 0;
}

void agent_logs_stop(struct agent *a)
{
	if (a->logs)
		MHD_stop_daemon(a->logs);
	a->logs = NULL;
}
