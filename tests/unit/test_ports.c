/* test_ports.c - host port pools. */
#include "unit.h"

#include "core/util.h"
#include "sched/ports.h"

TEST(ports_take_all_in_order)
{
	struct port_pool *p = port_pool_new(100, 109);
	CHECK(p != NULL);
	CHECK(port_pool_available(p) == 10);
	for (int k = 0; k < 10; k++)
		CHECK(port_pool_take(p) == 100 + k);
	CHECK(port_pool_available(p) == 0);
	CHECK(port_pool_take(p) == -1);
	CHECK(port_pool_take(p) == -1);
	for (int k = 100; k <= 109; k++)
		CHECK(port_pool_in_use(p, k));
	port_pool_free(p);
}

TEST(ports_release_is_not_reused_at_once)
{
	struct port_pool *p = port_pool_new(100, 109);
	CHECK(port_pool_take(p) == 100);
	CHECK(port_pool_take(p) == 101);
	CHECK(port_pool_take(p) == 102);
	port_pool_release(p, 101);
	CHECK(!port_pool_in_use(p, 101));
	CHECK(port_pool_available(p) == 8);
	/* next-fit: the cursor moves on, 101 comes back only after a wrap */
	for (int k = 103; k <= 109; k++)
		CHECK(port_pool_take(p) == k);
	CHECK(port_pool_take(p) == 101);
	CHECK(port_pool_take(p) == -1);
	port_pool_free(p);
}

TEST(ports_exhaustion_then_release_retake)
{
	struct port_pool *p = port_pool_new(20000, 20199);
	for (int k = 0; k < 200; k++)
		CHECK(port_pool_take(p) >= 20000);
	CHECK(port_pool_take(p) == -1);
	port_pool_release(p, 20150);
	CHECK(port_pool_available(p) == 1);
	CHECK(port_pool_take(p) == 20150);
	CHECK(port_pool_take(p) == -1);
	port_pool_release(p, 20003);
	CHECK(port_pool_take(p) == 20003);
	port_pool_free(p);
}

TEST(ports_reserve_conflicts)
{
	struct port_pool *p = port_pool_new(100, 104);
	CHECK(port_pool_reserve(p, 101));
	CHECK(!port_pool_reserve(p, 101));
	CHECK(port_pool_available(p) == 4);
	CHECK(port_pool_take(p) == 100);
	CHECK(port_pool_take(p) == 102); /* 101 is skipped */
	CHECK(!port_pool_reserve(p, 102));
	CHECK(port_pool_reserve(p, 104));
	CHECK(port_pool_take(p) == 103);
	CHECK(port_pool_take(p) == -1);
	port_pool_release(p, 101);
	CHECK(port_pool_reserve(p, 101));
	port_pool_free(p);
}

TEST(ports_range_bounds)
{
	CHECK(port_pool_new(0, 10) == NULL);
	CHECK(port_pool_new(10, 5) == NULL);
	CHECK(port_pool_new(1, 65536) == NULL);
	CHECK(port_pool_new(-5, 10) == NULL);
	struct port_pool *p = port_pool_new(1, 65535);
	CHECK(p && port_pool_available(p) == 65535);
	CHECK(port_pool_reserve(p, 65535));
	CHECK(port_pool_reserve(p, 1));
	CHECK(!port_pool_reserve(p, 0));
	CHECK(!port_pool_reserve(p, 65536));
	port_pool_free(p);

	p = port_pool_new(100, 109);
	CHECK(!port_pool_reserve(p, 99));
	CHECK(!port_pool_reserve(p, 110));
	CHECK(!port_pool_in_use(p, 99));
	port_pool_release(p, 99);  /* no-op */
	port_pool_release(p, 110); /* no-op */
	port_pool_release(p, 105); /* free already: no-op */
	CHECK(port_pool_available(p) == 10);
	port_pool_free(p);
	port_pool_free(NULL);
}

TEST(ports_single_port_pool)
{
	struct port_pool *p = port_pool_new(8080, 8080);
	CHECK(port_pool_take(p) == 8080);
	CHECK(port_pool_take(p) == -1);
	port_pool_release(p, 8080);
	CHECK(port_pool_take(p) == 8080);
	port_pool_free(p);
}

/* A full pool of 65,535 ports (1,024 words, 16 summary words) with one
 * hole: the hole is found wherever it is. */
TEST(ports_nearly_full_finds_the_hole)
{
	struct port_pool *p = port_pool_new(1, 65535);
	for (int k = 0; k < 65535; k++)
		CHECK(port_pool_take(p) == k + 1);
	int holes[] = {1, 64, 65, 4097, 30000, 65535, 12345};
	for (size_t k = 0; k < ARRAY_SIZE(holes); k++) {
		port_pool_release(p, holes[k]);
		CHECK(port_pool_available(p) == 1);
		CHECK(port_pool_take(p) == holes[k]);
		CHECK(port_pool_take(p) == -1);
	}
	port_pool_free(p);
}

/* Random takes, reserves and releases against a plain array. */
TEST(ports_random_against_reference)
{
	enum { LO = 30000, N = 1000 };
	static bool used[N];
	struct port_pool *p = port_pool_new(LO, LO + N - 1);
	unsigned seed = 12345;
	uint32_t inuse = 0;
	for (int step = 0; step < 200000; step++) {
		seed = seed * 1103515245 + 12345;
		int op = (seed >> 16) % 3, port = LO + (int)((seed >> 4) % N);
		if (op == 0) {
			int got = port_pool_take(p);
			if (inuse == N) {
				CHECK(got == -1);
			} else {
				CHECK(got >= LO && got < LO + N && !used[got - LO]);
				if (got >= LO && got < LO + N)
					used[got - LO] = true;
				inuse++;
			}
		} else if (op == 1) {
			bool ok = port_pool_reserve(p, port);
			CHECK(ok == !used[port - LO]);
			if (ok)
				used[port - LO] = true, inuse++;
		} else {
			port_pool_release(p, port);
			if (used[port - LO])
				used[port - LO] = false, inuse--;
		}
		CHECK(port_pool_available(p) == N - inuse);
		if (unit_failures)
			break;
	}
	port_pool_free(p);
}

UNIT_MAIN(ports_take_all_in_order, ports_release_is_not_reused_at_once,
	  ports_exhaustion_then_release_retake, ports_reserve_conflicts, ports_range_bounds,
	  ports_single_port_pool, ports_nearly_full_finds_the_hole, ports_random_against_reference)
