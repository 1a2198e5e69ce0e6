//! The security descriptor every node of the drive carries: owner and group the mounting user, full
//! control for that user and for SYSTEM (which WinFsp's service and the cache manager run as), nobody
//! else. The vault keeps no ACLs; this one is made once at mount from the process token.

use windows::core::{PCWSTR, PWSTR};
use windows::Win32::Foundation::{CloseHandle, LocalFree, HANDLE, HLOCAL};
use windows::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows::Win32::Security::{GetTokenInformation, TokenUser, PSECURITY_DESCRIPTOR, TOKEN_QUERY, TOKEN_USER};
use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// The self-relative security descriptor for the mounting user (see the module).
pub fn for_current_user() -> windows::core::Result<Vec<u8>> {
    let sid = current_user_sid()?;
    let sddl: Vec<u16> = format!("O:{sid}G:{sid}D:P(A;;FA;;;SY)(A;;FA;;;{sid})\0").encode_utf16().collect();
    let mut descriptor = PSECURITY_DESCRIPTOR::default();
    let mut size = 0u32;
    // SAFETY: a NUL-terminated SDDL string; the descriptor is allocated by the system and freed below.
    unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            PCWSTR(sddl.as_ptr()),
            SDDL_REVISION_1,
            &mut descriptor,
            Some(&mut size),
        )?;
        let bytes = std::slice::from_raw_parts(descriptor.0.cast::<u8>(), size as usize).to_vec();
        let _ = LocalFree(Some(HLOCAL(descriptor.0)));
        Ok(bytes)
    }
}

/// The string form (S-1-5-…) of this process's user SID.
fn current_user_sid() -> windows::core::Result<String> {
    let mut token = HANDLE::default();
    // SAFETY: querying this process's own token; every handle and buffer is owned here and released.
    unsafe {
        OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token)?;
        let mut needed = 0u32;
        let _ = GetTokenInformation(token, TokenUser, None, 0, &mut needed);
        let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
        let result = GetTokenInformation(token, TokenUser, Some(buffer.as_mut_ptr().cast()), needed, &mut needed);
        let _ = CloseHandle(token);
        result?;
        let user = &*(buffer.as_ptr().cast::<TOKEN_USER>());
        let mut text = PWSTR::null();
        ConvertSidToStringSidW(user.User.Sid, &mut text)?;
        let sid = text.to_string().unwrap_or_default();
        let _ = LocalFree(Some(HLOCAL(text.0.cast())));
        Ok(sid)
    }
}
