/* cidr.h - IPv4 prefixes ("10.244.0.0/16") as the cluster network uses them:
 * the cluster range, each node's /24 in it, and the addresses of a subnet.
 * Addresses are host byte order throughout; cidr_format writes them. */
#ifndef BERTH_CIDR_H
#define BERTH_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct cidr {
	uint32_t base; /* the network address (host bits zero) */
	int prefix;    /* 0..32 */
};

/* Longest text cidr_format writes, with its NUL. */
#define CIDR_TEXT_MAX 19

/* Parse "A.B.C.D/N". Host bits set, a bad address or a bad length fill err
 * (400) and return -1; `what` names the value in the message. */
int cidr_parse(const char *s, struct cidr *out, const char *what, struct berr *err);

/* "A.B.C.D/N" into buf (CIDR_TEXT_MAX). */
const char *cidr_format(const struct cidr *c, char *buf);
/* "A.B.C.D" into buf (16 bytes). */
const char *ip4_format(uint32_t ip, char *buf);
/* Parse a dotted quad: 0, or -1 when it is not one. */
int ip4_parse(const char *s, uint32_t *out);

/* How many subnets of length `prefix` the range holds (0 when the prefix
 * is shorter than the range's). */
uint32_t cidr_subnet_count(const struct cidr *range, int prefix);
/* The index-th subnet of length `prefix` in the range. */
struct cidr cidr_subnet(const struct cidr *range, int prefix, uint32_t index);
/* The ip lies in c. */
bool cidr_contains(const struct cidr *c, uint32_t ip);

#endif
