//! Operator subcommands of the `sipedge` binary, one module each.

pub(crate) mod xdp;
