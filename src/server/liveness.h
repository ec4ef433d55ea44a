/* liveness.h - who was heard when, and how long the server itself was deaf.
 *
 * A node's heartbeat is its agent's watch. The request threads stamp it here
 * as soon as they know the node (a header, else the body), with this
 * table's own small lock and never the cluster lock, so no API call, commit,
 * scheduling pass or large response can delay the stamp. A watch the server
 * holds (a long poll) is not silence: a node with a held watch is never
 * silent, and when the server answers late, the agent's silence starts from
 * the answer.
 *
 * Deaf time: the time the server could not hear, counted by the judge
 * (liveness_account): the periods a request thread spent in one handler
 * beyond `stall_ms` (its other connections waited), and the judge's own
 * lateness beyond `stall_ms` (the process was paused, starved or the cluster
 * lock held). A node is judged on its silence minus the deaf time since it
 * was last heard, so the server's own lateness is never the agent's fault.
 *
 * Intake lag: how long agents' calls wait before the server reads them (a
 * backlog of TLS handshakes, a starved machine: the threads are busy but no
 * handler is long). Each reply carries the server's clock (X-Berth-Time);
 * an agent echoes it with its call, with how long it held it (X-Berth-Echo:
 * "TIME AGE"), so the server knows when the call was sent on its own clock:
 * lag = now - TIME - AGE. The judge takes the 90th percentile of the lags
 * read in the last two seconds (at least 5 of them; at most 60 s) as the
 * time a silent node's next call may still be waiting in the backlog, and
 * does not count it as silence.
 *
 * Every function takes the monotonic time from the caller (tests drive it).
 */
#ifndef BERTH_LIVENESS_H
#define BERTH_LIVENESS_H

#include <stdbool.h>
#include <stdint.h>

struct liveness;
struct node_live; /* one node's entry: stable for the life of the table */

/* stall_ms: a thread busy (or a judge late) beyond this is deaf; period_ms:
 * how often the judge looks when nothing is wrong. */
struct liveness *liveness_new(int64_t stall_ms, int64_t period_ms);
void liveness_free(struct liveness *lv);
int64_t liveness_stall_ms(const struct liveness *lv);

/* The node's entry, created when missing (register, load). */
struct node_live *liveness_node(struct liveness *lv, const char *name);
/* The node's entry or NULL (request threads: unknown names are ignored). */
struct node_live *liveness_find(struct liveness *lv, const char *name);

/* Heard from the node now. */
void liveness_heard(struct liveness *lv, struct node_live *nl, int64_t mono);
/* A watch of the node arrived (heard, and held until liveness_watch_end). */
void liveness_watch_begin(struct liveness *lv, struct node_live *nl, int64_t mono);
/* The watch was answered (or its connection ended) at mono; the agent asked
 * to be answered after wait_ms at the latest. */
void liveness_watch_end(struct liveness *lv, struct node_live *nl, int64_t mono, int64_t wait_ms);
/* Every node heard now (a load or promotion gives each a fresh window). */
void liveness_all_heard(struct liveness *lv, int64_t mono);

/* Request threads bracket their handlers with these (lock-free). */
void liveness_intake_begin(struct liveness *lv, int64_t mono);
void liveness_intake_end(struct liveness *lv, int64_t mono);

/* The judge, before judging: add the deaf time since the last call. */
void liveness_account(struct liveness *lv, int64_t mono);
/* An agent's call was read `lag_ms` after it was sent (server_http.c). */
void liveness_intake_lag(struct liveness *lv, int64_t lag_ms, int64_t mono);
/* The intake lag the judge allows now (set by liveness_account). */
int64_t liveness_lag_credit(struct liveness *lv);

/* Deaf time counted so far (ms). */
int64_t liveness_deaf_total(struct liveness *lv);

/* The node's silence (ms) as the judge sees it: the time since it was last
 * heard minus the server's deaf time since and the intake lag credit; 0
 * while a watch is held. */
int64_t liveness_silence(struct liveness *lv, struct node_live *nl, int64_t mono);
/* The raw time since it was last heard (views). */
int64_t liveness_since_heard(struct liveness *lv, struct node_live *nl, int64_t mono);

#endif
