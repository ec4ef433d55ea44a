/* ports.h - a per-node pool of host ports in a configurable range [lo, hi].
 *
 * The server keeps one pool per node to hand out the host ports a task's
 * named ports map to; the agent rebuilds one when it re-adopts running
 * tasks (port_pool_reserve). Allocation is next-fit from a rotating cursor,
 * so a port just released is not handed out again at once (a late packet or
 * a TIME_WAIT socket of the old task must not reach the new one).
 *
 * A bitmap with a summary of full words: take, reserve and release are O(1)
 * apart from skipping full words, which costs one summary bit each.
 */
#ifndef BERTH_PORTS_H
#define BERTH_PORTS_H

#include <stdbool.h>
#include <stdint.h>

struct port_pool;

/* A pool of [lo, hi], all free. NULL when the range is not within
 * 1..65535 or lo > hi. */
struct port_pool *port_pool_new(int lo, int hi);
void port_pool_free(struct port_pool *pool);
/* A free port, now taken, or -1 when none is left. */
int port_pool_take(struct port_pool *pool);
/* Mark a given port taken; false when out of range or already taken. */
bool port_pool_reserve(struct port_pool *pool, int port);
/* Give a port back; out of range or already free is a no-op. */
void port_pool_release(struct port_pool *pool, int port);
/* Whether port is in range and taken. */
bool port_pool_in_use(const struct port_pool *pool, int port);
uint32_t port_pool_available(const struct port_pool *pool);

#endif
