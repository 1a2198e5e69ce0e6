//! The fuser adapter: translates kernel requests into calls on an [`Engine`] and replies from tokio tasks, so a
//! slow download never holds up the FUSE session (other files and `ls` keep working). Only this file knows
//! fuser; the core does not.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::format::FsError;
use crate::vfs::{Attributes, Engine, NodeType, OpenMode};

/// `S_IFMT` and `S_IFREG` as the u32 of FUSE's mode argument (`mode_t` is u16 on macOS).
#[allow(clippy::unnecessary_cast)]
const FILE_TYPE_MASK: u32 = libc::S_IFMT as u32;
#[allow(clippy::unnecessary_cast)]
const REGULAR_FILE: u32 = libc::S_IFREG as u32;

/// Whether a rename must not replace its target (`renameat2`'s RENAME_NOREPLACE); exchange and whiteout
/// are refused with EINVAL.
#[cfg(target_os = "linux")]
fn no_replace(flags: RenameFlags) -> Result<bool, Errno> {
    if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
        return Err(Errno::EINVAL);
    }
    Ok(flags.contains(RenameFlags::RENAME_NOREPLACE))
}

/// macFUSE passes no rename flags: every rename may replace its target, as rename(2) does.
#[cfg(target_os = "macos")]
fn no_replace(_flags: RenameFlags) -> Result<bool, Errno> {
    Ok(false)
}

/// How long the kernel may cache names and attributes. Short, so changes by other clients show up soon
/// after the core's own dir cache time.
const ATTR_TTL: Duration = Duration::from_secs(1);

/// The fuser file system over an [`Engine`].
pub struct FuseAdapter<E: Engine> {
    core: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E: Engine> FuseAdapter<E> {
    /// An adapter that runs `core`'s operations on `runtime`.
    pub fn new(core: Arc<E>, runtime: tokio::runtime::Handle) -> Self {
        Self { core, runtime }
    }

    /// Runs `work`: first on the FUSE thread, as far as it goes without waiting (a rename, a create or a
    /// lookup in a cached folder finishes there, without the two thread switches a spawned task costs, which
    /// were most of such an operation's time); if it has to wait (for the server, a lock, a download), the
    /// rest runs as a task on the runtime, so the FUSE thread moves on to other requests.
    fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let _context = self.runtime.enter();
        let mut work = Box::pin(work);
        // A waker that does nothing is enough for this first poll: if the work is pending, the task spawned
        // below polls it again at once, and that poll registers the task's own waker. A panic (a bug) must not
        // end the FUSE thread, and with it the mount: it is caught here, and in a task by the runtime; the
        // reply dropped with the work answers EIO.
        let mut pending = false;
        super::output::catch("a file system request", || {
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            pending = work.as_mut().poll(&mut context).is_pending();
        });
        if pending {
            self.runtime.spawn(work);
        }
    }
}

/// The errno the kernel reports to the program for an engine error. Server failures, unreachable servers,
/// tampered data and a lost lock are all EIO: POSIX has nothing more precise, and the log and `cloakfs
/// status` say which it was.
pub fn to_errno(error: FsError) -> i32 {
    match error {
        FsError::NotFound => libc::ENOENT,
        FsError::Exists => libc::EEXIST,
        FsError::NotADirectory => libc::ENOTDIR,
        FsError::IsADirectory => libc::EISDIR,
        FsError::NotEmpty => libc::ENOTEMPTY,
        FsError::InvalidArgument => libc::EINVAL,
        FsError::NameTooLong => libc::ENAMETOOLONG,
        FsError::FileTooBig => libc::EFBIG,
        FsError::NoSpace => libc::ENOSPC,
        FsError::Busy => libc::EBUSY,
        FsError::RetryLater => libc::EAGAIN,
        FsError::CrossDevice => libc::EXDEV,
        FsError::NotSupported => libc::ENOTSUP,
        FsError::NotPermitted => libc::EPERM,
        FsError::IsALink => libc::ELOOP,
        FsError::AccessDenied => libc::EACCES,
        FsError::Tampered | FsError::Unreachable | FsError::LockLost | FsError::Io => libc::EIO,
    }
}

/// The extended attribute that marks a file taken in from a file drop (value `file-drop`).
pub const ORIGIN_XATTR: &str = "user.cloakfs.origin";

/// Answers an extended-attribute read: its size when asked for `size` 0, else the value, or ERANGE when it
/// does not fit.
fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

fn errno(error: FsError) -> Errno {
    // A missing name is the common answer to a lookup; anything else is worth a line when debugging.
    if error == FsError::NotFound {
        tracing::trace!(%error, "answered with an error");
    } else {
        tracing::debug!(%error, "answered with an error");
    }
    Errno::from_i32(to_errno(error))
}

fn answer_entry(reply: ReplyEntry, result: Result<Attributes, FsError>, attr: &impl Fn(&Attributes) -> FileAttr) {
    match result {
        Ok(attributes) => reply.entry(&ATTR_TTL, &attr(&attributes), Generation(0)),
        Err(error) => reply.error(errno(error)),
    }
}

