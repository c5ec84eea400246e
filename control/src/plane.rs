//! The control plane's core: one writer connection, a few reader connections, the publisher.
//!
//! Writes are serialized on the writer: commit, then build and publish the new snapshot, all
//! under the writer's lock, so snapshots appear in version order. Reads use their own
//! connections (WAL lets them run during a write, even a million-row import). Everything here
//! blocks: async callers use `spawn_blocking`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyChange, Publisher};
use crate::store::{Committed, Store, StoreError, hash_token};

/// Reader connections (concurrent list/search/export requests).
pub const READER_CONNECTIONS: usize = 4;

/// The store, its publisher and the metrics, shared by the API handlers.
#[derive(Debug)]
pub struct ControlPlane {
    writer: Mutex<Store>,
    readers: Vec<Mutex<Store>>,
    next_reader: AtomicUsize,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
    /// The running configuration: its file-only sections go into snapshots and exports.
    base: Config,
    /// SHA-256 (hex) → token name.
    tokens: RwLock<HashMap<String, String>>,
    /// The data plane's live counts, once it has registered them.
    live: std::sync::OnceLock<Arc<dyn crate::live::LiveCalls>>,
}

/// What opening the control plane did on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The store was empty and was seeded from the configuration.
    pub seeded: bool,
    /// A first admin token was created (and written to the token file): show it once.
    pub admin_token: Option<String>,
}

fn lock(m: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A panic inside a store call drops its transaction (rolled back): the connection is sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ControlPlane {
    /// Opens the store at `config.control.db`, seeds it from `config` when empty, creates the
    /// first admin token when there is none, and publishes the initial snapshot.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<(Self, Opened), StoreError> {
        let db = &config.control.db;
        let mut writer = Store::open(db)?;
        let seeded = writer.seed_if_empty(config)?;
        let admin_token = writer.bootstrap_admin_token(&crate::store::token_file_for(db))?;
        let readers =
            (0..READER_CONNECTIONS).map(|_| Store::open(db).map(Mutex::new)).collect::<Result<_, _>>()?;
        let policy = writer.load_policy(config)?;
        metrics.policy_version.set(i64::try_from(policy.version).unwrap_or(i64::MAX));
        let tokens = writer.token_hashes()?.into_iter().collect();
        let plane = Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            publisher: Arc::new(Publisher::new(policy, db.clone())),
            metrics,
            base: config.clone(),
            tokens: RwLock::new(tokens),
            live: std::sync::OnceLock::new(),
        };
        Ok((plane, Opened { seeded, admin_token }))
    }

    /// Registers the data plane's live counts (the first registration wins).
    pub fn set_live_calls(&self, live: Arc<dyn crate::live::LiveCalls>) {
        let _ = self.live.set(live);
    }

    /// The data plane's live counts, if registered.
    pub fn live_calls(&self) -> Option<&Arc<dyn crate::live::LiveCalls>> {
        self.live.get()
    }

    /// The publisher the data plane subscribes to.
    pub fn publisher(&self) -> &Arc<Publisher> {
        &self.publisher
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The running configuration (file-only sections for exports).
    pub fn base(&self) -> &Config {
        &self.base
    }

    /// The path of the database.
    pub fn db(&self) -> &Path {
        &self.base.control.db
    }

    /// The name of the token, when it is valid.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        let hash = hash_token(token);
        self.tokens.read().unwrap_or_else(PoisonError::into_inner).get(&hash).cloned()
    }

    /// Creates an API token; returns it (shown once).
    pub fn create_token(&self, actor: &str, name: &str) -> Result<String, StoreError> {
        let mut w = lock(&self.writer);
        let token = w.create_token(actor, name)?;
        let hashes = w.token_hashes()?;
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = hashes.into_iter().collect();
        Ok(token)
    }

    /// Runs a read on a free reader connection.
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        for r in &self.readers {
            if let Ok(guard) = r.try_lock() {
                return f(&guard);
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        match self.readers.get(i) {
            Some(r) => f(&lock(r)),
            None => f(&lock(&self.writer)),
        }
    }

    /// Runs a write on the writer, then publishes the change; returns `f`'s value.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<(T, Committed), StoreError>,
    ) -> Result<T, StoreError> {
        let mut w = lock(&self.writer);
        let (value, committed) = f(&mut w)?;
        self.publish(&w, committed, Instant::now())?;
        Ok(value)
    }

    /// Like [`Self::write`] for store calls that return only the commit.
    pub fn write_only(
        &self,
        f: impl FnOnce(&mut Store) -> Result<Committed, StoreError>,
    ) -> Result<u64, StoreError> {
        self.write(|s| f(s).map(|c| (c.version, c)))
    }

    /// Builds and swaps in the snapshot of a commit; `committed_at` is when the commit returned.
    fn publish(&self, store: &Store, committed: Committed, committed_at: Instant) -> Result<(), StoreError> {
        let Committed { version, change } = committed;
        let policy = match change {
            PolicyChange::Admission | PolicyChange::Rebuild => store.load_policy(&self.base)?,
            _ => Policy { version, ..(*self.publisher.current()).clone() },
        };
        self.publisher.publish(policy, change);
        self.metrics.policy_version.set(i64::try_from(version).unwrap_or(i64::MAX));
        self.metrics.policy_publish.observe(committed_at.elapsed().as_secs_f64());
        Ok(())
    }
}
