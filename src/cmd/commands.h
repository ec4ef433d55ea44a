/* commands.h - every `berth` command's entry point (argv after the command
 * words). Each returns the process exit status. */
#ifndef BERTH_COMMANDS_H
#define BERTH_COMMANDS_H

int cmd_up(int argc, char **argv);
int cmd_server(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_supervise(int argc, char **argv);
int cmd_task_exec(int argc, char **argv);
int cmd_job(int argc, char **argv);
int cmd_task(int argc, char **argv);
/* berth task exec (cmd_exec.c): argv[0] = "exec". */
int cmd_task_exec_cli(int argc, char **argv);
/* berth job logs (cmd_logs.c): argv[0] = "logs". */
int cmd_job_logs(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_update(int argc, char **argv);
int cmd_cron(int argc, char **argv);
int cmd_admin(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_secret(int argc, char **argv);
int cmd_quota(int argc, char **argv);
int cmd_events(int argc, char **argv);

#endif
