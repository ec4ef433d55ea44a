/* test_supervisor.c - the per-task supervisor, with real processes,
 * namespaces and cgroups (root only; tests SKIP otherwise).
 *
 * The supervisor binary is $BERTH_BIN (scripts/run-tests.sh sets it), else
 * build/berth, else this test binary itself, which turns into a supervisor
 * when run as `test_supervisor supervise DIR` (see supervise_hook). Every
 * test uses its own sandbox (mkdtemp) and cgroup parent "berth-test-<pid>",
 * and removes both. */
#include "agent/cgroup.h"
#include "agent/driver/exec_isolation.h"
#include "agent/supervisor-internal.h"
#include "agent/supervisor.h"
#include "unit.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <linux/magic.h>

/* ---- this binary as a supervisor ---- */

__attribute__((constructor)) static void supervise_hook(void)
{
	char *cmd;
	size_t len;
	if (file_read_all("/proc/self/cmdline", &cmd, &len) < 0)
		return;
	char *argv[8] = {0};
	int argc = 0;
	for (size_t off = 0; off < len && argc < 7; off += strlen(cmd + off) + 1)
		argv[argc++] = cmd + off;
	if (argc >= 3 && !strcmp(argv[1], "supervise")) {
		int rc = supervisor_main(argc, argv);
		free(cmd);
		exit(rc);
	}
	free(cmd);
}

static const char *supervisor_exe(void)
{
	static char self[PATH_MAX];
	const char *env = getenv("BERTH_BIN");
	if (env && *env && access(env, X_OK) == 0)
		return env;
	if (access("build/berth", X_OK) == 0 && realpath("build/berth", self))
		return self;
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return "/proc/self/exe";
	self[n] = 0;
	return self;
}

/* ---- helpers ---- */

struct run {
	char dir[PATH_MAX];
	char id[96];
	char parent[64];
	pid_t sup;
	struct task_launch l;
};

static void need_root(void)
{
	if (geteuid() != 0)
		SKIP("needs root (namespaces, cgroups)");
	if (access("/proc/self/ns/pid", F_OK) < 0)
		SKIP("no pid namespaces");
}

static void need_cgroups(void)
{
	need_root();
	if (cgroup_detect() == CGROUP_NONE)
		SKIP("no cgroup filesystem under /sys/fs/cgroup");
}

/* A launch with sane defaults; tests adjust r->l before run_start. */
static void run_init(struct run *r, const char *name, char *const *argv, size_t argc)
{
	memset(r, 0, sizeof *r);
	snprintf(r->dir, sizeof r->dir, "/tmp/berth-sup-test.XXXXXX");
	if (!mkdtemp(r->dir)) {
		perror("mkdtemp");
		_exit(1);
	}
	snprintf(r->id, sizeof r->id, "%s-%d", name, (int)getpid());
	snprintf(r->parent, sizeof r->parent, "berth-test-%d", (int)getpid());
	r->l = (struct task_launch){
	    .task_id = r->id,
	    .job_key = "test/devel/sup",
	    .driver = DRIVER_EXEC,
	    .sandbox_dir = r->dir,
	    .argv = argv,
	    .argc = argc,
	    .stop_grace_ms = 5000,
	    .cgroup_parent = r->parent,
	};
}

static int run_start(struct run *r)
{
	struct berr err = {0};
	int rc = supervisor_launch(&r->l, supervisor_exe(), &r->sup, &err);
	if (rc < 0)
		fprintf(stderr, "    launch: %s\n", err.msg);
	return rc;
}

static int wait_phase(struct run *r, enum task_phase phase, int timeout_ms, struct task_report *rep)
{
	int64_t end = time_mono_ms() + timeout_ms;
	do {
		if (supervisor_read_report(r->dir, rep) == 0 && rep->phase >= phase)
			return 0;
		usleep(2000);
	} while (time_mono_ms() < end);
	fprintf(stderr, "    timed out waiting for phase %d (at %d)\n", phase, rep->phase);
	return -1;
}

static bool wait_gone(struct run *r, int timeout_ms)
{
	int64_t end = time_mono_ms() + timeout_ms;
	while (supervisor_alive(r->dir)) {
		if (time_mono_ms() > end)
			return false;
		usleep(2000);
	}
	return true;
}

static char *slurp(struct run *r, const char *name)
{
	char *path = xasprintf("%s/%s", r->dir, name), *s = NULL;
	if (file_read_all(path, &s, NULL) < 0)
		s = xstrdup("");
	free(path);
	return s;
}

/* Wait until the task printed `what` on stdout. */
static bool wait_output(struct run *r, const char *what, int timeout_ms)
{
	int64_t end = time_mono_ms() + timeout_ms;
	for (;;) {
		char *s = slurp(r, "stdout");
		bool ok = strstr(s, what) != NULL;
		free(s);
		if (ok)
			return true;
		if (time_mono_ms() > end)
			return false;
		usleep(2000);
	}
}

