/* image.h - OCI images for the oci driver: resolve a task's `image` to
 * unpacked, verified, read-only layers in a content-addressed cache shared
 * by every task of the agent.
 *
 * What `image` may be:
 *  - an OCI image layout directory (oci-layout, index.json, blobs/), as
 *    `skopeo copy ... oci:DIR` writes it: "/path/dir" or "oci:/path/dir",
 *    with an optional ":TAG" picking the index entry whose
 *    org.opencontainers.image.ref.name annotation is TAG;
 *  - a tar of one (`skopeo copy ... oci-archive:x.tar`), or a `docker save`
 *    tar (manifest.json; ":TAG" matches its RepoTags): "/path/x.tar",
 *    "oci-archive:/path/x.tar", "docker-archive:/path/x.tar";
 *  - a registry reference, HOST:PORT/NAME:TAG or HOST:PORT/NAME@sha256:...
 *    (see image_registry.h), optionally written "docker://...".
 * Manifest lists and indexes are narrowed to linux/<this machine's arch>.
 *
 * The cache (<data-dir>/images):
 *   blobs/sha256/<hex>       verified blobs fetched from registries or
 *                            imported from archives (a layout directory's
 *                            blobs are read where they are)
 *   layers/<hex>/fs/         one unpacked layer, <hex> its diff id (the
 *                            digest of the uncompressed tar): layers shared
 *                            by images are unpacked once
 *   layers/<hex>/layer.json  its digest, size and whiteout format
 *   images/<hex>.json        a ready image, <hex> its manifest's digest:
 *                            config and layer list. Its mtime is the last
 *                            use; a shared flock on it marks it in use
 *   refs/<hash>.json         a tag or archive already resolved to a
 *                            manifest digest: starting a second task from
 *                            "host/name:tag" asks the registry nothing (as
 *                            Docker's default "pull if missing")
 *   tmp/                     downloads and unpacks in progress; each lands
 *                            with one rename, so a crash leaves only tmp/
 *   lock                     flock: shared while resolving, exclusive for GC
 *
 * Every digest is verified: manifests and configs when read, layers while
 * unpacking (the blob's digest and the uncompressed diff id both). Layers
 * are unpacked safely (see image_tar.h). Concurrent tasks preparing the
 * same image wait for one another on per-layer locks rather than unpack
 * twice.
 */
#ifndef BERTH_IMAGE_H
#define BERTH_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/image/image_digest.h"
#include "core/util.h"

struct image_cache;

/* Caps on what one image may take (--image-max-bytes and
 * --image-max-unpacked-bytes): its compressed blobs as declared and as
 * downloaded (a blob is also held to the size its manifest declares, and
 * the download stops at the first byte past either), and its layers'
 * uncompressed tars (unpacking stops past it). Errors carry code 413. */
#define IMAGE_DEFAULT_MAX_BYTES (4ULL << 30)
#define IMAGE_DEFAULT_MAX_UNPACKED_BYTES (16ULL << 30)

struct registry_auth;

/* Open (creating it) the cache rooted at dir, with the default caps and
 * no registry credentials. */
int image_cache_open(const char *dir, struct image_cache **out, struct berr *err);
/* Registry credentials (agent/image/registry_auth.h), owned by the cache
 * from now on. */
void image_cache_set_auth(struct image_cache *c, struct registry_auth *auth);
/* The caps; 0 = the default. */
void image_cache_set_limits(struct image_cache *c, uint64_t max_bytes, uint64_t max_unpacked);
void image_cache_free(struct image_cache *c);
/* <dir>/layers: image.layer_names are relative to it. */
const char *image_cache_layers_dir(const struct image_cache *c);

/* The parts of the image config a task runs with. */
struct image_config {
	char **env; /* "K=V" */
	size_t nenv;
	char **entrypoint;
	size_t nentrypoint;
	char **cmd;
	size_t ncmd;
	char *workdir; /* "" = / */
	char *user;    /* "" = root */
};

struct image {
	char manifest_digest[IMAGE_DIGEST_STR_MAX];
	char **layers;	    /* absolute paths of the layer dirs' fs/, bottom first */
	char **layer_names; /* the same, relative to image_cache_layers_dir() */
	size_t nlayers;
	bool overlay_ready; /* all layers carry overlayfs whiteouts */
	struct image_config config;
	bool fetched; /* this call pulled or unpacked something */
	int lock_fd;  /* shared flock: the image is in use */
};

/* Resolve `ref`, fetching and unpacking what the cache lacks. The image
 * stays marked in use until image_release(). Errors name the reference and
 * what failed: "invalid image reference ...", "image '...' not found ...",
 * "... digest mismatch ...", "cannot reach registry '127.0.0.1:5000': ...". */
int image_get(struct image_cache *c, const char *ref, struct image **out, struct berr *err);
void image_release(struct image *img);

struct image_gc_stats {
	size_t images_removed;
	uint64_t bytes_freed;
	uint64_t bytes_kept;
};

/* Remove images not used for max_age_ms (0 = no age limit), then the least
 * recently used ones while the cache holds more than max_bytes (0 = no size
 * limit), never one in use; then every layer, blob and ref no remaining
 * image needs, and tmp/. Returns 0, or -EBUSY when an image is being
 * fetched (try again later), or -errno. stats may be NULL. */
int image_gc(struct image_cache *c, uint64_t max_bytes, int64_t max_age_ms,
	     struct image_gc_stats *stats);

#endif
