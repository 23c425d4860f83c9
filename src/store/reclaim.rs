//! Giving sled's dead space back for reuse. sled writes every change at
//! the end of its log, so a page's older versions are dead space in the
//! segments they were written to. sled queues a segment for cleaning once
//! at most half of it is live; relocating the live pages that remain lets
//! it reuse the segment for new writes. sled's own flusher thread does
//! that between flushes, but the store opens sled without one (flushes are
//! `durability`'s to schedule), so the sealer thread calls `reclaim`
//! between its jobs.
//!
//! A relocation is an ordinary sled write: crash-safe as any other, and
//! under the same fsync policy.

use std::time::{Duration, Instant};

use super::{Store, StoreError};

impl Store {
    /// Relocates live pages out of segments sled queued for cleaning, for
    /// about `budget` at most. Returns how many pages moved (0: nothing
    /// was queued). An I/O failure fails the store, like any write.
    /// Blocking.
    pub fn reclaim(&self, budget: Duration) -> Result<usize, StoreError> {
        let started = Instant::now();
        self.write(|| {
            let mut moved = 0;
            while started.elapsed() < budget && self.db.collect_garbage_step()? {
                moved += 1;
            }
            Ok(moved)
        })
    }
}
