//! Property tests of the SIP parser: arbitrary bytes never panic; every strict prefix of a
//! valid message fails cleanly; parse → write → parse keeps the fields.

#![allow(clippy::unwrap_used, reason = "helpers run inside the property tests: a panic is a failed case")]

use edge::sip::{
    self, ForwardOptions, HeaderIndexEntry, MAX_HEADERS, Method, RecordRouteSpec, SipMessage, ViaSpec,
};
use proptest::prelude::*;

/// Parses and, when that works, reads everything; must never panic.
fn poke(bytes: &[u8]) {
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    if let Ok(m) = sip::parse(bytes, &mut index) {
        let _ = m.validate();
        let _ = (m.vias().count(), m.contacts().count(), m.routes().count(), m.record_routes().count());
        let _ = (m.from(), m.to(), m.call_id(), m.cseq(), m.max_forwards(), m.expires());
        let mut out = [0u8; 8192];
        let via = ViaSpec { transport: "UDP", host: "h", port: 1, branch: "z9hG4bKp", rport: false };
        let opts = ForwardOptions { via, request_uri: None, pop_route: false, record_route: None };
        let _ = sip::forward_request(&m, &opts, &mut out);
        let _ = sip::strip_top_via(&m, &mut out);
        let _ = sip::response_from_request(&m, 400, "Bad Request", Some("t"), &[], &mut out);
        let _ = sip::build_cancel(&m, &mut out);
    }
}

/// A valid request built from generated parts, with the fields a test checks.
#[derive(Debug, Clone)]
struct Generated {
    bytes: Vec<u8>,
    method: &'static str,
    user: String,
    branch: String,
    call_id: String,
    cseq: u32,
    tag: String,
    max_forwards: Option<u8>,
    vias: usize,
    body: Vec<u8>,
}

fn generated() -> impl Strategy<Value = Generated> {
    let method = prop::sample::select(vec!["INVITE", "OPTIONS", "REGISTER", "BYE", "MESSAGE", "NOTIFY"]);
    (
        method,
        "\\+?[0-9]{4,15}",
        "[a-zA-Z0-9.-]{1,20}",
        "[a-zA-Z0-9]{1,24}@[a-z0-9.]{1,16}",
        any::<u32>(),
        "[a-zA-Z0-9]{1,16}",
        prop::option::of(any::<u8>()),
        1usize..5,
        prop::collection::vec(any::<u8>(), 0..64),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(method, user, branch, call_id, cseq, tag, max_forwards, vias, body, (compact, fold, upper))| {
                let name = |long: &str, short: &str| -> String {
                    if compact && !short.is_empty() {
                        short.to_string()
                    } else if upper {
                        long.to_ascii_uppercase()
                    } else {
                        long.to_string()
                    }
                };
                let sep = if fold { ":\r\n  " } else { ": " };
                let mut s = format!("{method} sip:{user}@198.51.100.10:5060;user=phone SIP/2.0\r\n");
                for i in 0..vias {
                    s += &format!(
                        "{}{sep}SIP/2.0/UDP 192.0.2.{i}:5060;branch=z9hG4bK{branch}{i};rport\r\n",
                        name("Via", "v")
                    );
                }
                if let Some(mf) = max_forwards {
                    s += &format!("{}{sep}{mf}\r\n", name("Max-Forwards", ""));
                }
                s += &format!("{}{sep}\"Caller\" <sip:caller@example.com>;tag={tag}\r\n", name("From", "f"));
                s += &format!("{}{sep}<sip:{user}@example.com>\r\n", name("To", "t"));
                s += &format!("{}{sep}{call_id}\r\n", name("Call-ID", "i"));
                s += &format!("{}{sep}{cseq} {method}\r\n", name("CSeq", ""));
                s += &format!("X-Generated{sep}yes\r\n");
                s += &format!("{}{sep}{}\r\n\r\n", name("Content-Length", "l"), body.len());
                let mut bytes = s.into_bytes();
                bytes.extend_from_slice(&body);
                Generated {
                    bytes,
                    method,
                    user,
                    branch: format!("z9hG4bK{branch}0"),
                    call_id,
                    cseq,
                    tag,
                    max_forwards,
                    vias,
                    body,
                }
            },
        )
}

