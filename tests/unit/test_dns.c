/* test_dns.c - agent/dns_msg (queries read, answers written: compression,
 * truncation, bad packets) and agent/dns_server's answers for berth names
 * from an endpoints table (agent/endpoints.h). */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dns_msg.h"
#include "agent/dns_server.h"
#include "agent/endpoints.h"
#include "unit.h"

/* A query for name/type, as a client writes it; its length. */
static size_t make_query(uint8_t *buf, uint16_t id, const char *name, uint16_t type, bool edns)
{
	memset(buf, 0, 12);
	buf[0] = (uint8_t)(id >> 8);
	buf[1] = (uint8_t)id;
	buf[2] = 0x01; /* RD */
	buf[5] = 1;
	int n = dns_name_encode(name, buf + 12, 300);
	size_t len = 12 + (size_t)n;
	buf[len++] = (uint8_t)(type >> 8);
	buf[len++] = (uint8_t)type;
	buf[len++] = 0;
	buf[len++] = 1;
	if (edns) {
		buf[11] = 1;
		uint8_t opt[11] = {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0};
		memcpy(buf + len, opt, sizeof opt);
		len += sizeof opt;
	}
	return len;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

TEST(parses_a_query)
{
	uint8_t buf[512];
	size_t len = make_query(buf, 0x1234, "Web.Devel.Alice.berth", DNS_TYPE_SRV, true);
	struct dns_query q;
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_OK);
	CHECK(q.id == 0x1234);
	CHECK(q.rd);
	CHECK_STR(q.name, "web.devel.alice.berth");
	CHECK_STR(q.echo, "Web.Devel.Alice.berth");
	CHECK(q.qtype == DNS_TYPE_SRV && q.qclass == 1);
	CHECK(q.edns && q.udp_size == DNS_UDP_MAX); /* 4096 asked, capped */
	len = make_query(buf, 1, "a.b", DNS_TYPE_A, false);
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_OK);
	CHECK(!q.edns && q.udp_size == 512);
}

TEST(refuses_bad_packets)
{
	uint8_t buf[600] = {0};
	struct dns_query q;
	CHECK(dns_query_parse(buf, 5, &q) == DNS_PARSE_DROP);
	CHECK(dns_query_parse(NULL, 0, &q) == DNS_PARSE_DROP);
	size_t len = make_query(buf, 7, "a.b", DNS_TYPE_A, false);
	buf[2] |= 0x80; /* a response */
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_DROP);
	buf[2] = 0x01 | (2 << 3); /* opcode STATUS */
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_NOTIMP);
	CHECK(q.id == 7);
	len = make_query(buf, 7, "a.b", DNS_TYPE_A, false);
	buf[5] = 2; /* two questions */
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_FORMERR);
	buf[5] = 1;
	CHECK(dns_query_parse(buf, len - 3, &q) == DNS_PARSE_FORMERR); /* cut short */
	/* A label running past the end. */
	len = make_query(buf, 7, "a.b", DNS_TYPE_A, false);
	buf[12] = 60;
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_FORMERR);
	/* A pointer to itself, and a forward one: loops are impossible. */
	len = make_query(buf, 7, "a.b", DNS_TYPE_A, false);
	buf[12] = 0xC0;
	buf[13] = 12;
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_FORMERR);
	buf[13] = 40;
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_FORMERR);
	/* Extended label types, a dot or a NUL inside a label. */
	len = make_query(buf, 7, "a.b", DNS_TYPE_A, false);
	buf[12] = 0x41;
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_FORMERR);
	len = make_query(buf, 7, "ab.c", DNS_TYPE_A, false);
	buf[14] = '.';
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_FORMERR);
	buf[14] = 0;
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_FORMERR);
	/* A name over 255 bytes. */
	memset(buf, 0, sizeof buf);
	buf[5] = 1;
	size_t p = 12;
	for (int i = 0; i < 5; i++) {
		buf[p] = 63;
		memset(buf + p + 1, 'x', 63);
		p += 64;
	}
	buf[p++] = 0;
	p += 4;
	CHECK(dns_query_parse(buf, p, &q) == DNS_PARSE_FORMERR);
	/* Names that cannot be encoded. */
	uint8_t out[300];
	CHECK(dns_name_encode("a..b", out, sizeof out) < 0);
	CHECK(dns_name_encode("a.", out, sizeof out) < 0);
	char big[80];
	memset(big, 'y', 70);
	big[70] = 0;
	CHECK(dns_name_encode(big, out, sizeof out) < 0);
	CHECK(dns_name_encode("", out, sizeof out) == 1);
}

