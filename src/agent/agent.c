#include "agent/agent.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/docker.h"
#include "agent/health.h"
#include "agent/image.h"
#include "agent/oci_bundle.h"
#include "agent/orphans.h"
#include "agent/supervisor.h"
#include "core/addr.h"
#include "core/hmap.h"
#include "core/http_client.h"
#include "core/lifecycle.h"
#include "core/log.h"

#define KEEP_ENDED_SANDBOXES 200
#define REPORT_EVERY_MS 10000
#define FULL_SCAN_EVERY_MS 30000
/* berth's own cgroup's cpu weight (v2 scale; v1 shares are x10.24): eight
 * times the tasks' parent, which holds every task of the node. */
#define SYSTEM_CGROUP_WEIGHT 800
#define IMAGE_GC_EVERY_MS (10 * 60 * 1000)
#define IMAGE_CACHE_MAX_BYTES (10ULL << 30)
#define IMAGE_MAX_AGE_MS (7LL * 24 * 3600 * 1000)

struct agent_task {
	char *id;
	char *sandbox;
	enum task_state state; /* as the agent reports it */
	int pid;
	int exit_code;
	char message[256];
	bool stop_sent;
	bool dirty;
	int64_t launched_mono; /* when we started its supervisor (0 = adopted) */
	bool queued;	       /* waiting for a launcher: no supervisor yet */
	bool starting;	       /* holds one of the agent's starting slots */
	pid_t supervisor_pid;  /* from its report; 0 = not known yet */
	bool configured;       /* its spec was seen (launched, or adopted and told) */
	/* Health checking (tasks whose spec has one): the spec is kept for the
	 * check's lifetime; the check starts when the program runs. */
	struct job_spec *spec;
	int health_port;
	char **health_env;
	struct health_check *health;
	bool health_started;
	bool health_failed; /* stopped because its checks failed */
	int shutdown_port;
	int64_t stop_at_mono; /* graceful step sent: SIGTERM at this time */
	char health_msg[256];
};

struct agent {
	struct agent_options o;
	char *name;
	char *tasks_dir;
	char *notify_path;
	int notify_fd;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct hmap tasks; /* id -> struct agent_task* */
	uint64_t known_version;
	bool need_full;	      /* next watch asks for every task in full */
	bool docker_ok;	      /* the engine answered at the last registration */
	uint64_t report_gen;   /* bumped on every change to the task table */
	uint64_t reported_gen; /* the generation the last watch carried */
	int64_t reported_mono;
	_Atomic bool stopping;
	pthread_t watch_thread, event_thread;
	/* Launches waiting for a launcher thread (launcher_main), in order. */
	pthread_t launchers[2];
	size_t nlaunchers;
	pthread_cond_t launch_cond;
	struct launch_job *launch_head, **launch_tail;
	struct launch_job *graceful; /* graceful-stop POSTs for the launchers */
	int nstarting, max_starting;
	struct MHD_Daemon *logs;
	int logs_port;
	char *advertise;
	int wake_pipe[2];
};

void agent_options_defaults(struct agent_options *o)
{
	memset(o, 0, sizeof *o);
	o->servers = "127.0.0.1:7070";
	o->port_lo = 20000;
	o->port_hi = 32767;
	o->cgroup_parent = "berth";
	o->system_cgroup = "berth-system";
	o->listen = "0.0.0.0:0";
	o->exe = "/proc/self/exe";
}

/* ---- the task table ------------------------------------------------------ */

static struct agent_task *task_add(struct agent *a, const char *id)
{
	struct agent_task *t = xcalloc(1, sizeof *t);
	t->id = xstrdup(id);
	t->sandbox = xasprintf("%s/%s", a->tasks_dir, id);
	t->exit_code = -1;
	hmap_put(&a->tasks, id, t);
	a->report_gen++;
	return t;
}

static void task_free(struct agent_task *t)
{
	health_check_free(t->health);
	spec_free(t->spec);
	if (t->health_env)
		for (char **e = t->health_env; *e; e++)
			free(*e);
	free(t->health_env);
	free(t->id);
	free(t->sandbox);
	free(t);
}

static void launch_slot_free(struct agent *a, struct agent_task *t);

static void task_set(struct agent *a, struct agent_task *t, enum task_state s, const char *msg)
{
	if (t->state == s && !strcmp(t->message, msg ? msg : t->message))
		return;
	t->state = s;
	if (task_state_terminal(s))
		launch_slot_free(a, t);
	if (msg)
		snprintf(t->message, sizeof t->message, "%s", msg);
	t->dirty = true;
	a->report_gen++;
	if (write(a->wake_pipe[1], "x", 1) < 0) {
		/* the pipe is full: the events thread is already due to wake */
	}
}

/* Read a supervisor's report into the task. */
/* The docker container of a task whose supervisor is gone (killed with the
 * agent, say) would run on unwatched: remove it. Found by its label, which
 * holds the cluster-unique task id; a no-op without docker. */
static void docker_delete_orphan(struct agent *a, const char *task_id)
{
	char label[600];
	snprintf(label, sizeof label, "berth.task=%s", task_id);
	struct docker_found *f = NULL;
	size_t n = 0;
	struct berr err = {0};
	if (docker_find_by_label(a->o.docker_socket, label, &f, &n, &err) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (docker_remove(a->o.docker_socket, f[i].id, true, &err) == 0)
			log_info("task %s: removed its orphan docker container %s", task_id,
				 f[i].name ? f[i].name : f[i].id);
		else
			log_warn("task %s: %s", task_id, err.msg);
	}
	docker_found_free(f, n);
}

