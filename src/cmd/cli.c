#include "cmd/cli.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json_text.h"
#include "core/log.h"

struct cli_opt *cli_get(struct cli_opt *opts, size_t nopts, const char *name)
{
	for (size_t i = 0; i < nopts; i++)
		if (!strcmp(opts[i].name, name))
			return &opts[i];
	return NULL;
}

int cli_begin(int argc, char **argv, const char *usage, struct cli_opt *opts, size_t nopts,
	      const char ***pos, size_t *npos)
{
	if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
		cli_usage(usage, opts, nopts);
		return argc < 1 ? 2 : 0;
	}
	if (cli_parse(argc - 1, argv + 1, opts, nopts, pos, npos) < 0)
		return 2;
	struct cli_opt *help = cli_get(opts, nopts, "--help");
	if (help && help->set) {
		cli_usage(usage, opts, nopts);
		return 0;
	}
	return -1;
}

int cli_parse(int argc, char **argv, struct cli_opt *opts, size_t nopts, const char ***pos,
	      size_t *npos)
{
	*pos = xcalloc((size_t)argc + 1, sizeof **pos);
	*npos = 0;
	bool only_pos = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (only_pos || a[0] != '-' || !a[1]) {
			(*pos)[(*npos)++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = true;
			continue;
		}
		const char *eq = strchr(a, '=');
		size_t nl = eq ? (size_t)(eq - a) : strlen(a);
		struct cli_opt *o = NULL;
		for (size_t k = 0; k < nopts && !o; k++) {
			if ((strlen(opts[k].name) == nl && !strncmp(opts[k].name, a, nl)) ||
			    (opts[k].alias && strlen(opts[k].alias) == nl &&
			     !strncmp(opts[k].alias, a, nl)))
				o = &opts[k];
		}
		if (!o && ((nl == 7 && !strncmp(a, "--token", 7)) ||
			   (nl == 8 && !strncmp(a, "--cacert", 8)))) {
			/* Every command takes the client's credentials. */
			const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
			if (!v) {
				fprintf(stderr, "berth: option '%.*s' needs a value\n", (int)nl, a);
				return -1;
			}
			setenv(nl == 7 ? "BERTH_TOKEN" : "BERTH_CACERT", v, 1);
			continue;
		}
		if (!o) {
			fprintf(stderr, "berth: unknown option '%.*s' (see --help)\n", (int)nl, a);
			return -1;
		}
		const char *val = NULL;
		if (o->takes_value) {
			if (eq)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else {
				fprintf(stderr, "berth: option '%s' needs a value\n", o->name);
				return -1;
			}
		} else if (eq) {
			fprintf(stderr, "berth: option '%s' takes no value\n", o->name);
			return -1;
		}
		o->set = true;
		o->value = val;
		if (o->multi && val) {
			o->values = xrealloc(o->values, (o->nvalues + 1) * sizeof *o->values);
			o->values[o->nvalues++] = val;
		}
	}
	return 0;
}

void cli_usage(const char *usage, const struct cli_opt *opts, size_t nopts)
{
	printf("usage: %s\n", usage);
	if (nopts)
		printf("\noptions:\n");
	for (size_t i = 0; i < nopts; i++) {
		char left[64];
		snprintf(left, sizeof left, "%s%s%s%s", opts[i].alias ? opts[i].alias : "",
			 opts[i].alias ? ", " : "", opts[i].name,
			 opts[i].takes_value ? " VALUE" : "");
		printf("  %-28s %s\n", left, opts[i].help);
	}
}

static char *config_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	if (xdg && *xdg)
		return xasprintf("%s/berth/config.json", xdg);
	if (home && *home)
		return xasprintf("%s/.config/berth/config.json", home);
	return NULL;
}

static char *abs_path(const char *p)
{
	char *r = realpath(p, NULL);
	return r ? r : xstrdup(p);
}

int cli_write_client_config(const char *addr, const char *data_dir)
{
	char *path = config_path();
	if (!path)
		return -1;
	char *dir = xstrdup(path);
	*strrchr(dir, '/') = 0;
	int r = mkdir_p(dir, 0700);
	char *data = abs_path(data_dir);
	char *ca = xasprintf("%s/client/ca.pem", data),
	     *tok = xasprintf("%s/client/admin.token", data);
	json_t *j = json_pack("{s:s,s:s,s:s}", "addr", addr, "cacert", ca, "token_file", tok);
	char *text = json_dumps(j, JSON_INDENT(2));
	char *tmp = xasprintf("%s.tmp", path);
	FILE *f = r < 0 ? NULL : fopen(tmp, "we");
	if (f) {
		fchmod(fileno(f), 0600);
		fprintf(f, "%s\n", text);
		r = fclose(f) == 0 && rename(tmp, path) == 0 ? 0 : -1;
	} else {
		r = -1;
	}
	if (r == 0)
		log_info("client configuration written to %s", path);
	free(tmp);
	free(text);
	json_decref(j);
	free(ca);
	free(tok);
	free(data);
	free(dir);
	free(path);
	return r;
}

