//! Slow followers: served from the store, never buffered without bound.
//! The test runs in a process of its own, so the memory it measures is
//! its own.

use crate::common;
use crate::common::follow::{follow, request, until_caught_up, until_ended};
use crate::common::{TestServer, end_session, entry, own_process, start_session};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss field")
        .parse()
        .expect("pages");
    pages * 4096
}

/// 10 followers read nothing while 100,000 entries (~13 MB encoded) are
/// appended. A server that buffered for them would hold 10 copies (over
/// 130 MB more); one served from the store holds a flow-control window
/// each. Two of them then read everything; the rest just leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_followers_are_served_from_the_store_with_bounded_memory() {
    const TEST: &str = "follow_slow::slow_followers_are_served_from_the_store_with_bounded_memory";
    if !own_process::is_own_process(TEST) {
        own_process::run(TEST).await;
        return;
    }
    const ENTRIES: u64 = 100_000;
    const FOLLOWERS: usize = 10;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "slow").await;
    let mut lagging = Vec::new();
    for _ in 0..FOLLOWERS {
        let mut follower_client = server.client().await;
        let mut events = follow(&mut follower_client, request(&id, 0)).await;
        assert_eq!(until_caught_up(&mut events).await, (vec![], 0));
        lagging.push((follower_client, events));
    }
    let before = resident_bytes();
    let payload = "x".repeat(100);
    for batch in 0..ENTRIES / 1_000 {
        let entries = (0..1_000)
            .map(|i| entry(format!("{batch}-{i}-{payload}")))
            .collect();
        common::append_entries(&mut client, &id, entries).await;
    }
    let grown = resident_bytes().saturating_sub(before);
    println!(
        "resident memory (server, sled cache and clients) grew {} MiB while {FOLLOWERS} followers lagged {ENTRIES} entries",
        grown >> 20
    );
    assert!(grown < 100 << 20, "memory grew {} MiB", grown >> 20);
    end_session(&mut client, &id, "done").await;
    let expected: Vec<u64> = (1..=ENTRIES + 1).collect();
    let mut readers = tokio::task::JoinSet::new();
    for (_client, mut events) in lagging.into_iter().take(2) {
        readers.spawn(async move {
            let (entries, _) = until_ended(&mut events).await;
            entries.iter().map(|entry| entry.seq).collect::<Vec<u64>>()
        });
    }
    while let Some(seqs) = readers.join_next().await {
        assert!(
            seqs.expect("reader") == expected,
            "every entry once, in order"
        );
    }
    server.shutdown().await;
}
