/* agent_tasks.c - the agent's task table: what it holds of each task, the
 * state it reports, and reading a supervisor's report into it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "agent/supervisor.h"
#include "core/log.h"

struct agent_task *agent_task_add(struct agent *a, const char *id)
{
	struct agent_task *t = xcalloc(1, sizeof *t);
	t->id = xstrdup(id);
	t->sandbox = xasprintf("%s/%s", a->tasks_dir, id);
	t->exit_code = -1;
	hmap_put(&a->tasks, id, t);
	a->report_gen++;
	return t;
}

void agent_task_free(struct agent_task *t)
{
	health_check_free(t->health);
	spec_free(t->spec);
	free(t->job);
	free(t->id);
	free(t->sandbox);
	free(t);
}

void agent_launch_slot_free(struct agent *a, struct agent_task *t);

void agent_task_set(struct agent *a, struct agent_task *t, enum task_state s, const char *msg)
{
	if (t->state == s && !strcmp(t->message, msg ? msg : t->message))
		return;
	t->state = s;
	if (s == TASK_RUNNING && t->launch_begin_mono) {
		agent_metrics_running(a->metrics, time_mono_ms() - t->launch_begin_mono);
		t->launch_begin_mono = 0;
	}
	if (task_state_terminal(s))
		agent_launch_slot_free(a, t);
	if (msg)
		snprintf(t->message, sizeof t->message, "%s", msg);
	t->dirty = true;
	a->report_gen++;
	agent_wake(a);
}

/* What a task whose supervisor is gone (killed with the agent, say) left
 * running unwatched goes: a container outlives its supervisor. The spec
 * may be unknown (an adopted task): then every driver looks. A runtime's
 * answer can take seconds: a launcher thread does it, off the agent's lock
 * (under the lock). */
void agent_task_delete_orphans(struct agent *a, struct agent_task *t)
{
	struct launch_job *j = xcalloc(1, sizeof *j);
	j->id = xstrdup(t->id);
	j->orphan = true;
	j->driver_known = t->spec != NULL;
	if (t->spec)
		j->driver = t->spec->task.driver;
	j->next = a->graceful;
	a->graceful = j;
	pthread_cond_signal(&a->launch_cond);
}

/* Read a supervisor's report into the task. */
void agent_task_refresh(struct agent *a, struct agent_task *t)
{
	if (task_state_terminal(t->state) || t->queued)
		return;
	struct task_report r;
	if (supervisor_read_report(t->sandbox, &r) < 0) {
		if (!supervisor_alive(t->sandbox) &&
		    (t->state != TASK_ASSIGNED || time_mono_ms() - t->launched_mono > 10000))
			agent_task_set(a, t, TASK_FAILED,
				       "the task's supervisor died before reporting");
		return;
	}
	if ((r.phase == PHASE_STARTING || r.phase == PHASE_RUNNING) &&
	    !supervisor_alive(t->sandbox)) {
		/* Its supervisor died (kill -9, OOM of the agent's cgroup...):
		 * read again in case it wrote the end just before going, else
		 * nobody watches the task any more. */
		if (supervisor_read_report(t->sandbox, &r) < 0 || r.phase != PHASE_EXITED) {
			agent_task_delete_orphans(a, t);
			agent_task_set(a, t, TASK_LOST, "the task's supervisor died");
			return;
		}
	}
	if (r.pid > 0)
		t->pid = r.pid;
	if (r.supervisor_pid > 0)
		t->supervisor_pid = r.supervisor_pid;
	if (r.phase == PHASE_RUNNING || r.phase == PHASE_EXITED)
		agent_launch_slot_free(a, t); /* its start is over */
	switch (r.phase) {
	case PHASE_STARTING:
		agent_task_set(a, t, TASK_STARTING, NULL);
		break;
	case PHASE_RUNNING:
		if (t->spec && !t->health_started) {
			/* RUNNING only once its checks pass: STARTING until then. */
			t->health_started = true;
			/* A command check is `berth task-exec` (planned so): the
			 * agent's environment and directory, not the task's. */
			/* A bridge task listens in its own namespace: at its
			 * address, not on the node's loopback. */
			char ip[16] = "127.0.0.1";
			if (t->address)
				ip4_format(t->address, ip);
			t->health =
			    health_check_new(&t->spec->task.health, ip, t->health_port, NULL, NULL);
		}
		if (t->health && t->state != TASK_RUNNING)
			agent_task_set(a, t, TASK_STARTING, "waiting for health checks to pass");
		else
			agent_task_set(a, t, TASK_RUNNING, "");
		break;
	case PHASE_EXITED:
		t->exit_code = r.signal ? 128 + r.signal : r.exit_code;
		health_check_free(t->health);
		t->health = NULL;
		if (t->health_failed)
			agent_task_set(a, t, TASK_FAILED, t->health_msg);
		else if (r.oom)
			agent_task_set(a, t, TASK_FAILED, r.message);
		else if (r.stopped || t->stop_sent)
			agent_task_set(a, t, TASK_KILLED, r.message);
		else if (!r.signal && r.exit_code == 0)
			agent_task_set(a, t, TASK_FINISHED, r.message);
		else
			agent_task_set(a, t, TASK_FAILED, r.message);
		break;
	default:
		if (!supervisor_alive(t->sandbox))
			agent_task_set(a, t, TASK_LOST, "supervisor vanished without a report");
	}
}

