//! The file-system engine without a kernel: random operation sequences run against [`Core`] over a real
//! `cloakfs serve` and against a small in-memory model of a POSIX file system (names, contents, sizes,
//! errors); every result and, after each sequence, the whole tree must agree. Sequences include remounts
//! (a fresh engine over the same server) and a second engine as a second device, and files unlinked while
//! open.
//!
//! `CLOAKFS_MODEL_CASES` sets the number of sequences (default 48, each of 1 to 40 operations) and
//! `CLOAKFS_MODEL_SEED` the seed (default 19, so that CI runs the same sequences each time).

#[path = "common/engine.rs"]
mod engine;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::time::Duration;

use cloakfs::mount::core::{NodeType, OpenMode, ROOT_INO};
use cloakfs::mount::error::FsError;
use engine::{Engine, Harness};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Operations run, by kind and outcome (shown at the end, to see that the sequences do reach the engine).
static STATS: std::sync::Mutex<BTreeMap<(String, bool), usize>> = std::sync::Mutex::new(BTreeMap::new());

/// A path below the case's folder: one or two names from a small alphabet, so operations collide often.
type ModelPath = Vec<&'static str>;

const NAMES: [&str; 3] = ["a", "b", "c.txt"];

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
    /// Everything to the server (fsync of the whole mount).
    Flush,
    /// A fresh engine over the same server replaces this one.
    Remount,
    /// A second engine (another device) reads the whole tree.
    SecondDevice,
}

/// How an operation picks a path: mostly among the paths the model has (so operations meet files and
/// folders that exist), sometimes a new name inside an existing folder, sometimes any path at all (to meet
/// the errors of missing and wrong-kind parents).
#[derive(Debug, Clone)]
enum Pick {
    Existing(prop::sample::Index),
    NewIn(prop::sample::Index, &'static str),
    Any(ModelPath),
}

impl Pick {
    fn resolve(&self, model: &Model) -> ModelPath {
        match self {
            Pick::Existing(index) if !model.nodes.is_empty() => {
                index.get(&model.nodes.keys().cloned().collect::<Vec<_>>()).clone()
            }
            Pick::Existing(index) | Pick::NewIn(index, _) => {
                let name = if let Pick::NewIn(_, name) = self { *name } else { NAMES[index.index(NAMES.len())] };
                let mut folders: Vec<ModelPath> = vec![vec![]];
                folders
                    .extend(model.nodes.iter().filter(|(_, node)| **node == Node::Dir).map(|(path, _)| path.clone()));
                let mut path = index.get(&folders).clone();
                path.truncate(2);
                path.push(name);
                path
            }
            Pick::Any(path) => path.clone(),
        }
    }
}

/// An operation as generated: its paths are picked against the model when it runs ([`Step::resolve`]).
#[derive(Debug, Clone)]
enum Step {
    Create(Pick, bool),
    Write(Pick, u16, Vec<u8>),
    Truncate(Pick, u16),
    Read(Pick),
    Mkdir(Pick),
    Unlink(Pick),
    Rmdir(Pick),
    Rename(Pick, Pick, bool),
    UnlinkWhileOpen(Pick, Vec<u8>),
    List(Pick),
    Flush,
    Remount,
    SecondDevice,
}

impl Step {
    fn resolve(&self, model: &Model) -> Op {
        match self {
            Step::Create(pick, exclusive) => Op::Create { path: pick.resolve(model), exclusive: *exclusive },
            Step::Write(pick, offset, data) => {
                Op::Write { path: pick.resolve(model), offset: *offset, data: data.clone() }
            }
            Step::Truncate(pick, len) => Op::Truncate { path: pick.resolve(model), len: *len },
            Step::Read(pick) => Op::Read { path: pick.resolve(model) },
            Step::Mkdir(pick) => Op::Mkdir { path: pick.resolve(model) },
            Step::Unlink(pick) => Op::Unlink { path: pick.resolve(model) },
            Step::Rmdir(pick) => Op::Rmdir { path: pick.resolve(model) },
            Step::Rename(from, to, no_replace) => {
                Op::Rename { from: from.resolve(model), to: to.resolve(model), no_replace: *no_replace }
            }
            Step::UnlinkWhileOpen(pick, data) => Op::UnlinkWhileOpen { path: pick.resolve(model), data: data.clone() },
            Step::List(pick) => {
                let path = pick.resolve(model);
                // Listing a new name is listing a missing folder; list its parent too, now and then.
                Op::List { path: if path.len() == 1 && matches!(pick, Pick::NewIn(..)) { vec![] } else { path } }
            }
            Step::Flush => Op::Flush,
            Step::Remount => Op::Remount,
            Step::SecondDevice => Op::SecondDevice,
        }
    }
}

fn any_path() -> impl Strategy<Value = ModelPath> {
    prop_oneof![
        3 => prop::sample::select(&NAMES[..]).prop_map(|name| vec![name]),
        2 => (prop::sample::select(&NAMES[..2]), prop::sample::select(&NAMES[..2])).prop_map(|(a, b)| vec![a, b]),
    ]
}

/// Picks of paths that should exist (files and folders the model has).
fn existing() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => any::<prop::sample::Index>().prop_map(Pick::Existing),
        1 => any_path().prop_map(Pick::Any),
    ]
}

