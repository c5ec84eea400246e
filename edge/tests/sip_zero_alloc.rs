//! Proves that parsing, every accessor, validation and every writer function make no heap
//! allocation, with a global allocator that counts the allocations of the measuring thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use edge::sip::{self, ForwardOptions, HeaderIndexEntry, MAX_HEADERS, RecordRouteSpec, SipMessage, ViaSpec};

/// Counts allocations made by threads that armed it; forwards everything to the system allocator.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-local storage may be gone while a thread exits.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the GlobalAlloc contract;
// the counting touches only const-initialised thread-locals and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout, per the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

const CARRIER_INVITE: &[u8] = include_bytes!("../../bench/corpus/invite-carrier.sip");
const OK_200: &[u8] = include_bytes!("../../bench/corpus/ok-200.sip");

/// Reads every field the proxy and router use; returns something so nothing is optimised away.
fn read_everything(m: &SipMessage<'_>) -> usize {
    let mut n = m.request_uri().and_then(|u| u.user()).map_or(0, <[u8]>::len);
    n += m.top_via().ok().and_then(|v| v.branch()).map_or(0, <[u8]>::len);
    n += m.vias().filter_map(Result::ok).count();
    n += m.call_id().map_or(0, <[u8]>::len);
    n += m.cseq().map_or(0, |c| c.number as usize);
    n += m.from().ok().and_then(|f| f.tag()).map_or(0, <[u8]>::len);
    n += m.to().ok().and_then(|t| t.tag()).map_or(0, <[u8]>::len);
    n += m.max_forwards().ok().flatten().map_or(0, usize::from);
    n += m.contacts().count() + m.routes().count() + m.record_routes().count();
    n += m.p_asserted_identities().count();
    n += m.identity().map_or(0, <[u8]>::len) + m.user_agent().map_or(0, <[u8]>::len);
    n += m.session_expires().ok().flatten().map_or(0, |s| s.seconds as usize);
    n += m.headers().count() + m.body().len();
    n += usize::from(m.validate().is_ok());
    n
}

#[test]
fn parsing_reading_and_writing_allocate_nothing() {
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let mut index2 = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let mut out = [0u8; 4096];
    let mut total = 0;
    let opts = ForwardOptions {
        via: ViaSpec { transport: "UDP", host: "192.0.2.1", port: 5060, branch: "z9hG4bKedge", rport: true },
        request_uri: Some(b"sip:+15551234567@10.0.0.10:5060;user=phone"),
        pop_route: false,
        record_route: Some(RecordRouteSpec { host: "192.0.2.1", port: 5060 }),
    };
    let n = allocations(|| {
        let invite = sip::parse(CARRIER_INVITE, &mut index).expect("INVITE parses");
        total += read_everything(&invite);
        total += sip::forward_request(&invite, &opts, &mut out).expect("forward");
        total += sip::response_from_request(&invite, 100, "Trying", None, &[], &mut out).expect("100");
        total += sip::response_from_request(
            &invite,
            503,
            "Service Unavailable",
            Some("e1"),
            &["Retry-After: 5"],
            &mut out,
        )
        .expect("503");
        total += sip::build_cancel(&invite, &mut out).expect("CANCEL");
        let ok = sip::parse(OK_200, &mut index2).expect("200 parses");
        total += read_everything(&ok);
        total += sip::strip_top_via(&ok, &mut out).expect("strip Via");
    });
    assert!(total > 0);
    assert_eq!(n, 0, "heap allocations per message");
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations(|| drop(std::hint::black_box(vec![1u8; 16])));
    assert_eq!(n, 1);
}
