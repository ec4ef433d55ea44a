/* clang-format off */
/* fuzz_json_text.c - libFuzzer target for json_text (the CLI's --json
 * lists, read from a server's replies without building a tree).
 *
 * fuzz-sources: src/core/util.c src/core/json_text.c
 * fuzz-libs: -ljansson
 *
 * Checks: no crash, leak or UB; what json_text_value_end accepts whole,
 * jansson parses too, and the re-indented text is what jansson prints for
 * it; json_text_member on any input never reads out of bounds.
 */
/* clang-format on */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	size_t end = json_text_value_end(s, size, 0);
	size_t b, e;
	if (json_text_member(s, size, "nodes", &b, &e) == 1) {
		if (e <= b || e > size)
			abort();
		char *str = json_text_string(s, b, e);
		free(str);
	}
	size_t start, whole_end;
	if (!json_text_whole(s, size, &start, &whole_end) || whole_end != end || memchr(s, 0, size))
		return 0;
	json_error_t je;
	json_t *j = json_loadb(s, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j)
		return 0; /* jansson is stricter on UTF-8 and big numbers */
	struct sbuf out;
	sbuf_init(&out);
	json_text_indent(&out, s, start, end, 0);
	json_t *again = json_loads(out.buf, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!again || !json_equal(j, again))
		abort();
	json_decref(again);
	json_decref(j);
	sbuf_release(&out);
	return 0;
}
