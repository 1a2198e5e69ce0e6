#!/usr/bin/env bash
# Type-checks and lints, from Linux, what runs on the other platforms (README, "Platforms"):
#
#   x86_64-pc-windows-gnu   the library, the portable binary, and platform/windows (the WinFsp drive letter)
#   x86_64-pc-windows-msvc  the same, for the toolchain the Windows binary is built with (only with
#                           CLOAKFS_CROSS_MSVC=1: see below)
#   aarch64-apple-darwin    the library and the binary with its macFUSE mount
#
# Nothing is linked and nothing runs on those systems, so the C code of dependencies (AWS-LC, SQLite) is not
# compiled for them either: their build scripts run with a stand-in C compiler (below) that answers cc-rs's
# probes with the host compiler and writes an empty object for every compile. Compiling AWS-LC for two
# foreign targets (MinGW with cmake and nasm, zig for macOS) was two thirds of this step and checked none of
# our code; the Rust code, ours and the dependencies', is type-checked and linted for each target as before.
# A Windows or macOS release build compiles the C code for real (README, "Platforms").
#
# Stand-ins, each stated when used:
# - the C compiler and archiver of the targets (above).
# - platform/windows is checked with its `check-without-winfsp` feature: the winfsp crate's pre-generated
#   bindings (its `docsrs` feature) instead of WinFsp's headers and libclang. That feature needs
#   RUSTC_BOOTSTRAP=1 (doc_cfg), which a rustc wrapper sets for the winfsp crates alone: set for the whole
#   run, it would make the build scripts that watch it (proc-macro2, anyhow, thiserror) run again, and with
#   them every proc macro and crate already built by the clippy step before.
# - macOS: fuser links macFUSE's libfuse, found by pkg-config; a stand-in fuse.pc (version 2.9.9, no files
#   behind it) answers that probe, which is enough for a check that links nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "cross-check: FAILED: $*" >&2; exit 1; }

targets="x86_64-pc-windows-gnu aarch64-apple-darwin"
if [ "${CLOAKFS_CROSS_MSVC:-0}" = 1 ]; then targets="$targets x86_64-pc-windows-msvc"; fi
for target in $targets; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" || fail "cannot add the Rust target $target (rustup needs static.rust-lang.org)"
  fi
done
command -v cc >/dev/null || fail "no host C compiler (cc-rs's probes): apt-get install gcc"
command -v ar >/dev/null || fail "no archiver: apt-get install binutils"
command -v pkg-config >/dev/null || fail "pkg-config missing (fuser's macFUSE probe): apt-get install pkg-config"

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
# The stand-in C compiler: preprocessing and version queries (cc-rs's compiler-family and flag probes) go to
# the host's cc; a compile (-c ... -o OUT) writes an empty OUT, which the host's ar archives as it is.
cat > "$tools/cc-typecheck-only" <<'SH'
#!/bin/sh
out=""
compile=0
previous=""
for arg do
  case "$arg" in
    -E | --version | -dumpversion | -dumpmachine) exec cc "$@" ;;
    -c) compile=1 ;;
  esac
  if [ "$previous" = "-o" ]; then out=$arg; fi
  previous=$arg
done
if [ "$compile" = 1 ] && [ -n "$out" ]; then
  : > "$out"
  exit 0
fi
echo "cc-typecheck-only: not a compile (-c ... -o OUT): $*" >&2
exit 1
SH
chmod +x "$tools/cc-typecheck-only"
# RUSTC_BOOTSTRAP=1 for the winfsp crates only (see above); another wrapper already set is called inside.
cat > "$tools/rustc-winfsp-bootstrap" <<'SH'
#!/bin/sh
case " $* " in *" --crate-name winfsp"*) RUSTC_BOOTSTRAP=1; export RUSTC_BOOTSTRAP ;; esac
if [ -n "${CLOAKFS_INNER_RUSTC_WRAPPER:-}" ]; then exec "$CLOAKFS_INNER_RUSTC_WRAPPER" "$@"; fi
exec "$@"
SH
chmod +x "$tools/rustc-winfsp-bootstrap"
mkdir -p "$tools/pkgconfig"
printf 'Name: fuse\nDescription: stand-in for macFUSE (type check only)\nVersion: 2.9.9\nLibs: -lfuse\nCflags:\n' \
  > "$tools/pkgconfig/fuse.pc"
# Each target's C compiler and archiver; AWS-LC through its cc-rs build (no cmake) without assembly (no nasm).
stand_in_env() {
  local var=${1//-/_}
  echo "CC_$var=$tools/cc-typecheck-only AR_$var=ar AWS_LC_SYS_CMAKE_BUILDER_$var=0 AWS_LC_SYS_NO_ASM_$var=1"
}

# x86_64-pc-windows-msvc type-checks the same Rust code as windows-gnu: nothing in the sources depends on
# target_env (checked here, so this stays true), and no C code is compiled for either. So CI skips it (its
# Rust check of every dependency took a minute and a half) and says so; CLOAKFS_CROSS_MSVC=1 runs it.
if grep -rn 'target_env' src platform Cargo.toml --include='*.rs' --include=Cargo.toml >/dev/null; then
  fail "the sources now depend on target_env: run the msvc check in CI again (CLOAKFS_CROSS_MSVC=1)"
fi
if [ "${CLOAKFS_CROSS_MSVC:-0}" != 1 ]; then
  echo "cross-check: x86_64-pc-windows-msvc NOT checked: same Rust code as windows-gnu (no target_env in the sources);"
  echo "cross-check:   CLOAKFS_CROSS_MSVC=1 scripts/cross-check.sh checks it"
fi

# One cargo run for every target: the build scripts and proc macros (host code) are built once, and the
# targets' crates are checked side by side. platform/windows is only a "Windows only" message elsewhere.
echo "cross-check: $targets: the library and the binary (macOS with the FUSE mount: stand-in fuse.pc for macFUSE);"
echo "cross-check:   Windows with platform/windows (winfsp's pre-generated bindings, RUSTC_BOOTSTRAP=1 for them)"
target_args=()
target_env=()
for target in $targets; do
  target_args+=(--target "$target")
  read -ra vars <<< "$(stand_in_env "$target")"
  target_env+=("${vars[@]}")
done
env "${target_env[@]}" CLOAKFS_INNER_RUSTC_WRAPPER="${RUSTC_WRAPPER:-}" RUSTC_WRAPPER="$tools/rustc-winfsp-bootstrap" \
  PKG_CONFIG_PATH="$tools/pkgconfig" PKG_CONFIG_ALLOW_CROSS=1 \
  cargo clippy --locked "${target_args[@]}" -p cloakfs -p cloakfs-windows --lib --bins \
  --features cloakfs-windows/check-without-winfsp -- -D warnings || fail "$targets"

if [ "${CLOAKFS_CROSS_MSVC:-0}" = 1 ]; then
  echo "cross-check: type-checked and linted clean for Windows (gnu, msvc; with the WinFsp crate) and macOS."
else
  echo "cross-check: type-checked and linted clean for Windows (gnu; with the WinFsp crate) and macOS."
fi
echo "cross-check: NOT checked here: C code of dependencies compiled for those targets, linking, and any run on"
echo "cross-check:   Windows or macOS (no such machine in CI)."
