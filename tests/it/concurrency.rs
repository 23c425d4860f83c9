//! Many clients appending to one session at once: seqs stay exactly
//! `1..=N`, every batch lands whole at contiguous seqs, and readers never
//! see part of a batch. Calls given up on mid-flight (a client that goes
//! away) keep all of that: the store work they started finishes under the
//! session's locks before the next write may begin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;
use sessionlog::pb;
use sessionlog::testing::{
    AppendBatch, END_LOGGER, NewEntry, SessionError, StoredEntry, StoredSession,
};

use crate::common;
use crate::common::request;
use crate::common::{TestServer, entry, get_session, read_all, start_session};

const WRITERS: usize = 16;
const BATCHES_PER_WRITER: usize = 100;
const MAX_BATCH: usize = 50;

fn message(writer: usize, batch: usize, index: usize) -> String {
    format!("w{writer}-b{batch}-{index}")
}

/// `(writer, batch, index)` of a message made by `message`.
fn parse(message: &str) -> (usize, usize, usize) {
    let mut parts = message.split('-');
    let mut next = |prefix: &str| -> usize {
        let part = parts.next().expect("three parts");
        part.strip_prefix(prefix)
            .unwrap_or(part)
            .parse()
            .unwrap_or_else(|_| panic!("unexpected message {message:?}"))
    };
    (next("w"), next("b"), next(""))
}

/// A batch as its writer saw it acknowledged.
#[derive(Debug, Clone, Copy)]
struct Acked {
    writer: usize,
    batch: usize,
    first_seq: u64,
    last_seq: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_appending_at_once_get_contiguous_non_overlapping_batches() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "concurrency").await;

    let sizes: Arc<Vec<Vec<usize>>> = Arc::new({
        let mut rng = rand::rng();
        (0..WRITERS)
            .map(|_| {
                (0..BATCHES_PER_WRITER)
                    .map(|_| rng.random_range(1..=MAX_BATCH))
                    .collect()
            })
            .collect()
    });
    let total: usize = sizes.iter().flatten().sum();

    // Every writer on its own connection, released together.
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut client = server.client().await;
        let (id, sizes, start) = (id.clone(), sizes.clone(), start.clone());
        writers.push(tokio::spawn(async move {
            start.wait().await;
            let mut acked = Vec::with_capacity(BATCHES_PER_WRITER);
            for (batch, &size) in sizes[writer].iter().enumerate() {
                let response = client
                    .append(request::append(
                        &id,
                        (0..size)
                            .map(|i| entry(message(writer, batch, i)))
                            .collect(),
                    ))
                    .await
                    .expect("concurrent append")
                    .into_inner();
                assert!(!response.duplicate);
                acked.push(Acked {
                    writer,
                    batch,
                    first_seq: response.first_seq,
                    last_seq: response.last_seq,
                });
            }
            acked
        }));
    }

    // A reader racing the writers only ever sees whole batches: the newest
    // visible entry is the last entry of its batch, and seqs have no gaps.
    let writers_done = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut client = server.client().await;
        let (id, sizes, done) = (id.clone(), sizes.clone(), writers_done.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let page = client
                    .read(pb::ReadRequest {
                        session_id: id.clone(),
                        tail: 100,
                        ..Default::default()
                    })
                    .await
                    .expect("read while appending")
                    .into_inner();
                reads += 1;
                let Some(newest) = page.entries.last() else {
                    assert_eq!(page.last_seq, 0);
                    continue;
                };
                assert_eq!(newest.seq, page.last_seq, "tail ends at last_seq");
                let expected: Vec<u64> =
                    (page.last_seq + 1 - page.entries.len() as u64..=page.last_seq).collect();
                let got: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
                assert_eq!(got, expected, "a visible gap");
                let (writer, batch, index) = parse(&newest.message);
                assert_eq!(
                    index + 1,
                    sizes[writer][batch],
                    "a reader saw part of batch w{writer}-b{batch} (last_seq {})",
                    page.last_seq
                );
            }
            reads
        })
    };

    start.wait().await;
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer task"));
    }
    writers_done.store(true, Ordering::Release);
    let reads = reader.await.expect("reader task");
    assert!(reads > 0);

    // Acknowledged ranges: each batch contiguous and as long as the batch,
    // and together they tile 1..=N without overlap.
    assert_eq!(acked.len(), WRITERS * BATCHES_PER_WRITER);
    for ack in &acked {
        assert_eq!(
            ack.last_seq - ack.first_seq + 1,
            sizes[ack.writer][ack.batch] as u64,
            "{ack:?}"
        );
    }
    // Each writer's own batches are acknowledged in its order.
    for writer in 0..WRITERS {
        let mine: Vec<&Acked> = acked.iter().filter(|a| a.writer == writer).collect();
        assert!(mine.windows(2).all(|p| p[0].last_seq < p[1].first_seq));
    }
    acked.sort_by_key(|ack| ack.first_seq);
    let mut next = 1;
    for ack in &acked {
        assert_eq!(ack.first_seq, next, "gap or overlap at {ack:?}");
        next = ack.last_seq + 1;
    }
    let n = total as u64;
    assert_eq!(next - 1, n);

    // The stored log: seqs exactly 1..=N, each batch's entries in order at
    // exactly its acknowledged seqs.
    let entries = read_all(&mut client, &id).await;
    assert_eq!(entries.len(), total);
    assert!(
        entries.iter().map(|e| e.seq).eq(1..=n),
        "seqs are not exactly 1..=N"
    );
    for ack in &acked {
        let stored = &entries[(ack.first_seq - 1) as usize..ack.last_seq as usize];
        for (i, entry) in stored.iter().enumerate() {
            assert_eq!(entry.message, message(ack.writer, ack.batch, i), "{ack:?}");
        }
    }

    let session = get_session(&mut client, &id).await;
    assert_eq!(session.last_seq, n);
    assert_eq!(session.entry_count, n);
    let encoded: usize = entries.iter().map(prost::Message::encoded_len).sum();
    assert_eq!(session.size_bytes, encoded as u64);
    server.shutdown().await;
}

