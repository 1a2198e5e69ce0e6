//! What every HTTP server cloakfs talks to has in common (Nextcloud's APIs and any WebDAV server): the
//! connection rules (https; plain http only to a loopback address unless allowed), timeouts that hold for a
//! request and its retries together, the retry pause, and transport failures as [`RemoteError`]s.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::Url;

use super::RemoteError;

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, ::1).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(url::Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        None => false,
    }
}

/// The HTTP client of every server cloakfs talks to (Nextcloud, any WebDAV server), for `url` (given a
/// trailing slash): https with rustls and the system's trust roots; plain http only to a loopback address
/// or with `allow_insecure_http`; `timeout` for connecting and for each request; redirects followed only
/// with `follow_redirects` (reqwest's default policy, as the Nextcloud client always had); the server's
/// session cookies kept in this process's memory only (Nextcloud then skips the password check of each
/// request: 0.45-0.8 s with a login password, SERVER-BEHAVIOUR.md), gone with it.
pub(crate) fn http_client(
    url: &mut Url,
    allow_insecure_http: bool,
    timeout: Duration,
    follow_redirects: bool,
) -> Result<reqwest::Client, RemoteError> {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(url) || allow_insecure_http => {}
        "http" => {
            return Err(RemoteError::BadUrl(format!(
                "refusing plain http to {}: use https, or --allow-insecure-http if you really mean it",
                url.host_str().unwrap_or("?")
            )))
        }
        other => return Err(RemoteError::BadUrl(format!("unsupported URL scheme {other:?}: use https"))),
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("cloakfs/", env!("CARGO_PKG_VERSION")))
        .cookie_store(true)
        .redirect(if follow_redirects {
            reqwest::redirect::Policy::default()
        } else {
            reqwest::redirect::Policy::none()
        })
        .build()
        .map_err(|error| RemoteError::BadUrl(format!("cannot build the HTTP client: {error}")))
}

/// Time left until `deadline` (at least 1 ms: reqwest treats zero as no time at all).
pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

/// Whether a retry after `backoff(attempt)` still starts well before `deadline` (a call with retries never
/// takes longer than one `--timeout` in all).
pub(crate) fn may_retry(deadline: Instant, attempt: u32) -> bool {
    Instant::now() + backoff(attempt) + Duration::from_millis(100) < deadline
}

/// Delay before retry `attempt` (1-based): 200 ms, 400 ms, ...
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt))
}

/// A request that did not complete, as a [`RemoteError::Transport`] naming `request`.
pub(crate) fn transport(request: &str, error: &reqwest::Error) -> RemoteError {
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        format!("cannot connect: {}", root_cause(error))
    } else {
        root_cause(error)
    };
    RemoteError::Transport { request: request.to_owned(), reason }
}

/// The innermost cause of `error` (reqwest's own message is "error sending request").
pub(crate) fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
