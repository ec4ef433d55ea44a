/* clang-format off */
/* fuzz_utf8.c - libFuzzer target for utf8_sanitize() (a task's log bytes,
 * as the UI's logs route turns them into JSON text).
 *
 * fuzz-sources: src/core/util.c src/core/utf8.c
 * fuzz-libs: -ljansson
 *
 * Checks: no crash, leak or UB; the output is valid UTF-8 (jansson takes
 * it); at most 3 bytes are left unread, and only when more input could make
 * them a character.
 */
/* clang-format on */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbuf sb;
	sbuf_init(&sb);
	size_t used = utf8_sanitize(&sb, (const char *)data, size);
	if (used > size || size - used > 3)
		abort();
	json_t *j = json_stringn(sb.buf, sb.len);
	if (!j)
		abort();
	json_decref(j);
	sbuf_release(&sb);
	return 0;
}
