#!/usr/bin/env bash
# Finds or installs what the tests need besides Rust (scripts/test.sh runs it first; .ci/run too): Debian
# packages with apt-get when run as root (it says which; else it prints the apt-get line and stops), and
# pycryptomator from PyPI into target/pylib (nothing system-wide). Quiet when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package: what it gives the tests.
packages=(
  gcc libc6-dev            # AWS-LC's C build
  ca-certificates          # crates.io
  fuse3                    # fusermount3: the kernel mounts
  git rsync                # real tools the mount tests run inside a mount
  dbus-daemon dbus-bin     # a private bus for the --lock-on-suspend test
  apache2 apache2-utils    # Apache mod_dav, htpasswd: a WebDAV server of the Cryptomator tests
  rclone                   # `rclone serve webdav`: the other WebDAV server
  openssh-server openssh-client libpam-google-authenticator  # the SFTP tests' SSH server and PAM codes
  python3 python3-pip      # pycryptomator
)
scripts/need-packages.sh test.sh "${packages[@]}"

# pycryptomator (MIT, PyPI): the independent implementation of Cryptomator's vault format 8 the
# Cryptomator tests check our vaults against, both ways (tests/common/dav.rs looks in target/pylib).
if ! PYTHONPATH=target/pylib python3 -c 'import pycryptomator' 2>/dev/null; then
  echo "test.sh: installing pycryptomator 1.15 (PyPI) into target/pylib"
  python3 -m pip install --quiet --disable-pip-version-check --target target/pylib --break-system-packages \
    pycryptomator==1.15 pycryptodome==4.5.0 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --target target/pylib \
      pycryptomator==1.15 pycryptodome==4.5.0
fi
if [ ! -e /dev/fuse ]; then
  echo "test.sh: /dev/fuse is missing: the mount tests need the FUSE kernel module (modprobe fuse)" >&2
  exit 1
fi

