//! The transaction-stateful proxy (RFC 3261 §16–17). Its core does no I/O and reads no clock:
//! events and `now` go in, actions come out, so every timer is tested on virtual time.

pub mod branch;
pub mod client_tx;
pub mod dialog;
pub mod dialog_bye;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod failover;
mod malformed;
pub mod server_tx;
pub mod stats;
pub mod table;
pub mod timers;
pub mod worker;

pub use client_tx::{ClientAction, InviteClient, InviteClientState, NonInviteClient, NonInviteClientState};
pub use engine::{Engine, EngineConfig, ProxyCounters, Sink, WorkerState};
pub use failover::{BranchEnd, Decision, ResponseContext, fails_over};
pub use server_tx::{InviteServer, InviteServerState, NonInviteServer, NonInviteServerState, ServerAction};
pub use timers::TimerConfig;
pub use worker::EdgeWorker;
