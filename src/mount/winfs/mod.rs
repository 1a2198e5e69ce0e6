//! Windows file-system semantics over the engine, without WinFsp: every decision the WinFsp adapter
//! (platform/windows) makes that is not a WinFsp call lives here, compiles everywhere and is tested on Linux
//! by replaying the call sequences of Explorer, Notepad and Office against a real `cloakfs serve`
//! (tests/windows_adapter.rs).
//!
//! One method per WinFsp file-system operation, named after it, taking what WinFsp passes (UTF-16 paths
//! `\a\b\c`, CreateOptions, GrantedAccess, cleanup flags, FILETIMEs) and answering what it expects
//! ([`FileInformation`], [`NtStatus`]):
//! - paths resolve through [`names`]: case-insensitive, with the reversible mapping of names Windows cannot
//!   show, and case twins told apart;
//! - a handle ([`WinHandle`]) opens the engine's file only at its first read, write or size change, so the
//!   many opens Explorer makes to read attributes and icons never download anything;
//! - delete is Windows' two-step one: [`WinFs::set_delete`] (or FILE_DELETE_ON_CLOSE) marks the node
//!   delete-pending after checking it may go, and the last [`WinFs::cleanup`] with [`CLEANUP_DELETE`]
//!   removes it; a delete-pending node cannot be opened again;
//! - [`WinFs::cleanup`] (Windows' close) uploads a changed file, as close does on Linux. WinFsp gives
//!   Cleanup no way to fail, so its error reaches no program: it is logged, kept in `cloakfs status`, and the
//!   upload retried; a program that calls FlushFileBuffers gets the error from [`WinFs::flush`];
//! - attributes Windows sets (hidden, read-only, system, archive) are kept in RAM for the mount's lifetime:
//!   the vault format has no place for them.

pub mod info;
pub mod names;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroizing;

use crate::vfs::{Attributes, Engine, NodeType, OpenMode, ROOT_INO};
pub use info::FileInformation;
use info::{from_filetime, INVALID_FILE_ATTRIBUTES, SETTABLE_ATTRIBUTES};
use names::NameTable;
pub use status::NtStatus;

/// CreateOptions FILE_DIRECTORY_FILE: the caller wants a folder.
pub const FILE_DIRECTORY_FILE: u32 = 0x0000_0001;
/// CreateOptions FILE_NON_DIRECTORY_FILE: the caller wants a file.
pub const FILE_NON_DIRECTORY_FILE: u32 = 0x0000_0040;
/// CreateOptions FILE_DELETE_ON_CLOSE.
pub const FILE_DELETE_ON_CLOSE: u32 = 0x0000_1000;

/// Access right FILE_READ_DATA.
pub const FILE_READ_DATA: u32 = 0x0001;
/// Access right FILE_WRITE_DATA.
pub const FILE_WRITE_DATA: u32 = 0x0002;
/// Access right FILE_APPEND_DATA.
pub const FILE_APPEND_DATA: u32 = 0x0004;
/// Access right FILE_READ_ATTRIBUTES.
pub const FILE_READ_ATTRIBUTES: u32 = 0x0080;
/// Access right DELETE.
pub const DELETE: u32 = 0x0001_0000;
/// Access right GENERIC_WRITE (WinFsp maps generic rights before it calls; kept for callers that do not).
pub const GENERIC_WRITE: u32 = 0x4000_0000;
/// Access right GENERIC_ALL.
pub const GENERIC_ALL: u32 = 0x1000_0000;

/// Cleanup flag: delete the node (delete-on-close or a delete disposition, on its last handle).
pub const CLEANUP_DELETE: u32 = 0x01;
/// Cleanup flag: the allocation size is to be set (nothing to do: sizes are exact).
pub const CLEANUP_SET_ALLOCATION_SIZE: u32 = 0x02;
/// Cleanup flag: set the archive bit.
pub const CLEANUP_SET_ARCHIVE_BIT: u32 = 0x10;
/// Cleanup flag: update the last write time (the engine did at each write).
pub const CLEANUP_SET_LAST_WRITE_TIME: u32 = 0x40;

