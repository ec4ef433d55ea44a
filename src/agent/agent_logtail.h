/* agent_logtail.h - the last LOGTAIL_BYTES of an ended task's stdout and
 * stderr, sent with its final status report so that the server keeps them
 * (server: cluster_logtail.h) and `berth task logs` can show why a task
 * died after its node is gone (docs/operations.md, "Logs").
 *
 * Only tasks that ended FAILED or KILLED send a tail: a task that FINISHED
 * said what it had to, and a LOST one is the server's verdict, never the
 * agent's report. */
#ifndef BERTH_AGENT_LOGTAIL_H
#define BERTH_AGENT_LOGTAIL_H

#include <jansson.h>
#include <stddef.h>

#define LOGTAIL_BYTES 65536
/* The tails' bytes (base64) one status report carries at most. */
#define LOGTAIL_BATCH (512 * 1024)

/* The last max bytes of the stream (its current file, then the rotated
 * one before it when the current is shorter): a malloc'd buffer, *len its
 * length; NULL when the task wrote nothing there. */
char *agent_logtail_read(const char *sandbox, const char *stream, size_t max, size_t *len);

/* Add "logs": {"stdout": BASE64, "stderr": BASE64} to report when state
 * is one that keeps a tail (see above). Returns the bytes added. */
size_t agent_logtail_attach(json_t *report, const char *sandbox, const char *state);

#endif
