/* server_metrics.c - GET /metrics (the Prometheus text format, docs/
 * operations.md "Metrics") and the ticket that lets Prometheus scrape the
 * agents. Every server answers for itself: its HA role, the leader changes
 * it saw, its commit loop; the leader adds the cluster's figures
 * (cluster_metrics.c), so that sums over servers do not count them twice. */
#include "server/server-internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pki.h"
#include "server/leader.h"

/* How long a metrics ticket is good for, by default and at most (days). */
#define TICKET_DEFAULT_DAYS 365
#define TICKET_MAX_DAYS 3650

void server_metrics_init(struct server *s)
{
	metrics_hist_init(&s->commit_seconds, metrics_latency_bounds, metrics_latency_nbounds);
	metrics_hist_init(&s->commit_records, metrics_size_bounds, metrics_size_nbounds);
	pthread_mutex_init(&s->metrics_lock, NULL);
}

void server_metrics_release(struct server *s)
{
	metrics_hist_destroy(&s->commit_seconds);
	metrics_hist_destroy(&s->commit_records);
	pthread_mutex_destroy(&s->metrics_lock);
	free(s->last_leader);
}

void server_metrics_leader_seen(struct server *s, const char *url)
{
	if (!url)
		return;
	pthread_mutex_lock(&s->metrics_lock);
	if (!s->last_leader || strcmp(s->last_leader, url)) {
		if (s->last_leader)
			atomic_fetch_add(&s->leader_changes, 1);
		free(s->last_leader);
		s->last_leader = xstrdup(url);
	}
	pthread_mutex_unlock(&s->metrics_lock);
}

static void write_server(struct server *s, struct sbuf *sb)
{
	char *leader = s->leader ? leader_current(s->leader) : xstrdup(s->self_url);
	server_metrics_leader_seen(s, leader);
	free(leader);
	metrics_family(sb, "berth_server_leader", "gauge",
		       "1 when this server leads the cluster, 0 when it follows.");
	metrics_sample(sb, "berth_server_leader", s->leading ? 1 : 0, "server", s->self_url, NULL);
	metrics_family(sb, "berth_leader_changes_total", "counter",
		       "Changes of leader this server saw since it started.");
	metrics_sample(sb, "berth_leader_changes_total", (double)atomic_load(&s->leader_changes),
		       NULL);
	metrics_family(sb, "berth_store_commit_seconds", "histogram",
		       "Time of each durable commit of a batch of changes.");
	metrics_hist_write(sb, "berth_store_commit_seconds", NULL, &s->commit_seconds);
	metrics_family(sb, "berth_store_commit_records", "histogram",
		       "Records written by each commit (the batch size).");
	metrics_hist_write(sb, "berth_store_commit_records", NULL, &s->commit_records);
	metrics_family(sb, "berth_node_down_total", "counter",
		       "Nodes judged DOWN since the server started.");
	metrics_sample(sb, "berth_node_down_total",
		       (double)__atomic_load_n(&s->c->nodes_down_total, __ATOMIC_RELAXED), NULL);
	metrics_family(sb, "berth_heartbeat_seconds", "gauge",
		       "The heartbeat agents are asked for now (--heartbeat, longer when the "
		       "nodes would pass --max-heartbeats).");
	metrics_sample(sb, "berth_heartbeat_seconds", (double)cluster_heartbeat_ms(s->c) / 1000,
		       NULL);
	metrics_family(sb, "berth_down_after_seconds", "gauge",
		       "The silence that makes a node DOWN now (--down-after, paced as the "
		       "heartbeat).");
	metrics_sample(sb, "berth_down_after_seconds", (double)cluster_down_after_ms(s->c) / 1000,
		       NULL);
}

enum MHD_Result server_metrics_answer(struct server *s, struct request *q, const char *method)
{
	if (strcmp(method, "GET")) {
		reply_error(q, 405, "method not allowed: GET /metrics");
		return send_ready(q);
	}
	/* Any user's token (the admin's or a role's): aggregate figures. */
	if (!auth_any(q))
		return send_ready(q);
	if (q->who.kind == PRINCIPAL_NODE) {
		reply_error(q, 403, "forbidden: /metrics takes a user's token, not a node's");
		return send_ready(q);
	}
	struct sbuf sb;
	sbuf_init(&sb);
	write_server(s, &sb);
	if (s->leading) {
		pthread_mutex_lock(&s->c->lock);
		cluster_metrics_write(s->c, &sb);
		pthread_mutex_unlock(&s->c->lock);
	}
	size_t n = sb.len;
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(n, sbuf_detach(&sb), MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", METRICS_CONTENT_TYPE);
	enum MHD_Result ret = MHD_queue_response(q->conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* A ticket "EXPIRY.SIG": the cluster CA's signature of "metrics|EXPIRY",
 * which every agent checks with the CA it trusts (agent_metrics.c). */
void server_metrics_ticket(struct server *s, struct request *q)
{
	if (!auth_admin(q))
		return;
	if (!s->tls) {
		reply_error(q, 400,
			    "no ticket needed: this cluster runs without TLS (--insecure), and "
			    "agents' /metrics are open");
		return;
	}
	const char *d = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "days");
	int64_t days = TICKET_DEFAULT_DAYS;
	if (d && (parse_int64(d, &days) < 0 || days < 1 || days > TICKET_MAX_DAYS)) {
		char msg[160];
		snprintf(msg, sizeof msg, "bad days '%.40s': a whole number from 1 to %d", d,
			 TICKET_MAX_DAYS);
		reply_error(q, 400, msg);
		return;
	}
	int64_t expiry = time_now_ms() / 1000 + days * 86400;
	char *data = xasprintf("metrics|%lld", (long long)expiry);
	char *ticket = server_ticket(s, "a metrics", expiry, data);
	free(data);
	if (!ticket) {
		reply_error(q, 500, "cannot sign a metrics ticket (see the server's log)");
		return;
	}
	reply_ok(q, json_pack("{s:s,s:I}", "ticket", ticket, "expires", (json_int_t)expiry));
	free(ticket);
}
