/* image_gc.c - the image cache's garbage collection (image_gc, image.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/image/image-internal.h"
#include "agent/image/image_tar.h"

struct gc_image {
	char *hex;
	int64_t last_used_ms;
	bool in_use, drop;
	char **layers, **blobs;
	size_t nlayers, nblobs;
};

static uint64_t layer_bytes(struct image_cache *c, const char *key)
{
	char *p = xasprintf("%s/%s/layer.json", c->layers, key);
	char *text;
	uint64_t b = 0;
	if (image__read_small(p, &text, NULL) == 0) {
		json_t *j = json_loads(text, 0, NULL);
		b = (uint64_t)json_integer_value(json_object_get(j, "bytes"));
		json_decref(j);
		free(text);
	}
	free(p);
	return b;
}

static uint64_t blob_bytes(struct image_cache *c, const char *digest)
{
	if (!image_digest_valid(digest))
		return 0;
	char *p = image__cache_blob_path(c, digest);
	struct stat st;
	uint64_t b = stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
	free(p);
	return b;
}

static bool kept_has(struct gc_image *v, size_t n, bool layers, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].drop)
			continue;
		char **list = layers ? v[i].layers : v[i].blobs;
		size_t len = layers ? v[i].nlayers : v[i].nblobs;
		for (size_t k = 0; k < len; k++)
			if (!strcmp(list[k], s))
				return true;
	}
	return false;
}

/* Bytes the kept images need (each layer and blob once). */
static uint64_t kept_bytes(struct image_cache *c, struct gc_image *v, size_t n)
{
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i].drop)
			continue;
		for (size_t k = 0; k < v[i].nlayers; k++) {
			bool seen = false;
			for (size_t j = 0; j < i && !seen; j++)
				for (size_t l = 0; !v[j].drop && l < v[j].nlayers && !seen; l++)
					seen = !strcmp(v[j].layers[l], v[i].layers[k]);
			for (size_t l = 0; l < k && !seen; l++)
				seen = !strcmp(v[i].layers[l], v[i].layers[k]);
			if (!seen)
				total += layer_bytes(c, v[i].layers[k]);
		}
		for (size_t k = 0; k < v[i].nblobs; k++) {
			bool seen = false;
			for (size_t j = 0; j < i && !seen; j++)
				for (size_t l = 0; !v[j].drop && l < v[j].nblobs && !seen; l++)
					seen = !strcmp(v[j].blobs[l], v[i].blobs[k]);
			for (size_t l = 0; l < k && !seen; l++)
				seen = !strcmp(v[i].blobs[l], v[i].blobs[k]);
			if (!seen)
				total += blob_bytes(c, v[i].blobs[k]);
		}
	}
	return total;
}