static void run_cleanup(struct run *r)
{
	if (supervisor_alive(r->dir)) {
		supervisor_stop(r->dir);
		wait_gone(r, 15000);
	}
	rm_rf(r->dir);
	cgroup_remove_parent(cgroup_detect(), NULL, r->parent);
}

/* Run to the end; returns the final report. */
static void run_to_end(struct run *r, struct task_report *rep)
{
	memset(rep, 0, sizeof *rep);
	if (run_start(r) < 0) {
		CHECK(!"launch failed");
		return;
	}
	CHECK(wait_phase(r, PHASE_EXITED, 20000, rep) == 0);
	CHECK(wait_gone(r, 5000));
}

/* Host processes whose command line is exactly argv0 argv1. */
static int count_procs(const char *argv0, const char *argv1)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char *path = xasprintf("/proc/%s/cmdline", de->d_name), *s;
		size_t len;
		if (file_read_all(path, &s, &len) == 0) {
			size_t l0 = strlen(argv0);
			if (len > l0 + 1 && !strcmp(s, argv0) && !strcmp(s + l0 + 1, argv1))
				n++;
			free(s);
		}
		free(path);
	}
	if (d)
		closedir(d);
	return n;
}

#define SH(script) ((char *const[]){"/bin/sh", "-c", (script), NULL}), 3

/* ---- tests ---- */

TEST(exit_zero_is_reported)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "exit0", SH("echo hello; echo oops >&2"));
	run_to_end(&r, &rep);
	CHECK(rep.phase == PHASE_EXITED);
	CHECK(rep.exit_code == 0);
	CHECK(rep.signal == 0);
	CHECK(!rep.oom && !rep.stopped);
	CHECK_STR(rep.message, "exit status 0");
	CHECK(rep.supervisor_pid == r.sup && r.sup > 0);
	CHECK(rep.pid > 0 && rep.pid != r.sup);
	CHECK(rep.started_ms > 0 && rep.finished_ms >= rep.started_ms);
	char *out = slurp(&r, "stdout"), *err = slurp(&r, "stderr");
	CHECK_STR(out, "hello\n");
	CHECK_STR(err, "oops\n");
	free(out);
	free(err);
	/* the launch description is kept for re-adoption */
	char *launch = slurp(&r, "launch.json");
	CHECK_CONTAINS(launch, "\"task_id\": \"exit0-");
	CHECK_CONTAINS(launch, "\"echo hello; echo oops >&2\"");
	free(launch);
	/* the cgroup went with the task */
	if (cgroup_detect() != CGROUP_NONE) {
		struct cgroup *cg = NULL;
		CHECK(cgroup_open(cgroup_detect(), NULL, r.parent, r.id, &cg) == -ENOENT);
	}
	run_cleanup(&r);
}

TEST(exit_status_and_signal_are_reported)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "exit3", SH("exit 3"));
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 3 && rep.signal == 0);
	CHECK_STR(rep.message, "exit status 3");
	run_cleanup(&r);

	run_init(&r, "sig", SH("kill -KILL $$"));
	run_to_end(&r, &rep);
	CHECK(rep.signal == 9);
	CHECK(rep.exit_code == 128 + 9);
	CHECK_STR(rep.message, "killed by signal 9");
	CHECK(!rep.stopped);
	run_cleanup(&r);
}

TEST(exec_failure_is_reported)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "noexec", ((char *const[]){"no-such-program-berth", "x", NULL}), 2);
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 127);
	CHECK_STR(rep.message, "cannot exec 'no-such-program-berth': no such file or directory");
	CHECK(rep.pid == 0);
	run_cleanup(&r);

	/* the sandbox's work/ is the working directory */
	run_init(&r, "noperm", ((char *const[]){"./data.txt", NULL}), 1);
	char *path = xasprintf("%s/work", r.dir);
	CHECK(mkdir(path, 0700) == 0);
	free(path);
	path = xasprintf("%s/work/data.txt", r.dir);
	CHECK(file_write_atomic(path, "not a program\n", 14) == 0);
	free(path);
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 126);
	CHECK_STR(rep.message, "cannot exec './data.txt': permission denied");
	run_cleanup(&r);
}