static void task_refresh(struct agent *a, struct agent_task *t)
{
	if (task_state_terminal(t->state) || t->queued)
		return;
	struct task_report r;
	if (supervisor_read_report(t->sandbox, &r) < 0) {
		if (!supervisor_alive(t->sandbox) &&
		    (t->state != TASK_ASSIGNED || time_mono_ms() - t->launched_mono > 10000))
			task_set(a, t, TASK_FAILED, "the task's supervisor died before reporting");
		return;
	}
	if ((r.phase == PHASE_STARTING || r.phase == PHASE_RUNNING) &&
	    !supervisor_alive(t->sandbox)) {
		/* Its supervisor died (kill -9, OOM of the agent's cgroup...):
		 * read again in case it wrote the end just before going, else
		 * nobody watches the task any more. */
		if (supervisor_read_report(t->sandbox, &r) < 0 || r.phase != PHASE_EXITED) {
			if (t->spec && t->spec->task.driver == DRIVER_OCI)
				oci_delete_orphan(a->o.data_dir, t->id, NULL);
			docker_delete_orphan(a, t->id); /* the spec may be unknown */
			task_set(a, t, TASK_LOST, "the task's supervisor died");
			return;
		}
	}
	if (r.pid > 0)
		t->pid = r.pid;
	if (r.supervisor_pid > 0)
		t->supervisor_pid = r.supervisor_pid;
	if (r.phase == PHASE_RUNNING || r.phase == PHASE_EXITED)
		launch_slot_free(a, t); /* its start is over */
	switch (r.phase) {
	case PHASE_STARTING:
		task_set(a, t, TASK_STARTING, NULL);
		break;
	case PHASE_RUNNING:
		if (t->spec && !t->health_started) {
			/* RUNNING only once its checks pass: STARTING until then. */
			t->health_started = true;
			t->health = health_check_new(&t->spec->task.health, "127.0.0.1",
						     t->health_port, t->health_env, t->sandbox);
		}
		if (t->health && t->state != TASK_RUNNING)
			task_set(a, t, TASK_STARTING, "waiting for health checks to pass");
		else
			task_set(a, t, TASK_RUNNING, "");
		break;
	case PHASE_EXITED:
		t->exit_code = r.signal ? 128 + r.signal : r.exit_code;
		health_check_free(t->health);
		t->health = NULL;
		if (t->health_failed)
			task_set(a, t, TASK_FAILED, t->health_msg);
		else if (r.oom)
			task_set(a, t, TASK_FAILED, r.message);
		else if (r.stopped || t->stop_sent)
			task_set(a, t, TASK_KILLED, r.message);
		else if (!r.signal && r.exit_code == 0)
			task_set(a, t, TASK_FINISHED, r.message);
		else
			task_set(a, t, TASK_FAILED, r.message);
		break;
	default:
		if (!supervisor_alive(t->sandbox))
			task_set(a, t, TASK_LOST, "supervisor vanished without a report");
	}
}

static json_t *task_report_json(const struct agent_task *t)
{
	json_t *o = json_pack("{s:s,s:s,s:i,s:s}", "id", t->id, "state", task_state_name(t->state),
			      "pid", t->pid, "message", t->message);
	if (t->exit_code >= 0)
		json_object_set_new(o, "exit_code", json_integer(t->exit_code));
	return o;
}

/* ---- launching ------------------------------------------------------------ */

/* What launching one desired entry takes, computed from the entry alone
 * (no agent state but its options and name): built outside the agent's
 * lock by a launcher thread, or inline for a re-adopted task. */
struct launch_plan {
	char *id, *job;
	int instance;
	struct job_spec *spec;
	int *pvals;
	char **argv;
	size_t argc;
	char **env;
	size_t nenv;
	const char **vhost, **vpath; /* point into spec->task.volumes */
	bool *vro;
	int health_port, shutdown_port;
	bool task_keeps_spec; /* health checks or a graceful stop need it */
};

static void plan_release(struct launch_plan *p)
{
	for (size_t i = 0; p->argv && i < p->argc; i++)
		free(p->argv[i]);
	free(p->argv);
	for (size_t i = 0; p->env && i < p->nenv; i++)
		free(p->env[i]);
	free(p->env);
	free(p->pvals);
	free(p->vhost);
	free(p->vpath);
	free(p->vro);
	spec_free(p->spec);
	free(p->id);
	free(p->job);
	memset(p, 0, sizeof *p);
}

/* The health check's command runs as the task's user, never as the agent's
 * root: setpriv (util-linux) drops to it first. */
static void plan_health_command(struct task_spec *ts, const struct template_ctx *ctx)
{
	size_t extra = ts->user && *ts->user ? 5 : 0;
	char **cmd = xcalloc(ts->health.ncommand + extra + 1, sizeof *cmd);
	size_t k = 0;
	if (extra) {
		cmd[k++] = xstrdup("setpriv");
		struct passwd *pw = getpwnam(ts->user);
		if (pw) {
			cmd[k++] = xasprintf("--reuid=%u", (unsigned)pw->pw_uid);
			cmd[k++] = xasprintf("--regid=%u", (unsigned)pw->pw_gid);
		} else {
			cmd[k++] = xasprintf("--reuid=%s", ts->user);
			cmd[k++] = xasprintf("--regid=%s", ts->user);
		}
		cmd[k++] = xstrdup("--init-groups");
		cmd[k++] = xstrdup("--");
	}
	for (size_t i = 0; i < ts->health.ncommand; i++)
		cmd[k++] = spec_expand(ts->health.command[i], ctx);
	for (size_t i = 0; i < ts->health.ncommand; i++)
		free(ts->health.command[i]);
	free(ts->health.command);
	ts->health.command = cmd;
	ts->health.ncommand = k;
}

