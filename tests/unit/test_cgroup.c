/* test_cgroup.c - the cgroup manager against the real kernel (root only).
 *
 * Every test works under its own parent "berth-test-<pid>" and removes it. */
#include "agent/cgroup.h"
#include "unit.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

static char parent[64];

static void need_cgroups(void)
{
	if (geteuid() != 0)
		SKIP("needs root");
	if (cgroup_detect() == CGROUP_NONE)
		SKIP("no cgroup filesystem under /sys/fs/cgroup");
	snprintf(parent, sizeof parent, "berth-test-%d", (int)getpid());
}

static void cleanup(struct cgroup *cg)
{
	if (cg) {
		cgroup_kill(cg);
		cgroup_remove(cg);
		cgroup_free(cg);
	}
	cgroup_remove_parent(cgroup_detect(), NULL, parent);
}

static char *read_file(const char *dir, const char *file)
{
	char *path = xasprintf("%s/%s", dir, file), *s = NULL;
	if (file_read_all(path, &s, NULL) < 0)
		s = NULL;
	free(path);
	return s;
}

static bool contains_pid(struct cgroup *cg, pid_t pid)
{
	pid_t *pids;
	size_t n;
	bool found = false;
	if (cgroup_pids(cg, &pids, &n) == 0)
		for (size_t i = 0; i < n; i++)
			found |= pids[i] == pid;
	free(pids);
	return found;
}

/* A child that waits in the cgroup (entered before it does anything). */
static pid_t spawn_in(struct cgroup *cg, void (*body)(void))
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(1);
		body();
		_exit(0);
	}
	close(p[0]);
	cgroup_enter(cg, pid);
	if (write(p[1], "x", 1) != 1)
		return -1;
	close(p[1]);
	return pid;
}

static void sleeper(void)
{
	for (;;)
		pause();
}

/* Keeps forking: the kill must win against a process tree that grows while
 * it is being killed, including children that leave their session. */
static void forker(void)
{
	for (int i = 0; i < 20; i++) {
		pid_t c = fork();
		if (c == 0) {
			setsid();
			if (fork() == 0)
				sleeper();
			sleeper();
		}
	}
	sleeper();
}

static void hog(void)
{
	size_t n = 256u << 20;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		_exit(2);
	for (size_t i = 0; i < n; i += 4096)
		p[i] = 1;
	_exit(0);
}

TEST(detects_the_host_version)
{
	enum cgroup_version v = cgroup_detect();
	bool v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
	if (v2)
		CHECK(v == CGROUP_V2);
	else if (access("/sys/fs/cgroup/memory/cgroup.procs", F_OK) == 0)
		CHECK(v == CGROUP_V1);
	CHECK_STR(cgroup_version_name(CGROUP_V1), "v1");
	CHECK_STR(cgroup_version_name(CGROUP_V2), "v2");
	CHECK_STR(cgroup_version_name(CGROUP_NONE), "none");
	CHECK(cgroup_detect() == v);
}

TEST(rejects_bad_names)
{
	struct cgroup *cg = NULL;
	struct berr err = {0};
	enum cgroup_version v = cgroup_detect() == CGROUP_NONE ? CGROUP_V2 : cgroup_detect();
	CHECK(cgroup_create_at(v, "/nonexistent", "berth", "..", NULL, &cg, &err) < 0);
	CHECK_STR(err.msg, "invalid cgroup name '..'");
	CHECK(cgroup_create_at(v, "/nonexistent", "berth", "a/b", NULL, &cg, &err) < 0);
	CHECK_STR(err.msg, "invalid cgroup name 'a/b'");
	CHECK(cgroup_create_at(v, "/nonexistent", "../etc", "t", NULL, &cg, &err) < 0);
	CHECK_STR(err.msg, "invalid cgroup parent '../etc'");
	CHECK(cgroup_create_at(v, "/nonexistent", "a//b", "t", NULL, &cg, &err) < 0);
	CHECK(cgroup_create_at(CGROUP_NONE, "/nonexistent", "berth", "t", NULL, &cg, &err) < 0);
	CHECK_STR(err.msg, "no cgroup filesystem under '/nonexistent'");
	CHECK(cgroup_create_at(CGROUP_V1, "/nonexistent", "berth", "t", NULL, &cg, &err) < 0);
	CHECK_STR(err.msg, "no cgroup v1 controller under '/nonexistent'");
	CHECK(cg == NULL);
	CHECK(cgroup_open(v, "/nonexistent", "berth", "t", &cg) == -ENOENT);
}

