/* SPDX-License-Identifier: Apache-2.0 */
/* sipedge XDP filter. For traffic to a configured SIP port, in order: blocklist -> drop;
 * allow-list -> pass; otherwise the unknown-source policy (drop, or a per-source token bucket
 * under a global budget, with a scanner-signature check on what the buckets admit). Everything
 * else passes untouched. Every verdict leaves through finish(), which counts it by reason.
 * ebpf/src/userspace.rs is the same policy in Rust; one packet table tests both.
 *
 * Cost (bench/README.md, "XDP filter"): the common frame (untagged IPv4, UDP or TCP) is parsed
 * inline by parse_fast, so a packet to another port costs its headers' checks, one port-map
 * read and its counter; everything else goes through the general parser. An IPv4 source outside
 * every listed /16 skips the trie walk (src_v4_hint). */
#include "consts.h"
#include "shared.h"
#include "maps.h"
#include "parsing.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Offsets past these are not scanned (see scan_payload). */
#define MAX_PAYLOAD_OFF 512
/* Callers stay below this; the verifier needs the bound on a global function's argument. */
#define MAX_LINE_OFF (MAX_PAYLOAD_OFF + SCAN_MAX_BYTES + HDR_UA_LEN + MAX_VALUE_SKIP)
/* A power-of-two mask at least MAX_LINE_OFF: after the range check, masking tells the verifier
 * the bound even where the compiler tested a different copy of the register. */
#define OFF_MASK 0x7ff
_Static_assert(MAX_LINE_OFF <= OFF_MASK, "OFF_MASK must cover MAX_LINE_OFF");
/* x & mask, computed where the compiler cannot drop the mask as redundant. */
#define BOUNDED(x, mask)                                                                   \
	({                                                                                 \
		__u32 v_ = (x);                                                            \
		asm volatile("" : "+r"(v_));                                               \
		v_ & (mask);                                                               \
	})

/* 1 when the bytes at frame offset off start with signature sig (case-insensitive).
 * A global function: the verifier checks it once, not once per call site. */
__noinline int match_sig(struct xdp_md *ctx, __u32 off, __u32 sig_index)
{
	struct scanner_sig *sig = bpf_map_lookup_elem(&scanner_sigs, &sig_index);
	if (!sig || sig->len == 0 || sig->len > MAX_SIG_LEN || off > MAX_LINE_OFF)
		return 0;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *p = data + BOUNDED(off, OFF_MASK);
	for (__u32 i = 0; i < MAX_SIG_LEN; i++) {
		if (i >= sig->len)
			return 1;
		if ((void *)(p + i + 1) > end)
			return 0;
		if (fold(p[i]) != sig->bytes[i])
			return 0;
	}
	return 1;
}

#define NEWLINES 0x0a0a0a0a0a0a0a0aULL
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define WORD 8

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the word-at-a-time header and signature compares assume little-endian words"
#endif

/* The 8 bytes at p as one little-endian word. Packet reads need not be aligned (x86, arm64). */
static __always_inline __u64 load8(const __u8 *p)
{
	return *(const __u64 *)p;
}

/* fold() on each byte of a word: ASCII upper-case letters to lower case, nothing else changed.
 * Setting each byte's top bit first keeps the subtractions from borrowing across bytes. */
static __always_inline __u64 fold8(__u64 x)
{
	__u64 h = x | HIGHS;
	__u64 upper = (h - 0x41 * ONES) & ~(h - 0x5b * ONES) & ~x & HIGHS; /* 'A' <= b <= 'Z' */
	return x | (upper >> 2);                                           /* 0x80 >> 2 = 0x20 */
}

/* Non-zero exactly when some byte of y is zero (its high bit is set then; above a zero byte a
 * 0x01 byte may be flagged too, so callers find the bytes themselves). */
static __always_inline __u64 zero_bytes(__u64 y)
{
	return (y - ONES) & ~y & HIGHS;
}

/* The bytes of the first n (<= WORD) characters of a word: 1 bits where they are. */
static __always_inline __u64 low_bytes(__u32 n)
{
	return n >= WORD ? ~0ULL : (1ULL << (n * 8)) - 1;
}

