/* test_image.c - the image cache: tar reading, safe unpacking, whiteouts,
 * layouts, archives, a registry (an in-process libmicrohttpd server with
 * Bearer token auth), digest verification, cache reuse, GC, and the runc
 * config. Every test works in its own temporary directory. Images are
 * built here, byte by byte. */
#include "agent/image/image.h"
#include "agent/image/image_digest.h"
#include "agent/image/image_registry.h"
#include "agent/image/image_rootfs.h"
#include "agent/image/image_tar.h"
#include "agent/image/registry_auth.h"
#include "agent/driver/oci_bundle.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <zlib.h>

/* ---- helpers: files, tars, gzip, layouts ---- */

static char *tmpdir(void)
{
	char *d = xstrdup("/tmp/berth-image-test.XXXXXX");
	if (!mkdtemp(d))
		abort();
	return d;
}

static void put(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

static void puts_file(const char *path, const char *s)
{
	put(path, s, strlen(s));
}

static char *slurp(const char *path)
{
	char *s = NULL;
	if (file_read_all(path, &s, NULL) < 0)
		return NULL;
	return s;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static void tar_hdr(struct sbuf *t, const char *name, char type, unsigned mode, size_t size,
		    const char *link)
{
	unsigned char h[512] = {0};
	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", mode);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011zo", size);
	snprintf((char *)h + 136, 12, "%011o", 1000000000);
	memset(h + 148, ' ', 8);
	h[156] = (unsigned char)type;
	if (link)
		snprintf((char *)h + 157, 100, "%s", link);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	sbuf_add(t, (char *)h, 512);
}

static void tar_data(struct sbuf *t, const void *data, size_t n)
{
	static const char zero[512];
	sbuf_add(t, data, n);
	if (n % 512)
		sbuf_add(t, zero, 512 - n % 512);
}

static void tar_file(struct sbuf *t, const char *name, const char *content)
{
	tar_hdr(t, name, '0', 0644, strlen(content), NULL);
	tar_data(t, content, strlen(content));
}

static void tar_dir(struct sbuf *t, const char *name)
{
	tar_hdr(t, name, '5', 0755, 0, NULL);
}

static void tar_link(struct sbuf *t, const char *name, char type, const char *target)
{
	tar_hdr(t, name, type, 0777, 0, target);
}

static void tar_end(struct sbuf *t)
{
	static const char zero[1024];
	sbuf_add(t, zero, sizeof zero);
}

static struct sbuf gzip_buf(const struct sbuf *in)
{
	struct sbuf out;
	sbuf_init(&out);
	z_stream z = {0};
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	z.next_in = (unsigned char *)in->buf;
	z.avail_in = (uInt)in->len;
	unsigned char buf[65536];
	int r;
	do {
		z.next_out = buf;
		z.avail_out = sizeof buf;
		r = deflate(&z, Z_FINISH);
		sbuf_add(&out, (char *)buf, sizeof buf - z.avail_out);
	} while (r == Z_OK);
	deflateEnd(&z);
	return out;
}

/* Write a blob into the layout; digest out. */
static void blob(const char *layout, const void *data, size_t len, char *digest)
{
	image_sha256_digest(data, len, digest);
	char *dir = xasprintf("%s/blobs/sha256", layout);
	mkdir_p(dir, 0755);
	char *p = xasprintf("%s/%s", dir, image_digest_hex(digest));
	put(p, data, len);
	free(p);
	free(dir);
}

struct layer {
	struct sbuf tar;
	bool gz;
};

/* Add an image tagged `tag` to the layout (created if needed); returns
 * the manifest digest in mdigest. config_json: the "config" object. */
static void add_image(const char *layout, const char *tag, struct layer *layers, size_t n,
		      const char *config_json, char *mdigest)
{
	mkdir_p(layout, 0755);
	char *p = xasprintf("%s/oci-layout", layout);
	puts_file(p, "{\"imageLayoutVersion\":\"1.0.0\"}");
	free(p);
	json_t *ls = json_array(), *dids = json_array();
	for (size_t i = 0; i < n; i++) {
		char did[IMAGE_DIGEST_STR_MAX], dg[IMAGE_DIGEST_STR_MAX];
		image_sha256_digest(layers[i].tar.buf, layers[i].tar.len, did);
		size_t size;
		if (layers[i].gz) {
			struct sbuf gz = gzip_buf(&layers[i].tar);
			blob(layout, gz.buf, gz.len, dg);
			size = gz.len;
			sbuf_release(&gz);
		} else {
			blob(layout, layers[i].tar.buf, layers[i].tar.len, dg);
			size = layers[i].tar.len;
		}
		json_array_append_new(
		    ls, json_pack("{s:s,s:s,s:I}", "mediaType",
				  layers[i].gz ? "application/vnd.oci.image.layer.v1.tar+gzip"
					       : "application/vnd.oci.image.layer.v1.tar",
				  "digest", dg, "size", (json_int_t)size));
		json_array_append_new(dids, json_string(did));
	}
	json_t *cfgobj = json_loads(config_json ? config_json : "{}", 0, NULL);
	json_t *cfg = json_pack("{s:s,s:s,s:o,s:{s:s,s:o}}", "architecture", "amd64", "os", "linux",
				"config", cfgobj, "rootfs", "type", "layers", "diff_ids", dids);
	char *ctext = json_dumps(cfg, JSON_COMPACT);
	char cdg[IMAGE_DIGEST_STR_MAX];
	blob(layout, ctext, strlen(ctext), cdg);
	json_t *m = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2, "mediaType",
			      "application/vnd.oci.image.manifest.v1+json", "config", "mediaType",
			      "application/vnd.oci.image.config.v1+json", "digest", cdg, "size",
			      (json_int_t)strlen(ctext), "layers", ls);
	char *mtext = json_dumps(m, JSON_COMPACT);
	blob(layout, mtext, strlen(mtext), mdigest);
	char *ip = xasprintf("%s/index.json", layout);
	json_t *idx = json_load_file(ip, 0, NULL);
	if (!idx)
		idx = json_pack("{s:i,s:[]}", "schemaVersion", 2, "manifests");
	json_array_append_new(json_object_get(idx, "manifests"),
			      json_pack("{s:s,s:s,s:I,s:{s:s}}", "mediaType",
					"application/vnd.oci.image.manifest.v1+json", "digest",
					mdigest, "size", (json_int_t)strlen(mtext), "annotations",
					"org.opencontainers.image.ref.name", tag));
	json_dump_file(idx, ip, JSON_COMPACT);
	json_decref(idx);
	free(ip);
	free(ctext);
	free(mtext);
	json_decref(cfg);
	json_decref(m);
}

