//! Two devices writing at once: no update is lost, a conflict keeps both versions, and an edit based on an
//! old version becomes a conflicted copy.

use super::*;

/// A small deterministic generator for the workloads.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

const SHARED: [&str; 4] = ["shared-0.txt", "shared-1.txt", "notes.md", "shared-3"];

/// 200 mixed operations of writer `writer` in its mount: on its own files (create, overwrite, append,
/// read back, rename, delete, in the top folder and in its own sub-folder) and on the shared files (append a
/// line, read). Returns its own files as it last wrote them and the lines it appended to each shared file.
fn writer_workload(root: &std::path::Path, writer: usize) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let mut random = Lcg(writer as u64 + 17);
    let mut own: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut shared: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let folder = format!("w{writer}-dir");
    std::fs::create_dir(root.join(&folder)).unwrap();
    for step in 0..200 {
        let context = format!("writer {writer} step {step}");
        let name = if random.below(3) == 0 {
            format!("{folder}/w{writer}-{}.bin", random.below(6))
        } else {
            format!("w{writer}-{}.txt", random.below(8))
        };
        let path = root.join(&name);
        match random.below(10) {
            0..=2 => {
                let content = format!("{context}: {}", "x".repeat(random.below(3000))).into_bytes();
                std::fs::write(&path, &content).unwrap_or_else(|error| panic!("{context}: write: {error}"));
                own.insert(name, content);
            }
            3 if own.contains_key(&name) => {
                use std::io::Write as _;
                let extra = format!("+{step}");
                let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                file.write_all(extra.as_bytes()).unwrap_or_else(|error| panic!("{context}: append: {error}"));
                drop(file);
                own.get_mut(&name).unwrap().extend_from_slice(extra.as_bytes());
            }
            4 if own.contains_key(&name) => {
                let target = format!("w{writer}-{}.txt", random.below(8));
                std::fs::rename(&path, root.join(&target)).unwrap_or_else(|error| panic!("{context}: rename: {error}"));
                let content = own.remove(&name).unwrap();
                own.insert(target, content);
            }
            5 if own.contains_key(&name) => {
                std::fs::remove_file(&path).unwrap_or_else(|error| panic!("{context}: unlink: {error}"));
                own.remove(&name);
            }
            6 | 7 => {
                // An edit of a shared file: append one line (read-modify-write through the mount).
                use std::io::Write as _;
                let shared_name = SHARED[random.below(SHARED.len())];
                let line = format!("writer {writer} step {step}\n");
                let mut file =
                    std::fs::OpenOptions::new().create(true).append(true).open(root.join(shared_name)).unwrap();
                file.write_all(line.as_bytes()).unwrap_or_else(|error| panic!("{context}: shared: {error}"));
                drop(file);
                shared.entry(shared_name.to_owned()).or_default().extend_from_slice(line.as_bytes());
            }
            8 => {
                let shared_name = SHARED[random.below(SHARED.len())];
                match std::fs::read(root.join(shared_name)) {
                    Ok(content) => assert!(
                        String::from_utf8(content).unwrap().lines().all(|line| line.starts_with("writer ")),
                        "{context}: shared file garbled"
                    ),
                    Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{context}: {error}"),
                }
            }
            _ => match own.get(&name) {
                Some(expected) => assert_eq!(&std::fs::read(&path).unwrap(), expected, "{context}: read back {name}"),
                None => assert!(!path.exists(), "{context}: {name} exists but was never written or was removed"),
            },
        }
    }
    (own, shared)
}

