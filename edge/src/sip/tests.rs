//! Table-driven tests of parsing, accessors, limits and the writer.

use super::*;

const INVITE: &[u8] = b"INVITE sip:+15551234567@198.51.100.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.17:5060;branch=z9hG4bK776asdhds-8a1f;rport\r\n\
Max-Forwards: 69\r\n\
From: \"ACME Corp\" <sip:+12125550100@203.0.113.17;user=phone>;tag=1928301774\r\n\
To: <sip:+15551234567@198.51.100.10;user=phone>\r\n\
Call-ID: a84b4c76e66710-3f1c9a@203.0.113.17\r\n\
CSeq: 314159 INVITE\r\n\
Route: <sip:edge.example.net;lr>, <sip:core.example.net;lr>\r\n\
Contact: <sip:+12125550100@203.0.113.17:5060;transport=udp>\r\n\
X-Unknown: kept as it came\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn with<R>(msg: &[u8], f: impl FnOnce(SipMessage<'_>) -> R) -> R {
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    f(parse(msg, &mut index).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(msg))))
}

fn error_of(msg: &[u8]) -> ErrorKind {
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    match parse(msg, &mut index) {
        Ok(m) => {
            m.validate().map(|()| panic!("accepted: {}", String::from_utf8_lossy(msg))).unwrap_err().kind()
        }
        Err(e) => e.kind(),
    }
}

#[test]
fn carrier_invite_fields() {
    with(INVITE, |m| {
        assert!(m.is_request() && !m.is_response());
        assert_eq!(m.method(), Some(Method::Invite));
        let Some(Uri::Sip(ruri)) = m.request_uri() else { panic!() };
        assert_eq!(ruri.user, Some(&b"+15551234567"[..]));
        assert!(ruri.is_phone());
        assert_eq!(m.header_count(), 11);
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK776asdhds-8a1f"[..]));
        assert_eq!(m.from().unwrap().tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.from().unwrap().display_name, Some(&b"ACME Corp"[..]));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.call_id().unwrap(), b"a84b4c76e66710-3f1c9a@203.0.113.17");
        assert_eq!(m.cseq().unwrap(), CSeq { number: 314159, method: Method::Invite });
        assert_eq!(m.max_forwards().unwrap(), Some(69));
        let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri_raw).collect();
        assert_eq!(routes, [&b"sip:edge.example.net;lr"[..], b"sip:core.example.net;lr"]);
        assert_eq!(m.contacts().count(), 1);
        assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(m.content_length(), Some(4));
        let unknown = m.headers().find(|h| h.kind == HeaderKind::Other).unwrap();
        assert_eq!((unknown.name, unknown.value), (&b"X-Unknown"[..], &b"kept as it came"[..]));
        m.validate().unwrap();
    });
}

#[test]
fn compact_forms_folding_and_lists() {
    let msg = b"OPTIONS sip:u@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n\
V: SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n\
f: <sip:a@example.com>;tag=1\r\nt: sip:u@example.com\r\ni: abc@h\r\nCSEQ: 2 OPTIONS\r\n\
m: *\r\nl: 0\r\nk: timer\r\nx: 90;refresher=uas\r\nExpires: 3600\r\n\r\n";
    with(msg, |m| {
        let hosts: Vec<_> = m.vias().map(|v| v.unwrap().host).collect();
        assert_eq!(
            hosts,
            [Host::Name("a.example.com"), Host::Name("b.example.com"), Host::Name("c.example.com")]
        );
        assert_eq!(m.contacts().next().unwrap().unwrap(), Contact::Any);
        assert_eq!(m.session_expires().unwrap().map(|s| s.seconds), Some(90));
        assert_eq!(m.expires().unwrap(), Some(3600));
        assert_eq!(m.headers_of(HeaderKind::Supported).count(), 1);
        assert_eq!(m.max_forwards().unwrap(), None);
        m.validate().unwrap();
    });
}

#[test]
fn responses_and_trailing_octets() {
    let msg = b"\r\nSIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n\
To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\ngarbage after the message";
    with(msg, |m| {
        assert_eq!(m.status(), Some(180));
        assert!(m.body().is_empty());
        assert!(m.as_bytes().starts_with(b"SIP/2.0 180") && m.as_bytes().ends_with(b"\r\n\r\n"));
        m.validate().unwrap();
    });
}

