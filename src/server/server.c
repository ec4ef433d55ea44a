/* server.c - the server's start and stop: the store, the cluster state,
 * the HTTP daemon (server_http.c), the commit thread (server_commit.c) and,
 * with an etcd store, the replica and the election (server_ha.c). */
#include "server/server-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/lockfile.h"
#include "core/log.h"
#include "server/leader.h"

/* Request threads: a large response or a slow handler on one leaves the
 * others hearing agents. */
#define REQUEST_THREADS 4
#define CONNECTION_POOL_BYTES 12288

void server_options_defaults(struct server_options *o)
{
	memset(o, 0, sizeof *o);
	o->addr = "127.0.0.1:7070";
	cluster_config_defaults(&o->cluster);
}

/* Raise the descriptor limit as far as allowed; the connections it leaves
 * room for (a few hundred descriptors are kept for the store, the logs,
 * the agent of `berth up` and its tasks). */
static unsigned raise_nofile(unsigned want, bool asked)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return want;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want + 256)
		return want;
	unsigned room = rl.rlim_cur > 512 ? (unsigned)(rl.rlim_cur - 256) : 256;
	log_msg(asked ? LOG_WARN : LOG_DEBUG,
		"at most %u connections (not %u): the descriptor limit is %llu", room, want,
		(unsigned long long)rl.rlim_cur);
	return room;
}

/* The data dir is one server's: DATA/lock, held while it lives. */
static int lock_data_dir(const struct server_options *o, struct berr *err)
{
	char *path = xasprintf("%s/lock", o->data_dir);
	int fd = lockfile_acquire(path, o->addr, err);
	if (fd < 0 && err->code == 409) {
		long pid;
		char addr[400];
		lockfile_holder(path, &pid, addr, sizeof addr);
		berr_clear(err);
		if (pid > 0)
			berr_set(err, 409,
				 "data dir '%s' is in use by another berth server (pid %ld, "
				 "serving %s): stop it, or give this one another --data-dir",
				 o->data_dir, pid, *addr ? addr : "an unknown address");
		else
			berr_set(err, 409,
				 "data dir '%s' is in use by another process (it holds '%s'): stop "
				 "it, or give this one another --data-dir",
				 o->data_dir, path);
	}
	free(path);
	return fd;
}

/* The store's location, with the etcd TLS files as its options (paths made
 * absolute: each thread opens the store anew). NULL with err when a file
 * cannot be read or the store is not etcd. */
static char *store_location(const struct server_options *o, struct berr *err)
{
	bool etcd = o->store && !strncmp(o->store, "etcd://", 7);
	if (!etcd)
		return (!o->store || !strcmp(o->store, "sqlite"))
			   ? xasprintf("sqlite:%s/state.db", o->data_dir)
			   : xstrdup(o->store);
	struct sbuf loc;
	sbuf_init(&loc);
	sbuf_adds(&loc, o->store);
	const struct {
		const char *flag, *opt, *file;
	} tls[] = {{"--etcd-cacert", "cacert", o->etcd_cacert},
		   {"--etcd-cert", "cert", o->etcd_cert},
		   {"--etcd-key", "key", o->etcd_key}};
	for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++) {
		if (!tls[i].file)
			continue;
		char *abs = realpath(tls[i].file, NULL);
		if (!abs || access(abs, R_OK) < 0) {
			berr_set(err, 400, "cannot read %s '%s': %s", tls[i].flag, tls[i].file,
				 strerror(errno));
			free(abs);
			sbuf_release(&loc);
			return NULL;
		}
		if (strchr(abs, '&') || strchr(abs, '?')) {
			berr_set(err, 400, "%s '%s': a path with '&' or '?' cannot be used",
				 tls[i].flag, abs);
			free(abs);
			sbuf_release(&loc);
			return NULL;
		}
		sbuf_addf(&loc, "%s%s=%s", strchr(loc.buf, '?') ? "&" : "?", tls[i].opt, abs);
		free(abs);
	}
	return sbuf_detach(&loc);
}