TEST(program_is_pid_2_in_its_own_namespaces)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "ns",
		 SH("echo pid=$$; echo host=$(hostname); for p in /proc/[0-9]*; do echo "
		    "proc=${p#/proc/}; done; echo ready; exec sleep 30"));
	r.l.stop_grace_ms = 1000;
	CHECK(run_start(&r) == 0);
	CHECK(wait_phase(&r, PHASE_RUNNING, 10000, &rep) == 0);
	CHECK(wait_output(&r, "ready", 10000));
	char *out = slurp(&r, "stdout");
	/* the program is not the namespace's init, and sees only its own */
	CHECK_CONTAINS(out, "pid=2\n");
	char *host = xasprintf("host=%s\n", r.id);
	CHECK_CONTAINS(out, host);
	free(host);
	CHECK_CONTAINS(out, "proc=1\nproc=2\nready\n");
	free(out);
	/* the reported pid is the program's host pid (2 inside) */
	char *path = xasprintf("/proc/%d/status", (int)rep.pid), *st = NULL;
	CHECK(file_read_all(path, &st, NULL) == 0);
	char *nspid = xasprintf("NSpid:\t%d\t2\n", (int)rep.pid);
	CHECK_CONTAINS(st, nspid);
	free(nspid);
	free(st);
	free(path);
	path = xasprintf("/proc/%d/cmdline", (int)rep.pid);
	char *cmd = NULL;
	/* "ready" comes just before the shell's exec of sleep */
	for (int i = 0; i < 500; i++) {
		free(cmd);
		cmd = NULL;
		CHECK(file_read_all(path, &cmd, NULL) == 0);
		if (cmd && !strcmp(cmd, "sleep"))
			break;
		usleep(10000);
	}
	CHECK_STR(cmd, "sleep");
	free(cmd);
	free(path);
	/* its namespaces differ from ours */
	const char *nss[] = {"pid", "mnt", "uts", "ipc"};
	for (size_t i = 0; i < ARRAY_SIZE(nss); i++) {
		char a[64] = "", b[64] = "";
		char *pa = xasprintf("/proc/self/ns/%s", nss[i]);
		char *pb = xasprintf("/proc/%d/ns/%s", (int)rep.pid, nss[i]);
		CHECK(readlink(pa, a, sizeof a - 1) > 0);
		CHECK(readlink(pb, b, sizeof b - 1) > 0);
		CHECK(strcmp(a, b) != 0);
		free(pa);
		free(pb);
	}
	CHECK(supervisor_alive(r.dir));
	CHECK(supervisor_stop(r.dir) == 0);
	CHECK(wait_phase(&r, PHASE_EXITED, 10000, &rep) == 0);
	CHECK(rep.stopped);
	CHECK_STR(rep.message, "killed by berth (SIGTERM)");
	run_cleanup(&r);
}

TEST(tmp_is_private_and_env_is_exact)
{
	need_root();
	struct run r;
	struct task_report rep;
	char name[64];
	snprintf(name, sizeof name, "berth-private-%d", (int)getpid());
	char *script = xasprintf("echo secret > /tmp/%s && ls /tmp; pwd; "
				 "echo fds: $(ls /proc/self/fd); env | sort",
				 name);
	char *env[] = {"GREETING=hi there", "EMPTY="};
	setenv("BERTH_TEST_LEAK", "1", 1); /* ours, must not reach the task */
	run_init(&r, "tmp", SH(script));
	r.l.env = env;
	r.l.nenv = 2;
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 0);
	char *out = slurp(&r, "stdout");
	/* /tmp held only our file, and the way to the working directory, the
	 * sandbox, which is under the host's /tmp */
	char *expect = xasprintf("%s\n%s\n%s\n", name, r.dir + 5, r.dir);
	CHECK(!strncmp(out, expect, strlen(expect)));
	free(expect);
	char *p = xasprintf("/tmp/%s", name);
	CHECK(access(p, F_OK) < 0); /* not on the host's /tmp */
	free(p);
	char *tmpfile = xasprintf("tmp/%s", name), *inside = slurp(&r, tmpfile);
	CHECK_STR(inside, "secret\n"); /* but in the sandbox's */
	free(inside);
	free(tmpfile);
	CHECK_CONTAINS(out, "\nGREETING=hi there\n");
	CHECK_CONTAINS(out, "\nEMPTY=\n");
	char *id = xasprintf("\nBERTH_TASK_ID=%s\n", r.id);
	CHECK_CONTAINS(out, id);
	free(id);
	char *home = xasprintf("\nHOME=%s\n", r.dir);
	CHECK_CONTAINS(out, home);
	free(home);
	CHECK_CONTAINS(out,
		       "\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
	CHECK(!strstr(out, "BERTH_TEST_LEAK"));
	/* nothing of the supervisor's leaks in: 3 is ls's own directory */
	CHECK_CONTAINS(out, "\nfds: 0 1 2 3\n");
	free(out);
	free(script);
	run_cleanup(&r);
}

static char *cg_file(const char *controller, struct run *r, const char *file)
{
	char *path;
	if (cgroup_detect() == CGROUP_V2)
		path = xasprintf("/sys/fs/cgroup/%s/%s/%s", r->parent, r->id, file);
	else
		path = xasprintf("/sys/fs/cgroup/%s/%s/%s/%s", controller, r->parent, r->id, file);
	char *s = NULL;
	if (file_read_all(path, &s, NULL) < 0)
		s = NULL;
	free(path);
	return s;
}

