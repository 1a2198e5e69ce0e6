//! The embedded server's folder API and WebDAV against a real `cloakfs serve` process, called through the
//! cloakfs client (and raw HTTP where the client would never send such a request): the encrypted flag,
//! locks and counters, tokens on writes, staged writes visible only after unlock, abort, stale locks,
//! metadata rules, and refusals of bad input. Status codes follow SERVER-BEHAVIOUR.md of the interop notes.

#[path = "common/server.rs"]
mod server;

use std::time::Duration;

use bytes::Bytes;
use cloakfs::storage::{
    E2eeApi as _, LockToken, NextcloudClient, RemoteError, ServerConfig, Store as _, WriteCondition,
};
use server::{TempDir, TestServer, PASSWORD};
use zeroize::Zeroizing;

fn client_for(server: &TestServer, user: &str) -> NextcloudClient {
    NextcloudClient::new(ServerConfig {
        base_url: url::Url::parse(&server.url).unwrap(),
        user: user.to_owned(),
        password: Zeroizing::new(PASSWORD.to_owned()),
        timeout: Duration::from_secs(10),
        allow_insecure_http: false,
    })
    .unwrap()
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|segment| segment.to_string()).collect()
}

fn status<T: std::fmt::Debug>(result: Result<T, RemoteError>) -> u16 {
    result.expect_err("expected an error status").status().unwrap_or(0)
}

