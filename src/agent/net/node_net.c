/* node_net.c - the node's side of the cluster network (see node_net.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/net/ipam.h"
#include "agent/net/nat_rules.h"
#include "agent/net/netlink.h"
#include "agent/net/node_net.h"
#include "agent/net/task_net.h"
#include "core/log.h"

struct peer {
	struct cidr subnet;
	uint32_t ip;
};

struct node_net {
	pthread_mutex_t lock;
	char *netns_dir, *addrs_dir, *ports_dir;
	bool have_subnet;
	struct cidr cluster, subnet;
	struct ipam *ipam;
	bool up; /* bridge, forwarding and table set up */
	struct peer *peers;
	size_t npeers;
};

struct node_net *node_net_new(const char *data_dir)
{
	struct node_net *n = xcalloc(1, sizeof *n);
	pthread_mutex_init(&n->lock, NULL);
	n->netns_dir = xasprintf("%s/net/netns", data_dir);
	n->addrs_dir = xasprintf("%s/net/addrs", data_dir);
	n->ports_dir = xasprintf("%s/net/ports", data_dir);
	return n;
}

void node_net_free(struct node_net *n)
{
	if (!n)
		return;
	ipam_free(n->ipam);
	free(n->peers);
	free(n->netns_dir);
	free(n->addrs_dir);
	free(n->ports_dir);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

static bool keep_route(void *ud, const struct cidr *dst)
{
	struct node_net *n = ud;
	for (size_t i = 0; i < n->npeers; i++)
		if (n->peers[i].subnet.base == dst->base &&
		    n->peers[i].subnet.prefix == dst->prefix)
			return true;
	return false;
}

/* Under the lock, with the network up: the routes to the peers' subnets. */
static void program_routes(struct node_net *n)
{
	struct berr err = {0};
	for (size_t i = 0; i < n->npeers; i++)
		if (netlink_route_replace(&n->peers[i].subnet, n->peers[i].ip, &err) < 0) {
			log_warn("network: %s", err.msg);
			err = (struct berr){0};
		}
	if (netlink_routes_prune(keep_route, n, &err) < 0)
		log_warn("network: %s", err.msg);
}

static int network_up(struct node_net *n, struct berr *err);

/* Are there task networks on disk (re-adopted tasks)? */
static bool has_task_networks(struct node_net *n)
{
	DIR *d = opendir(n->netns_dir);
	struct dirent *de;
	bool any = false;
	while (d && !any && (de = readdir(d)))
		any = de->d_name[0] != '.';
	if (d)
		closedir(d);
	return any;
}

int node_net_configure(struct node_net *n, json_t *net, struct berr *err)
{
	struct cidr cluster, subnet;
	const char *cs = json_string_value(json_object_get(net, "cluster_cidr"));
	const char *ss = json_string_value(json_object_get(net, "subnet"));
	if (!cs || !ss)
		return 0; /* the server gave this node no subnet */
	if (cidr_parse(cs, &cluster, "cluster network", err) < 0 ||
	    cidr_parse(ss, &subnet, "node subnet", err) < 0)
		return -1;
	if (subnet.prefix < 16 || subnet.prefix > 30 || !cidr_contains(&cluster, subnet.base))
		return berr_set(err, 400, "node subnet %s is not a /16 to /30 of %s", ss, cs);
	json_t *plist = json_object_get(net, "peers");
	size_t np = json_array_size(plist);
	struct peer *peers = xcalloc(np + 1, sizeof *peers);
	size_t k = 0;
	for (size_t i = 0; i < np; i++) {
		json_t *p = json_array_get(plist, i);
		struct berr perr = {0};
		/* A peer on our own loopback (agents sharing a host) is reached
		 * without a route. */
		if (ip4_parse(json_string_value(json_object_get(p, "ip")), &peers[k].ip) < 0 ||
		    (peers[k].ip >> 24) == 127 ||
		    cidr_parse(json_string_value(json_object_get(p, "subnet")), &peers[k].subnet,
			       "peer subnet", &perr) < 0 ||
		    !cidr_contains(&cluster, peers[k].subnet.base) ||
		    cidr_contains(&subnet, peers[k].subnet.base))
			continue; /* not a route we can use */
		k++;
	}
	pthread_mutex_lock(&n->lock);
	if (!n->have_subnet || n->subnet.base != subnet.base || n->subnet.prefix != subnet.prefix) {
		char a[CIDR_TEXT_MAX];
		if (n->have_subnet)
			log_warn("network: the node's subnet changed to %s",
				 cidr_format(&subnet, a));
		else
			log_info("network: node subnet %s", cidr_format(&subnet, a));
		ipam_free(n->ipam);
		n->ipam = ipam_new(n->addrs_dir, &subnet);
		n->subnet = subnet;
		n->have_subnet = true;
		n->up = false;
	}
	n->cluster = cluster;
	/* A restarted agent whose re-adopted tasks have networks brings the
	 * node's side up again at once (peers' routes keep following). */
	struct berr uerr = {0};
	if (!n->up && has_task_networks(n) && network_up(n, &uerr) < 0)
		log_warn("network: %s", uerr.msg);
	if (json_object_get(net, "peers")) {
		free(n->peers);
		n->peers = peers;
		n->npeers = k;
		peers = NULL;
		/* Routes whether or not this node runs bridge tasks: its own
		 * processes (the mesh, health checks) reach tasks elsewhere. */
		program_routes(n);
	}
	pthread_mutex_unlock(&n->lock);
	free(peers);
	return 0;
}

static int write_sysctl(const char *path, const char *value, struct berr *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, value, strlen(value)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return berr_set(err, 0, "cannot write '%s': %s", path, strerror(e));
	}
	close(fd);
	return 0;
}

