/* docker_api.c - the docker driver's Docker Engine API client on its unix
 * socket. See docker.h for the choices made; docker_run.c is the life of
 * a task (docker_supervise).
 *
 * Every request is one libcurl easy handle on its own connection to the
 * socket (connections to a local socket cost nothing worth pooling), so
 * the calls are independent and may come from any thread. The supervisor's
 * main phase drives two long requests at once - POST /wait and the logs
 * stream - with a curl multi handle in one thread, waking on the
 * supervisor's signalfd for stop requests: no threads in the supervisor.
 */
#include "agent/driver/docker-internal.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The newest API this client was written and tested against (Docker
 * 20.10); older servers down to 1.25 are spoken to in their version. */
#define API_MAX 1041
#define API_MIN 1025
#define CONNECT_TIMEOUT_MS 5000L
#define CALL_TIMEOUT_MS 60000L
/* An error reply is small; a stream that turns out to be one is cut. */
#define ERROR_BODY_MAX 65536

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
}

const char *docker__sock_or_default(const char *sock)
{
	return sock && *sock ? sock : DOCKER_DEFAULT_SOCKET;
}

static void lower_first(char *s)
{
	if (s && s[0] && isupper((unsigned char)s[0]) && !isupper((unsigned char)s[1]))
		s[0] = (char)tolower((unsigned char)s[0]);
}

/* Percent-encode everything but RFC 3986's unreserved characters (for
 * query values), or also keep '/', ':' and '@' (for image names in paths:
 * the daemon's router takes the name with its slashes). */
static void add_escaped(struct sbuf *sb, const char *s, bool path)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || strchr("-._~", *p) || (path && strchr("/:@", *p)))
			sbuf_add(sb, (const char *)p, 1);
		else
			sbuf_addf(sb, "%%%02X", *p);
	}
}

static char *escaped(const char *s, bool path)
{
	struct sbuf sb;
	sbuf_init(&sb);
	add_escaped(&sb, s, path);
	return sbuf_detach(&sb);
}

/* ---- one request ---- */

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	if (x->sink) {
		long st = 0;
		curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &st);
		if (st < 300) {
			x->sink(x->ud, p, n);
			return n;
		}
		if (x->buf.len >= ERROR_BODY_MAX)
			return n;
	}
	sbuf_add(&x->buf, p, n);
	return n;
}

/* path: what follows the host, version prefix included. */
static void xfer_setup(struct xfer *x, const char *sock, const char *method, const char *path,
		       const char *body, long timeout_ms)
{
	pthread_once(&curl_once, curl_init_once);
	memset(x, 0, sizeof *x);
	sbuf_init(&x->buf);
	x->c = curl_easy_init();
	if (!x->c) {
		fprintf(stderr, "berth: out of memory (curl_easy_init)\n");
		abort();
	}
	char *url = xasprintf("http://docker%s", path);
	CURL *c = x->c;
	curl_easy_setopt(c, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	if (timeout_ms > 0)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	/* No "Expect: 100-continue" round trip before a body. */
	x->hdrs = curl_slist_append(x->hdrs, "Expect:");
	if (body) {
		x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, body);
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
		curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, "");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
}

void docker__xfer_finish(struct xfer *x, CURLcode rc)
{
	x->rc = rc;
	curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &x->status);
	curl_easy_getinfo(x->c, CURLINFO_OS_ERRNO, &x->os_errno);
}

static void xfer_perform(struct xfer *x)
{
	docker__xfer_finish(x, curl_easy_perform(x->c));
}

void docker__xfer_cleanup(struct xfer *x)
{
	if (x->c)
		curl_easy_cleanup(x->c);
	curl_slist_free_all(x->hdrs);
	if (x->upload)
		fclose(x->upload);
	sbuf_release(&x->buf);
	memset(x, 0, sizeof *x);
}

/* A transport failure (no HTTP reply). */
bool docker__xfer_unreachable(const struct xfer *x)
{
	return x->rc != CURLE_OK && !(x->rc == CURLE_WRITE_ERROR && x->status);
}

int docker__reach_error(struct berr *err, const char *sock, const struct xfer *x)
{
	char reason[CURL_ERROR_SIZE + 64];
	if (x->os_errno)
		snprintf(reason, sizeof reason, "%s", strerror((int)x->os_errno));
	else
		snprintf(reason, sizeof reason, "%s",
			 x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->rc));
	lower_first(reason);
	return berr_set(err, 503, "docker is not reachable at '%s': %s", sock, reason);
}

/* Docker's message from an error reply: {"message": "..."}. */
static void reply_message(const struct xfer *x, char *buf, size_t n)
{
	json_t *j = json_loadb(x->buf.buf, x->buf.len, 0, NULL);
	const char *m = json_string_value(json_object_get(j, "message"));
	if (m && *m) {
		snprintf(buf, n, "%s", m);
	} else if (x->buf.len) {
		snprintf(buf, n, "%.*s", (int)x->buf.len, x->buf.buf);
		size_t l = strlen(buf);
		while (l && isspace((unsigned char)buf[l - 1]))
			buf[--l] = 0;
	} else {
		snprintf(buf, n, "HTTP %ld", x->status);
	}
	json_decref(j);
}

