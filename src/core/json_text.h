/* json_text.h - JSON as text, without building a tree.
 *
 * The CLI prints large lists (`berth node list --json` of 10,000 nodes is
 * ~6 MB): parsing every page into a jansson tree and dumping it again cost
 * ~30 µs per node, most of the command's CPU. These functions check a value
 * is valid JSON, find a member of an object, and re-indent a value the way
 * jansson's JSON_INDENT(2) prints it, straight from the server's bytes.
 */
#ifndef BERTH_JSON_TEXT_H
#define BERTH_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/util.h"

#define JSON_TEXT_DEPTH_MAX 256

/* The end (one past the last byte) of the JSON value that starts at s[i],
 * leading whitespace skipped; 0 when s[i..len) does not start with a valid
 * value (bad syntax, truncated, nested deeper than JSON_TEXT_DEPTH_MAX).
 * Strings are checked for escapes and control characters, not for UTF-8. */
size_t json_text_value_end(const char *s, size_t len, size_t i);

/* The index of the first byte at or after i that is not JSON whitespace
 * (len when there is none). */
size_t json_text_skip_ws(const char *s, size_t len, size_t i);

/* True when s[0..len) is one valid JSON value with only whitespace around
 * it; its span is [*start, *end). */
bool json_text_whole(const char *s, size_t len, size_t *start, size_t *end);

/* In the object that is the whole of s[0..len) (whitespace around allowed),
 * the value of the member whose key is exactly `key` (keys compared as
 * written, so a key spelled with escapes does not match): its span
 * [*start, *end). Returns 1 when found, 0 when absent, -1 when s is not
 * valid JSON or not an object. */
int json_text_member(const char *s, size_t len, const char *key, size_t *start, size_t *end);

/* The same for several keys in one pass: start[k], end[k] for keys[k]
 * (both 0 when absent); returns how many were found, -1 as above. */
int json_text_members(const char *s, size_t len, const char *const *keys, size_t nkeys,
		      size_t *start, size_t *end);

/* Append the valid JSON value s[start..end) re-indented: two spaces per
 * level, the value itself at `level` (its first line is not indented),
 * ", " between items and ": " after keys as jansson writes them, empty
 * containers as {} and []. Scalars are copied as written. */
void json_text_indent(struct sbuf *out, const char *s, size_t start, size_t end, int level);

/* The string value s[start..end) (a valid JSON string, quotes included)
 * decoded into a new NUL-terminated string; NULL when it is not a string or
 * holds a NUL. */
char *json_text_string(const char *s, size_t start, size_t end);

#endif
