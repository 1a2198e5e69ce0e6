#!/usr/bin/env bash
# Cryptomator vaults at the command line, next to rclone crypt, on the same Apache mod_dav server over
# loopback: what the vault format and the WebDAV transport cost before there is a mount (issue 22; the
# mount rows the issue asks for need the Cryptomator mount, not built yet).
#
#   scripts/bench/cryptomator-cli.sh [--quick] [--rounds N] [--out FILE]
#
# Both tools run as one process per action, so every figure includes starting the process and deriving
# the key from the passphrase (scrypt in both); the "start and unlock" row measures that alone.
#   time to first byte   cloakfs vault get URL /big - | head -c 1   vs   rclone cat --count 1 crypt:big
#   sequential read      cloakfs vault get URL /big - > /dev/null   vs   rclone cat crypt:big > /dev/null
#   upload               cloakfs vault put FILE URL /big2           vs   rclone copyto FILE crypt:big2
#   ls -l of N entries   cloakfs vault ls URL /many                 vs   rclone lsl crypt:many
# Needs apache2, apache2-utils, rclone (Debian) and pycryptomator (fills the folder of many entries; from
# target/pylib, where .ci/run installs it). Runs as root or as a user (Apache then runs as that user).
# Medians of N rounds (default 3), the tools taking turns. Results: a markdown table on stdout (and --out).
set -euo pipefail

SIZE_MIB=256
ENTRIES=2000
ROUNDS=3
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SIZE_MIB=32 ENTRIES=300; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
for tool in apache2 htpasswd rclone python3 bc; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install apache2 apache2-utils rclone python3 bc" >&2; exit 2; }
done
PYTHONPATH="$ROOT/target/pylib${PYTHONPATH:+:$PYTHONPATH}" python3 -c 'import pycryptomator' 2>/dev/null \
  || { echo "missing pycryptomator: python3 -m pip install --target target/pylib pycryptomator==1.15" >&2; exit 2; }
export PYTHONPATH="$ROOT/target/pylib${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "${CLOAKFS:-}" ]; then
  (cd "$ROOT" && cargo build --release --locked --quiet)
  CLOAKFS="$ROOT/target/release/cloakfs"
fi

WORK=$(mktemp -d /var/tmp/cloakfs-cm-bench.XXXXXX)
APACHE_PID=""
cleanup() {
  [ -n "$APACHE_PID" ] && kill "$APACHE_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Apache with mod_dav over $WORK/www, Basic authentication.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/www/Vault" "$WORK/www/rclone" "$WORK/locks" "$WORK/src/many"
htpasswd -bcB "$WORK/htpasswd" bench bench-password 2>/dev/null
M=/usr/lib/apache2/modules
RUN_AS=""
if [ "$(id -u)" = 0 ]; then RUN_AS=$'User www-data\nGroup www-data'; fi
cat > "$WORK/httpd.conf" <<EOF
ServerRoot $WORK
PidFile $WORK/httpd.pid
Listen 127.0.0.1:$PORT
ServerName 127.0.0.1
$RUN_AS
ErrorLog $WORK/error.log
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule authn_core_module $M/mod_authn_core.so
LoadModule auth_basic_module $M/mod_auth_basic.so
LoadModule authn_file_module $M/mod_authn_file.so
LoadModule authz_user_module $M/mod_authz_user.so
LoadModule dir_module $M/mod_dir.so
LoadModule dav_module $M/mod_dav.so
LoadModule dav_fs_module $M/mod_dav_fs.so
DAVLockDB $WORK/locks/DAVLock
DocumentRoot $WORK/www
<Directory $WORK/www>
  Dav On
  AuthType Basic
  AuthName dav
  AuthUserFile $WORK/htpasswd
  Require valid-user
</Directory>
EOF
chmod 755 "$WORK"
give() { if [ "$(id -u)" = 0 ]; then chown -R www-data:www-data "$@"; fi; }
give "$WORK/www" "$WORK/locks"
apache2 -f "$WORK/httpd.conf" -DFOREGROUND & APACHE_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

URL="http://127.0.0.1:$PORT/Vault"
export CLOAKFS_PASSPHRASE="bench passphrase" CLOAKFS_PASSWORD=bench-password CLOAKFS_DAV_USER=bench
export RCLONE_CONFIG="$WORK/rclone.conf"
export RCLONE_CONFIG_DAV_TYPE=webdav RCLONE_CONFIG_DAV_URL="http://127.0.0.1:$PORT/rclone" RCLONE_CONFIG_DAV_VENDOR=other
export RCLONE_CONFIG_DAV_USER=bench RCLONE_CONFIG_DAV_PASS="$(rclone obscure bench-password)"
export RCLONE_CONFIG_CRYPT_TYPE=crypt RCLONE_CONFIG_CRYPT_REMOTE=dav: RCLONE_CONFIG_CRYPT_PASSWORD="$(rclone obscure 'bench passphrase')"

# Data: the big file, and a folder of many 4 KiB entries (pycryptomator writes them into the vault's
# folder directly; rclone copies them in one run).
head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/src/big"
for i in $(seq "$ENTRIES"); do head -c 4096 /dev/urandom > "$WORK/src/many/file-$i.txt"; done
"$CLOAKFS" vault create "$URL" >/dev/null 2>&1
"$CLOAKFS" vault put "$URL" "$WORK/src/big" /big >/dev/null
rclone copyto "$WORK/src/big" crypt:big
give "$WORK/www"
python3 -m pycryptomator --password "$CLOAKFS_PASSPHRASE" "$WORK/www/Vault" encrypt "$WORK/src/many" / >/dev/null
give "$WORK/www"
rclone copy "$WORK/src/many" crypt:many --transfers 8
"$CLOAKFS" vault ls "$URL" /many | wc -l | grep -qx "$ENTRIES" || { echo "the vault does not list $ENTRIES entries" >&2; exit 1; }

seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N); echo "$end - $start" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }

