//! The validation every edge shares: session ids, page
//! tokens and entry filters. A value that passes here is well-formed for
//! the rules, whichever protocol it came in by.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::sessions::ids::is_valid_id;
use std::sync::Arc;

use crate::store::schema::Level;
use crate::store::{EntryFilter, TextError, TextMatcher};

use super::error::{RequestError, invalid};
use super::limits::Limits;

/// The longest `batch_id`, in bytes (the contract's bound on ids).
pub(crate) const MAX_BATCH_ID_LEN: usize = 128;

const PAGE_TOKEN_PREFIX: &str = "s1.";

/// How much of prost's error text a message keeps.
const MAX_DETAIL_CHARS: usize = 200;

/// What prost says of bytes that do not decode, cut to its end: prost
/// names the whole path to the fault, deep nesting makes that kilobytes
/// long, and its end says what went wrong.
pub(crate) fn decode_fault(detail: &str) -> String {
    let tail = detail
        .char_indices()
        .rev()
        .nth(MAX_DETAIL_CHARS)
        .map_or(detail, |(start, _)| &detail[start..]);
    let ellipsis = if tail.len() < detail.len() { "…" } else { "" };
    format!("{ellipsis}{tail}")
}

/// A required session id.
pub(crate) fn session_id(id: &str) -> Result<&str, RequestError> {
    if id.is_empty() {
        return Err(invalid("session_id", "is required"));
    }
    optional_id("session_id", id)?;
    Ok(id)
}

/// An id that may be empty (no filter, no parent).
pub(crate) fn optional_id(field: &'static str, id: &str) -> Result<(), RequestError> {
    if id.is_empty() || is_valid_id(id) {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must match [A-Za-z0-9._:-]{1,128} and not be `.` or `..`",
        ))
    }
}

/// The text part of an entry filter, as every edge receives it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextQuery {
    pub(crate) contains: String,
    pub(crate) ignore_case: bool,
    pub(crate) regex: String,
}

/// An entry filter, checked against the limits, its text filter compiled
/// (once, for the whole request).
pub(crate) fn entry_filter(
    min_level: Level,
    logger_prefixes: Vec<String>,
    text: &TextQuery,
    limits: &Limits,
) -> Result<EntryFilter, RequestError> {
    limits.prefixes(&logger_prefixes)?;
    limits.text("filter.contains", &text.contains)?;
    limits.text("filter.regex", &text.regex)?;
    let matcher = TextMatcher::new(&text.contains, text.ignore_case, &text.regex).map_err(
        |TextError::Regex { detail }| {
            invalid(
                "filter.regex",
                format!("is not a valid regular expression: {detail}"),
            )
        },
    )?;
    Ok(EntryFilter {
        min_level,
        logger_prefixes,
        text: matcher.map(Arc::new),
    })
}

/// The token for the page after `after_id`: opaque to clients.
pub(crate) fn encode_page_token(after_id: &str) -> String {
    format!("{PAGE_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(after_id))
}

/// The id a page token continues after; `None` for the first page.
pub(crate) fn decode_page_token(token: &str) -> Result<Option<String>, RequestError> {
    if token.is_empty() {
        return Ok(None);
    }
    let not_ours = || {
        invalid(
            "page_token",
            "is not a token this server issued; pass `next_page_token` unchanged",
        )
    };
    let encoded = token.strip_prefix(PAGE_TOKEN_PREFIX).ok_or_else(not_ours)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| not_ours())?;
    let id = String::from_utf8(bytes).map_err(|_| not_ours())?;
    if !is_valid_id(&id) {
        return Err(not_ours());
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        let token = encode_page_token("01HZY:a.b");
        assert_eq!(
            decode_page_token(&token).expect("ours"),
            Some("01HZY:a.b".to_owned())
        );
        assert_eq!(decode_page_token("").expect("empty"), None);
        assert!(decode_page_token("garbage").is_err());
        assert!(decode_page_token("s1.%%%").is_err());
    }

    #[test]
    fn session_ids_are_required_and_well_formed() {
        assert!(session_id("a.b:c-1").is_ok());
        assert!(session_id("").is_err());
        assert!(session_id("a b").is_err());
        assert!(optional_id("parent_session_id", "").is_ok());
    }
}
