//! Whether a client process still runs. A pid is matched with the process's
//! start time (`/proc/<pid>/stat`, field 22), so a pid the kernel reused for
//! another process does not keep a dead client's session alive, and a
//! zombie counts as exited. Needs a shared process namespace (same host, or
//! a pod with `shareProcessNamespace: true`); elsewhere the pid is not
//! visible and process liveness is off.

/// The start time of `pid` in clock ticks since boot, if it runs and is
/// visible here.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Whether the process `pid` that started at `ticks` still runs.
pub(crate) fn is_running(pid: u32, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks)
}

/// The start time from a `/proc/<pid>/stat` line, `None` for a zombie. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from its closing parenthesis.
fn parse_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Field 3 was the state; the start time is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1503 0 0 0 2 1 0 0 20 0 1 0 \
                        987654 12345678 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn start_time_is_field_22_even_with_parentheses_in_the_name() {
        assert_eq!(parse_stat(STAT), Some(987_654));
    }

    #[test]
    fn zombies_have_exited() {
        assert_eq!(parse_stat(&STAT.replace(") S ", ") Z ")), None);
    }

    #[test]
    fn this_process_is_running_and_pid_zero_is_nobody() {
        let me = std::process::id();
        let ticks = start_ticks(me).expect("our own /proc entry");
        assert!(is_running(me, ticks));
        assert!(
            !is_running(me, ticks + 1),
            "another start time is another process"
        );
        assert_eq!(start_ticks(0), None);
    }
}
