/* supervisor_files.c - the files of a task's sandbox that the agent and the
 * supervisor share (supervisor.h has the layout): launch.json written by
 * the agent and read by the supervisor, status.json the other way, and
 * supervisor.pid, by which the agent finds the supervisor again. Encoding
 * and decoding of each sit side by side. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/driver/driver.h"
#include "agent/supervisor-internal.h"
#include "core/cidr.h"

char *sandbox_file(const char *sandbox, const char *name)
{
	return xasprintf("%s/%s", sandbox, name);
}

/* Replace a file atomically (readers see the old or the new content,
 * never a mix). Only `durable` writes are fsync'ed: a task's launch.json
 * and its transient phases mean nothing after a machine crash (the task
 * died with the machine), and two fsyncs (0.4 ms idle, 5-15 ms on a busy
 * disk here) would be most of the launch latency budget. */
int sandbox_write_atomic(const char *path, const char *data, size_t len, bool durable)
{
	if (durable)
		return file_write_atomic(path, data, len);
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	/* 0600: launch.json holds the task's env values. */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int r = 0;
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			r = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
out:
	free(tmp);
	return r;
}

/* ---- launch.json ---- */

static json_t *str_array(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i] ? v[i] : ""));
	return a;
}

json_t *launch_to_json(const struct task_launch *l, const char *sandbox)
{
	json_t *o = json_object();
	json_object_set_new(o, "task_id", json_string(l->task_id));
	json_object_set_new(o, "job_key", json_string(l->job_key ? l->job_key : ""));
	json_object_set_new(o, "instance", json_integer(l->instance));
	json_object_set_new(o, "driver", json_string(task_driver_name(l->driver)));
	json_object_set_new(o, "sandbox_dir", json_string(sandbox));
	json_object_set_new(o, "image", json_string(l->image ? l->image : ""));
	json_object_set_new(o, "runtime", json_string(l->runtime ? l->runtime : ""));
	json_object_set_new(o, "docker_socket",
			    json_string(l->docker_socket ? l->docker_socket : ""));
	/* absolute: the supervisor works from / */
	char *dd = l->data_dir && *l->data_dir ? realpath(l->data_dir, NULL) : NULL;
	json_object_set_new(o, "data_dir", json_string(dd ? dd : l->data_dir ? l->data_dir : ""));
	free(dd);
	json_object_set_new(o, "argv", str_array(l->argv, l->argc));
	json_object_set_new(o, "env", str_array(l->env, l->nenv));
	json_object_set_new(o, "user", json_string(l->user ? l->user : ""));
	if (l->allow_root_tasks)
		json_object_set_new(o, "allow_root_tasks", json_true());
	json_object_set_new(o, "cpu", json_real(l->cpu));
	json_object_set_new(o, "memory_bytes", json_integer((json_int_t)l->memory_bytes));
	json_object_set_new(o, "stop_grace_ms", json_integer((json_int_t)l->stop_grace_ms));
	json_object_set_new(o, "cgroup_parent",
			    json_string(l->cgroup_parent ? l->cgroup_parent : ""));
	json_object_set_new(o, "notify_socket",
			    json_string(l->notify_socket ? l->notify_socket : ""));
	json_object_set_new(o, "log_max_bytes", json_integer((json_int_t)l->log_max_bytes));
	json_object_set_new(o, "log_max_files", json_integer(l->log_max_files));
	json_object_set_new(o, "image_max_bytes", json_integer((json_int_t)l->image_max_bytes));
	json_object_set_new(o, "image_max_unpacked_bytes",
			    json_integer((json_int_t)l->image_max_unpacked_bytes));
	json_t *vols = json_array();
	for (size_t i = 0; i < l->nvolumes; i++)
		json_array_append_new(vols, json_pack("{s:s,s:s,s:b}", "host", l->volume_host[i],
						      "path", l->volume_path[i], "read_only",
						      l->volume_ro ? l->volume_ro[i] : 0));
	json_object_set_new(o, "volumes", vols);
	if (l->netns_path)
		json_object_set_new(o, "netns_path", json_string(l->netns_path));
	if (l->net_address) {
		char ip[16], gw[16];
		json_object_set_new(o, "net_address", json_string(ip4_format(l->net_address, ip)));
		json_object_set_new(o, "net_prefix", json_integer(l->net_prefix));
		json_object_set_new(o, "net_gateway", json_string(ip4_format(l->net_gateway, gw)));
	}
	if (l->nsecrets) {
		json_t *secs = json_array();
		for (size_t i = 0; i < l->nsecrets; i++)
			json_array_append_new(secs,
					      json_pack("{s:s,s:s}", "file", l->secret_file[i],
							"path", l->secret_path[i]));
		json_object_set_new(o, "secrets", secs);
	}
	return o;
}

/* A task_launch whose strings point into the JSON document it came from. */

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && *s ? s : NULL;
}

