/* etcd_client.c - see etcd_client.h. */
#include "store/etcd_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base64.h"

#define DEFAULT_PORT 2379
#define CONNECT_TIMEOUT_MS 2000L
/* How long a call keeps trying while members answer "unavailable" (no
 * leader, leader changed, request timed out) or do not answer in time: an
 * etcd election takes a second or two with the default --election-timeout. */
#define UNAVAILABLE_RETRY_MS 10000
#define UNAVAILABLE_PAUSE_MS 200

struct etcd_client {
	struct etcd_location loc;
	size_t cur; /* the endpoint that answered last */
	const char *api;
	char version[32];
	CURL *curl;
	struct curl_slist *headers;
	struct sbuf resp; /* the answer being received */
};

/* ---- the location ---- */

static void add_endpoint(struct etcd_location *loc, const char *host, size_t n)
{
	char *ep = xstrndup(host, n);
	/* host, host:port, [v6] or [v6]:port */
	const char *colon = strrchr(ep, ':'), *bracket = strrchr(ep, ']');
	if (!colon || (bracket && colon < bracket) || (!bracket && strchr(ep, ':') != colon)) {
		char *with_port = xasprintf("%s:%d", ep, DEFAULT_PORT);
		free(ep);
		ep = with_port;
	}
	loc->endpoints = xrealloc(loc->endpoints, (loc->n_endpoints + 1) * sizeof *loc->endpoints);
	loc->urls = xrealloc(loc->urls, (loc->n_endpoints + 1) * sizeof *loc->urls);
	loc->endpoints[loc->n_endpoints] = ep;
	loc->urls[loc->n_endpoints] = NULL; /* http or https: known after the options */
	loc->n_endpoints++;
}

/* TLS options: file paths (a path cannot hold '&', the options' separator). */
static char **tls_option(struct etcd_location *loc, const char *name)
{
	return !strcmp(name, "cacert") ? &loc->cacert
	       : !strcmp(name, "cert") ? &loc->cert
	       : !strcmp(name, "key")  ? &loc->key
				       : NULL;
}

static int parse_option(struct etcd_location *loc, const char *opt, size_t n, const char *location,
			struct berr *err)
{
	char *name = xstrndup(opt, n);
	char *eq = strchr(name, '=');
	if (eq)
		*eq = 0;
	char **path = tls_option(loc, name);
	if (path) {
		int r = 0;
		if (!eq || !eq[1])
			r = berr_set(err, 0, "store: bad option '%.*s' in '%s' (expected %s=FILE)",
				     (int)n, opt, location, name);
		else {
			free(*path);
			*path = xstrdup(eq + 1);
		}
		free(name);
		return r;
	}
	size_t *field = !strcmp(name, "max-txn-ops")	     ? &loc->max_txn_ops
			: !strcmp(name, "max-request-bytes") ? &loc->max_request_bytes
							     : NULL;
	int64_t v = 0;
	int r = 0;
	if (!field)
		r = berr_set(err, 0,
			     "store: unknown option '%s' in '%s' (known: max-txn-ops, "
			     "max-request-bytes, cacert, cert, key)",
			     name, location);
	else if (!eq || parse_int64(eq + 1, &v) < 0 || v <= 0)
		r = berr_set(err, 0, "store: bad option '%.*s' in '%s' (expected %s=NUMBER)",
			     (int)n, opt, location, name);
	else if (field == &loc->max_request_bytes && v < ETCD_MIN_REQUEST_BYTES)
		r = berr_set(err, 0, "store: max-request-bytes %lld is too small in '%s'",
			     (long long)v, location);
	else
		*field = (size_t)v;
	free(name);
	return r;
}

static int parse_location(struct etcd_location *loc, const char *location, struct berr *err)
{
	const char *p = location;
	if (!strncmp(p, "etcd://", 7))
		p += 7;
	size_t hosts_len = strcspn(p, "/?");
	for (const char *h = p; h < p + hosts_len;) {
		const char *comma = memchr(h, ',', (size_t)(p + hosts_len - h));
		const char *end = comma ? comma : p + hosts_len;
		while (h < end && *h == ' ')
			h++;
		size_t n = (size_t)(end - h);
		while (n > 0 && h[n - 1] == ' ')
			n--;
		if (n == 0 || memchr(h, ' ', n) || memchr(h, '@', n))
			return berr_set(err, 0,
					"store: bad etcd location '%s' (expected "
					"etcd://HOST:PORT[,HOST:PORT...][/PREFIX])",
					location);
		add_endpoint(loc, h, n);
		h = comma ? comma + 1 : end;
	}
	if (!loc->n_endpoints)
		return berr_set(err, 0, "store: no etcd endpoint in '%s'", location);
	p += hosts_len;

	struct sbuf pre;
	sbuf_init(&pre);
	if (*p == '/') {
		p++;
		size_t n = strcspn(p, "?");
		sbuf_add(&pre, p, n);
		if (n && p[n - 1] != '/')
			sbuf_adds(&pre, "/");
		p += n;
	}
	loc->prefix_len = pre.len;
	loc->prefix = sbuf_detach(&pre);

	if (*p == '?') {
		p++;
		while (*p) {
			size_t n = strcspn(p, "&");
			if (n && parse_option(loc, p, n, location, err) < 0)
				return -1;
			p += n;
			if (*p == '&')
				p++;
		}
	}
	if (!loc->cert != !loc->key)
		return berr_set(err, 0,
				"store: a client certificate needs its key: give both cert and key "
				"(--etcd-cert and --etcd-key) in '%s'",
				location);
	/* A CA or a client certificate: the members speak TLS. */
	bool tls = loc->cacert || loc->cert;
	for (size_t i = 0; i < loc->n_endpoints; i++)
		loc->urls[i] = xasprintf("%s://%s", tls ? "https" : "http", loc->endpoints[i]);
	return 0;
}

