/* driver_docker.c - the docker driver: Docker Engine runs the task
 * (docker.h); the supervisor keeps its status, logs and stop. */
#include <stdio.h>

#include "agent/driver/docker.h"
#include "agent/driver/driver.h"
#include "core/log.h"

static bool docker_offered(const struct driver_host *h, char *why, size_t n)
{
	/* Offered only where the engine answers (checked at registration). */
	if (docker_available(h->docker_socket))
		return true;
	snprintf(why, n, "docker is not reachable at '%s'",
		 h->docker_socket ? h->docker_socket : DOCKER_DEFAULT_SOCKET);
	return false;
}

/* The container of a task whose supervisor is gone would run on unwatched:
 * remove it. Found by its label, which holds the cluster-unique task id; a
 * no-op without docker. */
static void docker_orphan(const struct driver_host *h, const char *task_id)
{
	char label[600];
	snprintf(label, sizeof label, "berth.task=%s", task_id);
	struct docker_found *f = NULL;
	size_t n = 0;
	struct berr err = {0};
	if (docker_find_by_label(h->docker_socket, label, &f, &n, &err) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (docker_remove(h->docker_socket, f[i].id, true, &err) == 0)
			log_info("task %s: removed its orphan docker container %s", task_id,
				 f[i].name ? f[i].name : f[i].id);
		else
			log_warn("task %s: %s", task_id, err.msg);
	}
	docker_found_free(f, n);
}

const struct driver_ops driver_docker = {
    .driver = DRIVER_DOCKER,
    .needs_image = true,
    .runtime_isolates = true,
    .available = docker_offered,
    .delete_orphan = docker_orphan,
};
