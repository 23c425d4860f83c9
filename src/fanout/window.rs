//! The live window: the last few batches appended to a followed session,
//! as stored, kept in memory and shared by all its followers, so a
//! follower at the live edge takes a new batch from here instead of
//! reading the store. It exists only while the session has followers (it
//! lives beside the progress signal), and it holds at most
//! `WINDOW_MAX_BATCHES` batches and `WINDOW_MAX_BYTES` of their entries,
//! whichever is fewer: the oldest batch goes first, and a batch bigger
//! than the whole budget is not kept. All windows of the process together
//! keep at most `ALL_WINDOWS_MAX_BYTES` of entries and of the encodings
//! their followers share; past that, new batches (and encodings) are not
//! kept and their followers read the store (and encode their own). Its
//! batches are always contiguous seqs; a batch that does not follow on
//! (one published without being kept here, such as the end entry) empties
//! it first. A follower takes a page from here only when the window holds
//! every seq from its cursor to the published one, and reads the store
//! otherwise, so the window is only ever a shortcut: what it serves is the
//! page the store would.
//!
//! A batch is pushed after it is applied and before its seq is published,
//! and followers take from it only seqs up to the published one, so they
//! see exactly what they would have read from the store.

use std::any::TypeId;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use prost::bytes::Bytes;
use sled::IVec;

use crate::store::{EntryFilter, RawPage, ScanLimits, StoreError, entry_wire_len, page_of};

/// At most this many batches per followed session.
pub(crate) const WINDOW_MAX_BATCHES: usize = 128;
/// At most this many bytes of entries (as `entry_wire_len` weighs them)
/// per followed session, besides the encodings its followers share
/// (`encoded`), which count against `ALL_WINDOWS_MAX_BYTES` only. A
/// follower at the live edge needs only the last batch or two; the rest
/// covers one a moment behind. 128 KiB (and 32 MiB in all) cost 23 MiB of
/// peak RSS on the memory workload (1,000 sessions, 100 followers) for no
/// gain in its latency or CPU per delivered entry.
pub(crate) const WINDOW_MAX_BYTES: usize = 32 * 1024;

/// One appended batch as stored: consecutive seqs from `first_seq`.
#[derive(Debug)]
pub(crate) struct LiveBatch {
    first_seq: u64,
    entries: Vec<IVec>,
    bytes: usize,
    /// Up to two edges' encodings of the whole batch (gRPC and SSE), each
    /// made by the first follower of that edge that sends the batch whole
    /// and shared by the rest. Keyed by the encoder's type, so encodings
    /// never mix; charged to the process-wide budget while kept.
    encoded: [OnceLock<(TypeId, Bytes)>; 2],
}

impl Drop for LiveBatch {
    fn drop(&mut self) {
        for slot in &self.encoded {
            if let Some((_, bytes)) = slot.get() {
                release(bytes.len());
            }
        }
    }
}

impl LiveBatch {
    /// A batch of `entries` (not empty) under seqs from `first_seq`.
    pub(crate) fn new(first_seq: u64, entries: Vec<IVec>) -> Self {
        let bytes = entries
            .iter()
            .map(|entry| entry_wire_len(entry.len()))
            .sum();
        Self {
            first_seq,
            entries,
            bytes,
            encoded: [OnceLock::new(), OnceLock::new()],
        }
    }

    pub(crate) fn entries(&self) -> &[IVec] {
        &self.entries
    }

    /// The seq of the last entry.
    pub(crate) fn last_seq(&self) -> u64 {
        let count = u64::try_from(self.entries.len()).unwrap_or(u64::MAX);
        self.first_seq.saturating_add(count).saturating_sub(1)
    }

    /// The batch encoded by `encode` (given the entries and the batch's
    /// cursor, its last seq), encoded at most once for every follower
    /// that asks with the same `K` while the budget has room for it.
    pub(crate) fn encoded_once<K: 'static>(
        &self,
        encode: impl FnOnce(&[IVec], u64) -> Bytes,
    ) -> Bytes {
        let key = TypeId::of::<K>();
        let held = self
            .encoded
            .iter()
            .filter_map(OnceLock::get)
            .find(|(held_key, _)| *held_key == key);
        if let Some((_, bytes)) = held {
            return bytes.clone();
        }
        let bytes = encode(&self.entries, self.last_seq());
        // Followers racing here each encode, and the first one's bytes
        // stay (the same bytes, for the same `K`); a slot taken by a racer
        // of another `K`, or a full budget, only means these are not kept.
        if let Some(slot) = self.encoded.iter().find(|slot| slot.get().is_none())
            && charge(bytes.len())
            && slot.set((key, bytes.clone())).is_err()
        {
            release(bytes.len());
        }
        bytes
    }
}

