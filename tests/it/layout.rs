//! Stores written by earlier layouts: a layout-1 store (an entry per key)
//! opens without a migration, reads the same, takes appends as blocks, and
//! survives a restart, and its logs are sealed (compressed) without a
//! change to what reads return; layouts 2 and 3 are marked 4 (a log's
//! counters then move into its last block with the next append); a layout
//! this version does not know is refused.

use prost::Message;
use sessionlog::testing::{LogCounters, State, StoredEntry, StoredSession};

use crate::common;
use crate::common::FsyncPolicy;
use crate::common::request;

/// A sled database in `dir` marked as a sessionlog store, as every layout
/// marks it (the `SESSIONLOG` file, then the layout key inside).
fn marked_db(dir: &std::path::Path, layout: &[u8]) -> sled::Db {
    std::fs::write(dir.join("SESSIONLOG"), "a sessionlog store\n").expect("marker file");
    let db = sled::Config::new().path(dir).open().expect("sled");
    db.insert(b"sessionlog.format", layout).expect("layout");
    db
}

/// Writes what a layout-1 binary left: a session record and a log tree
/// with one `StoredEntry` per big-endian seq, and the counters.
fn write_layout_one(dir: &std::path::Path, entries: u64) {
    let db = marked_db(dir, b"1");
    let record = StoredSession {
        id: "old".into(),
        app_name: "before-blocks".into(),
        state: State::Active.into(),
        ..Default::default()
    };
    db.open_tree("sessions")
        .expect("sessions")
        .insert(b"old", record.encode_to_vec())
        .expect("record");
    let log = db.open_tree("log/old").expect("log");
    let mut size_bytes = 0;
    for seq in 1..=entries {
        let bytes = StoredEntry {
            seq,
            message: format!("entry {seq}"),
            ..Default::default()
        }
        .encode_to_vec();
        size_bytes += bytes.len() as u64;
        log.insert(seq.to_be_bytes(), bytes).expect("entry");
    }
    let counters = LogCounters {
        last_seq: entries,
        entry_count: entries,
        size_bytes,
        batch_ids: 0,
    };
    log.insert([0xff, b'c'], counters.encode_to_vec())
        .expect("counters");
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_one_store_reads_and_appends_without_migration() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_layout_one(dir.path(), 50);

    let server = common::TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let before = common::read_all(&mut client, "old").await;
    let messages: Vec<String> = before.iter().map(|entry| entry.message.clone()).collect();
    let expected: Vec<String> = (1..=50).map(|seq| format!("entry {seq}")).collect();
    assert_eq!(messages, expected);
    let appended = client
        .append(request::append(
            "old",
            (0..30).map(|i| common::entry(format!("new {i}"))).collect(),
        ))
        .await
        .expect("append")
        .into_inner();
    assert_eq!((appended.first_seq, appended.last_seq), (51, 80));
    server.shutdown().await;

    let server = common::TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let after = common::read_all(&mut client, "old").await;
    let seqs: Vec<u64> = after.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
    assert_eq!(after[49].message, "entry 50");
    assert_eq!(after[50].message, "new 0");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_layout_is_refused_with_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        marked_db(dir.path(), b"9").flush().expect("flush");
    }
    let opened = sessionlog::testing::Store::open(&sessionlog::server::StoreOptions {
        path: dir.path().to_path_buf(),
        cache_bytes: 8 << 20,
    });
    let err = opened.expect_err("layout 9 is refused");
    assert!(err.to_string().contains("\"9\""), "{err}");
}

