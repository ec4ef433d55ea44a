/* image.c - the image cache: resolving references, fetching, verifying,
 * unpacking. See image.h for the layout; image_archive.c imports archives,
 * image_gc.c collects garbage. */
#include "agent/image/image-internal.h"

#include <ctype.h>
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
#include <sys/utsname.h>
#include <unistd.h>

#include "agent/image/image_registry.h"
#include "agent/image/image_tar.h"
#include "agent/image/registry_auth.h"

int image_cache_open(const char *dir, struct image_cache **out, struct berr *err)
{
	*out = NULL;
	struct image_cache *c = xcalloc(1, sizeof *c);
	c->dir = xstrdup(dir);
	c->blobs = xasprintf("%s/blobs/sha256", dir);
	c->layers = xasprintf("%s/layers", dir);
	c->images = xasprintf("%s/images", dir);
	c->refs = xasprintf("%s/refs", dir);
	c->tmp = xasprintf("%s/tmp", dir);
	c->locks = xasprintf("%s/locks", dir);
	c->lock_path = xasprintf("%s/lock", dir);
	const char *dirs[] = {c->blobs, c->layers, c->images, c->refs, c->tmp, c->locks};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		int r = mkdir_p(dirs[i], 0700);
		if (r < 0) {
			berr_set(err, 0, "cannot create the image cache '%s': %s", dirs[i],
				 err_str(r));
			image_cache_free(c);
			return -1;
		}
	}
	image_cache_set_limits(c, 0, 0);
	*out = c;
	return 0;
}

void image_cache_set_auth(struct image_cache *c, struct registry_auth *auth)
{
	registry_auth_free(c->auth);
	c->auth = auth;
}

void image_cache_set_limits(struct image_cache *c, uint64_t max_bytes, uint64_t max_unpacked)
{
	c->max_bytes = max_bytes ? max_bytes : IMAGE_DEFAULT_MAX_BYTES;
	c->max_unpacked = max_unpacked ? max_unpacked : IMAGE_DEFAULT_MAX_UNPACKED_BYTES;
}

void image_cache_free(struct image_cache *c)
{
	if (!c)
		return;
	registry_auth_free(c->auth);
	free(c->dir);
	free(c->blobs);
	free(c->layers);
	free(c->images);
	free(c->refs);
	free(c->tmp);
	free(c->locks);
	free(c->lock_path);
	free(c);
}

const char *image_cache_layers_dir(const struct image_cache *c)
{
	return c->layers;
}

/* ---- small helpers ---- */

static int lock_file(const char *path, int how)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (flock(fd, how) < 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int lock_key(struct image_cache *c, const char *key)
{
	char *p = xasprintf("%s/%s.lock", c->locks, key);
	int fd = lock_file(p, LOCK_EX);
	free(p);
	return fd;
}

bool image__path_exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

char **image__json_strv(json_t *a, size_t *n)
{
	size_t len = json_is_array(a) ? json_array_size(a) : 0;
	char **v = xcalloc(len + 1, sizeof *v);
	*n = 0;
	for (size_t i = 0; i < len; i++) {
		const char *s = json_string_value(json_array_get(a, i));
		if (s)
			v[(*n)++] = xstrdup(s);
	}
	return v;
}

static const char *host_arch(void)
{
	static char arch[32];
	if (arch[0])
		return arch;
	struct utsname u;
	const char *m = uname(&u) == 0 ? u.machine : "x86_64";
	static const char *const map[][2] = {
	    {"x86_64", "amd64"}, {"aarch64", "arm64"},	 {"i686", "386"},    {"i386", "386"},
	    {"armv7l", "arm"},	 {"ppc64le", "ppc64le"}, {"s390x", "s390x"}, {"riscv64", "riscv64"},
	};
	snprintf(arch, sizeof arch, "%s", m);
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (!strcmp(m, map[i][0]))
			snprintf(arch, sizeof arch, "%s", map[i][1]);
	return arch;
}

/* Read a whole small file, bounded. 0 or -errno (-EFBIG when too large). */
int image__read_small(const char *path, char **out, size_t *len)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > MAX_JSON_BLOB) {
		close(fd);
		return -EFBIG;
	}
	char *buf = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = 0;
	*out = buf;
	if (len)
		*len = got;
	return 0;
}

/* ---- sources ---- */

static void source_free(struct source *s)
{
	free(s->path);
	free(s->tag);
	image_registry_ref_free(&s->rref);
	image_registry_free(s->rg);
	free(s->owned_blob_dir);
	memset(s, 0, sizeof *s);
}