/// What a follower found in the window.
#[derive(Debug)]
pub(crate) enum Found {
    /// Exactly the next batch, whole: its entries are the follower's next
    /// page as they are, shared with every other follower that sends it.
    Whole(Arc<LiveBatch>),
    /// A page put together from the window's entries (filtered, or across
    /// batches, or cut to the follower's limits).
    Page(RawPage),
    /// The seq after the cursor is not in the window: read the store.
    Missing,
}

/// A followed session's window (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct LiveWindow {
    inner: Mutex<Batches>,
}

#[derive(Debug, Default)]
struct Batches {
    batches: VecDeque<Arc<LiveBatch>>,
    bytes: usize,
    /// The last run of several batches that a follower took whole, as one
    /// batch (see `next_page`): followers that wake together ask for the
    /// same run, and share it and its encoding like a single batch. Its
    /// entries are the window's own (shared, not copied), and the next
    /// push ends it, so it never keeps entries the window let go.
    merged: Option<Arc<LiveBatch>>,
}

impl Batches {
    fn clear(&mut self) {
        self.batches.clear();
        self.merged = None;
        release(std::mem::take(&mut self.bytes));
    }
}

impl Drop for LiveWindow {
    fn drop(&mut self) {
        self.batches().clear();
    }
}

/// All windows together keep at most this many bytes of entries and
/// shared encodings, so the memory of live windows is bounded however many
/// sessions are followed.
pub(crate) const ALL_WINDOWS_MAX_BYTES: usize = 8 << 20;

/// Entry and encoding bytes kept in all windows now.
static ALL_WINDOWS_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Takes `bytes` from the process-wide budget, if it has room.
fn charge(bytes: usize) -> bool {
    ALL_WINDOWS_BYTES
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(bytes)
                .filter(|total| *total <= ALL_WINDOWS_MAX_BYTES)
        })
        .is_ok()
}

fn release(bytes: usize) {
    ALL_WINDOWS_BYTES.fetch_sub(bytes, Ordering::AcqRel);
}

impl LiveWindow {
    fn batches(&self) -> MutexGuard<'_, Batches> {
        // Every change below leaves the window consistent before anything
        // that can panic; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Keeps `batch` as the newest, dropping the oldest past the limits.
    /// A batch the process-wide budget has no room for is not kept (and
    /// the window empties, as its seqs would no longer follow on).
    pub(crate) fn push(&self, batch: LiveBatch) {
        let mut window = self.batches();
        // A run is of batches all pending at once: a new one ends it, so a
        // run never holds entries the window let go.
        window.merged = None;
        let follows_on = window
            .batches
            .back()
            .is_none_or(|last| last.last_seq().checked_add(1) == Some(batch.first_seq));
        if !follows_on || batch.bytes > WINDOW_MAX_BYTES {
            window.clear();
        }
        if batch.entries.is_empty() || batch.bytes > WINDOW_MAX_BYTES {
            return;
        }
        if !charge(batch.bytes) {
            window.clear();
            return;
        }
        window.bytes += batch.bytes;
        window.batches.push_back(Arc::new(batch));
        while window.batches.len() > WINDOW_MAX_BATCHES || window.bytes > WINDOW_MAX_BYTES {
            match window.batches.pop_front() {
                Some(oldest) => {
                    window.bytes -= oldest.bytes;
                    release(oldest.bytes);
                }
                None => break,
            }
        }
    }

