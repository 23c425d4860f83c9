//! The `tracing` layer: a program's events arrive in its session once each,
//! in order, with levels, targets, fields and span ids; with no server the
//! program is never held up and the loss is counted.

use prost_types::value::Kind;
use sessionlog::client::WriterOptions;
use sessionlog::pb;
use sessionlog::tracing_layer::Builder;
use tracing_subscriber::prelude::*;

use crate::common::{TestServer, get_session, read_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_once_each_in_order_with_their_fields() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let url = server.url();
    // The program side runs on a plain thread, as most programs would.
    let session_id = tokio::task::spawn_blocking(move || {
        let (layer, guard) = Builder::new(url)
            .app_name("layered")
            .build()
            .expect("layer");
        let session_id = guard.session_id().to_owned();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                trace_id = "0102030405060708090a0b0c0d0e0f10",
                span_id = "a1a2a3a4a5a6a7a8",
                route = "/build"
            );
            let _entered = span.enter();
            for i in 0..1_000u64 {
                tracing::info!(target: "app::work", i, done = i % 2 == 0, "step {i}");
            }
            tracing::warn!(big = u64::MAX, ratio = 0.5, "last");
            // The transport's own events are never shipped.
            tracing::info!(target: "h2::codec", "frame");
        });
        // Dropping the guard flushes.
        drop(guard);
        session_id
    })
    .await
    .expect("program thread");

    let session = get_session(&mut client, &session_id).await;
    assert_eq!(session.app_name, "layered");
    assert_eq!(session.client_pid, std::process::id());
    let entries = read_all(&mut client, &session_id).await;
    assert_eq!(
        entries.len(),
        1_001,
        "every event once, the h2 one not at all"
    );
    for (i, entry) in entries.iter().take(1_000).enumerate() {
        assert_eq!(entry.message, format!("step {i}"));
        assert_eq!(entry.logger, "app::work");
        assert_eq!(entry.level, pb::Level::Info as i32);
        let fields = &entry.fields.as_ref().expect("fields").fields;
        assert_eq!(fields["i"].kind, Some(Kind::NumberValue(i as f64)));
        assert_eq!(fields["done"].kind, Some(Kind::BoolValue(i % 2 == 0)));
        assert_eq!(
            fields["route"].kind,
            Some(Kind::StringValue("/build".into())),
            "span fields come along"
        );
        assert!(!fields.contains_key("trace_id"));
        assert_eq!(entry.trace_id, (1..=16).collect::<Vec<u8>>());
        assert_eq!(entry.span_id, (0xa1..=0xa8).collect::<Vec<u8>>());
    }
    let last = &entries[1_000];
    assert_eq!(last.level, pb::Level::Warn as i32);
    let fields = &last.fields.as_ref().expect("fields").fields;
    assert_eq!(
        fields["big"].kind,
        Some(Kind::StringValue(u64::MAX.to_string())),
        "no digit lost"
    );
    assert_eq!(fields["ratio"].kind, Some(Kind::NumberValue(0.5)));
    server.shutdown().await;
}

#[test]
fn without_a_server_events_never_wait_and_the_loss_is_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nowhere = format!("unix:{}", dir.path().join("none.sock").display());
    let (layer, guard) = Builder::new(nowhere)
        .writer_options(WriterOptions {
            capacity: 100,
            ..WriterOptions::default()
        })
        .flush_timeout(std::time::Duration::from_millis(200))
        .build()
        .expect("the layer starts without a server");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..20_000 {
            tracing::info!(i, "event");
        }
    });
    let report = guard.close();
    assert_eq!(report.stored, 0);
    assert_eq!(
        report.dropped + report.lost,
        20_000,
        "every event is accounted for: {report:?}"
    );
    assert!(report.dropped >= 19_000, "a full buffer drops: {report:?}");
}

/// A global subscriber keeps the layer (and its handle) alive for good;
/// closing the guard must still flush and finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_flushes_while_the_layer_lives_on() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let url = server.url();
    let (session_id, report) = tokio::task::spawn_blocking(move || {
        let (layer, guard) = Builder::new(url).build().expect("layer");
        let kept = layer.clone();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for i in 0..100 {
                tracing::info!("kept {i}");
            }
        });
        let session_id = guard.session_id().to_owned();
        let report = guard.close();
        drop(kept);
        (session_id, report)
    })
    .await
    .expect("program thread");
    assert_eq!((report.stored, report.dropped, report.lost), (100, 0, 0));
    assert_eq!(read_all(&mut client, &session_id).await.len(), 100);
    server.shutdown().await;
}