/// Runs `work` until it finishes or until `polls` more polls have passed,
/// whichever is first, and drops it then: what the server does with a call
/// whose client went away. 0 gives up after the first poll.
async fn give_up_after<T>(polls: u32, work: impl Future<Output = T>) -> Option<T> {
    let deadline = async {
        for _ in 0..polls {
            tokio::task::yield_now().await;
        }
    };
    tokio::select! {
        biased;
        done = work => Some(done),
        () = deadline => None,
    }
}

/// How one append of `appends_given_up_mid_flight_...` is made.
#[derive(Debug, Clone, Copy)]
enum Attempt {
    /// Through the client, awaited to the answer.
    Awaited,
    /// Through the client, dropped after this many polls: the server sees
    /// the stream reset and drops the call wherever it is.
    ClientGivesUp(u32),
    /// Straight to the sessions, dropped after this many polls: a precise
    /// point, often while the batch is being written.
    CallerGivesUp(u32),
}

const CANCEL_WRITERS: usize = 8;
const CANCEL_BATCHES: usize = 400;

fn new_entry(message: String) -> NewEntry {
    NewEntry::Decoded(StoredEntry {
        logger: "test".to_owned(),
        message,
        ..StoredEntry::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_given_up_mid_flight_land_whole_or_not_at_all_and_seqs_stay_contiguous() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder().data_dir(data.path()).start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "given-up").await;

    let plans: Vec<Vec<(usize, Attempt)>> = {
        let mut rng = rand::rng();
        (0..CANCEL_WRITERS)
            .map(|_| {
                (0..CANCEL_BATCHES)
                    .map(|_| {
                        let size = rng.random_range(1..=4);
                        let attempt = match rng.random_range(0..4) {
                            0 => Attempt::Awaited,
                            1 => Attempt::ClientGivesUp(rng.random_range(0..64)),
                            _ => Attempt::CallerGivesUp(rng.random_range(0..16)),
                        };
                        (size, attempt)
                    })
                    .collect()
            })
            .collect()
    };

    let start = Arc::new(tokio::sync::Barrier::new(CANCEL_WRITERS + 1));
    let mut writers = Vec::new();
    for (writer, plan) in plans.iter().cloned().enumerate() {
        let mut client = server.client().await;
        let (sessions, id, start) = (server.sessions.clone(), id.clone(), start.clone());
        writers.push(tokio::spawn(async move {
            start.wait().await;
            let mut acked = Vec::new();
            for (batch, (size, attempt)) in plan.into_iter().enumerate() {
                let messages: Vec<String> = (0..size).map(|i| message(writer, batch, i)).collect();
                let answered = match attempt {
                    Attempt::Awaited | Attempt::ClientGivesUp(_) => {
                        let request = pb::AppendRequest {
                            session_id: id.clone(),
                            entries: messages.into_iter().map(entry).collect(),
                            ..Default::default()
                        };
                        let polls = match attempt {
                            Attempt::ClientGivesUp(polls) => polls,
                            _ => u32::MAX,
                        };
                        give_up_after(polls, client.append(request))
                            .await
                            .map(|answer| {
                                let answer = answer.expect("append through the client");
                                (answer.get_ref().first_seq, answer.get_ref().last_seq)
                            })
                    }
                    Attempt::CallerGivesUp(polls) => {
                        let batch = AppendBatch {
                            session_id: id.clone(),
                            entries: messages.into_iter().map(new_entry).collect(),
                            ..AppendBatch::default()
                        };
                        give_up_after(polls, sessions.append(batch))
                            .await
                            .map(|outcome| {
                                let outcome = outcome.expect("append to the sessions");
                                (outcome.first_seq, outcome.last_seq)
                            })
                    }
                };
                if let Some((first_seq, last_seq)) = answered {
                    acked.push(Acked {
                        writer,
                        batch,
                        first_seq,
                        last_seq,
                    });
                }
            }
            acked
        }));
    }
    start.wait().await;
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer task"));
    }
    // A call given up on through the client may still reach the server
    // after its writer has moved on (the request was sent, the answer not
    // awaited), so it can land after any append made now. A clean stop
    // finishes every call the server took, and nothing lands after it; the
    // restart also checks what is stored against the counters it loads.
    drop(client);
    server.shutdown().await;
    let server = TestServer::builder().data_dir(data.path()).start().await;
    let mut client = server.client().await;
    let last = server
        .sessions
        .append(AppendBatch {
            session_id: id.clone(),
            entries: vec![new_entry("last".to_owned())],
            ..AppendBatch::default()
        })
        .await
        .expect("a last append");

    // Seqs are exactly 1..=N, the last append got N.
    let entries = read_all(&mut client, &id).await;
    let n = entries.len() as u64;
    assert!(
        entries.iter().map(|e| e.seq).eq(1..=n),
        "stored seqs are not exactly 1..=N"
    );
    assert_eq!((last.first_seq, last.last_seq), (n, n));

    // Each batch that landed is whole, in order, at contiguous seqs, once.
    let mut landed: BTreeMap<(usize, usize), Vec<(u64, usize)>> = BTreeMap::new();
    for entry in &entries[..entries.len() - 1] {
        let (writer, batch, index) = parse(&entry.message);
        landed
            .entry((writer, batch))
            .or_default()
            .push((entry.seq, index));
    }
    for (&(writer, batch), stored) in &landed {
        let size = plans[writer][batch].0;
        let first = stored[0].0;
        let expected: Vec<(u64, usize)> = (0..size).map(|i| (first + i as u64, i)).collect();
        assert_eq!(
            stored, &expected,
            "batch w{writer}-b{batch} of {size} landed in part, twice or out of order"
        );
    }
    // Every answered batch is where its answer said.
    for ack in &acked {
        let stored = landed
            .get(&(ack.writer, ack.batch))
            .unwrap_or_else(|| panic!("acknowledged {ack:?} is not stored"));
        assert_eq!(
            (stored[0].0, stored[stored.len() - 1].0),
            (ack.first_seq, ack.last_seq),
            "{ack:?}"
        );
    }
    let given_up = CANCEL_WRITERS * CANCEL_BATCHES - acked.len();
    assert!(
        given_up > 0,
        "no call was given up on; the test tested nothing"
    );

    // The counters in memory are those of the stored log.
    let session = get_session(&mut client, &id).await;
    assert_eq!(session.last_seq, n);
    assert_eq!(session.entry_count, n);
    let encoded: usize = entries.iter().map(prost::Message::encoded_len).sum();
    assert_eq!(session.size_bytes, encoded as u64);
    server.shutdown().await;
}

