//! The SFTP requests behind the store's operations, sent many at a time on one channel: ranged reads in
//! pieces, a write to a temporary name renamed into place, `posix-rename@openssh.com`, and what a server's
//! answers and errors mean for the store.

use std::time::{Duration, SystemTime};

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use super::connect::Live;
use crate::storage::{BodyStream, StoreEntry};
use crate::storage::{RemoteError, RemoteErrorKind};

/// How many requests one read or write keeps in flight.
const IN_FLIGHT: usize = 64;

pub(super) fn sftp_error(request: &str, error: &SftpError) -> RemoteError {
    let kind = match error {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => RemoteErrorKind::NotFound,
            StatusCode::PermissionDenied => RemoteErrorKind::Forbidden,
            StatusCode::NoConnection | StatusCode::ConnectionLost => RemoteErrorKind::Unreachable,
            _ => RemoteErrorKind::Failed,
        },
        SftpError::Timeout | SftpError::IO(_) | SftpError::UnexpectedBehavior(_) => RemoteErrorKind::Unreachable,
        SftpError::Limited(_) | SftpError::UnexpectedPacket => RemoteErrorKind::Protocol,
    };
    RemoteError::Ssh { request: request.to_owned(), kind, reason: error.to_string() }
}

pub(super) fn is_status(error: &SftpError, code: StatusCode) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == code)
}

pub(super) fn entry_of(name: String, attributes: &FileAttributes) -> StoreEntry {
    let size = attributes.size.unwrap_or(0);
    let mtime = attributes.mtime.unwrap_or(0);
    StoreEntry {
        name,
        is_dir: attributes.is_dir(),
        size,
        version: format!("{size}-{mtime}"),
        modified: attributes.mtime.map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(seconds))),
    }
}

pub(super) fn temporary_name(target: &str) -> String {
    let folder = target.rsplit_once('/').map_or(".", |(folder, _)| folder);
    let folder = if folder.is_empty() { "/" } else { folder };
    format!("{}/.cloakfs-{}.tmp", folder.trim_end_matches('/'), crate::crypto::server_name::random_server_name())
}

pub(super) fn ssh_string_pair(first: &str, second: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + first.len() + second.len());
    for text in [first, second] {
        data.extend_from_slice(&(text.len() as u32).to_be_bytes());
        data.extend_from_slice(text.as_bytes());
    }
    data
}

