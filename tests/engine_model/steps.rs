//! The operations of a sequence as generated: paths are picked against the model when they run.

use proptest::prelude::*;

use super::{Op, NAMES};
use crate::model::{Elsewhere, Model, ModelPath, Node};

/// How an operation picks a path: mostly among the paths the model has (so operations meet files and
/// folders that exist), sometimes a new name inside an existing folder, sometimes any path at all (to meet
/// the errors of missing and wrong-kind parents).
#[derive(Debug, Clone)]
pub enum Pick {
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
pub enum Step {
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
    /// Another device: writes a file over an existing one or a new name.
    WriteElsewhere(Pick, Vec<u8>),
    /// Another device: makes a folder.
    MkdirElsewhere(Pick),
    /// Another device: removes a file or folder (with what it holds).
    RemoveElsewhere(Pick),
    /// Another device: renames to a new name.
    RenameElsewhere(Pick, Pick),
    /// A listing of the folder of the operation's (first) path, `u8` ms after the operation started.
    Race(u8, Box<Step>),
}

impl Step {
    pub fn resolve(&self, model: &Model) -> Op {
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
            Step::WriteElsewhere(pick, data) => Op::Elsewhere(Elsewhere::Write(pick.resolve(model), data.clone())),
            Step::MkdirElsewhere(pick) => Op::Elsewhere(Elsewhere::Mkdir(pick.resolve(model))),
            Step::RemoveElsewhere(pick) => Op::Elsewhere(Elsewhere::Remove(pick.resolve(model))),
            Step::RenameElsewhere(from, to) => Op::Elsewhere(Elsewhere::Rename(from.resolve(model), to.resolve(model))),
            Step::Race(after_ms, step) => {
                let op = step.resolve(model);
                let folder = match &op {
                    Op::Create { path, .. }
                    | Op::Write { path, .. }
                    | Op::Mkdir { path }
                    | Op::Unlink { path }
                    | Op::Rmdir { path }
                    | Op::Rename { from: path, .. } => path[..path.len().saturating_sub(1)].to_vec(),
                    _ => Vec::new(),
                };
                Op::Race { folder, after_ms: *after_ms, op: Box::new(op) }
            }
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

pub fn step_strategy() -> impl Strategy<Value = Step> {
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
        2 => (existing(), data_strategy()).prop_map(|(pick, data)| Step::WriteElsewhere(pick, data)),
        1 => (fresh(), data_strategy()).prop_map(|(pick, data)| Step::WriteElsewhere(pick, data)),
        1 => fresh().prop_map(Step::MkdirElsewhere),
        1 => existing().prop_map(Step::RemoveElsewhere),
        1 => (existing(), fresh()).prop_map(|(from, to)| Step::RenameElsewhere(from, to)),
        4 => (0u8..40, raced()).prop_map(|(after, step)| Step::Race(after, Box::new(step))),
    ]
}

/// The operations a listing races: namespace changes, a write (stored in the background), everything to
/// storage (a commit).
fn raced() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (existing(), fresh(), any::<bool>()).prop_map(|(from, to, no_replace)| Step::Rename(from, to, no_replace)),
        2 => existing().prop_map(Step::Unlink),
        2 => (fresh(), any::<bool>()).prop_map(|(pick, exclusive)| Step::Create(pick, exclusive)),
        2 => (existing(), 0u16..400, data_strategy()).prop_map(|(pick, offset, data)| Step::Write(pick, offset, data)),
        1 => fresh().prop_map(Step::Mkdir),
        1 => existing().prop_map(Step::Rmdir),
        1 => Just(Step::Flush),
    ]
}
