//! Query strings into the rules' queries. Parameters are named as in the
//! issue's routes (`after`, `limit`, `tail`, `level`, `logger`, `contains`,
//! `ignore_case`, `regex`,
//! `state`, `app`, `job`, `parent`, `page_size`, `page_token`); an unknown
//! one or a malformed value is a 400 naming the parameter, so a typo is
//! not silently ignored. Limits and ids are checked by `edge` as for gRPC.

use std::time::SystemTime;

use crate::display::{level_from_name, time_from_text};
use crate::edge::Limits;
use crate::edge::RequestError;
use crate::edge::error::invalid;
use crate::edge::request::{TextQuery, decode_page_token, entry_filter, optional_id, session_id};
use crate::sessions::{FollowQuery, ListQuery, ReadQuery, SearchQuery, WatchQuery};
use crate::store::schema::{Level, State};
use crate::store::{EntryFilter, TimeRange};

/// The token parameter the SSE routes accept (EventSource sends no headers).
pub(super) const ACCESS_TOKEN: &str = "access_token";

const FILTER_KEYS: [&str; 5] = ["level", "logger", "contains", "ignore_case", "regex"];

/// The decoded `key=value` pairs of a query string.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes `raw`; refuses keys outside `allowed` (and `access_token`,
    /// which the auth layer reads, on stream routes only).
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, RequestError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        if let Some((key, _)) = pairs
            .iter()
            .find(|(key, _)| !allowed.contains(&key.as_str()))
        {
            return Err(RequestError::Invalid {
                field: "query",
                reason: format!(
                    "has the unknown parameter `{key}`; this route takes {}",
                    allowed
                        .iter()
                        .filter(|known| **known != ACCESS_TOKEN)
                        .map(|known| format!("`{known}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(Self { pairs })
    }

    /// The last value of `key`; empty values count as absent.
    fn text(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map_or("", |(_, value)| value.as_str())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(name, value)| name == key && !value.is_empty())
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn number<T: std::str::FromStr>(&self, key: &'static str) -> Result<Option<T>, RequestError> {
        let text = self.text(key);
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            invalid(
                key,
                format!("must be a whole number of at least 0, not `{text}`"),
            )
        })
    }

    fn flag(&self, key: &'static str) -> Result<bool, RequestError> {
        match self.text(key) {
            "" | "false" | "0" => Ok(false),
            "true" | "1" => Ok(true),
            other => Err(invalid(
                key,
                format!("must be `true` or `false`, not `{other}`"),
            )),
        }
    }

    fn filter(&self, limits: &Limits) -> Result<EntryFilter, RequestError> {
        let min_level = match self.text("level") {
            "" => Level::Unspecified,
            name => level_from_name(name)
                .and_then(|level| Level::try_from(i32::from(level)).ok())
                .ok_or_else(|| {
                    invalid(
                        "level",
                        format!(
                            "must be one of trace, debug, info, warn, error, critical, not `{name}`"
                        ),
                    )
                })?,
        };
        let text = TextQuery {
            contains: self.text("contains").to_owned(),
            ignore_case: self.flag("ignore_case")?,
            regex: self.text("regex").to_owned(),
        };
        entry_filter(min_level, self.all("logger"), &text, limits)
    }

    /// A time as `display::time_from_text` reads it, in nanoseconds since
    /// the epoch.
    fn time(&self, key: &'static str, now: SystemTime) -> Result<Option<i128>, RequestError> {
        let text = self.text(key);
        if text.is_empty() {
            return Ok(None);
        }
        let at = time_from_text(text, now).map_err(|reason| invalid(key, reason))?;
        Ok(Some(match at.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
            Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
        }))
    }

    fn state(&self) -> Result<Option<State>, RequestError> {
        match self.text("state") {
            "" | "all" => Ok(None),
            "active" => Ok(Some(State::Active)),
            "ended" => Ok(Some(State::Ended)),
            other => Err(invalid(
                "state",
                format!("must be `active`, `ended` or `all`, not `{other}`"),
            )),
        }
    }

    fn names(&self, limits: &Limits) -> Result<(String, String), RequestError> {
        let (app_name, job_id) = (self.text("app"), self.text("job"));
        limits.name("app", app_name)?;
        limits.name("job", job_id)?;
        Ok((app_name.to_owned(), job_id.to_owned()))
    }
}

fn keys<const N: usize>(own: [&'static str; N], with_filter: bool) -> Vec<&'static str> {
    let mut keys = own.to_vec();
    if with_filter {
        keys.extend(FILTER_KEYS);
    }
    keys
}

/// `GET /api/v1/sessions?state=&app=&job=&parent=&page_size=&page_token=`.
pub(crate) fn list_query(raw: Option<&str>, limits: &Limits) -> Result<ListQuery, RequestError> {
    let own = ["state", "app", "job", "parent", "page_size", "page_token"];
    let params = Params::parse(raw, &keys(own, false))?;
    let (app_name, job_id) = params.names(limits)?;
    let parent_session_id = params.text("parent");
    optional_id("parent", parent_session_id)?;
    Ok(ListQuery {
        state: params.state()?,
        app_name,
        job_id,
        parent_session_id: parent_session_id.to_owned(),
        page_size: params.number("page_size")?.unwrap_or(0),
        after_id: decode_page_token(params.text("page_token"))?,
        max_bytes: limits.max_response_bytes,
    })
}

/// `GET /api/v1/sessions/{id}/entries?after=&limit=&tail=&level=&logger=&contains=`.
pub(crate) fn read_query(
    id: &str,
    raw: Option<&str>,
    limits: &Limits,
) -> Result<ReadQuery, RequestError> {
    let params = Params::parse(raw, &keys(["after", "limit", "tail"], true))?;
    Ok(ReadQuery {
        session_id: session_id(id)?.to_owned(),
        after_seq: params.number("after")?.unwrap_or(0),
        limit: params.number("limit")?.unwrap_or(0),
        tail: params.number("tail")?.unwrap_or(0),
        filter: params.filter(limits)?,
        max_bytes: limits.max_response_bytes,
    })
}

/// `GET /api/v1/sessions/{id}/follow?after=&tail=&max_batch=&level=&logger=&contains=`.
/// A `Last-Event-ID` (the browser's reconnect) is the cursor to resume
/// from: it wins over `after` and `tail`, so a resumed stream has no gap
/// and no duplicate.
pub(crate) fn follow_query(
    id: &str,
    raw: Option<&str>,
    last_event_id: Option<&str>,
    limits: &Limits,
) -> Result<FollowQuery, RequestError> {
    let own = ["after", "tail", "max_batch", ACCESS_TOKEN];
    let params = Params::parse(raw, &keys(own, true))?;
    let mut query = FollowQuery {
        session_id: session_id(id)?.to_owned(),
        after_seq: params.number("after")?.unwrap_or(0),
        tail: params.number("tail")?.unwrap_or(0),
        max_batch: params.number("max_batch")?.unwrap_or(0),
        filter: params.filter(limits)?,
        max_bytes: limits.max_response_bytes,
    };
    if let Some(resume) = last_event_id.map(str::trim).filter(|id| !id.is_empty()) {
        query.after_seq = resume.parse().map_err(|_| {
            invalid(
                "Last-Event-ID",
                format!("must be a cursor this server sent, not `{resume}`"),
            )
        })?;
        query.tail = 0;
    }
    Ok(query)
}

/// `GET /api/v1/search?contains=&regex=&ignore_case=&level=&logger=&app=&job=&state=&since=&until=&limit=`.
pub(crate) fn search_query(
    raw: Option<&str>,
    limits: &Limits,
) -> Result<SearchQuery, RequestError> {
    let own = ["app", "job", "state", "since", "until", "limit"];
    let params = Params::parse(raw, &keys(own, true))?;
    let (app_name, job_id) = params.names(limits)?;
    let now = SystemTime::now();
    Ok(SearchQuery {
        sessions: ListQuery {
            state: params.state()?,
            app_name,
            job_id,
            ..ListQuery::default()
        },
        time: TimeRange {
            since_nanos: params.time("since", now)?,
            until_nanos: params.time("until", now)?,
        },
        filter: params.filter(limits)?,
        limit: params.number("limit")?.unwrap_or(0),
        max_bytes: limits.max_response_bytes,
    })
}

/// How a session is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// `TIME LEVEL LOGGER: MESSAGE` lines.
    Text,
    /// One entry's JSON per line.
    Ndjson,
}

/// `GET /api/v1/sessions/{id}/export?format=text|ndjson` (text when absent).
pub(crate) fn export_format(raw: Option<&str>) -> Result<ExportFormat, RequestError> {
    let params = Params::parse(raw, &["format", ACCESS_TOKEN])?;
    match params.text("format") {
        "" | "text" => Ok(ExportFormat::Text),
        "ndjson" => Ok(ExportFormat::Ndjson),
        other => Err(invalid(
            "format",
            format!("must be `text` or `ndjson`, not `{other}`"),
        )),
    }
}

/// `GET /api/v1/watch?include_existing=&state=&app=&job=`.
pub(crate) fn watch_query(raw: Option<&str>, limits: &Limits) -> Result<WatchQuery, RequestError> {
    let own = ["include_existing", "state", "app", "job", ACCESS_TOKEN];
    let params = Params::parse(raw, &keys(own, false))?;
    let (app_name, job_id) = params.names(limits)?;
    Ok(WatchQuery {
        include_existing: params.flag("include_existing")?,
        state: params.state()?,
        app_name,
        job_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_levels_loggers_and_text() {
        let query = read_query(
            "s1",
            Some("after=3&level=WARN&logger=net&logger=db&contains=a%20b"),
            &Limits::default(),
        )
        .expect("valid");
        assert_eq!(query.after_seq, 3);
        assert_eq!(query.filter.min_level, Level::Warn);
        assert_eq!(query.filter.logger_prefixes, ["net", "db"]);
        let text = query.filter.text.expect("a text filter");
        assert!(text.is_match(b"xa by"));
        assert!(!text.is_match(b"A B"));
        let folded = read_query(
            "s1",
            Some("contains=a%20b&ignore_case=true"),
            &Limits::default(),
        )
        .expect("valid");
        assert!(folded.filter.text.expect("text").is_match(b"A B"));
        let err = read_query("s1", Some("regex=%28"), &Limits::default()).expect_err("regex");
        assert!(err.to_string().contains("regular expression"), "{err}");
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_parameter() {
        let limits = Limits::default();
        let err = read_query("s1", Some("after=-1"), &limits).expect_err("negative");
        assert!(err.to_string().contains("`after`"), "{err}");
        let err = read_query("s1", Some("level=loud"), &limits).expect_err("level");
        assert!(err.to_string().contains("`level`"), "{err}");
        let err = read_query("s1", Some("aftr=1"), &limits).expect_err("typo");
        assert!(err.to_string().contains("`aftr`"), "{err}");
        let err = list_query(Some("state=open"), &limits).expect_err("state");
        assert!(err.to_string().contains("`state`"), "{err}");
        assert!(read_query("s1", Some("access_token=x"), &limits).is_err());
    }

    #[test]
    fn last_event_id_wins_over_after_and_tail() {
        let limits = Limits::default();
        let query = follow_query("s1", Some("after=2&tail=5"), Some("9"), &limits).expect("ok");
        assert_eq!((query.after_seq, query.tail), (9, 0));
        let query = follow_query("s1", Some("after=2"), None, &limits).expect("ok");
        assert_eq!(query.after_seq, 2);
        assert!(follow_query("s1", None, Some("x"), &limits).is_err());
    }
}
