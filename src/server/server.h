/* server.h - the berth server: store, in-memory cluster, commit loop and the
 * HTTP/JSON API (docs/api.md), including the agent protocol
 * (docs/protocol.md).
 *
 * Threads: libmicrohttpd's event thread runs the handlers; the commit thread
 * runs the scheduler and timers, commits the pending batch durably, then
 * resumes the requests that waited for it (writes are acknowledged only when
 * durable) and the agents' long polls whose desired set changed.
 */
#ifndef BERTH_SERVER_H
#define BERTH_SERVER_H

#include <stdint.h>

#include "core/util.h"
#include "server/cluster.h"

struct server_options {
	const char *data_dir;
	const char *addr;	 /* HOST:PORT to listen on */
	const char *store;	 /* NULL or "sqlite" = <data_dir>/state.db; or a store location;
				    "etcd://..." makes the server one of an HA group */
	int64_t leader_ttl_ms;	 /* HA: the election lease (0 = 2 s) */
	bool insecure;		 /* plain HTTP, no authentication (docs/security.md) */
	const char *tls_sans;	 /* more names for the server's certificate, comma-separated */
	int64_t node_cert_ttl_s; /* agents' certificates' lifetime (0 = 24 h) */
	/* The key that seals secrets (secret_box.h): NULL = <data_dir>/keys/secrets.key,
	 * made on first start; a file named here must exist (HA servers share one). */
	const char *secrets_key_file;
	/* Connection and body limits (docs/security.md "Server limits"):
	 * 0 = the defaults below. */
	unsigned max_conns;	   /* connections at once, in all */
	unsigned max_client_conns; /* connections at once from one IP address */
	size_t body_budget;	   /* bytes of request bodies buffered at once, in all */
	/* etcd over TLS (an etcd:// store): the CA that signed the members'
	 * certificates, and this server's client certificate and key. */
	const char *etcd_cacert, *etcd_cert, *etcd_key;
	struct cluster_config cluster;
};

#define SERVER_DEFAULT_MAX_CONNS 60000u
#define SERVER_DEFAULT_MAX_CLIENT_CONNS 1024u
#define SERVER_DEFAULT_BODY_BUDGET ((size_t)256 << 20)

struct server;

void server_options_defaults(struct server_options *o);
/* Lock the data dir (DATA/lock: a second server on it is refused, naming
 * the first), open the store, load the state, start listening and the
 * commit thread. */
struct server *server_start(const struct server_options *o, struct berr *err);
/* The port actually bound (useful with port 0). */
int server_port(const struct server *s);
/* Stop the API and the commit thread, commit what is pending, close. */
void server_stop(struct server *s);

#endif