TEST(cgroup_holds_the_task_with_its_limits)
{
	need_cgroups();
	struct run r;
	struct task_report rep;
	run_init(&r, "limits", SH("echo ready; exec sleep 30"));
	r.l.cpu = 0.25;
	r.l.memory_bytes = 64ull << 20;
	r.l.stop_grace_ms = 1000;
	CHECK(run_start(&r) == 0);
	CHECK(wait_phase(&r, PHASE_RUNNING, 10000, &rep) == 0);
	char *s;
	if (cgroup_detect() == CGROUP_V1) {
		CHECK_STR(s = cg_file("memory", &r, "memory.limit_in_bytes"), "67108864\n");
		free(s);
		CHECK_STR(s = cg_file("cpu", &r, "cpu.cfs_quota_us"), "25000\n");
		free(s);
		CHECK_STR(s = cg_file("cpu", &r, "cpu.cfs_period_us"), "100000\n");
		free(s);
		s = cg_file("memory", &r, "cgroup.procs");
	} else {
		CHECK_STR(s = cg_file("", &r, "memory.max"), "67108864\n");
		free(s);
		CHECK_STR(s = cg_file("", &r, "cpu.max"), "25000 100000\n");
		free(s);
		s = cg_file("", &r, "cgroup.procs");
	}
	char *pid = xasprintf("%d\n", (int)rep.pid);
	/* the program alone: its init is berth's own and stays out of the
	 * task's limits (exec_isolation.h) */
	CHECK_STR(s, pid);
	free(pid);
	free(s);
	CHECK(supervisor_stop(r.dir) == 0);
	CHECK(wait_phase(&r, PHASE_EXITED, 10000, &rep) == 0);
	CHECK(wait_gone(&r, 5000));
	struct cgroup *cg = NULL;
	CHECK(cgroup_open(cgroup_detect(), NULL, r.parent, r.id, &cg) == -ENOENT);
	run_cleanup(&r);
}

TEST(memory_hog_is_reported_as_oom)
{
	need_cgroups();
	struct run r;
	struct task_report rep;
	run_init(&r, "oom", SH("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"));
	r.l.memory_bytes = 32ull << 20;
	run_to_end(&r, &rep);
	CHECK(rep.oom);
	CHECK_STR(rep.message, "memory limit 32 MiB exceeded");
	CHECK(rep.signal == 9 || rep.exit_code != 0);
	char *out = slurp(&r, "stdout");
	CHECK(!strstr(out, "survived"));
	free(out);
	run_cleanup(&r);
}

TEST(stop_lets_a_program_exit_cleanly)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "term",
		 SH("trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done"));
	r.l.stop_grace_ms = 10000;
	CHECK(run_start(&r) == 0);
	CHECK(wait_output(&r, "ready", 10000));
	int64_t t0 = time_mono_ms();
	CHECK(supervisor_stop(r.dir) == 0);
	CHECK(wait_phase(&r, PHASE_EXITED, 15000, &rep) == 0);
	CHECK(time_mono_ms() - t0 < 5000); /* did not wait for the grace */
	CHECK(rep.stopped);
	CHECK(rep.exit_code == 0 && rep.signal == 0);
	CHECK_STR(rep.message, "killed by berth (SIGTERM)");
	char *out = slurp(&r, "stdout");
	CHECK_CONTAINS(out, "got TERM\n");
	free(out);
	CHECK(wait_gone(&r, 5000));
	CHECK(supervisor_stop(r.dir) == -ESRCH);
	run_cleanup(&r);
}

TEST(stop_kills_a_program_ignoring_term_after_grace)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "ignore", SH("trap '' TERM; echo ready; while :; do sleep 0.05; done"));
	r.l.stop_grace_ms = 300;
	CHECK(run_start(&r) == 0);
	CHECK(wait_output(&r, "ready", 10000));
	int64_t t0 = time_mono_ms();
	CHECK(supervisor_stop(r.dir) == 0);
	CHECK(wait_phase(&r, PHASE_EXITED, 15000, &rep) == 0);
	int64_t took = time_mono_ms() - t0;
	CHECK(took >= 300 && took < 5000);
	CHECK(rep.stopped);
	CHECK(rep.signal == 9);
	CHECK_STR(rep.message, "killed by berth (SIGKILL after 300ms grace)");
	run_cleanup(&r);

	/* the message says the grace as a person would write it */
	run_init(&r, "ignore2", SH("trap '' TERM; echo ready; while :; do sleep 0.05; done"));
	r.l.stop_grace_ms = 1000;
	CHECK(run_start(&r) == 0);
	CHECK(wait_output(&r, "ready", 10000));
	CHECK(supervisor_stop(r.dir) == 0);
	CHECK(wait_phase(&r, PHASE_EXITED, 15000, &rep) == 0);
	CHECK_STR(rep.message, "killed by berth (SIGKILL after 1s grace)");
	run_cleanup(&r);
}

