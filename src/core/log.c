#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/util.h"

static enum log_level level = LOG_INFO;
static char prefix[64] = "berth";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum log_level l)
{
	level = l;
}

void log_set_prefix(const char *p)
{
	snprintf(prefix, sizeof prefix, "%s", p);
}

void log_msg(enum log_level l, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info ", "warn ", "error"};
	if (l < level || l >= LOG_OFF)
		return;
	char ts[40], line[2048];
	time_format_ms(time_now_ms(), ts, sizeof ts);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s %s %s: %s\n", ts, names[l], prefix, line);
	pthread_mutex_unlock(&log_lock);
}