/// Picks of paths that are mostly new names in existing folders.
fn fresh() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), prop::sample::select(&NAMES[..])).prop_map(|(index, name)| Pick::NewIn(index, name)),
        2 => any::<prop::sample::Index>().prop_map(Pick::Existing),
        1 => any_path().prop_map(Pick::Any),
    ]
}

fn data_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (fresh(), any::<bool>()).prop_map(|(pick, exclusive)| Step::Create(pick, exclusive)),
        5 => (existing(), 0u16..400, data_strategy()).prop_map(|(pick, offset, data)| Step::Write(pick, offset, data)),
        2 => (existing(), 0u16..400).prop_map(|(pick, len)| Step::Truncate(pick, len)),
        3 => existing().prop_map(Step::Read),
        4 => fresh().prop_map(Step::Mkdir),
        2 => existing().prop_map(Step::Unlink),
        3 => existing().prop_map(Step::Rmdir),
        4 => (existing(), fresh(), any::<bool>()).prop_map(|(from, to, no_replace)| Step::Rename(from, to, no_replace)),
        1 => (fresh(), data_strategy()).prop_map(|(pick, data)| Step::UnlinkWhileOpen(pick, data)),
        1 => existing().prop_map(Step::List),
        1 => Just(Step::Flush),
        1 => Just(Step::Remount),
        1 => Just(Step::SecondDevice),
    ]
}

// ----- the model -----

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

/// A POSIX file system in a map from path to node; the case folder is the empty path.
#[derive(Debug, Clone, Default)]
struct Model {
    nodes: BTreeMap<ModelPath, Node>,
}

impl Model {
    fn get(&self, path: &ModelPath) -> Option<&Node> {
        if path.is_empty() {
            return Some(&Node::Dir);
        }
        self.nodes.get(path)
    }

    /// The error of resolving `path`'s parent folder, if any.
    fn parent_error(&self, path: &ModelPath) -> Option<FsError> {
        match self.get(&path[..path.len() - 1].to_vec()) {
            None => Some(FsError::NotFound),
            Some(Node::File(_)) => Some(FsError::NotADirectory),
            Some(Node::Dir) => None,
        }
    }

    /// Resolves `path` to a node.
    fn lookup(&self, path: &ModelPath) -> Result<&Node, FsError> {
        if path.is_empty() {
            return Ok(&Node::Dir);
        }
        if let Some(error) = self.parent_error(path) {
            return Err(error);
        }
        self.get(path).ok_or(FsError::NotFound)
    }

    fn children(&self, path: &ModelPath) -> Vec<ModelPath> {
        self.nodes.keys().filter(|key| key.len() == path.len() + 1 && key.starts_with(path)).cloned().collect()
    }

    fn file_mut(&mut self, path: &ModelPath) -> &mut Vec<u8> {
        match self.nodes.get_mut(path) {
            Some(Node::File(content)) => content,
            other => panic!("model: {path:?} is {other:?}"),
        }
    }

    fn create(&mut self, path: &ModelPath, exclusive: bool) -> Result<(), FsError> {
        if let Some(error) = self.parent_error(path) {
            return Err(error);
        }
        match self.get(path) {
            Some(_) if exclusive => Err(FsError::Exists),
            Some(Node::Dir) => Err(FsError::IsADirectory),
            _ => {
                self.nodes.insert(path.clone(), Node::File(Vec::new()));
                Ok(())
            }
        }
    }

