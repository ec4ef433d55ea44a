/* server-internal.h - what the files of the server module share; nothing
 * outside src/server/server*.c includes it (server.h is the public API).
 *
 *   server.c          start and stop: the store, the cluster, the HTTP
 *                     daemon, the threads
 *   server_http.c     a request's life in libmicrohttpd: body buffering,
 *                     suspend and resume, responses; agents' heartbeats
 *                     stamped before the cluster lock
 *   server_routes.c   the API's routes (docs/api.md), under the cluster lock
 *   server_ha.c       high availability: follower reads and redirects, the
 *                     replica's store watch, the election's callbacks
 *   server_commit.c   the commit loop: tick, commit, answer writes and watches
 *   server_backup.c   GET /v1/admin/backup, scanned on a thread of its own
 *
 * A request's life: the access handler is called once with the headers (a
 * struct request is made), then once per body chunk (buffered up to
 * MAX_BODY, and within the server's budget for all bodies: 413 or 503
 * otherwise), then with no data: it is routed. A read answers at once. A
 * write applies to memory under the cluster lock, notes the seq it needs
 * durable and suspends the connection; the commit thread resumes it after
 * store_commit. An agent's watch suspends until its node's desired set
 * changes or its heartbeat interval passes.
 */
#ifndef BERTH_SERVER_INTERNAL_H
#define BERTH_SERVER_INTERNAL_H

#include <jansson.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/metrics_text.h"
#include "core/util.h"
#include "server/auth.h"
#include "server/cluster.h"
#include "server/secret_box.h"
#include "server/server.h"
#include "store/store.h"

#define MAX_BODY (1u << 20)

/* Paged views: at most this many items a page. */
#define PAGE_MAX 100000

/* Backups scanned at once (each holds the whole backup in memory). */
#define MAX_BACKUPS 2

enum req_phase { REQ_NEW = 0, REQ_WAIT_COMMIT, REQ_WATCH, REQ_BACKUP, REQ_READY };

struct request {
	struct server *srv;
	struct MHD_Connection *conn;
	struct sbuf body;
	bool too_big;	      /* over MAX_BODY: 413 */
	bool over_budget;     /* over the server's body budget: 503 */
	size_t body_reserved; /* bytes of srv->body_bytes this request holds */
	enum req_phase phase;
	uint64_t wait_seq;
	int status;
	json_t *reply;
	char *location; /* redirect */
	char *text;	/* a ready JSON text reply (instead of reply) */
	struct node *watch_node;
	uint64_t known_version;
	bool endpoints_follow;	  /* the watch asked for the endpoints table */
	uint64_t endpoints_known; /* the endpoints version the agent has */
	int64_t deadline_mono;
	struct request *next; /* in srv->waiting */
	bool suspended;
	bool from_replica;	/* answered by a follower from its replica */
	json_t *agent_body;	/* an agent call's body, parsed before the cluster lock */
	struct node_live *live; /* a watch: its node's liveness entry, held meanwhile */
	int64_t live_wait_ms;	/* the wait the watch asked for */
	struct view_rows *view; /* a large view's snapshot, written out after the lock */
	bool view_paged;
	/* A watch's or a status's body: read without a tree instead. */
	struct agent_report *agent_report;
	struct principal who; /* the caller (auth.h), set with the headers */
	char *method, *url;   /* for the audit log */
};

