/* test_exec_stream.c - the frames of `berth task exec` (core/exec_stream.h). */
#include <string.h>

#include "core/exec_stream.h"
#include "core/util.h"
#include "unit.h"

/* Encode frames (kind, payload) back to back. */
static size_t put(uint8_t *out, enum exec_frame_kind k, const void *p, uint32_t n)
{
	exec_frame_header(out, k, n);
	memcpy(out + EXEC_HEADER_LEN, p, n);
	return EXEC_HEADER_LEN + n;
}

TEST(frames_come_out_whole_whatever_the_split)
{
	uint8_t buf[256];
	size_t n = 0;
	uint8_t rs[4];
	exec_put_u32(rs, 80u << 16 | 24u);
	n += put(buf + n, EXEC_STDOUT, "hello", 5);
	n += put(buf + n, EXEC_STDIN, "", 0);
	n += put(buf + n, EXEC_RESIZE, rs, 4);
	n += put(buf + n, EXEC_STDERR, "oops\n", 5);
	/* Feed it in pieces of every size: the same four frames come out. */
	for (size_t piece = 1; piece <= n; piece++) {
		struct exec_reader r;
		exec_reader_init(&r);
		int got = 0;
		for (size_t off = 0; off < n;) {
			size_t len = n - off < piece ? n - off : piece;
			size_t used;
			struct exec_frame f;
			int k = exec_reader_next(&r, buf + off, len, &used, &f);
			CHECK(k >= 0);
			off += used;
			if (k == 1) {
				if (got == 0)
					CHECK(f.kind == EXEC_STDOUT && f.len == 5 &&
					      !memcmp(f.data, "hello", 5));
				if (got == 1)
					CHECK(f.kind == EXEC_STDIN && f.len == 0);
				if (got == 2)
					CHECK(f.kind == EXEC_RESIZE &&
					      exec_get_u32(f.data) == (80u << 16 | 24u));
				if (got == 3)
					CHECK(f.kind == EXEC_STDERR && f.len == 5);
				got++;
			} else {
				CHECK(used == len);
			}
		}
		CHECK(got == 4);
		exec_reader_release(&r);
	}
}

TEST(bad_frames_are_protocol_errors)
{
	uint8_t h[EXEC_HEADER_LEN];
	struct exec_frame f;
	size_t used;
	struct {
		int kind;
		uint32_t len;
	} bad[] = {
	    {6, 1}, {255, 0}, {EXEC_STDOUT, EXEC_FRAME_MAX + 1}, {EXEC_RESIZE, 3}, {EXEC_EXIT, 5}};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct exec_reader r;
		exec_reader_init(&r);
		exec_frame_header(h, (enum exec_frame_kind)bad[i].kind, bad[i].len);
		CHECK(exec_reader_next(&r, h, sizeof h, &used, &f) == -1);
		/* and it stays broken */
		CHECK(exec_reader_next(&r, h, 1, &used, &f) == -1);
		exec_reader_release(&r);
	}
	/* The largest frame is fine. */
	struct exec_reader r;
	exec_reader_init(&r);
	exec_frame_header(h, EXEC_STDIN, EXEC_FRAME_MAX);
	CHECK(exec_reader_next(&r, h, sizeof h, &used, &f) == 0 && used == sizeof h);
	static uint8_t big[EXEC_FRAME_MAX];
	CHECK(exec_reader_next(&r, big, sizeof big, &used, &f) == 1 && f.len == EXEC_FRAME_MAX);
	exec_reader_release(&r);
}

UNIT_MAIN(frames_come_out_whole_whatever_the_split, bad_frames_are_protocol_errors)
