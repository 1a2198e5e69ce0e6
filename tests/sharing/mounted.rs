//! Mounts of a shared folder: a running mount follows a rotation made elsewhere; the recipient mounts it.

use super::*;

#[test]
fn a_running_mount_follows_a_membership_change_made_elsewhere_and_keeps_it() {
    use std::io::Write as _;

    let account = mount::Account::new("share-mount");
    ok(server::cloakfs()
        .args(["serve", "user", "add", "bob", "--data"])
        .arg(&account.data.0)
        .env("CLOAKFS_PASSWORD", server::PASSWORD)
        .output()
        .unwrap());
    let bob = User::new(&account.server, "bob");
    ok(account.run(&["mkdir", "/Vault/sub"]));
    let mounted = account.mount("share-mount");
    // Another device of alice's shares the folder: the key rotates and every sub-folder is re-encrypted.
    let fingerprint = bob.fingerprint();
    ok(account.run(&["share", "/Vault", "bob", "--fingerprint", &fingerprint]));
    bob.put("from bob", "/Vault/sub/bob.txt");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // The mount reads bob's file in a sub-folder now under the new key, signed by a member it had not seen.
    assert_eq!(std::fs::read_to_string(mounted.path("sub/bob.txt")).unwrap(), "from bob");
    // And what it writes keeps bob a member, under the new key.
    let mut file = std::fs::File::create(mounted.path("from-mount.txt")).unwrap();
    file.write_all(b"from the mount").unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::fs::write(mounted.path("sub/also.txt"), "also from the mount").unwrap();
    std::fs::File::open(mounted.path("sub/also.txt")).unwrap().sync_all().unwrap();
    assert_eq!(bob.get("/Vault/from-mount.txt"), "from the mount");
    assert_eq!(bob.get("/Vault/sub/also.txt"), "also from the mount");
    let members = bob.ok(&["members", "/Vault"]);
    assert!(members.lines().any(|line| line.starts_with("bob ")), "{members}");
    ok(mounted.unmount());

    // Bob mounts the folder as it appears in his tree and writes with his own keys.
    let (bob_mount, mut child, runtime_dir) =
        mount_as(&bob, "/Vault", &["--dir-cache-time", "1", "--commit-delay", "200"]);
    assert_eq!(std::fs::read_to_string(bob_mount.0.join("from-mount.txt")).unwrap(), "from the mount");
    let mut file = std::fs::File::create(bob_mount.0.join("sub/by-bob-mount.txt")).unwrap();
    file.write_all(b"written in bob's mount").unwrap();
    file.sync_all().unwrap();
    drop(file);
    let unmounted =
        server::cloakfs().arg("unmount").arg(&bob_mount.0).env("XDG_RUNTIME_DIR", &runtime_dir).output().unwrap();
    ok(unmounted);
    assert!(child.wait().unwrap().success());
    assert_eq!(text(&ok(account.run(&["get", "/Vault/sub/by-bob-mount.txt", "-"])).stdout), "written in bob's mount");
}
