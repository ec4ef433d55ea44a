/* sim_wire.c - what the simulated agents say and hear: the register and
 * watch bodies they write, the watch replies they scan (without building a
 * JSON tree: a reply can list thousands of tasks), and a small HTTP/1.1
 * response parser for their non-blocking connections. */
#include "tools/simulator-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lifecycle.h"

/* ---- JSON out --------------------------------------------------------------- */

static void json_str(struct sbuf *b, const char *s, size_t n)
{
	sbuf_add(b, "\"", 1);
	size_t run = 0; /* plain characters go in runs */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '"' && c != '\\' && c >= 0x20)
			continue;
		sbuf_add(b, s + run, i - run);
		run = i + 1;
		if (c < 0x20) {
			sbuf_addf(b, "\\u%04x", c);
		} else {
			char e[2] = {'\\', (char)c};
			sbuf_add(b, e, 2);
		}
	}
	sbuf_add(b, s + run, n - run);
	sbuf_add(b, "\"", 1);
}

void json_strz(struct sbuf *b, const char *s)
{
	json_str(b, s, strlen(s));
}

/* The full-state report, marking the ended tasks it carries. */
static void add_report(struct sbuf *b, struct sim_agent *a)
{
	sbuf_adds(b, ",\"tasks\":[");
	for (uint32_t i = 0; i < a->ntasks; i++) {
		struct sim_task *t = &a->tasks[i];
		sbuf_adds(b, i ? ",{\"id\":" : "{\"id\":");
		json_strz(b, t->id);
		/* No printf: this runs for every task of every report. */
		sbuf_adds(b, ",\"state\":\"");
		sbuf_adds(b, task_state_name(t->state));
		sbuf_adds(b, "\",\"pid\":0");
		if (t->state == TASK_RUNNING) {
			sbuf_adds(b, ",\"message\":\"\"}");
			continue;
		}
		t->flags |= TF_END_REPORTED;
		sbuf_addf(b, ",\"message\":\"%s\",\"exit_code\":%u}",
			  t->state == TASK_FAILED ? "simulated failure" : "killed",
			  (unsigned)t->exit_code);
	}
	sbuf_adds(b, "]");
}

static void add_attrs(struct sbuf *b, const struct sim *s, const struct sim_agent *a,
		      const char *name)
{
	const char *sep = "";
	sbuf_adds(b, "\"attributes\":{");
	if (!s->has_host) {
		sbuf_adds(b, "\"host\":");
		json_strz(b, name);
		sep = ",";
	}
	if (!s->has_os) {
		sbuf_addf(b, "%s\"os\":\"linux\"", sep);
		sep = ",";
	}
	if (s->o.racks > 0 && !s->has_rack) {
		sbuf_addf(b, "%s\"rack\":\"r%u\"", sep,
			  (a->index + s->o.first) % (unsigned)s->o.racks);
		sep = ",";
	}
	if (s->o.zones > 0 && !s->has_zone) {
		sbuf_addf(b, "%s\"zone\":\"z%u\"", sep,
			  (a->index + s->o.first) % (unsigned)s->o.zones);
		sep = ",";
	}
	if (s->user_attrs[0])
		sbuf_addf(b, "%s%s", sep, s->user_attrs + 1); /* skip its leading comma */
	sbuf_adds(b, "}");
}

void build_register(struct sim_loop *l, struct sim_agent *a, struct sbuf *b)
{
	const struct sim *s = l->sim;
	char name[160];
	agent_name(s, a, name, sizeof name);
	sbuf_adds(b, "{\"name\":");
	json_strz(b, name);
	sbuf_adds(b, ",");
	add_attrs(b, s, a, name);
	sbuf_addf(b,
		  ",\"resources\":{\"cpu\":%.6g,\"memory\":%llu,\"disk\":%llu,\"port_lo\":%d,"
		  "\"port_hi\":%d},\"addr\":\"\"",
		  s->o.cpu, (unsigned long long)s->o.memory, (unsigned long long)s->o.disk,
		  s->o.port_lo, s->o.port_hi);
	add_report(b, a);
	sbuf_adds(b, "}");
}

bool want_full_report(const struct sim_agent *a, int64_t now)
{
	return a->force_full || a->gen != a->acked_gen ||
	       now - a->last_full_ms >= FULL_REPORT_EVERY_MS;
}

