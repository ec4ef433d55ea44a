/* image_rootfs.c - overlay mounts and layer copies. See image_rootfs.h. */
#include "agent/image/image_rootfs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "agent/image/image_tar.h"

int image_rootfs_mount_overlay(const char *base, char *const *lower, size_t n, const char *upper,
			       const char *work, const char *target, struct berr *err)
{
	if (n == 0)
		return berr_set(err, 0, "cannot mount an overlay without layers");
	struct sbuf opts;
	sbuf_init(&opts);
	sbuf_adds(&opts, "lowerdir=");
	for (size_t i = n; i-- > 0;) { /* overlay wants the top layer first */
		sbuf_adds(&opts, lower[i]);
		if (i)
			sbuf_adds(&opts, ":");
	}
	sbuf_addf(&opts, ",upperdir=%s,workdir=%s", upper, work);
	int rc = 0;
	if (opts.len >= (size_t)sysconf(_SC_PAGESIZE) - 1) {
		rc = berr_set(err, 0, "too many layers for an overlay mount (%zu)", n);
		goto out;
	}
	/* Relative lower dirs resolve against the working directory: move
	 * there for the mount, then back. */
	int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cwd < 0 || chdir(base) < 0) {
		rc = berr_set(err, 0, "cannot enter '%s': %s", base, err_str(errno));
		if (cwd >= 0)
			close(cwd);
		goto out;
	}
	if (mount("overlay", target, "overlay", MS_NODEV, opts.buf) < 0)
		rc =
		    berr_set(err, 0, "cannot mount an overlay on '%s': %s", target, err_str(errno));
	if (fchdir(cwd) < 0) {
		/* the supervisor keeps no relative paths */
	}
	close(cwd);
out:
	sbuf_release(&opts);
	return rc;
}

/* ---- copying ---- */

struct copier {
	bool root;
	int target; /* the target root, for hard links */
	/* hard links of the current layer: source inode -> target path */
	struct link {
		dev_t dev;
		ino_t ino;
		char *path;
	} * links;
	size_t nlinks;
};

static bool is_opaque(int dirfd)
{
	char v[4];
	ssize_t n = fgetxattr(dirfd, "trusted.overlay.opaque", v, sizeof v);
	if (n == 1 && v[0] == 'y')
		return true;
	struct stat st;
	return fstatat(dirfd, ".wh..wh..opq", &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int clear_dir(int dirfd)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int r = rm_rf_at(dirfd, de->d_name);
		if (r < 0 && !rc)
			rc = r;
	}
	closedir(d);
	return rc;
}

static void copy_attrs(struct copier *c, int fd, const struct stat *st)
{
	if (c->root && fchown(fd, st->st_uid, st->st_gid) < 0) {
		/* keep root's */
	}
	fchmod(fd, st->st_mode & 07777);
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	futimens(fd, ts);
}

static int copy_file(struct copier *c, int sfd, int dfd, const char *name, const struct stat *st,
		     const char *rel, struct berr *err)
{
	if (st->st_nlink > 1) {
		for (size_t i = 0; i < c->nlinks; i++)
			if (c->links[i].dev == st->st_dev && c->links[i].ino == st->st_ino) {
				if (linkat(c->target, c->links[i].path, dfd, name, 0) == 0)
					return 0;
				break; /* copy it instead */
			}
	}
	int in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return berr_set(err, 0, "cannot open '%s': %s", rel, err_str(errno));
	int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return berr_set(err, 0, "cannot create '%s': %s", rel, err_str(errno));
	}
	int rc = 0;
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n == 0)
			break;
		if (n > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
			rc = berr_set(err, 0, "cannot copy '%s': %s", rel, err_str(errno));
			break;
		}
		char buf[65536];
		ssize_t r;
		while ((r = read(in, buf, sizeof buf)) > 0)
			if (write(out, buf, (size_t)r) != r) {
				rc = berr_set(err, 0, "cannot copy '%s': %s", rel, err_str(errno));
				break;
			}
		if (r < 0 && !rc)
			rc = berr_set(err, 0, "cannot read '%s': %s", rel, err_str(errno));
		break;
	}
	if (!rc)
		copy_attrs(c, out, st);
	close(in);
	close(out);
	if (!rc && st->st_nlink > 1) {
		c->links = xrealloc(c->links, (c->nlinks + 1) * sizeof *c->links);
		c->links[c->nlinks++] = (struct link){st->st_dev, st->st_ino, xstrdup(rel)};
	}
	return rc;
}

static int copy_dir(struct copier *c, int sfd, int dfd, const char *rel, struct berr *err);

