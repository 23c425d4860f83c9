//! What one liveness pass and one retention pass cost with many sessions
//! stored, and how much disk pruning gives back. `cargo run --release
//! --example housekeeping_cost -- [sessions] [entries per session]`; works
//! in a temporary directory.

use std::path::Path;
use std::time::{Duration, Instant};

use sessionlog::server::{
    FsyncPolicy, Listeners, RetentionPolicy, Server, ServerSettings, StoreOptions,
};
use sessionlog::testing::{AppendBatch, NewEntry, StoredEntry, StoredSession};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(10_000), |text| text.parse())?;
    let entries: usize = args.next().map_or(Ok(100), |text| text.parse())?;
    let dir = tempfile::tempdir()?;
    let settings = ServerSettings::new(
        StoreOptions {
            path: dir.path().join("data"),
            cache_bytes: 64 << 20,
        },
        FsyncPolicy::Never,
    );
    let server = Server::open(settings, Listeners::default()).await?;
    let sessions = server.sessions();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(count);
    for index in 0..count {
        // One in a hundred has a lease (and stays active), so liveness has
        // something to look at.
        let lease_ttl = (index % 100 == 1).then_some(prost_types::Duration {
            seconds: 3_600,
            nanos: 0,
        });
        let view = sessions
            .start(StoredSession {
                app_name: "cost".into(),
                lease_ttl,
                ..Default::default()
            })
            .await?;
        let batch = (0..entries)
            .map(|i| {
                NewEntry::Decoded(StoredEntry {
                    message: format!("entry {i} {}", "m".repeat(150)),
                    ..Default::default()
                })
            })
            .collect();
        sessions
            .append(AppendBatch {
                session_id: view.record.id.clone(),
                entries: batch,
                ..Default::default()
            })
            .await?;
        if index % 2 == 0 {
            sessions.end(&view.record.id, "done").await?;
        }
        ids.push(view.record.id);
    }
    println!(
        "stored {count} sessions x {entries} entries in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let passes = 20;
    let started = Instant::now();
    for _ in 0..passes {
        sessions.check_liveness().await;
    }
    println!(
        "liveness pass: {:?} ({} leased of {count})",
        started.elapsed() / passes,
        count / 100
    );

    let keep_all = RetentionPolicy {
        max_sessions: Some(count),
        ..RetentionPolicy::default()
    };
    let started = Instant::now();
    for _ in 0..passes {
        sessions.enforce_retention(keep_all).await;
    }
    println!(
        "retention pass that prunes nothing: {:?}",
        started.elapsed() / passes
    );

    let before = disk_bytes(dir.path())?;
    let prune_half = RetentionPolicy {
        max_sessions: Some(count - count / 4),
        ..RetentionPolicy::default()
    };
    let started = Instant::now();
    let pruned = sessions.enforce_retention(prune_half).await;
    println!(
        "retention pass pruning {}: {:?}",
        pruned.len(),
        started.elapsed()
    );
    let after = disk_bytes(dir.path())?;
    // Space sled freed is reused by later writes before the files grow.
    let refill = Instant::now();
    for id in ids.iter().skip(1).step_by(2).take(count / 4) {
        let batch = (0..entries)
            .map(|i| {
                NewEntry::Decoded(StoredEntry {
                    message: format!("refill {i} {}", "r".repeat(150)),
                    ..Default::default()
                })
            })
            .collect();
        sessions
            .append(AppendBatch {
                session_id: id.clone(),
                entries: batch,
                ..Default::default()
            })
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refilled = disk_bytes(dir.path())?;
    println!(
        "disk: {} MiB before pruning, {} MiB right after, {} MiB after appending as much again ({:.1}s)",
        before >> 20,
        after >> 20,
        refilled >> 20,
        refill.elapsed().as_secs_f64()
    );
    Ok(())
}

fn disk_bytes(path: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += std::os::unix::fs::MetadataExt::blocks(&metadata) * 512;
            }
        }
    }
    Ok(total)
}