static int64_t jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static char **jstr_array(json_t *o, const char *key, size_t *n)
{
	json_t *a = json_object_get(o, key);
	size_t len = json_is_array(a) ? json_array_size(a) : 0;
	char **v = xcalloc(len + 1, sizeof *v);
	*n = 0;
	for (size_t i = 0; i < len; i++) {
		const char *s = json_string_value(json_array_get(a, i));
		if (s)
			v[(*n)++] = (char *)s;
	}
	return v;
}

int launch_read(const char *sandbox, struct launch_doc *d, struct berr *err)
{
	memset(d, 0, sizeof *d);
	char *path = sandbox_file(sandbox, "launch.json");
	json_error_t je;
	d->root = json_load_file(path, 0, &je);
	if (!d->root) {
		berr_set(err, 0, "cannot read '%s': %s", path, je.text);
		free(path);
		return -1;
	}
	free(path);
	json_t *o = d->root;
	struct task_launch *l = &d->l;
	l->task_id = jstr(o, "task_id");
	l->job_key = jstr(o, "job_key");
	l->instance = (int)jint(o, "instance");
	const char *driver = jstr(o, "driver");
	if (driver && task_driver_parse(driver, &l->driver) < 0)
		return berr_set(err, 0, "launch.json: unknown driver '%s'", driver);
	l->sandbox_dir = jstr(o, "sandbox_dir");
	l->image = jstr(o, "image");
	l->runtime = jstr(o, "runtime");
	l->docker_socket = jstr(o, "docker_socket");
	l->data_dir = jstr(o, "data_dir");
	d->argv = jstr_array(o, "argv", &l->argc);
	l->argv = d->argv;
	d->env = jstr_array(o, "env", &l->nenv);
	l->env = d->env;
	l->user = jstr(o, "user");
	l->allow_root_tasks = json_is_true(json_object_get(o, "allow_root_tasks"));
	json_t *cpu = json_object_get(o, "cpu");
	l->cpu = json_is_number(cpu) ? json_number_value(cpu) : 0;
	l->memory_bytes = (uint64_t)jint(o, "memory_bytes");
	l->stop_grace_ms = (uint64_t)jint(o, "stop_grace_ms");
	l->cgroup_parent = jstr(o, "cgroup_parent");
	l->notify_socket = jstr(o, "notify_socket");
	l->log_max_bytes = (uint64_t)jint(o, "log_max_bytes");
	l->log_max_files = (int)jint(o, "log_max_files");
	l->image_max_bytes = (uint64_t)jint(o, "image_max_bytes");
	l->image_max_unpacked_bytes = (uint64_t)jint(o, "image_max_unpacked_bytes");
	json_t *vols = json_object_get(o, "volumes");
	size_t nv = json_is_array(vols) ? json_array_size(vols) : 0;
	d->vhost = xcalloc(nv + 1, sizeof *d->vhost);
	d->vpath = xcalloc(nv + 1, sizeof *d->vpath);
	d->vro = xcalloc(nv + 1, sizeof *d->vro);
	for (size_t i = 0; i < nv; i++) {
		json_t *v = json_array_get(vols, i);
		const char *h = jstr(v, "host"), *p = jstr(v, "path");
		if (!h || !p)
			return berr_set(err, 0, "launch.json: volume %zu without host or path", i);
		d->vhost[l->nvolumes] = h;
		d->vpath[l->nvolumes] = p;
		d->vro[l->nvolumes++] = json_is_true(json_object_get(v, "read_only"));
	}
	l->volume_host = d->vhost;
	l->volume_path = d->vpath;
	l->volume_ro = d->vro;
	json_t *secs = json_object_get(o, "secrets");
	size_t ns = json_is_array(secs) ? json_array_size(secs) : 0;
	d->sfile = xcalloc(ns + 1, sizeof *d->sfile);
	d->spath = xcalloc(ns + 1, sizeof *d->spath);
	for (size_t i = 0; i < ns; i++) {
		json_t *v = json_array_get(secs, i);
		const char *f = jstr(v, "file"), *p = jstr(v, "path");
		if (!f || !p || *f != '/' || *p != '/')
			return berr_set(err, 0, "launch.json: secret %zu without file or path", i);
		d->sfile[l->nsecrets] = f;
		d->spath[l->nsecrets++] = p;
	}
	l->secret_file = d->sfile;
	l->secret_path = d->spath;
	l->netns_path = jstr(o, "netns_path");
	if (l->netns_path && *l->netns_path != '/')
		return berr_set(err, 0, "launch.json: 'netns_path' is not absolute");
	const char *na = jstr(o, "net_address");
	if (na) {
		json_int_t prefix = json_integer_value(json_object_get(o, "net_prefix"));
		if (ip4_parse(na, &l->net_address) < 0 ||
		    ip4_parse(jstr(o, "net_gateway"), &l->net_gateway) < 0 || prefix < 8 ||
		    prefix > 30 || !l->netns_path)
			return berr_set(err, 0,
					"launch.json: bad 'net_address', 'net_prefix', "
					"'net_gateway' or no 'netns_path'");
		l->net_prefix = (int)prefix;
	}
	if (!l->task_id)
		return berr_set(err, 0, "launch.json: missing 'task_id'");
	if (l->argc == 0 && !driver_get(l->driver)->needs_image)
		return berr_set(err, 0, "launch.json: empty 'argv'");
	return 0;
}

