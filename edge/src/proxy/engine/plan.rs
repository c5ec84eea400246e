//! Generations of admission and routing state. A policy change (trunks, sources, limits,
//! targets, number blocks) builds the next [`Plan`] aside and swaps it in whole; every datagram
//! loads the current one once (wait-free, no lock). A call keeps the plan it was admitted by: its
//! failover, CANCEL and ACK go where that plan said, and its trunk slot goes back through the
//! hold it took, so no change reroutes or drops a call in progress.

use super::*;
use crate::route::UriId;

/// One generation: admission, routing and what the engine derives from the targets. Immutable.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) guard: Arc<Guard>,
    pub(super) router: Arc<Router>,
    /// Socket address of each target URI (by `UriId` index); `None` when not an IP literal.
    uri_addrs: Box<[Option<SocketAddr>]>,
    /// Addresses of every target: in-dialog requests from them are accepted.
    pub(super) target_ips: HashSet<IpAddr>,
}

impl Plan {
    /// A generation over admission and routing state.
    pub(super) fn new(guard: Arc<Guard>, router: Arc<Router>) -> Self {
        let uri_addrs: Box<[Option<SocketAddr>]> = router
            .targets()
            .uris()
            .iter()
            .map(|u| Uri::parse(u.as_bytes()).ok().as_ref().and_then(uri_socket_addr))
            .collect();
        let target_ips = uri_addrs.iter().flatten().map(SocketAddr::ip).collect();
        Self { guard, router, uri_addrs, target_ips }
    }

    /// Socket address of a target URI.
    pub(super) fn target_addr(&self, uri: UriId) -> Option<SocketAddr> {
        self.uri_addrs.get(uri.index()).copied().flatten()
    }
}

impl Engine {
    /// Swaps in the next generation (built aside, e.g. with [`Guard::rebuild`] and
    /// [`Router::rebuild`]): the next datagram is admitted and routed by it. Calls in progress
    /// keep theirs. Target health moves to the new URI ids by URI text, under the health and
    /// pause locks, so no probe answer or 503 pause falls between the two generations.
    pub fn install(&self, guard: Arc<Guard>, router: Arc<Router>, now: Instant) {
        let next = Arc::new(Plan::new(guard, router));
        let mut health = lock(&self.health);
        let mut paused = lock(&self.paused);
        let current = self.plan.load_full();
        let (old, new) = (current.router.targets(), next.router.targets());
        if let Some(tracker) = health.take() {
            *health = Some(tracker.carried_over(old, new, Arc::clone(next.router.up_flags()), now));
        }
        paused.retain_mut(|(uri, _)| match old.uri(*uri).and_then(|text| new.uri_id(text)) {
            Some(moved) => {
                *uri = moved;
                next.router.up_flags().set(moved, false);
                true
            }
            None => false,
        });
        self.plan.store(next);
    }
}

impl crate::route::live::Generations for Engine {
    fn guard(&self) -> Arc<Guard> {
        Engine::guard(self)
    }

    fn router(&self) -> Arc<Router> {
        Engine::router(self)
    }

    fn install(&self, guard: Arc<Guard>, router: Arc<Router>, now: Instant) {
        Engine::install(self, guard, router, now);
    }
}
