/* registry_auth.c - registry credentials bound to hosts. See
 * registry_auth.h. */
#include "agent/image/registry_auth.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "agent/image/image_registry.h"

#define DOCKER_HUB "registry-1.docker.io"
#define MAX_REALMS 8

struct registry_cred {
	char *host;
	char *userpwd;
	char *realms[MAX_REALMS];
	size_t nrealms;
};

struct registry_auth {
	struct registry_cred *v;
	size_t n;
};

static const char *canonical_host(const char *h)
{
	if (!strcasecmp(h, "docker.io") || !strcasecmp(h, "index.docker.io") ||
	    !strcasecmp(h, "https://index.docker.io/v1/"))
		return DOCKER_HUB;
	return h;
}

static void cred_clear(struct registry_cred *c)
{
	free(c->host);
	if (c->userpwd) {
		explicit_bzero(c->userpwd, strlen(c->userpwd));
		free(c->userpwd);
	}
	for (size_t i = 0; i < c->nrealms; i++)
		free(c->realms[i]);
	memset(c, 0, sizeof *c);
}

void registry_auth_free(struct registry_auth *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		cred_clear(&a->v[i]);
	free(a->v);
	free(a);
}

static bool host_ok(const char *h)
{
	return *h && strlen(h) < 256 && !strpbrk(h, "/@ \t\r\n,=");
}

/* Add or replace host's entry; takes nothing, copies. */
static struct registry_cred *put(struct registry_auth *a, const char *host, const char *userpwd)
{
	host = canonical_host(host);
	struct registry_cred *c = NULL;
	for (size_t i = 0; i < a->n && !c; i++)
		if (!strcasecmp(a->v[i].host, host))
			c = &a->v[i];
	if (c) {
		cred_clear(c);
	} else {
		a->v = xrealloc(a->v, (a->n + 1) * sizeof *a->v);
		c = &a->v[a->n++];
		memset(c, 0, sizeof *c);
	}
	c->host = xstrdup(host);
	c->userpwd = xstrdup(userpwd);
	return c;
}

int registry_auth_parse_env(const char *text, struct registry_auth **a, struct berr *err)
{
	if (!text || !*text)
		return 0;
	if (!*a)
		*a = xcalloc(1, sizeof **a);
	char *copy = xstrdup(text), *save = NULL;
	int rc = 0;
	for (char *e = strtok_r(copy, ",", &save); e && rc == 0; e = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(e, '=');
		char *colon = strchr(e, ':');
		/* HOST may have a port ("127.0.0.1:5000=u:p"): '=' splits. */
		if (!eq || (colon && colon < eq && !strchr(eq + 1, ':'))) {
			rc = berr_set(err, 0,
				      "BERTH_REGISTRY_AUTH: an entry is not bound to a registry "
				      "host; write HOST=USER:PASSWORD, comma-separated (e.g. "
				      "registry.example.com=USER:PASSWORD)");
			break;
		}
		*eq = 0;
		if (!host_ok(e)) {
			rc = berr_set(err, 0, "BERTH_REGISTRY_AUTH: bad registry host '%s'", e);
			break;
		}
		if (!strchr(eq + 1, ':')) {
			rc = berr_set(
			    err, 0, "BERTH_REGISTRY_AUTH: the entry for '%s' is not USER:PASSWORD",
			    e);
			break;
		}
		put(*a, e, eq + 1);
	}
	explicit_bzero(copy, strlen(copy));
	free(copy);
	return rc;
}

