/* seccomp_profile.h - the system calls and capabilities a task may use:
 * Docker's default profile, one list for the exec driver (which loads it as
 * a classic BPF filter of its own) and the oci driver (which writes it into
 * config.json for runc).
 *
 * The profile is an allowlist. Every call not listed fails with EPERM
 * (Docker's default action), and:
 *   - clone is allowed only without namespace flags (CLONE_NEWNS, NEWUTS,
 *     NEWIPC, NEWUSER, NEWPID, NEWNET, NEWCGROUP): EPERM otherwise;
 *   - clone3 fails with ENOSYS, so that libc falls back to clone, whose
 *     flags a filter can see (clone3 passes them in memory);
 *   - socket is allowed for every family but AF_VSOCK;
 *   - personality only for the values Docker allows (0, PER_LINUX32 = 8,
 *     UNAME26 = 0x20000, 0x20008, and 0xffffffff, the query).
 * What Docker grants only with a capability berth does not give (mount,
 * unshare, setns, bpf, perf_event_open, kernel modules, reboot, clock
 * setting, ...) is refused; chroot is allowed since CAP_SYS_CHROOT is in
 * the bounded set below.
 *
 * The capabilities are Docker's default set: the only ones a root task
 * keeps, and the bounding set of every task (a non-root task holds none).
 */
#ifndef BERTH_SECCOMP_PROFILE_H
#define BERTH_SECCOMP_PROFILE_H

#include <stddef.h>
#include <stdint.h>

enum seccomp_rule_kind {
	SECCOMP_RULE_ALLOW,		/* allowed whatever the arguments */
	SECCOMP_RULE_ALLOW_FLAGS_CLEAR, /* allowed when arg0 & value[0] == 0, else EPERM */
	SECCOMP_RULE_ALLOW_ARG0_NOT,	/* allowed when arg0 != value[0], else EPERM */
	SECCOMP_RULE_ALLOW_ARG0_IN,	/* allowed when arg0 is one of values, else EPERM */
	SECCOMP_RULE_ERRNO,		/* fails with errno_ret */
};

struct seccomp_rule {
	const char *name; /* the kernel's name, as libseccomp and runc spell it */
	int nr;		  /* this architecture's number, -1 when it has none */
	enum seccomp_rule_kind kind;
	uint32_t values[5]; /* compared with the low 32 bits of the first argument */
	size_t nvalues;
	int errno_ret;
};

/* The rules, in a fixed order; *n gets their count. Names without a number
 * here (nr -1) are kept for runc, whose libseccomp resolves each name for
 * every architecture of the profile (32-bit programs on a 64-bit host). */
const struct seccomp_rule *seccomp_profile_rules(size_t *n);

/* The rule named `name`, or NULL. */
const struct seccomp_rule *seccomp_profile_find(const char *name);

struct seccomp_cap {
	const char *name; /* "CAP_CHOWN" */
	int nr;		  /* CAP_CHOWN */
};

/* Docker's default capabilities. */
const struct seccomp_cap *seccomp_profile_caps(size_t *n);

/* The OCI runtime spec's architectures for this host ("SCMP_ARCH_X86_64",
 * then the 32-bit ones its kernel also runs), NULL-terminated. */
const char *const *seccomp_profile_oci_arches(void);

/* The profile as a classic BPF program for this architecture (x86_64 or
 * aarch64): a call from another architecture (a 32-bit program; x32 on
 * x86_64) fails with EPERM. Fills prog (the caller frees prog->filter) and
 * returns 0, or -ENOSYS on an architecture berth has no filter for. */
struct sock_fprog;
int seccomp_profile_bpf(struct sock_fprog *prog);

/* Load `prog` into the calling thread: no_new_privs must be set (or
 * CAP_SYS_ADMIN held). 0 or -errno. Async-signal-safe: for between fork
 * and exec. */
int seccomp_profile_load(const struct sock_fprog *prog);

/* The paths a task sees masked (an empty file or tmpfs) or read-only in its
 * /proc and /sys: Docker's defaults, for exec and oci alike. */
extern const char *const seccomp_profile_masked_paths[];
extern const size_t seccomp_profile_nmasked_paths;
extern const char *const seccomp_profile_readonly_paths[];
extern const size_t seccomp_profile_nreadonly_paths;

#endif
