/* server_ui.h - the web UI (docs/ui.md): its files at /ui/, built into
 * the binary (ui_assets.h), and the one route it needs beside the API,
 * /ui/logs/TASK, a task's logs fetched by the server for the browser. */
#ifndef BERTH_SERVER_UI_H
#define BERTH_SERVER_UI_H

#include <stdbool.h>

#include "server/server-internal.h"

/* Most log reads under way at once (each on a thread); more get 503. */
#define UI_LOGS_MAX 16

/* The URL is the UI's: "/", "/ui" or under "/ui/". */
bool server_ui_path(const char *url);
/* Answer it, without the cluster lock. Returns what the access handler
 * returns: a log read suspends the connection and answers from its
 * thread (server_backup_stop_all waits for those). */
enum MHD_Result server_ui_answer(struct server *s, struct request *q, const char *method,
				 const char *url);

#endif
