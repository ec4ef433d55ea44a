/* agent_events.c - the events thread: supervisors' notifications, status
 * pushes to the server, health checks, graceful-stop deadlines, pruning of
 * ended sandboxes and the image cache's GC. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "agent/agent_logtail.h"
#include "agent/image/image.h"
#include "agent/secret_files.h"
#include "agent/supervisor.h"
#include "core/http_client.h"
#include "core/log.h"

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
void agent_prune_sandboxes(struct agent *a)
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
		if (n - i > KEEP_ENDED_SANDBOXES) {
			secret_files_remove(v[i].path); /* never rm -rf through a mount */
			rm_rf(v[i].path);
		}
		free(v[i].path);
	}
	free(v);
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
			agent_task_set(a, t, TASK_RUNNING, "");
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

/* ---- task networks ---- */

struct net_fates {
	struct agent *a;
	struct hmap live; /* id -> (void *)1 running, (void *)2 ended */
	bool all;
};

static enum node_net_task_fate net_fate(void *ud, const char *id)
{
	struct net_fates *f = ud;
	void *v = hmap_get(&f->live, id);
	if (v)
		return v == (void *)1 && !f->all ? NODE_NET_KEEP : NODE_NET_GONE;
	/* Not in the table: ended and reported, or a launch newer than our
	 * look (or a sandbox pruned long ago: its traces are old). */
	char *mark = xasprintf("%s/%s/reported", f->a->tasks_dir, id);
	enum node_net_task_fate r =
	    access(mark, F_OK) == 0 || f->all ? NODE_NET_GONE : NODE_NET_UNKNOWN;
	free(mark);
	return r;
}

void agent_net_gc(struct agent *a, bool all)
{
	struct net_fates f = {.a = a, .all = all};
	hmap_init(&f.live);
	pthread_mutex_lock(&a->lock);
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v)) {
		struct agent_task *t = v;
		hmap_put(&f.live, t->id, task_state_terminal(t->state) ? (void *)2 : (void *)1);
	}
	pthread_mutex_unlock(&a->lock);
	node_net_gc(a->net, net_fate, &f);
	hmap_release(&f.live);
}

void *agent_events_main(void *arg)
{
	struct agent *a = arg;
	unsigned id_gen;
	struct http_client *hc = agent_identity_client(a, &id_gen);
	int64_t last_scan = 0, last_full_scan = 0, last_prune = 0, last_image_gc = time_mono_ms();
	int64_t last_net_gc = 0;
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
			if (t->drain_until_mono && t->drain_until_mono - now0 < wait)
				wait = t->drain_until_mono > now0 ? t->drain_until_mono - now0 : 0;
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
				agent_task_refresh(a, t);
		}
		if (nids == ARRAY_SIZE(ids) || mono - last_full_scan >= FULL_SCAN_EVERY_MS) {
			while (hmap_next(&a->tasks, &it, NULL, &v))
				agent_task_refresh(a, v);
			last_full_scan = last_scan = mono;
		} else if (mono - last_scan >= 1000) {
			while (hmap_next(&a->tasks, &it, NULL, &v))
				agent_task_check(a, v);
			last_scan = mono;
		}
		poll_health(a, mono);
		it = 0;
		while (hmap_next(&a->tasks, &it, NULL, &v)) {
			struct agent_task *t = v;
			if (t->drain_until_mono && mono >= t->drain_until_mono)
				agent_task_stop_after_drain(a, t);
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
		size_t tails = 0;
		it = 0;
		while (hmap_next(&a->tasks, &it, NULL, &v)) {
			struct agent_task *t = v;
			if (!t->dirty)
				continue;
			/* An ended task's last words go with its end, up to
			 * LOGTAIL_BATCH bytes of them per report (the server
			 * takes 1 MiB bodies): the others wait for the next. */
			bool ended = task_state_terminal(t->state);
			if (ended && tails >= LOGTAIL_BATCH)
				continue;
			json_t *u = agent_task_report_json(t);
			if (ended)
				tails +=
				    agent_logtail_attach(u, t->sandbox, task_state_name(t->state));
			json_array_append_new(updates, u);
		}
		pthread_mutex_unlock(&a->lock);
		if (json_array_size(updates)) {
			json_t *body = json_pack("{s:s,s:O}", "name", a->name, "updates", updates);
			struct berr err = {0};
			agent_identity_refresh(a, hc, &id_gen);
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
						agent_task_free(t);
						a->report_gen++;
					}
				}
				pthread_mutex_unlock(&a->lock);
			} else {
				agent_sleep_ms(200);
			}
			json_decref(body);
		}
		json_decref(updates);
		if (mono - last_net_gc >= 1000) {
			agent_net_gc(a, false);
			last_net_gc = mono;
		}
		if (mono - last_prune > 60000) {
			agent_prune_sandboxes(a);
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