/* ---- the client ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	sbuf_add(ud, data, size * n);
	return size * n;
}

void etcd_client_setup_handle(const struct etcd_client *c, CURL *h, struct sbuf *resp)
{
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ETCD_REQUEST_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	/* The endpoints are etcd members, never anything a proxy or a
	 * redirect leads to. */
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	/* TLS: the members' certificates are checked against the CA given
	 * (or the system's), host name included; ours is shown to them. */
	if (c->loc.cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->loc.cacert);
	if (c->loc.cert) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->loc.cert);
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->loc.key);
	}
}

struct etcd_client *etcd_client_new(const char *location, struct berr *err)
{
	pthread_once(&curl_once, curl_init_once);
	struct etcd_client *c = xcalloc(1, sizeof *c);
	c->loc.max_txn_ops = ETCD_DEFAULT_MAX_TXN_OPS;
	c->loc.max_request_bytes = ETCD_DEFAULT_MAX_REQUEST_BYTES;
	sbuf_init(&c->resp);
	if (parse_location(&c->loc, location, err) < 0)
		goto fail;
	c->curl = curl_easy_init();
	if (!c->curl) {
		berr_set(err, 0, "store: cannot open '%s': cannot create a curl handle", location);
		goto fail;
	}
	/* "Expect: 100-continue" would cost a round trip on every large
	 * request. */
	c->headers = curl_slist_append(NULL, "Content-Type: application/json");
	c->headers = curl_slist_append(c->headers, "Expect:");
	etcd_client_setup_handle(c, c->curl, &c->resp);
	return c;

fail:
	etcd_client_free(c);
	return NULL;
}

void etcd_client_free(struct etcd_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->headers);
	for (size_t i = 0; i < c->loc.n_endpoints; i++) {
		free(c->loc.endpoints[i]);
		free(c->loc.urls[i]);
	}
	free(c->loc.endpoints);
	free(c->loc.urls);
	free(c->loc.prefix);
	free(c->loc.cacert);
	free(c->loc.cert);
	free(c->loc.key);
	sbuf_release(&c->resp);
	free(c);
}

const struct etcd_location *etcd_client_location(const struct etcd_client *c)
{
	return &c->loc;
}

const char *etcd_client_api(const struct etcd_client *c)
{
	return c->api;
}

const char *etcd_client_endpoint(const struct etcd_client *c)
{
	return c->loc.endpoints[c->cur];
}

void etcd_client_next_endpoint(struct etcd_client *c)
{
	c->cur = (c->cur + 1) % c->loc.n_endpoints;
}

static char *url_at(const struct etcd_client *c, size_t idx, const char *path)
{
	if (path[0] == '/')
		return xasprintf("%s%s", c->loc.urls[idx], path);
	return xasprintf("%s%s/%s", c->loc.urls[idx], c->api ? c->api : "", path);
}

char *etcd_client_url(const struct etcd_client *c, const char *path)
{
	return url_at(c, c->cur, path);
}

static int stop_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			 curl_off_t ulnow)
{
	return atomic_load((const _Atomic bool *)ud) ? 1 : 0;
}

void etcd_client_stop_on(struct etcd_client *c, const _Atomic bool *stop)
{
	if (stop) {
		curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, stop_progress);
		curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, (void *)stop);
	}
	curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, stop ? 0L : 1L);
}

/* ---- calls ---- */

static void lowercase_first(char *s)
{
	if (s[0] >= 'A' && s[0] <= 'Z' && !(s[1] >= 'A' && s[1] <= 'Z'))
		s[0] = (char)(s[0] - 'A' + 'a');
}

/* A transport failure in words: curl's, its detail, and for a TLS failure
 * what berth was given (the usual causes: no client certificate where the
 * members ask for one, a CA that did not sign them, plain HTTP members). */
