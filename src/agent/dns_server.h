/* dns_server.h - the agent's name server for its tasks (docs/networking.md,
 * "Names"). Answers from the endpoints table (endpoints.h):
 *
 *   NAME.ENV.ROLE.berth               A: every RUNNING instance's address
 *   INSTANCE.NAME.ENV.ROLE.berth      A: that instance's
 *   _PORT._tcp.NAME.ENV.ROLE.berth    SRV: 0 0 PORT INSTANCE.NAME.ENV.ROLE.berth
 *                                     per instance, its A in the additional
 *                                     section
 *   other names under .berth          NXDOMAIN
 *   a known name, another type        NOERROR, no answer
 *   every other name                  forwarded to the upstream resolvers
 *
 * Answers carry TTL 0: they follow the table, which follows the server
 * within a second. One thread, poll(): UDP and TCP on the listen address,
 * and one UDP socket towards the upstreams; forwarding never blocks (a
 * table of queries in flight, each with its deadline; an upstream that
 * does not answer in DNS_FORWARD_TIMEOUT_MS gets the next one's turn, the
 * last one's silence is SERVFAIL).
 */
#ifndef BERTH_DNS_SERVER_H
#define BERTH_DNS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "agent/dns_msg.h"
#include "agent/endpoints.h"
#include "core/util.h"

#define DNS_FORWARD_TIMEOUT_MS 1500
#define DNS_MAX_UPSTREAMS 4

struct dns_server_options {
	const char *listen; /* "IPV4:PORT" */
	/* "IPV4[:PORT]" each; none: the nameservers of resolv_conf */
	const char *const *upstreams;
	size_t nupstreams;
	const char *resolv_conf; /* NULL: /etc/resolv.conf */
	struct endpoints *endpoints;
};

struct dns_server;

/* Bind and start serving; NULL with err set (e.g. the address is taken). */
struct dns_server *dns_server_start(const struct dns_server_options *o, struct berr *err);
/* Stop the thread and close everything. Accepts NULL. */
void dns_server_stop(struct dns_server *s);
/* The address it listens on ("127.0.0.153"), for the tasks' resolv.conf. */
const char *dns_server_address(const struct dns_server *s);
/* The upstreams it forwards to, as "IP:PORT, ..." ("none" when none). */
const char *dns_server_upstreams(const struct dns_server *s);

/* The answer to q when it asks for a name under .berth, written in buf
 * (cap bytes: the client's UDP size, or more over TCP): its length, or 0
 * when the name is not ours (forward it). */
size_t dns_answer_berth(struct endpoints *t, const struct dns_query *q, uint8_t *buf, size_t cap);

/* The first DNS_MAX_UPSTREAMS "nameserver" lines of a resolv.conf text,
 * as IPv4 socket addresses on port 53 (IPv6 ones are skipped); their
 * count. */
size_t dns_parse_resolv_conf(const char *text, struct sockaddr_in *out, size_t max);

#endif
