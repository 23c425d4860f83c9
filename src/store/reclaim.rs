//! Giving sled's dead space back. sled writes every change at the end of
//! its log, so a page's older versions are dead space in the segments they
//! were written to. sled queues a segment for cleaning once at most 70%
//! of it is live (the vendored sled's threshold; upstream's is half);
//! relocating the live pages that remain frees it for reuse.
//! sled's own flusher thread does that between flushes, but the store
//! opens sled without one (flushes are `durability`'s to schedule), so a
//! thread of the server's calls `reclaim` (`sessions::reclaim`). sled
//! cuts its file only when the last segments are free; the blocks of free
//! segments elsewhere are given back to the filesystem as holes (the
//! vendored sled's `punch_free_segments`, which syncs the log first, here;
//! and after every flush's sync, those it covers: `Store::flush`), so the
//! disk a store takes follows what it holds, not its largest size. A drained segment
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

/// How many rounds of giving back and relocating a settling turn runs at
/// most (`Store::settle`); an idle reclaimer's next turn, a second later,
/// goes on where it stopped.
const SETTLE_ROUNDS: usize = 3;

/// How many free segments may keep their blocks before the reclaimer syncs
/// the log to punch them (`Store::punch_piled_up_free_segments`): 4 MiB of
/// 512 KiB segments. Under churn segments are freed about as fast as they
/// are written, and the flushes' syncs (every 200 ms by default) left up
/// to 17 MB of them allocated between two.
const PUNCH_PILE: u64 = 8;

/// What a turn of `Store::reclaim` does with sled's free segments once
/// it stops relocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveBack {
    /// Nothing: each flush punches the free segments its sync covers
    /// (`Store::flush`), and the reclaimer those that pile up between two
    /// (`Store::punch_piled_up_free_segments`). For a store being
    /// written, whose log moves on by itself.
    Leave,
    /// Syncs the log and punches the free segments.
    Punch,
    /// When no page is left to move, also has the segments drained last
    /// freed (`Store::give_back_free_segments`), in rounds with what that
    /// leaves to move (`Store::settle`), else punches. For a store whose
    /// writes paused.
    Settle,
}

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
    /// 0, none was free).
    pub punched: bool,
}

impl Store {
    /// Relocates live pages out of segments sled queued for cleaning, for
    /// about `budget` at most, then gives free segments back as
    /// `give_back` says. An I/O failure fails the store, like any write.
    /// Blocking.
    ///
    /// The caller picks `give_back`: under steady churn, where retention
    /// queues segments as fast as turns drain them, turns come often and
    /// a sync or a segment ended early at each would cost more than the
    /// flushes' punches, which keep up; a store whose flushes are rare
    /// (`--fsync never`) needs a punch now and then; one whose writes
    /// paused needs its last drained segments freed.
    pub(crate) fn reclaim(
        &self,
        budget: Duration,
        give_back: GiveBack,
    ) -> Result<Reclaimed, StoreError> {
        let started = Instant::now();
        let mut done = Reclaimed::default();
        self.relocate(started + budget, &mut done)?;
        done.segments = match give_back {
            GiveBack::Leave => return Ok(done),
            GiveBack::Settle if !done.more => self.settle(started + budget, &mut done)?,
            GiveBack::Punch | GiveBack::Settle => {
                self.write(|| Ok(self.db.punch_free_segments()?))?
            }
        };
        done.punched = true;
        Ok(done)
    }

    /// Relocates live pages out of the segments queued for cleaning until
    /// none is left or `until`, counting them in `done`.
    fn relocate(&self, until: Instant, done: &mut Reclaimed) -> Result<(), StoreError> {
        self.write(|| {
            while self.db.collect_garbage_step()? {
                done.pages += 1;
                if Instant::now() >= until {
                    done.more = true;
                    break;
                }
            }
            Ok(())
        })
    }

    /// A settling turn's give-back: the segments drained last are freed
    /// and punched, then what that queued for cleaning in turn is moved,
    /// in rounds until one finds nothing to do (at most `SETTLE_ROUNDS`);
    /// how many segments were punched. sled's accountant hears of the
    /// writes' stability only as its epoch moves on, which threads busy
    /// elsewhere delay: on a loaded machine one round left 10 drained
    /// segments waiting, or 100 pages unmoved, and the data dir at twice
    /// the size a later round brought it to.
    fn settle(&self, until: Instant, done: &mut Reclaimed) -> Result<usize, StoreError> {
        let mut segments = self.give_back_free_segments()?;
        for _ in 1..SETTLE_ROUNDS {
            let moved = done.pages;
            self.relocate(until, done)?;
            if done.more {
                // What is left is the next turn's, as any busy turn's.
                break;
            }
            let waiting = self.db.segments_awaiting_stable()?;
            if done.pages == moved
                && waiting < ROLL_FOR_SEGMENTS
                && self.db.segment_usage().unpunched == 0
            {
                break;
            }
            segments += self.give_back_free_segments()?;
        }
        Ok(segments)
    }

