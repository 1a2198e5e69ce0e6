#!/usr/bin/env bash
# File-content AES-128-GCM throughput of cloakfs next to `openssl speed` on the same machine, same run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { echo "openssl not found: apt-get install -y openssl" >&2; exit 1; }
cargo bench --locked --bench file_cipher