/* Folded header names whose values are matched, as words: "user-age", "r-agent:" (bytes 3 to
 * 10 of "user-agent:") and "from:". */
#define W_USER_AGE 0x6567612d72657375ULL
#define W_R_AGENT 0x3a746e6567612d72ULL
#define W_FROM 0x3a6d6f7266ULL
_Static_assert(HDR_UA_LEN == 3 + WORD && HDR_FROM_LEN == 5, "header words cover the names");

/* 1 when the header line at frame offset off is a User-Agent or From whose value starts with a
 * configured scanner signature. Header names and the first WORD bytes of every signature are
 * compared a word at a time; only a signature whose first word matches gets match_sig. */
__noinline int match_line(struct xdp_md *ctx, __u32 off, __u32 nsigs)
{
	if (off > MAX_LINE_OFF)
		return 0;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *p = data + BOUNDED(off, OFF_MASK);
	if ((void *)(p + HDR_UA_LEN + MAX_VALUE_SKIP) > end)
		return 0;
	__u64 head = fold8(load8(p));
	__u32 vlen;
	if (head == W_USER_AGE && fold8(load8(p + 3)) == W_R_AGENT)
		vlen = HDR_UA_LEN;
	else if ((head & low_bytes(HDR_FROM_LEN)) == W_FROM)
		vlen = HDR_FROM_LEN;
	else
		return 0;
	__u32 skip = 0;
#pragma unroll
	for (int i = 0; i < MAX_VALUE_SKIP; i++) {
		__u8 b = p[vlen + i];
		if (b != ' ' && b != '\t' && b != '"')
			break;
		skip++;
	}
	__u32 v = off + vlen + skip;
	/* The value's first word, when the packet has it (else every signature gets match_sig). */
	int whole = (void *)(p + HDR_UA_LEN + MAX_VALUE_SKIP + WORD) <= end;
	__u64 first = whole ? fold8(load8(p + BOUNDED(vlen + skip, 0xf))) : 0;
	for (__u32 s = 0; s < MAX_SCANNER_SIGS; s++) {
		if (s >= nsigs)
			break;
		if (whole) {
			__u32 key = s;
			struct scanner_sig *sig = bpf_map_lookup_elem(&scanner_sigs, &key);
			if (!sig)
				continue; /* as match_sig: no signature, no match */
			__u64 want;
			__builtin_memcpy(&want, sig->bytes, WORD);
			if ((first ^ want) & low_bytes(sig->len))
				continue;
		}
		if (match_sig(ctx, v, s))
			return 1;
	}
	return 0;
}

/* Newline at payload index i (frame offset off + i): -1 at the blank line that ends the
 * headers, 1 when the next line carries a signature, 0 otherwise. The caller has checked that
 * p[i + 1] is inside the packet. Lines that cannot be User-Agent or From (first letter other
 * than u/f) are skipped without a call. */
static __always_inline int at_newline(struct xdp_md *ctx, __u32 off, __u32 i, __u8 next, __u32 nsigs)
{
	if (next == '\r' || next == '\n')
		return -1;
	next |= 0x20;
	if (next != 'u' && next != 'f')
		return 0;
	return match_line(ctx, off + i + 1, nsigs);
}

/* 1 when a header line of the UDP payload at frame offset off carries a scanner signature.
 * Reads at most SCAN_MAX_BYTES and stops at the blank line that ends the headers. Words of
 * 8 bytes without a newline are skipped with one test (SWAR); the rest goes byte by byte. */
__noinline int scan_payload(struct xdp_md *ctx, __u32 off, __u32 nsigs)
{
	if (off > MAX_PAYLOAD_OFF || nsigs == 0)
		return 0;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *p = data + BOUNDED(off, OFF_MASK);
	__u32 i = 0;
	for (__u32 w = 0; w < SCAN_MAX_BYTES / WORD - 1; w++) {
		i = w * WORD;
		if ((void *)(p + i + WORD + 1) > end)
			break;
		if (zero_bytes(load8(p + i) ^ NEWLINES) == 0)
			continue;
#pragma unroll
		for (__u32 b = 0; b < WORD; b++) {
			if (p[i + b] != '\n')
				continue;
			int r = at_newline(ctx, off, i + b, p[i + b + 1], nsigs);
			if (r)
				return r > 0;
		}
		i += WORD;
	}
	/* The tail (fewer than WORD + 1 bytes left, or the last word of the window): bytewise. */
	for (__u32 k = 0; k < 2 * WORD; k++, i++) {
		if (i + 1 >= SCAN_MAX_BYTES || (void *)(p + i + 2) > end)
			return 0;
		if (p[i] != '\n')
			continue;
		int r = at_newline(ctx, off, i, p[i + 1], nsigs);
		if (r)
			return r > 0;
	}
	return 0;
}

