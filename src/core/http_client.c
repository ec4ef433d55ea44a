#include "core/http_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/addr.h"

struct http_client {
	CURL *curl;
	char **servers;
	size_t nservers;
	size_t current;
	int64_t patience_ms;	   /* retry rounds while every server is away or 503 */
	char *header;		   /* "Name: value" sent with every request, or NULL */
	char *auth;		   /* "Authorization: Bearer TOKEN", or NULL */
	char *cacert, *cert, *key; /* TLS files (NULL: system CAs, no client cert) */
	bool no_verify;		   /* http_client_set_tls_unverified */
	bool echo_clock;	   /* http_client_echo_server_clock */
	char echo_time[40];	   /* the last reply's X-Berth-Time, "" before one */
	int64_t echo_at;	   /* when it was read (our clock) */
	http_sink_fn sink;	   /* http_stream: where a 2xx body goes */
	void *sink_ud;
	bool sink_stopped; /* the sink asked to stop */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
}

struct http_client *http_client_new(const char *servers)
{
	pthread_once(&curl_once, curl_init_once);
	struct http_client *hc = xcalloc(1, sizeof *hc);
	hc->curl = curl_easy_init();
	char *copy = xstrdup(servers), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!*tok)
			continue;
		hc->servers = xrealloc(hc->servers, (hc->nservers + 1) * sizeof *hc->servers);
		hc->servers[hc->nservers++] = addr_to_url(tok);
	}
	free(copy);
	if (!hc->nservers) {
		hc->servers = xcalloc(1, sizeof *hc->servers);
		hc->servers[hc->nservers++] = xstrdup("http://127.0.0.1:7070");
	}
	return hc;
}

void http_client_free(struct http_client *hc)
{
	if (!hc)
		return;
	curl_easy_cleanup(hc->curl);
	free(hc->header);
	free(hc->auth);
	free(hc->cacert);
	free(hc->cert);
	free(hc->key);
	for (size_t i = 0; i < hc->nservers; i++)
		free(hc->servers[i]);
	free(hc->servers);
	free(hc);
}

