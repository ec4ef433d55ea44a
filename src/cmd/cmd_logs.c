/* berth task logs KEY/INSTANCE[/TASK_ID]|TASK_ID [--stderr] [-f]
 * berth job logs KEY [--stderr] [-f]
 *
 * A task's logs come from its agent (the server redirects there). When the
 * agent cannot be reached or its node is DOWN (410), the server's kept
 * tail of the instance is shown instead (GET .../logs?kept=1): its stdout
 * to stdout, its stderr to stderr, after a line on stderr saying so.
 * `job logs` prints every instance's lines, each prefixed "INSTANCE| ";
 * with -f it then polls every running instance in turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "core/base64.h"

enum { CHUNK_OK = 0, CHUNK_GONE = 1, CHUNK_ERROR = -1 };

/* One chunk of a task's stream from offset: CHUNK_OK with resp filled
 * (the caller releases it), CHUNK_GONE when only the kept tail can tell,
 * CHUNK_ERROR with msg set. */
static int fetch_chunk(struct http_client *hc, const char *ref, const char *stream,
		       long long offset, struct http_response *resp, char *msg, size_t n)
{
	char path[700];
	snprintf(path, sizeof path, "/v1/tasks/%s/logs?stream=%s&offset=%lld", ref, stream, offset);
	struct berr err = {0};
	if (http_request(hc, "GET", path, NULL, 30000, resp, &err) < 0) {
		snprintf(msg, n, "%s", err.msg);
		/* The server answered with a redirect to an agent that is
		 * gone, or no server answered: the kept tail will tell. */
		return CHUNK_GONE;
	}
	if (resp->status == 200)
		return CHUNK_OK;
	json_t *j = json_loadb(resp->body, resp->len, 0, NULL);
	const char *m = j ? json_string_value(json_object_get(j, "error")) : NULL;
	snprintf(msg, n, "%s", m ? m : "server error");
	int r = resp->status == 410 ? CHUNK_GONE : CHUNK_ERROR;
	json_decref(j);
	http_response_release(resp);
	return r;
}

/* Write text with each line prefixed (prefix NULL: as is). *midline
 * tracks whether the last write ended inside a line. */
static void put_lines(FILE *f, const char *prefix, const char *buf, size_t len, bool *midline)
{
	if (!prefix) {
		fwrite(buf, 1, len, f);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (!*midline)
			fputs(prefix, f);
		fputc(buf[i], f);
		*midline = buf[i] != '\n';
	}
}

/* The kept tail of ref's instance: 0, or 1 with the reason printed. */
static int print_kept(struct http_client *hc, const char *ref, bool stderr_only, const char *prefix,
		      const char *why)
{
	char path[700];
	snprintf(path, sizeof path, "/v1/tasks/%s/logs?kept=1", ref);
	json_t *tail = NULL;
	struct berr err = {0};
	if (http_json(hc, "GET", path, NULL, 15000, &tail, &err) < 0)
		return cli_fail("cannot read logs of '%s': %s%s%s", ref, why ? why : err.msg,
				why ? "; and no tail kept: " : "", why ? err.msg : "");
	fflush(stdout);
	fprintf(stderr, "%s-- the log tail the server kept of task %s (%s on node %s, %s) --\n",
		prefix ? prefix : "", json_string_value(json_object_get(tail, "task")),
		json_string_value(json_object_get(tail, "state")),
		json_string_value(json_object_get(tail, "node")),
		json_string_value(json_object_get(tail, "ended")));
	const char *streams[] = {"stdout", "stderr"};
	for (int i = stderr_only ? 1 : 0; i < 2; i++) {
		const char *b = json_string_value(json_object_get(tail, streams[i]));
		char *data = NULL;
		size_t len = 0;
		if (!b || base64_decode(b, strlen(b), &data, &len) < 0)
			continue;
		/* --stderr: the stream asked for, on stdout as `task logs` does. */
		FILE *f = i == 1 && !stderr_only ? stderr : stdout;
		bool mid = false;
		put_lines(f, prefix, data, len, &mid);
		if (mid)
			fputc('\n', f);
		fflush(f);
		free(data);
	}
	json_decref(tail);
	return 0;
}

/* Print what there is from *offset on: 0 (more may come), CHUNK_GONE when
 * the kept tail was printed instead, or 1 on an error (printed). */