void build_watch(struct sim_loop *l, struct sim_agent *a, struct sbuf *b, bool full)
{
	char name[160];
	agent_name(l->sim, a, name, sizeof name);
	/* Jitter the long poll (90-110% of the heartbeat) so that agents that
	 * were answered together, by one commit, drift apart again. */
	int32_t hb = a->heartbeat_ms > 0 ? a->heartbeat_ms : 1000;
	int32_t wait = hb - hb / 10 + (int32_t)(rnd_next(l) % (uint32_t)(hb / 5 + 1));
	/* A certificate to renew: the poll ends in time for it. */
	if (a->renew_ms) {
		int64_t left = a->renew_ms - time_mono_ms();
		if (left < wait)
			wait = left > 0 ? (int32_t)left : 0;
	}
	sbuf_adds(b, "{\"name\":");
	json_strz(b, name);
	sbuf_addf(b, ",\"known_version\":%llu,\"wait_ms\":%d", (unsigned long long)a->known_version,
		  wait);
	if (full)
		add_report(b, a);
	sbuf_adds(b, "}");
}

/* ---- JSON in: a bounded scanner for the watch reply ----------------------
 * A reply holds the node's whole desired set, every task with its spec, and
 * comes back after every change: parsing it into a tree would cost more
 * than everything else the simulator does. We need only each task's id and
 * two env values, so we walk the text and skip the rest. Malformed input
 * makes the scan fail, never read out of bounds. */

struct scan {
	const char *p, *end;
};

static void sc_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

/* At '"': the raw contents (escapes left as they are). */
static bool sc_string(struct scan *s, const char **str, size_t *len)
{
	if (s->p >= s->end || *s->p != '"')
		return false;
	const char *start = ++s->p;
	while (s->p < s->end) {
		const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
		if (!q)
			return false;
		size_t bs = 0;
		for (const char *r = q; r > start && r[-1] == '\\'; r--)
			bs++;
		s->p = q + 1;
		if (bs % 2 == 0) {
			*str = start;
			*len = (size_t)(q - start);
			return true;
		}
	}
	return false;
}

static bool sc_skip(struct scan *s)
{
	sc_ws(s);
	if (s->p >= s->end)
		return false;
	const char *str;
	size_t len;
	if (*s->p == '"')
		return sc_string(s, &str, &len);
	if (*s->p != '{' && *s->p != '[') {
		/* number, true, false, null */
		while (s->p < s->end && !strchr(",}] \n\r\t", *s->p))
			s->p++;
		return true;
	}
	int depth = 0;
	while (s->p < s->end) {
		char c = *s->p;
		if (c == '"') {
			if (!sc_string(s, &str, &len))
				return false;
			continue;
		}
		s->p++;
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return true;
	}
	return false;
}

static bool sc_open(struct scan *s, char c)
{
	sc_ws(s);
	if (s->p >= s->end || *s->p != c)
		return false;
	s->p++;
	return true;
}

/* Next member of an object: 1 with *key set and s->p at the value, 0 at the
 * end, -1 on malformed input. */
static int sc_member(struct scan *s, const char **key, size_t *klen)
{
	sc_ws(s);
	if (s->p < s->end && *s->p == ',') {
		s->p++;
		sc_ws(s);
	}
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	if (!sc_string(s, key, klen) || !sc_open(s, ':'))
		return -1;
	sc_ws(s);
	return 1;
}

/* Next element of an array: 1 with s->p at it, 0 at the end, -1. */
static int sc_element(struct scan *s)
{
	sc_ws(s);
	if (s->p < s->end && *s->p == ',') {
		s->p++;
		sc_ws(s);
	}
	if (s->p >= s->end)
		return -1;
	if (*s->p == ']') {
		s->p++;
		return 0;
	}
	return 1;
}

static bool key_is(const char *k, size_t n, const char *want)
{
	return n == strlen(want) && !memcmp(k, want, n);
}

