//! RFC 4475 torture messages through the parser: every `valid` / `valid-unusual` message parses
//! and reads as the RFC's note says; every `invalid` one fails with the error kind (and so the
//! SIP answer) the RFC expects, except where the RFC lets a liberal element accept.
//! The corpus is read from `../shared/corpus/rfc4475` (never copied into the repository).

#![allow(clippy::unwrap_used, reason = "the table's checks run inside the test: a panic is a failed test")]

use std::collections::BTreeMap;
use std::path::Path;

use edge::sip::{
    self, Contact, ErrorKind, HeaderIndexEntry, HeaderKind, Host, Method, SipMessage, Uri, unescaped_eq,
};

/// What a message must do.
enum Expect {
    /// Parses and validates; the function checks the fields the RFC's note names.
    Valid(fn(&SipMessage<'_>)),
    /// Fails with this kind.
    Invalid(ErrorKind),
}
use Expect::{Invalid, Valid};

/// Index size for the torture messages (longreq.dat has dozens of header lines).
const INDEX: usize = 256;

fn user(uri: &Uri<'_>) -> Vec<u8> {
    match uri {
        Uri::Sip(s) => s.user_unescaped().collect(),
        other => panic!("not a SIP URI: {other:?}"),
    }
}

fn scheme<'a>(uri: &Uri<'a>) -> &'a str {
    match uri {
        Uri::Other { scheme, .. } => scheme,
        other => panic!("not an opaque URI: {other:?}"),
    }
}

