//! Giving sled's dead space back. sled writes every change at the end of
//! its log, so a page's older versions are dead space in the segments they
//! were written to. sled queues a segment for cleaning once at most 70%
//! of it is live (the vendored sled's threshold; upstream's is half);
//! relocating the live pages that remain frees it for reuse.
//! sled's own flusher thread does that between flushes, but the store
//! opens sled without one (flushes are `durability`'s to schedule), so the
//! sealer thread calls `reclaim` between its jobs. sled cuts its file only
//! when the last segments are free; the blocks of free segments elsewhere
//! are given back to the filesystem as holes (the vendored sled's
//! `punch_free_segments`, which syncs the log first), so the disk a store
//! takes follows what it holds, not its largest size. A drained segment
//! is freed only once later writes record its pages' new copies as stable
//! (see `give_back_free_segments`); the shutdown's last flush is followed
//! by a punch too, and sled punches what it finds free at open.
//!
//! A relocation is an ordinary sled write: crash-safe as any other, and
//! under the same fsync policy. A punched segment reads as one never
//! written.

use std::time::{Duration, Instant};

use super::{Store, StoreError};

/// A key in sled's default tree written only to move sled's log on (see
/// `give_back_free_segments`); its value means nothing.
const SETTLE_KEY: &[u8] = b"sessionlog.settle";

/// How many drained segments must wait on the log's current segment
/// before it is ended early to free them. Ending it pads its rest (up to
/// a segment of dead space, soon relocated and freed in turn, which may
/// leave a segment or two waiting again): fewer than this stay for the
/// writes to come, so a paused store settles instead of rolling on.
const ROLL_FOR_SEGMENTS: usize = 4;

/// What one turn of `Store::reclaim` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reclaimed {
    /// Pages relocated out of mostly dead segments.
    pub pages: usize,
    /// Free segments whose blocks went back to the filesystem.
    pub segments: usize,
    /// The turn ran out of budget with pages left to move.
    pub more: bool,
    /// Every free segment was punched, after a sync (when `segments` is
    /// 0, none was free); otherwise only those a sync already covered.
    pub punched: bool,
}

impl Store {
    /// Relocates live pages out of segments sled queued for cleaning, for
    /// about `budget` at most, then (when none is left, or when
    /// `punch_anyway`) syncs the log and punches the free segments. An I/O
    /// failure fails the store, like any write. Blocking.
    ///
    /// A turn with more to do still punches the free segments an earlier
    /// sync covers, which costs no sync: under steady churn retention
    /// queues segments as fast as turns drain them, and the segments freed
    /// meanwhile kept their blocks until reused (up to 30 MB beside 28 MB
    /// of kept segments on the churn bench). `punch_anyway` is for a
    /// store whose syncs are rare (`--fsync never`); the caller says how
    /// often a turn may pay for one.
    pub(crate) fn reclaim(
        &self,
        budget: Duration,
        punch_anyway: bool,
    ) -> Result<Reclaimed, StoreError> {
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
            if punch_anyway {
                done.segments = self.write(|| Ok(self.db.punch_free_segments()?))?;
                done.punched = true;
            } else {
                done.segments = self.write(|| Ok(self.db.punch_durable_free_segments()))?;
            }
            return Ok(done);
        }
        done.segments = self.give_back_free_segments()?;
        done.punched = true;
        Ok(done)
    }

    /// Punches the blocks of sled's free segments out of its file (after
    /// syncing it); how many. The final flush at shutdown is followed by
    /// one, so a stopped store takes what it holds.
    ///
    /// sled frees a drained segment once the log is stable past its pages'
    /// new copies as the header of a later segment records it. While
    /// writes go on, new segments come by themselves; when they pause, the
    /// segments drained last (all of a reclaim's, the pages having moved
    /// into the current segment) would stay allocated. So when enough of
    /// them wait, the current segment is ended early and a small write
    /// starts the next.
    pub(crate) fn give_back_free_segments(&self) -> Result<usize, StoreError> {
        if self.db.segments_awaiting_stable()? >= ROLL_FOR_SEGMENTS {
            self.flush()?;
            self.write(|| Ok(self.db.roll_segment()?))?;
            self.write(|| Ok(self.db.insert(SETTLE_KEY, &[])?))?;
            self.flush()?;
        }
        self.write(|| Ok(self.db.punch_free_segments()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::open_store;

    /// A store whose log is mostly dead: 40 trees written, 36 cleared.
    fn mostly_dead(dir: &tempfile::TempDir) -> Store {
        let store = open_store(dir);
        let trees: Vec<sled::Tree> = (0..40)
            .map(|i| store.db.open_tree(format!("test/{i}")).expect("tree"))
            .collect();
        let value = vec![7u8; 6000];
        for key in 0..100u32 {
            for tree in &trees {
                tree.insert(key.to_be_bytes(), value.as_slice())
                    .expect("insert");
            }
        }
        store.flush().expect("flush");
        for (i, tree) in trees.iter().enumerate() {
            if i % 10 != 0 {
                tree.clear().expect("clear");
            }
        }
        store.flush().expect("flush");
        store
    }

    /// Turns of one page each (a zero budget) until one runs out of budget
    /// having given segments back, or none is left to move; whether one
    /// did.
    fn a_busy_turn_gave_back(store: &Store, punch_anyway: bool) -> bool {
        for _ in 0..5_000 {
            let done = store
                .reclaim(Duration::ZERO, punch_anyway)
                .expect("reclaim");
            if done.more {
                assert_eq!(done.punched, punch_anyway);
                if done.segments > 0 {
                    return true;
                }
            }
            if !done.more {
                return false;
            }
            // Freeing a drained segment waits for its pages' new copies to
            // be written out.
            store.flush().expect("flush");
        }
        false
    }

    #[test]
    fn a_turn_with_pages_left_to_move_gives_free_segments_back() {
        // Asked to, after a sync of its own.
        let dir = tempfile::tempdir().expect("temp dir");
        let store = mostly_dead(&dir);
        assert!(a_busy_turn_gave_back(&store, true));

        // Not asked, those the flushes between turns covered.
        let dir = tempfile::tempdir().expect("temp dir");
        let store = mostly_dead(&dir);
        assert!(a_busy_turn_gave_back(&store, false));
    }
}