struct server *server_start(const struct server_options *o, struct berr *err)
{
	struct sockaddr_in sa;
	if (addr_parse(o->addr, &sa, err) < 0)
		return NULL;
	if ((o->etcd_cacert || o->etcd_cert || o->etcd_key) &&
	    (!o->store || strncmp(o->store, "etcd://", 7))) {
		berr_set(err, 400,
			 "--etcd-cacert, --etcd-cert and --etcd-key need an etcd:// store");
		return NULL;
	}
	if (!o->etcd_cert != !o->etcd_key) {
		berr_set(err, 400, "--etcd-cert and --etcd-key go together: give both");
		return NULL;
	}
	unsigned max_conns =
	    raise_nofile(o->max_conns ? o->max_conns : SERVER_DEFAULT_MAX_CONNS, o->max_conns != 0);
	signal(SIGPIPE, SIG_IGN);
	/* 0700: root's alone; tasks reach their own working directory through
	 * their private view of it (exec_isolation.c). */
	int r = mkdir_private(o->data_dir, 0700);
	if (r < 0) {
		berr_set(err, 500, "cannot create data dir '%s': %s", o->data_dir, strerror(-r));
		return NULL;
	}
	int lock_fd = lock_data_dir(o, err);
	if (lock_fd < 0)
		return NULL;
	char *loc = store_location(o, err);
	struct store *st = loc ? store_open(loc, err) : NULL;
	if (!st) {
		free(loc);
		close(lock_fd);
		return NULL;
	}
	struct server *s = xcalloc(1, sizeof *s);
	s->lock_fd = lock_fd;
	s->backup_location = loc;
	s->body_budget = o->body_budget ? o->body_budget : SERVER_DEFAULT_BODY_BUDGET;
	pthread_mutex_init(&s->backup_lock, NULL);
	pthread_cond_init(&s->backup_done, NULL);
	char *keyfile = o->secrets_key_file ? xstrdup(o->secrets_key_file)
					    : xasprintf("%s/keys/secrets.key", o->data_dir);
	r = secret_key_load(keyfile, !o->secrets_key_file, &s->secrets_key, err);
	free(keyfile);
	if (r < 0) {
		free(s->backup_location);
		close(s->lock_fd);
		free(s);
		store_close(st);
		return NULL;
	}
	pthread_mutex_init(&s->store_lock, NULL);
	pthread_cond_init(&s->replica_moved, NULL);
	server_metrics_init(s);
	s->store = st;
	s->audit_fd = -1;
	s->c = cluster_new(st, &o->cluster);
	bool ha = o->store && !strncmp(o->store, "etcd://", 7);
	if (server_pki_start(s, o, &sa, err) < 0)
		goto fail;
	char *audit = xasprintf("%s/audit.log", o->data_dir);
	s->audit_fd = open(audit, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (s->audit_fd < 0)
		log_warn("cannot open the audit log '%s': %s", audit, strerror(errno));
	free(audit);
	if (!ha) {
		pthread_mutex_lock(&s->c->lock);
		r = cluster_load(s->c, err);
		if (r == 0)
			cluster_note_leader(s->c, "leader",
					    "this server leads (one server, no HA)");
		pthread_mutex_unlock(&s->c->lock);
		if (r < 0)
			goto fail;
		s->leading = true;
	}
	/* MHD_USE_TURBO only without TLS: with it, libmicrohttpd (0.9.75)
	 * spins on a connection that stops halfway through its TLS handshake
	 * (one idle TCP connection kept a core busy). poll, not epoll, with
	 * TLS: its epoll loop keeps every connection in a handshake on its
	 * ready list (gnutls_handshake's EAGAIN does not clear it), so a
	 * join storm kept the request threads in a recv() spin; poll waits
	 * for the socket. A held watch is suspended, out of the poll set:
	 * the set holds the few connections between two calls. */
	unsigned flags = (s->tls ? MHD_USE_POLL_INTERNAL_THREAD : MHD_USE_EPOLL_INTERNAL_THREAD) |
			 MHD_ALLOW_SUSPEND_RESUME | (s->tls ? 0 : MHD_USE_TURBO);
	/* TLS: the serving certificate; the CA as trust makes libmicrohttpd
	 * ask clients for a certificate (agents have one, the CLI has none);
	 * server_on_connection keeps what it says with the connection. */
	struct MHD_OptionItem tls_opts[] = {
	    {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
	    {MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert},
	    {MHD_OPTION_HTTPS_MEM_TRUST, 0, s->ca_cert},
	    {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)server_on_connection, s},
	    {MHD_OPTION_END, 0, NULL}};
	if (s->tls)
		flags |= MHD_USE_TLS;
	else
		tls_opts[0].option = MHD_OPTION_END;
	s->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, server_on_request, s, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_ARRAY,
	    tls_opts, MHD_OPTION_NOTIFY_COMPLETED, server_on_completed, s,
	    MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    o->max_client_conns ? o->max_client_conns : SERVER_DEFAULT_MAX_CLIENT_CONNS,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)REQUEST_THREADS,
	    /* Bodies are buffered by us; the per-connection pool only
	     * holds the request's headers and the reply's. libmicrohttpd
	     * zeroes all of it between requests, so it is resident: 32 KiB
	     * by default is 300 MiB for 10,000 agents, 12 KiB is 120 MiB.
	     * Request headers over ~5.5 KiB are refused (431). */
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_POOL_BYTES,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096, MHD_OPTION_LISTENING_ADDRESS_REUSE,
	    (unsigned)1, MHD_OPTION_END);
	if (!s->mhd) {
		berr_set(err, 500, "cannot listen on '%s': %s", o->addr,
			 errno ? strerror(errno) : "address in use?");
		goto fail;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : ntohs(sa.sin_port);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
	s->self_url = xasprintf("%s://%s:%d", s->tls ? "https" : "http",
				sa.sin_addr.s_addr ? ip : "127.0.0.1", s->port);
	lockfile_update(s->lock_fd, s->self_url);
	if (ha) {
		/* Several servers on one etcd: each keeps a replica of the state
		 * through a watch and answers reads from it; the elected one
		 * leads from it and writes; the others redirect writes to it. */
		s->store_location = xstrdup(loc);
		if (pthread_create(&s->follow_thread, NULL, server_follow_main, s) == 0)
			s->follow_started = true;
		else
			log_warn(
			    "cannot start the replica thread: a new leader will load the state");
		struct leader_callbacks cb = {
		    .ud = s, .elected = server_on_elected, .lost = server_on_lost};
		s->leader = leader_start(loc, s->self_url,
					 o->leader_ttl_ms ? o->leader_ttl_ms : 2000, &cb, err);
		if (!s->leader) {
			MHD_stop_daemon(s->mhd);
			s->follow_stop = true;
			if (s->follow_started)
				pthread_join(s->follow_thread, NULL);
			free(s->store_location);
			goto fail;
		}
		log_info("server listening on %s (store %s), campaigning for leadership",
			 s->self_url, o->store);
		return s;
	}
	if (pthread_create(&s->commit_thread, NULL, server_commit_loop, s) != 0) {
		berr_set(err, 500, "cannot start the commit thread");
		MHD_stop_daemon(s->mhd);
		goto fail;
	}
	s->commit_started = true;
	log_info("server listening on %s (state in %s)", s->self_url, o->data_dir);
	return s;
fail:
	if (s->audit_fd >= 0)
		close(s->audit_fd);
	server_metrics_release(s);
	server_pki_free(s);
	cluster_free(s->c);
	store_close(st);
	free(s->backup_location);
	close(s->lock_fd);
	free(s);
	return NULL;
}