bool image__starts_with(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

/* PATH or PATH:TAG where PATH exists. */
static int split_path_tag(const char *spec, char **path, char **tag)
{
	*path = *tag = NULL;
	if (image__path_exists(spec)) {
		*path = xstrdup(spec);
		return 0;
	}
	const char *colon = strrchr(spec, ':');
	if (colon && colon[1] && !strchr(colon, '/')) {
		char *p = xstrndup(spec, (size_t)(colon - spec));
		if (image__path_exists(p)) {
			*path = p;
			*tag = xstrdup(colon + 1);
			return 0;
		}
		free(p);
	}
	return -ENOENT;
}

static int parse_source(struct image_cache *c, const char *ref, struct source *s, struct berr *err)
{
	memset(s, 0, sizeof *s);
	s->ref = ref;
	if (!ref || !*ref)
		return berr_set(err, 400, "no image given");
	const char *p = ref;
	int forced = -1;
	if (image__starts_with(p, "oci:"))
		forced = SRC_LAYOUT, p += 4;
	else if (image__starts_with(p, "oci-archive:"))
		forced = SRC_ARCHIVE, p += 12;
	else if (image__starts_with(p, "docker-archive:"))
		forced = SRC_ARCHIVE, p += 15;
	else if (image__starts_with(p, "docker://"))
		p += 9;
	/* A path is explicit ("/", "./", "../" or a transport prefix): a bare
	 * "busybox" is a registry reference even if a directory has its name. */
	bool is_path = forced >= 0 || p[0] == '/' || image__starts_with(p, "./") ||
		       image__starts_with(p, "../");
	if (!is_path) {
		s->kind = SRC_REGISTRY;
		if (image_registry_ref_parse(p, &s->rref, err) < 0)
			return -1;
		s->blob_dir = c->blobs;
		return 0;
	}
	char *path, *tag;
	if (split_path_tag(p, &path, &tag) < 0)
		return berr_set(err, 404, "image '%s' not found: no such file or directory", ref);
	char *abs = realpath(path, NULL);
	free(path);
	if (!abs) {
		free(tag);
		return berr_set(err, 404, "image '%s' not found: %s", ref, err_str(errno));
	}
	s->path = abs;
	s->tag = tag;
	struct stat st;
	if (stat(abs, &st) < 0)
		return berr_set(err, 404, "image '%s' not found: %s", ref, err_str(errno));
	if (S_ISDIR(st.st_mode)) {
		if (forced == SRC_ARCHIVE)
			return berr_set(err, 400, "image '%s': '%s' is a directory, not an archive",
					ref, abs);
		s->kind = SRC_LAYOUT;
		char *marker = xasprintf("%s/oci-layout", abs);
		bool ok = image__path_exists(marker);
		free(marker);
		if (!ok)
			return berr_set(
			    err, 400,
			    "image '%s': '%s' is not an OCI image layout (no oci-layout "
			    "file)",
			    ref, abs);
		s->owned_blob_dir = xasprintf("%s/blobs/sha256", abs);
		s->blob_dir = s->owned_blob_dir;
	} else if (S_ISREG(st.st_mode)) {
		if (forced == SRC_LAYOUT)
			return berr_set(err, 400, "image '%s': '%s' is not a directory", ref, abs);
		s->kind = SRC_ARCHIVE;
		s->blob_dir = c->blobs;
	} else {
		return berr_set(err, 400, "image '%s': '%s' is neither a directory nor a file", ref,
				abs);
	}
	return 0;
}

const char *image__source_name(const struct source *s)
{
	return s->ref;
}

/* ---- refs: tags and archives already resolved ---- */

static char *ref_key(const struct source *s)
{
	if (s->kind == SRC_REGISTRY)
		return s->rref.digest ? xasprintf("registry:%s/%s@%s", s->rref.host, s->rref.name,
						  s->rref.digest)
				      : xasprintf("registry:%s/%s:%s", s->rref.host, s->rref.name,
						  s->rref.tag);
	return xasprintf("archive:%s:%s", s->path, s->tag ? s->tag : "");
}

static char *ref_path(struct image_cache *c, const char *key)
{
	char d[IMAGE_DIGEST_STR_MAX];
	image_sha256_digest(key, strlen(key), d);
	return xasprintf("%s/%s.json", c->refs, image_digest_hex(d));
}

/* An archive is known by its identity and change time: the same file,
 * unchanged, holds the same image. */
static json_t *archive_stamp(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return NULL;
	return json_pack("{s:I,s:I,s:I,s:I,s:I}", "dev", (json_int_t)st.st_dev, "ino",
			 (json_int_t)st.st_ino, "size", (json_int_t)st.st_size, "mtime_s",
			 (json_int_t)st.st_mtim.tv_sec, "mtime_ns", (json_int_t)st.st_mtim.tv_nsec);
}

static int ref_lookup(struct image_cache *c, const struct source *s, char *digest)
{
	char *key = ref_key(s);
	char *path = ref_path(c, key);
	char *text = NULL;
	int rc = -1;
	if (image__read_small(path, &text, NULL) < 0)
		goto out;
	json_t *j = json_loads(text, 0, NULL);
	const char *k = json_string_value(json_object_get(j, "ref"));
	const char *d = json_string_value(json_object_get(j, "manifest"));
	if (k && d && !strcmp(k, key) && image_digest_valid(d)) {
		rc = 0;
		if (s->kind == SRC_ARCHIVE) {
			json_t *now = archive_stamp(s->path);
			if (!now || !json_equal(now, json_object_get(j, "stamp")))
				rc = -1;
			json_decref(now);
		}
		if (rc == 0)
			snprintf(digest, IMAGE_DIGEST_STR_MAX, "%s", d);
	}
	json_decref(j);
out:
	free(text);
	free(path);
	free(key);
	return rc;
}

static void ref_store(struct image_cache *c, const struct source *s, const char *digest)
{
	char *key = ref_key(s);
	char *path = ref_path(c, key);
	json_t *j = json_pack("{s:s,s:s}", "ref", key, "manifest", digest);
	if (s->kind == SRC_ARCHIVE) {
		json_t *st = archive_stamp(s->path);
		if (st)
			json_object_set_new(j, "stamp", st);
	}
	char *text = json_dumps(j, JSON_COMPACT);
	file_write_atomic(path, text, strlen(text));
	free(text);
	json_decref(j);
	free(path);
	free(key);
}

/* ---- blobs ---- */

static char *blob_path(const struct source *s, const char *digest)
{
	return xasprintf("%s/%s", s->blob_dir, image_digest_hex(digest));
}

char *image__cache_blob_path(struct image_cache *c, const char *digest)
{
	return xasprintf("%s/%s", c->blobs, image_digest_hex(digest));
}

/* Make a registry blob present in the cache (downloaded once, verified). */
static int ensure_registry_blob(struct image_cache *c, struct source *s, const char *digest,
				int64_t size, uint64_t cap, bool *fetched, struct berr *err)
{
	char *final = image__cache_blob_path(c, digest);
	int rc = 0, lock = -1;
	char *tmp = NULL;
	if (image__path_exists(final))
		goto out;
	char *lk = xasprintf("blob-%s", image_digest_hex(digest));
	lock = lock_key(c, lk);
	free(lk);
	if (lock < 0) {
		rc = berr_set(err, 0, "cannot lock the image cache: %s", err_str(lock));
		goto out;
	}
	if (image__path_exists(final)) /* someone else fetched it meanwhile */
		goto out;
	tmp = xasprintf("%s/blob-%s-XXXXXX", c->tmp, image_digest_hex(digest));
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = berr_set(err, 0, "cannot create '%s': %s", tmp, err_str(errno));
		goto out;
	}
	if (!s->rg)
		s->rg = image_registry_new(&s->rref, c->auth);
	image_registry_set_max_blob(s->rg, cap);
	rc = image_registry_get_blob(s->rg, digest, size, fd, err);
	if (rc == 0 && fsync(fd) < 0)
		rc = berr_set(err, 0, "cannot write '%s': %s", tmp, err_str(errno));
	close(fd);
	if (rc == 0 && rename(tmp, final) < 0)
		rc = berr_set(err, 0, "cannot store blob '%s': %s", digest, err_str(errno));
	if (rc < 0)
		unlink(tmp);
	else
		*fetched = true;
out:
	if (lock >= 0)
		close(lock);
	free(tmp);
	free(final);
	return rc;
}