static void teardown(struct node_net *n, const char *task_id);

/* Under the lock, the network up: berth's nftables table with the port maps
 * of every task that has some (DATA/net/ports/ID: "PORT PORT ..."). */
static int write_nat(struct node_net *n, struct berr *err)
{
	struct nat_port_map *maps = NULL;
	size_t nmaps = 0;
	DIR *d = opendir(n->ports_dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		uint32_t ip = ipam_lookup(n->ipam, de->d_name);
		char *path = xasprintf("%s/%s", n->ports_dir, de->d_name);
		FILE *f = ip ? fopen(path, "re") : NULL;
		free(path);
		int port;
		while (f && fscanf(f, "%d", &port) == 1) {
			if (port <= 0 || port > 65535)
				continue;
			maps = xrealloc(maps, (nmaps + 1) * sizeof *maps);
			maps[nmaps++] = (struct nat_port_map){ip, (uint16_t)port};
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	int r = nat_rules_write(&n->cluster, NODE_NET_BRIDGE, maps, nmaps, err);
	free(maps);
	return r;
}

/* Under the lock: the bridge, forwarding, the table and the routes. */
static int network_up(struct node_net *n, struct berr *err)
{
	if (n->up)
		return 0;
	if (!n->have_subnet)
		return berr_set(err, 503, "this node has no subnet of the cluster network yet");
	if (netlink_bridge_ensure(NODE_NET_BRIDGE, n->subnet.base + 1, n->subnet.prefix, err) < 0 ||
	    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", err) < 0 ||
	    write_sysctl("/proc/sys/net/ipv4/conf/" NODE_NET_BRIDGE "/route_localnet", "1", err) <
		0)
		return -1;
	mkdir_p(n->netns_dir, 0700);
	mkdir_p(n->ports_dir, 0700);
	if (write_nat(n, err) < 0)
		return -1;
	n->up = true;
	program_routes(n);
	char a[CIDR_TEXT_MAX];
	log_info("network: bridge %s up on %s, %zu peer route(s)", NODE_NET_BRIDGE,
		 cidr_format(&n->subnet, a), n->npeers);
	return 0;
}

static int task_setup(struct node_net *n, const char *task_id, const int *ports, size_t nports,
		      bool make_netns, uint32_t *ip, char **netns_path, struct berr *err)
{
	pthread_mutex_lock(&n->lock);
	int rc = -1;
	if (network_up(n, err) < 0 || ipam_acquire(n->ipam, task_id, ip, err) < 0)
		goto out;
	char ifname[IFNAMSIZ];
	task_net_host_ifname(task_id, ifname);
	char *path = xasprintf("%s/%s", n->netns_dir, task_id);
	if (make_netns && task_net_create(path, ifname, NODE_NET_BRIDGE, *ip, n->subnet.prefix,
					  n->subnet.base + 1, err) < 0) {
		ipam_release(n->ipam, task_id);
		free(path);
		goto out;
	}
	*netns_path = path;
	if (nports) {
		struct sbuf sb;
		sbuf_init(&sb);
		for (size_t i = 0; i < nports; i++)
			sbuf_addf(&sb, "%d\n", ports[i]);
		char *pf = xasprintf("%s/%s", n->ports_dir, task_id);
		int w = file_write_atomic(pf, sb.buf, sb.len);
		free(pf);
		sbuf_release(&sb);
		if (w < 0 || write_nat(n, err) < 0) {
			if (w < 0)
				berr_set(err, 0, "cannot record the task's ports: %s",
					 strerror(-w));
			teardown(n, task_id);
			free(*netns_path);
			*netns_path = NULL;
			goto out;
		}
	}
	rc = 0;
out:
	pthread_mutex_unlock(&n->lock);
	return rc;
}

int node_net_task_setup(struct node_net *n, const char *task_id, const int *ports, size_t nports,
			uint32_t *ip, char **netns_path, struct berr *err)
{
	return task_setup(n, task_id, ports, nports, true, ip, netns_path, err);
}

int node_net_task_reserve(struct node_net *n, const char *task_id, const int *ports, size_t nports,
			  uint32_t *ip, int *prefix, char **netns_path, struct berr *err)
{
	int r = task_setup(n, task_id, ports, nports, false, ip, netns_path, err);
	if (r == 0) {
		pthread_mutex_lock(&n->lock);
		*prefix = n->subnet.prefix;
		pthread_mutex_unlock(&n->lock);
	}
	return r;
}

uint32_t node_net_gateway(struct node_net *n)
{
	pthread_mutex_lock(&n->lock);
	uint32_t gw = n->have_subnet ? n->subnet.base + 1 : 0;
	pthread_mutex_unlock(&n->lock);
	return gw;
}

bool node_net_active(struct node_net *n)
{
	pthread_mutex_lock(&n->lock);
	bool up = n->up;
	pthread_mutex_unlock(&n->lock);
	return up;
}

uint32_t node_net_task_address(struct node_net *n, const char *task_id)
{
	pthread_mutex_lock(&n->lock);
	uint32_t ip = 0;
	if (n->ipam) {
		ip = ipam_lookup(n->ipam, task_id);
	} else {
		/* Before the server told us our subnet (re-adoption at start). */
		struct cidr all = {0, 0};
		struct ipam *scan = ipam_new(n->addrs_dir, &all);
		ip = ipam_lookup(scan, task_id);
		ipam_free(scan);
	}
	pthread_mutex_unlock(&n->lock);
	return ip;
}

/* Under the lock. */
static void teardown(struct node_net *n, const char *task_id)
{
	char ifname[IFNAMSIZ];
	task_net_host_ifname(task_id, ifname);
	char *path = xasprintf("%s/%s", n->netns_dir, task_id);
	struct berr err = {0};
	if (task_net_destroy(path, ifname, &err) < 0)
		log_warn("network: task %s: %s", task_id, err.msg);
	free(path);
	if (n->ipam)
		ipam_release(n->ipam, task_id);
	char *pf = xasprintf("%s/%s", n->ports_dir, task_id);
	bool had_ports = unlink(pf) == 0;
	free(pf);
	if (had_ports && n->up && write_nat(n, &err) < 0)
		log_warn("network: %s", err.msg);
}

void node_net_task_teardown(struct node_net *n, const char *task_id)
{
	pthread_mutex_lock(&n->lock);
	teardown(n, task_id);
	pthread_mutex_unlock(&n->lock);
}

struct gc_ctx {
	struct node_net *n;
	enum node_net_task_fate (*fate)(void *ud, const char *task_id);
	void *ud;
	char **gone;
	size_t ngone;
};

/* Is the file at dir/name older than the grace period? */
static bool old_enough(const char *dir, const char *name)
{
	struct stat st;
	char *path = xasprintf("%s/%s", dir, name);
	int r = lstat(path, &st);
	free(path);
	return r == 0 && time(NULL) - st.st_mtime > NODE_NET_UNKNOWN_GRACE_S;
}

static void gc_consider(struct gc_ctx *g, const char *task_id, const char *dir, const char *name)
{
	for (size_t i = 0; i < g->ngone; i++)
		if (!strcmp(g->gone[i], task_id))
			return;
	enum node_net_task_fate f = g->fate(g->ud, task_id);
	if (f == NODE_NET_KEEP || (f == NODE_NET_UNKNOWN && !old_enough(dir, name)))
		return;
	g->gone = xrealloc(g->gone, (g->ngone + 1) * sizeof *g->gone);
	g->gone[g->ngone++] = xstrdup(task_id);
}

static void gc_addr(void *arg, uint32_t ip, const char *task_id)
{
	struct gc_ctx *g = arg;
	char name[16];
	gc_consider(g, task_id, g->n->addrs_dir, ip4_format(ip, name));
}

void node_net_gc(struct node_net *n, enum node_net_task_fate (*fate)(void *ud, const char *task_id),
		 void *ud)
{
	struct gc_ctx g = {n, fate, ud, NULL, 0};
	pthread_mutex_lock(&n->lock);
	DIR *d = opendir(n->netns_dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			gc_consider(&g, de->d_name, n->netns_dir, de->d_name);
	if (d)
		closedir(d);
	/* Addresses whose task is gone, even without a namespace (a set-up cut
	 * short by a crash), in any subnet this node had. */
	struct cidr all = {0, 0};
	struct ipam *scan = ipam_new(n->addrs_dir, &all);
	ipam_each(scan, gc_addr, &g);
	for (size_t i = 0; i < g.ngone; i++) {
		log_info("network: released the network of task %s", g.gone[i]);
		teardown(n, g.gone[i]);
		ipam_release(scan, g.gone[i]);
		free(g.gone[i]);
	}
	ipam_free(scan);
	free(g.gone);
	pthread_mutex_unlock(&n->lock);
}