static int plan_build(const struct agent *a, bool docker_ok, json_t *d, struct launch_plan *p,
		      struct berr *err)
{
	memset(p, 0, sizeof *p);
	const char *id = json_string_value(json_object_get(d, "id"));
	const char *job = json_string_value(json_object_get(d, "job"));
	p->id = xstrdup(id ? id : "");
	p->job = xstrdup(job ? job : "");
	p->instance = (int)json_integer_value(json_object_get(d, "instance"));
	json_t *ports = json_object_get(d, "ports");
	json_t *doc = json_pack("{s:s,s:O}", "job", p->job, "task", json_object_get(d, "task"));
	if (!doc || spec_parse_json(doc, &p->spec, err) < 0) {
		json_decref(doc);
		return -1;
	}
	json_decref(doc);
	struct task_spec *ts = &p->spec->task;
	if (ts->driver == DRIVER_DOCKER && !docker_ok)
		/* Offered only where the engine answered (checked at registration). */
		return berr_set(err, 400,
				"driver 'docker' is not available on this agent: docker is not "
				"reachable at '%s'",
				a->o.docker_socket ? a->o.docker_socket : DOCKER_DEFAULT_SOCKET);
	size_t np = ts->resources.nports;
	p->pvals = xcalloc(np + 1, sizeof *p->pvals);
	for (size_t i = 0; i < np; i++)
		p->pvals[i] =
		    (int)json_integer_value(json_object_get(ports, ts->resources.ports[i]));
	struct template_ctx ctx = {
	    .instance = p->instance,
	    .task_id = p->id,
	    .host = a->name,
	    .port_names = ts->resources.ports,
	    .port_values = p->pvals,
	    .nports = np,
	};
	p->argc = ts->ncommand;
	p->argv = xcalloc(ts->ncommand + 1, sizeof *p->argv);
	for (size_t i = 0; i < ts->ncommand; i++)
		p->argv[i] = spec_expand(ts->command[i], &ctx);
	p->env = xcalloc(ts->nenv + np + 4, sizeof *p->env);
	size_t e = 0;
	for (size_t i = 0; i < ts->nenv; i++) {
		char *v = spec_expand(ts->env[i].value, &ctx);
		p->env[e++] = xasprintf("%s=%s", ts->env[i].key, v);
		free(v);
	}
	for (size_t i = 0; i < np; i++) {
		char *up = xstrdup(ts->resources.ports[i]);
		for (char *c = up; *c; c++)
			*c = (*c == '-') ? '_' : (char)((*c >= 'a' && *c <= 'z') ? *c - 32 : *c);
		p->env[e++] = xasprintf("BERTH_PORT_%s=%d", up, p->pvals[i]);
		free(up);
	}
	p->env[e++] = xasprintf("BERTH_TASK_ID=%s", p->id);
	p->env[e++] = xasprintf("BERTH_INSTANCE=%d", p->instance);
	p->env[e++] = xasprintf("BERTH_JOB=%s", p->job);
	p->nenv = e;
	p->vhost = xcalloc(ts->nvolumes + 1, sizeof *p->vhost);
	p->vpath = xcalloc(ts->nvolumes + 1, sizeof *p->vpath);
	p->vro = xcalloc(ts->nvolumes + 1, sizeof *p->vro);
	for (size_t i = 0; i < ts->nvolumes; i++) {
		p->vhost[i] = ts->volumes[i].host;
		p->vpath[i] = ts->volumes[i].path;
		p->vro[i] = ts->volumes[i].read_only;
	}
	if (*ts->shutdown.http_path) {
		p->task_keeps_spec = true;
		for (size_t i = 0; i < np; i++)
			if (!strcmp(ts->resources.ports[i], ts->shutdown.port))
				p->shutdown_port = p->pvals[i];
	}
	if (ts->health.kind != HEALTH_NONE) {
		p->task_keeps_spec = true;
		for (size_t i = 0; i < np; i++)
			if (!strcmp(ts->resources.ports[i], ts->health.port))
				p->health_port = p->pvals[i];
		if (ts->health.kind == HEALTH_COMMAND)
			plan_health_command(ts, &ctx);
	}
	return 0;
}

/* Under the lock: what the agent keeps of the spec for the task's life
 * (health checks, the graceful stop) goes to the task. */
static void plan_give_to_task(struct launch_plan *p, struct agent_task *t)
{
	t->configured = true;
	t->shutdown_port = p->shutdown_port;
	if (!p->task_keeps_spec)
		return;
	if (p->spec->task.health.kind != HEALTH_NONE) {
		t->health_port = p->health_port;
		t->health_env = xcalloc(p->nenv + 1, sizeof *t->health_env);
		for (size_t i = 0; i < p->nenv; i++)
			t->health_env[i] = xstrdup(p->env[i]);
	}
	spec_free(t->spec);
	t->spec = p->spec;
	p->spec = NULL;
}

static int plan_launch(const struct agent *a, const struct launch_plan *p, const char *sandbox,
		       struct berr *err)
{
	const struct task_spec *ts = &p->spec->task;
	struct task_launch l = {
	    .task_id = p->id,
	    .job_key = p->job,
	    .instance = p->instance,
	    .driver = ts->driver,
	    .image = ts->image,
	    .data_dir = a->o.data_dir,
	    .docker_socket = a->o.docker_socket,
	    .sandbox_dir = sandbox,
	    .argv = p->argv,
	    .argc = p->argc,
	    .env = p->env,
	    .nenv = p->nenv,
	    .user = ts->user,
	    .cpu = ts->resources.cpu,
	    .memory_bytes = ts->resources.memory,
	    .stop_grace_ms = ts->stop_grace_ms,
	    .cgroup_parent = a->o.cgroup_parent,
	    .notify_socket = a->notify_path,
	    .log_max_bytes = a->o.log_max_bytes,
	    .log_max_files = a->o.log_max_files,
	    .volume_host = p->vhost,
	    .volume_path = p->vpath,
	    .volume_ro = p->vro,
	    .nvolumes = ts->nvolumes,
	};
	pid_t spid;
	return supervisor_launch(&l, a->o.exe, &spid, err);
}

/* A task re-adopted after an agent restart whose spec arrives now: only
 * what the agent keeps from the spec is set up; nothing is launched. */
static int task_configure_adopted(struct agent *a, json_t *d, struct agent_task *t,
				  struct berr *err)
{
	struct launch_plan p;
	int r = plan_build(a, a->docker_ok, d, &p, err);
	if (r == 0)
		plan_give_to_task(&p, t);
	plan_release(&p);
	return r;
}

/* A launch waiting for a launcher thread (id = the task's), or a graceful
 * stop's POST (id = its URL, desired NULL). */
struct launch_job {
	char *id;
	json_t *desired;
	struct launch_job *next;
};

/* Queue a POST to the task's shutdown path (Aurora's /quitquitquit): a
 * launcher thread sends it, never the watch thread (a task slow to answer
 * must not delay the heartbeat). */
static void graceful_shutdown(struct agent *a, struct agent_task *t)
{
	struct launch_job *j = xcalloc(1, sizeof *j);
	j->id = xasprintf("http://127.0.0.1:%d%s", t->shutdown_port,
			  t->spec->task.shutdown.http_path);
	j->next = a->graceful;
	a->graceful = j;
	pthread_cond_signal(&a->launch_cond);
}

/* Send one graceful-stop POST. Best effort, short timeout: a task that does
 * not answer gets SIGTERM when its shutdown.wait ends. */
static void graceful_send(const char *url)
{
	struct http_client *hc = http_client_new("127.0.0.1:1");
	struct http_response resp;
	struct berr err = {0};
	if (http_request_url(hc, "POST", url, "", 1000, &resp, &err) == 0) {
		log_info("graceful stop: POST %s answered %ld", url, resp.status);
		http_response_release(&resp);
	} else {
		log_info("graceful stop: %s", err.msg);
	}
	http_client_free(hc);
}

