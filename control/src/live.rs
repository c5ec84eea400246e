//! What the running data plane tells the API about calls in progress. The data plane registers
//! an implementation at start ([`crate::ControlHandle::set_live_calls`]); without one (the API
//! alone, in tests) the live fields are absent from answers.

/// Live call counts, read by the API.
pub trait LiveCalls: Send + Sync + std::fmt::Debug {
    /// Calls in progress to a DID (`+` and digits); `None` when `number` is not E.164.
    fn did_active_calls(&self, number: &str) -> Option<u32>;
    /// Calls in progress in all.
    fn active_calls(&self) -> u64;
}