/* A base layer: a small root filesystem. */
static struct layer base_layer(bool gz)
{
	struct layer l = {.gz = gz};
	sbuf_init(&l.tar);
	tar_dir(&l.tar, "./");
	tar_dir(&l.tar, "./bin/");
	tar_file(&l.tar, "./bin/hello", "#!/bin/sh\necho hello\n");
	tar_link(&l.tar, "./bin/hi", '2', "hello");
	tar_link(&l.tar, "./bin/hello2", '1', "bin/hello");
	tar_dir(&l.tar, "./etc/");
	tar_file(&l.tar, "./etc/marker", "base\n");
	tar_file(&l.tar, "./etc/passwd",
		 "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n");
	tar_file(&l.tar, "./etc/group", "root:x:0:\napp:x:1234:\nextra:x:4321:app\n");
	tar_dir(&l.tar, "./a/");
	tar_file(&l.tar, "./a/file1", "1");
	tar_file(&l.tar, "./a/file2", "2");
	tar_dir(&l.tar, "./b/");
	tar_file(&l.tar, "./b/x", "x");
	tar_dir(&l.tar, "./b/sub/");
	tar_file(&l.tar, "./b/sub/y", "y");
	tar_end(&l.tar);
	return l;
}

/* A layer deleting a/file1 and hiding everything under b/. */
static struct layer whiteout_layer(bool gz)
{
	struct layer l = {.gz = gz};
	sbuf_init(&l.tar);
	tar_dir(&l.tar, "a/");
	tar_file(&l.tar, "a/.wh.file1", "");
	tar_dir(&l.tar, "b/");
	tar_file(&l.tar, "b/.wh..wh..opq", "");
	tar_file(&l.tar, "b/new", "new");
	tar_file(&l.tar, "etc/marker", "top\n");
	tar_end(&l.tar);
	return l;
}

static void layer_free(struct layer *l)
{
	sbuf_release(&l->tar);
}

static const char *cfg_json =
    "{\"Env\":[\"PATH=/bin\",\"IMG=1\"],\"Entrypoint\":[\"/bin/hello\"],\"Cmd\":[\"arg\"],"
    "\"WorkingDir\":\"/work\",\"User\":\"app\"}";

static void rmtree(const char *d)
{
	rm_rf_at(AT_FDCWD, d);
}

/* ---- tar reader ---- */

struct memsrc {
	const char *buf;
	size_t len, off;
};

