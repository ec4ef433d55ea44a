/* seccomp_profile.c - Docker's default seccomp profile and capability set
 * (seccomp_profile.h), and its classic BPF form.
 *
 * The names are those of Docker's profiles/seccomp/default.json: the calls
 * it allows unconditionally, plus those it allows from kernel 4.8 on
 * (ptrace, process_vm_readv/writev), on x86 (arch_prctl, modify_ldt), or
 * with a capability of the default set (chroot). A call that only some
 * architectures or newer kernel headers have is looked up under #ifdef. */
#include "agent/driver/seccomp_profile.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/util.h"

#define SC(n)                                                                                      \
	{                                                                                          \
#n, __NR_##n, SECCOMP_RULE_ALLOW, {0 }, 0, 0                                       \
	}
#define NONE(n)                                                                                    \
	{                                                                                          \
#n, -1, SECCOMP_RULE_ALLOW, {0 }, 0, 0                                             \
	}

/* clone's namespace flags: creating namespaces takes CAP_SYS_ADMIN, except
 * a user namespace, which any process may make (and then be root in). */
#define CLONE_NS_FLAGS                                                                             \
	(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |             \
	 CLONE_NEWPID | CLONE_NEWNET)
#define AF_VSOCK_FAMILY 40

static const struct seccomp_rule rules[] = {
    SC(accept),
    SC(accept4),
#ifdef __NR_access
    SC(access),
#else
    NONE(access),
#endif
    SC(adjtimex),
#ifdef __NR_alarm
    SC(alarm),
#else
    NONE(alarm),
#endif
    SC(bind),
    SC(brk),
    SC(capget),
    SC(capset),
    SC(chdir),
#ifdef __NR_chmod
    SC(chmod),
#else
    NONE(chmod),
#endif
#ifdef __NR_chown
    SC(chown),
#else
    NONE(chown),
#endif
    SC(clock_adjtime),
    SC(clock_getres),
    SC(clock_gettime),
    SC(clock_nanosleep),
    SC(close),
#ifdef __NR_close_range
    SC(close_range),
#else
    NONE(close_range),
#endif
    SC(connect),
#ifdef __NR_copy_file_range
    SC(copy_file_range),
#else
    NONE(copy_file_range),
#endif
#ifdef __NR_creat
    SC(creat),
#else
    NONE(creat),
#endif
    SC(dup),
#ifdef __NR_dup2
    SC(dup2),
#else
    NONE(dup2),
#endif
    SC(dup3),
#ifdef __NR_epoll_create
    SC(epoll_create),
#else
    NONE(epoll_create),
#endif
    SC(epoll_create1),
    SC(epoll_ctl),
#ifdef __NR_epoll_ctl_old
    SC(epoll_ctl_old),
#else
    NONE(epoll_ctl_old),
#endif
    SC(epoll_pwait),
#ifdef __NR_epoll_pwait2
    SC(epoll_pwait2),
#else
    NONE(epoll_pwait2),
#endif
#ifdef __NR_epoll_wait
    SC(epoll_wait),
#else
    NONE(epoll_wait),
#endif
#ifdef __NR_epoll_wait_old
    SC(epoll_wait_old),
#else
    NONE(epoll_wait_old),
#endif
#ifdef __NR_eventfd
    SC(eventfd),
#else
    NONE(eventfd),
#endif
    SC(eventfd2),
    SC(execve),
#ifdef __NR_execveat
    SC(execveat),
#else
    NONE(execveat),
#endif
    SC(exit),
    SC(exit_group),
    SC(faccessat),
#ifdef __NR_faccessat2
    SC(faccessat2),
#else
    NONE(faccessat2),
#endif
    SC(fadvise64),
    SC(fallocate),
    SC(fanotify_mark),
    SC(fchdir),
    SC(fchmod),
    SC(fchmodat),
    SC(fchown),
    SC(fchownat),
    SC(fcntl),
    SC(fdatasync),
    SC(fgetxattr),
    SC(flistxattr),
    SC(flock),
#ifdef __NR_fork
    SC(fork),
#else
    NONE(fork),
#endif
    SC(fremovexattr),
    SC(fsetxattr),
#ifdef __NR_fstat
    SC(fstat),
#else
    NONE(fstat),
#endif
    SC(fstatfs),
    SC(fsync),
    SC(ftruncate),
    SC(futex),
#ifdef __NR_futex_waitv
    SC(futex_waitv),
#else
    NONE(futex_waitv),
#endif
#ifdef __NR_futimesat
    SC(futimesat),
#else
    NONE(futimesat),
#endif
    SC(getcpu),
    SC(getcwd),
#ifdef __NR_getdents
    SC(getdents),
#else
    NONE(getdents),
#endif
    SC(getdents64),
    SC(getegid),
    SC(geteuid),
    SC(getgid),
    SC(getgroups),
    SC(getitimer),
    SC(getpeername),
    SC(getpgid),
#ifdef __NR_getpgrp
    SC(getpgrp),
#else
    NONE(getpgrp),
#endif
    SC(getpid),
    SC(getppid),
    SC(getpriority),
#ifdef __NR_getrandom
    SC(getrandom),
#else
    NONE(getrandom),
#endif
    SC(getresgid),
    SC(getresuid),
#ifdef __NR_getrlimit
    SC(getrlimit),
#else
    NONE(getrlimit),
#endif
    SC(get_robust_list),
    SC(getrusage),
    SC(getsid),
    SC(getsockname),
    SC(getsockopt),
#ifdef __NR_get_thread_area
    SC(get_thread_area),
#else
    NONE(get_thread_area),
#endif
    SC(gettid),
    SC(gettimeofday),
    SC(getuid),
    SC(getxattr),
    SC(inotify_add_watch),
#ifdef __NR_inotify_init
    SC(inotify_init),
#else
    NONE(inotify_init),
#endif
    SC(inotify_init1),
    SC(inotify_rm_watch),
    SC(io_cancel),
    SC(ioctl),
    SC(io_destroy),
    SC(io_getevents),
#ifdef __NR_io_pgetevents
    SC(io_pgetevents),
#else
    NONE(io_pgetevents),
#endif
    SC(ioprio_get),
    SC(ioprio_set),
    SC(io_setup),
    SC(io_submit),
#ifdef __NR_io_uring_enter
    SC(io_uring_enter),
#else
    NONE(io_uring_enter),
#endif
#ifdef __NR_io_uring_register
    SC(io_uring_register),
#else
    NONE(io_uring_register),
#endif
#ifdef __NR_io_uring_setup
    SC(io_uring_setup),
#else
    NONE(io_uring_setup),
#endif
    SC(kill),
#ifdef __NR_landlock_add_rule
    SC(landlock_add_rule),
#else
    NONE(landlock_add_rule),
#endif
#ifdef __NR_landlock_create_ruleset
    SC(landlock_create_ruleset),
#else
    NONE(landlock_create_ruleset),
#endif
#ifdef __NR_landlock_restrict_self
    SC(landlock_restrict_self),
#else
    NONE(landlock_restrict_self),
#endif
#ifdef __NR_lchown
    SC(lchown),
#else
    NONE(lchown),
#endif
    SC(lgetxattr),
#ifdef __NR_link
    SC(link),
#else
    NONE(link),
#endif
    SC(linkat),
    SC(listen),
    SC(listxattr),
    SC(llistxattr),
    SC(lremovexattr),
    SC(lseek),
    SC(lsetxattr),
#ifdef __NR_lstat
    SC(lstat),
#else
    NONE(lstat),
#endif
    SC(madvise),
#ifdef __NR_membarrier
    SC(membarrier),
#else
    NONE(membarrier),
#endif
#ifdef __NR_memfd_create
    SC(memfd_create),
#else
    NONE(memfd_create),
#endif
#ifdef __NR_memfd_secret
    SC(memfd_secret),
#else
    NONE(memfd_secret),
#endif
    SC(mincore),
#ifdef __NR_mkdir
    SC(mkdir),
#else
    NONE(mkdir),
#endif
    SC(mkdirat),
#ifdef __NR_mknod
    SC(mknod),
#else
    NONE(mknod),
#endif
    SC(mknodat),
    SC(mlock),
#ifdef __NR_mlock2
    SC(mlock2),
#else
    NONE(mlock2),
#endif
    SC(mlockall),
    SC(mmap),
    SC(mprotect),
    SC(mq_getsetattr),
    SC(mq_notify),
    SC(mq_open),
    SC(mq_timedreceive),
    SC(mq_timedsend),
    SC(mq_unlink),
    SC(mremap),
    SC(msgctl),
    SC(msgget),
    SC(msgrcv),
    SC(msgsnd),
    SC(msync),
    SC(munlock),
    SC(munlockall),
    SC(munmap),
    SC(name_to_handle_at),
    SC(nanosleep),
#ifdef __NR_newfstatat
    SC(newfstatat),
#else
    NONE(newfstatat),
#endif
#ifdef __NR_open
    SC(open),
#else
    NONE(open),
#endif
    SC(openat),
#ifdef __NR_openat2
    SC(openat2),
#else
    NONE(openat2),
#endif
#ifdef __NR_pause
    SC(pause),
#else
    NONE(pause),
#endif
#ifdef __NR_pidfd_open
    SC(pidfd_open),
#else
    NONE(pidfd_open),
#endif
#ifdef __NR_pidfd_send_signal
    SC(pidfd_send_signal),
#else
    NONE(pidfd_send_signal),
#endif
#ifdef __NR_pipe
    SC(pipe),
#else
    NONE(pipe),
#endif
    SC(pipe2),
#ifdef __NR_pkey_alloc
    SC(pkey_alloc),
#else
    NONE(pkey_alloc),
#endif
#ifdef __NR_pkey_free
    SC(pkey_free),
#else
    NONE(pkey_free),
#endif
#ifdef __NR_pkey_mprotect
    SC(pkey_mprotect),
#else
    NONE(pkey_mprotect),
#endif
#ifdef __NR_poll
    SC(poll),
#else
    NONE(poll),
#endif
    SC(ppoll),
    SC(prctl),
    SC(pread64),
    SC(preadv),
#ifdef __NR_preadv2
    SC(preadv2),
#else
    NONE(preadv2),
#endif
    SC(prlimit64),
#ifdef __NR_process_mrelease
    SC(process_mrelease),
#else
    NONE(process_mrelease),
#endif
    SC(pselect6),
    SC(pwrite64),
    SC(pwritev),
#ifdef __NR_pwritev2
    SC(pwritev2),
#else
    NONE(pwritev2),
#endif
    SC(read),
    SC(readahead),
#ifdef __NR_readlink
    SC(readlink),
#else
    NONE(readlink),
#endif
    SC(readlinkat),
    SC(readv),
    SC(recvfrom),
    SC(recvmmsg),
    SC(recvmsg),
    SC(remap_file_pages),
    SC(removexattr),
#ifdef __NR_rename
    SC(rename),
#else
    NONE(rename),
#endif
#ifdef __NR_renameat
    SC(renameat),
#else
    NONE(renameat),
#endif
#ifdef __NR_renameat2
    SC(renameat2),
#else
    NONE(renameat2),
#endif
    SC(restart_syscall),
#ifdef __NR_rmdir
    SC(rmdir),
#else
    NONE(rmdir),
#endif
#ifdef __NR_rseq
    SC(rseq),
#else
    NONE(rseq),
#endif
    SC(rt_sigaction),
    SC(rt_sigpending),
    SC(rt_sigprocmask),
    SC(rt_sigqueueinfo),
    SC(rt_sigreturn),
    SC(rt_sigsuspend),
    SC(rt_sigtimedwait),
    SC(rt_tgsigqueueinfo),
    SC(sched_getaffinity),
#ifdef __NR_sched_getattr
    SC(sched_getattr),
#else
    NONE(sched_getattr),
#endif
    SC(sched_getparam),
    SC(sched_get_priority_max),
    SC(sched_get_priority_min),
    SC(sched_getscheduler),
    SC(sched_rr_get_interval),
    SC(sched_setaffinity),
#ifdef __NR_sched_setattr
    SC(sched_setattr),
#else
    NONE(sched_setattr),
#endif
    SC(sched_setparam),
    SC(sched_setscheduler),
    SC(sched_yield),
#ifdef __NR_seccomp
    SC(seccomp),
#else
    NONE(seccomp),
#endif
#ifdef __NR_select
    SC(select),
#else
    NONE(select),
#endif
    SC(semctl),
    SC(semget),
    SC(semop),
    SC(semtimedop),
    SC(sendfile),
    SC(sendmmsg),
    SC(sendmsg),
    SC(sendto),
    SC(setfsgid),
    SC(setfsuid),
    SC(setgid),
    SC(setgroups),
    SC(setitimer),
    SC(setpgid),
    SC(setpriority),
    SC(setregid),
    SC(setresgid),
    SC(setresuid),
    SC(setreuid),
#ifdef __NR_setrlimit
    SC(setrlimit),
#else
    NONE(setrlimit),
#endif
    SC(set_robust_list),
    SC(setsid),
    SC(setsockopt),
#ifdef __NR_set_thread_area
    SC(set_thread_area),
#else
    NONE(set_thread_area),
#endif
    SC(set_tid_address),
    SC(setuid),
    SC(setxattr),
    SC(shmat),
    SC(shmctl),
    SC(shmdt),
    SC(shmget),
    SC(shutdown),
    SC(sigaltstack),
#ifdef __NR_signalfd
    SC(signalfd),
#else
    NONE(signalfd),
#endif
    SC(signalfd4),
    SC(socketpair),
    SC(splice),
#ifdef __NR_stat
    SC(stat),
#else
    NONE(stat),
#endif
    SC(statfs),
#ifdef __NR_statx
    SC(statx),
#else
    NONE(statx),
#endif
#ifdef __NR_symlink
    SC(symlink),
#else
    NONE(symlink),
#endif
    SC(symlinkat),
    SC(sync),
    SC(sync_file_range),
    SC(syncfs),
    SC(sysinfo),
    SC(tee),
    SC(tgkill),
#ifdef __NR_time
    SC(time),
#else
    NONE(time),
#endif
    SC(timer_create),
    SC(timer_delete),
    SC(timer_getoverrun),
    SC(timer_gettime),
    SC(timer_settime),
    SC(timerfd_create),
    SC(timerfd_gettime),
    SC(timerfd_settime),
    SC(times),
    SC(tkill),
    SC(truncate),
    SC(umask),
    SC(uname),
#ifdef __NR_unlink
    SC(unlink),
#else
    NONE(unlink),
#endif
    SC(unlinkat),
#ifdef __NR_utime
    SC(utime),
#else
    NONE(utime),
#endif
    SC(utimensat),
#ifdef __NR_utimes
    SC(utimes),
#else
    NONE(utimes),
#endif
#ifdef __NR_vfork
    SC(vfork),
#else
    NONE(vfork),
#endif
    SC(vmsplice),
    SC(wait4),
    SC(waitid),
    SC(write),
    SC(writev),
    SC(process_vm_readv),
    SC(process_vm_writev),
    SC(ptrace),
#ifdef __NR_arch_prctl
    SC(arch_prctl),
#else
    NONE(arch_prctl),
#endif
#ifdef __NR_modify_ldt
    SC(modify_ldt),
#else
    NONE(modify_ldt),
#endif
    SC(chroot),
    /* Calls of the 32-bit ABIs only (no number on a 64-bit build). */
    NONE(chown32),
    NONE(clock_adjtime64),
    NONE(clock_getres_time64),
    NONE(clock_gettime64),
    NONE(clock_nanosleep_time64),
    NONE(fadvise64_64),
    NONE(fchown32),
    NONE(fcntl64),
    NONE(fstat64),
    NONE(fstatat64),
    NONE(fstatfs64),
    NONE(ftruncate64),
    NONE(futex_time64),
    NONE(getegid32),
    NONE(geteuid32),
    NONE(getgid32),
    NONE(getgroups32),
    NONE(getresgid32),
    NONE(getresuid32),
    NONE(getuid32),
    NONE(io_pgetevents_time64),
    NONE(ipc),
    NONE(lchown32),
    NONE(_llseek),
    NONE(lstat64),
    NONE(mmap2),
    NONE(mq_timedreceive_time64),
    NONE(mq_timedsend_time64),
    NONE(_newselect),
    NONE(ppoll_time64),
    NONE(pselect6_time64),
    NONE(recv),
    NONE(recvmmsg_time64),
    NONE(rt_sigtimedwait_time64),
    NONE(sched_rr_get_interval_time64),
    NONE(semtimedop_time64),
    NONE(send),
    NONE(sendfile64),
    NONE(setfsgid32),
    NONE(setfsuid32),
    NONE(setgid32),
    NONE(setgroups32),
    NONE(setregid32),
    NONE(setresgid32),
    NONE(setresuid32),
    NONE(setreuid32),
    NONE(setuid32),
    NONE(sigprocmask),
    NONE(sigreturn),
    NONE(socketcall),
    NONE(stat64),
    NONE(statfs64),
    NONE(timer_gettime64),
    NONE(timer_settime64),
    NONE(timerfd_gettime64),
    NONE(timerfd_settime64),
    NONE(truncate64),
    NONE(ugetrlimit),
    NONE(utimensat_time64),
    NONE(waitpid),
    /* Allowed with conditions. */
    {"clone", __NR_clone, SECCOMP_RULE_ALLOW_FLAGS_CLEAR, {CLONE_NS_FLAGS}, 1, 0},
#ifdef __NR_clone3
    {"clone3", __NR_clone3, SECCOMP_RULE_ERRNO, {0}, 0, ENOSYS},
#else
    {"clone3", -1, SECCOMP_RULE_ERRNO, {0}, 0, ENOSYS},
#endif
    {"socket", __NR_socket, SECCOMP_RULE_ALLOW_ARG0_NOT, {AF_VSOCK_FAMILY}, 1, 0},
    {"personality",
     __NR_personality,
     SECCOMP_RULE_ALLOW_ARG0_IN,
     {0x0, 0x8, 0x20000, 0x20008, 0xffffffff},
     5,
     0},
};