int registry_auth_load_file(const char *path, struct registry_auth **a, struct berr *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return errno == ENOENT
			   ? 0
			   : berr_set(err, 0, "cannot read '%s': %s", path, err_str(errno));
	if (st.st_mode & 077)
		return berr_set(err, 0,
				"'%s' holds registry passwords but others may read it (mode %04o): "
				"chmod 600 it",
				path, (unsigned)(st.st_mode & 07777));
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		return berr_set(err, 0,
				"'%s': expected a JSON object {\"HOST\": \"USER:PASSWORD\"}", path);
	}
	if (!*a)
		*a = xcalloc(1, sizeof **a);
	int rc = 0;
	const char *host;
	json_t *v;
	json_object_foreach(j, host, v)
	{
		const char *up =
		    json_string_value(json_is_object(v) ? json_object_get(v, "auth") : v);
		json_t *realms = json_is_object(v) ? json_object_get(v, "realms") : NULL;
		if (!host_ok(host) || !up || !strchr(up, ':') ||
		    (realms && (!json_is_array(realms) || json_array_size(realms) > MAX_REALMS))) {
			rc = berr_set(
			    err, 0,
			    "'%s': bad entry '%s': expected \"USER:PASSWORD\" or {\"auth\": "
			    "\"USER:PASSWORD\", \"realms\": [HOST...]}",
			    path, host);
			break;
		}
		struct registry_cred *c = put(*a, host, up);
		size_t i;
		json_t *r;
		json_array_foreach(realms, i, r)
		{
			const char *s = json_string_value(r);
			if (s && host_ok(s))
				c->realms[c->nrealms++] = xstrdup(s);
		}
	}
	json_decref(j);
	return rc;
}

int registry_auth_load(const char *data_dir, struct registry_auth **a, struct berr *err)
{
	*a = NULL;
	if (registry_auth_parse_env(getenv("BERTH_REGISTRY_AUTH"), a, err) < 0)
		goto fail;
	if (data_dir) {
		char *p = xasprintf("%s/registry-auth.json", data_dir);
		int r = registry_auth_load_file(p, a, err);
		free(p);
		if (r < 0)
			goto fail;
	}
	return 0;
fail:
	registry_auth_free(*a);
	*a = NULL;
	return -1;
}

static const struct registry_cred *find(const struct registry_auth *a, const char *host)
{
	host = canonical_host(host);
	for (size_t i = 0; a && i < a->n; i++)
		if (!strcasecmp(a->v[i].host, host))
			return &a->v[i];
	return NULL;
}

const char *registry_auth_for(const struct registry_auth *a, const char *host)
{
	const struct registry_cred *c = find(a, host);
	return c ? c->userpwd : NULL;
}

/* Split "host[:port]" / "[v6]:port"; *port "" when none. */
static void split_host_port(const char *hp, char *host, size_t hn, char *port, size_t pn)
{
	const char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
	if (colon && hp[0] == '[')
		colon++;
	if (colon && strchr(colon + 1, ':'))
		colon = NULL; /* a bare IPv6 address */
	size_t hl = colon ? (size_t)(colon - hp) : strlen(hp);
	snprintf(host, hn, "%.*s", (int)hl, hp);
	snprintf(port, pn, "%s", colon ? colon + 1 : "");
}

bool registry_auth_realm_ok(const struct registry_auth *a, const char *host, const char *realm_url)
{
	const struct registry_cred *c = find(a, host);
	if (!c || !realm_url)
		return false;
	CURLU *u = curl_url();
	char *scheme = NULL, *rhost = NULL, *rport = NULL;
	bool ok = false;
	if (!u || curl_url_set(u, CURLUPART_URL, realm_url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &rhost, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &rport, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	bool https = !strcasecmp(scheme, "https");
	/* The registry itself, at the scheme berth talks to it with. */
	char h[256], p[16];
	split_host_port(canonical_host(host), h, sizeof h, p, sizeof p);
	bool insecure = image_registry_insecure(host);
	const char *want_port = *p ? p : insecure ? "80" : "443";
	if (!strcasecmp(rhost, h) && !strcmp(rport, want_port) &&
	    !strcasecmp(scheme, insecure ? "http" : "https")) {
		ok = true;
		goto out;
	}
	if (!https)
		goto out;
	for (size_t i = 0; i < c->nrealms + 1 && !ok; i++) {
		const char *r = i < c->nrealms		       ? c->realms[i]
				: !strcmp(c->host, DOCKER_HUB) ? "auth.docker.io"
							       : NULL;
		if (!r)
			break;
		split_host_port(r, h, sizeof h, p, sizeof p);
		ok = !strcasecmp(rhost, h) && (!*p || !strcmp(rport, p));
	}
out:
	curl_free(scheme);
	curl_free(rhost);
	curl_free(rport);
	curl_url_cleanup(u);
	return ok;
}