declare -A samples
run() { # row tool command...
  local row=$1 tool=$2; shift 2
  samples["$row|$tool"]+="$(seconds "$@") "
}
for round in $(seq "$ROUNDS"); do
  run "start and unlock" cloakfs "$CLOAKFS" vault info "$URL"
  run "start and unlock" rclone rclone lsd crypt:
  run "time to first byte, ${SIZE_MIB} MiB file" cloakfs sh -c "'$CLOAKFS' vault get '$URL' /big - | head -c 1"
  run "time to first byte, ${SIZE_MIB} MiB file" rclone sh -c "rclone cat --count 1 crypt:big"
  run "sequential read, ${SIZE_MIB} MiB" cloakfs sh -c "'$CLOAKFS' vault get '$URL' /big - > /dev/null"
  run "sequential read, ${SIZE_MIB} MiB" rclone sh -c "rclone cat crypt:big > /dev/null"
  run "upload, ${SIZE_MIB} MiB" cloakfs "$CLOAKFS" vault put "$URL" "$WORK/src/big" "/upload-$round"
  run "upload, ${SIZE_MIB} MiB" rclone rclone copyto "$WORK/src/big" "crypt:upload-$round"
  run "ls -l of ${ENTRIES} entries" cloakfs "$CLOAKFS" vault ls "$URL" /many
  run "ls -l of ${ENTRIES} entries" rclone rclone lsl crypt:many
done

{
  echo "| action (one process each, seconds, median of $ROUNDS) | cloakfs vault | rclone crypt | cloakfs / rclone |"
  echo "|---|---|---|---|"
  for row in "start and unlock" "time to first byte, ${SIZE_MIB} MiB file" "sequential read, ${SIZE_MIB} MiB" \
             "upload, ${SIZE_MIB} MiB" "ls -l of ${ENTRIES} entries"; do
    ours=$(echo "${samples["$row|cloakfs"]}" | tr ' ' '\n' | grep . | median)
    theirs=$(echo "${samples["$row|rclone"]}" | tr ' ' '\n' | grep . | median)
    ratio=$(echo "$ours / $theirs" | bc -l | xargs printf '%.2f')
    echo "| $row | $ours | $theirs | $ratio |"
  done
} | tee ${OUT:+"$OUT"}
