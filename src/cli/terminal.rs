//! Text from the server made safe for a terminal. Entries, session fields
//! and end reasons are written by whoever can append, so printing them as
//! they are would let a client retitle the reader's window, write to their
//! clipboard (OSC 52), clear the screen or forge whole entry lines with an
//! embedded newline. Every control character but tab is shown as visible
//! escape text instead; when the caller allows colours, SGR sequences (the
//! `ESC [ … m` that only change colour and weight) pass through and nothing
//! else does.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Resets colours and weight; printed after text that may carry SGR.
pub(super) const RESET: &str = "\x1b[0m";

/// What may reach the terminal besides printable text and tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escapes {
    /// Nothing: every control character is shown escaped.
    None,
    /// SGR colour sequences as they are; every other control escaped.
    Colours,
}

/// `text` with control characters (C0 but tab, DEL, C1) and the bidi
/// overrides that reorder what is shown replaced by visible escapes:
/// `\n`, `\r`, `\x1b`, `\u{9b}`, ... Borrowed when nothing needs escaping.
pub(super) fn safe(text: &str, escapes: Escapes) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\x1b'
            && escapes == Escapes::Colours
            && let Some(length) = sgr_length(rest)
        {
            shown.push_str(&rest[..length]);
            rest = &rest[length..];
            continue;
        }
        push_shown(&mut shown, c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(shown)
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || is_bidi_control(c)
}

/// Embedding, override and isolate controls: they make a line display in
/// another order than it reads ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_shown(shown: &mut String, c: char) {
    match c {
        '\n' => shown.push_str("\\n"),
        '\r' => shown.push_str("\\r"),
        c if needs_escape(c) && (c as u32) < 0x80 => {
            // Writing to a String cannot fail.
            let _ = write!(shown, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(shown, "\\u{{{:x}}}", c as u32);
        }
        c => shown.push(c),
    }
}

/// The length in bytes of the SGR sequence `ESC [ params m` at the start of
/// `text` (params: digits, `;` and `:`), or `None` when another sequence or
/// none starts there.
fn sgr_length(text: &str) -> Option<usize> {
    let params = text.strip_prefix("\x1b[")?;
    let end = params.find(|c: char| !(c.is_ascii_digit() || c == ';' || c == ':'))?;
    (params.as_bytes()[end] == b'm').then_some(2 + end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_and_tabs_are_borrowed_as_they_are() {
        let text = "plain\ttext, ünïcode ✓";
        assert!(matches!(safe(text, Escapes::None), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(safe("a\nb\rc", Escapes::None), "a\\nb\\rc");
        assert_eq!(
            safe("\x1b]52;c;aGk=\x07", Escapes::None),
            "\\x1b]52;c;aGk=\\x07"
        );
        assert_eq!(safe("\x1b[2J\x7f\0", Escapes::None), "\\x1b[2J\\x7f\\x00");
        assert_eq!(safe("\u{9b}31m", Escapes::None), "\\u{9b}31m");
        assert_eq!(safe("a\u{202e}b", Escapes::None), "a\\u{202e}b");
    }

    #[test]
    fn colours_pass_only_sgr_sequences() {
        assert_eq!(
            safe("\x1b[1;31mred\x1b[0m", Escapes::Colours),
            "\x1b[1;31mred\x1b[0m"
        );
        assert_eq!(safe("\x1b[38:5:208mx", Escapes::Colours), "\x1b[38:5:208mx");
        // Clearing the screen, moving the cursor, titles: not colours.
        assert_eq!(safe("\x1b[2J", Escapes::Colours), "\\x1b[2J");
        assert_eq!(safe("\x1b[10;1H", Escapes::Colours), "\\x1b[10;1H");
        assert_eq!(
            safe("\x1b]0;title\x07", Escapes::Colours),
            "\\x1b]0;title\\x07"
        );
        assert_eq!(safe("\x1b[31", Escapes::Colours), "\\x1b[31");
        assert_eq!(safe("x\n\x1b[m", Escapes::Colours), "x\\n\x1b[m");
    }
}
