/* dns_msg.h - the DNS wire format (RFC 1035), as far as the agent's name
 * server needs it: read a query, write an answer. Pure: no I/O, no
 * allocation, no clock; every input is untrusted (any task can send one).
 *
 * Reading: dns_query_parse() takes one message and fills a struct
 * dns_query with its header and single question (name decoded; each
 * compression pointer must point backward, at most DNS_MAX_POINTERS of
 * them, so no loop can form), and the EDNS UDP size when an OPT record
 * is present.
 *
 * Writing: a struct dns_writer over a caller's buffer of `cap` bytes (the
 * UDP limit, or 65535 for TCP):
 *   dns_reply_begin(&w, buf, cap, &q, rcode);   header + the question
 *   dns_reply_a(&w, DNS_ANSWER, name, ttl, addr);
 *   dns_reply_srv(&w, DNS_ANSWER, name, ttl, prio, weight, port, target);
 *   len = dns_reply_finish(&w);
 * Names are compressed against every name already written. A record of
 * the answer section that does not fit sets TC (the client retries over
 * TCP); one of the additional section that does not fit is left out.
 */
#ifndef BERTH_DNS_MSG_H
#define BERTH_DNS_MSG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_SIZE 12
#define DNS_NAME_MAX 255 /* presentation form without the final dot */
#define DNS_MAX_POINTERS 16
#define DNS_UDP_MIN 512
#define DNS_UDP_MAX 1232 /* what we answer at most over UDP (EDNS) */

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_SRV = 33,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_ANY = 255,
};

enum dns_rcode {
	DNS_NOERROR = 0,
	DNS_FORMERR = 1,
	DNS_SERVFAIL = 2,
	DNS_NXDOMAIN = 3,
	DNS_NOTIMP = 4,
	DNS_REFUSED = 5,
};

enum dns_section { DNS_ANSWER = 0, DNS_AUTHORITY = 1, DNS_ADDITIONAL = 2 };

struct dns_query {
	uint16_t id;
	uint16_t flags;		     /* as received */
	int opcode;		     /* (flags >> 11) & 15 */
	bool rd;		     /* recursion desired */
	char name[DNS_NAME_MAX + 1]; /* lowercase, no final dot; "" = the root */
	char echo[DNS_NAME_MAX + 1]; /* the name as the client wrote it (0x20 case) */
	uint16_t qtype, qclass;
	bool edns;	   /* an OPT record came with it */
	uint16_t udp_size; /* what the client accepts over UDP */
};

/* What dns_query_parse found. */
enum dns_parse_result {
	DNS_PARSE_OK = 0,
	DNS_PARSE_DROP = -1,	/* too short for a header, or a response: no answer */
	DNS_PARSE_FORMERR = -2, /* a header but a bad question: answer FORMERR */
	DNS_PARSE_NOTIMP = -3,	/* not a standard query: answer NOTIMP */
};

/* Parse one message of len bytes. On FORMERR and NOTIMP, q->id and
 * q->flags are set (enough for dns_reply_begin with no question). */
enum dns_parse_result dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q);

#define DNS_COMPRESS_MAX 64

struct dns_writer {
	uint8_t *buf;
	size_t cap, len;
	uint16_t count[3]; /* answer, authority, additional */
	bool truncated;
	bool full; /* a record did not fit */
	/* Names already written, for compression: each suffix's offset. */
	uint16_t offs[DNS_COMPRESS_MAX];
	size_t noffs;
};

/* Start an answer to q with rcode: the header (QR, AA, RD copied, RA) and
 * q's question (none when q->name is NULL-like: has_question false). cap
 * at least DNS_HEADER_SIZE + DNS_NAME_MAX + 6. */
void dns_reply_begin(struct dns_writer *w, uint8_t *buf, size_t cap, const struct dns_query *q,
		     int rcode, bool has_question);
/* Add records; 0, or -1 when it did not fit (see the top). */
int dns_reply_a(struct dns_writer *w, enum dns_section s, const char *name, uint32_t ttl,
		struct in_addr addr);
int dns_reply_srv(struct dns_writer *w, enum dns_section s, const char *name, uint32_t ttl,
		  uint16_t priority, uint16_t weight, uint16_t port, const char *target);
/* An OPT record (EDNS) telling our UDP size; additional section. */
int dns_reply_opt(struct dns_writer *w, uint16_t udp_size);
/* Write the counts and the TC bit; the message's length. */
size_t dns_reply_finish(struct dns_writer *w);

/* Encode a name ("a.b.c", no final dot) uncompressed into out (at most
 * DNS_NAME_MAX + 2 bytes); its length, or -1 when it is not a valid name
 * (an empty label, a label over 63 bytes, over 255 bytes in all). */
int dns_name_encode(const char *name, uint8_t *out, size_t cap);

#endif