/* The simulation knobs in task.env. */
static bool scan_env(struct scan *s, struct desired *d)
{
	if (!sc_open(s, '{'))
		return false;
	const char *k;
	size_t kn;
	int r;
	while ((r = sc_member(s, &k, &kn)) > 0) {
		bool fail = key_is(k, kn, "BERTH_SIM_FAIL_AFTER");
		bool code = key_is(k, kn, "BERTH_SIM_EXIT_CODE");
		const char *v;
		size_t vn;
		if (!fail && !code) {
			if (!sc_skip(s))
				return false;
			continue;
		}
		if (!sc_string(s, &v, &vn))
			return false;
		char buf[32];
		if (vn >= sizeof buf)
			continue;
		memcpy(buf, v, vn);
		buf[vn] = 0;
		uint64_t ms;
		int64_t ec;
		if (fail && parse_duration(buf, &ms) == 0)
			d->fail_after_ms = (int64_t)ms;
		if (code && parse_int64(buf, &ec) == 0 && ec >= 0 && ec <= 255)
			d->exit_code = (uint8_t)ec;
	}
	return r == 0;
}

static bool scan_task_spec(struct scan *s, struct desired *d)
{
	if (!sc_open(s, '{'))
		return false;
	const char *k;
	size_t kn;
	int r;
	while ((r = sc_member(s, &k, &kn)) > 0) {
		if (key_is(k, kn, "env") && s->p < s->end && *s->p == '{') {
			if (!scan_env(s, d))
				return false;
		} else if (!sc_skip(s)) {
			return false;
		}
	}
	return r == 0;
}

static bool scan_desired_task(struct scan *s, struct desired *d)
{
	memset(d, 0, sizeof *d);
	d->fail_after_ms = -1;
	d->exit_code = 1;
	if (!sc_open(s, '{'))
		return false;
	const char *k;
	size_t kn;
	int r;
	while ((r = sc_member(s, &k, &kn)) > 0) {
		if (key_is(k, kn, "id")) {
			size_t n;
			if (!sc_string(s, &d->id, &n) || n > 1024)
				return false;
			d->len = (uint32_t)n;
		} else if (key_is(k, kn, "task") && s->p < s->end && *s->p == '{') {
			if (!scan_task_spec(s, d))
				return false;
		} else if (!sc_skip(s)) {
			return false;
		}
	}
	/* Ids are the server's own [a-z0-9-]; one with escapes is not ours to hold. */
	return r == 0 && d->id && d->len && !memchr(d->id, '\\', d->len);
}

/* Parse a watch reply: its version, and (only when it differs from `known`)
 * the desired tasks into l->want. Returns the number of tasks, -1 when the
 * version is unchanged, -2 on malformed input. */
long scan_watch_reply(struct sim_loop *l, const char *body, size_t len, uint64_t known,
		      uint64_t *version, bool *report, int32_t *heartbeat_ms)
{
	struct scan s = {body, body + len};
	const char *k, *tasks_at = NULL;
	size_t kn;
	int r;
	bool have_version = false;
	if (!sc_open(&s, '{'))
		return -2;
	while ((r = sc_member(&s, &k, &kn)) > 0) {
		if (key_is(k, kn, "version")) {
			char *end;
			unsigned long long v = strtoull(s.p, &end, 10);
			if (end == s.p || end > s.end)
				return -2;
			*version = v;
			have_version = true;
			s.p = end;
		} else if (key_is(k, kn, "heartbeat_ms")) {
			char *end;
			long v = strtol(s.p, &end, 10);
			if (end == s.p || end > s.end)
				return -2;
			if (v >= 100 && v <= 60000)
				*heartbeat_ms = (int32_t)v;
			s.p = end;
		} else if (key_is(k, kn, "report")) {
			*report = s.p + 4 <= s.end && !memcmp(s.p, "true", 4);
			if (!sc_skip(&s))
				return -2;
		} else {
			if (key_is(k, kn, "tasks"))
				tasks_at = s.p;
			if (!sc_skip(&s))
				return -2;
		}
	}
	if (r < 0 || !have_version)
		return -2;
	/* An unchanged version needs no list (a server may leave it out). */
	if (*version == known)
		return -1;
	if (!tasks_at)
		return -2;
	s.p = tasks_at;
	if (!sc_open(&s, '['))
		return -2;
	size_t n = 0;
	while ((r = sc_element(&s)) > 0) {
		if (n == l->want_cap) {
			l->want_cap = l->want_cap ? l->want_cap * 2 : 256;
			l->want = xrealloc(l->want, l->want_cap * sizeof *l->want);
		}
		if (!scan_desired_task(&s, &l->want[n]))
			return -2;
		n++;
	}
	return r < 0 ? -2 : (long)n;
}

/* ---- the task set ----------------------------------------------------------- */