TEST(compresses_names)
{
	/* The answer's name points at the question's; the additional one's
	 * "0" label is followed by a pointer to the same suffix. */
	uint8_t buf[512];
	struct dns_query q;
	size_t len = make_query(buf, 9, "web.devel.alice.berth", DNS_TYPE_A, false);
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_OK);
	uint8_t out[512];
	struct dns_writer w;
	dns_reply_begin(&w, out, sizeof out, &q, DNS_NOERROR, true);
	struct in_addr a = {.s_addr = htonl(0x0a000001)};
	CHECK(dns_reply_a(&w, DNS_ANSWER, q.echo, 0, a) == 0);
	CHECK(dns_reply_a(&w, DNS_ADDITIONAL, "0.web.devel.alice.berth", 0, a) == 0);
	size_t n = dns_reply_finish(&w);
	/* header 12 + question (23 + 4) + answer (pointer 2 + 10 + 4) +
	 * additional ("0" label 2 + pointer 2 + 10 + 4) */
	CHECK(n == 12 + 27 + 16 + 18);
	CHECK(out[12 + 27] == 0xC0 && out[12 + 27 + 1] == 12);
	CHECK(get16(out + 6) == 1 && get16(out + 10) == 1);
	CHECK(out[2] & 0x80);	 /* QR */
	CHECK(out[2] & 0x04);	 /* AA */
	CHECK(!(out[2] & 0x02)); /* not TC */
}

TEST(truncates_answers_that_do_not_fit)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t len = make_query(buf, 9, "web.devel.alice.berth", DNS_TYPE_A, false);
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_OK);
	uint8_t out[512];
	struct dns_writer w;
	dns_reply_begin(&w, out, 100, &q, DNS_NOERROR, true);
	int added = 0;
	for (int i = 0; i < 10; i++) {
		struct in_addr a = {.s_addr = htonl(0x0a000001 + (uint32_t)i)};
		if (dns_reply_a(&w, DNS_ANSWER, q.echo, 0, a) == 0)
			added++;
	}
	size_t n = dns_reply_finish(&w);
	CHECK(n <= 100);
	CHECK(added == 3); /* 12 + 27 + 3 * 16 = 87; a fourth makes 103 */
	CHECK(out[2] & 0x02);
	CHECK(get16(out + 6) == 3);
}

static struct endpoints *table(void)
{
	struct endpoints *t = endpoints_new();
	json_error_t je;
	json_t *j = json_loads(
	    "{\"alice/devel/web\": ["
	    "{\"instance\": 1, \"task\": \"t1\", \"node\": \"n2\", \"address\": \"10.0.0.2\", "
	    "\"ports\": {\"http\": 20001}},"
	    "{\"instance\": 0, \"task\": \"t0\", \"node\": \"n1\", \"address\": \"10.0.0.1\", "
	    "\"ports\": {\"http\": 20000, \"admin\": 20100}},"
	    "{\"instance\": \"bad\"}],"
	    " \"alice/devel/idle\": [], \"x\": 5}",
	    0, &je);
	struct berr err = {0};
	CHECK(endpoints_replace(t, 42, j, &err) == 0);
	CHECK_CONTAINS(err.msg, "2 malformed");
	json_decref(j);
	return t;
}

static size_t ask(struct endpoints *t, const char *name, uint16_t type, uint8_t *out, size_t cap)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t len = make_query(buf, 5, name, type, false);
	CHECK(dns_query_parse(buf, len, &q) == DNS_PARSE_OK);
	return dns_answer_berth(t, &q, out, cap);
}

static void count_fn(void *ud, const char *key, const struct endpoint *e)
{
	(void)key;
	(void)e;
	(*(int *)ud)++;
}

static void jobs_fn(void *ud, const char *key, const struct endpoint *eps, size_t n)
{
	(void)key;
	(void)eps;
	(void)n;
	(*(int *)ud)++;
}

TEST(endpoints_table)
{
	struct endpoints *t = table();
	CHECK(endpoints_version(t) == 42);
	struct berr err = {0};
	CHECK(endpoints_replace(t, 43, NULL, &err) < 0);
	CHECK(endpoints_version(t) == 42);
	int n = 0;
	CHECK(endpoints_each(t, "alice/devel/web", count_fn, &n) == 2 && n == 2);
	CHECK(endpoints_each(t, "alice/devel/idle", count_fn, &n) == 0);
	CHECK(endpoints_each(t, "nope/x/y", count_fn, &n) == -1);
	/* A delta: one job changed, one gone, one new; the others kept. */
	json_t *d = json_loads("{\"alice/devel/idle\": null, \"bob/prod/db\": [{\"instance\": 0, "
			       "\"task\": \"d0\", \"address\": \"10.0.0.9\"}]}",
			       0, NULL);
	CHECK(endpoints_apply_delta(t, 41, 44, d, &err) == 1); /* not at its base */
	CHECK(endpoints_version(t) == 42);
	CHECK(endpoints_apply_delta(t, 42, 44, d, &err) == 0);
	json_decref(d);
	CHECK(endpoints_version(t) == 44);
	CHECK(endpoints_each(t, "alice/devel/idle", count_fn, &n) == -1);
	CHECK(endpoints_each(t, "bob/prod/db", count_fn, &n) == 1);
	CHECK(endpoints_each(t, "alice/devel/web", count_fn, &n) == 2);
	n = 0;
	endpoints_each_job(t, jobs_fn, &n);
	CHECK(n == 2);
	/* The shared job survives the next replacement of the table. */
	d = json_loads("{\"alice/devel/web\": []}", 0, NULL);
	CHECK(endpoints_apply_delta(t, 44, 45, d, &err) == 0);
	CHECK(endpoints_each(t, "alice/devel/web", count_fn, &n) == 0);
	CHECK(endpoints_each(t, "bob/prod/db", count_fn, &n) == 1);
	json_decref(d);
	endpoints_invalidate(t);
	CHECK(endpoints_version(t) == 0);
	CHECK(endpoints_each(t, "bob/prod/db", count_fn, &n) == 1); /* still readable */
	endpoints_free(t);
}

