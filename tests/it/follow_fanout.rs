//! Fan-out: a thousand followers of one session each receive every entry.

use crate::common::follow::{follow, request, until_caught_up, until_ended};
use crate::common::{TestServer, append, end_session, start_session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_followers_each_receive_every_entry() {
    const FOLLOWERS: usize = 1_000;
    const CONNECTIONS: usize = 10;
    let server = TestServer::start().await;
    let mut writer = server.client().await;
    let id = start_session(&mut writer, "fanout").await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(server.client().await);
    }
    let mut followers = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(FOLLOWERS);
    for index in 0..FOLLOWERS {
        let mut client = clients[index % CONNECTIONS].clone();
        let id = id.clone();
        let ready_tx = ready_tx.clone();
        followers.spawn(async move {
            let mut events = follow(&mut client, request(&id, 0)).await;
            let (mut seqs, _) = until_caught_up(&mut events).await;
            ready_tx.send(()).await.expect("ready");
            let (live, _) = until_ended(&mut events).await;
            seqs.extend(live.iter().map(|entry| entry.seq));
            seqs
        });
    }
    for _ in 0..FOLLOWERS {
        ready_rx.recv().await.expect("a follower is caught up");
    }
    for batch in 0..20 {
        let messages: Vec<String> = (0..10).map(|i| format!("b{batch}-{i}")).collect();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        append(&mut writer, &id, &refs).await;
    }
    end_session(&mut writer, &id, "done").await;
    let expected: Vec<u64> = (1..=201).collect();
    let mut finished = 0;
    while let Some(seqs) = followers.join_next().await {
        assert_eq!(seqs.expect("follower task"), expected);
        finished += 1;
    }
    assert_eq!(finished, FOLLOWERS);
    server.shutdown().await;
}
