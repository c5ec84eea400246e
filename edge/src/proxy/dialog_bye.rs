//! What the edge keeps of a confirmed dialog to end it itself, and the two BYEs it writes when
//! the call passes its maximum duration (as Kamailio's dialog module does on timeout): one to the
//! callee as if from the caller, one to the caller as if from the callee (RFC 3261 §12.2.1.1,
//! §15.1.1). Pure: no I/O, no clock; the engine sends what [`ByeRecipe::write`] builds.
//!
//! Kept up to date by what passes through: each side's highest CSeq (the BYE uses one more,
//! §12.2.1.1), including those of the early dialog (a PRACK or UPDATE before the 2xx, which the
//! dialog table keeps until the 2xx), and the remote targets of a re-INVITE answered 2xx
//! and of an UPDATE (RFC 3311) answered 2xx (§12.2). Not seen: a target refresh within the
//! early dialog (the 2xx then names the callee's target; the caller's stays the INVITE's).
//!
//! Route sets (RFC 3261 §12.1): the caller's is the 2xx's Record-Route reversed, the callee's the
//! Record-Route in order. Each contains the edge itself; a BYE the edge originates must skip it
//! and every hop on the far side of it. Towards the callee, that leaves the part of the caller's
//! route set after the edge — the Record-Route entries above ours, reversed; towards the caller,
//! the part of the callee's route set after the edge — the entries below ours, in order.

use crate::sip::{self, Contact, HeaderKind, InDialogRequest, SipMessage, Uri, ViaSpec, WriteError};

/// Bytes of dialog text kept per call at most: Call-ID, From, To, both Contact URIs and the
/// route URIs together. A call beyond it is still counted but ends without BYE.
pub const MAX_DIALOG_TEXT_BYTES: usize = 1024;
/// Route URIs kept per call at most (both directions together, the edge's own excluded).
pub const MAX_DIALOG_ROUTES: usize = 8;
/// Longest BYE [`ByeRecipe::write`] may need, in bytes: the dialog text (which holds every route
/// URI once, and From/To at most twice over) and the fixed lines.
pub const MAX_BYE_BYTES: usize = 2 * MAX_DIALOG_TEXT_BYTES + 1024;

/// Why a confirmed dialog cannot be ended with BYEs (it is still counted and expires).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unbuildable {
    /// A header a BYE needs is absent or does not parse.
    #[error("{0} is absent or malformed")]
    Header(&'static str),
    /// The headers are longer than [`MAX_DIALOG_TEXT_BYTES`].
    #[error("dialog headers longer than {MAX_DIALOG_TEXT_BYTES} bytes")]
    TooLong,
    /// More Record-Route entries than [`MAX_DIALOG_ROUTES`].
    #[error("more than {MAX_DIALOG_ROUTES} Record-Route entries")]
    TooManyRoutes,
    /// The 2xx has a Record-Route without the edge's entry: the two sides cannot be told apart.
    #[error("Record-Route without our entry")]
    NotRecordRouted,
    /// A header value spans lines (folded): it cannot be copied into one line.
    #[error("folded header value")]
    Folded,
}

/// Which side a BYE goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The callee (the target that answered), as if from the caller.
    Callee,
    /// The caller (where the INVITE came from), as if from the callee.
    Caller,
}

/// A byte range of [`ByeRecipe`]'s text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    at: u16,
    len: u16,
}

/// Everything needed to write the two BYEs of one dialog, in one allocation of at most
/// [`MAX_DIALOG_TEXT_BYTES`].
#[derive(Debug, Clone)]
pub struct ByeRecipe {
    text: Box<[u8]>,
    call_id: Span,
    /// The caller's From value (tag a) and its tag.
    from: Span,
    from_tag: Span,
    /// The 2xx's To value (tag b).
    to: Span,
    caller_contact: Span,
    callee_contact: Span,
    /// Route URIs towards the callee (first hop first), then towards the caller.
    routes: [Span; MAX_DIALOG_ROUTES],
    to_callee: u8,
    to_caller: u8,
    /// Highest CSeq number seen from the caller (the INVITE's to start with).
    caller_cseq: u32,
    /// Highest CSeq number seen from the callee (0: none yet).
    callee_cseq: u32,
}

/// Builds the text of a recipe under the cap.
struct TextBuilder {
    text: Vec<u8>,
}