fn table() -> BTreeMap<&'static str, Expect> {
    let t: Vec<(&str, Expect)> = vec![
        (
            "wsinv",
            Valid(|m| {
                assert_eq!(m.method(), Some(Method::Invite));
                assert_eq!(m.to().unwrap().tag(), Some(&b"1918181833n"[..]));
                let from = m.from().unwrap();
                assert_eq!(from.tag(), Some(&b"98asjd8"[..]));
                assert_eq!(from.display_name, Some(&br#"J Rosenberg \\\""#[..]));
                assert_eq!(m.max_forwards().unwrap(), Some(68));
                assert_eq!(m.cseq().unwrap().number, 9);
                let branches: Vec<_> = m.vias().map(|v| v.unwrap().branch().unwrap()).collect();
                assert_eq!(branches, [&b"390skdjuw"[..], b"z9hG4bK9ikj8", b"z9hG4bK30239"]);
                assert_eq!(m.header_value(HeaderKind::Subject), Some(&b""[..]));
                assert!(m.headers().any(|h| h.name == b"NewFangledHeader" && h.kind == HeaderKind::Other));
                assert!(m.headers().any(|h| h.value == b";;,,;;,;"));
                let Some(Ok(Contact::Address(c))) = m.contacts().next() else { panic!() };
                assert_eq!(c.params.get("q"), Some(Some(&b"0.33"[..])));
                assert_eq!(c.params.get("newparam"), Some(Some(&b"newvalue"[..])));
                assert_eq!(m.body().len(), 150);
            }),
        ),
        (
            "intmeth",
            Valid(|m| {
                let method = Method::Other("!interesting-Method0123456789_*+`.%indeed'~");
                assert_eq!(m.method(), Some(method));
                assert_eq!(m.cseq().unwrap().method, method);
                assert_eq!(m.max_forwards().unwrap(), Some(255));
                let Some(Uri::Sip(r)) = m.request_uri() else { panic!() };
                assert_eq!(r.user, Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..]));
                assert_eq!(m.call_id().unwrap(), br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#);
                assert_eq!(m.from().unwrap().tag(), Some(&b"_token~1'+`*%!-."[..]));
                assert!(m.headers().any(|h| h.name == b"extensionHeader-!.%*+_`'~"));
            }),
        ),
        (
            "esc01",
            Valid(|m| {
                assert_eq!(user(m.request_uri().unwrap()), b"sips:user@example.com");
                assert_eq!(user(&m.to().unwrap().uri), b"user");
                assert_eq!(user(&m.from().unwrap().uri), b"I have spaces");
                let Some(Ok(Contact::Address(c))) = m.contacts().next() else { panic!() };
                let sip = c.uri.as_sip().unwrap();
                assert_eq!(sip.user_unescaped().collect::<Vec<_>>(), b"caller");
                let params: Vec<_> = sip.params.iter().collect();
                assert!(unescaped_eq(params[0].0, b"lr") && params[0].1.is_none());
                assert!(unescaped_eq(params[1].0, b"name"));
                let value: Vec<u8> = sip::Unescaped::new(params[1].1.unwrap()).collect();
                assert_eq!(value, b"value%41");
                // Escaped and unescaped forms compare equal (RFC 3261 §19.1.4).
                let plain = Uri::parse(b"sip:user@example.com").unwrap();
                assert!(m.to().unwrap().uri.as_sip().unwrap().equivalent(plain.as_sip().unwrap()));
            }),
        ),
        (
            "escnull",
            Valid(|m| {
                assert_eq!(user(&m.to().unwrap().uri), b"null-\0-null");
                let c: Vec<_> = m
                    .contacts()
                    .map(|c| match c.unwrap() {
                        Contact::Address(a) => a.uri.as_sip().unwrap().user.unwrap(),
                        Contact::Any => panic!(),
                    })
                    .collect();
                assert_eq!(c.len(), 2);
                assert!(!unescaped_eq(c[0], c[1]));
            }),
        ),
        (
            "esc02",
            Valid(|m| {
                assert_eq!(m.method(), Some(Method::Other("RE%47IST%45R")));
                assert_ne!(m.method(), Some(Method::Register));
                assert_eq!(m.to().unwrap().display_name, Some(&b"%Z%45"[..]));
                assert_eq!(m.contacts().count(), 2);
                assert!(m.headers().any(|h| h.name == b"C%6Fntact" && h.kind == HeaderKind::Other));
                assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK209%fzsnel234"[..]));
            }),
        ),
        ("lwsdisp", Valid(|m| assert_eq!(m.from().unwrap().display_name, Some(&b"caller"[..])))),
        (
            "longreq",
            Valid(|m| {
                assert!(m.vias().count() > 20);
                assert!(m.vias().all(|v| v.is_ok()));
                assert!(m.to().unwrap().display_name.unwrap().len() > 100);
                assert!(m.from().unwrap().tag().unwrap().starts_with(b"12982982982"));
                assert!(m.call_id().unwrap().len() > 100);
            }),
        ),
        (
            "dblreq",
            Valid(|m| {
                assert_eq!(m.method(), Some(Method::Register));
                assert!(m.body().is_empty());
                assert!(
                    !m.as_bytes().windows(6).any(|w| w == b"INVITE"),
                    "trailing INVITE must be discarded"
                );
            }),
        ),
        (
            "semiuri",
            Valid(|m| {
                let Some(Uri::Sip(r)) = m.request_uri() else { panic!() };
                assert_eq!(r.user, Some(&b"user;par=u%40example.net"[..]));
                assert_eq!(r.user_unescaped().collect::<Vec<_>>(), b"user;par=u@example.net");
                assert!(r.params.is_empty(), ";par is part of the user, not a URI parameter");
                assert_eq!(r.host, Host::Name("example.com"));
                let accept = m.header_value(HeaderKind::Accept).unwrap();
                assert!(accept.starts_with(b"application/sdp") && accept.ends_with(b"message/sipfrag"));
            }),
        ),
        (
            "transports",
            Valid(|m| {
                let t: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
                assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
            }),
        ),
        (
            "mpart01",
            Valid(|m| {
                assert_eq!(m.method(), Some(Method::Message));
                assert_eq!(Some(m.body().len()), m.content_length());
                assert!(m.identity().is_some_and(|i| !i.contains(&b'.')));
                assert!(m.content_type().unwrap().starts_with(b"multipart/mixed"));
            }),
        ),
        (
            "unreason",
            Valid(|m| {
                assert_eq!(m.status(), Some(200));
                let sip::StartLine::Response(s) = m.start_line() else { panic!() };
                assert!(std::str::from_utf8(s.reason).unwrap().contains("простое"));
            }),
        ),
        (
            "noreason",
            Valid(|m| {
                let sip::StartLine::Response(s) = m.start_line() else { panic!() };
                assert_eq!((s.code, s.reason), (100, &b""[..]));
            }),
        ),
        ("badinv01", Invalid(ErrorKind::HeaderValue)),
        ("clerr", Invalid(ErrorKind::Incomplete)),
        ("ncl", Invalid(ErrorKind::ContentLength)),
        ("scalar02", Invalid(ErrorKind::NumberTooLarge)),
        ("scalarlg", Invalid(ErrorKind::NumberTooLarge)),
        ("quotbal", Invalid(ErrorKind::HeaderValue)),
        ("ltgtruri", Invalid(ErrorKind::Uri)),
        ("lwsruri", Invalid(ErrorKind::Uri)),
        ("lwsstart", Invalid(ErrorKind::Uri)),
        ("trws", Invalid(ErrorKind::StartLine)),
        // Liberal: accepted, the escaped Route stays inside the Request-URI's headers part.
        (
            "escruri",
            Valid(|m| {
                let Some(Uri::Sip(r)) = m.request_uri() else { panic!() };
                assert_eq!(r.headers, Some(&b"Route=%3Csip:example.com%3E"[..]));
                assert_eq!(m.routes().count(), 0);
            }),
        ),
        // Liberal: the Date header is not needed, so its bad time zone is ignored.
        ("baddate", Valid(|m| assert_eq!(m.method(), Some(Method::Invite)))),
        ("regbadct", Invalid(ErrorKind::HeaderValue)),
        ("badaspec", Invalid(ErrorKind::Uri)),
        // The archive's file ends without the empty line; `baddn_display_names` checks the
        // display names themselves.
        ("baddn", Invalid(ErrorKind::Incomplete)),
        ("badvers", Invalid(ErrorKind::UnsupportedVersion)),
        ("mismatch01", Invalid(ErrorKind::CSeqMethodMismatch)),
        ("mismatch02", Invalid(ErrorKind::CSeqMethodMismatch)),
        ("bigcode", Invalid(ErrorKind::StatusCode)),
        (
            "badbranch",
            Valid(|m| {
                let v = m.top_via().unwrap();
                assert_eq!(v.branch(), Some(&b"z9hG4bK"[..]));
                assert!(!v.has_rfc3261_branch());
            }),
        ),
        ("insuf", Invalid(ErrorKind::MissingHeader)),
        ("unkscm", Valid(|m| assert_eq!(scheme(m.request_uri().unwrap()), "nobodyKnowsThisScheme"))),
        ("novelsc", Valid(|m| assert_eq!(scheme(m.request_uri().unwrap()), "soap.beep"))),
        (
            "unksm2",
            Valid(|m| {
                assert_eq!(scheme(&m.to().unwrap().uri), "isbn");
                assert_eq!(scheme(&m.from().unwrap().uri), "http");
                let Some(Ok(Contact::Address(c))) = m.contacts().next() else { panic!() };
                assert_eq!(scheme(&c.uri), "name");
            }),
        ),
        (
            "bext01",
            Valid(|m| {
                assert!(m.header_value(HeaderKind::Require).is_some());
                assert!(m.header_value(HeaderKind::ProxyRequire).is_some());
            }),
        ),
        ("invut", Valid(|m| assert_eq!(m.content_type(), Some(&b"application/unknownformat"[..])))),
        (
            "regaut01",
            Valid(|m| {
                assert!(
                    m.header_value(HeaderKind::Authorization).unwrap().starts_with(b"NoOneKnowsThisScheme")
                );
                assert_eq!(m.content_length(), Some(0));
            }),
        ),
        ("multi01", Invalid(ErrorKind::DuplicateHeader)),
        ("mcl01", Invalid(ErrorKind::DuplicateHeader)),
        (
            "bcast",
            Valid(|m| {
                assert_eq!(m.status(), Some(200));
                let hosts: Vec<_> = m.vias().map(|v| v.unwrap().host).collect();
                assert_eq!(hosts[1], Host::Ipv4(std::net::Ipv4Addr::BROADCAST));
            }),
        ),
        ("zeromf", Valid(|m| assert_eq!(m.max_forwards().unwrap(), Some(0)))),
        (
            "cparam01",
            Valid(|m| {
                let Some(Ok(Contact::Address(c))) = m.contacts().next() else { panic!() };
                assert!(c.uri.as_sip().unwrap().params.is_empty());
                assert!(c.params.has("unknownparam"), "a header parameter without <>");
            }),
        ),
        (
            "cparam02",
            Valid(|m| {
                let Some(Ok(Contact::Address(c))) = m.contacts().next() else { panic!() };
                assert!(c.uri.as_sip().unwrap().params.has("unknownparam"), "a URI parameter inside <>");
                assert!(c.params.is_empty());
            }),
        ),
        (
            "regescrt",
            Valid(|m| {
                let Some(Ok(Contact::Address(c))) = m.contacts().next() else { panic!() };
                assert_eq!(c.uri.as_sip().unwrap().headers, Some(&b"Route=%3Csip:sip.example.com%3E"[..]));
            }),
        ),
        (
            "sdp01",
            Valid(|m| assert_eq!(m.header_value(HeaderKind::Accept), Some(&b"text/nobodyKnowsThis"[..]))),
        ),
        (
            "inv2543",
            Valid(|m| {
                assert_eq!(m.max_forwards().unwrap(), None);
                assert_eq!(m.top_via().unwrap().branch(), None);
                let rr = m.record_routes().next().unwrap().unwrap();
                assert_eq!(rr.uri.as_sip().unwrap().params.get("maddr"), Some(Some(&b"ss1.example.com"[..])));
                assert!(m.from().unwrap().uri.as_sip().unwrap().is_phone());
                // Without <>, `;user=phone` after the To URI is a header parameter (§20.10).
                let to = m.to().unwrap();
                assert!(!to.uri.as_sip().unwrap().is_phone() && to.params.has("user"));
            }),
        ),
        // Not described by RFC 4475: a request line without version is malformed.
        ("test", Invalid(ErrorKind::StartLine)),
    ];
    t.into_iter().collect()
}

