/* agent_watch.c - the watch thread, the node's heartbeat: register, then
 * long-poll /v1/agent/watch with the task report and reconcile each desired
 * set (queue launches, send stops; nothing slow runs here). Also the
 * re-adoption of sandboxes when the agent starts. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "agent/host_volumes.h"
#include "agent/supervisor.h"
#include "core/http_client.h"
#include "core/log.h"

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
				if (agent_task_configure_adopted(a, d, have, &err) < 0)
					log_warn("task %s: re-adopted without its checks: %s", id,
						 err.msg);
				have->configured = true;
				if (have->spec)
					agent_task_refresh(a, have);
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
		struct agent_task *t = agent_task_add(a, id);
		t->state = TASK_ASSIGNED;
		agent_launch_enqueue(a, t, d);
	}
	size_t it = 0;
	void *v;
	while (hmap_next(&a->tasks, &it, NULL, &v)) {
		struct agent_task *t = v;
		if (hmap_get(&want, t->id) || t->stop_sent || task_state_terminal(t->state))
			continue;
		agent_task_stop(a, t);
	}
	hmap_release(&want);
}

/* ---- re-adoption ---------------------------------------------------------- */

void agent_adopt_existing(struct agent *a)
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
		struct agent_task *t = agent_task_add(a, de->d_name);
		t->state = TASK_ASSIGNED;
		t->address = node_net_task_address(a->net, t->id);
		agent_task_refresh(a, t);
		if (t->state == TASK_ASSIGNED) {
			/* No report, no supervisor: a launch that never happened. */
			agent_task_set(a, t, TASK_LOST, "task sandbox found without a supervisor");
		}
		if (task_state_terminal(t->state))
			/* A container whose supervisor was killed may outlive it:
			 * remove it (a no-op when its runtime does not know it). */
			agent_task_delete_orphans(a, t);
		if (task_state_terminal(t->state))
			ended++;
		else
			adopted++;
	}
	closedir(d);
	if (adopted || ended)
		log_info("re-adopted %zu running tasks, %zu ended while away", adopted, ended);
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

/* The heartbeat the server asks for (it grows with the cluster: docs/protocol.md,
 * "Heartbeats at scale"): each watch waits that long at most. */
static void take_heartbeat(struct agent *a, json_t *reply)
{
	json_t *hb = json_object_get(reply, "heartbeat_ms");
	if (json_is_integer(hb) && json_integer_value(hb) >= 100 && json_integer_value(hb) <= 60000)
		a->heartbeat_ms = (int64_t)json_integer_value(hb);
}

