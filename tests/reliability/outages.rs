//! Server outages: operations fail within the timeout with EIO, cached listings stay, and dirty data is
//! uploaded when the server returns.

use super::*;

#[test]
fn outages_fail_within_the_timeout_keep_cached_listings_and_upload_dirty_data_when_the_server_returns() {
    const TIMEOUT: Duration = Duration::from_secs(3);
    // What a call may take beyond --timeout: FUSE round trips and the lock's own request.
    const SLACK: Duration = Duration::from_secs(3);
    let mut account = Account::new("outage");
    let proxy = Proxy::start(&account.server.url);
    account.url = proxy.url.clone();
    let local = server::TempDir::new("outage-local");
    std::fs::write(local.0.join("never-opened.txt"), b"on the server only").unwrap();
    ok(account.run(&["put", local.0.join("never-opened.txt").to_str().unwrap(), "/Vault/"]));
    // No dir cache time: every listing asks the server, so the outage is met at once (no waiting for a
    // cached listing to age).
    let mounted = account.mount_with("outage", &["--timeout", "3", "--dir-cache-time", "0"]);
    std::fs::create_dir(mounted.path("docs")).unwrap();
    std::fs::write(mounted.path("docs/read.txt"), b"read before the outage").unwrap();
    std::fs::File::open(mounted.path("docs/read.txt")).unwrap().sync_all().unwrap();
    assert_eq!(std::fs::read(mounted.path("docs/read.txt")).unwrap(), b"read before the outage");

    // 1. A black hole: connections are accepted and never answered.
    proxy.black_hole(true);
    let (listing, took) = timed(|| std::fs::read_dir(mounted.path("docs")).map(|entries| entries.count()));
    assert_eq!(listing.unwrap(), 1, "a cached listing must still work offline");
    assert!(took < TIMEOUT + SLACK, "listing took {took:?}");
    let (read, took) = timed(|| std::fs::read(mounted.path("never-opened.txt")));
    assert_eq!(errno_of(read), libc::EIO);
    assert!(took < TIMEOUT + SLACK, "a read of an uncached file took {took:?}");
    let (written, took) = timed(|| write_and_close(&mounted.path("docs/offline.txt"), b"written while offline"));
    assert_eq!(errno_of(written), libc::EIO, "close must report that the upload failed");
    assert!(took < TIMEOUT + SLACK, "close took {took:?}");
    // The data stays in the mount's memory and is readable there.
    assert_eq!(std::fs::read(mounted.path("docs/offline.txt")).unwrap(), b"written while offline");
    assert!(mounted.status().contains("/docs/offline.txt"), "{}", mounted.status());
    // Unmount refuses promptly, names what is not uploaded, and the mount stays.
    let (refused, took) = timed(|| mounted.control(&["unmount", mounted.dir.0.to_str().unwrap()]));
    assert!(!refused.status.success());
    assert!(took < 2 * (TIMEOUT + SLACK), "unmount took {took:?}");
    let message = text(&refused.stderr);
    assert!(message.contains("not unmounted: 1 file(s)") && message.contains("/docs/offline.txt"), "{message}");
    assert_eq!(std::fs::read(mounted.path("docs/offline.txt")).unwrap(), b"written while offline");

    // 2. The server comes back: the dirty file is uploaded by itself.
    proxy.black_hole(false);
    assert!(
        mount::eventually(Duration::from_secs(30), || get(&account, "/Vault/docs/offline.txt").is_some()),
        "the file written offline never reached the server: {}",
        mounted.status()
    );
    assert_eq!(get(&account, "/Vault/docs/offline.txt").unwrap(), b"written while offline");

    // 3. The server process is stopped (connection refused), then started again on the same port.
    let port = account.server.port();
    account.server.kill();
    let (listing, took) = timed(|| std::fs::read_dir(mounted.path("docs")).map(|entries| entries.count()));
    assert_eq!(listing.unwrap(), 2);
    assert!(took < TIMEOUT + SLACK, "listing took {took:?}");
    let (written, took) = timed(|| write_and_close(&mounted.path("stopped.txt"), b"written while stopped"));
    assert_eq!(errno_of(written), libc::EIO);
    assert!(took < TIMEOUT + SLACK, "close took {took:?}");
    account.server = server::TestServer::start_at(&account.data.0, &format!("127.0.0.1:{port}"), &[]);
    assert!(
        mount::eventually(Duration::from_secs(30), || get(&account, "/Vault/stopped.txt").is_some()),
        "the file written while the server was stopped never reached it: {}",
        mounted.status()
    );
    let output = ok(mounted.unmount());
    assert!(text(&output.stdout).contains("unmounted"));
    assert_eq!(get(&account, "/Vault/stopped.txt").unwrap(), b"written while stopped");
}
