/* etcd_client.h - berth's one client of an etcd cluster's v3 JSON gateway
 * (HTTP/JSON on each member's client port, through libcurl). Its users: the
 * store's etcd backend (store_etcd.c, store_etcd_follow.c) and the leader
 * election (server/leader.c). docs/store.md has the whole picture.
 *
 * Location: etcd://HOST[:PORT][,HOST[:PORT]...][/PREFIX][?OPTION=VALUE&...]
 *   PORT defaults to 2379; IPv6 as [::1]:2379. PREFIX (a '/' is added when
 *   missing) puts every key under "PREFIX/", so that several clusters (or
 *   test runs) can share one etcd. Options: max-txn-ops and
 *   max-request-bytes, the limits the etcd cluster was started with
 *   (--max-txn-ops, --max-request-bytes); cacert=FILE, cert=FILE and
 *   key=FILE for members that speak TLS (berth server's --etcd-cacert,
 *   --etcd-cert, --etcd-key): with any of them the endpoints are https://,
 *   checked against cacert (else the system's CAs), and cert/key (both or
 *   none) is the client certificate shown to members that ask for one.
 *
 * API: the gateway serves /v3 (etcd >= 3.4), /v3beta (3.3) or /v3alpha
 * (older). etcd_client_detect picks one from GET /version (trying each in
 * turn when /version does not answer) and reads one key, which also checks
 * that the cluster has a leader; paths of later calls are under it.
 *
 * Calls: endpoints are tried in order from the one that answered last. A
 * connection failure moves to the next at once; so does a 503 or 504 (no
 * leader, leader changed: an election is under way) and a try that got no
 * answer within its timeout. Unless the call says `once`, the whole list is
 * then tried again every 200 ms, each try's timeout doubled, for up to 10 s.
 * Any other answer (400 too large, bad request, 404) is the cluster's verdict:
 * another member would say the same, so the call ends with it. Error
 * messages name the endpoint: "etcd HOST:PORT: why" (one per endpoint tried
 * when none answered).
 *
 * A client holds one curl handle: one thread at a time uses it.
 */
#ifndef BERTH_ETCD_CLIENT_H
#define BERTH_ETCD_CLIENT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* etcd's defaults for --max-txn-ops and --max-request-bytes. */
#define ETCD_DEFAULT_MAX_TXN_OPS 128
#define ETCD_DEFAULT_MAX_REQUEST_BYTES (1536 * 1024)
/* How long a request may take when no shorter timeout is asked for. */
#define ETCD_REQUEST_TIMEOUT_MS 120000L
/* The smallest max-request-bytes a location may name: a txn's framing
 * (store_etcd.c) and a few KiB of keys and values. */
#define ETCD_MIN_REQUEST_BYTES (1024 + 4096)

/* A parsed location. */
struct etcd_location {
	char **endpoints; /* "host:port", as named in messages */
	char **urls;	  /* "http://host:port" or "https://host:port" */
	size_t n_endpoints;
	char *prefix; /* "" or "name/" */
	size_t prefix_len;
	size_t max_txn_ops;
	size_t max_request_bytes;
	char *cacert, *cert, *key; /* TLS files, or NULL */
};

struct etcd_client;

/* A client of the cluster at location (the scheme "etcd://" is optional).
 * Nothing is sent: NULL with err set ("store: bad etcd location ...", "store:
 * no etcd endpoint in ...", "store: unknown option ...") when the location
 * does not parse. */
struct etcd_client *etcd_client_new(const char *location, struct berr *err);
void etcd_client_free(struct etcd_client *c);
const struct etcd_location *etcd_client_location(const struct etcd_client *c);

/* Find the gateway's API prefix (see the top), each try timeout_ms long (0:
 * no short timeout), once: one round over the endpoints (no retry while they
 * are unavailable). 0, or -1 with err ("etcd HOST:PORT: ..."). */
int etcd_client_detect(struct etcd_client *c, long timeout_ms, bool once, struct berr *err);
/* "/v3", "/v3beta" or "/v3alpha"; NULL until etcd_client_detect succeeded. */
const char *etcd_client_api(const struct etcd_client *c);

/* One blocking request. */
struct etcd_call {
	/* Under the API prefix ("kv/range"), or from the root when it starts
	 * with '/' ("/version"). */
	const char *path;
	const char *body; /* POSTed (len bytes); NULL: GET */
	size_t len;
	long timeout_ms; /* each try's in the first round; 0: no short timeout */
	bool once;	 /* one round over the endpoints (see the top) */
	/* Set by the call: the last HTTP status (0 when no endpoint answered)
	 * and the size of the answer's body. */
	long status;
	size_t answer_bytes;
};
/* 0 with *out the answer (a JSON object; the caller owns it), or -1 with
 * err set (see the top). */
int etcd_client_call(struct etcd_client *c, struct etcd_call *call, json_t **out, struct berr *err);
/* The same, POSTing body (its reference is taken), a JSON object. */
int etcd_client_call_json(struct etcd_client *c, const char *path, json_t *body, long timeout_ms,
			  bool once, json_t **out, struct berr *err);
/* While *stop is set, a request in progress gives up (NULL: never). */
void etcd_client_stop_on(struct etcd_client *c, const _Atomic bool *stop);

/* For requests the client does not make itself (in flight on a curl multi
 * handle, or a watch stream): the endpoint that answered last ("host:port"),
 * moving on to the next one, the URL of path (as in struct etcd_call) there
 * (the caller frees), and the options every handle of the client has, with
 * the answer's body going to resp (NULL: set CURLOPT_WRITEFUNCTION too). */
const char *etcd_client_endpoint(const struct etcd_client *c);
void etcd_client_next_endpoint(struct etcd_client *c);
char *etcd_client_url(const struct etcd_client *c, const char *path);
void etcd_client_setup_handle(const struct etcd_client *c, CURL *h, struct sbuf *resp);

/* ---- the gateway's JSON ---- */

/* prefix + key[0..n) (+ a NUL byte when succ: the first key after it), as a
 * whole etcd key of *len bytes (NUL-terminated; the caller frees); the empty
 * key becomes "\0", the first key there is (etcd has no empty key). */
char *etcd_key(const struct etcd_client *c, const char *key, size_t n, bool succ, size_t *len);
/* Append "name":"base64(prefix + key)" to sb (the empty key as "\0"). */
void etcd_add_key(const struct etcd_client *c, struct sbuf *sb, const char *name, const char *key,
		  size_t len);
/* Append "name":"base64(raw)": raw is already a whole etcd key; NULL is the
 * open end of a range, "\0". */
void etcd_add_raw(struct sbuf *sb, const char *name, const char *raw, size_t len);
/* Decode kv[field] (base64; absent is empty: proto3 leaves out empty bytes)
 * into out, replacing what it held. 0 or -1. */
int etcd_kv_bytes(json_t *kv, const char *field, struct sbuf *out);
/* An int64 of an answer (proto3 JSON writes them as strings), or -1. */
int64_t etcd_int64(json_t *v);

#endif
