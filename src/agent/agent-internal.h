/* agent-internal.h - what the agent's files share (agent.h is the public
 * header). One state, the struct agent, and one lock over it; each file
 * keeps one concern:
 *
 *   agent.c         start and stop: the notify socket, berth's own cgroup,
 *                   the threads
 *   agent_tasks.c   the task table: add, set a state, read a supervisor's
 *                   report (refresh), the report sent to the server
 *   agent_launch.c  launch plans (desired entry -> task_launch) and the two
 *                   launcher threads (also sending graceful-stop POSTs)
 *   agent_watch.c   the watch thread: register, long-poll, reconcile the
 *                   desired set; re-adoption of sandboxes at start
 *   agent_events.c  the events thread: supervisors' notifications, status
 *                   pushes, health checks, graceful deadlines, sandbox
 *                   pruning, image GC
 *   agent_logs.c    the logs HTTP listener (/v1/logs/TASK), behind its TLS
 *                   front (tls_front.h)
 *   agent_identity.c the node's certificate: join, renewal, TLS clients
 *   agent_dns.c     the tasks' name server (dns_server.h) and resolv.conf
 *
 * Locking: `lock` guards the task table and every field below it that a
 * thread other than its owner reads. Functions named agent_task_* and
 * agent_launch_* are called with the lock held unless they say otherwise.
 */
#ifndef BERTH_AGENT_INTERNAL_H
#define BERTH_AGENT_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/agent.h"
#include "agent/driver/driver.h"
#include "agent/endpoints.h"
#include "agent/health.h"
#include "agent/net/node_net.h"
#include "core/hmap.h"
#include "core/lifecycle.h"
#include "core/spec.h"

#define KEEP_ENDED_SANDBOXES 200
#define REPORT_EVERY_MS 10000
#define FULL_SCAN_EVERY_MS 30000
/* berth's own cgroup's cpu weight (v2 scale; v1 shares are x10.24): eight
 * times the tasks' parent, which holds every task of the node. */
#define SYSTEM_CGROUP_WEIGHT 800
#define IMAGE_GC_EVERY_MS (10 * 60 * 1000)
#define IMAGE_CACHE_MAX_BYTES (10ULL << 30)
#define IMAGE_MAX_AGE_MS (7LL * 24 * 3600 * 1000)
/* The launcher threads; a starting slot is given back after LAUNCH_SLOT_MS. */
#define LAUNCHERS 2
#define LAUNCH_SLOT_MS 2000
/* Why a driver is not offered on this node, at most. */
#define DRIVER_WHY_MAX 160

/* What this node offers, per driver, as found at the last registration. */
struct dns_server;
struct tls_front;

struct agent_drivers {
	char unavailable[TASK_DRIVER_COUNT][DRIVER_WHY_MAX]; /* why not; "" = offered */
};

/* A launch waiting for a launcher thread (id = the task's), or one of the
 * slow side jobs the launchers also take off the agent's lock: a graceful
 * stop's POST (id = its URL, desired NULL) or, with `orphan`, the removal of
 * what a dead supervisor's task left running (id = the task's). */
struct launch_job {
	char *id;
	json_t *desired;
	bool orphan;
	bool driver_known;
	enum task_driver driver;
	struct launch_job *next;
};

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
	struct health_check *health;
	bool health_started;
	bool health_failed; /* stopped because its checks failed */
	int shutdown_port;
	int64_t stop_at_mono; /* graceful step sent: SIGTERM at this time */
	/* The routing mesh: an instance of a published job leaves the
	 * rotation (the server's feed) and keeps running drain_delay_ms
	 * before its stop begins, at drain_until_mono. */
	char *job;
	uint64_t drain_delay_ms;
	int64_t drain_until_mono;
	char health_msg[256];
	uint32_t address;	   /* network: bridge: its address (node_net.h), else 0 */
	int64_t launch_begin_mono; /* a launcher took it; 0 once RUNNING (metrics) */
};

/* The node's identity with a TLS cluster (agent_identity.c). Written by the
 * watch thread only; `gen` (atomic) tells the others of a new certificate. */
struct agent_identity {
	bool tls;	/* the servers speak HTTPS */
	bool have_cert; /* DATA/node holds a certificate for this node */
	bool rejoin;	/* refused: join again (with the join token) */
	char *servers;	/* the servers, each with its scheme */
	char *node_dir, *ca_path, *cert_path, *key_path;
	char *join_token;
	char join_ca_fp[65];	       /* the CA the join token pins */
	char *sans;		       /* JSON array asked for in the certificate */
	int64_t not_before, not_after; /* unix seconds */
	int64_t last_renew_try_mono;
	unsigned gen;
};

