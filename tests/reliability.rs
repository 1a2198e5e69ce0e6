//! Reliability against a real `cloakfs serve` (which stages changes under a lock the way Nextcloud does):
//! `cloakfs fsck` finds blobs no metadata names and entries the metadata names that are gone, and
//! `--repair` removes only the orphans, under the folder lock, so that the server carries the removal out.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloakfs::remote::{NextcloudClient, Remote as _, ServerConfig};
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

/// Writes folder `file_id`'s current metadata again, unchanged, under `token`: the server then finalizes
/// what was uploaded and deleted in that folder under the lock.
async fn write_metadata_again(client: &NextcloudClient, file_id: u64, token: &cloakfs::remote::LockToken) {
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
    let listing = client.propfind(&vault(&[]), 1).await.unwrap();
    let vault_id = listing[0].file_id;
    let kept_blob = listing.iter().skip(1).find(|entry| !entry.is_dir).unwrap().name.clone();
    let orphan = "0123456789abcdef0123456789abcdef";
    let token = client.lock_folder(vault_id, 100, None).await.unwrap();
    client.put(&vault(&[orphan]), Bytes::from_static(b"not a real blob"), Some(&token), None).await.unwrap();
    write_metadata_again(&client, vault_id, &token).await;
    client.unlock_folder(vault_id, &token, false).await.unwrap();

    let found = account.run(&["fsck", "/Vault"]);
    assert!(!found.status.success());
    let stdout = text(&found.stdout);
    assert!(stdout.contains("1 orphan(s), 0 missing") && stdout.contains(&format!("/Vault/{orphan}")), "{stdout}");
    assert!(text(&found.stderr).contains("fsck --repair"), "{}", text(&found.stderr));

    let repaired = ok(account.run(&["fsck", "--repair", "/Vault"]));
    assert!(text(&repaired.stdout).contains("1 orphan(s) (1 removed), 0 missing"), "{}", text(&repaired.stdout));
    let listing = client.propfind(&vault(&[]), 1).await.unwrap();
    assert!(listing.iter().all(|entry| entry.name != orphan), "orphan still on the server");
    assert!(text(&ok(account.run(&["fsck", "/Vault"])).stdout).contains("0 orphan(s), 0 missing"));
    assert_eq!(ok(account.run(&["get", "/Vault/kept.txt", "-"])).stdout, b"kept through the repair");

    // A blob the metadata names is gone: reported as lost, and --repair does not pretend to fix it.
    let token = client.lock_folder(vault_id, 1000, None).await.unwrap();
    client.delete(&vault(&[&kept_blob]), Some(&token)).await.unwrap();
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

/// Where in a request the mount is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The server never sees the request.
    BeforeServer,
    /// The server processed it; the mount dies before reading the answer.
    AfterServer,
}

/// Requests that change something on the server.
fn is_mutating(kind: &str) -> bool {
    matches!(
        kind,
        "POST lock"
            | "DELETE lock"
            | "PUT blob"
            | "DELETE blob"
            | "PUT meta-data"
            | "POST meta-data"
            | "MOVE"
            | "MKCOL"
    )
}