/* A small JSON blob (index, manifest, config), read and verified. */
static int read_json_blob(struct image_cache *c, struct source *s, const char *digest, int64_t size,
			  const char *what, json_t **out, bool *fetched, struct berr *err)
{
	*out = NULL;
	if (!image_digest_valid(digest))
		return berr_set(err, 0, "image '%s': %s has an invalid digest '%s'",
				image__source_name(s), what, digest ? digest : "");
	if (s->kind == SRC_REGISTRY &&
	    ensure_registry_blob(c, s, digest, size, MAX_JSON_BLOB, fetched, err) < 0)
		return -1;
	char *path = blob_path(s, digest);
	char *buf;
	size_t len;
	int r = image__read_small(path, &buf, &len);
	free(path);
	if (r == -ENOENT)
		return berr_set(err, 404, "image '%s': %s '%s' is missing", image__source_name(s),
				what, digest);
	if (r < 0)
		return berr_set(err, 0, "image '%s': cannot read %s '%s': %s",
				image__source_name(s), what, digest, err_str(r));
	char got[IMAGE_DIGEST_STR_MAX];
	image_sha256_digest(buf, len, got);
	if (strcmp(got, digest)) {
		free(buf);
		return berr_set(err, 0,
				"image '%s': %s '%s': digest mismatch: the content hashes to '%s'",
				image__source_name(s), what, digest, got);
	}
	json_error_t je;
	*out = json_loadb(buf, len, 0, &je);
	free(buf);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return berr_set(err, 0, "image '%s': %s '%s' is not a JSON object",
				image__source_name(s), what, digest);
	}
	return 0;
}