    fn write(&mut self, path: &ModelPath, offset: usize, data: &[u8]) -> Result<(), FsError> {
        match self.lookup(path)? {
            Node::Dir => Err(FsError::IsADirectory),
            Node::File(_) => {
                let content = self.file_mut(path);
                if content.len() < offset + data.len() {
                    content.resize(offset + data.len(), 0);
                }
                content[offset..offset + data.len()].copy_from_slice(data);
                Ok(())
            }
        }
    }

    fn truncate(&mut self, path: &ModelPath, len: usize) -> Result<(), FsError> {
        match self.lookup(path)? {
            Node::Dir => Err(FsError::IsADirectory),
            Node::File(_) => {
                self.file_mut(path).resize(len, 0);
                Ok(())
            }
        }
    }

    fn mkdir(&mut self, path: &ModelPath) -> Result<(), FsError> {
        if let Some(error) = self.parent_error(path) {
            return Err(error);
        }
        if self.get(path).is_some() {
            return Err(FsError::Exists);
        }
        self.nodes.insert(path.clone(), Node::Dir);
        Ok(())
    }

    fn unlink(&mut self, path: &ModelPath) -> Result<(), FsError> {
        match self.lookup(path)? {
            Node::Dir => Err(FsError::IsADirectory),
            Node::File(_) => {
                self.nodes.remove(path);
                Ok(())
            }
        }
    }

    fn rmdir(&mut self, path: &ModelPath) -> Result<(), FsError> {
        match self.lookup(path)? {
            Node::File(_) => Err(FsError::NotADirectory),
            Node::Dir if !self.children(path).is_empty() => Err(FsError::NotEmpty),
            Node::Dir => {
                self.nodes.remove(path);
                Ok(())
            }
        }
    }

    fn rename(&mut self, from: &ModelPath, to: &ModelPath, no_replace: bool) -> Result<(), FsError> {
        let source = self.lookup(from)?.clone();
        if let Some(error) = self.parent_error(to) {
            return Err(error);
        }
        if source == Node::Dir && to.len() > from.len() && to.starts_with(from) {
            return Err(FsError::InvalidArgument);
        }
        if from == to {
            return Ok(());
        }
        if let Some(target) = self.get(to) {
            if no_replace {
                return Err(FsError::Exists);
            }
            match (&source, target) {
                (Node::Dir, Node::File(_)) => return Err(FsError::NotADirectory),
                (Node::File(_), Node::Dir) => return Err(FsError::IsADirectory),
                (Node::Dir, Node::Dir) if !self.children(to).is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        let moved: Vec<(ModelPath, Node)> = self
            .nodes
            .iter()
            .filter(|(key, _)| key.starts_with(from))
            .map(|(key, node)| (key.clone(), node.clone()))
            .collect();
        self.nodes.remove(to);
        for (key, node) in moved {
            self.nodes.remove(&key);
            let mut new_key = to.clone();
            new_key.extend_from_slice(&key[from.len()..]);
            self.nodes.insert(new_key, node);
        }
        Ok(())
    }
}

// ----- the engine side -----

/// Resolves `path` below the engine's root (the case folder).
async fn resolve(engine: &Engine, _case: &str, path: &[&str]) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for name in path {
        ino = engine.lookup(ino, name).await?.ino;
    }
    Ok(ino)
}

/// The parent folder's inode and the last name.
async fn resolve_parent<'p>(engine: &Engine, case: &str, path: &'p [&str]) -> Result<(u64, &'p str), FsError> {
    let (last, parents) = path.split_last().expect("paths are not empty");
    let parent = resolve(engine, case, parents).await?;
    if engine.getattr(parent).await?.kind != NodeType::Directory {
        return Err(FsError::NotADirectory);
    }
    Ok((parent, last))
}

async fn read_all(engine: &Engine, ino: u64) -> Result<Vec<u8>, FsError> {
    let opened = engine.open(ino, OpenMode { write: false, truncate: false }).await?;
    let size = engine.getattr(ino).await?.size;
    let content = engine.read_with(ino, 0, size as u32 + 100, |bytes| bytes.to_vec()).await;
    engine.release(opened.fh);
    content
}

async fn write_at(engine: &Engine, ino: u64, offset: u64, data: &[u8]) -> Result<(), FsError> {
    let opened = engine.open(ino, OpenMode { write: true, truncate: false }).await?;
    let written = engine.write(ino, offset, data).await;
    let closed = engine.close(ino).await;
    engine.release(opened.fh);
    assert_eq!(written?, data.len() as u32);
    closed
}

