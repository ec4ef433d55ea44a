/* unit.h - a tiny unit-test harness.
 *
 * Each test file is one binary; each test runs in its own forked process
 * with a timeout, so a crash or hang fails that test only. Use:
 *
 *   TEST(parses_sizes) { CHECK(x == 1); CHECK_STR(a, "b"); }
 *   UNIT_MAIN(parses_sizes, other_test)
 *
 * A test may call SKIP("reason") to report itself skipped. The binary prints
 * one line per test and ends with "N passed, N failed, N skipped".
 *
 * A shared fixture (cluster_fx.c) may include this header and CHECK too:
 * unit_failures is one counter for the whole binary.
 */
#ifndef BERTH_UNIT_H
#define BERTH_UNIT_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Weak: every file of a test binary that includes this shares the one. */
__attribute__((weak)) int unit_failures;

#define TEST(name) static void name(void)
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "    %s:%d: check failed: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			unit_failures++;                                                           \
		}                                                                                  \
	} while (0)
#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *a_ = (a), *b_ = (b);                                                   \
		if (!a_ || !b_ || strcmp(a_, b_)) {                                                \
			fprintf(stderr, "    %s:%d: '%s' != '%s'\n", __FILE__, __LINE__,           \
				a_ ? a_ : "(null)", b_ ? b_ : "(null)");                           \
			unit_failures++;                                                           \
		}                                                                                  \
	} while (0)
#define CHECK_CONTAINS(hay, needle)                                                                \
	do {                                                                                       \
		const char *h_ = (hay), *n_ = (needle);                                            \
		if (!h_ || !strstr(h_, n_)) {                                                      \
			fprintf(stderr, "    %s:%d: '%s' does not contain '%s'\n", __FILE__,       \
				__LINE__, h_ ? h_ : "(null)", n_);                                 \
			unit_failures++;                                                           \
		}                                                                                  \
	} while (0)
#define SKIP(reason)                                                                               \
	do {                                                                                       \
		fprintf(stderr, "    skipped: %s\n", reason);                                      \
		_exit(77);                                                                         \
	} while (0)

struct unit_case {
	const char *name;
	void (*fn)(void);
};

__attribute__((unused)) static int unit_run(const char *file, struct unit_case *cases, size_t n)
{
	int passed = 0, failed = 0, skipped = 0;
	const char *only = getenv("UNIT_ONLY");
	for (size_t i = 0; i < n; i++) {
		if (only && strcmp(only, cases[i].name))
			continue;
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid == 0) {
			alarm(60);
			cases[i].fn();
			fflush(stdout);
			fflush(stderr);
#ifdef __SANITIZE_ADDRESS__
			/* exit(), not _exit(): LeakSanitizer checks at exit, and a
			 * leak fails the test. */
			exit(unit_failures ? 1 : 0);
#else
			_exit(unit_failures ? 1 : 0);
#endif
		}
		int st = 0;
		waitpid(pid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			printf("ok   %s %s\n", file, cases[i].name);
			passed++;
		} else if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
			printf("skip %s %s\n", file, cases[i].name);
			skipped++;
		} else {
			if (WIFSIGNALED(st))
				printf("FAIL %s %s (signal %d)\n", file, cases[i].name,
				       WTERMSIG(st));
			else
				printf("FAIL %s %s\n", file, cases[i].name);
			failed++;
		}
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}

/* UNIT_MAIN takes the test functions by name. */
#define UNIT_MAIN(...)                                                                             \
	int main(void)                                                                             \
	{                                                                                          \
		void (*fns[])(void) = {__VA_ARGS__};                                               \
		static const char names[] = #__VA_ARGS__;                                          \
		struct unit_case cases[sizeof fns / sizeof fns[0]];                                \
		char *copy = strdup(names), *save = NULL, *tok;                                    \
		size_t k = 0;                                                                      \
		for (tok = strtok_r(copy, ", \t\n", &save); tok && k < sizeof fns / sizeof fns[0]; \
		     tok = strtok_r(NULL, ", \t\n", &save))                                        \
			cases[k] = (struct unit_case){tok, fns[k]}, k++;                           \
		int r = unit_run(__FILE__, cases, k);                                              \
		free(copy);                                                                        \
		return r;                                                                          \
	}

#endif
