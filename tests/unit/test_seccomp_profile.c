/* test_seccomp_profile.c - Docker's default profile as berth keeps it: the
 * list, its BPF form loaded into a real process, and the capability set.
 * Needs no root: no_new_privs lets any process load a filter. */
#include "agent/driver/seccomp_profile.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "core/util.h"

TEST(the_list_is_docker_default_allowlist)
{
	size_t n;
	const struct seccomp_rule *r = seccomp_profile_rules(&n);
	CHECK(n > 300);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (!strcmp(r[i].name, r[j].name)) {
				fprintf(stderr, "    '%s' listed twice\n", r[i].name);
				CHECK(!"duplicate");
			}
	/* what programs need */
	const char *needed[] = {"read",	 "write",  "openat",	 "execve",
				"mmap",	 "futex",  "exit_group", "rt_sigreturn",
				"wait4", "getcwd", "chroot",	 "socketpair"};
	for (size_t i = 0; i < ARRAY_SIZE(needed); i++) {
		const struct seccomp_rule *x = seccomp_profile_find(needed[i]);
		CHECK(x && x->kind == SECCOMP_RULE_ALLOW);
		CHECK(x && x->nr >= 0);
	}
	/* what a task without CAP_SYS_ADMIN is refused */
	const char *refused[] = {"mount",  "umount2",	  "unshare",	"setns",  "bpf",
				 "reboot", "init_module", "kexec_load", "keyctl", "perf_event_open",
				 "swapon", "pivot_root",  "add_key",	"acct",	  "userfaultfd"};
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
		CHECK(seccomp_profile_find(refused[i]) == NULL);
	const struct seccomp_rule *c3 = seccomp_profile_find("clone3");
	CHECK(c3 && c3->kind == SECCOMP_RULE_ERRNO && c3->errno_ret == ENOSYS);
	const struct seccomp_rule *cl = seccomp_profile_find("clone");
	CHECK(cl && cl->kind == SECCOMP_RULE_ALLOW_FLAGS_CLEAR && (cl->values[0] & CLONE_NEWUSER));
	/* 32-bit names are kept for runc (its profile covers x86 too) */
	CHECK(seccomp_profile_find("socketcall") != NULL);
}

TEST(docker_default_capabilities)
{
	size_t n;
	const struct seccomp_cap *c = seccomp_profile_caps(&n);
	CHECK(n == 14);
	uint64_t mask = 0;
	for (size_t i = 0; i < n; i++) {
		CHECK(!strncmp(c[i].name, "CAP_", 4));
		mask |= 1ull << c[i].nr;
	}
	CHECK(mask == 0xa80425fbull); /* Docker's CapEff for a root container */
}

/* In a child: load the filter, try calls, exit with a bit per surprise. */
static int try_calls(void)
{
	struct sock_fprog prog;
	if (seccomp_profile_bpf(&prog) < 0)
		return 100;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_profile_load(&prog) < 0)
		return 101;
	int bad = 0;
	if (getpid() <= 0)
		bad |= 1;
	errno = 0;
	if (syscall(SYS_unshare, CLONE_NEWUSER) == 0 || errno != EPERM)
		bad |= 2;
	errno = 0;
	if (mount("none", "/", "tmpfs", 0, NULL) == 0 || errno != EPERM)
		bad |= 4;
#ifdef SYS_clone3
	errno = 0;
	if (syscall(SYS_clone3, NULL, 0) == 0 || errno != ENOSYS)
		bad |= 8;
#endif
	errno = 0;
	int s = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
	if (s >= 0 || errno != EPERM)
		bad |= 16;
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0)
		bad |= 32;
	if (personality(0xffffffff) < 0)
		bad |= 64;
	errno = 0;
	if (personality(0x0040000 /* ADDR_NO_RANDOMIZE */) >= 0 || errno != EPERM)
		bad |= 128;
	/* fork is clone without namespace flags */
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	int st;
	if (p < 0 || waitpid(p, &st, 0) != p)
		bad |= 256;
	return bad > 255 ? 255 : bad;
}

TEST(the_filter_allows_and_refuses_as_listed)
{
	struct sock_fprog prog;
	if (seccomp_profile_bpf(&prog) == -ENOSYS)
		SKIP("no seccomp filter for this architecture");
	CHECK(prog.len > 300 && prog.len < 4096); /* BPF_MAXINSNS */
	free(prog.filter);
	pid_t pid = fork();
	if (pid == 0)
		_exit(try_calls());
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	if (WEXITSTATUS(st))
		fprintf(stderr, "    surprises: %d\n", WEXITSTATUS(st));
	CHECK(WEXITSTATUS(st) == 0);
}

TEST(oci_architectures)
{
	const char *const *a = seccomp_profile_oci_arches();
#if defined(__x86_64__)
	CHECK_STR(a[0], "SCMP_ARCH_X86_64");
#endif
	size_t n = 0;
	while (a[n])
		n++;
	CHECK(n <= 3);
}

UNIT_MAIN(the_list_is_docker_default_allowlist, docker_default_capabilities,
	  the_filter_allows_and_refuses_as_listed, oci_architectures)
