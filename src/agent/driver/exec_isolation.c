/* exec_isolation.c - namespaces, the task's mini init, and the exec of the
 * program. See exec_isolation.h for the protocol. */
#include "agent/driver/exec_isolation.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/driver/seccomp_profile.h"

extern char **environ;

/* The signals the init passes on to the program. */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static int send_msg(int fd, const struct iso_msg *m, pid_t cred_pid)
{
	struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	if (cred_pid > 0) {
		/* Root may vouch for another pid of its namespace; the kernel
		 * hands the receiver that pid as seen from its own namespace. */
		memset(&u, 0, sizeof u);
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_CREDENTIALS;
		c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
		struct ucred cr = {.pid = cred_pid, .uid = getuid(), .gid = getgid()};
		memcpy(CMSG_DATA(c), &cr, sizeof cr);
	}
	ssize_t r;
	do
		r = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

int isolation_recv(int ctl_fd, struct iso_msg *m, pid_t *pid)
{
	struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	ssize_t r;
	do
		r = recvmsg(ctl_fd, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return 0;
	if ((size_t)r != sizeof *m)
		return -EPROTO;
	m->text[sizeof m->text - 1] = 0;
	if (pid) {
		*pid = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred cr;
				memcpy(&cr, CMSG_DATA(c), sizeof cr);
				*pid = cr.pid;
			}
		}
	}
	return 1;
}

/* ---- in the program (pid 2), between fork and exec ---- */

struct exec_failure {
	int code;
	char text[sizeof(((struct iso_msg *)0)->text)];
};

static __attribute__((noreturn, format(printf, 3, 4))) void program_fail(int errfd, int code,
									 const char *fmt, ...)
{
	struct exec_failure f = {.code = code};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f.text, sizeof f.text, fmt, ap);
	va_end(ap);
	if (write(errfd, &f, sizeof f) < 0) {
		/* nobody to tell */
	}
	_exit(code);
}

/* What the init prepares for the program before the mounts go read-only. */
struct program_setup {
	int cg_fds[CGROUP_MAX_ENTRY_FDS]; /* to enter the task's cgroup */
	int ncg_fds;
	struct sock_fprog seccomp;
};

static bool cap_allowed(int cap)
{
	size_t n;
	const struct seccomp_cap *caps = seccomp_profile_caps(&n);
	for (size_t i = 0; i < n; i++)
		if (caps[i].nr == cap)
			return true;
	return false;
}

/* The bounding set cut to Docker's default set: nothing the program execs
 * can gain more. Needs CAP_SETPCAP: before the user switch. */
