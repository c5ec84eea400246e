//! sipedge control plane: the configuration model and its validation.

pub mod config;
