/* dns_msg.c - DNS messages in and out (dns_msg.h).
 *
 * Header (RFC 1035 4.1.1), 12 bytes, big-endian:
 *
 *   id | QR opcode(4) AA TC RD RA Z(3) rcode(4) | qd | an | ns | ar
 *
 * A name is labels (length byte, 1..63 bytes) ending with a 0 byte, or
 * with a pointer (two bytes, 0b11 then a 14-bit offset) to labels written
 * earlier. Queries are read with every pointer required to point before
 * the label that holds it, so no loop can form; the count is capped too.
 */
#include "agent/dns_msg.h"

#include <string.h>

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Decode the name at *pos into out (presentation form, no final dot);
 * *pos moves past it. false when it is malformed. Labels may hold only
 * printable bytes other than '.' (a dot inside a label would let a query
 * pass for another name). */
static bool name_decode(const uint8_t *msg, size_t len, size_t *pos, char *out, char *echo)
{
	size_t p = *pos, olen = 0, wire = 1, end = 0;
	int jumps = 0;
	for (;;) {
		if (p >= len)
			return false;
		uint8_t l = msg[p];
		if ((l & 0xC0) == 0xC0) {
			if (p + 1 >= len || ++jumps > DNS_MAX_POINTERS)
				return false;
			size_t to = (size_t)(l & 0x3F) << 8 | msg[p + 1];
			if (to >= p)
				return false; /* only backward: no loops */
			if (!end)
				end = p + 2;
			p = to;
			continue;
		}
		if (l & 0xC0)
			return false; /* 0x40, 0x80: extended label types */
		if (l == 0) {
			p++;
			break;
		}
		if (p + 1 + l > len || (wire += 1 + (size_t)l) > DNS_NAME_MAX)
			return false;
		if (olen) {
			out[olen] = echo[olen] = '.';
			olen++;
		}
		for (size_t i = 0; i < l; i++) {
			char c = (char)msg[p + 1 + i];
			if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f || c == '.')
				return false;
			echo[olen] = c;
			out[olen++] = lower(c);
		}
		p += 1 + (size_t)l;
	}
	out[olen] = echo[olen] = 0;
	*pos = end ? end : p;
	return true;
}

enum dns_parse_result dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q)
{
	memset(q, 0, sizeof *q);
	if (!msg || len < DNS_HEADER_SIZE)
		return DNS_PARSE_DROP;
	q->id = get16(msg);
	q->flags = get16(msg + 2);
	if (q->flags & 0x8000)
		return DNS_PARSE_DROP; /* a response: never answer one */
	q->opcode = (q->flags >> 11) & 15;
	q->rd = (q->flags & 0x0100) != 0;
	q->udp_size = DNS_UDP_MIN;
	if (q->opcode != 0)
		return DNS_PARSE_NOTIMP;
	uint16_t qd = get16(msg + 4), an = get16(msg + 6), ns = get16(msg + 8),
		 ar = get16(msg + 10);
	if (qd != 1)
		return DNS_PARSE_FORMERR;
	size_t pos = DNS_HEADER_SIZE;
	if (!name_decode(msg, len, &pos, q->name, q->echo) || pos + 4 > len)
		return DNS_PARSE_FORMERR;
	q->qtype = get16(msg + pos);
	q->qclass = get16(msg + pos + 2);
	pos += 4;
	/* EDNS: an OPT record first in the additional section of a plain
	 * query. Anything else there is ignored, not refused. */
	if (ar && !an && !ns && pos + 11 <= len && msg[pos] == 0 &&
	    get16(msg + pos + 1) == DNS_TYPE_OPT) {
		uint16_t size = get16(msg + pos + 3);
		q->edns = true;
		q->udp_size = size < DNS_UDP_MIN   ? DNS_UDP_MIN
			      : size > DNS_UDP_MAX ? DNS_UDP_MAX
						   : size;
	}
	return DNS_PARSE_OK;
}

int dns_name_encode(const char *name, uint8_t *out, size_t cap)
{
	size_t o = 0;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > 63 || o + 1 + l + 1 > cap || o + 1 + l + 1 > DNS_NAME_MAX + 1)
			return -1;
		out[o++] = (uint8_t)l;
		memcpy(out + o, p, l);
		o += l;
		p += l;
		if (*p == '.' && !*++p)
			return -1; /* "a." : a trailing empty label */
	}
	if (o + 1 > cap)
		return -1;
	out[o++] = 0;
	return (int)o;
}

/* The written name at off (labels, maybe pointers) equals `s`, compared
 * without case. */
static bool name_at_equals(const struct dns_writer *w, size_t off, const char *s)
{
	int jumps = 0;
	for (;;) {
		if (off >= w->len)
			return false;
		uint8_t l = w->buf[off];
		if ((l & 0xC0) == 0xC0) {
			if (off + 1 >= w->len || ++jumps > DNS_MAX_POINTERS)
				return false;
			off = (size_t)(l & 0x3F) << 8 | w->buf[off + 1];
			continue;
		}
		if (l == 0)
			return *s == 0;
		if (off + 1 + l > w->len)
			return false;
		for (size_t i = 0; i < l; i++)
			if (lower((char)w->buf[off + 1 + i]) != lower(s[i]))
				return false;
		s += l;
		if (*s == '.')
			s++;
		else if (*s)
			return false;
		off += 1 + l;
	}
}

/* Write name, compressed against the names written before (unless
 * !compress); its labels may be pointed at by later names either way. */