/* Takes one token from bucket b (refilled at rate_pps up to burst); 1 when admitted. */
static __always_inline int bucket_take(struct bucket *b, __u64 rate_pps, __u64 burst,
				       __u64 full_ns, __u64 now)
{
	__u64 cap = burst * NANO_PER_PACKET;
	__u64 elapsed = now > b->last_ns ? now - b->last_ns : 0;
	__u64 tokens = b->tokens_nano;
	if (elapsed >= full_ns)
		tokens = cap;
	else
		tokens += elapsed * rate_pps;
	if (tokens > cap)
		tokens = cap;
	b->last_ns = now;
	if (tokens < NANO_PER_PACKET) {
		b->tokens_nano = tokens;
		return 0;
	}
	b->tokens_nano = tokens - NANO_PER_PACKET;
	return 1;
}

/* The source's entry in the tries: one longest-prefix lookup for allow-list and blocklist. */
static __always_inline struct src_value *source_entry(struct pkt *p)
{
	if (p->family == 4) {
		struct lpm_v4_key k = {.prefixlen = 32};
		__builtin_memcpy(k.addr, p->src, 4);
		__u32 host = bpf_ntohl(*(__u32 *)k.addr);
		__u32 word = host >> 22;
		__u64 *hint = bpf_map_lookup_elem(&src_v4_hint, &word);
		if (!hint || !((*hint >> ((host >> 16) & 63)) & 1))
			return NULL; /* no entry in or around this /16 */
		struct src_value *s = bpf_map_lookup_elem(&src_v4, &k);
		/* Keeps clang from merging the two lookups into one call: a call that sees two maps
		 * keeps the generic helper (an indirect call to the map's lookup); with one map the
		 * verifier calls the trie's lookup directly. */
		asm volatile("" : "+r"(s));
		return s;
	}
	struct lpm_v6_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, p->src, 16);
	return bpf_map_lookup_elem(&src_v6, &k);
}

/* Unknown source under the rate-limit policy: its own bucket, then the global one, then the
 * scanner check (so a flood that the buckets refuse never pays for the payload scan). */
static __always_inline int rate_limit(struct xdp_md *ctx, struct pkt *p,
				      struct filter_config *cfg, __u64 now)
{
	if (now == 0)
		now = bpf_ktime_get_ns();
	struct rate_key k = {.family = p->family};
	/* IPv4: the address; IPv6: its /64. */
	__builtin_memcpy(k.addr, p->src, 8);
	if (p->family == 4)
		__builtin_memset(k.addr + 4, 0, 4);
	struct bucket *b = bpf_map_lookup_elem(&rate_src, &k);
	if (b) {
		if (!bucket_take(b, cfg->src_rate_pps, cfg->src_burst, cfg->src_full_ns, now))
			return R_DROP_RATE_SOURCE;
	} else {
		struct bucket fresh = {};
		if (!bucket_take(&fresh, cfg->src_rate_pps, cfg->src_burst, cfg->src_full_ns, now))
			return R_DROP_RATE_SOURCE;
		bpf_map_update_elem(&rate_src, &k, &fresh, BPF_ANY);
	}
	__u32 zero = 0;
	struct bucket *g = bpf_map_lookup_elem(&rate_global, &zero);
	if (!g || !bucket_take(g, cfg->global_rate_pps, cfg->global_burst, cfg->global_full_ns, now))
		return R_DROP_RATE_GLOBAL;
	if (p->proto == IPPROTO_UDP && scan_payload(ctx, p->payload_off, cfg->scanner_count))
		return R_DROP_SCANNER;
	return R_PASS_RATE;
}

