//! A malicious server: every forgery (metadata, signatures, counters, blobs, keys) is caught, and nothing is
//! written over forged state.

use super::*;

/// A hook that rewrites the server's answers.
type AnswerHook = Box<dyn FnMut(&proxy::Seen, &mut proxy::Answer) + Send>;

/// The committed metadata rows of the server (node, JSON): what a forgery must not get written over.
fn stored_metadata(account: &Account) -> Vec<(i64, String)> {
    let connection = rusqlite::Connection::open(account.data.0.join("cloakfs-server.sqlite3")).unwrap();
    let mut statement = connection.prepare("SELECT node, json FROM metadata ORDER BY node").unwrap();
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// Runs a CLI command that must be refused: no plaintext on stdout, and `expected` in the message.
fn refused(account: &Account, args: &[&str], expected: &[&str], case: &str) -> String {
    let output = account.run(args);
    let message = text(&output.stderr);
    assert!(!output.status.success(), "{case}: {args:?} succeeded: {}", text(&output.stdout));
    assert!(
        !output.stdout.windows(8).any(|window| window == b"content ")
            && !output.stdout.windows(6).any(|w| w == b"forged"),
        "{case}: plaintext printed: {}",
        text(&output.stdout)
    );
    assert!(expected.iter().all(|part| message.contains(part)), "{case}: expected {expected:?} in: {message}");
    eprintln!("{case}: {}", message.trim());
    message
}

/// The `meta-data` string and signature of an OCS metadata answer.
fn metadata_of(answer: &proxy::Answer) -> (String, String) {
    let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let json = value.pointer("/ocs/data/meta-data").and_then(serde_json::Value::as_str).unwrap().to_owned();
    (json, answer.header("x-nc-e2ee-signature").unwrap().to_owned())
}

/// Replaces the metadata in an OCS metadata answer.
fn set_metadata(answer: &mut proxy::Answer, json: &str, signature: &str) {
    answer.body = serde_json::to_vec(&serde_json::json!({
        "ocs": {"meta": {"status": "ok", "statuscode": 200, "message": "OK"}, "data": {"meta-data": json}}
    }))
    .unwrap();
    answer.set_header("x-nc-e2ee-signature", signature);
}

#[test]
fn a_malicious_server_is_caught_at_every_forgery_and_nothing_is_written_over_forged_state() {
    use cloakfs::crypto::{MetadataKey, PrivateIdentity, UserCertificate};
    use cloakfs::metadata::{encode_top_folder, FileEntry, FolderMetadata, Signer, TrustedUser};

    let mut account = Account::new("evil");
    let proxy = Proxy::start(&account.server.url);
    // Every hook below also strips the metadata from listings (see strip_metadata_properties).
    let evil = |hook: AnswerHook| {
        let mut hook = hook;
        proxy.after(move |seen, answer| {
            if seen.method == "PROPFIND" {
                proxy::strip_metadata_properties(answer);
            }
            hook(seen, answer);
        });
    };
    account.url = proxy.url.clone();
    let local = server::TempDir::new("evil-local");
    for (name, content) in [("a.txt", "content of a, secret"), ("b.txt", "content of b, other")] {
        std::fs::write(local.0.join(name), content).unwrap();
        ok(account.run(&["put", local.0.join(name).to_str().unwrap(), "/Vault/"]));
    }
    let a = || ["get", "/Vault/a.txt", "-"];
    let put_c = || {
        std::fs::write(local.0.join("c.txt"), "content of c").unwrap();
        local.0.join("c.txt")
    };

    // Blobs: a flipped bit, a truncated blob, the blob of another file.
    evil(Box::new(|seen, answer| {
        if seen.kind() == "GET blob" {
            answer.body[3] ^= 0x10;
        }
    }));
    refused(&account, &a(), &["authentication"], "bit flip");
    evil(Box::new(|seen, answer| {
        if seen.kind() == "GET blob" {
            answer.body.truncate(answer.body.len() - 5);
        }
    }));
    refused(&account, &a(), &["tag differs", "replaced or swapped"], "truncation");
    let b_blob = Arc::new(Mutex::new(None::<Vec<u8>>));
    let recorder = b_blob.clone();
    evil(Box::new(move |seen, answer| {
        if seen.kind() == "GET blob" {
            recorder.lock().unwrap().get_or_insert_with(|| answer.body.clone());
        }
    }));
    ok(account.run(&["get", "/Vault/b.txt", "-"]));
    let swapped = b_blob.lock().unwrap().clone().unwrap();
    evil(Box::new(move |seen, answer| {
        if seen.kind() == "GET blob" {
            answer.body = swapped.clone();
        }
    }));
    refused(&account, &a(), &["tag differs", "replaced or swapped"], "blob swap");
    proxy.clear();
    assert_eq!(ok(account.run(&a())).stdout, b"content of a, secret");

    // Metadata replay: record the folder's metadata, change the folder, then serve the old version.
    let recorded = Arc::new(Mutex::new(None::<proxy::Answer>));
    let recorder = recorded.clone();
    evil(Box::new(move |seen, answer| {
        if seen.kind() == "GET meta-data" {
            recorder.lock().unwrap().get_or_insert_with(|| answer.clone());
        }
    }));
    ok(account.run(&["ls", "/Vault"]));
    proxy.clear();
    ok(account.run(&["put", put_c().to_str().unwrap(), "/Vault/"]));
    let before = stored_metadata(&account);
    let old = recorded.lock().unwrap().clone().unwrap();
    let replayed = old.clone();
    evil(Box::new(move |seen, answer| {
        if seen.kind() == "GET meta-data" {
            *answer = replayed.clone();
        }
    }));
    refused(&account, &["ls", "/Vault"], &["counter went backwards", "replayed"], "metadata replay");
    refused(&account, &["rm", "/Vault/a.txt"], &["counter went backwards"], "write over a replay");
    proxy.clear();
    assert_eq!(stored_metadata(&account), before, "something was written over the replayed metadata");

    // Metadata signed by a certificate nobody issued: the server's own key pair and self-made CA.
    let (json, signature) = metadata_of(&old);
    let _ = signature;
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    let stranger = PrivateIdentity::generate().unwrap();
    let stranger_ca = PrivateIdentity::generate().unwrap();
    let stranger_certificate = stranger_ca
        .issue_certificate(&stranger.certificate_request_pem("alice").unwrap(), "alice", Duration::from_secs(3600))
        .unwrap();
    let resigned = cloakfs::metadata::codec::sign_document(
        &serde_json::from_value(document.clone()).unwrap(),
        Signer { identity: &stranger, certificate: &stranger_certificate },
    )
    .unwrap();
    evil(Box::new(move |seen, answer| {
        if seen.kind() == "GET meta-data" {
            set_metadata(answer, &resigned.json, &resigned.signature_base64);
        }
    }));
    refused(&account, &["ls", "/Vault"], &["signature"], "unknown certificate");
    refused(&account, &["rm", "/Vault/a.txt"], &["signature"], "write over an unknown signature");
    proxy.clear();
    assert_eq!(stored_metadata(&account), before);

    // A server-chosen metadata key, wrapped to alice's real public key, listing a file of its choice,
    // signed by a certificate the server (it is the CA) issued for "alice" over a key of its own.
    let server_identity = {
        let connection = rusqlite::Connection::open(account.data.0.join("cloakfs-server.sqlite3")).unwrap();
        let der: Vec<u8> =
            connection.query_row("SELECT pkcs8 FROM server_key WHERE id = 1", [], |row| row.get(0)).unwrap();
        PrivateIdentity::from_pkcs8_der(&der).unwrap()
    };
    let alice_certificate = UserCertificate::from_pem(document["users"][0]["certificate"].as_str().unwrap()).unwrap();
    let mallory = PrivateIdentity::generate().unwrap();
    let mallory_as_alice = server_identity
        .issue_certificate(&mallory.certificate_request_pem("alice").unwrap(), "alice", Duration::from_secs(3600))
        .unwrap();
    let (forged_blob, sealed) = cloakfs::crypto::file_cipher::encrypt_buffer(b"forged content").unwrap();
    let mut folder = FolderMetadata { counter: 1000, ..Default::default() };
    folder.files.insert(
        "0123456789abcdef0123456789abcdef".into(),
        FileEntry {
            filename: zeroize::Zeroizing::new("a.txt".into()),
            mimetype: "text/plain".into(),
            key: sealed.key,
            nonce: sealed.nonce,
            authentication_tag: sealed.tag,
            unknown: Default::default(),
        },
    );
    for (signer_certificate, signer_identity, case, expected, list_forged_member) in [
        (&mallory_as_alice, &mallory, "re-wrapped key signed as a forged alice", "not made by any user", false),
        (&stranger_certificate, &stranger, "re-wrapped key signed by a stranger", "not made by any user", false),
        (&mallory_as_alice, &mallory, "re-wrapped key with the forged alice listed as member", "certificate", true),
    ] {
        let key = MetadataKey::generate();
        let alice = [TrustedUser { user_id: "alice".into(), certificate: alice_certificate.clone() }];
        let signer = Signer { identity: signer_identity, certificate: signer_certificate };
        let mut forged = encode_top_folder(&folder, &key, &alice, None, signer).unwrap();
        if list_forged_member {
            // The key stays wrapped to alice's real key (so she could read it); the member certificate is
            // the server's forgery, and the forgery signs.
            let mut document: serde_json::Value = serde_json::from_str(&forged.json).unwrap();
            document["users"][0]["certificate"] = serde_json::Value::String(mallory_as_alice.to_pem());
            forged = cloakfs::metadata::codec::sign_document(
                &serde_json::from_value(document).unwrap(),
                Signer { identity: signer_identity, certificate: signer_certificate },
            )
            .unwrap();
        }
        let blob = forged_blob.clone();
        evil(Box::new(move |seen, answer| match seen.kind().as_str() {
            "GET meta-data" => set_metadata(answer, &forged.json, &forged.signature_base64),
            "GET blob" => answer.body = blob.clone(),
            _ => {}
        }));
        refused(&account, &a(), &[expected], case);
        refused(&account, &["rm", "/Vault/a.txt"], &[expected], case);
        proxy.clear();
        assert_eq!(stored_metadata(&account), before, "{case}: written over");
    }

    // The user's own certificate swapped for one over another key (issued by the real server key).
    let swapped_certificate = mallory_as_alice.to_pem();
    evil(Box::new(move |seen, answer| {
        if seen.kind() == "GET public-key" {
            let mut value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            if let Some(keys) = value.pointer_mut("/ocs/data/public-keys").and_then(serde_json::Value::as_object_mut) {
                for pem in keys.values_mut() {
                    *pem = serde_json::Value::String(swapped_certificate.clone());
                }
            }
            answer.body = serde_json::to_vec(&value).unwrap();
        }
    }));
    refused(&account, &a(), &["certificate"], "swapped user certificate");
    // The server's public key swapped (a new CA).
    let other_server_key = stranger_ca.public_key().to_pem();
    evil(Box::new(move |seen, answer| {
        if seen.kind() == "GET server-key" {
            let mut value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            value["ocs"]["data"]["public-key"] = serde_json::Value::String(other_server_key.clone());
            answer.body = serde_json::to_vec(&value).unwrap();
        }
    }));
    refused(&account, &a(), &["server key"], "swapped server key");
    proxy.clear();
    assert_eq!(stored_metadata(&account), before);
    assert_eq!(ok(account.run(&a())).stdout, b"content of a, secret");
}