static void tls_failure(const struct etcd_client *c, CURLcode rc, const char *detail, char *why,
			size_t why_len)
{
	bool tls = rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
		   rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE ||
		   rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR;
	const char *hint = "";
	if (tls && (c->loc.cacert || c->loc.cert))
		hint = c->loc.cert ? " (TLS with the client certificate given by --etcd-cert)"
				   : " (TLS without a client certificate: if etcd runs with "
				     "--client-cert-auth, give --etcd-cert and --etcd-key)";
	/* curl's detail only where its words say too little (a refused
	 * connection says enough). */
	if (!tls)
		detail = "";
	snprintf(why, why_len, "%s%s%s%s", curl_easy_strerror(rc), *detail ? ": " : "", detail,
		 hint);
}

/* One request to one endpoint: the HTTP status, or -1 on a transport
 * failure (why says which). The answer is in c->resp. */
static long perform(struct etcd_client *c, size_t idx, const struct etcd_call *call,
		    bool *timed_out, char *why, size_t why_len)
{
	char *url = url_at(c, idx, call->path);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	if (call->body) {
		curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, call->body);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->len);
	} else {
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
	}
	c->resp.len = 0;
	c->resp.buf[0] = 0;
	char detail[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, detail);
	CURLcode rc = curl_easy_perform(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
	free(url);
	if (rc != CURLE_OK) {
		*timed_out = rc == CURLE_OPERATION_TIMEDOUT;
		tls_failure(c, rc, detail, why, why_len);
		lowercase_first(why);
		return -1;
	}
	long status = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* etcd's words for a non-200 answer: the gateway sends
 * {"error": ..., "message": ..., "code": grpc-code}. */
static void answer_message(struct etcd_client *c, long status, char *why, size_t why_len)
{
	json_t *j = json_loadb(c->resp.buf, c->resp.len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "message"));
	if (!msg || !*msg)
		msg = json_string_value(json_object_get(j, "error"));
	if (msg && *msg) {
		snprintf(why, why_len, "%s", msg);
	} else {
		/* Not the gateway ("404 page not found", a proxy's page). */
		size_t n = c->resp.len;
		while (n > 0 && (c->resp.buf[n - 1] == '\n' || c->resp.buf[n - 1] == ' '))
			n--;
		snprintf(why, why_len, "HTTP %ld%s%.*s", status, n ? ": " : "",
			 (int)(n > 200 ? 200 : n), c->resp.buf);
	}
	json_decref(j);
}

int etcd_client_call(struct etcd_client *c, struct etcd_call *call, json_t **out, struct berr *err)
{
	int64_t deadline = time_mono_ms() + UNAVAILABLE_RETRY_MS;
	long timeout_ms = call->timeout_ms;
	struct sbuf fails;
	sbuf_init(&fails);
	*out = NULL;
	call->status = 0;
	call->answer_bytes = 0;
	for (;;) {
		bool unavailable = false;
		fails.len = 0;
		fails.buf[0] = 0;
		curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS,
				 timeout_ms > 0 && timeout_ms < ETCD_REQUEST_TIMEOUT_MS
				     ? timeout_ms
				     : ETCD_REQUEST_TIMEOUT_MS);
		for (size_t k = 0; k < c->loc.n_endpoints; k++) {
			size_t idx = (c->cur + k) % c->loc.n_endpoints;
			char why[512];
			bool timed_out = false;
			long st = perform(c, idx, call, &timed_out, why, sizeof why);
			call->status = st > 0 ? st : 0;
			if (st == 200) {
				json_error_t jerr;
				json_t *j = json_loadb(c->resp.buf, c->resp.len, 0, &jerr);
				c->cur = idx;
				call->answer_bytes = c->resp.len;
				sbuf_release(&fails);
				if (!json_is_object(j)) {
					json_decref(j);
					return berr_set(err, 0, "etcd %s: bad answer to %s: %s",
							c->loc.endpoints[idx], call->path,
							j ? "not an object" : jerr.text);
				}
				*out = j;
				return 0;
			}
			if (st > 0)
				answer_message(c, st, why, sizeof why);
			sbuf_addf(&fails, "%setcd %s: %s", fails.len ? "; " : "",
				  c->loc.endpoints[idx], why);
			if (st < 0) {
				/* Not reachable: the next one. No answer in time:
				 * that one too, and maybe again later. */
				unavailable |= timed_out && timeout_ms > 0;
				continue;
			}
			if (st == 503 || st == 504) {
				/* Reachable but without a leader: another member
				 * may have one, or will soon. */
				unavailable = true;
				continue;
			}
			/* An answer from the cluster (bad request, too large,
			 * not found): another member would say the same. */
			c->cur = idx;
			berr_set(err, 0, "etcd %s: %s", c->loc.endpoints[idx], why);
			sbuf_release(&fails);
			return -1;
		}
		if (call->once || !unavailable || time_mono_ms() >= deadline)
			break;
		timeout_ms *= 2;
		struct timespec ts = {0, UNAVAILABLE_PAUSE_MS * 1000L * 1000L};
		nanosleep(&ts, NULL);
	}
	berr_set(err, 0, "%s", fails.buf);
	sbuf_release(&fails);
	return -1;
}