/* "docker: <what>: <Docker's message>", or unreachable. */
int docker__call_error(struct berr *err, const char *sock, const struct xfer *x, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));
int docker__call_error(struct berr *err, const char *sock, const struct xfer *x, const char *fmt,
		       ...)
{
	if (docker__xfer_unreachable(x))
		return docker__reach_error(err, sock, x);
	char what[512], msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	reply_message(x, msg, sizeof msg);
	berr_set(err, (int)x->status, "docker: %s: %s", what, msg);
	utf8_clean(err->msg);
	return -1;
}

/* ---- API version ---- */

static pthread_mutex_t ver_lock = PTHREAD_MUTEX_INITIALIZER;
static char ver_sock[512];
static char ver_prefix[16];

static int parse_api(const char *s)
{
	int maj = 0, min = 0;
	if (!s || sscanf(s, "%d.%d", &maj, &min) != 2)
		return 0;
	return maj * 1000 + min;
}

/* "/v1.41" for this socket, asked once (GET /version). */
static int api_prefix(const char *sock, char *out, size_t n, struct berr *err)
{
	pthread_mutex_lock(&ver_lock);
	bool cached = ver_prefix[0] && !strcmp(ver_sock, sock);
	if (cached)
		snprintf(out, n, "%s", ver_prefix);
	pthread_mutex_unlock(&ver_lock);
	if (cached)
		return 0;
	struct xfer x;
	xfer_setup(&x, sock, "GET", "/version", NULL, 10000);
	xfer_perform(&x);
	if (x.rc != CURLE_OK || x.status != 200) {
		docker__call_error(err, sock, &x, "cannot read the version at '%s'", sock);
		docker__xfer_cleanup(&x);
		return -1;
	}
	json_t *j = json_loadb(x.buf.buf, x.buf.len, 0, NULL);
	const char *api = json_string_value(json_object_get(j, "ApiVersion"));
	int srv = parse_api(api);
	int lo = parse_api(json_string_value(json_object_get(j, "MinAPIVersion")));
	int v = srv < API_MAX ? srv : API_MAX;
	if (lo > v)
		v = lo;
	int rc = 0;
	if (v < API_MIN)
		rc = berr_set(err, 0,
			      "docker at '%s' is too old: API '%s', berth needs 1.25 or newer",
			      sock, api ? api : "?");
	json_decref(j);
	docker__xfer_cleanup(&x);
	if (rc < 0)
		return -1;
	snprintf(out, n, "/v%d.%d", v / 1000, v % 1000);
	pthread_mutex_lock(&ver_lock);
	snprintf(ver_sock, sizeof ver_sock, "%s", sock);
	snprintf(ver_prefix, sizeof ver_prefix, "%s", out);
	pthread_mutex_unlock(&ver_lock);
	return 0;
}

/* Set up a request to an API path (without the version prefix). */
int docker__xfer_api(struct xfer *x, const char *sock, const char *method, const char *path,
		     const char *body, long timeout_ms, struct berr *err)
{
	char pre[16];
	if (api_prefix(sock, pre, sizeof pre, err) < 0)
		return -1;
	char *full = xasprintf("%s%s", pre, path);
	xfer_setup(x, sock, method, full, body, timeout_ms);
	free(full);
	return 0;
}

/* A whole blocking call. 0 when a reply came (any status); x is set up
 * either way and must be cleaned up. */
static int call(struct xfer *x, const char *sock, const char *method, const char *path,
		const char *body, long timeout_ms, struct berr *err)
{
	memset(x, 0, sizeof *x);
	if (docker__xfer_api(x, sock, method, path, body, timeout_ms, err) < 0)
		return -1;
	xfer_perform(x);
	if (x->rc != CURLE_OK)
		return docker__reach_error(err, sock, x);
	return 0;
}

/* ---- the client ---- */

int docker_ping(const char *sock, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	struct xfer x;
	xfer_setup(&x, sock, "GET", "/_ping", NULL, 5000);
	xfer_perform(&x);
	int rc = 0;
	if (x.rc != CURLE_OK)
		rc = docker__reach_error(err, sock, &x);
	else if (x.status != 200 || x.buf.len < 2 || strncmp(x.buf.buf, "OK", 2))
		rc = docker__call_error(err, sock, &x, "'%s' does not answer ping", sock);
	docker__xfer_cleanup(&x);
	if (rc == 0) {
		char pre[16];
		rc = api_prefix(sock, pre, sizeof pre, err);
	}
	return rc;
}

