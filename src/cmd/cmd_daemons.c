/* berth up | server | agent | supervise: the long-running processes (and
 * task-exec, a health check's way into its task). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "tools/simulator.h"
#include "agent/supervisor.h"
#include "agent/task_exec.h"
#include "cmd/cli.h"
#include "cmd/commands.h"
#include "core/cidr.h"
#include "core/log.h"
#include "server/server.h"

static int wait_for_signal(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	int sig = 0;
	sigwait(&set, &sig);
	return sig;
}

/* Block the stop signals in every thread; the main thread sigwaits. */
static void block_stop_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static char *self_exe(void)
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n <= 0)
		return xstrdup("/proc/self/exe");
	buf[n] = 0;
	return xstrdup(buf);
}

enum {
	O_DATA,
	O_ADDR,
	O_STORE,
	O_SECRETS_KEY,
	O_MAX_CONNS,
	O_MAX_CLIENT_CONNS,
	O_MAX_BODY_BUFFER,
	O_ETCD_CACERT,
	O_ETCD_CERT,
	O_ETCD_KEY,
	O_SERVERS,
	O_NAME,
	O_ATTR,
	O_CPU,
	O_MEM,
	O_DISK,
	O_PORTS,
	O_LISTEN,
	O_DOCKER,
	O_CGROUP,
	O_SYSCGROUP,
	O_ALLOW_ROOT,
	O_VOLUME_ROOT,
	O_DNS_LISTEN,
	O_DNS_UPSTREAM,
	O_IMAGE_MAX,
	O_IMAGE_MAX_UNPACKED,
	O_HEARTBEAT,
	O_DOWN,
	O_CLUSTER_CIDR,
	O_CRONTZ,
	O_QUIET,
	O_INSECURE,
	O_TLS_SAN,
	O_CERT_TTL,
	O_PREEMPT_MAX_VICTIMS,
	O_HISTORY_COUNT,
	O_HISTORY_AGE,
	O_MAX_HEARTBEATS,
	O_JOIN_TOKEN,
	O_JOIN_TOKEN_FILE,
	O_SIMULATE,
	O_SIM_RACKS,
	O_SIM_ZONES,
	O_SIM_RATE,
	O_SIM_THREADS,
	O_SIM_SHARED_KEY,
	O_SIM_SOURCE_ADDRS,
	O_LOG_FORMAT,
	O_HELP,
	O_COUNT
};