TEST(no_process_is_left_behind)
{
	need_root();
	struct run r;
	struct task_report rep;
	/* a unique sleep duration marks our daemons among the host's processes */
	char secs[32];
	snprintf(secs, sizeof secs, "%d", 800000 + (int)getpid());
	char *script = xasprintf("setsid sh -c 'sleep %s & sleep %s' </dev/null >/dev/null 2>&1 & "
				 "trap '' TERM; echo ready; exec sleep %s",
				 secs, secs, secs);
	run_init(&r, "daemon", SH(script));
	r.l.stop_grace_ms = 200;
	CHECK(run_start(&r) == 0);
	CHECK(wait_output(&r, "ready", 10000));
	for (int i = 0; i < 500 && count_procs("sleep", secs) < 3; i++)
		usleep(10000);
	CHECK(count_procs("sleep", secs) == 3);
	CHECK(supervisor_stop(r.dir) == 0);
	CHECK(wait_phase(&r, PHASE_EXITED, 15000, &rep) == 0);
	CHECK(wait_gone(&r, 5000));
	CHECK(count_procs("sleep", secs) == 0);
	CHECK(rep.stopped);
	run_cleanup(&r);

	/* a program that exits on its own takes its daemons along too */
	free(script);
	script = xasprintf("setsid sleep %s </dev/null >/dev/null 2>&1 & sleep 0.2; exit 4", secs);
	run_init(&r, "daemon2", SH(script));
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 4);
	CHECK(count_procs("sleep", secs) == 0);
	free(script);
	run_cleanup(&r);
}

TEST(logs_rotate_by_size)
{
	need_root();
	struct run r;
	struct task_report rep;
	/* 100 lines of 50 bytes: 5000 bytes into files of at most 1000 */
	run_init(&r, "logs",
		 SH("i=100; while [ $i -lt 200 ]; do "
		    "echo \"line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; "
		    "i=$((i+1)); done; echo to-stderr >&2"));
	r.l.log_max_bytes = 1000;
	r.l.log_max_files = 2;
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 0);
	char *cur = slurp(&r, "stdout"), *one = slurp(&r, "stdout.1"), *two = slurp(&r, "stdout.2");
	char *p3 = xasprintf("%s/stdout.3", r.dir);
	CHECK(access(p3, F_OK) < 0); /* only 2 rotated files kept */
	free(p3);
	CHECK(strlen(cur) <= 1000 && strlen(one) <= 1000 && strlen(two) <= 1000);
	CHECK(strlen(one) == 1000 && strlen(two) == 1000); /* 20 whole lines each */
	CHECK_CONTAINS(cur, "line 199 ");
	/* lines stay whole and in order across the files */
	char *all = xasprintf("%s%s%s", two, one, cur);
	CHECK(all[0] == 'l' && all[strlen(all) - 1] == '\n');
	int prev = -1;
	bool ordered = true;
	for (char *l = all; *l; l = strchr(l, '\n') + 1) {
		int n = atoi(l + 5);
		ordered &= !strncmp(l, "line ", 5) && (prev < 0 || n == prev + 1);
		prev = n;
	}
	CHECK(ordered);
	CHECK(prev == 199);
	free(all);
	free(cur);
	free(one);
	free(two);
	char *err = slurp(&r, "stderr");
	CHECK_STR(err, "to-stderr\n");
	free(err);
	run_cleanup(&r);
}

TEST(runs_as_the_given_user)
{
	need_root();
	struct passwd *pw = getpwnam("nobody");
	if (!pw)
		SKIP("no user 'nobody'");
	uid_t uid = pw->pw_uid;
	struct run r;
	struct task_report rep;
	run_init(&r, "user",
		 SH("id -u; id -g; echo $HOME; cat /proc/self/status | grep NoNewPrivs"));
	r.l.user = "nobody";
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 0);
	char *out = slurp(&r, "stdout");
	char *expect = xasprintf("%d\n%d\n%s\n", (int)uid, (int)pw->pw_gid, pw->pw_dir);
	CHECK(!strncmp(out, expect, strlen(expect)));
	CHECK_CONTAINS(out, "NoNewPrivs:\t1");
	free(expect);
	free(out);
	run_cleanup(&r);

	run_init(&r, "nouser", SH("id -u"));
	r.l.user = "no-such-user-berth";
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 126);
	CHECK_STR(rep.message, "unknown user 'no-such-user-berth'");
	run_cleanup(&r);
}

/* No user in the spec: nobody, at home in its working directory, which it
 * owns and reaches by the path getcwd() gives (the sandbox's, under the
 * host's /tmp here, which the task's own /tmp covers). */
