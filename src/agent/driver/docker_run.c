/* docker_run.c - the whole life of one docker task as its supervisor runs
 * it (docker_supervise, docker.h): adopt or create, start, pump logs, stop
 * with grace, read the end, remove. Two long requests (POST /wait and the
 * logs stream) run at once on a curl multi handle in the supervisor's one
 * thread, waking on its signalfd for stop requests. */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/driver/docker-internal.h"

/* After the container ended, how long its output may still trickle in. */
#define DRAIN_MS 2000
/* Docker unreachable for this long while a task runs: give up on it. */
#define LOST_MS 60000
#define DEFAULT_GRACE_MS 10000

struct sv {
	const struct docker_spec *s;
	const struct docker_hooks *h;
	const char *sock;
	struct cancel cancel;
	bool stop_seen;
};

static void svlog(const struct sv *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void svlog(const struct sv *v, const char *fmt, ...)
{
	if (!v->h || !v->h->log)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	v->h->log(v->h->ud, buf);
}

static bool stop_check(void *ud)
{
	struct sv *v = ud;
	if (!v->stop_seen && v->h && v->h->stop_requested && v->h->stop_requested(v->h->ud))
		v->stop_seen = true;
	return v->stop_seen;
}

/* The program's pid: the container's init (docker-init) has it as its one
 * child. Read from /proc, briefly retried: the init forks it right after
 * it starts. The init's pid when it cannot be found. */
static pid_t program_pid(pid_t init)
{
	if (init <= 0)
		return init;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)init, (int)init);
	for (int i = 0; i < 20; i++) {
		char *text = NULL;
		if (file_read_all(path, &text, NULL) < 0)
			return init;
		long child = strtol(text, NULL, 10);
		free(text);
		if (child > 0)
			return (pid_t)child;
		usleep(10000);
	}
	return init;
}

/* Wait for the end while pumping the logs and watching for a stop. */
struct run_state {
	struct xfer wait, logs;
	bool wait_on, logs_on; /* in the multi handle */
	bool wait_done, logs_done;
	int wait_code; /* StatusCode, -1 unknown */
	struct logs_sink ls;
	int64_t retry_at;   /* re-issue broken requests at */
	int64_t lost_since; /* Docker unreachable since */
	bool stopping, killed;
	int64_t kill_at;
};

static void signal_container(struct sv *v, const char *id, int sig)
{
	struct berr e = {0};
	if (docker_kill(v->sock, id, sig, &e) < 0)
		svlog(v, "%s", e.msg);
}

static int issue(struct sv *v, CURLM *m, struct run_state *r, const char *id, bool wait,
		 bool only_new_logs, struct berr *err)
{
	if (wait) {
		char *path = xasprintf("/containers/%s/wait", id);
		int rc = docker__xfer_api(&r->wait, v->sock, "POST", path, NULL, 0, err);
		free(path);
		if (rc < 0)
			return -1;
		curl_multi_add_handle(m, r->wait.c);
		r->wait_on = true;
	} else {
		r->ls.cb = v->h ? v->h->output : NULL;
		r->ls.ud = v->h ? v->h->ud : NULL;
		if (docker__logs_setup(&r->logs, v->sock, id, only_new_logs, &r->ls, err) < 0)
			return -1;
		curl_multi_add_handle(m, r->logs.c);
		r->logs_on = true;
	}
	return 0;
}

static void retire(CURLM *m, struct xfer *x, bool *on)
{
	if (*on)
		curl_multi_remove_handle(m, x->c);
	*on = false;
	docker__xfer_cleanup(x);
}

