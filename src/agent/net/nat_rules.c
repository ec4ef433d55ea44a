/* nat_rules.c - berth's nftables table (see nat_rules.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/net/nat_rules.h"

/* A batch of nftables messages, sent and acknowledged at once. */
struct nft_batch {
	char *buf;
	struct mnl_nlmsg_batch *b;
	uint32_t seq;
};

static void batch_init(struct nft_batch *nb, size_t size)
{
	nb->buf = xmalloc(size);
	nb->b = mnl_nlmsg_batch_start(nb->buf, size);
	nb->seq = (uint32_t)time(NULL);
	nftnl_batch_begin(mnl_nlmsg_batch_current(nb->b), nb->seq++);
	mnl_nlmsg_batch_next(nb->b);
}

static void batch_release(struct nft_batch *nb)
{
	mnl_nlmsg_batch_stop(nb->b);
	free(nb->buf);
}

static struct nlmsghdr *batch_msg(struct nft_batch *nb, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *h = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(nb->b), type,
						   NFPROTO_IPV4, flags, nb->seq++);
	return h;
}

static void table_msg(struct nft_batch *nb, uint16_t type, uint16_t flags)
{
	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, NAT_RULES_TABLE);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_IPV4);
	nftnl_table_nlmsg_build_payload(batch_msg(nb, type, flags), t);
	nftnl_table_free(t);
	mnl_nlmsg_batch_next(nb->b);
}

/* Send the batch; read until the kernel acknowledged its last message or
 * reported an error. */
static int batch_send(struct nft_batch *nb, const char *what, struct berr *err)
{
	nftnl_batch_end(mnl_nlmsg_batch_current(nb->b), nb->seq++);
	mnl_nlmsg_batch_next(nb->b);
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return berr_set(err, 0, "cannot %s: cannot open a netfilter socket: %s", what,
				strerror(errno));
	int rc = -1;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		berr_set(err, 0, "cannot %s: %s", what, strerror(errno));
		goto out;
	}
	uint32_t portid = mnl_socket_get_portid(nl);
	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(nb->b), mnl_nlmsg_batch_size(nb->b)) < 0) {
		berr_set(err, 0, "cannot %s: %s", what, strerror(errno));
		goto out;
	}
	char buf[16384];
	int r;
	while ((r = (int)mnl_socket_recvfrom(nl, buf, sizeof buf)) > 0) {
		r = mnl_cb_run(buf, (size_t)r, 0, portid, NULL, NULL);
		if (r <= 0)
			break;
	}
	if (r < 0) {
		berr_set(err, 0, "cannot %s: %s", what, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	mnl_socket_close(nl);
	return rc;
}

static void add_expr(struct nftnl_rule *r, struct nftnl_expr *e)
{
	nftnl_rule_add_expr(r, e);
}

/* reg1 = ip header field at offset (12: saddr, 16: daddr), masked; then
 * compare it with the network (op: NFT_CMP_EQ or NFT_CMP_NEQ). */
static void match_prefix(struct nftnl_rule *r, uint32_t offset, const struct cidr *c,
			 enum nft_cmp_ops op)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 4);
	add_expr(r, e);
	uint32_t mask = htonl(c->prefix ? ~((1u << (32 - c->prefix)) - 1) : 0);
	if (c->prefix >= 32)
		mask = 0xffffffffu;
	uint32_t zero = 0, net = htonl(c->base);
	e = nftnl_expr_alloc("bitwise");
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &zero, 4);
	add_expr(r, e);
	e = nftnl_expr_alloc("cmp");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &net, 4);
	add_expr(r, e);
}

/* Compare reg1 with len bytes of data. */
static void match_reg(struct nftnl_rule *r, const void *data, uint32_t len, enum nft_cmp_ops op)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	add_expr(r, e);
}

/* meta KEY (iifname, oifname, l4proto) into reg1. */
static void load_meta(struct nftnl_rule *r, uint32_t key)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
	add_expr(r, e);
}

static void match_ifname(struct nftnl_rule *r, uint32_t key, const char *name)
{
	char buf[IFNAMSIZ] = {0};
	snprintf(buf, sizeof buf, "%s", name);
	load_meta(r, key);
	match_reg(r, buf, IFNAMSIZ, NFT_CMP_EQ);
}

static struct nftnl_rule *rule_new(const char *chain)
{
	struct nftnl_rule *rule = nftnl_rule_alloc();
	nftnl_rule_set_str(rule, NFTNL_RULE_TABLE, NAT_RULES_TABLE);
	nftnl_rule_set_str(rule, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(rule, NFTNL_RULE_FAMILY, NFPROTO_IPV4);
	return rule;
}

static void rule_add(struct nft_batch *nb, struct nftnl_rule *rule)
{
	nftnl_rule_nlmsg_build_payload(batch_msg(nb, NFT_MSG_NEWRULE, NLM_F_APPEND | NLM_F_CREATE),
				       rule);
	nftnl_rule_free(rule);
	mnl_nlmsg_batch_next(nb->b);
}

static void chain_add(struct nft_batch *nb, const char *name, uint32_t hook, int prio,
		      const char *type)
{
	struct nftnl_chain *ch = nftnl_chain_alloc();
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, NAT_RULES_TABLE);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, type);
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nftnl_chain_nlmsg_build_payload(batch_msg(nb, NFT_MSG_NEWCHAIN, NLM_F_CREATE), ch);
	nftnl_chain_free(ch);
	mnl_nlmsg_batch_next(nb->b);
}

