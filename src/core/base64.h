/* base64.h - base64 (RFC 4648, padded), as protobuf's JSON mapping writes
 * bytes: etcd's v3 JSON gateway sends keys and values this way (the store's
 * etcd backend, the leader election).
 *
 * The _add functions append to a struct sbuf (core/util.h), which stays
 * NUL-terminated; encode and decode allocate. Decoding takes the standard
 * and the URL-safe alphabets, with or without padding, and refuses anything
 * else (a bad character, a lone sextet, bad or extra padding).
 */
#ifndef BERTH_BASE64_H
#define BERTH_BASE64_H

#include <stddef.h>

#include "core/util.h"

/* Append the base64 of data[0..len) to sb. */
void base64_add(struct sbuf *sb, const void *data, size_t len);
/* Append the base64 of a followed by b, without building the concatenation
 * (an etcd key is a prefix then the store's key). */
void base64_add2(struct sbuf *sb, const char *a, size_t alen, const char *b, size_t blen);
/* Append the bytes that in[0..n) encodes to out. 0, or -1 when in is not
 * base64 (out may then hold part of it). */
int base64_decode_add(struct sbuf *out, const char *in, size_t n);

/* The base64 of data[0..len), NUL-terminated; the caller frees. */
char *base64_encode(const void *data, size_t len);
/* Decode in[0..n): 0 with *out (NUL-terminated, the caller frees) and
 * *out_len, or -1 with *out NULL when in is not base64. */
int base64_decode(const char *in, size_t n, char **out, size_t *out_len);

#endif