static int do_register(struct agent *a, struct http_client *hc, struct berr *err)
{
	double cpu;
	uint64_t mem, disk;
	detect_resources(a, &cpu, &mem, &disk);
	json_t *attrs = json_pack("{s:s,s:s}", "host", a->name, "os", "linux");
	/* Drivers this node offers, as attributes a job can constrain on
	 * (constraints: {driver.docker: "true"}). */
	struct driver_host h = {.data_dir = a->o.data_dir, .docker_socket = a->o.docker_socket};
	struct agent_drivers drv = {0};
	for (int d = 0; d < TASK_DRIVER_COUNT; d++) {
		const struct driver_ops *ops = driver_get((enum task_driver)d);
		if (!ops->available || ops->available(&h, drv.unavailable[d], DRIVER_WHY_MAX)) {
			drv.unavailable[d][0] = 0;
			char *attr = xasprintf("driver.%s", task_driver_name(ops->driver));
			json_object_set_new(attrs, attr, json_string("true"));
			free(attr);
		} else if (!drv.unavailable[d][0]) {
			snprintf(drv.unavailable[d], DRIVER_WHY_MAX, "not offered");
		}
	}
	pthread_mutex_lock(&a->lock);
	a->drivers = drv;
	pthread_mutex_unlock(&a->lock);
	/* The host paths its tasks may mount (informative; the agent decides). */
	char *roots = host_volumes_describe(a->volume_roots);
	json_object_set_new(attrs, "volume.roots", json_string(roots));
	free(roots);
	for (size_t i = 0; i < a->o.nattrs; i++)
		json_object_set_new(attrs, a->o.attrs[i].key, json_string(a->o.attrs[i].value));
	pthread_mutex_lock(&a->lock);
	json_t *report = agent_full_report(a);
	pthread_mutex_unlock(&a->lock);
	/* Find our own address as the server sees it, for the logs listener. */
	struct http_response probe;
	if (!a->advertise && http_request(hc, "GET", "/v1/health", NULL, 2000, &probe, err) == 0) {
		const char *ip = probe.local_ip[0] ? probe.local_ip : "127.0.0.1";
		a->advertise =
		    xasprintf("%s://%s:%d", a->id.tls ? "https" : "http", ip, a->logs_port);
		http_response_release(&probe);
	}
	json_t *body =
	    json_pack("{s:s,s:o,s:{s:f,s:I,s:I,s:i,s:i},s:s,s:o}", "name", a->name, "attributes",
		      attrs, "resources", "cpu", cpu, "memory", (json_int_t)mem, "disk",
		      (json_int_t)disk, "port_lo", a->o.port_lo, "port_hi", a->o.port_hi, "addr",
		      a->advertise ? a->advertise : "", "tasks", report);
	/* A subnet of the cluster network for the tasks with network: bridge. */
	json_object_set_new(body, "network", json_true());
	json_t *reply = NULL;
	int r = http_json(hc, "POST", "/v1/agent/register", body, 10000, &reply, err);
	json_decref(body);
	if (r < 0)
		return -1;
	take_heartbeat(a, reply);
	struct berr nerr = {0};
	if (node_net_configure(a->net, reply, &nerr) < 0)
		log_warn("network: %s", nerr.msg);
	/* Re-adopted bridge tasks ask the name server on their gateway. */
	if (node_net_active(a->net) && a->dns &&
	    !agent_dns_bridge(a, node_net_gateway(a->net), &nerr) && nerr.msg[0])
		log_warn("no name server for bridge tasks: %s", nerr.msg);
	a->net_version = 0; /* the peers come with the next watch */
	json_decref(reply);
	pthread_mutex_lock(&a->lock);
	a->known_version = 0;
	a->reported_gen = a->report_gen - 1;
	pthread_mutex_unlock(&a->lock);
	log_info("registered with %s as %s", http_client_server(hc), a->name);
	return 0;
}

/* The cluster network changed (a node came, went or moved): fetch this
 * node's view of it, its peers' subnets, and program their routes. */
static void fetch_network(struct agent *a, struct http_client *hc, uint64_t version)
{
	json_t *body = json_pack("{s:s}", "name", a->name);
	json_t *reply = NULL;
	struct berr err = {0};
	int r = http_json(hc, "POST", "/v1/agent/network", body, 10000, &reply, &err);
	json_decref(body);
	if (r == 0 && node_net_configure(a->net, reply, &err) == 0)
		a->net_version = version;
	else
		log_warn("network: cannot update the peers: %s", err.msg);
	json_decref(reply);
}

/* A watch reply with the endpoints table: the new table for the DNS server
 * and the mesh (endpoints.h). */
static void follow_endpoints(struct agent *a, json_t *reply)
{
	json_t *table = json_object_get(reply, "endpoints");
	json_t *delta = json_object_get(reply, "endpoints_delta");
	json_t *ev = json_object_get(reply, "endpoints_version");
	json_t *base = json_object_get(reply, "endpoints_base");
	if ((!table && !delta) || !json_is_integer(ev))
		return;
	struct berr err = {0};
	uint64_t v = (uint64_t)json_integer_value(ev);
	int r = table ? endpoints_replace(a->endpoints, v, table, &err)
		      : endpoints_apply_delta(a->endpoints, (uint64_t)json_integer_value(base), v,
					      delta, &err);
	if (r == 1 || r < 0)
		endpoints_invalidate(a->endpoints); /* the whole table next time */
	if (r < 0 || err.msg[0])
		log_warn("%s", err.msg);
}

