/* task_net.c - one task's network namespace and veth pair (see task_net.h). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
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

int task_net_create(const char *netns_path, const char *host_if, const char *bridge, uint32_t ip,
		    int prefix, uint32_t gw, struct berr *err)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return berr_set(err, 0, "cannot open the node's network namespace: %s",
				strerror(errno));
	int nsfd = -1, rc = -1;
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
	if (netlink_veth_create(host_if, "eth0", nsfd, bridge, err) < 0)
		goto undo;
	if (setns(nsfd, CLONE_NEWNET) < 0) {
		berr_set(err, 0, "cannot enter '%s': %s", netns_path, strerror(errno));
		goto undo;
	}
	int r = netlink_task_iface_setup("eth0", ip, prefix, gw, err);
	if (setns(self, CLONE_NEWNET) < 0) {
		berr_set(err, 0, "cannot return to the node's network namespace: %s",
			 strerror(errno));
		goto out; /* nothing more can be undone from here */
	}
	if (r < 0)
		goto undo;
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