/* 0 when the container ended (r->wait_code), -1 when Docker was lost. */
static int run_to_end(struct sv *v, const char *id, bool only_new_logs, struct run_state *r,
		      struct berr *err)
{
	CURLM *m = curl_multi_init();
	uint64_t grace = v->s->stop_grace_ms;
	int64_t drain_deadline = 0;
	int rc = 0;
	r->wait_code = -1;
	if (issue(v, m, r, id, true, false, err) < 0 ||
	    issue(v, m, r, id, false, only_new_logs, err) < 0) {
		rc = -1;
		goto out;
	}
	for (;;) {
		int running = 0;
		curl_multi_perform(m, &running);
		int left;
		CURLMsg *msg;
		int64_t now = time_mono_ms();
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			bool is_wait = r->wait_on && msg->easy_handle == r->wait.c;
			struct xfer *x = is_wait ? &r->wait : &r->logs;
			docker__xfer_finish(x, msg->data.result);
			if (is_wait) {
				if (docker__xfer_unreachable(x)) {
					struct berr e = {0};
					docker__reach_error(&e, v->sock, x);
					svlog(v, "waiting for container '%.12s': %s", id, e.msg);
					if (!r->lost_since)
						r->lost_since = now;
					r->retry_at = now + 1000;
				} else if (x->status == 200) {
					json_t *j = json_loadb(x->buf.buf, x->buf.len, 0, NULL);
					json_t *code = json_object_get(j, "StatusCode");
					r->wait_code = json_is_integer(code)
							   ? (int)json_integer_value(code)
							   : -1;
					json_decref(j);
					r->wait_done = true;
				} else {
					/* e.g. removed behind our back: inspect says more */
					struct berr e = {0};
					docker__call_error(&e, v->sock, x,
							   "cannot wait for container '%.12s'", id);
					svlog(v, "%s", e.msg);
					r->wait_done = true;
				}
				retire(m, x, &r->wait_on);
				if (r->wait_done)
					drain_deadline = now + DRAIN_MS;
			} else {
				if (docker__xfer_unreachable(x) && !r->wait_done) {
					if (!r->lost_since)
						r->lost_since = now;
					if (!r->retry_at)
						r->retry_at = now + 1000;
				} else {
					if (x->rc != CURLE_OK || x->status != 200) {
						struct berr e = {0};
						docker__call_error(
						    &e, v->sock, x,
						    "cannot read the logs of container '%.12s'",
						    id);
						svlog(v, "%s", e.msg);
					}
					r->logs_done = true;
				}
				retire(m, x, &r->logs_on);
			}
		}
		if (r->wait_done && (r->logs_done || now >= drain_deadline))
			break;

		/* Docker went away (restarting?): follow it again once it
		 * answers. Output written meanwhile is in its log, not here:
		 * the logs are re-followed from now on. */
		if (r->retry_at && now >= r->retry_at) {
			struct berr e = {0};
			if (docker_ping(v->sock, &e) < 0) {
				if (now - r->lost_since >= LOST_MS) {
					berr_set(err, 503, "%s (for %ds while the task ran)", e.msg,
						 LOST_MS / 1000);
					rc = -1;
					goto out;
				}
				r->retry_at = now + 1000;
			} else {
				r->retry_at = 0;
				r->lost_since = 0;
				if (!r->wait_done && !r->wait_on &&
				    issue(v, m, r, id, true, false, err) < 0) {
					rc = -1;
					goto out;
				}
				if (!r->logs_done && !r->logs_on &&
				    issue(v, m, r, id, false, true, err) < 0) {
					rc = -1;
					goto out;
				}
			}
		}

		if (!r->stopping && !r->wait_done && stop_check(v)) {
			r->stopping = true;
			svlog(v, "stop requested, grace %llums", (unsigned long long)grace);
			if (grace == 0) {
				r->killed = true;
				signal_container(v, id, SIGKILL);
			} else {
				signal_container(v, id, SIGTERM);
				r->kill_at = now + (int64_t)grace;
			}
		}
		if (r->stopping && !r->killed && !r->wait_done && now >= r->kill_at) {
			svlog(v, "grace period over, killing container '%.12s'", id);
			r->killed = true;
			signal_container(v, id, SIGKILL);
		}

		/* Sleep until curl has work, the wake fd fires or a deadline. */
		bool use_wake = !r->stopping && v->cancel.wake_fd >= 0;
		int64_t timeout = use_wake ? 1000 : 100;
		if (r->stopping && !r->killed && !r->wait_done && r->kill_at - now < timeout)
			timeout = r->kill_at - now;
		if (r->wait_done && drain_deadline - now < timeout)
			timeout = drain_deadline - now;
		if (r->retry_at && r->retry_at - now < timeout)
			timeout = r->retry_at - now;
		if (timeout < 0)
			timeout = 0;
		struct curl_waitfd w = {.fd = v->cancel.wake_fd, .events = CURL_WAIT_POLLIN};
		curl_multi_poll(m, &w, use_wake ? 1 : 0, (int)timeout, NULL);
	}
out:
	retire(m, &r->wait, &r->wait_on);
	retire(m, &r->logs, &r->logs_on);
	curl_multi_cleanup(m);
	return rc;
}

static void remove_container(struct sv *v, const char *id)
{
	struct berr e = {0};
	if (docker_remove(v->sock, id, true, &e) < 0)
		svlog(v, "%s", e.msg);
}

