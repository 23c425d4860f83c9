//! The `Host` check that stops DNS rebinding: a page on an attacker's
//! domain that the attacker re-points at 127.0.0.1 reaches this server
//! with the attacker's name in `Host`. Without tokens, only requests
//! naming `localhost`, the listener's own address (any IP literal when it
//! listens on all of them) or a name from `--http-allowed-host` are served;
//! any port. With tokens there is nothing to read without one, and a
//! browser does not attach our bearer token to another origin's requests.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::edge::TokenAuth;

use super::error::misdirected;

/// The names and address requests may give in `Host`.
#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts {
    listen_ip: Option<IpAddr>,
    /// Lower case, without a port or a trailing dot.
    names: Arc<[String]>,
}

impl AllowedHosts {
    /// `localhost`, `listen_ip` (every IP literal when it is unspecified,
    /// none when unknown) and `names`.
    pub(crate) fn new(listen_ip: Option<IpAddr>, names: &[String]) -> Self {
        Self {
            listen_ip,
            names: names.iter().map(|name| normalize(name)).collect(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let host = normalize(host);
        if host == "localhost" || self.names.contains(&host) {
            return true;
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match (literal.parse::<IpAddr>(), self.listen_ip) {
            (Ok(ip), Some(listen_ip)) => listen_ip.is_unspecified() || ip == listen_ip,
            _ => false,
        }
    }
}

/// `host[:port]` in lower case, without the port and a trailing dot.
fn normalize(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(literal, _)| &host[..=literal.len()])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
            _ => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Refuses, with 421, a request whose `Host` (or HTTP/2 `:authority`) is
/// not allowed, unless the server has tokens. A request with neither
/// comes from no browser and passes.
pub(super) async fn check(
    State((allowed, auth)): State<(AllowedHosts, TokenAuth)>,
    request: Request,
    next: Next,
) -> Response {
    if auth.is_required() {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.to_string())
        });
    match host {
        Some(host) if !allowed.allows(&host) => misdirected(format!(
            "this server does not answer for `{host}`; use its address or localhost, or start it with --http-allowed-host (docs/http.md)"
        )),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(listen_ip: &str, names: &[&str]) -> AllowedHosts {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        AllowedHosts::new(Some(listen_ip.parse().expect("ip")), &names)
    }

    #[test]
    fn localhost_and_the_listen_address_pass_on_any_port() {
        let hosts = allowed("127.0.0.1", &[]);
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:9",
            "localhost.",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1",
            "[::1]:80",
            "localhost.evil",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
    }

    #[test]
    fn an_unspecified_listen_address_allows_ip_literals_but_not_names() {
        let hosts = allowed("::", &[]);
        assert!(hosts.allows("[fe80::1]:8080"));
        assert!(hosts.allows("192.0.2.7"));
        assert!(!hosts.allows("rebind.example"));
    }

    #[test]
    fn names_given_by_flag_pass() {
        let hosts = allowed("0.0.0.0", &["Logs.Internal:8080"]);
        assert!(hosts.allows("logs.internal"));
        assert!(hosts.allows("logs.internal:443"));
        assert!(!hosts.allows("other.internal"));
    }
}
