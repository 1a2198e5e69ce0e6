//! The one file-system engine without a kernel, over both vault formats: random operation sequences run
//! against the engine and against a small in-memory model of a POSIX file system ([`model`]: names,
//! contents, sizes, errors); every result and, after each sequence, the whole tree (as the engine shows it
//! and as a fresh engine reads it from storage) must agree. Sequences include remounts (a fresh engine over
//! the same storage), a second engine as a second device, files unlinked while open, changes another
//! device makes between two operations (write, mkdir, remove, rename, through the format's own commands,
//! in folders this engine has listed), and a listing racing an operation in the same folder (listings are
//! then answered late, so that one is read before the operation's change and merged after it). The
//! engines run their background work (commits, write-behind) as a mount does.
//!
//! Runs, each with its own case count (`CLOAKFS_MODEL_CASES` multiplies them by N/100) and the seed
//! `CLOAKFS_MODEL_SEED` (default 19, so that CI runs the same sequences each time):
//! - the Nextcloud format over `cloakfs serve` running in this process (no server process);
//! - the Cryptomator format over the local-folder store (no server at all);
//! - the Nextcloud format over a real `cloakfs serve` process, and the Cryptomator format over a real
//!   WebDAV server (Apache mod_dav), fewer sequences each.

#[path = "../common/dav.rs"]
mod dav;
#[path = "../common/engine.rs"]
mod engine;
mod model;
#[path = "../common/mount.rs"]
mod mount;
#[path = "../common/server.rs"]
mod server;
mod steps;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cloakfs::format::{Format, FsError};
use cloakfs::vfs::{Engine as _, NodeType, OpenMode, Vfs, MAX_QUEUED_UPLOADS, ROOT_INO};
use engine::{Change, CryptomatorDevices, Devices, NextcloudDevices};
use model::{Elsewhere, Model, ModelPath, Node};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use steps::{step_strategy, Pick, Step};

/// Operations run, by run, kind and outcome (shown at the end, to see that the sequences do reach the engine).
static STATS: std::sync::Mutex<BTreeMap<(String, bool), usize>> = std::sync::Mutex::new(BTreeMap::new());

const NAMES: [&str; 3] = ["a", "b", "c.txt"];

/// How late listings come while a race runs.
const RACE_LIST_DELAY: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
enum Op {
    /// open(O_CREAT|O_WRONLY|O_TRUNC [|O_EXCL]), close.
    Create {
        path: ModelPath,
        exclusive: bool,
    },
    /// open(O_WRONLY), pwrite, close.
    Write {
        path: ModelPath,
        offset: u16,
        data: Vec<u8>,
    },
    /// truncate(2).
    Truncate {
        path: ModelPath,
        len: u16,
    },
    /// open(O_RDONLY), read all, close.
    Read {
        path: ModelPath,
    },
    Mkdir {
        path: ModelPath,
    },
    Unlink {
        path: ModelPath,
    },
    Rmdir {
        path: ModelPath,
    },
    Rename {
        from: ModelPath,
        to: ModelPath,
        no_replace: bool,
    },
    /// A file written, unlinked while open, then read and written through its handle.
    UnlinkWhileOpen {
        path: ModelPath,
        data: Vec<u8>,
    },
    List {
        path: ModelPath,
    },
    /// Everything to storage (fsync of the whole mount).
    Flush,
    /// A fresh engine over the same storage replaces this one.
    Remount,
    /// A second engine (another device) reads the whole tree.
    SecondDevice,
    /// Another device changes the tree (after this one stored everything).
    Elsewhere(Elsewhere),
    /// A listing of folder `folder`, started `after_ms` after `op` (listings answered late meanwhile).
    Race {
        folder: ModelPath,
        after_ms: u8,
        op: Box<Op>,
    },
}

// ----- the engine side -----

/// Resolves `path` below the engine's root (the case folder).
async fn resolve<F: Format>(engine: &Vfs<F>, path: &[&str]) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for name in path {
        ino = engine.lookup(ino, name).await?.ino;
    }
    Ok(ino)
}