/* ---- choosing a manifest ---- */

static bool is_index(json_t *doc, const char *media_type)
{
	const char *mt = media_type && *media_type
			     ? media_type
			     : json_string_value(json_object_get(doc, "mediaType"));
	if (mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST)))
		return true;
	if (mt && (!strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST)))
		return false;
	return json_is_array(json_object_get(doc, "manifests"));
}

static bool desc_is_index(json_t *desc)
{
	const char *mt = json_string_value(json_object_get(desc, "mediaType"));
	return mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST));
}

/* The entry of an index to use: by ref name when tag is set, the only
 * one, or the one for linux on this machine's architecture. */
static json_t *index_pick(json_t *idx, const char *tag, const char *what, struct berr *err)
{
	json_t *list = json_object_get(idx, "manifests");
	size_t n = json_is_array(list) ? json_array_size(list) : 0;
	if (n == 0) {
		berr_set(err, 404, "%s: the index lists no manifests", what);
		return NULL;
	}
	size_t i;
	json_t *d;
	if (tag) {
		json_t *found = NULL;
		json_array_foreach(list, i, d)
		{
			const char *name = json_string_value(
			    json_object_get(json_object_get(d, "annotations"), ANN_REF_NAME));
			if (!name)
				continue;
			const char *colon = strrchr(name, ':');
			if (!strcmp(name, tag) ||
			    (colon && !strcmp(colon + 1, tag) && !strchr(colon, '/'))) {
				found = d;
				break;
			}
		}
		if (!found)
			berr_set(err, 404, "%s: no image tagged '%s'", what, tag);
		return found;
	}
	if (n == 1)
		return json_array_get(list, 0);
	json_t *found = NULL;
	json_array_foreach(list, i, d)
	{
		json_t *pf = json_object_get(d, "platform");
		const char *os = json_string_value(json_object_get(pf, "os"));
		const char *arch = json_string_value(json_object_get(pf, "architecture"));
		if (os && arch && !strcmp(os, "linux") && !strcmp(arch, host_arch())) {
			found = d;
			break;
		}
	}
	if (!found)
		berr_set(err, 404, "%s: %zu images and none for linux/%s%s", what, n, host_arch(),
			 " (name one with ':TAG')");
	return found;
}

/* Walk from an index document down to a manifest digest (layouts,
 * archives: blobs are local). */
int image__local_resolve(struct image_cache *c, struct source *s, json_t *index, char *digest,
			 struct berr *err)
{
	char what[PATH_MAX + 64];
	snprintf(what, sizeof what, "image '%s'", image__source_name(s));
	json_t *doc = json_incref(index);
	const char *tag = s->tag;
	int rc = -1;
	for (int depth = 0; depth < MAX_INDEX_DEPTH; depth++) {
		json_t *d = index_pick(doc, tag, what, err);
		if (!d)
			goto out;
		const char *dg = json_string_value(json_object_get(d, "digest"));
		if (!image_digest_valid(dg)) {
			berr_set(err, 0, "%s: the index names an invalid digest '%s'", what,
				 dg ? dg : "");
			goto out;
		}
		if (!desc_is_index(d)) {
			snprintf(digest, IMAGE_DIGEST_STR_MAX, "%s", dg);
			rc = 0;
			goto out;
		}
		json_t *next;
		bool fetched = false;
		if (read_json_blob(c, s, dg, -1, "index", &next, &fetched, err) < 0)
			goto out;
		json_decref(doc);
		doc = next;
		tag = NULL; /* a nested index is chosen by platform */
	}
	berr_set(err, 0, "%s: indexes nested too deep", what);
out:
	json_decref(doc);
	return rc;
}

static int layout_resolve(struct image_cache *c, struct source *s, char *digest, struct berr *err)
{
	char *path = xasprintf("%s/index.json", s->path);
	char *text;
	int r = image__read_small(path, &text, NULL);
	free(path);
	if (r < 0)
		return berr_set(err, r == -ENOENT ? 404 : 0,
				"image '%s': cannot read the layout's index.json: %s",
				image__source_name(s), err_str(r));
	json_t *idx = json_loads(text, 0, NULL);
	free(text);
	if (!json_is_object(idx)) {
		json_decref(idx);
		return berr_set(err, 0, "image '%s': the layout's index.json is not JSON",
				image__source_name(s));
	}
	r = image__local_resolve(c, s, idx, digest, err);
	json_decref(idx);
	return r;
}

