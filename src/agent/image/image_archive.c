/* image_archive.c - images from archives: an oci-archive tar (an OCI
 * layout in a tar) or a `docker save` tar, imported into the cache's
 * blobs and resolved to a manifest digest (image.h). */
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

struct archive_file {
	char *path;
	char digest[IMAGE_DIGEST_STR_MAX];
	char *link; /* a symlink's target path within the archive */
};

struct archive {
	struct archive_file *files;
	size_t n;
	char *index_json, *docker_manifest;
};

static void archive_free(struct archive *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->files[i].path);
		free(a->files[i].link);
	}
	free(a->files);
	free(a->index_json);
	free(a->docker_manifest);
	memset(a, 0, sizeof *a);
}

static char *clean_path(const char *p)
{
	while (image__starts_with(p, "./"))
		p += 2;
	while (*p == '/')
		p++;
	char *s = xstrdup(p);
	size_t n = strlen(s);
	while (n && s[n - 1] == '/')
		s[--n] = 0;
	return s;
}

static const char *archive_digest(const struct archive *a, const char *path)
{
	char *want = clean_path(path);
	const char *found = NULL;
	for (int hops = 0; hops < 8 && !found; hops++) {
		const struct archive_file *f = NULL;
		for (size_t i = 0; i < a->n; i++)
			if (!strcmp(a->files[i].path, want))
				f = &a->files[i];
		if (!f)
			break;
		if (!f->link) {
			found = f->digest;
			break;
		}
		/* relative to the link's directory */
		char *dir = xstrdup(f->path);
		char *slash = strrchr(dir, '/');
		char *next;
		if (f->link[0] == '/')
			next = clean_path(f->link);
		else if (slash) {
			*slash = 0;
			next = xasprintf("%s/%s", dir, f->link);
		} else
			next = xstrdup(f->link);
		free(dir);
		/* fold "x/../" */
		char *dd;
		while ((dd = strstr(next, "/../"))) {
			char *start = dd;
			while (start > next && start[-1] != '/')
				start--;
			memmove(start, dd + 4, strlen(dd + 4) + 1);
		}
		free(want);
		want = clean_path(next);
		free(next);
	}
	free(want);
	return found;
}

/* Copy every file of the archive into the blob store under its content
 * digest (verifying the ones named blobs/sha256/<hex>), keeping index.json
 * or manifest.json aside. */
