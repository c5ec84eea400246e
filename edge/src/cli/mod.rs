//! Operator commands of the `sipedge` binary, one module each.

pub(crate) mod sip_lint;
pub(crate) mod did;