struct agent {
	struct agent_options o;
	struct agent_identity id;
	char *name;
	char **volume_roots; /* canonical --volume-root paths, NULL-terminated */
	char *tasks_dir;
	char *notify_path;
	int notify_fd;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct hmap tasks; /* id -> struct agent_task* */
	uint64_t known_version;
	int64_t heartbeat_ms; /* the server's (register and watch replies; the watch thread's) */
	bool need_full;	      /* next watch asks for every task in full */
	struct agent_drivers drivers; /* what the node offers */
	uint64_t report_gen;	      /* bumped on every change to the task table */
	uint64_t reported_gen;	      /* the generation the last watch carried */
	int64_t reported_mono;
	_Atomic bool stopping;
	pthread_t watch_thread, event_thread;
	/* Launches waiting for a launcher thread (agent_launcher_main), in order. */
	pthread_t launchers[LAUNCHERS];
	size_t nlaunchers;
	pthread_cond_t launch_cond;
	struct launch_job *launch_head, **launch_tail;
	struct launch_job *graceful; /* graceful-stop POSTs for the launchers */
	int nstarting, max_starting;
	struct MHD_Daemon *logs;
	struct tls_front *logs_front; /* its TLS (tls_front.h); NULL without TLS */
	int logs_fd;		      /* the listening socket, kept across certificate renewals */
	int logs_port;
	pthread_mutex_t logs_lock; /* logs_cert, logs_ca */
	char *logs_cert, *logs_ca; /* PEM, for the daemon and ticket checks */
	char *advertise;
	int wake_pipe[2];
	struct node_net *net; /* the node's side of the cluster network */
	uint64_t net_version; /* of the peers last fetched (watch thread) */
	/* The routing mesh (agent_mesh.c): the proxy, the feed's thread, and
	 * the published jobs seen lately (key -> struct mesh_job_seen*). */
	struct mesh_proxy *mesh;
	pthread_t mesh_thread;
	bool mesh_started;
	struct hmap mesh_jobs;
	/* Every job's endpoints, as the watch replies bring them (own lock). */
	struct endpoints *endpoints;
	/* The tasks' name server, or NULL (none: tasks keep the host's
	 * resolv.conf). Started before the threads, stopped after them. */
	struct dns_server *dns;
	/* Its twin on the bridge's address (port 53), for network: bridge
	 * tasks, whose 127.0.0.153 is their own loopback: started with the
	 * first of them (under `lock`). */
	struct dns_server *dns_bridge;
	struct agent_metrics *metrics; /* /metrics' counters (agent_metrics.c), own lock */
};

/* agent_metrics.c: GET /metrics on the agent's listener */
struct MHD_Connection;
struct agent_metrics *agent_metrics_new(void);
void agent_metrics_free(struct agent_metrics *m);
/* A launch ended: its supervisor started (ok) or not. */
void agent_metrics_launched(struct agent_metrics *m, const char *job, int instance, bool ok);
/* A launched task is RUNNING, launch_ms after a launcher took it. */
void agent_metrics_running(struct agent_metrics *m, int64_t launch_ms);
/* Answer a scrape (returns what libmicrohttpd's handler returns). */
int agent_metrics_answer(struct agent *a, struct MHD_Connection *conn, const char *method);

/* agent_dns.c: the name server and the tasks' resolv.conf */
int agent_dns_start(struct agent *a, struct berr *err);
/* Write SANDBOX/resolv.conf naming the agent's name server (the drivers
 * show it at /etc/resolv.conf); nothing when there is none. bridge_gw: a
 * network: bridge task's gateway (its name server there, started on first
 * use), 0 for a host task. */
int agent_dns_resolv_conf(struct agent *a, const char *sandbox, uint32_t bridge_gw,
			  struct berr *err);
/* The name server's twin on the bridge's address gw, started if needed:
 * its address, or NULL (none: err set, or the agent runs no name server). */
const char *agent_dns_bridge(struct agent *a, uint32_t gw, struct berr *err);

/* agent.c */
void agent_sleep_ms(int ms);
/* Wake the events thread (a status changed, or the agent stops). */
void agent_wake(struct agent *a);

/* agent_tasks.c: the task table */
struct agent_task *agent_task_add(struct agent *a, const char *id);
void agent_task_free(struct agent_task *t);
/* Set the state the agent reports (msg NULL = keep the message); marks the
 * task dirty and wakes the events thread. */
void agent_task_set(struct agent *a, struct agent_task *t, enum task_state s, const char *msg);
/* Read the supervisor's status.json into the task. */
void agent_task_refresh(struct agent *a, struct agent_task *t);
/* The cheap once-a-second look (agent_task_refresh only when needed). */
void agent_task_check(struct agent *a, struct agent_task *t);
void agent_task_delete_orphans(struct agent *a, struct agent_task *t);
json_t *agent_task_report_json(const struct agent_task *t);
/* The agent stops a task the server no longer wants: an instance of a
 * published job drains first (leaves the rotation, stays up for its
 * drain_delay), then the graceful step if it has one, then SIGTERM. */
