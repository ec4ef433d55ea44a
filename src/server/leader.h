/* leader.h - leader election among servers sharing an etcd store.
 *
 * Each server campaigns for the key <prefix>/meta/leader with an etcd lease: an
 * etcd transaction puts its URL there only if the key does not exist. The
 * winner keeps its lease alive (every ttl/4); the others look at the key
 * every ttl/8, or at once when leader_poke says it is gone (the server's
 * replica sees it deleted), and campaign again when it disappears, which
 * happens at most ttl after the leader died or was cut off.
 *
 * Fencing: past 3/4 of the TTL without a renewal a leader holds every write
 * and every answer to agents (leader_lease_fresh) until a renewal succeeds;
 * when etcd says its lease is gone, or after 4 TTLs without a renewal,
 * `lost` is called and the server stops. Its commits are also guarded by a
 * compare on the key (store_set_guard): two leaders never both write.
 *
 * The election speaks to etcd through a client of its own (store/etcd_client.h,
 * on the election's thread): each call goes once round the endpoints, each
 * try for at most ttl/2 + 200 ms (a keepalive: ttl/4), so that a late answer
 * never holds up the next renewal; the API prefix is detected on the first
 * call that gets through.
 */
#ifndef BERTH_LEADER_H
#define BERTH_LEADER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/util.h"

struct leader_callbacks {
	void *ud;
	/* This server leads now (called once); revision: the store's revision
	 * of the win, after every write of any earlier leader. */
	void (*elected)(void *ud, int64_t revision);
	void (*lost)(void *ud); /* its lease is gone: stop writing now */
};

struct leader;

/* location: the store's "etcd://h1:p1,h2:p2[/PREFIX][?OPTIONS]". self_url: how other
 * servers and clients reach this one. */
struct leader *leader_start(const char *location, const char *self_url, int64_t ttl_ms,
			    const struct leader_callbacks *cb, struct berr *err);
/* The leader's URL as last seen (caller frees), or NULL when unknown. */
char *leader_current(struct leader *l);
bool leader_is_me(struct leader *l);
/* This server leads and its lease is surely still valid: renewed less than
 * 3/4 of the TTL ago (measured from when the renewal was sent). While not,
 * the server neither commits nor tells agents anything: etcd may be electing
 * a new raft leader (no member can renew, but leases cannot expire either),
 * or this server may be cut off (another may lead soon). */
bool leader_lease_fresh(struct leader *l);
/* The key may be gone: a follower campaigns now rather than at its next look. */
void leader_poke(struct leader *l);
/* Stop campaigning; a leader gives its lease back so another takes over
 * at once. */
void leader_stop(struct leader *l);

#endif
