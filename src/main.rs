//! The `cloakfs` binary: a thin shell over [`cloakfs::cli`].

fn main() -> std::process::ExitCode {
    cloakfs::cli::main()
}
