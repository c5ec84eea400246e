//! Operator commands of the `sipedge` binary.

pub(crate) mod ctl;
