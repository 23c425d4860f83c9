//! Bearer tokens, shared by every edge. With `--auth-token-file`, every
//! call but health needs `authorization: Bearer <token>` with a token from
//! the file (one per line; blank lines and `#` comments skipped). The file is re-read when it
//! changes, so tokens rotate without a restart; an unreadable file keeps
//! the tokens last read. Comparison takes the same time whichever token
//! matches and wherever a wrong one differs. Tokens are never logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the token file is checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The accepted tokens, shared by every intercepted service; `None` when
/// the server runs without tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenAuth {
    tokens: Option<Arc<RwLock<Vec<Vec<u8>>>>>,
}

impl TokenAuth {
    /// No tokens needed.
    pub(crate) fn disabled() -> Self {
        Self::default()
    }

    /// Reads `path`; fails when it cannot be read.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let tokens = read_tokens(path)?;
        if tokens.is_empty() {
            tracing::warn!(file = %path.display(), "the token file holds no tokens; every call will be refused");
        }
        Ok(Self {
            tokens: Some(Arc::new(RwLock::new(tokens))),
        })
    }

    /// Re-reads the file every [`RELOAD_INTERVAL`] until `stop`, and swaps
    /// the tokens in when they differ. Comparing contents rather than
    /// modification times catches rewrites that land within one timestamp
    /// tick, or between the first read and this task's start.
    pub(crate) async fn watch(self, path: PathBuf, stop: CancellationToken) {
        let Some(shared) = self.tokens else { return };
        let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            // A file read may wait on the disk: not on an async worker.
            let reading = path.clone();
            let read = tokio::task::spawn_blocking(move || read_tokens(&reading))
                .await
                .unwrap_or_else(|join| Err(anyhow::anyhow!("the token file read failed: {join}")));
            match read {
                Ok(tokens) => {
                    failing = false;
                    let mut current = shared.write().unwrap_or_else(|poison| poison.into_inner());
                    if *current != tokens {
                        if tokens.is_empty() {
                            // As loud as at start-up: from now on every call is refused.
                            tracing::warn!(file = %path.display(), "reloaded the token file; it holds no tokens, so every call will be refused");
                        } else {
                            tracing::info!(file = %path.display(), tokens = tokens.len(), "reloaded the token file");
                        }
                        *current = tokens;
                    }
                }
                // Logged once per outage, not every second.
                Err(err) if !failing => {
                    failing = true;
                    tracing::error!(error = %err, "cannot re-read the token file; keeping the tokens read before");
                }
                Err(_) => {}
            }
        }
    }

    /// Whether calls need a token at all.
    pub(crate) fn is_required(&self) -> bool {
        self.tokens.is_some()
    }

    /// Whether `presented` is one of the tokens (always, without tokens).
    pub(crate) fn accepts(&self, presented: &[u8]) -> bool {
        let Some(shared) = &self.tokens else {
            return true;
        };
        let tokens = shared.read().unwrap_or_else(|poison| poison.into_inner());
        // Check every token, so timing does not tell which one matched.
        tokens.iter().fold(false, |matched, token| {
            constant_time_eq(token, presented) | matched
        })
    }
}

fn read_tokens(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| anyhow::anyhow!("cannot read the token file {}: {err}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.as_bytes().to_vec())
        .collect())
}

/// Equality whose time depends on the lengths only, not on where the bytes
/// differ.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    if expected.len() != presented.len() {
        return false;
    }
    expected
        .iter()
        .zip(presented)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn the_file_holds_one_token_per_line_with_comments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# ci\nalpha\n\n  beta  \n").expect("write");
        let auth = TokenAuth::load(&path).expect("load");
        assert!(auth.accepts(b"alpha") && auth.accepts(b"beta"));
        assert!(!auth.accepts(b"# ci") && !auth.accepts(b""));
    }
}