void http_client_set_header(struct http_client *hc, const char *name, const char *value)
{
	free(hc->header);
	hc->header = xasprintf("%s: %s", name, value);
	/* a header is one line */
	for (char *p = hc->header; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
}

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

void http_client_set_tls(struct http_client *hc, const char *cacert, const char *cert,
			 const char *key)
{
	free(hc->cacert);
	free(hc->cert);
	free(hc->key);
	hc->cacert = dup_or_null(cacert);
	hc->cert = dup_or_null(cert);
	hc->key = dup_or_null(key);
}

void http_client_set_tls_unverified(struct http_client *hc)
{
	hc->no_verify = true;
}

void http_client_set_token(struct http_client *hc, const char *token)
{
	free(hc->auth);
	hc->auth = token && *token ? xasprintf("Authorization: Bearer %s", token) : NULL;
	for (char *p = hc->auth; p && *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
}

void http_client_reconnect(struct http_client *hc)
{
	curl_easy_cleanup(hc->curl);
	hc->curl = curl_easy_init();
}

const char *http_client_server(const struct http_client *hc)
{
	return hc->servers[hc->current];
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	sbuf_add(ud, ptr, size * nmemb);
	return size * nmemb;
}

struct sink_ctx {
	struct http_client *hc;
	struct sbuf *sb;
};

/* http_stream: a 2xx body to the sink, any other (an error, a redirect)
 * kept as usual. */
static size_t on_stream_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct sink_ctx *x = ud;
	long status = 0;
	curl_easy_getinfo(x->hc->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		return on_data(ptr, size, nmemb, x->sb);
	if (!x->hc->sink(x->hc->sink_ud, ptr, size * nmemb)) {
		x->hc->sink_stopped = true;
		return 0;
	}
	return size * nmemb;
}

/* A redirect's target gets the token only if it is another server's API:
 * an agent's logs (a ticket in the URL is their credential) never see it. */
static bool token_for(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	return p && !strncmp(p, "/v1/", 4) && strncmp(p, "/v1/logs/", 9);
}

void http_client_echo_server_clock(struct http_client *hc)
{
	hc->echo_clock = true;
}

/* Keep the reply's X-Berth-Time (digits, '-' and hex only) and when. */
static void keep_server_clock(struct http_client *hc)
{
	struct curl_header *h = NULL;
	if (curl_easy_header(hc->curl, "X-Berth-Time", 0, CURLH_HEADER, -1, &h) != CURLHE_OK ||
	    !h || !h->value || strlen(h->value) >= sizeof hc->echo_time ||
	    strspn(h->value, "0123456789abcdef-") != strlen(h->value))
		return;
	strcpy(hc->echo_time, h->value);
	hc->echo_at = time_mono_ms();
}

static CURLcode perform_once(struct http_client *hc, const char *method, const char *url,
			     const char *body, long timeout_ms, bool with_token, struct sbuf *sb)
{
	CURL *c = hc->curl;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	struct sink_ctx sink = {hc, sb};
	if (hc->sink) {
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	} else {
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, sb);
	}
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	if (hc->cacert)
		curl_easy_setopt(c, CURLOPT_CAINFO, hc->cacert);
	if (hc->no_verify) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (hc->cert && hc->key) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, hc->cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, hc->key);
	}
	if (timeout_ms > 0)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	struct curl_slist *hdrs = NULL;
	if (hc->header)
		hdrs = curl_slist_append(hdrs, hc->header);
	if (hc->auth && with_token)
		hdrs = curl_slist_append(hdrs, hc->auth);
	char echo[96];
	if (hc->echo_clock && hc->echo_time[0]) {
		snprintf(echo, sizeof echo, "X-Berth-Echo: %s %lld", hc->echo_time,
			 (long long)(time_mono_ms() - hc->echo_at));
		hdrs = curl_slist_append(hdrs, echo);
	}
	if (body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		hdrs = curl_slist_append(hdrs, "Expect:");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
	}
	if (hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	if (rc == CURLE_OK && hc->echo_clock)
		keep_server_clock(hc);
	return rc;
}

int http_request_url(struct http_client *hc, const char *method, const char *url, const char *body,
		     long timeout_ms, struct http_response *out, struct berr *err)
{
	struct sbuf sb;
	sbuf_init(&sb);
	char *where = xstrdup(url);
	int hops = 0;
	for (;;) {
		sb.len = 0;
		CURLcode rc = perform_once(hc, method, where, body, timeout_ms,
					   hops == 0 || token_for(where), &sb);
		if (rc == CURLE_WRITE_ERROR && hc->sink_stopped)
			rc = CURLE_OK; /* the sink had enough */
		if (rc != CURLE_OK) {
			sbuf_release(&sb);
			int r;
			if (hops > 0 && rc == CURLE_COULDNT_CONNECT)
				/* The server answered, with a redirect to its
				 * leader, which is gone: a failover is under way. */
				r = berr_set(err, HTTP_LEADER_UNREACHABLE,
					     "cannot reach the leader at '%s' (redirected by '%s')",
					     where, url);
			else
				r = berr_set(err, 503, "cannot reach '%s': %s", where,
					     curl_easy_strerror(rc));
			free(where);
			return r;
		}
		long status = 0;
		curl_easy_getinfo(hc->curl, CURLINFO_RESPONSE_CODE, &status);
		char *next = NULL;
		if ((status == 301 || status == 302 || status == 307 || status == 308) &&
		    hops < 5 &&
		    curl_easy_getinfo(hc->curl, CURLINFO_REDIRECT_URL, &next) == CURLE_OK && next) {
			char *n = xstrdup(next);
			free(where);
			where = n;
			hops++;
			continue;
		}
		break;
	}
	free(where);
	memset(out, 0, sizeof *out);
	curl_easy_getinfo(hc->curl, CURLINFO_RESPONSE_CODE, &out->status);
	char *ip = NULL;
	if (curl_easy_getinfo(hc->curl, CURLINFO_LOCAL_IP, &ip) == CURLE_OK && ip)
		snprintf(out->local_ip, sizeof out->local_ip, "%s", ip);
	out->len = sb.len;
	out->body = sbuf_detach(&sb);
	return 0;
}

