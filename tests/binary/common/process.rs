//! The real binary as a child process: waiting until it serves, and
//! stopping it the way an operator would.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Waits until a spawned `sessionlog serve` (stderr piped, logging at info)
/// says it is serving, then keeps draining its log so the server never
/// blocks on a full pipe.
pub(crate) async fn wait_until_serving(child: &mut Child) {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    // Kept so a server that exits before serving says why in the failure.
    let mut log = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server starts within 30s; it logged:\n{}",
                    log.join("\n")
                )
            })
            .expect("read stderr");
        let Some(line) = line else {
            let status = child.wait().await.expect("reaped");
            panic!(
                "the server exited ({status}) before serving; it logged:\n{}",
                log.join("\n")
            );
        };
        if line.contains("serving") {
            break;
        }
        log.push(line);
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

/// Sends SIGTERM to `child`, which must still be running.
pub(crate) fn sigterm(child: &Child) {
    let pid = child.id().expect("running");
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid fits"))
        .expect("non-zero pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
}
