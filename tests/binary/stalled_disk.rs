//! A disk that stops taking writes for a while: the server holds appends
//! back once a few of its log's segment buffers wait to be written,
//! instead of acknowledging from memory without bound; when the disk
//! writes again every append completes and each log is whole, in order.

use std::sync::Arc;
use std::time::Duration;

use sessionlog::client::Client;
use sessionlog::pb;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::common::ledger::{ServerProcess, read_log};
use crate::powercut::mount_or_skip;

const WRITERS: usize = 4;
const BATCHES: usize = 24;
const ENTRIES_PER_BATCH: usize = 128;
const MESSAGE_BYTES: usize = 2 << 10;
/// 24 MiB in all.
const TOTAL_BYTES: usize = WRITERS * BATCHES * ENTRIES_PER_BATCH * MESSAGE_BYTES;
/// What may be acknowledged while nothing is written: sled's 8 segment
/// buffers of 512 KiB waiting to be written, the one being filled, and a
/// batch per writer already under way (5.5 MiB of log). Without the
/// bound, 11 MB were acknowledged before something else held appends.
const ACKED_WHILE_STALLED_AT_MOST: usize = 6 << 20;
/// What is acknowledged before the bound holds appends back: a few
/// buffers' worth, from memory, as the disk is not waited on.
const ACKED_WHILE_STALLED_AT_LEAST: usize = 1 << 20;
/// Appends that stop being acknowledged for this long are held back.
const QUIET: Duration = Duration::from_secs(1);

fn message(writer: usize, batch: usize, entry: usize) -> String {
    // Text that differs from entry to entry, as logs do.
    let mut text = format!("w{writer} b{batch} e{entry} ");
    let mut state = (writer * 1_000_003 + batch * 1_009 + entry) as u64 | 1;
    while text.len() < MESSAGE_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!("{state:016x} "));
    }
    text.truncate(MESSAGE_BYTES);
    text
}

async fn write(mut client: Client, writer: usize, acked: Arc<watch::Sender<usize>>) {
    for batch in 0..BATCHES {
        let entries = (0..ENTRIES_PER_BATCH)
            .map(|entry| pb::LogEntry {
                level: pb::Level::Info.into(),
                message: message(writer, batch, entry),
                ..Default::default()
            })
            .collect();
        client
            .append(pb::AppendRequest {
                session_id: format!("stall-{writer}"),
                entries,
                ..Default::default()
            })
            .await
            .expect("append");
        acked.send_modify(|bytes| *bytes += ENTRIES_PER_BATCH * MESSAGE_BYTES);
    }
}

/// Reads a whole log and checks it holds every entry of its writer, in
/// order, with seqs 1, 2, 3, ...
async fn check_log(client: &mut Client, writer: usize) {
    let session_id = format!("stall-{writer}");
    let entries = read_log(client, &session_id).await;
    assert_eq!(
        entries.len(),
        BATCHES * ENTRIES_PER_BATCH,
        "{session_id}: not the entries appended"
    );
    let appended = (0..BATCHES).flat_map(|batch| (0..ENTRIES_PER_BATCH).map(move |e| (batch, e)));
    for ((seq, entry), (batch, e)) in (1..).zip(&entries).zip(appended) {
        assert_eq!(entry.seq, seq, "seqs of {session_id}");
        assert!(
            entry.message == message(writer, batch, e),
            "{session_id} seq {seq}: not the entry appended"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_holds_appends_back_instead_of_buffering_them() {
    let Some(mount) = mount_or_skip() else {
        return;
    };
    let sockets = tempfile::tempdir().expect("temp dir");
    let socket = sockets.path().join("sessionlog.sock");
    let data = mount.path().join("data");
    let server = ServerProcess::start_with(&data, &socket, &["--fsync", "interval"]).await;
    let mut client = server.client().await;
    for writer in 0..WRITERS {
        client
            .start_session(pb::StartSessionRequest {
                session_id: format!("stall-{writer}"),
                ..Default::default()
            })
            .await
            .expect("start");
    }

    mount.stall_disk();
    let (acked_tx, mut acked) = watch::channel(0);
    let acked_tx = Arc::new(acked_tx);
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        writers.spawn(write(server.client().await, writer, acked_tx.clone()));
    }
    // Until the acknowledgements stop; with no bound they would not.
    while tokio::time::timeout(QUIET, acked.changed()).await.is_ok() {
        assert!(
            *acked.borrow() < TOTAL_BYTES,
            "all {TOTAL_BYTES} bytes were acknowledged while the disk took no writes"
        );
    }
    let acked_while_stalled = *acked.borrow();
    assert!(
        acked_while_stalled >= ACKED_WHILE_STALLED_AT_LEAST,
        "{acked_while_stalled} bytes acknowledged while the disk took no writes: \
         appends waited on the disk itself, not on a bound of memory"
    );
    assert!(
        mount.held_requests() > 0,
        "the disk was stalled, yet no write waited on it"
    );
    assert!(
        acked_while_stalled <= ACKED_WHILE_STALLED_AT_MOST,
        "{acked_while_stalled} bytes acknowledged while the disk took no writes, \
         at most {ACKED_WHILE_STALLED_AT_MOST} expected"
    );
    println!(
        "{acked_while_stalled} of {TOTAL_BYTES} bytes acknowledged while the disk was stalled"
    );

    mount.resume_disk();
    while let Some(joined) = writers.join_next().await {
        joined.expect("writer");
    }
    assert_eq!(*acked.borrow(), TOTAL_BYTES);
    for writer in 0..WRITERS {
        check_log(&mut client, writer).await;
    }
    drop(client);
    server.stop().await;
}