const LIFECYCLE_ROUNDS: u32 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_and_deletes_given_up_mid_flight_finish_before_the_next_write() {
    let server = TestServer::start().await;
    let sessions = server.sessions.clone();
    let mut client = server.client().await;
    let id = "given-up-lifecycle";
    let draft = || StoredSession {
        id: id.to_owned(),
        app_name: "given-up".to_owned(),
        ..StoredSession::default()
    };
    let polls: Vec<(u32, u32)> = {
        let mut rng = rand::rng();
        (0..LIFECYCLE_ROUNDS)
            .map(|_| (rng.random_range(0..32), rng.random_range(0..12)))
            .collect()
    };
    sessions.start(draft()).await.expect("first start");
    for (round, &(end_polls, delete_polls)) in polls.iter().enumerate() {
        let before = sessions.get(id).expect("the session").counters.last_seq;
        // An appender races the end; it stops at the first refusal.
        let appender = {
            let sessions = sessions.clone();
            tokio::spawn(async move {
                let mut appended = 0u64;
                loop {
                    let batch = AppendBatch {
                        session_id: id.to_owned(),
                        entries: vec![new_entry(format!("r{round}-{appended}"))],
                        ..AppendBatch::default()
                    };
                    match sessions.append(batch).await {
                        Ok(_) => appended += 1,
                        Err(SessionError::Ended { .. }) => return appended,
                        Err(err) => panic!("append while ending: {err}"),
                    }
                }
            })
        };
        tokio::task::yield_now().await;
        if give_up_after(end_polls, sessions.end(id, "given up"))
            .await
            .is_none()
        {
            // Given up before it took the lock (nothing happened), or while
            // it ends the session (this waits for it).
            match sessions.end(id, "given up").await {
                Ok(_) | Err(SessionError::Ended { .. }) => {}
                Err(err) => panic!("round {round}: end: {err}"),
            }
        }
        let appended = appender.await.expect("appender");

        // The end entry is the last one, once, after every append.
        let entries = read_all(&mut client, id).await;
        let n = entries.len() as u64;
        assert!(entries.iter().map(|e| e.seq).eq(1..=n), "round {round}");
        assert_eq!(
            n,
            before + appended + 1,
            "round {round}: appends and the end entry"
        );
        let ends: Vec<u64> = entries
            .iter()
            .filter(|e| e.logger == END_LOGGER)
            .map(|e| e.seq)
            .collect();
        assert_eq!(ends, vec![n], "round {round}: the end entry is last, once");
        let session = get_session(&mut client, id).await;
        assert_eq!(
            (session.last_seq, session.entry_count),
            (n, n),
            "round {round}"
        );

        // A delete given up on is done, or not begun, when the next start
        // gets the id: never half done under a new session.
        let deleted = give_up_after(delete_polls, sessions.delete(id, false)).await;
        if let Some(result) = deleted {
            result.expect("delete");
        }
        match sessions.start(draft()).await {
            Ok(_) => {}
            Err(SessionError::AlreadyExists { .. }) => {
                assert!(
                    sessions.get(id).is_ok(),
                    "round {round}: start refused an id whose session is gone"
                );
                sessions.delete(id, false).await.expect("delete");
                sessions.start(draft()).await.expect("start after delete");
            }
            Err(err) => panic!("round {round}: start: {err}"),
        }
        // The new session's log is its own: a late drop of the old tree
        // would lose these.
        let outcome = sessions
            .append(AppendBatch {
                session_id: id.to_owned(),
                entries: (0..3).map(|i| new_entry(format!("fresh-{i}"))).collect(),
                ..AppendBatch::default()
            })
            .await
            .expect("append to the new session");
        assert_eq!(
            (outcome.first_seq, outcome.last_seq),
            (1, 3),
            "round {round}"
        );
        let entries = read_all(&mut client, id).await;
        assert_eq!(
            common::messages(&entries),
            vec!["fresh-0", "fresh-1", "fresh-2"],
            "round {round}"
        );
    }
    server.shutdown().await;
}

