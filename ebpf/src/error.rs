//! Errors of the loader, typed by what failed.

use std::path::PathBuf;

use crate::policy::PolicyError;

/// What went wrong loading, attaching, or talking to the XDP filter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused the object (verifier, BTF, map creation); `source` says why.
    #[error("loading the XDP object")]
    Load(#[source] Box<aya::EbpfError>),
    /// The object lacks a map or program the loader expects (a stale or foreign object).
    #[error("the XDP object has no {kind} named {name}")]
    Missing {
        /// `map` or `program`.
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A map operation failed.
    #[error("map {name}")]
    Map {
        /// The map.
        name: &'static str,
        /// Why.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// Loading the program into the kernel or running it failed.
    #[error("XDP program")]
    Program(#[source] Box<aya::programs::ProgramError>),
    /// Neither native nor generic attach worked.
    #[error("attaching to {interface} (native: {native}; skb)")]
    Attach {
        /// The interface.
        interface: String,
        /// The native-mode failure, as text (the skb failure is the source).
        native: String,
        /// The skb-mode failure.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Pinning or opening a pin failed.
    #[error("bpffs pin {path}")]
    Pin {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No filter is pinned for this interface.
    #[error("no sipedge XDP filter is attached to {interface} (nothing at {path})")]
    NotAttached {
        /// The interface.
        interface: String,
        /// Where its pins would be.
        path: PathBuf,
    },
    /// More allow-listed plus blocked prefixes than the source trie holds.
    #[error("more than {max} allow-listed and blocked {family} prefixes")]
    TooManyPrefixes {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The trie's size.
        max: usize,
    },
    /// The interface name cannot be a bpffs folder name.
    #[error("invalid interface name {0:?}")]
    InterfaceName(String),
    /// The policy is out of range.
    #[error("XDP policy")]
    Policy(#[from] PolicyError),
}

impl Error {
    pub(crate) fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
        move |e| Error::Map { name, source: Box::new(e) }
    }

    pub(crate) fn pin(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Pin { path, source }
    }
}

impl From<aya::programs::ProgramError> for Error {
    fn from(e: aya::programs::ProgramError) -> Self {
        Error::Program(Box::new(e))
    }
}

impl From<aya::EbpfError> for Error {
    fn from(e: aya::EbpfError) -> Self {
        Error::Load(Box::new(e))
    }
}