fn kill_9(pid: u32) {
    // SAFETY: plain syscall on a child process id.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// What one round changed, and whether its fsync was acknowledged.
struct Round {
    new_a: Vec<u8>,
    new_c: Vec<u8>,
    created: String,
    removed: String,
    fsync_acknowledged: bool,
    /// The mutating requests seen (kind), for the dry run and for messages.
    mutating: Vec<String>,
    /// The request the mount was killed at.
    killed_at: Option<String>,
}

/// One round of changes through a mount behind `proxy`: rewrite a.txt and docs/c.txt, create n<round>.txt,
/// delete n<round-1>.txt, fsync. With `crash = Some((k, phase))` the mount is killed -9 at the k-th
/// mutating request.
fn crash_round(account: &Account, proxy: &Proxy, round: usize, crash: Option<(usize, Phase)>) -> Round {
    let mounted = account.mount_with(&format!("crash-{round}"), &["--commit-delay", "600000"]);
    let pid = mounted.pid();
    let counter = Arc::new(Mutex::new((0usize, Vec::<String>::new(), None::<String>, None::<String>)));
    {
        let counter = counter.clone();
        proxy.before(move |seen| {
            let kind = seen.kind();
            if !is_mutating(&kind) {
                return Before::Forward;
            }
            let mut state = counter.lock().unwrap();
            let index = state.0;
            state.0 += 1;
            state.1.push(kind.clone());
            match crash {
                Some((target, Phase::BeforeServer)) if target == index => {
                    state.3 = Some(format!("before {kind}"));
                    kill_9(pid);
                    Before::Hang
                }
                Some((target, Phase::AfterServer)) if target == index => {
                    state.2 = Some(format!("{} {}", seen.method, seen.path));
                    Before::Forward
                }
                _ => Before::Forward,
            }
        });
    }
    {
        let counter = counter.clone();
        proxy.after(move |seen, _answer| {
            let mut state = counter.lock().unwrap();
            if state.2.as_deref() == Some(&format!("{} {}", seen.method, seen.path)) {
                state.2 = None;
                state.3 = Some(format!("after {}", seen.kind()));
                kill_9(pid);
            }
        });
    }
    let new_a = format!("a from round {round}").into_bytes();
    let new_c = pattern(70_000 + round, round as u8);
    let created = format!("n{round}.txt");
    let removed = format!("n{}.txt", round.wrapping_sub(1));
    let _ = std::fs::write(mounted.path("a.txt"), &new_a);
    let _ = std::fs::write(mounted.path(&created), created.as_bytes());
    let _ = std::fs::write(mounted.path("docs/c.txt"), &new_c);
    let _ = std::fs::remove_file(mounted.path(&removed));
    let fsync_acknowledged =
        std::fs::OpenOptions::new().write(true).open(mounted.path("a.txt")).and_then(|file| file.sync_all()).is_ok();
    let (mutating, killed_at) = {
        let mut state = counter.lock().unwrap();
        (state.1.clone(), state.3.take())
    };
    if crash.is_some() {
        assert!(killed_at.is_some(), "round {round}: the crash point {crash:?} was never reached: {mutating:?}");
        let dir = mounted.crash();
        let _ = std::process::Command::new("fusermount3").args(["-u", "-z"]).arg(&dir.0).status();
    } else {
        ok(mounted.unmount());
    }
    proxy.clear();
    let mutating = if crash.is_some() { mutating } else { counter.lock().unwrap().1.clone() };
    Round { new_a, new_c, created, removed, fsync_acknowledged, mutating, killed_at }
}

fn get(account: &Account, path: &str) -> Option<Vec<u8>> {
    let output = account.run(&["get", path, "-"]);
    output.status.success().then_some(output.stdout)
}

#[test]
fn kill_9_anywhere_in_a_commit_leaves_every_file_old_or_new_and_fsck_cleans_up() {
    // Stale locks expire after 2 s on this server (a real Nextcloud server: 24 h, or the next mount of the
    // same folder aborts it, see DESIGN.md).
    let mut account = Account::with_server_args("crash", &["--lock-ttl", "2"]);
    let proxy = Proxy::start(&account.server.url);
    account.url = proxy.url.clone();
    {
        let mounted = account.mount("crash-setup");
        std::fs::create_dir(mounted.path("docs")).unwrap();
        std::fs::write(mounted.path("a.txt"), b"a at the start").unwrap();
        std::fs::write(mounted.path("b.txt"), b"b never changes").unwrap();
        std::fs::write(mounted.path("docs/c.txt"), b"c at the start").unwrap();
        std::fs::write(mounted.path("n0.txt"), b"n0.txt").unwrap();
        ok(mounted.unmount());
    }
    // A dry run learns the mutating requests of one round; each of them is then a crash point, before the
    // server sees it and after it processed it.
    let dry = crash_round(&account, &proxy, 1, None);
    let points: Vec<(usize, Phase)> =
        (0..dry.mutating.len()).flat_map(|index| [(index, Phase::BeforeServer), (index, Phase::AfterServer)]).collect();
    assert!(points.len() >= 20, "only {} crash points: {:?}", points.len(), dry.mutating);
    let mut killed_at = Vec::new();
    for (offset, point) in points.iter().enumerate() {
        let round = offset + 2;
        // The file this round deletes exists whatever the last crash kept (same requests every round).
        let removed = format!("n{}.txt", round - 1);
        if get(&account, &format!("/Vault/{removed}")).is_none() {
            let local = server::TempDir::new("crash-put");
            std::fs::write(local.0.join(&removed), removed.as_bytes()).unwrap();
            ok(account.run(&["put", local.0.join(&removed).to_str().unwrap(), "/Vault/"]));
        }
        let old_a = get(&account, "/Vault/a.txt").expect("a.txt readable before the round");
        let old_c = get(&account, "/Vault/docs/c.txt").expect("c.txt readable before the round");
        let done = crash_round(&account, &proxy, round, Some(*point));
        let at = done.killed_at.clone().unwrap();
        killed_at.push(at.clone());
        let context = format!("round {round}, killed {at}");
        // Every file is the old or the new version and decrypts; nothing is missing.
        let a = get(&account, "/Vault/a.txt").unwrap_or_else(|| panic!("{context}: a.txt lost"));
        assert!(a == old_a || a == done.new_a, "{context}: a.txt is neither version");
        let c = get(&account, "/Vault/docs/c.txt").unwrap_or_else(|| panic!("{context}: c.txt lost"));
        assert!(c == old_c || c == done.new_c, "{context}: c.txt is neither version");
        assert_eq!(get(&account, "/Vault/b.txt").as_deref(), Some(&b"b never changes"[..]), "{context}");
        if let Some(created) = get(&account, &format!("/Vault/{}", done.created)) {
            assert_eq!(created, done.created.as_bytes(), "{context}");
        }
        if let Some(removed) = get(&account, &format!("/Vault/{}", done.removed)) {
            assert_eq!(removed, done.removed.as_bytes(), "{context}");
        }
        if done.fsync_acknowledged {
            assert!(a == done.new_a && c == done.new_c, "{context}: fsync returned but the change is not there");
        }
        // The dead mount's lock expires; fsck --repair takes the lock and removes what the crash left over.
        let repaired = ok(account.run(&["fsck", "--repair", "/Vault"]));
        let clean = ok(account.run(&["fsck", "/Vault"]));
        assert!(text(&clean.stdout).contains("0 orphan(s), 0 missing"), "{context}: {}", text(&clean.stdout));
        eprintln!("{context}: {}", text(&repaired.stdout).lines().last().unwrap_or_default());
    }
    eprintln!("crash points: {killed_at:?}");
}

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
    let mounted = account.mount_with("outage", &["--timeout", "3", "--dir-cache-time", "1"]);
    std::fs::create_dir(mounted.path("docs")).unwrap();
    std::fs::write(mounted.path("docs/read.txt"), b"read before the outage").unwrap();
    std::fs::File::open(mounted.path("docs/read.txt")).unwrap().sync_all().unwrap();
    assert_eq!(std::fs::read(mounted.path("docs/read.txt")).unwrap(), b"read before the outage");

    // 1. A black hole: connections are accepted and never answered.
    proxy.black_hole(true);
    std::thread::sleep(Duration::from_millis(1500)); // past the dir cache time
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
    std::thread::sleep(Duration::from_millis(1500));
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

/// Removes the metadata properties from a PROPFIND answer, so that the client fetches metadata with
/// `GET meta-data` (which the forgeries below rewrite). Both ways are the server's to answer.
fn strip_metadata_properties(answer: &mut proxy::Answer) {
    let mut body = String::from_utf8(std::mem::take(&mut answer.body)).unwrap();
    for tag in ["nc:e2ee-metadata-signature", "nc:e2ee-metadata"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        while let Some(start) = body.find(&open) {
            let end = body[start..].find(&close).map(|end| start + end + close.len()).unwrap();
            body.replace_range(start..end, "");
        }
    }
    answer.body = body.into_bytes();
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
                strip_metadata_properties(answer);
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
    assert!(status.contains("/big.bin") && status.contains("No space left"), "{status}");
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

/// The blob paths of the GET requests the proxy sees from now on (in order).
fn record_blob_gets(proxy: &Proxy) -> Arc<Mutex<Vec<String>>> {
    let gets = Arc::new(Mutex::new(Vec::new()));
    let recorded = gets.clone();
    proxy.before(move |seen| {
        if seen.kind() == "GET blob" {
            recorded.lock().unwrap().push(seen.path.clone());
        }
        Before::Forward
    });
    gets
}

/// Reading a folder's small files one after another: the open of one fetches the next ones ahead
/// (verified, into the RAM cache), so their opens find them there and no blob is downloaded twice. A forged
/// blob fetched ahead is not kept: its open downloads it again and gets the real content.
#[test]
fn opening_a_small_file_fetches_the_next_ones_ahead_and_a_forged_one_is_not_kept() {
    const FILES: usize = 20;
    const AHEAD: usize = cloakfs::mount::core::PREFETCH_AHEAD;
    let mut account = Account::new("prefetch");
    let proxy = Proxy::start(&account.server.url);
    account.url = proxy.url.clone();
    let name = |i: usize| format!("docs/f{i:02}");
    let content = |i: usize| pattern(1000 + i, i as u8);
    let writer = account.mount("prefetch-write");
    std::fs::create_dir(writer.path("docs")).unwrap();
    for i in 0..FILES {
        std::fs::write(writer.path(&name(i)), content(i)).unwrap();
    }
    ok(writer.unmount());

    // 1. Reading all files in name order downloads each blob once, most of them ahead of their open.
    let mounted = account.mount("prefetch-read");
    assert_eq!(std::fs::read_dir(mounted.path("docs")).unwrap().count(), FILES);
    let gets = record_blob_gets(&proxy);
    assert_eq!(std::fs::read(mounted.path(&name(0))).unwrap(), content(0));
    assert!(
        mount::eventually(Duration::from_secs(10), || gets.lock().unwrap().len() == 1 + AHEAD),
        "opening the first file should fetch it and the {AHEAD} after it: {:?}",
        gets.lock().unwrap()
    );
    for i in 1..FILES {
        assert_eq!(std::fs::read(mounted.path(&name(i))).unwrap(), content(i), "{}", name(i));
    }
    std::thread::sleep(Duration::from_millis(300));
    let fetched = gets.lock().unwrap().clone();
    let distinct: std::collections::BTreeSet<_> = fetched.iter().collect();
    assert_eq!((fetched.len(), distinct.len()), (FILES, FILES), "each blob once: {fetched:?}");
    ok(mounted.unmount());

    // 2. Forged answers to the downloads ahead: nothing forged is kept, each of those files is downloaded
    // again at its open and reads right.
    let mounted = account.mount("prefetch-forged");
    assert_eq!(std::fs::read_dir(mounted.path("docs")).unwrap().count(), FILES);
    let gets = record_blob_gets(&proxy);
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    proxy.after(move |seen, answer| {
        let first = answered.fetch_add(usize::from(seen.kind() == "GET blob"), std::sync::atomic::Ordering::SeqCst);
        if seen.kind() == "GET blob" && first > 0 && !answer.body.is_empty() {
            answer.body[0] ^= 1;
        }
    });
    assert_eq!(std::fs::read(mounted.path(&name(0))).unwrap(), content(0));
    assert!(mount::eventually(Duration::from_secs(10), || gets.lock().unwrap().len() == 1 + AHEAD));
    std::thread::sleep(Duration::from_millis(300));
    proxy.after(|_, _| {});
    for i in 1..FILES {
        assert_eq!(std::fs::read(mounted.path(&name(i))).unwrap(), content(i), "{}", name(i));
    }
    std::thread::sleep(Duration::from_millis(300));
    let fetched = gets.lock().unwrap().clone();
    for forged in &fetched[1..=AHEAD] {
        assert_eq!(fetched.iter().filter(|path| *path == forged).count(), 2, "{forged} in {fetched:?}");
    }
    assert_eq!(fetched.len(), FILES + AHEAD, "{fetched:?}");
    ok(mounted.unmount());
    proxy.clear();
}
