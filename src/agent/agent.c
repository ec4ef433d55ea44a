/* agent.c - the agent's start and stop: its data dir, the notify socket,
 * berth's own cgroup, re-adoption, and the threads (agent-internal.h has
 * the map of the other files). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "agent/dns_server.h"
#include "agent/cgroup.h"
#include "agent/host_volumes.h"
#include "agent/image/registry_auth.h"
#include "agent/orphans.h"
#include "agent/secret_files.h"
#include "agent/supervisor.h"
#include "core/log.h"

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

void agent_sleep_ms(int ms)
{
	struct pollfd p = {.fd = -1};
	poll(&p, 0, ms);
}

void agent_wake(struct agent *a)
{
	if (write(a->wake_pipe[1], "x", 1) < 0) {
		/* the pipe is full: the events thread is already due to wake */
	}
}

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
	a->logs_fd = -1;
	a->wake_pipe[0] = a->wake_pipe[1] = -1;
	pthread_mutex_init(&a->logs_lock, NULL);
	a->metrics = agent_metrics_new();
	char host[256] = "localhost";
	gethostname(host, sizeof host - 1);
	a->name = xstrdup(o->name && *o->name ? o->name : host);
	a->tasks_dir = xasprintf("%s/tasks", o->data_dir);
	a->net = node_net_new(o->data_dir);
	if (host_volumes_roots(o->volume_roots, o->nvolume_roots, &a->volume_roots, err) < 0) {
		free(a->name);
		free(a->tasks_dir);
		node_net_free(a->net);
		agent_metrics_free(a->metrics);
		free(a);
		return NULL;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->changed, NULL);
	pthread_cond_init(&a->launch_cond, NULL);
	a->launch_tail = &a->launch_head;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	a->max_starting = ncpu > 2 ? 2 * (int)ncpu : 4;
	hmap_init(&a->tasks);
	hmap_init(&a->mesh_jobs);
	a->endpoints = endpoints_new();
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* 0700 (docs/security.md): the sandboxes are root's alone; a task
	 * reaches its own working directory through its private view of the
	 * data dir (exec_isolation.c), not through these modes. */
	int r = mkdir_private(o->data_dir, 0700);
	if (r == 0)
		r = mkdir_private(a->tasks_dir, 0700);
	if (r == 0 && agent_identity_init(a, err) < 0)
		goto fail;
	if (r < 0) {
		berr_set(err, 500, "cannot create '%s': %s", a->tasks_dir, strerror(-r));
		goto fail;
	}
	/* Registry credentials are read by each oci task's supervisor; a bad
	 * BERTH_REGISTRY_AUTH or registry-auth.json stops the agent now
	 * rather than fail every pull later. */
	struct registry_auth *auth = NULL;
	if (registry_auth_load(o->data_dir, &auth, err) < 0)
		goto fail;
	registry_auth_free(auth);
	if (pipe2(a->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		berr_set(err, 500, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (open_notify_socket(a, err) < 0)
		goto fail;
	if (agent_logs_start(a, o->listen, err) < 0)
		goto fail;
	if (agent_dns_start(a, err) < 0)
		goto fail;
	join_system_cgroup(a);
	agent_adopt_existing(a);
	orphans_sweep_cgroups(a->o.cgroup_parent);
	secret_files_sweep(a->tasks_dir);
	agent_prune_sandboxes(a);
	for (; a->nlaunchers < LAUNCHERS; a->nlaunchers++)
		if (pthread_create(&a->launchers[a->nlaunchers], NULL, agent_launcher_main, a) !=
		    0) {
			berr_set(err, 500, "cannot start agent threads");
			goto fail;
		}
	if (agent_mesh_start(a, err) < 0)
		goto fail;
	if (pthread_create(&a->event_thread, NULL, agent_events_main, a) != 0 ||
	    pthread_create(&a->watch_thread, NULL, agent_watch_main, a) != 0) {
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
	agent_mesh_stop(a);
	agent_logs_stop(a);
	if (a->notify_fd >= 0)
		close(a->notify_fd);
	if (a->wake_pipe[0] >= 0) {
		close(a->wake_pipe[0]);
		close(a->wake_pipe[1]);
	}
	hmap_release(&a->tasks);
	agent_identity_free(a);
	dns_server_stop(a->dns);
	dns_server_stop(a->dns_bridge);
	endpoints_free(a->endpoints);
	free(a->name);
	free(a->tasks_dir);
	free(a->notify_path);
	free(a->advertise);
	strv_free(a->volume_roots);
	node_net_free(a->net);
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
		agent_sleep_ms(50);
	}
}

void agent_stop(struct agent *a)
{
	if (!a)
		return;
	if (a->o.stop_tasks_on_exit)
		stop_all_tasks(a);
	a->stopping = true;
	agent_wake(a);
	pthread_mutex_lock(&a->lock);
	pthread_cond_broadcast(&a->launch_cond);
	pthread_mutex_unlock(&a->lock);
	for (size_t i = 0; i < a->nlaunchers; i++)
		pthread_join(a->launchers[i], NULL);
	for (struct launch_job *j; (j = agent_launch_dequeue(a));)
		agent_launch_job_free(j);
	pthread_join(a->event_thread, NULL);
	pthread_join(a->watch_thread, NULL);
	if (a->o.stop_tasks_on_exit)
		agent_net_gc(a, true); /* the stopped tasks' networks go with them */
	agent_mesh_stop(a);
	agent_logs_stop(a);
	close(a->notify_fd);
	unlink(a->notify_path);
	close(a->wake_pipe[0]);
	close(a->wake_pipe[1]);
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v))
		agent_task_free(v);
	hmap_release(&a->tasks);
	while (a->graceful) {
		struct launch_job *j = a->graceful;
		a->graceful = j->next;
		agent_launch_job_free(j);
	}
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->changed);
	pthread_cond_destroy(&a->launch_cond);
	pthread_mutex_destroy(&a->logs_lock);
	agent_metrics_free(a->metrics);
	agent_identity_free(a);
	dns_server_stop(a->dns);
	dns_server_stop(a->dns_bridge);
	endpoints_free(a->endpoints);
	free(a->name);
	free(a->tasks_dir);
	free(a->notify_path);
	free(a->advertise);
	strv_free(a->volume_roots);
	node_net_free(a->net);
	free(a);
}