static ssize_t mem_read(void *ctx, void *buf, size_t n)
{
	struct memsrc *m = ctx;
	if (n > m->len - m->off)
		n = m->len - m->off;
	memcpy(buf, m->buf + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

TEST(tar_reads_long_names_and_pax)
{
	struct sbuf t;
	sbuf_init(&t);
	char longname[300];
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	tar_hdr(&t, "././@LongLink", 'L', 0644, strlen(longname) + 1, NULL);
	tar_data(&t, longname, strlen(longname) + 1);
	tar_file(&t, "short", "abc");
	const char *pax = "29 path=pax/path/of/the/file\n";
	tar_hdr(&t, "paxheader", 'x', 0644, strlen(pax), NULL);
	tar_data(&t, pax, strlen(pax));
	tar_file(&t, "ignored-name", "defg");
	tar_end(&t);
	struct memsrc m = {t.buf, t.len, 0};
	struct image_tar_reader *r = image_tar_reader_new(mem_read, &m);
	struct image_tar_entry *e;
	struct berr err = {0};
	int rc = image_tar_next(r, &e, &err);
	CHECK(rc == 1);
	if (rc != 1) {
		fprintf(stderr, "    %s\n", err.msg);
		return;
	}
	CHECK_STR(e->path, longname);
	char buf[16] = {0};
	CHECK(image_tar_read(r, buf, sizeof buf, &err) == 3);
	CHECK_STR(buf, "abc");
	CHECK(image_tar_next(r, &e, &err) == 1);
	CHECK_STR(e->path, "pax/path/of/the/file");
	CHECK(e->size == 4);
	CHECK(image_tar_next(r, &e, &err) == 0);
	image_tar_reader_free(r);
	/* a corrupted header is refused */
	t.buf[10] ^= 1;
	m = (struct memsrc){t.buf, t.len, 0};
	r = image_tar_reader_new(mem_read, &m);
	CHECK(image_tar_next(r, &e, &err) == -1);
	CHECK_CONTAINS(err.msg, "checksum");
	image_tar_reader_free(r);
	sbuf_release(&t);
}

/* ---- safe unpacking ---- */

static int unpack_buf(const struct sbuf *tar, const char *dest, bool overlay, struct berr *err)
{
	char *d = tmpdir();
	char *p = xasprintf("%s/blob", d);
	put(p, tar->buf, tar->len);
	int fd = open(p, O_RDONLY);
	struct image_unpack_opts o = {.overlay = overlay, .root = geteuid() == 0, .what = "layer"};
	struct image_unpack_result res;
	int rc = image_layer_unpack(fd, dest, &o, &res, err);
	close(fd);
	free(p);
	rmtree(d);
	free(d);
	return rc;
}

TEST(unpack_refuses_path_escapes)
{
	char *d = tmpdir();
	char *outside = xasprintf("%s/outside", d);
	mkdir(outside, 0755);
	char *victim = xasprintf("%s/victim", outside);
	puts_file(victim, "untouched");
	for (int c = 0; c < 7; c++) {
		struct sbuf t;
		sbuf_init(&t);
		switch (c) {
		case 0:
			tar_file(&t, "../outside/victim", "pwned");
			break;
		case 1:
			tar_file(&t, victim, "pwned"); /* absolute */
			break;
		case 2:
			tar_file(&t, "a/../../outside/victim", "pwned");
			break;
		case 3: /* a symlink to the outside, then a file through it */
			tar_link(&t, "link", '2', outside);
			tar_file(&t, "link/victim", "pwned");
			break;
		case 4: /* a hard link to a file outside */
			tar_link(&t, "hl", '1', "../outside/victim");
			break;
		case 5: /* a relative symlink climbing out, then a file through it */
			tar_link(&t, "up", '2', "../outside");
			tar_file(&t, "up/victim", "pwned");
			break;
		case 6: /* a whiteout trying to climb */
			tar_file(&t, ".wh...", "");
			break;
		}
		tar_end(&t);
		char *dest = xasprintf("%s/dest%d", d, c);
		mkdir(dest, 0755);
		struct berr err = {0};
		int rc = unpack_buf(&t, dest, false, &err);
		if (rc == 0)
			fprintf(stderr, "    case %d was accepted\n", c);
		CHECK(rc < 0);
		char *v = slurp(victim);
		CHECK_STR(v, "untouched");
		free(v);
		free(dest);
		sbuf_release(&t);
	}
	/* A symlink replaced by a file: the file lands in the layer, the
	 * symlink's target stays untouched. */
	struct sbuf t;
	sbuf_init(&t);
	tar_link(&t, "x", '2', victim);
	tar_file(&t, "x", "replaced");
	tar_end(&t);
	char *dest = xasprintf("%s/dest-replace", d);
	mkdir(dest, 0755);
	struct berr err = {0};
	CHECK(unpack_buf(&t, dest, false, &err) == 0);
	char *v = slurp(victim);
	CHECK_STR(v, "untouched");
	free(v);
	char *x = xasprintf("%s/x", dest);
	v = slurp(x);
	CHECK_STR(v, "replaced");
	free(v);
	free(x);
	free(dest);
	sbuf_release(&t);
	rmtree(d);
	free(d);
	free(outside);
	free(victim);
}

TEST(unpack_gzip_links_and_modes)
{
	char *d = tmpdir();
	struct layer l = base_layer(true);
	struct sbuf gz = gzip_buf(&l.tar);
	char *p = xasprintf("%s/blob", d);
	put(p, gz.buf, gz.len);
	char want_dg[IMAGE_DIGEST_STR_MAX], want_did[IMAGE_DIGEST_STR_MAX];
	image_sha256_digest(gz.buf, gz.len, want_dg);
	image_sha256_digest(l.tar.buf, l.tar.len, want_did);
	char *dest = xasprintf("%s/fs", d);
	mkdir(dest, 0755);
	int fd = open(p, O_RDONLY);
	struct image_unpack_opts o = {
	    .root = geteuid() == 0, .want_digest = want_dg, .want_diff_id = want_did};
	struct image_unpack_result res;
	struct berr err = {0};
	CHECK(image_layer_unpack(fd, dest, &o, &res, &err) == 0);
	close(fd);
	CHECK_STR(res.digest, want_dg);
	CHECK_STR(res.diff_id, want_did);
	char *f = xasprintf("%s/bin/hello", dest), *f2 = xasprintf("%s/bin/hello2", dest);
	struct stat a, b;
	CHECK(stat(f, &a) == 0 && stat(f2, &b) == 0);
	CHECK(a.st_ino == b.st_ino); /* a hard link */
	CHECK((a.st_mode & 0777) == 0644);
	char *hi = xasprintf("%s/bin/hi", dest);
	char target[64] = {0};
	CHECK(readlink(hi, target, sizeof target - 1) == 5);
	CHECK_STR(target, "hello");
	/* a wrong digest is refused */
	char *dest2 = xasprintf("%s/fs2", d);
	mkdir(dest2, 0755);
	fd = open(p, O_RDONLY);
	o.want_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	CHECK(image_layer_unpack(fd, dest2, &o, &res, &err) < 0);
	CHECK_CONTAINS(err.msg, "digest mismatch");
	close(fd);
	/* and a wrong diff id */
	fd = open(p, O_RDONLY);
	o.want_digest = want_dg;
	o.want_diff_id = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	CHECK(image_layer_unpack(fd, dest2, &o, &res, &err) < 0);
	CHECK_CONTAINS(err.msg, "diff id mismatch");
	close(fd);
	free(f);
	free(f2);
	free(hi);
	free(dest);
	free(dest2);
	free(p);
	sbuf_release(&gz);
	layer_free(&l);
	rmtree(d);
	free(d);
}

static void check_stacked_view(const char *root)
{
	char *p;
	p = xasprintf("%s/a/file1", root);
	CHECK(!exists(p)); /* whiteout */
	free(p);
	p = xasprintf("%s/a/file2", root);
	CHECK(exists(p));
	free(p);
	p = xasprintf("%s/b/x", root);
	CHECK(!exists(p)); /* opaque directory */
	free(p);
	p = xasprintf("%s/b/sub", root);
	CHECK(!exists(p));
	free(p);
	p = xasprintf("%s/b/new", root);
	CHECK(exists(p));
	free(p);
	p = xasprintf("%s/b/.wh..wh..opq", root);
	CHECK(!exists(p));
	free(p);
	p = xasprintf("%s/etc/marker", root);
	char *v = slurp(p);
	CHECK_STR(v, "top\n");
	free(v);
	free(p);
}

TEST(whiteouts_when_copying)
{
	char *d = tmpdir();
	struct layer l1 = base_layer(false), l2 = whiteout_layer(false);
	char *fs1 = xasprintf("%s/l1", d), *fs2 = xasprintf("%s/l2", d),
	     *root = xasprintf("%s/root", d);
	mkdir(fs1, 0755);
	mkdir(fs2, 0755);
	mkdir(root, 0755);
	struct berr err = {0};
	CHECK(unpack_buf(&l1.tar, fs1, false, &err) == 0);
	CHECK(unpack_buf(&l2.tar, fs2, false, &err) == 0);
	/* plain format: the markers are files */
	char *m = xasprintf("%s/a/.wh.file1", fs2);
	CHECK(exists(m));
	free(m);
	char *layers[] = {fs1, fs2};
	CHECK(image_rootfs_copy_layers(layers, 2, root, geteuid() == 0, &err) == 0);
	check_stacked_view(root);
	free(fs1);
	free(fs2);
	free(root);
	layer_free(&l1);
	layer_free(&l2);
	rmtree(d);
	free(d);
}

TEST(whiteouts_with_overlay)
{
	if (geteuid() != 0)
		SKIP("needs root (overlay whiteouts, mounts)");
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		SKIP("cannot make a mount namespace");
	char *d = tmpdir();
	struct layer l1 = base_layer(true), l2 = whiteout_layer(true);
	char *fs1 = xasprintf("%s/l1", d), *fs2 = xasprintf("%s/l2", d);
	mkdir(fs1, 0755);
	mkdir(fs2, 0755);
	struct berr err = {0};
	CHECK(unpack_buf(&l1.tar, fs1, true, &err) == 0);
	CHECK(unpack_buf(&l2.tar, fs2, true, &err) == 0);
	/* overlay format: a 0/0 device and an xattr */
	char *w = xasprintf("%s/a/file1", fs2);
	struct stat st;
	CHECK(lstat(w, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
	free(w);
	char *b = xasprintf("%s/b", fs2);
	char v[4] = {0};
	CHECK(getxattr(b, "trusted.overlay.opaque", v, sizeof v) == 1 && v[0] == 'y');
	free(b);
	char *names[] = {"l1", "l2"};
	char *upper = xasprintf("%s/upper", d), *work = xasprintf("%s/work", d),
	     *root = xasprintf("%s/root", d);
	mkdir(upper, 0755);
	mkdir(work, 0755);
	mkdir(root, 0755);
	int rc = image_rootfs_mount_overlay(d, names, 2, upper, work, root, &err);
	if (rc < 0) {
		fprintf(stderr, "    %s\n", err.msg);
		SKIP("overlay cannot be mounted here");
	}
	check_stacked_view(root);
	/* and the copy reads the overlay format too */
	char *copy = xasprintf("%s/copy", d);
	mkdir(copy, 0755);
	char *layers[] = {fs1, fs2};
	CHECK(image_rootfs_copy_layers(layers, 2, copy, true, &err) == 0);
	check_stacked_view(copy);
	umount2(root, MNT_DETACH);
	free(copy);
	free(upper);
	free(work);
	free(root);
	free(fs1);
	free(fs2);
	layer_free(&l1);
	layer_free(&l2);
	rmtree(d);
	free(d);
}

/* ---- layouts and the cache ---- */

struct fixture {
	char *dir, *layout, *cache_dir;
	struct image_cache *cache;
	char m1[IMAGE_DIGEST_STR_MAX], m2[IMAGE_DIGEST_STR_MAX];
};

/* A layout with v1 = base (gzip), v2 = base + whiteout layer (plain tar). */
static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof *f);
	f->dir = tmpdir();
	f->layout = xasprintf("%s/layout", f->dir);
	f->cache_dir = xasprintf("%s/images", f->dir);
	struct layer l[2] = {base_layer(true), whiteout_layer(false)};
	add_image(f->layout, "v1", l, 1, cfg_json, f->m1);
	add_image(f->layout, "v2", l, 2, cfg_json, f->m2);
	layer_free(&l[0]);
	layer_free(&l[1]);
	struct berr err = {0};
	if (image_cache_open(f->cache_dir, &f->cache, &err) < 0)
		abort();
}

static void fixture_free(struct fixture *f)
{
	image_cache_free(f->cache);
	rmtree(f->dir);
	free(f->dir);
	free(f->layout);
	free(f->cache_dir);
}

TEST(layout_is_parsed_and_cached)
{
	struct fixture f;
	fixture_init(&f);
	char *ref = xasprintf("%s:v2", f.layout);
	struct image *img = NULL;
	struct berr err = {0};
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	if (!img) {
		fprintf(stderr, "    %s\n", err.msg);
		fixture_free(&f);
		return;
	}
	CHECK_STR(img->manifest_digest, f.m2);
	CHECK(img->nlayers == 2);
	CHECK(img->fetched);
	CHECK(img->config.nenv == 2 && !strcmp(img->config.env[1], "IMG=1"));
	CHECK(img->config.nentrypoint == 1 && !strcmp(img->config.entrypoint[0], "/bin/hello"));
	CHECK(img->config.ncmd == 1 && !strcmp(img->config.cmd[0], "arg"));
	CHECK_STR(img->config.workdir, "/work");
	CHECK_STR(img->config.user, "app");
	char *p = xasprintf("%s/etc/marker", img->layers[0]);
	char *v = slurp(p);
	CHECK_STR(v, "base\n");
	free(v);
	free(p);
	struct stat l0;
	CHECK(stat(img->layers[0], &l0) == 0);
	image_release(img);

	/* Again: nothing is unpacked. */
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	CHECK(img && !img->fetched);
	image_release(img);

	/* v1 shares the base layer: found in the cache, same directory. */
	char *ref1 = xasprintf("oci:%s:v1", f.layout);
	CHECK(image_get(f.cache, ref1, &img, &err) == 0);
	CHECK(img && img->nlayers == 1);
	struct stat s0;
	CHECK(img && stat(img->layers[0], &s0) == 0 && s0.st_ino == l0.st_ino);
	CHECK(img && !img->fetched); /* only a record was written */
	image_release(img);

	/* Without a tag a layout with two images is ambiguous. */
	CHECK(image_get(f.cache, f.layout, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "name one with ':TAG'");
	free(ref);
	free(ref1);
	fixture_free(&f);
}

TEST(missing_images_are_named)
{
	struct fixture f;
	fixture_init(&f);
	struct image *img = NULL;
	struct berr err = {0};
	char *ref = xasprintf("%s:v9", f.layout);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "no image tagged 'v9'");
	CHECK_CONTAINS(err.msg, ref);
	free(ref);
	ref = xasprintf("%s/nothing-here", f.dir);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "not found");
	free(ref);
	CHECK(image_get(f.cache, "127.0.0.1:5000/UPPER/case:1", &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "invalid image reference");
	/* a blob missing from the layout */
	char *p = xasprintf("%s/blobs/sha256/%s", f.layout, image_digest_hex(f.m1));
	unlink(p);
	free(p);
	ref = xasprintf("%s:v1", f.layout);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "missing");
	free(ref);
	fixture_free(&f);
}

TEST(digest_mismatches_are_refused)
{
	struct fixture f;
	fixture_init(&f);
	struct image *img = NULL;
	struct berr err = {0};
	/* Replace the top layer's blob with other content under its name. */
	char *mp = xasprintf("%s/blobs/sha256/%s", f.layout, image_digest_hex(f.m2));
	json_t *m = json_load_file(mp, 0, NULL);
	const char *ldg = json_string_value(
	    json_object_get(json_array_get(json_object_get(m, "layers"), 1), "digest"));
	char *lp = xasprintf("%s/blobs/sha256/%s", f.layout, image_digest_hex(ldg));
	struct sbuf t;
	sbuf_init(&t);
	tar_file(&t, "evil", "not the layer you asked for");
	tar_end(&t);
	put(lp, t.buf, t.len);
	char *ref = xasprintf("%s:v2", f.layout);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "digest mismatch");
	CHECK_CONTAINS(err.msg, ldg);
	/* nothing of it reached the cache */
	char *cp = xasprintf("%s/layers", f.cache_dir);
	DIR *dd = opendir(cp);
	int layers = 0;
	struct dirent *de;
	while (dd && (de = readdir(dd)))
		if (de->d_name[0] != '.')
			layers++;
	if (dd)
		closedir(dd);
	CHECK(layers == 1); /* the good base layer only */
	/* A manifest whose bytes do not match its digest. */
	puts_file(mp, "{\"schemaVersion\":2,\"layers\":[]}");
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "digest mismatch");
	json_decref(m);
	free(cp);
	free(mp);
	free(lp);
	free(ref);
	sbuf_release(&t);
	fixture_free(&f);
}