fn check_fields(m: &SipMessage<'_>, g: &Generated, vias: usize, branch: &str) {
    m.validate().unwrap();
    assert_eq!(m.method().map(|m| m.as_str()), Some(g.method));
    assert_eq!(m.request_uri().and_then(|u| u.user()), Some(g.user.as_bytes()));
    assert_eq!(m.top_via().unwrap().branch(), Some(branch.as_bytes()));
    assert_eq!(m.vias().count(), vias);
    assert_eq!(m.call_id().unwrap(), g.call_id.as_bytes());
    assert_eq!(m.cseq().unwrap().number, g.cseq);
    assert_eq!(m.from().unwrap().tag(), Some(g.tag.as_bytes()));
    assert_eq!(m.body(), &g.body[..]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        poke(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(g in generated(), edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = g.bytes.clone();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        poke(&bytes);
    }

    #[test]
    fn generated_messages_parse_with_their_fields(g in generated()) {
        let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
        let m = sip::parse(&g.bytes, &mut index).unwrap();
        check_fields(&m, &g, g.vias, &g.branch);
        prop_assert_eq!(m.max_forwards().unwrap(), g.max_forwards);
    }

    #[test]
    fn every_strict_prefix_fails_cleanly(g in generated()) {
        for end in 0..g.bytes.len() {
            let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
            prop_assert!(sip::parse(&g.bytes[..end], &mut index).is_err(), "prefix of {} bytes parsed", end);
        }
    }

    #[test]
    fn parse_write_parse_keeps_the_fields(g in generated()) {
        let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
        let m = sip::parse(&g.bytes, &mut index).unwrap();
        let opts = ForwardOptions {
            via: ViaSpec { transport: "UDP", host: "192.0.2.254", port: 5060, branch: "z9hG4bKedge", rport: true },
            request_uri: None,
            pop_route: false,
            record_route: Some(RecordRouteSpec { host: "192.0.2.254", port: 5060 }),
        };
        let mut out = [0u8; 8192];
        match sip::forward_request(&m, &opts, &mut out) {
            Ok(n) => {
                let mut index2 = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
                let f = sip::parse(&out[..n], &mut index2).unwrap();
                check_fields(&f, &g, g.vias + 1, "z9hG4bKedge");
                prop_assert_eq!(f.max_forwards().unwrap(), Some(g.max_forwards.map_or(69, |n| n - 1)));
                prop_assert_eq!(f.record_routes().count(), 1);
                // A response can be built from the forwarded request.
                let resp = sip::response_from_request(&f, 200, "OK", Some("uas"), &[], &mut [0u8; 8192]).map(|_| ());
                prop_assert!(resp.is_ok());
            }
            Err(sip::WriteError::MaxForwardsExhausted) => prop_assert_eq!(g.max_forwards, Some(0)),
            Err(e) => prop_assert!(false, "forward failed: {}", e),
        }
        let mut out = [0u8; 8192];
        let n = sip::response_from_request(&m, 486, "Busy Here", Some("uas"), &[], &mut out).unwrap();
        let mut index3 = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
        let r = sip::parse(&out[..n], &mut index3).unwrap();
        r.validate().unwrap();
        prop_assert_eq!(r.vias().count(), g.vias);
        prop_assert_eq!(r.to().unwrap().tag(), Some(&b"uas"[..]));
        let mut out2 = [0u8; 8192];
        let n2 = sip::strip_top_via(&r, &mut out2).unwrap();
        let mut index4 = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
        let s = sip::parse(&out2[..n2], &mut index4).unwrap();
        prop_assert_eq!(s.vias().count(), g.vias - 1);
        if g.method == "INVITE" {
            let mut out3 = [0u8; 8192];
            let n3 = sip::build_cancel(&m, &mut out3).unwrap();
            let mut index5 = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
            let c = sip::parse(&out3[..n3], &mut index5).unwrap();
            c.validate().unwrap();
            prop_assert_eq!(c.method(), Some(Method::Cancel));
            prop_assert_eq!(c.top_via().unwrap().branch(), Some(g.branch.as_bytes()));
            prop_assert_eq!(c.cseq().unwrap().number, g.cseq);
        }
    }
}