/// `posix-rename@openssh.com`: rename, replacing the target atomically.
pub(super) async fn posix_rename(live: &Live, from: &str, to: &str) -> Result<(), SftpError> {
    match live.sftp.extended("posix-rename@openssh.com", ssh_string_pair(from, to)).await? {
        russh_sftp::protocol::Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
        russh_sftp::protocol::Packet::Status(status) => Err(SftpError::Status(status)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

/// Reads `length` bytes at `offset` of an open file (to its end when `None`; fewer where it ends), pieces
/// in flight together. Nothing the server says about the file's size is trusted: pieces are asked for
/// until one comes back short.
pub(super) async fn read_range(
    live: &Live,
    handle: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<Vec<u8>, SftpError> {
    use futures_util::StreamExt as _;
    let piece = u64::from(live.max_read);
    let end = length.map(|length| offset.saturating_add(length));
    let mut body = Vec::new();
    let (mut next, mut ended) = (offset, false);
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    loop {
        while !ended && in_flight.len() < IN_FLIGHT && end.is_none_or(|end| next < end) {
            let size = end.map_or(piece, |end| (end - next).min(piece));
            in_flight.push_back(async move { read_piece(live, handle, next, size).await.map(|data| (size, data)) });
            next += size;
        }
        match in_flight.next().await {
            None => break,
            Some(result) => {
                let (size, data) = result?;
                ended |= (data.len() as u64) < size;
                body.extend_from_slice(&data);
            }
        }
    }
    Ok(body)
}

/// One piece, read to its length unless the file ends (a server may answer a read with fewer bytes; one
/// that answers with more is cut to what was asked).
pub(super) async fn read_piece(live: &Live, handle: &str, start: u64, length: u64) -> Result<Vec<u8>, SftpError> {
    let mut piece = Vec::with_capacity(length as usize);
    while (piece.len() as u64) < length {
        let at = start + piece.len() as u64;
        match live.sftp.read(handle, at, (length - piece.len() as u64) as u32).await {
            Ok(data) if data.data.is_empty() => break,
            Ok(data) => piece.extend_from_slice(&data.data),
            Err(end) if is_status(&end, StatusCode::Eof) => break,
            Err(error) => return Err(error),
        }
    }
    piece.truncate(length as usize);
    Ok(piece)
}

/// Writes `body` to a new file `temporary` (which must not exist), flushes it, then renames it to
/// `target` (replacing it unless `create_only`) and returns the file's attributes (size and modification
/// time, which the rename keeps). The body is cut into the largest writes the server takes, up to
/// [`IN_FLIGHT`] of them on their way while the next pieces of the body are produced (a streamed body is
/// encrypted as it is sent, never held whole). Requests are sent without waiting where their order on the
/// channel is enough (the server handles them in order): the last writes, the flush and the stat together,
/// then the close and the rename together; a small file costs three round trips.
pub(super) async fn write_and_rename(
    live: &Live,
    temporary: &str,
    target: &str,
    mut body: BodyStream,
    create_only: bool,
) -> Result<FileAttributes, SftpError> {
    use futures_util::StreamExt as _;
    let attributes = FileAttributes { permissions: Some(0o600), ..FileAttributes::empty() };
    let handle = live
        .sftp
        .open(temporary, OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::TRUNCATE, attributes)
        .await?
        .handle;
    let piece = live.max_write as usize;
    let written = async {
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut pending = bytes::BytesMut::new();
        let mut offset = 0u64;
        let mut ended = false;
        while !ended {
            match body.next().await {
                Some(produced) => pending.extend_from_slice(&produced?),
                None => ended = true,
            }
            while pending.len() >= piece || (ended && !pending.is_empty()) {
                let write = pending.split_to(piece.min(pending.len())).freeze();
                if in_flight.len() >= IN_FLIGHT {
                    if let Some(done) = in_flight.next().await {
                        done?;
                    }
                }
                let at = offset;
                offset += write.len() as u64;
                in_flight.push(live.sftp.write(handle.as_str(), at, write.to_vec()));
            }
        }
        let drained = async {
            while let Some(done) = in_flight.next().await {
                done?;
            }
            Ok::<(), SftpError>(())
        };
        // Polled in this order, so sent in this order: the writes still to send, then fsync, then fstat.
        let (drained, synced, stat) =
            futures_util::join!(drained, live.sftp.fsync(handle.as_str()), live.sftp.fstat(handle.as_str()));
        drained?;
        match synced {
            Err(error) if !is_status(&error, StatusCode::OpUnsupported) => return Err(error),
            _ => {}
        }
        Ok(stat?.attrs)
    }
    .await;
    let renamed = async {
        if create_only {
            live.sftp.rename(temporary, target).await.map(|_| ())
        } else {
            posix_rename(live, temporary, target).await
        }
    };
    match written {
        Ok(attributes) => {
            let (closed, renamed) = futures_util::join!(live.sftp.close(handle.as_str()), renamed);
            closed?;
            renamed.map(|()| attributes)
        }
        Err(error) => {
            let _ = live.sftp.close(handle.as_str()).await;
            Err(error)
        }
    }
}

/// Creates `target` (which must not exist) with `body` written in place: the open, then the write, the
/// flush and the close together. For small files (every write is in flight at once).
pub(super) async fn create_in_place(live: &Live, target: &str, body: &[u8]) -> Result<(), SftpError> {
    let attributes = FileAttributes { permissions: Some(0o600), ..FileAttributes::empty() };
    let handle =
        live.sftp.open(target, OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE, attributes).await?.handle;
    let piece = live.max_write as usize;
    let writes = body
        .chunks(piece)
        .enumerate()
        .map(|(index, chunk)| live.sftp.write(handle.as_str(), (index * piece) as u64, chunk.to_vec()));
    // Polled in this order, so sent in this order; the server handles one handle's requests in order.
    let (written, synced, closed) = futures_util::join!(
        futures_util::future::join_all(writes),
        live.sftp.fsync(handle.as_str()),
        live.sftp.close(handle.as_str())
    );
    for result in written {
        result?;
    }
    match synced {
        Err(error) if !is_status(&error, StatusCode::OpUnsupported) => return Err(error),
        _ => {}
    }
    closed.map(|_| ())
}

pub(super) async fn stat_entry(live: &Live, path: &str, name: String) -> Result<StoreEntry, SftpError> {
    Ok(entry_of(name, &live.sftp.stat(path).await?.attrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_sit_next_to_their_target() {
        assert!(temporary_name("/srv/v/d/AB/file.c9r").starts_with("/srv/v/d/AB/.cloakfs-"));
        assert!(temporary_name("./v/x").starts_with("./v/.cloakfs-"));
        assert!(temporary_name("/x").starts_with("/.cloakfs-"));
    }

    #[test]
    fn ssh_strings() {
        assert_eq!(ssh_string_pair("a", "bc"), vec![0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c']);
    }
}