int etcd_client_call_json(struct etcd_client *c, const char *path, json_t *body, long timeout_ms,
			  bool once, json_t **out, struct berr *err)
{
	char *b = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct etcd_call call = {.path = path,
				 .body = b ? b : "{}",
				 .len = b ? strlen(b) : 2,
				 .timeout_ms = timeout_ms,
				 .once = once};
	int r = etcd_client_call(c, &call, out, err);
	free(b);
	return r;
}

/* ---- the API prefix ---- */

int etcd_client_detect(struct etcd_client *c, long timeout_ms, bool once, struct berr *err)
{
	const char *cands[3] = {"/v3", "/v3beta", "/v3alpha"};
	size_t first = 0, last = 3;
	json_t *j = NULL;
	struct etcd_call call = {.path = "/version", .timeout_ms = timeout_ms, .once = once};
	if (etcd_client_call(c, &call, &j, err) == 0) {
		const char *v = json_string_value(json_object_get(j, "etcdserver"));
		int major = 0, minor = 0;
		if (v && sscanf(v, "%d.%d", &major, &minor) == 2) {
			snprintf(c->version, sizeof c->version, "%s", v);
			first = major > 3 || (major == 3 && minor >= 4) ? 0 : minor == 3 ? 1 : 2;
			last = first + 1;
		}
		json_decref(j);
	} else if (call.status != 404) {
		return -1;
	}
	struct sbuf body;
	sbuf_init(&body);
	sbuf_adds(&body, "{");
	etcd_add_key(c, &body, "key", "", 0);
	sbuf_adds(&body, ",\"limit\":1,\"keys_only\":true}");
	for (size_t i = first; i < last; i++) {
		c->api = cands[i];
		call = (struct etcd_call){.path = "kv/range",
					  .body = body.buf,
					  .len = body.len,
					  .timeout_ms = timeout_ms,
					  .once = once};
		if (etcd_client_call(c, &call, &j, err) == 0) {
			json_decref(j);
			sbuf_release(&body);
			return 0;
		}
		if (call.status != 404)
			break;
	}
	sbuf_release(&body);
	bool tried_all = c->api == cands[last - 1] && call.status == 404;
	c->api = NULL;
	if (!tried_all)
		return -1;
	return berr_set(err, 0, "etcd %s: no v3 JSON gateway (tried /v3, /v3beta, /v3alpha)%s%s",
			c->loc.endpoints[c->cur], c->version[0] ? "; etcd version " : "",
			c->version);
}

/* ---- the gateway's JSON ---- */

char *etcd_key(const struct etcd_client *c, const char *key, size_t n, bool succ, size_t *len)
{
	size_t plen = c->loc.prefix_len, total = plen + n + (succ ? 1 : 0);
	char *k = xmalloc(total + 1);
	memcpy(k, c->loc.prefix, plen);
	memcpy(k + plen, key, n);
	k[total - (succ ? 1 : 0)] = 0;
	k[total] = 0;
	if (total == 0) {
		total = 1; /* "\0" */
		k = xrealloc(k, 2);
		k[0] = k[1] = 0;
	}
	*len = total;
	return k;
}

void etcd_add_key(const struct etcd_client *c, struct sbuf *sb, const char *name, const char *key,
		  size_t len)
{
	sbuf_addf(sb, "\"%s\":\"", name);
	if (c->loc.prefix_len + len == 0)
		base64_add(sb, "", 1);
	else
		base64_add2(sb, c->loc.prefix, c->loc.prefix_len, key, len);
	sbuf_adds(sb, "\"");
}

void etcd_add_raw(struct sbuf *sb, const char *name, const char *raw, size_t len)
{
	sbuf_addf(sb, "\"%s\":\"", name);
	if (raw)
		base64_add(sb, raw, len);
	else
		base64_add(sb, "", 1);
	sbuf_adds(sb, "\"");
}

int etcd_kv_bytes(json_t *kv, const char *field, struct sbuf *out)
{
	out->len = 0;
	out->buf[0] = 0;
	json_t *v = json_object_get(kv, field);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return -1;
	return base64_decode_add(out, json_string_value(v), json_string_length(v));
}

int64_t etcd_int64(json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v);
	int64_t n = 0;
	if (json_is_string(v) && parse_int64(json_string_value(v), &n) == 0)
		return n;
	return -1;
}
