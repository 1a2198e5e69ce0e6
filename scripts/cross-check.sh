#!/usr/bin/env bash
# Type-checks and lints, from Linux, what runs on the other platforms (README, "Platforms"):
#
#   x86_64-pc-windows-gnu   the library, the portable binary, and platform/windows (the WinFsp drive letter)
#   x86_64-pc-windows-msvc  the same, for the toolchain the Windows binary is built with (only with
#                           CLOAKFS_CROSS_MSVC=1: see below)
#   aarch64-apple-darwin    the library and the binary with its macFUSE mount
#
# Nothing is linked and nothing runs on those systems. Build scripts of C dependencies (AWS-LC, SQLite) do
# run for the target, so a C compiler for it is needed: MinGW-w64 with cmake and nasm for windows-gnu
# (Debian packages, .ci/run installs them) and zig (PyPI's ziglang, installed here if missing) for
# windows-msvc (with zig's `lib` as the archiver) and macOS (zig ships the macOS headers).
#
# Stand-ins, each stated when used:
# - platform/windows is checked with its `check-without-winfsp` feature: the winfsp crate's pre-generated
#   bindings (its `docsrs` feature) instead of WinFsp's headers and libclang. That feature needs
#   RUSTC_BOOTSTRAP=1 (doc_cfg), set for the two Windows checks only.
# - macOS: fuser links macFUSE's libfuse, found by pkg-config; a stand-in fuse.pc (version 2.9.9, no files
#   behind it) answers that probe, which is enough for a check that links nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "cross-check: FAILED: $*" >&2; exit 1; }

for target in x86_64-pc-windows-gnu x86_64-pc-windows-msvc aarch64-apple-darwin; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" || fail "cannot add the Rust target $target (rustup needs static.rust-lang.org)"
  fi
done
command -v x86_64-w64-mingw32-gcc >/dev/null || fail "x86_64-w64-mingw32-gcc missing: apt-get install gcc-mingw-w64-x86-64"
command -v cmake >/dev/null || fail "cmake missing (AWS-LC's Windows build): apt-get install cmake"
command -v nasm >/dev/null || fail "nasm missing (AWS-LC's Windows assembly): apt-get install nasm"
command -v pkg-config >/dev/null || fail "pkg-config missing (fuser's macFUSE probe): apt-get install pkg-config"
if ! python3 -c 'import ziglang' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --break-system-packages ziglang 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check ziglang \
    || fail "cannot install zig (pip install ziglang), the C compiler of the MSVC and macOS checks"
fi

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
# cc-rs passes its own --target spelling (arm64-apple-macosx, x86_64-pc-windows-msvc), which zig does not
# know: the wrapper drops it and names zig's target.
zig_cc() {
  cat > "$tools/$1" <<SH
#!/bin/sh
for arg do
  shift
  case "\$arg" in --target=*) continue ;; esac
  set -- "\$@" "\$arg"
done
exec python3 -m ziglang cc -target $2 "\$@"
SH
  chmod +x "$tools/$1"
}
zig_cc cc-macos aarch64-macos
# For MSVC, C code is compiled with zig's MinGW ABI: the objects are only archived, never linked (this is a
# check); the archiver must be called lib.exe, found on PATH (a directory of its own, so that the host's
# `cc` stays the host's).
zig_cc cc-msvc x86_64-windows-gnu
mkdir -p "$tools/bin" "$tools/pkgconfig"
printf '#!/bin/sh\nexec python3 -m ziglang ar "$@"\n' > "$tools/ar"
printf '#!/bin/sh\nexec python3 -m ziglang lib "$@"\n' > "$tools/bin/lib.exe"
chmod +x "$tools/ar" "$tools/bin/lib.exe"
printf 'Name: fuse\nDescription: stand-in for macFUSE (type check only)\nVersion: 2.9.9\nLibs: -lfuse\nCflags:\n' \
  > "$tools/pkgconfig/fuse.pc"

windows_check() {
  local target=$1
  echo "cross-check: $target: library, binary and platform/windows (winfsp's pre-generated bindings, RUSTC_BOOTSTRAP=1)"
  RUSTC_BOOTSTRAP=1 cargo clippy --locked --target "$target" -p cloakfs -p cloakfs-windows --lib --bins \
    --features cloakfs-windows/check-without-winfsp -- -D warnings || fail "$target"
}

windows_check x86_64-pc-windows-gnu

# x86_64-pc-windows-msvc type-checks the same Rust code as windows-gnu: nothing in the sources depends on
# target_env (checked below, so this stays true). What it adds is building the C dependencies (AWS-LC,
# SQLite) for MSVC with zig's clang, which is not the MSVC toolchain a Windows release uses either. So CI
# skips it (it cost a third of this step) and says so; CLOAKFS_CROSS_MSVC=1 runs it.
if grep -rn 'target_env' src platform Cargo.toml --include='*.rs' --include=Cargo.toml >/dev/null; then
  fail "the sources now depend on target_env: run the msvc check in CI again (CLOAKFS_CROSS_MSVC=1)"
fi
if [ "${CLOAKFS_CROSS_MSVC:-0}" = 1 ]; then
  PATH="$tools/bin:$PATH" CC_x86_64_pc_windows_msvc="$tools/cc-msvc" AR_x86_64_pc_windows_msvc="$tools/bin/lib.exe" \
    AWS_LC_SYS_CMAKE_BUILDER=0 windows_check x86_64-pc-windows-msvc
else
  echo "cross-check: x86_64-pc-windows-msvc NOT checked: same Rust code as windows-gnu (no target_env in the sources);"
  echo "cross-check:   its C dependencies' MSVC build is checked with CLOAKFS_CROSS_MSVC=1 scripts/cross-check.sh"
fi

echo "cross-check: aarch64-apple-darwin: library and binary with the FUSE mount (stand-in fuse.pc for macFUSE)"
PKG_CONFIG_PATH="$tools/pkgconfig" PKG_CONFIG_ALLOW_CROSS=1 \
  CC_aarch64_apple_darwin="$tools/cc-macos" AR_aarch64_apple_darwin="$tools/ar" \
  cargo clippy --locked --target aarch64-apple-darwin --lib --bins -- -D warnings || fail "aarch64-apple-darwin"

if [ "${CLOAKFS_CROSS_MSVC:-0}" = 1 ]; then
  echo "cross-check: type-checked and linted clean for Windows (gnu, msvc; with the WinFsp crate) and macOS."
else
  echo "cross-check: type-checked and linted clean for Windows (gnu; with the WinFsp crate) and macOS."
fi
echo "cross-check: NOT checked here: linking, and any run on Windows or macOS (no such machine in CI)."
