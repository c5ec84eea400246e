//! sipedge control plane: the configuration model and its validation, the SQLite store, policy
//! snapshots for the data plane, the REST API and the metrics registry.

pub mod api;
pub mod config;
pub mod live;
pub mod metrics;
pub mod plane;
pub mod policy;
pub mod server;
pub mod store;

pub use server::{ControlHandle, ServeError, serve};

#[cfg(test)]
mod testutil;
