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
        use clap::Parser as _;
        cloakfs::platform::forbid_core_dumps();
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .init();
        let cli = cloakfs::cli::Cli::parse();
        match cloakfs::cli::run_with(cli, session::mount) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("cloakfs: error: {}", cloakfs::cli::describe_error(&error));
                std::process::ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(windows))]
    {
        eprintln!("cloakfs-windows is the Windows build of cloakfs; on this system use the cloakfs crate at the top");
        std::process::ExitCode::FAILURE
    }
}
