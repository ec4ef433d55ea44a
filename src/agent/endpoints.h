/* endpoints.h - the agent's copy of every job's endpoints: where the
 * RUNNING (and so healthy) instances of each job answer, as the server's
 * watch replies deliver it (docs/protocol.md, "Endpoints"). The DNS server
 * (dns_server.h) and the routing mesh read it.
 *
 * Thread-safe: one writer (the watch thread) replaces the whole table at
 * once; readers see either the old table or the new one, never a mix.
 * Readers get each endpoint inside a callback, under the table's read
 * lock: copy what you keep, and do not call back into the table.
 *
 *   struct endpoints *t = endpoints_new();
 *   endpoints_replace(t, version, json_table, &err);     watch thread
 *   endpoints_each(t, "alice/prod/api", fn, ud);         any thread
 *   endpoints_version(t) moves whenever the table changes.
 */
#ifndef BERTH_ENDPOINTS_H
#define BERTH_ENDPOINTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* The longest job key kept ("ROLE/ENV/NAME"). */
#define ENDPOINT_KEY_MAX 256

struct endpoint_port {
	char *name;
	int port;
};

/* One RUNNING instance of a job. */
struct endpoint {
	int instance;
	const char *task;    /* the task's id */
	const char *node;    /* the node's name */
	const char *address; /* an IPv4 literal ("" when unknown) */
	const struct endpoint_port *ports;
	size_t nports;
};

struct endpoints;

struct endpoints *endpoints_new(void);
void endpoints_free(struct endpoints *t);

/* The version of the table held: 0 before the first replace. */
uint64_t endpoints_version(struct endpoints *t);

/* Replace the table with `table`, {"KEY": [{"instance", "task", "node",
 * "address", "ports": {NAME: PORT}}, ...], ...}, at `version`. Entries that
 * are not well formed are skipped (logged once per replace through err's
 * message); the call fails (-1, err set, table unchanged) only when table
 * is not an object. */
int endpoints_replace(struct endpoints *t, uint64_t version, json_t *table, struct berr *err);

/* Apply what changed from version `base` to `version`: delta is
 * {"KEY": [ENDPOINT...] | null, ...} (null: the job went); the other jobs
 * are kept. Returns 0, 1 when the table is not at `base` (nothing done:
 * ask for the whole table with endpoints_invalidate), -1 when delta is not
 * an object. */
int endpoints_apply_delta(struct endpoints *t, uint64_t base, uint64_t version, json_t *delta,
			  struct berr *err);
/* Forget the version (not the table, which readers keep using): the next
 * watch asks for the whole table. */
void endpoints_invalidate(struct endpoints *t);

/* Call fn for each endpoint of job `key`, in instance order. Returns the
 * number of endpoints, or -1 when the job is not in the table (a job with
 * no RUNNING instance is in it, with 0). */
int endpoints_each(struct endpoints *t, const char *key,
		   void (*fn)(void *ud, const char *key, const struct endpoint *e), void *ud);

/* Call fn for every job (n endpoints at eps, sorted by instance). */
void endpoints_each_job(struct endpoints *t,
			void (*fn)(void *ud, const char *key, const struct endpoint *eps, size_t n),
			void *ud);

/* The endpoint's port named `name`, or -1. */
int endpoint_port(const struct endpoint *e, const char *name);

#endif
