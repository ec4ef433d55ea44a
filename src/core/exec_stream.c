/* exec_stream.c - the frames of `berth task exec` (exec_stream.h). */
#include "core/exec_stream.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void exec_put_u32(uint8_t out[4], uint32_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

uint32_t exec_get_u32(const uint8_t in[4])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

void exec_frame_header(uint8_t hdr[EXEC_HEADER_LEN], enum exec_frame_kind kind, uint32_t len)
{
	hdr[0] = (uint8_t)kind;
	exec_put_u32(hdr + 1, len);
}

void exec_reader_init(struct exec_reader *r)
{
	memset(r, 0, sizeof *r);
	r->payload = xmalloc(EXEC_FRAME_MAX);
}

void exec_reader_release(struct exec_reader *r)
{
	free(r->payload);
	r->payload = NULL;
}

static int header_ok(const uint8_t *h, uint32_t len)
{
	if (h[0] > EXEC_ERROR || len > EXEC_FRAME_MAX)
		return 0;
	if ((h[0] == EXEC_RESIZE || h[0] == EXEC_EXIT) && len != 4)
		return 0;
	return 1;
}

int exec_reader_next(struct exec_reader *r, const uint8_t *buf, size_t len, size_t *used,
		     struct exec_frame *f)
{
	size_t i = 0;
	*used = 0;
	if (r->error)
		return -1;
	while (r->nhdr < EXEC_HEADER_LEN) {
		if (i == len) {
			*used = i;
			return 0;
		}
		r->hdr[r->nhdr++] = buf[i++];
		if (r->nhdr == EXEC_HEADER_LEN) {
			r->want = exec_get_u32(r->hdr + 1);
			r->have = 0;
			if (!header_ok(r->hdr, (uint32_t)r->want)) {
				r->error = 1;
				*used = i;
				return -1;
			}
		}
	}
	size_t n = r->want - r->have;
	if (n > len - i)
		n = len - i;
	memcpy(r->payload + r->have, buf + i, n);
	r->have += n;
	i += n;
	*used = i;
	if (r->have < r->want)
		return 0;
	f->kind = (enum exec_frame_kind)r->hdr[0];
	f->data = r->payload;
	f->len = (uint32_t)r->want;
	r->nhdr = 0;
	return 1;
}
