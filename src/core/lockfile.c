/* lockfile.c - see lockfile.h. */
#include "core/lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

void lockfile_update(int fd, const char *addr)
{
	char line[512];
	int n = snprintf(line, sizeof line, "pid %ld addr %s\n", (long)getpid(), addr ? addr : "");
	if (n < 0 || (size_t)n >= sizeof line)
		n = (int)sizeof line - 1;
	if (ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)n, 0) == n)
		fsync(fd);
}

int lockfile_holder(const char *path, long *pid, char *addr, size_t addr_len)
{
	*pid = 0;
	if (addr_len)
		addr[0] = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char line[512] = "";
	if (!fgets(line, sizeof line, f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\n")] = 0;
	char *a = strstr(line, " addr ");
	if (a && addr_len)
		snprintf(addr, addr_len, "%s", a + 6);
	if (sscanf(line, "pid %ld", pid) != 1)
		*pid = 0;
	return 0;
}

int lockfile_acquire(const char *path, const char *addr, struct berr *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return berr_set(err, 500, "cannot open the lock file '%s': %s", path,
				strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e != EWOULDBLOCK)
			return berr_set(err, 500, "cannot lock '%s': %s", path, strerror(e));
		long pid;
		char holder[400];
		lockfile_holder(path, &pid, holder, sizeof holder);
		char who[480];
		if (pid > 0 && holder[0])
			snprintf(who, sizeof who, "pid %ld, serving %s", pid, holder);
		else if (pid > 0)
			snprintf(who, sizeof who, "pid %ld", pid);
		else
			snprintf(who, sizeof who, "a process that did not say who it is");
		return berr_set(err, 409, "'%s' is locked by another berth (%s)", path, who);
	}
	lockfile_update(fd, addr);
	return fd;
}
