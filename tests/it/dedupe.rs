//! Retries by `batch_id` and optimistic concurrency by `expected_last_seq`.

use futures::future::join_all;
use sessionlog::pb;
use tonic::Code;

use crate::common::{
    Client, TestServer, append, append_with_batch_id, entry, expect_code, get_session, messages,
    read_all, start_session,
};

fn with_expected(session_id: &str, expected_last_seq: u64, message: &str) -> pb::AppendRequest {
    pb::AppendRequest {
        session_id: session_id.to_owned(),
        entries: vec![entry(message)],
        expected_last_seq: Some(expected_last_seq),
        ..Default::default()
    }
}

async fn clients(server: &TestServer, count: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(server.client().await);
    }
    clients
}

#[tokio::test]
async fn retrying_a_batch_id_returns_the_original_seqs_and_stores_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "retry").await;
    append(&mut client, &id, &["before"]).await;

    let original = append_with_batch_id(&mut client, &id, "batch-1", &["a", "b", "c"]).await;
    assert_eq!(
        (original.first_seq, original.last_seq, original.duplicate),
        (2, 4, false)
    );
    append(&mut client, &id, &["after"]).await;
    let before_retry = get_session(&mut client, &id).await;

    for retry_messages in [&["a", "b", "c"][..], &["different", "content"][..]] {
        let retry = append_with_batch_id(&mut client, &id, "batch-1", retry_messages).await;
        assert_eq!(
            (retry.first_seq, retry.last_seq, retry.duplicate),
            (2, 4, true),
            "a retry returns the original seqs"
        );
    }
    let after_retry = get_session(&mut client, &id).await;
    assert_eq!(after_retry.last_seq, 5);
    assert_eq!(after_retry.entry_count, before_retry.entry_count);
    assert_eq!(after_retry.size_bytes, before_retry.size_bytes);
    assert_eq!(
        messages(&read_all(&mut client, &id).await),
        ["before", "a", "b", "c", "after"]
    );

    // A new batch id is stored as usual.
    let fresh = append_with_batch_id(&mut client, &id, "batch-2", &["d"]).await;
    assert_eq!(
        (fresh.first_seq, fresh.last_seq, fresh.duplicate),
        (6, 6, false)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_same_batch_id_in_another_session_is_independent() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = start_session(&mut client, "first").await;
    let second = start_session(&mut client, "second").await;
    append(&mut client, &first, &["x", "y"]).await;

    let in_first = append_with_batch_id(&mut client, &first, "shared", &["one"]).await;
    assert_eq!(
        (in_first.first_seq, in_first.last_seq, in_first.duplicate),
        (3, 3, false)
    );
    let in_second = append_with_batch_id(&mut client, &second, "shared", &["uno", "dos"]).await;
    assert_eq!(
        (in_second.first_seq, in_second.last_seq, in_second.duplicate),
        (1, 2, false),
        "another session's batch id does not make this one a duplicate"
    );
    // Each session recognises its own copy.
    let retry_first = append_with_batch_id(&mut client, &first, "shared", &["one"]).await;
    assert_eq!(
        (
            retry_first.first_seq,
            retry_first.last_seq,
            retry_first.duplicate
        ),
        (3, 3, true)
    );
    let retry_second = append_with_batch_id(&mut client, &second, "shared", &["uno"]).await;
    assert_eq!(
        (
            retry_second.first_seq,
            retry_second.last_seq,
            retry_second.duplicate
        ),
        (1, 2, true)
    );
    assert_eq!(
        messages(&read_all(&mut client, &first).await),
        ["x", "y", "one"]
    );
    assert_eq!(
        messages(&read_all(&mut client, &second).await),
        ["uno", "dos"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn expected_last_seq_match_succeeds_and_mismatch_is_aborted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "occ").await;

    let first = client
        .append(with_expected(&id, 0, "first"))
        .await
        .expect("expected 0 on a new session")
        .into_inner();
    assert_eq!((first.first_seq, first.last_seq), (1, 1));

    for stale in [0, 2, 99] {
        let status = expect_code(
            client.append(with_expected(&id, stale, "stale")).await,
            Code::Aborted,
        );
        assert!(!status.message().is_empty());
        let session = get_session(&mut client, &id).await;
        assert_eq!(
            (session.last_seq, session.entry_count),
            (1, 1),
            "an aborted append stores nothing"
        );
    }

    let second = client
        .append(with_expected(&id, 1, "second"))
        .await
        .expect("expected matches")
        .into_inner();
    assert_eq!((second.first_seq, second.last_seq), (2, 2));
    assert_eq!(
        messages(&read_all(&mut client, &id).await),
        ["first", "second"]
    );

    // A retry of a stored batch is a duplicate even though its expected
    // last_seq no longer matches.
    let with_both = pb::AppendRequest {
        batch_id: "occ-batch".into(),
        ..with_expected(&id, 2, "third")
    };
    let stored = client
        .append(with_both.clone())
        .await
        .expect("append with both")
        .into_inner();
    assert_eq!(
        (stored.first_seq, stored.last_seq, stored.duplicate),
        (3, 3, false)
    );
    let retried = client
        .append(with_both)
        .await
        .expect("retry of a stored batch")
        .into_inner();
    assert_eq!(
        (retried.first_seq, retried.last_seq, retried.duplicate),
        (3, 3, true)
    );
    assert_eq!(get_session(&mut client, &id).await.last_seq, 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_appends_with_the_same_expected_last_seq_let_exactly_one_win() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "race").await;
    let mut racers = clients(&server, 8).await;
    for round in 0..20u64 {
        let results = join_all(racers.iter_mut().enumerate().map(|(racer, client)| {
            let request = with_expected(&id, round, &format!("round {round} racer {racer}"));
            async move { client.append(request).await }
        }))
        .await;
        let mut winners = 0;
        for result in results {
            match result {
                Ok(response) => {
                    let response = response.into_inner();
                    assert_eq!(
                        (response.first_seq, response.last_seq),
                        (round + 1, round + 1)
                    );
                    winners += 1;
                }
                Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    let session = get_session(&mut client, &id).await;
    assert_eq!((session.last_seq, session.entry_count), (20, 20));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_of_one_batch_id_store_it_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "retries").await;
    let mut racers = clients(&server, 8).await;
    for round in 0..10u64 {
        let batch_id = format!("batch-{round}");
        let results = join_all(racers.iter_mut().map(|client| {
            let request = pb::AppendRequest {
                session_id: id.clone(),
                entries: vec![entry("x"), entry("y"), entry("z")],
                batch_id: batch_id.clone(),
                ..Default::default()
            };
            async move { client.append(request).await.expect("append").into_inner() }
        }))
        .await;
        let originals = results.iter().filter(|r| !r.duplicate).count();
        assert_eq!(originals, 1, "round {round}: stored exactly once");
        for result in &results {
            assert_eq!(
                (result.first_seq, result.last_seq),
                (round * 3 + 1, round * 3 + 3)
            );
        }
    }
    let session = get_session(&mut client, &id).await;
    assert_eq!((session.last_seq, session.entry_count), (30, 30));
    server.shutdown().await;
}

#[tokio::test]
async fn the_dedupe_window_keeps_at_least_the_last_1000_batch_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "window").await;
    for i in 0..=1_000u64 {
        let response =
            append_with_batch_id(&mut client, &id, &format!("b{i}"), &[&format!("m{i}")]).await;
        assert_eq!(
            (response.first_seq, response.last_seq, response.duplicate),
            (i + 1, i + 1, false)
        );
    }
    // The newest 1,000 (b1..=b1000) are all still recognised.
    for i in (1..=1_000u64).rev() {
        let retry = append_with_batch_id(&mut client, &id, &format!("b{i}"), &["retry"]).await;
        assert_eq!(
            (retry.first_seq, retry.last_seq, retry.duplicate),
            (i + 1, i + 1, true),
            "b{i} fell out of the window"
        );
    }
    let session = get_session(&mut client, &id).await;
    assert_eq!((session.last_seq, session.entry_count), (1_001, 1_001));
    server.shutdown().await;
}

#[tokio::test]
async fn batch_ids_up_to_128_bytes_are_accepted_and_longer_ones_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "long-ids").await;
    let longest = "k".repeat(128);
    let stored = append_with_batch_id(&mut client, &id, &longest, &["a"]).await;
    assert!(!stored.duplicate);
    assert!(
        append_with_batch_id(&mut client, &id, &longest, &["a"])
            .await
            .duplicate
    );
    let status = client
        .append(pb::AppendRequest {
            session_id: id.clone(),
            entries: vec![entry("b")],
            batch_id: "k".repeat(129),
            ..Default::default()
        })
        .await
        .expect_err("a 129-byte batch id is over the limit");
    assert!(
        matches!(
            status.code(),
            Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{status:?}"
    );
    assert_eq!(get_session(&mut client, &id).await.last_seq, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_retry_after_a_restart_is_still_a_duplicate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "restart").await;
    let mut originals = Vec::new();
    for i in 0..5 {
        originals.push(append_with_batch_id(&mut client, &id, &format!("b{i}"), &["x", "y"]).await);
    }
    drop(client);
    server.shutdown().await;

    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    for (i, original) in originals.iter().enumerate() {
        let retry = append_with_batch_id(&mut client, &id, &format!("b{i}"), &["x", "y"]).await;
        assert_eq!(
            (retry.first_seq, retry.last_seq, retry.duplicate),
            (original.first_seq, original.last_seq, true)
        );
    }
    let session = get_session(&mut client, &id).await;
    assert_eq!((session.last_seq, session.entry_count), (10, 10));

    // The window keeps working after the restart: the newest 1,000 ids,
    // from before and after it, are recognised.
    for i in 5..1_000u64 {
        let response = append_with_batch_id(&mut client, &id, &format!("b{i}"), &["z"]).await;
        assert!(!response.duplicate);
    }
    for i in 0..1_000u64 {
        let retry = append_with_batch_id(&mut client, &id, &format!("b{i}"), &["again"]).await;
        assert!(retry.duplicate, "b{i} fell out of the window");
    }
    let session = get_session(&mut client, &id).await;
    assert_eq!(session.last_seq, 10 + 995);
    server.shutdown().await;
}