struct server {
	struct cluster *c;
	struct store *store;
	struct MHD_Daemon *mhd;
	pthread_t commit_thread;
	/* The store writer (server_commit.c), under c->lock: the batch it
	 * writes (NULL: idle), the seq that batch makes durable, its wake-up. */
	struct store_batch *write_batch;
	uint64_t write_seq;
	uint64_t write_done; /* batches written so far */
	bool write_stop;
	pthread_cond_t write_cond;
	/* The hand-over to the store writer: write_batch, write_seq and
	 * write_stop are set under c->lock and write_mu both, so the writer
	 * takes a batch without waiting for the cluster's lock. */
	pthread_mutex_t write_mu;
	bool stopping;
	int port;
	struct request *waiting;    /* writes waiting for their commit (under c->lock) */
	pthread_mutex_t store_lock; /* the store is used by one thread at a time */
	struct leader *leader;	    /* HA (etcd store): the election */
	_Atomic bool leading;	    /* without HA: always */
	bool commit_started;
	pthread_t elect_thread; /* HA: loads the state once elected */
	_Atomic bool elect_started;
	int64_t last_sweep_mono;
	char *self_url;
	struct secret_key secrets_key; /* seals and opens secrets (secret_box.h) */
	/* HA follower: the replica (cluster_replica_*) kept by a store watch.
	 * Under c->lock: */
	char *store_location;
	pthread_t follow_thread;
	bool follow_started;
	_Atomic bool follow_stop;
	bool replica_synced;	      /* a full copy arrived; changes follow */
	int64_t replica_rev;	      /* the store revision the replica is at */
	int64_t elected_rev;	      /* the store revision of this server's election */
	pthread_cond_t replica_moved; /* replica_rev moved */
	/* TLS and authentication (server_pki.c, server_auth.c); tls is false
	 * with --insecure. Set at start, read-only after. */
	bool tls;
	char *ca_cert, *ca_key;	  /* the cluster CA (PEM) */
	char cafp[65];		  /* its fingerprint, in join tokens */
	char *tls_cert, *tls_key; /* this server's serving certificate */
	int64_t node_cert_ttl_s;
	char *data_dir;
	int audit_fd; /* DATA/audit.log, -1 when it cannot be written */
	int lock_fd;  /* DATA/lock, held for the server's life (lockfile.h) */
	/* Bodies being received, in all (server_http.c), and the most. */
	_Atomic size_t body_bytes;
	size_t body_budget;
	/* Backups being scanned (server_backup.c), under backup_lock. */
	pthread_mutex_t backup_lock;
	pthread_cond_t backup_done;
	int backups_running;
	int ui_logs_running; /* the web UI's log reads (server_ui.c), the same way */
	_Atomic bool backup_stop;
	char *backup_location; /* the store's location, opened anew by each backup */
	/* /metrics (server_metrics.c): the commit loop's figures, and the
	 * leader changes this server saw (last_leader under metrics_lock). */
	struct metrics_hist commit_seconds, commit_records;
	_Atomic uint64_t leader_changes;
	pthread_mutex_t metrics_lock;
	char *last_leader;
	int64_t keepalive_mono; /* the event streams' last keep-alive (commit thread) */
};

/* ---- responses (server_http.c) ---- */

void reply_error(struct request *q, int status, const char *msg);
void reply_ok(struct request *q, json_t *body);
/* Acknowledge once `seq` is durable. */
void reply_after_commit(struct request *q, uint64_t seq, json_t *body);
/* The request's body as a JSON object, or NULL with q answered (413, 400). */
json_t *parse_body(struct request *q);
/* An agent's watch or status body read without a tree (core/agent_report.h),
 * or NULL with q answered (413, 400 with parse_body's messages). */
struct agent_report *parse_agent_report(struct request *q, bool watch);
enum MHD_Result send_ready(struct request *q);
/* libmicrohttpd's access handler and completion callback. */
enum MHD_Result server_on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls);
void server_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe);

/* ---- TLS and authentication (server_pki.c, server_auth.c) ---- */

/* The CA, the serving certificate, the client files (DATA/client/). */
int server_pki_start(struct server *s, const struct server_options *o, const struct sockaddr_in *sa,
		     struct berr *err);
void server_pki_free(struct server *s);
/* Write a file atomically with mode 0600. */
int server_write_private(const char *path, const char *text, struct berr *err);
/* POST /v1/agent/join and /v1/agent/renew, under the cluster lock. */
void route_agent_identity(struct request *q, bool join);
/* /v1/quotas[/ROLE] (server_quota.c); rest is what follows "/v1/quotas/". */
void route_quotas(struct request *q, const char *method, const char *rest);
/* A ticket for a task's logs on its agent (NULL when insecure). */
char *server_logs_ticket(struct server *s, const char *task_id);
/* "EXPIRY.SIGNATURE": the CA's signature of data (which holds the expiry),
 * for an agent to check; NULL, logged as `what` ticket, when it cannot sign. */
