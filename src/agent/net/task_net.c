/* task_net.c - one task's network namespace and veth pair (see task_net.h). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/net/netlink.h"
#include "agent/net/task_net.h"

void task_net_host_ifname(const char *task_id, char buf[IFNAMSIZ])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *s = task_id; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	snprintf(buf, IFNAMSIZ, "bv%012llx", (unsigned long long)(h & 0xffffffffffffULL));
}

/* Make a new network namespace and bind it at path; the calling thread
 * stays in (returns to) the namespace open at self. */
static int netns_make(const char *path, int self, struct berr *err)
{
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (fd < 0)
		return berr_set(err, 0, "cannot create '%s': %s", path, strerror(errno));
	close(fd);
	if (unshare(CLONE_NEWNET) < 0) {
		int e = errno;
		unlink(path);
		return berr_set(err, 0, "cannot create a network namespace: %s", strerror(e));
	}
	int r = mount("/proc/thread-self/ns/net", path, NULL, MS_BIND, NULL);
	int e = errno;
	if (setns(self, CLONE_NEWNET) < 0)
		return berr_set(err, 0, "cannot return to the node's network namespace: %s",
				strerror(errno));
	if (r < 0) {
		unlink(path);
		return berr_set(err, 0, "cannot bind the network namespace at '%s': %s", path,
				strerror(e));
	}
	return 0;
}

/* The veth pair into the namespace open at nsfd and eth0 configured in it;
 * the calling thread ends in the namespace open at self. -1 with err set:
 * ret_failed tells whether the way back failed (nothing more to undo). */
static int veth_into(int self, int nsfd, const char *where, const char *host_if, const char *bridge,
		     uint32_t ip, int prefix, uint32_t gw, bool *ret_failed, struct berr *err)
{
	*ret_failed = false;
	if (netlink_veth_create(host_if, "eth0", nsfd, bridge, err) < 0)
		return -1;
	if (setns(nsfd, CLONE_NEWNET) < 0)
		return berr_set(err, 0, "cannot enter '%s': %s", where, strerror(errno));
	int r = netlink_task_iface_setup("eth0", ip, prefix, gw, err);
	if (setns(self, CLONE_NEWNET) < 0) {
		*ret_failed = true;
		return berr_set(err, 0, "cannot return to the node's network namespace: %s",
				strerror(errno));
	}
	return r;
}

int task_net_create(const char *netns_path, const char *host_if, const char *bridge, uint32_t ip,
		    int prefix, uint32_t gw, struct berr *err)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return berr_set(err, 0, "cannot open the node's network namespace: %s",
				strerror(errno));
	int nsfd = -1, rc = -1;
	bool stuck = false;
	/* Leftovers of an earlier attempt with this id go first. */
	struct berr ignored = {0};
	task_net_destroy(netns_path, host_if, &ignored);
	if (netns_make(netns_path, self, err) < 0)
		goto out;
	nsfd = open(netns_path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		berr_set(err, 0, "cannot open '%s': %s", netns_path, strerror(errno));
		goto undo;
	}
	if (veth_into(self, nsfd, netns_path, host_if, bridge, ip, prefix, gw, &stuck, err) < 0) {
		if (stuck)
			goto out; /* nothing more can be undone from here */
		goto undo;
	}
	rc = 0;
	goto out;
undo:
	task_net_destroy(netns_path, host_if, &ignored);
out:
	if (nsfd >= 0)
		close(nsfd);
	close(self);
	return rc;
}

/* Is the file at path (or open at fd_a when path is NULL) the namespace
 * open at fd? */
static bool same_netns(const char *path, int fd_a, int fd)
{
	struct stat a, b;
	int r = path ? stat(path, &a) : fstat(fd_a, &a);
	return r == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int task_net_attach(const char *netns_path, pid_t pid, const char *host_if, const char *bridge,
		    uint32_t ip, int prefix, uint32_t gw, struct berr *err)
{
	if (pid <= 0)
		return berr_set(err, 0, "no process to take the network namespace of");
	char src[64];
	snprintf(src, sizeof src, "/proc/%d/ns/net", (int)pid);
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return berr_set(err, 0, "cannot open the node's network namespace: %s",
				strerror(errno));
	int nsfd = open(src, O_RDONLY | O_CLOEXEC), rc = -1;
	bool stuck = false;
	struct berr ignored = {0};
	if (nsfd < 0) {
		berr_set(err, 0, "cannot open '%s': %s", src, strerror(errno));
		goto out;
	}
	if (same_netns(NULL, nsfd, self)) {
		/* Never the node's own network: it would get eth0 and a route. */
		berr_set(err, 0, "process %d shares the node's network namespace", (int)pid);
		goto out;
	}
	if (same_netns(netns_path, -1, nsfd) && netlink_link_exists(host_if)) {
		rc = 0; /* attached already */
		goto out;
	}
	task_net_destroy(netns_path, host_if, &ignored);
	int fd = open(netns_path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (fd < 0) {
		berr_set(err, 0, "cannot create '%s': %s", netns_path, strerror(errno));
		goto out;
	}
	close(fd);
	/* The namespace opened above, not the pid again (it may be gone and
	 * reused by now). */
	char held[64];
	snprintf(held, sizeof held, "/proc/self/fd/%d", nsfd);
	if (mount(held, netns_path, NULL, MS_BIND, NULL) < 0) {
		berr_set(err, 0, "cannot bind '%s' at '%s': %s", src, netns_path, strerror(errno));
		unlink(netns_path);
		goto out;
	}
	if (veth_into(self, nsfd, src, host_if, bridge, ip, prefix, gw, &stuck, err) < 0) {
		if (!stuck)
			task_net_destroy(netns_path, host_if, &ignored);
		goto out;
	}
	rc = 0;
out:
	if (nsfd >= 0)
		close(nsfd);
	close(self);
	return rc;
}

int task_net_destroy(const char *netns_path, const char *host_if, struct berr *err)
{
	int rc = 0;
	/* Deleting one end of a veth pair deletes both. */
	if (netlink_link_delete(host_if, err) < 0)
		rc = -1;
	if (umount2(netns_path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
		berr_set(err, 0, "cannot unmount '%s': %s", netns_path, strerror(errno));
		rc = -1;
	}
	if (unlink(netns_path) < 0 && errno != ENOENT) {
		berr_set(err, 0, "cannot remove '%s': %s", netns_path, strerror(errno));
		rc = -1;
	}
	return rc;
}
