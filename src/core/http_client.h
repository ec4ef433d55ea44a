/* http_client.h - a small blocking HTTP client over libcurl, for the CLI and
 * the agent. One client = one reused connection (keep-alive) and a list of
 * servers: on a connection failure the client moves to the next server, as
 * the CLI and agents do to follow an HA cluster. Not thread-safe: one per
 * thread. */
#ifndef BERTH_HTTP_CLIENT_H
#define BERTH_HTTP_CLIENT_H

#include <jansson.h>

#include "core/util.h"

struct http_client;

struct http_response {
	long status;
	char *body; /* NUL-terminated; caller frees via http_response_release */
	size_t len;
	char local_ip[64]; /* the address this side of the connection used */
};

/* servers: "http://h:p" or "h:p", comma-separated. */
struct http_client *http_client_new(const char *servers);
void http_client_free(struct http_client *hc);
/* A header sent with every request of this client (one; set again to
 * replace it), e.g. an agent's X-Berth-Node. */
void http_client_set_header(struct http_client *hc, const char *name, const char *value);
/* TLS (https:// servers): cacert verifies the server (NULL: the system's
 * CAs); cert and key, when both given, are this side's certificate (an
 * agent's node certificate). Files are read at each new connection. */
void http_client_set_tls(struct http_client *hc, const char *cacert, const char *cert,
			 const char *key);
/* Do not verify the server at all: only for what the caller checks
 * otherwise (an agent fetching the CA that its join token pins). */
void http_client_set_tls_unverified(struct http_client *hc);
/* Send "Authorization: Bearer TOKEN" (NULL: none). A redirect passes it on
 * only to another server's API path, never to an agent's logs. */
void http_client_set_token(struct http_client *hc, const char *token);
/* Echo the server's clock: each request carries "X-Berth-Echo: TIME AGE",
 * the X-Berth-Time of the last reply and the ms since it was read, so the
 * server can tell how long its intake kept the request (an agent's
 * heartbeats: server/liveness.h). */
void http_client_echo_server_clock(struct http_client *hc);
/* Drop the kept connection: the next request connects again (and reads
 * the TLS files again, e.g. after a certificate renewal). */
void http_client_reconnect(struct http_client *hc);
/* The server currently used (its URL). */
const char *http_client_server(const struct http_client *hc);

/* Send a request to PATH (e.g. "/v1/jobs") on the current server, moving on
 * to the next server when one cannot be reached or answers 503 (a server
 * answers 503 only for what it did not do). body may be NULL. Follows
 * redirects. With a patience (http_client_set_patience), while some server
 * answers 503 or redirects to a leader that cannot be reached, rounds over
 * all servers are repeated, 100 ms then up to 250 ms apart, until one
 * answers otherwise or the patience is spent: a CLI call rides through a
 * leader failover. Returns 0 when an HTTP response arrived (any status, 503
 * when that is all there was), -1 with err set when no server answered. */
void http_client_set_patience(struct http_client *hc, int64_t ms);
/* err->code when a server redirected to a leader that cannot be reached
 * (waited out like a 503 with a patience). */
#define HTTP_LEADER_UNREACHABLE 504
int http_request(struct http_client *hc, const char *method, const char *path, const char *body,
		 long timeout_ms, struct http_response *out, struct berr *err);
/* Same for an absolute URL (no failover). */
int http_request_url(struct http_client *hc, const char *method, const char *url, const char *body,
		     long timeout_ms, struct http_response *out, struct berr *err);
void http_response_release(struct http_response *r);

/* A streamed answer (GET PATH, no timeout, the same failover and redirects
 * as http_request): the body of a 2xx answer goes to fn piece by piece as
 * it arrives (fn returns false to stop reading); another status's body is
 * kept in out->body. Returns 0 when the answer ended (out->status says
 * which), -1 with err when no server answered, or the stream broke. */
typedef bool (*http_sink_fn)(void *ud, const char *data, size_t len);
int http_stream(struct http_client *hc, const char *path, http_sink_fn fn, void *ud,
		struct http_response *out, struct berr *err);

/* JSON convenience: send `body` (may be NULL), parse the reply. On HTTP
 * status >= 400 returns -1 with err set to the server's "error" message and
 * err->code the status. *reply gets the parsed JSON (new ref) on success. */
int http_json(struct http_client *hc, const char *method, const char *path, json_t *body,
	      long timeout_ms, json_t **reply, struct berr *err);
/* The same with the body sent and the reply kept as text: on success out
 * holds the 2xx/3xx answer (release it); on a status >= 400, -1 as above. */
int http_text(struct http_client *hc, const char *method, const char *path, const char *body,
	      long timeout_ms, struct http_response *out, struct berr *err);

#endif