static bool put_name(struct dns_writer *w, const char *name, bool compress)
{
	uint8_t tmp[DNS_NAME_MAX + 2];
	if (dns_name_encode(name, tmp, sizeof tmp) < 0)
		return false;
	const char *s = name;
	size_t t = 0;
	while (*s) {
		for (size_t i = 0; compress && i < w->noffs; i++)
			if (name_at_equals(w, w->offs[i], s)) {
				if (w->len + 2 > w->cap)
					return false;
				put16(w->buf + w->len, (uint16_t)(0xC000 | w->offs[i]));
				w->len += 2;
				return true;
			}
		uint8_t l = tmp[t];
		if (w->len + 1 + l > w->cap)
			return false;
		if (w->noffs < DNS_COMPRESS_MAX && w->len < 0x3FFF)
			w->offs[w->noffs++] = (uint16_t)w->len;
		memcpy(w->buf + w->len, tmp + t, 1 + (size_t)l);
		w->len += 1 + (size_t)l;
		t += 1 + (size_t)l;
		s += l;
		if (*s == '.')
			s++;
	}
	if (w->len + 1 > w->cap)
		return false;
	w->buf[w->len++] = 0;
	return true;
}

void dns_reply_begin(struct dns_writer *w, uint8_t *buf, size_t cap, const struct dns_query *q,
		     int rcode, bool has_question)
{
	memset(w, 0, sizeof *w);
	w->buf = buf;
	w->cap = cap;
	memset(buf, 0, DNS_HEADER_SIZE);
	put16(buf, q->id);
	/* QR, AA, RD as asked, RA (we forward), the rcode. */
	uint16_t flags = 0x8000 | 0x0400 | (q->flags & 0x0100) | 0x0080 | (uint16_t)(rcode & 15);
	put16(buf + 2, flags);
	w->len = DNS_HEADER_SIZE;
	if (!has_question)
		return;
	size_t mark = w->len;
	if (!put_name(w, q->echo, true) || w->len + 4 > w->cap) {
		w->len = mark; /* cannot happen with cap as documented */
		w->noffs = 0;
		return;
	}
	put16(buf + w->len, q->qtype);
	put16(buf + w->len + 2, q->qclass);
	w->len += 4;
	put16(buf + 4, 1);
}

/* Begin a record: name, type, class IN, ttl; the rdata follows. */
static bool rr_begin(struct dns_writer *w, const char *name, uint16_t type, uint16_t klass,
		     uint32_t ttl)
{
	if (!put_name(w, name, true) || w->len + 10 > w->cap)
		return false;
	uint8_t *p = w->buf + w->len;
	put16(p, type);
	put16(p + 2, klass);
	put16(p + 4, (uint16_t)(ttl >> 16));
	put16(p + 6, (uint16_t)ttl);
	w->len += 10; /* rdlength written by rr_end */
	return true;
}

static void rr_end(struct dns_writer *w, size_t rdata_at)
{
	put16(w->buf + rdata_at - 2, (uint16_t)(w->len - rdata_at));
}

/* The record did not fit: take it back, and say so. */
static int rr_undo(struct dns_writer *w, enum dns_section s, size_t len, size_t noffs)
{
	w->len = len;
	w->noffs = noffs;
	w->full = true;
	if (s == DNS_ANSWER)
		w->truncated = true;
	return -1;
}

int dns_reply_a(struct dns_writer *w, enum dns_section s, const char *name, uint32_t ttl,
		struct in_addr addr)
{
	size_t len = w->len, noffs = w->noffs;
	if (w->truncated || !rr_begin(w, name, DNS_TYPE_A, 1, ttl) || w->len + 4 > w->cap)
		return rr_undo(w, s, len, noffs);
	size_t at = w->len;
	memcpy(w->buf + w->len, &addr.s_addr, 4);
	w->len += 4;
	rr_end(w, at);
	w->count[s]++;
	return 0;
}

int dns_reply_srv(struct dns_writer *w, enum dns_section s, const char *name, uint32_t ttl,
		  uint16_t priority, uint16_t weight, uint16_t port, const char *target)
{
	size_t len = w->len, noffs = w->noffs;
	if (w->truncated || !rr_begin(w, name, DNS_TYPE_SRV, 1, ttl) || w->len + 6 > w->cap)
		return rr_undo(w, s, len, noffs);
	size_t at = w->len;
	put16(w->buf + w->len, priority);
	put16(w->buf + w->len + 2, weight);
	put16(w->buf + w->len + 4, port);
	w->len += 6;
	/* RFC 2782: the target is not compressed. */
	if (!put_name(w, target, false))
		return rr_undo(w, s, len, noffs);
	rr_end(w, at);
	w->count[s]++;
	return 0;
}

int dns_reply_opt(struct dns_writer *w, uint16_t udp_size)
{
	if (w->len + 11 > w->cap)
		return -1;
	uint8_t *p = w->buf + w->len;
	p[0] = 0; /* the root */
	put16(p + 1, DNS_TYPE_OPT);
	put16(p + 3, udp_size);
	memset(p + 5, 0, 6); /* extended rcode, version, flags; no options */
	w->len += 11;
	w->count[DNS_ADDITIONAL]++;
	return 0;
}

size_t dns_reply_finish(struct dns_writer *w)
{
	put16(w->buf + 6, w->count[DNS_ANSWER]);
	put16(w->buf + 8, w->count[DNS_AUTHORITY]);
	put16(w->buf + 10, w->count[DNS_ADDITIONAL]);
	if (w->truncated)
		w->buf[2] |= 0x02;
	return w->len;
}
