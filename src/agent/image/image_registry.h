/* image_registry.h - image references, and the OCI distribution API (the
 * Docker registry v2 protocol) over libcurl.
 *
 * References: [HOST[:PORT]/]NAME[:TAG][@sha256:HEX]. The first component is
 * a registry host when it has a '.' or a ':' or is "localhost", as Docker
 * reads them; otherwise the image is on Docker Hub (registry-1.docker.io,
 * "library/" added to one-component names). No tag and no digest = "latest".
 *
 * Transport: plain HTTP for registries on loopback addresses (127.0.0.0/8,
 * localhost, ::1), as Docker does, and for hosts listed in
 * BERTH_INSECURE_REGISTRIES (comma-separated host:port); HTTPS with
 * certificate checks everywhere else.
 *
 * Auth: a request answered 401 with `WWW-Authenticate: Bearer realm=...,
 * service=...,scope=...` gets a token from the realm (anonymously, or with
 * this registry's credentials as Basic credentials when registry_auth.h
 * allows that realm) and is retried once with it; a `Basic` challenge is
 * answered with this registry's credentials (registry_auth.h: bound to
 * the registry's host, never sent to another).
 *
 * Every manifest is hashed and compared with the digest asked for (or with
 * the registry's Docker-Content-Digest when fetched by tag); every blob is
 * hashed while it streams to disk and compared with its digest and size.
 */
#ifndef BERTH_IMAGE_REGISTRY_H
#define BERTH_IMAGE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/image/image_digest.h"
#include "core/util.h"

struct image_registry_ref {
	char *host;   /* "127.0.0.1:5000" */
	char *name;   /* "test/busybox" */
	char *tag;    /* "1", or NULL when only a digest was given */
	char *digest; /* "sha256:..." or NULL */
};

int image_registry_ref_parse(const char *s, struct image_registry_ref *r, struct berr *err);
void image_registry_ref_free(struct image_registry_ref *r);
/* Does this host get plain HTTP? */
bool image_registry_insecure(const char *host);

struct image_registry;

struct registry_auth;

/* auth (may be NULL) must outlive the registry. */
struct image_registry *image_registry_new(const struct image_registry_ref *ref,
					  const struct registry_auth *auth);
/* Refuse any blob larger than max_bytes (0 = no cap but its declared size),
 * stopping the download as soon as it grows past it. */
void image_registry_set_max_blob(struct image_registry *rg, uint64_t max_bytes);
void image_registry_free(struct image_registry *rg);

/* Fetch the manifest (or index) `reference` (a tag or a digest). *body is
 * NUL-terminated; *media_type is the Content-Type (may be ""); digest gets
 * the verified digest of the body. Missing = an error with code 404. */
int image_registry_get_manifest(struct image_registry *rg, const char *reference, char **body,
				size_t *len, char **media_type, char *digest, struct berr *err);
/* Stream the blob into fd (at its current offset), verifying size (when
 * size >= 0) and digest. */
int image_registry_get_blob(struct image_registry *rg, const char *digest, int64_t size, int fd,
			    struct berr *err);

#endif