fn judge(bytes: &[u8]) -> Result<(), sip::ParseError> {
    let mut index = [HeaderIndexEntry::EMPTY; INDEX];
    sip::parse(bytes, &mut index)?.validate()
}

#[test]
fn rfc4475_torture_messages() {
    let Some(dir) = tests::shared_corpus("rfc4475_torture_messages", "rfc4475") else { return };
    let index = std::fs::read_to_string(dir.join("index.tsv")).unwrap();
    let mut table = table();
    let mut checked = 0;
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, class, handling) = (cols[0], cols[3], cols[4]);
        let name = file.trim_end_matches(".dat");
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let expect = table.remove(name).unwrap_or_else(|| panic!("{name} missing from the table"));
        let mut index = [HeaderIndexEntry::EMPTY; INDEX];
        let parsed = sip::parse(&bytes, &mut index);
        match expect {
            Valid(check) => {
                assert!(
                    class != "invalid" || handling.contains("liberal") || handling.contains("ignore"),
                    "{name}"
                );
                let m = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
                m.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                check(&m);
            }
            Invalid(kind) => {
                assert!(class == "invalid" || class == "unclassified", "{name} is {class}");
                let err = parsed.and_then(|m| m.validate()).expect_err(name);
                assert_eq!(err.kind(), kind, "{name}: {err}");
                let code = err.kind().status_code();
                if handling.contains("505") {
                    assert_eq!(code, 505, "{name}");
                } else {
                    assert_eq!(code, 400, "{name}");
                }
            }
        }
        checked += 1;
    }
    assert!(table.is_empty(), "not in index.tsv: {:?}", table.keys().collect::<Vec<_>>());
    assert_eq!(checked, 50);
}

#[test]
fn baddn_display_names() {
    let Some(dir) = tests::shared_corpus("baddn_display_names", "rfc4475") else { return };
    let mut bytes = std::fs::read(Path::new(&dir).join("baddn.dat")).unwrap();
    bytes.extend_from_slice(b"\r\n");
    let err = judge(&bytes).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HeaderValue, "{err}");
}

#[test]
fn every_prefix_of_every_message_fails_cleanly() {
    let Some(dir) = tests::shared_corpus("every_prefix_of_every_message_fails_cleanly", "rfc4475") else {
        return;
    };
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "dat") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for end in 0..bytes.len() {
            let _ = judge(&bytes[..end]);
        }
    }
}
