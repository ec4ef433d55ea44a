/* oci_bundle.c - image + root filesystem + config.json + runc commands for
 * one task. See oci_bundle.h for the choices. */
#include "agent/driver/oci_bundle.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/driver/exec_guard.h"
#include "agent/driver/seccomp_profile.h"
#include "agent/image/image_rootfs.h"
#include "agent/image/registry_auth.h"
#include "agent/image/image_tar.h"

extern char **environ;

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define NOFILE_SOFT 1024
#define NOFILE_HARD 524288

static json_t *strs(const char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* Docker's default capabilities (seccomp_profile.h); `n` of them. */
static json_t *cap_names(size_t n)
{
	size_t all;
	const struct seccomp_cap *caps = seccomp_profile_caps(&all);
	json_t *a = json_array();
	for (size_t i = 0; i < n && i < all; i++)
		json_array_append_new(a, json_string(caps[i].name));
	return a;
}

/* The profile of seccomp_profile.h, as runc reads it: the calls allowed
 * whatever their arguments in one rule, then one rule per condition. */
static json_t *seccomp_section(void)
{
	size_t n;
	const struct seccomp_rule *r = seccomp_profile_rules(&n);
	json_t *allowed = json_array(), *rules = json_array();
	json_array_append_new(rules,
			      json_pack("{s:o,s:s}", "names", allowed, "action", "SCMP_ACT_ALLOW"));
	for (size_t i = 0; i < n; i++) {
		switch (r[i].kind) {
		case SECCOMP_RULE_ALLOW:
			json_array_append_new(allowed, json_string(r[i].name));
			break;
		case SECCOMP_RULE_ERRNO:
			json_array_append_new(
			    rules, json_pack("{s:[s],s:s,s:i}", "names", r[i].name, "action",
					     "SCMP_ACT_ERRNO", "errnoRet", r[i].errno_ret));
			break;
		case SECCOMP_RULE_ALLOW_FLAGS_CLEAR:
			json_array_append_new(
			    rules, json_pack("{s:[s],s:s,s:[{s:i,s:I,s:I,s:s}]}", "names",
					     r[i].name, "action", "SCMP_ACT_ALLOW", "args", "index",
					     0, "value", (json_int_t)r[i].values[0], "valueTwo",
					     (json_int_t)0, "op", "SCMP_CMP_MASKED_EQ"));
			break;
		case SECCOMP_RULE_ALLOW_ARG0_NOT:
			json_array_append_new(rules, json_pack("{s:[s],s:s,s:[{s:i,s:I,s:s}]}",
							       "names", r[i].name, "action",
							       "SCMP_ACT_ALLOW", "args", "index", 0,
							       "value", (json_int_t)r[i].values[0],
							       "op", "SCMP_CMP_NE"));
			break;
		case SECCOMP_RULE_ALLOW_ARG0_IN:
			/* runc ANDs the conditions of one rule: one rule per value */
			for (size_t k = 0; k < r[i].nvalues; k++)
				json_array_append_new(
				    rules,
				    json_pack("{s:[s],s:s,s:[{s:i,s:I,s:s}]}", "names", r[i].name,
					      "action", "SCMP_ACT_ALLOW", "args", "index", 0,
					      "value", (json_int_t)r[i].values[k], "op",
					      "SCMP_CMP_EQ"));
			break;
		}
	}
	json_t *arches = json_array();
	for (const char *const *a = seccomp_profile_oci_arches(); *a; a++)
		json_array_append_new(arches, json_string(*a));
	return json_pack("{s:s,s:i,s:o,s:o}", "defaultAction", "SCMP_ACT_ERRNO", "defaultErrnoRet",
			 EPERM, "architectures", arches, "syscalls", rules);
}

static json_t *mount_entry(const char *dst, const char *type, const char *src,
			   const char *const *opts, size_t n)
{
	return json_pack("{s:s,s:s,s:s,s:o}", "destination", dst, "type", type, "source", src,
			 "options", strs(opts, n));
}

static json_t *default_mounts(const char *resolv_conf)
{
	static const char *const proc[] = {"nosuid", "noexec", "nodev"};
	static const char *const dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
	static const char *const pts[] = {"nosuid",	   "noexec",	"newinstance",
					  "ptmxmode=0666", "mode=0620", "gid=5"};
	static const char *const shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"};
	static const char *const mq[] = {"nosuid", "noexec", "nodev"};
	static const char *const sys[] = {"nosuid", "noexec", "nodev", "ro"};
	static const char *const cg[] = {"nosuid", "noexec", "nodev", "relatime", "ro"};
	static const char *const bind_ro[] = {"rbind", "ro", "nosuid", "nodev", "noexec"};
	json_t *m = json_array();
	json_array_append_new(m, mount_entry("/proc", "proc", "proc", proc, ARRAY_SIZE(proc)));
	json_array_append_new(m, mount_entry("/dev", "tmpfs", "tmpfs", dev, ARRAY_SIZE(dev)));
	json_array_append_new(m, mount_entry("/dev/pts", "devpts", "devpts", pts, ARRAY_SIZE(pts)));
	json_array_append_new(m, mount_entry("/dev/shm", "tmpfs", "shm", shm, ARRAY_SIZE(shm)));
	json_array_append_new(m,
			      mount_entry("/dev/mqueue", "mqueue", "mqueue", mq, ARRAY_SIZE(mq)));
	json_array_append_new(m, mount_entry("/sys", "sysfs", "sysfs", sys, ARRAY_SIZE(sys)));
	json_array_append_new(
	    m, mount_entry("/sys/fs/cgroup", "cgroup", "cgroup", cg, ARRAY_SIZE(cg)));
	/* The host's network namespace: its name resolution too. */
	static const char *const host_files[] = {"/etc/resolv.conf", "/etc/hosts"};
	for (size_t i = 0; i < ARRAY_SIZE(host_files); i++) {
		/* resolv.conf: the agent's name server when it runs one. */
		const char *src = i == 0 && resolv_conf ? resolv_conf : host_files[i];
		struct stat st;
		if (stat(src, &st) == 0 && S_ISREG(st.st_mode))
			json_array_append_new(m, mount_entry(host_files[i], "bind", src, bind_ro,
							     ARRAY_SIZE(bind_ro)));
	}
	return m;
}

/* ---- users, from the image's own files ---- */

/* Open a file of the root filesystem with "/" and ".." confined to it. */
static FILE *open_in_root(const char *rootfs, const char *path)
{
	int root = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return NULL;
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
	int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
	close(root);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

/* Split a passwd/group line into fields (in place). */
static int fields(char *line, char **f, int max)
{
	int n = 0;
	line[strcspn(line, "\n")] = 0;
	for (char *p = line; n < max;) {
		f[n++] = p;
		char *c = strchr(p, ':');
		if (!c)
			break;
		*c = 0;
		p = c + 1;
	}
	return n;
}

static bool numeric(const char *s, unsigned long *v)
{
	if (!*s)
		return false;
	char *end;
	errno = 0;
	*v = strtoul(s, &end, 10);
	return !*end && !errno && *v < UINT_MAX && isdigit((unsigned char)*s);
}

int oci_resolve_user(const char *rootfs, const char *spec, uid_t *uid, gid_t *gid, gid_t **groups,
		     size_t *ngroups, char **home, struct berr *err)
{
	*uid = 0;
	*gid = 0;
	*groups = NULL;
	*ngroups = 0;
	*home = NULL;
	char *user = xstrdup(spec && *spec ? spec : "0");
	char *group = strchr(user, ':');
	if (group)
		*group++ = 0;
	unsigned long num;
	bool found = false, uid_numeric = numeric(user, &num);
	char *name = NULL;
	if (uid_numeric)
		*uid = (uid_t)num;
	char line[4096];
	FILE *f = open_in_root(rootfs, "/etc/passwd");
	while (f && fgets(line, sizeof line, f)) {
		char *fl[7];
		if (fields(line, fl, 7) < 7)
			continue;
		unsigned long u, g;
		if (!numeric(fl[2], &u) || !numeric(fl[3], &g))
			continue;
		if (uid_numeric ? u == num : !strcmp(fl[0], user)) {
			*uid = (uid_t)u;
			*gid = (gid_t)g;
			*home = xstrdup(*fl[5] ? fl[5] : "/");
			name = xstrdup(fl[0]);
			found = true;
			break;
		}
	}
	if (f)
		fclose(f);
	int rc = 0;
	if (!found && !uid_numeric) {
		rc = berr_set(err, 0, "user '%s' not found in the image's /etc/passwd", user);
		goto out;
	}
	if (!*home)
		*home = xstrdup("/");
	/* Explicit group, then supplementary groups from /etc/group. */
	bool group_numeric = group && numeric(group, &num);
	if (group_numeric)
		*gid = (gid_t)num;
	bool group_found = !group || group_numeric;
	f = open_in_root(rootfs, "/etc/group");
	while (f && fgets(line, sizeof line, f)) {
		char *fl[4];
		if (fields(line, fl, 4) < 4)
			continue;
		unsigned long g;
		if (!numeric(fl[2], &g))
			continue;
		if (group && !group_numeric && !strcmp(fl[0], group)) {
			*gid = (gid_t)g;
			group_found = true;
		}
		if (!name || group)
			continue;
		char *save = NULL;
		for (char *m = strtok_r(fl[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
			if (!strcmp(m, name) && (gid_t)g != *gid) {
				*groups = xrealloc(*groups, (*ngroups + 1) * sizeof **groups);
				(*groups)[(*ngroups)++] = (gid_t)g;
			}
	}
	if (f)
		fclose(f);
	if (!group_found)
		rc = berr_set(err, 0, "group '%s' not found in the image's /etc/group", group);
out:
	if (rc < 0) {
		free(*home);
		*home = NULL;
		free(*groups);
		*groups = NULL;
		*ngroups = 0;
	}
	free(name);
	free(user);
	return rc;
}

/* ---- config.json ---- */

static bool env_key_eq(const char *a, const char *b)
{
	size_t ka = strcspn(a, "="), kb = strcspn(b, "=");
	return ka == kb && !strncmp(a, b, ka);
}

/* The image's env, then the task's overriding key by key. */
static json_t *merge_env(const struct oci_config_in *in, const char *home)
{
	size_t cap = (in->image ? in->image->nenv : 0) + in->nenv + 3, n = 0;
	const char **v = xcalloc(cap, sizeof *v);
	char *extra[2] = {NULL, NULL};
	const char *const *lists[2] = {in->image ? (const char *const *)in->image->env : NULL,
				       (const char *const *)in->env};
	size_t lens[2] = {in->image ? in->image->nenv : 0, in->nenv};
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < lens[l]; i++) {
			const char *e = lists[l][i];
			if (!strchr(e, '='))
				continue;
			size_t k = 0;
			while (k < n && !env_key_eq(v[k], e))
				k++;
			v[k] = e;
			if (k == n)
				n++;
		}
	bool has_path = false, has_home = false;
	for (size_t i = 0; i < n; i++) {
		has_path |= env_key_eq(v[i], "PATH=");
		has_home |= env_key_eq(v[i], "HOME=");
	}
	if (!has_path)
		v[n++] = "PATH=" DEFAULT_PATH;
	if (!has_home)
		v[n++] = extra[0] = xasprintf("HOME=%s", home);
	bool has_id = false;
	for (size_t i = 0; i < n; i++)
		has_id |= env_key_eq(v[i], "BERTH_TASK_ID=");
	if (!has_id)
		v[n++] = extra[1] = xasprintf("BERTH_TASK_ID=%s", in->task_id);
	json_t *a = strs(v, n);
	free(extra[0]);
	free(extra[1]);
	free(v);
	return a;
}

static bool file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* Swap equal to the limit means "no swap"; only say so where the kernel
 * accounts swap (runc fails writing a swap limit it cannot set). */
static bool swap_limit_supported(void)
{
	switch (cgroup_detect()) {
	case CGROUP_V1:
		return file_exists(CGROUP_ROOT "/memory/memory.memsw.limit_in_bytes");
	case CGROUP_V2: {
		char *text = NULL;
		bool ok = false;
		if (file_read_all("/proc/self/cgroup", &text, NULL) == 0) {
			char *p = strstr(text, "0::");
			if (p) {
				p += 3;
				p[strcspn(p, "\n")] = 0;
				char *f = xasprintf(CGROUP_ROOT "%s/memory.swap.max", p);
				ok = file_exists(f);
				free(f);
			}
		}
		free(text);
		return ok;
	}
	default:
		return false;
	}
}

int oci_config_build(const struct oci_config_in *in, char **out, struct berr *err)
{
	*out = NULL;
	const struct image_config *ic = in->image;
	/* args: the task's command, else the image's entrypoint + cmd */
	json_t *args = json_array();
	if (in->argc) {
		for (size_t i = 0; i < in->argc; i++)
			json_array_append_new(args, json_string(in->argv[i]));
	} else if (ic) {
		for (size_t i = 0; i < ic->nentrypoint; i++)
			json_array_append_new(args, json_string(ic->entrypoint[i]));
		for (size_t i = 0; i < ic->ncmd; i++)
			json_array_append_new(args, json_string(ic->cmd[i]));
	}
	if (json_array_size(args) == 0) {
		json_decref(args);
		return berr_set(err, 0,
				"no command: the task gives none and the image has no Entrypoint "
				"or Cmd");
	}
	const char *user = in->user && *in->user ? in->user : ic && *ic->user ? ic->user : NULL;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t ngroups;
	char *home;
	if (oci_resolve_user(in->rootfs, user, &uid, &gid, &groups, &ngroups, &home, err) < 0) {
		json_decref(args);
		return -1;
	}
	json_t *addl = json_array();
	for (size_t i = 0; i < ngroups; i++)
		json_array_append_new(addl, json_integer(groups[i]));
	free(groups);
	json_t *caps = json_object();
	size_t all;
	seccomp_profile_caps(&all);
	json_object_set_new(caps, "bounding", cap_names(all));
	/* A non-root user holds no capability, as in Docker. */
	size_t ncaps = uid == 0 ? all : 0;
	json_object_set_new(caps, "effective", cap_names(ncaps));
	json_object_set_new(caps, "permitted", cap_names(ncaps));
	json_object_set_new(caps, "inheritable", json_array());
	json_object_set_new(caps, "ambient", json_array());
	struct rlimit rl;
	uint64_t hard = NOFILE_HARD;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
	    rl.rlim_max < hard)
		hard = rl.rlim_max;
	uint64_t soft = hard < NOFILE_SOFT ? hard : NOFILE_SOFT;
	const char *cwd = ic && ic->workdir && *ic->workdir ? ic->workdir : "/";
	json_t *process =
	    json_pack("{s:b,s:{s:i,s:i,s:o},s:o,s:o,s:s,s:o,s:[{s:s,s:I,s:I}],s:b}", "terminal", 0,
		      "user", "uid", (int)uid, "gid", (int)gid, "additionalGids", addl, "args",
		      args, "env", merge_env(in, home), "cwd", cwd, "capabilities", caps, "rlimits",
		      "type", "RLIMIT_NOFILE", "hard", (json_int_t)hard, "soft", (json_int_t)soft,
		      "noNewPrivileges", 1);
	free(home);
	char hostname[64];
	snprintf(hostname, sizeof hostname, "%s", in->task_id);

	json_t *res = json_object();
	if (in->memory_bytes) {
		json_t *mem = json_pack("{s:I}", "limit", (json_int_t)in->memory_bytes);
		if (swap_limit_supported())
			json_object_set_new(mem, "swap",
					    json_integer((json_int_t)in->memory_bytes));
		json_object_set_new(res, "memory", mem);
	}
	if (in->cpu > 0) {
		const int64_t period = 100000;
		int64_t quota = (int64_t)(in->cpu * (double)period + 0.5);
		if (quota < 1000)
			quota = 1000; /* the kernel's minimum */
		json_object_set_new(res, "cpu",
				    json_pack("{s:I,s:I}", "quota", (json_int_t)quota, "period",
					      (json_int_t)period));
	}
	json_object_set_new(res, "pids",
			    json_pack("{s:I}", "limit", (json_int_t)CGROUP_DEFAULT_PIDS_MAX));
	json_object_set_new(res, "devices", json_pack("[{s:b,s:s}]", "allow", 0, "access", "rwm"));

	json_t *linux_ = json_pack(
	    "{s:o,s:s,s:[{s:s},{s:s},{s:s},{s:s}],s:o,s:o,s:o}", "resources", res, "cgroupsPath",
	    in->cgroups_path, "namespaces", "type", "pid", "type", "mount", "type", "ipc", "type",
	    "uts", "maskedPaths", strs(seccomp_profile_masked_paths, seccomp_profile_nmasked_paths),
	    "readonlyPaths", strs(seccomp_profile_readonly_paths, seccomp_profile_nreadonly_paths),
	    "seccomp", seccomp_section());
	if (in->netns_path)
		json_array_append_new(
		    json_object_get(linux_, "namespaces"),
		    json_pack("{s:s,s:s}", "type", "network", "path", in->netns_path));
	json_t *mounts = default_mounts(in->resolv_conf);
	for (size_t i = 0; i < in->nvolumes; i++) {
		const char *opts[] = {"rbind", in->volume_ro[i] ? "ro" : "rw"};
		json_array_append_new(
		    mounts, mount_entry(in->volume_path[i], "bind", in->volume_host[i], opts, 2));
	}
	json_t *doc = json_pack("{s:s,s:o,s:{s:s,s:b},s:s,s:o,s:o}", "ociVersion", "1.0.2",
				"process", process, "root", "path", "rootfs", "readonly", 0,
				"hostname", hostname, "mounts", mounts, "linux", linux_);
	if (!doc)
		return berr_set(err, 0, "cannot build config.json");
	*out = json_dumps(doc, JSON_INDENT(1));
	json_decref(doc);
	return 0;
}

/* ---- the task ---- */

static void task_paths(struct oci_task *t, const struct oci_params *p)
{
	const char *rt = p->runtime && *p->runtime ? p->runtime : getenv("BERTH_OCI_RUNTIME");
	t->id = xstrdup(p->task_id);
	t->runtime = xstrdup(rt && *rt ? rt : OCI_DEFAULT_RUNTIME);
	t->state_root = xasprintf("%s/runc", p->data_dir);
	t->bundle = xasprintf("%s/bundle", p->sandbox);
	t->rootfs = xasprintf("%s/rootfs", t->bundle);
	t->log = xasprintf("%s/runc.log", t->bundle);
	t->pidfile = xasprintf("%s/container.pid", t->bundle);
}

static int make_rootfs(struct oci_task *t, struct berr *err)
{
	char *upper = xasprintf("%s/upper", t->bundle);
	char *work = xasprintf("%s/work", t->bundle);
	int rc = -1;
	const char *dirs[] = {t->rootfs, upper, work};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST) {
			berr_set(err, 0, "cannot create '%s': %s", dirs[i], err_str(errno));
			goto out;
		}
	struct image *img = t->img;
	struct berr oerr = {0};
	if (img->overlay_ready && img->nlayers > 0 &&
	    image_rootfs_mount_overlay(image_cache_layers_dir(t->cache), img->layer_names,
				       img->nlayers, upper, work, t->rootfs, &oerr) == 0) {
		t->mounted = true;
		rc = 0;
		goto out;
	}
	/* No overlay here: the task gets its own copy. */
	if (oerr.msg[0])
		fprintf(stderr, "berth-oci: %s; copying the image instead\n", oerr.msg);
	rc = image_rootfs_copy_layers(img->layers, img->nlayers, t->rootfs, geteuid() == 0, err);
	if (rc == 0)
		t->copied = true;
out:
	free(upper);
	free(work);
	return rc;
}

int oci_task_prepare(struct oci_task *t, const struct oci_params *p, struct berr *err)
{
	memset(t, 0, sizeof *t);
	task_paths(t, p);
	/* Mounts stay in the supervisor's own namespace; slave, so the host's
	 * unmounts still reach it and it pins nothing. */
	if (unshare(CLONE_NEWNS) < 0)
		return berr_set(err, 0, "cannot create a mount namespace: %s", err_str(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		return berr_set(err, 0, "cannot make the mounts private: %s", err_str(errno));
	/* The container's init, left by `runc run --detach`, becomes our child. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	char *images = xasprintf("%s/images", p->data_dir);
	int rc = image_cache_open(images, &t->cache, err);
	free(images);
	if (rc < 0)
		return -1;
	/* Registry credentials, each for its own host only (registry_auth.h). */
	struct registry_auth *auth = NULL;
	if (registry_auth_load(p->data_dir, &auth, err) < 0)
		return -1;
	image_cache_set_auth(t->cache, auth);
	image_cache_set_limits(t->cache, p->image_max_bytes, p->image_max_unpacked_bytes);
	if (image_get(t->cache, p->image, &t->img, err) < 0)
		return -1;
	t->fetched = t->img->fetched;
	if (mkdir(t->bundle, 0711) < 0 && errno != EEXIST)
		return berr_set(err, 0, "cannot create '%s': %s", t->bundle, err_str(errno));
	if (make_rootfs(t, err) < 0)
		return -1;
	char *cgpath =
	    xasprintf("/%s/%s", p->cgroup_parent && *p->cgroup_parent ? p->cgroup_parent : "berth",
		      p->task_id);
	struct oci_config_in in = {
	    .task_id = p->task_id,
	    .rootfs = t->rootfs,
	    .argv = p->argv,
	    .argc = p->argc,
	    .env = p->env,
	    .nenv = p->nenv,
	    .user = p->user,
	    .image = &t->img->config,
	    .cpu = p->cpu,
	    .memory_bytes = p->memory_bytes,
	    .cgroups_path = cgpath,
	    .volume_host = p->volume_host,
	    .volume_path = p->volume_path,
	    .volume_ro = p->volume_ro,
	    .nvolumes = p->nvolumes,
	    .netns_path = p->netns_path,
	};
	char *resolv = xasprintf("%s/resolv.conf", p->sandbox);
	if (access(resolv, F_OK) == 0)
		in.resolv_conf = resolv;
	char *json = NULL;
	rc = oci_config_build(&in, &json, err);
	free(cgpath);
	free(resolv);
	if (rc < 0)
		return berr_prefix(err, "image '%s'", p->image);
	/* Not fsync'ed: a bundle means nothing after a machine crash (the
	 * container died with the machine), and two fsyncs would be a good
	 * part of the start latency on a busy disk. */
	char *cfg = xasprintf("%s/config.json", t->bundle);
	int w = 0;
	/* 0600: config.json holds the task's env values. */
	int fd = open(cfg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t len = strlen(json);
	if (fd < 0 || write(fd, json, len) != (ssize_t)len)
		w = -(errno ? errno : EIO);
	if (fd >= 0 && close(fd) < 0 && !w)
		w = -errno;
	free(json);
	if (w < 0)
		berr_set(err, 0, "cannot write '%s': %s", cfg, err_str(w));
	free(cfg);
	return w < 0 ? -1 : 0;
}

/* Run the runtime with these arguments and wait for it. Its stdout and
 * stderr go to out_fd/err_fd (-1 = the supervisor's). Returns its wait
 * status, or -errno when it could not be started. */
static int run_runtime(struct oci_task *t, const char *const *args, int out_fd, int err_fd)
{
	const char *argv[32];
	size_t n = 0;
	argv[n++] = t->runtime;
	argv[n++] = "--root";
	argv[n++] = t->state_root;
	argv[n++] = "--log";
	argv[n++] = t->log;
	argv[n++] = "--log-format";
	argv[n++] = "json";
	for (size_t i = 0; args[i] && n < ARRAY_SIZE(argv) - 1; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (err_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	/* The supervisor blocks and ignores signals of its own; neither may
	 * reach runc, nor through it the container. */
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int r = posix_spawnp(&pid, t->runtime, &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (r != 0)
		return -r;
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return st;
}

/* The last error runc logged (JSON lines: {"level":"error","msg":...}). */
static void runtime_error(struct oci_task *t, char *buf, size_t n)
{
	buf[0] = 0;
	char *text = NULL;
	if (file_read_all(t->log, &text, NULL) < 0)
		return;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		json_t *j = json_loads(line, 0, NULL);
		const char *lvl = json_string_value(json_object_get(j, "level"));
		const char *msg = json_string_value(json_object_get(j, "msg"));
		if (lvl && msg && (!strcmp(lvl, "error") || !strcmp(lvl, "fatal")))
			snprintf(buf, n, "%s", msg);
		json_decref(j);
	}
	free(text);
}

pid_t oci_task_start(struct oci_task *t, int out_fd, int err_fd, int *code, struct berr *err)
{
	*code = 126;
	t->ran = true;
	unlink(t->pidfile);
	const char *args[] = {"run",	    "--detach", "--bundle", t->bundle,
			      "--pid-file", t->pidfile, t->id,	    NULL};
	int st = run_runtime(t, args, out_fd, err_fd);
	if (st < 0) {
		if (st == -ENOENT)
			*code = 127;
		return berr_set(err, 0, "cannot run the OCI runtime '%s': %s", t->runtime,
				err_str(st));
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char why[768];
		runtime_error(t, why, sizeof why);
		if (strstr(why, "executable file not found") ||
		    strstr(why, "no such file or directory"))
			*code = 127;
		/* runc wraps its errors: keep what says why */
		const char *w = why;
		static const char *const wrappers[] = {"runc run failed: ",
						       "unable to start container process: "};
		for (size_t i = 0; i < ARRAY_SIZE(wrappers); i++)
			if (!strncmp(w, wrappers[i], strlen(wrappers[i])))
				w += strlen(wrappers[i]);
		return berr_set(err, 0, "cannot start container: %s",
				*w ? w : "the runtime failed without saying why");
	}
	char *text = NULL;
	long pid = 0;
	if (file_read_all(t->pidfile, &text, NULL) == 0)
		pid = strtol(text, NULL, 10);
	free(text);
	if (pid <= 0 || pid > INT_MAX)
		return berr_set(err, 0, "runtime '%s' wrote no pid to '%s'", t->runtime,
				t->pidfile);
	t->pid = (pid_t)pid;
	return t->pid;
}

int oci_task_kill(struct oci_task *t, int sig, bool all)
{
	if (!t->id)
		return -ESRCH;
	char num[16];
	snprintf(num, sizeof num, "%d", sig);
	const char *a1[] = {"kill", "--all", t->id, num, NULL};
	const char *a2[] = {"kill", t->id, num, NULL};
	int st = run_runtime(t, all ? a1 : a2, -1, -1);
	if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	/* The runtime lost track (or is gone): signal the init ourselves. */
	if (t->pid > 0 && kill(t->pid, sig) == 0)
		return 0;
	return -ESRCH;
}

void oci_task_cleanup(struct oci_task *t)
{
	if (t->id && t->runtime && (t->pid > 0 || t->ran)) {
		const char *args[] = {"delete", "--force", t->id, NULL};
		run_runtime(t, args, -1, -1);
	}
	if (t->mounted && t->rootfs) {
		if (umount2(t->rootfs, MNT_DETACH) < 0)
			fprintf(stderr, "berth-oci: cannot unmount '%s': %s\n", t->rootfs,
				err_str(errno));
		t->mounted = false;
	}
	/* The task's writable layer (or its copy of the image) goes with it;
	 * its logs stay in the sandbox. */
	if (t->bundle) {
		const char *parts[] = {"rootfs", "upper", "work"};
		for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
			char *p = xasprintf("%s/%s", t->bundle, parts[i]);
			rm_rf_at(AT_FDCWD, p);
			free(p);
		}
	}
	image_release(t->img);
	t->img = NULL;
	image_cache_free(t->cache);
	t->cache = NULL;
	free(t->id);
	free(t->runtime);
	free(t->state_root);
	free(t->bundle);
	free(t->rootfs);
	free(t->log);
	free(t->pidfile);
	memset(t, 0, sizeof *t);
}

int oci_delete_orphan(const char *data_dir, const char *task_id, const char *runtime)
{
	char *state = xasprintf("%s/runc/%s", data_dir, task_id);
	bool known = file_exists(state);
	free(state);
	if (!known)
		return 0;
	struct oci_params p = {
	    .task_id = task_id, .sandbox = "", .data_dir = data_dir, .runtime = runtime};
	struct oci_task t = {0};
	task_paths(&t, &p);
	free(t.log); /* no bundle any more */
	t.log = xstrdup("/dev/null");
	const char *args[] = {"delete", "--force", t.id, NULL};
	int st = run_runtime(&t, args, -1, -1);
	int rc = st == -ECHILD ? 1 : st < 0 ? st : 1;
	free(t.id);
	free(t.runtime);
	free(t.state_root);
	free(t.bundle);
	free(t.rootfs);
	free(t.log);
	free(t.pidfile);
	return rc;
}

/* How long the guard waits for a `runc exec` that outlived task-exec to
 * start its command (and write the pid file) or give up: at cpu 0.1 on a
 * busy host, runc's start in the container's cgroup took seconds. */
#define EXEC_START_WAIT_MS 30000

/* The exec's pid: what runc wrote in the pid file, 0 while there is none. */
static pid_t exec_pid_of(const char *pidfile)
{
	char *text = NULL;
	pid_t pid = 0;
	if (file_read_all(pidfile, &text, NULL) == 0)
		pid = (pid_t)atoi(text);
	free(text);
	return pid > 0 ? pid : 0;
}

/* The guard, once task-exec is gone. The command's pid is in the pid file
 * once runc started it. A health check killed at its timeout kills
 * task-exec's process group, which runc is not in (oci_exec): runc may
 * still be starting the command, so the guard waits for the pid file as
 * long as runc lives (note: its pid), kills the command, then runc. */
static void oci_exec_orphaned(void *ud, const char *note)
{
	const char *pidfile = ud;
	pid_t runc = (pid_t)atoi(note);
	int rfd = runc > 0 ? (int)syscall(SYS_pidfd_open, runc, 0) : -1;
	pid_t pid = exec_pid_of(pidfile);
	for (int waited = 0, step = 20; !pid && rfd >= 0 && waited < EXEC_START_WAIT_MS;
	     waited += step, step = step < 500 ? step * 2 : 500) {
		struct pollfd pf = {.fd = rfd, .events = POLLIN};
		bool runc_gone = poll(&pf, 1, step) > 0;
		pid = exec_pid_of(pidfile);
		if (runc_gone)
			break;
	}
	if (pid)
		exec_guard_kill(pid);
	if (rfd >= 0) {
		syscall(SYS_pidfd_send_signal, rfd, SIGKILL, NULL, 0);
		close(rfd);
	}
	unlink(pidfile);
}

int oci_exec(const char *data_dir, const char *sandbox, const char *task_id, const char *runtime,
	     char *const *argv, struct berr *err)
{
	struct oci_params p = {
	    .task_id = task_id, .sandbox = sandbox, .data_dir = data_dir, .runtime = runtime};
	struct oci_task t = {0};
	task_paths(&t, &p);
	char *pidfile = xasprintf("%s/exec.%d.pid", sandbox, (int)getpid());
	size_t n = 0;
	while (argv[n])
		n++;
	const char **args = xcalloc(n + 10, sizeof *args);
	size_t k = 0;
	args[k++] = t.runtime;
	args[k++] = "--root";
	args[k++] = t.state_root;
	args[k++] = "exec";
	args[k++] = "--no-new-privs";
	/* `berth task exec -t` (agent_exec.h): a terminal as stdin asks the
	 * runtime for one in the container (it relays ours to it). */
	if (isatty(0))
		args[k++] = "--tty";
	args[k++] = "--pid-file";
	args[k++] = pidfile;
	args[k++] = t.id; /* flags end here: the command's options stay its own */
	for (size_t i = 0; i < n; i++)
		args[k++] = argv[i];
	args[k] = NULL;
	int rc = -1, keep = -1;
	if (exec_guard_start(oci_exec_orphaned, pidfile, &keep) < 0)
		fprintf(stderr, "berth task-exec: no guard: a command killed at its timeout may "
				"run on\n");
	/* A health check (no terminal) runs runc in a process group of its
	 * own: the kill at the check's timeout then reaches task-exec and not
	 * runc, which the guard watches until the command it was starting has
	 * a pid to kill. A terminal's runc stays in task-exec's group, the
	 * terminal's foreground group (another group reading it would stop). */
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	if (!isatty(0)) {
		posix_spawnattr_setpgroup(&attr, 0);
		posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
	}
	pid_t pid;
	int r = posix_spawnp(&pid, t.runtime, NULL, &attr, (char *const *)args, environ);
	posix_spawnattr_destroy(&attr);
	if (!r && keep >= 0) {
		char note[24];
		snprintf(note, sizeof note, "%d", (int)pid);
		exec_guard_note(keep, note);
	}
	if (r) {
		berr_set(err, 0, "cannot run the oci runtime '%s': %s", t.runtime, err_str(r));
	} else {
		int st;
		while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
			;
		if (r < 0)
			berr_set(err, 0, "cannot wait for '%s': %s", t.runtime, err_str(errno));
		else
			rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	free(args);
	free(pidfile);
	free(t.id);
	free(t.runtime);
	free(t.state_root);
	free(t.bundle);
	free(t.rootfs);
	free(t.log);
	free(t.pidfile);
	return rc; /* keep stays open until we exit: the guard waits for that */
}
