//! Matching a message's text: `contains` (optionally ignoring case) and a
//! regular expression, compiled once per request, on the message with its
//! ANSI escape sequences removed. Also what lets a scan skip a whole
//! block soundly (`is_local`).

use std::borrow::Cow;

use memchr::memmem::Finder;
use regex::bytes::{Regex, RegexBuilder};

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// What a text filter cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// `regex` is not a valid expression, or too large to compile.
    #[error("{detail}")]
    Regex { detail: String },
}

/// A compiled text filter: every part given must match.
#[derive(Debug)]
pub struct TextMatcher {
    contains: Option<Literal>,
    regex: Option<Regex>,
    /// Whether a match in a message is always a match in any bytes that
    /// hold the message (no anchors or word boundaries, which depend on
    /// what surrounds the message).
    local: bool,
}

#[derive(Debug)]
enum Literal {
    Exact(Box<Finder<'static>>),
    /// `contains` ignoring case: as a regex of the escaped text, which
    /// folds case as Unicode does.
    Folded(Regex),
}

impl Literal {
    fn is_match(&self, text: &[u8]) -> bool {
        match self {
            Self::Exact(finder) => finder.find(text).is_some(),
            Self::Folded(regex) => regex.is_match(text),
        }
    }
}

impl TextMatcher {
    /// A matcher for `contains` and `regex` (either may be empty, which
    /// matches everything); `None` when both are empty.
    pub fn new(contains: &str, ignore_case: bool, regex: &str) -> Result<Option<Self>, TextError> {
        if contains.is_empty() && regex.is_empty() {
            return Ok(None);
        }
        let mut local = true;
        let contains = match (contains.is_empty(), ignore_case) {
            (true, _) => None,
            (false, false) => Some(Literal::Exact(Box::new(
                Finder::new(contains.as_bytes()).into_owned(),
            ))),
            (false, true) => Some(Literal::Folded(compile(&regex::escape(contains), true)?)),
        };
        let regex = if regex.is_empty() {
            None
        } else {
            let compiled = compile(regex, ignore_case)?;
            local = has_no_look_around(regex);
            Some(compiled)
        };
        Ok(Some(Self {
            contains,
            regex,
            local,
        }))
    }

    /// Whether `message` (its text, with ANSI escape sequences removed)
    /// matches.
    pub fn is_match(&self, message: &[u8]) -> bool {
        self.matches_plain(&strip_ansi(message))
    }

    fn matches_plain(&self, text: &[u8]) -> bool {
        self.contains
            .as_ref()
            .is_none_or(|literal| literal.is_match(text))
            && self.regex.as_ref().is_none_or(|regex| regex.is_match(text))
    }

    /// Whether a match inside a message is always a match inside any
    /// bytes that hold the message (no anchors or word boundaries, which
    /// depend on what surrounds it): then bytes that do not match hold no
    /// matching message, unless one of their messages is matched stripped
    /// (has an escape byte). A scan uses it to skip whole blocks.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Whether `haystack` itself matches, escape sequences and all.
    pub fn matches_unstripped(&self, haystack: &[u8]) -> bool {
        self.matches_plain(haystack)
    }
}

/// Whether `text` holds an escape byte (a message that is matched
/// stripped).
pub(crate) fn has_escape(text: &[u8]) -> bool {
    memchr::memchr(ESC, text).is_some()
}

/// The most a compiled pattern (and its lazy DFA's cache) may take: a
/// follower keeps its pattern for as long as it follows, and a pattern that
/// compiles to more is refused rather than matched slowly.
const MAX_COMPILED_BYTES: usize = 1 << 20;

fn compile(pattern: &str, ignore_case: bool) -> Result<Regex, TextError> {
    RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(MAX_COMPILED_BYTES)
        .dfa_size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|err| TextError::Regex {
            detail: err.to_string(),
        })
}

/// Whether `pattern` has no anchors or word boundaries (anything whose
/// match depends on the bytes around it). Unparsable counts as having
/// them; `compile` refuses it anyway.
fn has_no_look_around(pattern: &str) -> bool {
    regex_syntax::Parser::new()
        .parse(pattern)
        .is_ok_and(|hir| hir.properties().look_set().is_empty())
}

/// `text` without its ANSI escape sequences (ECMA-48: CSI `ESC [` ... a
/// final byte; OSC, DCS and the other strings up to BEL or `ESC \`; and
/// two- or three-byte escapes), borrowed when it has none. A sequence cut
/// off by the end of the text is dropped whole.
pub(crate) fn strip_ansi(text: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(ESC, text) else {
        return Cow::Borrowed(text);
    };
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..first]);
    let mut at = first;
    while at < text.len() {
        if text[at] != ESC {
            let next = memchr::memchr(ESC, &text[at..]).map_or(text.len(), |off| at + off);
            out.extend_from_slice(&text[at..next]);
            at = next;
            continue;
        }
        at = sequence_end(text, at);
    }
    Cow::Owned(out)
}