TEST(runs_as_nobody_by_default_in_its_own_workdir)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "nobody",
		 SH("id -u; id -g; echo $HOME; pwd; echo hi > out.txt; cat \"$(pwd)/out.txt\"; "
		    "grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/self/status; "
		    "touch /etc/berth-test 2>&1; ls / >/dev/null && echo root-readable"));
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 0);
	char *out = slurp(&r, "stdout");
	char *expect = xasprintf("65534\n65534\n%s\n%s\nhi\n", r.dir, r.dir);
	CHECK(!strncmp(out, expect, strlen(expect)));
	free(expect);
	CHECK_CONTAINS(out, "NoNewPrivs:\t1\nSeccomp:\t2\n");
	CHECK_CONTAINS(out, "CapEff:\t0000000000000000\n");
	CHECK_CONTAINS(out, "/etc/berth-test': Read-only file system\n");
	CHECK_CONTAINS(out, "root-readable\n");
	free(out);
	out = slurp(&r, "work/out.txt");
	CHECK_STR(out, "hi\n");
	free(out);
	char *path = xasprintf("%s/work", r.dir);
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_uid == 65534 && (st.st_mode & 07777) == 0700);
	free(path);
	/* the sandbox and its files are root's alone */
	CHECK(stat(r.dir, &st) == 0 && st.st_uid == 0 && (st.st_mode & 07777) == 0700);
	path = xasprintf("%s/launch.json", r.dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	free(path);
	path = xasprintf("%s/stdout", r.dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	free(path);
	run_cleanup(&r);
}

/* Docker's default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
 * SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD
 * AUDIT_WRITE SETFCAP. */
#define DEFAULT_CAPS "00000000a80425fb"

TEST(root_only_when_allowed_and_confined)
{
	need_cgroups();
	struct run r;
	struct task_report rep;
	run_init(&r, "root", SH("id -u"));
	r.l.user = "root";
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 126);
	CHECK_CONTAINS(rep.message, "task user 'root' is root");
	CHECK_CONTAINS(rep.message, "--allow-root-tasks");
	run_cleanup(&r);

	run_init(&r, "uid0", SH("id -u"));
	r.l.user = "0";
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 126);
	CHECK_CONTAINS(rep.message, "--allow-root-tasks");
	run_cleanup(&r);

	/* Allowed: root, but with the default set only, and everything but
	 * its own directories read-only. */
	run_init(
	    &r, "rootok",
	    SH("id -u; grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):' "
	       "/proc/self/status; "
	       "touch /etc/berth-test 2>&1 || true; "
	       "{ echo h > /proc/sysrq-trigger; } 2>&1 || true; "
	       "{ echo 1 > /proc/sys/vm/drop_caches; } 2>&1 || true; "
	       "cg=$(sed -n 's/^[0-9]*:pids:\\(.*\\)/\\1/p; s/^0::\\(.*\\)/\\1/p' "
	       "/proc/self/cgroup | head -1); "
	       "for f in /sys/fs/cgroup/pids$cg/../cgroup.procs /sys/fs/cgroup$cg/../cgroup.procs; "
	       "do [ -e $f ] && { echo $$ > $f && echo escaped || echo stayed; }; done; "
	       "echo w > /tmp/w && echo tmp-ok; echo w > w && echo cwd-ok; "
	       "unshare -U true 2>/dev/null && echo userns || echo no-userns"));
	r.l.user = "root";
	r.l.allow_root_tasks = true;
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 0);
	char *out = slurp(&r, "stdout");
	CHECK(!strncmp(out, "0\n", 2));
	CHECK_CONTAINS(out, "CapInh:\t0000000000000000\n");
	CHECK_CONTAINS(out, "CapPrm:\t" DEFAULT_CAPS "\n");
	CHECK_CONTAINS(out, "CapEff:\t" DEFAULT_CAPS "\n");
	CHECK_CONTAINS(out, "CapBnd:\t" DEFAULT_CAPS "\n");
	CHECK_CONTAINS(out, "CapAmb:\t0000000000000000\n");
	CHECK_CONTAINS(out, "NoNewPrivs:\t1\n");
	CHECK_CONTAINS(out, "Seccomp:\t2\n");
	CHECK_CONTAINS(out, "/etc/berth-test': Read-only file system");
	if (access("/proc/sysrq-trigger", F_OK) == 0) /* a kernel without sysrq has none */
		CHECK_CONTAINS(out, "sysrq-trigger: Read-only file system");
	CHECK_CONTAINS(out, "drop_caches: Read-only file system");
	CHECK_CONTAINS(out, "stayed");
	CHECK(!strstr(out, "escaped"));
	CHECK_CONTAINS(out, "tmp-ok\ncwd-ok\nno-userns\n");
	free(out);
	CHECK(access("/etc/berth-test", F_OK) < 0);
	run_cleanup(&r);
}

TEST(supervisor_outlives_its_launcher)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "orphan", SH("sleep 0.5; echo done"));
	pid_t launcher = fork();
	if (launcher == 0)
		_exit(run_start(&r) == 0 ? 0 : 1);
	int st;
	CHECK(waitpid(launcher, &st, 0) == launcher);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* the launcher is gone; the supervisor is not its child anymore */
	CHECK(supervisor_alive(r.dir));
	CHECK(wait_phase(&r, PHASE_RUNNING, 10000, &rep) == 0);
	char *path = xasprintf("/proc/%d/stat", (int)rep.supervisor_pid), *stat = NULL;
	CHECK(file_read_all(path, &stat, NULL) == 0);
	int ppid = stat ? atoi(strrchr(stat, ')') + 4) : -1;
	CHECK(ppid != launcher && ppid != getpid());
	free(stat);
	free(path);
	CHECK(wait_phase(&r, PHASE_EXITED, 10000, &rep) == 0);
	CHECK(rep.exit_code == 0);
	char *out = slurp(&r, "stdout");
	CHECK_STR(out, "done\n");
	free(out);
	run_cleanup(&r);
}

