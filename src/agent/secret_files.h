/* secret_files.h - a task's secrets on the node (docs/security.md, "Secrets").
 *
 * The agent fetches the values of the secrets a task lists when it launches
 * it (POST /v1/agent/secrets) and writes each as SANDBOX/secrets/NAME on a
 * tmpfs mounted there for that task alone (mode 0700, nosuid, nodev,
 * noexec): mode 0400, never on disk, never in launch.json (which names only
 * the file and the path the task sees it at). The supervisor gives the files
 * to the task's user and the driver shows each at its path (exec: a bind in
 * the task's mount namespace; oci: a bind mount in config.json; docker: a
 * bind mount). When the task ends the supervisor unmounts and removes the
 * tmpfs; what a killed supervisor left, the agent's sweep at start removes.
 */
#ifndef BERTH_SECRET_FILES_H
#define BERTH_SECRET_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/util.h"

struct secret_value {
	const char *name; /* NAME: the file's name */
	const char *data;
	size_t len;
};

/* SANDBOX/secrets (caller frees). */
char *secret_files_dir(const char *sandbox);
/* Mount the tmpfs at SANDBOX/secrets and write each value there, 0400,
 * owned by root until secret_files_own. On failure nothing is left. */
int secret_files_write(const char *sandbox, const struct secret_value *v, size_t n,
		       struct berr *err);
/* Give every file to uid:gid (the task's user). */
int secret_files_own(const char *sandbox, uid_t uid, gid_t gid, struct berr *err);
/* Unmount and remove SANDBOX/secrets (nothing there is fine). */
void secret_files_remove(const char *sandbox);
/* Every SANDBOX/secrets under tasks_dir whose task has no live supervisor
 * (the supervisor was killed): unmount and remove. Returns how many. */
size_t secret_files_sweep(const char *tasks_dir);

#endif
