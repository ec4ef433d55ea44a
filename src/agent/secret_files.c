/* secret_files.c - a task's secrets on a tmpfs of its own (secret_files.h). */
#include "agent/secret_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/supervisor.h"
#include "core/log.h"

/* Room for the values and their inodes; a task lists at most 64 secrets of
 * at most 512 KiB. */
#define SECRETS_TMPFS_OPTS "mode=0700,size=40m,nr_inodes=256"

char *secret_files_dir(const char *sandbox)
{
	return xasprintf("%s/secrets", sandbox);
}

static bool is_mount_point(const char *dir)
{
	struct stat a, b;
	char *parent = xasprintf("%s/..", dir);
	bool r = stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
	free(parent);
	return r;
}

void secret_files_remove(const char *sandbox)
{
	char *dir = secret_files_dir(sandbox);
	for (int i = 0; i < 8 && is_mount_point(dir); i++)
		if (umount2(dir, MNT_DETACH) < 0) {
			log_warn("cannot unmount '%s': %s", dir, err_str(errno));
			break;
		}
	if (!is_mount_point(dir))
		rm_rf(dir); /* an empty directory then */
	free(dir);
}

int secret_files_write(const char *sandbox, const struct secret_value *v, size_t n,
		       struct berr *err)
{
	int r = mkdir_p(sandbox, 0700);
	if (r < 0)
		return berr_set(err, 500, "cannot create '%s': %s", sandbox, err_str(-r));
	char *dir = secret_files_dir(sandbox);
	secret_files_remove(sandbox); /* a relaunch: start clean */
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		berr_set(err, 500, "cannot create '%s': %s", dir, err_str(errno));
		free(dir);
		return -1;
	}
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SECRETS_TMPFS_OPTS) <
	    0) {
		berr_set(err, 500, "secrets need a tmpfs: cannot mount one on '%s': %s", dir,
			 err_str(errno));
		rmdir(dir);
		free(dir);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s", dir, v[i].name);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
		size_t off = 0;
		while (fd >= 0 && off < v[i].len) {
			ssize_t w = write(fd, v[i].data + off, v[i].len - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (fd < 0 || off < v[i].len) {
			berr_set(err, 500, "cannot write secret '%s' in '%s': %s", v[i].name, dir,
				 err_str(e));
			free(path);
			free(dir);
			secret_files_remove(sandbox);
			return -1;
		}
		free(path);
	}
	free(dir);
	return 0;
}

int secret_files_own(const char *sandbox, uid_t uid, gid_t gid, struct berr *err)
{
	char *dir = secret_files_dir(sandbox);
	DIR *d = opendir(dir);
	int rc = 0;
	if (!d) {
		rc = berr_set(err, 500, "cannot open '%s': %s", dir, err_str(errno));
		free(dir);
		return rc;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' &&
		    fchownat(dirfd(d), de->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			rc = berr_set(err, 500, "cannot give secret '%s' to uid %u: %s", de->d_name,
				      (unsigned)uid, err_str(errno));
	closedir(d);
	free(dir);
	return rc;
}

size_t secret_files_sweep(const char *tasks_dir)
{
	DIR *d = opendir(tasks_dir);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *sandbox = xasprintf("%s/%s", tasks_dir, de->d_name);
		char *dir = secret_files_dir(sandbox);
		struct stat st;
		if (stat(dir, &st) == 0 && !supervisor_alive(sandbox)) {
			secret_files_remove(sandbox);
			log_info("removed the secrets of task %s: its supervisor is gone",
				 de->d_name);
			n++;
		}
		free(dir);
		free(sandbox);
	}
	closedir(d);
	return n;
}