/// The parent folder's inode and the last name.
async fn resolve_parent<'p, F: Format>(engine: &Vfs<F>, path: &'p [&str]) -> Result<(u64, &'p str), FsError> {
    let (last, parents) = path.split_last().expect("paths are not empty");
    let parent = resolve(engine, parents).await?;
    if engine.getattr(parent).await?.kind != NodeType::Directory {
        return Err(FsError::NotADirectory);
    }
    Ok((parent, last))
}

async fn read_all<F: Format>(engine: &Arc<Vfs<F>>, ino: u64) -> Result<Vec<u8>, FsError> {
    let opened = engine.open(ino, OpenMode { write: false, truncate: false }).await?;
    let size = engine.getattr(ino).await?.size;
    let content = engine.read_with(ino, 0, size as u32 + 100, |bytes| bytes.to_vec()).await;
    engine.release(opened.fh);
    content
}

async fn write_at<F: Format>(engine: &Arc<Vfs<F>>, ino: u64, offset: u64, data: &[u8]) -> Result<(), FsError> {
    let opened = engine.open(ino, OpenMode { write: true, truncate: false }).await?;
    let written = engine.write(ino, offset, data).await;
    let closed = engine.close(ino).await;
    engine.release(opened.fh);
    assert_eq!(written?, data.len() as u32);
    closed
}

/// The whole tree below the case folder as the engine shows it.
async fn tree_of<F: Format>(engine: &Arc<Vfs<F>>) -> Result<BTreeMap<Vec<String>, Node>, FsError> {
    let mut tree = BTreeMap::new();
    let mut folders = vec![(Vec::<String>::new(), ROOT_INO)];
    while let Some((path, ino)) = folders.pop() {
        for entry in engine.readdir(ino).await? {
            let mut child = path.clone();
            child.push(entry.name.as_str().to_owned());
            if entry.attributes.kind == NodeType::Directory {
                folders.push((child.clone(), entry.attributes.ino));
                tree.insert(child, Node::Dir);
            } else {
                let content = read_all(engine, entry.attributes.ino).await?;
                assert_eq!(content.len() as u64, entry.attributes.size, "listed size of {child:?}");
                tree.insert(child, Node::File(content));
            }
        }
    }
    Ok(tree)
}

fn model_tree(model: &Model) -> BTreeMap<Vec<String>, Node> {
    model.nodes.iter().map(|(path, node)| (path.iter().map(|name| name.to_string()).collect(), node.clone())).collect()
}

/// An engine as a device runs it: with its background work (commits, write-behind, retries).
struct Running<F: Format> {
    engine: Arc<Vfs<F>>,
    ticker: tokio::task::JoinHandle<()>,
}

impl<F: Format> Running<F> {
    async fn start<D: Devices<Format = F>>(devices: &D, device: &str, case: &str) -> Self {
        let engine = devices.engine(device, case).await;
        let ticker = engine.clone().spawn_ticker();
        Self { engine, ticker }
    }

    fn stop(self) {
        self.ticker.abort();
        self.engine.wipe();
    }
}

