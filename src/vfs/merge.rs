//! Merging a folder's listing into the inode table, the one place where storage's entries and local changes
//! meet (for every format). Known names keep their inode numbers; a clean file takes the stored version; a
//! changed one keeps the version it was read at and remembers the other writer's ([`File::theirs`]), so
//! that its store keeps both; new names get new nodes; names gone from storage leave, except what was made
//! or changed here and is not stored yet. A name changed here while the listing was read (created, removed,
//! renamed, stored) keeps what the table says: the listing may predate the change. Listings of one folder
//! run one at a time, so the names touched are cleared at each merge.

use std::collections::HashSet;
use std::time::Instant;

use super::nodes::{Kind, Listed, Name, State, IN_FLIGHT};
use crate::format::{Format, FsError, ListedEntry, Listing, Stored};

/// When a listing was started: the time, and the folder's [`Dir::generation`] of local changes and count of
/// [`Dir::commits`] then.
#[derive(Clone, Copy)]
pub(super) struct Since {
    pub(super) started: Instant,
    pub(super) generation: u64,
    pub(super) commits: u64,
}

/// Merges `listing`, read since `since`, into folder `ino`'s children.
pub(super) fn merge<F: Format>(
    state: &mut State<F>,
    ino: u64,
    listing: Listing<F>,
    since: Since,
) -> Result<(), FsError> {
    if state.dir(ino)?.commits != since.commits {
        // A commit wrote the folder while it was read: the table and the listing the commit left are newer.
        return Ok(());
    }
    let changed_meanwhile: HashSet<Name> = state
        .dir(ino)?
        .touched
        .iter()
        .filter(|(_, generation)| **generation > since.generation)
        .map(|(name, _)| name.clone())
        .collect();
    let mut seen = HashSet::new();
    for entry in listing.entries {
        let name = Name(entry.name.to_string());
        if changed_meanwhile.contains(&name) {
            continue;
        }
        seen.insert(name.clone());
        let existing = state.dir(ino)?.children.get(&name).copied();
        let kept = existing.is_some_and(|child| apply(state, child, &entry));
        if kept {
            continue;
        }
        if let Some(child) = existing {
            state.detach(child);
        }
        state.allocate(ino, &name.0, Kind::listed(entry));
    }
    let gone: Vec<u64> = state
        .dir(ino)?
        .children
        .iter()
        .filter(|(name, _)| !seen.contains(*name) && !changed_meanwhile.contains(*name))
        .map(|(_, child)| *child)
        .collect();
    for child in gone {
        let keep = match state.nodes.get_mut(&child).map(|node| &mut node.kind) {
            // Not stored yet, changed here, or stored in the open batch: its store (or commit) recreates it.
            Some(Kind::File(file)) => {
                file.theirs = None;
                file.dirty || file.pending || file.stored.is_none()
            }
            // Made here and not in storage yet.
            Some(Kind::Dir(dir)) => {
                dir.theirs = None;
                dir.stored.is_none()
            }
            Some(Kind::Link(_)) | None => false,
        };
        if !keep {
            state.detach(child);
        }
    }
    let dir = state.dir_mut(ino)?;
    dir.listed = Some(Listed { state: listing.state, modified: listing.modified, at: since.started });
    // Listings of this folder run one at a time: the next one starts after this generation (changes still on
    // their way to storage stay marked).
    dir.touched.retain(|_, generation| *generation == IN_FLIGHT);
    Ok(())
}