/* Tar up a directory's regular files (an oci-archive). */
static void tar_tree(struct sbuf *t, const char *root, const char *rel)
{
	char *dir = *rel ? xasprintf("%s/%s", root, rel) : xstrdup(root);
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *r = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
		char *p = xasprintf("%s/%s", root, r);
		struct stat st;
		stat(p, &st);
		if (S_ISDIR(st.st_mode)) {
			char *dn = xasprintf("%s/", r);
			tar_dir(t, dn);
			free(dn);
			tar_tree(t, root, r);
		} else {
			char *data;
			size_t len;
			file_read_all(p, &data, &len);
			tar_hdr(t, r, '0', 0644, len, NULL);
			tar_data(t, data, len);
			free(data);
		}
		free(p);
		free(r);
	}
	if (d)
		closedir(d);
	free(dir);
}

TEST(oci_archive_is_imported_once)
{
	struct fixture f;
	fixture_init(&f);
	struct sbuf t;
	sbuf_init(&t);
	tar_tree(&t, f.layout, "");
	tar_end(&t);
	char *ar = xasprintf("%s/image.tar", f.dir);
	put(ar, t.buf, t.len);
	char *ref = xasprintf("%s:v2", ar);
	struct image *img = NULL;
	struct berr err = {0};
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	if (!img)
		fprintf(stderr, "    %s\n", err.msg);
	CHECK(img && img->fetched && img->nlayers == 2);
	CHECK(img && !strcmp(img->manifest_digest, f.m2));
	image_release(img);
	img = NULL;
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	CHECK(img && !img->fetched);
	image_release(img);
	sbuf_release(&t);
	free(ar);
	free(ref);
	fixture_free(&f);
}

