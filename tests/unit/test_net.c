/* test_net.c - the cluster network's pieces that need no root: IPv4
 * prefixes (core/cidr.h) and the node's address book (agent/net/ipam.h);
 * and, as root, a docker task's attach (agent/net/task_net.h) in network
 * namespaces of the test's own (the host's network is not touched). */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/net/ipam.h"
#include "agent/net/netlink.h"
#include "agent/net/task_net.h"
#include "core/cidr.h"
#include "unit.h"

TEST(cidr_parses_formats_and_refuses_bad_prefixes)
{
	struct cidr c;
	struct berr e = {0};
	char buf[CIDR_TEXT_MAX];
	CHECK(cidr_parse("10.244.0.0/16", &c, "x", &e) == 0);
	CHECK(c.base == 0x0af40000u && c.prefix == 16);
	CHECK_STR(cidr_format(&c, buf), "10.244.0.0/16");
	CHECK(cidr_subnet_count(&c, 24) == 256);
	struct cidr s = cidr_subnet(&c, 24, 7);
	CHECK_STR(cidr_format(&s, buf), "10.244.7.0/24");
	CHECK(cidr_contains(&c, s.base + 9));
	CHECK(!cidr_contains(&s, s.base + 256));
	const char *bad[] = {"",
			     "10.244.0.0",
			     "10.244.0.0/",
			     "10.244.0.0/33",
			     "10.244.0.0/-1",
			     "10.244.0.1/16",
			     "10.244.0/16",
			     "a.b.c.d/8",
			     "10.244.0.0/16x",
			     "10.244.0.0.0/16"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		e = (struct berr){0};
		CHECK(cidr_parse(bad[i], &c, "--cluster-cidr", &e) < 0);
		CHECK(e.code == 400 && strstr(e.msg, "--cluster-cidr") != NULL);
	}
	CHECK(cidr_parse(NULL, &c, "x", &e) < 0);
}

TEST(ipam_never_hands_out_an_address_in_use_and_keeps_it_across_restarts)
{
	char dir[] = "/tmp/berth-test-ipam.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	struct cidr sn;
	struct berr e = {0};
	CHECK(cidr_parse("10.244.3.0/29", &sn, "x", &e) == 0); /* .2 to .6 */
	struct ipam *p = ipam_new(dir, &sn);
	uint32_t ip[6] = {0};
	char id[16];
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof id, "t%d", i);
		CHECK(ipam_acquire(p, id, &ip[i], &e) == 0);
		CHECK(ip[i] >= sn.base + 2 && ip[i] <= sn.base + 6);
		for (int k = 0; k < i; k++)
			CHECK(ip[k] != ip[i]);
	}
	CHECK(ipam_acquire(p, "t5", &ip[5], &e) < 0 && e.code == 503);
	/* The same task asks again: the same address. */
	uint32_t again;
	CHECK(ipam_acquire(p, "t2", &again, &e) == 0 && again == ip[2]);
	ipam_free(p);
	/* A restarted agent finds them all. */
	p = ipam_new(dir, &sn);
	CHECK(ipam_lookup(p, "t3") == ip[3]);
	ipam_release(p, "t3");
	CHECK(ipam_lookup(p, "t3") == 0);
	e = (struct berr){0};
	CHECK(ipam_acquire(p, "t6", &again, &e) == 0 && again == ip[3]);
	ipam_free(p);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	free(cmd);
}

/* A process in a network namespace of its own, as Docker's "none"
 * container: the child unshares and waits; its pid is the init pid. */
static pid_t netns_child(void)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (unshare(CLONE_NEWNET) < 0)
			_exit(1);
		(void)!write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	close(p[1]);
	char c;
	ssize_t n = read(p[0], &c, 1);
	close(p[0]);
	return n == 1 ? pid : -1;
}

/* Does the namespace of pid hold eth0 (any address)? */
static bool has_eth0(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool yes = fd >= 0 && setns(fd, CLONE_NEWNET) == 0 && netlink_link_exists("eth0");
	if (setns(self, CLONE_NEWNET) < 0)
		abort();
	if (fd >= 0)
		close(fd);
	close(self);
	return yes;
}

TEST(attach_binds_a_running_namespace_once_and_destroy_leaves_nothing)
{
	if (geteuid() != 0)
		SKIP("needs root (network namespaces)");
	/* The test's own network namespace: its bridge and veths go with it. */
	if (unshare(CLONE_NEWNET) < 0)
		SKIP("cannot make a network namespace");
	struct berr err = {0};
	uint32_t gw = 0x0afe0001, ip = 0x0afe0002;
	CHECK(netlink_bridge_ensure("tb0", gw, 24, &err) == 0);
	char dir[] = "/tmp/berth-test-netns.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *path = xasprintf("%s/t1", dir);
	pid_t c = netns_child();
	CHECK(c > 0);
	/* Our own namespace is refused: it would get eth0 and a route. */
	CHECK(task_net_attach(path, getpid(), "bvtest1", "tb0", ip, 24, gw, &err) < 0);
	CHECK(strstr(err.msg, "shares the node's network namespace") != NULL);
	CHECK(task_net_attach(path, 0, "bvtest1", "tb0", ip, 24, gw, &err) < 0);
	CHECK(access(path, F_OK) != 0);
	/* Attached: the host end on the bridge, eth0 inside, the namespace
	 * bound at path (it would outlive the process). */
	err = (struct berr){0};
	CHECK(task_net_attach(path, c, "bvtest1", "tb0", ip, 24, gw, &err) == 0);
	CHECK(netlink_link_exists("bvtest1"));
	CHECK(has_eth0(c));
	struct stat a, b;
	char ns[64];
	snprintf(ns, sizeof ns, "/proc/%d/ns/net", (int)c);
	CHECK(stat(path, &a) == 0 && stat(ns, &b) == 0 && a.st_ino == b.st_ino);
	/* Again (a supervisor adopting its container): nothing changes, the
	 * same link stays. */
	unsigned idx = if_nametoindex("bvtest1");
	CHECK(idx > 0);
	CHECK(task_net_attach(path, c, "bvtest1", "tb0", ip, 24, gw, &err) == 0);
	CHECK(if_nametoindex("bvtest1") == idx && has_eth0(c));
	/* The veth deleted behind our back: made again. */
	CHECK(netlink_link_delete("bvtest1", &err) == 0);
	CHECK(task_net_attach(path, c, "bvtest1", "tb0", ip, 24, gw, &err) == 0);
	CHECK(netlink_link_exists("bvtest1") && has_eth0(c));
	/* Destroy: veth (both ends), the bind, the file. */
	CHECK(task_net_destroy(path, "bvtest1", &err) == 0);
	CHECK(!netlink_link_exists("bvtest1"));
	CHECK(!has_eth0(c));
	CHECK(access(path, F_OK) != 0);
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	rmdir(dir);
	free(path);
}

UNIT_MAIN(cidr_parses_formats_and_refuses_bad_prefixes,
	  ipam_never_hands_out_an_address_in_use_and_keeps_it_across_restarts,
	  attach_binds_a_running_namespace_once_and_destroy_leaves_nothing)