void launch_doc_free(struct launch_doc *d)
{
	free(d->argv);
	free(d->env);
	free(d->vhost);
	free(d->vpath);
	free(d->vro);
	free(d->sfile);
	free(d->spath);
	json_decref(d->root);
	memset(d, 0, sizeof *d);
}

/* ---- status.json ---- */

static const char *phase_name(enum task_phase p)
{
	switch (p) {
	case PHASE_STARTING:
		return "starting";
	case PHASE_RUNNING:
		return "running";
	case PHASE_EXITED:
		return "exited";
	default:
		return "unknown";
	}
}

static enum task_phase phase_parse(const char *s)
{
	if (!s)
		return PHASE_UNKNOWN;
	if (!strcmp(s, "starting"))
		return PHASE_STARTING;
	if (!strcmp(s, "running"))
		return PHASE_RUNNING;
	if (!strcmp(s, "exited"))
		return PHASE_EXITED;
	return PHASE_UNKNOWN;
}

int report_write(const char *sandbox, const char *task_id, const struct task_report *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "task_id", json_string(task_id ? task_id : ""));
	json_object_set_new(o, "phase", json_string(phase_name(r->phase)));
	json_object_set_new(o, "supervisor_pid", json_integer(r->supervisor_pid));
	json_object_set_new(o, "pid", json_integer(r->pid));
	json_object_set_new(o, "exit_code", json_integer(r->exit_code));
	json_object_set_new(o, "signal", json_integer(r->signal));
	json_object_set_new(o, "oom", json_boolean(r->oom));
	json_object_set_new(o, "stopped", json_boolean(r->stopped));
	json_object_set_new(o, "started_ms", json_integer(r->started_ms));
	json_object_set_new(o, "finished_ms", json_integer(r->finished_ms));
	json_object_set_new(o, "message", json_string(r->message));
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	char *path = sandbox_file(sandbox, "status.json");
	/* The final status is the one worth an fsync: it is the task's
	 * outcome, read again by an agent that restarts later. */
	int rc = sandbox_write_atomic(path, text, strlen(text), r->phase == PHASE_EXITED);
	free(path);
	free(text);
	return rc;
}

int supervisor_read_report(const char *sandbox_dir, struct task_report *r)
{
	memset(r, 0, sizeof *r);
	char *path = sandbox_file(sandbox_dir, "status.json");
	char *text;
	int rc = file_read_all(path, &text, NULL);
	free(path);
	if (rc < 0)
		return rc;
	json_t *o = json_loads(text, 0, NULL);
	free(text);
	if (!json_is_object(o)) {
		json_decref(o);
		return -EINVAL;
	}
	r->phase = phase_parse(json_string_value(json_object_get(o, "phase")));
	r->supervisor_pid = (pid_t)jint(o, "supervisor_pid");
	r->pid = (pid_t)jint(o, "pid");
	r->exit_code = (int)jint(o, "exit_code");
	r->signal = (int)jint(o, "signal");
	r->oom = json_is_true(json_object_get(o, "oom"));
	r->stopped = json_is_true(json_object_get(o, "stopped"));
	r->started_ms = jint(o, "started_ms");
	r->finished_ms = jint(o, "finished_ms");
	const char *msg = json_string_value(json_object_get(o, "message"));
	snprintf(r->message, sizeof r->message, "%s", msg ? msg : "");
	json_decref(o);
	return 0;
}

/* ---- finding a supervisor again ---- */

char *abs_sandbox(const char *sandbox)
{
	char *rp = realpath(sandbox, NULL);
	return rp ? rp : xstrdup(sandbox);
}

pid_t read_pidfile(const char *sandbox)
{
	char *path = sandbox_file(sandbox, "supervisor.pid"), *text;
	int rc = file_read_all(path, &text, NULL);
	free(path);
	if (rc < 0)
		return -1;
	long v = strtol(text, NULL, 10);
	free(text);
	return v > 0 && v <= INT_MAX ? (pid_t)v : -1;
}

/* Is pid `berth supervise SANDBOX`? Guards against pid reuse: a recycled
 * pid runs something else, and a zombie has an empty command line. */
const char *supervisor_cmdline_sandbox(const char *cmdline, size_t len)
{
	for (size_t off = 0; off < len;) {
		const char *arg = cmdline + off;
		size_t alen = strnlen(arg, len - off);
		size_t next = off + alen + 1;
		if (alen == 9 && !memcmp(arg, "supervise", 9) && next < len &&
		    strnlen(cmdline + next, len - next) < len - next)
			return cmdline + next;
		off = next;
	}
	return NULL;
}

bool is_supervisor_of(pid_t pid, const char *sandbox)
{
	char path[64], *text;
	size_t len;
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	if (file_read_all(path, &text, &len) < 0)
		return false;
	const char *sb = supervisor_cmdline_sandbox(text, len);
	bool found = sb && !strcmp(sb, sandbox);
	free(text);
	return found;
}
