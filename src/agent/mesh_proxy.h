/* mesh_proxy.h - the routing mesh's data path on a node: a user-space L4
 * (TCP) proxy. For every published port it accepts connections on
 * 0.0.0.0:PORT and spreads them, round robin, over the backends in
 * rotation ({address, port} of the job's healthy instances, on any node).
 *
 * One thread of its own runs an epoll loop; bytes move with splice(2)
 * through a pipe per direction, never copied to user space. Semantics
 * (docs/networking.md, "Routing mesh"):
 *  - a new table (mesh_proxy_set) changes where NEW connections go; open
 *    connections keep their backend until either side closes (drain);
 *  - a backend that refuses or does not answer a connect within
 *    MESH_CONNECT_TIMEOUT_MS is skipped: the client's connection is tried
 *    on the next backend (nothing was sent yet), up to every backend once;
 *  - a port that leaves the table stops accepting; its open connections
 *    finish.
 */
#ifndef BERTH_MESH_PROXY_H
#define BERTH_MESH_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define MESH_CONNECT_TIMEOUT_MS 1000
#define MESH_ADDR_MAX 64

struct mesh_backend {
	char addr[MESH_ADDR_MAX]; /* numeric IPv4 or IPv6 */
	int port;
};

/* One published port and where its connections go now. */
struct mesh_service {
	int port;
	const char *job; /* for messages */
	const struct mesh_backend *backends;
	size_t nbackends; /* 0: connections are accepted and closed */
};

struct mesh_stats {
	uint64_t accepted;	  /* client connections accepted */
	uint64_t active;	  /* open now */
	uint64_t retried;	  /* connects moved to another backend */
	uint64_t no_backend;	  /* closed: no backend answered */
	uint64_t listening_ports; /* ports accepting now */
};

struct mesh_proxy;

/* Start the proxy thread (no port yet). NULL with err set on failure. */
struct mesh_proxy *mesh_proxy_start(struct berr *err);
/* Stop the thread, close every listener and connection, free. */
void mesh_proxy_stop(struct mesh_proxy *m);
/* Replace the whole table (copied; the caller keeps its arrays). A port
 * that cannot be bound is logged once and tried again at the next set. */
void mesh_proxy_set(struct mesh_proxy *m, const struct mesh_service *svcs, size_t n);
void mesh_proxy_stats(struct mesh_proxy *m, struct mesh_stats *out);

#endif
