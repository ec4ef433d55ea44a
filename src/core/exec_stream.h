/* exec_stream.h - the frames of `berth task exec` (docs/protocol.md, "Exec
 * stream").
 *
 * After the HTTP/1.1 Upgrade to "berth-exec", both sides write frames on
 * the connection:
 *
 *   +--------+----------------------+------------------+
 *   | kind 1 | length 4 (big end.)  | payload (length) |
 *   +--------+----------------------+------------------+
 *
 *   kind    from     payload
 *   0 stdin client   bytes for the command's stdin; length 0 = stdin closed
 *   1 stdout agent   bytes the command wrote to stdout (and the TTY's output)
 *   2 stderr agent   bytes the command wrote to stderr
 *   3 resize client  4 bytes: columns, rows (16 bits each, big endian)
 *   4 exit   agent   4 bytes: the exit status (big endian); the last frame
 *   5 error  agent   a message: the command could not be run (exit follows)
 *
 * A payload is at most EXEC_FRAME_MAX bytes; any other kind, a longer
 * frame or a malformed resize/exit payload is a protocol error and the
 * connection is closed.
 */
#ifndef BERTH_EXEC_STREAM_H
#define BERTH_EXEC_STREAM_H

#include <stddef.h>
#include <stdint.h>

enum exec_frame_kind {
	EXEC_STDIN = 0,
	EXEC_STDOUT = 1,
	EXEC_STDERR = 2,
	EXEC_RESIZE = 3,
	EXEC_EXIT = 4,
	EXEC_ERROR = 5,
};

#define EXEC_FRAME_MAX 65536
#define EXEC_HEADER_LEN 5

/* Write the 5-byte header of a frame into hdr. */
void exec_frame_header(uint8_t hdr[EXEC_HEADER_LEN], enum exec_frame_kind kind, uint32_t len);

/* An incremental reader: feed it what arrives, take whole frames out. */
struct exec_reader {
	uint8_t hdr[EXEC_HEADER_LEN];
	size_t nhdr;
	uint8_t *payload; /* EXEC_FRAME_MAX bytes, owned */
	size_t want, have;
	int error; /* set once a protocol error was seen: nothing more is read */
};

void exec_reader_init(struct exec_reader *r);
void exec_reader_release(struct exec_reader *r);

struct exec_frame {
	enum exec_frame_kind kind;
	const uint8_t *data; /* valid until the next exec_reader_next */
	uint32_t len;
};

/* Consume bytes from buf (len) until one frame is whole: returns 1 with
 * *f filled, 0 when all of buf was consumed without completing a frame,
 * -1 on a protocol error (f unchanged). *used gets the bytes consumed;
 * call again with the rest of the buffer. */
int exec_reader_next(struct exec_reader *r, const uint8_t *buf, size_t len, size_t *used,
		     struct exec_frame *f);

/* Payload helpers for the fixed-size frames. */
void exec_put_u32(uint8_t out[4], uint32_t v);
uint32_t exec_get_u32(const uint8_t in[4]);

#endif