/* ---- the launchers ---------------------------------------------------------
 *
 * Launches never run on the watch thread nor under the agent's lock: the
 * watch (the node's heartbeat) only queues them. LAUNCHERS threads take them
 * in order; at most `max_starting` supervisors may be starting at once (from
 * their fork until their task runs or ends, or LAUNCH_SLOT_MS), so a burst of
 * a thousand tasks is a steady stream, not a thousand processes fighting
 * the agent for the CPU. */
#define LAUNCHERS 2
#define LAUNCH_SLOT_MS 2000

static void launch_enqueue(struct agent *a, struct agent_task *t, json_t *d)
{
	struct launch_job *j = xcalloc(1, sizeof *j);
	j->id = xstrdup(t->id);
	j->desired = json_incref(d);
	*a->launch_tail = j;
	a->launch_tail = &j->next;
	t->queued = true;
	pthread_cond_signal(&a->launch_cond);
}

static struct launch_job *launch_dequeue(struct agent *a)
{
	struct launch_job *j = a->launch_head;
	if (j) {
		a->launch_head = j->next;
		if (!a->launch_head)
			a->launch_tail = &a->launch_head;
	}
	return j;
}

static void launch_job_free(struct launch_job *j)
{
	json_decref(j->desired);
	free(j->id);
	free(j);
}

/* Under the lock: the task's supervisor is no longer starting. */
static void launch_slot_free(struct agent *a, struct agent_task *t)
{
	if (!t->starting)
		return;
	t->starting = false;
	a->nstarting--;
	pthread_cond_broadcast(&a->launch_cond);
}

/* Under the lock: is a starting slot free? Slots held past LAUNCH_SLOT_MS
 * (an image pull, a lost notification) are given back. */
static bool launch_slot_available(struct agent *a)
{
	if (a->nstarting < a->max_starting)
		return true;
	int64_t now = time_mono_ms();
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v)) {
		struct agent_task *t = v;
		if (t->starting && now - t->launched_mono > LAUNCH_SLOT_MS)
			launch_slot_free(a, t);
	}
	return a->nstarting < a->max_starting;
}

static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(cv, m, &ts);
}

static void *launcher_main(void *arg)
{
	struct agent *a = arg;
	pthread_mutex_lock(&a->lock);
	while (!a->stopping) {
		if (a->graceful) {
			struct launch_job *g = a->graceful;
			a->graceful = g->next;
			pthread_mutex_unlock(&a->lock);
			graceful_send(g->id);
			launch_job_free(g);
			pthread_mutex_lock(&a->lock);
			continue;
		}
		if (!a->launch_head || !launch_slot_available(a)) {
			cond_wait_ms(&a->launch_cond, &a->lock, 100);
			continue;
		}
		struct launch_job *j = launch_dequeue(a);
		struct agent_task *t = hmap_get(&a->tasks, j->id);
		if (!t || !t->queued) {
			launch_job_free(j);
			continue;
		}
		if (t->stop_sent) {
			/* Not wanted any more before it ever started. */
			t->queued = false;
			task_set(a, t, TASK_KILLED, "stopped before it was launched");
			launch_job_free(j);
			continue;
		}
		t->starting = true;
		a->nstarting++;
		t->launched_mono = time_mono_ms();
		char *sandbox = xstrdup(t->sandbox);
		bool docker_ok = a->docker_ok;
		pthread_mutex_unlock(&a->lock);

		struct launch_plan p;
		struct berr err = {0};
		int r = plan_build(a, docker_ok, j->desired, &p, &err);
		if (r == 0)
			r = plan_launch(a, &p, sandbox, &err);
		free(sandbox);

		pthread_mutex_lock(&a->lock);
		t = hmap_get(&a->tasks, j->id); /* queued tasks are never removed */
		if (t) {
			t->queued = false;
			t->launched_mono = time_mono_ms();
			if (r < 0) {
				launch_slot_free(a, t);
				log_warn("task %s: %s", t->id, err.msg);
				task_set(a, t, TASK_FAILED, err.msg);
			} else {
				plan_give_to_task(&p, t);
				/* No STARTING report of our own: the supervisor's first
				 * report comes within milliseconds. */
				if (t->stop_sent)
					supervisor_stop(t->sandbox);
			}
		}
		plan_release(&p);
		launch_job_free(j);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* Start what the server wants and we lack; stop what we hold and it does not. */
static void reconcile(struct agent *a, json_t *desired)
{
	json_t *list = json_object_get(desired, "tasks");
	struct hmap want;
	hmap_init(&want);
	size_t i;
	json_t *d;
	json_array_foreach(list, i, d)
	{
		const char *id = json_string_value(json_object_get(d, "id"));
		if (!id || strchr(id, '/') || strstr(id, ".."))
			continue;
		hmap_put(&want, id, d);
		struct agent_task *have = hmap_get(&a->tasks, id);
		if (have) {
			/* Re-adopted after a restart: its spec comes with the first
			 * full desired set, and its health checks resume. */
			if (!have->configured && json_object_get(d, "task") &&
			    !task_state_terminal(have->state)) {
				struct berr err = {0};
				if (task_configure_adopted(a, d, have, &err) < 0)
					log_warn("task %s: re-adopted without its checks: %s", id,
						 err.msg);
				have->configured = true;
				if (have->spec)
					task_refresh(a, have);
			}
			continue;
		}
		if (!json_object_get(d, "task")) {
			/* Listed by id only: the server believes we have it. Ask for
			 * every spec again at the next watch. */
			a->need_full = true;
			continue;
		}
		char *mark = xasprintf("%s/%s/reported", a->tasks_dir, id);
		bool ended_here = access(mark, F_OK) == 0;
		free(mark);
		if (ended_here)
			continue; /* it ran and ended here; a stale desired set */
		struct agent_task *t = task_add(a, id);
		t->state = TASK_ASSIGNED;
		launch_enqueue(a, t, d);
	}
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v)) {
		struct agent_task *t = v;
		if (hmap_get(&want, t->id) || t->stop_sent || task_state_terminal(t->state))
			continue;
		t->stop_sent = true;
		if (t->spec && *t->spec->task.shutdown.http_path && t->shutdown_port > 0 &&
		    t->state == TASK_RUNNING) {
			/* The graceful step first; SIGTERM only if it is still up
			 * after shutdown.wait. */
			graceful_shutdown(a, t);
			t->stop_at_mono = time_mono_ms() + (int64_t)t->spec->task.shutdown.wait_ms;
			continue;
		}
		int r = supervisor_stop(t->sandbox);
		log_info("stopping task %s%s", t->id, r == -ESRCH ? " (already gone)" : "");
		if (r == -ESRCH)
			task_refresh(a, t);
	}
	hmap_release(&want);
}