    /// The follower's next page after `after_seq`, up to `through_seq`
    /// (the published seq), from memory, exactly as the store would give
    /// it: the next batch whole when it is all that is pending, starts
    /// right after the cursor and fits the follower as it is; otherwise a
    /// page cut from the window by the same rule as a store page
    /// (`store::page_of`). `Missing` unless the window holds every seq
    /// from `after_seq + 1` to `through_seq`.
    pub(crate) fn next_page(
        &self,
        after_seq: u64,
        through_seq: u64,
        filter: &EntryFilter,
        limits: ScanLimits,
    ) -> Result<Found, StoreError> {
        let Some(wanted) = after_seq.checked_add(1) else {
            return Ok(Found::Missing);
        };
        let mut window = self.batches();
        let (Some(first), Some(last)) = (window.batches.front(), window.batches.back()) else {
            return Ok(Found::Missing);
        };
        // Only a window that holds every seq up to the published one gives
        // the page the store would; otherwise the store gives it.
        if wanted < first.first_seq || wanted > through_seq || through_seq > last.last_seq() {
            return Ok(Found::Missing);
        }
        // Batches are contiguous: find the one holding `wanted` by seq.
        let index = window
            .batches
            .partition_point(|batch| batch.last_seq() < wanted);
        let Some(batch) = window.batches.get(index) else {
            return Ok(Found::Missing);
        };
        let whole = |batch: &LiveBatch| {
            filter.is_empty()
                && batch.first_seq == wanted
                && batch.last_seq() == through_seq
                && batch.entries.len() <= limits.max_entries
                && batch.bytes <= limits.max_bytes
        };
        if whole(batch) {
            return Ok(Found::Whole(batch.clone()));
        }
        if filter.is_empty() && batch.first_seq == wanted {
            if let Some(merged) = &window.merged
                && merged.first_seq == wanted
                && merged.last_seq() == through_seq
            {
                if whole(merged) {
                    return Ok(Found::Whole(merged.clone()));
                }
            } else if fits(window.batches.range(index..), through_seq, limits) {
                let run = merge(window.batches.range(index..), wanted, through_seq);
                window.merged = Some(run.clone());
                return Ok(Found::Whole(run));
            }
        }
        // The page is cut outside the lock: filtering decodes entries, and
        // the append path pushes under its session's state lock, so a
        // follower must not hold the writer up.
        let batches: Vec<Arc<LiveBatch>> = window.batches.range(index..).cloned().collect();
        drop(window);
        let items = batches
            .iter()
            .flat_map(|batch| {
                (batch.first_seq..)
                    .zip(batch.entries.iter())
                    .map(|(seq, entry)| (seq, entry.clone()))
            })
            .skip_while(|(seq, _)| *seq < wanted)
            .take_while(|(seq, _)| *seq <= through_seq)
            .map(Ok);
        page_of(items, after_seq, through_seq, filter, limits).map(Found::Page)
    }
}

/// Whether the entries of `batches` through `through_seq` fit `limits`
/// as one page, before a run of them is put together.
fn fits<'a>(
    batches: impl Iterator<Item = &'a Arc<LiveBatch>>,
    through_seq: u64,
    limits: ScanLimits,
) -> bool {
    let (mut entries, mut bytes) = (0usize, 0usize);
    for batch in batches.take_while(|batch| batch.first_seq <= through_seq) {
        entries = entries.saturating_add(batch.entries.len());
        bytes = bytes.saturating_add(batch.bytes);
    }
    entries <= limits.max_entries && bytes <= limits.max_bytes
}