TEST(docker_save_archive)
{
	char *d = tmpdir();
	struct layer l = base_layer(false);
	char did[IMAGE_DIGEST_STR_MAX];
	image_sha256_digest(l.tar.buf, l.tar.len, did);
	char *cfg = xasprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":%s,"
			      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
			      cfg_json, did);
	char cdg[IMAGE_DIGEST_STR_MAX];
	image_sha256_digest(cfg, strlen(cfg), cdg);
	char *cname = xasprintf("%s.json", image_digest_hex(cdg));
	char *man = xasprintf("[{\"Config\":\"%s\",\"RepoTags\":[\"test/img:7\"],"
			      "\"Layers\":[\"abc/layer.tar\"]}]",
			      cname);
	struct sbuf t;
	sbuf_init(&t);
	tar_hdr(&t, cname, '0', 0644, strlen(cfg), NULL);
	tar_data(&t, cfg, strlen(cfg));
	tar_dir(&t, "abc/");
	tar_hdr(&t, "abc/layer.tar", '0', 0644, l.tar.len, NULL);
	tar_data(&t, l.tar.buf, l.tar.len);
	tar_hdr(&t, "manifest.json", '0', 0644, strlen(man), NULL);
	tar_data(&t, man, strlen(man));
	tar_end(&t);
	char *ar = xasprintf("%s/saved.tar", d);
	put(ar, t.buf, t.len);
	char *cd = xasprintf("%s/images", d);
	struct image_cache *c;
	struct berr err = {0};
	CHECK(image_cache_open(cd, &c, &err) == 0);
	char *ref = xasprintf("docker-archive:%s:7", ar);
	struct image *img = NULL;
	CHECK(image_get(c, ref, &img, &err) == 0);
	if (!img)
		fprintf(stderr, "    %s\n", err.msg);
	CHECK(img && img->nlayers == 1 && img->config.ncmd == 1);
	image_release(img);
	image_cache_free(c);
	free(ref);
	free(cd);
	free(ar);
	free(man);
	free(cname);
	free(cfg);
	sbuf_release(&t);
	layer_free(&l);
	rmtree(d);
	free(d);
}

static size_t count_dir(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n;
}

TEST(gc_by_age_and_size_spares_images_in_use)
{
	struct fixture f;
	fixture_init(&f);
	char *r1 = xasprintf("%s:v1", f.layout), *r2 = xasprintf("%s:v2", f.layout);
	struct image *i1 = NULL, *i2 = NULL;
	struct berr err = {0};
	CHECK(image_get(f.cache, r2, &i2, &err) == 0);
	CHECK(image_get(f.cache, r1, &i1, &err) == 0);
	char *layers = xasprintf("%s/layers", f.cache_dir),
	     *images = xasprintf("%s/images", f.cache_dir);
	CHECK(count_dir(layers) == 2);
	CHECK(count_dir(images) == 2);
	/* In use: nothing goes, however old. */
	usleep(20000);
	struct image_gc_stats st;
	CHECK(image_gc(f.cache, 0, 1, &st) == 0);
	CHECK(st.images_removed == 0 && count_dir(images) == 2);
	/* v2 released and old: it goes, with its own layer only. */
	image_release(i2);
	usleep(20000);
	CHECK(image_gc(f.cache, 0, 10, &st) == 0);
	CHECK(st.images_removed == 1);
	CHECK(count_dir(images) == 1 && count_dir(layers) == 1);
	CHECK(st.bytes_freed > 0 && st.bytes_kept > 0);
	/* By size: v1 in use stays even over the limit; released, it goes. */
	CHECK(image_gc(f.cache, 1, 0, &st) == 0 && count_dir(images) == 1);
	image_release(i1);
	CHECK(image_gc(f.cache, 1, 0, &st) == 0);
	CHECK(count_dir(images) == 0 && count_dir(layers) == 0);
	/* and it comes back when asked for */
	CHECK(image_get(f.cache, r1, &i1, &err) == 0 && i1 && i1->fetched);
	image_release(i1);
	free(layers);
	free(images);
	free(r1);
	free(r2);
	fixture_free(&f);
}

/* ---- registry: an in-process server with Bearer auth ---- */

struct fake_registry {
	struct MHD_Daemon *d;
	int port;
	char *layout; /* served from this layout's blobs */
	char index_digest[IMAGE_DIGEST_STR_MAX];
	char *index_body;
	int token_requests, unauthorized;
	bool corrupt_blobs;
	size_t pad_blobs;	/* serve blobs this many bytes longer than they are */
	const char *realm_host; /* the token realm's host (default 127.0.0.1) */
	char token_auth[256];	/* the Authorization the token request carried */
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
			     size_t len, const char *ctype, const char *digest)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (ctype)
		MHD_add_response_header(r, "Content-Type", ctype);
	if (digest)
		MHD_add_response_header(r, "Docker-Content-Digest", digest);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
			     const char *method, const char *version, const char *upload,
			     size_t *upload_len, void **state)
{
	struct fake_registry *fr = cls;
	if (!strcmp(url, "/token")) {
		fr->token_requests++;
		const char *ta = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
		snprintf(fr->token_auth, sizeof fr->token_auth, "%s", ta ? ta : "");
		const char *scope = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "scope");
		if (!scope || strcmp(scope, "repository:test/img:pull"))
			return reply(c, 400, "bad scope", 9, NULL, NULL);
		return reply(c, 200, "{\"token\":\"sesame\"}", 18, "application/json", NULL);
	}
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!auth || strcmp(auth, "Bearer sesame")) {
		fr->unauthorized++;
		char *ch = xasprintf("Bearer realm=\"http://%s:%d/token\",service=\"fake\","
				     "scope=\"repository:test/img:pull\"",
				     fr->realm_host ? fr->realm_host : "127.0.0.1", fr->port);
		struct MHD_Response *r = MHD_create_response_from_buffer(
		    13, (void *)"{\"errors\":[]}", MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, "WWW-Authenticate", ch);
		enum MHD_Result ret = MHD_queue_response(c, 401, r);
		MHD_destroy_response(r);
		free(ch);
		return ret;
	}
	const char *pfx_m = "/v2/test/img/manifests/", *pfx_b = "/v2/test/img/blobs/";
	if (!strncmp(url, pfx_m, strlen(pfx_m))) {
		const char *ref = url + strlen(pfx_m);
		if (!strcmp(ref, "1") || !strcmp(ref, fr->index_digest))
			return reply(c, 200, fr->index_body, strlen(fr->index_body),
				     "application/vnd.oci.image.index.v1+json", fr->index_digest);
		if (image_digest_valid(ref)) {
			char *p =
			    xasprintf("%s/blobs/sha256/%s", fr->layout, image_digest_hex(ref));
			char *data;
			size_t len;
			int r = file_read_all(p, &data, &len);
			free(p);
			if (r == 0) {
				enum MHD_Result ret =
				    reply(c, 200, data, len,
					  "application/vnd.oci.image.manifest.v1+json", ref);
				free(data);
				return ret;
			}
		}
		const char *e =
		    "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
		    "unknown\"}]}";
		return reply(c, 404, e, strlen(e), "application/json", NULL);
	}
	if (!strncmp(url, pfx_b, strlen(pfx_b)) && image_digest_valid(url + strlen(pfx_b))) {
		char *p = xasprintf("%s/blobs/sha256/%s", fr->layout,
				    image_digest_hex(url + strlen(pfx_b)));
		char *data;
		size_t len;
		int r = file_read_all(p, &data, &len);
		free(p);
		if (r == 0) {
			if (fr->corrupt_blobs && len > 40)
				data[len / 2] ^= 0x55;
			if (fr->pad_blobs) {
				data = xrealloc(data, len + fr->pad_blobs);
				memset(data + len, 'x', fr->pad_blobs);
				len += fr->pad_blobs;
			}
			enum MHD_Result ret =
			    reply(c, 200, data, len, "application/octet-stream", NULL);
			free(data);
			return ret;
		}
	}
	return reply(c, 404, "{}", 2, "application/json", NULL);
}