/// An encrypted folder `name` in the user's root, with its file id.
async fn encrypted_folder(client: &NextcloudClient, name: &str) -> u64 {
    let id = client.make_folder(&path(&[name])).await.unwrap();
    client.set_encrypted(id).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_counters_tokens_and_staged_writes() {
    let data = TempDir::new("protocol-data");
    let server = TestServer::start(&data.0, &["alice", "bob"]);
    let alice = client_for(&server, "alice");

    // The encrypted flag only on empty folders.
    let full = alice.make_folder(&path(&["Full"])).await.unwrap();
    alice.write(&path(&["Full", "x"]), Bytes::from_static(b"x"), WriteCondition::Always).await.unwrap();
    assert_eq!(status(alice.set_encrypted(full).await), 404);
    // A plain folder cannot be locked.
    assert_eq!(status(alice.lock_folder(full, 1, None).await), 403);

    let vault = encrypted_folder(&alice, "Vault").await;
    let listed = alice.list_detailed(&path(&["Vault"]), 0).await.unwrap();
    assert!(listed[0].is_encrypted && listed[0].is_dir);
    assert_eq!(listed[0].file_id, vault);

    // Counter 0 is refused; a fresh lock works; any second lock is 423 whatever the counter.
    assert_eq!(status(alice.lock_folder(vault, 0, None).await), 400);
    let token = alice.lock_folder(vault, 1, None).await.unwrap();
    assert_eq!(token.0.len(), 64);
    assert_eq!(status(alice.lock_folder(vault, 99, None).await), 423);
    // Re-acquiring with one's own token (as a parameter) returns the same token.
    assert_eq!(alice.lock_folder(vault, 99, Some(&token)).await.unwrap(), token);

    // Writes inside the encrypted folder need the token: none → 403, wrong → 423.
    let blob = path(&["Vault", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(status(alice.write(&blob, Bytes::from_static(b"ciphertext"), WriteCondition::Always).await), 403);
    let wrong = LockToken("A".repeat(64));
    assert_eq!(
        status(alice.under_lock(&wrong).write(&blob, Bytes::from_static(b"ciphertext"), WriteCondition::Always).await),
        423
    );
    // Metadata PUT without metadata yet: 404; POST with the wrong token: 403.
    assert_eq!(status(alice.store_folder_metadata(vault, &wrong, "{}", "c2ln", true).await), 403);
    assert_eq!(status(alice.store_folder_metadata(vault, &token, "{}", "c2ln", false).await), 404);

    // Staged: a PUT and the metadata under the lock are invisible until unlock.
    alice.under_lock(&token).write(&blob, Bytes::from_static(b"ciphertext"), WriteCondition::Always).await.unwrap();
    alice.store_folder_metadata(vault, &token, r#"{"version":"2.0"}"#, "c2lnbmF0dXJl", true).await.unwrap();
    assert_eq!(alice.list_detailed(&path(&["Vault"]), 1).await.unwrap().len(), 1, "staged PUT visible before unlock");
    assert_eq!(status(alice.read(&blob, None).await), 404);
    assert_eq!(alice.folder_metadata(vault).await.unwrap(), None);

    // Unlock: wrong token 403; right token commits.
    assert_eq!(status(alice.unlock_folder(vault, &wrong, false).await), 403);
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert_eq!(alice.read(&blob, None).await.unwrap(), b"ciphertext");
    let (json, signature) = alice.folder_metadata(vault).await.unwrap().unwrap();
    assert_eq!((json.as_str(), signature.as_str()), (r#"{"version":"2.0"}"#, "c2lnbmF0dXJl"));
    let listed = alice.list_detailed(&path(&["Vault"]), 0).await.unwrap();
    assert_eq!(listed[0].metadata, Some((json.clone(), signature.clone())), "metadata as PROPFIND properties");
    // Unlocking again: not locked → 403.
    assert_eq!(status(alice.unlock_folder(vault, &token, false).await), 403);

    // The counter was committed with the metadata: 1 again is stale (412), 2 works.
    assert_eq!(status(alice.lock_folder(vault, 1, None).await), 412);
    let token = alice.lock_folder(vault, 2, None).await.unwrap();

    // Abort rolls back staged writes, deletes, moves and metadata.
    alice
        .under_lock(&token)
        .write(
            &path(&["Vault", "ffffffffffffffffffffffffffffffff"]),
            Bytes::from_static(b"new"),
            WriteCondition::Always,
        )
        .await
        .unwrap();
    alice.under_lock(&token).remove(&blob).await.unwrap();
    alice.store_folder_metadata(vault, &token, r#"{"version":"2.0","x":1}"#, "b3RoZXI=", false).await.unwrap();
    assert_eq!(alice.read(&blob, None).await.unwrap(), b"ciphertext", "a staged DELETE is not visible yet");
    alice.unlock_folder(vault, &token, true).await.unwrap();
    let names: Vec<String> =
        alice.list_detailed(&path(&["Vault"]), 1).await.unwrap().into_iter().skip(1).map(|entry| entry.name).collect();
    assert_eq!(names, vec!["0123456789abcdef0123456789abcdef".to_owned()]);
    assert_eq!(alice.folder_metadata(vault).await.unwrap().unwrap().0, json);
    // Abort without metadata did not commit counter 2.
    let token = alice.lock_folder(vault, 2, None).await.unwrap();

    // Metadata PUT without the lock: 412.
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert_eq!(status(alice.store_folder_metadata(vault, &token, "{}", "c2ln", false).await), 412);

    // Sub-folders: lock the parent, MKCOL (staged), flag, metadata by the ancestor's token; a child cannot
    // be locked while its parent is.
    let token = alice.lock_folder(vault, 3, None).await.unwrap();
    let sub =
        alice.under_lock(&token).make_folder(&path(&["Vault", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])).await.unwrap();
    alice.set_encrypted(sub).await.unwrap();
    alice.store_folder_metadata(sub, &token, r#"{"version":"2.0"}"#, "c3Vi", true).await.unwrap();
    assert_eq!(status(alice.lock_folder(sub, 1, None).await), 423);
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert!(alice.folder_metadata(sub).await.unwrap().is_some());

    // A MOVE out of the encrypted folder is refused; MKCOL on an existing encrypted folder is 403.
    let token = alice.lock_folder(vault, 4, None).await.unwrap();
    assert_eq!(status(alice.under_lock(&token).rename(&blob, &path(&["Full", "stolen"]), false).await), 403);
    assert_eq!(status(alice.make_folder(&path(&["Vault"])).await), 403);
    alice.unlock_folder(vault, &token, true).await.unwrap();

    // Another user cannot see, lock or read any of it.
    let bob = client_for(&server, "bob");
    assert_eq!(status(bob.lock_folder(vault, 10, None).await), 404);
    assert_eq!(bob.folder_metadata(vault).await.unwrap(), None, "another user's metadata must not be served");
    let url = alice.dav_url(&blob);
    let response = reqwest::Client::new().get(url).basic_auth("bob", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(response.status(), 403);
}

/// The server names in `folder` (as PROPFIND lists them).
async fn listed(client: &NextcloudClient, folder: &[&str]) -> Vec<String> {
    client.list_detailed(&path(folder), 1).await.unwrap().into_iter().skip(1).map(|entry| entry.name).collect()
}

/// SERVER-BEHAVIOUR.md, "WebDAV inside an encrypted folder" and "Locks and counters": staged writes are
/// finalized only in folders whose metadata was written under the lock; a blob PUT under the still open lock
/// cannot be deleted by its name; the lock's counter is committed only with the locked folder's metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_changes_are_finalized_only_where_metadata_was_written_as_on_nextcloud() {
    let data = TempDir::new("protocol-staging");
    let server = TestServer::start(&data.0, &["alice"]);
    let alice = client_for(&server, "alice");
    let vault = encrypted_folder(&alice, "Vault").await;
    let meta = r#"{"version":"2.0"}"#;
    let token = alice.lock_folder(vault, 1, None).await.unwrap();
    alice.store_folder_metadata(vault, &token, meta, "c2ln", true).await.unwrap();
    let sub =
        alice.under_lock(&token).make_folder(&path(&["Vault", "d0000000000000000000000000000000"])).await.unwrap();
    alice.set_encrypted(sub).await.unwrap();
    alice.store_folder_metadata(sub, &token, meta, "c2ln", true).await.unwrap();
    // Metadata created under this lock cannot be updated under it (Nextcloud: "Meta-data file missing").
    assert_eq!(status(alice.store_folder_metadata(sub, &token, meta, "c2ln", false).await), 404);
    // The new sub-folder is staged: nothing can be written into it before unlock.
    let inside = path(&["Vault", "d0000000000000000000000000000000", "f0000000000000000000000000000000"]);
    assert_eq!(
        status(alice.under_lock(&token).write(&inside, Bytes::from_static(b"x"), WriteCondition::Always).await),
        409
    );
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert_eq!(listed(&alice, &["Vault"]).await, vec!["d0000000000000000000000000000000"]);

    // 1. A DELETE of a blob PUT under the same, still open lock: 404, nothing removed; at unlock (metadata
    //    written) the blob becomes visible although the client meant to remove it.
    let early = path(&["Vault", "e0000000000000000000000000000000"]);
    let token = alice.lock_folder(vault, 2, None).await.unwrap();
    alice.under_lock(&token).write(&early, Bytes::from_static(b"early"), WriteCondition::Always).await.unwrap();
    assert_eq!(status(alice.read(&early, None).await), 404, "a staged upload is not readable by its name");
    assert_eq!(status(alice.under_lock(&token).remove(&early).await), 404);
    alice.store_folder_metadata(vault, &token, meta, "c2ln", false).await.unwrap();
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert!(listed(&alice, &["Vault"]).await.contains(&"e0000000000000000000000000000000".to_owned()));

    // 2. DELETE without a metadata write: the deletion stays pending (listed, readable) after unlock; a later
    //    lock that writes the folder's metadata finalizes it.
    let token = alice.lock_folder(vault, 3, None).await.unwrap();
    alice.under_lock(&token).remove(&early).await.unwrap();
    assert_eq!(alice.read(&early, None).await.unwrap(), b"early", "a staged deletion is still readable");
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert!(listed(&alice, &["Vault"]).await.contains(&"e0000000000000000000000000000000".to_owned()));
    assert_eq!(alice.read(&early, None).await.unwrap(), b"early");
    // The counter was not committed (no metadata written): 3 is accepted again.
    let token = alice.lock_folder(vault, 3, None).await.unwrap();
    alice.store_folder_metadata(vault, &token, meta, "c2ln", false).await.unwrap();
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert_eq!(listed(&alice, &["Vault"]).await, vec!["d0000000000000000000000000000000"]);
    assert_eq!(status(alice.read(&early, None).await), 404);

    // 3. A PUT into a folder whose metadata is not written stays hidden after unlock; only the sub-folder's
    //    metadata written: the top's counter is not committed either.
    let hidden = path(&["Vault", "d0000000000000000000000000000000", "a0000000000000000000000000000000"]);
    let token = alice.lock_folder(vault, 4, None).await.unwrap();
    alice.under_lock(&token).write(&hidden, Bytes::from_static(b"hidden"), WriteCondition::Always).await.unwrap();
    alice.store_folder_metadata(vault, &token, meta, "c2ln", false).await.unwrap();
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert!(listed(&alice, &["Vault", "d0000000000000000000000000000000"]).await.is_empty());
    assert_eq!(status(alice.read(&hidden, None).await), 404);
    let token = alice.lock_folder(vault, 5, None).await.unwrap();
    alice.store_folder_metadata(sub, &token, meta, "c2ln", false).await.unwrap();
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert_eq!(alice.read(&hidden, None).await.unwrap(), b"hidden", "finalized by a later metadata write");
    // Counter 5 was not committed (only the sub-folder's metadata was written): it is accepted again.
    let token = alice.lock_folder(vault, 5, None).await.unwrap();
    alice.unlock_folder(vault, &token, true).await.unwrap();

    // 4. A MOVE under a lock leaves the source at once; the destination shows it after unlock only if the
    //    destination's metadata was written; abort of the touched folders restores staged deletions.
    let data2 = TempDir::new("protocol-staging-2");
    let server2 = TestServer::start(&data2.0, &["alice"]);
    let alice = client_for(&server2, "alice");
    let vault = encrypted_folder(&alice, "Vault").await;
    let token = alice.lock_folder(vault, 1, None).await.unwrap();
    alice.store_folder_metadata(vault, &token, meta, "c2ln", true).await.unwrap();
    let a = alice.under_lock(&token).make_folder(&path(&["Vault", "a0000000000000000000000000000000"])).await.unwrap();
    let b = alice.under_lock(&token).make_folder(&path(&["Vault", "b0000000000000000000000000000000"])).await.unwrap();
    for id in [a, b] {
        alice.set_encrypted(id).await.unwrap();
        alice.store_folder_metadata(id, &token, meta, "c2ln", true).await.unwrap();
    }
    alice.unlock_folder(vault, &token, false).await.unwrap();
    let blob = |folder: &str| path(&["Vault", folder, "c0000000000000000000000000000000"]);
    let token = alice.lock_folder(vault, 2, None).await.unwrap();
    alice
        .under_lock(&token)
        .write(&blob("a0000000000000000000000000000000"), Bytes::from_static(b"c"), WriteCondition::Always)
        .await
        .unwrap();
    alice.store_folder_metadata(a, &token, meta, "c2ln", false).await.unwrap();
    alice.store_folder_metadata(vault, &token, meta, "c2ln", false).await.unwrap();
    alice.unlock_folder(vault, &token, false).await.unwrap();
    let token = alice.lock_folder(vault, 3, None).await.unwrap();
    alice
        .under_lock(&token)
        .rename(&blob("a0000000000000000000000000000000"), &blob("b0000000000000000000000000000000"), false)
        .await
        .unwrap();
    assert!(listed(&alice, &["Vault", "a0000000000000000000000000000000"]).await.is_empty(), "a MOVE leaves at once");
    assert!(
        listed(&alice, &["Vault", "b0000000000000000000000000000000"]).await.is_empty(),
        "staged at the destination"
    );
    alice.store_folder_metadata(b, &token, meta, "c2ln", false).await.unwrap();
    alice.store_folder_metadata(vault, &token, meta, "c2ln", false).await.unwrap();
    alice.unlock_folder(vault, &token, false).await.unwrap();
    assert_eq!(alice.read(&blob("b0000000000000000000000000000000"), None).await.unwrap(), b"c");
    let token = alice.lock_folder(vault, 4, None).await.unwrap();
    alice.under_lock(&token).remove(&blob("b0000000000000000000000000000000")).await.unwrap();
    alice.store_folder_metadata(b, &token, meta, "c2ln", false).await.unwrap();
    alice.unlock_folder(vault, &token, true).await.unwrap();
    assert_eq!(alice.read(&blob("b0000000000000000000000000000000"), None).await.unwrap(), b"c", "abort restores");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_locks_expire_and_roll_back() {
    let data = TempDir::new("protocol-ttl");
    let server = TestServer::start_with(&data.0, &["alice"], &["--lock-ttl", "2"]);
    let alice = client_for(&server, "alice");
    let vault = encrypted_folder(&alice, "Vault").await;
    let token = alice.lock_folder(vault, 1, None).await.unwrap();
    alice
        .under_lock(&token)
        .write(&path(&["Vault", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]), Bytes::from_static(b"x"), WriteCondition::Always)
        .await
        .unwrap();
    assert_eq!(status(alice.lock_folder(vault, 1, None).await), 423);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    // The abandoned lock was rolled back: a new lock works and the staged blob is gone.
    let token = alice.lock_folder(vault, 1, None).await.unwrap();
    alice.unlock_folder(vault, &token, true).await.unwrap();
    assert_eq!(alice.list_detailed(&path(&["Vault"]), 1).await.unwrap().len(), 1);
    let blobs = server::files_below(&data.0.join("blobs"));
    assert!(blobs.is_empty(), "rolled-back blob left on disk: {blobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_without_changes() {
    let data = TempDir::new("protocol-bad");
    let server = TestServer::start(&data.0, &["alice"]);
    let alice = client_for(&server, "alice");
    let http = reqwest::Client::new();
    let base = format!("{}/remote.php/dav/files/alice", server.url);
    let propfind = reqwest::Method::from_bytes(b"PROPFIND").unwrap();

    // Path traversal, encoded or not (sent raw: HTTP clients normalise dot segments away).
    for bad in ["/a/../b", "/a/%2e%2e/b", "/a/..%2Fb", "/%00", "/a//b"] {
        assert_eq!(raw_put(server.port(), &format!("/remote.php/dav/files/alice{bad}")), 400, "{bad}");
    }
    assert_eq!(raw_put(server.port(), "/remote.php/dav/files/alice/ok"), 201);
    // No or wrong credentials.
    let response = http.request(propfind.clone(), &base).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = http.request(propfind.clone(), &base).basic_auth("alice", Some("nope")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // Malformed PROPFIND XML.
    let response = http
        .request(propfind.clone(), &base)
        .basic_auth("alice", Some(PASSWORD))
        .body("<d:propfind><oops")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // An encrypted folder is not listed for a client that does not say it supports end-to-end encryption.
    encrypted_folder(&alice, "Vault").await;
    let response = http
        .request(propfind.clone(), format!("{base}/Vault"))
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Malformed metadata JSON and a missing signature.
    let vault = alice.list_detailed(&path(&["Vault"]), 0).await.unwrap()[0].file_id;
    let token = alice.lock_folder(vault, 1, None).await.unwrap();
    assert_eq!(status(alice.store_folder_metadata(vault, &token, "{not json", "c2ln", true).await), 400);
    let response = http
        .post(format!("{}/ocs/v2.php/apps/end_to_end_encryption/api/v2/meta-data/{vault}", server.url))
        .basic_auth("alice", Some(PASSWORD))
        .header("OCS-APIRequest", "true")
        .header("X-E2EE-Supported", "true")
        .header("e2e-token", &token.0)
        .form(&[("metaData", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    alice.unlock_folder(vault, &token, true).await.unwrap();
    assert_eq!(alice.folder_metadata(vault).await.unwrap(), None);
    // Reserved names.
    assert_eq!(
        status(alice.write(&path(&["x.e2e-to-save"]), Bytes::from_static(b"x"), WriteCondition::Always).await),
        403
    );

    // Oversized bodies.
    let response = http
        .request(propfind.clone(), &base)
        .basic_auth("alice", Some(PASSWORD))
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let response = http
        .post(format!("{}/ocs/v2.php/apps/end_to_end_encryption/api/v2/private-key", server.url))
        .basic_auth("alice", Some(PASSWORD))
        .header("OCS-APIRequest", "true")
        .header("X-E2EE-Supported", "true")
        .body(vec![b'a'; 65 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // The flag can be removed again (with its metadata), and then the folder can be locked no more.
    alice.unset_encrypted(vault).await.unwrap();
    assert_eq!(status(alice.lock_folder(vault, 5, None).await), 403);
    assert!(!alice.list_detailed(&path(&["Vault"]), 0).await.unwrap()[0].is_encrypted);

    // Byte ranges.
    alice.write(&path(&["plain.bin"]), Bytes::from_static(b"0123456789"), WriteCondition::Always).await.unwrap();
    assert_eq!(alice.read(&path(&["plain.bin"]), Some(2..5)).await.unwrap(), b"234");
    let response = http
        .get(format!("{base}/plain.bin"))
        .basic_auth("alice", Some(PASSWORD))
        .header("Range", "bytes=20-30")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
}

#[test]
fn orphaned_blobs_are_swept_at_start() {
    let data = TempDir::new("protocol-sweep");
    let server = TestServer::start(&data.0, &["alice"]);
    server.stop();
    // A blob file no row names, as a crash between writing and committing leaves.
    let orphan = data.0.join("blobs").join("ab").join("ab000000000000000000000000000000");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"orphan").unwrap();
    let server = TestServer::start(&data.0, &[]);
    assert!(!orphan.exists(), "orphan blob not swept");
    server.stop();
}

/// Sends a PUT with a literal request target (no normalisation) and returns the status code.
fn raw_put(port: u16, target: &str) -> u16 {
    use base64::Engine as _;
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    write!(
        stream,
        "PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {credentials}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_shares_put_the_folder_in_the_recipients_tree_and_enforce_their_permissions() {
    use cloakfs::storage::SharePermissions;

    let data = TempDir::new("protocol-shares");
    let server = TestServer::start(&data.0, &["alice", "bob", "carol", "dan"]);
    let (alice, bob, carol, dan) = (
        client_for(&server, "alice"),
        client_for(&server, "bob"),
        client_for(&server, "carol"),
        client_for(&server, "dan"),
    );
    let vault = encrypted_folder(&alice, "Vault").await;
    let token = alice.lock_folder(vault, 1, None).await.unwrap();
    alice.store_folder_metadata(vault, &token, r#"{"version":"2.0"}"#, "c2ln", true).await.unwrap();
    let blob = path(&["Vault", "0123456789abcdef0123456789abcdef"]);
    alice.under_lock(&token).write(&blob, Bytes::from_static(b"ciphertext"), WriteCondition::Always).await.unwrap();
    alice.unlock_folder(vault, &token, false).await.unwrap();
    // bob already has a folder called Vault: the share shows up as "Vault (2)".
    bob.make_folder(&path(&["Vault"])).await.unwrap();

    // Refusals: unknown user (404), oneself (403), a missing path (404), twice (403).
    assert_eq!(status(alice.create_user_share(&path(&["Vault"]), "nobody", SharePermissions::Write).await), 404);
    assert_eq!(status(alice.create_user_share(&path(&["Vault"]), "alice", SharePermissions::Write).await), 403);
    assert_eq!(status(alice.create_user_share(&path(&["Missing"]), "bob", SharePermissions::Write).await), 404);
    let to_bob = alice.create_user_share(&path(&["Vault"]), "bob", SharePermissions::Write).await.unwrap();
    assert_eq!(status(alice.create_user_share(&path(&["Vault"]), "bob", SharePermissions::Write).await), 403);
    alice.create_user_share(&path(&["Vault"]), "carol", SharePermissions::Read).await.unwrap();
    alice.create_user_share(&path(&["Vault"]), "dan", SharePermissions::Drop).await.unwrap();
    let listed = alice.shares_of(&path(&["Vault"])).await.unwrap();
    assert_eq!(
        listed.iter().map(|share| (share.recipient.as_str(), share.permissions)).collect::<Vec<_>>(),
        [("bob", 15), ("carol", 1), ("dan", 4)]
    );

    // Bob (write): the folder in his root, same file id, encrypted; he reads, locks and writes.
    let root = bob.list_detailed(&[], 1).await.unwrap();
    let mounted = root.iter().find(|entry| entry.name == "Vault (2)").expect("the share in bob's root");
    assert_eq!((mounted.file_id, mounted.is_encrypted), (vault, true));
    let bob_blob = path(&["Vault (2)", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(bob.read(&bob_blob, None).await.unwrap(), b"ciphertext");
    let bob_token = bob.lock_folder(vault, 2, None).await.unwrap();
    bob.store_folder_metadata(vault, &bob_token, r#"{"version":"2.0","by":"bob"}"#, "c2ln", false).await.unwrap();
    bob.unlock_folder(vault, &bob_token, false).await.unwrap();
    assert!(alice.folder_metadata(vault).await.unwrap().unwrap().0.contains("bob"));
    // He cannot delete or move the mount itself.
    assert_eq!(status(bob.remove(&path(&["Vault (2)"])).await), 403);

    // Carol (read): reads, but cannot lock, write metadata or upload.
    assert_eq!(carol.read(&path(&["Vault", "0123456789abcdef0123456789abcdef"]), None).await.unwrap(), b"ciphertext");
    assert_eq!(status(carol.lock_folder(vault, 9, None).await), 403);
    assert_eq!(
        status(
            carol
                .write(
                    &path(&["Vault", "fedcba9876543210fedcba9876543210"]),
                    Bytes::from_static(b"x"),
                    WriteCondition::Always
                )
                .await
        ),
        403
    );

    // Dan (file drop): sees the folder itself and its metadata, not its content; adds a new file and an entry.
    assert_eq!(dan.list_detailed(&path(&["Vault"]), 0).await.unwrap().len(), 1);
    assert_eq!(status(dan.list_detailed(&path(&["Vault"]), 1).await), 403);
    assert_eq!(status(dan.read(&path(&["Vault", "0123456789abcdef0123456789abcdef"]), None).await), 403);
    assert!(dan.folder_metadata(vault).await.unwrap().is_some());
    assert_eq!(
        status(
            dan.write(
                &path(&["Vault", "0123456789abcdef0123456789abcdef"]),
                Bytes::from_static(b"over"),
                WriteCondition::Always
            )
            .await
        ),
        403
    );
    dan.write(
        &path(&["Vault", "fedcba9876543210fedcba9876543210"]),
        Bytes::from_static(b"dropped"),
        WriteCondition::Always,
    )
    .await
    .unwrap();
    dan.put_filedrop(vault, r#"{"fedcba9876543210fedcba9876543210":{"ciphertext":"x","users":[]}}"#).await.unwrap();
    assert_eq!(status(dan.put_filedrop(vault, r#"{"fedcba9876543210fedcba9876543210":{}}"#).await), 409);
    assert_eq!(status(dan.put_filedrop(vault, r#"{"not-hex":{}}"#).await), 400);
    assert!(alice.folder_metadata(vault).await.unwrap().unwrap().0.contains("filedrop"));
    assert_eq!(status(dan.lock_folder(vault, 9, None).await), 403);
    // While the folder is locked a drop is refused (412).
    let token = alice.lock_folder(vault, 3, None).await.unwrap();
    assert_eq!(status(dan.put_filedrop(vault, r#"{"abcdefabcdefabcdefabcdefabcdefab":{}}"#).await), 412);
    alice.unlock_folder(vault, &token, true).await.unwrap();

    // Unshare: bob loses the folder; he may also leave a share himself (carol here).
    alice.delete_share(&to_bob.id).await.unwrap();
    assert!(!bob.list_detailed(&[], 1).await.unwrap().iter().any(|entry| entry.name == "Vault (2)"));
    assert_eq!(status(bob.read(&bob_blob, None).await), 404);
    let carol_share =
        alice.shares_of(&path(&["Vault"])).await.unwrap().into_iter().find(|share| share.recipient == "carol").unwrap();
    carol.delete_share(&carol_share.id).await.unwrap();
    assert_eq!(status(carol.list_detailed(&path(&["Vault"]), 0).await), 404);
}
