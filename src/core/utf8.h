/* utf8.h - text from bytes a program wrote (a task's log), for JSON. */
#ifndef BERTH_UTF8_H
#define BERTH_UTF8_H

#include <stddef.h>

#include "core/util.h"

/* Append buf[0..len) to out as valid UTF-8: each byte that does not start
 * a well-formed sequence (overlong forms, surrogates, code points over
 * U+10FFFF, stray continuation bytes) becomes U+FFFD. A sequence cut off by
 * the end of buf is not consumed: the return value is the number of bytes
 * used, len minus that tail (at most 3 bytes), so that the next read can
 * start at it. NUL bytes are kept. */
size_t utf8_sanitize(struct sbuf *out, const char *buf, size_t len);

#endif
