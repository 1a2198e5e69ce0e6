//! A mount killed with SIGKILL at any request of a commit leaves every file old or new, never torn, and
//! fsck cleans up what the dead process left.

use super::*;

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
