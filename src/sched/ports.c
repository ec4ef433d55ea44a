/* ports.c - host port pools: a two-level bitmap with a next-fit cursor.
 *
 * bits: one bit per port of [lo, hi], 1 = taken. full: one bit per word of
 * bits, 1 = that word has no free port. A take first looks in the cursor's
 * word, then walks the summary for the next word with a free port, so a
 * nearly full pool of 64k ports costs at most 16 summary words, never a
 * scan of every port.
 */
#include "sched/ports.h"

#include <stdlib.h>

#include "core/util.h"

struct port_pool {
	int lo;
	uint32_t size;	 /* hi - lo + 1 */
	uint32_t nwords; /* words of bits */
	uint32_t avail;
	uint32_t cursor; /* offset of the next port to try */
	uint64_t *bits;
	uint64_t *full;
};

/* Bits of a word that are real ports (the last word may be partial). */
static uint64_t word_mask(const struct port_pool *p, uint32_t w)
{
	uint32_t left = p->size - w * 64;
	return left >= 64 ? ~0ULL : (1ULL << left) - 1;
}

static void set_taken(struct port_pool *p, uint32_t off)
{
	uint32_t w = off / 64;
	p->bits[w] |= 1ULL << (off % 64);
	if (p->bits[w] == word_mask(p, w))
		p->full[w / 64] |= 1ULL << (w % 64);
	p->avail--;
}

struct port_pool *port_pool_new(int lo, int hi)
{
	if (lo < 1 || hi > 65535 || lo > hi)
		return NULL;
	struct port_pool *p = xcalloc(1, sizeof *p);
	p->lo = lo;
	p->size = (uint32_t)(hi - lo + 1);
	p->nwords = (p->size + 63) / 64;
	p->avail = p->size;
	p->bits = xcalloc(p->nwords, sizeof *p->bits);
	p->full = xcalloc((p->nwords + 63) / 64, sizeof *p->full);
	return p;
}

void port_pool_free(struct port_pool *p)
{
	if (!p)
		return;
	free(p->bits);
	free(p->full);
	free(p);
}

/* The first word at or after w (wrapping) that has a free port; the caller
 * guarantees there is one (avail > 0). */
static uint32_t next_open_word(const struct port_pool *p, uint32_t w)
{
	uint32_t nsum = (p->nwords + 63) / 64;
	/* n == nsum comes back to w's summary word for the words before w. */
	for (uint32_t n = 0; n <= nsum; n++) {
		uint32_t s = (w / 64 + n) % nsum;
		uint64_t open = ~p->full[s];
		if (n == 0)
			open &= ~0ULL << (w % 64);
		if (s == nsum - 1 && p->nwords % 64)
			open &= (1ULL << (p->nwords % 64)) - 1;
		if (open)
			return s * 64 + (uint32_t)__builtin_ctzll(open);
	}
	/* Unreachable with avail > 0: the last round (n == nsum) revisits w's
	 * summary word without the mask, covering the words before w. */
	return w;
}

int port_pool_take(struct port_pool *p)
{
	if (!p || !p->avail)
		return -1;
	uint32_t w = p->cursor / 64;
	/* Free ports at or after the cursor in its own word come first. */
	uint64_t open = ~p->bits[w] & word_mask(p, w) & (~0ULL << (p->cursor % 64));
	if (!open) {
		w = next_open_word(p, (w + 1) % p->nwords);
		open = ~p->bits[w] & word_mask(p, w);
	}
	uint32_t off = w * 64 + (uint32_t)__builtin_ctzll(open);
	set_taken(p, off);
	p->cursor = (off + 1) % p->size;
	return p->lo + (int)off;
}

bool port_pool_in_use(const struct port_pool *p, int port)
{
	if (!p || port < p->lo || (int64_t)port - p->lo >= (int64_t)p->size)
		return false;
	uint32_t off = (uint32_t)(port - p->lo);
	return p->bits[off / 64] >> (off % 64) & 1;
}

bool port_pool_reserve(struct port_pool *p, int port)
{
	if (!p || port < p->lo || (int64_t)port - p->lo >= (int64_t)p->size)
		return false;
	if (port_pool_in_use(p, port))
		return false;
	set_taken(p, (uint32_t)(port - p->lo));
	return true;
}

void port_pool_release(struct port_pool *p, int port)
{
	if (!port_pool_in_use(p, port))
		return;
	uint32_t off = (uint32_t)(port - p->lo), w = off / 64;
	p->bits[w] &= ~(1ULL << (off % 64));
	p->full[w / 64] &= ~(1ULL << (w % 64));
	p->avail++;
}

uint32_t port_pool_available(const struct port_pool *p)
{
	return p ? p->avail : 0;
}