char *server_ticket(struct server *s, const char *what, int64_t expiry, const char *data);
/* POST /v1/tasks/REF/exec (server_exec.c), under the cluster lock. */
void server_route_task_exec(struct request *q, const char *method, const char *ref);
/* Set q->who from the request's credentials (its headers, its TLS peer). */
void server_authenticate(struct server *s, struct request *q);
/* Tokens another server of an HA group wrote to the store after this one
 * loaded its state (docs/security.md): one by id (true when now known), or
 * all of them (for the list). */
bool server_token_fetch(struct server *s, const char *id);
void server_tokens_refresh(struct server *s);
/* libmicrohttpd's connection callback: a TLS peer's identity is checked
 * once per connection and kept with it. */
/* Seconds a connection may stay idle; before its first request (its TLS
 * handshake), HANDSHAKE_TIMEOUT_S. */
#define CONNECTION_TIMEOUT_S 120
#define HANDSHAKE_TIMEOUT_S 5
/* The first request of a connection: it gets CONNECTION_TIMEOUT_S. */
void server_connection_request(struct server *s, struct MHD_Connection *conn);
void server_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe);
/* Who did what: one JSON line in DATA/audit.log per write (server_auth.c). */
void server_audit(struct server *s, struct request *q, const char *method, const char *url);

/* ---- routes (server_routes.c) ---- */

/* Route a request, under the cluster lock. */
void server_route(struct request *q, const char *method, const char *url);
/* The long poll a watch asks for (wait_ms), within reason. */
int64_t watch_wait_ms(const struct cluster *c, bool given, int64_t wait);
/* Under c->lock: the watch q of node n has something new to say (its
 * desired set moved, or the endpoints table it follows). */
bool watch_has_news(const struct cluster *c, const struct request *q, const struct node *n);
/* Under c->lock: set q->text to the watch's answer (the desired set, and
 * the endpoints table when it follows a version that moved). */
void watch_answer(struct cluster *c, struct request *q, struct node *n);

/* ---- high availability (server_ha.c) ---- */

/* HA: the leader's lease is surely valid. Without HA: always. */
bool server_lease_ok(struct server *s);
/* A follower's redirect to the leader, or 503 while none is known. */
enum MHD_Result server_follower_answer(struct server *s, struct request *q, const char *url);
/* Reads a follower answers from its replica. */
bool server_replica_read_route(const char *method, const char *url);
/* Answer from the replica (true), or leave q untouched (false: redirect). */
bool server_follower_read(struct server *s, struct request *q, const char *method, const char *url);
/* The replica's thread: the store watch, applied to the cluster. */
void *server_follow_main(void *ud);
/* The election's callbacks (leader.h). */
void server_on_elected(void *ud, int64_t revision);
void server_on_lost(void *ud);

/* ---- backups (server_backup.c) ---- */

/* GET /v1/admin/backup, without the cluster lock: the scan runs on a thread
 * of its own, on a store handle of its own (a consistent snapshot beside
 * the commit thread), while the connection is suspended. Returns what the
 * access handler returns. */
enum MHD_Result server_backup_start(struct server *s, struct request *q, const char *method);
/* Stop the backups under way (they answer 503) and wait for them. */
void server_backup_stop_all(struct server *s);

/* ---- metrics and events (server_metrics.c, server_events.c) ---- */

/* Set up and free what struct server keeps for /metrics. */
void server_metrics_init(struct server *s);
void server_metrics_release(struct server *s);
/* GET /metrics: answered by any server (a follower shows its own figures,
 * the leader the cluster's too); no cluster lock on a follower. */
enum MHD_Result server_metrics_answer(struct server *s, struct request *q, const char *method);
/* GET /v1/admin/metrics-ticket: a credential for agents' /metrics. */
void server_metrics_ticket(struct server *s, struct request *q);
/* The leader URL this server sees now: counted when it changed. */
void server_metrics_leader_seen(struct server *s, const char *url);
/* GET /v1/events: the event stream (server-sent events), without the
 * cluster lock. Returns what the access handler returns. */
enum MHD_Result server_events_start(struct server *s, struct request *q, const char *method);
/* Commit thread: wake idle streams now and then for a keep-alive. */
void server_events_tick(struct server *s, int64_t mono);
/* End every stream (before the HTTP daemon stops). */
void server_events_stop(struct server *s);

/* ---- the commit loop (server_commit.c) ---- */

void *server_commit_loop(void *arg);
/* Commit what is pending and answer every request still waiting (stop). */
void server_commit_final(struct server *s);

#endif
