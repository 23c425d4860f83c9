//! Many clients appending to one session at once: seqs stay exactly
//! `1..=N`, every batch lands whole at contiguous seqs, and readers never
//! see part of a batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;
use sessionlog::pb;

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
