//! Active calls: an INVITE answered 2xx is a dialog until BYE, until its maximum duration, or,
//! when the 2xx negotiated a session timer (RFC 4028), until its session interval passes
//! without a refresh (a re-INVITE or UPDATE answered 2xx): then its slots go back even though
//! no BYE came (a UA that crashed, a link that broke), not hours later.
//!
//! Dialogs are shared by every worker (a BYE may arrive on any of them), in shards each behind
//! its own short-held mutex; one call's bookkeeping never waits on I/O. Counts per trunk are
//! exact: a dialog is counted once when it is confirmed and uncounted once when it ends, however
//! many 2xx retransmissions or BYEs arrive.
//!
//! The CSeq of a request within an early dialog (a PRACK or UPDATE before the 2xx) is kept
//! apart, by Call-ID and the sender's and receiver's tags, until the 2xx confirms the dialog
//! and takes it into its BYE recipe: a BYE at maximum duration must carry a CSeq above every
//! one the other side has seen (RFC 3261 §12.2.1.1).

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::dialog_bye::ByeRecipe;
use super::table::{Handle, Key, Table};
use crate::guard::CallHold;

/// Shards of the dialog table (a power of two).
const SHARDS: usize = 16;
/// Shortest session interval honoured (RFC 4028 §4's minimum Min-SE): a shorter one counts as
/// this.
pub const MIN_SESSION_INTERVAL: Duration = Duration::from_secs(90);
/// How long the CSeq of a request within an early dialog waits for the dialog's 2xx: longer
/// than a proxy's Timer C (more than 3 minutes, RFC 3261 §16.6 step 11).
pub const EARLY_CSEQ_KEEP: Duration = Duration::from_secs(300);
/// Early CSeqs forgotten per [`Dialogs::expire`] at most.
const EARLY_CSEQ_EXPIRY_PER_CALL: usize = 1024;
/// [`Key`] kind of a dialog identity, in either tag order.
const KEY_DIALOG: u8 = 0;
/// [`Key`] kind of an early request's direction: Call-ID, sender's tag, receiver's tag.
const KEY_EARLY: u8 = 1;

/// Identity of a dialog: Call-ID and the two tags, in either order (a BYE from the callee
/// carries them swapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogId<'a> {
    /// Call-ID.
    pub call_id: &'a [u8],
    /// One tag (From tag of the INVITE).
    pub tag_a: &'a [u8],
    /// The other (To tag of the 2xx).
    pub tag_b: &'a [u8],
}

/// What the edge keeps per call.
#[derive(Debug)]
pub struct Dialog {
    /// The call's slots on the trunk that offered it and on its DID, given back when the dialog
    /// ends (dropped).
    pub hold: CallHold,
    /// The called DID as its E.164 key (0: an emergency call).
    pub did: u64,
    /// When the 2xx went through.
    pub started: Instant,
    /// The caller's side (where the INVITE came from).
    pub caller: SocketAddr,
    /// The callee's side (the target URI that answered).
    pub callee: SocketAddr,
    /// The listen socket the call runs on.
    pub listen: usize,
    /// The session interval the 2xx negotiated (RFC 4028 Session-Expires), if any: the call
    /// ends when it passes without a refresh.
    pub session: Option<Duration>,
    /// How to end the call with BYEs at its maximum duration; `None` when its headers did not
    /// fit (the call still counts and expires, without BYE).
    pub bye: Option<ByeRecipe>,
}

/// The two sides of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parties {
    /// Where the INVITE came from.
    pub caller: SocketAddr,
    /// The target URI that answered.
    pub callee: SocketAddr,
}

/// The shared table of active dialogs.
#[derive(Debug)]
pub struct Dialogs {
    shards: Vec<Mutex<Table<Dialog>>>,
    /// Highest CSeq of the requests within early dialogs, by direction, until the 2xx.
    early: Vec<Mutex<Table<u32>>>,
    hasher: [std::hash::RandomState; 2],
    max_duration: Duration,
}

/// Result of confirming a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// A new active call.
    New,
    /// Already active (a 2xx retransmission).
    Known,
    /// The table is full: the call proceeds but is not tracked (counted by the table).
    Full,
}

