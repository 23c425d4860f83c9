//! A program that ships its own `tracing` events into a session, and also
//! prints them on its terminal. Against a running server:
//!
//! ```sh
//! cargo run --example tracing_layer -- http://127.0.0.1:50051
//! sessionlog tail <the printed session id>
//! ```
//!
//! A server with tokens: `SESSIONLOG_TOKEN_FILE=/path/to/token`, as for the
//! CLI. (The web console's browser test uses this example for entries with
//! fields and trace ids.)

use std::time::Duration;

use tracing_subscriber::prelude::*;

fn main() -> anyhow::Result<()> {
    let server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| sessionlog::client::DEFAULT_SERVER.to_owned());
    let mut builder = sessionlog::tracing_layer::Builder::new(server).app_name("tracing-example");
    if let Some(token_file) = std::env::var_os("SESSIONLOG_TOKEN_FILE") {
        builder = builder.token_file(token_file);
    }
    let (layer, guard) = builder.build()?;
    tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::fmt::layer())
        .init();
    println!("session {}", guard.session_id());

    // Span fields travel with every event inside the span; `trace_id` and
    // `span_id` (hex) become the entries' ids.
    let build = tracing::info_span!(
        "build",
        target_name = "release",
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        span_id = "00f067aa0ba902b7"
    );
    let _entered = build.enter();
    for step in ["fetch", "compile", "link"] {
        tracing::info!(step, "starting {step}");
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(warnings = 2, "built with warnings");

    // Dropping the guard sends what is still buffered.
    let report = guard.close();
    println!(
        "stored {} events, dropped {}, lost {}",
        report.stored, report.dropped, report.lost
    );
    Ok(())
}