#[test]
fn malformed_messages_have_typed_errors() {
    let table: &[(&[u8], ErrorKind)] = &[
        (b"", ErrorKind::Incomplete),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x", ErrorKind::Incomplete),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", ErrorKind::Incomplete),
        (b"INVITE sip:a@b SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n", ErrorKind::HeaderName),
        (b"INVITE sip:a@b SIP/2.0\r\nFoobar roobar\r\n\r\n", ErrorKind::HeaderName),
        (b"INVITE sip:a@b SIP/2.0\r\n: empty\r\n\r\n", ErrorKind::HeaderName),
        (b"INVITE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nshort", ErrorKind::Incomplete),
        (b"INVITE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n", ErrorKind::ContentLength),
        (b"INVITE sip:a@b SIP/2.0\r\nl: five\r\n\r\n", ErrorKind::ContentLength),
        (b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nx", ErrorKind::DuplicateHeader),
        (b"INVITE sip:a@b SIP/2.0\r\ni: a\r\ni: b\r\n\r\n", ErrorKind::DuplicateHeader),
        (b"INVITE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n", ErrorKind::MissingHeader),
        (b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n", ErrorKind::MissingHeader),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", ErrorKind::UnsupportedVersion),
        (b"INVITE sip:a@b\r\n\r\n", ErrorKind::StartLine),
    ];
    for (msg, kind) in table {
        assert_eq!(error_of(msg), *kind, "{}", String::from_utf8_lossy(msg));
    }
}

#[test]
fn accessor_errors() {
    let base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n\
To: <sip:b@h>\r\nCall-ID: c\r\n";
    let table: &[(&str, ErrorKind)] = &[
        ("CSeq: 1 INVITE\r\n", ErrorKind::CSeqMethodMismatch),
        ("CSeq: 4294967296 OPTIONS\r\n", ErrorKind::NumberTooLarge),
        ("CSeq: 1 OPTIONS\r\nMax-Forwards: 256\r\n", ErrorKind::NumberTooLarge),
        ("CSeq: 1 OPTIONS\r\nMax-Forwards: x\r\n", ErrorKind::HeaderValue),
        ("CSeq: 1 OPTIONS\r\nRoute: <sip:a;lr>,,<sip:b;lr>\r\n", ErrorKind::HeaderValue),
        ("CSeq: 1 OPTIONS\r\nContact: <sip:a@b>;;\r\n", ErrorKind::HeaderValue),
        ("CSeq: 1 OPTIONS\r\nExpires: 99999999999\r\n", ErrorKind::NumberTooLarge),
        ("CSeq: 1 OPTIONS\r\nContent-Type: sdp\r\n", ErrorKind::HeaderValue),
    ];
    for (tail, kind) in table {
        let msg = format!("{base}{tail}\r\n");
        assert_eq!(error_of(msg.as_bytes()), *kind, "{tail}");
    }
}

#[test]
fn limits_are_errors_of_their_own_kind() {
    let mut small = [HeaderIndexEntry::EMPTY; 3];
    assert_eq!(parse(INVITE, &mut small).unwrap_err().kind(), ErrorKind::TooManyHeaders);

    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let tight = Limits { max_message_bytes: 100, ..Limits::DEFAULT };
    assert_eq!(parse_with_limits(INVITE, &mut index, &tight).unwrap_err().kind(), ErrorKind::MessageTooLarge);
    let tight = Limits { max_header_line_bytes: 40, ..Limits::DEFAULT };
    assert_eq!(
        parse_with_limits(INVITE, &mut index, &tight).unwrap_err().kind(),
        ErrorKind::HeaderLineTooLong
    );
    let tight = Limits { max_vias: 2, ..Limits::DEFAULT };
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP a, SIP/2.0/UDP b, SIP/2.0/UDP c\r\n\r\n";
    let m = parse_with_limits(msg, &mut index, &tight).unwrap();
    let kinds: Vec<_> = m.vias().map(|v| v.err().map(|e| e.kind())).collect();
    assert_eq!(kinds, [None, None, Some(ErrorKind::TooManyVias)]);
    let big = vec![b'a'; MAX_MESSAGE_BYTES + 1];
    assert_eq!(parse(&big, &mut index).unwrap_err().kind(), ErrorKind::MessageTooLarge);
    assert!(ErrorKind::TooManyVias.is_limit() && !ErrorKind::HeaderValue.is_limit());
    assert_eq!(ErrorKind::UnsupportedVersion.status_code(), 505);
}

const VIA: ViaSpec<'static> =
    ViaSpec { transport: "UDP", host: "192.0.2.1", port: 5060, branch: "z9hG4bKedge1", rport: true };

