/* test_task_record.c - a task's store record leaves out fields at their
 * zero value (cluster_records.c), and a restart reads every field back:
 * the left-out ones as their defaults, the others as written. */
#include <string.h>

#include "core/log.h"
#include "server/cluster-internal.h"
#include "store/store.h"
#include "cluster_fx.h"
#include "unit.h"

static char *record_of(struct fx *f, const char *id)
{
	char key[300];
	snprintf(key, sizeof key, "tasks/%s", id);
	char *v = NULL;
	size_t len;
	struct berr err = {0};
	if (store_get(f->st, key, &v, &len, &err) < 0)
		return NULL;
	return v;
}

TEST(zero_fields_left_out_and_read_back)
{
	struct fx f;
	fx_setup(&f, NULL);
	const char *y = "job: ops/prod/rec\ninstances: 2\ntask:\n  command: /bin/true\n"
			"  resources: {cpu: 0.01, memory: 4MiB}\n";
	struct job_spec *spec;
	struct submit_result res;
	struct berr err = {0};
	CHECK(spec_parse_yaml(y, strlen(y), "t.yaml", &spec, &err) == 0);
	CHECK(cluster_job_submit(f.c, spec, &res, &err) != 0);
	struct job *j = hmap_get(&f.c->jobs, "ops/prod/rec");
	CHECK(j && j->nactive == 2 && j->active[0] && j->active[1]);
	if (!j || j->nactive != 2 || !j->active[0] || !j->active[1])
		return;
	/* Instance 1 has every counter and flag set; instance 0 none. */
	struct task *t = j->active[1];
	t->pid = 4242;
	t->exit_code = 3;
	t->running_since_ms = 1000;
	t->failures = 2;
	t->quick_deaths = 1;
	t->throttle_until_ms = 5000;
	t->replace_version = 1;
	t->restarts = 7;
	t->restart_window_ms = 6000;
	t->replace_on_end = true;
	t->no_replace = true;
	persist_task(f.c, t);
	char *id0 = xstrdup(j->active[0]->id), *id1 = xstrdup(t->id);
	fx_commit(&f);

	char *r0 = record_of(&f, id0);
	CHECK(r0 && strstr(r0, "\"exit_code\":-1")); /* not zero: written */
	CHECK(r0 && !strstr(r0, "\"restarts\"") && !strstr(r0, "\"pid\"") &&
	      !strstr(r0, "\"replace_on_end\"") && !strstr(r0, "\"no_replace\""));
	free(r0);

	fx_restart(&f);
	struct task *a = hmap_get(&f.c->tasks, id0), *b = hmap_get(&f.c->tasks, id1);
	CHECK(a && b);
	if (a && b) {
		CHECK(a->exit_code == -1 && a->pid == 0 && a->failures == 0 && a->restarts == 0 &&
		      a->running_since_ms == 0 && !a->replace_on_end && !a->no_replace);
		CHECK_STR(task_state_name(a->state), "PENDING");
		CHECK(b->pid == 4242 && b->exit_code == 3 && b->running_since_ms == 1000 &&
		      b->failures == 2 && b->quick_deaths == 1 && b->throttle_until_ms == 5000 &&
		      b->replace_version == 1 && b->restarts == 7 && b->restart_window_ms == 6000 &&
		      b->replace_on_end && b->no_replace);
	}
	free(id0);
	free(id1);
	fx_teardown(&f);
}

/* The message is left out when it is the newest event's and read back as
 * that event's; any other message (a pending reason) is written; a record
 * with an empty message keeps it empty. A new store file has 8 KiB pages. */