/// The whole tree below the case folder as the engine shows it.
async fn tree_of(engine: &Engine) -> Result<BTreeMap<Vec<String>, Node>, FsError> {
    let mut tree = BTreeMap::new();
    let mut folders = vec![(Vec::<String>::new(), ROOT_INO)];
    while let Some((path, ino)) = folders.pop() {
        for entry in engine.readdir(ino).await? {
            let name = entry.name.as_str().to_owned();
            if name == "." || name == ".." {
                continue;
            }
            let mut child = path.clone();
            child.push(name);
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

/// Runs one operation on the engine; the model's answer is compared by the caller.
async fn apply(harness: &Harness, engine: &mut Engine, case: &str, op: &Op) -> Result<Option<Vec<u8>>, FsError> {
    match op {
        Op::Create { path, exclusive } => {
            let (parent, name) = resolve_parent(engine, case, path).await?;
            let (attributes, opened) =
                engine.create(parent, name, OpenMode { write: true, truncate: true }, *exclusive).await?;
            let closed = engine.close(attributes.ino).await;
            engine.release(opened.fh);
            closed.map(|()| None)
        }
        Op::Write { path, offset, data } => {
            let ino = resolve(engine, case, path).await?;
            if engine.getattr(ino).await?.kind == NodeType::Directory {
                return Err(FsError::IsADirectory);
            }
            write_at(engine, ino, u64::from(*offset), data).await.map(|()| None)
        }
        Op::Truncate { path, len } => {
            let ino = resolve(engine, case, path).await?;
            if engine.getattr(ino).await?.kind == NodeType::Directory {
                return Err(FsError::IsADirectory);
            }
            let attributes = engine.setattr(ino, Some(u64::from(*len)), None).await?;
            assert_eq!(attributes.size, u64::from(*len));
            Ok(None)
        }
        Op::Read { path } => {
            let ino = resolve(engine, case, path).await?;
            read_all(engine, ino).await.map(Some)
        }
        Op::Mkdir { path } => {
            let (parent, name) = resolve_parent(engine, case, path).await?;
            engine.mkdir(parent, name).await.map(|_| None)
        }
        Op::Unlink { path } => {
            let (parent, name) = resolve_parent(engine, case, path).await?;
            engine.unlink(parent, name).await.map(|()| None)
        }
        Op::Rmdir { path } => {
            let (parent, name) = resolve_parent(engine, case, path).await?;
            engine.rmdir(parent, name).await.map(|()| None)
        }
        Op::Rename { from, to, no_replace } => {
            let (from_parent, from_name) = resolve_parent(engine, case, from).await?;
            engine.lookup(from_parent, from_name).await?;
            let (to_parent, to_name) = resolve_parent(engine, case, to).await?;
            engine.rename(from_parent, from_name, to_parent, to_name, *no_replace).await.map(|()| None)
        }
        Op::UnlinkWhileOpen { path, data } => {
            let (parent, name) = resolve_parent(engine, case, path).await?;
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
            let ino = resolve(engine, case, path).await?;
            if engine.getattr(ino).await?.kind != NodeType::Directory {
                return Err(FsError::NotADirectory);
            }
            let names: Vec<u8> = engine
                .readdir(ino)
                .await?
                .iter()
                .map(|entry| entry.name.as_str().to_owned())
                .filter(|name| name != "." && name != "..")
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join("/")
                .into_bytes();
            Ok(Some(names))
        }
        Op::Flush => {
            assert!(engine.flush_all().await, "everything reaches the server");
            Ok(None)
        }
        Op::Remount => {
            assert!(engine.flush_all().await, "everything reaches the server before the remount");
            engine.wipe();
            *engine = harness.engine("laptop", case).await;
            Ok(None)
        }
        Op::SecondDevice => {
            assert!(engine.flush_all().await, "everything reaches the server before the other device reads");
            let other = harness.engine("desktop", case).await;
            let tree = tree_of(&other).await?;
            other.wipe();
            Ok(Some(format!("{tree:?}").into_bytes()))
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
        Op::Flush | Op::Remount => Ok(None),
        Op::SecondDevice => Ok(Some(format!("{:?}", model_tree(model)).into_bytes())),
    }
}

/// The longest one sequence may take (a few seconds each here): past it the engine is stuck, a failure.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

fn run_case(harness: &Harness, case: &str, steps: &[Step]) -> Result<(), TestCaseError> {
    // The operations as resolved so far, for the message when the engine gets stuck.
    let resolved: std::sync::Mutex<Vec<Op>> = std::sync::Mutex::new(Vec::new());
    let sequence = async {
        harness.new_case(case).await;
        let mut engine = harness.engine("laptop", case).await;
        let engine = &mut engine;
        let mut model = Model::default();
        let mut ops = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            ops.push(step.resolve(&model));
            resolved.lock().unwrap().push(ops[index].clone());
            let op = &ops[index];
            let expected = expect(&mut model, op);
            let got = apply(harness, engine, case, op).await;
            let kind = format!("{op:?}").split([' ', '{']).next().unwrap_or_default().to_owned();
            *STATS.lock().unwrap().entry((kind, got.is_ok())).or_default() += 1;
            prop_assert_eq!(&got, &expected, "operation {} of {:?}", index, ops);
        }
        assert!(engine.flush_all().await, "everything reaches the server at the end");
        let seen = tree_of(engine).await.map_err(|error| TestCaseError::fail(format!("tree: {error}")))?;
        prop_assert_eq!(&seen, &model_tree(&model), "the tree after {:?}", ops);
        // What a fresh engine reads from the server is the same tree.
        let fresh = harness.engine("checker", case).await;
        let from_server = tree_of(&fresh).await.map_err(|error| TestCaseError::fail(format!("{error}")))?;
        fresh.wipe();
        prop_assert_eq!(&from_server, &model_tree(&model), "the server's tree after {:?}", ops);
        Ok(())
    };
    harness.runtime.block_on(async {
        tokio::time::timeout(CASE_TIMEOUT, sequence).await.unwrap_or_else(|_| {
            let ops = resolved.lock().unwrap().clone();
            Err(TestCaseError::fail(format!("stuck for {CASE_TIMEOUT:?} at the end of {ops:?}")))
        })
    })
}

#[test]
fn random_operation_sequences_agree_with_a_posix_model_across_remounts_and_devices() {
    let harness = Harness::new("engine-model");
    let cases = std::env::var("CLOAKFS_MODEL_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(48);
    // A fixed seed by default, so CI runs the same sequences every time; CLOAKFS_MODEL_SEED=N explores others.
    let seed: u64 = std::env::var("CLOAKFS_MODEL_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or(19);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed_bytes);
    let config = Config { cases, failure_persistence: None, max_shrink_time: 240_000, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&prop::collection::vec(step_strategy(), 1..40), |steps| {
        // Every case (and every shrinking step) works in an encrypted folder of its own.
        let case = format!("case-{}", counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        run_case(&harness, &case, &steps)
    });
    let stats = STATS.lock().unwrap().clone();
    eprintln!("seed {seed}, {cases} sequences; operations run (kind, succeeded): {stats:?}");
    if let Err(error) = result {
        panic!("{error}");
    }
    let succeeded: usize = stats.iter().filter(|((_, ok), _)| *ok).map(|(_, count)| count).sum();
    assert!(succeeded >= cases as usize * 5, "too few operations succeeded to mean anything: {stats:?}");
}

/// Found by the model: a blob uploaded and then unlinked in one batch is deleted in the next, and one flush
/// (unmount, `cloakfs lock`) must run that next batch instead of reporting files left behind.
#[test]
fn a_file_uploaded_and_unlinked_in_one_batch_is_gone_after_one_flush() {
    let harness = Harness::new("engine-model");
    let a = || Pick::Any(vec!["a"]);
    let steps = vec![Step::Create(a(), false), Step::Create(a(), false), Step::Truncate(a(), 0), Step::Unlink(a())];
    run_case(&harness, "uploaded-then-unlinked", &steps).unwrap();
}

/// The idle timeout in paused time: the engine's own operations count as activity (a listing does, a
/// getattr does not), and the wait ends exactly one timeout after the last of them, without sleeping.
#[test]
fn the_idle_timeout_counts_from_the_last_user_operation() {
    let harness = Harness::new("engine-model");
    harness.runtime.block_on(harness.new_case("idle"));
    let engine = harness.runtime.block_on(async {
        let engine = harness.engine("laptop", "idle").await;
        engine.readdir(ROOT_INO).await.unwrap(); // loaded now: later listings come from RAM
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
