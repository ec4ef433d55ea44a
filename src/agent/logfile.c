/* logfile.c - size-rotated append-only log files. */
#include "agent/logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

static int open_append(struct logfile *lf)
{
	/* 0600: the agent serves logs through the API, to whom may read them. */
	lf->fd = open(lf->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (lf->fd < 0)
		return -errno;
	struct stat st;
	lf->size = fstat(lf->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	return 0;
}

int logfile_open(struct logfile *lf, const char *path, uint64_t max_bytes, int max_files)
{
	lf->path = xstrdup(path);
	lf->max_bytes = max_bytes ? max_bytes : 1;
	lf->max_files = max_files < 0 ? 0 : max_files;
	lf->last_error = 0;
	int r = open_append(lf);
	if (r < 0) {
		free(lf->path);
		lf->path = NULL;
	}
	return r;
}

static int rotate(struct logfile *lf)
{
	close(lf->fd);
	lf->fd = -1;
	if (lf->max_files == 0) {
		unlink(lf->path);
	} else {
		for (int i = lf->max_files - 1; i >= 1; i--) {
			char *from = xasprintf("%s.%d", lf->path, i);
			char *to = xasprintf("%s.%d", lf->path, i + 1);
			rename(from, to); /* a gap (ENOENT) is fine */
			free(from);
			free(to);
		}
		char *to = xasprintf("%s.1", lf->path);
		rename(lf->path, to);
		free(to);
	}
	return open_append(lf);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int logfile_write(struct logfile *lf, const char *data, size_t n)
{
	int r = 0;
	while (n > 0) {
		if (lf->fd < 0 && (r = open_append(lf)) < 0)
			break;
		uint64_t room = lf->size < lf->max_bytes ? lf->max_bytes - lf->size : 0;
		size_t take = n;
		bool full = false;
		if (n > room) {
			const char *nl = room ? memrchr(data, '\n', (size_t)room) : NULL;
			if (nl)
				take = (size_t)(nl - data) + 1;
			else if (lf->size > 0)
				take = 0; /* start the line in the next file */
			else
				take = (size_t)room; /* longer than a whole file: cut */
			full = true;
		}
		if (take > 0) {
			int w = write_all(lf->fd, data, take);
			if (w < 0)
				r = w; /* dropped; keep going with the rest */
			else
				lf->size += take;
			data += take;
			n -= take;
		}
		if (full && (r = rotate(lf)) < 0)
			break;
	}
	if (r < 0)
		lf->last_error = r;
	return r;
}

void logfile_close(struct logfile *lf)
{
	if (lf->fd >= 0)
		close(lf->fd);
	lf->fd = -1;
	free(lf->path);
	lf->path = NULL;
}
