/* image_registry.c - references and the distribution API. See
 * image_registry.h. */
#include "agent/image/image_registry.h"
#include "agent/image/registry_auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DOCKER_HUB "registry-1.docker.io"
#define MAX_MANIFEST (4u << 20)
#define MAX_TOKEN_REPLY (1u << 20)

static const char *const manifest_accept =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

/* ---- references ---- */

void image_registry_ref_free(struct image_registry_ref *r)
{
	free(r->host);
	free(r->name);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof *r);
}

/* Lowercase components of [a-z0-9] joined by '.', '_' or '-', separated by
 * '/' (the distribution spec's grammar, a little looser on separators). */
static bool valid_name(const char *n)
{
	if (!*n || strlen(n) > 255)
		return false;
	bool prev_sep = true; /* no separator first */
	for (const char *p = n; *p; p++) {
		if (islower((unsigned char)*p) || isdigit((unsigned char)*p)) {
			prev_sep = false;
			continue;
		}
		if (*p == '/') {
			if (prev_sep)
				return false;
			prev_sep = true;
			continue;
		}
		if (!strchr("._-", *p) || (prev_sep && p > n && p[-1] == '/') || p == n)
			return false;
		if (*p == '.' && p[-1] == '.')
			return false;
		prev_sep = false; /* "__" and "--" are allowed */
	}
	return !prev_sep && !strchr("._-", n[strlen(n) - 1]);
}

static bool valid_tag(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 128 || t[0] == '.' || t[0] == '-')
		return false;
	for (const char *p = t; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return false;
	return true;
}

int image_registry_ref_parse(const char *s, struct image_registry_ref *r, struct berr *err)
{
	memset(r, 0, sizeof *r);
	char *copy = xstrdup(s);
	char *at = strchr(copy, '@');
	if (at) {
		*at = 0;
		if (!image_digest_valid(at + 1)) {
			berr_set(err, 400,
				 "invalid image reference '%s': '%s' is not a sha256 digest", s,
				 at + 1);
			free(copy);
			return -1;
		}
		r->digest = xstrdup(at + 1);
	}
	char *rest = copy;
	char *slash = strchr(rest, '/');
	if (slash) {
		size_t hl = (size_t)(slash - rest);
		char *first = xstrndup(rest, hl);
		if (strchr(first, '.') || strchr(first, ':') || !strcmp(first, "localhost")) {
			r->host = first;
			rest = slash + 1;
		} else {
			free(first);
		}
	}
	char *lastslash = strrchr(rest, '/');
	char *colon = strrchr(lastslash ? lastslash : rest, ':');
	if (colon) {
		*colon = 0;
		if (!valid_tag(colon + 1)) {
			berr_set(err, 400, "invalid image reference '%s': bad tag '%s'", s,
				 colon + 1);
			goto fail;
		}
		r->tag = xstrdup(colon + 1);
	}
	if (!valid_name(rest)) {
		berr_set(err, 400, "invalid image reference '%s': bad repository name '%s'", s,
			 rest);
		goto fail;
	}
	if (!r->host) {
		r->host = xstrdup(DOCKER_HUB);
		r->name = strchr(rest, '/') ? xstrdup(rest) : xasprintf("library/%s", rest);
	} else {
		r->name = xstrdup(rest);
	}
	if (!*r->host) {
		berr_set(err, 400, "invalid image reference '%s': empty registry host", s);
		goto fail;
	}
	if (!r->tag && !r->digest)
		r->tag = xstrdup("latest");
	free(copy);
	return 0;
fail:
	free(copy);
	image_registry_ref_free(r);
	return -1;
}

bool image_registry_insecure(const char *host)
{
	char h[256];
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (!end || (size_t)(end - host - 1) >= sizeof h)
			return false;
		snprintf(h, sizeof h, "%.*s", (int)(end - host - 1), host + 1);
	} else {
		snprintf(h, sizeof h, "%s", host);
		char *c = strchr(h, ':');
		if (c)
			*c = 0;
	}
	if (!strcmp(h, "localhost") || !strcmp(h, "::1"))
		return true;
	struct in_addr a;
	if (inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127)
		return true;
	const char *list = getenv("BERTH_INSECURE_REGISTRIES");
	if (list && *list) {
		char *copy = xstrdup(list), *save = NULL;
		bool found = false;
		for (char *t = strtok_r(copy, ", ", &save); t && !found;
		     t = strtok_r(NULL, ", ", &save))
			found = !strcmp(t, host);
		free(copy);
		return found;
	}
	return false;
}

