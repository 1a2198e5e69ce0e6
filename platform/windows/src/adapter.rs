//! WinFsp's file-system interface over the engine: each call is translated to the platform-neutral
//! [`WinFs`] (which holds every decision and is tested on Linux) and run on the mount's tokio runtime;
//! NTSTATUS and file information go back to WinFsp. Nothing here decides anything itself.

use std::ffi::c_void;

use cloakfs::mount::winfs::{FileInformation, NtStatus, WinFs, WinHandle};
use cloakfs::vfs::Engine;
use winfsp::filesystem::{
    DirInfo, DirMarker, FileInfo, FileSecurity, FileSystemContext, OpenFileInfo, VolumeInfo, WideNameInfo,
};
use winfsp::{FspError, U16CStr};

/// The file system WinFsp calls, over the engine of either vault format.
pub struct CloakFs<E: Engine> {
    /// Windows semantics over the engine.
    pub winfs: WinFs<E>,
    /// The mount's runtime (WinFsp's dispatcher threads block on it).
    pub runtime: tokio::runtime::Handle,
    /// The self-relative security descriptor of every node: the mounting user and SYSTEM, full control.
    pub security: Vec<u8>,
    /// Shown as the volume's label.
    pub label: String,
}

/// The size and free space shown for the volume (1 TiB): unknown, see `get_volume_info`.
const UNKNOWN_SIZE: u64 = 1 << 40;

fn fsp(status: NtStatus) -> FspError {
    FspError::NTSTATUS(status.0)
}

fn fill(target: &mut FileInfo, from: &FileInformation) {
    target.file_attributes = from.file_attributes;
    target.reparse_tag = 0;
    target.allocation_size = from.allocation_size;
    target.file_size = from.file_size;
    target.creation_time = from.creation_time;
    target.last_access_time = from.last_access_time;
    target.last_write_time = from.last_write_time;
    target.change_time = from.change_time;
    target.index_number = from.index_number;
    target.hard_links = 0;
    target.ea_size = 0;
}

impl<E: Engine> CloakFs<E> {
    fn block_on<T>(&self, future: impl std::future::Future<Output = Result<T, NtStatus>>) -> winfsp::Result<T> {
        self.runtime.block_on(future).map_err(fsp)
    }

    /// Copies the volume's security descriptor into WinFsp's buffer, if one is given; answers its size.
    fn get_security_into(&self, buffer: Option<&mut [c_void]>) -> winfsp::Result<u64> {
        if let Some(buffer) = buffer {
            if buffer.len() < self.security.len() {
                return Err(fsp(NtStatus::BUFFER_OVERFLOW));
            }
            // SAFETY: `buffer` is WinFsp's writable buffer of `buffer.len()` bytes (checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.security.as_ptr(),
                    buffer.as_mut_ptr().cast::<u8>(),
                    self.security.len(),
                );
            }
        }
        Ok(self.security.len() as u64)
    }

    fn opened(&self, opened: cloakfs::mount::winfs::Opened, file_info: &mut OpenFileInfo) -> WinHandle {
        fill(file_info.as_mut(), &opened.info);
        file_info.set_normalized_name(&opened.normalized_path, None);
        opened.handle
    }
}

impl<E: Engine> FileSystemContext for CloakFs<E> {
    type FileContext = WinHandle;

    fn get_security_by_name(
        &self,
        file_name: &U16CStr,
        security_descriptor: Option<&mut [c_void]>,
        _reparse_point_resolver: impl FnOnce(&U16CStr) -> Option<FileSecurity>,
    ) -> winfsp::Result<FileSecurity> {
        let attributes = self.block_on(self.winfs.get_security_by_name(file_name.as_slice()))?;
        // The descriptor is the same small one for every node (well under WinFsp's buffers): a buffer too
        // small for it is an error, never a success with the descriptor left unwritten.
        let size = self.get_security_into(security_descriptor)?;
        Ok(FileSecurity { reparse: false, sz_security_descriptor: size, attributes })
    }

