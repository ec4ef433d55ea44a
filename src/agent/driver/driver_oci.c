/* driver_oci.c - the oci driver: an OCI runtime (runc) runs the task from a
 * bundle the supervisor writes (oci_bundle.h). */
#include "agent/driver/driver.h"
#include "agent/driver/oci_bundle.h"

static void oci_orphan(const struct driver_host *h, const char *task_id)
{
	oci_delete_orphan(h->data_dir, task_id, NULL);
}

const struct driver_ops driver_oci = {
    .driver = DRIVER_OCI,
    .needs_image = true,
    .runtime_isolates = true,
    .init_is_program = true,
    .delete_orphan = oci_orphan,
};
