/* health.h - a task's health check (task.health in docs/spec.md), as a
 * non-blocking state machine the agent's event loop drives.
 *
 * One `struct health_check` per running task. It never blocks and never
 * reads the clock: every call that needs the time takes `now_ms` (use
 * time_mono_ms()), so the loop decides what "now" is and tests can drive it.
 *
 * Kinds (struct health_spec):
 *   HEALTH_HTTP     non-blocking connect to host_ip:port, "GET <path>
 *                   HTTP/1.0" with a Host header; the status line alone
 *                   decides: 2xx and 3xx pass, anything else fails
 *   HEALTH_TCP      a connect that completes passes
 *   HEALTH_COMMAND  argv run with posix_spawn (env, cwd given), in its own
 *                   process group, stdin /dev/null, stdout+stderr captured
 *                   (the tail goes into the failure message); exit 0 passes.
 *                   The agent makes argv `berth task-exec SANDBOX -- CMD`
 *                   (task_exec.h), so the command runs inside the task, as
 *                   the task; this module runs whatever argv it is given.
 * Each check must finish within timeout_ms or it fails (a command's whole
 * process group is SIGKILLed and the child reaped). The exact pass/fail
 * rule (initial delay, successes, failures) is at the top of health.c.
 *
 * Driving it (see health.c for the details):
 *   hc = health_check_new(...)            when the task's program started
 *   loop:
 *     v = health_check_poll(hc, now)      starts/advances/times out checks
 *     n = health_check_fds(hc, fds, max)  add these to the loop's poll()
 *     wait at most health_check_next_ms(hc) - now
 *   PASSING the first time: the task is RUNNING;
 *   FAILING: kill the task, with health_check_last_error() in the message;
 *   health_check_free(hc) when the task ends (kills a check in flight).
 *
 * Command checks are children of the calling process: it must not reap
 * children it does not know (waitpid(-1, ...)) nor set SIGCHLD to SIG_IGN,
 * or a check's exit status is lost (the check then fails, saying so).
 */
#ifndef BERTH_HEALTH_H
#define BERTH_HEALTH_H

#include <poll.h>
#include <stdint.h>

#include "core/spec.h"

enum health_verdict {
	HEALTH_UNKNOWN, /* STARTING: not yet `successes` consecutive passes */
	HEALTH_PASSING, /* `successes` consecutive passes reached; stays so
			 * through up to failures-1 consecutive failures */
	HEALTH_FAILING, /* `failures` consecutive failures: kill the task.
			 * Final: no further check is started. */
};

/* The most fds health_check_fds() ever returns. */
#define HEALTH_CHECK_MAX_FDS 3

struct health_counts {
	int consecutive_passes;
	int consecutive_failures;
	uint64_t checks; /* completed checks (passes + failures) */
	uint64_t passes;
	uint64_t failures;
};

struct health_check;

/* A check for a task. The spec is copied (it need not outlive the check).
 *  host_ip  where the task listens: an IPv4 or IPv6 literal; NULL or ""
 *           is "127.0.0.1" (exec tasks share the host's network)
 *  port     the spec's named port, resolved; used by http and tcp (a port
 *           outside 1..65535 makes every check fail, saying so)
 *  env      for command checks: NULL-terminated "KEY=VALUE" strings (the
 *           task's env), or NULL for the caller's environ; a command
 *           without '/' is looked up in this env's PATH (default
 *           /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
 *  cwd      for command checks: the working directory, or NULL/"" for the
 *           caller's
 * Zero timing fields take the docs' defaults (interval 10s, timeout 1s,
 * failures 3, successes 1); initial_delay 0 means check at once.
 * Returns NULL when spec->kind is HEALTH_NONE: there is nothing to check and
 * the task is RUNNING as soon as it started. All calls accept NULL. */
struct health_check *health_check_new(const struct health_spec *spec, const char *host_ip, int port,
				      char *const *env, const char *cwd);

/* Stop a check in flight (closing its socket, or SIGKILLing the command's
 * process group and reaping it: this waits for the killed child, which
 * takes microseconds) and free everything. */
void health_check_free(struct health_check *hc);

/* Non-blocking: called from the agent's event loop. Starts a check when one
 * is due (after initial_delay, then every interval), advances a running one,
 * enforces timeout. Returns the current verdict. The first call is the
 * task's start: initial_delay counts from its now_ms. now_ms must not go
 * backwards (a monotonic clock). */
enum health_verdict health_check_poll(struct health_check *hc, int64_t now_ms);

/* The fds the loop should poll while a check is in flight (at most
 * HEALTH_CHECK_MAX_FDS; fills at most max). Readiness on any of them means
 * "call health_check_poll"; their revents need not be passed back.
 * Returns how many were filled, 0 when nothing is in flight. */
int health_check_fds(struct health_check *hc, struct pollfd *fds, int max);

/* When the loop must call health_check_poll next at the latest (same clock
 * as now_ms): the next check's start, the running check's deadline. Before
 * the first poll it is 0 (poll at once); INT64_MAX when nothing is left to
 * do (FAILING, nothing in flight). */
int64_t health_check_next_ms(const struct health_check *hc);

enum health_verdict health_check_verdict(const struct health_check *hc);

/* Why the last failed check failed, e.g.
 *   "http GET /health on port 31001: status 500"
 *   "tcp connect to port 31001: connection refused"
 *   "command exited 1: <last line of its output>"
 *   "command timed out after 1s"
 * "" when no check has failed yet. Kept after later passes (it is the last
 * *failure*); valid until the next poll or free. */
const char *health_check_last_error(const struct health_check *hc);

void health_check_counters(const struct health_check *hc, struct health_counts *out);

/* The verdict's name: "unknown", "passing", "failing". */
const char *health_verdict_name(enum health_verdict v);

#endif
