/* agent_logs.c - the logs listener: GET /v1/logs/TASK?stream=&offset=
 * serves a chunk of a task's stdout or stderr from its sandbox. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "agent/agent_exec.h"
#include "agent/tls_front.h"
#include "core/addr.h"
#include "core/log.h"
#include "core/pki.h"

/* ---- logs ------------------------------------------------------------------- */

#define LOG_CHUNK (1 << 20)

int64_t agent_ticket_expiry(const char *ticket)
{
	const char *dot = ticket ? strchr(ticket, '.') : NULL;
	int64_t expiry;
	if (!dot || dot - ticket > 20)
		return -1;
	char num[24];
	snprintf(num, sizeof num, "%.*s", (int)(dot - ticket), ticket);
	if (parse_int64(num, &expiry) < 0 || expiry < time_now_ms() / 1000)
		return -1;
	return expiry;
}

bool agent_ticket_signed(struct agent *a, const char *ticket, const char *data)
{
	const char *dot = strchr(ticket, '.');
	if (!dot)
		return false;
	pthread_mutex_lock(&a->logs_lock);
	bool ok = a->logs_ca && pki_verify_hex(a->logs_ca, data, strlen(data), dot + 1);
	pthread_mutex_unlock(&a->logs_lock);
	return ok;
}

/* A ticket "EXPIRY.SIG": the cluster CA's signature of "logs|TASK|EXPIRY",
 * which a server gives whoever may read the task's logs. */
static bool ticket_ok(struct agent *a, const char *task, const char *ticket)
{
	int64_t expiry = agent_ticket_expiry(ticket);
	if (expiry < 0)
		return false;
	char *data = xasprintf("logs|%s|%lld", task, (long long)expiry);
	bool ok = agent_ticket_signed(a, ticket, data);
	free(data);
	return ok;
}

static enum MHD_Result logs_request(void *cls, struct MHD_Connection *conn, const char *url,
				    const char *method, const char *version, const char *upload,
				    size_t *upload_size, void **con_cls)
{
	struct agent *a = cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (!strncmp(url, "/v1/exec/", 9))
		return agent_exec_request(a, conn, url + 9, method);
	int status = 200;
	char *body = NULL;
	size_t len = 0;
	long long next = 0;
	if (!strcmp(url, "/metrics"))
		return (enum MHD_Result)agent_metrics_answer(a, conn, method);
	const char *id = !strncmp(url, "/v1/logs/", 9) ? url + 9 : NULL;
	const char *stream = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "stream");
	const char *off = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset");
	const char *ticket = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ticket");
	if (!stream)
		stream = "stdout";
	if (strcmp(method, "GET")) {
		status = 405;
		body = xstrdup("{\"error\":\"method not allowed\",\"status\":405}\n");
	} else if (!id || !*id || strchr(id, '/') || strstr(id, "..") ||
		   (strcmp(stream, "stdout") && strcmp(stream, "stderr"))) {
		status = 404;
		body = xstrdup("{\"error\":\"unknown route\",\"status\":404}\n");
	} else if (a->id.tls && !ticket_ok(a, id, ticket)) {
		status = 403;
		body = xstrdup("{\"error\":\"a task's logs need a valid ticket from the server "
			       "(GET /v1/tasks/ID/logs there)\",\"status\":403}\n");
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

int agent_logs_start(struct agent *a, const char *where, struct berr *err)
{
	struct sockaddr_in sa;
	if (addr_parse(where, &sa, err) < 0)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
		berr_set(err, 500, "cannot listen on '%s' for logs: %s", where, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	socklen_t sl = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	a->logs_fd = fd;
	a->logs_port = ntohs(sa.sin_port);
	if (sa.sin_addr.s_addr != htonl(INADDR_ANY)) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
		a->advertise =
		    xasprintf("%s://%s:%d", a->id.tls ? "https" : "http", ip, a->logs_port);
	}
	/* Without its certificate yet, the listener waits for the join
	 * (connections wait in the backlog). */
	return agent_identity_ready(a) ? agent_logs_serve(a, err) : 0;
}

/* The daemon, on the listening socket itself (no TLS) or fed by the TLS
 * front (tls_front.h: libmicrohttpd's own TLS would relay an exec stream 4
 * bytes at a time). Upgrades: `berth task exec` streams (agent_exec.h). */
static struct MHD_Daemon *logs_daemon(struct agent *a, bool behind_front)
{
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_UPGRADE;
	if (behind_front)
		return MHD_start_daemon(flags | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL,
					logs_request, a, MHD_OPTION_CONNECTION_TIMEOUT,
					(unsigned)60, MHD_OPTION_END);
	return MHD_start_daemon(flags, 0, NULL, NULL, logs_request, a, MHD_OPTION_LISTEN_SOCKET,
				a->logs_fd, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
				MHD_OPTION_END);
}

/* A connection the front took through its handshake. */
static void logs_handoff(void *cls, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
	struct agent *a = cls;
	if (MHD_add_connection(a->logs, fd, peer, peer_len) != MHD_YES)
		log_warn("logs listener: cannot take a connection: %s", strerror(errno));
}

/* With TLS: the daemon once, then the front with the current certificate,
 * or only the new certificate when both run (a renewal: open connections
 * and exec sessions go on). */
static int serve_tls(struct agent *a, const char *cert, const char *key, struct berr *err)
{
	if (a->logs_front)
		return tls_front_set_cert(a->logs_front, cert, key, err);
	if (!a->logs)
		a->logs = logs_daemon(a, true);
	if (!a->logs)
		return berr_set(err, 500, "cannot serve logs on port %d", a->logs_port);
	a->logs_front = tls_front_start(a->logs_fd, cert, key, logs_handoff, a, err);
	return a->logs_front ? 0 : -1;
}

int agent_logs_serve(struct agent *a, struct berr *err)
{
	char *cert = NULL, *key = NULL, *ca = NULL;
	int rc = 0;
	if (a->id.tls) {
		if (file_read_all(a->id.cert_path, &cert, NULL) < 0 ||
		    file_read_all(a->id.key_path, &key, NULL) < 0 ||
		    file_read_all(a->id.ca_path, &ca, NULL) < 0) {
			free(cert);
			free(key);
			return berr_set(err, 500, "cannot read the node certificate in %s",
					a->id.node_dir);
		}
		rc = serve_tls(a, cert, key, err);
	} else if (!a->logs) {
		a->logs = logs_daemon(a, false);
		if (!a->logs)
			rc = berr_set(err, 500, "cannot serve logs on port %d", a->logs_port);
	}
	pthread_mutex_lock(&a->logs_lock);
	free(a->logs_cert);
	free(a->logs_ca);
	a->logs_cert = cert;
	a->logs_ca = ca;
	pthread_mutex_unlock(&a->logs_lock);
	if (key)
		memset(key, 0, strlen(key));
	free(key);
	return rc;
}

void agent_logs_stop(struct agent *a)
{
	/* The front first: the daemon takes no connection from it any more. */
	tls_front_stop(a->logs_front);
	a->logs_front = NULL;
	bool fd_is_daemons = a->logs && !a->id.tls;
	if (a->logs) {
		agent_exec_cut_all();
		MHD_stop_daemon(a->logs); /* without TLS: closes the listening socket */
	}
	if (!fd_is_daemons && a->logs_fd >= 0)
		close(a->logs_fd);
	a->logs = NULL;
	a->logs_fd = -1;
	free(a->logs_cert);
	free(a->logs_ca);
	a->logs_cert = a->logs_ca = NULL;
}
