//! The `cloakfs` binary: a thin shell over [`cloakfs::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    cloakfs::platform::forbid_core_dumps();
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