/// Where the escape sequence starting at `start` (an ESC) ends.
fn sequence_end(text: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    match text.get(at) {
        None => at,
        // CSI: parameter and intermediate bytes, then one final byte.
        Some(b'[') => {
            at += 1;
            while let Some(&byte) = text.get(at) {
                at += 1;
                if (0x40..=0x7e).contains(&byte) {
                    return at;
                }
                if !(0x20..=0x3f).contains(&byte) {
                    // Not a CSI byte: the sequence ends before it.
                    return at - 1;
                }
            }
            at
        }
        // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (`ESC \`).
        Some(b']' | b'P' | b'X' | b'^' | b'_') => {
            at += 1;
            while let Some(&byte) = text.get(at) {
                match byte {
                    BEL => return at + 1,
                    ESC if text.get(at + 1) == Some(&b'\\') => return at + 2,
                    ESC => return at,
                    _ => at += 1,
                }
            }
            at
        }
        // nF: intermediate bytes, then a final byte (`ESC ( B`).
        Some(0x20..=0x2f) => {
            while let Some(0x20..=0x2f) = text.get(at) {
                at += 1;
            }
            match text.get(at) {
                Some(0x30..=0x7e) => at + 1,
                _ => at,
            }
        }
        // Fp, Fe, Fs: one byte (`ESC 7`, `ESC M`, `ESC c`).
        Some(0x30..=0x7e) => at + 1,
        // A lone ESC before anything else: drop the ESC only.
        Some(_) => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(text: &str) -> String {
        String::from_utf8(strip_ansi(text.as_bytes()).into_owned()).expect("utf-8")
    }

    #[test]
    fn a_pattern_that_compiles_too_large_is_refused_and_a_normal_one_is_not() {
        // Thousands of Unicode word classes: far past the compiled limit.
        assert!(matches!(
            compile(r"\w{2000}", false),
            Err(TextError::Regex { .. })
        ));
        assert!(compile(r"seg(fault|v)\s+at \d+", true).is_ok());
    }

    #[test]
    fn escape_sequences_are_removed_and_text_kept() {
        assert_eq!(stripped("plain"), "plain");
        assert_eq!(stripped("\x1b[32mok\x1b[0m done"), "ok done");
        assert_eq!(stripped("a\x1b[1;38;5;196mb"), "ab");
        assert_eq!(stripped("\x1b]0;title\x07x"), "x");
        assert_eq!(stripped("\x1b]8;;http://a\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(stripped("\x1b(Bx\x1b7y\x1bcz"), "xyz");
        assert_eq!(stripped("cut\x1b[3"), "cut");
        assert_eq!(stripped("end\x1b"), "end");
        assert_eq!(stripped("é\x1b[31mü"), "éü");
    }

    #[test]
    fn contains_matches_across_colour_codes() {
        let matcher = TextMatcher::new("segfault", false, "")
            .expect("valid")
            .expect("some");
        assert!(matcher.is_match(b"seg\x1b[31mfault"));
        assert!(!matcher.is_match(b"SEGFAULT"));
        let folded = TextMatcher::new("segfault", true, "")
            .expect("valid")
            .expect("some");
        assert!(folded.is_match(b"a SEGFAULT here"));
        assert!(folded.is_match("Seg\x1b[0mFault".as_bytes()));
    }

    #[test]
    fn regex_and_contains_must_both_match() {
        let matcher = TextMatcher::new("db", false, r"took \d+ms")
            .expect("valid")
            .expect("some");
        assert!(matcher.is_match(b"db query took 15ms"));
        assert!(!matcher.is_match(b"http took 15ms"));
        assert!(!matcher.is_match(b"db query took long"));
        assert!(TextMatcher::new("", false, "").expect("valid").is_none());
        let err = TextMatcher::new("", false, "(unclosed").expect_err("invalid");
        assert!(err.to_string().contains("unclosed"), "{err}");
    }

    #[test]
    fn only_expressions_blind_to_their_surroundings_are_local() {
        let literal = TextMatcher::new("boom", true, "bo+m")
            .expect("valid")
            .expect("some");
        assert!(literal.is_local());
        assert!(!literal.matches_unstripped(b"\x05hello\x05world"));
        assert!(literal.matches_unstripped(b"\x04BOOM"));
        for pattern in ["^boom$", r"\bboom", "(?m)boom$"] {
            let anchored = TextMatcher::new("", false, pattern)
                .expect("valid")
                .expect("some");
            assert!(!anchored.is_local(), "{pattern}");
            assert!(anchored.is_match(b"boom"));
        }
        assert!(has_escape(b"a\x1b[0m") && !has_escape(b"plain"));
    }
}