/// Runs one operation on the engine; the model's answer is compared by the caller.
async fn apply<D: Devices>(
    devices: &D,
    running: &mut Running<D::Format>,
    case: &str,
    op: &Op,
) -> Result<Option<Vec<u8>>, FsError> {
    let engine = running.engine.clone();
    let engine = &engine;
    match op {
        Op::Create { path, exclusive } => {
            let (parent, name) = resolve_parent(engine, path).await?;
            let (attributes, opened) =
                engine.create(parent, name, OpenMode { write: true, truncate: true }, *exclusive).await?;
            let closed = engine.close(attributes.ino).await;
            engine.release(opened.fh);
            closed.map(|()| None)
        }
        Op::Write { path, offset, data } => {
            let ino = resolve(engine, path).await?;
            if engine.getattr(ino).await?.kind == NodeType::Directory {
                return Err(FsError::IsADirectory);
            }
            write_at(engine, ino, u64::from(*offset), data).await.map(|()| None)
        }
        Op::Truncate { path, len } => {
            let ino = resolve(engine, path).await?;
            if engine.getattr(ino).await?.kind == NodeType::Directory {
                return Err(FsError::IsADirectory);
            }
            let attributes = engine.setattr(ino, Some(u64::from(*len)), None).await?;
            assert_eq!(attributes.size, u64::from(*len));
            Ok(None)
        }
        Op::Read { path } => {
            let ino = resolve(engine, path).await?;
            read_all(engine, ino).await.map(Some)
        }
        Op::Mkdir { path } => {
            let (parent, name) = resolve_parent(engine, path).await?;
            engine.mkdir(parent, name).await.map(|_| None)
        }
        Op::Unlink { path } => {
            let (parent, name) = resolve_parent(engine, path).await?;
            engine.unlink(parent, name).await.map(|()| None)
        }
        Op::Rmdir { path } => {
            let (parent, name) = resolve_parent(engine, path).await?;
            engine.rmdir(parent, name).await.map(|()| None)
        }
        Op::Rename { from, to, no_replace } => {
            let (from_parent, from_name) = resolve_parent(engine, from).await?;
            engine.lookup(from_parent, from_name).await?;
            let (to_parent, to_name) = resolve_parent(engine, to).await?;
            engine.rename(from_parent, from_name, to_parent, to_name, *no_replace).await.map(|()| None)
        }
        Op::UnlinkWhileOpen { path, data } => {
            let (parent, name) = resolve_parent(engine, path).await?;
            let (attributes, opened) =
                engine.create(parent, name, OpenMode { write: true, truncate: true }, false).await?;
            let ino = attributes.ino;
            assert_eq!(engine.write(ino, 0, data).await?, data.len() as u32);
            engine.close(ino).await?;
            engine.unlink(parent, name).await?;
            // Still readable and writable through the open handle.
            assert_eq!(engine.lookup(parent, name).await.unwrap_err(), FsError::NotFound);
            let seen = engine.read_with(ino, 0, data.len() as u32 + 10, |bytes| bytes.to_vec()).await?;
            assert_eq!(seen, *data, "an unlinked open file reads what was written");
            assert_eq!(engine.write(ino, data.len() as u64, b"more").await?, 4);
            let mut expected = data.clone();
            expected.extend_from_slice(b"more");
            let seen = engine.read_with(ino, 0, expected.len() as u32 + 10, |bytes| bytes.to_vec()).await?;
            assert_eq!(seen, expected, "an unlinked open file takes writes");
            engine.close(ino).await?;
            engine.release(opened.fh);
            Ok(None)
        }
        Op::List { path } => {
            let ino = resolve(engine, path).await?;
            if engine.getattr(ino).await?.kind != NodeType::Directory {
                return Err(FsError::NotADirectory);
            }
            let names: std::collections::BTreeSet<String> =
                engine.readdir(ino).await?.iter().map(|entry| entry.name.as_str().to_owned()).collect();
            Ok(Some(names.into_iter().collect::<Vec<_>>().join("/").into_bytes()))
        }
        Op::Flush => {
            assert!(engine.flush_all().await, "everything reaches storage");
            Ok(None)
        }
        Op::Remount => {
            assert!(engine.flush_all().await, "everything reaches storage before the remount");
            let fresh = Running::start(devices, "laptop", case).await;
            std::mem::replace(running, fresh).stop();
            Ok(None)
        }
        Op::SecondDevice => {
            assert!(engine.flush_all().await, "everything reaches storage before the other device reads");
            let other = devices.engine("desktop", case).await;
            let tree = tree_of(&other).await?;
            other.wipe();
            Ok(Some(format!("{tree:?}").into_bytes()))
        }
        Op::Elsewhere(change) => {
            assert!(engine.flush_all().await, "everything reaches storage before another device changes it");
            let owned = |path: &ModelPath| path.iter().map(|name| name.to_string()).collect::<Vec<_>>();
            let change = match change {
                Elsewhere::Write(path, data) => Change::Write(owned(path), data.clone()),
                Elsewhere::Mkdir(path) => Change::Mkdir(owned(path)),
                Elsewhere::Remove(path) => Change::Remove(owned(path)),
                Elsewhere::Rename(from, to) => Change::Rename(owned(from), owned(to)),
            };
            devices.elsewhere(case, &change).await.unwrap_or_else(|error| panic!("{change:?} elsewhere: {error}"));
            Ok(None)
        }
        Op::Race { folder, after_ms, op } => {
            let folder = resolve(engine, folder).await;
            devices.set_list_delay(RACE_LIST_DELAY);
            let listing = async {
                tokio::time::sleep(Duration::from_millis(u64::from(*after_ms))).await;
                if let Ok(folder) = folder {
                    // Its result may show the tree before or after `op`; what follows must not care.
                    let _ = engine.readdir(folder).await;
                }
            };
            let (result, ()) = tokio::join!(Box::pin(apply(devices, running, case, op)), listing);
            devices.set_list_delay(Duration::ZERO);
            result
        }
    }
}

