//! Giving sled's dead space back. sled writes every change at the end of
//! its log, so a page's older versions are dead space in the segments they
//! were written to. sled queues a segment for cleaning once at most half
//! of it is live; relocating the live pages that remain frees it for reuse.
//! sled's own flusher thread does that between flushes, but the store
//! opens sled without one (flushes are `durability`'s to schedule), so the
//! sealer thread calls `reclaim` between its jobs. sled cuts its file only
//! when the last segments are free; the blocks of free segments elsewhere
//! are given back to the filesystem as holes (the vendored sled's
//! `punch_free_segments`, which syncs the log first), so the disk a store
//! takes follows what it holds, not its largest size.
//!
//! A relocation is an ordinary sled write: crash-safe as any other, and
//! under the same fsync policy. A punched segment reads as one never
//! written.

use std::time::{Duration, Instant};

use super::{Store, StoreError};

/// What one turn of `Store::reclaim` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reclaimed {
    /// Pages relocated out of mostly dead segments.
    pub pages: usize,
    /// Free segments whose blocks went back to the filesystem.
    pub segments: usize,
    /// The turn ran out of budget with pages left to move.
    pub more: bool,
}

impl Store {
    /// Relocates live pages out of segments sled queued for cleaning, for
    /// about `budget` at most, then (when none is left) punches the free
    /// segments. An I/O failure fails the store, like any write.
    /// Blocking.
    pub(crate) fn reclaim(&self, budget: Duration) -> Result<Reclaimed, StoreError> {
        let started = Instant::now();
        let mut done = self.write(|| {
            let mut done = Reclaimed::default();
            while self.db.collect_garbage_step()? {
                done.pages += 1;
                if started.elapsed() >= budget {
                    done.more = true;
                    break;
                }
            }
            Ok(done)
        })?;
        if done.more {
            return Ok(done);
        }
        if done.pages > 0 {
            // A drained segment is freed once the segment its pages moved
            // to is written out, which a flush does; without one the
            // frees, and the punch, would wait for later writes.
            self.flush()?;
        }
        done.segments = self.give_back_free_segments()?;
        Ok(done)
    }

    /// Punches the blocks of sled's free segments out of its file (after
    /// syncing it); how many. The final flush at shutdown is followed by
    /// one, so a stopped store takes what it holds.
    pub(crate) fn give_back_free_segments(&self) -> Result<usize, StoreError> {
        self.write(|| Ok(self.db.punch_free_segments()?))
    }
}
