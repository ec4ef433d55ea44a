/* agent_launch.c - from a desired entry to a running supervisor: the launch
 * plan (spec, template expansion, environment, volumes) and the launcher
 * threads that start supervisors outside the agent's lock. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent-internal.h"
#include "agent/host_volumes.h"
#include "agent/secret_files.h"
#include "agent/supervisor.h"
#include "agent/task_exec.h"
#include "core/http_client.h"
#include "core/log.h"

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
	const char **vhost, **vpath; /* point into spec->task.volumes, or vreal */
	bool *vro;
	char **vreal; /* the host paths resolved under a volume root (plan_volumes) */
	int health_port, shutdown_port;
	bool task_keeps_spec;	   /* health checks or a graceful stop need it */
	char **secret_files;	   /* on the task's secrets tmpfs (agent_secrets.c) */
	const char **secret_paths; /* point into spec->task.secrets */
	uint32_t address;	   /* network: bridge: the task's address */
	int prefix;		   /* docker: its subnet's length, */
	uint32_t gateway;	   /* and the bridge's address (netns_attach) */
	char *netns_path;	   /* and its network namespace */
	bool netns_attach;	   /* docker: bound by the supervisor, later */
};

static void plan_release(struct launch_plan *p)
{
	strv_free_n(p->argv, p->argc);
	strv_free_n(p->env, p->nenv);
	free(p->pvals);
	free(p->vhost);
	free(p->vpath);
	free(p->vro);
	strv_free(p->vreal);
	strv_free(p->secret_files);
	free(p->secret_paths);
	free(p->netns_path);
	spec_free(p->spec);
	free(p->id);
	free(p->job);
	memset(p, 0, sizeof *p);
}

/* The health check's command runs inside the task, as the task (its
 * namespaces, cgroup, user: task_exec.h), never as the agent's root on the
 * host: `berth task-exec SANDBOX -- CMD...`. */
static void plan_health_command(const struct agent *a, const char *id, struct task_spec *ts,
				const struct template_ctx *ctx)
{
	char **cmd = xcalloc(ts->health.ncommand + 1, sizeof *cmd);
	for (size_t i = 0; i < ts->health.ncommand; i++)
		cmd[i] = spec_expand(ts->health.command[i], ctx);
	char *sandbox = xasprintf("%s/%s", a->tasks_dir, id);
	size_t n;
	char **argv = task_exec_argv(a->o.exe, sandbox, cmd, ts->health.ncommand, &n);
	free(sandbox);
	strv_free_n(cmd, ts->health.ncommand);
	strv_free_n(ts->health.command, ts->health.ncommand);
	ts->health.command = argv;
	ts->health.ncommand = n;
}

static int plan_build(const struct agent *a, const struct agent_drivers *drivers, json_t *d,
		      struct launch_plan *p, struct berr *err)
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
	if (drivers->unavailable[ts->driver][0])
		/* Offered only where it was found working (at registration). */
		return berr_set(err, 400, "driver '%s' is not available on this agent: %s",
				task_driver_name(ts->driver), drivers->unavailable[ts->driver]);
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
			plan_health_command(a, p->id, ts, &ctx);
	}
	return 0;
}

/* Under the lock: what the agent keeps of the spec for the task's life
 * (health checks, the graceful stop) goes to the task. */
static void plan_give_to_task(struct launch_plan *p, struct agent_task *t)
{
	t->configured = true;
	t->shutdown_port = p->shutdown_port;
	free(t->job);
	t->job = xstrdup(p->job);
	t->drain_delay_ms = p->spec->task.drain_delay_ms;
	if (!p->task_keeps_spec)
		return;
	if (p->spec->task.health.kind != HEALTH_NONE)
		t->health_port = p->health_port;
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
	    .allow_root_tasks = a->o.allow_root_tasks,
	    .cpu = ts->resources.cpu,
	    .memory_bytes = ts->resources.memory,
	    .stop_grace_ms = ts->stop_grace_ms,
	    .cgroup_parent = a->o.cgroup_parent,
	    .notify_socket = a->notify_path,
	    .log_max_bytes = a->o.log_max_bytes,
	    .log_max_files = a->o.log_max_files,
	    .image_max_bytes = a->o.image_max_bytes,
	    .image_max_unpacked_bytes = a->o.image_max_unpacked_bytes,
	    .volume_host = p->vhost,
	    .volume_path = p->vpath,
	    .volume_ro = p->vro,
	    .nvolumes = ts->nvolumes,
	    .secret_file = (const char *const *)p->secret_files,
	    .secret_path = p->secret_paths,
	    .nsecrets = p->secret_files ? ts->nsecrets : 0,
	    .netns_path = p->netns_path,
	    .net_address = p->netns_attach ? p->address : 0,
	    .net_prefix = p->netns_attach ? p->prefix : 0,
	    .net_gateway = p->netns_attach ? p->gateway : 0,
	};
	pid_t spid;
	return supervisor_launch(&l, a->o.exe, &spid, err);
}

