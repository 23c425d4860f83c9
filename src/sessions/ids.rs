//! Session ids: the accepted form, and new ids that are unique and sort by
//! creation time (ULIDs, monotonic within one millisecond).

use std::sync::Mutex;
use std::time::SystemTime;

/// The longest accepted session id.
pub(crate) const MAX_ID_LEN: usize = 128;

/// Whether `id` matches `[A-Za-z0-9._:-]{1,128}` and is not `.` or `..`.
pub(crate) fn is_valid_id(id: &str) -> bool {
    // `.` and `..` would name another path in an HTTP route or a file.
    (1..=MAX_ID_LEN).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'))
}

/// Makes new session ids.
#[derive(Debug, Default)]
pub(crate) struct IdGenerator {
    ulids: Mutex<ulid::Generator>,
}

impl IdGenerator {
    /// A new id, greater than every id this generator made before.
    pub(crate) fn next_id(&self) -> String {
        let mut ulids = self
            .ulids
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Overflow needs 2^80 ids in one millisecond; fall back to a fresh
        // random ULID, still unique.
        let id = ulids
            .generate_from_datetime(SystemTime::now())
            .unwrap_or_else(|_| ulid::Ulid::generate());
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(is_valid_id("build-42.step_3:agent"));
        assert!(is_valid_id(&"a".repeat(MAX_ID_LEN)));
    }

    #[test]
    fn rejects_empty_long_and_foreign_ids() {
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("."));
        assert!(!is_valid_id(".."));
        assert!(is_valid_id("..."));
        assert!(!is_valid_id(&"a".repeat(MAX_ID_LEN + 1)));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("é"));
    }

    #[test]
    fn generated_ids_are_valid_unique_and_sorted() {
        let ids = IdGenerator::default();
        let made: Vec<String> = (0..1_000).map(|_| ids.next_id()).collect();
        assert!(made.iter().all(|id| is_valid_id(id)));
        assert!(made.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
