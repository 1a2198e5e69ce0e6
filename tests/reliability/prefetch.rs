//! Fetching ahead: opening a small file fetches the next ones, and a forged one is not kept.

use super::*;

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
    const AHEAD: usize = cloakfs::vfs::PREFETCH_AHEAD;
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
    // Every download ahead has ended (none is left that could still add a request).
    assert!(mount::eventually(Duration::from_secs(10), || mounted.status().contains(" 0 fetching ahead")));
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
    // Every download ahead has ended (none is left that could still add a request).
    assert!(mount::eventually(Duration::from_secs(10), || mounted.status().contains(" 0 fetching ahead")));
    proxy.after(|_, _| {});
    for i in 1..FILES {
        assert_eq!(std::fs::read(mounted.path(&name(i))).unwrap(), content(i), "{}", name(i));
    }
    // Every download ahead has ended (none is left that could still add a request).
    assert!(mount::eventually(Duration::from_secs(10), || mounted.status().contains(" 0 fetching ahead")));
    let fetched = gets.lock().unwrap().clone();
    for forged in &fetched[1..=AHEAD] {
        assert_eq!(fetched.iter().filter(|path| *path == forged).count(), 2, "{forged} in {fetched:?}");
    }
    assert_eq!(fetched.len(), FILES + AHEAD, "{fetched:?}");
    ok(mounted.unmount());
    proxy.clear();
}