/* ---- HTTP ---- */

struct image_registry {
	struct image_registry_ref ref;
	char *base; /* "http://host:port" */
	CURL *curl;
	char *token;	/* Bearer token, once we have one */
	bool use_basic; /* answer with Basic credentials */
	const struct registry_auth *auth;
	const char *userpwd; /* this registry's credentials (auth), or NULL */
	uint64_t max_blob;   /* 0 = no cap beyond the declared size */
};

struct image_registry *image_registry_new(const struct image_registry_ref *ref,
					  const struct registry_auth *auth)
{
	struct image_registry *rg = xcalloc(1, sizeof *rg);
	rg->auth = auth;
	rg->userpwd = registry_auth_for(auth, ref->host);
	rg->ref.host = xstrdup(ref->host);
	rg->ref.name = xstrdup(ref->name);
	rg->base =
	    xasprintf("%s://%s", image_registry_insecure(ref->host) ? "http" : "https", ref->host);
	return rg;
}

void image_registry_free(struct image_registry *rg)
{
	if (!rg)
		return;
	if (rg->curl)
		curl_easy_cleanup(rg->curl);
	image_registry_ref_free(&rg->ref);
	free(rg->base);
	free(rg->token);
	free(rg);
}

/* Where a response body goes: memory (bounded) or a file, hashed. */
struct sink {
	struct sbuf mem;
	size_t max;
	bool overflow;
	int fd;
	struct sha256_ctx *hash;
	uint64_t written;
	uint64_t limit; /* fd: stop past this many bytes (0 = none) */
	bool too_big;
	int write_errno;
	/* headers of the last response */
	char *www_auth, *content_type, *content_digest;
};

static void sink_reset_headers(struct sink *k)
{
	free(k->www_auth);
	free(k->content_type);
	free(k->content_digest);
	k->www_auth = k->content_type = k->content_digest = NULL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct sink *k = ud;
	size_t n = size * nmemb;
	if (k->fd >= 0) {
		if (k->limit && k->written + n > k->limit) {
			k->too_big = true;
			return 0; /* aborts the transfer: not a byte more */
		}
		for (size_t off = 0; off < n;) {
			ssize_t w = write(k->fd, data + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				k->write_errno = errno;
				return 0; /* aborts the transfer */
			}
			off += (size_t)w;
		}
		if (k->hash)
			image_sha256_update(k->hash, data, n);
		k->written += n;
		return n;
	}
	if (k->mem.len + n > k->max) {
		k->overflow = true;
		return 0;
	}
	sbuf_add(&k->mem, data, n);
	return n;
}

static char *trim_dup(const char *s, size_t n)
{
	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	return xstrndup(s, n);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct sink *k = ud;
	size_t n = size * nmemb;
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) { /* a new response (redirects) */
		sink_reset_headers(k);
		return n;
	}
	const char *colon = memchr(data, ':', n);
	if (!colon)
		return n;
	size_t kl = (size_t)(colon - data);
	const char *v = colon + 1;
	size_t vl = n - kl - 1;
	char **slot = NULL;
	if (kl == 16 && !strncasecmp(data, "WWW-Authenticate", kl))
		slot = &k->www_auth;
	else if (kl == 12 && !strncasecmp(data, "Content-Type", kl))
		slot = &k->content_type;
	else if (kl == 21 && !strncasecmp(data, "Docker-Content-Digest", kl))
		slot = &k->content_digest;
	if (slot) {
		free(*slot);
		*slot = trim_dup(v, vl);
	}
	return n;
}

