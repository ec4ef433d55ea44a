/* driver.c - the table of drivers (driver.h). */
#include "agent/driver/driver.h"

static const struct driver_ops *const drivers[TASK_DRIVER_COUNT] = {
    [DRIVER_EXEC] = &driver_exec,
    [DRIVER_OCI] = &driver_oci,
    [DRIVER_DOCKER] = &driver_docker,
};

const struct driver_ops *driver_get(enum task_driver d)
{
	return (unsigned)d < TASK_DRIVER_COUNT ? drivers[d] : drivers[DRIVER_EXEC];
}

void driver_delete_orphans(const struct driver_host *h, const char *task_id,
			   const enum task_driver *known)
{
	for (size_t i = 0; i < TASK_DRIVER_COUNT; i++) {
		const struct driver_ops *d = drivers[i];
		if (d->delete_orphan && (!known || *known == d->driver))
			d->delete_orphan(h, task_id);
	}
}