/* Each volume's host path resolved (symlinks, "..") and checked against
 * the agent's volume roots; the drivers mount the resolved path. */
static int plan_volumes(const struct agent *a, struct launch_plan *p, struct berr *err)
{
	const struct task_spec *ts = &p->spec->task;
	p->vreal = xcalloc(ts->nvolumes + 1, sizeof *p->vreal);
	for (size_t i = 0; i < ts->nvolumes; i++) {
		if (host_volumes_resolve(a->volume_roots, ts->volumes[i].host, &p->vreal[i], err) <
		    0)
			return -1;
		p->vhost[i] = p->vreal[i];
	}
	return 0;
}

/* The task's secrets on its tmpfs, before its supervisor starts. */
static int plan_secrets(const struct agent *a, struct launch_plan *p, const char *sandbox,
			struct berr *err)
{
	const struct task_spec *ts = &p->spec->task;
	if (!ts->nsecrets)
		return 0;
	if (agent_secrets_prepare(a, p->id, sandbox, ts, &p->secret_files, err) < 0)
		return -1;
	p->secret_paths = xcalloc(ts->nsecrets + 1, sizeof *p->secret_paths);
	for (size_t i = 0; i < ts->nsecrets; i++)
		p->secret_paths[i] = ts->secrets[i].path;
	return 0;
}

/* network: bridge: the task's namespace, veth and address (node_net.h). */
static int plan_network(const struct agent *a, struct launch_plan *p, struct berr *err)
{
	if (p->spec->task.network != NETWORK_BRIDGE)
		return 0;
	int r;
	if (p->spec->task.driver == DRIVER_DOCKER) {
		/* Docker makes the container's namespace when it starts it
		 * (NetworkMode none); the supervisor binds it and adds the veth
		 * then (task_net_attach). */
		p->netns_attach = true;
		r = node_net_task_reserve(a->net, p->id, p->pvals, p->spec->task.resources.nports,
					  &p->address, &p->prefix, &p->netns_path, err);
		p->gateway = node_net_gateway(a->net);
	} else {
		r = node_net_task_setup(a->net, p->id, p->pvals, p->spec->task.resources.nports,
					&p->address, &p->netns_path, err);
	}
	if (r < 0) {
		char msg[sizeof err->msg];
		snprintf(msg, sizeof msg, "%s", err->msg);
		return berr_set(err, 0, "cannot set up the task's network: %s", msg);
	}
	return 0;
}

/* A task re-adopted after an agent restart whose spec arrives now: only
 * what the agent keeps from the spec is set up; nothing is launched. */
int agent_task_configure_adopted(struct agent *a, json_t *d, struct agent_task *t, struct berr *err)
{
	struct launch_plan p;
	int r = plan_build(a, &a->drivers, d, &p, err);
	if (r == 0)
		plan_give_to_task(&p, t);
	plan_release(&p);
	return r;
}

/* Queue a POST to the task's shutdown path (Aurora's /quitquitquit): a
 * launcher thread sends it, never the watch thread (a task slow to answer
 * must not delay the heartbeat). */