const struct seccomp_rule *seccomp_profile_rules(size_t *n)
{
	*n = ARRAY_SIZE(rules);
	return rules;
}

const struct seccomp_rule *seccomp_profile_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(rules); i++)
		if (!strcmp(rules[i].name, name))
			return &rules[i];
	return NULL;
}

static const struct seccomp_cap caps[] = {
    {"CAP_CHOWN", CAP_CHOWN},
    {"CAP_DAC_OVERRIDE", CAP_DAC_OVERRIDE},
    {"CAP_FSETID", CAP_FSETID},
    {"CAP_FOWNER", CAP_FOWNER},
    {"CAP_MKNOD", CAP_MKNOD},
    {"CAP_NET_RAW", CAP_NET_RAW},
    {"CAP_SETGID", CAP_SETGID},
    {"CAP_SETUID", CAP_SETUID},
    {"CAP_SETFCAP", CAP_SETFCAP},
    {"CAP_SETPCAP", CAP_SETPCAP},
    {"CAP_NET_BIND_SERVICE", CAP_NET_BIND_SERVICE},
    {"CAP_SYS_CHROOT", CAP_SYS_CHROOT},
    {"CAP_KILL", CAP_KILL},
    {"CAP_AUDIT_WRITE", CAP_AUDIT_WRITE},
};