TEST(writes_the_limits)
{
	need_cgroups();
	struct cgroup *cg = NULL;
	struct berr err = {0};
	struct cgroup_limits lim = {.cpu = 0.5, .memory_bytes = 64ull << 20, .pids_max = 500};
	CHECK(cgroup_create(parent, "limits", &lim, &cg, &err) == 0);
	if (!cg) {
		fprintf(stderr, "    %s\n", err.msg);
		cleanup(NULL);
		return;
	}
	char *s;
	if (cgroup_version(cg) == CGROUP_V1) {
		const char *mem = cgroup_dir(cg, "memory"), *cpu = cgroup_dir(cg, "cpu");
		CHECK_STR(s = read_file(mem, "memory.limit_in_bytes"), "67108864\n");
		free(s);
		if (access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0) {
			CHECK_STR(s = read_file(mem, "memory.memsw.limit_in_bytes"), "67108864\n");
			free(s);
		}
		CHECK_STR(s = read_file(cpu, "cpu.cfs_quota_us"), "50000\n");
		free(s);
		CHECK_STR(s = read_file(cpu, "cpu.cfs_period_us"), "100000\n");
		free(s);
		if (cgroup_dir(cg, "pids")) {
			CHECK_STR(s = read_file(cgroup_dir(cg, "pids"), "pids.max"), "500\n");
			free(s);
		}
		CHECK_CONTAINS(mem, parent);
		CHECK_CONTAINS(mem, "/memory/");
	} else {
		const char *d = cgroup_dir(cg, "memory");
		CHECK_STR(s = read_file(d, "memory.max"), "67108864\n");
		free(s);
		if ((s = read_file(d, "memory.swap.max")))
			CHECK_STR(s, "0\n");
		free(s);
		CHECK_STR(s = read_file(d, "cpu.max"), "50000 100000\n");
		free(s);
		if ((s = read_file(d, "pids.max")))
			CHECK_STR(s, "500\n");
		free(s);
	}
	cleanup(cg);
}

TEST(default_limits_are_unlimited_but_pids)
{
	need_cgroups();
	struct cgroup *cg = NULL;
	struct berr err = {0};
	CHECK(cgroup_create(parent, "nolimits", NULL, &cg, &err) == 0);
	if (!cg) {
		fprintf(stderr, "    %s\n", err.msg);
		cleanup(NULL);
		return;
	}
	char *s;
	if (cgroup_version(cg) == CGROUP_V1) {
		CHECK_STR(s = read_file(cgroup_dir(cg, "cpu"), "cpu.cfs_quota_us"), "-1\n");
		free(s);
		if (cgroup_dir(cg, "pids")) {
			CHECK_STR(s = read_file(cgroup_dir(cg, "pids"), "pids.max"), "16384\n");
			free(s);
		}
	} else {
		if ((s = read_file(cgroup_dir(cg, "memory"), "memory.max")))
			CHECK_STR(s, "max\n");
		free(s);
	}
	cleanup(cg);
}

TEST(enters_lists_kills_and_removes)
{
	need_cgroups();
	struct cgroup *cg = NULL;
	struct berr err = {0};
	CHECK(cgroup_create(parent, "procs", NULL, &cg, &err) == 0);
	if (!cg) {
		fprintf(stderr, "    %s\n", err.msg);
		cleanup(NULL);
		return;
	}
	pid_t pid = spawn_in(cg, forker);
	CHECK(pid > 0);
	CHECK(contains_pid(cg, pid));
	/* wait for the tree to grow */
	for (int i = 0; i < 200; i++) {
		pid_t *pids;
		size_t n;
		cgroup_pids(cg, &pids, &n);
		free(pids);
		if (n >= 41)
			break;
		usleep(10000);
	}
	CHECK(cgroup_kill(cg) == 0);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	pid_t *pids;
	size_t n = 99;
	CHECK(cgroup_pids(cg, &pids, &n) == 0);
	CHECK(n == 0);
	free(pids);
	char *dir =
	    xstrdup(cgroup_dir(cg, "memory") ? cgroup_dir(cg, "memory") : cgroup_dir(cg, "pids"));
	CHECK(cgroup_remove(cg) == 0);
	CHECK(access(dir, F_OK) < 0);
	free(dir);
	/* removing twice is fine, killing an absent cgroup too */
	CHECK(cgroup_remove(cg) == 0);
	CHECK(cgroup_kill(cg) == 0);
	cgroup_free(cg);
	CHECK(cgroup_remove_parent(cgroup_detect(), NULL, parent) == 0);
}

