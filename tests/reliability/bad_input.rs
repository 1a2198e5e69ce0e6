//! Bad input at every edge (names, sizes, full disks, wrong mnemonics) gets a clear error and loses nothing.

use super::*;

#[test]
fn bad_input_at_every_edge_gets_a_clear_error_and_loses_nothing() {
    // The CLI: missing arguments, unusable URLs, a mnemonic file that cannot be read or is wrong.
    let mut account = Account::with_server_args("edges", &["--quota", "200K"]);
    let missing = server::cloakfs().args(["get"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("required"), "{}", text(&missing.stderr));
    let config = &account.config.0;
    let bad_url = server::client("not a url", "alice", config, &["ls", "/"]);
    assert_eq!(bad_url.status.code(), Some(2));
    assert!(text(&bad_url.stderr).contains("not a server URL"), "{}", text(&bad_url.stderr));
    let plain_remote = server::client("http://192.0.2.1", "alice", config, &["ls", "/"]);
    assert!(text(&plain_remote.stderr).contains("plain http"), "{}", text(&plain_remote.stderr));
    let unreadable =
        server::client(&account.url, "alice", config, &["ls", "/Vault", "--mnemonic-file", "/nonexistent/words"]);
    assert!(
        !unreadable.status.success() && text(&unreadable.stderr).contains("/nonexistent/words"),
        "{}",
        text(&unreadable.stderr)
    );
    let words = account.config.0.join("wrong.words");
    std::fs::write(&words, "abandon ".repeat(12)).unwrap();
    let wrong =
        server::client(&account.url, "alice", config, &["ls", "/Vault", "--mnemonic-file", words.to_str().unwrap()]);
    assert!(!wrong.status.success() && text(&wrong.stderr).contains("mnemonic"), "{}", text(&wrong.stderr));
    std::fs::write(&words, "these are not twelve words from the list").unwrap();
    let garbage =
        server::client(&account.url, "alice", config, &["ls", "/Vault", "--mnemonic-file", words.to_str().unwrap()]);
    assert!(!garbage.status.success() && text(&garbage.stderr).contains("mnemonic"), "{}", text(&garbage.stderr));

    // The server: malformed requests get 4xx answers, never a 500, and the server keeps serving.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let base = account.server.url.clone();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let ocs = format!("{base}/ocs/v2.php/apps/end_to_end_encryption/api/v2");
        let dav = format!("{base}/remote.php/dav/files/alice");
        let send = |request: reqwest::RequestBuilder| async move {
            request
                .basic_auth("alice", Some(server::PASSWORD))
                .header("OCS-APIRequest", "true")
                .header("X-E2EE-Supported", "true")
                .send()
                .await
                .unwrap()
        };
        let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
            ("lock with a non-numeric counter", http.post(format!("{ocs}/lock/2")).header("X-NC-E2EE-COUNTER", "abc")),
            (
                "lock of a file id that does not exist",
                http.post(format!("{ocs}/lock/999999")).header("X-NC-E2EE-COUNTER", "1"),
            ),
            ("metadata without a lock", http.put(format!("{ocs}/meta-data/2")).form(&[("metaData", "{")])),
            (
                "a certificate request that is not PEM",
                http.post(format!("{ocs}/public-key")).form(&[("csr", "garbage")]),
            ),
            (
                "public keys for a malformed list",
                http.get(format!("{ocs}/public-key?users=[[[")).header("Accept", "application/json"),
            ),
            (
                "PROPFIND with broken XML",
                http.request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), &dav)
                    .header("Depth", "1")
                    .body("<d:propfind"),
            ),
            (
                "PROPFIND with depth infinity",
                http.request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), &dav).header("Depth", "infinity"),
            ),
            ("a path escaping the user's root", http.get(format!("{dav}/%2e%2e/%2e%2e/etc/passwd"))),
            ("another user's files", http.get(format!("{base}/remote.php/dav/files/bob/x"))),
            ("a name with a reserved suffix", http.put(format!("{dav}/x.e2e-to-save")).body("x")),
            (
                "MOVE without a destination",
                http.request(reqwest::Method::from_bytes(b"MOVE").unwrap(), format!("{dav}/Vault")),
            ),
        ];
        for (case, request) in cases {
            let response = send(request).await;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert!((400..500).contains(&status), "{case}: HTTP {status}: {body}");
            eprintln!("{case}: HTTP {status}");
        }
        let alive = send(http.get(format!("{ocs}/server-key")).header("Accept", "application/json")).await;
        assert_eq!(alive.status().as_u16(), 200, "{}", alive.text().await.unwrap_or_default());
    });

    // The mount: an upload over the server's quota (507) is ENOSPC at close; the data stays in RAM and
    // reaches the server by itself once there is room.
    let mounted = account.mount("edges");
    std::fs::write(mounted.path("small.txt"), b"fits").unwrap();
    let big = pattern(300_000, 9);
    assert_eq!(errno_of(write_and_close(&mounted.path("big.bin"), &big)), libc::ENOSPC);
    assert_eq!(std::fs::read(mounted.path("big.bin")).unwrap(), big, "the data must stay readable in the mount");
    let status = mounted.status();
    assert!(status.contains("/big.bin") && status.contains("no space left on the server"), "{status}");
    assert_eq!(errno_of(std::fs::write(mounted.path(&"n".repeat(256)), b"")), libc::ENAMETOOLONG);
    let port = account.server.port();
    account.server.kill();
    account.server = server::TestServer::start_at(&account.data.0, &format!("127.0.0.1:{port}"), &[]);
    assert!(
        mount::eventually(Duration::from_secs(30), || get(&account, "/Vault/big.bin").is_some_and(|got| got == big)),
        "big.bin never reached the server: {}",
        mounted.status()
    );
    ok(mounted.unmount());
    assert_eq!(get(&account, "/Vault/small.txt").unwrap(), b"fits");
}
