//! Authentication of every request, with session cookies the way Nextcloud sets them.
//!
//! Every request carries Basic auth (user and login or app password). Checking a password costs an
//! Argon2id run (Nextcloud: a full password check, 0.45–0.8 s), so, like Nextcloud, the first successful
//! check answers with a session cookie; a later request that sends the cookie back *with the same user in its
//! Basic auth* is accepted without checking the password again. A cookie alone authenticates nothing, a
//! cookie of another user is ignored, and sessions live in this process's memory only (a restart forgets
//! them), idle ones expiring after [`SESSION_IDLE`]. Only the SHA-256 of a session token is kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use zeroize::Zeroizing;

use super::Shared;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cloakfs_session";

/// A session unused this long is forgotten.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// Sessions open at once, at most (the oldest are dropped beyond).
const MAX_SESSIONS: usize = 10_000;

/// The user a request was authenticated as (set by [`authenticate`], read by the extractors).
#[derive(Debug, Clone)]
pub struct Authenticated(pub String);

/// Open sessions: SHA-256 of the token → user and last use.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], (String, Instant)>>);

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Instant)>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `token` is an open session of `user` (and marks it used).
    fn holds(&self, token: &str, user: &str) -> bool {
        let key = digest(token);
        let mut map = self.map();
        match map.get_mut(&key) {
            Some((owner, used)) if owner == user && used.elapsed() < SESSION_IDLE => {
                *used = Instant::now();
                true
            }
            Some((_, used)) if used.elapsed() >= SESSION_IDLE => {
                map.remove(&key);
                false
            }
            _ => false,
        }
    }

    /// Opens a session for `user`; returns its token.
    fn open(&self, user: &str) -> String {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::crypto::secret::random_bytes(secret.as_mut());
        let token = hex::encode(secret.as_ref());
        let mut map = self.map();
        map.retain(|_, (_, used)| used.elapsed() < SESSION_IDLE);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, used))| *used).map(|(key, _)| *key) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&token), (user.to_owned(), Instant::now()));
        token
    }
}

fn digest(token: &str) -> [u8; 32] {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(hash.as_ref());
    key
}

/// User and password of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Zeroizing<String>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = Zeroizing::new(BASE64.decode(encoded.trim()).ok()?);
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), Zeroizing::new(password.to_owned())))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Middleware: authenticates the request's Basic credentials (by session cookie or password) and records
/// the user for the handlers; a request without valid credentials goes on unauthenticated (the handlers
/// that need a user answer 401). A password check that succeeds opens a session (`Set-Cookie`).
pub async fn authenticate(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let Some((user, password)) = basic_credentials(request.headers()) else { return next.run(request).await };
    if cookie(request.headers(), SESSION_COOKIE).is_some_and(|token| state.sessions.holds(token, &user)) {
        request.extensions_mut().insert(Authenticated(user));
        return next.run(request).await;
    }
    let store = state.clone();
    let checked_user = user.clone();
    let valid = tokio::task::spawn_blocking(move || store.store.authenticate(&checked_user, &password)).await;
    match valid {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            tracing::info!("authentication failed");
            return next.run(request).await;
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "authentication failed: store error");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response();
        }
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response(),
    }
    let token = state.sessions.open(&user);
    request.extensions_mut().insert(Authenticated(user));
    let mut response = next.run(request).await;
    let set_cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_its_user_only() {
        let sessions = Sessions::default();
        let token = sessions.open("alice");
        assert!(sessions.holds(&token, "alice"));
        assert!(!sessions.holds(&token, "bob"));
        assert!(!sessions.holds("0000", "alice"));
        assert!(!sessions.holds(&token[..token.len() - 1], "alice"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; cloakfs_session=abc ; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