fn write(f: impl FnOnce(&mut [u8]) -> Result<usize, WriteError>) -> Vec<u8> {
    let mut out = [0u8; 4096];
    let n = f(&mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn forward_changes_only_what_it_must() {
    let opts = ForwardOptions {
        via: VIA,
        request_uri: Some(b"sip:+15551234567@10.0.0.10:5060;user=phone"),
        pop_route: true,
        record_route: Some(RecordRouteSpec { host: "192.0.2.1", port: 5060 }),
    };
    let out = with(INVITE, |m| write(|o| forward_request(&m, &opts, o)));
    let want = String::from_utf8_lossy(INVITE)
        .replace("198.51.100.10:5060;user=phone SIP", "10.0.0.10:5060;user=phone SIP")
        .replace(
            "SIP/2.0\r\nVia:",
            "SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge1;rport\r\n\
Record-Route: <sip:192.0.2.1:5060;lr>\r\nVia:",
        )
        .replace("Max-Forwards: 69", "Max-Forwards: 68")
        .replace("Route: <sip:edge.example.net;lr>, <sip:core", "Route: <sip:core");
    assert_eq!(String::from_utf8_lossy(&out), want);
    with(&out, |m| {
        m.validate().unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKedge1"[..]));
        assert_eq!(m.vias().count(), 2);
        assert_eq!(m.routes().count(), 1);
        assert_eq!(m.body(), b"v=0\n");
    });

    // Without options: only the Via and Max-Forwards change; an absent Max-Forwards becomes 69.
    let plain = ForwardOptions { via: VIA, request_uri: None, pop_route: false, record_route: None };
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nRoute: <sip:x;lr>\r\n\r\n";
    let out = with(msg, |m| write(|o| forward_request(&m, &plain, o)));
    assert_eq!(
        out,
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge1;rport\r\n\
Max-Forwards: 69\r\nRoute: <sip:x;lr>\r\n\r\n"
    );
    let popped = ForwardOptions { pop_route: true, ..plain };
    let out = with(msg, |m| write(|o| forward_request(&m, &popped, o)));
    assert!(!out.windows(6).any(|w| w == b"Route:"));

    let zero = b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 0\r\n\r\n";
    let mut buf = [0u8; 512];
    with(zero, |m| assert_eq!(forward_request(&m, &plain, &mut buf), Err(WriteError::MaxForwardsExhausted)));
    with(INVITE, |m| {
        assert_eq!(
            forward_request(&m, &plain, &mut buf[..100]),
            Err(WriteError::BufferTooSmall { capacity: 100 })
        );
        let bad = ForwardOptions { via: ViaSpec { host: "a b", ..VIA }, ..plain };
        assert!(matches!(forward_request(&m, &bad, &mut buf), Err(WriteError::Unsuitable(_))));
    });
}

#[test]
fn responses_built_from_requests() {
    let out = with(INVITE, |m| {
        write(|o| {
            response_from_request(&m, 503, "Service Unavailable", Some("edge7"), &["Retry-After: 5"], o)
        })
    });
    assert_eq!(
        String::from_utf8_lossy(&out),
        "SIP/2.0 503 Service Unavailable\r\n\
Via: SIP/2.0/UDP 203.0.113.17:5060;branch=z9hG4bK776asdhds-8a1f;rport\r\n\
From: \"ACME Corp\" <sip:+12125550100@203.0.113.17;user=phone>;tag=1928301774\r\n\
To: <sip:+15551234567@198.51.100.10;user=phone>;tag=edge7\r\n\
Call-ID: a84b4c76e66710-3f1c9a@203.0.113.17\r\n\
CSeq: 314159 INVITE\r\n\
Retry-After: 5\r\n\
Content-Length: 0\r\n\r\n"
    );
    with(&out, |m| m.validate().unwrap());
    let trying = with(INVITE, |m| write(|o| response_from_request(&m, 100, "Trying", Some("x"), &[], o)));
    with(&trying, |m| assert_eq!(m.to().unwrap().tag(), None));
    let mut buf = [0u8; 1024];
    with(INVITE, |m| {
        assert!(response_from_request(&m, 99, "x", None, &[], &mut buf).is_err());
        assert!(response_from_request(&m, 400, "Bad\r\n", None, &[], &mut buf).is_err());
        assert!(response_from_request(&m, 400, "Bad", None, &["no colon"], &mut buf).is_err());
    });
}

#[test]
fn strip_top_via_of_responses() {
    let resp =
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP edge;branch=z9hG4bK1, SIP/2.0/UDP uac;branch=z9hG4bK0\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let out = with(resp, |m| write(|o| strip_top_via(&m, o)));
    assert_eq!(
        out,
        String::from_utf8_lossy(resp).replace("SIP/2.0/UDP edge;branch=z9hG4bK1, ", "").as_bytes()
    );
    let out2 = with(&out, |m| write(|o| strip_top_via(&m, o)));
    assert!(!out2.windows(4).any(|w| w == b"Via:"));
    with(INVITE, |m| assert!(strip_top_via(&m, &mut [0u8; 1024]).is_err()));
}

#[test]
fn cancel_and_ack_from_the_forwarded_invite() {
    let cancel = with(INVITE, |m| write(|o| build_cancel(&m, o)));
    assert_eq!(
        String::from_utf8_lossy(&cancel),
        "CANCEL sip:+15551234567@198.51.100.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.17:5060;branch=z9hG4bK776asdhds-8a1f;rport\r\n\
Route: <sip:edge.example.net;lr>, <sip:core.example.net;lr>\r\n\
Max-Forwards: 70\r\n\
From: \"ACME Corp\" <sip:+12125550100@203.0.113.17;user=phone>;tag=1928301774\r\n\
To: <sip:+15551234567@198.51.100.10;user=phone>\r\n\
Call-ID: a84b4c76e66710-3f1c9a@203.0.113.17\r\n\
CSeq: 314159 CANCEL\r\n\
Content-Length: 0\r\n\r\n"
    );
    with(&cancel, |m| m.validate().unwrap());
    let busy = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 203.0.113.17:5060;branch=z9hG4bK776asdhds-8a1f\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:+15551234567@198.51.100.10;user=phone>;tag=uas9\r\nCall-ID: c\r\nCSeq: 314159 INVITE\r\n\r\n";
    let mut idx = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let resp = parse(busy, &mut idx).unwrap();
    let ack = with(INVITE, |m| write(|o| build_ack(&m, &resp, o)));
    with(&ack, |m| {
        m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Ack));
        assert_eq!(m.to().unwrap().tag(), Some(&b"uas9"[..]));
        assert_eq!(m.cseq().unwrap().number, 314159);
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK776asdhds-8a1f"[..]));
    });
    let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n";
    let mut idx2 = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let ok = parse(ok, &mut idx2).unwrap();
    with(INVITE, |m| assert!(build_ack(&m, &ok, &mut [0u8; 1024]).is_err()));
}

