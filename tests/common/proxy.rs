//! A real HTTP reverse proxy on loopback between a client and a real `cloakfs serve`, for the reliability
//! tests: it forwards every request, and hooks can hold a request forever (a black hole: the connection is
//! accepted and never answered), act at one exact request (kill the mount before or after the server saw
//! it), or rewrite what the server answered (a malicious server).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;

/// A request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
}

impl Seen {
    /// A request header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Short kind of request: "PUT blob", "PUT meta-data", "POST lock", "DELETE lock", "PROPFIND", ...
    pub fn kind(&self) -> String {
        let path = self.path.split('?').next().unwrap_or("");
        if path.contains("/ocs/v2.php/apps/end_to_end_encryption/api/v2/") {
            let endpoint = path.rsplit("/api/v2/").next().unwrap_or("").split('/').next().unwrap_or("");
            format!("{} {endpoint}", self.method)
        } else if path.starts_with("/remote.php/dav/files/") && matches!(self.method.as_str(), "PUT" | "GET" | "DELETE")
        {
            format!("{} blob", self.method)
        } else {
            self.method.clone()
        }
    }
}

/// What the server answered, open to rewriting.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Sets (or adds) a response header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(key, _)| key != name);
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

/// What to do with a request before it reaches the server.
pub enum Before {
    /// Forward it.
    Forward,
    /// Never answer (the connection stays open).
    Hang,
}

type BeforeHook = Box<dyn FnMut(&Seen) -> Before + Send>;
type AfterHook = Box<dyn FnMut(&Seen, &mut Answer) + Send>;

#[derive(Default)]
struct Hooks {
    before: Option<BeforeHook>,
    after: Option<AfterHook>,
    black_hole: bool,
    log: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    hooks: Arc<Mutex<Hooks>>,
}

/// A running proxy; stops with the test process.
pub struct Proxy {
    /// Its base URL (give this to the client instead of the server's).
    pub url: String,
    hooks: Arc<Mutex<Hooks>>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (a base URL).
    pub fn start(upstream: &str) -> Self {
        let hooks = Arc::new(Mutex::new(Hooks::default()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            hooks: hooks.clone(),
        };
        let (ready_sender, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_sender.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(forward).with_state(shared);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let address = ready.recv().unwrap();
        Self { url: format!("http://{address}"), hooks }
    }

    /// Holds every request from now on without answering (`false`: forward again).
    pub fn black_hole(&self, on: bool) {
        self.hooks.lock().unwrap().black_hole = on;
    }

    /// Calls `hook` on every request before forwarding it.
    pub fn before(&self, hook: impl FnMut(&Seen) -> Before + Send + 'static) {
        self.hooks.lock().unwrap().before = Some(Box::new(hook));
    }

    /// Calls `hook` on every answer before returning it.
    pub fn after(&self, hook: impl FnMut(&Seen, &mut Answer) + Send + 'static) {
        self.hooks.lock().unwrap().after = Some(Box::new(hook));
    }

    /// Removes all hooks.
    pub fn clear(&self) {
        let mut hooks = self.hooks.lock().unwrap();
        hooks.before = None;
        hooks.after = None;
        hooks.black_hole = false;
    }

    /// The kinds of all requests seen so far ("PUT blob", "DELETE lock", ...), then forgets them.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.hooks.lock().unwrap().log)
    }
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default().to_vec();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map(|path| path.to_string()).unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body,
    };
    let hang = {
        let mut hooks = shared.hooks.lock().unwrap();
        hooks.log.push(seen.kind());
        hooks.black_hole || matches!(hooks.before.as_mut().map(|hook| hook(&seen)), Some(Before::Hang))
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let mut upstream =
        shared.http.request(parts.method.clone(), format!("{}{}", shared.upstream, seen.path)).body(seen.body.clone());
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let mut answer = match upstream.send().await {
        Ok(response) => Answer {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect(),
            body: response.bytes().await.map(|bytes| bytes.to_vec()).unwrap_or_default(),
        },
        Err(_) => Answer { status: 502, headers: Vec::new(), body: b"upstream unreachable".to_vec() },
    };
    if let Some(hook) = shared.hooks.lock().unwrap().after.as_mut() {
        hook(&seen, &mut answer);
    }
    let mut response = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(answer.body)).unwrap()
}

/// Removes the metadata properties from a PROPFIND answer, so that the client fetches metadata with
/// `GET meta-data` (which a test's hook can then rewrite). Both ways are the server's to answer.
pub fn strip_metadata_properties(answer: &mut Answer) {
    let mut body = String::from_utf8(std::mem::take(&mut answer.body)).unwrap();
    for tag in ["nc:e2ee-metadata-signature", "nc:e2ee-metadata"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        while let Some(start) = body.find(&open) {
            let end = body[start..].find(&close).map(|end| start + end + close.len()).unwrap();
            body.replace_range(start..end, "");
        }
    }
    answer.body = body.into_bytes();
}