/* ---- re-adoption ---------------------------------------------------------- */

static void adopt_existing(struct agent *a)
{
	DIR *d = opendir(a->tasks_dir);
	if (!d)
		return;
	struct dirent *de;
	size_t adopted = 0, ended = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *reported = xasprintf("%s/%s/reported", a->tasks_dir, de->d_name);
		bool done = access(reported, F_OK) == 0;
		free(reported);
		if (done)
			continue;
		struct agent_task *t = task_add(a, de->d_name);
		t->state = TASK_ASSIGNED;
		task_refresh(a, t);
		if (t->state == TASK_ASSIGNED) {
			/* No report, no supervisor: a launch that never happened. */
			task_set(a, t, TASK_LOST, "task sandbox found without a supervisor");
		}
		if (task_state_terminal(t->state))
			/* An oci container whose supervisor was killed may outlive
			 * it: remove it (a no-op when runc does not know it). */
			oci_delete_orphan(a->o.data_dir, t->id, NULL);
		if (task_state_terminal(t->state))
			docker_delete_orphan(a, t->id); /* likewise a docker container */
		if (task_state_terminal(t->state))
			ended++;
		else
			adopted++;
	}
	closedir(d);
	if (adopted || ended)
		log_info("re-adopted %zu running tasks, %zu ended while away", adopted, ended);
}

struct sandbox_age {
	char *path;
	time_t mtime;
};

static int cmp_age(const void *x, const void *y)
{
	const struct sandbox_age *p = x, *q = y;
	return (p->mtime > q->mtime) - (p->mtime < q->mtime);
}

/* Keep the newest ended sandboxes (for logs), remove the rest. */
static void prune_sandboxes(struct agent *a)
{
	DIR *d = opendir(a->tasks_dir);
	if (!d)
		return;
	struct sandbox_age *v = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *rep = xasprintf("%s/%s/reported", a->tasks_dir, de->d_name);
		struct stat st;
		if (stat(rep, &st) == 0) {
			v = xrealloc(v, (n + 1) * sizeof *v);
			v[n].path = xasprintf("%s/%s", a->tasks_dir, de->d_name);
			v[n].mtime = st.st_mtime;
			n++;
		}
		free(rep);
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof *v, cmp_age);
	for (size_t i = 0; i < n; i++) {
		if (n - i > KEEP_ENDED_SANDBOXES)
			rm_rf(v[i].path);
		free(v[i].path);
	}
	free(v);
}

/* ---- the watch thread --------------------------------------------------- */

static json_t *full_report(struct agent *a)
{
	json_t *arr = json_array();
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v))
		json_array_append_new(arr, task_report_json(v));
	return arr;
}

static void detect_resources(struct agent *a, double *cpu, uint64_t *mem, uint64_t *disk)
{
	*cpu = a->o.cpu > 0 ? a->o.cpu : (double)sysconf(_SC_NPROCESSORS_ONLN);
	*mem = a->o.memory;
	if (!*mem)
		*mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	*disk = a->o.disk;
	struct statvfs sv;
	if (!*disk && statvfs(a->o.data_dir, &sv) == 0)
		*disk = (uint64_t)sv.f_bavail * sv.f_frsize;
}

static int do_register(struct agent *a, struct http_client *hc, struct berr *err)
{
	double cpu;
	uint64_t mem, disk;
	detect_resources(a, &cpu, &mem, &disk);
	json_t *attrs = json_pack("{s:s,s:s}", "host", a->name, "os", "linux");
	/* Drivers this node offers, as attributes a job can constrain on
	 * (constraints: {driver.docker: "true"}). */
	json_object_set_new(attrs, "driver.exec", json_string("true"));
	json_object_set_new(attrs, "driver.oci", json_string("true"));
	a->docker_ok = docker_available(a->o.docker_socket);
	if (a->docker_ok)
		json_object_set_new(attrs, "driver.docker", json_string("true"));
	for (size_t i = 0; i < a->o.nattrs; i++)
		json_object_set_new(attrs, a->o.attrs[i].key, json_string(a->o.attrs[i].value));
	pthread_mutex_lock(&a->lock);
	json_t *report = full_report(a);
	pthread_mutex_unlock(&a->lock);
	/* Find our own address as the server sees it, for the logs listener. */
	struct http_response probe;
	if (!a->advertise && http_request(hc, "GET", "/v1/health", NULL, 2000, &probe, err) == 0) {
		const char *ip = probe.local_ip[0] ? probe.local_ip : "127.0.0.1";
		a->advertise = xasprintf("http://%s:%d", ip, a->logs_port);
		http_response_release(&probe);
	}
	json_t *body =
	    json_pack("{s:s,s:o,s:{s:f,s:I,s:I,s:i,s:i},s:s,s:o}", "name", a->name, "attributes",
		      attrs, "resources", "cpu", cpu, "memory", (json_int_t)mem, "disk",
		      (json_int_t)disk, "port_lo", a->o.port_lo, "port_hi", a->o.port_hi, "addr",
		      a->advertise ? a->advertise : "", "tasks", report);
	json_t *reply = NULL;
	int r = http_json(hc, "POST", "/v1/agent/register", body, 10000, &reply, err);
	json_decref(body);
	if (r < 0)
		return -1;
	json_decref(reply);
	pthread_mutex_lock(&a->lock);
	a->known_version = 0;
	a->reported_gen = a->report_gen - 1;
	pthread_mutex_unlock(&a->lock);
	log_info("registered with %s as %s", http_client_server(hc), a->name);
	return 0;
}

static void sleep_ms(struct agent *a, int ms)
{
	struct pollfd p = {.fd = -1};
	(void)a;
	poll(&p, 0, ms);
}