TEST(message_left_out_when_it_is_the_newest_events)
{
	struct fx e;
	fx_setup(&e, NULL);
	const char *y = "job: ops/prod/msg\ninstances: 3\ntask:\n  command: /bin/true\n"
			"  resources: {cpu: 0.01, memory: 4MiB}\n";
	struct job_spec *spec;
	struct submit_result res;
	struct berr err = {0};
	CHECK(spec_parse_yaml(y, strlen(y), "t.yaml", &spec, &err) == 0);
	CHECK(cluster_job_submit(e.c, spec, &res, &err) != 0);
	struct job *j = hmap_get(&e.c->jobs, "ops/prod/msg");
	CHECK(j && j->nactive == 3 && j->active[0] && j->active[1] && j->active[2]);
	if (!j || j->nactive != 3 || !j->active[0] || !j->active[1] || !j->active[2])
		return;
	struct task *t0 = j->active[0], *t1 = j->active[1], *t2 = j->active[2];
	CHECK(t0->nevents > 0);
	const char *last = t0->nevents ? t0->events[t0->nevents - 1].message : "";
	char *want0 = xstrdup(last);
	task_message_release(t1);
	t1->message = xstrdup("insufficient cpu on 3 nodes");
	task_message_release(t2);
	t2->message = xstrdup("");
	persist_task(e.c, t1);
	persist_task(e.c, t2);
	char *id0 = xstrdup(t0->id), *id1 = xstrdup(t1->id), *id2 = xstrdup(t2->id);
	fx_commit(&e);

	char *r0 = record_of(&e, id0), *r1 = record_of(&e, id1);
	/* No message ahead of the events (each event has its own). */
	char *ev0 = r0 ? strstr(r0, "\"ev\"") : NULL;
	CHECK(ev0 != NULL);
	if (ev0) {
		*ev0 = 0;
		CHECK(!strstr(r0, "\"message\""));
	}
	CHECK(r1 && strstr(r1, "\"message\":\"insufficient cpu on 3 nodes\""));
	free(r0);
	free(r1);

	fx_restart(&e);
	struct task *a = hmap_get(&e.c->tasks, id0), *b = hmap_get(&e.c->tasks, id1),
		    *z = hmap_get(&e.c->tasks, id2);
	CHECK(a && b && z);
	if (a && b && z) {
		CHECK_STR(a->message, want0);
		CHECK_STR(b->message, "insufficient cpu on 3 nodes");
		CHECK_STR(z->message, "");
	}

	/* Bytes 16-17 of a SQLite file: its page size, big-endian. */
	char path[160];
	snprintf(path, sizeof path, "%s/state.db", e.dir);
	FILE *f = fopen(path, "rb");
	unsigned char hdr[18] = {0};
	CHECK(f && fread(hdr, 1, sizeof hdr, f) == sizeof hdr);
	if (f)
		fclose(f);
	CHECK((hdr[16] << 8 | hdr[17]) == 8192);
	free(want0);
	free(id0);
	free(id1);
	free(id2);
	fx_teardown(&e);
}

/* Events are written compact ([ms since the previous one, "STATE"], the
 * message only when it is not the usual one of the state) and read back
 * identical: times, states, messages. */
TEST(events_compact_and_read_back)
{
	struct fx f;
	fx_setup(&f, NULL);
	agent_register(&f, "n1");
	CHECK(submit(&f,
		     yamlf("job: ops/prod/ev\ninstances: 2\ntask:\n  command: /bin/true\n"
			   "  resources: {cpu: 0.01, memory: 4MiB}\n"),
		     NULL) > 0);
	tick(&f);
	run_job(&f, "ops/prod/ev");
	struct task *t = active(&f, "ops/prod/ev", 0), *u = active(&f, "ops/prod/ev", 1);
	CHECK(t && u && t->state == TASK_RUNNING && t->nevents >= 4);
	if (!t || !u || t->nevents < 4)
		return;
	/* An unusual message (and a time step back) on the other task. */
	task_add_event(u, TASK_RUNNING, "agent reconnected \"n1\" \xc3\xa9",
		       u->events[0].time_ms - 5);
	persist_task(f.c, u);
	char *ids[2] = {xstrdup(t->id), xstrdup(u->id)};
	struct task_event before[2][MAX_EVENTS];
	size_t nbefore[2];
	for (int k = 0; k < 2; k++) {
		struct task *x = k ? u : t;
		nbefore[k] = x->nevents;
		for (size_t i = 0; i < x->nevents; i++) {
			before[k][i] = x->events[i];
			before[k][i].message = xstrdup(x->events[i].message);
		}
	}
	fx_commit(&f);
	char *r = record_of(&f, ids[0]);
	CHECK(r && strstr(r, "\"ev\":[[") && !strstr(r, "assigned to node") &&
	      !strstr(r, "running on") && !strstr(r, "\"events\""));
	CHECK(r && strlen(r) < 400);
	free(r);
	r = record_of(&f, ids[1]);
	CHECK(r && strstr(r, "agent reconnected"));
	free(r);

	fx_restart(&f);
	for (int k = 0; k < 2; k++) {
		struct task *x = hmap_get(&f.c->tasks, ids[k]);
		CHECK(x && x->nevents == nbefore[k]);
		for (size_t i = 0; x && i < x->nevents && i < nbefore[k]; i++) {
			CHECK(x->events[i].time_ms == before[k][i].time_ms);
			CHECK(x->events[i].state == before[k][i].state);
			CHECK_STR(x->events[i].message, before[k][i].message);
		}
		for (size_t i = 0; i < nbefore[k]; i++)
			free(before[k][i].message);
		free(ids[k]);
	}
	fx_teardown(&f);
}

UNIT_MAIN(zero_fields_left_out_and_read_back, message_left_out_when_it_is_the_newest_events,
	  events_compact_and_read_back)