json_t *agent_task_report_json(const struct agent_task *t)
{
	json_t *o = json_pack("{s:s,s:s,s:i,s:s}", "id", t->id, "state", task_state_name(t->state),
			      "pid", t->pid, "message", t->message);
	if (t->exit_code >= 0)
		json_object_set_new(o, "exit_code", json_integer(t->exit_code));
	if (t->address) {
		char ip[16];
		json_object_set_new(o, "address", json_string(ip4_format(t->address, ip)));
	}
	return o;
}

json_t *agent_full_report(struct agent *a)
{
	json_t *arr = json_array();
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v))
		json_array_append_new(arr, agent_task_report_json(v));
	return arr;
}

/* The once-a-second look at a task, cheap enough for thousands: the
 * supervisor's notifications carry every change, so a task is read again
 * only while it is starting (a datagram can be lost when many come at
 * once) or when its supervisor is gone (a kill -9 sends no datagram); a
 * full read of every task comes every FULL_SCAN_EVERY_MS. */
void agent_task_check(struct agent *a, struct agent_task *t)
{
	if (task_state_terminal(t->state) || t->queued)
		return;
	if (t->state == TASK_ASSIGNED || t->state == TASK_STARTING || t->supervisor_pid <= 0 ||
	    (kill(t->supervisor_pid, 0) < 0 && errno == ESRCH))
		agent_task_refresh(a, t);
}

void agent_task_stop_after_drain(struct agent *a, struct agent_task *t)
{
	t->drain_until_mono = 0;
	if (task_state_terminal(t->state))
		return;
	if (t->spec && *t->spec->task.shutdown.http_path && t->shutdown_port > 0 &&
	    t->state == TASK_RUNNING) {
		/* The graceful step first; SIGTERM only if it is still up
		 * after shutdown.wait. */
		agent_graceful_shutdown(a, t);
		t->stop_at_mono = time_mono_ms() + (int64_t)t->spec->task.shutdown.wait_ms;
		return;
	}
	int r = supervisor_stop(t->sandbox);
	log_info("stopping task %s%s", t->id, r == -ESRCH ? " (already gone)" : "");
	if (r == -ESRCH)
		agent_task_refresh(a, t);
}

void agent_task_stop(struct agent *a, struct agent_task *t)
{
	t->stop_sent = true;
	if (t->state == TASK_RUNNING && t->job && t->drain_delay_ms &&
	    agent_mesh_publishes(a, t->job)) {
		t->drain_until_mono = time_mono_ms() + (int64_t)t->drain_delay_ms;
		log_info("task %s leaves the mesh's rotation: stopping it in %llu ms", t->id,
			 (unsigned long long)t->drain_delay_ms);
		agent_wake(a);
		return;
	}
	agent_task_stop_after_drain(a, t);
}