bool docker_available(const char *sock)
{
	struct berr err;
	return docker_ping(sock, &err) == 0;
}

/* name, tag (or digest) of a reference; the tag defaults to latest, as
 * the Docker CLI's does (an empty tag would pull every tag). */
static void split_ref(const char *image, char **name, char **tag)
{
	const char *at = strchr(image, '@');
	if (at) {
		*name = xstrndup(image, (size_t)(at - image));
		*tag = xstrdup(at + 1);
		return;
	}
	const char *slash = strrchr(image, '/');
	const char *colon = strrchr(image, ':');
	if (colon && (!slash || colon > slash)) {
		*name = xstrndup(image, (size_t)(colon - image));
		*tag = xstrdup(colon + 1);
	} else {
		*name = xstrdup(image);
		*tag = xstrdup("latest");
	}
}

/* 1 present, 0 absent, -1 error. */
static int image_present(const char *sock, const char *image, struct berr *err)
{
	char *esc = escaped(image, true);
	char *path = xasprintf("/images/%s/json", esc);
	free(esc);
	struct xfer x;
	int rc = call(&x, sock, "GET", path, NULL, CALL_TIMEOUT_MS, err);
	free(path);
	if (rc == 0) {
		if (x.status == 200)
			rc = 1;
		else if (x.status == 404)
			rc = 0;
		else
			rc = docker__call_error(err, sock, &x, "cannot look up image '%s'", image);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

/* The pull's progress: newline-separated JSON objects; an error is one
 * with "error" (or "errorDetail": {"message"}), sent after the 200. */
struct pull_progress {
	struct sbuf line;
	char *error;
};

static void pull_line(struct pull_progress *p, const char *s, size_t n)
{
	while (n && isspace((unsigned char)*s))
		s++, n--;
	if (!n || p->error)
		return;
	json_t *j = json_loadb(s, n, 0, NULL);
	const char *e = json_string_value(json_object_get(j, "error"));
	if (!e)
		e = json_string_value(
		    json_object_get(json_object_get(j, "errorDetail"), "message"));
	if (e)
		p->error = xstrdup(*e ? e : "unknown error");
	json_decref(j);
}

static void pull_sink(void *ud, const char *data, size_t len)
{
	struct pull_progress *p = ud;
	sbuf_add(&p->line, data, len);
	char *start = p->line.buf, *nl;
	while ((nl = memchr(start, '\n', p->line.len - (size_t)(start - p->line.buf)))) {
		pull_line(p, start, (size_t)(nl - start));
		start = nl + 1;
	}
	size_t rest = p->line.len - (size_t)(start - p->line.buf);
	memmove(p->line.buf, start, rest);
	p->line.len = rest;
	p->line.buf[rest] = 0;
	/* One line is a few hundred bytes; anything else is not progress. */
	if (p->line.len > (1u << 20)) {
		p->line.len = 0;
		p->line.buf[0] = 0;
	}
}

static bool cancelled(const struct cancel *c)
{
	return c && c->check && c->check(c->ud);
}

/* Run one transfer to its end, or until cancelled (returns 1). */
static int xfer_run(struct xfer *x, const struct cancel *c)
{
	if (!c || !c->check) {
		xfer_perform(x);
		return 0;
	}
	CURLM *m = curl_multi_init();
	curl_multi_add_handle(m, x->c);
	int rc = 0;
	for (;;) {
		int running = 0;
		curl_multi_perform(m, &running);
		int left;
		CURLMsg *msg = curl_multi_info_read(m, &left);
		if (msg && msg->msg == CURLMSG_DONE) {
			docker__xfer_finish(x, msg->data.result);
			break;
		}
		if (cancelled(c)) {
			rc = 1;
			break;
		}
		struct curl_waitfd w = {.fd = c->wake_fd, .events = CURL_WAIT_POLLIN};
		curl_multi_poll(m, &w, c->wake_fd >= 0 ? 1 : 0, c->wake_fd >= 0 ? 1000 : 100, NULL);
	}
	curl_multi_remove_handle(m, x->c);
	curl_multi_cleanup(m);
	return rc;
}

/* 0 pulled or present, 1 cancelled, -1 error. */
int docker__pull(const char *sock, const char *image, const struct cancel *c, bool *fetched,
		 struct berr *err)
{
	if (fetched)
		*fetched = false;
	if (!image || !*image)
		return berr_set(err, 400, "docker: no image given");
	int have = image_present(sock, image, err);
	if (have != 0)
		return have > 0 ? 0 : -1;
	char *name, *tag;
	split_ref(image, &name, &tag);
	char *en = escaped(name, false), *et = escaped(tag, false);
	char *path = xasprintf("/images/create?fromImage=%s&tag=%s", en, et);
	free(en);
	free(et);
	free(name);
	free(tag);
	struct pull_progress p = {0};
	sbuf_init(&p.line);
	struct xfer x;
	int rc = docker__xfer_api(&x, sock, "POST", path, NULL, 0, err);
	free(path);
	if (rc == 0) {
		x.sink = pull_sink;
		x.ud = &p;
		rc = xfer_run(&x, c);
		if (rc == 0) {
			pull_line(&p, p.line.buf, p.line.len);
			if (x.rc != CURLE_OK && docker__xfer_unreachable(&x))
				rc = docker__call_error(err, sock, &x, "cannot pull '%s'", image);
			else if (x.status >= 300)
				rc = docker__call_error(err, sock, &x, "cannot pull '%s'", image);
			else if (p.error)
				rc = berr_set(err, 502, "docker: cannot pull '%s': %s", image,
					      p.error);
			else if (x.rc != CURLE_OK)
				rc = docker__reach_error(err, sock, &x);
			else if (fetched)
				*fetched = true;
		}
	}
	docker__xfer_cleanup(&x);
	sbuf_release(&p.line);
	free(p.error);
	return rc;
}

int docker_pull(const char *sock, const char *image, struct berr *err)
{
	return docker__pull(docker__sock_or_default(sock), image, NULL, NULL, err);
}

int docker_import(const char *sock, const char *rootfs_tar, const char *ref, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	FILE *f = fopen(rootfs_tar, "rb");
	if (!f)
		return berr_set(err, 0, "cannot open '%s': %s", rootfs_tar, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) < 0) {
		fclose(f);
		return berr_set(err, 0, "cannot read '%s': %s", rootfs_tar, strerror(errno));
	}
	char *name, *tag;
	split_ref(ref, &name, &tag);
	char *en = escaped(name, false), *et = escaped(tag, false);
	char *path = xasprintf("/images/create?fromSrc=-&repo=%s&tag=%s", en, et);
	free(en);
	free(et);
	free(name);
	free(tag);
	struct xfer x;
	int rc = docker__xfer_api(&x, sock, "POST", path, NULL, 300000, err);
	free(path);
	if (rc < 0) {
		fclose(f);
		return -1;
	}
	x.upload = f;
	curl_easy_setopt(x.c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(x.c, CURLOPT_READDATA, f);
	curl_easy_setopt(x.c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
	/* Anything but a tar type and Go parses the body as a form. */
	x.hdrs = curl_slist_append(x.hdrs, "Content-Type: application/x-tar");
	curl_easy_setopt(x.c, CURLOPT_HTTPHEADER, x.hdrs);
	struct pull_progress p = {0};
	sbuf_init(&p.line);
	x.sink = pull_sink;
	x.ud = &p;
	xfer_perform(&x);
	pull_line(&p, p.line.buf, p.line.len);
	if (x.rc != CURLE_OK || x.status >= 300)
		rc = docker__call_error(err, sock, &x, "cannot import '%s' as '%s'", rootfs_tar,
					ref);
	else if (p.error)
		rc = berr_set(err, 502, "docker: cannot import '%s' as '%s': %s", rootfs_tar, ref,
			      p.error);
	docker__xfer_cleanup(&x);
	sbuf_release(&p.line);
	free(p.error);
	return rc;
}

char *docker_container_name(const char *task_id)
{
	char *name = xasprintf("berth-%.200s", task_id ? task_id : "");
	for (char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
			*p = '_';
	return name;
}

static bool host_network(const struct docker_spec *s)
{
	return !s->network || !*s->network || !strcmp(s->network, "host");
}

json_t *docker_create_config(const struct docker_spec *s)
{
	json_t *o = json_object();
	json_object_set_new(o, "Image", json_string(s->image ? s->image : ""));
	/* The task's command is the whole argv, as for exec tasks: it
	 * replaces the image's entrypoint and cmd (Kubernetes' `command`). */
	if (s->argc > 0 && s->argv && s->argv[0]) {
		json_t *ep = json_array(), *cmd = json_array();
		json_array_append_new(ep, json_string(s->argv[0]));
		for (size_t i = 1; i < s->argc; i++)
			json_array_append_new(cmd, json_string(s->argv[i] ? s->argv[i] : ""));
		json_object_set_new(o, "Entrypoint", ep);
		json_object_set_new(o, "Cmd", cmd);
	}
	json_t *env = json_array();
	for (size_t i = 0; i < s->nenv; i++)
		if (s->env[i] && strchr(s->env[i], '=') && strncmp(s->env[i], "BERTH_TASK_ID=", 14))
			json_array_append_new(env, json_string(s->env[i]));
	char *tid = xasprintf("BERTH_TASK_ID=%s", s->task_id ? s->task_id : "");
	json_array_append_new(env, json_string(tid));
	free(tid);
	json_object_set_new(o, "Env", env);
	if (s->user && *s->user)
		json_object_set_new(o, "User", json_string(s->user));
	if (s->workdir && *s->workdir)
		json_object_set_new(o, "WorkingDir", json_string(s->workdir));
	/* As the exec driver: hostname = task id, cut to a label's 63. */
	char host[64];
	snprintf(host, sizeof host, "%s", s->task_id ? s->task_id : "");
	for (char *p = host; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			*p = '-';
	json_object_set_new(o, "Hostname", json_string(host));
	json_t *labels = json_object();
	json_object_set_new(labels, "berth.task", json_string(s->task_id ? s->task_id : ""));
	if (s->job_key && *s->job_key)
		json_object_set_new(labels, "berth.job", json_string(s->job_key));
	char inst[16];
	snprintf(inst, sizeof inst, "%d", s->instance);
	json_object_set_new(labels, "berth.instance", json_string(inst));
	json_object_set_new(o, "Labels", labels);

	json_t *hc = json_object();
	if (s->memory_bytes) {
		json_object_set_new(hc, "Memory", json_integer((json_int_t)s->memory_bytes));
		json_object_set_new(hc, "MemorySwap", json_integer((json_int_t)s->memory_bytes));
	}
	if (s->cpu > 0 && !s->cpu_after_start)
		json_object_set_new(hc, "NanoCpus", json_integer((json_int_t)(s->cpu * 1e9 + 0.5)));
	if (s->pids_limit > 0)
		json_object_set_new(hc, "PidsLimit", json_integer(s->pids_limit));
	if (s->nvolumes || (s->resolv_conf && *s->resolv_conf)) {
		/* Mounts, not Binds: no "src:dst:opts" string for a path to
		 * inject options into, and a missing source is an error rather
		 * than a directory Docker creates on the host. */
		json_t *mounts = json_array();
		/* A mount at /etc/resolv.conf replaces Docker's own file. */
		if (s->resolv_conf && *s->resolv_conf)
			json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:b}", "Type", "bind",
								"Source", s->resolv_conf, "Target",
								"/etc/resolv.conf", "ReadOnly", 1));
		for (size_t i = 0; i < s->nvolumes; i++)
			json_array_append_new(
			    mounts, json_pack("{s:s,s:s,s:s,s:b}", "Type", "bind", "Source",
					      s->volume_host[i], "Target", s->volume_path[i],
					      "ReadOnly", s->volume_ro[i] ? 1 : 0));
		json_object_set_new(hc, "Mounts", mounts);
	}
	json_object_set_new(hc, "SecurityOpt", json_pack("[s]", "no-new-privileges"));
	json_object_set_new(hc, "Init", json_true());
	json_object_set_new(hc, "AutoRemove", json_false());
	json_object_set_new(hc, "RestartPolicy", json_pack("{s:s}", "Name", "no"));
	json_object_set_new(hc, "LogConfig",
			    json_pack("{s:s,s:{s:s,s:s}}", "Type", "json-file", "Config",
				      "max-size", "10m", "max-file", "2"));
	if (host_network(s)) {
		json_object_set_new(hc, "NetworkMode", json_string("host"));
	} else if (!strcmp(s->network, "none")) {
		/* berth's own network, added once started: nothing published */
		json_object_set_new(hc, "NetworkMode", json_string("none"));
	} else {
		json_object_set_new(hc, "NetworkMode", json_string(s->network));
		json_t *exposed = json_object(), *bind = json_object();
		for (size_t i = 0; i < s->nports; i++) {
			if (s->ports[i].port <= 0)
				continue;
			char key[32], val[16];
			snprintf(key, sizeof key, "%d/tcp", s->ports[i].port);
			snprintf(val, sizeof val, "%d", s->ports[i].port);
			json_object_set_new(exposed, key, json_object());
			json_object_set_new(
			    bind, key, json_pack("[{s:s,s:s}]", "HostIp", "", "HostPort", val));
		}
		json_object_set_new(o, "ExposedPorts", exposed);
		json_object_set_new(hc, "PortBindings", bind);
	}
	json_object_set_new(o, "HostConfig", hc);
	return o;
}

int docker_create(const char *sock, const struct docker_spec *s, char **id, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	*id = NULL;
	if (!s->task_id || !*s->task_id)
		return berr_set(err, 400, "docker: cannot create a container without a task id");
	json_t *cfg = docker_create_config(s);
	char *body = json_dumps(cfg, JSON_COMPACT);
	json_decref(cfg);
	char *name = docker_container_name(s->task_id);
	char *path = xasprintf("/containers/create?name=%s", name);
	struct xfer x;
	int rc = call(&x, sock, "POST", path, body, CALL_TIMEOUT_MS, err);
	free(path);
	free(body);
	if (rc == 0 && x.status != 201) {
		rc = docker__call_error(err, sock, &x, "cannot create container '%s' from '%s'",
					name, s->image ? s->image : "");
	} else if (rc == 0) {
		json_t *j = json_loadb(x.buf.buf, x.buf.len, 0, NULL);
		const char *cid = json_string_value(json_object_get(j, "Id"));
		if (cid && *cid)
			*id = xstrdup(cid);
		else
			rc = berr_set(err, 502,
				      "docker: cannot create container '%s': no id in '%.200s'",
				      name, x.buf.buf);
		json_decref(j);
	}
	docker__xfer_cleanup(&x);
	free(name);
	return rc;
}

/* A POST/DELETE on a container that answers 2xx (or one of `ok_also`). */
static int container_op(const char *sock, const char *method, const char *id, const char *op,
			const char *query, long timeout_ms, int ok_also1, int ok_also2,
			const char *what, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	char *path =
	    xasprintf("/containers/%s%s%s%s", id, op, query ? "?" : "", query ? query : "");
	struct xfer x;
	int rc = call(&x, sock, method, path, NULL, timeout_ms, err);
	free(path);
	if (rc == 0 && (x.status < 200 || x.status >= 300) && x.status != ok_also1 &&
	    x.status != ok_also2)
		rc = docker__call_error(err, sock, &x, "cannot %s container '%.12s'", what, id);
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_start(const char *sock, const char *id, struct berr *err)
{
	/* 304: already started */
	return container_op(sock, "POST", id, "/start", NULL, CALL_TIMEOUT_MS, 304, 0, "start",
			    err);
}

int docker_update_cpu(const char *sock, const char *id, double cpu, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	char *path = xasprintf("/containers/%s/update", id);
	char body[64];
	snprintf(body, sizeof body, "{\"NanoCpus\":%lld}", (long long)(cpu * 1e9 + 0.5));
	struct xfer x;
	int rc = call(&x, sock, "POST", path, body, CALL_TIMEOUT_MS, err);
	free(path);
	if (rc == 0 && (x.status < 200 || x.status >= 300))
		rc = docker__call_error(err, sock, &x,
					"cannot set the cpu limit of container '%.12s'", id);
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_stop(const char *sock, const char *id, int grace_s, struct berr *err)
{
	char q[32];
	snprintf(q, sizeof q, "t=%d", grace_s < 0 ? 0 : grace_s);
	/* 304: already stopped */
	return container_op(sock, "POST", id, "/stop", q,
			    (long)(grace_s < 0 ? 0 : grace_s) * 1000 + CALL_TIMEOUT_MS, 304, 0,
			    "stop", err);
}

int docker_kill(const char *sock, const char *id, int sig, struct berr *err)
{
	char q[32];
	snprintf(q, sizeof q, "signal=%d", sig);
	/* 409: not running, which is what a kill wants */
	return container_op(sock, "POST", id, "/kill", q, CALL_TIMEOUT_MS, 409, 0, "kill", err);
}

int docker_remove(const char *sock, const char *id, bool force, struct berr *err)
{
	/* 404: gone already; 409 "removal already in progress" (when not
	 * about a running container, which only happens without force). */
	sock = docker__sock_or_default(sock);
	char *path = xasprintf("/containers/%s?v=1%s", id, force ? "&force=1" : "");
	struct xfer x;
	int rc = call(&x, sock, "DELETE", path, NULL, CALL_TIMEOUT_MS, err);
	free(path);
	if (rc == 0 && x.status != 204 && x.status != 200 && x.status != 404) {
		char msg[256];
		reply_message(&x, msg, sizeof msg);
		if (!(x.status == 409 && strstr(msg, "already in progress")))
			rc = docker__call_error(err, sock, &x, "cannot remove container '%.12s'",
						id);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_wait(const char *sock, const char *id, int *status, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	char *path = xasprintf("/containers/%s/wait", id);
	struct xfer x;
	int rc = call(&x, sock, "POST", path, NULL, 0, err);
	free(path);
	if (rc == 0 && x.status != 200)
		rc = docker__call_error(err, sock, &x, "cannot wait for container '%.12s'", id);
	if (rc == 0) {
		json_t *j = json_loadb(x.buf.buf, x.buf.len, 0, NULL);
		json_t *code = json_object_get(j, "StatusCode");
		const char *e =
		    json_string_value(json_object_get(json_object_get(j, "Error"), "Message"));
		if (!json_is_integer(code))
			rc = berr_set(err, 502, "docker: cannot wait for container '%.12s': %s", id,
				      e && *e ? e : "no status in the reply");
		else
			*status = (int)json_integer_value(code);
		json_decref(j);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_inspect(const char *sock, const char *id, struct docker_state *st, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	memset(st, 0, sizeof *st);
	char *path = xasprintf("/containers/%s/json", id);
	struct xfer x;
	int rc = call(&x, sock, "GET", path, NULL, CALL_TIMEOUT_MS, err);
	free(path);
	if (rc == 0 && x.status != 200)
		rc = docker__call_error(err, sock, &x, "cannot inspect container '%.12s'", id);
	if (rc == 0) {
		json_t *j = json_loadb(x.buf.buf, x.buf.len, 0, NULL);
		json_t *s = json_object_get(j, "State");
		if (!json_is_object(s)) {
			rc = berr_set(err, 502,
				      "docker: cannot inspect container '%.12s': no State", id);
		} else {
			st->running = json_is_true(json_object_get(s, "Running"));
			st->pid = (pid_t)json_integer_value(json_object_get(s, "Pid"));
			st->oom_killed = json_is_true(json_object_get(s, "OOMKilled"));
			st->exit_code = (int)json_integer_value(json_object_get(s, "ExitCode"));
			const char *v = json_string_value(json_object_get(s, "Status"));
			snprintf(st->status, sizeof st->status, "%s", v ? v : "");
			v = json_string_value(json_object_get(s, "Error"));
			snprintf(st->error, sizeof st->error, "%s", v ? v : "");
		}
		json_decref(j);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

void docker_demux_feed(struct docker_demux *d, const char *data, size_t len, docker_output_fn cb,
		       void *ud)
{
	while (len) {
		if (d->left == 0) {
			size_t take = sizeof d->hdr - d->have;
			if (take > len)
				take = len;
			memcpy(d->hdr + d->have, data, take);
			d->have += take;
			data += take;
			len -= take;
			if (d->have < sizeof d->hdr)
				return;
			d->have = 0;
			/* 0 stdin (only with an attached stdin) is shown as stdout,
			 * 3 (API 1.42+: system errors) as stderr */
			d->stream = d->hdr[0] == 2 || d->hdr[0] == 3 ? 2 : 1;
			d->left = (uint32_t)d->hdr[4] << 24 | (uint32_t)d->hdr[5] << 16 |
				  (uint32_t)d->hdr[6] << 8 | (uint32_t)d->hdr[7];
			continue;
		}
		size_t take = len < d->left ? len : d->left;
		if (cb)
			cb(ud, d->stream, data, take);
		d->left -= (uint32_t)take;
		data += take;
		len -= take;
	}
}

static void logs_sink_fn(void *ud, const char *data, size_t len)
{
	struct logs_sink *l = ud;
	docker_demux_feed(&l->demux, data, len, l->cb, l->ud);
}

int docker__logs_setup(struct xfer *x, const char *sock, const char *id, bool only_new,
		       struct logs_sink *ls, struct berr *err)
{
	char *path = xasprintf("/containers/%s/logs?follow=1&stdout=1&stderr=1%s", id,
			       only_new ? "&tail=0" : "");
	memset(x, 0, sizeof *x);
	int rc = docker__xfer_api(x, sock, "GET", path, NULL, 0, err);
	free(path);
	if (rc < 0)
		return -1;
	memset(&ls->demux, 0, sizeof ls->demux);
	x->sink = logs_sink_fn;
	x->ud = ls;
	return 0;
}

int docker_logs_follow(const char *sock, const char *id, docker_output_fn cb, void *ud,
		       struct berr *err)
{
	sock = docker__sock_or_default(sock);
	struct logs_sink ls = {.cb = cb, .ud = ud};
	struct xfer x;
	int rc = docker__logs_setup(&x, sock, id, false, &ls, err);
	if (rc == 0) {
		xfer_perform(&x);
		if (x.rc != CURLE_OK || x.status != 200)
			rc = docker__call_error(err, sock, &x,
						"cannot read the logs of container '%.12s'", id);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_exec_create(const char *sock, const char *container, char *const *argv, bool in,
		       bool tty, char **exec_id, struct berr *err)
{
	sock = docker__sock_or_default(sock);
	*exec_id = NULL;
	json_t *cmd = json_array();
	for (size_t i = 0; argv[i]; i++)
		json_array_append_new(cmd, json_string(argv[i]));
	json_t *req = json_pack("{s:b,s:b,s:b,s:b,s:o}", "AttachStdin", in, "AttachStdout", 1,
				"AttachStderr", 1, "Tty", tty, "Cmd", cmd);
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	char *cesc = escaped(container, false);
	char *path = xasprintf("/containers/%s/exec", cesc);
	free(cesc);
	struct xfer x;
	int rc = call(&x, sock, "POST", path, body, CALL_TIMEOUT_MS, err);
	free(path);
	free(body);
	if (rc == 0 && x.status != 201) {
		rc = docker__call_error(err, sock, &x, "cannot exec in container '%.64s'",
					container);
	} else if (rc == 0) {
		json_t *j = json_loadb(x.buf.buf, x.buf.len, 0, NULL);
		const char *id = json_string_value(json_object_get(j, "Id"));
		if (id && *id && strspn(id, "0123456789abcdef") == strlen(id))
			*exec_id = xstrdup(id);
		else
			rc = berr_set(err, 502, "docker: cannot exec in container '%.64s': no id",
				      container);
		json_decref(j);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_exec_start(const char *sock, const char *exec_id, docker_output_fn cb, void *ud,
		      struct berr *err)
{
	sock = docker__sock_or_default(sock);
	/* Not upgraded: Docker then answers 200 and streams until the command
	 * ends, then closes. */
	struct logs_sink ls = {.cb = cb, .ud = ud};
	char *path = xasprintf("/exec/%s/start", exec_id);
	struct xfer x;
	memset(&x, 0, sizeof x);
	int rc =
	    docker__xfer_api(&x, sock, "POST", path, "{\"Detach\":false,\"Tty\":false}", 0, err);
	free(path);
	if (rc == 0) {
		x.sink = logs_sink_fn;
		x.ud = &ls;
		xfer_perform(&x);
		if (x.rc != CURLE_OK || x.status != 200)
			rc =
			    docker__call_error(err, sock, &x, "cannot start exec '%.12s'", exec_id);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_exec_resize(const char *sock, const char *exec_id, unsigned rows, unsigned cols,
		       struct berr *err)
{
	sock = docker__sock_or_default(sock);
	char *path = xasprintf("/exec/%s/resize?h=%u&w=%u", exec_id, rows, cols);
	struct xfer x;
	int rc = call(&x, sock, "POST", path, NULL, CALL_TIMEOUT_MS, err);
	free(path);
	if (rc == 0 && x.status != 200 && x.status != 201)
		rc = docker__call_error(err, sock, &x, "cannot resize exec '%.12s'", exec_id);
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_exec_inspect(const char *sock, const char *exec_id, struct docker_exec_state *st,
			struct berr *err)
{
	sock = docker__sock_or_default(sock);
	memset(st, 0, sizeof *st);
	st->exit_code = -1;
	char *path = xasprintf("/exec/%s/json", exec_id);
	struct xfer x;
	int rc = call(&x, sock, "GET", path, NULL, CALL_TIMEOUT_MS, err);
	free(path);
	if (rc == 0 && x.status != 200)
		rc = docker__call_error(err, sock, &x, "cannot inspect exec '%.12s'", exec_id);
	if (rc == 0) {
		json_t *j = json_loadb(x.buf.buf, x.buf.len, 0, NULL);
		json_t *code = json_object_get(j, "ExitCode");
		st->running = json_is_true(json_object_get(j, "Running"));
		st->pid = (pid_t)json_integer_value(json_object_get(j, "Pid"));
		if (json_is_integer(code))
			st->exit_code = (int)json_integer_value(code);
		else if (!st->running)
			rc = berr_set(err, 502, "docker: exec '%.12s' has no exit code", exec_id);
		json_decref(j);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

int docker_find_by_label(const char *sock, const char *label, struct docker_found **out, size_t *n,
			 struct berr *err)
{
	sock = docker__sock_or_default(sock);
	*out = NULL;
	*n = 0;
	json_t *f = json_pack("{s:[s]}", "label", label);
	char *fs = json_dumps(f, JSON_COMPACT);
	json_decref(f);
	char *ef = escaped(fs, false);
	free(fs);
	char *path = xasprintf("/containers/json?all=1&filters=%s", ef);
	free(ef);
	struct xfer x;
	int rc = call(&x, sock, "GET", path, NULL, CALL_TIMEOUT_MS, err);
	free(path);
	if (rc == 0 && x.status != 200)
		rc = docker__call_error(err, sock, &x, "cannot list containers with label '%s'",
					label);
	if (rc == 0) {
		json_t *j = json_loadb(x.buf.buf, x.buf.len, 0, NULL);
		if (!json_is_array(j)) {
			rc = berr_set(err, 502, "docker: cannot list containers: bad reply");
		} else {
			size_t cnt = json_array_size(j);
			*out = xcalloc(cnt + 1, sizeof **out);
			for (size_t i = 0; i < cnt; i++) {
				json_t *c = json_array_get(j, i);
				const char *id = json_string_value(json_object_get(c, "Id"));
				if (!id)
					continue;
				const char *name = json_string_value(
				    json_array_get(json_object_get(c, "Names"), 0));
				const char *task = json_string_value(
				    json_object_get(json_object_get(c, "Labels"), "berth.task"));
				const char *state = json_string_value(json_object_get(c, "State"));
				struct docker_found *d = &(*out)[(*n)++];
				d->id = xstrdup(id);
				d->name = xstrdup(name ? (name[0] == '/' ? name + 1 : name) : "");
				d->task = xstrdup(task ? task : "");
				d->state = xstrdup(state ? state : "");
			}
		}
		json_decref(j);
	}
	docker__xfer_cleanup(&x);
	return rc;
}

void docker_found_free(struct docker_found *f, size_t n)
{
	if (!f)
		return;
	for (size_t i = 0; i < n; i++) {
		free(f[i].id);
		free(f[i].name);
		free(f[i].task);
		free(f[i].state);
	}
	free(f);
}
