//! sipedge data plane: the SIP parser and, as they land, routing, admission and the proxy.

pub mod route;
