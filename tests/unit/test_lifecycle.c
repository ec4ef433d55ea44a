/* test_lifecycle.c - the task state machine against an expected table
 * written here independently of lifecycle.c, from Aurora's documented
 * transitions (docs/architecture.md, lifecycle.h):
 *
 *   INIT        -> PENDING, THROTTLED
 *   PENDING     -> ASSIGNED, KILLING, KILLED
 *   THROTTLED   -> PENDING, KILLING, KILLED
 *   ASSIGNED    -> STARTING, RUNNING, + on-agent
 *   STARTING    -> RUNNING, + on-agent
 *   RUNNING     -> on-agent = FINISHED, FAILED, KILLING, KILLED, LOST,
 *                             PREEMPTING, RESTARTING, DRAINING, PARTITIONED
 *   KILLING, PREEMPTING, RESTARTING, DRAINING -> FINISHED, FAILED, KILLED, LOST
 *   PARTITIONED -> ASSIGNED, STARTING, RUNNING, KILLING,
 *                  FINISHED, FAILED, KILLED, LOST
 *   FINISHED, FAILED, KILLED, LOST -> nothing (terminal)
 *
 * Every one of the 225 (from, to) pairs is checked, one test per source state
 * so that a failure names the row. */
#include "core/lifecycle.h"

#include "unit.h"

#define N TASK_STATE_COUNT

/* clang-format off */
/* expected[from][to]; columns in enum order:
 *                       IN PE TH AS ST RU FI FA KG KD LO PR RE DR PA */
static const unsigned char expected[N][N] = {
	[TASK_INIT]        = {0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	[TASK_PENDING]     = {0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0},
	[TASK_THROTTLED]   = {0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0},
	[TASK_ASSIGNED]    = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
	[TASK_STARTING]    = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
	[TASK_RUNNING]     = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1},
	[TASK_FINISHED]    = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	[TASK_FAILED]      = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	[TASK_KILLING]     = {0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0},
	[TASK_KILLED]      = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	[TASK_LOST]        = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	[TASK_PREEMPTING]  = {0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0},
	[TASK_RESTARTING]  = {0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0},
	[TASK_DRAINING]    = {0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0},
	[TASK_PARTITIONED] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
};
/* clang-format on */

/* The names, spelled out here rather than taken from lifecycle.c. */
static const char *const names[N] = {
    "INIT",    "PENDING",    "THROTTLED",  "ASSIGNED", "STARTING",
    "RUNNING", "FINISHED",   "FAILED",	   "KILLING",  "KILLED",
    "LOST",    "PREEMPTING", "RESTARTING", "DRAINING", "PARTITIONED",
};

static int is_terminal(int s)
{
	return s == TASK_FINISHED || s == TASK_FAILED || s == TASK_KILLED || s == TASK_LOST;
}

/* Check one row: every destination, allowed or not, with a message naming
 * the pair. */
static void check_row(enum task_state from)
{
	for (int to = 0; to < N; to++) {
		bool got = task_transition_allowed(from, (enum task_state)to);
		if (got != (bool)expected[from][to]) {
			fprintf(stderr, "    %s -> %s: expected %s, lifecycle.c says %s\n",
				names[from], names[to], expected[from][to] ? "allowed" : "refused",
				got ? "allowed" : "refused");
			unit_failures++;
		}
	}
}

/* clang-format off */
TEST(from_init) { check_row(TASK_INIT); }
TEST(from_pending) { check_row(TASK_PENDING); }
TEST(from_throttled) { check_row(TASK_THROTTLED); }
TEST(from_assigned) { check_row(TASK_ASSIGNED); }
TEST(from_starting) { check_row(TASK_STARTING); }
TEST(from_running) { check_row(TASK_RUNNING); }
TEST(from_finished) { check_row(TASK_FINISHED); }
TEST(from_failed) { check_row(TASK_FAILED); }
TEST(from_killing) { check_row(TASK_KILLING); }
TEST(from_killed) { check_row(TASK_KILLED); }
TEST(from_lost) { check_row(TASK_LOST); }
TEST(from_preempting) { check_row(TASK_PREEMPTING); }
TEST(from_restarting) { check_row(TASK_RESTARTING); }
TEST(from_draining) { check_row(TASK_DRAINING); }
TEST(from_partitioned) { check_row(TASK_PARTITIONED); }
/* clang-format on */

/* The expected table itself: consistent with the rules stated in the brief,
 * so that a typo in the matrix above cannot hide a bug. */
TEST(expected_table_is_consistent)
{
	int allowed = 0;
	for (int from = 0; from < N; from++) {
		CHECK(!expected[from][from]);	   /* no self transitions */
		CHECK(!expected[from][TASK_INIT]); /* nothing goes back to INIT */
		int out = 0;
		for (int to = 0; to < N; to++)
			out += expected[from][to];
		allowed += out;
		/* Terminal states go nowhere; all others go somewhere. */
		CHECK(is_terminal(from) ? out == 0 : out > 0);
	}
	/* 2 + 3 + 3 + 11 + 10 + 9 + 4*4 + 8 */
	CHECK(allowed == 62);
}