static __always_inline int judge_source(struct xdp_md *ctx, struct pkt *p)
{
	__u32 zero = 0;
	__u64 now = 0;
	struct src_value *s = source_entry(p);
	if (s) {
		if (s->flags & SRC_BLOCKED) {
			if (s->block_expires_ns == 0)
				return R_DROP_BLOCK;
			now = bpf_ktime_get_ns();
			if (s->block_expires_ns > now)
				return R_DROP_BLOCK;
		}
		if (s->flags & SRC_ALLOWED)
			return R_PASS_ALLOW;
	}
	struct filter_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || cfg->unknown_policy != UNKNOWN_RATE_LIMIT)
		return R_DROP_UNKNOWN;
	return rate_limit(ctx, p, cfg, now);
}

static __always_inline void frag_key_of(struct frag_key *k, struct pkt *p)
{
	k->family = p->family;
	k->id = p->frag_id;
	__builtin_memcpy(k->src, p->src, 16);
	__builtin_memcpy(k->dst, p->dst, 16);
}

/* A non-first fragment: judged by its datagram's first fragment, if that went to a SIP port. */
static __always_inline int judge_later_fragment(struct pkt *p)
{
	struct frag_key k = {};
	frag_key_of(&k, p);
	struct frag_value *v = bpf_map_lookup_elem(&frags, &k);
	if (!v)
		return R_PASS_NON_SIP; /* first fragment unseen or not SIP */
	__u32 zero = 0;
	struct filter_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && cfg->frag_policy == FRAG_DROP)
		return R_DROP_FRAG;
	return v->reason >= R_DROP_BLOCK ? R_DROP_FRAG : R_PASS_FRAG;
}

/* Parses the frame into p. A global function: verified once, apart from the policy code.
 * Returns PARSE_OK (p complete), PARSE_TRUNCATED, PARSE_OTHER (not IP), or PARSE_NOT_L4 (IP,
 * but neither UDP nor TCP). */
__noinline int parse_packet(struct xdp_md *ctx, struct pkt *p)
{
	if (!p)
		return PARSE_TRUNCATED;
	void *data = (void *)(long)ctx->data;
	struct cursor c = {.pos = data, .end = (void *)(long)ctx->data_end};
	__be16 proto;
	if (parse_eth(&c, &proto) != PARSE_OK)
		return PARSE_TRUNCATED;
	int r;
	if (proto == bpf_htons(ETH_P_IP))
		r = parse_ipv4(&c, p);
	else if (proto == bpf_htons(ETH_P_IPV6))
		r = parse_ipv6(&c, p);
	else
		return PARSE_OTHER;
	if (r != PARSE_OK || p->frag == FRAG_LATER)
		return r;
	r = parse_l4(&c, p);
	if (r == PARSE_OTHER)
		return PARSE_NOT_L4;
	p->payload_off = c.pos - data;
	return r;
}

/* 1 when port is configured as a SIP port for transport proto (IPPROTO_UDP or IPPROTO_TCP). */
static __always_inline int sip_port(__u32 port, __u8 proto)
{
	__u8 *bits = bpf_map_lookup_elem(&ports, &port);
	__u8 want = proto == IPPROTO_UDP ? PORT_UDP : PORT_TCP;
	return bits && (*bits & want);
}

/* A packet to a SIP port (p complete): its verdict by source; a first fragment's verdict is
 * remembered for the fragments that follow. */
static __always_inline int judge_sip(struct xdp_md *ctx, struct pkt *p)
{
	int reason = judge_source(ctx, p);
	if (p->frag == FRAG_FIRST) {
		struct frag_key k = {};
		struct frag_value v = {.reason = reason};
		frag_key_of(&k, p);
		bpf_map_update_elem(&frags, &k, &v, BPF_ANY);
	}
	return reason;
}

/* Any frame, through the general parser (p zeroed by the caller). */
static __always_inline int judge(struct xdp_md *ctx, struct pkt *p)
{
	int r = parse_packet(ctx, p);
	if (r == PARSE_OTHER || r == PARSE_NOT_L4)
		return R_PASS_NON_SIP;
	if (r != PARSE_OK)
		return R_PASS_MALFORMED;
	if (p->frag == FRAG_LATER)
		return judge_later_fragment(p);
	if (!sip_port(p->dport, p->proto))
		return R_PASS_NON_SIP;
	return judge_sip(ctx, p);
}