static char **list_dir(const char *dir, size_t *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	char **v = NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		v = xrealloc(v, (*n + 1) * sizeof *v);
		v[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	return v;
}

int image_gc(struct image_cache *c, uint64_t max_bytes, int64_t max_age_ms,
	     struct image_gc_stats *stats)
{
	struct image_gc_stats local = {0};
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof *stats);
	int gl = open(c->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (gl < 0)
		return -errno;
	if (flock(gl, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(gl);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	size_t nrec;
	char **recs = list_dir(c->images, &nrec);
	struct gc_image *v = xcalloc(nrec + 1, sizeof *v);
	size_t n = 0;
	int64_t now = time_now_ms();
	for (size_t i = 0; i < nrec; i++) {
		size_t len = strlen(recs[i]);
		if (len != IMAGE_DIGEST_HEX_LEN + 5 ||
		    strcmp(recs[i] + IMAGE_DIGEST_HEX_LEN, ".json"))
			continue;
		char *path = xasprintf("%s/%s", c->images, recs[i]);
		char *text = NULL;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || image__read_small(path, &text, NULL) < 0) {
			if (fd >= 0)
				close(fd);
			free(path);
			continue;
		}
		struct gc_image *g = &v[n++];
		g->hex = xstrndup(recs[i], IMAGE_DIGEST_HEX_LEN);
		g->last_used_ms = time_ts_ms(st.st_mtim);
		g->in_use = flock(fd, LOCK_EX | LOCK_NB) < 0;
		close(fd);
		json_t *j = json_loads(text, 0, NULL);
		g->layers = image__json_strv(json_object_get(j, "layers"), &g->nlayers);
		g->blobs = image__json_strv(json_object_get(j, "blobs"), &g->nblobs);
		json_decref(j);
		free(text);
		free(path);
	}
	strv_free_n(recs, nrec);
	uint64_t before = kept_bytes(c, v, n);
	if (max_age_ms > 0)
		for (size_t i = 0; i < n; i++)
			if (!v[i].in_use && now - v[i].last_used_ms > max_age_ms)
				v[i].drop = true;
	if (max_bytes > 0) {
		uint64_t total = kept_bytes(c, v, n);
		while (total > max_bytes) {
			struct gc_image *lru = NULL;
			for (size_t i = 0; i < n; i++)
				if (!v[i].drop && !v[i].in_use &&
				    (!lru || v[i].last_used_ms < lru->last_used_ms))
					lru = &v[i];
			if (!lru)
				break; /* everything left is in use */
			lru->drop = true;
			total = kept_bytes(c, v, n);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (!v[i].drop)
			continue;
		char *p = xasprintf("%s/%s.json", c->images, v[i].hex);
		if (unlink(p) == 0)
			stats->images_removed++;
		free(p);
	}
	/* Refs to images that are gone. */
	size_t nref;
	char **refs = list_dir(c->refs, &nref);
	for (size_t i = 0; i < nref; i++) {
		char *p = xasprintf("%s/%s", c->refs, refs[i]);
		char *text;
		bool keep = false;
		if (image__read_small(p, &text, NULL) == 0) {
			json_t *j = json_loads(text, 0, NULL);
			const char *d = json_string_value(json_object_get(j, "manifest"));
			if (d && image_digest_valid(d)) {
				char *rp = image__record_path(c, d);
				keep = image__path_exists(rp);
				free(rp);
			}
			json_decref(j);
			free(text);
		}
		if (!keep)
			unlink(p);
		free(p);
	}
	strv_free_n(refs, nref);
	/* Layers and blobs no kept image names. */
	size_t nl;
	char **layers = list_dir(c->layers, &nl);
	for (size_t i = 0; i < nl; i++) {
		if (kept_has(v, n, true, layers[i]))
			continue;
		char *p = xasprintf("%s/%s", c->layers, layers[i]);
		rm_rf_at(AT_FDCWD, p);
		free(p);
	}
	strv_free_n(layers, nl);
	size_t nb;
	char **blobs = list_dir(c->blobs, &nb);
	for (size_t i = 0; i < nb; i++) {
		char *d = xasprintf("sha256:%s", blobs[i]);
		if (!kept_has(v, n, false, d)) {
			char *p = xasprintf("%s/%s", c->blobs, blobs[i]);
			unlink(p);
			free(p);
		}
		free(d);
	}
	strv_free_n(blobs, nb);
	/* Nothing is being fetched (we hold the lock exclusively): whatever
	 * is in tmp/ is a leftover of a crash. Lock files go too. */
	size_t nt;
	char **tmps = list_dir(c->tmp, &nt);
	for (size_t i = 0; i < nt; i++) {
		char *p = xasprintf("%s/%s", c->tmp, tmps[i]);
		rm_rf_at(AT_FDCWD, p);
		free(p);
	}
	strv_free_n(tmps, nt);
	size_t nlk;
	char **locks = list_dir(c->locks, &nlk);
	for (size_t i = 0; i < nlk; i++) {
		char *p = xasprintf("%s/%s", c->locks, locks[i]);
		unlink(p);
		free(p);
	}
	strv_free_n(locks, nlk);
	stats->bytes_kept = kept_bytes(c, v, n);
	stats->bytes_freed = before > stats->bytes_kept ? before - stats->bytes_kept : 0;
	for (size_t i = 0; i < n; i++) {
		free(v[i].hex);
		strv_free_n(v[i].layers, v[i].nlayers);
		strv_free_n(v[i].blobs, v[i].nblobs);
	}
	free(v);
	close(gl);
	return 0;
}