/// Single-entry appends from many clients to many sessions at once, as the
/// committer groups them into shared sled writes: every session's seqs are
/// exactly `1..=N` in each writer's order, a batch id sent twice at the
/// same moment is stored once, and all of it is what a restart finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_appends_to_many_sessions_land_once_each_and_survive_a_restart() {
    const SESSIONS: usize = 12;
    const APPENDS: usize = 40;
    /// Two writers per session send each batch id at the same moment; a
    /// third appends without ids.
    const WRITERS: usize = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(start_session(&mut client, "grouped").await);
    }

    let start = Arc::new(tokio::sync::Barrier::new(SESSIONS * WRITERS + 1));
    let mut writers = Vec::new();
    for (session, id) in ids.iter().enumerate() {
        for writer in 0..WRITERS {
            let mut client = server.client().await;
            let (id, start) = (id.clone(), start.clone());
            writers.push(tokio::spawn(async move {
                start.wait().await;
                let mut acked = Vec::with_capacity(APPENDS);
                for batch in 0..APPENDS {
                    // The twins (0 and 1) send the same entry and id.
                    let text = message(session, batch, usize::from(writer == 2));
                    let response = if writer < 2 {
                        common::append_with_batch_id(
                            &mut client,
                            &id,
                            &format!("s{session}-b{batch}"),
                            &[&text],
                        )
                        .await
                    } else {
                        common::append_entries(&mut client, &id, vec![entry(text)]).await
                    };
                    assert_eq!(response.first_seq, response.last_seq);
                    acked.push((response.first_seq, response.duplicate));
                }
                acked
            }));
        }
    }
    start.wait().await;
    let mut acked = Vec::new();
    for writer in writers {
        acked.push(writer.await.expect("writer task"));
    }

    let total = (APPENDS * 2) as u64;
    let mut stored = Vec::new();
    for (session, id) in ids.iter().enumerate() {
        let [twin_a, twin_b, plain] = &acked[session * WRITERS..(session + 1) * WRITERS] else {
            unreachable!("three writers per session");
        };
        for batch in 0..APPENDS {
            let (a, b) = (twin_a[batch], twin_b[batch]);
            assert_eq!(
                a.0, b.0,
                "s{session}-b{batch}: the twins got {a:?} and {b:?}"
            );
            assert!(
                a.1 != b.1,
                "s{session}-b{batch}: stored once, a duplicate once"
            );
            assert!(!plain[batch].1);
        }
        for writer in [twin_a, plain] {
            assert!(
                writer.windows(2).all(|pair| pair[0].0 < pair[1].0),
                "s{session}: a writer's appends out of its order: {writer:?}"
            );
        }
        let entries = read_all(&mut client, id).await;
        assert!(
            entries.iter().map(|e| e.seq).eq(1..=total),
            "s{session} seqs"
        );
        for (batch, (seq, _)) in twin_a.iter().enumerate() {
            assert_eq!(
                entries[(*seq - 1) as usize].message,
                message(session, batch, 0)
            );
        }
        for (batch, (seq, _)) in plain.iter().enumerate() {
            assert_eq!(
                entries[(*seq - 1) as usize].message,
                message(session, batch, 1)
            );
        }
        stored.push(entries);
    }
    server.shutdown().await;

    let server = TestServer::builder().data_dir(dir.path()).start().await;
    let mut client = server.client().await;
    for (id, before) in ids.iter().zip(&stored) {
        assert_eq!(
            &read_all(&mut client, id).await,
            before,
            "{id} after a restart"
        );
        assert_eq!(get_session(&mut client, id).await.last_seq, total);
    }
    server.shutdown().await;
}