static void fake_start(struct fake_registry *fr, const char *layout, const char *manifest)
{
	memset(fr, 0, sizeof *fr);
	fr->layout = xstrdup(layout);
	/* an index with an arm64 decoy first: amd64 must be picked */
	fr->index_body = xasprintf(
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
	    "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"digest\":\"sha256:%064d\",\"size\":1,\"platform\":{\"os\":\"linux\","
	    "\"architecture\":\"arm64\"}},{\"mediaType\":\"application/"
	    "vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":"
	    "\"linux\",\"architecture\":\"amd64\"}}]}",
	    0, manifest);
	image_sha256_digest(fr->index_body, strlen(fr->index_body), fr->index_digest);
	fr->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, serve, fr,
				 MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
	if (!fr->d)
		abort();
	fr->port = MHD_get_daemon_info(fr->d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void fake_stop(struct fake_registry *fr)
{
	MHD_stop_daemon(fr->d);
	free(fr->layout);
	free(fr->index_body);
}

TEST(registry_pull_with_bearer_token_and_index)
{
	struct fixture f;
	fixture_init(&f);
	struct fake_registry fr;
	fake_start(&fr, f.layout, f.m2);
	char *ref = xasprintf("127.0.0.1:%d/test/img:1", fr.port);
	struct image *img = NULL;
	struct berr err = {0};
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	if (!img)
		fprintf(stderr, "    %s\n", err.msg);
	CHECK(img && img->fetched && img->nlayers == 2);
	CHECK(img && !strcmp(img->manifest_digest, f.m2));
	CHECK(fr.token_requests == 1);
	image_release(img);
	img = NULL;
	/* Cached: the registry is not asked again, even once it is gone. */
	fake_stop(&fr);
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	CHECK(img && !img->fetched);
	image_release(img);
	free(ref);
	fixture_free(&f);
}

TEST(registry_errors_name_what_failed)
{
	struct fixture f;
	fixture_init(&f);
	struct fake_registry fr;
	fake_start(&fr, f.layout, f.m2);
	struct image *img = NULL;
	struct berr err = {0};
	char *ref = xasprintf("127.0.0.1:%d/test/img:2", fr.port);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "MANIFEST_UNKNOWN");
	free(ref);
	/* corrupted blobs in transit */
	fr.corrupt_blobs = true;
	ref = xasprintf("127.0.0.1:%d/test/img@%s", fr.port, f.m2);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "digest mismatch");
	free(ref);
	fake_stop(&fr);
	/* nobody listening */
	ref = xasprintf("127.0.0.1:%d/test/img:1", fr.port);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	char *want = xasprintf("cannot reach registry '127.0.0.1:%d'", fr.port);
	CHECK_CONTAINS(err.msg, want);
	free(want);
	free(ref);
	fixture_free(&f);
}

/* Credentials are bound to a registry host: never the old unbound form,
 * never to another registry, never to a token realm elsewhere. */
TEST(registry_credentials_are_bound_to_hosts)
{
	struct registry_auth *a = NULL;
	struct berr err = {0};
	CHECK(registry_auth_parse_env("me:secret", &a, &err) < 0);
	CHECK_CONTAINS(err.msg, "not bound to a registry host; write HOST=USER:PASSWORD");
	CHECK(!strstr(err.msg, "secret"));
	registry_auth_free(a);
	a = NULL;
	CHECK(registry_auth_parse_env("127.0.0.1:5000=u:p,reg.example.com=a:b,docker.io=h:q", &a,
				      &err) == 0);
	CHECK_STR(registry_auth_for(a, "127.0.0.1:5000"), "u:p");
	CHECK_STR(registry_auth_for(a, "reg.example.com"), "a:b");
	CHECK_STR(registry_auth_for(a, "registry-1.docker.io"), "h:q");
	CHECK(registry_auth_for(a, "127.0.0.1:5001") == NULL);
	CHECK(registry_auth_for(a, "evil.example.com") == NULL);
	CHECK(registry_auth_for(a, "reg.example.com.evil.net") == NULL);
	/* realms: the registry itself (with the scheme berth uses for it) */
	CHECK(registry_auth_realm_ok(a, "127.0.0.1:5000", "http://127.0.0.1:5000/token"));
	CHECK(!registry_auth_realm_ok(a, "127.0.0.1:5000", "http://127.0.0.1:5001/token"));
	CHECK(!registry_auth_realm_ok(a, "127.0.0.1:5000", "http://localhost:5000/token"));
	CHECK(registry_auth_realm_ok(a, "reg.example.com", "https://reg.example.com/token"));
	CHECK(!registry_auth_realm_ok(a, "reg.example.com", "http://reg.example.com/token"));
	CHECK(!registry_auth_realm_ok(a, "reg.example.com", "https://attacker.net/token"));
	CHECK(!registry_auth_realm_ok(a, "reg.example.com",
				      "https://reg.example.com@attacker.net/token"));
	/* Docker Hub's token service is built in, HTTPS only */
	CHECK(registry_auth_realm_ok(a, "registry-1.docker.io", "https://auth.docker.io/token"));
	CHECK(!registry_auth_realm_ok(a, "registry-1.docker.io", "http://auth.docker.io/token"));
	/* no credentials for the host: nothing goes anywhere */
	CHECK(!registry_auth_realm_ok(a, "other.example.com", "https://other.example.com/t"));
	/* the file: 0600 only; realms listed explicitly */
	char *dir = tmpdir();
	char *path = xasprintf("%s/registry-auth.json", dir);
	const char *text = "{\"reg.example.com\": {\"auth\": \"f:g\", \"realms\": "
			   "[\"auth.example.com\"]}, \"127.0.0.1:6000\": \"x:y\"}";
	CHECK(file_write_atomic(path, text, strlen(text)) == 0);
	chmod(path, 0644);
	CHECK(registry_auth_load_file(path, &a, &err) < 0);
	CHECK_CONTAINS(err.msg, "others may read it (mode 0644): chmod 600 it");
	chmod(path, 0600);
	CHECK(registry_auth_load_file(path, &a, &err) == 0);
	CHECK_STR(registry_auth_for(a, "reg.example.com"), "f:g");
	CHECK_STR(registry_auth_for(a, "127.0.0.1:6000"), "x:y");
	CHECK(registry_auth_realm_ok(a, "reg.example.com", "https://auth.example.com/token"));
	CHECK(!registry_auth_realm_ok(a, "127.0.0.1:6000", "https://auth.example.com/token"));
	registry_auth_free(a);
	/* a missing file is no credentials, not an error */
	a = NULL;
	CHECK(registry_auth_load_file("/nonexistent/registry-auth.json", &a, &err) == 0);
	CHECK(a == NULL);
	rmtree(dir);
	free(dir);
	free(path);
}

static char *pull_token_auth(const char *auth_env, const char *realm_host)
{
	struct fixture f;
	fixture_init(&f);
	struct fake_registry fr;
	fake_start(&fr, f.layout, f.m2);
	fr.realm_host = realm_host;
	char *env = auth_env ? xasprintf(auth_env, fr.port) : NULL;
	struct registry_auth *a = NULL;
	struct berr err = {0};
	if (registry_auth_parse_env(env, &a, &err) < 0)
		abort();
	image_cache_set_auth(f.cache, a);
	char *ref = xasprintf("127.0.0.1:%d/test/img:1", fr.port);
	struct image *img = NULL;
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	CHECK(fr.token_requests == 1);
	image_release(img);
	char *seen = xstrdup(fr.token_auth);
	fake_stop(&fr);
	free(ref);
	free(env);
	fixture_free(&f);
	return seen;
}

