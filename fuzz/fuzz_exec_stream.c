/* clang-format off */
/* fuzz_exec_stream.c - libFuzzer target for the frames of `berth task exec`
 * (core/exec_stream.h), which the agent reads from a client and the CLI
 * from an agent: the input is cut in pieces whose sizes the first byte
 * chooses and fed to one reader.
 *
 * fuzz-sources: src/core/util.c src/core/log.c src/core/exec_stream.c
 * fuzz-libs: -ljansson -lpthread
 *
 * Checks: no crash, leak or UB; a frame is never longer than
 * EXEC_FRAME_MAX, its kind is known, resize and exit frames have 4 bytes;
 * the reader never consumes more than it was given, and once it fails it
 * keeps failing.
 */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>

#include "core/exec_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t piece = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	struct exec_reader r;
	exec_reader_init(&r);
	size_t off = 0;
	int failed = 0;
	while (off < size) {
		size_t len = size - off < piece ? size - off : piece;
		size_t used;
		struct exec_frame f;
		int k = exec_reader_next(&r, data + off, len, &used, &f);
		if (used > len)
			abort();
		if (k < 0) {
			failed = 1;
			break;
		}
		if (failed)
			abort();
		if (k == 1 && (f.len > EXEC_FRAME_MAX || f.kind > EXEC_ERROR ||
			       ((f.kind == EXEC_RESIZE || f.kind == EXEC_EXIT) && f.len != 4)))
			abort();
		off += used;
	}
	if (failed) {
		size_t used;
		struct exec_frame f;
		if (exec_reader_next(&r, data, size, &used, &f) != -1)
			abort();
	}
	exec_reader_release(&r);
	return 0;
}