/// Layout 3 added the clean-shutdown mark, which a layout-2 binary would
/// ignore (and could append behind counters the mark vouches for); layout
/// 4 added sealed blocks, which a layout-3 binary cannot read; layout 5
/// logs changes to sled's table of trees as links, which a layout-4 binary's
/// sled does not read. So opening an older store marks it 5, which those
/// binaries refuse by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_stores_are_marked_five_on_open() {
    for old in [&b"2"[..], b"3", b"4"] {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            marked_db(dir.path(), old).flush().expect("flush");
        }
        let server = common::TestServer::builder()
            .data_dir(dir.path())
            .fsync(FsyncPolicy::Always)
            .start()
            .await;
        server.shutdown().await;
        let db = sled::open(dir.path()).expect("reopen");
        let layout = db.get(b"sessionlog.format").expect("read").expect("marked");
        assert_eq!(layout.as_ref(), b"5");
    }
}

/// The values of a session's log tree below the metadata keys.
fn log_values(dir: &std::path::Path, session_id: &str) -> Vec<Vec<u8>> {
    let db = sled::open(dir).expect("reopen");
    let log = db.open_tree(format!("log/{session_id}")).expect("log");
    log.range([0u8; 8]..[0x80, 0, 0, 0, 0, 0, 0, 0])
        .map(|item| item.expect("value").1.to_vec())
        .collect()
}

/// A layout-1 log (an entry per key) once its session ends is sealed into
/// compressed blocks; it reads the same, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_one_log_is_sealed_once_its_session_ends_and_reads_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_layout_one(dir.path(), 3000);
    let unsealed = log_values(dir.path(), "old");
    assert_eq!(unsealed.len(), 3000);

    let server = common::TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    let before = common::read_all(&mut client, "old").await;
    client
        .end_session(sessionlog::pb::EndSessionRequest {
            session_id: "old".into(),
            reason: "done".into(),
        })
        .await
        .expect("end");
    let sessions = server.sessions.clone();
    tokio::task::spawn_blocking(move || sessions.wait_sealer_idle())
        .await
        .expect("sealed");
    let sealed_read = common::read_all(&mut client, "old").await;
    assert_eq!(sealed_read[..3000], before[..]);
    assert_eq!(sealed_read.len(), 3001);
    server.shutdown().await;

    let sealed = log_values(dir.path(), "old");
    assert!(
        sealed.len() * 20 < unsealed.len(),
        "{} values",
        sealed.len()
    );
    // A last run of only the end entry's small block may not compress. A
    // sealed run that ends with the log's last block starts with the
    // counters that block carried (field 2, under 128 bytes).
    let is_sealed = |value: &&Vec<u8>| match value.as_slice() {
        [b'Z', ..] => true,
        [0x12, len, rest @ ..] => rest.get(usize::from(*len)) == Some(&b'Z'),
        _ => false,
    };
    let plain = sealed.iter().filter(|value| !is_sealed(value));
    assert!(plain.count() <= 1);
    let on_disk = |values: &[Vec<u8>]| values.iter().map(Vec::len).sum::<usize>();
    assert!(on_disk(&sealed) * 4 < on_disk(&unsealed));

    let server = common::TestServer::builder()
        .data_dir(dir.path())
        .fsync(FsyncPolicy::Always)
        .start()
        .await;
    let mut client = server.client().await;
    assert_eq!(common::read_all(&mut client, "old").await, sealed_read);
    server.shutdown().await;
}

