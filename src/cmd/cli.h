/* cli.h - what the command front ends share: argument scanning, the
 * client to the server, error reporting and tables. */
#ifndef BERTH_CLI_H
#define BERTH_CLI_H

#include <jansson.h>
#include <stdbool.h>

#include "core/http_client.h"
#include "core/spec.h"

struct cli_opt {
	const char *name;  /* "--addr" */
	const char *alias; /* "-f" or NULL */
	bool takes_value;
	bool multi; /* may repeat (values collected) */
	const char *help;
	/* filled by cli_parse */
	bool set;
	const char *value;
	const char **values;
	size_t nvalues;
};

/* Parse argv (after the command words). Options may come before or after
 * positionals; "--x=v" and "--x v" both work. Unknown options and missing
 * values print a one-line error and return -1. Positionals go to pos. */
int cli_parse(int argc, char **argv, struct cli_opt *opts, size_t nopts, const char ***pos,
	      size_t *npos);
void cli_usage(const char *usage, const struct cli_opt *opts, size_t nopts);
/* How every command starts: `berth CMD` alone, `--help` or `-h` as its first
 * word, prints the usage (exit 2 alone, 0 asked); else the options after
 * the verb (argv[0]) are parsed into opts and pos, and --help among them
 * prints the usage. Returns -1 when the command goes on, else its exit
 * status. */
int cli_begin(int argc, char **argv, const char *usage, struct cli_opt *opts, size_t nopts,
	      const char ***pos, size_t *npos);
struct cli_opt *cli_get(struct cli_opt *opts, size_t nopts, const char *name);

/* The client to the server: the address from --addr, else BERTH_ADDR, else
 * the user's configuration (cli_write_client_config), else
 * https://127.0.0.1:7070; the CA from BERTH_CACERT (--cacert) or the
 * configuration; the token from BERTH_TOKEN (--token), BERTH_TOKEN_FILE or
 * the configuration. The configuration's credentials are used only for
 * its own address. */
/* A list of servers with each one's scheme: https:// unless it says http://. */
char *cli_server_urls(const char *list);
struct http_client *cli_client(const char *addr_flag);
/* The CA file cli_client would use for addr_flag (NULL: the system's);
 * the caller frees. */
char *cli_cacert(const char *addr_flag);
/* Write the user's client configuration ($XDG_CONFIG_HOME/berth/
 * config.json or ~/.config/berth/config.json, 0600): the address and the
 * server's DATA/client/ files. */
int cli_write_client_config(const char *addr, const char *data_dir);

/* `berth task logs` (cmd_logs.c): the task's stream from its agent, or
 * the tail the server kept when its node is gone. Exit status. */
int cli_task_logs(struct http_client *hc, const char *ref, bool stderr_only, bool follow);

/* Print "berth: MSG" to stderr; returns 1 (use as exit status). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Read and parse a spec file; prints the error and returns NULL on failure. */
struct job_spec *cli_load_spec(const char *path);

/* GET a paged list (GET path?limit=…&after=…[&query], docs/api.md) page
 * after page into one array *out (new ref); query may be NULL. */
int cli_get_all_pages(struct http_client *hc, const char *path, const char *query,
		      const char *items_key, json_t **out, struct berr *err);

/* The same list printed as `--json` prints it (cli_print_json of that
 * array), built from the server's text without parsing it into a tree:
 * much cheaper for large lists. */
int cli_print_all_pages(struct http_client *hc, const char *path, const char *query,
			const char *items_key, struct berr *err);

/* A reply's JSON text printed as cli_print_json would print it parsed;
 * -1 with err when it is not valid JSON. */
int cli_print_json_text(const char *s, size_t len, struct berr *err);

/* Print JSON to stdout, indented. */
void cli_print_json(json_t *j);

/* Human-readable sizes ("64 MiB"). */
void cli_format_size(unsigned long long bytes, char *buf, size_t n);

#endif