static void *watch_main(void *arg)
{
	struct agent *a = arg;
	struct http_client *hc = http_client_new(a->o.servers);
	/* The server stamps the heartbeat from the headers, before the body. */
	http_client_set_header(hc, "X-Berth-Node", a->name);
	bool registered = false;
	int64_t last_error_log = 0;
	while (!a->stopping) {
		struct berr err = {0};
		if (!registered) {
			if (do_register(a, hc, &err) < 0) {
				if (time_mono_ms() - last_error_log > 5000) {
					log_warn("cannot register: %s", err.msg);
					last_error_log = time_mono_ms();
				}
				sleep_ms(a, 300);
				continue;
			}
			registered = true;
		}
		/* The full report rides on a watch when something changed, and at
		 * least every REPORT_EVERY_MS; other watches are pure heartbeats. */
		pthread_mutex_lock(&a->lock);
		json_t *body =
		    json_pack("{s:s,s:I,s:i}", "name", a->name, "known_version",
			      (json_int_t)(a->need_full ? 0 : a->known_version), "wait_ms", 1000);
		a->need_full = false;
		uint64_t gen = a->report_gen;
		bool with_report =
		    gen != a->reported_gen || time_mono_ms() - a->reported_mono >= REPORT_EVERY_MS;
		if (with_report)
			json_object_set_new(body, "tasks", full_report(a));
		pthread_mutex_unlock(&a->lock);
		json_t *reply = NULL;
		int r = http_json(hc, "POST", "/v1/agent/watch", body, 15000, &reply, &err);
		json_decref(body);
		if (r < 0) {
			if (err.code == 404)
				registered = false; /* the server forgot us: register again */
			if (time_mono_ms() - last_error_log > 5000) {
				log_warn("watch failed: %s", err.msg);
				last_error_log = time_mono_ms();
			}
			if (err.code == 503 || err.code >= 500)
				registered = false;
			sleep_ms(a, 200);
			continue;
		}
		pthread_mutex_lock(&a->lock);
		if (with_report) {
			a->reported_gen = gen;
			a->reported_mono = time_mono_ms();
		}
		if (!a->stopping) {
			a->known_version =
			    (uint64_t)json_integer_value(json_object_get(reply, "version"));
			if (json_object_get(reply, "tasks")) /* else: nothing changed */
				reconcile(a, reply);
			/* Back from DOWN: the server wants every task we hold, to
			 * take back those whose replacements have not started. */
			if (json_is_true(json_object_get(reply, "report")))
				a->reported_gen = a->report_gen - 1;
		}
		pthread_mutex_unlock(&a->lock);
		json_decref(reply);
	}
	http_client_free(hc);
	return NULL;
}

/* ---- the events thread ---------------------------------------------------- */

/* Read the supervisors' datagrams: each names a task whose status.json
 * changed. Returns how many names were queued into ids. */
static size_t read_notifications(int fd, char ids[][128], size_t max)
{
	size_t n = 0;
	char buf[256];
	ssize_t r;
	while ((r = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
		if (n < max) {
			buf[r] = 0;
			snprintf(ids[n++], 128, "%s", buf);
		}
	}
	return n;
}

/* Advance every task's health check; a passing one makes the task
 * RUNNING, a failing one gets it stopped and reported FAILED with why. */
static void poll_health(struct agent *a, int64_t now)
{
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v)) {
		struct agent_task *t = v;
		if (!t->health || task_state_terminal(t->state))
			continue;
		enum health_verdict hv = health_check_poll(t->health, now);
		if (hv == HEALTH_PASSING && t->state == TASK_STARTING) {
			task_set(a, t, TASK_RUNNING, "");
		} else if (hv == HEALTH_FAILING && !t->health_failed) {
			struct health_counts hc;
			health_check_counters(t->health, &hc);
			t->health_failed = true;
			snprintf(t->health_msg, sizeof t->health_msg,
				 "health check failed %d times in a row: %s",
				 hc.consecutive_failures, health_check_last_error(t->health));
			log_info("task %s: %s", t->id, t->health_msg);
			supervisor_stop(t->sandbox);
		}
	}
}

/* The image cache is shared by all tasks: unused images go by age and
 * size (images of live tasks are kept). */
static void gc_images(struct agent *a)
{
	char *dir = xasprintf("%s/images", a->o.data_dir);
	struct image_cache *ic = NULL;
	struct berr err = {0};
	if (access(dir, F_OK) == 0 && image_cache_open(dir, &ic, &err) == 0) {
		struct image_gc_stats st;
		memset(&st, 0, sizeof st);
		int r = image_gc(ic, IMAGE_CACHE_MAX_BYTES, IMAGE_MAX_AGE_MS, &st);
		if (r < 0 && r != -EBUSY)
			log_warn("image cache gc: %s", strerror(-r));
		image_cache_free(ic);
	}
	free(dir);
}

/* The once-a-second look at a task, cheap enough for thousands: the
 * supervisor's notifications carry every change, so a task is read again
 * only while it is starting (a datagram can be lost when many come at
 * once) or when its supervisor is gone (a kill -9 sends no datagram); a
 * full read of every task comes every FULL_SCAN_EVERY_MS. */
static void task_check(struct agent *a, struct agent_task *t)
{
	if (task_state_terminal(t->state) || t->queued)
		return;
	if (t->state == TASK_ASSIGNED || t->state == TASK_STARTING || t->supervisor_pid <= 0 ||
	    (kill(t->supervisor_pid, 0) < 0 && errno == ESRCH))
		task_refresh(a, t);
}

