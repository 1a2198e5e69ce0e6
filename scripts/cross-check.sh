#!/usr/bin/env bash
# The library (engine, vault, remote, crypto, server, file commands) type-checked and linted for Windows
# (x86_64-pc-windows-gnu) and macOS (aarch64-apple-darwin) from Linux: proof that the engine no longer
# depends on Linux. Build scripts of C dependencies (AWS-LC, SQLite) run for the target, so a C compiler for
# it is needed: MinGW-w64 with cmake and nasm for Windows (Debian packages, .ci/run installs them), zig for
# macOS (PyPI's ziglang, installed here if missing; zig ships the macOS headers). Nothing is linked and
# nothing runs on those systems: see README, "Platforms".
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "cross-check: $*" >&2; exit 1; }

for target in x86_64-pc-windows-gnu aarch64-apple-darwin; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" || fail "cannot add the Rust target $target (rustup needs static.rust-lang.org)"
  fi
done

command -v x86_64-w64-mingw32-gcc >/dev/null || fail "x86_64-w64-mingw32-gcc missing: apt-get install gcc-mingw-w64-x86-64"
command -v cmake >/dev/null || fail "cmake missing (AWS-LC's Windows build): apt-get install cmake"
command -v nasm >/dev/null || fail "nasm missing (AWS-LC's Windows assembly): apt-get install nasm"
echo "cross-check: x86_64-pc-windows-gnu"
cargo clippy --locked --lib --target x86_64-pc-windows-gnu -- -D warnings

if ! python3 -c 'import ziglang' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --break-system-packages ziglang 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check ziglang \
    || fail "cannot install zig (pip install ziglang), the C compiler of the macOS check"
fi
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
cat > "$tools/cc" <<'SH'
#!/bin/sh
# cc-rs spells the target arm64-apple-macosx, which zig does not know: zig's own spelling replaces it.
for arg do
  shift
  case "$arg" in --target=*) continue ;; esac
  set -- "$@" "$arg"
done
exec python3 -m ziglang cc -target aarch64-macos "$@"
SH
printf '#!/bin/sh\nexec python3 -m ziglang ar "$@"\n' > "$tools/ar"
chmod +x "$tools/cc" "$tools/ar"
echo "cross-check: aarch64-apple-darwin"
CC_aarch64_apple_darwin="$tools/cc" AR_aarch64_apple_darwin="$tools/ar" \
  cargo clippy --locked --lib --target aarch64-apple-darwin -- -D warnings
echo "cross-check: the library type-checks and lints clean for Windows and macOS"
