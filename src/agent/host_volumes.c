/* host_volumes.c - host volumes by allowlist. See host_volumes.h. */
#include "agent/host_volumes.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Is `path` `root` or below it? Both canonical (no trailing '/', no '..'). */
static bool under(const char *path, const char *root)
{
	size_t n = strlen(root);
	return !strncmp(path, root, n) && (path[n] == 0 || path[n] == '/');
}

int host_volumes_roots(const char *const *roots, size_t n, char ***out, struct berr *err)
{
	char **v = xcalloc(n + 1, sizeof *v);
	size_t k = 0;
	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *r = roots[i];
		if (!r || r[0] != '/') {
			berr_set(err, 0, "bad --volume-root '%s': expected an absolute path",
				 r ? r : "");
			goto fail;
		}
		if (strpbrk(r, ",:")) {
			berr_set(err, 0, "bad --volume-root '%s': ':' and ',' are not allowed", r);
			goto fail;
		}
		char *real = realpath(r, NULL);
		struct stat st;
		if (!real || stat(real, &st) < 0) {
			berr_set(err, 0, "bad --volume-root '%s': %s", r, err_str(errno));
			free(real);
			goto fail;
		}
		if (!S_ISDIR(st.st_mode)) {
			berr_set(err, 0, "bad --volume-root '%s': not a directory", r);
			free(real);
			goto fail;
		}
		if (!strcmp(real, "/")) {
			berr_set(err, 0,
				 "bad --volume-root '%s': the host's root would let tasks mount "
				 "every file of the host",
				 r);
			free(real);
			goto fail;
		}
		if (strpbrk(real, ",:")) {
			berr_set(err, 0,
				 "bad --volume-root '%s': resolves to '%s' (':' and ',' are "
				 "not allowed)",
				 r, real);
			free(real);
			goto fail;
		}
		v[k++] = real;
	}
	*out = v;
	return 0;
fail:
	strv_free(v);
	return -1;
}

int host_volumes_resolve(char *const *roots, const char *host, char **resolved, struct berr *err)
{
	*resolved = NULL;
	if (!roots || !roots[0])
		return berr_set(err, 403,
				"volume host path '%s' refused: this agent allows no host volumes "
				"(it must be started with --volume-root PATH, a directory that "
				"holds the path)",
				host);
	char *real = realpath(host, NULL);
	if (!real)
		return berr_set(err, errno == ENOENT ? 404 : 403,
				"volume host path '%s': %s (berth never creates it)", host,
				err_str(errno));
	for (size_t i = 0; roots[i]; i++) {
		if (under(real, roots[i])) {
			*resolved = real;
			return 0;
		}
	}
	char *list = host_volumes_describe(roots);
	if (strcmp(real, host))
		berr_set(err, 403,
			 "volume host path '%s' refused: it resolves to '%s', which is not under "
			 "a volume root of this agent (--volume-root: %s)",
			 host, real, list);
	else
		berr_set(err, 403,
			 "volume host path '%s' refused: not under a volume root of this agent "
			 "(--volume-root: %s)",
			 host, list);
	free(list);
	free(real);
	return -1;
}

char *host_volumes_describe(char *const *roots)
{
	struct sbuf sb;
	sbuf_init(&sb);
	for (size_t i = 0; roots && roots[i]; i++)
		sbuf_addf(&sb, "%s%s", i ? "," : "", roots[i]);
	char *s = sbuf_detach(&sb);
	return s ? s : xstrdup("");
}
