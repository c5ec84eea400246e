//! Live DID changes from the control plane: one DID upserted or removed in the running table
//! while lookups go on; a bulk change loaded aside and swapped in whole. Calls in progress keep
//! the route they were given.
//!
//! Trunk, limit, target and number-block changes (`Admission`) are not yet applied live: they
//! are logged and take effect at the next start.

use std::sync::Arc;

use control::config::Config;
use control::policy::{PolicyChange, PolicyEvent, Publisher};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::{BuildError, DidMeta, DidTableBuilder, E164, Router, insert_config_dids};

/// Why the routed DIDs could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The store could not be read.
    #[error("reading the routed DIDs: {0}")]
    Store(String),
    /// A stored DID does not fit the running router (e.g. a target it does not know).
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Loads every routed DID of the store into a new table, built aside, and swaps it in.
/// Returns the store version it reflects.
pub fn reload_dids(router: &Router, publisher: &Publisher, base: &Config) -> Result<u64, LiveError> {
    let routed = publisher.routed_dids().map_err(|e| LiveError::Store(e.to_string()))?;
    let mut config = base.clone();
    config.dids =
        routed.dids.into_iter().map(|(number, target)| control::config::Did::new(number, target)).collect();
    let mut builder = DidTableBuilder::with_capacity(config.dids.len());
    insert_config_dids(&config, router.targets(), &mut builder)?;
    router.replace_table(Arc::new(builder.build()));
    Ok(routed.version)
}

/// Applies one event; `loaded` is the version the table reflects (older events are skipped).
pub fn apply(router: &Router, publisher: &Publisher, base: &Config, loaded: &mut u64, event: &PolicyEvent) {
    if event.version <= *loaded {
        return;
    }
    match &event.change {
        PolicyChange::Did { number, target } => {
            let Some(n) = E164::parse_plus(number) else {
                tracing::warn!(%number, "live change: not an E.164 number");
                return;
            };
            match target.as_deref().map(|t| (t, router.targets().id(t))) {
                Some((_, Some(set))) => {
                    if let Err(e) = router.table().upsert(n, set, None, &DidMeta::default()) {
                        tracing::warn!(%number, error = %e, "live change: DID not applied");
                    }
                }
                Some((t, None)) => {
                    tracing::warn!(%number, target = t, "live change: unknown target, restart to apply")
                }
                None => {
                    router.table().remove(n);
                }
            }
            *loaded = event.version;
        }
        PolicyChange::Dids | PolicyChange::Rebuild => match reload_dids(router, publisher, base) {
            Ok(version) => *loaded = version,
            Err(e) => tracing::error!(error = %e, "live change: DIDs not reloaded"),
        },
        PolicyChange::Admission => {
            tracing::warn!(
                version = event.version,
                "trunk/target/limit change stored: it applies at the next start"
            );
        }
        PolicyChange::None => *loaded = event.version,
        other => tracing::warn!(?other, "live change of a kind this build does not know: restart to apply"),
    }
}

/// Follows the control plane's events until it closes, applying each to `router`.
/// `events` must have been subscribed before the table was loaded at `loaded`.
pub fn follow(
    router: &Router,
    publisher: &Publisher,
    base: &Config,
    mut loaded: u64,
    mut events: Receiver<PolicyEvent>,
) {
    loop {
        match events.blocking_recv() {
            Ok(event) => apply(router, publisher, base, &mut loaded, &event),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "live changes lagged: reloading every DID");
                match reload_dids(router, publisher, base) {
                    Ok(version) => loaded = version,
                    Err(e) => tracing::error!(error = %e, "live change: DIDs not reloaded"),
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