const struct seccomp_cap *seccomp_profile_caps(size_t *n)
{
	*n = ARRAY_SIZE(caps);
	return caps;
}

const char *const *seccomp_profile_oci_arches(void)
{
#if defined(__x86_64__)
	static const char *const a[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", NULL};
#elif defined(__aarch64__)
	static const char *const a[] = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", NULL};
#else
	static const char *const a[] = {NULL};
#endif
	return a;
}

/* ---- the BPF program ----
 *
 *   A = arch;    arch != ours          -> EPERM
 *   A = nr;      (x86_64) nr >= x32    -> EPERM
 *   for each rule with a number:
 *     ALLOW:        nr == N -> ALLOW
 *     FLAGS_CLEAR:  nr == N -> (A = arg0; A & V ? EPERM : ALLOW)
 *     ARG0_NOT:     nr == N -> (A = arg0; A == V ? EPERM : ALLOW)
 *     ARG0_IN:      nr == N -> (A = arg0; A in V ? ALLOW : EPERM)
 *     ERRNO:        nr == N -> ERRNO(e)
 *   EPERM
 *
 * Each rule's block ends in returns, so the next block still finds the call
 * number in A, and every jump is short (a classic BPF jump skips at most
 * 255 instructions). The kernel caches the verdict of the calls whose rule
 * does not look at the arguments: most calls never run the filter. */

#if defined(__x86_64__)
#define BERTH_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define BERTH_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define RET_EPERM (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define ARG0_LO                                                                                    \
	(offsetof(struct seccomp_data, args[0]) +                                                  \
	 (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0 : 4))

struct bpf_buf {
	struct sock_filter *f;
	size_t n;
};

static void emit(struct bpf_buf *b, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
	b->f[b->n++] = (struct sock_filter){.code = code, .jt = jt, .jf = jf, .k = k};
}

static void emit_rule(struct bpf_buf *b, const struct seccomp_rule *r)
{
	uint32_t nr = (uint32_t)r->nr;
	switch (r->kind) {
	case SECCOMP_RULE_ALLOW:
		emit(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, nr);
		emit(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
		break;
	case SECCOMP_RULE_ERRNO:
		emit(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, nr);
		emit(b, BPF_RET | BPF_K, 0, 0,
		     SECCOMP_RET_ERRNO | ((uint32_t)r->errno_ret & SECCOMP_RET_DATA));
		break;
	case SECCOMP_RULE_ALLOW_FLAGS_CLEAR:
	case SECCOMP_RULE_ALLOW_ARG0_NOT:
		emit(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 4, nr);
		emit(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, ARG0_LO);
		emit(b,
		     BPF_JMP | (r->kind == SECCOMP_RULE_ALLOW_FLAGS_CLEAR ? BPF_JSET : BPF_JEQ) |
			 BPF_K,
		     0, 1, r->values[0]);
		emit(b, BPF_RET | BPF_K, 0, 0, RET_EPERM);
		emit(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
		break;
	case SECCOMP_RULE_ALLOW_ARG0_IN:
		emit(b, BPF_JMP | BPF_JEQ | BPF_K, 0, (uint8_t)(r->nvalues + 3), nr);
		emit(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, ARG0_LO);
		for (size_t i = 0; i < r->nvalues; i++)
			emit(b, BPF_JMP | BPF_JEQ | BPF_K, (uint8_t)(r->nvalues - i), 0,
			     r->values[i]);
		emit(b, BPF_RET | BPF_K, 0, 0, RET_EPERM);
		emit(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
		break;
	}
}

int seccomp_profile_bpf(struct sock_fprog *prog)
{
	prog->len = 0;
	prog->filter = NULL;
#ifndef BERTH_AUDIT_ARCH
	return -ENOSYS;
#else
	/* at most 8 instructions a rule, plus the prologue and the default */
	struct bpf_buf b = {.f = xcalloc(ARRAY_SIZE(rules) * 8 + 8, sizeof *b.f)};
	emit(&b, BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, arch));
	emit(&b, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, BERTH_AUDIT_ARCH);
	emit(&b, BPF_RET | BPF_K, 0, 0, RET_EPERM);
	emit(&b, BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
	/* x32 calls are x86_64's numbers with bit 30 set */
	emit(&b, BPF_JMP | BPF_JGE | BPF_K, 0, 1, 0x40000000u);
	emit(&b, BPF_RET | BPF_K, 0, 0, RET_EPERM);
#endif
	for (size_t i = 0; i < ARRAY_SIZE(rules); i++)
		if (rules[i].nr >= 0)
			emit_rule(&b, &rules[i]);
	emit(&b, BPF_RET | BPF_K, 0, 0, RET_EPERM);
	prog->filter = b.f;
	prog->len = (unsigned short)b.n;
	return 0;
#endif
}

int seccomp_profile_load(const struct sock_fprog *prog)
{
	if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) == 0)
		return 0;
	if (errno != ENOSYS)
		return -errno;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0) < 0 ? -errno : 0;
}

/* Docker's default masked and read-only paths (exec and oci alike). */
const char *const seccomp_profile_masked_paths[] = {
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
};
const size_t seccomp_profile_nmasked_paths =
    sizeof seccomp_profile_masked_paths / sizeof *seccomp_profile_masked_paths;
const char *const seccomp_profile_readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};
const size_t seccomp_profile_nreadonly_paths =
    sizeof seccomp_profile_readonly_paths / sizeof *seccomp_profile_readonly_paths;