#[test]
fn in_dialog_requests_are_written_whole_or_refused() {
    let routes: [&[u8]; 2] = [b"sip:p1.example;lr", b"sip:p2.example;lr"];
    let req = InDialogRequest {
        method: "BYE",
        request_uri: b"sip:pbx@198.51.100.10:5070",
        via: VIA,
        routes: &routes,
        from: b"<sip:a@192.0.2.7>;tag=a1",
        to: b"<sip:b@198.51.100.10>;tag=b2",
        call_id: b"c1@192.0.2.7",
        cseq: 42,
    };
    let bye = write(|o| build_in_dialog_request(&req, o));
    assert_eq!(
        String::from_utf8_lossy(&bye),
        "BYE sip:pbx@198.51.100.10:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge1;rport\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:a@192.0.2.7>;tag=a1\r\n\
To: <sip:b@198.51.100.10>;tag=b2\r\n\
Call-ID: c1@192.0.2.7\r\n\
CSeq: 42 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    with(&bye, |m| m.validate().unwrap());
    let bad_route: [&[u8]; 1] = [b"sip:p1.example>\r\nX: y"];
    for bad in [
        InDialogRequest { from: b"<sip:a@h>\r\nX-Injected: 1", ..req },
        InDialogRequest { to: b"", ..req },
        InDialogRequest { request_uri: b"sip:a b", ..req },
        InDialogRequest { routes: &bad_route, ..req },
        InDialogRequest { method: "BY E", ..req },
    ] {
        let mut out = [0u8; 4096];
        assert!(matches!(build_in_dialog_request(&bad, &mut out), Err(WriteError::Unsuitable(_))), "{bad:?}");
    }
    let mut small = [0u8; 64];
    assert!(matches!(build_in_dialog_request(&req, &mut small), Err(WriteError::BufferTooSmall { .. })));
}

#[test]
fn call_id_is_word_at_word() {
    let table: &[(&[u8], bool)] = &[
        (b"a84b4c76e66710-3f1c9a@203.0.113.17", true),
        (b"c", true),
        (b"<x>@[::1]", true),
        (b"", false),
        (b"a@", false),
        (b"@a", false),
        (b"a@b@c", false),
        (b"a b", false),
        (b"a;b", false),
        (b"@a84b4c76e66710-3f1c9a203.0.113.17", false),
        (b"a84b4c76e66710-3f1c9a203.0.113.17@", false),
        (b"a84b4c76e66710@3f1c9a@203.0.113.17", false),
        (b"a84b4c76e66710-3f1c9a203.0.113.17", true),
        (b"a84b4c76e66710-3f1c9a203.0.113.1\x80", false),
        (b"0123456789abcdef@0123456789abcdef", true),
    ];
    for (v, ok) in table {
        assert_eq!(super::call_id_ok(v), *ok, "{:?}", String::from_utf8_lossy(v));
    }
}

proptest::proptest! {
    /// The 16-bytes-at-a-time check agrees with the byte-by-byte one.
    #[test]
    fn call_id_wide_matches_narrow(v in proptest::collection::vec(
        proptest::sample::select(b"a9-.<>\"@@#;=^| \x7f\x80\x00".to_vec()), 0..70)) {
        proptest::prop_assert_eq!(super::call_id_ok(&v), super::call_id_narrow(&v));
    }
}