static int bound_capabilities(void)
{
	for (int cap = 0; cap < 64; cap++) {
		if (cap_allowed(cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			return -errno;
		}
	}
	return 0;
}

/* A root program keeps the default set only (effective and permitted;
 * none inheritable, as Docker since 20.10); a non-root one lost every
 * capability at setuid. No ambient capability either way. */
static int limit_capabilities(void)
{
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	if (getuid() != 0 && geteuid() != 0)
		return 0;
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {{0}};
	size_t n;
	const struct seccomp_cap *caps = seccomp_profile_caps(&n);
	for (size_t i = 0; i < n; i++) {
		data[caps[i].nr / 32].effective |= 1u << (caps[i].nr % 32);
		data[caps[i].nr / 32].permitted |= 1u << (caps[i].nr % 32);
	}
	return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

static __attribute__((noreturn)) void run_program(const struct isolation *iso,
						  const struct program_setup *ps, int errfd)
{
	/* Its own session and process group: the init signals the group, so
	 * a shell's children hear SIGTERM too, and nothing has a terminal. */
	setsid();
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(iso->stdout_fd, 1) < 0 ||
	    dup2(iso->stderr_fd, 2) < 0)
		program_fail(errfd, 126, "cannot set up stdio: %s", err_str(errno));
	/* Ignored signals and the blocked mask survive exec: start clean. */
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	/* Everything of ours is close-on-exec already; this is for whatever
	 * a library opened without it. errfd must stay open until exec. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = 3; fd < 1024; fd++)
			if (fd != errfd)
				fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	/* The task's cgroup last, after every step of berth's own: from here
	 * on the task's cpu quota throttles us, and at cpu 0.01 each syscall
	 * could cost a whole CFS period (100 ms). Before the user switch: the
	 * cgroup files are root's. Only the thread moves (v1's `tasks`), which
	 * spares the kernel's threadgroup lock; we are single-threaded. */
	if (ps->ncg_fds > 0) {
		int r = cgroup_enter_by_fds(ps->cg_fds, ps->ncg_fds);
		if (r < 0)
			program_fail(errfd, 126, "cannot enter the task's cgroup: %s", err_str(-r));
		for (int i = 0; i < ps->ncg_fds; i++)
			close(ps->cg_fds[i]);
	}
	int r = bound_capabilities();
	if (r < 0)
		program_fail(errfd, 126, "cannot bound the task's capabilities: %s", err_str(-r));
	if (iso->user) {
		/* Groups first: after setuid we could no longer change them. */
		if (setgroups(iso->ngroups, iso->groups) < 0 || setgid(iso->gid) < 0 ||
		    setuid(iso->uid) < 0)
			program_fail(errfd, 126, "cannot switch to user '%s': %s", iso->user,
				     err_str(errno));
	}
	r = limit_capabilities();
	if (r < 0)
		program_fail(errfd, 126, "cannot limit the task's capabilities: %s", err_str(-r));
	/* setuid binaries inside the task must not gain what the task lacks;
	 * and an unprivileged process may load a seccomp filter only so. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		program_fail(errfd, 126, "cannot set no_new_privs: %s", err_str(errno));
	/* The last step before exec: from here on only the profile's calls
	 * work (execve, and on failure write and exit, are among them). */
	r = seccomp_profile_load(&ps->seccomp);
	if (r < 0)
		program_fail(errfd, 126, "cannot load the seccomp filter: %s", err_str(-r));
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* execvp looks the program up in the PATH of the current environment:
	 * make it the task's. */
	environ = (char **)iso->envp;
	execvp(iso->argv[0], iso->argv);
	int e = errno;
	program_fail(errfd, e == ENOENT ? 127 : 126, "cannot exec '%s': %s", iso->argv[0],
		     err_str(e));
}

/* ---- in the init (pid 1) ---- */

static __attribute__((noreturn, format(printf, 2, 3))) void init_fail(int ctl, const char *fmt, ...)
{
	struct iso_msg m = {.type = ISO_FAILED, .value = 126};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.text, sizeof m.text, fmt, ap);
	va_end(ap);
	send_msg(ctl, &m, 0);
	_exit(126);
}

/* ---- mount points made without writing the host ----
 *
 * The task sees the host's root, so a volume's or a secret's `path` is a
 * host path. An existing one is mounted over (in the task's namespace only).
 * A missing one is never created on the host:
 *  - under /tmp (the sandbox's tmp/, or a fresh tmpfs), it is made there, walking from /tmp
 *    one component at a time with O_NOFOLLOW, so that a symlink the task
 *    left in its tmp/ (a restart keeps it) cannot point the mkdir at the
 *    host;
 *  - elsewhere, its nearest existing directory gets a tmpfs laid over it
 *    (shadow_dir) that keeps that directory's entries, and the missing part
 *    is made on the tmpfs, again with O_NOFOLLOW all the way.
 * The mount then goes onto the descriptor of the mount point itself
 * (/proc/self/fd/N), not onto a path that could resolve elsewhere. */

#define MAX_SHADOWS 64

struct shadows {
	char *dir[MAX_SHADOWS];
	size_t n;
};

/* Lay a tmpfs over directory `dir` (in the task's namespace only) that holds
 * the same entries: each bound back from the directory underneath (reached
 * through an O_PATH descriptor opened before), symlinks copied. New entries
 * can then be made in it without touching the host. */