/* After the n-th failure in a row: a random wait up to 100 ms x 2^n, at
 * most 3 s ("full jitter"), so that agents cut off together do not come
 * back together and feed a wave of registrations. */
static int retry_delay_ms(unsigned *seed, int failures)
{
	int cap = 100 << (failures < 5 ? failures : 5);
	if (cap > 3000)
		cap = 3000;
	return 50 + (int)(rand_r(seed) % (unsigned)cap);
}

void *agent_watch_main(void *arg)
{
	struct agent *a = arg;
	/* The server stamps the heartbeat from the X-Berth-Node header, before
	 * the body. */
	unsigned id_gen;
	struct http_client *hc = agent_identity_client(a, &id_gen);
	/* Each call tells the server how long its intake kept it. */
	http_client_echo_server_clock(hc);
	bool registered = false;
	int64_t last_error_log = 0;
	int failures = 0;
	unsigned seed = (unsigned)getpid() ^ (unsigned)time_mono_ms();
	while (!a->stopping) {
		struct berr err = {0};
		if (agent_identity_ensure(a, &err) < 0) {
			if (time_mono_ms() - last_error_log > 5000) {
				log_warn("%s", err.msg);
				last_error_log = time_mono_ms();
			}
			agent_sleep_ms(retry_delay_ms(&seed, ++failures));
			continue;
		}
		agent_identity_refresh(a, hc, &id_gen);
		if (!registered) {
			if (do_register(a, hc, &err) < 0) {
				if (err.code == 401)
					agent_identity_refused(a);
				if (time_mono_ms() - last_error_log > 5000) {
					log_warn("cannot register: %s", err.msg);
					last_error_log = time_mono_ms();
				}
				agent_sleep_ms(retry_delay_ms(&seed, ++failures));
				continue;
			}
			registered = true;
			failures = 0;
		}
		/* The full report rides on a watch when something changed, and at
		 * least every REPORT_EVERY_MS; other watches are pure heartbeats. */
		pthread_mutex_lock(&a->lock);
		json_t *body =
		    json_pack("{s:s,s:I,s:i}", "name", a->name, "known_version",
			      (json_int_t)(a->need_full ? 0 : a->known_version), "wait_ms",
			      (json_int_t)(a->heartbeat_ms > 0 ? a->heartbeat_ms : 1000));
		a->need_full = false;
		uint64_t gen = a->report_gen;
		bool with_report =
		    gen != a->reported_gen || time_mono_ms() - a->reported_mono >= REPORT_EVERY_MS;
		if (with_report)
			json_object_set_new(body, "tasks", agent_full_report(a));
		pthread_mutex_unlock(&a->lock);
		/* Follow every job's endpoints: the reply carries the table when
		 * its version moved past ours (0: we have none yet). */
		json_object_set_new(body, "endpoints_version",
				    json_integer((json_int_t)endpoints_version(a->endpoints)));
		json_t *reply = NULL;
		/* The answer comes within the heartbeat, plus the server's delay. */
		int64_t timeout = (a->heartbeat_ms > 0 ? a->heartbeat_ms : 1000) + 14000;
		int r = http_json(hc, "POST", "/v1/agent/watch", body, (int)timeout, &reply, &err);
		json_decref(body);
		if (r < 0) {
			if (err.code == 404)
				registered = false; /* the server forgot us: register again */
			if (err.code == 401) {
				agent_identity_refused(a);
				registered = false;
			}
			if (time_mono_ms() - last_error_log > 5000) {
				log_warn("watch failed: %s", err.msg);
				last_error_log = time_mono_ms();
			}
			if (err.code == 503 || err.code >= 500)
				registered = false;
			agent_sleep_ms(retry_delay_ms(&seed, ++failures));
			continue;
		}
		failures = 0;
		take_heartbeat(a, reply);
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
		json_t *net = json_object_get(reply, "net");
		if (json_is_integer(net) && (uint64_t)json_integer_value(net) != a->net_version)
			fetch_network(a, hc, (uint64_t)json_integer_value(net));
		follow_endpoints(a, reply);
		json_decref(reply);
	}
	http_client_free(hc);
	return NULL;
}
