//! Nextcloud's Login Flow v2, so `cloakfs login` works the same against `cloakfs serve`: the client starts a
//! flow, the user opens the login URL in a browser and signs in, and the client's poll then receives a
//! fresh app password (once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::tree::random_hex;
use super::Shared;

/// How long a flow may wait for the user (Nextcloud: 20 minutes).
const FLOW_LIFETIME: Duration = Duration::from_secs(20 * 60);

/// Flows in progress, by poll token.
#[derive(Default)]
pub struct LoginFlows {
    flows: Mutex<HashMap<String, Flow>>,
}

struct Flow {
    login_token: String,
    started: Instant,
    granted: Option<(String, Zeroizing<String>)>,
}

impl LoginFlows {
    fn with<T>(&self, action: impl FnOnce(&mut HashMap<String, Flow>) -> T) -> T {
        let mut flows = self.flows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        flows.retain(|_, flow| flow.started.elapsed() < FLOW_LIFETIME);
        action(&mut flows)
    }
}

/// The Login Flow v2 routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/index.php/login/v2", post(start))
        .route("/index.php/login/v2/poll", post(poll))
        .route("/index.php/login/v2/flow/{token}", get(form).post(grant))
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn start(State(state): State<Shared>, headers: HeaderMap) -> Json<serde_json::Value> {
    let poll_token = random_hex(32);
    let login_token = random_hex(32);
    state.logins.with(|flows| {
        flows.insert(
            poll_token.clone(),
            Flow { login_token: login_token.clone(), started: Instant::now(), granted: None },
        )
    });
    let base = base_url(&headers);
    Json(json!({
        "poll": { "token": poll_token, "endpoint": format!("{base}/index.php/login/v2/poll") },
        "login": format!("{base}/index.php/login/v2/flow/{login_token}"),
    }))
}

#[derive(Deserialize)]
struct PollForm {
    token: String,
}

async fn poll(State(state): State<Shared>, headers: HeaderMap, Form(form): Form<PollForm>) -> Response {
    let granted = state.logins.with(|flows| match flows.get(&form.token) {
        Some(flow) if flow.granted.is_some() => flows.remove(&form.token).and_then(|flow| flow.granted),
        _ => None,
    });
    match granted {
        Some((user, app_password)) => Json(json!({
            "server": base_url(&headers),
            "loginName": user,
            "appPassword": app_password.as_str(),
        }))
        .into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!([]))).into_response(),
    }
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cloakfs login</title></head><body>{body}</body></html>"
    ))
}

async fn form(State(state): State<Shared>, Path(token): Path<String>) -> Response {
    let known = state.logins.with(|flows| flows.values().any(|flow| flow.login_token == token));
    if !known || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return (StatusCode::NOT_FOUND, page("<p>This login link is unknown or expired.</p>")).into_response();
    }
    page(&format!(
        "<h1>Grant access to cloakfs</h1><form method=\"post\" action=\"/index.php/login/v2/flow/{token}\">\
         <label>User <input name=\"user\" autocomplete=\"username\"></label><br>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label><br>\
         <button type=\"submit\">Grant access</button></form>"
    ))
    .into_response()
}

#[derive(Deserialize)]
struct GrantForm {
    user: String,
    password: Zeroizing<String>,
}

async fn grant(State(state): State<Shared>, Path(token): Path<String>, Form(form): Form<GrantForm>) -> Response {
    let known =
        state.logins.with(|flows| flows.values().any(|flow| flow.login_token == token && flow.granted.is_none()));
    if !known {
        return (StatusCode::NOT_FOUND, page("<p>This login link is unknown or expired.</p>")).into_response();
    }
    let store = state.clone();
    let user = form.user.clone();
    let checked = tokio::task::spawn_blocking(move || store.store.authenticate(&user, &form.password)).await;
    if !matches!(checked, Ok(Ok(true))) {
        return (StatusCode::UNAUTHORIZED, page("<p>Wrong user name or password.</p>")).into_response();
    }
    let app_password = match state.store.create_app_password(&form.user, "login flow v2") {
        Ok(password) => Zeroizing::new(password),
        Err(error) => {
            tracing::error!(%error, "cannot create an app password");
            return (StatusCode::INTERNAL_SERVER_ERROR, page("<p>Internal error.</p>")).into_response();
        }
    };
    state.logins.with(|flows| {
        if let Some(flow) = flows.values_mut().find(|flow| flow.login_token == token) {
            flow.granted = Some((form.user.clone(), app_password));
        }
    });
    tracing::info!("login flow granted");
    page("<p>Access granted. You can close this window.</p>").into_response()
}
