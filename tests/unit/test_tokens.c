/* test_tokens.c - server/tokens: the budget of store look-ups for token ids
 * the table does not know (HA: tokens another server wrote after this one
 * loaded), and a revoked id never coming back from the store. */
#include <stdlib.h>
#include <string.h>

#include "server/tokens.h"
#include "unit.h"

static void fake_id(char id[TOKEN_ID_LEN + 1], int i)
{
	snprintf(id, TOKEN_ID_LEN + 1, "%016x", (unsigned)i);
}

TEST(lookups_of_unknown_ids_are_budgeted)
{
	struct token_table *tt = token_table_new();
	char id[TOKEN_ID_LEN + 1];
	int64_t t = 1000000;
	int allowed = 0;
	/* A flood of made-up ids at one instant: the burst, then nothing. */
	for (int i = 0; i < 200; i++) {
		fake_id(id, i);
		allowed += token_table_may_fetch(tt, id, t);
	}
	CHECK(allowed == TOKEN_FETCH_BURST);
	/* The budget refills at TOKEN_FETCH_PER_S: one second, that many. */
	allowed = 0;
	for (int i = 200; i < 400; i++) {
		fake_id(id, i);
		allowed += token_table_may_fetch(tt, id, t + 1000);
	}
	CHECK(allowed == TOKEN_FETCH_PER_S);
	/* A clock going back gives nothing extra. */
	fake_id(id, 999);
	CHECK(!token_table_may_fetch(tt, id, t));
	/* After a long quiet time: the burst again, not more. */
	allowed = 0;
	for (int i = 400; i < 600; i++) {
		fake_id(id, i);
		allowed += token_table_may_fetch(tt, id, t + 3600 * 1000);
	}
	CHECK(allowed == TOKEN_FETCH_BURST);
	token_table_free(tt);
}

TEST(known_and_revoked_ids_are_not_looked_up_and_revoked_ones_stay_out)
{
	struct token_table *tt = token_table_new();
	struct token_rec rec;
	char *text = token_make(TOKEN_ADMIN, NULL, 0, NULL, &rec);
	char why[128];
	struct token_rec got;
	/* Unknown: refused, and worth a look-up; learned: accepted. */
	CHECK(token_table_check(tt, text, 100, &got, why, sizeof why) < 0);
	CHECK_CONTAINS(why, "unknown or revoked token");
	CHECK(token_table_may_fetch(tt, rec.id, 1));
	CHECK(token_table_adopt(tt, &rec));
	CHECK(token_table_has_id(tt, rec.id));
	CHECK(token_table_check(tt, text, 100, &got, why, sizeof why) == 0);
	CHECK(!token_table_may_fetch(tt, rec.id, 1)); /* known: no look-up */
	/* Revoked: a store read racing the delete's commit cannot bring it back. */
	CHECK(token_table_delete(tt, rec.id));
	CHECK(!token_table_may_fetch(tt, rec.id, 100000));
	CHECK(!token_table_adopt(tt, &rec));
	CHECK(token_table_check(tt, text, 100, &got, why, sizeof why) < 0);
	/* Not even after the replica starts over (a follower's reset). */
	token_table_clear(tt);
	CHECK(!token_table_adopt(tt, &rec));
	CHECK(!token_table_has_id(tt, rec.id));
	free(text);
	CHECK(token_id_ok("0123456789abcdef"));
	CHECK(!token_id_ok("0123456789abcdeF"));
	CHECK(!token_id_ok("../../../../abcd"));
	CHECK(!token_id_ok("0123456789abcde"));
	token_table_free(tt);
}

UNIT_MAIN(lookups_of_unknown_ids_are_budgeted,
	  known_and_revoked_ids_are_not_looked_up_and_revoked_ones_stay_out)