void http_client_set_patience(struct http_client *hc, int64_t ms)
{
	hc->patience_ms = ms > 0 ? ms : 0;
}

int http_request(struct http_client *hc, const char *method, const char *path, const char *body,
		 long timeout_ms, struct http_response *out, struct berr *err)
{
	int64_t deadline = time_mono_ms() + hc->patience_ms, pause_ms = 100;
	for (;;) {
		bool answered = false; /* out holds a 503 from some server */
		bool failover = false; /* a server sent us to a leader that is gone */
		for (size_t tries = 0; tries < hc->nservers; tries++) {
			char *url = xasprintf("%s%s", hc->servers[hc->current], path);
			struct http_response r;
			int rc = http_request_url(hc, method, url, body, timeout_ms, &r, err);
			free(url);
			if (rc == 0 && r.status != 503) {
				if (answered)
					http_response_release(out);
				*out = r;
				return 0;
			}
			if (rc == 0) {
				/* Unavailable (no leader yet, the lease being
				 * renewed, shutting down): nothing was done there;
				 * another server may do it. */
				if (answered)
					http_response_release(out);
				*out = r;
				answered = true;
			}
			if (rc < 0 && err && err->code == HTTP_LEADER_UNREACHABLE)
				failover = true;
			hc->current = (hc->current + 1) % hc->nservers;
		}
		/* Only a cluster that answers "not now" is waited for: servers
		 * that cannot be reached at all fail at once. */
		if ((!answered && !failover) || time_mono_ms() + pause_ms > deadline)
			return answered ? 0 : -1;
		if (answered)
			http_response_release(out);
		struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		pause_ms = pause_ms * 2 > 250 ? 250 : pause_ms * 2;
	}
}

void http_response_release(struct http_response *r)
{
	free(r->body);
	r->body = NULL;
}

int http_text(struct http_client *hc, const char *method, const char *path, const char *body,
	      long timeout_ms, struct http_response *out, struct berr *err)
{
	if (http_request(hc, method, path, body, timeout_ms, out, err) < 0)
		return -1;
	if (out->status < 400)
		return 0;
	json_t *j = json_loadb(out->body, out->len, 0, NULL);
	const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
	berr_set(err, (int)out->status, "%s", msg ? msg : "server error");
	if (!msg)
		berr_prefix(err, "HTTP %ld", out->status);
	json_decref(j);
	http_response_release(out);
	return -1;
}

int http_json(struct http_client *hc, const char *method, const char *path, json_t *body,
	      long timeout_ms, json_t **reply, struct berr *err)
{
	char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct http_response resp;
	int r = http_text(hc, method, path, b, timeout_ms, &resp, err);
	free(b);
	if (r < 0)
		return -1;
	json_error_t je;
	json_t *j = json_loadb(resp.body, resp.len, 0, &je);
	http_response_release(&resp);
	if (!j)
		return berr_set(err, 502, "bad reply from server: %s", je.text);
	if (reply)
		*reply = j;
	else
		json_decref(j);
	return 0;
}

int http_stream(struct http_client *hc, const char *path, http_sink_fn fn, void *ud,
		struct http_response *out, struct berr *err)
{
	hc->sink = fn;
	hc->sink_ud = ud;
	hc->sink_stopped = false;
	int r = http_request(hc, "GET", path, NULL, 0, out, err);
	hc->sink = NULL;
	hc->sink_ud = NULL;
	return r;
}