int docker_supervise(const struct docker_spec *s, const struct docker_hooks *h,
		     struct docker_exit *out, struct berr *err)
{
	memset(out, 0, sizeof *out);
	out->exit_code = 126;
	struct sv v = {.s = s, .h = h, .sock = docker__sock_or_default(s->socket)};
	v.cancel = (struct cancel){.wake_fd = h ? h->wake_fd : -1, .check = stop_check, .ud = &v};
	if (!h)
		v.cancel.wake_fd = -1;
	if (!s->task_id || !*s->task_id)
		return berr_set(err, 400, "docker: no task id");
	if (!s->image || !*s->image)
		return berr_set(err, 400, "docker: task '%s' has no image", s->task_id);
	if (docker_ping(v.sock, err) < 0)
		return -1;

	/* A container of this task already (the supervisor was restarted):
	 * adopt it rather than run the task twice. */
	char *label = xasprintf("berth.task=%s", s->task_id);
	struct docker_found *found = NULL;
	size_t nfound = 0;
	char *id = NULL;
	bool adopted = false;
	int rc = docker_find_by_label(v.sock, label, &found, &nfound, err);
	if (rc < 0)
		goto out;
	if (nfound > 0) {
		id = xstrdup(found[0].id);
		adopted = true;
		svlog(&v, "adopting container '%.12s' (%s) of task '%s'", id, found[0].state,
		      s->task_id);
	}
	docker_found_free(found, nfound);

	if (!adopted) {
		if (stop_check(&v))
			goto stopped_early;
		int64_t t0 = time_mono_ms();
		bool fetched = false;
		rc = docker__pull(v.sock, s->image, &v.cancel, &fetched, err);
		if (rc < 0)
			goto out;
		if (rc > 0)
			goto stopped_early;
		if (fetched)
			svlog(&v, "image '%s' pulled in %lldms", s->image,
			      (long long)(time_mono_ms() - t0));
		if (stop_check(&v))
			goto stopped_early;
		rc = docker_create(v.sock, s, &id, err);
		if (rc < 0)
			goto out;
	}
	snprintf(out->container_id, sizeof out->container_id, "%s", id);

	struct docker_state st;
	rc = docker_inspect(v.sock, id, &st, err);
	if (rc < 0)
		goto out;
	/* Adopted and already running: its earlier output was pumped by the
	 * supervisor before; follow only what comes next. */
	bool only_new_logs = adopted && strcmp(st.status, "created");
	if (!st.running && !strcmp(st.status, "created")) {
		if (stop_check(&v)) {
			remove_container(&v, id);
			goto stopped_early;
		}
		rc = docker_start(v.sock, id, err);
		if (rc < 0) {
			/* Docker's own codes: 127 no such program, 126 others */
			struct docker_state after;
			struct berr e2 = {0};
			if (docker_inspect(v.sock, id, &after, &e2) == 0 &&
			    (after.exit_code == 126 || after.exit_code == 127))
				out->exit_code = after.exit_code;
			remove_container(&v, id);
			goto out;
		}
		if (s->cpu_after_start && s->cpu > 0 &&
		    docker_update_cpu(v.sock, id, s->cpu, err) < 0) {
			/* A program that ended already needs no limit; one still
			 * running never runs without the limit it asked for. */
			struct docker_state now;
			struct berr e2 = {0};
			if (docker_inspect(v.sock, id, &now, &e2) < 0 || now.running) {
				rc = -1;
				remove_container(&v, id);
				goto out;
			}
		}
		rc = docker_inspect(v.sock, id, &st, err);
		if (rc < 0)
			goto out;
	}
	out->started = true;
	if (h && h->attach && st.running && h->attach(h->ud, id, st.pid, err) < 0) {
		out->exit_code = 126;
		remove_container(&v, id);
		rc = -1;
		goto out;
	}
	if (h && h->running)
		h->running(h->ud, id, st.running ? program_pid(st.pid) : 0);

	struct run_state r = {0};
	rc = run_to_end(&v, id, only_new_logs, &r, err);
	out->stopped = r.stopping;
	out->killed = r.killed;
	if (rc < 0) {
		out->exit_code = 126;
		goto out; /* the container is left: Docker is gone; a later sweep */
	}
	out->exit_code = r.wait_code >= 0 ? r.wait_code : 126;
	struct berr e = {0};
	if (docker_inspect(v.sock, id, &st, &e) == 0) {
		out->exit_code = st.exit_code;
		out->oom = st.oom_killed;
	} else {
		svlog(&v, "%s", e.msg);
	}
	if (out->exit_code > 128 && out->exit_code < 160)
		out->signal = out->exit_code - 128;
	remove_container(&v, id);
	rc = 0;
	goto out;

stopped_early:
	out->stopped = true;
	out->exit_code = 0;
	svlog(&v, "stopped before the container started");
	rc = 0;
out:
	free(label);
	free(id);
	return rc;
}
