//! A format for the engine's unit tests of the table: stored files are their version strings, folders their
//! ids; nothing is ever read or stored (the tests drive the table directly).

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::content::{Content, Spill};
use crate::format::{Capabilities, Format, FsError, ListedEntry, Listing, Removed, Renamed, Stored, StoredFile};

pub(crate) struct TestFormat;

/// A listing of files `(name, version)`.
pub(crate) fn listing(files: &[(&str, &str)]) -> Listing<TestFormat> {
    let entries = files
        .iter()
        .map(|(name, version)| ListedEntry {
            name: Zeroizing::new((*name).to_owned()),
            stored: Stored::File((*version).to_owned()),
            size: 1,
            modified: None,
        })
        .collect();
    Listing { entries, modified: None, state: () }
}

impl Format for TestFormat {
    type File = String;
    type Folder = String;
    type Listed = ();
    type Reader = ();
    type Batch = ();

    fn capabilities(&self) -> Capabilities {
        Capabilities { batches: false, ranged_reads: false, links: false }
    }
    fn root(&self) -> String {
        String::new()
    }
    fn log_id(&self) -> u64 {
        0
    }
    fn is_valid_name(&self, _name: &str) -> bool {
        true
    }
    fn content_id(file: &String) -> String {
        file.clone()
    }
    fn same_folder(left: &String, right: &String) -> bool {
        left == right
    }
    async fn list(&self, _path: &[String]) -> Result<Listing<Self>, FsError> {
        Err(FsError::NotSupported)
    }
    async fn fetch(&self, _: &[String], _: &String, _: u64, _: &Arc<Spill>) -> Result<Content, FsError> {
        Err(FsError::NotSupported)
    }
    async fn open_reader(&self, _: &String, _: u64) -> Result<(), FsError> {
        Err(FsError::NotSupported)
    }
    async fn read_at(&self, _: &mut (), _: u64, _: usize) -> Result<Zeroizing<Vec<u8>>, FsError> {
        Err(FsError::NotSupported)
    }
    fn reader_bytes(_: &()) -> u64 {
        0
    }
    async fn store_file(
        &self,
        _: Option<&()>,
        _: &[String],
        _: &str,
        _: Arc<Content>,
        _: Option<&String>,
    ) -> Result<StoredFile<Self>, FsError> {
        Err(FsError::NotSupported)
    }
    async fn make_folder(&self, _: Option<&()>, _: &[String], _: &str) -> Result<(String, ()), FsError> {
        Err(FsError::NotSupported)
    }
    async fn remove(&self, _: Option<&()>, _: &[String], _: &Stored<Self>) -> Result<Removed, FsError> {
        Err(FsError::NotSupported)
    }
    async fn rename(
        &self,
        _: Option<&()>,
        _: &[String],
        _: &Stored<Self>,
        _: &[String],
        _: &str,
        _: Option<&Stored<Self>>,
        _: bool,
    ) -> Result<Renamed<Self>, FsError> {
        Err(FsError::NotSupported)
    }
}