static int archive_import(struct image_cache *c, struct source *s, struct archive *a,
			  struct berr *err)
{
	int fd = open(s->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return berr_set(err, 404, "image '%s' not found: %s", image__source_name(s),
				err_str(errno));
	struct image_blob_stream *b = image_blob_stream_new(fd); /* a gzipped archive works too */
	struct image_tar_reader *t = image_tar_reader_new(image_blob_stream_read, b);
	struct image_tar_entry *e;
	int r, rc = -1;
	char buf[65536];
	while ((r = image_tar_next(t, &e, err)) > 0) {
		if (e->type != '0' && e->type != '2')
			continue;
		char *path = clean_path(e->path);
		if (e->type == '2') {
			a->files = xrealloc(a->files, (a->n + 1) * sizeof *a->files);
			a->files[a->n++] =
			    (struct archive_file){.path = path, .link = xstrdup(e->linkname)};
			continue;
		}
		if (!strcmp(path, "index.json") || !strcmp(path, "manifest.json")) {
			if (e->size > MAX_JSON_BLOB) {
				free(path);
				berr_set(err, 0, "image '%s': '%s' is too large",
					 image__source_name(s), e->path);
				goto out;
			}
			char *text = xmalloc((size_t)e->size + 1);
			size_t got = 0;
			ssize_t n;
			while ((n = image_tar_read(t, text + got, (size_t)e->size - got, err)) > 0)
				got += (size_t)n;
			text[got] = 0;
			if (n < 0) {
				free(text);
				free(path);
				goto out;
			}
			char **slot =
			    !strcmp(path, "index.json") ? &a->index_json : &a->docker_manifest;
			free(*slot);
			*slot = text;
			free(path);
			continue;
		}
		const char *named = NULL;
		if (image__starts_with(path, "blobs/sha256/")) {
			char d[IMAGE_DIGEST_STR_MAX];
			snprintf(d, sizeof d, "sha256:%s", path + 13);
			if (image_digest_valid(d)) {
				char *final = image__cache_blob_path(c, d);
				bool have = image__path_exists(final);
				free(final);
				if (have) { /* already imported: skip its bytes */
					a->files =
					    xrealloc(a->files, (a->n + 1) * sizeof *a->files);
					a->files[a->n] = (struct archive_file){.path = path};
					snprintf(a->files[a->n++].digest, IMAGE_DIGEST_STR_MAX,
						 "%s", d);
					continue;
				}
				named = path + 13;
			}
		}
		char *tmp = xasprintf("%s/import-XXXXXX", c->tmp);
		int out = mkostemp(tmp, O_CLOEXEC);
		if (out < 0) {
			berr_set(err, 0, "cannot create '%s': %s", tmp, err_str(errno));
			free(tmp);
			free(path);
			goto out;
		}
		struct sha256_ctx *h = image_sha256_new();
		ssize_t n;
		int werr = 0;
		while ((n = image_tar_read(t, buf, sizeof buf, err)) > 0) {
			image_sha256_update(h, buf, (size_t)n);
			if (!werr && write(out, buf, (size_t)n) != n)
				werr = errno ? errno : EIO;
		}
		char got[IMAGE_DIGEST_STR_MAX];
		image_sha256_final(h, got);
		if (n == 0 && !werr && fsync(out) < 0)
			werr = errno;
		close(out);
		if (n < 0 || werr) {
			if (werr)
				berr_set(err, 0, "cannot write '%s': %s", tmp, err_str(werr));
			unlink(tmp);
			free(tmp);
			free(path);
			goto out;
		}
		if (named && strcmp(named, image_digest_hex(got))) {
			berr_set(
			    err, 0,
			    "image '%s': blob 'sha256:%s': digest mismatch: the content hashes "
			    "to '%s'",
			    image__source_name(s), named, got);
			unlink(tmp);
			free(tmp);
			free(path);
			goto out;
		}
		char *final = image__cache_blob_path(c, got);
		if (image__path_exists(final) || rename(tmp, final) < 0)
			unlink(tmp);
		free(final);
		free(tmp);
		a->files = xrealloc(a->files, (a->n + 1) * sizeof *a->files);
		a->files[a->n] = (struct archive_file){.path = path};
		snprintf(a->files[a->n++].digest, IMAGE_DIGEST_STR_MAX, "%s", got);
	}
	if (r < 0) {
		berr_prefix(err, "image '%s'", image__source_name(s));
		goto out;
	}
	rc = 0;
out:
	image_tar_reader_free(t);
	image_blob_stream_free(b);
	close(fd);
	return rc;
}

static int store_blob(struct image_cache *c, const char *data, size_t len, char *digest)
{
	image_sha256_digest(data, len, digest);
	char *final = image__cache_blob_path(c, digest);
	int r = image__path_exists(final) ? 0 : file_write_atomic(final, data, len);
	free(final);
	return r;
}

/* A `docker save` archive: build an OCI manifest for the chosen image. */
static int docker_save_resolve(struct image_cache *c, struct source *s, struct archive *a,
			       char *digest, struct berr *err)
{
	json_t *list = json_loads(a->docker_manifest, 0, NULL);
	json_t *pick = NULL;
	size_t i;
	json_t *d;
	int rc = -1;
	json_t *m = NULL;
	if (!json_is_array(list) || json_array_size(list) == 0) {
		berr_set(err, 0, "image '%s': manifest.json lists no image", image__source_name(s));
		goto out;
	}
	if (!s->tag && json_array_size(list) == 1)
		pick = json_array_get(list, 0);
	json_array_foreach(list, i, d)
	{
		if (pick || !s->tag)
			break;
		size_t k;
		json_t *t;
		json_array_foreach(json_object_get(d, "RepoTags"), k, t)
		{
			const char *name = json_string_value(t);
			const char *colon = name ? strrchr(name, ':') : NULL;
			if (name &&
			    (!strcmp(name, s->tag) || (colon && !strcmp(colon + 1, s->tag))))
				pick = d;
		}
	}
	if (!pick) {
		if (s->tag)
			berr_set(err, 404, "image '%s': no image tagged '%s'",
				 image__source_name(s), s->tag);
		else
			berr_set(err, 404, "image '%s': %zu images (name one with ':TAG')",
				 image__source_name(s), json_array_size(list));
		goto out;
	}
	const char *cfg = json_string_value(json_object_get(pick, "Config"));
	const char *cd = cfg ? archive_digest(a, cfg) : NULL;
	if (!cd) {
		berr_set(err, 0, "image '%s': config '%s' is missing from the archive",
			 image__source_name(s), cfg ? cfg : "");
		goto out;
	}
	char *cpath = image__cache_blob_path(c, cd);
	struct stat st;
	int sr = stat(cpath, &st);
	free(cpath);
	m = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:[]}", "schemaVersion", 2, "mediaType",
		      MT_OCI_MANIFEST, "config", "mediaType", MT_OCI_CONFIG, "digest", cd, "size",
		      (json_int_t)(sr == 0 ? st.st_size : 0), "layers");
	json_t *layers = json_object_get(m, "layers");
	json_array_foreach(json_object_get(pick, "Layers"), i, d)
	{
		const char *lp = json_string_value(d);
		const char *ld = lp ? archive_digest(a, lp) : NULL;
		if (!ld) {
			berr_set(err, 0, "image '%s': layer '%s' is missing from the archive",
				 image__source_name(s), lp ? lp : "");
			goto out;
		}
		char *lpath = image__cache_blob_path(c, ld);
		sr = stat(lpath, &st);
		free(lpath);
		json_array_append_new(layers, json_pack("{s:s,s:s,s:I}", "mediaType",
							MT_OCI_LAYER_TAR, "digest", ld, "size",
							(json_int_t)(sr == 0 ? st.st_size : 0)));
	}
	char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	int r = store_blob(c, text, strlen(text), digest);
	free(text);
	if (r < 0) {
		berr_set(err, 0, "cannot store a manifest in the image cache: %s", err_str(r));
		goto out;
	}
	rc = 0;
out:
	json_decref(m);
	json_decref(list);
	return rc;
}

int image__archive_resolve(struct image_cache *c, struct source *s, char *digest, bool *fetched,
			   struct berr *err)
{
	struct archive a = {0};
	int rc = -1;
	if (archive_import(c, s, &a, err) < 0)
		goto out;
	*fetched = true;
	if (a.index_json) {
		json_t *idx = json_loads(a.index_json, 0, NULL);
		if (!json_is_object(idx)) {
			json_decref(idx);
			berr_set(err, 0, "image '%s': index.json is not JSON",
				 image__source_name(s));
			goto out;
		}
		rc = image__local_resolve(c, s, idx, digest, err);
		json_decref(idx);
	} else if (a.docker_manifest) {
		rc = docker_save_resolve(c, s, &a, digest, err);
	} else {
		berr_set(err, 400,
			 "image '%s': not an image archive (no index.json, no manifest.json)",
			 image__source_name(s));
	}
out:
	archive_free(&a);
	return rc;
}