TEST(answers_berth_names)
{
	struct endpoints *t = table();
	uint8_t out[512];
	/* The job: both addresses. */
	size_t n = ask(t, "web.devel.alice.berth", DNS_TYPE_A, out, sizeof out);
	CHECK(n > 12 && (out[3] & 15) == DNS_NOERROR && get16(out + 6) == 2);
	/* One instance. */
	n = ask(t, "1.WEB.devel.alice.berth", DNS_TYPE_A, out, sizeof out);
	CHECK((out[3] & 15) == DNS_NOERROR && get16(out + 6) == 1);
	CHECK(!memcmp(out + n - 4, "\x0a\x00\x00\x02", 4));
	/* SRV: each instance with its port, the A records in additional. */
	n = ask(t, "_http._tcp.web.devel.alice.berth", DNS_TYPE_SRV, out, sizeof out);
	CHECK((out[3] & 15) == DNS_NOERROR && get16(out + 6) == 2 && get16(out + 10) == 2);
	n = ask(t, "_admin._tcp.web.devel.alice.berth", DNS_TYPE_SRV, out, sizeof out);
	CHECK(get16(out + 6) == 1);
	/* A known name, another type: no data, no error. */
	n = ask(t, "web.devel.alice.berth", DNS_TYPE_AAAA, out, sizeof out);
	CHECK((out[3] & 15) == DNS_NOERROR && get16(out + 6) == 0);
	/* A job with no instance running: the name exists. */
	ask(t, "idle.devel.alice.berth", DNS_TYPE_A, out, sizeof out);
	CHECK((out[3] & 15) == DNS_NOERROR && get16(out + 6) == 0);
	/* Unknown: job, instance, port, shape. */
	const char *nx[] = {"nope.devel.alice.berth",	      "7.web.devel.alice.berth",
			    "_db._tcp.web.devel.alice.berth", "devel.alice.berth",
			    "a.b.c.web.devel.alice.berth",    "berth",
			    "01.web.devel.alice.berth",	      "_http._udp.web.devel.alice.berth"};
	for (size_t i = 0; i < ARRAY_SIZE(nx); i++) {
		n = ask(t, nx[i], DNS_TYPE_A, out, sizeof out);
		CHECK(n > 0 && (out[3] & 15) == DNS_NXDOMAIN);
	}
	/* Not ours: forwarded. */
	CHECK(ask(t, "example.com", DNS_TYPE_A, out, sizeof out) == 0);
	CHECK(ask(t, "notberth", DNS_TYPE_A, out, sizeof out) == 0);
	CHECK(ask(t, "x.berthy", DNS_TYPE_A, out, sizeof out) == 0);
	/* Too small for both SRV records: TC. */
	n = ask(t, "_http._tcp.web.devel.alice.berth", DNS_TYPE_SRV, out, 100);
	CHECK(n <= 100 && (out[2] & 0x02));
	endpoints_free(t);
}

TEST(reads_resolv_conf)
{
	struct sockaddr_in a[4];
	size_t n = dns_parse_resolv_conf("# c\nsearch x\nnameserver 10.0.0.1\n"
					 "nameserver ::1\nnameserver  192.168.1.1 \nnameserver "
					 "bogus\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n"
					 "nameserver 9.9.9.9",
					 a, 4);
	CHECK(n == 4);
	CHECK(a[0].sin_addr.s_addr == inet_addr("10.0.0.1") && ntohs(a[0].sin_port) == 53);
	CHECK(a[1].sin_addr.s_addr == inet_addr("192.168.1.1"));
	CHECK(a[3].sin_addr.s_addr == inet_addr("8.8.8.8"));
	CHECK(dns_parse_resolv_conf("", a, 4) == 0);
}

UNIT_MAIN(parses_a_query, refuses_bad_packets, compresses_names, truncates_answers_that_do_not_fit,
	  endpoints_table, answers_berth_names, reads_resolv_conf)
