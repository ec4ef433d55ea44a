/* test_exec_enter.c - what a health-check command takes from the task's
 * program (/proc/PID/status), and task-exec's refusals a user would see. */
#include "agent/driver/exec_enter.h"
#include "agent/task_exec.h"
#include "unit.h"

#include <sys/stat.h>

static const char *status_text = "Name:\tsleep\n"
				 "Umask:\t0022\n"
				 "State:\tS (sleeping)\n"
				 "Uid:\t65534\t65534\t65534\t65534\n"
				 "Gid:\t65533\t65534\t65535\t65534\n"
				 "FDSize:\t64\n"
				 "Groups:\t65534 100 \n"
				 "CapInh:\t0000000000000000\n"
				 "CapPrm:\t0000000000000000\n"
				 "CapEff:\t0000000000000000\n"
				 "CapBnd:\t00000000a80425fb\n"
				 "CapAmb:\t0000000000000000\n"
				 "NoNewPrivs:\t1\n"
				 "Seccomp:\t2\n";

TEST(status_gives_ids_groups_and_capabilities)
{
	struct proc_creds c;
	struct berr err = {0};
	CHECK(proc_creds_parse(status_text, &c, &err) == 0);
	CHECK(c.uid[0] == 65534 && c.uid[1] == 65534 && c.uid[3] == 65534);
	CHECK(c.gid[0] == 65533 && c.gid[1] == 65534 && c.gid[2] == 65535);
	CHECK(c.ngroups == 2);
	CHECK(c.ngroups == 2 && c.groups[0] == 65534 && c.groups[1] == 100);
	CHECK(c.cap_bnd == 0xa80425fbULL);
	CHECK(c.cap_eff == 0 && c.cap_prm == 0 && c.cap_inh == 0);
	CHECK(c.no_new_privs);
	CHECK(c.seccomp == 2);
	free(c.groups);
}

TEST(status_without_groups_has_none)
{
	struct proc_creds c;
	struct berr err = {0};
	const char *s = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\nCapInh:\t0\nCapPrm:\t1ff\n"
			"CapEff:\t1ff\nCapBnd:\t1ff\n";
	CHECK(proc_creds_parse(s, &c, &err) == 0);
	CHECK(c.ngroups == 0);
	CHECK(c.cap_eff == 0x1ff);
	CHECK(!c.no_new_privs);
	free(c.groups);
}

TEST(status_missing_or_bad_lines_are_refused_by_name)
{
	struct proc_creds c;
	struct berr err = {0};
	CHECK(proc_creds_parse("Gid:\t0\t0\t0\t0\n", &c, &err) < 0);
	CHECK_CONTAINS(err.msg, "no 'Uid' line");
	free(c.groups);
	berr_clear(&err);
	CHECK(proc_creds_parse("Uid:\t0\t0\nGid:\t0\t0\t0\t0\n", &c, &err) < 0);
	CHECK_CONTAINS(err.msg, "bad 'Uid' line");
	free(c.groups);
	berr_clear(&err);
	CHECK(proc_creds_parse("Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapInh:\t0\n", &c, &err) < 0);
	CHECK_CONTAINS(err.msg, "no 'CapPrm' line");
	free(c.groups);
}

TEST(task_exec_argv_puts_the_command_after_the_sandbox)
{
	char *cmd[] = {"/bin/sh", "-c", "test -f /tmp/x", NULL};
	size_t n;
	char **v = task_exec_argv("/proc/self/exe", "/d/tasks/t1", cmd, 3, &n);
	CHECK(n == 7);
	CHECK_STR(v[0], "/proc/self/exe");
	CHECK_STR(v[1], "task-exec");
	CHECK_STR(v[2], "/d/tasks/t1");
	CHECK_STR(v[3], "--");
	CHECK_STR(v[4], "/bin/sh");
	CHECK_STR(v[6], "test -f /tmp/x");
	CHECK(v[7] == NULL);
	strv_free(v);
}

TEST(task_exec_refuses_a_sandbox_without_a_task_with_126)
{
	char dir[] = "/tmp/berth-test-taskexec.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *argv[] = {dir, "--", "true", NULL};
	/* stderr says why; the exit status is 126 (the check fails with it) */
	CHECK(task_exec_main(3, argv) == 126);
	char *bad[] = {dir, "true", NULL};
	CHECK(task_exec_main(2, bad) == 2);
	rmdir(dir);
}

UNIT_MAIN(status_gives_ids_groups_and_capabilities, status_without_groups_has_none,
	  status_missing_or_bad_lines_are_refused_by_name,
	  task_exec_argv_puts_the_command_after_the_sandbox,
	  task_exec_refuses_a_sandbox_without_a_task_with_126)