/// The model's answer to `op` (and its change of the model).
fn expect(model: &mut Model, op: &Op) -> Result<Option<Vec<u8>>, FsError> {
    match op {
        Op::Create { path, exclusive } => model.create(path, *exclusive).map(|()| None),
        Op::Write { path, offset, data } => model.write(path, usize::from(*offset), data).map(|()| None),
        Op::Truncate { path, len } => model.truncate(path, usize::from(*len)).map(|()| None),
        Op::Read { path } => match model.lookup(path)? {
            Node::Dir => Err(FsError::IsADirectory),
            Node::File(content) => Ok(Some(content.clone())),
        },
        Op::Mkdir { path } => model.mkdir(path).map(|()| None),
        Op::Unlink { path } => model.unlink(path).map(|()| None),
        Op::Rmdir { path } => model.rmdir(path).map(|()| None),
        Op::Rename { from, to, no_replace } => model.rename(from, to, *no_replace).map(|()| None),
        Op::UnlinkWhileOpen { path, .. } => {
            // create (truncating), then unlink: the name is gone afterwards.
            model.create(path, false)?;
            model.unlink(path).map(|()| None)
        }
        Op::List { path } => match model.lookup(path)? {
            Node::File(_) => Err(FsError::NotADirectory),
            Node::Dir => Ok(Some(
                model
                    .children(path)
                    .iter()
                    .map(|child| child[child.len() - 1])
                    .collect::<Vec<_>>()
                    .join("/")
                    .into_bytes(),
            )),
        },
        Op::Flush | Op::Remount | Op::Elsewhere(_) => Ok(None),
        Op::SecondDevice => Ok(Some(format!("{:?}", model_tree(model)).into_bytes())),
        Op::Race { op, .. } => expect(model, op),
    }
}

/// The longest one sequence may take: past it the engine is stuck, a failure.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

fn run_case<D: Devices>(devices: &D, label: &str, case: &str, steps: &[Step]) -> Result<(), TestCaseError> {
    // The operations as resolved so far, for the message when the engine gets stuck.
    let resolved: std::sync::Mutex<Vec<Op>> = std::sync::Mutex::new(Vec::new());
    let sequence = async {
        devices.new_case(case).await;
        let mut running = Running::start(devices, "laptop", case).await;
        let mut model = Model::default();
        let mut ops = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            let op = step.resolve(&model);
            // A change another device cannot make (the model refuses it) is left out.
            if let Op::Elsewhere(change) = &op {
                if !model.clone().elsewhere(change) {
                    continue;
                }
            }
            ops.push(op.clone());
            resolved.lock().unwrap().push(op.clone());
            let expected = match &op {
                Op::Elsewhere(change) => {
                    model.elsewhere(change);
                    Ok(None)
                }
                op => expect(&mut model, op),
            };
            let got = apply(devices, &mut running, case, &op).await;
            let kind = format!("{op:?}").split([' ', '{', '(']).next().unwrap_or_default().to_owned();
            *STATS.lock().unwrap().entry((format!("{label} {kind}"), got.is_ok())).or_default() += 1;
            prop_assert_eq!(&got, &expected, "operation {} of {:?}", index, ops);
        }
        assert!(running.engine.flush_all().await, "everything reaches storage at the end");
        let seen = tree_of(&running.engine).await.map_err(|error| TestCaseError::fail(format!("tree: {error}")))?;
        running.stop();
        prop_assert_eq!(&seen, &model_tree(&model), "the tree after {:?}", ops);
        // What a fresh engine reads from storage is the same tree.
        let fresh = devices.engine("checker", case).await;
        let from_storage = tree_of(&fresh).await.map_err(|error| TestCaseError::fail(format!("{error}")))?;
        fresh.wipe();
        prop_assert_eq!(&from_storage, &model_tree(&model), "storage's tree after {:?}", ops);
        Ok(())
    };
    devices.runtime().block_on(async {
        tokio::time::timeout(CASE_TIMEOUT, sequence).await.unwrap_or_else(|_| {
            let ops = resolved.lock().unwrap().clone();
            Err(TestCaseError::fail(format!("stuck for {CASE_TIMEOUT:?} at the end of {ops:?}")))
        })
    })
}