    /// When `PUNCH_PILE` free segments or more keep their blocks, syncs
    /// the log and punches them; how many. Cheap when fewer do (a count
    /// under sled's segment lock).
    pub(crate) fn punch_piled_up_free_segments(&self) -> Result<usize, StoreError> {
        if self.db.segment_usage().unpunched < PUNCH_PILE {
            return Ok(0);
        }
        self.write(|| Ok(self.db.punch_free_segments()?))
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
    use crate::store::seal_measure::dir_bytes;
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
    /// did. Between turns, the flushes that let drained segments be freed
    /// (their pages' new copies must be written out first).
    fn a_busy_turn_gave_back(store: &Store) -> bool {
        for _ in 0..5_000 {
            let done = store
                .reclaim(Duration::ZERO, GiveBack::Punch)
                .expect("reclaim");
            if !done.more {
                return false;
            }
            assert!(done.punched);
            if done.segments > 0 {
                return true;
            }
            store.flush().expect("flush");
        }
        false
    }

    /// Turns of one page each that do not punch, and a flush after each,
    /// until a flush leaves the files fewer blocks than before it, or none
    /// is left to move; whether one did.
    fn a_flush_gave_back(store: &Store, dir: &std::path::Path) -> bool {
        for _ in 0..5_000 {
            let done = store
                .reclaim(Duration::ZERO, GiveBack::Leave)
                .expect("reclaim");
            if !done.more {
                return false;
            }
            assert_eq!((done.segments, done.punched), (0, false));
            let (_, before) = dir_bytes(dir);
            store.flush().expect("flush");
            if dir_bytes(dir).1 < before {
                return true;
            }
        }
        false
    }

    #[test]
    fn a_turn_with_pages_left_to_move_gives_free_segments_back_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = mostly_dead(&dir);
        assert!(a_busy_turn_gave_back(&store));
    }

    #[test]
    fn free_segments_piling_up_between_flushes_are_punched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = mostly_dead(&dir);
        // The trees cleared may have freed some already; then none waits.
        store.punch_piled_up_free_segments().expect("punch");
        assert!(store.segment_usage().unpunched < PUNCH_PILE);
        assert_eq!(store.punch_piled_up_free_segments().expect("punch"), 0);
        // Relocation without flushes: the segments it drains are freed as
        // its writes fill sled's buffers, and none is punched.
        let mut punched = 0;
        while punched == 0 {
            let done = store
                .reclaim(Duration::ZERO, GiveBack::Leave)
                .expect("reclaim");
            punched = store.punch_piled_up_free_segments().expect("punch");
            if !done.more {
                break;
            }
        }
        assert!(punched >= PUNCH_PILE as usize, "punched {punched}");
        assert!(store.segment_usage().unpunched < PUNCH_PILE);
    }

    #[test]
    fn a_flush_gives_back_the_free_segments_its_sync_covers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = mostly_dead(&dir);
        assert!(a_flush_gave_back(&store, dir.path()));
    }

    #[test]
    fn a_settling_turn_moves_every_page_and_gives_every_drained_segment_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = mostly_dead(&dir);
        let (_, before) = dir_bytes(dir.path());
        let done = store
            .reclaim(Duration::from_secs(60), GiveBack::Settle)
            .expect("reclaim");
        assert!(!done.more && done.punched && done.pages > 0, "{done:?}");
        // Every free segment was punched, those drained last included (the
        // log's segment was ended early so they could be freed), which took
        // the data dir down. The segments ended early may be queued for
        // cleaning in turn (their rest is padding), fewer than would make a
        // turn end one again.
        let usage = store.segment_usage();
        assert_eq!(usage.unpunched, 0, "{usage:?}");
        assert!(usage.draining < ROLL_FOR_SEGMENTS as u64, "{usage:?}");
        let (_, after) = dir_bytes(dir.path());
        assert!(
            after < before / 2,
            "{before} bytes allocated before, {after} after"
        );
    }

    #[test]
    fn a_turn_that_leaves_free_segments_leaves_them_to_a_later_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = mostly_dead(&dir);
        let done = store
            .reclaim(Duration::from_secs(60), GiveBack::Leave)
            .expect("reclaim");
        assert!(!done.more && done.pages > 0, "{done:?}");
        assert_eq!((done.segments, done.punched), (0, false));
        let settled = store
            .reclaim(Duration::from_secs(60), GiveBack::Settle)
            .expect("reclaim");
        // It may move pages too: those of segments that the first turn's
        // writes left mostly dead. What it gave back depends on how many
        // of the freed segments sled cut off the file's end instead; none
        // is left unpunched.
        assert!(!settled.more && settled.punched, "{settled:?}");
        assert_eq!(store.segment_usage().unpunched, 0);
    }
}