void agent_task_stop(struct agent *a, struct agent_task *t);
/* The drain is over: the graceful step or SIGTERM now. */
void agent_task_stop_after_drain(struct agent *a, struct agent_task *t);
/* Every task's report (a JSON array, new reference). */
json_t *agent_full_report(struct agent *a);

/* agent_launch.c: launch plans and the launcher threads */
void agent_launch_enqueue(struct agent *a, struct agent_task *t, json_t *desired);
struct launch_job *agent_launch_dequeue(struct agent *a);
void agent_launch_job_free(struct launch_job *j);
/* The task's supervisor is no longer starting: its slot is free. */
void agent_launch_slot_free(struct agent *a, struct agent_task *t);
/* A re-adopted task whose spec arrives now: keep what the agent needs of
 * it (health checks, graceful stop); nothing is launched. */
int agent_task_configure_adopted(struct agent *a, json_t *desired, struct agent_task *t,
				 struct berr *err);
/* Queue the task's graceful-stop POST for a launcher thread. */
void agent_graceful_shutdown(struct agent *a, struct agent_task *t);
void *agent_launcher_main(void *agent);

/* agent_secrets.c: without the lock. Fetch the values of the secrets ts
 * lists for task_id and write them on SANDBOX/secrets (secret_files.h);
 * *files: each one's file, in ts->secrets' order (NULL when it lists none;
 * strv_free it). */
int agent_secrets_prepare(const struct agent *a, const char *task_id, const char *sandbox,
			  const struct task_spec *ts, char ***files, struct berr *err);

/* agent_events.c: without the lock. Free the networks of tasks that ended
 * (all: of every task not running, as when the agent stops them all). */
void agent_net_gc(struct agent *a, bool all);

/* agent_watch.c: the watch thread and re-adoption */
void agent_adopt_existing(struct agent *a);
void *agent_watch_main(void *agent);

/* agent_events.c: the events thread */
/* Keep the newest KEEP_ENDED_SANDBOXES ended sandboxes, remove the rest. */
void agent_prune_sandboxes(struct agent *a);
void *agent_events_main(void *agent);

/* agent_logs.c: the logs listener; sets a->logs, a->logs_port, and
 * a->advertise when `listen` names one address. */
int agent_logs_start(struct agent *a, const char *listen, struct berr *err);
/* (Re)start serving on the listening socket with the current certificate. */
int agent_logs_serve(struct agent *a, struct berr *err);
void agent_logs_stop(struct agent *a);
/* Tickets "EXPIRY.SIG" a server hands out (logs, exec, metrics): the expiry
 * of a well-formed ticket not yet expired, else -1; whether SIG is the
 * cluster CA's signature of data (which the caller builds from the expiry). */
int64_t agent_ticket_expiry(const char *ticket);
bool agent_ticket_signed(struct agent *a, const char *ticket, const char *data);

/* agent_mesh.c: the routing mesh (docs/networking.md) */
#define MESH_FEED_MS 1000
#define MESH_ENDPOINTS_MS 50
/* A job seen published this recently still drains its instances (a job
 * being killed leaves the feed before its tasks stop). */
#define MESH_JOB_MEMORY_MS 60000
int agent_mesh_start(struct agent *a, struct berr *err);
void agent_mesh_stop(struct agent *a);
/* Under the lock: instances of job drain before they stop. */
bool agent_mesh_publishes(struct agent *a, const char *job);

/* agent_identity.c: the node certificate (docs/security.md) */
/* Read the join token and DATA/node; give each server its scheme. Fails
 * when the servers speak HTTPS and the agent has no way to join. */
int agent_identity_init(struct agent *a, struct berr *err);
void agent_identity_free(struct agent *a);
/* Plain HTTP, or a certificate at hand. */
bool agent_identity_ready(const struct agent *a);
/* Watch thread: join when there is no valid certificate, renew it from 2/3
 * of its lifetime. -1 when the agent cannot speak to the servers yet. */
int agent_identity_ensure(struct agent *a, struct berr *err);
/* A server refused the certificate (401): join again. */
void agent_identity_refused(struct agent *a);
/* An http client for the servers with the node's TLS files; *gen (may be
 * NULL) gets the certificate's generation for agent_identity_refresh. */
struct http_client *agent_identity_client(struct agent *a, unsigned *gen);
/* Reconnect hc if the certificate changed since *gen. */
void agent_identity_refresh(struct agent *a, struct http_client *hc, unsigned *gen);

#endif