/// The vendored sled logs each change to its table of trees as a link and
/// writes the table whole every 128 changes (layout 5): across several
/// consolidations, creates and drops, a reopened database has exactly the
/// trees left, each with its own contents, and so has the next one.
#[test]
fn sleds_table_of_trees_comes_back_whole_from_its_links() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = || common::open_sled(dir.path());
    let name = |i: u32| format!("log/{i:05}");
    let mut kept = std::collections::BTreeSet::new();
    {
        let db = open();
        for i in 0..700u32 {
            db.open_tree(name(i))
                .expect("create")
                .insert(b"k", &i.to_be_bytes())
                .expect("insert");
            kept.insert(i);
            if i % 7 == 3 {
                assert!(db.drop_tree(name(i - 3)).expect("drop"));
                kept.remove(&(i - 3));
            }
        }
        db.flush().expect("flush");
    }
    for _ in 0..2 {
        let db = open();
        let names: std::collections::BTreeSet<String> = db
            .tree_names()
            .into_iter()
            .filter_map(|n| String::from_utf8(n.to_vec()).ok())
            .filter(|n| n.starts_with("log/"))
            .collect();
        assert_eq!(names, kept.iter().map(|&i| name(i)).collect());
        for &i in &kept {
            let value = db.open_tree(name(i)).expect("open").get(b"k").expect("get");
            assert_eq!(value.as_deref(), Some(&i.to_be_bytes()[..]), "tree {i}");
        }
        // The next start sees what this one left, changed by one more tree.
        db.open_tree(name(9999))
            .expect("create")
            .insert(b"k", &9999u32.to_be_bytes())
            .expect("insert");
        kept.insert(9999);
        db.flush().expect("flush");
    }
}

/// The vendored sled gives the blocks of the segments it freed back to the
/// filesystem when asked (`punch_free_segments`, which the sealer calls
/// after `collect_garbage_step`): once most of what was written is
/// removed, the file holds far fewer blocks, and it reopens with
/// everything that was kept.
#[test]
fn sled_gives_freed_segments_back_and_reopens_whole() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let open = || common::open_sled(dir.path());
    let allocated = || {
        std::fs::metadata(dir.path().join("db"))
            .expect("db file")
            .blocks()
            * 512
    };
    let value = vec![7u8; 6000];
    let kept = |i: usize| i.is_multiple_of(10);
    let (full, punched) = {
        let db = open();
        let trees: Vec<sled::Tree> = (0..40)
            .map(|i| db.open_tree(format!("log/{i}")).expect("tree"))
            .collect();
        for key in 0..200u32 {
            for tree in &trees {
                tree.insert(key.to_be_bytes(), value.as_slice())
                    .expect("insert");
            }
        }
        db.flush().expect("flush");
        let full = allocated();
        for (i, tree) in trees.iter().enumerate() {
            if !kept(i) {
                tree.clear().expect("clear");
            }
        }
        db.flush().expect("flush");
        // Freeing a segment waits for the one its pages moved to to be
        // written out, which the flushes bring about: a bounded number of
        // rounds, until half of the blocks are back.
        let mut punched = 0;
        for _ in 0..200 {
            while db.collect_garbage_step().expect("gc") {}
            db.flush().expect("flush");
            punched += db.punch_free_segments().expect("punch");
            if allocated() * 2 < full {
                break;
            }
        }
        (full, punched)
    };
    let after = allocated();
    assert!(punched > 0, "no free segment was punched");
    assert!(
        after * 2 < full,
        "the file holds {after} of its {full} bytes of blocks after 90% of its data was removed"
    );
    let db = open();
    for i in (0..40).filter(|&i| kept(i)) {
        let tree = db.open_tree(format!("log/{i}")).expect("tree");
        assert_eq!(tree.len(), 200, "tree {i}");
        for item in tree.iter() {
            assert_eq!(item.expect("read").1.as_ref(), value.as_slice());
        }
    }
}

/// A sled snapshot stores a page's frags with a one-byte count, so the
/// meta page's links must stay under it: whatever number of links the
/// table carries when sled stops (every count around the consolidation
/// point), the database opens, and opens again after that open wrote its
/// snapshot, with every tree.
#[test]
fn sleds_table_of_trees_reopens_at_every_link_count() {
    for trees in 120..=136u32 {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = || common::open_sled(dir.path());
        {
            let db = open();
            for i in 0..trees {
                db.open_tree(format!("log/{i}")).expect("create");
            }
            db.flush().expect("flush");
        }
        for _ in 0..2 {
            let db = open();
            let logs = db
                .tree_names()
                .iter()
                .filter(|name| name.starts_with(b"log/"))
                .count();
            assert_eq!(logs, trees as usize, "{trees} trees");
        }
    }
}
