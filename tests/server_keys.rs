//! Keys against a real `cloakfs serve`: `keys init`, `keys check`, trust on first use, and the OCS keys API
//! refusing bad input.

#[path = "common/server.rs"]
mod server;

use server::{assert_no_marker_below, client, TempDir, TestServer, PASSWORD};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mnemonic_from(init_output: &str) -> String {
    let mut lines = init_output.lines().skip_while(|line| !line.starts_with("Your mnemonic"));
    lines.nth(2).expect("mnemonic line").trim().to_owned()
}

#[test]
fn keys_init_then_check_with_right_and_wrong_mnemonic() {
    let data = TempDir::new("keys-data");
    let config = TempDir::new("keys-config");
    let server = TestServer::start(&data.0, &["alice"]);

    let init = client(&server.url, "alice", &config.0, &["keys", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let mnemonic = mnemonic_from(&stdout(&init));
    assert_eq!(mnemonic.split(' ').count(), 12, "{mnemonic:?}");

    let mnemonic_file = config.0.join("words.txt");
    std::fs::write(&mnemonic_file, format!("  {}\n", mnemonic.to_uppercase())).unwrap();
    let check =
        client(&server.url, "alice", &config.0, &["keys", "check", "--mnemonic-file", mnemonic_file.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("OK: the mnemonic unlocks the private key of \"alice\" (Sha256Iter600k)"));

    let wrong_file = config.0.join("wrong.txt");
    std::fs::write(
        &wrong_file,
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
    )
    .unwrap();
    let wrong =
        client(&server.url, "alice", &config.0, &["keys", "check", "--mnemonic-file", wrong_file.to_str().unwrap()]);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("wrong mnemonic"), "{}", stderr(&wrong));

    let again = client(&server.url, "alice", &config.0, &["keys", "init"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already has end-to-end encryption keys"), "{}", stderr(&again));

    let bad_password = server::cloakfs()
        .args(["keys", "check", "--server", &server.url, "--user", "alice", "--mnemonic-file"])
        .arg(&mnemonic_file)
        .env("XDG_CONFIG_HOME", &config.0)
        .env("CLOAKFS_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert!(!bad_password.status.success());
    assert!(stderr(&bad_password).contains("HTTP 401"), "{}", stderr(&bad_password));

    // The server's data holds neither the mnemonic nor the private key in the clear.
    server.stop();
    let first_words = mnemonic.split(' ').take(3).collect::<Vec<_>>().join(" ");
    let compact: String = mnemonic.split(' ').collect();
    assert_no_marker_below(&data.0, &[first_words.as_bytes(), compact.as_bytes(), b"PRIVATE KEY", PASSWORD.as_bytes()]);
}

#[test]
fn a_changed_server_key_is_refused_until_accepted() {
    let config = TempDir::new("tofu-config");
    let first_data = TempDir::new("tofu-first");
    let first = TestServer::start(&first_data.0, &["alice"]);
    let url = first.url.clone();
    let port = first.port();
    let init = client(&url, "alice", &config.0, &["keys", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let pinned = stdout(&init).lines().find_map(|line| line.strip_prefix("server key:  ")).unwrap().to_owned();
    first.stop();

    // "The same server" (same URL) comes back with a new key.
    let second_data = TempDir::new("tofu-second");
    let second = TestServer::start_at(&second_data.0, &format!("127.0.0.1:{port}"), &["alice"]);
    assert_eq!(second.url, url);
    let refused = client(&url, "alice", &config.0, &["keys", "init"]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(message.contains("has CHANGED"), "{message}");
    assert!(message.contains(&format!("pinned:    {pinned}")), "{message}");
    let presented = message.lines().find_map(|line| line.trim().strip_prefix("presented: ")).unwrap().to_owned();
    assert_ne!(presented, pinned);

    // Accepted explicitly: the new server key is pinned; the next refusal is that alice's keys vanished,
    // and no new keys were made on the server for her.
    let accepted = client(&url, "alice", &config.0, &["keys", "init", "--accept-server-key", &presented]);
    assert!(!accepted.status.success());
    assert!(stderr(&accepted).contains("no longer has keys for that user"), "{}", stderr(&accepted));
    let pins = std::fs::read_to_string(config.0.join("cloakfs/pins.json")).unwrap();
    assert!(pins.contains(&presented) && !pins.contains(&pinned), "{pins}");
    let check = client(&url, "alice", &config.0, &["keys", "check", "--mnemonic-file", "/dev/null"]);
    assert!(stderr(&check).contains("mnemonic is empty"), "{}", stderr(&check));
    let still_none = server::cloakfs()
        .args(["keys", "init", "--server", &url, "--user", "alice", "--pin-file"])
        .arg(config.0.join("fresh-pins.json"))
        .env("CLOAKFS_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(still_none.status.success(), "the server had no keys for alice: {}", stderr(&still_none));
}

mod api {
    use super::*;
    use reqwest::{Client, StatusCode};

    const BASE: &str = "ocs/v2.php/apps/end_to_end_encryption/api/v2";

    async fn status_and_message(request: reqwest::RequestBuilder) -> (StatusCode, String) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        (status, body.pointer("/ocs/data/message").and_then(|m| m.as_str()).unwrap_or_default().to_owned())
    }

    /// As Nextcloud: a successful password check answers with a session cookie, and a request that sends
    /// it back with the same user skips the password check; the cookie stands for nothing else.
    #[tokio::test]
    async fn a_session_cookie_stands_for_its_user_only() {
        let data = TempDir::new("session-data");
        let server = TestServer::start(&data.0, &["alice", "bob"]);
        let http = Client::new();
        let url = format!("{}/{BASE}/server-key", server.url);
        let get = |user: &str, password: &str, cookie: Option<&str>| {
            let request = http.get(&url).header("X-E2EE-Supported", "true").basic_auth(user, Some(password));
            match cookie {
                Some(cookie) => request.header("cookie", cookie),
                None => request,
            }
        };
        let first = get("alice", PASSWORD, None).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let set_cookie = first.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().to_owned();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        assert!(cookie.starts_with("cloakfs_session=") && cookie.len() == "cloakfs_session=".len() + 64, "{cookie}");

        // Sent back with the same user: no password check (a wrong one is not even looked at), no new cookie.
        let again = get("alice", "not-checked", Some(&cookie)).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        assert!(again.headers().get("set-cookie").is_none());
        // With another user's name, without Basic auth, or forged: refused.
        assert_eq!(get("bob", "wrong", Some(&cookie)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        let bare = http.get(&url).header("X-E2EE-Supported", "true").header("cookie", &cookie).send().await.unwrap();
        assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
        let forged = format!("cloakfs_session={}", "0".repeat(64));
        assert_eq!(get("alice", "wrong", Some(&forged)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        // Bob's own password check gives bob his own session.
        let bob = get("bob", PASSWORD, Some(&cookie)).send().await.unwrap();
        assert_eq!(bob.status(), StatusCode::OK);
        assert!(bob.headers().get("set-cookie").is_some());
    }

    #[tokio::test]
    async fn bad_requests_get_4xx_and_change_nothing() {
        let data = TempDir::new("api-data");
        let server = TestServer::start(&data.0, &["alice", "bob"]);
        let http = Client::new();
        let url = |endpoint: &str| format!("{}/{BASE}/{endpoint}", server.url);
        let alice = |request: reqwest::RequestBuilder| {
            request.basic_auth("alice", Some(PASSWORD)).header("X-E2EE-Supported", "true")
        };

        // Without the E2EE header: 403, as Nextcloud.
        let (status, _) = status_and_message(http.get(url("server-key")).basic_auth("alice", Some(PASSWORD))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Missing or wrong credentials: 401 with a challenge.
        let response = http.get(url("server-key")).header("X-E2EE-Supported", "true").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
        let (status, _) = status_and_message(
            http.get(url("server-key")).basic_auth("alice", Some("nope")).header("X-E2EE-Supported", "true"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = status_and_message(
            http.get(url("server-key")).basic_auth("mallory", Some(PASSWORD)).header("X-E2EE-Supported", "true"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Unknown API version.
        let (status, _) = status_and_message(alice(
            http.get(format!("{}/ocs/v2.php/apps/end_to_end_encryption/api/v3/server-key", server.url)),
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Private key in a shape the server does not accept (16-byte IV, short salt, garbage), as form and JSON.
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        for bad in [
            "abc".to_owned(),
            format!("{}|{}|{}", b64(&[1; 40]), b64(&[2; 16]), b64(&[3; 40])),
            format!("{}|{}|{}", b64(&[1; 40]), b64(&[2; 12]), b64(&[3; 8])),
            format!("!!|{}|{}", b64(&[2; 12]), b64(&[3; 40])),
        ] {
            let (status, message) =
                status_and_message(alice(http.post(url("private-key"))).form(&[("privateKey", &bad)])).await;
            assert_eq!((status, message.as_str()), (StatusCode::BAD_REQUEST, "Invalid private key format"), "{bad}");
        }
        let (status, _) = status_and_message(
            alice(http.post(url("private-key"))).header("content-type", "application/json").body("{not json"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = status_and_message(alice(http.post(url("private-key")))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "missing parameter");
        let (status, _) = status_and_message(alice(http.get(url("private-key")))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored by the bad requests");

        // A CSR for another user id: 403; garbage CSR: 400; nothing stored.
        let identity = cloakfs::crypto::PrivateIdentity::generate().unwrap();
        let csr_for_bob = identity.certificate_request_pem("bob").unwrap();
        let (status, _) =
            status_and_message(alice(http.post(url("public-key"))).form(&[("csr", csr_for_bob.as_str())])).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = status_and_message(
            alice(http.post(url("public-key")))
                .form(&[("csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----")]),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = status_and_message(alice(http.get(url("public-key")))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "alice still has no key");

        // A valid CSR works once; the second is a conflict. Certificates of users without keys: 404.
        let csr = identity.certificate_request_pem("alice").unwrap();
        let (status, _) = status_and_message(alice(http.post(url("public-key"))).form(&[("csr", csr.as_str())])).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) =
            status_and_message(alice(http.post(url("public-key"))).json(&serde_json::json!({"csr": csr}))).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) =
            status_and_message(alice(http.get(url("public-key")).query(&[("users", r#"["bob"]"#)]))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = status_and_message(alice(http.get(url("public-key")).query(&[("users", "not json")]))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // An oversized body is refused before it is read in full.
        let huge = vec![b'a'; 65 << 20];
        let response = alice(http.post(url("private-key")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(huge)
            .send()
            .await;
        match response {
            Ok(response) => assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE),
            Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
        }
    }
}