static bool header_is(const char *line, size_t n, const char *name)
{
	size_t k = strlen(name);
	return n > k && !strncasecmp(line, name, k) && line[k] == ':';
}

/* Chunked body at p..end: 1 complete (decoded in place, *out_len, *used),
 * 0 incomplete, -1 malformed. */
static int dechunk(char *p, char *end, size_t *out_len, size_t *used)
{
	char *r = p;
	/* First pass: is it all there? */
	for (;;) {
		char *eol = memmem(r, (size_t)(end - r), "\r\n", 2);
		if (!eol)
			return 0;
		char *hx;
		unsigned long sz = strtoul(r, &hx, 16);
		if (hx == r || sz > RESPONSE_MAX)
			return -1;
		r = eol + 2;
		if (sz == 0) {
			/* trailers, then an empty line */
			for (;;) {
				char *e = memmem(r, (size_t)(end - r), "\r\n", 2);
				if (!e)
					return 0;
				bool empty = e == r;
				r = e + 2;
				if (empty)
					break;
			}
			break;
		}
		if ((size_t)(end - r) < sz + 2)
			return 0;
		r += sz + 2;
	}
	*used = (size_t)(r - p);
	/* Second pass: compact the data. */
	char *w = p;
	r = p;
	for (;;) {
		char *eol = memmem(r, (size_t)(end - r), "\r\n", 2);
		unsigned long sz = strtoul(r, NULL, 16);
		r = eol + 2;
		if (!sz)
			break;
		memmove(w, r, sz);
		w += sz;
		r += sz + 2;
	}
	*out_len = (size_t)(w - p);
	return 1;
}

/* 1: a whole response is in buf; 0: not yet; -1: malformed. With eof the
 * connection ended, which completes a body without a length. */
int http_parse(char *buf, size_t len, bool eof, struct http_reply *r)
{
	char *hend = memmem(buf, len, "\r\n\r\n", 4);
	if (!hend)
		return len > HEADERS_MAX ? -1 : 0;
	memset(r, 0, sizeof *r);
	if (len < 12 || strncmp(buf, "HTTP/1.", 7))
		return -1;
	r->status = atoi(buf + 9);
	if (r->status < 100 || r->status > 999)
		return -1;
	bool chunked = false, has_len = false;
	unsigned long long clen = 0;
	char *line = memchr(buf, '\n', (size_t)(hend + 2 - buf)) + 1;
	while (line < hend) {
		char *eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
		size_t n = (size_t)(eol - line);
		if (header_is(line, n, "content-length")) {
			clen = strtoull(line + 15, NULL, 10);
			has_len = true;
		} else if (header_is(line, n, "transfer-encoding")) {
			chunked = memmem(line, n, "chunked", 7) != NULL;
		} else if (header_is(line, n, "connection")) {
			r->close = memmem(line, n, "close", 5) != NULL;
		} else if (header_is(line, n, "x-berth-time")) {
			long long t = 0;
			unsigned id = 0;
			char v[48];
			size_t k = n - 13 < sizeof v - 1 ? n - 13 : sizeof v - 1;
			memcpy(v, line + 13, k);
			v[k] = 0;
			if (sscanf(v, " %lld-%8x", &t, &id) == 2 && t > 0) {
				r->server_clock = t;
				r->server_clock_id = id;
			}
		}
		line = eol + 2;
	}
	if (!strncmp(buf, "HTTP/1.0", 8))
		r->close = true;
	char *body = hend + 4, *end = buf + len;
	r->body = body;
	if (chunked) {
		int c = dechunk(body, end, &r->body_len, &r->total);
		if (c <= 0)
			return c;
		r->total += (size_t)(body - buf);
	} else if (has_len) {
		if (clen > RESPONSE_MAX)
			return -1;
		if ((size_t)(end - body) < clen)
			return 0;
		r->body_len = (size_t)clen;
		r->total = (size_t)(body - buf) + (size_t)clen;
	} else if (r->status == 204 || r->status == 304 || r->status < 200) {
		r->total = (size_t)(body - buf);
	} else {
		/* No length: the body runs to the end of the connection. */
		if (!eof)
			return 0;
		r->body_len = (size_t)(end - body);
		r->total = len;
		r->close = true;
	}
	r->body[r->body_len] = 0; /* the buffer always has a spare byte */
	return 1;
}