TEST(reports_oom_kills_and_memory_usage)
{
	need_cgroups();
	struct cgroup *cg = NULL;
	struct berr err = {0};
	struct cgroup_limits lim = {.memory_bytes = 32ull << 20};
	CHECK(cgroup_create(parent, "oom", &lim, &cg, &err) == 0);
	if (!cg) {
		fprintf(stderr, "    %s\n", err.msg);
		cleanup(NULL);
		return;
	}
	uint64_t count = 99;
	CHECK(cgroup_oom_kills(cg, &count) == 0);
	CHECK(count == 0);
	pid_t pid = spawn_in(cg, hog);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	CHECK(cgroup_oom_kills(cg, &count) == 0);
	CHECK(count >= 1);

	pid = spawn_in(cg, sleeper);
	uint64_t used = 0;
	CHECK(cgroup_memory_usage(cg, &used) == 0);
	CHECK(used > 0);
	cleanup(cg);
}

TEST(opens_existing_and_takes_over_empty_leftovers)
{
	need_cgroups();
	struct cgroup *cg = NULL, *again = NULL, *other = NULL;
	struct berr err = {0};
	enum cgroup_version v = cgroup_detect();
	CHECK(cgroup_open(v, NULL, parent, "left", &again) == -ENOENT);
	CHECK(cgroup_create(parent, "left", NULL, &cg, &err) == 0);
	if (!cg) {
		cleanup(NULL);
		return;
	}
	CHECK(cgroup_open(v, NULL, parent, "left", &again) == 0);
	/* an empty leftover is replaced */
	CHECK(cgroup_create(parent, "left", NULL, &other, &err) == 0);
	cgroup_free(other);
	other = NULL;
	/* a busy one is not ours to take */
	pid_t pid = spawn_in(cg, sleeper);
	CHECK(cgroup_create(parent, "left", NULL, &other, &err) < 0);
	CHECK_CONTAINS(err.msg, "cannot create cgroup '");
	CHECK_CONTAINS(err.msg, "': it exists and has processes");
	CHECK(other == NULL);
	CHECK(contains_pid(again, pid));
	CHECK(cgroup_kill(again) == 0);
	waitpid(pid, NULL, 0);
	cgroup_free(again);
	cleanup(cg);
}

TEST(nested_parent_is_created_and_removed)
{
	need_cgroups();
	struct cgroup *cg = NULL;
	struct berr err = {0};
	char *nested = xasprintf("%s/inner", parent);
	CHECK(cgroup_create(nested, "t", NULL, &cg, &err) == 0);
	if (cg) {
		CHECK_CONTAINS(cgroup_dir(cg, "memory") ? cgroup_dir(cg, "memory")
							: cgroup_dir(cg, "pids"),
			       "/inner/t");
		/* busy parent: refuses */
		CHECK(cgroup_remove_parent(cgroup_detect(), NULL, nested) == -EBUSY);
		CHECK(cgroup_remove(cg) == 0);
		cgroup_free(cg);
	}
	CHECK(cgroup_remove_parent(cgroup_detect(), NULL, nested) == 0);
	char *p =
	    xasprintf("/sys/fs/cgroup/%s%s", cgroup_detect() == CGROUP_V1 ? "memory/" : "", parent);
	CHECK(access(p, F_OK) < 0);
	free(p);
	free(nested);
}

/* A hybrid host's /sys/fs/cgroup/unified is a real cgroup2 hierarchy without
 * controllers: enough to exercise the v2 backend's process handling
 * (cgroup.procs, cgroup.kill) on a v1 machine. Pure v2 hosts run every
 * other test on v2 already. */
TEST(v2_backend_on_the_unified_hierarchy)
{
	need_cgroups();
	const char *root = "/sys/fs/cgroup/unified";
	struct statfs sf;
	if (cgroup_detect() == CGROUP_V2)
		root = "/sys/fs/cgroup";
	else if (statfs(root, &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC)
		SKIP("no cgroup2 hierarchy mounted");
	struct cgroup *cg = NULL;
	struct berr err = {0};
	CHECK(cgroup_create_at(CGROUP_V2, root, parent, "v2", NULL, &cg, &err) == 0);
	if (!cg) {
		fprintf(stderr, "    %s\n", err.msg);
		return;
	}
	CHECK(cgroup_version(cg) == CGROUP_V2);
	pid_t pid = spawn_in(cg, forker);
	CHECK(contains_pid(cg, pid));
	usleep(50000);
	CHECK(cgroup_kill(cg) == 0);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st));
	CHECK(cgroup_remove(cg) == 0);
	cgroup_free(cg);
	CHECK(cgroup_remove_parent(CGROUP_V2, root, parent) == 0);
}

UNIT_MAIN(detects_the_host_version, rejects_bad_names, writes_the_limits,
	  default_limits_are_unlimited_but_pids, enters_lists_kills_and_removes,
	  reports_oom_kills_and_memory_usage, opens_existing_and_takes_over_empty_leftovers,
	  nested_parent_is_created_and_removed, v2_backend_on_the_unified_hierarchy)