/* Registry: tag or digest -> the platform manifest (digest and body). */
static int registry_resolve(struct image_cache *c, struct source *s, char *digest, char **body,
			    size_t *len, struct berr *err)
{
	if (!s->rg)
		s->rg = image_registry_new(&s->rref, c->auth);
	const char *reference = s->rref.digest ? s->rref.digest : s->rref.tag;
	char *mt = NULL;
	if (image_registry_get_manifest(s->rg, reference, body, len, &mt, digest, err) < 0)
		return -1;
	for (int depth = 0; depth < MAX_INDEX_DEPTH; depth++) {
		json_t *doc = json_loadb(*body, *len, 0, NULL);
		if (!json_is_object(doc)) {
			json_decref(doc);
			free(mt);
			return berr_set(err, 0, "image '%s': manifest '%s' is not JSON",
					image__source_name(s), digest);
		}
		if (!is_index(doc, mt)) {
			json_decref(doc);
			free(mt);
			return 0;
		}
		char what[512];
		snprintf(what, sizeof what, "image '%s'", image__source_name(s));
		json_t *d = index_pick(doc, NULL, what, err);
		const char *dg = d ? json_string_value(json_object_get(d, "digest")) : NULL;
		char *next = dg && image_digest_valid(dg) ? xstrdup(dg) : NULL;
		json_decref(doc);
		free(*body);
		*body = NULL;
		free(mt);
		mt = NULL;
		if (!next) {
			if (d)
				berr_set(err, 0, "%s: the index names an invalid digest", what);
			return -1;
		}
		int r = image_registry_get_manifest(s->rg, next, body, len, &mt, digest, err);
		free(next);
		if (r < 0)
			return -1;
	}
	free(mt);
	return berr_set(err, 0, "image '%s': indexes nested too deep", image__source_name(s));
}

/* ---- layers ---- */

static bool layer_overlay_format(struct image_cache *c, const char *key)
{
	char *p = xasprintf("%s/%s/layer.json", c->layers, key);
	char *text;
	bool ok = false;
	if (image__read_small(p, &text, NULL) == 0) {
		json_t *j = json_loads(text, 0, NULL);
		const char *f = json_string_value(json_object_get(j, "format"));
		ok = f && !strcmp(f, "overlay");
		json_decref(j);
		free(text);
	}
	free(p);
	return ok;
}

/* The uncompressed size a cached layer recorded (0 when unknown). */
static uint64_t layer_tar_bytes(struct image_cache *c, const char *key)
{
	char *p = xasprintf("%s/%s/layer.json", c->layers, key);
	char *text;
	uint64_t n = 0;
	if (image__read_small(p, &text, NULL) == 0) {
		json_t *j = json_loads(text, 0, NULL);
		json_t *v = json_object_get(j, "tar_bytes");
		if (!v)
			v = json_object_get(j, "bytes");
		n = json_is_integer(v) && json_integer_value(v) > 0
			? (uint64_t)json_integer_value(v)
			: 0;
		json_decref(j);
		free(text);
	}
	free(p);
	return n;
}

/* Make one layer present, unpacked. `budget`: what the image may still
 * take unpacked; *used gets what this layer takes. */