int server_port(const struct server *s)
{
	return s->port;
}

void server_stop(struct server *s)
{
	if (!s)
		return;
	if (s->elect_started)
		pthread_join(s->elect_thread, NULL);
	pthread_mutex_lock(&s->c->lock);
	s->follow_stop = true;
	pthread_mutex_unlock(&s->c->lock);
	if (s->follow_started)
		pthread_join(s->follow_thread, NULL);
	pthread_mutex_lock(&s->c->lock);
	s->stopping = true;
	pthread_cond_signal(&s->c->wake);
	pthread_mutex_unlock(&s->c->lock);
	if (s->commit_started)
		pthread_join(s->commit_thread, NULL);
	server_commit_final(s);
	/* Suspended connections must be resumed before the daemon stops. */
	server_backup_stop_all(s);
	server_events_stop(s);
	MHD_stop_daemon(s->mhd);
	/* Last: a leader gives its lease back so that another takes over at
	 * once, after everything it acknowledged is durable. */
	leader_stop(s->leader);
	cluster_free(s->c);
	store_close(s->store);
	memset(&s->secrets_key, 0, sizeof s->secrets_key);
	free(s->self_url);
	free(s->store_location);
	if (s->audit_fd >= 0)
		close(s->audit_fd);
	server_pki_free(s);
	pthread_cond_destroy(&s->replica_moved);
	server_metrics_release(s);
	free(s->backup_location);
	/* Last: the next server may take the data dir. */
	close(s->lock_fd);
	free(s);
}
