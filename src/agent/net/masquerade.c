/* masquerade.c - berth's nftables table (see masquerade.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/net/masquerade.h"

/* A batch of nftables messages, sent and acknowledged at once. */
struct nft_batch {
	char *buf;
	struct mnl_nlmsg_batch *b;
	uint32_t seq;
};

static void batch_init(struct nft_batch *nb)
{
	size_t size = 64 * 1024;
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
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, MASQUERADE_TABLE);
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

int masquerade_ensure(const struct cidr *cluster, struct berr *err)
{
	/* First make sure the table exists, so that the transaction below can
	 * delete it (nftables has no "delete if present" before Linux 6.3). */
	struct nft_batch nb;
	batch_init(&nb);
	table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK);
	int r = batch_send(&nb, "create nftables table '" MASQUERADE_TABLE "'", err);
	batch_release(&nb);
	if (r < 0)
		return -1;

	batch_init(&nb);
	table_msg(&nb, NFT_MSG_DELTABLE, 0);
	table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);

	struct nftnl_chain *ch = nftnl_chain_alloc();
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, MASQUERADE_TABLE);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, "postrouting");
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, NF_INET_POST_ROUTING);
	nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, 100);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, "nat");
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nftnl_chain_nlmsg_build_payload(batch_msg(&nb, NFT_MSG_NEWCHAIN, NLM_F_CREATE), ch);
	nftnl_chain_free(ch);
	mnl_nlmsg_batch_next(nb.b);

	struct nftnl_rule *rule = nftnl_rule_alloc();
	nftnl_rule_set_str(rule, NFTNL_RULE_TABLE, MASQUERADE_TABLE);
	nftnl_rule_set_str(rule, NFTNL_RULE_CHAIN, "postrouting");
	nftnl_rule_set_u32(rule, NFTNL_RULE_FAMILY, NFPROTO_IPV4);
	match_prefix(rule, 12, cluster, NFT_CMP_EQ);
	match_prefix(rule, 16, cluster, NFT_CMP_NEQ);
	add_expr(rule, nftnl_expr_alloc("masq"));
	nftnl_rule_nlmsg_build_payload(
	    batch_msg(&nb, NFT_MSG_NEWRULE, NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK), rule);
	nftnl_rule_free(rule);
	mnl_nlmsg_batch_next(nb.b);
	r = batch_send(&nb, "write nftables table '" MASQUERADE_TABLE "'", err);
	batch_release(&nb);
	return r;
}

int masquerade_remove(struct berr *err)
{
	struct nft_batch nb;
	batch_init(&nb);
	table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	table_msg(&nb, NFT_MSG_DELTABLE, NLM_F_ACK);
	int r = batch_send(&nb, "remove nftables table '" MASQUERADE_TABLE "'", err);
	batch_release(&nb);
	return r;
}