TEST(registry_credentials_go_only_to_their_registry)
{
	/* its own registry, realm on the same host and port: Basic u:p */
	char *seen = pull_token_auth("127.0.0.1:%d=u:p", NULL);
	CHECK_STR(seen, "Basic dTpw");
	free(seen);
	/* the same registry names a realm on another host: anonymous */
	seen = pull_token_auth("127.0.0.1:%d=u:p", "localhost");
	CHECK_STR(seen, "");
	free(seen);
	/* credentials for another registry: anonymous */
	seen = pull_token_auth("127.0.0.2:%d=u:p", NULL);
	CHECK_STR(seen, "");
	free(seen);
}

TEST(blobs_and_layers_are_capped)
{
	struct fixture f;
	fixture_init(&f);
	struct fake_registry fr;
	fake_start(&fr, f.layout, f.m2);
	struct image *img = NULL;
	struct berr err = {0};
	/* a blob longer than its manifest says: stopped at the declared size */
	fr.pad_blobs = 1 << 20;
	char *ref = xasprintf("127.0.0.1:%d/test/img@%s", fr.port, f.m2);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "sent more than the");
	CHECK_CONTAINS(err.msg, "bytes the manifest declares (download stopped)");
	fr.pad_blobs = 0;
	/* an image larger than the download cap: refused before any layer */
	image_cache_set_limits(f.cache, 64, 0);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "more than this agent's cap of 64 (--image-max-bytes)");
	CHECK(err.code == 413);
	/* unpacked larger than the unpack cap: stopped while unpacking */
	image_cache_set_limits(f.cache, 0, 2048);
	CHECK(image_get(f.cache, ref, &img, &err) < 0);
	CHECK_CONTAINS(err.msg, "larger than this agent's cap of 2048 bytes "
				"(--image-max-unpacked-bytes)");
	/* within the caps: it works */
	image_cache_set_limits(f.cache, 0, 0);
	CHECK(image_get(f.cache, ref, &img, &err) == 0);
	if (!img)
		fprintf(stderr, "    %s\n", err.msg);
	image_release(img);
	fake_stop(&fr);
	free(ref);
	fixture_free(&f);
}

TEST(references_parse)
{
	struct image_registry_ref r;
	struct berr err = {0};
	CHECK(image_registry_ref_parse("127.0.0.1:5000/test/busybox:1", &r, &err) == 0);
	CHECK_STR(r.host, "127.0.0.1:5000");
	CHECK_STR(r.name, "test/busybox");
	CHECK_STR(r.tag, "1");
	CHECK(!r.digest);
	image_registry_ref_free(&r);
	const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char *s = xasprintf("localhost/a/b@%s", d);
	CHECK(image_registry_ref_parse(s, &r, &err) == 0);
	CHECK_STR(r.host, "localhost");
	CHECK_STR(r.digest, d);
	CHECK(!r.tag);
	image_registry_ref_free(&r);
	free(s);
	CHECK(image_registry_ref_parse("busybox", &r, &err) == 0);
	CHECK_STR(r.host, "registry-1.docker.io");
	CHECK_STR(r.name, "library/busybox");
	CHECK_STR(r.tag, "latest");
	image_registry_ref_free(&r);
	CHECK(image_registry_ref_parse("h:1/x@sha256:abc", &r, &err) < 0);
	CHECK(image_registry_ref_parse("h:1/x:bad tag", &r, &err) < 0);
	CHECK(image_registry_ref_parse("h:1/../x", &r, &err) < 0);
	CHECK(image_registry_insecure("127.0.0.1:5000"));
	CHECK(image_registry_insecure("127.9.9.9"));
	CHECK(image_registry_insecure("localhost:5000"));
	CHECK(image_registry_insecure("[::1]:5000"));
	CHECK(!image_registry_insecure("128.0.0.1:5000"));
	CHECK(!image_registry_insecure("registry.example:443"));
}

/* ---- config.json ---- */

/* The agent's name server: its resolv.conf, not the host's, at
 * /etc/resolv.conf (docs/networking.md, Names). */
TEST(oci_config_mounts_the_agents_resolv_conf)
{
	char *d = tmpdir();
	char *rc = xasprintf("%s/resolv.conf", d);
	puts_file(rc, "nameserver 127.0.0.153\n");
	char *argv[] = {"/bin/true"};
	struct image_config ic = {.entrypoint = argv, .nentrypoint = 1};
	struct oci_config_in in = {.task_id = "web-0-abc",
				   .rootfs = d,
				   .image = &ic,
				   .user = "0",
				   .cgroups_path = "/berth/web-0-abc",
				   .resolv_conf = rc};
	char *text = NULL;
	struct berr err = {0};
	CHECK(oci_config_build(&in, &text, &err) == 0);
	json_t *j = json_loads(text ? text : "{}", 0, NULL);
	json_t *m;
	size_t i;
	int found = 0;
	json_array_foreach(json_object_get(j, "mounts"), i, m)
	{
		if (strcmp(json_string_value(json_object_get(m, "destination")),
			   "/etc/resolv.conf"))
			continue;
		found++;
		CHECK_STR(json_string_value(json_object_get(m, "source")), rc);
	}
	CHECK(found == 1);
	json_decref(j);
	free(text);
	free(rc);
	free(d);
}

