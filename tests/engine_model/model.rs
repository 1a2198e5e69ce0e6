//! A POSIX file system as a map from path to node: what every operation of the engine must answer, and the
//! tree it must leave.

use std::collections::BTreeMap;

use cloakfs::format::FsError;

/// A path below the case's folder: one or two names from a small alphabet, so operations collide often.
pub type ModelPath = Vec<&'static str>;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
}

/// A POSIX file system in a map from path to node; the case folder is the empty path.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub nodes: BTreeMap<ModelPath, Node>,
}

impl Model {
    pub fn get(&self, path: &ModelPath) -> Option<&Node> {
        if path.is_empty() {
            return Some(&Node::Dir);
        }
        self.nodes.get(path)
    }

    /// The error of resolving `path`'s parent folder, if any.
    pub fn parent_error(&self, path: &ModelPath) -> Option<FsError> {
        match self.get(&path[..path.len() - 1].to_vec()) {
            None => Some(FsError::NotFound),
            Some(Node::File(_)) => Some(FsError::NotADirectory),
            Some(Node::Dir) => None,
        }
    }

    /// Resolves `path` to a node.
    pub fn lookup(&self, path: &ModelPath) -> Result<&Node, FsError> {
        if path.is_empty() {
            return Ok(&Node::Dir);
        }
        if let Some(error) = self.parent_error(path) {
            return Err(error);
        }
        self.get(path).ok_or(FsError::NotFound)
    }

    pub fn children(&self, path: &ModelPath) -> Vec<ModelPath> {
        self.nodes.keys().filter(|key| key.len() == path.len() + 1 && key.starts_with(path)).cloned().collect()
    }

    pub fn file_mut(&mut self, path: &ModelPath) -> &mut Vec<u8> {
        match self.nodes.get_mut(path) {
            Some(Node::File(content)) => content,
            other => panic!("model: {path:?} is {other:?}"),
        }
    }

    pub fn create(&mut self, path: &ModelPath, exclusive: bool) -> Result<(), FsError> {
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

    pub fn write(&mut self, path: &ModelPath, offset: usize, data: &[u8]) -> Result<(), FsError> {
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

    pub fn truncate(&mut self, path: &ModelPath, len: usize) -> Result<(), FsError> {
        match self.lookup(path)? {
            Node::Dir => Err(FsError::IsADirectory),
            Node::File(_) => {
                self.file_mut(path).resize(len, 0);
                Ok(())
            }
        }
    }

    pub fn mkdir(&mut self, path: &ModelPath) -> Result<(), FsError> {
        if let Some(error) = self.parent_error(path) {
            return Err(error);
        }
        if self.get(path).is_some() {
            return Err(FsError::Exists);
        }
        self.nodes.insert(path.clone(), Node::Dir);
        Ok(())
    }

    pub fn unlink(&mut self, path: &ModelPath) -> Result<(), FsError> {
        match self.lookup(path)? {
            Node::Dir => Err(FsError::IsADirectory),
            Node::File(_) => {
                self.nodes.remove(path);
                Ok(())
            }
        }
    }

    pub fn rmdir(&mut self, path: &ModelPath) -> Result<(), FsError> {
        match self.lookup(path)? {
            Node::File(_) => Err(FsError::NotADirectory),
            Node::Dir if !self.children(path).is_empty() => Err(FsError::NotEmpty),
            Node::Dir => {
                self.nodes.remove(path);
                Ok(())
            }
        }
    }

    pub fn rename(&mut self, from: &ModelPath, to: &ModelPath, no_replace: bool) -> Result<(), FsError> {
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

impl Model {
    /// Whether another device can make `change` (it refuses what the model would refuse), and if so makes
    /// it in the model: a write over a file or into an existing folder; a folder in an existing folder; the
    /// removal of anything with all it holds; a rename to a new name (never into itself).
    pub fn elsewhere(&mut self, change: &Elsewhere) -> bool {
        let free = |model: &Model, path: &ModelPath| model.parent_error(path).is_none() && model.get(path).is_none();
        match change {
            Elsewhere::Write(path, data) => match self.get(path) {
                Some(Node::File(_)) => {
                    *self.file_mut(path) = data.clone();
                    true
                }
                None if free(self, path) => {
                    self.nodes.insert(path.clone(), Node::File(data.clone()));
                    true
                }
                _ => false,
            },
            Elsewhere::Mkdir(path) => free(self, path) && self.mkdir(path).is_ok(),
            Elsewhere::Remove(path) => {
                if path.is_empty() || self.lookup(path).is_err() {
                    return false;
                }
                self.nodes.retain(|key, _| !key.starts_with(path));
                true
            }
            Elsewhere::Rename(from, to) => {
                let into_itself = to.len() > from.len() && to.starts_with(from);
                if from.is_empty() || self.lookup(from).is_err() || !free(self, to) || into_itself {
                    return false;
                }
                self.rename(from, to, true).is_ok()
            }
        }
    }
}

/// A change another device makes between two operations of the engine.
#[derive(Debug, Clone)]
pub enum Elsewhere {
    /// Writes a whole file (creating it, or replacing its content).
    Write(ModelPath, Vec<u8>),
    /// Makes a folder.
    Mkdir(ModelPath),
    /// Removes a file, or a folder with everything in it.
    Remove(ModelPath),
    /// Renames to a name that is free.
    Rename(ModelPath, ModelPath),
}
