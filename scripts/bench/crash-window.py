#!/usr/bin/env python3
"""How long a closed file exists only in the mount's RAM (what a kill -9 or a power cut loses).

Starts `cloakfs serve` on a loopback port and a Nextcloud-folder mount with the default options (and a
Cryptomator vault mount in a local folder), then writes small files (each closed) at a steady rate while
sampling `cloakfs status` every 50 ms: a file's window is from its close to the last sample that still
listed it as waiting for upload (plus up to one sampling interval). Prints the longest and the median
window per format. Usage: scripts/bench/crash-window.py [SECONDS] [FILES_PER_SECOND]   (needs fuse3, a
built target/release/cloakfs or target/debug/cloakfs, or CLOAKFS_BIN)."""
import os, subprocess, sys, tempfile, threading, time, json, statistics

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
binary = os.environ.get("CLOAKFS_BIN") or next(p for p in (f"{root}/target/release/cloakfs", f"{root}/target/debug/cloakfs") if os.path.exists(p))
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20
rate = float(sys.argv[2]) if len(sys.argv) > 2 else 20
scratch = tempfile.mkdtemp(prefix="cloakfs-window-")
env = dict(os.environ, XDG_RUNTIME_DIR=f"{scratch}/run", XDG_CONFIG_HOME=f"{scratch}/config",
           CLOAKFS_PASSWORD="window-password", CLOAKFS_PASSPHRASE="window passphrase")
os.makedirs(env["XDG_RUNTIME_DIR"]); os.makedirs(env["XDG_CONFIG_HOME"])

def run(*args, **kw):
    return subprocess.run([binary, *args], env=env, check=True, capture_output=True, text=True, **kw)

def mount(args, mountpoint):
    os.makedirs(mountpoint)
    log = open(f"{mountpoint}.log", "w+")
    process = subprocess.Popen([binary, "mount", *args], env=env, stderr=log, stdout=subprocess.DEVNULL)
    for _ in range(300):
        log.seek(0)
        if " mounted at " in log.read():
            return process
        time.sleep(0.1)
    raise SystemExit("the mount did not start")

def measure(label, mountpoint):
    closed, last_dirty, stop = {}, {}, threading.Event()
    def sample():
        while not stop.is_set():
            now = time.monotonic()
            status = subprocess.run([binary, "status"], env=env, capture_output=True, text=True).stdout
            for line in status.splitlines():
                line = line.strip()
                if line.startswith("/") and "bytes)" in line:
                    last_dirty[line.split(" (")[0].rsplit("/", 1)[-1]] = now
            time.sleep(0.05)
    sampler = threading.Thread(target=sample); sampler.start()
    end = time.monotonic() + seconds
    index = 0
    while time.monotonic() < end:
        name = f"w{index:05}.txt"
        with open(f"{mountpoint}/{name}", "wb") as handle:
            handle.write(os.urandom(1024))
        closed[name] = time.monotonic()
        index += 1
        time.sleep(1 / rate)
    time.sleep(15)
    stop.set(); sampler.join()
    windows = [last_dirty[name] - closed[name] for name in closed if name in last_dirty]
    windows = [w for w in windows if w > 0] or [0.0]
    print(f"{label}: {len(closed)} files closed over {seconds:.0f} s at {rate:.0f}/s; "
          f"seen waiting: {len(windows)}; longest window {max(windows):.2f} s, median {statistics.median(windows):.2f} s "
          f"(+ up to 0.05 s sampling)")

try:
    run("serve", "user", "add", "alice", "--data", f"{scratch}/data")
    server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data", f"{scratch}/data"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = server.stdout.readline().strip().removeprefix("listening on ")
    keys = run("keys", "init", "--server", url, "--user", "alice").stdout.splitlines()
    words = keys[[i for i, l in enumerate(keys) if l.startswith("Your mnemonic")][0] + 2].strip()
    open(f"{scratch}/words", "w").write(words)
    run("mkdir", "--encrypted", "/Vault", "--server", url, "--user", "alice", "--mnemonic-file", f"{scratch}/words")
    mnt = f"{scratch}/nextcloud"
    process = mount(["/Vault", mnt, "--server", url, "--user", "alice", "--mnemonic-file", f"{scratch}/words"], mnt)
    measure("nextcloud (defaults: --commit-delay 500, --write-behind 128K)", mnt)
    run("unmount", mnt); process.wait()
    os.makedirs(f"{scratch}/vault"); run("vault", "create", f"{scratch}/vault")
    mnt = f"{scratch}/cryptomator"
    process = mount([f"{scratch}/vault", mnt], mnt)
    measure("cryptomator, local folder (defaults)", mnt)
    run("unmount", mnt); process.wait()
    server.kill()
finally:
    subprocess.run(["fusermount3", "-u", "-z", f"{scratch}/nextcloud"], stderr=subprocess.DEVNULL)
    subprocess.run(["fusermount3", "-u", "-z", f"{scratch}/cryptomator"], stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", scratch])
