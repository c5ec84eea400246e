/* SPDX-License-Identifier: Apache-2.0 */
/* Header parsing with a cursor: every step checks data_end, every loop has a named maximum. */
#ifndef SIPEDGE_PARSING_H
#define SIPEDGE_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define NH_HOPOPTS 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_DSTOPTS 60
#define IPV4_MF 0x2000
#define IPV4_OFFSET_MASK 0x1fff

/* Parse results. */
#define PARSE_OK 0
#define PARSE_TRUNCATED 1 /* a header ends past data_end, or a length field is impossible */
#define PARSE_OTHER 2     /* not IP (or, from parse_l4, neither UDP nor TCP) */
#define PARSE_NOT_L4 3    /* IP, but neither UDP nor TCP */

/* Where a datagram sits in its fragment series. */
#define FRAG_NONE 0
#define FRAG_FIRST 1
#define FRAG_LATER 2

struct cursor {
	void *pos;
	void *end;
};

/* What the program needs to know about one packet. */
struct pkt {
	__u8 src[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__u8 dst[16];
	__u32 family; /* 4 or 6 */
	__u32 frag_id;
	__u32 payload_off; /* offset of the L4 payload from the start of the frame */
	__u16 sport;  /* host byte order */
	__u16 dport;
	__u8 frag;    /* FRAG_* */
	__u8 proto;
};

struct vlan_hdr_ {
	__be16 tci;
	__be16 encap_proto;
};

/* Ethernet and up to MAX_VLAN_DEPTH tags; *proto gets the inner EtherType (network order). */
static __always_inline int parse_eth(struct cursor *c, __be16 *proto)
{
	struct ethhdr *eth = c->pos;
	if ((void *)(eth + 1) > c->end)
		return PARSE_TRUNCATED;
	c->pos = eth + 1;
	__be16 p = eth->h_proto;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_DEPTH; i++) {
		if (p != bpf_htons(ETH_P_8021Q_) && p != bpf_htons(ETH_P_8021AD_))
			break;
		struct vlan_hdr_ *v = c->pos;
		if ((void *)(v + 1) > c->end)
			return PARSE_TRUNCATED;
		c->pos = v + 1;
		p = v->encap_proto;
	}
	if (p == bpf_htons(ETH_P_8021Q_) || p == bpf_htons(ETH_P_8021AD_))
		return PARSE_TRUNCATED; /* deeper stacking than we parse */
	*proto = p;
	return PARSE_OK;
}

static __always_inline int parse_ipv4(struct cursor *c, struct pkt *p)
{
	struct iphdr *ip = c->pos;
	if ((void *)(ip + 1) > c->end)
		return PARSE_TRUNCATED;
	__u32 hlen = ip->ihl * 4;
	if (ip->version != 4 || hlen < sizeof(*ip))
		return PARSE_TRUNCATED;
	if (c->pos + hlen > c->end)
		return PARSE_TRUNCATED;
	c->pos += hlen;
	p->family = 4;
	p->proto = ip->protocol;
	__builtin_memcpy(p->src, &ip->saddr, 4);
	__builtin_memcpy(p->dst, &ip->daddr, 4);
	__u16 frag = bpf_ntohs(ip->frag_off);
	p->frag_id = bpf_ntohs(ip->id);
	if (frag & IPV4_OFFSET_MASK)
		p->frag = FRAG_LATER;
	else if (frag & IPV4_MF)
		p->frag = FRAG_FIRST;
	return PARSE_OK;
}

struct ipv6_opt_hdr_ {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ipv6_frag_hdr_ {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 id;
};

/* The fixed header and up to MAX_IPV6_EXT_HDRS extension headers. */
static __always_inline int parse_ipv6(struct cursor *c, struct pkt *p)
{
	struct ipv6hdr *ip = c->pos;
	if ((void *)(ip + 1) > c->end)
		return PARSE_TRUNCATED;
	if (ip->version != 6)
		return PARSE_TRUNCATED;
	c->pos = ip + 1;
	p->family = 6;
	__builtin_memcpy(p->src, &ip->saddr, 16);
	__builtin_memcpy(p->dst, &ip->daddr, 16);
	__u8 nh = ip->nexthdr;
	for (int i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		if (nh == NH_FRAGMENT) {
			struct ipv6_frag_hdr_ *f = c->pos;
			if ((void *)(f + 1) > c->end)
				return PARSE_TRUNCATED;
			c->pos = f + 1;
			__u16 off = bpf_ntohs(f->frag_off);
			p->frag_id = bpf_ntohl(f->id);
			if (off & 0xfff8) {
				p->frag = FRAG_LATER;
				p->proto = f->nexthdr;
				return PARSE_OK; /* no transport header here */
			}
			if (off & 1)
				p->frag = FRAG_FIRST;
			nh = f->nexthdr;
			continue;
		}
		if (nh != NH_HOPOPTS && nh != NH_ROUTING && nh != NH_DSTOPTS && nh != NH_AH)
			break;
		struct ipv6_opt_hdr_ *o = c->pos;
		if ((void *)(o + 1) > c->end)
			return PARSE_TRUNCATED;
		__u32 len = nh == NH_AH ? ((__u32)o->hdrlen + 2) * 4 : ((__u32)o->hdrlen + 1) * 8;
		if (c->pos + len > c->end)
			return PARSE_TRUNCATED;
		nh = o->nexthdr;
		c->pos += len;
	}
	if (nh == NH_HOPOPTS || nh == NH_ROUTING || nh == NH_DSTOPTS || nh == NH_AH ||
	    nh == NH_FRAGMENT)
		return PARSE_TRUNCATED; /* more extension headers than we walk */
	p->proto = nh;
	return PARSE_OK;
}

/* UDP or TCP ports; the cursor ends at the UDP payload. */
static __always_inline int parse_l4(struct cursor *c, struct pkt *p)
{
	if (p->proto == IPPROTO_UDP) {
		struct udphdr *u = c->pos;
		if ((void *)(u + 1) > c->end)
			return PARSE_TRUNCATED;
		p->sport = bpf_ntohs(u->source);
		p->dport = bpf_ntohs(u->dest);
		c->pos = u + 1;
		return PARSE_OK;
	}
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *t = c->pos;
		if ((void *)(t + 1) > c->end)
			return PARSE_TRUNCATED;
		p->sport = bpf_ntohs(t->source);
		p->dport = bpf_ntohs(t->dest);
		c->pos = t + 1;
		return PARSE_OK;
	}
	return PARSE_OTHER;
}

/* ASCII lower case. */
static __always_inline __u8 fold(__u8 b)
{
	return (__u8)(b - 'A') < 26 ? b | 0x20 : b;
}

#endif
