/* image-internal.h - what the image cache's files share (image.h is the
 * public header): image.c (references, blobs, manifests, layers, ready
 * images), image_archive.c (oci-archive and docker-save tars), image_gc.c
 * (garbage collection). */
#ifndef BERTH_IMAGE_INTERNAL_H
#define BERTH_IMAGE_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/image/image.h"
#include "agent/image/image_registry.h"

#define MAX_JSON_BLOB (4u << 20)
#define MAX_INDEX_DEPTH 4

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"
#define ANN_REF_NAME "org.opencontainers.image.ref.name"

struct image_cache {
	char *dir;
	char *blobs, *layers, *images, *refs, *tmp, *locks;
	char *lock_path;
	struct registry_auth *auth; /* owned; NULL = anonymous everywhere */
	uint64_t max_bytes;	    /* an image's download (and each blob) */
	uint64_t max_unpacked;	    /* an image's layers, uncompressed */
};

/* Where an image comes from. */
enum src_kind { SRC_LAYOUT, SRC_ARCHIVE, SRC_REGISTRY };

struct source {
	enum src_kind kind;
	const char *ref; /* as given, for messages */
	char *path;	 /* layout directory or archive */
	char *tag;
	struct image_registry_ref rref;
	struct image_registry *rg;
	const char *blob_dir; /* where blobs are read: the layout's or the cache's */
	char *owned_blob_dir;
};

bool image__path_exists(const char *p);
/* A JSON array of strings as a vector of n copies (caller frees). */
char **image__json_strv(json_t *a, size_t *n);
/* Read a file of at most MAX_JSON_BLOB bytes. 0 or -errno. */
int image__read_small(const char *path, char **out, size_t *len);
bool image__starts_with(const char *s, const char *p);
const char *image__source_name(const struct source *s);
/* <cache>/blobs/sha256/<hex>, <cache>/images/<hex>.json (caller frees). */
char *image__cache_blob_path(struct image_cache *c, const char *digest);
char *image__record_path(struct image_cache *c, const char *digest);
/* The manifest digest an OCI index (of a layout or an archive) picks for
 * the source's tag. */
int image__local_resolve(struct image_cache *c, struct source *s, json_t *index, char *digest,
			 struct berr *err);
/* image_archive.c: import an archive's blobs into the cache and resolve it
 * to a manifest digest. */
int image__archive_resolve(struct image_cache *c, struct source *s, char *digest, bool *fetched,
			   struct berr *err);

#endif
