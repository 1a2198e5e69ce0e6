//! What Windows asks about a file: its attributes (FILE_ATTRIBUTE_*), sizes and times (FILETIME: 100 ns
//! intervals since 1601-01-01 UTC), from the engine's [`Attributes`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::vfs::{Attributes, NodeType};

/// FILE_ATTRIBUTE_READONLY.
pub const FILE_ATTRIBUTE_READONLY: u32 = 0x1;
/// FILE_ATTRIBUTE_HIDDEN.
pub const FILE_ATTRIBUTE_HIDDEN: u32 = 0x2;
/// FILE_ATTRIBUTE_SYSTEM.
pub const FILE_ATTRIBUTE_SYSTEM: u32 = 0x4;
/// FILE_ATTRIBUTE_DIRECTORY.
pub const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
/// FILE_ATTRIBUTE_ARCHIVE.
pub const FILE_ATTRIBUTE_ARCHIVE: u32 = 0x20;
/// FILE_ATTRIBUTE_NORMAL (no other attribute).
pub const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;
/// FILE_ATTRIBUTE_TEMPORARY.
pub const FILE_ATTRIBUTE_TEMPORARY: u32 = 0x100;
/// FILE_ATTRIBUTE_NOT_CONTENT_INDEXED.
pub const FILE_ATTRIBUTE_NOT_CONTENT_INDEXED: u32 = 0x2000;
/// INVALID_FILE_ATTRIBUTES: "leave the attributes as they are" in a set request.
pub const INVALID_FILE_ATTRIBUTES: u32 = u32::MAX;

/// The attributes a program may set and that are kept (in RAM, for the mount's lifetime: the vault format
/// has no place for them).
pub const SETTABLE_ATTRIBUTES: u32 = FILE_ATTRIBUTE_READONLY
    | FILE_ATTRIBUTE_HIDDEN
    | FILE_ATTRIBUTE_SYSTEM
    | FILE_ATTRIBUTE_ARCHIVE
    | FILE_ATTRIBUTE_TEMPORARY
    | FILE_ATTRIBUTE_NOT_CONTENT_INDEXED;

/// 100 ns intervals from 1601-01-01 to 1970-01-01.
const UNIX_EPOCH_AS_FILETIME: u64 = 116_444_736_000_000_000;

/// A time as a FILETIME value (0 for times before 1601).
pub fn to_filetime(time: SystemTime) -> u64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => UNIX_EPOCH_AS_FILETIME.saturating_add((after.as_nanos() / 100).min(u64::MAX as u128) as u64),
        Err(before) => UNIX_EPOCH_AS_FILETIME.saturating_sub((before.duration().as_nanos() / 100) as u64),
    }
}

/// The time of a FILETIME value.
pub fn from_filetime(filetime: u64) -> SystemTime {
    if filetime >= UNIX_EPOCH_AS_FILETIME {
        let after = filetime - UNIX_EPOCH_AS_FILETIME;
        UNIX_EPOCH + Duration::new(after / 10_000_000, (after % 10_000_000) as u32 * 100)
    } else {
        let before = UNIX_EPOCH_AS_FILETIME - filetime;
        UNIX_EPOCH - Duration::new(before / 10_000_000, (before % 10_000_000) as u32 * 100)
    }
}

/// FILE_BASIC_INFORMATION and FILE_STANDARD_INFORMATION of a file or folder, as WinFsp's `FSP_FSCTL_FILE_INFO`
/// carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInformation {
    /// FILE_ATTRIBUTE_* bits.
    pub file_attributes: u32,
    /// Plaintext size.
    pub file_size: u64,
    /// The size rounded up to whole 4 KiB clusters.
    pub allocation_size: u64,
    /// Creation time (the vault keeps none: the modification time).
    pub creation_time: u64,
    /// Last access (the modification time: access times are not kept).
    pub last_access_time: u64,
    /// Last modification of the content.
    pub last_write_time: u64,
    /// Last change of content, size, times, name or place.
    pub change_time: u64,
    /// The engine's node number (stable for the mount's lifetime).
    pub index_number: u64,
}

/// Cluster size reported to Windows.
pub const CLUSTER: u64 = 4096;

impl FileInformation {
    /// The information of a node with the engine's `attributes` and the attributes set on Windows `extra`
    /// (see [`SETTABLE_ATTRIBUTES`]).
    pub fn new(attributes: &Attributes, extra: u32) -> Self {
        let file_attributes = match attributes.kind {
            NodeType::Directory => FILE_ATTRIBUTE_DIRECTORY | (extra & SETTABLE_ATTRIBUTES & !FILE_ATTRIBUTE_ARCHIVE),
            // A link of a Cryptomator vault shows as a file that cannot be opened (no reparse points).
            NodeType::File | NodeType::Symlink => match extra & SETTABLE_ATTRIBUTES {
                0 => FILE_ATTRIBUTE_NORMAL,
                set => set,
            },
        };
        let size = if attributes.kind == NodeType::Directory { 0 } else { attributes.size };
        let mtime = to_filetime(attributes.mtime);
        Self {
            file_attributes,
            file_size: size,
            allocation_size: size.div_ceil(CLUSTER) * CLUSTER,
            creation_time: mtime,
            last_access_time: mtime,
            last_write_time: mtime,
            change_time: to_filetime(attributes.ctime),
            index_number: attributes.ino,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetimes_round_trip() {
        assert_eq!(to_filetime(UNIX_EPOCH), UNIX_EPOCH_AS_FILETIME);
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_700);
        assert_eq!(from_filetime(to_filetime(time)), time);
        // 2000-01-01T00:00:00Z, a well-known FILETIME.
        assert_eq!(to_filetime(UNIX_EPOCH + Duration::from_secs(946_684_800)), 125_911_584_000_000_000);
        assert_eq!(from_filetime(0), UNIX_EPOCH - Duration::from_secs(11_644_473_600));
    }
}
