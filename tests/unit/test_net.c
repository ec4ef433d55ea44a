/* test_net.c - the cluster network's pieces that need no root: IPv4
 * prefixes (core/cidr.h) and the node's address book (agent/net/ipam.h). */
#include <stdlib.h>
#include <string.h>

#include "agent/net/ipam.h"
#include "core/cidr.h"
#include "unit.h"

TEST(cidr_parses_formats_and_refuses_bad_prefixes)
{
	struct cidr c;
	struct berr e = {0};
	char buf[CIDR_TEXT_MAX];
	CHECK(cidr_parse("10.244.0.0/16", &c, "x", &e) == 0);
	CHECK(c.base == 0x0af40000u && c.prefix == 16);
	CHECK_STR(cidr_format(&c, buf), "10.244.0.0/16");
	CHECK(cidr_subnet_count(&c, 24) == 256);
	struct cidr s = cidr_subnet(&c, 24, 7);
	CHECK_STR(cidr_format(&s, buf), "10.244.7.0/24");
	CHECK(cidr_contains(&c, s.base + 9));
	CHECK(!cidr_contains(&s, s.base + 256));
	const char *bad[] = {"",
			     "10.244.0.0",
			     "10.244.0.0/",
			     "10.244.0.0/33",
			     "10.244.0.0/-1",
			     "10.244.0.1/16",
			     "10.244.0/16",
			     "a.b.c.d/8",
			     "10.244.0.0/16x",
			     "10.244.0.0.0/16"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		e = (struct berr){0};
		CHECK(cidr_parse(bad[i], &c, "--cluster-cidr", &e) < 0);
		CHECK(e.code == 400 && strstr(e.msg, "--cluster-cidr") != NULL);
	}
	CHECK(cidr_parse(NULL, &c, "x", &e) < 0);
}

TEST(ipam_never_hands_out_an_address_in_use_and_keeps_it_across_restarts)
{
	char dir[] = "/tmp/berth-test-ipam.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	struct cidr sn;
	struct berr e = {0};
	CHECK(cidr_parse("10.244.3.0/29", &sn, "x", &e) == 0); /* .2 to .6 */
	struct ipam *p = ipam_new(dir, &sn);
	uint32_t ip[6] = {0};
	char id[16];
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof id, "t%d", i);
		CHECK(ipam_acquire(p, id, &ip[i], &e) == 0);
		CHECK(ip[i] >= sn.base + 2 && ip[i] <= sn.base + 6);
		for (int k = 0; k < i; k++)
			CHECK(ip[k] != ip[i]);
	}
	CHECK(ipam_acquire(p, "t5", &ip[5], &e) < 0 && e.code == 503);
	/* The same task asks again: the same address. */
	uint32_t again;
	CHECK(ipam_acquire(p, "t2", &again, &e) == 0 && again == ip[2]);
	ipam_free(p);
	/* A restarted agent finds them all. */
	p = ipam_new(dir, &sn);
	CHECK(ipam_lookup(p, "t3") == ip[3]);
	ipam_release(p, "t3");
	CHECK(ipam_lookup(p, "t3") == 0);
	e = (struct berr){0};
	CHECK(ipam_acquire(p, "t6", &again, &e) == 0 && again == ip[3]);
	ipam_free(p);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	free(cmd);
}

UNIT_MAIN(cidr_parses_formats_and_refuses_bad_prefixes,
	  ipam_never_hands_out_an_address_in_use_and_keeps_it_across_restarts)