static void opts_init(struct cli_opt *o)
{
	struct cli_opt all[O_COUNT] = {
	    [O_DATA] = {"--data-dir", NULL, true, false,
			"state and task sandboxes (default ./berth-data)"},
	    [O_ADDR] = {"--addr", NULL, true, false,
			"API address HOST:PORT (default 127.0.0.1:7070)"},
	    [O_STORE] = {"--store", NULL, true, false, "sqlite (default) or a store location"},
	    [O_SECRETS_KEY] = {"--secrets-key-file", NULL, true, false,
			       "the key that encrypts secrets (default DATA/keys/secrets.key, made "
			       "on first start; HA servers must share one)"},
	    [O_MAX_CONNS] = {"--max-conns", NULL, true, false,
			     "server: connections at once, in all (default 60000)"},
	    [O_MAX_CLIENT_CONNS] = {"--max-client-conns", NULL, true, false,
				    "server: connections at once from one IP address (default "
				    "1024)"},
	    [O_MAX_BODY_BUFFER] = {"--max-body-buffer", NULL, true, false,
				   "server: request bodies held at once, in all (default 256MiB)"},
	    [O_ETCD_CACERT] = {"--etcd-cacert", NULL, true, false,
			       "server: the CA of an etcd store's members (https)"},
	    [O_ETCD_CERT] = {"--etcd-cert", NULL, true, false,
			     "server: the client certificate shown to etcd (with --etcd-key)"},
	    [O_ETCD_KEY] = {"--etcd-key", NULL, true, false, "server: the key of --etcd-cert"},
	    [O_SERVERS] = {"--server", NULL, true, false, "server address(es), comma-separated"},
	    [O_NAME] = {"--name", NULL, true, false, "node name (default: host name)"},
	    [O_ATTR] = {"--attr", NULL, true, true, "node attribute k=v (repeatable)"},
	    [O_CPU] = {"--cpu", NULL, true, false, "cores offered (default: detected)"},
	    [O_MEM] = {"--mem", NULL, true, false,
		       "memory offered, e.g. 16GiB (default: detected)"},
	    [O_DISK] = {"--disk", NULL, true, false, "disk offered (default: free space)"},
	    [O_PORTS] = {"--port-range", NULL, true, false,
			 "ports for tasks LO-HI (default 20000-32767)"},
	    [O_LISTEN] = {"--listen", NULL, true, false,
			  "agent listener (logs, /metrics) HOST:PORT (default 0.0.0.0:0)"},
	    [O_DOCKER] =
		{"--docker-socket", NULL, true, false,
		 "Docker Engine socket for the docker driver (default /var/run/docker.sock)"},
	    [O_CGROUP] = {"--cgroup-parent", NULL, true, false,
			  "cgroup under which tasks go (default berth)"},
	    [O_SYSCGROUP] = {"--system-cgroup", NULL, true, false,
			     "berth's own cgroup, weighted above the tasks' (default "
			     "berth-system; none = stay)"},
	    [O_ALLOW_ROOT] = {"--allow-root-tasks", NULL, false, false,
			      "agent: exec tasks may run as root (with Docker's default "
			      "capabilities; default: refused)"},
	    [O_VOLUME_ROOT] = {"--volume-root", NULL, true, true,
			       "agent: a directory whose files tasks may mount as volumes "
			       "(repeatable; default none: no host volumes)"},
	    [O_DNS_LISTEN] = {"--dns-listen", NULL, true, false,
			      "agent: tasks' name server IP:PORT (default auto: 127.0.0.153:53 "
			      "when free; off = none)"},
	    [O_DNS_UPSTREAM] = {"--dns-upstream", NULL, true, true,
				"agent: resolver for other names IP[:PORT] (repeatable; default "
				"the nameservers of /etc/resolv.conf)"},
	    [O_IMAGE_MAX] = {"--image-max-bytes", NULL, true, false,
			     "agent: largest image download, e.g. 4GiB (the default)"},
	    [O_IMAGE_MAX_UNPACKED] = {"--image-max-unpacked-bytes", NULL, true, false,
				      "agent: largest image once unpacked, e.g. 16GiB (the "
				      "default)"},
	    [O_HEARTBEAT] = {"--heartbeat", NULL, true, false,
			     "agent heartbeat interval (default 1s)"},
	    [O_DOWN] = {"--down-after", NULL, true, false,
			"node DOWN after no heartbeat this long (default 3s)"},
	    [O_MAX_HEARTBEATS] = {"--max-heartbeats", NULL, true, false,
				  "server: heartbeats per second at most; more nodes than that "
				  "lengthen --heartbeat and --down-after in proportion (default "
				  "4000; 0 = no limit)"},
	    [O_CLUSTER_CIDR] = {"--cluster-cidr", NULL, true, false,
				"server: the tasks' network, a /24 of it per node (default "
				"10.244.0.0/16)"},
	    [O_CRONTZ] = {"--cron-timezone", NULL, true, false,
			  "time zone of cron schedules, e.g. Europe/Paris (default UTC)"},
	    [O_QUIET] = {"--quiet", "-q", false, false, "log warnings and errors only"},
	    [O_LOG_FORMAT] = {"--log-format", NULL, true, false,
			      "log lines as text (default) or json (one object per line)"},
	    [O_INSECURE] = {"--insecure", NULL, false, false,
			    "plain HTTP and no authentication (development only)"},
	    [O_TLS_SAN] = {"--tls-san", NULL, true, true,
			   "server: another name or IP for its certificate (repeatable)"},
	    [O_CERT_TTL] = {"--cert-ttl", NULL, true, false,
			    "server: lifetime of agents' certificates (default 24h)"},
	    [O_PREEMPT_MAX_VICTIMS] = {"--preempt-max-victims", NULL, true, false,
				       "server: tasks preempted per scheduling round at most "
				       "(default 1000)"},
	    [O_HISTORY_COUNT] = {"--task-history", NULL, true, false,
				 "server: ended tasks kept per job, newest first (default 100)"},
	    [O_HISTORY_AGE] = {"--task-history-age", NULL, true, false,
			       "server: an ended task is forgotten this long after it ended "
			       "(default 24h)"},
	    [O_JOIN_TOKEN] = {"--join-token", NULL, true, false,
			      "agent: the cluster's join token (to get its node certificate)"},
	    [O_JOIN_TOKEN_FILE] = {"--join-token-file", NULL, true, false,
				   "agent: a file holding the join token (the server's "
				   "DATA/client/join.token)"},
	    [O_SIMULATE] = {"--simulate", NULL, true, false,
			    "agent: run N simulated agents NAME-0..NAME-(N-1)"},
	    [O_SIM_RACKS] = {"--sim-racks", NULL, true, false, "simulate: attribute rack=r<i % R>"},
	    [O_SIM_ZONES] = {"--sim-zones", NULL, true, false, "simulate: attribute zone=z<i % Z>"},
	    [O_SIM_RATE] = {"--sim-rate", NULL, true, false,
			    "simulate: registrations per second (default 2000)"},
	    [O_SIM_THREADS] = {"--sim-threads", NULL, true, false,
			       "simulate: event-loop threads (default 1)"},
	    [O_SIM_SHARED_KEY] = {"--sim-shared-key", NULL, false, false,
				  "simulate: one key for every agent (each its own certificate)"},
	    [O_SIM_SOURCE_ADDRS] = {"--sim-source-addrs", NULL, false, false,
				    "simulate: agent i connects from 127.0.(i/250).(i%250+1)"},
	    [O_HELP] = {"--help", "-h", false, false, "show this help"},
	};
	memcpy(o, all, sizeof all);
}

