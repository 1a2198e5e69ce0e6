//! `cloakfs fsck` finds blobs no metadata names and entries the metadata names that are gone, and
//! `--repair` removes only the orphans, under the folder lock, so that the server carries the removal out.

use super::*;

/// Writes folder `file_id`'s current metadata again, unchanged, under `token`: the server then finalizes
/// what was uploaded and deleted in that folder under the lock.
async fn write_metadata_again(client: &NextcloudClient, file_id: u64, token: &cloakfs::storage::LockToken) {
    let (json, signature) = client.metadata(file_id).await.unwrap().expect("the folder has metadata");
    client.store_metadata(file_id, token, &json, &signature, false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_reports_orphans_and_missing_blobs_and_repair_removes_only_orphans() {
    let account = Account::new("fsck");
    let local = server::TempDir::new("fsck-local");
    std::fs::write(local.0.join("kept.txt"), b"kept through the repair").unwrap();
    ok(account.run(&["put", local.0.join("kept.txt").to_str().unwrap(), "/Vault/"]));
    ok(account.run(&["mkdir", "/Vault/docs"]));
    let clean = ok(account.run(&["fsck", "/Vault"]));
    assert!(
        text(&clean.stdout).contains("2 folder(s), 1 file(s) checked; 0 orphan(s), 0 missing"),
        "{}",
        text(&clean.stdout)
    );

    // A client that uploads under the lock and then writes metadata that does not name the blob leaves an
    // orphan (on Nextcloud only a metadata write under the lock makes its uploads and deletions final).
    let client = raw_client(&account);
    let vault = |segments: &[&str]| -> Vec<String> {
        std::iter::once("Vault").chain(segments.iter().copied()).map(str::to_owned).collect()
    };
    let listing = client.list_detailed(&vault(&[]), 1).await.unwrap();
    let vault_id = listing[0].file_id;
    let kept_blob = listing.iter().skip(1).find(|entry| !entry.is_dir).unwrap().name.clone();
    let orphan = "0123456789abcdef0123456789abcdef";
    let token = client.lock_folder(vault_id, 100, None).await.unwrap();
    client
        .under_lock(&token)
        .write(&vault(&[orphan]), Bytes::from_static(b"not a real blob"), WriteCondition::Always)
        .await
        .unwrap();
    write_metadata_again(&client, vault_id, &token).await;
    client.unlock_folder(vault_id, &token, false).await.unwrap();

    let found = account.run(&["fsck", "/Vault"]);
    assert!(!found.status.success());
    let stdout = text(&found.stdout);
    assert!(stdout.contains("1 orphan(s), 0 missing") && stdout.contains(&format!("/Vault/{orphan}")), "{stdout}");
    assert!(text(&found.stderr).contains("fsck --repair"), "{}", text(&found.stderr));

    let repaired = ok(account.run(&["fsck", "--repair", "/Vault"]));
    assert!(text(&repaired.stdout).contains("1 orphan(s) (1 removed), 0 missing"), "{}", text(&repaired.stdout));
    let listing = client.list_detailed(&vault(&[]), 1).await.unwrap();
    assert!(listing.iter().all(|entry| entry.name != orphan), "orphan still on the server");
    assert!(text(&ok(account.run(&["fsck", "/Vault"])).stdout).contains("0 orphan(s), 0 missing"));
    assert_eq!(ok(account.run(&["get", "/Vault/kept.txt", "-"])).stdout, b"kept through the repair");

    // A blob the metadata names is gone: reported as lost, and --repair does not pretend to fix it.
    let token = client.lock_folder(vault_id, 1000, None).await.unwrap();
    client.under_lock(&token).remove(&vault(&[&kept_blob])).await.unwrap();
    write_metadata_again(&client, vault_id, &token).await;
    client.unlock_folder(vault_id, &token, false).await.unwrap();
    let lost = account.run(&["fsck", "--repair", "/Vault"]);
    assert!(!lost.status.success());
    assert!(
        text(&lost.stdout).contains(&format!("MISSING on the server: /Vault/{kept_blob}")),
        "{}",
        text(&lost.stdout)
    );
    assert!(text(&lost.stderr).contains("their data is lost"), "{}", text(&lost.stderr));
}
