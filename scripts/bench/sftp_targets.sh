# The SFTP targets of scripts/bench/run.sh (sourced by it): one OpenSSH server (Debian's sshd, started by
# the bench on a loopback port with its own host key, the key of root authorized, internal-sftp), reached
# through the delaying proxy with --latency, and three clients of it:
# - sftp: cloakfs mount of a Cryptomator vault (format 8, SIV_GCM) over SFTP;
# - rclone-sftp: an rclone crypt remote over rclone's sftp backend, `rclone mount --vfs-cache-mode writes`;
# - sshfs: sshfs of a plain folder (no encryption: the upper bound for an SFTP mount).
# Durability: cloakfs uploads at close (and fsyncdir waits for its uploads); sshfs waits for its writes at
# close; rclone as for the WebDAV rows (its stats idle and the server's listing matching the mount's).
# Then the server's disk is synced. The logins use a key without a passphrase (no code): login prompts
# are not what is measured.

SSH_PORT=""
start_sshd() {
  [ -n "$SSH_PORT" ] && return 0
  mkdir -p "$W/ssh" "$W/sftp/cryptomator" "$W/sftp/crypt-writes" "$W/sftp/plain" /run/sshd
  ssh-keygen -q -t ed25519 -N "" -C bench-host -f "$W/ssh/host" </dev/null
  ssh-keygen -q -t ed25519 -N "" -C bench-client -f "$W/ssh/client" </dev/null
  cp "$W/ssh/client.pub" "$W/ssh/authorized"
  local port; port=$(free_port)
  printf '%s\n' "Port $port" "ListenAddress 127.0.0.1" "HostKey $W/ssh/host" "PidFile $W/ssh/sshd.pid" \
    "AuthorizedKeysFile $W/ssh/authorized" "PermitRootLogin prohibit-password" "StrictModes no" "UsePAM no" \
    "PasswordAuthentication no" "KbdInteractiveAuthentication no" "Subsystem sftp internal-sftp" \
    "MaxStartups 50" > "$W/ssh/sshd_config"
  start_bg "$W/sshd.log" /usr/sbin/sshd -D -e -f "$W/ssh/sshd_config"
  wait_for 30 "sshd" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
  SSH_FINGERPRINT=$(ssh-keygen -lf "$W/ssh/host.pub" | awk '{print $2}')
  SSH_PORT=$(delayed_port "$port")
}

# cloakfs over SFTP
SFTP_ENV=(env HOME="$W/sftp-home" XDG_RUNTIME_DIR="$W/sftp-run" TMPDIR="$W/sftp-tmp"
  CLOAKFS_PASSPHRASE=bench-passphrase-1234 SSH_AUTH_SOCK=)
sftp_start() {
  start_sshd
  rm -rf "$W/sftp-run" "$W/sftp-tmp" "$W/sftp-home"
  mkdir -p "$W/sftp-run" "$W/sftp-tmp" "$W/sftp-home"; chmod 700 "$W/sftp-run"
  SFTP_URL="sftp://root@127.0.0.1:$SSH_PORT$W/sftp/cryptomator/vault-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  "${SFTP_ENV[@]}" "$CLOAKFS" vault create "$SFTP_URL" -i "$W/ssh/client" --no-agent --accept-host-key "$SSH_FINGERPRINT" \
    >/dev/null </dev/null
  sftp_mount
}
sftp_mount() {
  : > "$W/sftp-mount.log"
  start_bg "$W/sftp-mount.log" "${SFTP_ENV[@]}" "$CLOAKFS" mount "$SFTP_URL" "$MP" -i "$W/ssh/client" --no-agent \
    --accept-host-key "$SSH_FINGERPRINT" --cache-size "$CACHE_SIZE"
  MOUNT_PID=$BG_PID
  wait_for 60 "cloakfs mount over SFTP" grep -q ' mounted at ' "$W/sftp-mount.log"
}
sftp_unmount() {
  note_rss "$MOUNT_PID"
  "${SFTP_ENV[@]}" "$CLOAKFS" unmount "$MP" >/dev/null
  wait "$MOUNT_PID" 2>/dev/null || true
}
sftp_remount() { sftp_unmount; drop_caches; sftp_mount; }
sftp_durable() { sync "$MP"; sync -f "$W/sftp"; }
sftp_stop() { sftp_unmount; }
sftp_leftovers() { echo "$W/sftp-run $W/sftp-tmp $W/sftp-home"; }

# rclone crypt over rclone's sftp backend (the rclone_* functions of run.sh, with this configuration)
rclone-sftp_start() {
  start_sshd
  RCLONE_MODE=writes
  rm -rf "$W/sftp/crypt-writes"/* "$W/rclone-cache"
  RCLONE_CONF="$W/rclone-sftp.conf"
  printf '%s\n' "[sftp]" "type = sftp" "host = 127.0.0.1" "port = $SSH_PORT" "user = root" \
    "key_file = $W/ssh/client" "shell_type = none" "" "[crypt]" "type = crypt" \
    "remote = sftp:$W/sftp/crypt-writes" "password = $(rclone obscure bench-password-1234)" > "$RCLONE_CONF"
  rclone_mount
}
rclone-sftp_remount() { rclone_remount; }
rclone-sftp_stop() { rclone_stop; }
rclone-sftp_leftovers() { rclone_leftovers; }
rclone-sftp_durable() {
  sync "$MP" 2>/dev/null || true
  wait_for "$STEP_TIMEOUT" "rclone uploads" rclone_idle
  wait_for "$STEP_TIMEOUT" "rclone's changes on the server" rclone_on_server
  sync -f "$W/sftp"
}

# sshfs of a plain folder
sshfs_start() {
  start_sshd
  rm -rf "$W/sftp/plain"; mkdir -p "$W/sftp/plain"
  sshfs_mount
}
sshfs_mount() {
  start_bg "$W/sshfs.log" sshfs -f "root@127.0.0.1:$W/sftp/plain" "$MP" -p "$SSH_PORT" \
    -o "IdentityFile=$W/ssh/client,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes"
  MOUNT_PID=$BG_PID
  wait_for 60 "sshfs" mountpoint -q "$MP"
}
sshfs_unmount() { note_rss "$MOUNT_PID"; fusermount3 -u "$MP"; wait "$MOUNT_PID" 2>/dev/null || true; }
sshfs_remount() { sshfs_unmount; drop_caches; sshfs_mount; }
sshfs_same() { # the server has every file of the mount, at full size
  diff <(cd "$MP" && find . -type f -printf '%P %s\n' | sort) <(cd "$W/sftp/plain" && find . -type f -printf '%P %s\n' | sort)
}
sshfs_durable() { wait_for "$STEP_TIMEOUT" "sshfs writes" sshfs_same; sync -f "$W/sftp"; }
sshfs_stop() { sshfs_unmount; }
sshfs_leftovers() { echo ""; }
