/* driver_exec.c - the exec driver: the supervisor runs the task itself, in
 * namespaces and a cgroup of its own (exec_isolation.h). */
#include <signal.h>

#include "agent/driver/driver.h"

const struct driver_ops driver_exec = {
    .driver = DRIVER_EXEC,
};