    fn open(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        granted_access: u32,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Self::FileContext> {
        let opened = self.block_on(self.winfs.open(file_name.as_slice(), create_options, granted_access))?;
        Ok(self.opened(opened, file_info))
    }

    fn close(&self, context: Self::FileContext) {
        self.winfs.close(context);
    }

    fn create(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        granted_access: u32,
        file_attributes: u32,
        _security_descriptor: Option<&[c_void]>,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        _extra_buffer_is_reparse_point: bool,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Self::FileContext> {
        let opened =
            self.block_on(self.winfs.create(file_name.as_slice(), create_options, granted_access, file_attributes))?;
        Ok(self.opened(opened, file_info))
    }

    fn cleanup(&self, context: &Self::FileContext, _file_name: Option<&U16CStr>, flags: u32) {
        // Cleanup cannot fail in WinFsp: the error stays in the engine (shown by `cloakfs status`, the
        // upload retried) and FlushFileBuffers reports it to programs that ask.
        if let Err(status) = self.runtime.block_on(self.winfs.cleanup(context, flags)) {
            tracing::warn!(ino = context.ino(), %status, "cleanup failed");
        }
    }

    fn flush(&self, context: Option<&Self::FileContext>, file_info: &mut FileInfo) -> winfsp::Result<()> {
        if let Some(info) = self.block_on(self.winfs.flush(context))? {
            fill(file_info, &info);
        }
        Ok(())
    }

    fn get_file_info(&self, context: &Self::FileContext, file_info: &mut FileInfo) -> winfsp::Result<()> {
        let info = self.block_on(self.winfs.get_file_info(context))?;
        fill(file_info, &info);
        Ok(())
    }

    fn get_security(
        &self,
        _context: &Self::FileContext,
        security_descriptor: Option<&mut [c_void]>,
    ) -> winfsp::Result<u64> {
        self.get_security_into(security_descriptor)
    }

    fn overwrite(
        &self,
        context: &Self::FileContext,
        file_attributes: u32,
        replace_file_attributes: bool,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self.block_on(self.winfs.overwrite(context, file_attributes, replace_file_attributes))?;
        fill(file_info, &info);
        Ok(())
    }

    fn read_directory(
        &self,
        context: &Self::FileContext,
        _pattern: Option<&U16CStr>,
        marker: DirMarker,
        buffer: &mut [u8],
    ) -> winfsp::Result<u32> {
        let entries = self.block_on(self.winfs.read_directory(context, marker.inner()))?;
        let mut cursor = 0u32;
        for entry in entries {
            let mut dir_info: DirInfo<255> = DirInfo::new();
            if dir_info.set_name_raw(&entry.name[..]).is_err() {
                tracing::warn!(ino = entry.info.index_number, "a name longer than Windows allows is not listed");
                continue;
            }
            fill(dir_info.file_info_mut(), &entry.info);
            if !dir_info.append_to_buffer(buffer, &mut cursor) {
                // The buffer is full: WinFsp asks again with the last name as the marker.
                return Ok(cursor);
            }
        }
        DirInfo::<255>::finalize_buffer(buffer, &mut cursor);
        Ok(cursor)
    }

    fn rename(
        &self,
        context: &Self::FileContext,
        _file_name: &U16CStr,
        new_file_name: &U16CStr,
        replace_if_exists: bool,
    ) -> winfsp::Result<()> {
        self.block_on(self.winfs.rename(context, new_file_name.as_slice(), replace_if_exists))
    }

    fn set_basic_info(
        &self,
        context: &Self::FileContext,
        file_attributes: u32,
        _creation_time: u64,
        _last_access_time: u64,
        last_write_time: u64,
        _last_change_time: u64,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self.block_on(self.winfs.set_basic_info(context, file_attributes, last_write_time))?;
        fill(file_info, &info);
        Ok(())
    }

    fn set_delete(&self, context: &Self::FileContext, _file_name: &U16CStr, delete_file: bool) -> winfsp::Result<()> {
        self.block_on(self.winfs.set_delete(context, delete_file))
    }

    fn set_file_size(
        &self,
        context: &Self::FileContext,
        new_size: u64,
        set_allocation_size: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self.block_on(self.winfs.set_file_size(context, new_size, set_allocation_size))?;
        fill(file_info, &info);
        Ok(())
    }

    fn read(&self, context: &Self::FileContext, buffer: &mut [u8], offset: u64) -> winfsp::Result<u32> {
        self.block_on(self.winfs.read(context, buffer, offset))
    }

    fn write(
        &self,
        context: &Self::FileContext,
        buffer: &[u8],
        offset: u64,
        write_to_eof: bool,
        constrained_io: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<u32> {
        let (written, info) = self.block_on(self.winfs.write(context, buffer, offset, write_to_eof, constrained_io))?;
        fill(file_info, &info);
        Ok(written)
    }

    fn get_volume_info(&self, out_volume_info: &mut VolumeInfo) -> winfsp::Result<()> {
        // The E2EE API has no quota call: the server's free space is unknown here. Windows is told a large
        // volume so that Explorer never refuses a copy up front; a full server is reported where it happens,
        // as DISK_FULL from the write, the flush or (logged, in `cloakfs status`) the cleanup's upload.
        out_volume_info.total_size = UNKNOWN_SIZE;
        out_volume_info.free_size = UNKNOWN_SIZE;
        out_volume_info.set_volume_label(&self.label);
        Ok(())
    }
}
