//! `cloakfs` for Windows: the same command line as on Linux, with `cloakfs mount /Vault X:` mounting the
//! folder as a drive letter (or a directory) through WinFsp. Every other command, and everything that is
//! not a WinFsp call, is the cloakfs library (its Windows semantics in `cloakfs::mount::winfs`, tested on
//! Linux).

#[cfg(windows)]
mod adapter;
#[cfg(windows)]
mod power;
#[cfg(windows)]
mod security;
#[cfg(windows)]
mod session;

fn main() -> std::process::ExitCode {
    #[cfg(windows)]
    {
        cloakfs::cli::main_with(session::mount)
    }
    #[cfg(not(windows))]
    {
        eprintln!("cloakfs-windows is the Windows build of cloakfs; on this system use the cloakfs crate at the top");
        std::process::ExitCode::FAILURE
    }
}