/// The entries of `batches` (contiguous, the first starting at `first`)
/// through `through_seq`, as one batch: they share the window's bytes.
fn merge<'a>(
    batches: impl Iterator<Item = &'a Arc<LiveBatch>>,
    first: u64,
    through_seq: u64,
) -> Arc<LiveBatch> {
    let count =
        usize::try_from(through_seq.saturating_sub(first).saturating_add(1)).unwrap_or(usize::MAX);
    let entries = batches
        .flat_map(|batch| batch.entries.iter().cloned())
        .take(count)
        .collect();
    Arc::new(LiveBatch::new(first, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: ScanLimits = ScanLimits {
        max_entries: usize::MAX,
        max_scanned: usize::MAX,
        max_bytes: usize::MAX,
    };

    fn batch(first_seq: u64, count: usize, size: usize) -> LiveBatch {
        LiveBatch::new(first_seq, vec![IVec::from(vec![7u8; size]); count])
    }

    fn seqs(found: &Found) -> Option<(usize, u64)> {
        match found {
            Found::Whole(batch) => Some((batch.entries().len(), batch.last_seq())),
            Found::Page(page) => Some((page.entries.len(), page.cursor)),
            Found::Missing => None,
        }
    }

    #[test]
    fn the_only_pending_batch_goes_whole_and_older_ones_as_a_page() {
        let window = LiveWindow::default();
        window.push(batch(1, 2, 10));
        window.push(batch(3, 3, 10));
        let filter = EntryFilter::default();
        let found = window.next_page(2, 5, &filter, ALL).expect("page");
        assert!(matches!(found, Found::Whole(_)));
        assert_eq!(seqs(&found), Some((3, 5)));
        // Several whole batches pending go whole too, as one run.
        let found = window.next_page(0, 5, &filter, ALL).expect("page");
        assert!(matches!(found, Found::Whole(_)));
        assert_eq!(seqs(&found), Some((5, 5)));
        // Only up to the published seq, even with more in the window; and
        // a cursor inside a batch gets a page cut from it.
        let found = window.next_page(1, 4, &filter, ALL).expect("page");
        assert!(matches!(found, Found::Page(_)));
        assert_eq!(seqs(&found), Some((3, 4)));
        let limits = ScanLimits {
            max_entries: 2,
            ..ALL
        };
        let found = window.next_page(2, 5, &filter, limits).expect("page");
        assert!(matches!(found, Found::Page(_)));
        assert_eq!(seqs(&found), Some((2, 4)));
        assert!(matches!(
            window.next_page(5, 5, &filter, ALL).expect("page"),
            Found::Missing
        ));
    }

    #[test]
    fn the_window_keeps_the_newest_within_its_limits_and_only_contiguous_seqs() {
        let window = LiveWindow::default();
        let filter = EntryFilter::default();
        for seq in 1..=u64::try_from(WINDOW_MAX_BATCHES).expect("fits") + 10 {
            window.push(batch(seq, 1, 10));
        }
        assert!(matches!(
            window.next_page(0, 200, &filter, ALL).expect("page"),
            Found::Missing
        ));
        assert!(matches!(
            window.next_page(10, 138, &filter, ALL).expect("page"),
            Found::Whole(_)
        ));
        // Nor does it give a page it cannot take to the published seq.
        assert!(matches!(
            window.next_page(10, 139, &filter, ALL).expect("page"),
            Found::Missing
        ));
        // A gap (a batch published without being kept) empties it.
        window.push(batch(200, 1, 10));
        assert!(matches!(
            window.next_page(137, 200, &filter, ALL).expect("page"),
            Found::Missing
        ));
        assert!(matches!(
            window.next_page(199, 200, &filter, ALL).expect("page"),
            Found::Whole(_)
        ));
        // So does a batch bigger than the byte budget, which is not kept.
        window.push(batch(201, 1, WINDOW_MAX_BYTES + 1));
        assert!(matches!(
            window.next_page(199, 201, &filter, ALL).expect("page"),
            Found::Missing
        ));
        let big = WINDOW_MAX_BYTES / 3;
        for seq in 202..206 {
            window.push(batch(seq, 1, big));
        }
        let found = window.next_page(201, 205, &filter, ALL).expect("page");
        assert!(matches!(found, Found::Missing));
        let found = window.next_page(203, 205, &filter, ALL).expect("page");
        assert_eq!(seqs(&found), Some((2, 205)));
    }

    #[test]
    fn followers_that_wake_together_share_one_run_and_its_encoding() {
        let window = LiveWindow::default();
        for seq in 1..=4 {
            window.push(batch(seq, 1, 10));
        }
        let filter = EntryFilter::default();
        let take = |after: u64, through: u64| match window
            .next_page(after, through, &filter, ALL)
            .expect("page")
        {
            Found::Whole(run) => run,
            other => panic!("expected the run whole, got {other:?}"),
        };
        let (a, b) = (take(1, 4), take(1, 4));
        assert!(Arc::ptr_eq(&a, &b), "the same run for both");
        assert_eq!((a.entries().len(), a.last_seq()), (3, 4));
        let encodings = AtomicUsize::new(0);
        let encode = |entries: &[IVec], cursor: u64| {
            encodings.fetch_add(1, Ordering::Relaxed);
            Bytes::from(format!("{}@{cursor}", entries.len()))
        };
        assert_eq!(a.encoded_once::<()>(encode), b.encoded_once::<()>(encode));
        assert_eq!(encodings.load(Ordering::Relaxed), 1);
        // Another run replaces it; the old one's holders keep theirs.
        let c = take(2, 4);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((c.entries().len(), c.last_seq()), (2, 4));
        // A follower whose limits the run does not fit gets a page.
        let limits = ScanLimits {
            max_entries: 1,
            ..ALL
        };
        let found = window.next_page(1, 4, &filter, limits).expect("page");
        assert!(matches!(found, Found::Page(_)));
        assert_eq!(seqs(&found), Some((1, 2)));
    }

    #[test]
    fn a_batch_is_encoded_once_per_encoder() {
        struct Grpc;
        struct Other;
        let batch = batch(4, 2, 3);
        let mut calls = 0;
        for _ in 0..3 {
            let bytes = batch.encoded_once::<Grpc>(|entries, cursor| {
                calls += 1;
                Bytes::from(format!("{}:{cursor}", entries.len()))
            });
            assert_eq!(bytes, Bytes::from("2:5"));
        }
        assert_eq!(calls, 1);
        let other = batch.encoded_once::<Other>(|_, _| Bytes::from("other"));
        assert_eq!(other, Bytes::from("other"));
    }
}
