//! The ring buffer of sampled drop events.

use std::os::fd::AsRawFd;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};

use crate::shared::DropEvent;

/// Reader of `struct drop_event` records.
pub struct DropEvents {
    ring: RingBuf<MapData>,
}

impl std::fmt::Debug for DropEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropEvents").finish_non_exhaustive()
    }
}

impl DropEvents {
    pub(crate) fn new(ring: RingBuf<MapData>) -> Self {
        DropEvents { ring }
    }

    /// The next event, if one is waiting. Records of a foreign size are skipped.
    pub fn next_event(&mut self) -> Option<DropEvent> {
        loop {
            let item = self.ring.next()?;
            if item.len() == size_of::<DropEvent>() {
                // SAFETY: the record holds exactly size_of::<DropEvent>() bytes written by the
                // program as a struct drop_event, which DropEvent mirrors (integers only, so
                // every bit pattern is valid); read_unaligned copes with any alignment.
                return Some(unsafe { item.as_ptr().cast::<DropEvent>().read_unaligned() });
            }
        }
    }

    /// Waits up to `timeout` for events; true when some are ready.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let mut fds = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is one valid pollfd that outlives the call; nfds is 1.
        let n = unsafe { libc::poll(&mut fds, 1, ms) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n > 0)
    }
}
