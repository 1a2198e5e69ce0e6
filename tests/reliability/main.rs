//! Reliability against a real `cloakfs serve` (which stages changes under a lock the way Nextcloud does), one
//! module per concern: fsck and repair, crashes in a commit, two devices at once, outages, a malicious
//! server, bad input, fetching ahead.

#[path = "../common/mount.rs"]
mod mount;
#[path = "../common/proxy.rs"]
mod proxy;
#[path = "../common/server.rs"]
mod server;

mod bad_input;
mod crash;
mod forgery;
mod fsck;
mod outages;
mod prefetch;
mod two_devices;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloakfs::storage::{E2eeApi as _, NextcloudClient, ServerConfig, Store as _, WriteCondition};
use mount::{ok, pattern, Account};
use proxy::{Before, Proxy};
use zeroize::Zeroizing;

fn raw_client(account: &Account) -> NextcloudClient {
    NextcloudClient::new(ServerConfig {
        base_url: url::Url::parse(&account.server.url).unwrap(),
        user: account.user.clone(),
        password: Zeroizing::new(server::PASSWORD.to_owned()),
        timeout: Duration::from_secs(10),
        allow_insecure_http: false,
    })
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn get(account: &Account, path: &str) -> Option<Vec<u8>> {
    let output = account.run(&["get", path, "-"]);
    output.status.success().then_some(output.stdout)
}

fn errno_of<T>(result: std::io::Result<T>) -> i32 {
    result.err().and_then(|error| error.raw_os_error()).unwrap_or(0)
}

/// Writes a file and closes it, returning close's error too (std's drop ignores it).
fn write_and_close(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::fd::IntoRawFd as _;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    // SAFETY: the descriptor comes from into_raw_fd and is closed exactly once.
    match unsafe { libc::close(file.into_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Runs `operation` and returns its result with how long it took.
fn timed<T>(operation: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let result = operation();
    (result, start.elapsed())
}