static void *events_main(void *arg)
{
	struct agent *a = arg;
	struct http_client *hc = http_client_new(a->o.servers);
	http_client_set_header(hc, "X-Berth-Node", a->name);
	int64_t last_scan = 0, last_full_scan = 0, last_prune = 0, last_image_gc = time_mono_ms();
	while (!a->stopping) {
		struct pollfd p[2 + 64 * HEALTH_CHECK_MAX_FDS] = {
		    {.fd = a->notify_fd, .events = POLLIN},
		    {.fd = a->wake_pipe[0], .events = POLLIN}};
		int np = 2;
		int64_t wait = 500, now0 = time_mono_ms();
		pthread_mutex_lock(&a->lock);
		size_t hit = 0;
		void *hv;
		while (hmap_next(&a->tasks, &hit, NULL, &hv)) {
			struct agent_task *t = hv;
			if (t->stop_at_mono && t->stop_at_mono - now0 < wait)
				wait = t->stop_at_mono > now0 ? t->stop_at_mono - now0 : 0;
			if (!t->health)
				continue;
			if (np + HEALTH_CHECK_MAX_FDS <= (int)ARRAY_SIZE(p))
				np += health_check_fds(t->health, p + np, HEALTH_CHECK_MAX_FDS);
			int64_t next = health_check_next_ms(t->health) - now0;
			if (next < wait)
				wait = next < 0 ? 0 : next;
		}
		pthread_mutex_unlock(&a->lock);
		poll(p, (nfds_t)np, (int)wait);
		static char ids[256][128];
		size_t nids = 0;
		if (p[0].revents & POLLIN)
			nids = read_notifications(a->notify_fd, ids, ARRAY_SIZE(ids));
		if (p[1].revents & POLLIN) {
			char buf[256];
			while (read(a->wake_pipe[0], buf, sizeof buf) > 0)
				;
		}
		int64_t mono = time_mono_ms();
		pthread_mutex_lock(&a->lock);
		/* Notifications only say "look" at one task: the sandbox files are
		 * the truth. Every task is re-read once a second (or when too many
		 * notifications came at once), which catches a lost datagram or a
		 * supervisor that died. */
		size_t it = 0;
		void *v;
		for (size_t i = 0; i < nids; i++) {
			struct agent_task *t = hmap_get(&a->tasks, ids[i]);
			if (t)
				task_refresh(a, t);
		}
		if (nids == ARRAY_SIZE(ids) || mono - last_full_scan >= FULL_SCAN_EVERY_MS) {
			while (hmap_next(&a->tasks, &it, NULL, &v))
				task_refresh(a, v);
			last_full_scan = last_scan = mono;
		} else if (mono - last_scan >= 1000) {
			while (hmap_next(&a->tasks, &it, NULL, &v))
				task_check(a, v);
			last_scan = mono;
		}
		poll_health(a, mono);
		it = 0;
		while (hmap_next(&a->tasks, &it, NULL, &v)) {
			struct agent_task *t = v;
			if (t->stop_at_mono && mono >= t->stop_at_mono) {
				t->stop_at_mono = 0;
				if (!task_state_terminal(t->state) &&
				    supervisor_stop(t->sandbox) == 0)
					log_info(
					    "stopping task %s (still up after its graceful step)",
					    t->id);
			}
		}
		json_t *updates = json_array();
		it = 0;
		while (hmap_next(&a->tasks, &it, NULL, &v)) {
			struct agent_task *t = v;
			if (t->dirty)
				json_array_append_new(updates, task_report_json(t));
		}
		pthread_mutex_unlock(&a->lock);
		if (json_array_size(updates)) {
			json_t *body = json_pack("{s:s,s:O}", "name", a->name, "updates", updates);
			struct berr err = {0};
			if (http_json(hc, "POST", "/v1/agent/status", body, 10000, NULL, &err) ==
			    0) {
				pthread_mutex_lock(&a->lock);
				size_t i;
				json_t *u;
				json_array_foreach(updates, i, u)
				{
					const char *id =
					    json_string_value(json_object_get(u, "id"));
					struct agent_task *t = hmap_get(&a->tasks, id);
					const char *st =
					    json_string_value(json_object_get(u, "state"));
					if (!t || strcmp(st, task_state_name(t->state)))
						continue; /* changed again meanwhile */
					t->dirty = false;
					if (task_state_terminal(t->state)) {
						char *mark = xasprintf("%s/reported", t->sandbox);
						file_write_atomic(mark, "", 0);
						free(mark);
						hmap_del(&a->tasks, t->id);
						task_free(t);
						a->report_gen++;
					}
				}
				pthread_mutex_unlock(&a->lock);
			} else {
				sleep_ms(a, 200);
			}
			json_decref(body);
		}
		json_decref(updates);
		if (mono - last_prune > 60000) {
			prune_sandboxes(a);
			last_prune = mono;
		}
		if (mono - last_image_gc > IMAGE_GC_EVERY_MS) {
			gc_images(a);
			last_image_gc = mono;
		}
	}
	http_client_free(hc);
	return NULL;
}

/* ---- logs ------------------------------------------------------------------- */

#define LOG_CHUNK (1 << 20)

static enum MHD_Result logs_request(void *cls, struct MHD_Connection *conn, const char *url,
				    const char *method, const char *version, const char *upload,
				    size_t *upload_size, void **con_cls)
{
	struct agent *a = cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	int status = 200;
	char *body = NULL;
	size_t len = 0;
	long long next = 0;
	const char *id = !strncmp(url, "/v1/logs/", 9) ? url + 9 : NULL;
	const char *stream = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "stream");
	const char *off = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset");
	if (!stream)
		stream = "stdout";
	if (strcmp(method, "GET")) {
		status = 405;
		body = xstrdup("{\"error\":\"method not allowed\",\"status\":405}\n");
	} else if (!id || !*id || strchr(id, '/') || strstr(id, "..") ||
		   (strcmp(stream, "stdout") && strcmp(stream, "stderr"))) {
		status = 404;
		body = xstrdup("{\"error\":\"unknown route\",\"status\":404}\n");
	} else {
		char *path = xasprintf("%s/%s/%s", a->tasks_dir, id, stream);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		free(path);
		if (fd < 0) {
			status = 404;
			body = xstrdup(
			    "{\"error\":\"no logs for this task on this node\",\"status\":404}\n");
		} else {
			struct stat st;
			fstat(fd, &st);
			long long o = 0;
			if (off) {
				int64_t v;
				if (parse_int64(off, &v) == 0)
					o = v;
			}
			if (o < 0)
				o = st.st_size + o < 0 ? 0 : st.st_size + o;
			if (o > st.st_size)
				o = 0; /* the file was rotated: start over */
			size_t want = (size_t)(st.st_size - o);
			if (want > LOG_CHUNK)
				want = LOG_CHUNK;
			body = xmalloc(want + 1);
			ssize_t r = pread(fd, body, want, o);
			len = r > 0 ? (size_t)r : 0;
			next = o + (long long)len;
			close(fd);
		}
	}
	if (status != 200)
		len = strlen(body);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	char nbuf[32];
	snprintf(nbuf, sizeof nbuf, "%lld", next);
	MHD_add_response_header(resp, "X-Berth-Offset", nbuf);
	MHD_add_response_header(resp, "Content-Type",
				status == 200 ? "application/octet-stream" : "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- start / stop ----------------------------------------------------------- */

static int open_notify_socket(struct agent *a, struct berr *err)
{
	a->notify_path = xasprintf("%s/agent.sock", a->o.data_dir);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(a->notify_path) >= sizeof sun.sun_path)
		return berr_set(err, 500, "data dir path too long for a unix socket: '%s'",
				a->notify_path);
	strcpy(sun.sun_path, a->notify_path);
	unlink(a->notify_path);
	a->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (a->notify_fd < 0 || bind(a->notify_fd, (struct sockaddr *)&sun, sizeof sun) < 0)
		return berr_set(err, 500, "cannot bind '%s': %s", a->notify_path, strerror(errno));
	return 0;
}

