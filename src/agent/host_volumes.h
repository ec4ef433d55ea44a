/* host_volumes.h - which host paths a task may mount (task.volumes): only
 * what lies under one of the agent's volume roots (`--volume-root PATH`,
 * repeatable; none by default, so no host volume at all).
 *
 * A root is resolved once, at agent start (realpath: it must exist, be a
 * directory, and not be '/'). A volume's host path is resolved when its task
 * is launched: realpath follows every symlink and '..', so a symlink inside
 * a root that points out of it is judged by where it points; a path that
 * does not exist is refused (never created). The resolved path is what the
 * drivers then mount. Ownership: every string returned is the caller's.
 */
#ifndef BERTH_HOST_VOLUMES_H
#define BERTH_HOST_VOLUMES_H

#include <stddef.h>

#include "core/util.h"

/* Resolve and check the roots given by the user (--volume-root); *out is a
 * NULL-terminated vector of canonical paths (strv_free). 0, or -1 with err
 * naming the bad root. */
int host_volumes_roots(const char *const *roots, size_t n, char ***out, struct berr *err);

/* Resolve `host` and check that it is one of `roots` or below one. 0 with
 * *resolved set, or -1 with err (code 403) naming the rule and the flag. */
int host_volumes_resolve(char *const *roots, const char *host, char **resolved, struct berr *err);

/* "/srv/a,/srv/b" (the node attribute volume.roots); "" when none. */
char *host_volumes_describe(char *const *roots);

#endif
