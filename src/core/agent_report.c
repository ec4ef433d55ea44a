/* agent_report.c - an agent's watch or status body, read without a tree
 * (agent_report.h). */
#include "core/agent_report.h"

#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"
#include "core/json_scan.h"
#include "core/lifecycle.h"

/* The arena holds every decoded string: a string never decodes longer
 * than it is written (quotes included, which make room for its NUL), so
 * the text's length is enough and pointers into it stay put. */
struct reader {
	struct json_scan sc;
	struct agent_report *r;
	size_t used;
	size_t cap; /* of r->tasks */
};

/* A string member's value into the arena; NULL (skipped, checked) when the
 * value is not a string; *bad on bad text. */
static const char *read_string(struct reader *rd, size_t *len, bool *bad)
{
	int c = json_scan_peek(&rd->sc);
	if (c != '"') {
		*bad = !json_scan_skip(&rd->sc);
		return NULL;
	}
	char *out = rd->r->arena + rd->used;
	size_t n;
	if (!json_scan_string(&rd->sc, out, &n)) {
		*bad = true;
		return NULL;
	}
	rd->used += n + 1;
	if (len)
		*len = n;
	return out;
}

/* An integer member's value: *has when it is one. */
static bool read_int(struct reader *rd, bool *has, int64_t *v)
{
	int c = json_scan_peek(&rd->sc);
	if (c != '-' && (c < '0' || c > '9'))
		return json_scan_skip(&rd->sc);
	bool is_int;
	if (!json_scan_number(&rd->sc, v, &is_int))
		return false;
	*has = is_int;
	return true;
}

static bool read_logs(struct reader *rd, struct agent_task_report *t)
{
	if (json_scan_peek(&rd->sc) != '{')
		return json_scan_skip(&rd->sc);
	t->has_logs = true;
	if (!json_scan_open(&rd->sc))
		return false;
	const char *k;
	size_t kl;
	int r;
	bool bad = false;
	while ((r = json_scan_next(&rd->sc, &k, &kl)) > 0) {
		struct agent_log_tail *tail = json_scan_key_is(k, kl, "stdout")	  ? &t->out
					      : json_scan_key_is(k, kl, "stderr") ? &t->err
										  : NULL;
		if (!tail) {
			if (!json_scan_skip(&rd->sc))
				return false;
			continue;
		}
		tail->given = true;
		tail->text = read_string(rd, &tail->len, &bad);
		if (bad)
			return false;
	}
	return r == 0;
}

/* One entry of the list: kept when it has a string id. */
static bool read_task(struct reader *rd)
{
	if (json_scan_peek(&rd->sc) != '{')
		return json_scan_skip(&rd->sc);
	if (!json_scan_open(&rd->sc))
		return false;
	struct agent_task_report t = {.state = -1};
	const char *k;
	size_t kl;
	int r;
	bool bad = false;
	while ((r = json_scan_next(&rd->sc, &k, &kl)) > 0) {
		if (json_scan_key_is(k, kl, "id")) {
			t.id = read_string(rd, NULL, &bad);
		} else if (json_scan_key_is(k, kl, "state")) {
			/* Parsed here, outside the cluster's lock; the text is not
			 * kept. */
			size_t mark = rd->used;
			const char *s = read_string(rd, NULL, &bad);
			if (s)
				t.state = task_state_parse(s);
			rd->used = mark;
		} else if (json_scan_key_is(k, kl, "pid")) {
			bad = !read_int(rd, &t.has_pid, &t.pid);
		} else if (json_scan_key_is(k, kl, "exit_code")) {
			bad = !read_int(rd, &t.has_exit_code, &t.exit_code);
		} else if (json_scan_key_is(k, kl, "message")) {
			t.message = read_string(rd, NULL, &bad);
		} else if (json_scan_key_is(k, kl, "address")) {
			size_t mark = rd->used;
			const char *s = read_string(rd, NULL, &bad);
			t.has_address = s && ip4_parse(s, &t.address) == 0;
			rd->used = mark;
		} else if (json_scan_key_is(k, kl, "logs")) {
			bad = !read_logs(rd, &t);
		} else {
			bad = !json_scan_skip(&rd->sc);
		}
		if (bad)
			return false;
	}
	if (r < 0)
		return false;
	if (!t.id)
		return true;
	struct agent_report *rep = rd->r;
	if (rep->ntasks == rd->cap) {
		rd->cap = rd->cap ? rd->cap * 2 : 16;
		rep->tasks = xrealloc(rep->tasks, rd->cap * sizeof *rep->tasks);
	}
	rep->tasks[rep->ntasks++] = t;
	return true;
}