static int copy_entry(struct copier *c, int sfd, int dfd, const char *name, const char *rel,
		      struct berr *err)
{
	struct stat st, dst;
	if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return berr_set(err, 0, "cannot stat '%s': %s", rel, err_str(errno));
	bool dexists = fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;
	if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) { /* overlay whiteout */
		int r = rm_rf_at(dfd, name);
		return r < 0 ? berr_set(err, 0, "cannot remove '%s': %s", rel, err_str(r)) : 0;
	}
	if (dexists && !(S_ISDIR(st.st_mode) && S_ISDIR(dst.st_mode))) {
		int r = rm_rf_at(dfd, name);
		if (r < 0)
			return berr_set(err, 0, "cannot replace '%s': %s", rel, err_str(r));
		dexists = false;
	}
	if (S_ISDIR(st.st_mode)) {
		if (!dexists && mkdirat(dfd, name, 0700) < 0)
			return berr_set(err, 0, "cannot create '%s': %s", rel, err_str(errno));
		int s2 = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int d2 = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int rc = 0;
		if (s2 < 0 || d2 < 0)
			rc = berr_set(err, 0, "cannot open '%s': %s", rel, err_str(errno));
		else if (is_opaque(s2) && clear_dir(d2) < 0)
			rc = berr_set(err, 0, "cannot clear '%s': %s", rel, err_str(errno));
		else
			rc = copy_dir(c, s2, d2, rel, err);
		if (!rc)
			copy_attrs(c, d2, &st);
		if (s2 >= 0)
			close(s2);
		if (d2 >= 0)
			close(d2);
		return rc;
	}
	if (S_ISREG(st.st_mode))
		return copy_file(c, sfd, dfd, name, &st, rel, err);
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		ssize_t n = readlinkat(sfd, name, target, sizeof target - 1);
		if (n < 0)
			return berr_set(err, 0, "cannot read link '%s': %s", rel, err_str(errno));
		target[n] = 0;
		if (symlinkat(target, dfd, name) < 0)
			return berr_set(err, 0, "cannot create '%s': %s", rel, err_str(errno));
		if (c->root)
			fchownat(dfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	if (S_ISFIFO(st.st_mode) || ((S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) && c->root)) {
		if (mknodat(dfd, name, st.st_mode, st.st_rdev) < 0)
			return berr_set(err, 0, "cannot create '%s': %s", rel, err_str(errno));
		if (c->root)
			fchownat(dfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
	}
	return 0; /* sockets, and devices without root: skipped */
}

static int copy_dir(struct copier *c, int sfd, int dfd, const char *rel, struct berr *err)
{
	int fd = dup(sfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return berr_set(err, 0, "cannot list '%s': %s", rel, err_str(errno));
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		names = xrealloc(names, (n + 1) * sizeof *names);
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	int rc = 0;
	/* Whiteouts first: they delete what the layers below left, never
	 * what this layer brings. */
	for (size_t i = 0; i < n && !rc; i++) {
		if (strncmp(names[i], ".wh.", 4) || !strcmp(names[i], ".wh..wh..opq"))
			continue;
		const char *victim = names[i] + 4;
		if (!*victim || !strcmp(victim, ".") || !strcmp(victim, ".."))
			continue;
		int r = rm_rf_at(dfd, victim);
		if (r < 0)
			rc = berr_set(err, 0, "cannot remove '%s/%s': %s", rel, victim, err_str(r));
	}
	for (size_t i = 0; i < n && !rc; i++) {
		if (!strncmp(names[i], ".wh.", 4))
			continue;
		char *sub = *rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
		rc = copy_entry(c, sfd, dfd, names[i], sub, err);
		free(sub);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int image_rootfs_copy_layers(char *const *layers, size_t n, const char *target, bool root,
			     struct berr *err)
{
	struct copier c = {.root = root};
	c.target = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (c.target < 0)
		return berr_set(err, 0, "cannot open '%s': %s", target, err_str(errno));
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		int sfd = open(layers[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sfd < 0) {
			rc = berr_set(err, 0, "cannot open layer '%s': %s", layers[i],
				      err_str(errno));
			break;
		}
		if (is_opaque(sfd) && clear_dir(c.target) < 0)
			rc = berr_set(err, 0, "cannot clear '%s': %s", target, err_str(errno));
		if (!rc)
			rc = copy_dir(&c, sfd, c.target, "", err);
		close(sfd);
		for (size_t k = 0; k < c.nlinks; k++)
			free(c.links[k].path);
		free(c.links);
		c.links = NULL;
		c.nlinks = 0;
	}
	close(c.target);
	return rc;
}