TEST(oci_config_resolves_users_in_the_image)
{
	char *d = tmpdir();
	char *etc = xasprintf("%s/etc", d);
	mkdir(etc, 0755);
	char *pw = xasprintf("%s/etc/passwd", d), *gr = xasprintf("%s/etc/group", d);
	puts_file(pw, "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n");
	puts_file(gr, "root:x:0:\napp:x:1234:\nextra:x:4321:app,other\n");
	char *argv_img[] = {"/bin/hello"}, *cmd_img[] = {"arg"},
	     *env_img[] = {"PATH=/bin", "IMG=1", "OVER=image"};
	struct image_config ic = {.env = env_img,
				  .nenv = 3,
				  .entrypoint = argv_img,
				  .nentrypoint = 1,
				  .cmd = cmd_img,
				  .ncmd = 1,
				  .workdir = "/work",
				  .user = "app"};
	char *env_task[] = {"OVER=task", "T=2"};
	struct oci_config_in in = {.task_id = "web-0-abc",
				   .rootfs = d,
				   .env = env_task,
				   .nenv = 2,
				   .image = &ic,
				   .cpu = 0.5,
				   .memory_bytes = 64 << 20,
				   .cgroups_path = "/berth/web-0-abc"};
	char *text = NULL;
	struct berr err = {0};
	CHECK(oci_config_build(&in, &text, &err) == 0);
	json_t *j = json_loads(text ? text : "{}", 0, NULL);
	json_t *proc = json_object_get(j, "process");
	json_t *user = json_object_get(proc, "user");
	CHECK(json_integer_value(json_object_get(user, "uid")) == 1234);
	CHECK(json_integer_value(json_object_get(user, "gid")) == 1234);
	CHECK(json_integer_value(json_array_get(json_object_get(user, "additionalGids"), 0)) ==
	      4321);
	CHECK_STR(json_string_value(json_array_get(json_object_get(proc, "args"), 0)),
		  "/bin/hello");
	CHECK_STR(json_string_value(json_array_get(json_object_get(proc, "args"), 1)), "arg");
	CHECK_STR(json_string_value(json_object_get(proc, "cwd")), "/work");
	char *envs = json_dumps(json_object_get(proc, "env"), JSON_COMPACT);
	CHECK_CONTAINS(envs, "\"OVER=task\"");
	CHECK(!strstr(envs, "OVER=image"));
	CHECK_CONTAINS(envs, "\"HOME=/home/app\"");
	CHECK_CONTAINS(envs, "\"BERTH_TASK_ID=web-0-abc\"");
	free(envs);
	CHECK(json_array_size(
		  json_object_get(json_object_get(proc, "capabilities"), "effective")) == 0);
	CHECK(json_is_true(json_object_get(proc, "noNewPrivileges")));
	json_t *lin = json_object_get(j, "linux");
	CHECK_STR(json_string_value(json_object_get(lin, "cgroupsPath")), "/berth/web-0-abc");
	json_t *res = json_object_get(lin, "resources");
	CHECK(json_integer_value(json_object_get(json_object_get(res, "memory"), "limit")) ==
	      64 << 20);
	CHECK(json_integer_value(json_object_get(json_object_get(res, "cpu"), "quota")) == 50000);
	/* seccomp: the allowlist the exec driver loads too (seccomp_profile.h) */
	json_t *sc = json_object_get(lin, "seccomp");
	CHECK_STR(json_string_value(json_object_get(sc, "defaultAction")), "SCMP_ACT_ERRNO");
	json_t *sc0 = json_array_get(json_object_get(sc, "syscalls"), 0);
	CHECK_STR(json_string_value(json_object_get(sc0, "action")), "SCMP_ACT_ALLOW");
	char *names = json_dumps(json_object_get(sc0, "names"), JSON_COMPACT);
	CHECK_CONTAINS(names, "\"openat\"");
	CHECK(!strstr(names, "\"mount\"") && !strstr(names, "\"unshare\""));
	free(names);
	char *rules = json_dumps(json_object_get(sc, "syscalls"), JSON_COMPACT);
	CHECK_CONTAINS(rules,
		       "{\"names\":[\"clone3\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":38}");
	CHECK_CONTAINS(rules, "\"op\":\"SCMP_CMP_MASKED_EQ\"");
	free(rules);
	CHECK_STR(json_string_value(json_object_get(j, "hostname")), "web-0-abc");
	json_decref(j);
	free(text);

	/* Volumes: a bind mount each, after the defaults. */
	const char *vh[] = {"/srv/data"}, *vp[] = {"/data"};
	const bool vro[] = {true};
	in.volume_host = vh;
	in.volume_path = vp;
	in.volume_ro = vro;
	in.nvolumes = 1;
	CHECK(oci_config_build(&in, &text, &err) == 0);
	j = json_loads(text, 0, NULL);
	json_t *mounts = json_object_get(j, "mounts");
	json_t *vm = json_array_get(mounts, json_array_size(mounts) - 1);
	CHECK_STR(json_string_value(json_object_get(vm, "destination")), "/data");
	CHECK_STR(json_string_value(json_object_get(vm, "type")), "bind");
	CHECK_STR(json_string_value(json_object_get(vm, "source")), "/srv/data");
	CHECK_STR(json_string_value(json_array_get(json_object_get(vm, "options"), 0)), "rbind");
	CHECK_STR(json_string_value(json_array_get(json_object_get(vm, "options"), 1)), "ro");
	json_decref(j);
	free(text);
	in.nvolumes = 0;

	/* A command replaces entrypoint and cmd; "uid:gid" works. */
	char *argv[] = {"/bin/sh", "-c", "true"};
	in.argv = argv;
	in.argc = 3;
	in.user = "0:4321";
	CHECK(oci_config_build(&in, &text, &err) == 0);
	j = json_loads(text, 0, NULL);
	proc = json_object_get(j, "process");
	CHECK(json_array_size(json_object_get(proc, "args")) == 3);
	CHECK(json_integer_value(json_object_get(json_object_get(proc, "user"), "gid")) == 4321);
	CHECK(json_array_size(json_object_get(json_object_get(proc, "capabilities"), "effective")) >
	      0);
	json_decref(j);
	free(text);

	in.user = "nobody-here";
	CHECK(oci_config_build(&in, &text, &err) < 0);
	CHECK_CONTAINS(err.msg, "user 'nobody-here' not found in the image");

	/* /etc/passwd as a symlink to the host's: resolved inside the root */
	unlink(pw);
	CHECK(symlink("/etc/passwd", pw) == 0);
	in.user = "root";
	uid_t uid;
	gid_t gid, *groups;
	size_t ng;
	char *home;
	/* it points at itself inside the root: no file, so "root" is unknown */
	CHECK(oci_resolve_user(d, "root", &uid, &gid, &groups, &ng, &home, &err) < 0);
	unlink(pw);
	CHECK(symlink("../../../../../../../etc/group", pw) == 0);
	CHECK(oci_resolve_user(d, "app", &uid, &gid, &groups, &ng, &home, &err) < 0);
	free(pw);
	free(gr);
	free(etc);
	rmtree(d);
	free(d);
}

TEST(orphaned_containers_are_deleted_through_the_runtime)
{
	char *d = tmpdir();
	/* a stand-in runtime that records how it was called */
	char *rt = xasprintf("%s/fake-runc", d), *out = xasprintf("%s/args", d);
	char *script = xasprintf("#!/bin/sh\necho \"$@\" > %s\n", out);
	puts_file(rt, script);
	chmod(rt, 0755);
	CHECK(oci_delete_orphan(d, "t-1", rt) == 0); /* the runtime never saw it */
	CHECK(!exists(out));
	char *state = xasprintf("%s/runc/t-1", d);
	mkdir_p(state, 0700);
	CHECK(oci_delete_orphan(d, "t-1", rt) == 1);
	char *args = slurp(out);
	CHECK_CONTAINS(args, "delete --force t-1");
	char *root = xasprintf("--root %s/runc", d);
	CHECK_CONTAINS(args, root);
	free(root);
	free(args);
	free(state);
	free(script);
	free(out);
	free(rt);
	rmtree(d);
	free(d);
}

UNIT_MAIN(tar_reads_long_names_and_pax, unpack_refuses_path_escapes, unpack_gzip_links_and_modes,
	  whiteouts_when_copying, whiteouts_with_overlay, layout_is_parsed_and_cached,
	  missing_images_are_named, digest_mismatches_are_refused, oci_archive_is_imported_once,
	  docker_save_archive, gc_by_age_and_size_spares_images_in_use,
	  registry_pull_with_bearer_token_and_index, registry_errors_name_what_failed,
	  references_parse, registry_credentials_are_bound_to_hosts,
	  registry_credentials_go_only_to_their_registry, blobs_and_layers_are_capped,
	  oci_config_resolves_users_in_the_image, oci_config_mounts_the_agents_resolv_conf,
	  orphaned_containers_are_deleted_through_the_runtime)