impl TextBuilder {
    fn push(&mut self, bytes: &[u8]) -> Result<Span, Unbuildable> {
        if bytes.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(Unbuildable::Folded);
        }
        let at = self.text.len();
        if at + bytes.len() > MAX_DIALOG_TEXT_BYTES {
            return Err(Unbuildable::TooLong);
        }
        self.text.extend_from_slice(bytes);
        // Both fit in u16: the text is at most MAX_DIALOG_TEXT_BYTES.
        Ok(Span { at: at as u16, len: bytes.len() as u16 })
    }
}

/// The URI of the first Contact of `msg` (a remote target), when it has one.
pub fn first_contact_uri<'b>(msg: &SipMessage<'b>) -> Option<&'b [u8]> {
    match msg.contacts().next() {
        Some(Ok(Contact::Address(a))) => Some(a.uri_raw),
        _ => None,
    }
}

impl ByeRecipe {
    /// The recipe of the dialog that `invite` (as the caller sent it) and its 2xx `ok` (as the
    /// callee sent it) set up. `is_us` says whether a Record-Route URI is the edge's own entry.
    pub fn new(
        invite: &SipMessage<'_>,
        ok: &SipMessage<'_>,
        is_us: impl Fn(&Uri<'_>) -> bool,
    ) -> Result<Self, Unbuildable> {
        let mut b = TextBuilder { text: Vec::with_capacity(MAX_DIALOG_TEXT_BYTES.min(512)) };
        let call_id = b.push(ok.call_id().map_err(|_| Unbuildable::Header("Call-ID"))?)?;
        let from_value = ok.header_value(HeaderKind::From).ok_or(Unbuildable::Header("From"))?;
        let tag = ok.from().ok().and_then(|f| f.tag()).ok_or(Unbuildable::Header("From tag"))?;
        let from = b.push(from_value)?;
        // The tag is a slice of the value: its offset there is its offset in our copy.
        let tag_at = (tag.as_ptr() as usize)
            .checked_sub(from_value.as_ptr() as usize)
            .filter(|at| at + tag.len() <= from_value.len())
            .ok_or(Unbuildable::Header("From tag"))?;
        // Within the pushed value, so below MAX_DIALOG_TEXT_BYTES.
        let from_tag = Span { at: from.at + tag_at as u16, len: tag.len() as u16 };
        ok.to().ok().and_then(|t| t.tag()).ok_or(Unbuildable::Header("To tag"))?;
        let to = b.push(ok.header_value(HeaderKind::To).ok_or(Unbuildable::Header("To"))?)?;
        let caller_contact =
            b.push(first_contact_uri(invite).ok_or(Unbuildable::Header("INVITE Contact"))?)?;
        let callee_contact = b.push(first_contact_uri(ok).ok_or(Unbuildable::Header("2xx Contact"))?)?;
        let caller_cseq = invite.cseq().map_err(|_| Unbuildable::Header("CSeq"))?.number;

        // Record-Route, top first: [towards the callee, reversed] us [towards the caller].
        let mut record_route = [Span::default(); MAX_DIALOG_ROUTES];
        let mut n = 0;
        let mut ours = None;
        for rr in ok.record_routes() {
            let rr = rr.map_err(|_| Unbuildable::Header("Record-Route"))?;
            if ours.is_none() && is_us(&rr.uri) {
                ours = Some(n);
                continue;
            }
            let slot = record_route.get_mut(n).ok_or(Unbuildable::TooManyRoutes)?;
            *slot = b.push(rr.uri_raw)?;
            n += 1;
        }
        let split = match ours {
            Some(i) => i,
            None if n == 0 => 0,
            None => return Err(Unbuildable::NotRecordRouted),
        };
        let mut routes = [Span::default(); MAX_DIALOG_ROUTES];
        let towards_callee = record_route.get(..split).unwrap_or_default().iter().rev();
        let towards_caller = record_route.get(split..n).unwrap_or_default().iter();
        for (slot, span) in routes.iter_mut().zip(towards_callee.chain(towards_caller)) {
            *slot = *span;
        }
        Ok(Self {
            text: b.text.into_boxed_slice(),
            call_id,
            from,
            from_tag,
            to,
            caller_contact,
            callee_contact,
            routes,
            to_callee: split as u8,
            to_caller: (n - split) as u8,
            caller_cseq,
            callee_cseq: 0,
        })
    }

    fn get(&self, s: Span) -> &[u8] {
        self.text.get(usize::from(s.at)..usize::from(s.at) + usize::from(s.len)).unwrap_or_default()
    }

    /// A request within the dialog went through: `from_tag` says which side sent it.
    pub fn note_cseq(&mut self, from_tag: &[u8], number: u32) {
        if from_tag == self.get(self.from_tag) {
            self.caller_cseq = self.caller_cseq.max(number);
        } else {
            self.callee_cseq = self.callee_cseq.max(number);
        }
    }

    /// A target refresh went through (a re-INVITE or an UPDATE answered 2xx, RFC 3261 §12.2,
    /// RFC 3311): the side that sent it (`from_tag`) is now reached at the request's Contact,
    /// the other side at the response's (`None`: unchanged). Beyond the caps the recipe stays as
    /// it was.
    pub fn refresh_targets(
        &mut self,
        from_tag: &[u8],
        request_contact: Option<&[u8]>,
        response_contact: Option<&[u8]>,
    ) -> Result<(), Unbuildable> {
        let (caller, callee) = if from_tag == self.get(self.from_tag) {
            (request_contact, response_contact)
        } else {
            (response_contact, request_contact)
        };
        let caller = caller.unwrap_or(self.get(self.caller_contact));
        let callee = callee.unwrap_or(self.get(self.callee_contact));
        let mut b = TextBuilder { text: Vec::with_capacity(self.text.len()) };
        let call_id = b.push(self.get(self.call_id))?;
        let from = b.push(self.get(self.from))?;
        let from_tag = Span { at: from.at + (self.from_tag.at - self.from.at), len: self.from_tag.len };
        let to = b.push(self.get(self.to))?;
        let caller_contact = b.push(caller)?;
        let callee_contact = b.push(callee)?;
        let mut routes = [Span::default(); MAX_DIALOG_ROUTES];
        for (new, old) in routes.iter_mut().zip(&self.routes) {
            *new = b.push(self.get(*old))?;
        }
        *self = Self {
            text: b.text.into_boxed_slice(),
            call_id,
            from,
            from_tag,
            to,
            caller_contact,
            callee_contact,
            routes,
            ..*self
        };
        Ok(())
    }

    fn call_id(&self) -> &[u8] {
        self.get(self.call_id)
    }

    /// Writes the BYE to `side` with our `via` into `out`; returns its length. A side whose
    /// CSeq space is exhausted (2^31-1 reached) gets none (`WriteError::Unsuitable`).
    pub fn write(&self, side: Side, via: ViaSpec<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
        let (to_callee, to_caller) = (usize::from(self.to_callee), usize::from(self.to_caller));
        let (spans, request_uri, from, to, last) = match side {
            Side::Callee => {
                (self.routes.get(..to_callee), self.callee_contact, self.from, self.to, self.caller_cseq)
            }
            Side::Caller => (
                self.routes.get(to_callee..to_callee + to_caller),
                self.caller_contact,
                self.to,
                self.from,
                self.callee_cseq,
            ),
        };
        // RFC 3261 §8.1.1.5: CSeq numbers stay below 2^31.
        let cseq = last.checked_add(1).filter(|&n| n < 1 << 31);
        let cseq = cseq.ok_or(WriteError::Unsuitable("CSeq space exhausted"))?;
        let mut routes: [&[u8]; MAX_DIALOG_ROUTES] = [&[]; MAX_DIALOG_ROUTES];
        let spans = spans.unwrap_or_default();
        for (slot, span) in routes.iter_mut().zip(spans) {
            *slot = self.get(*span);
        }
        let req = InDialogRequest {
            method: "BYE",
            request_uri: self.get(request_uri),
            via,
            routes: routes.get(..spans.len()).unwrap_or_default(),
            from: self.get(from),
            to: self.get(to),
            call_id: self.call_id(),
            cseq,
        };
        sip::build_in_dialog_request(&req, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{HeaderIndexEntry, MAX_HEADERS};

    const US: &str = "203.0.113.1:5060";

    /// Caller → p1 → edge → p2a → p2b → callee: the 2xx's Record-Route, top first, is
    /// p2b, p2a, edge, p1.
    const INVITE: &str = "INVITE sip:+15551230000@203.0.113.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKinv\r\n\
        Max-Forwards: 70\r\n\
        From: \"Alice\" <sip:+442079460000@192.0.2.7>;tag=caller-a\r\n\
        To: <sip:+15551230000@203.0.113.1>\r\n\
        Call-ID: call-xyz@192.0.2.7\r\n\
        CSeq: 41 INVITE\r\n\
        Contact: <sip:alice@192.0.2.7:5062;transport=udp>\r\n\
        Content-Length: 0\r\n\r\n";

    fn ok(record_route: &str) -> String {
        format!(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKinv\r\n\
             {record_route}\
             From: \"Alice\" <sip:+442079460000@192.0.2.7>;tag=caller-a\r\n\
             To: <sip:+15551230000@203.0.113.1>;tag=callee-b\r\n\
             Call-ID: call-xyz@192.0.2.7\r\n\
             CSeq: 41 INVITE\r\n\
             Contact: <sip:pbx@198.51.100.10:5070>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    const FOUR_HOPS: &str = "Record-Route: <sip:p2b.example;lr>, <sip:p2a.example;lr>\r\n\
        Record-Route: <sip:203.0.113.1:5060;lr>\r\nRecord-Route: <sip:p1.example;lr>\r\n";

    fn recipe(invite: &str, ok: &str) -> Result<ByeRecipe, Unbuildable> {
        let (mut i1, mut i2) =
            ([HeaderIndexEntry::EMPTY; MAX_HEADERS], [HeaderIndexEntry::EMPTY; MAX_HEADERS]);
        let invite = sip::parse(invite.as_bytes(), &mut i1).unwrap();
        let ok = sip::parse(ok.as_bytes(), &mut i2).unwrap();
        ByeRecipe::new(&invite, &ok, is_us)
    }

    fn is_us(uri: &Uri<'_>) -> bool {
        let us: std::net::SocketAddr = US.parse().unwrap();
        match uri {
            Uri::Sip(u) => {
                matches!(u.host, sip::Host::Ipv4(a) if std::net::IpAddr::V4(a) == us.ip())
                    && u.port == Some(us.port())
            }
            _ => false,
        }
    }

    fn via() -> ViaSpec<'static> {
        ViaSpec {
            transport: "UDP",
            host: "203.0.113.1",
            port: 5060,
            branch: "z9hG4bK-by-1-0-ab",
            rport: true,
        }
    }

    fn bye(r: &ByeRecipe, side: Side) -> String {
        let mut out = vec![0u8; MAX_BYE_BYTES];
        let n = r.write(side, via(), &mut out).unwrap();
        out.truncate(n);
        String::from_utf8(out).unwrap()
    }

    /// Every header a BYE needs, parsed back: (Request-URI, routes, From, From tag, To, To tag,
    /// Call-ID, CSeq).
    fn fields(text: &str) -> (String, Vec<String>, String, String, String, String, String, u32) {
        let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
        let m = sip::parse(text.as_bytes(), &mut index).unwrap();
        m.validate().unwrap();
        assert_eq!(m.method(), Some(sip::Method::Bye));
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let via = m.top_via().unwrap();
        assert_eq!(m.vias().count(), 1);
        assert_eq!(via.branch(), Some(&b"z9hG4bK-by-1-0-ab"[..]));
        assert!(via.branch().unwrap().starts_with(sip::BRANCH_MAGIC_COOKIE));
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.content_length(), Some(0));
        let cseq = m.cseq().unwrap();
        assert_eq!(cseq.method, sip::Method::Bye);
        let (from, to) = (m.from().unwrap(), m.to().unwrap());
        (
            s(m.request_line().unwrap().uri_raw),
            m.routes().map(|r| s(r.unwrap().uri_raw)).collect(),
            s(from.uri_raw),
            s(from.tag().unwrap()),
            s(to.uri_raw),
            s(to.tag().unwrap()),
            s(m.call_id().unwrap()),
            cseq.number,
        )
    }

    #[test]
    fn the_bye_to_the_callee_comes_as_if_from_the_caller() {
        let r = recipe(INVITE, &ok(FOUR_HOPS)).unwrap();
        let (ruri, routes, from, from_tag, to, to_tag, call_id, cseq) = fields(&bye(&r, Side::Callee));
        assert_eq!(ruri, "sip:pbx@198.51.100.10:5070");
        // The caller's route set is p1, edge, p2a, p2b: what follows the edge, in that order.
        assert_eq!(routes, ["sip:p2a.example;lr", "sip:p2b.example;lr"]);
        assert_eq!((from.as_str(), from_tag.as_str()), ("sip:+442079460000@192.0.2.7", "caller-a"));
        assert_eq!((to.as_str(), to_tag.as_str()), ("sip:+15551230000@203.0.113.1", "callee-b"));
        assert_eq!(call_id, "call-xyz@192.0.2.7");
        assert_eq!(cseq, 42, "the INVITE's CSeq + 1");
        assert!(
            bye(&r, Side::Callee).contains("From: \"Alice\" <sip:+442079460000@192.0.2.7>;tag=caller-a\r\n")
        );
    }

    #[test]
    fn the_bye_to_the_caller_comes_as_if_from_the_callee() {
        let r = recipe(INVITE, &ok(FOUR_HOPS)).unwrap();
        let (ruri, routes, from, from_tag, to, to_tag, call_id, cseq) = fields(&bye(&r, Side::Caller));
        assert_eq!(ruri, "sip:alice@192.0.2.7:5062;transport=udp");
        // The callee's route set is p2b, p2a, edge, p1: what follows the edge.
        assert_eq!(routes, ["sip:p1.example;lr"]);
        assert_eq!((from.as_str(), from_tag.as_str()), ("sip:+15551230000@203.0.113.1", "callee-b"));
        assert_eq!((to.as_str(), to_tag.as_str()), ("sip:+442079460000@192.0.2.7", "caller-a"));
        assert_eq!(call_id, "call-xyz@192.0.2.7");
        assert_eq!(cseq, 1, "the callee sent nothing yet: its first CSeq");
    }

    #[test]
    fn cseq_follows_the_highest_seen_from_each_side() {
        let mut r = recipe(INVITE, &ok(FOUR_HOPS)).unwrap();
        r.note_cseq(b"caller-a", 45);
        r.note_cseq(b"caller-a", 43);
        r.note_cseq(b"callee-b", 7);
        r.note_cseq(b"callee-b", 3);
        assert_eq!(fields(&bye(&r, Side::Callee)).7, 46);
        assert_eq!(fields(&bye(&r, Side::Caller)).7, 8);
        r.note_cseq(b"callee-b", (1 << 31) - 1);
        let mut out = vec![0u8; MAX_BYE_BYTES];
        assert!(r.write(Side::Caller, via(), &mut out).is_err(), "no CSeq left below 2^31");
    }

    #[test]
    fn without_record_route_both_route_sets_are_empty_and_only_our_entry_is_skipped() {
        let r = recipe(INVITE, &ok("")).unwrap();
        assert!(fields(&bye(&r, Side::Callee)).1.is_empty());
        assert!(fields(&bye(&r, Side::Caller)).1.is_empty());
        let r = recipe(INVITE, &ok("Record-Route: <sip:203.0.113.1:5060;lr>\r\n")).unwrap();
        assert!(!bye(&r, Side::Callee).contains("Route:"));
        assert!(!bye(&r, Side::Caller).contains("Route:"));
    }

    #[test]
    fn dialogs_beyond_the_caps_or_without_what_a_bye_needs_are_refused() {
        let others = "Record-Route: <sip:p2.example;lr>\r\n";
        assert_eq!(recipe(INVITE, &ok(others)).unwrap_err(), Unbuildable::NotRecordRouted);
        let many = format!("Record-Route: {}<sip:203.0.113.1:5060;lr>\r\n", "<sip:p.example;lr>, ".repeat(9));
        assert_eq!(recipe(INVITE, &ok(&many)).unwrap_err(), Unbuildable::TooManyRoutes);
        let long = INVITE.replace("alice@", &format!("{}@", "a".repeat(MAX_DIALOG_TEXT_BYTES)));
        assert_eq!(recipe(&long, &ok("")).unwrap_err(), Unbuildable::TooLong);
        let no_contact = INVITE.replace("Contact: <sip:alice@192.0.2.7:5062;transport=udp>\r\n", "");
        assert_eq!(recipe(&no_contact, &ok("")).unwrap_err(), Unbuildable::Header("INVITE Contact"));
        let folded = ok("").replace(">;tag=callee-b", ">\r\n ;tag=callee-b");
        assert_eq!(recipe(INVITE, &folded).unwrap_err(), Unbuildable::Folded);
        let mut out = vec![0u8; 16];
        let r = recipe(INVITE, &ok(FOUR_HOPS)).unwrap();
        assert!(matches!(r.write(Side::Callee, via(), &mut out), Err(WriteError::BufferTooSmall { .. })));
    }

    #[test]
    fn a_target_refresh_moves_the_request_uri_of_later_byes_and_nothing_else() {
        let mut r = recipe(INVITE, &ok(FOUR_HOPS)).unwrap();
        let (callee_before, caller_before) = (fields(&bye(&r, Side::Callee)), fields(&bye(&r, Side::Caller)));
        // A re-INVITE from the callee, answered by the caller: both Contacts new.
        r.refresh_targets(b"callee-b", Some(b"sip:pbx2@198.51.100.11:5080"), Some(b"sip:alice2@192.0.2.8"))
            .unwrap();
        let (callee, caller) = (fields(&bye(&r, Side::Callee)), fields(&bye(&r, Side::Caller)));
        assert_eq!(
            (callee.0.as_str(), caller.0.as_str()),
            ("sip:pbx2@198.51.100.11:5080", "sip:alice2@192.0.2.8")
        );
        assert_eq!(
            (callee.1, callee.2, callee.3, callee.7),
            (callee_before.1, callee_before.2, callee_before.3, 42)
        );
        assert_eq!(
            (caller.1, caller.4, caller.5, caller.6),
            (caller_before.1, caller_before.4, caller_before.5, caller_before.6)
        );
        // From the caller, without Contact in the answer: only the caller's moves.
        r.refresh_targets(b"caller-a", Some(b"sip:alice3@192.0.2.9"), None).unwrap();
        assert_eq!(fields(&bye(&r, Side::Caller)).0, "sip:alice3@192.0.2.9");
        assert_eq!(fields(&bye(&r, Side::Callee)).0, "sip:pbx2@198.51.100.11:5080");
        // Beyond the cap: refused, the recipe as it was.
        let long = format!("sip:{}@192.0.2.9", "x".repeat(MAX_DIALOG_TEXT_BYTES));
        assert_eq!(r.refresh_targets(b"caller-a", Some(long.as_bytes()), None), Err(Unbuildable::TooLong));
        assert_eq!(fields(&bye(&r, Side::Caller)).0, "sip:alice3@192.0.2.9");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any byte of the INVITE or the 2xx changed: the recipe is refused, or both BYEs are
        /// written within `MAX_BYE_BYTES` (or refused by the writer) and parse back.
        #[test]
        fn mutated_dialogs_give_a_parseable_bye_or_none(
            at in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
            in_ok in proptest::prelude::any::<bool>(),
        ) {
            let (mut invite, mut ok) = (INVITE.as_bytes().to_vec(), ok(FOUR_HOPS).into_bytes());
            let target = if in_ok { &mut ok } else { &mut invite };
            let at = at % target.len();
            target[at] = byte;
            let (mut i1, mut i2) = ([HeaderIndexEntry::EMPTY; MAX_HEADERS], [HeaderIndexEntry::EMPTY; MAX_HEADERS]);
            let (Ok(invite), Ok(ok)) = (sip::parse(&invite, &mut i1), sip::parse(&ok, &mut i2)) else {
                return Ok(());
            };
            let Ok(r) = ByeRecipe::new(&invite, &ok, is_us) else {
                return Ok(());
            };
            for side in [Side::Callee, Side::Caller] {
                let mut out = vec![0u8; MAX_BYE_BYTES];
                match r.write(side, via(), &mut out) {
                    Ok(n) => {
                        let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
                        let bye = sip::parse(&out[..n], &mut index);
                        proptest::prop_assert!(bye.is_ok(), "{}", String::from_utf8_lossy(&out[..n]));
                    }
                    Err(e) => proptest::prop_assert!(matches!(e, WriteError::Unsuitable(_)), "{e:?}"),
                }
            }
        }
    }
}