/* parse_fast results. */
#define FAST_NON_SIP 0 /* the common frame, not to a SIP port: R_PASS_NON_SIP */
#define FAST_SIP 1     /* the common frame to a SIP port: p complete */
#define FAST_GENERAL 2 /* any other frame: the general parser decides */

/* The common frame: untagged Ethernet, IPv4 without options, not fragmented, UDP or TCP with
 * its header complete. Everything else (VLAN tags, IPv6, options, fragments, other protocols,
 * truncation) gets FAST_GENERAL, so this parser decides only where parse_packet would have
 * returned PARSE_OK with FRAG_NONE and the same ports: the verdicts are the general path's,
 * but a packet to another port (RTP, DNS...) costs little more than its headers' checks. */
static __always_inline int parse_fast(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return FAST_GENERAL;
	/* h_proto with one load: struct ethhdr is packed, so clang reads its fields bytewise */
	if (*(__be16 *)(data + offsetof(struct ethhdr, h_proto)) != bpf_htons(ETH_P_IP))
		return FAST_GENERAL;
	/* version 4, IHL 5 (no options); neither MF nor a fragment offset */
	if (*(__u8 *)ip != 0x45 || (ip->frag_off & bpf_htons(IPV4_MF | IPV4_OFFSET_MASK)))
		return FAST_GENERAL;
	__u8 proto = ip->protocol;
	struct udphdr *l4 = (void *)(ip + 1);
	__u32 l4_len;
	if (proto == IPPROTO_UDP)
		l4_len = sizeof(struct udphdr);
	else if (proto == IPPROTO_TCP)
		l4_len = sizeof(struct tcphdr);
	else
		return FAST_GENERAL;
	if ((void *)l4 + l4_len > end)
		return FAST_GENERAL;
	__u16 dport = bpf_ntohs(l4->dest);
	if (!sip_port(dport, proto))
		return FAST_NON_SIP;
	__builtin_memset(p, 0, sizeof(*p));
	__builtin_memcpy(p->src, &ip->saddr, 4);
	__builtin_memcpy(p->dst, &ip->daddr, 4);
	p->family = 4;
	p->frag_id = bpf_ntohs(ip->id);
	p->payload_off = (void *)l4 + l4_len - data;
	p->sport = bpf_ntohs(l4->source);
	p->dport = dport;
	p->frag = FRAG_NONE;
	p->proto = proto;
	return FAST_SIP;
}

/* Samples one drop in sample_every per CPU into the ring buffer. */
static __always_inline void report_drop(struct pkt *p, __u32 reason)
{
	__u32 zero = 0;
	struct filter_config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u32 *n = bpf_map_lookup_elem(&sample_ctr, &zero);
	if (!cfg || !n || cfg->sample_every == 0)
		return;
	if (++*n < cfg->sample_every)
		return;
	*n = 0;
	struct drop_event ev = {
		.ts_ns = bpf_ktime_get_ns(),
		.family = p->family,
		.reason = reason,
		.sport = p->sport,
		.dport = p->dport,
		.proto = p->proto,
	};
	__builtin_memcpy(ev.addr, p->src, 16);
	bpf_ringbuf_output(&drop_events, &ev, sizeof(ev), 0);
}

/* The one exit: count the verdict by reason, sample drops, return the action. */
static __always_inline int finish(struct xdp_md *ctx, struct pkt *p, __u32 reason)
{
	__u32 key = reason;
	struct counter *c = bpf_map_lookup_elem(&counters, &key);
	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	if (reason < R_DROP_BLOCK)
		return XDP_PASS;
	report_drop(p, reason);
	return XDP_DROP;
}

SEC("xdp")
int sipedge_xdp(struct xdp_md *ctx)
{
	struct pkt p;
	__u32 reason;
	int fast = parse_fast(ctx, &p);
	if (fast == FAST_NON_SIP) {
		reason = R_PASS_NON_SIP;
	} else if (fast == FAST_SIP) {
		reason = judge_sip(ctx, &p);
	} else {
		__builtin_memset(&p, 0, sizeof(p));
		reason = judge(ctx, &p);
	}
	return finish(ctx, &p, reason);
}