static int agent_opts_from_cli(struct cli_opt *o, struct agent_options *ao)
{
	agent_options_defaults(ao);
	if (o[O_NAME].set)
		ao->name = o[O_NAME].value;
	if (o[O_ATTR].nvalues) {
		ao->attrs = xcalloc(o[O_ATTR].nvalues, sizeof *ao->attrs);
		for (size_t i = 0; i < o[O_ATTR].nvalues; i++) {
			const char *kv = o[O_ATTR].values[i], *eq = strchr(kv, '=');
			if (!eq || eq == kv)
				return cli_fail("bad --attr '%s': expected KEY=VALUE", kv);
			ao->attrs[ao->nattrs].key = xstrndup(kv, (size_t)(eq - kv));
			ao->attrs[ao->nattrs].value = xstrdup(eq + 1);
			ao->nattrs++;
		}
	}
	if (o[O_CPU].set) {
		char *end;
		ao->cpu = strtod(o[O_CPU].value, &end);
		if (*end || ao->cpu <= 0)
			return cli_fail("bad --cpu '%s': expected a positive number",
					o[O_CPU].value);
	}
	if (o[O_MEM].set && (parse_size(o[O_MEM].value, &ao->memory) < 0 || !ao->memory))
		return cli_fail("bad --mem '%s': expected a size such as 16GiB", o[O_MEM].value);
	if (o[O_DISK].set && parse_size(o[O_DISK].value, &ao->disk) < 0)
		return cli_fail("bad --disk '%s': expected a size such as 100GiB", o[O_DISK].value);
	if (o[O_PORTS].set) {
		int lo, hi;
		char extra;
		if (sscanf(o[O_PORTS].value, "%d-%d%c", &lo, &hi, &extra) != 2 || lo < 1 ||
		    hi > 65535 || lo > hi)
			return cli_fail("bad --port-range '%s': expected LO-HI", o[O_PORTS].value);
		ao->port_lo = lo;
		ao->port_hi = hi;
	}
	if (o[O_LISTEN].set)
		ao->listen = o[O_LISTEN].value;
	if (o[O_JOIN_TOKEN].set)
		ao->join_token = o[O_JOIN_TOKEN].value;
	if (o[O_JOIN_TOKEN_FILE].set)
		ao->join_token_file = o[O_JOIN_TOKEN_FILE].value;
	if (o[O_DOCKER].set)
		ao->docker_socket = o[O_DOCKER].value;
	if (o[O_CGROUP].set)
		ao->cgroup_parent = o[O_CGROUP].value;
	if (o[O_SYSCGROUP].set)
		ao->system_cgroup = o[O_SYSCGROUP].value;
	ao->allow_root_tasks = o[O_ALLOW_ROOT].set;
	ao->volume_roots = (const char *const *)o[O_VOLUME_ROOT].values;
	ao->nvolume_roots = o[O_VOLUME_ROOT].nvalues;
	if (o[O_DNS_LISTEN].set)
		ao->dns_listen = o[O_DNS_LISTEN].value;
	ao->dns_upstreams = (const char *const *)o[O_DNS_UPSTREAM].values;
	ao->ndns_upstreams = o[O_DNS_UPSTREAM].nvalues;
	if (o[O_IMAGE_MAX].set &&
	    (parse_size(o[O_IMAGE_MAX].value, &ao->image_max_bytes) < 0 || !ao->image_max_bytes))
		return cli_fail("bad --image-max-bytes '%s': expected a size such as 4GiB",
				o[O_IMAGE_MAX].value);
	if (o[O_IMAGE_MAX_UNPACKED].set &&
	    (parse_size(o[O_IMAGE_MAX_UNPACKED].value, &ao->image_max_unpacked_bytes) < 0 ||
	     !ao->image_max_unpacked_bytes))
		return cli_fail(
		    "bad --image-max-unpacked-bytes '%s': expected a size such as 16GiB",
		    o[O_IMAGE_MAX_UNPACKED].value);
	return 0;
}

