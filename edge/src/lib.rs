//! sipedge data plane: the SIP parser and, as they land, routing, admission and the proxy.
pub mod filter;
pub mod guard;
pub mod io;
pub mod proxy;
pub mod route;
pub mod sip;
pub mod telemetry;
