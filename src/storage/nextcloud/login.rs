//! Nextcloud Login Flow v2: start a flow, show the user the login URL, poll until the server hands out an
//! app password. The app password is returned to the caller, which decides where it goes (the OS keyring,
//! or shown once); it is never written to a config file.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::storage::http::root_cause;
use crate::storage::RemoteError;

/// How long to wait for the user to finish in the browser (Nextcloud's flows expire after 20 minutes).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// A started flow.
#[derive(Debug, Clone)]
pub struct LoginFlow {
    /// The URL the user opens in a browser.
    pub login_url: Url,
    poll_endpoint: Url,
    poll_token: Zeroizing<String>,
}

/// The result of a finished flow.
pub struct LoginGrant {
    /// The server URL the server reports.
    pub server: String,
    /// The login name.
    pub user: String,
    /// The new app password.
    pub app_password: Zeroizing<String>,
}

#[derive(Deserialize)]
struct StartAnswer {
    poll: PollInfo,
    login: String,
}

#[derive(Deserialize)]
struct PollInfo {
    token: Zeroizing<String>,
    endpoint: String,
}

#[derive(Deserialize)]
struct PollAnswer {
    server: String,
    #[serde(rename = "loginName")]
    login_name: String,
    #[serde(rename = "appPassword")]
    app_password: Zeroizing<String>,
}

fn protocol(reason: impl Into<String>) -> RemoteError {
    RemoteError::Protocol { request: "login flow v2".into(), reason: reason.into() }
}

fn same_origin(left: &Url, right: &Url) -> bool {
    left.scheme() == right.scheme()
        && left.host_str() == right.host_str()
        && left.port_or_known_default() == right.port_or_known_default()
}

/// Starts a flow at `base_url` (`POST /index.php/login/v2`).
pub async fn start_login(http: &reqwest::Client, base_url: &Url) -> Result<LoginFlow, RemoteError> {
    let url = base_url.join("index.php/login/v2").map_err(|error| RemoteError::BadUrl(error.to_string()))?;
    let response = http.post(url).send().await.map_err(|error| RemoteError::Transport {
        request: "POST /index.php/login/v2".into(),
        reason: root_cause(&error),
    })?;
    if !response.status().is_success() {
        return Err(RemoteError::http_status(
            "POST /index.php/login/v2",
            response.status().as_u16(),
            "the server does not offer Login Flow v2 (use --app-password)",
        ));
    }
    let answer: StartAnswer =
        response.json().await.map_err(|error| protocol(format!("not a login flow answer: {error}")))?;
    let login_url = Url::parse(&answer.login).map_err(|_| protocol("bad login URL"))?;
    let poll_endpoint = Url::parse(&answer.poll.endpoint).map_err(|_| protocol("bad poll endpoint"))?;
    // The server must not send the client (and later its poll token) somewhere else.
    if !same_origin(&poll_endpoint, base_url) && poll_endpoint.scheme() != "https" {
        return Err(protocol("the poll endpoint is on another origin over plain http"));
    }
    Ok(LoginFlow { login_url, poll_endpoint, poll_token: answer.poll.token })
}

/// Polls every `interval` until the user has granted access or `timeout` passed.
pub async fn poll_login(
    http: &reqwest::Client,
    flow: &LoginFlow,
    interval: Duration,
    timeout: Duration,
) -> Result<LoginGrant, RemoteError> {
    let started = Instant::now();
    loop {
        let response = http.post(flow.poll_endpoint.clone()).form(&[("token", flow.poll_token.as_str())]).send().await;
        match response {
            Ok(response) if response.status() == StatusCode::OK => {
                let answer: PollAnswer =
                    response.json().await.map_err(|error| protocol(format!("not a poll answer: {error}")))?;
                return Ok(LoginGrant {
                    server: answer.server,
                    user: answer.login_name,
                    app_password: answer.app_password,
                });
            }
            Ok(response) if response.status() == StatusCode::NOT_FOUND => {}
            Ok(response) => {
                return Err(RemoteError::http_status(
                    "POST login/v2/poll",
                    response.status().as_u16(),
                    "unexpected answer while polling",
                ))
            }
            Err(error) => tracing::debug!(reason = %root_cause(&error), "poll failed; retrying"),
        }
        if started.elapsed() >= timeout {
            return Err(protocol("timed out waiting for the login in the browser"));
        }
        tokio::time::sleep(interval).await;
    }
}
