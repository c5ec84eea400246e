//! Parser and writer benchmarks on the carrier INVITE (`bench/corpus/invite-carrier.sip`):
//! sipedge against rsip 0.4 on the same bytes, in one criterion group, one message per
//! iteration (time per iteration = ns per message). Each side indexes every header and then
//! reads what the edge reads per call: Request-URI user, top Via branch, Call-ID, CSeq, From
//! tag, Max-Forwards.
//!
//! Run: `cargo bench -p bench --bench sip_parse`
//!
//! For instruction counts, `SIP_PARSE_LOOP=sipedge:N` (or `rsip:N`) makes the binary parse the
//! message N times with the same functions and exit without criterion, for callgrind:
//! `SIP_PARSE_LOOP=sipedge:3000 valgrind --tool=callgrind target/release/deps/sip_parse-<hash>`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use edge::sip::{self, ForwardOptions, HeaderIndexEntry, MAX_HEADERS, RecordRouteSpec, ViaSpec};
use rsip::prelude::{HeadersExt, ToTypedHeader, UntypedHeader};

/// The fields every parser must produce, by length so both sides do the same reads.
#[derive(Debug, PartialEq, Eq)]
struct Fields {
    user: usize,
    branch: usize,
    call_id: usize,
    cseq: u32,
    from_tag: usize,
    max_forwards: u32,
}

fn carrier_invite() -> Vec<u8> {
    let path = bench::corpus_dir().join("invite-carrier.sip");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sipedge_fields(bytes: &[u8], index: &mut [HeaderIndexEntry]) -> Option<Fields> {
    let m = sip::parse(bytes, index).ok()?;
    Some(Fields {
        user: m.request_uri()?.user()?.len(),
        branch: m.top_via().ok()?.branch()?.len(),
        call_id: m.call_id().ok()?.len(),
        cseq: m.cseq().ok()?.number,
        from_tag: m.from().ok()?.tag()?.len(),
        max_forwards: m.max_forwards().ok()??.into(),
    })
}

fn rsip_fields(bytes: &[u8]) -> Option<Fields> {
    let req = rsip::Request::try_from(bytes).ok()?;
    let via = req.via_header().ok()?.typed().ok()?;
    Some(Fields {
        user: req.uri.user()?.len(),
        branch: via.branch()?.to_string().len(),
        call_id: req.call_id_header().ok()?.value().len(),
        cseq: req.cseq_header().ok()?.typed().ok()?.seq,
        from_tag: req.from_header().ok()?.tag().ok()??.to_string().len(),
        max_forwards: req.max_forwards_header().ok()?.num().ok()?,
    })
}

fn parse(c: &mut Criterion) {
    let bytes = carrier_invite();
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let ours = sipedge_fields(&bytes, &mut index).expect("sipedge parses the carrier INVITE");
    let theirs = rsip_fields(&bytes).expect("rsip parses the carrier INVITE");
    assert_eq!(ours.cseq, theirs.cseq);
    assert_eq!(
        (ours.user, ours.call_id, ours.max_forwards),
        (theirs.user, theirs.call_id, theirs.max_forwards)
    );

    let mut g = c.benchmark_group("sip_parse/invite-carrier");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sipedge", |b| b.iter(|| sipedge_fields(black_box(&bytes), &mut index)));
    g.bench_function("rsip", |b| b.iter(|| rsip_fields(black_box(&bytes))));
    g.finish();
}

fn write(c: &mut Criterion) {
    let bytes = carrier_invite();
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let msg = sip::parse(&bytes, &mut index).expect("sipedge parses the carrier INVITE");
    let opts = ForwardOptions {
        via: ViaSpec {
            transport: "UDP",
            host: "192.0.2.1",
            port: 5060,
            branch: "z9hG4bKedge7f3a",
            rport: true,
        },
        request_uri: Some(b"sip:+15551234567@10.0.0.10:5060;user=phone"),
        pop_route: false,
        record_route: Some(RecordRouteSpec { host: "192.0.2.1", port: 5060 }),
    };
    let mut out = [0u8; 2048];
    let mut g = c.benchmark_group("sip_write/invite-carrier");
    g.throughput(Throughput::Elements(1));
    g.bench_function("forward", |b| b.iter(|| sip::forward_request(black_box(&msg), &opts, &mut out)));
    let mut index2 = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    g.bench_function("parse+forward", |b| {
        b.iter(|| {
            let m = sip::parse(black_box(&bytes), &mut index2).ok()?;
            sip::forward_request(&m, &opts, &mut out).ok()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, write);

/// Runs `SIP_PARSE_LOOP` (`side:iterations`) when set, else the criterion benches.
fn main() {
    let Ok(spec) = std::env::var("SIP_PARSE_LOOP") else {
        benches();
        Criterion::default().configure_from_args().final_summary();
        return;
    };
    let (side, n) = spec.split_once(':').expect("SIP_PARSE_LOOP is side:iterations");
    let n: usize = n.parse().expect("SIP_PARSE_LOOP iterations is a number");
    let bytes = carrier_invite();
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    for _ in 0..n {
        let fields = match side {
            "sipedge" => sipedge_fields(black_box(&bytes), &mut index),
            "rsip" => rsip_fields(black_box(&bytes)),
            other => panic!("SIP_PARSE_LOOP side {other:?} is not sipedge or rsip"),
        };
        black_box(fields.expect("the carrier INVITE parses"));
    }
}
