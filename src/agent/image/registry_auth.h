/* registry_auth.h - registry credentials, each bound to one registry host.
 *
 * Sources (both read; the file wins for a host named in both):
 *  - BERTH_REGISTRY_AUTH="HOST=USER:PASSWORD[,HOST2=USER:PASSWORD...]" in
 *    the agent's environment. The old unbound form "USER:PASSWORD" is
 *    refused: it was sent to whichever registry a job named.
 *  - DATA/registry-auth.json, mode 0600 (refused when group or others may
 *    read it): {"HOST": "USER:PASSWORD"} or
 *    {"HOST": {"auth": "USER:PASSWORD", "realms": ["auth.example.com"]}}.
 * HOST is a registry as image references name it: "registry.example.com",
 * "127.0.0.1:5000"; "docker.io" and "index.docker.io" mean Docker Hub
 * (registry-1.docker.io).
 *
 * Where credentials go: to the registry whose host is exactly HOST (curl
 * drops them on a redirect to another host), and to a Bearer token realm
 * only when the realm URL's host is that registry's host, or one of its
 * "realms" (Docker Hub's auth.docker.io is built in), and the realm is
 * HTTPS unless it is the registry itself. Never anywhere else.
 */
#ifndef BERTH_REGISTRY_AUTH_H
#define BERTH_REGISTRY_AUTH_H

#include <stdbool.h>

#include "core/util.h"

struct registry_auth;

/* Parse the environment form (NULL or "" = none) into *a (created when
 * NULL). 0, or -1 with err naming the bad entry (never the password). */
int registry_auth_parse_env(const char *text, struct registry_auth **a, struct berr *err);
/* Read the JSON file into *a (created when NULL); a missing file is no
 * error. */
int registry_auth_load_file(const char *path, struct registry_auth **a, struct berr *err);
/* Both sources: BERTH_REGISTRY_AUTH and DATA/registry-auth.json. *a may
 * stay NULL (no credentials). */
int registry_auth_load(const char *data_dir, struct registry_auth **a, struct berr *err);
void registry_auth_free(struct registry_auth *a);

/* "USER:PASSWORD" for this registry host, or NULL. */
const char *registry_auth_for(const struct registry_auth *a, const char *host);
/* May the credentials of registry `host` go to the token realm `realm_url`? */
bool registry_auth_realm_ok(const struct registry_auth *a, const char *host, const char *realm_url);

#endif
