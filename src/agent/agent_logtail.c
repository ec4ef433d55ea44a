/* agent_logtail.c - an ended task's log tails for its final report
 * (agent_logtail.h). */
#include "agent/agent_logtail.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/util.h"

/* The last want bytes of path into buf (at its end): how many were read. */
static size_t read_last(const char *path, char *buf, size_t want)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	size_t got = 0;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		size_t n = (size_t)st.st_size < want ? (size_t)st.st_size : want;
		ssize_t r = pread(fd, buf + want - n, n, st.st_size - (off_t)n);
		if (r == (ssize_t)n)
			got = n;
	}
	close(fd);
	return got;
}

char *agent_logtail_read(const char *sandbox, const char *stream, size_t max, size_t *len)
{
	char *buf = xmalloc(max);
	char *path = xasprintf("%s/%s", sandbox, stream);
	size_t got = read_last(path, buf, max);
	free(path);
	if (got < max) {
		/* The rest from the file rotated before the current one. */
		char *old = xasprintf("%s/%s.1", sandbox, stream);
		char *tmp = xmalloc(max - got);
		size_t more = read_last(old, tmp, max - got);
		free(old);
		memmove(buf + max - got - more, tmp + (max - got - more), more);
		free(tmp);
		got += more;
	}
	if (!got) {
		free(buf);
		return NULL;
	}
	memmove(buf, buf + max - got, got);
	*len = got;
	return buf;
}

size_t agent_logtail_attach(json_t *report, const char *sandbox, const char *state)
{
	if (!sandbox || !state || (strcmp(state, "FAILED") && strcmp(state, "KILLED")))
		return 0;
	size_t added = 0;
	json_t *logs = json_object();
	const char *streams[] = {"stdout", "stderr"};
	for (size_t i = 0; i < 2; i++) {
		size_t len = 0;
		char *data = agent_logtail_read(sandbox, streams[i], LOGTAIL_BYTES, &len);
		if (!data)
			continue;
		char *b64 = base64_encode(data, len);
		added += strlen(b64);
		json_object_set_new(logs, streams[i], json_string(b64));
		free(b64);
		free(data);
	}
	if (json_object_size(logs))
		json_object_set_new(report, "logs", logs);
	else
		json_decref(logs);
	return added;
}
