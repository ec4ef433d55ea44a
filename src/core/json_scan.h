/* json_scan.h - reading untrusted JSON text in place, value by value,
 * without building a tree, accepting exactly what jansson's
 * json_loadb(JSON_REJECT_DUPLICATES) accepts: UTF-8 checked in strings,
 * escapes and surrogate pairs checked, no \u0000, integers within int64,
 * reals that do not overflow a double, duplicate keys (compared decoded)
 * refused in every object, values nested at most JSON_SCAN_DEPTH_MAX deep
 * (the top value is at depth 1).
 *
 * The server reads its agents' reports with it (agent_report.h): one pass,
 * only the members it uses decoded, the rest checked and skipped.
 *
 *   struct json_scan sc;
 *   json_scan_init(&sc, text, len);
 *   if (json_scan_peek(&sc) == '{' && json_scan_open(&sc))
 *       while ((r = json_scan_next(&sc, &key, &klen)) > 0)
 *           ... read or skip the member's value ...
 *   ok = r == 0 && json_scan_end(&sc);
 *   json_scan_release(&sc);
 *
 * Any failure is final: the text is not valid (the caller asks jansson for
 * the message: errors are the rare case).
 */
#ifndef BERTH_JSON_SCAN_H
#define BERTH_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_SCAN_DEPTH_MAX 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct json_scan_key;

struct json_scan {
	const char *s;
	size_t len, i;
	int depth; /* containers open */
	/* The open containers and the keys read in each: a marker per
	 * container, then its keys. */
	struct json_scan_key *keys;
	size_t nkeys, capkeys, top;
};

void json_scan_init(struct json_scan *sc, const char *s, size_t len);
void json_scan_release(struct json_scan *sc);

/* The next byte that is not whitespace (whitespace skipped), -1 at the end. */
int json_scan_peek(struct json_scan *sc);

/* The string value at the cursor, decoded into out (room for as many bytes
 * as the string takes in the text suffices) and NUL-terminated, its length
 * in *outlen; out may be NULL to check it only. */
bool json_scan_string(struct json_scan *sc, char *out, size_t *outlen);

/* The number at the cursor: *is_int when written as an integer (no
 * fraction, no exponent; then *iv is its value). */
bool json_scan_number(struct json_scan *sc, int64_t *iv, bool *is_int);

/* Check and skip the value at the cursor, however nested. */
bool json_scan_skip(struct json_scan *sc);

/* Enter the object or array at the cursor. */
bool json_scan_open(struct json_scan *sc);

/* In the innermost open container: 1 when a value follows (the cursor is
 * on it; in an object, *key and *klen give its decoded key, valid until the
 * object is closed, not NUL-terminated), 0 when the container ended (it is
 * closed), -1 on bad text. key and klen may be NULL in an array. */
int json_scan_next(struct json_scan *sc, const char **key, size_t *klen);

/* True when every container is closed and only whitespace is left. */
bool json_scan_end(struct json_scan *sc);

/* True when the key is exactly the NUL-terminated name (inline: with a
 * literal name the length and comparison fold). */
static inline bool json_scan_key_is(const char *key, size_t klen, const char *name)
{
	size_t n = __builtin_strlen(name);
	return klen == n && !__builtin_memcmp(key, name, n);
}

#endif