/* One parameter of a challenge: key="value" or key=value. */
static char *challenge_param(const char *ch, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = ch; (p = strcasestr(p, key)); p += kl) {
		if (p != ch && !(p[-1] == ' ' || p[-1] == ','))
			continue;
		const char *v = p + kl;
		while (*v == ' ')
			v++;
		if (*v != '=')
			continue;
		v++;
		while (*v == ' ')
			v++;
		if (*v == '"') {
			const char *end = strchr(v + 1, '"');
			return end ? xstrndup(v + 1, (size_t)(end - v - 1)) : NULL;
		}
		size_t l = strcspn(v, ", ");
		return xstrndup(v, l);
	}
	return NULL;
}

static int curl_fail(struct image_registry *rg, CURLcode rc, const char *errbuf, struct berr *err)
{
	const char *why = errbuf && *errbuf ? errbuf : curl_easy_strerror(rc);
	char low[CURL_ERROR_SIZE + 64];
	snprintf(low, sizeof low, "%s", why);
	if (low[0])
		low[0] = (char)tolower((unsigned char)low[0]);
	return berr_set(err, 502, "cannot reach registry '%s': %s", rg->ref.host, low);
}

/* GET url into the sink with the given Accept header; fills *status.
 * Handles one authentication round. */
static int http_get(struct image_registry *rg, const char *url, const char *accept, struct sink *k,
		    long *status, struct berr *err);

static int fetch_token(struct image_registry *rg, const char *challenge, struct berr *err)
{
	char *realm = challenge_param(challenge, "realm");
	char *service = challenge_param(challenge, "service");
	char *scope = challenge_param(challenge, "scope");
	int rc = -1;
	if (!realm) {
		berr_set(err, 401, "registry '%s' asked for a token without a realm", rg->ref.host);
		goto out;
	}
	if (!scope)
		scope = xasprintf("repository:%s:pull", rg->ref.name);
	CURL *c = curl_easy_init();
	if (!c) {
		berr_set(err, 0, "cannot start libcurl");
		goto out;
	}
	char *es = service ? curl_easy_escape(c, service, 0) : NULL;
	char *esc = curl_easy_escape(c, scope, 0);
	char *url = xasprintf("%s%sscope=%s%s%s", realm, strchr(realm, '?') ? "&" : "?", esc,
			      es ? "&service=" : "", es ? es : "");
	curl_free(es);
	curl_free(esc);
	struct sink k = {.fd = -1, .max = MAX_TOKEN_REPLY};
	sbuf_init(&k.mem);
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	/* The registry's credentials go to its own token service only (the
	 * realm is the registry's word, and a registry is any host a job
	 * names); anonymous elsewhere. curl drops them on a redirect to
	 * another host. */
	if (rg->userpwd && registry_auth_realm_ok(rg->auth, rg->ref.host, realm)) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, rg->userpwd);
	}
	CURLcode cr = curl_easy_perform(c);
	long st = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	curl_easy_cleanup(c);
	if (cr != CURLE_OK) {
		berr_set(err, 502, "cannot get a token for registry '%s' from '%s': %s",
			 rg->ref.host, realm, errbuf[0] ? errbuf : curl_easy_strerror(cr));
	} else if (st != 200) {
		berr_set(err, 401, "registry '%s': the token service '%s' answered %ld",
			 rg->ref.host, realm, st);
	} else {
		json_t *j = json_loadb(k.mem.buf, k.mem.len, 0, NULL);
		const char *tok = json_string_value(json_object_get(j, "token"));
		if (!tok || !*tok)
			tok = json_string_value(json_object_get(j, "access_token"));
		if (tok && *tok) {
			free(rg->token);
			rg->token = xstrdup(tok);
			rc = 0;
		} else {
			berr_set(err, 401, "registry '%s': the token service gave no token",
				 rg->ref.host);
		}
		json_decref(j);
	}
	sbuf_release(&k.mem);
	free(url);
out:
	free(realm);
	free(service);
	free(scope);
	return rc;
}