static int server_opts_from_cli(struct cli_opt *o, struct server_options *so)
{
	server_options_defaults(so);
	so->data_dir = o[O_DATA].set ? o[O_DATA].value : "berth-data";
	if (o[O_ADDR].set)
		so->addr = o[O_ADDR].value;
	if (o[O_STORE].set)
		so->store = o[O_STORE].value;
	if (o[O_SECRETS_KEY].set)
		so->secrets_key_file = o[O_SECRETS_KEY].value;
	int64_t n;
	if (o[O_MAX_CONNS].set) {
		if (parse_int64(o[O_MAX_CONNS].value, &n) < 0 || n < 16 || n > 1000000)
			return cli_fail(
			    "bad --max-conns '%s': expected a number from 16 to 1000000",
			    o[O_MAX_CONNS].value);
		so->max_conns = (unsigned)n;
	}
	if (o[O_MAX_CLIENT_CONNS].set) {
		if (parse_int64(o[O_MAX_CLIENT_CONNS].value, &n) < 0 || n < 1 || n > 1000000)
			return cli_fail("bad --max-client-conns '%s': expected a number from 1 to "
					"1000000",
					o[O_MAX_CLIENT_CONNS].value);
		so->max_client_conns = (unsigned)n;
	}
	if (o[O_MAX_BODY_BUFFER].set) {
		uint64_t size;
		if (parse_size(o[O_MAX_BODY_BUFFER].value, &size) < 0 || size < (1u << 20))
			return cli_fail(
			    "bad --max-body-buffer '%s': expected a size of 1MiB or more "
			    "(one request's body may be 1 MiB)",
			    o[O_MAX_BODY_BUFFER].value);
		so->body_budget = (size_t)size;
	}
	if (o[O_ETCD_CACERT].set)
		so->etcd_cacert = o[O_ETCD_CACERT].value;
	if (o[O_ETCD_CERT].set)
		so->etcd_cert = o[O_ETCD_CERT].value;
	if (o[O_ETCD_KEY].set)
		so->etcd_key = o[O_ETCD_KEY].value;
	uint64_t ms;
	if (o[O_HEARTBEAT].set) {
		if (parse_duration(o[O_HEARTBEAT].value, &ms) < 0 || !ms)
			return cli_fail("bad --heartbeat '%s': expected a duration",
					o[O_HEARTBEAT].value);
		so->cluster.heartbeat_ms = (int64_t)ms;
	}
	if (o[O_CRONTZ].set) {
		/* Set before any thread starts: cron reads local time in this zone. */
		setenv("TZ", o[O_CRONTZ].value, 1);
		tzset();
		so->cluster.cron_local_time = true;
	}
	if (o[O_DOWN].set) {
		if (parse_duration(o[O_DOWN].value, &ms) < 0 || !ms)
			return cli_fail("bad --down-after '%s': expected a duration",
					o[O_DOWN].value);
		so->cluster.down_after_ms = (int64_t)ms;
	}
	if (o[O_CLUSTER_CIDR].set) {
		struct berr err = {0};
		struct cidr range;
		if (cidr_parse(o[O_CLUSTER_CIDR].value, &range, "--cluster-cidr", &err) < 0)
			return cli_fail("%s", err.msg);
		if (range.prefix > 24 || range.prefix < 8)
			return cli_fail("bad --cluster-cidr '%s': expected a prefix from /8 to /24 "
					"(each node takes a /24)",
					o[O_CLUSTER_CIDR].value);
		so->cluster.cluster_cidr = range;
	}
	so->insecure = o[O_INSECURE].set;
	if (o[O_TLS_SAN].nvalues) {
		struct sbuf sb;
		sbuf_init(&sb);
		for (size_t i = 0; i < o[O_TLS_SAN].nvalues; i++) {
			const char *v = o[O_TLS_SAN].values[i];
			if (!*v || strlen(v) > 253 ||
			    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567"
				      "89.-") != strlen(v)) {
				sbuf_release(&sb);
				return cli_fail("bad --tls-san '%s': expected a host name or IPv4 "
						"address",
						v);
			}
			sbuf_addf(&sb, "%s%s", i ? "," : "", v);
		}
		so->tls_sans = sbuf_detach(&sb);
	}
	if (o[O_CERT_TTL].set) {
		if (parse_duration(o[O_CERT_TTL].value, &ms) < 0 || ms < 2000)
			return cli_fail("bad --cert-ttl '%s': expected a duration of 2s or more",
					o[O_CERT_TTL].value);
		so->node_cert_ttl_s = (int64_t)(ms / 1000);
	}
	if (o[O_PREEMPT_MAX_VICTIMS].set) {
		if (parse_int64(o[O_PREEMPT_MAX_VICTIMS].value, &n) < 0 || n < 1 || n > 1000000)
			return cli_fail("bad --preempt-max-victims '%s': expected a number from 1 "
					"to 1000000",
					o[O_PREEMPT_MAX_VICTIMS].value);
		so->cluster.preempt_max_victims = (size_t)n;
	}
	if (o[O_MAX_HEARTBEATS].set) {
		if (parse_int64(o[O_MAX_HEARTBEATS].value, &n) < 0 || n < 0 || n > 10000000)
			return cli_fail("bad --max-heartbeats '%s': expected a number from 0 (no "
					"limit) to 10000000",
					o[O_MAX_HEARTBEATS].value);
		so->cluster.max_heartbeats = n;
	}
	if (o[O_HISTORY_COUNT].set) {
		if (parse_int64(o[O_HISTORY_COUNT].value, &n) < 0 || n < 1 || n > 100000)
			return cli_fail(
			    "bad --task-history '%s': expected a number from 1 to 100000",
			    o[O_HISTORY_COUNT].value);
		so->cluster.ended_keep = (size_t)n;
	}
	if (o[O_HISTORY_AGE].set) {
		if (parse_duration(o[O_HISTORY_AGE].value, &ms) < 0 || !ms || ms > INT64_MAX / 4)
			return cli_fail("bad --task-history-age '%s': expected a duration",
					o[O_HISTORY_AGE].value);
		so->cluster.ended_max_age_ms = (int64_t)ms;
	}
	return 0;
}