static int drain(struct http_client *hc, const char *ref, bool stderr_only, const char *prefix,
		 long long *offset, bool *midline, bool *got)
{
	*got = false;
	for (;;) {
		struct http_response resp;
		char msg[600];
		int r = fetch_chunk(hc, ref, stderr_only ? "stderr" : "stdout", *offset, &resp, msg,
				    sizeof msg);
		if (r == CHUNK_GONE) {
			if (*offset > 0)
				return CHUNK_GONE; /* what the agent had was printed */
			return print_kept(hc, ref, stderr_only, prefix, msg) ? 1 : CHUNK_GONE;
		}
		if (r == CHUNK_ERROR)
			return cli_fail("cannot read logs of '%s': %s", ref, msg);
		put_lines(stdout, prefix, resp.body, resp.len, midline);
		fflush(stdout);
		*offset += (long long)resp.len;
		bool more = resp.len > 0;
		http_response_release(&resp);
		if (!more)
			return 0;
		*got = true;
	}
}

int cli_task_logs(struct http_client *hc, const char *ref_in, bool stderr_only, bool follow)
{
	/* KEY/INSTANCE/TASK_ID: the task id names it. */
	const char *ref = ref_in;
	int slashes = 0;
	for (const char *p = ref_in; *p; p++)
		slashes += *p == '/';
	if (slashes == 4)
		ref = strrchr(ref_in, '/') + 1;
	long long offset = 0;
	bool mid = false, got;
	for (;;) {
		int r = drain(hc, ref, stderr_only, NULL, &offset, &mid, &got);
		if (r == CHUNK_GONE)
			return 0;
		if (r)
			return r;
		if (!follow)
			return 0;
		usleep(250000);
	}
}

static int job_logs(struct http_client *hc, const char *key, bool stderr_only, bool follow)
{
	char path[600];
	snprintf(path, sizeof path, "/v1/jobs/%s", key);
	json_t *st = NULL;
	struct berr err = {0};
	if (http_json(hc, "GET", path, NULL, 10000, &st, &err) < 0)
		return cli_fail("%s", err.msg);
	int n = (int)json_integer_value(json_object_get(st, "instances"));
	json_decref(st);
	if (n <= 0)
		return 0;
	long long *off = xcalloc((size_t)n, sizeof *off);
	bool *mid = xcalloc((size_t)n, sizeof *mid), *done = xcalloc((size_t)n, sizeof *done);
	int rc = 0;
	for (;;) {
		bool any = false;
		for (int i = 0; i < n; i++) {
			if (done[i])
				continue;
			char ref[600], prefix[32];
			snprintf(ref, sizeof ref, "%s/%d", key, i);
			snprintf(prefix, sizeof prefix, "%d| ", i);
			bool got = false;
			int r = drain(hc, ref, stderr_only, prefix, &off[i], &mid[i], &got);
			if (mid[i] && !follow) {
				fputc('\n', stdout);
				mid[i] = false;
			}
			if (r == CHUNK_GONE || (r && !follow)) {
				done[i] = true;
				if (r == 1)
					rc = 1;
			}
			any |= got;
		}
		if (!follow)
			break;
		if (!any)
			usleep(250000);
	}
	free(off);
	free(mid);
	free(done);
	return rc;
}

int cmd_job_logs(int argc, char **argv)
{
	const char *usage = "berth job logs KEY [--stderr] [-f|--follow] [--addr URL]";
	const char *key = NULL, *addr = NULL;
	bool err_only = false, follow = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			printf(
			    "usage: %s\n\nEvery instance's logs, each line prefixed 'INSTANCE| '.\n"
			    "\noptions:\n"
			    "  --stderr                     show stderr instead of stdout\n"
			    "  -f, --follow                 keep printing new output\n"
			    "  --addr VALUE                 server address (default "
			    "$BERTH_ADDR)\n",
			    usage);
			return 0;
		}
		if (!strcmp(a, "--stderr"))
			err_only = true;
		else if (!strcmp(a, "-f") || !strcmp(a, "--follow"))
			follow = true;
		else if (!strcmp(a, "--addr") && i + 1 < argc)
			addr = argv[++i];
		else if (!strncmp(a, "--addr=", 7))
			addr = a + 7;
		else if (a[0] == '-') {
			cli_fail("unknown option '%s' (see 'berth job logs --help')", a);
			return 2;
		} else if (!key)
			key = a;
		else {
			cli_fail("usage: %s", usage);
			return 2;
		}
	}
	if (!key) {
		cli_fail("usage: %s", usage);
		return 2;
	}
	struct http_client *hc = cli_client(addr);
	int rc = job_logs(hc, key, err_only, follow);
	http_client_free(hc);
	return rc;
}
