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
	int64_t patience_ms; /* retry rounds while every server is away or 503 */
	char *header;	     /* "Name: value" sent with every request, or NULL */
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

const char *http_client_server(const struct http_client *hc)
{
	return hc->servers[hc->current];
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	sbuf_add(ud, ptr, size * nmemb);
	return size * nmemb;
}

int http_request_url(struct http_client *hc, const char *method, const char *url, const char *body,
		     long timeout_ms, struct http_response *out, struct berr *err)
{
	CURL *c = hc->curl;
	struct sbuf sb;
	sbuf_init(&sb);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sb);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	if (timeout_ms > 0)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	struct curl_slist *hdrs = NULL;
	if (hc->header)
		hdrs = curl_slist_append(hdrs, hc->header);
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
	if (rc != CURLE_OK) {
		sbuf_release(&sb);
		long redirects = 0;
		curl_easy_getinfo(c, CURLINFO_REDIRECT_COUNT, &redirects);
		if (redirects > 0 && rc == CURLE_COULDNT_CONNECT) {
			/* The server answered, with a redirect to its leader, which is
			 * gone: a failover is under way. */
			char *where = NULL;
			curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &where);
			return berr_set(err, HTTP_LEADER_UNREACHABLE,
					"cannot reach the leader at '%s' (redirected by '%s')",
					where ? where : "?", url);
		}
		return berr_set(err, 503, "cannot reach '%s': %s", url, curl_easy_strerror(rc));
	}
	memset(out, 0, sizeof *out);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	char *ip = NULL;
	if (curl_easy_getinfo(c, CURLINFO_LOCAL_IP, &ip) == CURLE_OK && ip)
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

int http_json(struct http_client *hc, const char *method, const char *path, json_t *body,
	      long timeout_ms, json_t **reply, struct berr *err)
{
	char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct http_response resp;
	int r = http_request(hc, method, path, b, timeout_ms, &resp, err);
	free(b);
	if (r < 0)
		return -1;
	json_error_t je;
	json_t *j = json_loadb(resp.body, resp.len, 0, &je);
	if (resp.status >= 400) {
		const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
		berr_set(err, (int)resp.status, "%s", msg ? msg : "server error");
		if (!msg)
			berr_prefix(err, "HTTP %ld", resp.status);
		json_decref(j);
		http_response_release(&resp);
		return -1;
	}
	http_response_release(&resp);
	if (!j)
		return berr_set(err, 502, "bad reply from server: %s", je.text);
	if (reply)
		*reply = j;
	else
		json_decref(j);
	return 0;
}