/* The first line of a small file (a token), or NULL. */
static char *read_token_file(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	if (!path || file_read_all(path, &text, &len) < 0)
		return NULL;
	text[strcspn(text, "\r\n")] = 0;
	return text;
}

char *cli_server_urls(const char *list)
{
	struct sbuf sb;
	sbuf_init(&sb);
	char *copy = xstrdup(list);
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		if (!*t)
			continue;
		if (sb.len)
			sbuf_adds(&sb, ",");
		if (!strstr(t, "://"))
			sbuf_adds(&sb, "https://");
		sbuf_adds(&sb, t);
	}
	free(copy);
	return sbuf_detach(&sb);
}

struct http_client *cli_client(const char *addr_flag)
{
	const char *a = addr_flag;
	if (!a || !*a)
		a = getenv("BERTH_ADDR");
	/* The configuration `berth up` or `berth server` wrote for the user
	 * who ran it: its credentials go only to its own address. */
	char *cfgp = config_path();
	json_t *cfg = cfgp ? json_load_file(cfgp, 0, NULL) : NULL;
	free(cfgp);
	const char *cfg_addr = json_string_value(json_object_get(cfg, "addr"));
	bool use_cfg = cfg_addr && (!a || !*a || !strcmp(a, cfg_addr));
	if ((!a || !*a) && use_cfg)
		a = cfg_addr;
	if (!a || !*a)
		a = "https://127.0.0.1:7070";
	char *urls = cli_server_urls(a);
	struct http_client *hc = http_client_new(urls);
	free(urls);
	const char *cacert = getenv("BERTH_CACERT");
	if ((!cacert || !*cacert) && use_cfg)
		cacert = json_string_value(json_object_get(cfg, "cacert"));
	http_client_set_tls(hc, cacert, NULL, NULL);
	const char *token = getenv("BERTH_TOKEN");
	char *from_file = NULL;
	if (!token || !*token)
		token = from_file = read_token_file(getenv("BERTH_TOKEN_FILE"));
	if ((!token || !*token) && use_cfg)
		token = from_file =
		    read_token_file(json_string_value(json_object_get(cfg, "token_file")));
	http_client_set_token(hc, token);
	free(from_file);
	json_decref(cfg);
	/* An HA cluster electing a leader answers 503 for a few seconds: wait
	 * it out rather than fail the command. */
	http_client_set_patience(hc, 15000);
	return hc;
}