static int ensure_layer(struct image_cache *c, struct source *s, json_t *desc, const char *diff_id,
			size_t index, uint64_t budget, uint64_t *used, bool *fetched,
			struct berr *err)
{
	*used = 0;
	const char *digest = json_string_value(json_object_get(desc, "digest"));
	const char *mt = json_string_value(json_object_get(desc, "mediaType"));
	json_t *jsize = json_object_get(desc, "size");
	int64_t size = json_is_integer(jsize) ? (int64_t)json_integer_value(jsize) : -1;
	if (!image_digest_valid(digest))
		return berr_set(err, 0, "image '%s': layer %zu has an invalid digest '%s'",
				image__source_name(s), index, digest ? digest : "");
	if (mt && strstr(mt, "zstd"))
		return berr_set(err, 0,
				"image '%s': layer '%s' is zstd-compressed, which berth cannot "
				"unpack (gzip and plain tar only)",
				image__source_name(s), digest);
	if (json_object_get(desc, "urls") && mt && strstr(mt, "foreign"))
		return berr_set(err, 0, "image '%s': layer '%s' is a foreign layer",
				image__source_name(s), digest);
	const char *key = image_digest_hex(diff_id ? diff_id : digest);
	char *final = xasprintf("%s/%s", c->layers, key);
	char *tmp = NULL;
	int rc = 0, lock = -1, fd = -1;
	if (image__path_exists(final))
		goto cached;
	char *lk = xasprintf("layer-%s", key);
	lock = lock_key(c, lk);
	free(lk);
	if (lock < 0) {
		rc = berr_set(err, 0, "cannot lock the image cache: %s", err_str(lock));
		goto out;
	}
	if (image__path_exists(final))
		goto cached;
	if (s->kind == SRC_REGISTRY &&
	    ensure_registry_blob(c, s, digest, size, c->max_bytes, fetched, err) < 0) {
		rc = -1;
		goto out;
	}
	char *bp = blob_path(s, digest);
	fd = open(bp, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = berr_set(err, errno == ENOENT ? 404 : 0, "image '%s': layer '%s': %s",
			      image__source_name(s), digest,
			      errno == ENOENT ? "missing blob" : err_str(errno));
		free(bp);
		goto out;
	}
	free(bp);
	tmp = xasprintf("%s/layer-%s-XXXXXX", c->tmp, key);
	if (!mkdtemp(tmp)) {
		rc = berr_set(err, 0, "cannot create '%s': %s", tmp, err_str(errno));
		goto out;
	}
	char *fs = xasprintf("%s/fs", tmp);
	mkdir(fs, 0755);
	bool root = geteuid() == 0;
	char what[IMAGE_DIGEST_STR_MAX + 64];
	snprintf(what, sizeof what, "layer '%s'", digest);
	struct image_unpack_opts o = {
	    .overlay = root,
	    .root = root,
	    .want_digest = digest,
	    .want_diff_id = diff_id,
	    .what = what,
	    .max_bytes = budget ? budget : 1,
	};
	struct image_unpack_result res;
	rc = image_layer_unpack(fd, fs, &o, &res, err);
	free(fs);
	if (rc < 0) {
		berr_prefix(err, "image '%s'", image__source_name(s));
		rm_rf_at(AT_FDCWD, tmp);
		goto out;
	}
	*used = res.tar_bytes;
	json_t *meta =
	    json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:I}", "digest", digest, "diff_id", res.diff_id,
		      "bytes", (json_int_t)res.bytes, "tar_bytes", (json_int_t)res.tar_bytes,
		      "entries", (json_int_t)res.entries, "format", root ? "overlay" : "plain",
		      "created_ms", (json_int_t)time_now_ms());
	char *text = json_dumps(meta, JSON_COMPACT);
	json_decref(meta);
	char *mp = xasprintf("%s/layer.json", tmp);
	int w = file_write_atomic(mp, text, strlen(text));
	free(mp);
	free(text);
	/* The layer is on disk before its name says it is complete. */
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		syncfs(dfd);
		close(dfd);
	}
	if (w < 0 || rename(tmp, final) < 0) {
		int e = w < 0 ? w : -errno;
		rm_rf_at(AT_FDCWD, tmp);
		if (!image__path_exists(final))
			rc = berr_set(err, 0, "cannot store layer '%s': %s", digest, err_str(e));
	} else {
		*fetched = true;
	}
	goto out;
cached:
	/* Unpacked before (for this image or another): it counts all the same. */
	*used = layer_tar_bytes(c, key);
	if (*used > budget)
		rc = berr_set(err, 413,
			      "image '%s': unpacked, it is larger than this agent's cap of %llu "
			      "bytes (--image-max-unpacked-bytes)",
			      image__source_name(s), (unsigned long long)c->max_unpacked);
out:
	if (fd >= 0)
		close(fd);
	if (lock >= 0)
		close(lock);
	free(tmp);
	free(final);
	return rc;
}

/* ---- ready images ---- */

char *image__record_path(struct image_cache *c, const char *digest)
{
	return xasprintf("%s/%s.json", c->images, image_digest_hex(digest));
}

static int write_record(struct image_cache *c, const char *digest, json_t *rec, struct berr *err)
{
	char *path = image__record_path(c, digest);
	char *tmp = xasprintf("%s/record-XXXXXX", c->tmp);
	char *text = json_dumps(rec, JSON_INDENT(1));
	int rc = 0;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = berr_set(err, 0, "cannot create '%s': %s", tmp, err_str(errno));
		goto out;
	}
	size_t len = strlen(text);
	bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
	fchmod(fd, 0644);
	close(fd);
	/* Never replace a record: a task holds its flock on that inode. */
	if (!ok ||
	    (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0 && errno != EEXIST))
		rc = berr_set(err, 0, "cannot write '%s': %s", path, err_str(errno));
	unlink(tmp);
out:
	free(text);
	free(tmp);
	free(path);
	return rc;
}

/* Fetch, verify and unpack everything the manifest names, then record the
 * image as ready. */
