/* server_backup.c - GET /v1/admin/backup off the event thread.
 *
 * A backup reads the whole store: with 20,000 jobs, a second or more. Run
 * on a request thread, it would leave every connection of that thread
 * unheard meanwhile (agents' heartbeats among them); holding the store
 * lock, it would stall the commits too. Instead:
 *
 *   request thread                      backup thread
 *   --------------                      -------------
 *   suspend the connection
 *   start the thread           ---->    open the store anew (its own handle)
 *   (free for other requests)           scan it: one read transaction, a
 *                                       consistent snapshot beside commits
 *                                       q->text = the JSON lines
 *   send_ready(q)              <----    resume the connection
 *
 * At most MAX_BACKUPS run at once (each holds its backup in memory); more
 * are answered 503. server_stop asks them to stop and waits for them.
 */
#include "server/server-internal.h"

#include <string.h>

#include "core/log.h"

/* Backups are JSON lines: {"key": K, "value": V} with V the stored text. */
struct backup_ctx {
	struct server *s;
	struct sbuf out;
	size_t n;
};

static int backup_line(const char *key, const char *value, size_t len, void *ud)
{
	struct backup_ctx *bc = ud;
	if (atomic_load(&bc->s->backup_stop))
		return -3;
	if (!strcmp(key, "meta/leader"))
		return 0; /* an election record, bound to a lease: never restored */
	json_t *v = json_stringn(value, len);
	if (!v)
		return -2; /* berth writes only JSON text: anything else is damage */
	json_t *line = json_pack("{s:s,s:o}", "key", key, "value", v);
	char *txt = json_dumps(line, JSON_COMPACT);
	sbuf_adds(&bc->out, txt);
	sbuf_adds(&bc->out, "\n");
	free(txt);
	json_decref(line);
	bc->n++;
	return 0;
}

static void *backup_main(void *ud)
{
	struct request *q = ud;
	struct server *s = q->srv;
	struct backup_ctx bc = {.s = s};
	sbuf_init(&bc.out);
	struct berr err = {0};
	int64_t t0 = time_mono_ms();
	struct store *st = store_open(s->backup_location, &err);
	int r = st ? store_scan(st, "", backup_line, &bc, &err) : -1;
	store_close(st);
	if (r == 0) {
		q->text = sbuf_detach(&bc.out);
		q->status = 200;
		q->phase = REQ_READY;
		log_info("backup: %zu keys in %lld ms", bc.n, (long long)(time_mono_ms() - t0));
	} else {
		sbuf_release(&bc.out);
		if (r == -3)
			reply_error(q, 503, "server is shutting down");
		else if (r == -2)
			reply_error(q, 500, "backup: a stored value is not UTF-8 text");
		else
			reply_error(q, 500, err.msg);
	}
	/* After the resume q belongs to the request thread again: not a
	 * word more about it here. */
	MHD_resume_connection(q->conn);
	pthread_mutex_lock(&s->backup_lock);
	s->backups_running--;
	pthread_cond_broadcast(&s->backup_done);
	pthread_mutex_unlock(&s->backup_lock);
	return NULL;
}

enum MHD_Result server_backup_start(struct server *s, struct request *q, const char *method)
{
	if (strcmp(method, "GET")) {
		reply_error(q, 405, "method not allowed");
		return send_ready(q);
	}
	pthread_mutex_lock(&s->backup_lock);
	if (atomic_load(&s->backup_stop)) {
		pthread_mutex_unlock(&s->backup_lock);
		reply_error(q, 503, "server is shutting down");
		return send_ready(q);
	}
	if (s->backups_running >= MAX_BACKUPS) {
		pthread_mutex_unlock(&s->backup_lock);
		reply_error(q, 503, "too many backups under way; retry when one is done");
		return send_ready(q);
	}
	q->phase = REQ_BACKUP;
	MHD_suspend_connection(q->conn);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int r = pthread_create(&t, &attr, backup_main, q);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		pthread_mutex_unlock(&s->backup_lock);
		MHD_resume_connection(q->conn);
		reply_error(q, 503, "cannot start a backup thread; retry");
		return MHD_YES; /* answered when resumed */
	}
	s->backups_running++;
	pthread_mutex_unlock(&s->backup_lock);
	return MHD_YES;
}

void server_backup_stop_all(struct server *s)
{
	pthread_mutex_lock(&s->backup_lock);
	atomic_store(&s->backup_stop, true);
	while (s->backups_running > 0 || s->ui_logs_running > 0)
		pthread_cond_wait(&s->backup_done, &s->backup_lock);
	pthread_mutex_unlock(&s->backup_lock);
}
