/* agent.h - the berth agent: registers its node with the server, watches
 * for the tasks the node should run, runs each under a supervisor, reports
 * what happens to them, and serves their logs.
 *
 * Threads:
 *  - watch: register, then long-poll /v1/agent/watch (heartbeat + full-state
 *    report); each reply is the node's desired task set, reconciled at once
 *    (start what is missing, stop what is not wanted).
 *  - events: receives supervisors' notifications (a unix datagram socket)
 *    and sends task status updates to the server.
 *  - logs: a small HTTP listener for /v1/logs/TASK.
 * Tasks outlive the agent: on start it re-adopts every sandbox whose
 * supervisor is alive and reports those that ended while it was away.
 */
#ifndef BERTH_AGENT_H
#define BERTH_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/spec.h"
#include "core/util.h"

struct agent_options {
	const char *name; /* default: the host name */
	const char *data_dir;
	const char *servers; /* comma-separated server addresses */
	/* The join token (or a file holding it) for a TLS cluster: once, to get
	 * the node certificate kept in DATA/node (docs/security.md). */
	const char *join_token, *join_token_file;
	struct spec_kv *attrs; /* --attr k=v */
	size_t nattrs;
	double cpu;	       /* 0 = detect */
	uint64_t memory, disk; /* 0 = detect */
	int port_lo, port_hi;
	const char *cgroup_parent; /* default "berth" */
	/* berth's own cgroup (the agent and the supervisors), a sibling of the
	 * tasks' parent with SYSTEM_CGROUP_WEIGHT: tasks cannot starve it.
	 * Default "berth-system"; NULL, "" or "none" = stay where started. */
	const char *system_cgroup;
	const char *listen;	   /* logs listener, default "0.0.0.0:0" */
	const char *exe;	   /* the berth binary (for `berth supervise`) */
	const char *docker_socket; /* Docker Engine socket; NULL = /var/run/docker.sock */
	bool stop_tasks_on_exit;   /* berth up: Ctrl-C stops the tasks */
	bool allow_root_tasks;	   /* exec tasks may run as root (--allow-root-tasks) */
	uint64_t log_max_bytes;
	int log_max_files;
	/* --volume-root: the only host paths task.volumes may name (and what
	 * is below them); none = no host volume (agent/host_volumes.h). */
	const char *const *volume_roots;
	size_t nvolume_roots;
	/* The tasks' name server (agent/dns_server.h): "IP:PORT", "off", or
	 * NULL for auto (127.0.0.153:53 when it can be bound and the host has
	 * an IPv4 resolver to forward to; else none, and tasks keep the
	 * host's resolv.conf). upstreams: none = /etc/resolv.conf's. */
	const char *dns_listen;
	const char *const *dns_upstreams;
	size_t ndns_upstreams;
	/* Image download caps (0 = the defaults, image.h): an image's
	 * compressed blobs, and its layers once unpacked. */
	uint64_t image_max_bytes, image_max_unpacked_bytes;
};

struct agent;

void agent_options_defaults(struct agent_options *o);
struct agent *agent_start(const struct agent_options *o, struct berr *err);
void agent_stop(struct agent *a);

#endif
