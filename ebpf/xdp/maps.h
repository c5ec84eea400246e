/* SPDX-License-Identifier: Apache-2.0 */
/* The filter's maps, one purpose each. The loader pins them under
 * /sys/fs/bpf/sipedge/<ifname>/ so that a restart keeps the filter's state. */
#ifndef SIPEDGE_MAPS_H
#define SIPEDGE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "shared.h"

/* Policy: the single struct filter_config. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_config);
} config SEC(".maps");

/* SIP ports, indexed by destination port: PORT_UDP | PORT_TCP bits. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_SPACE);
	__type(key, __u32);
	__type(value, __u8);
} ports SEC(".maps");

/* Allow-listed and blocked prefixes, per family (struct src_value). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_SRC_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, struct src_value);
} src_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_SRC_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6_key);
	__type(value, struct src_value);
} src_v6 SEC(".maps");

/* Which IPv4 /16s hold an src_v4 entry or lie inside one: bit (addr >> 16) % 64 of word
 * addr >> 22 (host byte order). A clear bit means no src_v4 entry covers any address of that
 * /16, so the trie lookup can be skipped: an unknown source outside every listed /16 costs an
 * array read instead of a trie walk. User space sets bits before it writes the entries they
 * describe and clears them after it removes the last one (ebpf/src/hint.rs). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, V4_HINT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} src_v4_hint SEC(".maps");

/* Token bucket per unknown source (LRU: a spoofing flood evicts old sources, never fails). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_RATE_SOURCES);
	__type(key, struct rate_key);
	__type(value, struct bucket);
} rate_src SEC(".maps");

/* The one bucket all unknown sources share. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bucket);
} rate_global SEC(".maps");

/* Fragmented SIP datagrams: the first fragment's verdict, for the ones that follow. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FRAG_TRACKED);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
} frags SEC(".maps");

/* Scanner signatures; the first filter_config.scanner_count entries are valid. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SCANNER_SIGS);
	__type(key, __u32);
	__type(value, struct scanner_sig);
} scanner_sigs SEC(".maps");

/* Verdict counters, per CPU, indexed by reason (R_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, R_COUNT);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

/* Drops seen on this CPU since the last sampled event. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sample_ctr SEC(".maps");

/* Sampled drop events (struct drop_event) for user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENT_RING_BYTES);
} drop_events SEC(".maps");

#endif