const WRITE_ACCESS: u32 = FILE_WRITE_DATA | FILE_APPEND_DATA | GENERIC_WRITE | GENERIC_ALL;

/// The backslash that separates path components.
const BACKSLASH: u16 = b'\\' as u16;

/// An open handle (WinFsp's FileContext).
#[derive(Debug)]
pub struct WinHandle {
    ino: u64,
    is_dir: bool,
    access: u32,
    /// The engine's handle, opened at the first read, write or size change.
    fh: Mutex<Option<u64>>,
}

impl WinHandle {
    /// The engine node this handle is open on.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Whether it is a folder.
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }
}

/// A handle opened or created, with what Windows is told about it.
#[derive(Debug)]
pub struct Opened {
    /// The handle.
    pub handle: WinHandle,
    /// The node's information.
    pub info: FileInformation,
    /// The path as stored, in the case of each name (WinFsp's normalized name on a case-insensitive volume).
    pub normalized_path: Zeroizing<Vec<u16>>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct ListedEntry {
    /// The name Windows shows.
    pub name: Zeroizing<Vec<u16>>,
    /// Its information.
    pub info: FileInformation,
}

/// Windows semantics over an engine.
pub struct WinFs<E: Engine> {
    core: Arc<E>,
    /// Attributes Windows set on nodes (READONLY, HIDDEN, SYSTEM, ARCHIVE…), by node, in RAM only.
    extra_attributes: Mutex<HashMap<u64, u32>>,
    /// Nodes marked for deletion at their last cleanup.
    delete_pending: Mutex<HashSet<u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The components of a WinFsp path (`\a\b\c`; the root is `\`).
fn components(path: &[u16]) -> impl Iterator<Item = &[u16]> {
    path.split(|unit| *unit == BACKSLASH).filter(|component| !component.is_empty())
}

impl<E: Engine> WinFs<E> {
    /// Windows semantics over `core`.
    pub fn new(core: Arc<E>) -> Self {
        Self { core, extra_attributes: Mutex::new(HashMap::new()), delete_pending: Mutex::new(HashSet::new()) }
    }

    /// The engine.
    pub fn core(&self) -> &Arc<E> {
        &self.core
    }

    fn information(&self, attributes: &Attributes) -> FileInformation {
        let extra = lock(&self.extra_attributes).get(&attributes.ino).copied().unwrap_or(0);
        FileInformation::new(attributes, extra)
    }

    async fn table(&self, folder: u64) -> Result<NameTable, NtStatus> {
        Ok(NameTable::new(self.core.readdir(folder).await?))
    }

    /// Resolves `path` to its node, with the path in stored case.
    async fn resolve(&self, path: &[u16]) -> Result<(Attributes, Zeroizing<Vec<u16>>), NtStatus> {
        let mut attributes = self.core.getattr(ROOT_INO).await?;
        let mut normalized = Zeroizing::new(Vec::with_capacity(path.len()));
        let mut remaining = components(path).peekable();
        while let Some(component) = remaining.next() {
            let last = remaining.peek().is_none();
            let missing = if last { NtStatus::OBJECT_NAME_NOT_FOUND } else { NtStatus::OBJECT_PATH_NOT_FOUND };
            if attributes.kind != NodeType::Directory {
                return Err(NtStatus::OBJECT_PATH_NOT_FOUND);
            }
            let table = self.table(attributes.ino).await?;
            let entry = table.find(component).ok_or(missing)?;
            normalized.push(BACKSLASH);
            normalized.extend_from_slice(&entry.windows_name);
            attributes = entry.attributes;
        }
        if normalized.is_empty() {
            normalized.push(BACKSLASH);
        }
        Ok((attributes, normalized))
    }

    /// The folder of the last component of `path`, and that component.
    async fn resolve_parent<'p>(&self, path: &'p [u16]) -> Result<(u64, Zeroizing<Vec<u16>>, &'p [u16]), NtStatus> {
        let split = path.iter().rposition(|unit| *unit == BACKSLASH).ok_or(NtStatus::OBJECT_NAME_INVALID)?;
        let (folder_path, last) = (&path[..split], &path[split + 1..]);
        if last.is_empty() {
            return Err(NtStatus::OBJECT_NAME_INVALID);
        }
        let (folder, normalized) = self.resolve(folder_path).await.map_err(|status| {
            if status == NtStatus::OBJECT_NAME_NOT_FOUND {
                NtStatus::OBJECT_PATH_NOT_FOUND
            } else {
                status
            }
        })?;
        if folder.kind != NodeType::Directory {
            return Err(NtStatus::OBJECT_PATH_NOT_FOUND);
        }
        Ok((folder.ino, normalized, last))
    }

    /// GetSecurityByName: the attributes of the node at `path` (its existence, for WinFsp's access checks).
    pub async fn get_security_by_name(&self, path: &[u16]) -> Result<u32, NtStatus> {
        let (attributes, _) = self.resolve(path).await?;
        Ok(self.information(&attributes).file_attributes)
    }

    /// Open: an existing file or folder. Nothing is downloaded yet.
    pub async fn open(&self, path: &[u16], create_options: u32, granted_access: u32) -> Result<Opened, NtStatus> {
        let (attributes, normalized_path) = self.resolve(path).await?;
        let is_dir = attributes.kind == NodeType::Directory;
        if is_dir && create_options & FILE_NON_DIRECTORY_FILE != 0 {
            return Err(NtStatus::FILE_IS_A_DIRECTORY);
        }
        if !is_dir && create_options & FILE_DIRECTORY_FILE != 0 {
            return Err(NtStatus::NOT_A_DIRECTORY);
        }
        if lock(&self.delete_pending).contains(&attributes.ino) {
            return Err(NtStatus::DELETE_PENDING);
        }
        let handle = WinHandle { ino: attributes.ino, is_dir, access: granted_access, fh: Mutex::new(None) };
        if create_options & FILE_DELETE_ON_CLOSE != 0 {
            self.check_delete(&handle).await?;
        }
        Ok(Opened { info: self.information(&attributes), handle, normalized_path })
    }

    /// Create: a new file (opened for writing) or folder (FILE_DIRECTORY_FILE) at `path`.
    pub async fn create(
        &self,
        path: &[u16],
        create_options: u32,
        granted_access: u32,
        file_attributes: u32,
    ) -> Result<Opened, NtStatus> {
        let (folder, mut normalized_path, windows_name) = self.resolve_parent(path).await?;
        if self.table(folder).await?.find(windows_name).is_some() {
            return Err(NtStatus::OBJECT_NAME_COLLISION);
        }
        let clear_name = names::to_clear(windows_name)?;
        let is_dir = create_options & FILE_DIRECTORY_FILE != 0;
        let (attributes, fh) = if is_dir {
            (self.core.mkdir(folder, &clear_name).await?, None)
        } else {
            let (attributes, opened) =
                self.core.create(folder, &clear_name, OpenMode { write: true, truncate: false }, true).await?;
            (attributes, Some(opened.fh))
        };
        let settable = file_attributes & SETTABLE_ATTRIBUTES;
        if settable != 0 {
            lock(&self.extra_attributes).insert(attributes.ino, settable);
        }
        if normalized_path.last() != Some(&BACKSLASH) {
            normalized_path.push(BACKSLASH);
        }
        normalized_path.extend_from_slice(windows_name);
        let handle =
            WinHandle { ino: attributes.ino, is_dir, access: granted_access | WRITE_ACCESS, fh: Mutex::new(fh) };
        if create_options & FILE_DELETE_ON_CLOSE != 0 {
            self.check_delete(&handle).await?;
        }
        Ok(Opened { info: self.information(&attributes), handle, normalized_path })
    }

    /// Opens the engine's file behind `handle` if it is not open yet.
    async fn engine_open(&self, handle: &WinHandle, truncate: bool) -> Result<bool, NtStatus> {
        if handle.is_dir {
            return Err(NtStatus::FILE_IS_A_DIRECTORY);
        }
        if lock(&handle.fh).is_some() {
            return Ok(false);
        }
        let write = handle.access & WRITE_ACCESS != 0 || truncate;
        let opened = self.core.clone().open(handle.ino, OpenMode { write, truncate }).await?;
        let mut fh = lock(&handle.fh);
        if fh.is_some() {
            // Another thread of the same handle opened it meanwhile.
            self.core.release(opened.fh);
            return Ok(false);
        }
        *fh = Some(opened.fh);
        Ok(true)
    }

    /// Overwrite: an existing file emptied (CREATE_ALWAYS, TRUNCATE_EXISTING), its attributes replaced or
    /// added to.
    pub async fn overwrite(
        &self,
        handle: &WinHandle,
        file_attributes: u32,
        replace_file_attributes: bool,
    ) -> Result<FileInformation, NtStatus> {
        if !self.engine_open(handle, true).await? {
            self.core.setattr(handle.ino, Some(0), None).await?;
        }
        let settable = file_attributes & SETTABLE_ATTRIBUTES;
        {
            let mut extra = lock(&self.extra_attributes);
            let current = extra.entry(handle.ino).or_insert(0);
            *current = if replace_file_attributes { settable } else { *current | settable };
        }
        self.get_file_info(handle).await
    }

    /// GetFileInfo.
    pub async fn get_file_info(&self, handle: &WinHandle) -> Result<FileInformation, NtStatus> {
        let attributes = self.core.getattr(handle.ino).await?;
        Ok(self.information(&attributes))
    }

    /// Read: up to `buffer.len()` bytes at `offset`; END_OF_FILE at or past the end.
    pub async fn read(&self, handle: &WinHandle, buffer: &mut [u8], offset: u64) -> Result<u32, NtStatus> {
        self.engine_open(handle, false).await?;
        let size = self.core.getattr(handle.ino).await?.size;
        if offset >= size {
            return Err(NtStatus::END_OF_FILE);
        }
        let wanted = buffer.len().min(u32::MAX as usize) as u32;
        let copied = self
            .core
            .read_with(handle.ino, offset, wanted, |bytes| {
                buffer[..bytes.len()].copy_from_slice(bytes);
                bytes.len()
            })
            .await?;
        Ok(copied as u32)
    }

    /// Write: `data` at `offset` (at the end with `write_to_eof`; `constrained_io`, the paging writes of
    /// the cache manager, never extend the file).
    pub async fn write(
        &self,
        handle: &WinHandle,
        data: &[u8],
        offset: u64,
        write_to_eof: bool,
        constrained_io: bool,
    ) -> Result<(u32, FileInformation), NtStatus> {
        self.engine_open(handle, false).await?;
        let size = self.core.getattr(handle.ino).await?.size;
        let offset = if write_to_eof { size } else { offset };
        let data = if constrained_io {
            if offset >= size {
                return Ok((0, self.get_file_info(handle).await?));
            }
            &data[..data.len().min((size - offset) as usize)]
        } else {
            data
        };
        let written = self.core.write(handle.ino, offset, data).await?;
        Ok((written, self.get_file_info(handle).await?))
    }

    /// SetFileSize: the end of file (`set_allocation_size` false), or the allocation size, which only
    /// shortens a file when it is below its size.
    pub async fn set_file_size(
        &self,
        handle: &WinHandle,
        new_size: u64,
        set_allocation_size: bool,
    ) -> Result<FileInformation, NtStatus> {
        let size = self.core.getattr(handle.ino).await?.size;
        if (!set_allocation_size || new_size < size) && new_size != size {
            self.engine_open(handle, false).await?;
            self.core.setattr(handle.ino, Some(new_size), None).await?;
        }
        self.get_file_info(handle).await
    }

    /// SetBasicInfo: attributes (INVALID_FILE_ATTRIBUTES or 0: unchanged) and times (0: unchanged). The
    /// last write time is the engine's modification time; creation and access times are not kept.
    pub async fn set_basic_info(
        &self,
        handle: &WinHandle,
        file_attributes: u32,
        last_write_time: u64,
    ) -> Result<FileInformation, NtStatus> {
        if file_attributes != INVALID_FILE_ATTRIBUTES && file_attributes != 0 {
            lock(&self.extra_attributes).insert(handle.ino, file_attributes & SETTABLE_ATTRIBUTES);
        }
        if last_write_time != 0 {
            self.core.setattr(handle.ino, None, Some(from_filetime(last_write_time))).await?;
        }
        self.get_file_info(handle).await
    }

    /// Whether the node of `handle` may be deleted: a folder must be empty, a read-only file is kept.
    async fn check_delete(&self, handle: &WinHandle) -> Result<(), NtStatus> {
        if handle.ino == ROOT_INO {
            return Err(NtStatus::ACCESS_DENIED);
        }
        if handle.is_dir && !self.core.readdir(handle.ino).await?.is_empty() {
            return Err(NtStatus::DIRECTORY_NOT_EMPTY);
        }
        let extra = lock(&self.extra_attributes).get(&handle.ino).copied().unwrap_or(0);
        if extra & info::FILE_ATTRIBUTE_READONLY != 0 {
            return Err(NtStatus::CANNOT_DELETE);
        }
        Ok(())
    }

    /// SetDelete: mark (or unmark) the node for deletion at its last cleanup.
    pub async fn set_delete(&self, handle: &WinHandle, delete: bool) -> Result<(), NtStatus> {
        if delete {
            self.check_delete(handle).await?;
            lock(&self.delete_pending).insert(handle.ino);
        } else {
            lock(&self.delete_pending).remove(&handle.ino);
        }
        Ok(())
    }

    /// Cleanup (a program's CloseHandle): with [`CLEANUP_DELETE`] the node is removed; otherwise a changed
    /// file is uploaded as close does on Linux. WinFsp cannot pass the error on: the caller logs it.
    pub async fn cleanup(&self, handle: &WinHandle, flags: u32) -> Result<(), NtStatus> {
        if flags & CLEANUP_DELETE != 0 {
            lock(&self.delete_pending).remove(&handle.ino);
            let (folder, clear_name) = self.core.location(handle.ino)?;
            let removed = if handle.is_dir {
                self.core.rmdir(folder, &clear_name).await
            } else {
                self.core.unlink(folder, &clear_name).await
            };
            lock(&self.extra_attributes).remove(&handle.ino);
            return removed.map_err(NtStatus::from);
        }
        if flags & CLEANUP_SET_ARCHIVE_BIT != 0 && !handle.is_dir {
            *lock(&self.extra_attributes).entry(handle.ino).or_insert(0) |= info::FILE_ATTRIBUTE_ARCHIVE;
        }
        if !handle.is_dir && lock(&handle.fh).is_some() {
            self.core.close(handle.ino).await?;
        }
        Ok(())
    }

    /// Close: the handle is gone (after its cleanup).
    pub fn close(&self, handle: WinHandle) {
        if let Some(fh) = lock(&handle.fh).take() {
            self.core.release(fh);
        }
    }

    /// Flush (FlushFileBuffers): the file uploaded and committed, or with no handle the whole volume; the
    /// error reaches the program.
    pub async fn flush(&self, handle: Option<&WinHandle>) -> Result<Option<FileInformation>, NtStatus> {
        match handle {
            Some(handle) if !handle.is_dir => {
                if lock(&handle.fh).is_some() {
                    self.core.fsync(handle.ino).await?;
                }
                Ok(Some(self.get_file_info(handle).await?))
            }
            Some(handle) => {
                self.core.sync_all().await?;
                Ok(Some(self.get_file_info(handle).await?))
            }
            None => {
                self.core.sync_all().await?;
                Ok(None)
            }
        }
    }

    /// Rename (MoveFileEx): the node of `handle` to `new_path`. An existing target is replaced only with
    /// `replace_if_exists`, and never if it is a folder (ACCESS_DENIED, as NTFS); a rename that changes
    /// only the case of a name renames.
    pub async fn rename(&self, handle: &WinHandle, new_path: &[u16], replace_if_exists: bool) -> Result<(), NtStatus> {
        let (folder, clear_name) = self.core.location(handle.ino)?;
        let (new_folder, _, new_windows_name) = self.resolve_parent(new_path).await?;
        let target = self
            .table(new_folder)
            .await?
            .find(new_windows_name)
            .map(|entry| (entry.attributes.ino, entry.attributes.kind, entry.clear_name.clone()));
        let new_clear_name = match target {
            Some((target_ino, _, _)) if target_ino == handle.ino => names::to_clear(new_windows_name)?,
            Some(_) if !replace_if_exists => return Err(NtStatus::OBJECT_NAME_COLLISION),
            Some((_, NodeType::Directory, _)) => return Err(NtStatus::ACCESS_DENIED),
            // The target's own clear name: the one the engine replaces.
            Some((_, NodeType::File | NodeType::Symlink, target_clear_name)) => target_clear_name,
            None => names::to_clear(new_windows_name)?,
        };
        self.core.rename(folder, &clear_name, new_folder, &new_clear_name, !replace_if_exists).await?;
        Ok(())
    }

    /// ReadDirectory: the entries of the folder of `handle` after `marker` (the last name of the previous
    /// call; none: from the start), `.` and `..` first except in the root, ordered by UTF-16 name so that
    /// the marker resumes exactly.
    pub async fn read_directory(
        &self,
        handle: &WinHandle,
        marker: Option<&[u16]>,
    ) -> Result<Vec<ListedEntry>, NtStatus> {
        if !handle.is_dir {
            return Err(NtStatus::NOT_A_DIRECTORY);
        }
        let table = self.table(handle.ino).await?;
        let mut listed = Vec::with_capacity(table.entries().len() + 2);
        let dot: &[u16] = &[b'.' as u16];
        let dot_dot: &[u16] = &[b'.' as u16, b'.' as u16];
        if handle.ino != ROOT_INO && (marker.is_none() || marker == Some(dot)) {
            if marker.is_none() {
                let own = self.core.getattr(handle.ino).await?;
                listed.push(ListedEntry { name: Zeroizing::new(dot.to_vec()), info: self.information(&own) });
            }
            let parent = self.core.getattr(self.core.parent_of(handle.ino)).await?;
            listed.push(ListedEntry { name: Zeroizing::new(dot_dot.to_vec()), info: self.information(&parent) });
        }
        let rest: Box<dyn Iterator<Item = &names::WindowsEntry>> = match marker {
            None => Box::new(table.entries().iter()),
            Some(marker) if marker == dot || marker == dot_dot => Box::new(table.entries().iter()),
            Some(marker) => Box::new(table.after(marker)),
        };
        for entry in rest {
            listed.push(ListedEntry {
                name: Zeroizing::new(entry.windows_name.clone()),
                info: self.information(&entry.attributes),
            });
        }
        Ok(listed)
    }

    /// GetDirInfoByName: one entry of the folder of `handle`, under its name in stored case.
    pub async fn get_dir_info_by_name(
        &self,
        handle: &WinHandle,
        windows_name: &[u16],
    ) -> Result<ListedEntry, NtStatus> {
        let table = self.table(handle.ino).await?;
        let entry = table.find(windows_name).ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
        Ok(ListedEntry { name: Zeroizing::new(entry.windows_name.clone()), info: self.information(&entry.attributes) })
    }
}