fn answer_attr(reply: ReplyAttr, result: Result<Attributes, FsError>, attr: &impl Fn(&Attributes) -> FileAttr) {
    match result {
        Ok(attributes) => reply.attr(&ATTR_TTL, &attr(&attributes)),
        Err(error) => reply.error(errno(error)),
    }
}

fn answer_empty(reply: ReplyEmpty, result: Result<(), FsError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(errno(error)),
    }
}

/// A name from the kernel: must be UTF-8 (metadata stores names as JSON strings).
fn name_of(name: &OsStr) -> Result<String, FsError> {
    name.to_str().map(str::to_owned).ok_or(FsError::InvalidArgument)
}

fn to_system_time(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl<E: Engine> Filesystem for FuseAdapter<E> {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let core = self.core.clone();
        let name = name_of(name);
        let this = self.attr_maker();
        self.spawn(async move {
            let result = match name {
                Ok(name) => core.lookup(parent.0, &name).await,
                Err(error) => Err(error),
            };
            answer_entry(reply, result, &this)
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let core = self.core.clone();
        let this = self.attr_maker();
        self.spawn(async move { answer_attr(reply, core.getattr(ino.0).await, &this) });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // chmod and chown are accepted without effect: the format stores no owners or modes (DESIGN.md).
        let core = self.core.clone();
        let this = self.attr_maker();
        self.spawn(
            async move { answer_attr(reply, core.setattr(ino.0, size, mtime.map(to_system_time)).await, &this) },
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.readlink(ino.0).await {
                Ok(target) => reply.data(target.as_bytes()),
                Err(error) => reply.error(errno(error)),
            }
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & FILE_TYPE_MASK != REGULAR_FILE {
            reply.error(Errno::EPERM);
            return;
        }
        let core = self.core.clone();
        let name = name_of(name);
        let this = self.attr_maker();
        self.spawn(async move {
            let result = match name {
                Ok(name) => core.mknod(parent.0, &name).await,
                Err(error) => Err(error),
            };
            answer_entry(reply, result, &this)
        });
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let core = self.core.clone();
        let name = name_of(name);
        let this = self.attr_maker();
        self.spawn(async move {
            let result = match name {
                Ok(name) => core.mkdir(parent.0, &name).await,
                Err(error) => Err(error),
            };
            answer_entry(reply, result, &this)
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let core = self.core.clone();
        let name = name_of(name);
        self.spawn(async move {
            let result = match name {
                Ok(name) => core.unlink(parent.0, &name).await,
                Err(error) => Err(error),
            };
            answer_empty(reply, result)
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let core = self.core.clone();
        let name = name_of(name);
        self.spawn(async move {
            let result = match name {
                Ok(name) => core.rmdir(parent.0, &name).await,
                Err(error) => Err(error),
            };
            answer_empty(reply, result)
        });
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        // A Nextcloud folder's metadata has no links: the engine answers EPERM there.
        let core = self.core.clone();
        let name = name_of(link_name);
        let target = name_of(target.as_os_str());
        let this = self.attr_maker();
        self.spawn(async move {
            let result = match (name, target) {
                (Ok(name), Ok(target)) => core.symlink(parent.0, &name, &target).await,
                (Err(error), _) | (_, Err(error)) => Err(error),
            };
            answer_entry(reply, result, &this)
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let no_replace = match no_replace(flags) {
            Ok(no_replace) => no_replace,
            Err(errno) => {
                reply.error(errno);
                return;
            }
        };
        let core = self.core.clone();
        let names = name_of(name).and_then(|name| Ok((name, name_of(newname)?)));
        self.spawn(async move {
            let result = match names {
                Ok((name, new_name)) => core.rename(parent.0, &name, newparent.0, &new_name, no_replace).await,
                Err(error) => Err(error),
            };
            answer_empty(reply, result)
        });
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        // Each name has its own blob and key: no hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mode =
            OpenMode { write: flags.acc_mode() != OpenAccMode::O_RDONLY, truncate: flags.0 & libc::O_TRUNC != 0 };
        let core = self.core.clone();
        self.spawn(async move {
            match core.open(ino.0, mode).await {
                Ok(opened) => {
                    let flags = if opened.keep_cache { FopenFlags::FOPEN_KEEP_CACHE } else { FopenFlags::empty() };
                    reply.opened(FileHandle(opened.fh), flags)
                }
                Err(error) => reply.error(errno(error)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let core = self.core.clone();
        self.spawn(async move {
            let mut reply = Some(reply);
            let result = core.read_with(ino.0, offset, size, |bytes| reply.take().map(|reply| reply.data(bytes))).await;
            if let (Err(error), Some(reply)) = (result, reply) {
                reply.error(errno(error));
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Some(result) = self.core.write_loaded(ino.0, offset, data) {
            match result {
                Ok(written) => reply.written(written),
                Err(error) => reply.error(errno(error)),
            }
            return;
        }
        let core = self.core.clone();
        let data = zeroize::Zeroizing::new(data.to_vec());
        self.spawn(async move {
            match core.write(ino.0, offset, &data).await {
                Ok(written) => reply.written(written),
                Err(error) => reply.error(errno(error)),
            }
        });
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let core = self.core.clone();
        self.spawn(async move { answer_empty(reply, core.close(ino.0).await) });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let core = self.core.clone();
        self.spawn(async move { answer_empty(reply, core.fsync(ino.0).await) });
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let core = self.core.clone();
        self.spawn(async move {
            let entries = match core.readdir(ino.0).await {
                Ok(entries) => entries,
                Err(error) => return reply.error(errno(error)),
            };
            let parent = core.parent_of(ino.0);
            let mut all: Vec<(u64, FileType, String)> =
                vec![(ino.0, FileType::Directory, ".".into()), (parent, FileType::Directory, "..".into())];
            for entry in &entries {
                let kind = file_type(entry.attributes.kind);
                all.push((entry.attributes.ino, kind, entry.name.to_string()));
            }
            for (index, (child, kind, name)) in all.iter_mut().enumerate().skip(offset as usize) {
                let full = reply.add(INodeNo(*child), index as u64 + 1, *kind, name.as_str());
                zeroize::Zeroize::zeroize(name);
                if full {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let core = self.core.clone();
        let this = self.attr_maker();
        self.spawn(async move {
            let entries = match core.readdir(ino.0).await {
                Ok(entries) => entries,
                Err(error) => return reply.error(errno(error)),
            };
            let own = match core.getattr(ino.0).await {
                Ok(attributes) => attributes,
                Err(error) => return reply.error(errno(error)),
            };
            let parent = core.getattr(core.parent_of(ino.0)).await.unwrap_or(own);
            let mut all: Vec<(Attributes, String)> = vec![(own, ".".into()), (parent, "..".into())];
            for entry in &entries {
                all.push((entry.attributes, entry.name.to_string()));
            }
            for (index, (attributes, name)) in all.iter_mut().enumerate().skip(offset as usize) {
                let full = reply.add(
                    INodeNo(attributes.ino),
                    index as u64 + 1,
                    name.as_str(),
                    &ATTR_TTL,
                    &this(attributes),
                    Generation(0),
                );
                zeroize::Zeroize::zeroize(name);
                if full {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let core = self.core.clone();
        self.spawn(async move { answer_empty(reply, core.sync_all().await) });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // The server's quota is not queried: report a large, constant free space.
        let blocks = 1u64 << 32;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // One read-only attribute: `user.cloakfs.origin` on files that came in as a file drop.
        let origin = match self.core.origin(ino.0) {
            Ok(origin) => origin.filter(|_| name.as_encoded_bytes() == ORIGIN_XATTR.as_bytes()),
            Err(error) => return reply.error(errno(error)),
        };
        match origin {
            None => reply.error(Errno::from_i32(libc::ENODATA)),
            Some(value) => reply_xattr(reply, value.as_bytes(), size),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.core.origin(ino.0) {
            Ok(Some(_)) => reply_xattr(reply, format!("{ORIGIN_XATTR}\0").as_bytes(), size),
            Ok(None) => reply_xattr(reply, b"", size),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = OpenMode { write: true, truncate: flags & libc::O_TRUNC != 0 };
        let exclusive = flags & libc::O_EXCL != 0;
        let core = self.core.clone();
        let name = name_of(name);
        let this = self.attr_maker();
        self.spawn(async move {
            let result = match name {
                Ok(name) => core.create(parent.0, &name, mode, exclusive).await,
                Err(error) => Err(error),
            };
            match result {
                Ok((attributes, opened)) => reply.created(
                    &ATTR_TTL,
                    &this(&attributes),
                    Generation(0),
                    FileHandle(opened.fh),
                    FopenFlags::empty(),
                ),
                Err(error) => reply.error(errno(error)),
            }
        });
    }
}

impl<E: Engine> FuseAdapter<E> {
    /// A `Send` closure building kernel attributes (tasks cannot borrow `self`).
    fn attr_maker(&self) -> impl Fn(&Attributes) -> FileAttr + Send + 'static {
        let attr = FuseAttr { owner: self.core.owner() };
        move |attributes: &Attributes| attr.attr(attributes)
    }
}

/// Attribute building without the adapter (for tasks).
/// The kernel's file type of a node.
fn file_type(kind: NodeType) -> FileType {
    match kind {
        NodeType::Directory => FileType::Directory,
        NodeType::File => FileType::RegularFile,
        NodeType::Symlink => FileType::Symlink,
    }
}

struct FuseAttr {
    owner: (u32, u32),
}

impl FuseAttr {
    fn attr(&self, attributes: &Attributes) -> FileAttr {
        let (uid, gid) = self.owner;
        let kind = file_type(attributes.kind);
        let perm = match attributes.kind {
            NodeType::Directory => 0o700,
            NodeType::File => 0o600,
            NodeType::Symlink => 0o777,
        };
        FileAttr {
            ino: INodeNo(attributes.ino),
            size: attributes.size,
            blocks: attributes.size.div_ceil(512),
            atime: attributes.mtime,
            mtime: attributes.mtime,
            ctime: attributes.ctime,
            crtime: attributes.mtime,
            kind,
            perm,
            nlink: attributes.links,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}