char *cli_cacert(const char *addr_flag)
{
	const char *env = getenv("BERTH_CACERT");
	if (env && *env)
		return xstrdup(env);
	const char *a = addr_flag && *addr_flag ? addr_flag : getenv("BERTH_ADDR");
	char *cfgp = config_path();
	json_t *cfg = cfgp ? json_load_file(cfgp, 0, NULL) : NULL;
	free(cfgp);
	const char *cfg_addr = json_string_value(json_object_get(cfg, "addr"));
	const char *ca = json_string_value(json_object_get(cfg, "cacert"));
	char *r = cfg_addr && ca && (!a || !*a || !strcmp(a, cfg_addr)) ? xstrdup(ca) : NULL;
	json_decref(cfg);
	return r;
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("berth: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

struct job_spec *cli_load_spec(const char *path)
{
	char *text;
	size_t len;
	int r = file_read_all(path, &text, &len);
	if (r < 0) {
		cli_fail("cannot read '%s': %s", path, strerror(-r));
		return NULL;
	}
	struct job_spec *spec = NULL;
	struct berr err = {0};
	if (spec_parse_yaml(text, len, path, &spec, &err) < 0) {
		fprintf(stderr, "berth: %s\n", err.msg);
		spec = NULL;
	}
	free(text);
	return spec;
}

void cli_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(s);
	free(s);
}

void cli_format_size(unsigned long long b, char *buf, size_t n)
{
	static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int i = 0;
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (v == (double)(unsigned long long)v)
		snprintf(buf, n, "%llu %s", (unsigned long long)v, u[i]);
	else
		snprintf(buf, n, "%.1f %s", v, u[i]);
}

/* Large lists come in pages of this many (the server's limit is higher). */
#define CLI_PAGE 5000

/* The URL of the page after `after` (NULL: the first). */
static char *page_path(const char *path, const char *after, const char *query)
{
	char *esc = after ? curl_easy_escape(NULL, after, 0) : NULL;
	char *url = xasprintf("%s?limit=%d%s%s%s%s", path, CLI_PAGE, esc ? "&after=" : "",
			      esc ? esc : "", query && *query ? "&" : "", query ? query : "");
	curl_free(esc);
	return url;
}

int cli_get_all_pages(struct http_client *hc, const char *path, const char *query,
		      const char *items_key, json_t **out, struct berr *err)
{
	json_t *all = json_array();
	char *after = NULL;
	for (;;) {
		char *url = page_path(path, after, query);
		free(after);
		after = NULL;
		json_t *page = NULL;
		int r = http_json(hc, "GET", url, NULL, 30000, &page, err);
		free(url);
		if (r < 0) {
			json_decref(all);
			return -1;
		}
		if (json_is_array(page)) {
			/* A server without paging answers with the whole list. */
			json_decref(all);
			*out = page;
			return 0;
		}
		json_t *items = json_object_get(page, items_key);
		json_t *next = json_object_get(page, "next");
		if (!json_is_array(items)) {
			json_decref(page);
			json_decref(all);
			return berr_set(err, 502, "the server's page has no '%s' list", items_key);
		}
		json_array_extend(all, items);
		if (json_is_string(next) && json_array_size(items))
			after = xstrdup(json_string_value(next));
		json_decref(page);
		if (!after)
			break;
	}
	*out = all;
	return 0;
}

int cli_print_json_text(const char *s, size_t len, struct berr *err)
{
	size_t b, e;
	if (!json_text_whole(s, len, &b, &e))
		return berr_set(err, 502, "bad reply from server: not valid JSON");
	struct sbuf out;
	sbuf_init(&out);
	json_text_indent(&out, s, b, e, 0);
	sbuf_adds(&out, "\n");
	fwrite(out.buf, 1, out.len, stdout);
	sbuf_release(&out);
	return 0;
}

/* One page's items (the text of its array) onto the list; false when the
 * array is empty. */
static bool add_page_items(struct sbuf *list, const char *s, size_t start, size_t end)
{
	size_t in_end = end - 1, in = json_text_skip_ws(s, in_end, start + 1);
	if (in >= in_end)
		return false;
	sbuf_adds(list, list->len > 1 ? ",\n  " : "\n  ");
	json_text_indent(list, s, in, in_end, 1);
	return true;
}

int cli_print_all_pages(struct http_client *hc, const char *path, const char *query,
			const char *items_key, struct berr *err)
{
	struct sbuf list;
	sbuf_init(&list);
	sbuf_adds(&list, "[");
	char *after = NULL;
	int rc = 0;
	bool whole = false;
	for (;;) {
		char *url = page_path(path, after, query);
		free(after);
		after = NULL;
		struct http_response page;
		rc = http_text(hc, "GET", url, NULL, 30000, &page, err);
		free(url);
		if (rc < 0)
			break;
		const char *s = page.body;
		size_t first = json_text_skip_ws(s, page.len, 0), b, e;
		if (first < page.len && s[first] == '[' && json_text_whole(s, page.len, &b, &e)) {
			/* A server without paging answers with the whole list. */
			list.len = 0;
			list.buf[0] = 0;
			json_text_indent(&list, s, b, e, 0);
			http_response_release(&page);
			whole = true;
			break;
		}
		const char *keys[2] = {items_key, "next"};
		size_t vs[2], ve[2];
		if (json_text_members(s, page.len, keys, 2, vs, ve) < 0 || !ve[0] ||
		    s[vs[0]] != '[') {
			http_response_release(&page);
			rc = berr_set(err, 502, "the server's page has no '%s' list", items_key);
			break;
		}
		if (add_page_items(&list, s, vs[0], ve[0]) && ve[1])
			after = json_text_string(s, vs[1], ve[1]);
		http_response_release(&page);
		if (!after)
			break;
	}
	if (rc == 0) {
		if (!whole)
			sbuf_adds(&list, list.len > 1 ? "\n]" : "]");
		sbuf_adds(&list, "\n");
		fwrite(list.buf, 1, list.len, stdout);
	}
	sbuf_release(&list);
	return rc;
}