/// Applies `entry` to the node `child` that has its name; whether the node stays (else it is replaced by a
/// new one for the entry).
fn apply<F: Format>(state: &mut State<F>, child: u64, entry: &ListedEntry<F>) -> bool {
    let Some(node) = state.nodes.get_mut(&child) else { return false };
    match (&mut node.kind, &entry.stored) {
        (Kind::File(file), Stored::File(stored)) => {
            let listed_id = F::content_id(stored);
            match file.content_id() {
                // Made here, never stored: storage has something else under its name now.
                None => file.theirs = Some(entry.clone()),
                Some(known) if known == listed_id => {
                    file.theirs = None;
                    if !file.dirty {
                        file.size = entry.size;
                    }
                }
                // Changed here (or stored in the open batch): keeps the version it was read at; its store
                // keeps both.
                Some(_) if file.dirty => file.theirs = Some(entry.clone()),
                Some(_) if file.pending => {}
                Some(_) => {
                    file.stored = Some(stored.clone());
                    file.size = entry.size;
                    file.mtime = entry.modified.unwrap_or(file.mtime);
                    file.ctime = file.mtime;
                    file.theirs = None;
                    // An open file keeps what it read (a reader stays bound to the header it opened: the new
                    // version's chunks do not authenticate under it, so a program never reads a mix).
                    if file.open_handles == 0 {
                        file.reader = None;
                        file.content = None;
                    }
                }
            }
            true
        }
        (Kind::Dir(dir), Stored::Folder(stored)) => match &dir.stored {
            None => {
                dir.theirs = Some(entry.clone());
                true
            }
            Some(known) if F::same_folder(known, stored) => {
                dir.stored = Some(stored.clone());
                dir.modified = entry.modified;
                true
            }
            Some(_) => false,
        },
        // The same link (a link's target never changes; another one under the name is a new node).
        (Kind::Link(link), Stored::Link(stored)) => F::content_id(&link.stored) == F::content_id(stored),
        // Another kind under the name: a node made here keeps it (both are kept at its store), else the
        // node is replaced.
        (Kind::File(file), _) if file.stored.is_none() => {
            file.theirs = Some(entry.clone());
            true
        }
        (Kind::Dir(dir), _) if dir.stored.is_none() => {
            dir.theirs = Some(entry.clone());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::nodes::File;
    use crate::vfs::test_format::{listing, TestFormat};
    use crate::vfs::ROOT_INO;

    /// A root folder holding `files` as storage last listed them.
    fn table(files: &[(&str, &str)]) -> State<TestFormat> {
        let mut state = State::new(String::new());
        let started = since(&state);
        merge(&mut state, ROOT_INO, listing(files), started).unwrap();
        state
    }

    fn since(state: &State<TestFormat>) -> Since {
        let dir = state.dir(ROOT_INO).unwrap();
        Since { started: Instant::now(), generation: dir.generation, commits: dir.commits }
    }

    fn names(state: &State<TestFormat>) -> Vec<String> {
        state.dir(ROOT_INO).unwrap().children.keys().map(|name| name.0.clone()).collect()
    }

    fn version(state: &State<TestFormat>, name: &str) -> Option<String> {
        let ino = state.child(ROOT_INO, name).unwrap()?;
        state.file(ino).unwrap().stored.clone()
    }

    #[test]
    fn a_listing_applies_what_others_changed() {
        let mut state = table(&[("a", "1"), ("b", "1")]);
        let a = state.child(ROOT_INO, "a").unwrap().unwrap();
        let started = since(&state);
        merge(&mut state, ROOT_INO, listing(&[("a", "2"), ("c", "1")]), started).unwrap();
        assert_eq!(names(&state), ["a", "c"]);
        assert_eq!(state.child(ROOT_INO, "a").unwrap(), Some(a), "a known name keeps its inode");
        assert_eq!(version(&state, "a").as_deref(), Some("2"));
    }

    #[test]
    fn a_rename_made_while_the_listing_was_read_is_kept() {
        // git: index.lock (stored) renamed over index while a listing of the folder is on its way.
        let mut state = table(&[("index", "1"), ("index.lock", "2")]);
        let lock_file = state.child(ROOT_INO, "index.lock").unwrap().unwrap();
        let started = since(&state);
        let replaced = state.child(ROOT_INO, "index").unwrap().unwrap();
        state.detach(replaced);
        state.relink(lock_file, ROOT_INO, "index").unwrap();
        let read_before_the_rename = listing(&[("index", "1"), ("index.lock", "2")]);
        merge(&mut state, ROOT_INO, read_before_the_rename, started).unwrap();
        assert_eq!(names(&state), ["index"], "the old name came back or the new one left");
        assert_eq!(state.child(ROOT_INO, "index").unwrap(), Some(lock_file));
        assert_eq!(version(&state, "index").as_deref(), Some("2"));
        // The next listing is read after the rename and applies again.
        let started = since(&state);
        merge(&mut state, ROOT_INO, listing(&[("index", "3")]), started).unwrap();
        assert_eq!(version(&state, "index").as_deref(), Some("3"));
    }

    #[test]
    fn a_store_that_ends_while_the_listing_was_read_is_kept() {
        let mut state = table(&[]);
        let new = state.allocate(ROOT_INO, "new", Kind::File(Box::new(File::new_here())));
        let started = since(&state);
        // The store ends after storage was listed without the file.
        state.touched_here(ROOT_INO, &Name("new".into()));
        let file = state.file_mut(new).unwrap();
        file.stored = Some("1".into());
        file.dirty = false;
        merge(&mut state, ROOT_INO, listing(&[]), started).unwrap();
        assert_eq!(names(&state), ["new"], "a stored file vanished");
        // A listing read after the store that does not show it: another device removed it.
        let started = since(&state);
        merge(&mut state, ROOT_INO, listing(&[]), started).unwrap();
        assert!(names(&state).is_empty());
    }

    #[test]
    fn a_removal_made_while_the_listing_was_read_is_kept() {
        let mut state = table(&[("gone", "1")]);
        let started = since(&state);
        let gone = state.child(ROOT_INO, "gone").unwrap().unwrap();
        state.detach(gone);
        merge(&mut state, ROOT_INO, listing(&[("gone", "1")]), started).unwrap();
        assert!(names(&state).is_empty(), "a removed file came back");
    }

    #[test]
    fn a_changed_file_keeps_its_version_and_learns_the_other_writer_s() {
        let mut state = table(&[("report", "1")]);
        let ino = state.child(ROOT_INO, "report").unwrap().unwrap();
        state.file_mut(ino).unwrap().dirty = true;
        let started = since(&state);
        merge(&mut state, ROOT_INO, listing(&[("report", "2")]), started).unwrap();
        let file = state.file(ino).unwrap();
        assert_eq!(file.stored.as_deref(), Some("1"), "the version it was read at");
        assert!(matches!(&file.theirs, Some(ListedEntry { stored: Stored::File(theirs), .. }) if theirs == "2"));
        // A new local file over a name another device made meanwhile: both are kept at its store.
        let new = state.allocate(ROOT_INO, "new", Kind::File(Box::new(File::new_here())));
        let started = since(&state);
        merge(&mut state, ROOT_INO, listing(&[("report", "2"), ("new", "7")]), started).unwrap();
        assert_eq!(state.child(ROOT_INO, "new").unwrap(), Some(new));
        assert!(state.file(new).unwrap().theirs.is_some());
    }
}