/// Every file below `root` (relative path → content).
fn tree_contents(root: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                found.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

#[test]
fn two_devices_writing_at_once_lose_no_update_and_keep_both_versions_of_a_conflict() {
    let account = Account::new("writers");
    let first = account.mount_with("writers-1", &["--device", "laptop", "--commit-delay", "100"]);
    let second = account.mount_with("writers-2", &["--device", "desktop", "--commit-delay", "100"]);
    let roots = [first.dir.0.clone(), second.dir.0.clone()];
    let workers: Vec<_> = roots
        .iter()
        .cloned()
        .enumerate()
        .map(|(writer, root)| std::thread::spawn(move || writer_workload(&root, writer)))
        .collect();
    let results: Vec<_> = workers.into_iter().map(|worker| worker.join().expect("a writer failed")).collect();
    for mounted in [first, second] {
        let output = ok(mounted.unmount());
        assert!(text(&output.stdout).contains("unmounted"), "{}", text(&output.stdout));
    }

    let check = account.mount("writers-check");
    let found = tree_contents(&check.dir.0);
    for (writer, (own, shared)) in results.iter().enumerate() {
        let prefix = format!("w{writer}-");
        let mine: BTreeMap<String, Vec<u8>> =
            found.iter().filter(|(name, _)| name.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            mine.keys().collect::<Vec<_>>(),
            own.keys().collect::<Vec<_>>(),
            "writer {writer}: its own files differ"
        );
        for (name, content) in own {
            assert!(mine[name] == *content, "writer {writer}: {name} has lost an update");
        }
        // Every line it appended to a shared file survives, in the file or in a conflicted copy of it.
        for (name, lines) in shared {
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(stem, _)| stem);
            let versions: Vec<String> = found
                .iter()
                .filter(|(found_name, _)| {
                    *found_name == name || found_name.starts_with(&format!("{stem} (conflicted copy "))
                })
                .map(|(_, content)| String::from_utf8(content.clone()).unwrap())
                .collect();
            for line in String::from_utf8(lines.clone()).unwrap().lines() {
                assert!(
                    versions.iter().any(|version| version.lines().any(|kept| kept == line)),
                    "lost update: {name} has no version with \"{line}\"; files: {:?}",
                    found.keys().collect::<Vec<_>>()
                );
            }
        }
    }
    let conflicts: Vec<&String> = found.keys().filter(|name| name.contains("(conflicted copy ")).collect();
    eprintln!("conflicted copies: {conflicts:?}");
    for name in &conflicts {
        assert!(name.contains("conflicted copy laptop ") || name.contains("conflicted copy desktop "), "{name}");
    }
    ok(check.unmount());
    assert!(text(&ok(account.run(&["fsck", "/Vault"])).stdout).contains("0 orphan(s), 0 missing"));
}

#[test]
fn an_edit_based_on_an_old_version_becomes_a_conflicted_copy_and_a_delete_spares_a_newer_version() {
    use std::io::Write as _;
    let account = Account::new("conflict");
    let laptop = account.mount_with("conflict-laptop", &["--device", "laptop"]);
    let desktop = account.mount_with("conflict-desktop", &["--device", "desktop"]);
    std::fs::write(laptop.path("plan.txt"), b"version 1\n").unwrap();
    std::fs::write(laptop.path("old.txt"), b"to be deleted\n").unwrap();
    std::fs::File::open(laptop.path("plan.txt")).unwrap().sync_all().unwrap();
    assert!(mount::eventually(Duration::from_secs(10), || desktop.path("old.txt").exists()));

    // The desktop opens version 1 and edits it; meanwhile the laptop saves version 2.
    let mut editing = std::fs::OpenOptions::new().append(true).open(desktop.path("plan.txt")).unwrap();
    std::fs::write(laptop.path("plan.txt"), b"version 2 from the laptop\n").unwrap();
    std::fs::File::open(laptop.path("plan.txt")).unwrap().sync_all().unwrap();
    editing.write_all(b"desktop edit of version 1\n").unwrap();
    editing.sync_all().unwrap();
    drop(editing);

    // The desktop deletes old.txt as it knew it, but the laptop rewrote it first: the newer version stays.
    std::fs::write(laptop.path("old.txt"), b"rewritten on the laptop\n").unwrap();
    std::fs::File::open(laptop.path("old.txt")).unwrap().sync_all().unwrap();
    std::fs::remove_file(desktop.path("old.txt")).unwrap();
    std::fs::File::open(desktop.path("plan.txt")).unwrap().sync_all().unwrap();
    ok(laptop.unmount());
    ok(desktop.unmount());

    let check = account.mount("conflict-check");
    let found = tree_contents(&check.dir.0);
    assert_eq!(found.get("plan.txt").map(Vec::as_slice), Some(&b"version 2 from the laptop\n"[..]), "{found:?}");
    let copies: Vec<(&String, &Vec<u8>)> =
        found.iter().filter(|(name, _)| name.starts_with("plan (conflicted copy desktop ")).collect();
    assert_eq!(copies.len(), 1, "{:?}", found.keys().collect::<Vec<_>>());
    assert!(copies[0].0.ends_with(").txt"), "{}", copies[0].0);
    assert_eq!(copies[0].1.as_slice(), b"version 1\ndesktop edit of version 1\n");
    assert_eq!(found.get("old.txt").map(Vec::as_slice), Some(&b"rewritten on the laptop\n"[..]), "{found:?}");
    ok(check.unmount());
    assert!(text(&ok(account.run(&["fsck", "/Vault"])).stdout).contains("0 orphan(s), 0 missing"));
}