/* At a daemon's return: the values of repeatable options (cli_parse). */
static void opts_release(struct cli_opt (*o)[O_COUNT])
{
	for (size_t i = 0; i < O_COUNT; i++)
		free((*o)[i].values);
}

/* The prologue the daemons share: parse the options, answer --help, apply
 * --quiet. Returns -1 to go on, else the exit status to return now. */
static int daemon_args(int argc, char **argv, struct cli_opt *o, const char *usage,
		       const char ***pos, size_t *npos)
{
	opts_init(o);
	if (cli_parse(argc, argv, o, O_COUNT, pos, npos) < 0)
		return 2;
	if (o[O_HELP].set) {
		cli_usage(usage, o, O_COUNT);
		return 0;
	}
	if (o[O_QUIET].set)
		log_set_level(LOG_WARN);
	if (o[O_LOG_FORMAT].set) {
		const char *f = o[O_LOG_FORMAT].value;
		if (strcmp(f, "text") && strcmp(f, "json")) {
			fprintf(stderr, "berth: --log-format: expected text or json, found '%s'\n",
				f);
			return 2;
		}
		log_set_format(!strcmp(f, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
	}
	return -1;
}

/* Tell the user how to reach the cluster, and write their client
 * configuration (cli.h) so that `berth job list` just works. */
static void client_setup_note(const char *who, const struct server_options *so)
{
	const char *host = so->addr;
	if (!strncmp(host, "0.0.0.0:", 8))
		host += 7; /* all addresses: the user reaches it on loopback */
	char *url = xasprintf("%s://%s%s", so->insecure ? "http" : "https",
			      *host == ':' ? "127.0.0.1" : "", host);
	if (so->insecure) {
		log_warn("%s: cluster ready at %s, INSECURE: no TLS, no authentication "
			 "(export BERTH_ADDR=%s)",
			 who, url, url);
	} else {
		cli_write_client_config(url, so->data_dir);
		log_info("%s: cluster ready at %s; the admin's credentials are in %s/client/ "
			 "(ca.pem, admin.token), agents join with %s/client/join.token",
			 who, url, so->data_dir, so->data_dir);
	}
	free(url);
}

int cmd_up(int argc, char **argv)
{
	struct cli_opt o[O_COUNT] __attribute__((cleanup(opts_release))) = {0};
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int rc = daemon_args(argc, argv, o,
			     "berth up [--data-dir DIR] [--addr HOST:PORT] [agent options]\n\n"
			     "Runs a whole single-node cluster (server + agent) in the foreground\n"
			     "until SIGINT/SIGTERM, which stops its tasks; state stays in DIR.",
			     &pos, &npos);
	if (rc >= 0)
		return rc;
	if (npos)
		return cli_fail("'berth up' takes no arguments (see --help)");
	struct server_options so;
	struct agent_options ao;
	if (server_opts_from_cli(o, &so) || agent_opts_from_cli(o, &ao))
		return 2;
	char *exe = self_exe();
	ao.exe = exe;
	ao.data_dir = so.data_dir;
	ao.stop_tasks_on_exit = true;
	if (!o[O_LISTEN].set)
		ao.listen = "127.0.0.1:0";
	block_stop_signals();
	log_set_prefix("up");
	struct berr err = {0};
	struct server *s = server_start(&so, &err);
	if (!s)
		return cli_fail("%s", err.msg);
	char *srv = xasprintf("%s://127.0.0.1:%d", so.insecure ? "http" : "https", server_port(s));
	ao.servers = srv;
	/* The agent joins its own server like any other: with the join token
	 * the server just wrote. */
	char *join_file = xasprintf("%s/client/join.token", so.data_dir);
	if (!so.insecure && !ao.join_token && !ao.join_token_file)
		ao.join_token_file = join_file;
	struct agent *a = agent_start(&ao, &err);
	if (!a) {
		server_stop(s);
		free(join_file);
		return cli_fail("%s", err.msg);
	}
	client_setup_note("berth up", &so);
	int sig = wait_for_signal();
	log_info("signal %d: stopping", sig);
	/* The server goes first so that the tasks we stop are not replaced;
	 * they run again at the next start. */
	server_stop(s);
	agent_stop(a);
	free(srv);
	free(join_file);
	free(exe);
	return 0;
}

int cmd_server(int argc, char **argv)
{
	struct cli_opt o[O_COUNT] __attribute__((cleanup(opts_release))) = {0};
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int rc =
	    daemon_args(argc, argv, o,
			"berth server --data-dir DIR --addr HOST:PORT [--store sqlite|etcd://...]",
			&pos, &npos);
	if (rc >= 0)
		return rc;
	struct server_options so;
	if (server_opts_from_cli(o, &so))
		return 2;
	block_stop_signals();
	log_set_prefix("server");
	/* A server's heap grows with its tasks (~600 MiB for 1M): in 2 MiB
	 * pages it takes a fraction of the page faults (docs/decisions.md,
	 * "Allocator"). Not for `berth up`, which stays small. */
	if (alloc_prefer_large_pages())
		log_debug("the heap grows in large pages where the kernel allows");
	struct berr err = {0};
	struct server *s = server_start(&so, &err);
	if (!s)
		return cli_fail("%s", err.msg);
	client_setup_note("berth server", &so);
	wait_for_signal();
	server_stop(s);
	return 0;
}

static int sim_int(struct cli_opt *o, int min, int *out)
{
	int64_t v;
	if (!o->set)
		return 0;
	if (parse_int64(o->value, &v) < 0 || v < min || v > 10000000)
		return cli_fail("bad %s '%s': expected a number >= %d", o->name, o->value, min);
	*out = (int)v;
	return 0;
}

/* berth agent --simulate N: simulated agents (src/tools/simulator.h) with the
 * resources and attributes of the agent options (defaults: 8 cpu, 16 GiB). */
static int cmd_agent_simulate(struct cli_opt *o, const struct agent_options *ao)
{
	struct simulator_options so;
	simulator_options_defaults(&so);
	if (sim_int(&o[O_SIMULATE], 1, &so.count) || sim_int(&o[O_SIM_RACKS], 0, &so.racks) ||
	    sim_int(&o[O_SIM_ZONES], 0, &so.zones) ||
	    sim_int(&o[O_SIM_RATE], 1, &so.register_rate) ||
	    sim_int(&o[O_SIM_THREADS], 1, &so.threads))
		return 2;
	if (ao->name)
		so.prefix = ao->name;
	if (ao->servers)
		so.servers = ao->servers;
	if (ao->cpu > 0)
		so.cpu = ao->cpu;
	if (ao->memory)
		so.memory = ao->memory;
	if (o[O_DISK].set)
		so.disk = ao->disk;
	so.port_lo = ao->port_lo;
	so.port_hi = ao->port_hi;
	so.attrs = ao->attrs;
	so.nattrs = ao->nattrs;
	so.shared_key = o[O_SIM_SHARED_KEY].set;
	so.source_addrs = o[O_SIM_SOURCE_ADDRS].set;
	/* TLS: the join token (the CA comes with --cacert/BERTH_CACERT, or
	 * from the server, checked against the token). */
	_cleanup_free_ char *token = NULL;
	if (o[O_JOIN_TOKEN_FILE].set && o[O_JOIN_TOKEN].set)
		return cli_fail("give --join-token-file or --join-token, not both");
	if (o[O_JOIN_TOKEN_FILE].set) {
		size_t n = 0;
		int r = file_read_all(o[O_JOIN_TOKEN_FILE].value, &token, &n);
		if (r < 0)
			return cli_fail("cannot read --join-token-file '%s': %s",
					o[O_JOIN_TOKEN_FILE].value, strerror(-r));
		token[strcspn(token, " \t\r\n")] = 0;
		if (!*token)
			return cli_fail("--join-token-file '%s' is empty",
					o[O_JOIN_TOKEN_FILE].value);
	} else if (o[O_JOIN_TOKEN].set) {
		token = xstrdup(o[O_JOIN_TOKEN].value);
	}
	so.join_token = token;
	const char *cacert = getenv("BERTH_CACERT");
	if (cacert && *cacert && token)
		so.cacert = cacert;
	char prefix[160];
	snprintf(prefix, sizeof prefix, "simulator %s", so.prefix);
	log_set_prefix(prefix);
	int rc = simulator_run(&so);
	if (token)
		explicit_bzero(token, strlen(token));
	for (size_t i = 0; i < ao->nattrs; i++) {
		free(ao->attrs[i].key);
		free(ao->attrs[i].value);
	}
	free(ao->attrs);
	free(o[O_ATTR].values);
	return rc;
}

int cmd_agent(int argc, char **argv)
{
	struct cli_opt o[O_COUNT] __attribute__((cleanup(opts_release))) = {0};
	_cleanup_free_ const char **pos = NULL;
	size_t npos;
	int rc = daemon_args(argc, argv, o,
			     "berth agent --server HOST:PORT[,HOST:PORT...] --data-dir DIR "
			     "[--name N] [--attr k=v]...",
			     &pos, &npos);
	if (rc >= 0)
		return rc;
	struct agent_options ao;
	if (agent_opts_from_cli(o, &ao))
		return 2;
	char *exe = self_exe();
	ao.exe = exe;
	ao.data_dir = o[O_DATA].set ? o[O_DATA].value : "berth-agent-data";
	if (o[O_SERVERS].set)
		ao.servers = o[O_SERVERS].value;
	else if (getenv("BERTH_ADDR"))
		ao.servers = getenv("BERTH_ADDR");
	if (o[O_SIMULATE].set) {
		free(exe);
		return cmd_agent_simulate(o, &ao);
	}
	block_stop_signals();
	char prefix[128];
	snprintf(prefix, sizeof prefix, "agent %s", ao.name ? ao.name : "");
	log_set_prefix(prefix);
	struct berr err = {0};
	struct agent *a = agent_start(&ao, &err);
	if (!a)
		return cli_fail("%s", err.msg);
	wait_for_signal();
	agent_stop(a);
	free(exe);
	return 0;
}

int cmd_supervise(int argc, char **argv)
{
	/* main() hands us the words after "supervise"; the supervisor wants
	 * argv[0] = "supervise", argv[1] = the sandbox. */
	return supervisor_main(argc + 1, argv - 1);
}

int cmd_task_exec(int argc, char **argv)
{
	return task_exec_main(argc, argv);
}
