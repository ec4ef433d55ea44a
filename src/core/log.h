/* log.h - leveled logging for the daemons (server, agent). Lines go to
 * stderr as "2026-11-25T20:00:00.123Z info  server: message", or with
 * LOG_FORMAT_JSON (--log-format json) as one JSON object per line:
 * {"time":"2026-11-25T20:00:00.123Z","level":"info","component":"server",
 *  "msg":"message"}. The CLI does not log. */
#ifndef BERTH_LOG_H
#define BERTH_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

void log_set_level(enum log_level l);
void log_set_format(enum log_format f);
/* Set the component shown on every line ("server", "agent n1"). */
void log_set_prefix(const char *prefix);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
