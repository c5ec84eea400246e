#!/usr/bin/env bash
# Seeds the fuzz corpus with the RFC 4475 torture messages (from ../shared, never committed)
# and the benchmark messages, then prints the command that runs the fuzzer.
# Usage: fuzz/seed.sh            (from anywhere)
set -euo pipefail
cd "$(dirname "$0")"
dest=corpus/sip_parse
mkdir -p "$dest"
shared=../../shared/corpus/rfc4475
if [[ -d $shared ]]; then
  cp "$shared"/*.dat "$dest"/
else
  echo "seed.sh: $shared is absent; seeding with the benchmark messages only" >&2
fi
cp ../bench/corpus/*.sip "$dest"/
echo "seeded $(ls "$dest" | wc -l) files into fuzz/$dest"

# proxy_datagrams: whole calls, one datagram per NUL-separated record (see its doc comment).
# Control bytes (never 0, the separator): 0x08 = the carrier after 100 ms, 0x0d = the PBX
# answers the last forwarded request with the code the next byte picks (2: 200, 1: 180,
# 3: 486), 0x0e = the carrier answers the edge's BYE, 0x58 = the carrier after 1.1 s,
# 0xf8 = the carrier after 3.1 s (with no payload: only time passing).
dest=corpus/proxy_datagrams
mkdir -p "$dest"
invite() {
  printf 'INVITE sip:%s@203.0.113.1:5060;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\nFrom: <sip:+442079460000@192.0.2.7>;tag=caller1\r\nTo: <sip:%s@203.0.113.1>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@192.0.2.7:5060>\r\nContent-Length: 0\r\n\r\n' "$1" "$2" "$1" "$3"
}
in_dialog() { # method, branch, call-id, cseq
  printf '%s sip:+15551230000@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\nFrom: <sip:+442079460000@192.0.2.7>;tag=caller1\r\nTo: <sip:+15551230000@203.0.113.1>;tag=ua1\r\nCall-ID: %s\r\nCSeq: %s %s\r\nContent-Length: 0\r\n\r\n' "$1" "$2" "$3" "$4" "$1"
}
{ printf '\x08'; invite +15551230000 c1 call-1; printf '\x00\x0d\x01\x00\x0d\x02\x00\x08'
  in_dialog ACK c1a call-1 1; printf '\x00\x58'; in_dialog BYE c1b call-1 2; printf '\x00\x0d\x02'; } > "$dest/call-bye"
{ printf '\x08'; invite +15551240042 c2 call-2; printf '\x00\x0d\x03\x00\x08'
  in_dialog CANCEL c2 call-2 1; } > "$dest/busy-cancel"
{ printf '\x08'; invite +15559990000 c3 call-3; printf '\x00\xf8'; invite +15551230000 c4 call-4
  printf '\x00\xf8\x00\xf8'; } > "$dest/unknown-and-timeout"
{ printf '\x08'; invite +15551230000 c5 call-5; printf '\x00\x0d\x02\x00\x08'; in_dialog ACK c5a call-5 1
  for _ in $(seq 40); do printf '\x00\xf8'; done   # 124 s: past the maximum call duration
  printf '\x00\x0d\x02\x00\x0e\x02'; } > "$dest/max-duration"
{ printf '\x08'; invite +15551230000 c6 call-6 | sed 's/^Content-Length: 0/Session-Expires: 90\r\nContent-Length: 0/'
  printf '\x00\x0d\x02\x00\x08'; in_dialog ACK c6a call-6 1
  for _ in $(seq 30); do printf '\x00\xf8'; done   # 93 s: past the session interval
  printf '\x00\x0d\x02\x00\x0e\x02'; } > "$dest/session-timer"
echo "seeded 5 files into fuzz/$dest"
echo "run: cd fuzz && cargo +nightly fuzz run sip_parse -- -max_total_time=600"
echo " or: cd fuzz && cargo +nightly fuzz run proxy_datagrams -- -max_total_time=600"