/* fib daddr type local PROTO dport P dnat to ADDR */
static void dnat_rule(struct nft_batch *nb, const char *chain, const struct nat_port_map *m,
		      uint8_t proto)
{
	struct nftnl_rule *r = rule_new(chain);
	struct nftnl_expr *e = nftnl_expr_alloc("fib");
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
	add_expr(r, e);
	uint32_t local = RTN_LOCAL;
	match_reg(r, &local, 4, NFT_CMP_EQ);
	load_meta(r, NFT_META_L4PROTO);
	match_reg(r, &proto, 1, NFT_CMP_EQ);
	e = nftnl_expr_alloc("payload");
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 2);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 2);
	add_expr(r, e);
	uint16_t port = htons(m->port);
	match_reg(r, &port, 2, NFT_CMP_EQ);
	uint32_t addr = htonl(m->addr);
	e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &addr, 4);
	add_expr(r, e);
	e = nftnl_expr_alloc("nat");
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, NFPROTO_IPV4);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
	add_expr(r, e);
	rule_add(nb, r);
}

int nat_rules_write(const struct cidr *cluster, const char *bridge, const struct nat_port_map *maps,
		    size_t nmaps, struct berr *err)
{
	/* First make sure the table exists, so that the transaction below can
	 * delete it (nftables has no "delete if present" before Linux 6.3). */
	struct nft_batch nb;
	batch_init(&nb, 16 * 1024);
	table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK);
	int r = batch_send(&nb, "create nftables table '" NAT_RULES_TABLE "'", err);
	batch_release(&nb);
	if (r < 0)
		return -1;

	batch_init(&nb, 64 * 1024 + nmaps * 4 * 1024);
	table_msg(&nb, NFT_MSG_DELTABLE, 0);
	table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	chain_add(&nb, "prerouting", NF_INET_PRE_ROUTING, -100, "nat");
	chain_add(&nb, "output", NF_INET_LOCAL_OUT, -100, "nat");
	chain_add(&nb, "postrouting", NF_INET_POST_ROUTING, 100, "nat");
	chain_add(&nb, "input", NF_INET_LOCAL_IN, 0, "filter");
	for (size_t i = 0; i < nmaps; i++)
		for (int c = 0; c < 2; c++) {
			const char *chain = c ? "output" : "prerouting";
			dnat_rule(&nb, chain, &maps[i], IPPROTO_TCP);
			dnat_rule(&nb, chain, &maps[i], IPPROTO_UDP);
		}

	struct nftnl_rule *rule = rule_new("postrouting");
	match_prefix(rule, 12, cluster, NFT_CMP_EQ);
	match_prefix(rule, 16, cluster, NFT_CMP_NEQ);
	add_expr(rule, nftnl_expr_alloc("masq"));
	rule_add(&nb, rule);

	/* Hairpin: a task that reaches a port map of its own node comes back
	 * out on the bridge to a task next to it, which must answer through
	 * the node (not straight back on the bridge): masquerade it. */
	rule = rule_new("postrouting");
	match_ifname(rule, NFT_META_OIFNAME, bridge);
	struct nftnl_expr *ct = nftnl_expr_alloc("ct");
	nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, NFT_CT_STATUS);
	nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	add_expr(rule, ct);
	uint32_t dnat_bit = 1u << 5, nil = 0; /* IPS_DST_NAT */
	ct = nftnl_expr_alloc("bitwise");
	nftnl_expr_set_u32(ct, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(ct, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(ct, NFTNL_EXPR_BITWISE_LEN, 4);
	nftnl_expr_set(ct, NFTNL_EXPR_BITWISE_MASK, &dnat_bit, 4);
	nftnl_expr_set(ct, NFTNL_EXPR_BITWISE_XOR, &nil, 4);
	add_expr(rule, ct);
	match_reg(rule, &nil, 4, NFT_CMP_NEQ);
	match_prefix(rule, 12, cluster, NFT_CMP_EQ);
	add_expr(rule, nftnl_expr_alloc("masq"));
	rule_add(&nb, rule);

	struct cidr loopback = {0x7f000000u, 8};
	rule = rule_new("postrouting");
	match_ifname(rule, NFT_META_OIFNAME, bridge);
	match_prefix(rule, 12, &loopback, NFT_CMP_EQ);
	add_expr(rule, nftnl_expr_alloc("masq"));
	rule_add(&nb, rule);

	/* New connections only: the replies to the node's own connections to
	 * its port maps come back from the bridge to 127.0.0.1 once de-NATed. */
	rule = rule_new("input");
	match_ifname(rule, NFT_META_IIFNAME, bridge);
	match_prefix(rule, 16, &loopback, NFT_CMP_EQ);
	struct nftnl_expr *e = nftnl_expr_alloc("ct");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	add_expr(rule, e);
	uint32_t new_bit = 1u << 3, zero = 0; /* NF_CT_STATE_BIT(IP_CT_NEW) */
	e = nftnl_expr_alloc("bitwise");
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &new_bit, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &zero, 4);
	add_expr(rule, e);
	match_reg(rule, &zero, 4, NFT_CMP_NEQ);
	e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
	add_expr(rule, e);
	/* The last message asks for the acknowledgement batch_send waits for. */
	nftnl_rule_nlmsg_build_payload(
	    batch_msg(&nb, NFT_MSG_NEWRULE, NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK), rule);
	nftnl_rule_free(rule);
	mnl_nlmsg_batch_next(nb.b);
	r = batch_send(&nb, "write nftables table '" NAT_RULES_TABLE "'", err);
	batch_release(&nb);
	return r;
}

int nat_rules_remove(struct berr *err)
{
	struct nft_batch nb;
	batch_init(&nb, 16 * 1024);
	table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	table_msg(&nb, NFT_MSG_DELTABLE, NLM_F_ACK);
	int r = batch_send(&nb, "remove nftables table '" NAT_RULES_TABLE "'", err);
	batch_release(&nb);
	return r;
}
