/* tls_front.h - TLS in front of the agent's listener (docs/agent.md, "The
 * listener").
 *
 * libmicrohttpd 0.9.75 (Debian 12's) relays an upgraded TLS connection
 * through a buffer of 4 bytes each way: by the time it upgrades, the
 * response header has taken the connection's whole memory pool, so it falls
 * back to its 8-byte emergency buffer, whatever the pool's size. Every 4
 * bytes of a `berth task exec` stream then cost a TLS record and a turn of
 * its event loop (~300 KB/s). So the listener does its own TLS and gives
 * libmicrohttpd plain connections, whose upgrades hand the socket over as
 * it is:
 *
 *   client ══TLS══ front thread ──socketpair── libmicrohttpd (HTTP)
 *                  (one per connection)          upgraded: an exec session
 *
 * One thread accepts; each connection gets a thread of its own that runs
 * the handshake (TLS_FRONT_HANDSHAKE_MS at most), hands the plain end of a
 * socketpair over (tls_front_handoff_fn), then relays records of up to
 * 16 KiB each way with TCP_NODELAY until either side ends: the client's
 * end shuts the plain side for writing (the daemon sees EOF), the daemon's
 * close ends the TLS session. Idle connections end when the daemon times
 * them out. Past TLS_FRONT_MAX_CONNS connections at once, new ones are
 * closed at once.
 */
#ifndef BERTH_TLS_FRONT_H
#define BERTH_TLS_FRONT_H

#include <sys/socket.h>

#include "core/util.h"

#define TLS_FRONT_HANDSHAKE_MS 10000
#define TLS_FRONT_MAX_CONNS 256

/* Take fd (the plain end of a connection, non-blocking) and serve it;
 * peer is the client's address. fd is the callee's in every case (it
 * closes it when it cannot serve it). */
typedef void (*tls_front_handoff_fn)(void *cls, int fd, const struct sockaddr *peer,
				     socklen_t peer_len);

struct tls_front;

/* Accept on listen_fd (a listening TCP socket; the caller keeps it and
 * closes it after tls_front_stop) with the PEM certificate and key; each
 * connection, once its handshake is done, goes to handoff(cls, ...). NULL
 * with err set when the certificate cannot be used or no thread starts. */
struct tls_front *tls_front_start(int listen_fd, const char *cert_pem, const char *key_pem,
				  tls_front_handoff_fn handoff, void *cls, struct berr *err);

/* Serve new connections with another certificate (a renewal); the open
 * ones keep theirs. -1 with err set (the old one stays) when it cannot be
 * used. */
int tls_front_set_cert(struct tls_front *f, const char *cert_pem, const char *key_pem,
		       struct berr *err);

/* Stop accepting, end every connection (both of its sockets are shut
 * down), wait for their threads, free. NULL is fine. */
void tls_front_stop(struct tls_front *f);

#endif
