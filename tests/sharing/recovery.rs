//! The offline recovery key restoring a member who lost their keys, seen by the other members.

use super::*;

#[test]
fn the_recovery_key_restores_a_member_who_lost_their_keys_and_the_others_follow_the_trail() {
    let data = TempDir::new("restore-data");
    let server = TestServer::start(&data.0, &["alice", "bob", "carol"]);
    let alice = User::new(&server, "alice");
    let bob = User::new(&server, "bob");
    let carol = User::new(&server, "carol");
    let (key_file, _) = alice.recovery_init();
    alice.ok(&["mkdir", "--encrypted", "/Vault"]);
    alice.ok(&["mkdir", "/Vault/sub"]);
    alice.put("alpha secret", "/Vault/sub/a.txt");
    alice.share("/Vault", &bob, &[]);
    alice.share("/Vault", &carol, &["--permissions", "drop"]);
    assert_eq!(bob.get("/Vault/sub/a.txt"), "alpha secret");

    // Alice loses her keys (the server drops them) and makes new ones on a new device.
    let database = database(&server);
    database.execute("DELETE FROM public_keys WHERE user = 'alice'", []).unwrap();
    database.execute("DELETE FROM private_keys WHERE user = 'alice'", []).unwrap();
    let new_alice = User::new(&server, "alice");
    refused(new_alice.run(&["ls", "/Vault"]), "a different certificate for user \"alice\"");
    // A wrong recovery key opens nothing.
    let other_file = new_alice.config.0.join("other.pem");
    std::fs::write(&other_file, PrivateIdentity::generate().unwrap().to_pkcs8_pem().as_bytes()).unwrap();
    refused(new_alice.run(&["recovery", "restore", "--key", other_file.to_str().unwrap(), "/Vault"]), "recovery key");
    // The right one cannot make a non-member (carol, who may only drop files) a member.
    refused(carol.run(&["recovery", "restore", "--key", key_file.to_str().unwrap(), "/Vault"]), "only for a member");

    // With the right key alice's new keys take her place; it is recorded and verified.
    let restored = new_alice.ok(&["recovery", "restore", "--key", key_file.to_str().unwrap(), "/Vault"]);
    assert!(restored.contains("a member of /Vault again"), "{restored}");
    assert_eq!(new_alice.get("/Vault/sub/a.txt"), "alpha secret");
    // Bob's device had alice's old certificate pinned: it accepts the new one because the recovery key in
    // force signed the entry, and the folder (re-keyed, sub-folder re-encrypted) still reads.
    assert_eq!(bob.get("/Vault/sub/a.txt"), "alpha secret");
    let audit = bob.ok(&["audit", "/Vault"]);
    assert!(audit.contains("access restored with the recovery key for alice"), "{audit}");
    let members = bob.ok(&["members", "/Vault"]);
    let fingerprint = new_alice.ok(&["keys", "check"]);
    let new_fingerprint = fingerprint.rsplit(' ').next().unwrap().trim();
    assert!(members.contains(new_fingerprint), "{members}\n{fingerprint}");
    // Alice's old device (old key) is out.
    refused(alice.run(&["get", "/Vault/sub/a.txt", "-"]), "");
    // Running it again changes nothing.
    let again = new_alice.ok(&["recovery", "restore", "--key", key_file.to_str().unwrap(), "/Vault"]);
    assert!(again.contains("already"), "{again}");
}
