//! One test in a process of its own: this test binary started again with
//! only that test selected, for a test that measures the whole process
//! (its resident memory) while the rest of the suite runs beside it.

use std::fmt::Write as _;

/// Set to the test's name in the process started for it.
const OWN_PROCESS_VAR: &str = "SESSIONLOG_TEST_OWN_PROCESS";

/// Whether this process is the one started for `test` (its name as the
/// test harness lists it, `module::function`).
pub(crate) fn is_own_process(test: &str) -> bool {
    std::env::var(OWN_PROCESS_VAR).is_ok_and(|selected| selected == test)
}

/// Runs `test` in a new process of this binary and fails unless it ran
/// there and passed. Its output becomes this test's output.
pub(crate) async fn run(test: &str) {
    let binary = std::env::current_exe().expect("this test binary");
    let output = tokio::process::Command::new(binary)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS_VAR, test)
        .kill_on_drop(true)
        .output()
        .await
        .expect("start this test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut report = String::new();
    write!(
        report,
        "{test} in its own process: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    )
    .expect("write to a string");
    print!("{report}");
    assert!(output.status.success(), "{report}");
    // A renamed test would select nothing and pass vacuously.
    assert!(stdout.contains("1 passed"), "{test} did not run: {report}");
}