TEST(notifies_the_agent_socket)
{
	need_root();
	struct run r;
	struct task_report rep;
	run_init(&r, "notify", SH("true"));
	char *sock = xasprintf("%s/agent.sock", r.dir);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	r.l.notify_socket = sock;
	run_to_end(&r, &rep);
	CHECK(rep.exit_code == 0);
	/* one datagram per status change: starting, running, exited */
	int got = 0;
	char buf[256];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = 0;
		CHECK_STR(buf, r.id);
		got++;
	}
	CHECK(got == 3);
	close(fd);
	free(sock);
	run_cleanup(&r);
}

TEST(agent_side_errors_and_lookups)
{
	need_root();
	struct run r;
	struct task_report rep;
	struct berr err = {0};
	pid_t pid;
	run_init(&r, "errors", SH("echo ready; exec sleep 30"));
	/* nothing there yet */
	CHECK(supervisor_read_report(r.dir, &rep) == -ENOENT);
	CHECK(!supervisor_alive(r.dir));
	CHECK(supervisor_stop(r.dir) == -ESRCH);
	/* refused before anything starts */
	struct task_launch bad = r.l;
	bad.task_id = "../escape";
	CHECK(supervisor_launch(&bad, supervisor_exe(), &pid, &err) < 0);
	CHECK_STR(err.msg, "invalid task id '../escape'");
	bad = r.l;
	bad.argc = 0;
	CHECK(supervisor_launch(&bad, supervisor_exe(), &pid, &err) < 0);
	CHECK_CONTAINS(err.msg, "': empty command");
	bad = r.l;
	CHECK(supervisor_launch(&bad, "/nonexistent/berth", &pid, &err) < 0);
	CHECK_STR(err.msg, "cannot run '/nonexistent/berth': no such file or directory");
	CHECK(!supervisor_alive(r.dir));
	/* one supervisor per sandbox */
	CHECK(run_start(&r) == 0);
	CHECK(supervisor_alive(r.dir));
	CHECK(supervisor_launch(&r.l, supervisor_exe(), &pid, &err) < 0);
	CHECK_CONTAINS(err.msg, "already has a supervisor");
	/* a stop right after launch, before the task even runs, is honoured */
	CHECK(supervisor_stop(r.dir) == 0);
	CHECK(wait_phase(&r, PHASE_EXITED, 10000, &rep) == 0);
	CHECK(rep.stopped);
	CHECK(wait_gone(&r, 5000));
	/* a pid file naming some other process is not taken for a supervisor */
	char *pidfile = xasprintf("%s/supervisor.pid", r.dir), *self = xasprintf("%d\n", getpid());
	CHECK(file_write_atomic(pidfile, self, strlen(self)) == 0);
	CHECK(!supervisor_alive(r.dir));
	CHECK(supervisor_stop(r.dir) == -ESRCH);
	free(pidfile);
	free(self);
	run_cleanup(&r);
}

/* On v2 the init is born in the task's cgroup (clone3 CLONE_INTO_CGROUP)
 * instead of migrating into it. A v1 host's controller-less cgroup2 mount
 * (/sys/fs/cgroup/unified) is enough to exercise that path. Also: /tmp is a
 * fresh tmpfs when the sandbox has no tmp dir to bind. */
