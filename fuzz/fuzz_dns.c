/* clang-format off */
/* fuzz_dns.c - libFuzzer target for the agent's name server: a DNS query
 * from a task (untrusted) read by dns_query_parse() and answered by
 * dns_answer_berth() from a small endpoints table, over UDP sizes and
 * over TCP.
 *
 * fuzz-sources: src/core/util.c src/core/hmap.c src/core/log.c src/core/addr.c src/agent/dns_msg.c src/agent/dns_server.c src/agent/endpoints.c
 * fuzz-libs: -ljansson -lpthread
 *
 * Checks: no crash, leak or UB; a parsed name is at most 255 bytes, lower
 * case and dot-separated without empty labels; an answer never exceeds
 * the buffer it was given, always carries the query's id and the QR bit,
 * and echoes the question; resolv.conf text never yields more upstreams
 * than asked for.
 */
/* clang-format on */
#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dns_msg.h"
#include "agent/dns_server.h"
#include "agent/endpoints.h"

static struct endpoints *table;

static void init(void)
{
	table = endpoints_new();
	json_t *j = json_loads("{\"alice/devel/web\": [{\"instance\": 0, \"task\": \"t0\", "
			       "\"node\": \"n1\", \"address\": \"10.0.0.1\", \"ports\": "
			       "{\"http\": 20000}}, {\"instance\": 1, \"task\": \"t1\", \"node\": "
			       "\"n2\", \"address\": \"10.0.0.2\", \"ports\": {\"http\": 20001}}], "
			       "\"alice/devel/idle\": []}",
			       0, NULL);
	struct berr err = {0};
	endpoints_replace(table, 1, j, &err);
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!table)
		init();
	struct dns_query q;
	enum dns_parse_result r = dns_query_parse(data, size, &q);
	if (r == DNS_PARSE_OK) {
		size_t nl = strlen(q.name);
		if (nl > DNS_NAME_MAX || strlen(q.echo) != nl || strstr(q.name, "..") ||
		    (nl && (q.name[0] == '.' || q.name[nl - 1] == '.')))
			abort();
		for (size_t i = 0; i < nl; i++)
			if (q.name[i] >= 'A' && q.name[i] <= 'Z')
				abort();
		size_t caps[] = {DNS_HEADER_SIZE + DNS_NAME_MAX + 6, 512, q.udp_size, 4096};
		for (size_t k = 0; k < sizeof caps / sizeof *caps; k++) {
			uint8_t *out = malloc(caps[k]);
			size_t n = dns_answer_berth(table, &q, out, caps[k]);
			if (n > caps[k] || (n && n < DNS_HEADER_SIZE))
				abort();
			if (n) {
				struct dns_query back;
				if ((out[0] << 8 | out[1]) != q.id || !(out[2] & 0x80) ||
				    out[5] != 1)
					abort();
				/* An answer is not a query: reading it drops it. */
				if (dns_query_parse(out, n, &back) != DNS_PARSE_DROP)
					abort();
			}
			free(out);
		}
	} else if (r == DNS_PARSE_FORMERR || r == DNS_PARSE_NOTIMP) {
		uint8_t out[64];
		struct dns_writer w;
		dns_reply_begin(&w, out, sizeof out, &q, DNS_FORMERR, false);
		if (dns_reply_finish(&w) != DNS_HEADER_SIZE)
			abort();
	}
	/* The same bytes as a resolv.conf. */
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	struct sockaddr_in ups[DNS_MAX_UPSTREAMS];
	if (dns_parse_resolv_conf(text, ups, DNS_MAX_UPSTREAMS) > DNS_MAX_UPSTREAMS)
		abort();
	free(text);
	return 0;
}