static int perform(struct image_registry *rg, const char *url, const char *accept, struct sink *k,
		   long *status, struct berr *err)
{
	if (!rg->curl) {
		rg->curl = curl_easy_init();
		if (!rg->curl)
			return berr_set(err, 0, "cannot start libcurl");
	}
	CURL *c = rg->curl;
	curl_easy_reset(c);
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdr = NULL;
	if (accept)
		hdr = curl_slist_append(hdr, accept);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, k);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	/* Blobs are often redirected to storage elsewhere; the bearer token
	 * set below goes only to the registry's own host (curl drops auth on
	 * a host change). */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	/* No overall timeout (layers can be large); a stalled transfer ends. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "identity");
	if (rg->token) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, rg->token);
	} else if (rg->use_basic && rg->userpwd) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, rg->userpwd);
	}
	CURLcode cr = curl_easy_perform(c);
	curl_slist_free_all(hdr);
	*status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (cr == CURLE_WRITE_ERROR && k->write_errno)
		return berr_set(err, 0, "cannot write the download: %s", strerror(k->write_errno));
	if (cr == CURLE_WRITE_ERROR && k->too_big)
		return 1; /* the caller names the blob and the cap */
	if (cr == CURLE_WRITE_ERROR && k->overflow)
		return berr_set(err, 0, "registry '%s': response too large", rg->ref.host);
	if (cr != CURLE_OK)
		return curl_fail(rg, cr, errbuf, err);
	return 0;
}

static int http_get(struct image_registry *rg, const char *url, const char *accept, struct sink *k,
		    long *status, struct berr *err)
{
	off_t start = k->fd >= 0 ? lseek(k->fd, 0, SEEK_CUR) : 0;
	for (int round = 0; round < 2; round++) {
		int r = perform(rg, url, accept, k, status, err);
		if (r != 0)
			return r;
		if (*status != 401 || round == 1)
			return 0;
		/* Authenticate, forget the 401's body, retry. */
		const char *ch = k->www_auth;
		if (ch && !strncasecmp(ch, "Bearer", 6)) {
			if (fetch_token(rg, ch + 6, err) < 0)
				return -1;
		} else if (ch && !strncasecmp(ch, "Basic", 5) && rg->userpwd && !rg->use_basic) {
			rg->use_basic = true;
		} else {
			return 0; /* nothing we can answer: the caller reports the 401 */
		}
		k->mem.len = 0;
		k->mem.buf[0] = 0;
		if (k->fd >= 0) {
			if (lseek(k->fd, start, SEEK_SET) < 0 || ftruncate(k->fd, start) < 0)
				return berr_set(err, 0, "cannot rewind the download: %s",
						strerror(errno));
			k->written = 0;
			if (k->hash) {
				image_sha256_free(k->hash);
				k->hash = image_sha256_new();
			}
		}
	}
	return 0;
}

/* The registry's error, e.g. {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}. */
static void registry_error_text(const struct sink *k, char *buf, size_t n)
{
	buf[0] = 0;
	if (!k->mem.len)
		return;
	json_t *j = json_loadb(k->mem.buf, k->mem.len, 0, NULL);
	json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
	const char *code = json_string_value(json_object_get(e0, "code"));
	const char *msg = json_string_value(json_object_get(e0, "message"));
	if (code || msg)
		snprintf(buf, n, ": %s%s%s", code ? code : "", code && msg ? " " : "",
			 msg ? msg : "");
	json_decref(j);
}