static int shadow_dir(const char *dir)
{
	struct stat st;
	int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int lfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
	if (fd < 0 || !d || fstat(fd, &st) < 0) {
		int e = errno;
		if (d)
			closedir(d);
		else if (lfd >= 0)
			close(lfd);
		if (fd >= 0)
			close(fd);
		return -e;
	}
	char opts[64];
	snprintf(opts, sizeof opts, "mode=%o,uid=%u,gid=%u", (unsigned)(st.st_mode & 07777),
		 (unsigned)st.st_uid, (unsigned)st.st_gid);
	int r = 0;
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		r = -errno;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		struct stat es;
		if (fstatat(fd, n, &es, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		char *dst = NULL, src[PATH_MAX];
		if (asprintf(&dst, "%s/%s", dir, n) < 0)
			return -ENOMEM;
		snprintf(src, sizeof src, "/proc/self/fd/%d/%s", fd, n);
		if (S_ISLNK(es.st_mode)) {
			char target[PATH_MAX];
			ssize_t len = readlinkat(fd, n, target, sizeof target - 1);
			if (len >= 0) {
				target[len] = 0;
				if (symlink(target, dst) < 0)
					r = -errno;
			}
		} else if (S_ISDIR(es.st_mode)) {
			if (mkdir(dst, es.st_mode & 07777) < 0 ||
			    mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
				r = -errno;
		} else {
			int f = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (f < 0 || mount(src, dst, NULL, MS_BIND, NULL) < 0)
				r = -errno;
			if (f >= 0)
				close(f);
		}
		free(dst);
	}
	closedir(d);
	close(fd);
	return r;
}

/* From directory `dfd`, walk `rel` ("a/b/c") without following any
 * symlink, making what is missing: directories on the way, and the last
 * component as a directory or (dir false) an empty file of `mode`.
 * Returns an O_PATH descriptor of the last component, or -errno (-ELOOP
 * when a component is a symlink). Takes ownership of dfd. */
static int walk_make(int dfd, const char *rel, bool dir, mode_t mode)
{
	char *p = strdup(rel);
	if (!p) {
		close(dfd);
		return -ENOMEM;
	}
	char *save = NULL;
	char *comp = strtok_r(p, "/", &save);
	int r = 0;
	while (comp && r == 0) {
		char *next = strtok_r(NULL, "/", &save);
		bool last = next == NULL;
		int fd;
		if (!last || dir) {
			if (mkdirat(dfd, comp, 0755) < 0 && errno != EEXIST) {
				r = -errno;
				break;
			}
			fd = openat(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		} else {
			fd = openat(dfd, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				    mode);
			if (fd >= 0)
				close(fd);
			else if (errno != EEXIST) {
				r = -errno;
				break;
			}
			fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			struct stat st;
			if (fd >= 0 && (fstat(fd, &st) < 0 || S_ISLNK(st.st_mode))) {
				close(fd);
				fd = -1;
				errno = ELOOP;
			}
		}
		if (fd < 0) {
			/* ENOTDIR on an O_NOFOLLOW|O_DIRECTORY open: a symlink, or
			 * a file where a directory should be */
			int e = errno;
			struct stat ls;
			if ((e == ENOTDIR || e == ELOOP) &&
			    fstatat(dfd, comp, &ls, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(ls.st_mode))
				e = ELOOP;
			r = -e;
			break;
		}
		close(dfd);
		dfd = fd;
		comp = next;
	}
	free(p);
	if (r < 0) {
		close(dfd);
		return r;
	}
	return dfd;
}

/* An O_PATH descriptor of the mount point `path` (absolute, no ".."),
 * made as described above when missing, or -errno. /tmp is the task's own
 * by now: the sandbox's tmp/, or a fresh tmpfs. */
static int mount_point(const char *path, bool dir, mode_t mode, struct shadows *sh)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		int fd = open(path, O_PATH | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	if (!strncmp(path, "/tmp/", 5)) {
		int tfd = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
		return tfd < 0 ? -errno : walk_make(tfd, path + 5, dir, mode);
	}
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	/* The nearest existing ancestor. */
	char *cut = strrchr(p, '/');
	*cut = 0;
	while (*p && stat(p, &st) < 0) {
		cut = strrchr(p, '/');
		*cut = 0;
	}
	const char *anc = *p ? p : "/";
	bool shadowed = false;
	for (size_t i = 0; i < sh->n; i++) {
		size_t n = strlen(sh->dir[i]);
		shadowed = shadowed || (!strncmp(anc, sh->dir[i], n) && (!anc[n] || anc[n] == '/'));
	}
	int r = 0;
	if (!strcmp(anc, "/"))
		r = -ENOENT; /* a tmpfs cannot be laid over the root */
	else if (!S_ISDIR(st.st_mode))
		r = -ENOTDIR;
	else if (!shadowed && sh->n == MAX_SHADOWS)
		r = -E2BIG;
	else if (!shadowed && (r = shadow_dir(anc)) == 0)
		sh->dir[sh->n++] = strdup(anc);
	if (r == 0) {
		/* Opened now: the tmpfs, not the host's directory under it. */
		int afd = open(anc, O_PATH | O_DIRECTORY | O_CLOEXEC);
		size_t al = strlen(p);
		r = afd < 0 ? -errno : walk_make(afd, path + al + 1, dir, mode);
	}
	free(p);
	return r;
}

/* The shadows become read-only once every mount point exists. */
static void shadows_seal(struct shadows *sh)
{
	for (size_t i = 0; i < sh->n; i++) {
		mount(NULL, sh->dir[i], NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
		free(sh->dir[i]);
	}
	sh->n = 0;
}

static const char *mount_point_why(int r)
{
	return r == -ELOOP ? "a symlink on the way (berth never follows one to make a mount point)"
			   : err_str(-r);
}

/* Bind each volume; `fds` hold its host path (O_PATH, opened while the
 * paths resolved as on the host: before /tmp was covered). The mount points
 * resolve as the task sees them: under /tmp, in the sandbox's tmp/. */
static void mount_volumes(const struct isolation *iso, int ctl, const int *fds, struct shadows *sh)
{
	for (size_t i = 0; i < iso->nvolumes; i++) {
		const char *path = iso->volume_path[i];
		struct stat st;
		if (fstat(fds[i], &st) < 0)
			init_fail(ctl, "volume host path '%s': %s", iso->volume_host[i],
				  err_str(errno));
		int mp = mount_point(path, S_ISDIR(st.st_mode), 0644, sh);
		if (mp < 0)
			init_fail(ctl, "volume path '%s': %s%s", path, mount_point_why(mp),
				  mp == -ENOENT ? " (berth makes no mount point on the host: the "
						  "directory right under '/' must exist, e.g. /mnt)"
						: "");
		char src[64], dst[64];
		snprintf(src, sizeof src, "/proc/self/fd/%d", fds[i]);
		snprintf(dst, sizeof dst, "/proc/self/fd/%d", mp);
		if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
			init_fail(ctl, "cannot bind volume '%s' on '%s': %s", iso->volume_host[i],
				  path, err_str(errno));
		close(mp);
		if (iso->volume_ro[i] &&
		    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
			init_fail(ctl, "cannot make volume '%s' read-only: %s", path,
				  err_str(errno));
		close(fds[i]);
	}
}

/* Bind each secret's file read-only onto its path; `fds` hold the files
 * (O_PATH, opened before /tmp was covered). */
static void mount_secrets(const struct isolation *iso, int ctl, const int *fds, struct shadows *sh)
{
	for (size_t i = 0; i < iso->nsecrets; i++) {
		const char *path = iso->secret_path[i];
		int mp = mount_point(path, false, 0400, sh);
		struct stat st;
		if (mp >= 0 && fstat(mp, &st) == 0 && S_ISDIR(st.st_mode)) {
			close(mp);
			mp = -EISDIR;
		}
		if (mp < 0)
			init_fail(ctl, "secret path '%s': %s%s", path, mount_point_why(mp),
				  mp == -ENOENT ? " (its top directory must exist, e.g. /run)"
						: "");
		char src[64], dst[64];
		snprintf(src, sizeof src, "/proc/self/fd/%d", fds[i]);
		snprintf(dst, sizeof dst, "/proc/self/fd/%d", mp);
		if (mount(src, dst, NULL, MS_BIND, NULL) < 0 ||
		    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
			  NULL) < 0)
			init_fail(ctl, "cannot bind secret '%s': %s", path, err_str(errno));
		close(mp);
		close(fds[i]);
	}
}

/* ---- read-only mounts ---- */

#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442 /* the same on every architecture */
#endif
#define ISO_MOUNT_ATTR_RDONLY 0x1ull
#define ISO_AT_RECURSIVE 0x8000

struct iso_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* Remount the mount at `path` read-only or writable with mount(2), which
 * resets every flag not given: the others are read back first. */
static int remount_one(const char *path, bool ro)
{
	static const struct {
		unsigned long st, ms;
	} keep[] = {
	    {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},	      {ST_NOEXEC, MS_NOEXEC},
	    {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
	};
	struct statvfs sv;
	if (statvfs(path, &sv) < 0)
		return -errno;
	unsigned long fl = MS_BIND | MS_REMOUNT | (ro ? MS_RDONLY : 0);
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
		if (sv.f_flag & keep[i].st)
			fl |= keep[i].ms;
	return mount(NULL, path, NULL, fl, NULL) < 0 ? -errno : 0;
}

/* mountinfo escapes blanks and backslashes as \ooo. */
static void unescape_octal(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* Kernels before 5.12 (no mount_setattr): each mount at or under `top`,
 * one by one. Only the top one's failure counts (a submount may refuse). */
static int remount_tree(const char *top, bool ro)
{
	int r = remount_one(top, ro);
	if (r < 0)
		return r;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char line[4096 + 256], mp[4096];
	size_t tl = strlen(top);
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		unescape_octal(mp);
		bool under = !strcmp(top, "/") ? mp[0] == '/' && mp[1]
					       : !strncmp(mp, top, tl) && mp[tl] == '/';
		if (under)
			remount_one(mp, ro);
	}
	fclose(f);
	return 0;
}

/* Make the mount at `path` (and with `recursive` every mount under it)
 * read-only or writable, in this mount namespace only. 0 or -errno. */
static int set_readonly(const char *path, bool ro, bool recursive)
{
	struct iso_mount_attr a = {0};
	if (ro)
		a.attr_set = ISO_MOUNT_ATTR_RDONLY;
	else
		a.attr_clr = ISO_MOUNT_ATTR_RDONLY;
	if (syscall(__NR_mount_setattr, AT_FDCWD, path, recursive ? ISO_AT_RECURSIVE : 0, &a,
		    sizeof a) == 0)
		return 0;
	if (errno != ENOSYS)
		return -errno;
	return recursive ? remount_tree(path, ro) : remount_one(path, ro);
}

/* ---- /proc: Docker's read-only and masked paths ---- */

static void harden_proc(int ctl)
{
	const char *const *readonly = seccomp_profile_readonly_paths;
	const char *const *masked = seccomp_profile_masked_paths;
	struct stat st;
	for (size_t i = 0; i < seccomp_profile_nreadonly_paths; i++) {
		if (stat(readonly[i], &st) < 0)
			continue;
		if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    set_readonly(readonly[i], true, true) < 0)
			init_fail(ctl, "cannot make '%s' read-only: %s", readonly[i],
				  err_str(errno));
	}
	for (size_t i = 0; i < seccomp_profile_nmasked_paths; i++) {
		if (stat(masked[i], &st) < 0)
			continue;
		int r = S_ISDIR(st.st_mode) ? mount("tmpfs", masked[i], "tmpfs",
						    MS_RDONLY | MS_NOSUID | MS_NODEV, "size=0")
					    : mount("/dev/null", masked[i], NULL, MS_BIND, NULL);
		if (r < 0)
			init_fail(ctl, "cannot mask '%s': %s", masked[i], err_str(errno));
	}
}

/* ---- the working directory, reachable by its path ---- */

static bool in_groups(gid_t g, const struct isolation *iso)
{
	if (g == iso->gid)
		return true;
	for (size_t i = 0; i < iso->ngroups; i++)
		if (iso->groups[i] == g)
			return true;
	return false;
}

/* Could the task's user search directory `st`? (ACLs aside) */
static bool user_can_search(const struct isolation *iso, const struct stat *st)
{
	if (!iso->user || iso->uid == 0)
		return true;
	if (st->st_uid == iso->uid)
		return st->st_mode & S_IXUSR;
	if (in_groups(st->st_gid, iso))
		return st->st_mode & S_IXGRP;
	return st->st_mode & S_IXOTH;
}

/* Is `dir` a proper ancestor of `path`? */
static bool is_above(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	return n > 0 && !strncmp(dir, path, n) && path[n] == '/' && path[n + 1];
}

/* mkdir -p, root's and searchable by all. */
static int make_dirs(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	int r = 0;
	for (char *q = p + 1;; q++) {
		if (*q && *q != '/')
			continue;
		char c = *q;
		*q = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			r = -errno;
		*q = c;
		if (!c || r < 0)
			break;
	}
	free(p);
	return r;
}

/* Show the directory `wfd` (O_PATH) at iso->workdir. The directories above
 * workdir from the cover down are a tmpfs holding just that path (made
 * read-only with the rest): the cover is iso->hide, or higher up the first
 * directory the task's user could not search (the agent's data dir is
 * root's alone) or that does not exist (the sandbox under the host's /tmp
 * is not in the task's /tmp); without iso->hide there may be none. Above
 * the cover every directory is searchable; a missing one is made (in the
 * task's own /tmp). */
static void mount_workdir(const struct isolation *iso, int ctl, int wfd)
{
	const char *wd = iso->workdir;
	bool hide = iso->hide && is_above(iso->hide, wd);
	char *cover = strdup(hide ? iso->hide : wd);
	if (!cover)
		init_fail(ctl, "cannot set up the working directory: %s", err_str(ENOMEM));
	if (!hide)
		*strrchr(cover, '/') = 0;
	bool stopped = false;
	for (char *q = cover + 1; *cover && *q; q++) {
		if (q[1] && q[1] != '/')
			continue;
		char c = q[1];
		q[1] = 0;
		struct stat st;
		stopped = stat(cover, &st) < 0 || !user_can_search(iso, &st);
		q[1] = c;
		if (stopped) {
			q[1] = 0; /* the cover is this directory (or a missing one) */
			break;
		}
	}
	if (!hide && !stopped)
		*cover = 0; /* nothing to hide, the path works as it is */
	if (*cover) {	    /* a tmpfs cannot be laid over the root */
		char opts[64];
		int r = make_dirs(cover);
		if (r < 0)
			init_fail(ctl, "cannot create '%s': %s", cover, err_str(-r));
		snprintf(opts, sizeof opts, "mode=755,size=%d", 64 * 1024);
		if (mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
			init_fail(ctl, "cannot mount tmpfs on '%s': %s", cover, err_str(errno));
	}
	int r = make_dirs(wd);
	if (r < 0)
		init_fail(ctl, "cannot create '%s': %s", wd, err_str(-r));
	char src[64];
	snprintf(src, sizeof src, "/proc/self/fd/%d", wfd);
	if (mount(src, wd, NULL, MS_BIND, NULL) < 0)
		init_fail(ctl, "cannot bind '%s' on '%s': %s", iso->workdir_src, wd,
			  err_str(errno));
	free(cover); /* read-only with the rest (lock_down) */
}

/* Everything read-only but what the task may write: /dev (a bind of
 * itself first, so that it is a mount of its own), /proc, /tmp, the
 * working directory and the read-write volumes. */
static void lock_down(const struct isolation *iso, int ctl)
{
	if (mount("/dev", "/dev", NULL, MS_BIND | MS_REC, NULL) < 0)
		init_fail(ctl, "cannot bind '/dev': %s", err_str(errno));
	int r = set_readonly("/", true, true);
	if (r < 0)
		init_fail(ctl, "cannot make the root read-only: %s", err_str(-r));
	if ((r = set_readonly("/dev", false, true)) < 0 ||
	    (r = set_readonly("/proc", false, false)) < 0 ||
	    (r = set_readonly("/tmp", false, false)) < 0)
		init_fail(ctl, "cannot make /dev, /proc and /tmp writable: %s", err_str(-r));
	if (iso->workdir_src && (r = set_readonly(iso->workdir, false, false)) < 0)
		init_fail(ctl, "cannot make '%s' writable: %s", iso->workdir, err_str(-r));
	for (size_t i = 0; i < iso->nvolumes; i++)
		if (!iso->volume_ro[i] && (r = set_readonly(iso->volume_path[i], false, false)) < 0)
			init_fail(ctl, "cannot make volume '%s' writable: %s", iso->volume_path[i],
				  err_str(-r));
}

static void setup_namespace(const struct isolation *iso, int ctl)
{
	/* The network first: the namespace file is a path of the host's mounts. */
	if (iso->netns_path) {
		int nfd = open(iso->netns_path, O_RDONLY | O_CLOEXEC);
		if (nfd < 0)
			init_fail(ctl, "cannot open network namespace '%s': %s", iso->netns_path,
				  err_str(errno));
		if (setns(nfd, CLONE_NEWNET) < 0)
			init_fail(ctl, "cannot join network namespace '%s': %s", iso->netns_path,
				  err_str(errno));
		close(nfd);
	}
	if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0)
		init_fail(ctl, "cannot create namespaces: %s", err_str(errno));
	/* Private first, or the mounts below would propagate to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		init_fail(ctl, "cannot make mounts private: %s", err_str(errno));
	/* What gets bound, opened in the new namespace (a bind needs its
	 * source there) but before anything is covered: paths under /tmp or
	 * the data dir are the host's. */
	int wfd = -1;
	if (iso->workdir_src) {
		wfd = open(iso->workdir_src, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (wfd < 0)
			init_fail(ctl, "cannot open '%s': %s", iso->workdir_src, err_str(errno));
	}
	int *vfds = iso->nvolumes ? calloc(iso->nvolumes, sizeof *vfds) : NULL;
	if (iso->nvolumes && !vfds)
		init_fail(ctl, "cannot set up volumes: %s", err_str(ENOMEM));
	for (size_t i = 0; i < iso->nvolumes; i++) {
		vfds[i] = open(iso->volume_host[i], O_PATH | O_CLOEXEC);
		if (vfds[i] < 0)
			init_fail(ctl, "volume host path '%s': %s", iso->volume_host[i],
				  err_str(errno));
		/* The agent checked this canonical path against its volume
		 * roots; what we opened must be it, not where a symlink
		 * swapped in since then leads. */
		char link[64], real[PATH_MAX];
		snprintf(link, sizeof link, "/proc/self/fd/%d", vfds[i]);
		ssize_t n = readlink(link, real, sizeof real - 1);
		if (n < 0 || (real[n] = 0, strcmp(real, iso->volume_host[i])))
			init_fail(ctl,
				  "volume host path '%s' changed since it was checked (now '%s')",
				  iso->volume_host[i], n < 0 ? "?" : real);
	}
	int *sfds = iso->nsecrets ? calloc(iso->nsecrets, sizeof *sfds) : NULL;
	if (iso->nsecrets && !sfds)
		init_fail(ctl, "cannot set up secrets: %s", err_str(ENOMEM));
	for (size_t i = 0; i < iso->nsecrets; i++) {
		sfds[i] = open(iso->secret_file[i], O_PATH | O_CLOEXEC | O_NOFOLLOW);
		if (sfds[i] < 0)
			init_fail(ctl, "secret file '%s': %s", iso->secret_file[i], err_str(errno));
	}
	int rfd = -1;
	if (iso->resolv_conf) {
		rfd = open(iso->resolv_conf, O_PATH | O_CLOEXEC | O_NOFOLLOW);
		if (rfd < 0)
			init_fail(ctl, "cannot open '%s': %s", iso->resolv_conf, err_str(errno));
	}
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		init_fail(ctl, "cannot mount proc on '/proc': %s", err_str(errno));
	if (iso->tmpdir) {
		if (mount(iso->tmpdir, "/tmp", NULL, MS_BIND, NULL) < 0)
			init_fail(ctl, "cannot bind '%s' on '/tmp': %s", iso->tmpdir,
				  err_str(errno));
	} else if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) {
		init_fail(ctl, "cannot mount tmpfs on '/tmp': %s", err_str(errno));
	}
	/* After /tmp: the working directory, a volume, may be under it. */
	if (wfd >= 0) {
		mount_workdir(iso, ctl, wfd);
		close(wfd);
	}
	struct shadows sh = {.n = 0};
	mount_volumes(iso, ctl, vfds, &sh);
	free(vfds);
	mount_secrets(iso, ctl, sfds, &sh);
	free(sfds);
	if (rfd >= 0) {
		/* Over the host's file (or where its symlink leads), in this
		 * namespace only. */
		char src[64];
		snprintf(src, sizeof src, "/proc/self/fd/%d", rfd);
		if (mount(src, "/etc/resolv.conf", NULL, MS_BIND, NULL) < 0 ||
		    mount(NULL, "/etc/resolv.conf", NULL,
			  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
			init_fail(ctl, "cannot bind '%s' on '/etc/resolv.conf': %s",
				  iso->resolv_conf, err_str(errno));
		close(rfd);
	}
	shadows_seal(&sh);
	lock_down(iso, ctl);
	harden_proc(ctl);
	/* Now that the path resolves as the task sees it. The program
	 * inherits it. */
	if (chdir(iso->workdir) < 0)
		init_fail(ctl, "cannot enter '%s': %s", iso->workdir, err_str(errno));
	const char *h = iso->hostname ? iso->hostname : "task";
	size_t hl = strlen(h);
	/* 63: what fits a C string in the kernel's 64-byte field. */
	if (sethostname(h, hl > 63 ? 63 : hl) < 0)
		init_fail(ctl, "cannot set hostname '%s': %s", h, err_str(errno));
}

static __attribute__((noreturn)) void init_main(const struct isolation *iso, int ctl)
{
	/* If the supervisor dies, the task goes with it: nobody would be left
	 * to collect its output or its status. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, "berth-init");
	/* Before the cgroup filesystem goes read-only. */
	struct program_setup ps = {.ncg_fds = 0};
	if (iso->cg) {
		ps.ncg_fds = cgroup_open_entry(iso->cg, ps.cg_fds);
		if (ps.ncg_fds < 0)
			init_fail(ctl, "cannot open the task's cgroup: %s", err_str(-ps.ncg_fds));
	}
	int r = seccomp_profile_bpf(&ps.seccomp);
	if (r < 0)
		init_fail(ctl, "no seccomp filter for this architecture: %s", err_str(-r));
	setup_namespace(iso, ctl);

	/* Blocked signals are queued even for pid 1, and waited for below.
	 * The dispositions must not be SIG_IGN (inherited), or the kernel
	 * would drop them once unblocked by sigwaitinfo. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	signal(SIGCHLD, SIG_DFL);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++) {
		sigaddset(&set, forwarded[i]);
		signal(forwarded[i], SIG_DFL);
	}
	sigprocmask(SIG_BLOCK, &set, NULL);

	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0)
		init_fail(ctl, "cannot create a pipe: %s", err_str(errno));
	pid_t child = fork();
	if (child < 0)
		init_fail(ctl, "cannot fork: %s", err_str(errno));
	if (child == 0) {
		close(ep[0]);
		close(ctl);
		run_program(iso, &ps, ep[1]);
	}
	close(ep[1]);
	close(iso->stdout_fd);
	close(iso->stderr_fd);
	for (int i = 0; i < ps.ncg_fds; i++)
		close(ps.cg_fds[i]);
	free(ps.seccomp.filter);

	/* EOF = exec succeeded (the pipe was close-on-exec). */
	struct exec_failure f;
	ssize_t n;
	do
		n = read(ep[0], &f, sizeof f);
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n > 0) {
		struct iso_msg m = {.type = ISO_FAILED, .value = f.code};
		f.text[sizeof f.text - 1] = 0;
		snprintf(m.text, sizeof m.text, "%s", f.text);
		waitpid(child, NULL, 0);
		send_msg(ctl, &m, 0);
		_exit(f.code);
	}
	/* The program exists (at worst as a zombie, we have not reaped it),
	 * so its pid can still be vouched for. */
	struct iso_msg started = {.type = ISO_STARTED};
	send_msg(ctl, &started, child);

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			if (kill(-child, sig) < 0)
				kill(child, sig);
			continue;
		}
		int st;
		pid_t w;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
			if (w != child)
				continue; /* an orphan: reaped, that is all */
			struct iso_msg m = {.type = ISO_EXITED, .value = st};
			send_msg(ctl, &m, 0);
			/* Exiting takes every remaining process of the
			 * namespace down with us. */
			_exit(0);
		}
	}
}

pid_t isolation_start(const struct isolation *iso, int *ctl_fd, struct berr *err)
{
	*ctl_fd = -1;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return berr_set(err, 0, "cannot create a socket pair: %s", err_str(errno));
	int one = 1;
	setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
	/* The other namespaces are the init's own business (unshared there),
	 * so that the supervisor stays in the host's mount namespace. */
	pid_t pid = -1;
	int e = 0;
	int self_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	/* The next child we fork is pid 1 of a new pid namespace. It stays
	 * out of the task's cgroup (in the supervisor's, berth's own): its
	 * namespace and mount set-up is berth's work, not the task's, and
	 * must run at full speed whatever the task's limits. Only the
	 * program enters the task's cgroup, just before its exec. */
	if (unshare(CLONE_NEWPID) < 0) {
		e = errno;
		close(sv[0]);
		close(sv[1]);
		if (self_ns >= 0)
			close(self_ns);
		return berr_set(err, 0, "cannot create a pid namespace: %s", err_str(e));
	}
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		init_main(iso, sv[1]);
	}
	e = errno;
	/* Later forks of ours (none today) must stay in our namespace. */
	if (self_ns >= 0) {
		setns(self_ns, CLONE_NEWPID);
		close(self_ns);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return berr_set(err, 0, "cannot start the task's init: %s", err_str(e));
	}
	*ctl_fd = sv[0];
	return pid;
}
