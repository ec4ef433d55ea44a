/* agent_secrets.c - a launch's secrets: fetched from the server for the
 * task being launched (POST /v1/agent/secrets, answered only for a task
 * placed on this node whose job lists them) and written on the task's own
 * tmpfs (secret_files.h). Called by a launcher thread, without the lock. */
#include <stdlib.h>
#include <string.h>

#include "agent/agent-internal.h"
#include "agent/secret_files.h"
#include "core/base64.h"
#include "core/http_client.h"

static void wipe_free(char *p, size_t n)
{
	if (p)
		memset(p, 0, n);
	free(p);
}

int agent_secrets_prepare(const struct agent *a, const char *task_id, const char *sandbox,
			  const struct task_spec *ts, char ***files_out, struct berr *err)
{
	*files_out = NULL;
	if (!ts->nsecrets)
		return 0;
	struct http_client *hc = agent_identity_client((struct agent *)a, NULL);
	json_t *body = json_pack("{s:s,s:s}", "name", a->name, "task", task_id);
	json_t *reply = NULL;
	int r = http_json(hc, "POST", "/v1/agent/secrets", body, 10000, &reply, err);
	json_decref(body);
	http_client_free(hc);
	if (r < 0)
		return berr_prefix(err, "cannot fetch the task's secrets");
	json_t *list = json_object_get(reply, "secrets");
	struct secret_value *v = xcalloc(ts->nsecrets, sizeof *v);
	size_t n = 0;
	for (size_t i = 0; i < ts->nsecrets; i++) {
		const char *want = ts->secrets[i].name;
		size_t k;
		json_t *e;
		json_array_foreach(list, k, e)
		{
			const char *name = json_string_value(json_object_get(e, "name"));
			json_t *data = json_object_get(e, "data");
			if (!name || strcmp(name, want) || !json_is_string(data))
				continue;
			char *raw = NULL;
			size_t len = 0;
			if (base64_decode(json_string_value(data), json_string_length(data), &raw,
					  &len) == 0) {
				v[n].name = want;
				v[n].data = raw;
				v[n].len = len;
				n++;
			}
			break;
		}
		if (n != i + 1) {
			berr_set(err, 500, "the server sent no value for secret '%s'", want);
			r = -1;
			break;
		}
	}
	if (r == 0)
		r = secret_files_write(sandbox, v, n, err);
	for (size_t i = 0; i < n; i++)
		wipe_free((char *)v[i].data, v[i].len);
	free(v);
	/* The reply's text held the values too. */
	size_t k;
	json_t *e;
	json_array_foreach(list, k, e)
	{
		json_t *data = json_object_get(e, "data");
		if (json_is_string(data))
			memset((char *)json_string_value(data), 0, json_string_length(data));
	}
	json_decref(reply);
	if (r < 0)
		return -1;
	char *dir = secret_files_dir(sandbox);
	char **files = xcalloc(ts->nsecrets + 1, sizeof *files);
	for (size_t i = 0; i < ts->nsecrets; i++)
		files[i] = xasprintf("%s/%s", dir, ts->secrets[i].name);
	free(dir);
	*files_out = files;
	return 0;
}
