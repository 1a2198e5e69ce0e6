//! Links WinFsp's DLL delay-loaded (the only way winfsp-rs supports: the DLL is found at run time in WinFsp's
//! installation). winfsp-rs can emit that for the MSVC and GNU-LLVM toolchains only; for MinGW (the
//! x86_64-pc-windows-gnu type check in CI) nothing is linked, so nothing is emitted.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let abi = std::env::var("CARGO_CFG_TARGET_ABI").unwrap_or_default();
    if os == "windows" && (env == "msvc" || abi == "llvm") {
        winfsp::build::winfsp_link_delayload();
    } else if os == "windows" {
        println!(
            "cargo::warning=WinFsp is linked delay-loaded with the MSVC or GNU-LLVM toolchain only: build the \
             Windows binary with x86_64-pc-windows-msvc"
        );
    }
}
