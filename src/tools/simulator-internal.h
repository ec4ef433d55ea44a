/* simulator-internal.h - what simulator.c (the event loops and agents) and
 * sim_wire.c (request bodies, reply scanning, HTTP parsing) share. Not for
 * use outside src/tools/sim*.c. */
#ifndef BERTH_SIMULATOR_INTERNAL_H
#define BERTH_SIMULATOR_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/util.h"
#include "tools/simulator.h"

#define REQUEST_TIMEOUT_MS 60000 /* no answer: the server is gone or stuck */
#define CONNECT_TIMEOUT_MS 10000
#define FULL_REPORT_EVERY_MS 10000
#define BACKOFF_MAX_MS 5000
#define SWEEP_EVERY_MS 1000
#define WARN_EVERY_MS 5000
#define HEADERS_MAX (64u << 10)
#define RESPONSE_MAX (256u << 20) /* a desired set beyond this is an error */
#define KILLED_EXIT_CODE 143	  /* what SIGTERM would give */
#define MAX_HANDSHAKES 32	  /* TLS connections being set up, per loop */
#define BEHIND_MS 100		  /* a loop pass this long: the loop is behind */
#define BEHIND_PAUSE_MS 250	  /* new agents wait that long after it */

/* ---- data ---------------------------------------------------------------- */

#define TF_END_REPORTED 1 /* reported in an end state: dropped once acknowledged */

struct sim_task {
	char *id;
	uint8_t state; /* enum task_state: RUNNING, FAILED or KILLED */
	uint8_t flags;
	uint8_t exit_code;
};

enum phase { PH_IDLE = 0, PH_CONNECTING, PH_HANDSHAKE, PH_SENDING, PH_RECEIVING };
enum req_kind { RQ_REGISTER = 1, RQ_WATCH, RQ_JOIN, RQ_RENEW };

struct ssl_st;	    /* OpenSSL's SSL */
struct evp_pkey_st; /* OpenSSL's EVP_PKEY */
struct x509_st;	    /* OpenSSL's X509 */

struct sim_agent {
	struct sim_task *tasks; /* sorted by id (strcmp) */
	struct ssl_st *ssl;	/* the connection's TLS (NULL: plain HTTP) */
	/* TLS: the node's key and certificate as DER (NULL until it joined;
	 * with --sim-shared-key the key is the simulation's). */
	unsigned char *key_der, *cert_der;
	uint16_t key_len, cert_len;
	/* Decoded, from the join until the first connection that uses them
	 * (OpenSSL 3 takes ~1 ms per decoding; a join storm counts them):
	 * then dropped, the DER stays. */
	struct evp_pkey_st *pkey;
	struct x509_st *x509;
	int64_t renew_ms; /* monotonic: when to renew the certificate */
	char *out;	  /* the request being sent */
	char *in;	  /* the response being read */
	uint32_t out_len, out_off, in_len, in_cap;
	uint32_t ntasks, task_cap;
	uint64_t known_version;
	uint32_t gen;	      /* bumped on every change of the task set */
	uint32_t sent_gen;    /* gen of the full report in flight */
	uint32_t acked_gen;   /* gen of the last acknowledged full report */
	uint32_t index;	      /* global agent number */
	int64_t sent_ms;      /* when the request in flight started */
	int64_t last_full_ms; /* when the last acknowledged full report went */
	/* The last reply's X-Berth-Time (0: none yet) and when it was read:
	 * echoed with the next call (X-Berth-Echo, server/liveness.h). */
	int64_t echo_clock, echo_at;
	uint32_t echo_id;
	int fd;
	int32_t heartbeat_ms;
	uint16_t failures; /* consecutive: drives the back-off */
	uint8_t server;	   /* index into sim->addrs */
	uint8_t phase, req;
	bool registered, ever_registered, ever_joined, force_full, sent_full;
	bool handshaking; /* counted in the loop's handshaking */
	bool deferred;	  /* the next request waits for a retry timer (jitter) */
};

/* A timer: an agent's retry (id NULL) or a task's simulated failure. */
struct timer {
	int64_t due;
	char *id;
	uint32_t agent; /* local index in the loop */
	uint8_t exit_code;
};

struct heap {
	struct timer *v;
	size_t n, cap;
};

/* A desired task, as slices of the watch reply. */
struct desired {
	const char *id;
	uint32_t len;
	uint8_t exit_code;
	int64_t fail_after_ms; /* -1: never */
};