/// Runs `cases` sequences (scaled by `CLOAKFS_MODEL_CASES`/100) on `devices`, labelled `label` in the stats.
fn run_sequences<D: Devices>(devices: &D, label: &str, cases: u32) {
    let percent: u32 = std::env::var("CLOAKFS_MODEL_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(100);
    let cases = (cases * percent / 100).max(1);
    // A fixed seed by default, so CI runs the same sequences every time; CLOAKFS_MODEL_SEED=N explores others.
    let seed: u64 = std::env::var("CLOAKFS_MODEL_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or(19);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed_bytes);
    let config = Config { cases, failure_persistence: None, max_shrink_time: 240_000, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let result = runner.run(&prop::collection::vec(step_strategy(), 1..40), |steps| {
        // Every case (and every shrinking step) works in a folder or vault of its own.
        let case = format!("case-{}", counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        run_case(devices, label, &case, &steps)
    });
    let stats: BTreeMap<(String, bool), usize> = STATS
        .lock()
        .unwrap()
        .iter()
        .filter(|((kind, _), _)| kind.starts_with(label))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let operations: usize = stats.values().sum();
    eprintln!(
        "{label}: seed {seed}, {cases} sequences, {operations} operations in {:.1} s; (kind, succeeded): {stats:?}",
        started.elapsed().as_secs_f64()
    );
    if let Err(error) = result {
        panic!("{label}: {error}");
    }
    let succeeded: usize = stats.iter().filter(|((_, ok), _)| *ok).map(|(_, count)| count).sum();
    assert!(succeeded >= cases as usize * 5, "too few operations succeeded to mean anything: {stats:?}");
    for kind in ["Elsewhere", "Race"].into_iter().filter(|_| cases >= 8) {
        assert!(stats.iter().any(|((name, ok), _)| name.ends_with(kind) && *ok), "no {kind} operation ran: {stats:?}");
    }
}

/// Listings trusted for no time at all: every operation sees what another device changed before it.
fn uncached<D>(mut devices: D, set: impl FnOnce(&mut D)) -> D {
    set(&mut devices);
    devices
}

#[test]
fn nextcloud_format_in_process_agrees_with_the_model() {
    let devices = uncached(NextcloudDevices::embedded("model-nextcloud"), |d| d.dir_cache_time = Duration::ZERO);
    run_sequences(&devices, "nextcloud in process", 96);
}

#[test]
fn cryptomator_format_in_a_local_folder_agrees_with_the_model() {
    let devices = uncached(CryptomatorDevices::local("model-cryptomator"), |d| d.dir_cache_time = Duration::ZERO);
    run_sequences(&devices, "cryptomator local", 96);
}

#[test]
fn nextcloud_format_over_a_cloakfs_serve_process_agrees_with_the_model() {
    let devices = uncached(NextcloudDevices::new("model-serve"), |d| d.dir_cache_time = Duration::ZERO);
    run_sequences(&devices, "nextcloud serve", 12);
}

#[test]
fn cryptomator_format_over_apache_agrees_with_the_model() {
    let devices = uncached(CryptomatorDevices::over_dav(dav::DavServer::apache("model-apache")), |d| {
        d.dir_cache_time = Duration::ZERO
    });
    run_sequences(&devices, "cryptomator apache", 8);
}

/// Found by the model: a blob stored and then unlinked in one batch is deleted in the next, and one flush
/// (unmount, `cloakfs lock`) must run that next batch instead of reporting files left behind.
#[test]
fn a_file_stored_and_unlinked_in_one_batch_is_gone_after_one_flush() {
    let devices = NextcloudDevices::embedded("model-unlinked");
    let a = || Pick::Any(vec!["a"]);
    let steps = vec![Step::Create(a(), false), Step::Create(a(), false), Step::Truncate(a(), 0), Step::Unlink(a())];
    run_case(&devices, "regression", "stored-then-unlinked", &steps).unwrap();
}

/// The idle timeout in paused time: the engine's own operations count as activity (a listing does, a
/// getattr does not), and the wait ends exactly one timeout after the last of them, without sleeping.
#[test]
fn the_idle_timeout_counts_from_the_last_user_operation() {
    let devices = CryptomatorDevices::local("model-idle");
    let engine = devices.runtime().block_on(async {
        devices.new_case("idle").await;
        let engine = devices.engine("laptop", "idle").await;
        engine.readdir(ROOT_INO).await.unwrap(); // listed now: later listings come from RAM
        engine
    });
    let paused = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    paused.block_on(async {
        const TIMEOUT: Duration = Duration::from_secs(900);
        engine.readdir(ROOT_INO).await.unwrap();
        let waiting = tokio::spawn({
            let engine = engine.clone();
            async move { engine.idle_after(TIMEOUT).await }
        });
        tokio::time::advance(Duration::from_secs(600)).await;
        engine.getattr(ROOT_INO).await.unwrap(); // not activity
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "unmounted before the timeout");
        engine.readdir(ROOT_INO).await.unwrap(); // activity: the timeout starts again
        tokio::time::advance(Duration::from_secs(600)).await;
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a listing did not count as activity");
        tokio::time::advance(Duration::from_secs(301)).await;
        waiting.await.unwrap();
        assert!(engine.idle_for() >= TIMEOUT);
    });
}

/// More closes than the write-behind queue holds ([`MAX_QUEUED_UPLOADS`]), into new folders three levels
/// deep that storage gets one level per commit: every close waits for room rather than failing or hanging,
/// and every file reaches storage (a fresh engine reads them all back).
fn a_burst_beyond_the_write_behind_queue_stores_everything<D: Devices>(devices: &D) {
    let count = MAX_QUEUED_UPLOADS + 64;
    devices.runtime().block_on(async {
        devices.new_case("burst").await;
        let running = Running::start(devices, "laptop", "burst").await;
        let engine = &running.engine;
        let mut folders = Vec::new();
        let mut folder = ROOT_INO;
        for name in ["a", "b", "c"] {
            folder = engine.mkdir(folder, name).await.unwrap().ino;
            folders.push(folder);
        }
        let burst = async {
            for index in 0..count {
                let mode = OpenMode { write: true, truncate: true };
                let (file, opened) = engine.create(folders[index % 3], &format!("f{index}"), mode, true).await?;
                engine.write(file.ino, 0, format!("file {index}").as_bytes()).await?;
                let closed = engine.close(file.ino).await;
                engine.release(opened.fh);
                closed?;
            }
            engine.sync_all().await
        };
        tokio::time::timeout(Duration::from_secs(300), burst).await.expect("the burst hung").unwrap();
        assert!(engine.status().dirty.is_empty(), "files left unstored: {:?}", engine.status().dirty.len());
        running.stop();
        let fresh = Running::start(devices, "phone", "burst").await;
        let tree = tree_of(&fresh.engine).await.unwrap();
        for index in 0..count {
            let path: Vec<String> = ["a", "b", "c"][..=index % 3]
                .iter()
                .map(|name| name.to_string())
                .chain([format!("f{index}")])
                .collect();
            assert_eq!(tree.get(&path), Some(&Node::File(format!("file {index}").into_bytes())), "{path:?}");
        }
        fresh.stop();
    });
}

#[test]
fn nextcloud_format_stores_a_burst_beyond_the_write_behind_queue() {
    a_burst_beyond_the_write_behind_queue_stores_everything(&NextcloudDevices::embedded("model-burst"));
}

#[test]
fn cryptomator_format_stores_a_burst_beyond_the_write_behind_queue() {
    a_burst_beyond_the_write_behind_queue_stores_everything(&CryptomatorDevices::local("model-burst"));
}