TEST(isolation_puts_only_the_program_in_a_v2_cgroup)
{
	need_root();
	const char *root = "/sys/fs/cgroup/unified";
	struct statfs sf;
	if (cgroup_detect() == CGROUP_V2)
		root = "/sys/fs/cgroup";
	else if (statfs(root, &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC)
		SKIP("no cgroup2 hierarchy mounted");
	char parent[64];
	snprintf(parent, sizeof parent, "berth-test-%d", (int)getpid());
	struct cgroup *cg = NULL;
	struct berr err = {0};
	CHECK(cgroup_create_at(CGROUP_V2, root, parent, "iso", NULL, &cg, &err) == 0);
	if (!cg) {
		fprintf(stderr, "    %s\n", err.msg);
		return;
	}
	int out[2], errp[2];
	CHECK(pipe2(out, O_CLOEXEC) == 0 && pipe2(errp, O_CLOEXEC) == 0);
	char *argv[] = {"/bin/sh", "-c",
			"grep '^0::' /proc/self/cgroup; stat -f -c %T /tmp; ls -A /tmp | wc -l; "
			"hostname; read x",
			NULL};
	char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	struct isolation iso = {.hostname = "iso-test",
				.workdir = "/",
				.tmpdir = NULL,
				.argv = argv,
				.envp = envp,
				.cg = cg,
				.stdout_fd = out[1],
				.stderr_fd = errp[1]};
	int ctl = -1;
	pid_t init = isolation_start(&iso, &ctl, &err);
	close(out[1]);
	close(errp[1]);
	CHECK(init > 0);
	if (init <= 0) {
		fprintf(stderr, "    %s\n", err.msg);
		goto out;
	}
	struct iso_msg m;
	pid_t pid = 0;
	CHECK(isolation_recv(ctl, &m, &pid) == 1);
	CHECK(m.type == ISO_STARTED);
	CHECK(pid > 0 && pid != init);
	pid_t *pids;
	size_t n;
	CHECK(cgroup_pids(cg, &pids, &n) == 0);
	bool has_init = false, has_prog = false;
	for (size_t i = 0; i < n; i++) {
		has_init |= pids[i] == init;
		has_prog |= pids[i] == pid;
	}
	free(pids);
	CHECK(!has_init && has_prog); /* the init set up outside the task's limits */
	/* the program's stdin is /dev/null: `read` ends it */
	CHECK(isolation_recv(ctl, &m, NULL) == 1);
	CHECK(m.type == ISO_EXITED);
	CHECK(WIFEXITED(m.value) && WEXITSTATUS(m.value) == 1);
	CHECK(isolation_recv(ctl, &m, NULL) == 0); /* the init is gone */
	int st;
	CHECK(waitpid(init, &st, 0) == init);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char buf[512] = "";
	ssize_t got = read(out[0], buf, sizeof buf - 1);
	buf[got > 0 ? got : 0] = 0;
	char *expect = xasprintf("0::/%s/iso\ntmpfs\n0\niso-test\n", parent);
	CHECK_STR(buf, expect);
	free(expect);
out:
	if (ctl >= 0)
		close(ctl);
	close(out[0]);
	close(errp[0]);
	cgroup_kill(cg);
	CHECK(cgroup_remove(cg) == 0);
	cgroup_free(cg);
	cgroup_remove_parent(CGROUP_V2, root, parent);
}

/* launch.json carries a docker bridge task's network (address, prefix,
 * gateway) to its supervisor, and refuses one that is half there. */
TEST(launch_json_carries_the_docker_task_network)
{
	char dir[] = "/tmp/berth-test-launch.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *argv[] = {"sleep", "1", NULL};
	struct task_launch l = {.task_id = "t1",
				.driver = DRIVER_DOCKER,
				.image = "busybox",
				.argv = argv,
				.argc = 2,
				.netns_path = "/var/lib/berth/net/netns/t1",
				.net_address = 0x0af40005,
				.net_prefix = 24,
				.net_gateway = 0x0af40001};
	json_t *j = launch_to_json(&l, dir);
	char *path = xasprintf("%s/launch.json", dir);
	CHECK(json_dump_file(j, path, 0) == 0);
	struct launch_doc d;
	struct berr err = {0};
	CHECK(launch_read(dir, &d, &err) == 0);
	CHECK(d.l.net_address == 0x0af40005 && d.l.net_prefix == 24 &&
	      d.l.net_gateway == 0x0af40001);
	CHECK_STR(d.l.netns_path, "/var/lib/berth/net/netns/t1");
	launch_doc_free(&d);
	json_object_set_new(j, "net_prefix", json_integer(40));
	CHECK(json_dump_file(j, path, 0) == 0);
	CHECK(launch_read(dir, &d, &err) < 0);
	CHECK(strstr(err.msg, "net_prefix") != NULL);
	launch_doc_free(&d);
	/* exec and oci tasks have none */
	json_object_del(j, "net_address");
	CHECK(json_dump_file(j, path, 0) == 0);
	CHECK(launch_read(dir, &d, &err) == 0);
	CHECK(d.l.net_address == 0);
	launch_doc_free(&d);
	json_decref(j);
	unlink(path);
	rmdir(dir);
	free(path);
}

UNIT_MAIN(exit_zero_is_reported, exit_status_and_signal_are_reported, exec_failure_is_reported,
	  program_is_pid_2_in_its_own_namespaces, tmp_is_private_and_env_is_exact,
	  cgroup_holds_the_task_with_its_limits, memory_hog_is_reported_as_oom,
	  stop_lets_a_program_exit_cleanly, stop_kills_a_program_ignoring_term_after_grace,
	  no_process_is_left_behind, logs_rotate_by_size, runs_as_the_given_user,
	  runs_as_nobody_by_default_in_its_own_workdir, root_only_when_allowed_and_confined,
	  supervisor_outlives_its_launcher, notifies_the_agent_socket,
	  agent_side_errors_and_lookups, isolation_puts_only_the_program_in_a_v2_cgroup,
	  launch_json_carries_the_docker_task_network)
