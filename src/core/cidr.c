/* cidr.c - IPv4 prefixes (see cidr.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"

static uint32_t prefix_mask(int prefix)
{
	return prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
}

int ip4_parse(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*out = ntohl(a.s_addr);
	return 0;
}

int cidr_parse(const char *s, struct cidr *out, const char *what, struct berr *err)
{
	char addr[16];
	const char *slash = s ? strchr(s, '/') : NULL;
	if (!slash || (size_t)(slash - s) >= sizeof addr)
		return berr_set(err, 400,
				"bad %s '%s': expected an IPv4 prefix such as 10.244.0.0/16", what,
				s ? s : "");
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = 0;
	char *end;
	long len = strtol(slash + 1, &end, 10);
	uint32_t ip;
	if (ip4_parse(addr, &ip) < 0 || !slash[1] || *end || len < 0 || len > 32)
		return berr_set(err, 400,
				"bad %s '%s': expected an IPv4 prefix such as 10.244.0.0/16", what,
				s);
	if (ip & ~prefix_mask((int)len))
		return berr_set(err, 400, "bad %s '%s': host bits are set (the network is %s/%ld?)",
				what, s, ip4_format(ip & prefix_mask((int)len), (char[16]){0}),
				len);
	out->base = ip;
	out->prefix = (int)len;
	return 0;
}

const char *ip4_format(uint32_t ip, char *buf)
{
	snprintf(buf, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
	return buf;
}

const char *cidr_format(const struct cidr *c, char *buf)
{
	char ip[16];
	snprintf(buf, CIDR_TEXT_MAX, "%s/%d", ip4_format(c->base, ip), c->prefix);
	return buf;
}

uint32_t cidr_subnet_count(const struct cidr *range, int prefix)
{
	if (prefix < range->prefix || prefix > 32)
		return 0;
	int bits = prefix - range->prefix;
	return bits >= 32 ? 0xffffffffu : 1u << bits;
}

struct cidr cidr_subnet(const struct cidr *range, int prefix, uint32_t index)
{
	struct cidr c = {.prefix = prefix};
	c.base = range->base | (prefix >= 32 ? index : index << (32 - prefix));
	return c;
}

bool cidr_contains(const struct cidr *c, uint32_t ip)
{
	return (ip & prefix_mask(c->prefix)) == c->base;
}