static int prepare(struct image_cache *c, struct source *s, const char *mdigest, char *mbody,
		   size_t mlen, bool *fetched, struct berr *err)
{
	json_t *m = NULL, *cfg = NULL, *rec = NULL;
	int rc = -1;
	if (mbody) {
		m = json_loadb(mbody, mlen, 0, NULL);
		if (!json_is_object(m)) {
			berr_set(err, 0, "image '%s': manifest '%s' is not JSON",
				 image__source_name(s), mdigest);
			goto out;
		}
	} else if (read_json_blob(c, s, mdigest, -1, "manifest", &m, fetched, err) < 0) {
		goto out;
	}
	if (is_index(m, NULL)) {
		berr_set(err, 0, "image '%s': '%s' is an index, not a manifest",
			 image__source_name(s), mdigest);
		goto out;
	}
	json_t *cdesc = json_object_get(m, "config");
	const char *cdigest = json_string_value(json_object_get(cdesc, "digest"));
	json_t *layers = json_object_get(m, "layers");
	if (!cdigest || !json_is_array(layers)) {
		berr_set(err, 0, "image '%s': manifest '%s' has no config or no layers",
			 image__source_name(s), mdigest);
		goto out;
	}
	json_t *csize = json_object_get(cdesc, "size");
	if (read_json_blob(c, s, cdigest,
			   json_is_integer(csize) ? (int64_t)json_integer_value(csize) : -1,
			   "config", &cfg, fetched, err) < 0)
		goto out;
	json_t *diff_ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
	size_t nl = json_array_size(layers);
	if (json_is_array(diff_ids) && json_array_size(diff_ids) != nl) {
		berr_set(err, 0, "image '%s': the manifest has %zu layers, the config %zu diff ids",
			 image__source_name(s), nl, json_array_size(diff_ids));
		goto out;
	}
	json_t *conf = json_object_get(cfg, "config");
	conf = json_is_object(conf) ? json_incref(conf) : json_object();
	rec = json_pack("{s:s,s:s,s:o,s:[],s:[s,s]}", "manifest", mdigest, "ref", s->ref, "config",
			conf, "layers", "blobs", mdigest, cdigest);
	json_t *rl = json_object_get(rec, "layers"), *rb = json_object_get(rec, "blobs");
	/* The whole download, as the manifest declares it, within the cap
	 * before a byte is fetched (each blob is held to its declared size). */
	uint64_t declared = 0;
	for (size_t i = 0; s->kind == SRC_REGISTRY && i < nl; i++) {
		json_t *sz = json_object_get(json_array_get(layers, i), "size");
		if (json_is_integer(sz) && json_integer_value(sz) > 0)
			declared += (uint64_t)json_integer_value(sz);
	}
	if (declared > c->max_bytes) {
		berr_set(err, 413,
			 "image '%s' is %llu bytes to download, more than this agent's cap of %llu "
			 "(--image-max-bytes)",
			 image__source_name(s), (unsigned long long)declared,
			 (unsigned long long)c->max_bytes);
		goto out;
	}
	uint64_t unpacked = 0;
	for (size_t i = 0; i < nl; i++) {
		json_t *desc = json_array_get(layers, i);
		const char *did = json_string_value(json_array_get(diff_ids, i));
		if (did && !image_digest_valid(did)) {
			berr_set(err, 0, "image '%s': layer %zu has an invalid diff id '%s'",
				 image__source_name(s), i, did);
			goto out;
		}
		uint64_t used = 0;
		if (ensure_layer(c, s, desc, did, i, c->max_unpacked - unpacked, &used, fetched,
				 err) < 0)
			goto out;
		unpacked += used < c->max_unpacked - unpacked ? used : c->max_unpacked - unpacked;
		const char *dg = json_string_value(json_object_get(desc, "digest"));
		json_array_append_new(rl, json_string(image_digest_hex(did ? did : dg)));
		json_array_append_new(rb, json_string(dg));
	}
	if (write_record(c, mdigest, rec, err) < 0)
		goto out;
	rc = 0;
out:
	json_decref(m);
	json_decref(cfg);
	json_decref(rec);
	return rc;
}

