/* SPDX-License-Identifier: Apache-2.0 */
/* Constants of the sipedge XDP filter: every bound with its reason and unit.
 * The Rust loader mirrors the ones user space needs (ebpf/src/shared.rs). */
#ifndef SIPEDGE_CONSTS_H
#define SIPEDGE_CONSTS_H

/* 802.1Q inside 802.1ad is the deepest stacking carriers hand us. */
#define MAX_VLAN_DEPTH 2
/* IPv6 extension headers walked before giving up (hop-by-hop, routing, fragment,
 * destination options, AH); more than this is not legitimate SIP transport. */
#define MAX_IPV6_EXT_HDRS 6

/* Map sizes (entries). */
#define MAX_SRC_ENTRIES 81920    /* allow-listed + blocked prefixes per family (16 Ki + 64 Ki) */
#define MAX_RATE_SOURCES 65536   /* LRU of unknown sources with a token bucket */
#define MAX_FRAG_TRACKED 8192    /* LRU of fragmented datagrams whose first fragment was SIP */
#define MAX_SCANNER_SIGS 16      /* configurable scanner signatures */
#define MAX_SIG_LEN 32           /* bytes of one signature */
#define PORT_SPACE 65536         /* the ports map is indexed by destination port */
#define V4_HINT_WORDS 1024       /* src_v4_hint: one bit per IPv4 /16 (65536), 64 per word */
#define EVENT_RING_BYTES (256 * 1024) /* ring buffer of sampled drop events */

/* Payload scan for scanner signatures. Only the header section is read, and only up to this
 * many bytes: scanners put their name in the first lines (User-Agent, From). */
#define SCAN_MAX_BYTES 1024
/* Header names whose value is matched, folded to lower case, colon included. */
#define HDR_UA_LEN 11   /* "user-agent:" */
#define HDR_FROM_LEN 5  /* "from:" */
/* Blanks and quotes skipped before a header value ("From: \"sipvicious\"<...>"). */
#define MAX_VALUE_SKIP 4

/* Token bucket arithmetic: tokens are kept in nano-packets so that refill is integer. */
#define NANO_PER_PACKET 1000000000ULL

/* struct src_value.flags. */
#define SRC_ALLOWED 1 /* some allow-listed prefix covers this entry */
#define SRC_BLOCKED 2 /* some blocked prefix covers it (until block_expires_ns) */
#define OWN_ALLOW 4   /* this prefix itself is allow-listed */
#define OWN_BLOCK 8   /* this prefix itself is blocked */

/* Ports map value bits. */
#define PORT_UDP 1
#define PORT_TCP 2

/* Unknown-source policies (struct filter_config.unknown_policy). */
#define UNKNOWN_DROP 0
#define UNKNOWN_RATE_LIMIT 1

/* How the loader attached the program (struct filter_config.attach_mode). */
#define ATTACH_NATIVE 1
#define ATTACH_SKB 2

/* Non-first fragment policies (struct filter_config.frag_policy). */
#define FRAG_FOLLOW 0 /* same verdict as the datagram's first fragment */
#define FRAG_DROP 1   /* drop every non-first fragment of a SIP datagram */

/* Verdict reasons: the index into the per-CPU counters and the reason of a drop event. */
#define R_PASS_NON_SIP 0      /* not to a SIP port: untouched */
#define R_PASS_MALFORMED 1    /* truncated or unparsable headers: left to the stack */
#define R_PASS_ALLOW 2        /* source on a trunk's allow-list */
#define R_PASS_RATE 3         /* unknown source within its bucket and the global budget */
#define R_PASS_FRAG 4         /* non-first fragment following a passed first fragment */
#define R_DROP_BLOCK 5        /* source on the blocklist, not yet expired */
#define R_DROP_UNKNOWN 6      /* unknown source, policy drop */
#define R_DROP_RATE_SOURCE 7  /* unknown source over its own bucket */
#define R_DROP_RATE_GLOBAL 8  /* unknown sources together over the global budget */
#define R_DROP_SCANNER 9      /* scanner signature in the payload */
#define R_DROP_FRAG 10        /* non-first fragment of a dropped or policed datagram */
#define R_COUNT 11

#endif
