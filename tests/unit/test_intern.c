/* test_intern.c - core/intern.h: one shared copy per short string. */
#include <string.h>

#include "core/intern.h"
#include "unit.h"

TEST(equal_strings_share_one_copy)
{
	char a[] = "assigned to node sim-00042", b[] = "assigned to node sim-00042";
	const char *x = intern(a), *y = intern(b);
	CHECK(x && x == y && x != a && x != b);
	CHECK_STR(x, "assigned to node sim-00042");
	a[0] = 'X'; /* the shared copy is the interner's own */
	CHECK_STR(intern(b), "assigned to node sim-00042");
	const char *z = intern("assigned to node sim-00043");
	CHECK(z && z != x);
	CHECK(intern("") != NULL);
	CHECK(intern(NULL) == NULL);
}

TEST(long_strings_are_not_kept)
{
	char s[INTERN_LEN + 2];
	memset(s, 'a', sizeof s - 1);
	s[sizeof s - 1] = 0;
	CHECK(intern(s) == NULL);
	s[INTERN_LEN] = 0;
	CHECK(intern(s) != NULL);
}

UNIT_MAIN(equal_strings_share_one_copy, long_strings_are_not_kept)
