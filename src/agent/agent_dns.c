/* agent_dns.c - the agent's name server for its tasks (dns_server.h) and
 * the resolv.conf each task gets: the host's, with our address as its only
 * nameserver (search and options lines kept). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent-internal.h"
#include "agent/dns_server.h"
#include "core/log.h"

#define DNS_AUTO_LISTEN "127.0.0.153:53"

int agent_dns_start(struct agent *a, struct berr *err)
{
	const char *listen = a->o.dns_listen;
	bool automatic = !listen || !*listen || !strcmp(listen, "auto");
	if (listen && !strcmp(listen, "off"))
		return 0;
	struct dns_server_options o = {
	    .listen = automatic ? DNS_AUTO_LISTEN : listen,
	    .upstreams = a->o.dns_upstreams,
	    .nupstreams = a->o.ndns_upstreams,
	    .endpoints = a->endpoints,
	};
	struct berr e = {0};
	a->dns = dns_server_start(&o, &e);
	if (!a->dns) {
		if (!automatic) {
			*err = e;
			return -1;
		}
		log_warn("no name server for tasks (they keep the host's resolv.conf): %s", e.msg);
		return 0;
	}
	if (automatic && !strcmp(dns_server_upstreams(a->dns), "none")) {
		/* Tasks would lose every other name: leave them the host's. */
		log_warn("no name server for tasks: no IPv4 nameserver in /etc/resolv.conf to "
			 "forward to (see --dns-upstream)");
		dns_server_stop(a->dns);
		a->dns = NULL;
		return 0;
	}
	log_info("name server for tasks on %s (other names to %s)", o.listen,
		 dns_server_upstreams(a->dns));
	return 0;
}

/* The name server on the bridge's address: same table, same upstreams. */
const char *agent_dns_bridge(struct agent *a, uint32_t gw, struct berr *err)
{
	if (!a->dns)
		return NULL;
	pthread_mutex_lock(&a->lock);
	if (!a->dns_bridge) {
		char ip[16], listen[32];
		snprintf(listen, sizeof listen, "%s:53", ip4_format(gw, ip));
		struct dns_server_options o = {
		    .listen = listen,
		    .upstreams = a->o.dns_upstreams,
		    .nupstreams = a->o.ndns_upstreams,
		    .endpoints = a->endpoints,
		};
		a->dns_bridge = dns_server_start(&o, err);
		if (a->dns_bridge)
			log_info("name server for bridge tasks on %s", listen);
	}
	const char *addr = a->dns_bridge ? dns_server_address(a->dns_bridge) : NULL;
	pthread_mutex_unlock(&a->lock);
	return addr;
}

int agent_dns_resolv_conf(struct agent *a, const char *sandbox, uint32_t bridge_gw,
			  struct berr *err)
{
	if (!a->dns)
		return 0;
	const char *nameserver = dns_server_address(a->dns);
	if (bridge_gw && !(nameserver = agent_dns_bridge(a, bridge_gw, err)))
		return -1;
	int r = mkdir_p(sandbox, 0700);
	if (r < 0)
		return berr_set(err, 500, "cannot create '%s': %s", sandbox, strerror(-r));
	struct sbuf sb;
	sbuf_init(&sb);
	sbuf_addf(&sb,
		  "# written by berth: the node's name server (NAME.ENV.ROLE.berth)\n"
		  "nameserver %s\n",
		  nameserver);
	FILE *host = fopen("/etc/resolv.conf", "r");
	char line[512];
	while (host && fgets(line, sizeof line, host))
		if (!strncmp(line, "search", 6) || !strncmp(line, "domain", 6) ||
		    !strncmp(line, "options", 7))
			sbuf_addf(&sb, "%s%s", line, strchr(line, '\n') ? "" : "\n");
	if (host)
		fclose(host);
	char *path = xasprintf("%s/resolv.conf", sandbox);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	int rc = 0;
	if (fd < 0 || write(fd, sb.buf, sb.len) != (ssize_t)sb.len || fchmod(fd, 0644) < 0)
		rc = berr_set(err, 500, "cannot write '%s': %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(path);
	sbuf_release(&sb);
	return rc;
}
