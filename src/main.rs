//! The `cloakfs` binary: a thin shell over [`cloakfs::cli`].

use clap::Parser;

/// No core dumps: a crash must not write plaintext, names or keys from memory to disk. Also refuses
/// ptrace attachment by other processes of the same user.
fn forbid_core_dumps() {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn main() -> std::process::ExitCode {
    forbid_core_dumps();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cloakfs::cli::Cli::parse();
    match cloakfs::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cloakfs: error: {}", cloakfs::cli::describe_error(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