int image_registry_get_manifest(struct image_registry *rg, const char *reference, char **body,
				size_t *len, char **media_type, char *digest, struct berr *err)
{
	*body = NULL;
	*media_type = NULL;
	char *url = xasprintf("%s/v2/%s/manifests/%s", rg->base, rg->ref.name, reference);
	struct sink k = {.fd = -1, .max = MAX_MANIFEST};
	sbuf_init(&k.mem);
	long st = 0;
	int rc = -1;
	if (http_get(rg, url, manifest_accept, &k, &st, err) < 0)
		goto out;
	char why[256];
	registry_error_text(&k, why, sizeof why);
	if (st == 404) {
		berr_set(err, 404, "image '%s/%s' has no manifest '%s' in registry '%s'%s",
			 rg->ref.host, rg->ref.name, reference, rg->ref.host, why);
		goto out;
	}
	if (st == 401 || st == 403) {
		berr_set(err, (int)st, "registry '%s' refused access to '%s' (status %ld)%s",
			 rg->ref.host, rg->ref.name, st, why);
		goto out;
	}
	if (st != 200) {
		berr_set(err, 502, "registry '%s' answered %ld for manifest '%s' of '%s'%s",
			 rg->ref.host, st, reference, rg->ref.name, why);
		goto out;
	}
	image_sha256_digest(k.mem.buf, k.mem.len, digest);
	if (image_digest_valid(reference) && strcmp(reference, digest)) {
		berr_set(err, 0,
			 "manifest '%s' of '%s/%s': digest mismatch: the content hashes to '%s'",
			 reference, rg->ref.host, rg->ref.name, digest);
		goto out;
	}
	if (k.content_digest && image_digest_valid(k.content_digest) &&
	    strcmp(k.content_digest, digest)) {
		berr_set(err, 0,
			 "manifest '%s' of '%s/%s': digest mismatch: the registry says '%s', the "
			 "content hashes to '%s'",
			 reference, rg->ref.host, rg->ref.name, k.content_digest, digest);
		goto out;
	}
	*len = k.mem.len;
	*body = sbuf_detach(&k.mem);
	*media_type = xstrdup(k.content_type ? k.content_type : "");
	char *semi = strchr(*media_type, ';');
	if (semi)
		*semi = 0;
	rc = 0;
out:
	sbuf_release(&k.mem);
	sink_reset_headers(&k);
	free(url);
	return rc;
}

void image_registry_set_max_blob(struct image_registry *rg, uint64_t max_bytes)
{
	rg->max_blob = max_bytes;
}

int image_registry_get_blob(struct image_registry *rg, const char *digest, int64_t size, int fd,
			    struct berr *err)
{
	if (size >= 0 && rg->max_blob && (uint64_t)size > rg->max_blob)
		return berr_set(err, 413,
				"blob '%s' of '%s/%s' is %lld bytes, more than this agent's cap of "
				"%llu (--image-max-bytes)",
				digest, rg->ref.host, rg->ref.name, (long long)size,
				(unsigned long long)rg->max_blob);
	char *url = xasprintf("%s/v2/%s/blobs/%s", rg->base, rg->ref.name, digest);
	/* Checked while it streams: never more than declared, nor the cap. */
	struct sink k = {.fd = fd, .hash = image_sha256_new(), .max = 0};
	k.limit = size >= 0 ? (uint64_t)size : rg->max_blob;
	sbuf_init(&k.mem);
	long st = 0;
	int rc = -1;
	int r = http_get(rg, url, NULL, &k, &st, err);
	if (r < 0)
		goto out;
	if (r > 0) {
		if (size >= 0)
			berr_set(err, 0,
				 "blob '%s' of '%s/%s': size mismatch: the registry sent more than "
				 "the %lld bytes the manifest declares (download stopped)",
				 digest, rg->ref.host, rg->ref.name, (long long)size);
		else
			berr_set(
			    err, 413,
			    "blob '%s' of '%s/%s' is larger than this agent's cap of %llu bytes "
			    "(--image-max-bytes); download stopped",
			    digest, rg->ref.host, rg->ref.name, (unsigned long long)k.limit);
		goto out;
	}
	if (st != 200) {
		berr_set(err, st == 404 ? 404 : 502,
			 "registry '%s' answered %ld for blob '%s' of '%s'", rg->ref.host, st,
			 digest, rg->ref.name);
		goto out;
	}
	if (size >= 0 && k.written != (uint64_t)size) {
		berr_set(err, 0,
			 "blob '%s' of '%s/%s': size mismatch: expected %lld bytes, got %llu",
			 digest, rg->ref.host, rg->ref.name, (long long)size,
			 (unsigned long long)k.written);
		goto out;
	}
	char got[IMAGE_DIGEST_STR_MAX];
	image_sha256_final(k.hash, got);
	k.hash = NULL;
	if (strcmp(got, digest)) {
		berr_set(err, 0,
			 "blob '%s' of '%s/%s': digest mismatch: the content hashes to '%s'",
			 digest, rg->ref.host, rg->ref.name, got);
		goto out;
	}
	rc = 0;
out:
	image_sha256_free(k.hash);
	sbuf_release(&k.mem);
	sink_reset_headers(&k);
	free(url);
	return rc;
}