/* Load a ready image's record; -ENOENT when not (fully) there. */
static int load_record(struct image_cache *c, const char *digest, struct image *img)
{
	char *path = image__record_path(c, digest);
	char *text = NULL;
	json_t *j = NULL;
	int rc = -ENOENT;
	if (image__read_small(path, &text, NULL) < 0)
		goto out;
	j = json_loads(text, 0, NULL);
	json_t *layers = json_object_get(j, "layers");
	if (!json_is_array(layers))
		goto out;
	size_t n = json_array_size(layers);
	img->layers = xcalloc(n + 1, sizeof *img->layers);
	img->layer_names = xcalloc(n + 1, sizeof *img->layer_names);
	img->overlay_ready = true;
	for (size_t i = 0; i < n; i++) {
		const char *key = json_string_value(json_array_get(layers, i));
		char d[IMAGE_DIGEST_STR_MAX];
		snprintf(d, sizeof d, "sha256:%s", key ? key : "");
		if (!image_digest_valid(d))
			goto out;
		img->layer_names[i] = xasprintf("%s/fs", key);
		img->layers[i] = xasprintf("%s/%s/fs", c->layers, key);
		img->nlayers = i + 1;
		if (!image__path_exists(img->layers[i]))
			goto out;
		if (!layer_overlay_format(c, key))
			img->overlay_ready = false;
	}
	json_t *cfg = json_object_get(j, "config");
	struct image_config *ic = &img->config;
	ic->env = image__json_strv(json_object_get(cfg, "Env"), &ic->nenv);
	ic->entrypoint = image__json_strv(json_object_get(cfg, "Entrypoint"), &ic->nentrypoint);
	ic->cmd = image__json_strv(json_object_get(cfg, "Cmd"), &ic->ncmd);
	const char *wd = json_string_value(json_object_get(cfg, "WorkingDir"));
	const char *user = json_string_value(json_object_get(cfg, "User"));
	ic->workdir = xstrdup(wd ? wd : "");
	ic->user = xstrdup(user ? user : "");
	snprintf(img->manifest_digest, sizeof img->manifest_digest, "%s", digest);
	/* In use from now on; the mtime says when it was last used. */
	img->lock_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (img->lock_fd < 0 || flock(img->lock_fd, LOCK_SH) < 0)
		goto out;
	futimens(img->lock_fd, NULL);
	rc = 0;
out:
	json_decref(j);
	free(text);
	free(path);
	return rc;
}

static void image_clear(struct image *img)
{
	strv_free_n(img->layers, img->nlayers);
	strv_free_n(img->layer_names, img->nlayers);
	img->layers = img->layer_names = NULL;
	img->nlayers = 0;
	struct image_config *ic = &img->config;
	strv_free_n(ic->env, ic->nenv);
	strv_free_n(ic->entrypoint, ic->nentrypoint);
	strv_free_n(ic->cmd, ic->ncmd);
	free(ic->workdir);
	free(ic->user);
	memset(ic, 0, sizeof *ic);
	if (img->lock_fd >= 0)
		close(img->lock_fd);
	img->lock_fd = -1;
}

void image_release(struct image *img)
{
	if (!img)
		return;
	image_clear(img);
	free(img);
}

int image_get(struct image_cache *c, const char *ref, struct image **out, struct berr *err)
{
	*out = NULL;
	struct source s;
	struct image *img = xcalloc(1, sizeof *img);
	img->lock_fd = -1;
	char digest[IMAGE_DIGEST_STR_MAX] = "";
	char *body = NULL;
	size_t blen = 0;
	int rc = -1;
	int gc_lock = -1;
	if (parse_source(c, ref, &s, err) < 0)
		goto out;
	/* Shared: many tasks resolve at once; GC waits for all of them. */
	gc_lock = lock_file(c->lock_path, LOCK_SH);
	if (gc_lock < 0) {
		berr_set(err, 0, "cannot lock the image cache '%s': %s", c->lock_path,
			 err_str(gc_lock));
		goto out;
	}
	bool known = false;
	switch (s.kind) {
	case SRC_LAYOUT:
		if (layout_resolve(c, &s, digest, err) < 0)
			goto out;
		known = true;
		break;
	case SRC_REGISTRY:
		/* a tag resolved before, or a digest we hold (as Docker's
		 * default "pull if missing") */
		known = ref_lookup(c, &s, digest) == 0;
		if (!known && s.rref.digest) {
			snprintf(digest, sizeof digest, "%s", s.rref.digest);
			known = true;
		}
		break;
	case SRC_ARCHIVE:
		known = ref_lookup(c, &s, digest) == 0;
		break;
	}
	if (known && load_record(c, digest, img) == 0) {
		rc = 0;
		goto out;
	}
	image_clear(img);
	img->fetched = false;
	if (s.kind == SRC_REGISTRY) {
		if (registry_resolve(c, &s, digest, &body, &blen, err) < 0)
			goto out;
	} else if (s.kind == SRC_ARCHIVE) {
		if (image__archive_resolve(c, &s, digest, &img->fetched, err) < 0)
			goto out;
	}
	if (load_record(c, digest, img) < 0) {
		image_clear(img);
		if (prepare(c, &s, digest, body, blen, &img->fetched, err) < 0)
			goto out;
		if (load_record(c, digest, img) < 0) {
			berr_set(err, 0, "image '%s': the cache lost image '%s' while preparing it",
				 ref, digest);
			goto out;
		}
	}
	if (s.kind != SRC_LAYOUT)
		ref_store(c, &s, digest);
	rc = 0;
out:
	if (gc_lock >= 0)
		close(gc_lock);
	free(body);
	source_free(&s);
	if (rc < 0) {
		image_release(img);
		return -1;
	}
	*out = img;
	return 0;
}
