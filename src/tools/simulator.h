/* simulator.h - many simulated agents in one process, for scale tests.
 *
 * `berth agent --simulate N --name PREFIX` runs agents PREFIX-0 ...
 * PREFIX-(N-1) that speak the real agent protocol (docs/protocol.md), each
 * over its own keep-alive TCP connection with its own heartbeat, so the
 * server sees the load of N machines. Their tasks run no process: a task the
 * server assigns is reported RUNNING (pid 0) at the next watch, and a task
 * no longer wanted is reported KILLED. A task whose env has
 * BERTH_SIM_FAIL_AFTER=DURATION is reported FAILED after that long, with the
 * exit code BERTH_SIM_EXIT_CODE (default 1).
 *
 * One epoll loop per thread drives every agent through a small HTTP/1.1
 * client of its own over non-blocking sockets: thousands of agents cost a
 * few hundred bytes each plus one file descriptor, not a thread.
 *
 * Against a server that speaks TLS (the default; docs/security.md), each
 * agent joins as a real one does: the join token and a certificate request
 * of its own give it a node certificate, and every later call is mutual TLS
 * with it; it renews the certificate when half its life is gone.
 */
#ifndef BERTH_SIMULATOR_H
#define BERTH_SIMULATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"

struct simulator_options {
	const char *prefix;	     /* agent names are PREFIX-i */
	int count;		     /* N agents */
	int first;		     /* the first index (default 0) */
	const char *servers;	     /* "h:p" or "http://h:p", comma-separated */
	double cpu;		     /* per agent; default 8 */
	uint64_t memory, disk;	     /* default 16 GiB, 100 GiB */
	int port_lo, port_hi;	     /* default 20000-32767 */
	const struct spec_kv *attrs; /* --attr k=v, given to every agent */
	size_t nattrs;
	int racks;	   /* > 0: attribute rack=r<i % racks> */
	int zones;	   /* > 0: attribute zone=z<i % zones> */
	int register_rate; /* registrations per second (default 2000) */
	int threads;	   /* event loops (default 1) */
	/* TLS: with a join token (bj1.…), agents join and speak mutual TLS;
	 * without one, plain HTTP (a server run with --insecure). */
	const char *join_token;
	const char *cacert; /* the cluster CA (PEM file); NULL: GET /v1/ca,
			       checked against the fingerprint in the token */
	bool shared_key;    /* one key for every agent, each its own certificate */
	bool source_addrs;  /* agent i connects from 127.0.(i/250).(i%250+1) */
};

void simulator_options_defaults(struct simulator_options *o);

/* Run until SIGINT or SIGTERM (blocked here and waited for in the calling
 * thread). Returns 0 after a clean stop, 1 (after logging why) when the
 * simulation cannot start. */
int simulator_run(const struct simulator_options *o);

#endif
