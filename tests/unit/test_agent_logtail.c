/* test_agent_logtail.c - the tail of an ended task's stream
 * (agent/agent_logtail.h): the last bytes of the current file, completed
 * from the rotated one, and what a report carries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_logtail.h"
#include "core/base64.h"
#include "core/util.h"
#include "unit.h"

static char *sandbox(void)
{
	char tmpl[] = "/tmp/berth-unit-tail.XXXXXX";
	char *d = mkdtemp(tmpl);
	return d ? xstrdup(d) : NULL;
}

static void put(const char *dir, const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	free(p);
}

static void rm_all(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

TEST(the_tail_is_the_last_bytes_across_a_rotation)
{
	char *d = sandbox();
	CHECK(d != NULL);
	size_t len = 0;
	/* Nothing written: no tail. */
	CHECK(agent_logtail_read(d, "stdout", 8, &len) == NULL);
	put(d, "stdout", "0123456789");
	char *t = agent_logtail_read(d, "stdout", 4, &len);
	CHECK(t && len == 4 && !memcmp(t, "6789", 4));
	free(t);
	/* Shorter than asked: the rotated file gives the rest, oldest first. */
	put(d, "stdout", "new");
	put(d, "stdout.1", "old-lines\n");
	t = agent_logtail_read(d, "stdout", 8, &len);
	CHECK(t && len == 8 && !memcmp(t, "ines\nnew", 8));
	free(t);
	t = agent_logtail_read(d, "stdout", 100, &len);
	CHECK(t && len == 13 && !memcmp(t, "old-lines\nnew", 13));
	free(t);
	rm_all(d);
	free(d);
}

TEST(only_failed_and_killed_tasks_carry_tails)
{
	char *d = sandbox();
	CHECK(d != NULL);
	put(d, "stderr", "dying because X\n");
	const char *states[] = {"FINISHED", "LOST", "RUNNING"};
	for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
		json_t *r = json_object();
		CHECK(agent_logtail_attach(r, d, states[i]) == 0);
		CHECK(json_object_get(r, "logs") == NULL);
		json_decref(r);
	}
	json_t *r = json_object();
	CHECK(agent_logtail_attach(r, d, "FAILED") > 0);
	json_t *logs = json_object_get(r, "logs");
	CHECK(json_object_get(logs, "stdout") == NULL); /* never written */
	const char *b = json_string_value(json_object_get(logs, "stderr"));
	char *dec = NULL;
	size_t n = 0;
	CHECK(b && base64_decode(b, strlen(b), &dec, &n) == 0);
	CHECK(dec && n == 16 && !memcmp(dec, "dying because X\n", 16));
	free(dec);
	json_decref(r);
	rm_all(d);
	free(d);
}

UNIT_MAIN(the_tail_is_the_last_bytes_across_a_rotation, only_failed_and_killed_tasks_carry_tails)