void agent_graceful_shutdown(struct agent *a, struct agent_task *t)
{
	struct launch_job *j = xcalloc(1, sizeof *j);
	char ip[16] = "127.0.0.1";
	if (t->address)
		ip4_format(t->address, ip); /* a bridge task: its own address */
	j->id = xasprintf("http://%s:%d%s", ip, t->shutdown_port, t->spec->task.shutdown.http_path);
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

void agent_launch_enqueue(struct agent *a, struct agent_task *t, json_t *d)
{
	struct launch_job *j = xcalloc(1, sizeof *j);
	j->id = xstrdup(t->id);
	j->desired = json_incref(d);
	*a->launch_tail = j;
	a->launch_tail = &j->next;
	t->queued = true;
	pthread_cond_signal(&a->launch_cond);
}

struct launch_job *agent_launch_dequeue(struct agent *a)
{
	struct launch_job *j = a->launch_head;
	if (j) {
		a->launch_head = j->next;
		if (!a->launch_head)
			a->launch_tail = &a->launch_head;
	}
	return j;
}

void agent_launch_job_free(struct launch_job *j)
{
	json_decref(j->desired);
	free(j->id);
	free(j);
}

/* Under the lock: the task's supervisor is no longer starting. */
void agent_launch_slot_free(struct agent *a, struct agent_task *t)
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
			agent_launch_slot_free(a, t);
	}
	return a->nstarting < a->max_starting;
}

static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, int ms)
{
	struct timespec ts = time_deadline_ms(ms);
	pthread_cond_timedwait(cv, m, &ts);
}

void *agent_launcher_main(void *arg)
{
	struct agent *a = arg;
	pthread_mutex_lock(&a->lock);
	while (!a->stopping) {
		if (a->graceful) {
			struct launch_job *g = a->graceful;
			a->graceful = g->next;
			pthread_mutex_unlock(&a->lock);
			if (g->orphan) {
				struct driver_host h = {.data_dir = a->o.data_dir,
							.docker_socket = a->o.docker_socket};
				driver_delete_orphans(&h, g->id,
						      g->driver_known ? &g->driver : NULL);
			} else {
				graceful_send(g->id);
			}
			agent_launch_job_free(g);
			pthread_mutex_lock(&a->lock);
			continue;
		}
		if (!a->launch_head || !launch_slot_available(a)) {
			cond_wait_ms(&a->launch_cond, &a->lock, 100);
			continue;
		}
		struct launch_job *j = agent_launch_dequeue(a);
		struct agent_task *t = hmap_get(&a->tasks, j->id);
		if (!t || !t->queued) {
			agent_launch_job_free(j);
			continue;
		}
		if (t->stop_sent) {
			/* Not wanted any more before it ever started. */
			t->queued = false;
			agent_task_set(a, t, TASK_KILLED, "stopped before it was launched");
			agent_launch_job_free(j);
			continue;
		}
		t->starting = true;
		a->nstarting++;
		t->launched_mono = time_mono_ms();
		char *sandbox = xstrdup(t->sandbox);
		struct agent_drivers drivers = a->drivers;
		pthread_mutex_unlock(&a->lock);

		struct launch_plan p;
		struct berr err = {0};
		int r = plan_build(a, &drivers, j->desired, &p, &err);
		if (r == 0)
			r = plan_volumes(a, &p, &err);
		if (r == 0)
			r = plan_secrets(a, &p, sandbox, &err);
		if (r == 0)
			r = plan_network(a, &p, &err);
		if (r == 0)
			r = agent_dns_resolv_conf(a, sandbox,
						  p.address ? node_net_gateway(a->net) : 0, &err);
		if (r == 0) {
			r = plan_launch(a, &p, sandbox, &err);
			if (r < 0 && p.secret_files)
				secret_files_remove(sandbox); /* no supervisor to do it */
			if (r < 0 && p.netns_path)
				node_net_task_teardown(a->net, p.id);
		}
		free(sandbox);

		pthread_mutex_lock(&a->lock);
		t = hmap_get(&a->tasks, j->id); /* queued tasks are never removed */
		if (t) {
			t->queued = false;
			t->launched_mono = time_mono_ms();
			if (r < 0) {
				agent_launch_slot_free(a, t);
				log_warn("task %s: %s", t->id, err.msg);
				agent_task_set(a, t, TASK_FAILED, err.msg);
			} else {
				t->address = p.address;
				plan_give_to_task(&p, t);
				/* No STARTING report of our own: the supervisor's first
				 * report comes within milliseconds. One that came while
				 * the task was still marked queued was not read: look. */
				if (t->stop_sent)
					supervisor_stop(t->sandbox);
				agent_task_refresh(a, t);
			}
		}
		plan_release(&p);
		agent_launch_job_free(j);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* Start what the server wants and we lack; stop what we hold and it does not. */
