//! Starting the control plane inside `sipedge run`: open the store, seed it, create the first
//! admin token, and serve the API on a tokio runtime of its own thread.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::api::{AppState, router};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plane::ControlPlane;
use crate::policy::Publisher;
use crate::store::{StoreError, token_file_for};

/// Worker threads of the API runtime (SQLite work runs on its blocking pool).
pub const API_WORKER_THREADS: usize = 2;

/// Why the control plane could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store could not be opened, seeded or given its first token.
    #[error("store {path}: {source}")]
    Store {
        /// The database.
        path: std::path::PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The API address could not be bound.
    #[error("API address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime or the server failed.
    #[error("API server: {0}")]
    Server(std::io::Error),
    /// The API thread panicked.
    #[error("the API thread panicked")]
    Panicked,
}

/// A running control plane. Dropping it stops the API.
#[derive(Debug)]
pub struct ControlHandle {
    /// The bound API address (useful with port 0).
    pub addr: SocketAddr,
    /// The first admin token, when this start created it: show it once.
    pub admin_token: Option<String>,
    /// Where the admin token file is.
    pub token_file: std::path::PathBuf,
    /// The store was empty and was seeded from the configuration.
    pub seeded: bool,
    plane: Arc<ControlPlane>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
}

impl ControlHandle {
    /// Policy snapshots and change events for the data plane.
    pub fn publisher(&self) -> Arc<Publisher> {
        self.plane.publisher().clone()
    }

    /// Registers the data plane's live call counts for the API (`active_calls` fields).
    pub fn set_live_calls(&self, live: Arc<dyn crate::live::LiveCalls>) {
        self.plane.set_live_calls(live);
    }

    /// The metrics registry the data plane increments.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.plane.metrics().clone()
    }

    /// Blocks until the API stops (it runs until shut down or failed).
    pub fn wait(mut self) -> Result<(), ServeError> {
        self.join()
    }

    /// Stops the API and waits for it.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    fn join(&mut self) -> Result<(), ServeError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.join();
    }
}

/// Opens the store at `[control] db` (seeding it from `config` when empty, creating the admin
/// token file `<db>.token` on first start) and serves the API on `[control] api`.
pub fn serve(config: &Config) -> Result<ControlHandle, ServeError> {
    let metrics = Arc::new(Metrics::new());
    let db = config.control.db.clone();
    let (plane, opened) = ControlPlane::open(config, metrics)
        .map_err(|source| ServeError::Store { path: db.clone(), source })?;
    let plane = Arc::new(plane);
    let addr = config.control.api;
    let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| ServeError::Bind { addr, source })?;
    let (tx, rx) = oneshot::channel();
    let app = router(AppState::new(plane.clone()));
    let thread = std::thread::Builder::new()
        .name("sipedge-api".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(API_WORKER_THREADS)
                .thread_name("sipedge-api")
                .enable_all()
                .build()
                .map_err(ServeError::Server)?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Server)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
                    .map_err(ServeError::Server)
            })
        })
        .map_err(ServeError::Server)?;
    tracing::info!(api = %bound, db = %db.display(), seeded = opened.seeded, "control plane up");
    Ok(ControlHandle {
        addr: bound,
        admin_token: opened.admin_token,
        token_file: token_file_for(&db),
        seeded: opened.seeded,
        plane,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}
