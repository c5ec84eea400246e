//! Operator commands of the `sipedge` binary, one module each.

pub(crate) mod ctl;
pub(crate) mod did;
pub(crate) mod sip_lint;
pub(crate) mod xdp;
