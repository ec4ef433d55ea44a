/* berth events: the cluster's event stream (GET /v1/events), one line per
 * event, or its JSON; --follow keeps reading, and reconnects from the last
 * index seen when the stream breaks (a server restart, a leader change). */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "cmd/commands.h"

enum { E_ADDR, E_JOB, E_NODE, E_TYPE, E_SINCE, E_FOLLOW, E_JSON, E_HELP, E_COUNT };

static const char *const usage_text =
    "berth events [--job KEY] [--node NAME] [--type task,job,node,update,leader]\n"
    "             [--since INDEX] [--follow] [--json]\n\n"
    "Print the cluster's events (the server keeps the last 65536): one line each\n"
    "with the time, the type, the job/instance (or node), the state and a message.\n"
    "--since INDEX prints only the events after INDEX; --follow keeps printing\n"
    "new ones as they happen.";

/* The SSE parser's state: the frame being read. */
struct reader {
	struct sbuf line;
	char *data;	  /* the frame's data line */
	char last_id[32]; /* the last event's index */
	bool json;
	bool cut; /* the server cut the stream off (a slow reader) */
	unsigned long printed;
};

static void print_event(struct reader *r, const char *data)
{
	if (r->json) {
		printf("%s\n", data);
		fflush(stdout);
		r->printed++;
		return;
	}
	json_t *e = json_loads(data, 0, NULL);
	if (!e)
		return;
	const char *type = json_string_value(json_object_get(e, "type"));
	const char *job = json_string_value(json_object_get(e, "job"));
	const char *node = json_string_value(json_object_get(e, "node"));
	const char *state = json_string_value(json_object_get(e, "state"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	json_t *inst = json_object_get(e, "instance");
	char when[64], what[300];
	time_format_ms((int64_t)json_integer_value(json_object_get(e, "time")), when, sizeof when);
	if (job && json_is_integer(inst))
		snprintf(what, sizeof what, "%s/%lld", job, (long long)json_integer_value(inst));
	else
		snprintf(what, sizeof what, "%s", job ? job : node ? node : "-");
	printf("%-24s %-7s %-32s %-12s %s\n", when, type ? type : "?", what, state ? state : "-",
	       msg ? msg : "");
	fflush(stdout);
	json_decref(e);
	r->printed++;
}

static void end_frame(struct reader *r)
{
	if (!r->data)
		return;
	json_t *e = json_loads(r->data, 0, NULL);
	const char *type = e ? json_string_value(json_object_get(e, "type")) : NULL;
	if (type && !strcmp(type, "cut"))
		r->cut = true;
	json_decref(e);
	print_event(r, r->data);
	free(r->data);
	r->data = NULL;
}

static void on_line(struct reader *r, const char *line)
{
	if (!*line) {
		end_frame(r);
		return;
	}
	if (*line == ':')
		return; /* a keep-alive */
	if (!strncmp(line, "id: ", 4))
		snprintf(r->last_id, sizeof r->last_id, "%s", line + 4);
	else if (!strncmp(line, "data: ", 6)) {
		free(r->data);
		r->data = xstrdup(line + 6);
	}
}

static bool on_data(void *ud, const char *data, size_t len)
{
	struct reader *r = ud;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n') {
			on_line(r, r->line.buf);
			r->line.len = 0;
			r->line.buf[0] = 0;
		} else if (data[i] != '\r') {
			sbuf_add(&r->line, data + i, 1);
		}
	}
	return true;
}

static void add_query(struct sbuf *q, const char *key, const char *value)
{
	if (!value)
		return;
	sbuf_addf(q, "%s%s=", q->len ? "&" : "?", key);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if (isalnum(*p) || strchr("-_.~/,", *p))
			sbuf_add(q, (const char *)p, 1);
		else
			sbuf_addf(q, "%%%02X", *p);
}

static bool is_index(const char *s)
{
	if (!s || !*s || strlen(s) > 20)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

int cmd_events(int argc, char **argv)
{
	struct cli_opt o[E_COUNT] = {
	    [E_ADDR] = {"--addr", NULL, true, false, "server address (default $BERTH_ADDR)"},
	    [E_JOB] = {"--job", NULL, true, false, "only this job's events (ROLE/ENV/NAME)"},
	    [E_NODE] = {"--node", NULL, true, false, "only this node's events"},
	    [E_TYPE] = {"--type", NULL, true, false,
			"only these types: task, job, node, update, leader (comma-separated)"},
	    [E_SINCE] = {"--since", NULL, true, false, "only events after this index"},
	    [E_FOLLOW] = {"--follow", "-f", false, false, "keep printing new events"},
	    [E_JSON] = {"--json", NULL, false, false, "print each event's JSON, one a line"},
	    [E_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	if (cli_parse(argc, argv, o, E_COUNT, &pos, &npos) < 0)
		return 2;
	if (o[E_HELP].set) {
		cli_usage(usage_text, o, E_COUNT);
		return 0;
	}
	if (npos)
		return cli_fail("unexpected argument '%s' (see 'berth events --help')", pos[0]);
	struct berr err = {0};
	if (o[E_JOB].set && job_key_check(o[E_JOB].value, &err) < 0)
		return cli_fail("--job: %s", err.msg);
	if (o[E_SINCE].set && !is_index(o[E_SINCE].value))
		return cli_fail("--since '%s': an event index (a whole number) is expected",
				o[E_SINCE].value);
	struct reader r = {.json = o[E_JSON].set};
	sbuf_init(&r.line);
	if (o[E_SINCE].set)
		snprintf(r.last_id, sizeof r.last_id, "%s", o[E_SINCE].value);
	struct http_client *hc = cli_client(o[E_ADDR].value);
	int rc = 0;
	for (int tries = 0;;) {
		struct sbuf q;
		sbuf_init(&q);
		add_query(&q, "follow", o[E_FOLLOW].set ? "true" : "false");
		add_query(&q, "index", r.last_id[0] ? r.last_id : NULL);
		add_query(&q, "job", o[E_JOB].value);
		add_query(&q, "node", o[E_NODE].value);
		add_query(&q, "type", o[E_TYPE].value);
		char *path = xasprintf("/v1/events%s", q.buf);
		sbuf_release(&q);
		struct http_response resp = {0};
		unsigned long before = r.printed;
		r.cut = false;
		int hr = http_stream(hc, path, on_data, &r, &resp, &err);
		free(path);
		end_frame(&r);
		if (hr == 0 && resp.status >= 400) {
			json_t *j = json_loads(resp.body ? resp.body : "", 0, NULL);
			const char *m = j ? json_string_value(json_object_get(j, "error")) : NULL;
			rc = cli_fail("%s (HTTP %ld)", m ? m : "the server refused the stream",
				      resp.status);
			json_decref(j);
			http_response_release(&resp);
			break;
		}
		http_response_release(&resp);
		if (!o[E_FOLLOW].set && hr == 0)
			break;
		if (hr < 0 && !o[E_FOLLOW].set) {
			rc = cli_fail("%s", err.msg);
			break;
		}
		/* Following: the stream broke or was cut; go on from the last
		 * index seen, on whichever server answers (a few tries in a row
		 * when nothing came at all). */
		tries = r.printed > before ? 0 : tries + 1;
		if (tries > 30) {
			rc = cli_fail("%s", hr < 0 ? err.msg : "the event stream keeps ending");
			break;
		}
		berr_clear(&err);
		struct timespec ts = {1, 0};
		nanosleep(&ts, NULL);
	}
	free(r.data);
	sbuf_release(&r.line);
	http_client_free(hc);
	return rc;
}