static void join_system_cgroup(struct agent *a)
{
	const char *name = a->o.system_cgroup;
	if (!name || !*name || !strcmp(name, "none") || geteuid() != 0 ||
	    cgroup_detect() == CGROUP_NONE)
		return;
	struct berr err = {0};
	if (cgroup_join_system(name, SYSTEM_CGROUP_WEIGHT, &err) < 0)
		log_warn("cannot join berth's own cgroup '%s' (tasks may starve the agent): %s",
			 name, err.msg);
}

struct agent *agent_start(const struct agent_options *o, struct berr *err)
{
	struct agent *a = xcalloc(1, sizeof *a);
	a->o = *o;
	a->notify_fd = -1;
	a->wake_pipe[0] = a->wake_pipe[1] = -1;
	char host[256] = "localhost";
	gethostname(host, sizeof host - 1);
	a->name = xstrdup(o->name && *o->name ? o->name : host);
	a->tasks_dir = xasprintf("%s/tasks", o->data_dir);
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->changed, NULL);
	pthread_cond_init(&a->launch_cond, NULL);
	a->launch_tail = &a->launch_head;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	a->max_starting = ncpu > 2 ? 2 * (int)ncpu : 4;
	hmap_init(&a->tasks);
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	int r = mkdir_p(a->tasks_dir, 0755);
	if (r < 0) {
		berr_set(err, 500, "cannot create '%s': %s", a->tasks_dir, strerror(-r));
		goto fail;
	}
	if (pipe2(a->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		berr_set(err, 500, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (open_notify_socket(a, err) < 0)
		goto fail;
	struct sockaddr_in sa;
	if (addr_parse(o->listen, &sa, err) < 0)
		goto fail;
	a->logs = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, logs_request, a,
				   MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_TIMEOUT,
				   (unsigned)60, MHD_OPTION_END);
	if (!a->logs) {
		berr_set(err, 500, "cannot listen on '%s' for logs", o->listen);
		goto fail;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(a->logs, MHD_DAEMON_INFO_BIND_PORT);
	a->logs_port = di ? di->port : 0;
	if (sa.sin_addr.s_addr != htonl(INADDR_ANY)) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
		a->advertise = xasprintf("http://%s:%d", ip, a->logs_port);
	}
	join_system_cgroup(a);
	adopt_existing(a);
	orphans_sweep_cgroups(a->o.cgroup_parent);
	prune_sandboxes(a);
	for (; a->nlaunchers < LAUNCHERS; a->nlaunchers++)
		if (pthread_create(&a->launchers[a->nlaunchers], NULL, launcher_main, a) != 0) {
			berr_set(err, 500, "cannot start agent threads");
			goto fail;
		}
	if (pthread_create(&a->event_thread, NULL, events_main, a) != 0 ||
	    pthread_create(&a->watch_thread, NULL, watch_main, a) != 0) {
		berr_set(err, 500, "cannot start agent threads");
		goto fail;
	}
	log_info("agent %s started (data in %s, logs on port %d)", a->name, o->data_dir,
		 a->logs_port);
	return a;
fail:
	a->stopping = true;
	pthread_mutex_lock(&a->lock);
	pthread_cond_broadcast(&a->launch_cond);
	pthread_mutex_unlock(&a->lock);
	for (size_t i = 0; i < a->nlaunchers; i++)
		pthread_join(a->launchers[i], NULL);
	if (a->logs)
		MHD_stop_daemon(a->logs);
	if (a->notify_fd >= 0)
		close(a->notify_fd);
	if (a->wake_pipe[0] >= 0) {
		close(a->wake_pipe[0]);
		close(a->wake_pipe[1]);
	}
	hmap_release(&a->tasks);
	free(a->name);
	free(a->tasks_dir);
	free(a->notify_path);
	free(a->advertise);
	free(a);
	return NULL;
}

/* berth up: stop every task and wait for their supervisors to finish. */
static void stop_all_tasks(struct agent *a)
{
	int64_t deadline = time_mono_ms() + 2000;
	pthread_mutex_lock(&a->lock);
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v)) {
		struct agent_task *t = v;
		if (task_state_terminal(t->state))
			continue;
		struct task_report r;
		uint64_t grace = 10000;
		(void)r;
		t->stop_sent = true;
		supervisor_stop(t->sandbox);
		if (time_mono_ms() + (int64_t)grace + 2000 > deadline)
			deadline = time_mono_ms() + (int64_t)grace + 2000;
	}
	pthread_mutex_unlock(&a->lock);
	for (;;) {
		bool alive = false;
		pthread_mutex_lock(&a->lock);
		it = 0;
		while (hmap_next(&a->tasks, &it, NULL, &v))
			if (supervisor_alive(((struct agent_task *)v)->sandbox))
				alive = true;
		pthread_mutex_unlock(&a->lock);
		if (!alive || time_mono_ms() > deadline)
			break;
		sleep_ms(a, 50);
	}
}

void agent_stop(struct agent *a)
{
	if (!a)
		return;
	if (a->o.stop_tasks_on_exit)
		stop_all_tasks(a);
	a->stopping = true;
	if (write(a->wake_pipe[1], "x", 1) < 0) {
		/* full pipe: the events thread wakes anyway */
	}
	pthread_mutex_lock(&a->lock);
	pthread_cond_broadcast(&a->launch_cond);
	pthread_mutex_unlock(&a->lock);
	for (size_t i = 0; i < a->nlaunchers; i++)
		pthread_join(a->launchers[i], NULL);
	for (struct launch_job *j; (j = launch_dequeue(a));)
		launch_job_free(j);
	pthread_join(a->event_thread, NULL);
	pthread_join(a->watch_thread, NULL);
	MHD_stop_daemon(a->logs);
	close(a->notify_fd);
	unlink(a->notify_path);
	close(a->wake_pipe[0]);
	close(a->wake_pipe[1]);
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v))
		task_free(v);
	hmap_release(&a->tasks);
	while (a->graceful) {
		struct launch_job *j = a->graceful;
		a->graceful = j->next;
		launch_job_free(j);
	}
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->changed);
	pthread_cond_destroy(&a->launch_cond);
	free(a->name);
	free(a->tasks_dir);
	free(a->notify_path);
	free(a->advertise);
	free(a);
}
