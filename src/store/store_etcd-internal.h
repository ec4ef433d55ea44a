/* store_etcd-internal.h - what the etcd backend's two files share:
 * store_etcd.c (open, commit, reads) and store_etcd_follow.c (store_follow).
 * Both speak to etcd through store/etcd_client.h.
 */
#ifndef BERTH_STORE_ETCD_INTERNAL_H
#define BERTH_STORE_ETCD_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct etcd_client;

/* The client of an open etcd store (owned by the store). */
struct etcd_client *etcd_store_client(struct store *st);
/* The etcd backend's scan (store_scan without store.c's checks). */
int etcd_store_scan(struct store *st, const char *prefix, store_scan_fn fn, void *ud,
		    struct berr *err);
/* The revision the outermost scan in progress, or the last one, reads at:
 * 0 until its first page came. */
int64_t etcd_store_scan_revision(struct store *st);
/* store_follow (store_etcd_follow.c). */
int etcd_store_follow(struct store *st, store_follow_fn fn, void *ud, const _Atomic bool *stop,
		      struct berr *err);

#endif
