#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/util.h"

static enum log_level level = LOG_INFO;
static enum log_format format = LOG_FORMAT_TEXT;
static char prefix[64] = "berth";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum log_level l)
{
	level = l;
}

void log_set_format(enum log_format f)
{
	format = f;
}

/* The length of the valid UTF-8 sequence at p (1..4), or 0. */
static int utf8_len(const unsigned char *p)
{
	int n = *p >= 0xf0 && *p <= 0xf4 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 && *p < 0xe0 ? 2 : 0;
	for (int i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* s as a JSON string: quotes, backslashes and control characters escaped,
 * bytes that are not UTF-8 replaced by U+FFFD, so every line parses. */
static void put_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p);
		} else if (*p == '\n') {
			fputs("\\n", f);
		} else if (*p == '\t') {
			fputs("\\t", f);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p);
		} else if (*p < 0x80) {
			fputc(*p, f);
		} else {
			int n = utf8_len(p);
			if (n == 0) {
				fputs("\\ufffd", f);
			} else {
				fwrite(p, 1, (size_t)n, f);
				p += n - 1;
			}
		}
	}
	fputc('"', f);
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
	if (format == LOG_FORMAT_JSON) {
		static const char *const levels[] = {"debug", "info", "warn", "error"};
		fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",\"component\":", ts, levels[l]);
		put_json_string(stderr, prefix);
		fputs(",\"msg\":", stderr);
		put_json_string(stderr, line);
		fputs("}\n", stderr);
	} else {
		fprintf(stderr, "%s %s %s: %s\n", ts, names[l], prefix, line);
	}
	pthread_mutex_unlock(&log_lock);
}
