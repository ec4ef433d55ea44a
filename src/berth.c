/* berth - a cluster scheduler and container orchestrator. One binary: the
 * server, the agent, the single-node `up`, and the client commands, each a
 * row of the table below. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"

#define BERTH_VERSION "0.1.0"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
    {"up", cmd_up, "run a single-node cluster (server + agent) in the foreground"},
    {"server", cmd_server, "run a server"},
    {"agent", cmd_agent, "run an agent on this machine"},
    {"job", cmd_job, "run, plan, inspect, kill and restart jobs"},
    {"task", cmd_task, "read task logs, run a command in a task"},
    {"node", cmd_node, "list, drain and activate nodes"},
    {"admin", cmd_admin, "back up and restore the cluster state"},
    {"token", cmd_token, "create, list and revoke roles' tokens"},
    {"secret", cmd_secret, "create, list and remove secrets (values are never shown)"},
    {"quota", cmd_quota, "set, list and remove roles' quotas of production work"},
    {"cron", cmd_cron, "list cron jobs and start one now"},
    {"events", cmd_events,
     "print the cluster's events (tasks, jobs, nodes, updates), or follow them"},
    {"update", cmd_update, "follow, pause, resume, abort and roll back job updates"},
    {"supervise", cmd_supervise, NULL}, /* internal: the per-task supervisor */
    {"task-exec", cmd_task_exec, NULL}, /* internal: a command inside a task */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: berth COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (commands[i].help)
			fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'berth COMMAND --help' tells more. Client commands find the server from\n"
		   "--addr or BERTH_ADDR (http://host:port[,http://host:port...]).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("berth %s\n", BERTH_VERSION);
		return 0;
	}
	/* A global "--addr URL" before the command is the same as BERTH_ADDR. */
	while (argc >= 3 && !strncmp(argv[1], "--addr", 6)) {
		if (argv[1][6] == '=') {
			setenv("BERTH_ADDR", argv[1] + 7, 1);
			argv++;
			argc--;
		} else if (!argv[1][6]) {
			setenv("BERTH_ADDR", argv[2], 1);
			argv += 2;
			argc -= 2;
		} else {
			break;
		}
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 2, argv + 2);
	fprintf(stderr, "berth: unknown command '%s' (see 'berth --help')\n", argv[1]);
	return 2;
}
