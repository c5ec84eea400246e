/* SPDX-License-Identifier: Apache-2.0 */
/* Structs shared with user space: the single source of truth for their layout. The Rust mirror
 * is ebpf/src/shared.rs (#[repr(C)], no implicit padding, a size assertion per struct). */
#ifndef SIPEDGE_SHARED_H
#define SIPEDGE_SHARED_H

#include <linux/types.h>
#include "consts.h"

/* The one entry of the config map, written by the loader. */
struct filter_config {
	__u32 unknown_policy;  /* UNKNOWN_DROP | UNKNOWN_RATE_LIMIT */
	__u32 frag_policy;     /* FRAG_FOLLOW | FRAG_DROP */
	__u32 sample_every;    /* one drop event per this many drops on a CPU; 0: no events */
	__u32 scanner_count;   /* valid entries at the start of the scanner_sigs map */
	__u64 src_rate_pps;    /* refill of one unknown source's bucket, packets/s */
	__u64 src_burst;       /* its depth, packets */
	__u64 src_full_ns;     /* ns to refill an empty source bucket: ceil(burst * 1e9 / rate) */
	__u64 global_rate_pps; /* refill of the bucket all unknown sources share, packets/s */
	__u64 global_burst;    /* its depth, packets */
	__u64 global_full_ns;  /* ns to refill the empty global bucket */
	__u32 attach_mode;     /* for user space only: ATTACH_NATIVE | ATTACH_SKB, 0 if detached */
	__u32 reserved;
};

/* LPM trie keys (allow-list and blocklist), address in network byte order. */
struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of the source tries (src_v4, src_v6), which hold the allow-list and the blocklist
 * together so that one longest-prefix lookup answers both. Every entry is an allow-listed
 * and/or blocked prefix itself (OWN_*); user space derives the effective flags (SRC_*) from
 * every listed prefix that covers the entry, so the longest match carries the whole answer. */
struct src_value {
	__u64 block_expires_ns;     /* effective: CLOCK_MONOTONIC deadline of the covering blocks
				     * (the latest; 0 when one never expires) */
	__u64 own_block_expires_ns; /* this prefix's own block deadline (with OWN_BLOCK); 0: never */
	__u32 flags;                /* SRC_ALLOWED | SRC_BLOCKED | OWN_ALLOW | OWN_BLOCK */
	__u32 trunk;                /* trunk index of this prefix's own allow entry */
};

/* Key of an unknown source's token bucket: IPv4 address, or the /64 of an IPv6 address. */
struct rate_key {
	__u32 family; /* 4 or 6 */
	__u8 addr[16];
};

/* A token bucket. A missing or zeroed bucket is full. */
struct bucket {
	__u64 tokens_nano; /* tokens in nano-packets (NANO_PER_PACKET per packet) */
	__u64 last_ns;     /* bpf_ktime_get_ns of the last refill */
};

/* A fragmented datagram whose first fragment went to a SIP port. */
struct frag_key {
	__u32 family;
	__u32 id; /* IPv4 identification (16 bits) or IPv6 fragment identification */
	__u8 src[16];
	__u8 dst[16];
};

struct frag_value {
	__u32 reason; /* the first fragment's verdict reason */
};

/* Per-CPU counter of one reason. */
struct counter {
	__u64 packets;
	__u64 bytes;
};

/* A scanner signature, lower case; matched at the start of a User-Agent or From value. */
struct scanner_sig {
	__u32 len;
	__u8 bytes[MAX_SIG_LEN];
};

/* A sampled drop, sent to user space through the ring buffer. */
struct drop_event {
	__u64 ts_ns;    /* bpf_ktime_get_ns */
	__u8 addr[16];  /* source address (IPv4 in the first 4 bytes) */
	__u32 family;   /* 4 or 6 */
	__u32 reason;   /* R_DROP_* */
	__u16 sport;    /* host byte order; 0 for non-first fragments */
	__u16 dport;
	__u8 proto;     /* IPPROTO_UDP / IPPROTO_TCP */
	__u8 pad[3];
};

#endif