static bool read_list(struct reader *rd)
{
	if (json_scan_peek(&rd->sc) != '[') {
		rd->r->list = AGENT_LIST_NOT_ARRAY;
		return json_scan_skip(&rd->sc);
	}
	rd->r->list = AGENT_LIST_ARRAY;
	if (!json_scan_open(&rd->sc))
		return false;
	int r;
	while ((r = json_scan_next(&rd->sc, NULL, NULL)) > 0)
		if (!read_task(rd))
			return false;
	return r == 0;
}

static bool read_body(struct reader *rd, enum agent_call call)
{
	struct agent_report *r = rd->r;
	const char *list = call == AGENT_CALL_STATUS ? "updates" : "tasks";
	if (json_scan_peek(&rd->sc) != '{' || !json_scan_open(&rd->sc))
		return false;
	const char *k;
	size_t kl;
	int more;
	bool bad = false;
	while ((more = json_scan_next(&rd->sc, &k, &kl)) > 0) {
		if (json_scan_key_is(k, kl, "name"))
			r->name = read_string(rd, NULL, &bad);
		else if (json_scan_key_is(k, kl, "known_version"))
			bad = !read_int(rd, &r->has_known_version, &r->known_version);
		else if (json_scan_key_is(k, kl, "wait_ms"))
			bad = !read_int(rd, &r->has_wait_ms, &r->wait_ms);
		else if (json_scan_key_is(k, kl, "endpoints_version"))
			bad = !read_int(rd, &r->has_endpoints_version, &r->endpoints_version);
		else if (json_scan_key_is(k, kl, list))
			bad = !read_list(rd);
		else
			bad = !json_scan_skip(&rd->sc);
		if (bad)
			return false;
	}
	return more == 0 && json_scan_end(&rd->sc);
}

/* The message for a body this reader refused: jansson's, as the server
 * always gave (bad bodies are rare: read twice). */
static void refusal(const char *text, size_t len, struct berr *err)
{
	json_error_t je;
	json_t *j = json_loadb(text ? text : "", text ? len : 0, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		berr_set(err, 400, "malformed JSON at line %d column %d: %s", je.line, je.column,
			 je.text);
	else if (!json_is_object(j))
		berr_set(err, 400, "malformed request: expected a JSON object");
	else
		berr_set(err, 400, "malformed JSON"); /* never: both agree (fuzzed) */
	json_decref(j);
}

struct agent_report *agent_report_parse(const char *text, size_t len, enum agent_call call,
					struct berr *err)
{
	struct reader rd = {0};
	rd.r = xcalloc(1, sizeof *rd.r);
	rd.r->arena = xmalloc(len + 1);
	json_scan_init(&rd.sc, text, len);
	bool ok = read_body(&rd, call);
	json_scan_release(&rd.sc);
	if (!ok) {
		agent_report_free(rd.r);
		refusal(text, len, err);
		return NULL;
	}
	return rd.r;
}

struct agent_report *agent_report_from_json(const json_t *body, enum agent_call call,
					    struct berr *err)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!text) {
		berr_set(err, 400, "malformed request: expected a JSON object");
		return NULL;
	}
	/* The strings are copied to the report's arena: the text can go. */
	struct agent_report *r = agent_report_parse(text, strlen(text), call, err);
	free(text);
	return r;
}

void agent_report_free(struct agent_report *r)
{
	if (!r)
		return;
	free(r->tasks);
	free(r->arena);
	free(r);
}