impl Dialogs {
    /// A table for at most about `capacity` dialogs, each ended after `max_duration`.
    pub fn new(capacity: u32, max_duration: Duration) -> Self {
        let per_shard = capacity / SHARDS as u32 + capacity / (SHARDS as u32 * 4) + 16;
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::with_capacity(per_shard))).collect(),
            early: (0..SHARDS).map(|_| Mutex::new(Table::with_capacity(per_shard))).collect(),
            hasher: [std::hash::RandomState::new(), std::hash::RandomState::new()],
            max_duration,
        }
    }

    /// A 128-bit keyed digest of the dialog identity, independent of tag order.
    fn key(&self, id: &DialogId<'_>) -> (usize, Key) {
        let (lo, hi) = if id.tag_a <= id.tag_b { (id.tag_a, id.tag_b) } else { (id.tag_b, id.tag_a) };
        self.digest(KEY_DIALOG, id.call_id, lo, hi)
    }

    /// A 128-bit keyed digest of one direction of a dialog: `id.tag_a` the sender's tag.
    fn early_key(&self, id: &DialogId<'_>) -> (usize, Key) {
        self.digest(KEY_EARLY, id.call_id, id.tag_a, id.tag_b)
    }

    fn digest(&self, kind: u8, call_id: &[u8], lo: &[u8], hi: &[u8]) -> (usize, Key) {
        let mut digest = [0u8; 16];
        for (i, state) in self.hasher.iter().enumerate() {
            let mut h = state.build_hasher();
            h.write(call_id);
            h.write_u8(0);
            h.write(lo);
            h.write_u8(0);
            h.write(hi);
            digest[i * 8..i * 8 + 8].copy_from_slice(&h.finish().to_le_bytes());
        }
        let shard = usize::from(digest[0]) % SHARDS;
        (shard, Key::new(kind, &digest).unwrap_or_else(|| unreachable!("16 bytes fit a key")))
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Table<Dialog>> {
        // A poisoned shard only means another worker panicked mid-update of plain data.
        self.shards[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn early_shard(&self, i: usize) -> std::sync::MutexGuard<'_, Table<u32>> {
        self.early[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request within a dialog went through: `id.tag_a` is its sender's tag (From),
    /// `id.tag_b` the receiver's (To). Its CSeq goes into the active dialog's BYE recipe, or,
    /// while the dialog is early, is kept for the 2xx (for [`EARLY_CSEQ_KEEP`]; when the early
    /// table is full it is not kept, and a BYE at maximum duration may carry a CSeq that side
    /// has seen).
    pub fn note_cseq(&self, now: Instant, id: &DialogId<'_>, number: u32) {
        let (shard, key) = self.key(id);
        {
            let mut t = self.shard(shard);
            if let Some(h) = t.find(&key) {
                if let Some(recipe) = t.get_mut(h).and_then(|d| d.bye.as_mut()) {
                    recipe.note_cseq(id.tag_a, number);
                }
                return;
            }
        }
        let (shard, key) = self.early_key(id);
        let mut t = self.early_shard(shard);
        if let Some(h) = t.find(&key) {
            if let Some(highest) = t.get_mut(h) {
                *highest = (*highest).max(number);
            }
        } else if let Ok(h) = t.insert(key, number) {
            t.set_deadline(h, Some(now + EARLY_CSEQ_KEEP));
        }
    }

    /// The highest CSeq kept of the early requests from `id.tag_a` to `id.tag_b`, removed.
    fn take_early_cseq(&self, id: &DialogId<'_>) -> Option<u32> {
        let (shard, key) = self.early_key(id);
        let mut t = self.early_shard(shard);
        let h = t.find(&key)?;
        t.remove(h).map(|(_, n)| n)
    }

    /// When a dialog ends unless refreshed first: its maximum duration from its start, or
    /// sooner its session interval from `now`.
    fn deadline(&self, now: Instant, dialog: &Dialog) -> Instant {
        let at_most = dialog.started + self.max_duration;
        match dialog.session {
            Some(interval) => at_most.min(now + interval.max(MIN_SESSION_INTERVAL)),
            None => at_most,
        }
    }

    /// A session refresh was answered 2xx (`session`: the interval it carries; `None`: the
    /// session timer is off from now on, RFC 4028 §9): the call's deadline moves.
    pub fn refresh_session(&self, now: Instant, id: &DialogId<'_>, session: Option<Duration>) {
        let (shard, key) = self.key(id);
        let mut t = self.shard(shard);
        let Some(h) = t.find(&key) else { return };
        let Some(dialog) = t.get_mut(h) else { return };
        dialog.session = session;
        let deadline = self.deadline(now, dialog);
        t.set_deadline(h, Some(deadline));
    }

    /// True when `dialog`, expired at `now`, ended by its maximum duration rather than by its
    /// session interval.
    pub fn past_maximum(&self, now: Instant, dialog: &Dialog) -> bool {
        now >= dialog.started + self.max_duration
    }

    /// A 2xx to an INVITE went upstream. Unless the dialog is [`Confirm::New`], it is dropped
    /// (and with it its hold).
    pub fn confirm(&self, now: Instant, id: &DialogId<'_>, mut dialog: Dialog) -> Confirm {
        if let Some(recipe) = dialog.bye.as_mut() {
            for (from, to) in [(id.tag_a, id.tag_b), (id.tag_b, id.tag_a)] {
                let direction = DialogId { call_id: id.call_id, tag_a: from, tag_b: to };
                if let Some(number) = self.take_early_cseq(&direction) {
                    recipe.note_cseq(from, number);
                }
            }
        }
        let (shard, key) = self.key(id);
        let mut t = self.shard(shard);
        if t.find(&key).is_some() {
            return Confirm::Known;
        }
        let deadline = self.deadline(now, &dialog);
        match t.insert(key, dialog) {
            Ok(h) => {
                t.set_deadline(h, Some(deadline));
                Confirm::New
            }
            Err(_) => Confirm::Full,
        }
    }

    /// The sides of the active dialog with this identity.
    pub fn parties(&self, id: &DialogId<'_>) -> Option<Parties> {
        let (shard, key) = self.key(id);
        let mut t = self.shard(shard);
        let h = t.find(&key)?;
        t.get_mut(h).map(|d| Parties { caller: d.caller, callee: d.callee })
    }

    /// Updates the BYE recipe of the active dialog with this identity, if it has one (a request
    /// within the dialog went through: its CSeq, a target refresh).
    pub fn update_recipe<R>(&self, id: &DialogId<'_>, update: impl FnOnce(&mut ByeRecipe) -> R) -> Option<R> {
        let (shard, key) = self.key(id);
        let mut t = self.shard(shard);
        let h = t.find(&key)?;
        t.get_mut(h).and_then(|d| d.bye.as_mut()).map(update)
    }

    /// A BYE's final response went through (or the dialog failed): the call ends. Returns the
    /// dialog the first time only.
    pub fn end(&self, id: &DialogId<'_>) -> Option<Dialog> {
        let (shard, key) = self.key(id);
        let mut t = self.shard(shard);
        let h: Handle = t.find(&key)?;
        t.remove(h).map(|(_, d)| d)
    }

    /// Ends dialogs past their maximum duration, calling `ended` for each (at most `limit`),
    /// and forgets early CSeqs past [`EARLY_CSEQ_KEEP`] (at most [`EARLY_CSEQ_EXPIRY_PER_CALL`]).
    pub fn expire(&self, now: Instant, limit: usize, mut ended: impl FnMut(Dialog)) -> usize {
        let mut forgotten = 0;
        for shard in 0..SHARDS {
            let mut t = self.early_shard(shard);
            while forgotten < EARLY_CSEQ_EXPIRY_PER_CALL {
                let Some(h) = t.pop_due(now) else { break };
                t.remove(h);
                forgotten += 1;
            }
        }
        let mut n = 0;
        for shard in 0..SHARDS {
            let mut t = self.shard(shard);
            while n < limit {
                let Some(h) = t.pop_due(now) else { break };
                if let Some((_, d)) = t.remove(h) {
                    ended(d);
                    n += 1;
                }
            }
        }
        n
    }

    /// Active dialogs.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.shard(i).len()).sum()
    }

    /// True when no call is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::guard::Guard;

    fn guard() -> Arc<Guard> {
        let config =
            "[[trunk]]\nname = \"t\"\nsources = [\"127.0.0.1/32\"]\nmax_calls = 100000\ncps = 100000\n";
        Guard::from_config(&control::config::Config::from_toml(config).unwrap()).unwrap()
    }

    fn call(guard: &Guard, did: u64, started: Instant) -> Dialog {
        let caller = "127.0.0.1:5070".parse().unwrap();
        let callee = "127.0.0.1:5080".parse().unwrap();
        Dialog {
            hold: guard.admit_call(0).unwrap(),
            did,
            started,
            caller,
            callee,
            listen: 0,
            session: None,
            bye: None,
        }
    }

    fn id<'a>(c: &'a str, a: &'a str, b: &'a str) -> DialogId<'a> {
        DialogId { call_id: c.as_bytes(), tag_a: a.as_bytes(), tag_b: b.as_bytes() }
    }

    #[test]
    fn confirm_once_end_from_either_side_once() {
        let t0 = Instant::now();
        let d = Dialogs::new(100, Duration::from_secs(3600));
        let g = guard();
        assert_eq!(d.confirm(t0, &id("c1", "from", "to"), call(&g, 15551230000, t0)), Confirm::New);
        assert_eq!(d.confirm(t0, &id("c1", "from", "to"), call(&g, 15551230000, t0)), Confirm::Known);
        assert_eq!(d.len(), 1);
        assert_eq!(g.trunks()[0].limits.active(), 1, "the duplicate's hold went back");
        let parties = d.parties(&id("c1", "to", "from")).unwrap();
        assert_eq!(parties.callee, "127.0.0.1:5080".parse().unwrap());
        // The callee's BYE carries the tags the other way round.
        assert_eq!(d.end(&id("c1", "to", "from")).map(|c| c.did), Some(15551230000));
        assert!(d.end(&id("c1", "from", "to")).is_none(), "never counted down twice");
        assert!(d.is_empty());
        assert_eq!(g.trunks()[0].limits.active(), 0);
    }

    #[test]
    fn distinct_calls_stay_apart() {
        let t0 = Instant::now();
        let d = Dialogs::new(100, Duration::from_secs(3600));
        let g = guard();
        assert_eq!(d.confirm(t0, &id("c1", "a", "b"), call(&g, 1, t0)), Confirm::New);
        assert_eq!(d.confirm(t0, &id("c2", "a", "b"), call(&g, 1, t0)), Confirm::New);
        assert_eq!(d.confirm(t0, &id("c1", "a", "bb"), call(&g, 1, t0)), Confirm::New);
        assert_eq!(
            d.confirm(t0, &id("c1", "ab", ""), call(&g, 1, t0)),
            Confirm::New,
            "tag boundaries matter"
        );
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn maximum_duration_ends_calls_on_virtual_time() {
        let t0 = Instant::now();
        let d = Dialogs::new(100, Duration::from_secs(60));
        let g = guard();
        d.confirm(t0, &id("c1", "a", "b"), call(&g, 7, t0));
        let t30 = t0 + Duration::from_secs(30);
        d.confirm(t30, &id("c2", "a", "b"), call(&g, 7, t30));
        let mut ended = Vec::new();
        assert_eq!(d.expire(t0 + Duration::from_secs(59), 10, |x| ended.push(x)), 0);
        assert_eq!(d.expire(t0 + Duration::from_secs(61), 10, |x| ended.push(x)), 1);
        assert_eq!(d.len(), 1);
        assert!(d.end(&id("c1", "a", "b")).is_none(), "an expired call cannot end twice");
    }

    #[test]
    fn early_cseqs_are_kept_by_direction_until_taken_or_expired() {
        let t0 = Instant::now();
        let d = Dialogs::new(100, Duration::from_secs(3600));
        d.note_cseq(t0, &id("c1", "caller", "callee"), 2);
        d.note_cseq(t0, &id("c1", "caller", "callee"), 4);
        d.note_cseq(t0, &id("c1", "caller", "callee"), 3);
        d.note_cseq(t0, &id("c1", "callee", "caller"), 9);
        assert_eq!(d.take_early_cseq(&id("c1", "caller", "callee")), Some(4), "the highest");
        assert_eq!(d.take_early_cseq(&id("c1", "caller", "callee")), None, "taken once");
        assert_eq!(d.take_early_cseq(&id("c2", "callee", "caller")), None, "another call");
        assert_eq!(d.expire(t0 + EARLY_CSEQ_KEEP - Duration::from_secs(1), 10, drop), 0);
        assert_eq!(d.take_early_cseq(&id("c1", "callee", "caller")), Some(9));
        d.note_cseq(t0, &id("c3", "a", "b"), 5);
        d.expire(t0 + EARLY_CSEQ_KEEP, 10, drop);
        assert_eq!(d.take_early_cseq(&id("c3", "a", "b")), None, "forgotten after EARLY_CSEQ_KEEP");
    }

    #[test]
    fn a_full_table_refuses_without_growing() {
        let t0 = Instant::now();
        let d = Dialogs::new(0, Duration::from_secs(60));
        let g = guard();
        let results: Vec<Confirm> =
            (0..2000).map(|i| d.confirm(t0, &id(&i.to_string(), "a", "b"), call(&g, 1, t0))).collect();
        assert!(results.contains(&Confirm::Full));
        assert!(d.len() <= 16 * 16);
    }
}