struct sim;

struct sim_loop {
	struct sim *sim;
	int id;
	int epfd, evfd;
	pthread_t thread;
	bool started;
	struct sim_agent *agents;
	size_t nagents;
	size_t next_start; /* agents started so far (registration spread) */
	int handshaking;   /* TLS connections being set up */
	/* Until when agents not yet registered wait (monotonic ms): the loop
	 * is behind (short of CPU), and the heartbeats of the agents in come
	 * first: a join storm must not make them late (docs/security.md). */
	int64_t behind_until;
	uint64_t paused_passes; /* passes that found the loop behind */
	struct heap retries, fails;
	int64_t last_sweep, last_warn;
	unsigned suppressed;
	uint64_t rnd;
	struct desired *want; /* scratch for a reply's desired set */
	size_t want_cap;
	struct sim_task *merge; /* scratch for reconciling */
	size_t merge_cap;
	/* Read by the main thread for progress (atomics, relaxed). */
	size_t nregistered, nfailures, njoined;
	int64_t last_register_ms; /* when the newest first registration landed */
	int64_t last_join_ms;	  /* when the newest first certificate arrived */
	uint64_t renewals;
	/* Traffic, logged at the end: what the protocol costs at this scale. */
	uint64_t bytes_in, bytes_out, replies, desired_sets, desired_tasks;
};

struct sim {
	struct simulator_options o;
	struct sockaddr_in *addrs;
	char **hosts; /* Host header of each address */
	char **names; /* each address's host, as its certificate names it */
	size_t naddrs;
	struct sim_tls *tls; /* NULL: plain HTTP */
	char *user_attrs;    /* ,"k":"v"... from --attr, escaped */
	bool has_host, has_os, has_rack, has_zone;
	struct sim_loop *loops;
	int nloops;
	int64_t start_ms;
	bool stopping;
};

struct http_reply {
	int status;
	char *body;
	size_t body_len;
	size_t total; /* bytes of the buffer the response used */
	bool close;
	/* X-Berth-Time: the server's clock and process, 0 when absent. */
	int64_t server_clock;
	uint32_t server_clock_id;
};

/* simulator.c */
uint32_t rnd_next(struct sim_loop *l);
void agent_name(const struct sim *s, const struct sim_agent *a, char *buf, size_t n);

/* sim_tls.c: TLS for the agents (see there). Failures put a message in
 * why[n] and return -1. */
struct sim_tls;
int sim_tls_init(struct sim *s);
void sim_tls_free(struct sim *s);
int sim_tls_open(struct sim *s, struct sim_agent *a, char *why, size_t n);
/* 1: done, 0: wait for the socket, -1: failed. */
int sim_tls_handshake(struct sim_agent *a, char *why, size_t n);
/* Bytes moved (> 0), 0 at the end of the stream (recv), -EAGAIN, or -EIO. */
long sim_io_send(struct sim_agent *a, const char *buf, size_t len, char *why, size_t n);
long sim_io_recv(struct sim_agent *a, char *buf, size_t len, char *why, size_t n);
void sim_tls_close(struct sim_agent *a);
/* Free the key and certificate an agent holds decoded (the DER stays). */
void sim_tls_drop_decoded(struct sim_agent *a);
const char *sim_tls_join_token(const struct sim *s);
/* The body of a join or a renewal: the name and a certificate request. */
int sim_tls_csr_body(struct sim *s, struct sim_agent *a, struct sbuf *b, char *why, size_t n);
/* A join's or renewal's reply: the agent's certificate from now on. */
int sim_tls_take_cert(struct sim_loop *l, struct sim_agent *a, const char *body, size_t len,
		      char *why, size_t n);
/* Forget the certificate (refused by the server): the next call joins. */
void sim_tls_forget(struct sim *s, struct sim_agent *a);

/* sim_wire.c */
void json_strz(struct sbuf *b, const char *s);
void build_register(struct sim_loop *l, struct sim_agent *a, struct sbuf *b);
bool want_full_report(const struct sim_agent *a, int64_t now);
void build_watch(struct sim_loop *l, struct sim_agent *a, struct sbuf *b, bool full);
long scan_watch_reply(struct sim_loop *l, const char *body, size_t len, uint64_t known,
		      uint64_t *version, bool *report, int32_t *heartbeat_ms);
int http_parse(char *buf, size_t len, bool eof, struct http_reply *r);

#endif
