//! Fuzzes the SIP parser and writer: any input must parse or fail cleanly; every accessor of a
//! parsed message must return; a valid message must survive parse → write → parse with its
//! fields intact.
#![no_main]

use edge::sip::{self, ForwardOptions, HeaderIndexEntry, Method, RecordRouteSpec, SipMessage, Uri, ViaSpec};
use libfuzzer_sys::fuzz_target;

/// Output buffer for the writer: the input plus what forwarding adds.
const OUT_BYTES: usize = sip::MAX_MESSAGE_BYTES + 1024;

fuzz_target!(|data: &[u8]| {
    let mut index = [HeaderIndexEntry::EMPTY; sip::MAX_HEADERS];
    let Ok(msg) = sip::parse(data, &mut index) else { return };
    exercise(&msg);
    if msg.validate().is_ok() {
        round_trip(&msg);
    }
});

/// Calls every accessor; checks what must hold whatever the input.
fn exercise(msg: &SipMessage<'_>) {
    if let Some(Uri::Sip(u)) = msg.request_uri() {
        assert!(u.equivalent(u), "a URI is equivalent to itself");
        let _ = u.user_unescaped().count();
    }
    for h in msg.headers() {
        assert!(!h.name.is_empty());
    }
    let _ = msg.vias().count();
    let _ = msg.contacts().count();
    let _ = msg.routes().count();
    let _ = msg.record_routes().count();
    let _ = msg.p_asserted_identities().count();
    let _ = (msg.from(), msg.to(), msg.call_id(), msg.cseq(), msg.max_forwards());
    let _ = (msg.expires(), msg.session_expires(), msg.identity(), msg.user_agent());
    assert!(msg.body().len() <= msg.as_bytes().len());
    if let Some(n) = msg.content_length() {
        assert_eq!(msg.body().len(), n);
    }
}

fn reparse<'b>(out: &'b [u8], index: &'b mut [HeaderIndexEntry], what: &str) -> SipMessage<'b> {
    let m = sip::parse(out, index).unwrap_or_else(|e| panic!("{what} output does not parse: {e}"));
    m.validate().unwrap_or_else(|e| panic!("{what} output is invalid: {e}"));
    m
}

fn round_trip(msg: &SipMessage<'_>) {
    let mut out = vec![0u8; OUT_BYTES];
    let mut index = [HeaderIndexEntry::EMPTY; sip::MAX_HEADERS + 4];
    if msg.is_request() {
        let opts = ForwardOptions {
            via: ViaSpec {
                transport: "UDP",
                host: "192.0.2.1",
                port: 5060,
                branch: "z9hG4bKfuzz",
                rport: true,
            },
            request_uri: None,
            pop_route: msg.routes().next().is_some(),
            record_route: Some(RecordRouteSpec { host: "192.0.2.1", port: 5060 }),
        };
        match sip::forward_request(msg, &opts, &mut out) {
            Ok(n) => {
                let f = reparse(&out[..n], &mut index, "forward");
                assert_eq!(f.method(), msg.method());
                assert_eq!(f.request_line().map(|r| r.uri_raw), msg.request_line().map(|r| r.uri_raw));
                assert_eq!(f.call_id().ok(), msg.call_id().ok());
                assert_eq!(f.cseq().ok(), msg.cseq().ok());
                assert_eq!(f.from().ok().and_then(|a| a.tag()), msg.from().ok().and_then(|a| a.tag()));
                assert_eq!(f.body(), msg.body());
                assert_eq!(f.vias().count(), msg.vias().count() + 1);
                assert_eq!(f.top_via().ok().and_then(|v| v.branch()), Some(&b"z9hG4bKfuzz"[..]));
                let mf = msg.max_forwards().ok().flatten().map_or(69, |n| n - 1);
                assert_eq!(f.max_forwards().ok().flatten(), Some(mf));
                assert_eq!(f.routes().count() + usize::from(opts.pop_route), msg.routes().count());
            }
            Err(sip::WriteError::MaxForwardsExhausted) => {
                assert_eq!(msg.max_forwards().ok().flatten(), Some(0))
            }
            Err(e) => panic!("forward failed: {e}"),
        }
        let n =
            sip::response_from_request(msg, 404, "Not Found", Some("edge1"), &["Retry-After: 5"], &mut out)
                .expect("response fits");
        let r = reparse(&out[..n], &mut index, "response");
        assert_eq!(r.status(), Some(404));
        assert_eq!(r.vias().count(), msg.vias().count());
        assert_eq!(r.call_id().ok(), msg.call_id().ok());
        if msg.method() == Some(Method::Invite) {
            let n = sip::build_cancel(msg, &mut out).expect("CANCEL fits");
            let c = reparse(&out[..n], &mut index, "CANCEL");
            assert_eq!(c.method(), Some(Method::Cancel));
            assert_eq!(c.top_via().ok().map(|v| v.raw), msg.top_via().ok().map(|v| v.raw));
        }
    } else {
        let n = sip::strip_top_via(msg, &mut out).expect("response fits");
        let mut idx = [HeaderIndexEntry::EMPTY; sip::MAX_HEADERS];
        let s = sip::parse(&out[..n], &mut idx).expect("stripped response parses");
        assert_eq!(s.vias().count() + 1, msg.vias().count());
        assert_eq!(s.body(), msg.body());
    }
}
