/* ipam.c - addresses of the node's subnet (see ipam.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/net/ipam.h"

struct ipam {
	char *dir;
	struct cidr subnet;
	uint32_t next; /* host part to try first */
};

struct ipam *ipam_new(const char *dir, const struct cidr *subnet)
{
	struct ipam *p = xcalloc(1, sizeof *p);
	p->dir = xstrdup(dir);
	p->subnet = *subnet;
	p->next = 2;
	mkdir_p(dir, 0700);
	return p;
}

void ipam_free(struct ipam *p)
{
	if (!p)
		return;
	free(p->dir);
	free(p);
}

/* The task id in the file of ip ("" when none or unreadable). */
static void holder_of(struct ipam *p, const char *name, char *buf, size_t size)
{
	buf[0] = 0;
	char *path = xasprintf("%s/%s", p->dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
}

struct find_ctx {
	const char *task_id;
	uint32_t ip;
};

static void find_one(void *ud, uint32_t ip, const char *task_id)
{
	struct find_ctx *f = ud;
	if (!f->ip && !strcmp(task_id, f->task_id))
		f->ip = ip;
}

void ipam_each(struct ipam *p, void (*fn)(void *ud, uint32_t ip, const char *task_id), void *ud)
{
	DIR *d = opendir(p->dir);
	if (!d)
		return;
	struct dirent *de;
	char holder[256];
	while ((de = readdir(d))) {
		uint32_t ip;
		if (de->d_name[0] == '.' || ip4_parse(de->d_name, &ip) < 0)
			continue;
		holder_of(p, de->d_name, holder, sizeof holder);
		if (*holder)
			fn(ud, ip, holder);
	}
	closedir(d);
}

uint32_t ipam_lookup(struct ipam *p, const char *task_id)
{
	struct find_ctx f = {task_id, 0};
	ipam_each(p, find_one, &f);
	return f.ip;
}

int ipam_acquire(struct ipam *p, const char *task_id, uint32_t *ip, struct berr *err)
{
	uint32_t have = ipam_lookup(p, task_id);
	if (have && cidr_contains(&p->subnet, have)) {
		*ip = have;
		return 0;
	}
	uint32_t size = p->subnet.prefix >= 31 ? 0 : 1u << (32 - p->subnet.prefix);
	uint32_t first = 2, last = size ? size - 2 : 0; /* not the broadcast */
	for (uint32_t k = 0; size && first <= last && k <= last - first; k++) {
		uint32_t host = p->next + k;
		if (host < first || host > last)
			host = first + (host - first) % (last - first + 1);
		uint32_t cand = p->subnet.base + host;
		char name[16];
		ip4_format(cand, name);
		char *path = xasprintf("%s/%s", p->dir, name);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		free(path);
		if (fd < 0)
			continue;
		ssize_t n = write(fd, task_id, strlen(task_id));
		close(fd);
		if (n != (ssize_t)strlen(task_id)) {
			ipam_release(p, task_id);
			return berr_set(err, 0, "cannot record address %s: %s", name,
					strerror(errno));
		}
		p->next = host + 1 > last ? first : host + 1;
		*ip = cand;
		return 0;
	}
	char sn[CIDR_TEXT_MAX];
	return berr_set(err, 503, "no free address in the node's subnet %s",
			cidr_format(&p->subnet, sn));
}

void ipam_release(struct ipam *p, const char *task_id)
{
	uint32_t ip;
	while ((ip = ipam_lookup(p, task_id))) {
		char name[16];
		char *path = xasprintf("%s/%s", p->dir, ip4_format(ip, name));
		int r = unlink(path);
		free(path);
		if (r < 0)
			break;
	}
}