TEST(refused_transitions_are_counted)
{
	uint64_t before = task_transition_refused_count();
	int forbidden = 0;
	for (int from = 0; from < N; from++) {
		for (int to = 0; to < N; to++) {
			uint64_t c0 = task_transition_refused_count();
			bool ok = task_transition_check((enum task_state)from, (enum task_state)to);
			uint64_t c1 = task_transition_refused_count();
			CHECK(ok == (bool)expected[from][to]);
			/* A refusal adds exactly one; an allowed move adds none. */
			CHECK(c1 - c0 == (ok ? 0u : 1u));
			forbidden += !expected[from][to];
		}
	}
	CHECK(forbidden == N * N - 62);
	CHECK(task_transition_refused_count() - before == (uint64_t)forbidden);
	/* task_transition_allowed only looks; it never counts. */
	uint64_t c = task_transition_refused_count();
	CHECK(!task_transition_allowed(TASK_FINISHED, TASK_RUNNING));
	CHECK(task_transition_refused_count() == c);
}

TEST(out_of_range_states_are_refused)
{
	enum task_state bad = (enum task_state)TASK_STATE_COUNT;
	enum task_state worse = (enum task_state)99;
	uint64_t c = task_transition_refused_count();
	CHECK(!task_transition_allowed(bad, TASK_PENDING));
	CHECK(!task_transition_allowed(TASK_INIT, bad));
	CHECK(!task_transition_allowed(worse, worse));
	CHECK(!task_transition_check(TASK_RUNNING, bad));
	CHECK(task_transition_refused_count() == c + 1);
	CHECK_STR(task_state_name(bad), "UNKNOWN");
	CHECK_STR(task_state_name(worse), "UNKNOWN");
}

TEST(names_print_and_parse_round_trip)
{
	for (int s = 0; s < N; s++) {
		CHECK_STR(task_state_name((enum task_state)s), names[s]);
		CHECK(task_state_parse(names[s]) == s);
		CHECK(task_state_parse(task_state_name((enum task_state)s)) == s);
	}
}

TEST(unknown_names_parse_to_minus_one)
{
	const char *bad[] = {"",	 "BOGUS",    "UNKNOWN",	  "RUN",  "RUNNINGX",
			     " RUNNING", "RUNNING ", "PARTITION", "KILL", "INIT\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (task_state_parse(bad[i]) != -1) {
			fprintf(stderr, "    '%s' parsed as a state\n", bad[i]);
			unit_failures++;
		}
	}
}

TEST(terminal_and_active_partition_the_states)
{
	int terminal = 0;
	for (int s = 0; s < N; s++) {
		bool t = task_state_terminal((enum task_state)s);
		bool a = task_state_active((enum task_state)s);
		if (t != (bool)is_terminal(s) || a == t) {
			fprintf(stderr, "    %s: terminal=%d active=%d\n", names[s], t, a);
			unit_failures++;
		}
		terminal += t;
	}
	CHECK(terminal == 4);
	CHECK(task_state_terminal(TASK_LOST));
	CHECK(task_state_active(TASK_PARTITIONED));
	CHECK(task_state_active(TASK_INIT));
}

/* Graph properties of the real table: every state is reachable from INIT,
 * and every state can still end (no live state is a trap). */
TEST(every_state_reachable_and_every_task_can_end)
{
	bool reach[N] = {[TASK_INIT] = true};
	for (int changed = 1; changed;) {
		changed = 0;
		for (int f = 0; f < N; f++)
			for (int t = 0; t < N; t++)
				if (reach[f] && !reach[t] &&
				    task_transition_allowed((enum task_state)f, (enum task_state)t))
					reach[t] = true, changed = 1;
	}
	for (int s = 0; s < N; s++)
		if (!reach[s]) {
			fprintf(stderr, "    %s is unreachable from INIT\n", names[s]);
			unit_failures++;
		}

	bool ends[N] = {0};
	for (int s = 0; s < N; s++)
		ends[s] = is_terminal(s);
	for (int changed = 1; changed;) {
		changed = 0;
		for (int f = 0; f < N; f++)
			for (int t = 0; t < N; t++)
				if (!ends[f] && ends[t] &&
				    task_transition_allowed((enum task_state)f, (enum task_state)t))
					ends[f] = true, changed = 1;
	}
	for (int s = 0; s < N; s++)
		if (!ends[s]) {
			fprintf(stderr, "    %s can never reach a terminal state\n", names[s]);
			unit_failures++;
		}
}

UNIT_MAIN(from_init, from_pending, from_throttled, from_assigned, from_starting, from_running,
	  from_finished, from_failed, from_killing, from_killed, from_lost, from_preempting,
	  from_restarting, from_draining, from_partitioned, expected_table_is_consistent,
	  refused_transitions_are_counted, out_of_range_states_are_refused,
	  names_print_and_parse_round_trip, unknown_names_parse_to_minus_one,
	  terminal_and_active_partition_the_states, every_state_reachable_and_every_task_can_end)
