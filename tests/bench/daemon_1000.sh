#!/usr/bin/env bash
# Scale benchmark of `burrow daemon`: 1000 small torrents (one 16 KiB file each, data already
# on disk so they all seed). Prints, as JSON lines:
#   add      — adding all 1000 over the RPC, and until all are verified and seeding;
#   restart  — a clean stop, then start-up until the RPC answers and until all 1000 seed again
#              (resume data in SQLite: no hashing);
#   idle     — CPU use and RSS of the daemon over 30 s with 1000 seeding torrents and no peers.
# Usage: tests/bench/daemon_1000.sh [COUNT]   (builds release; loopback only, no trackers)
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT="${1:-1000}"
cargo build --release --quiet
BURROW="${CARGO_TARGET_DIR:-$PWD/target}/release/burrow"
W="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT

RPC_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/daemon.toml" <<TOML
data_dir = "$W/data"
download_dir = "$W/dl"
[peer]
port = 0
listen = "127.0.0.1"
[rpc]
bind = "127.0.0.1:$RPC_PORT"
[limits]
max_active_downloads = 0
max_active_seeds = 0
TOML

/usr/bin/python3 - "$BURROW" "$W" "$RPC_PORT" "$COUNT" <<'PY'
import base64, hashlib, json, os, subprocess, sys, time, urllib.request, urllib.error

burrow, w, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
url = f"http://127.0.0.1:{port}/transmission/rpc"
sid = [""]

def benc(v):
    if isinstance(v, int): return b"i%de" % v
    if isinstance(v, bytes): return b"%d:%s" % (len(v), v)
    if isinstance(v, str): return benc(v.encode())
    if isinstance(v, dict): return b"d" + b"".join(benc(k) + benc(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(v)

def rpc(method, args=None):
    body = json.dumps({"method": method, "arguments": args or {}}).encode()
    for _ in range(3):
        req = urllib.request.Request(url, data=body, headers={"X-Transmission-Session-Id": sid[0]})
        try:
            return json.loads(urllib.request.urlopen(req, timeout=60).read())
        except urllib.error.HTTPError as e:
            if e.code != 409: raise
            sid[0] = e.headers["X-Transmission-Session-Id"]
    raise RuntimeError("handshake")

def wait_rpc(proc, t0):
    while True:
        if proc.poll() is not None: raise RuntimeError("daemon exited")
        try:
            rpc("session-get"); return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.01)

def wait_seeding(t0, timeout=600):
    while time.monotonic() - t0 < timeout:
        ts = rpc("torrent-get", {"fields": ["status"]})["arguments"]["torrents"]
        if len(ts) == count and all(t["status"] == 6 for t in ts): return time.monotonic() - t0
        time.sleep(0.2)
    raise RuntimeError("torrents did not all seed")

def cpu_rss(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = int(f[11]) + int(f[12])
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
    return ticks / os.sysconf("SC_CLK_TCK"), rss / 1024

def start():
    log = open(f"{w}/daemon.log", "a")
    return subprocess.Popen([burrow, "daemon", "--config", f"{w}/daemon.toml"], stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))

# 1000 single-file torrents whose data is in the download folder.
torrents = []
os.makedirs(f"{w}/dl", exist_ok=True)
for i in range(count):
    data = os.urandom(16384)
    name = f"small-{i:04d}.bin"
    open(f"{w}/dl/{name}", "wb").write(data)
    info = {"name": name, "length": len(data), "piece length": 16384, "pieces": hashlib.sha1(data).digest()}
    torrents.append(benc({"info": info}))

p = start()
wait_rpc(p, time.monotonic())
t0 = time.monotonic()
for t in torrents:
    r = rpc("torrent-add", {"metainfo": base64.b64encode(t).decode()})
    assert r["result"] == "success", r
added = time.monotonic() - t0
seeding = wait_seeding(t0)
print(json.dumps({"phase": "add", "torrents": count, "add_all_s": round(added, 2), "all_seeding_s": round(seeding, 2)}), flush=True)

time.sleep(2)
t0 = time.monotonic()
p.terminate(); p.wait(timeout=120)
stop = time.monotonic() - t0
t0 = time.monotonic()
p = start()
rpc_up = wait_rpc(p, t0)
seeding = wait_seeding(t0)
_, rss = cpu_rss(p.pid)
print(json.dumps({"phase": "restart", "clean_stop_s": round(stop, 2), "rpc_ready_s": round(rpc_up, 3), "all_seeding_s": round(seeding, 2), "rss_mib": round(rss, 1)}), flush=True)

time.sleep(5)
c0, _ = cpu_rss(p.pid); t0 = time.monotonic()
time.sleep(30)
c1, rss = cpu_rss(p.pid); dt = time.monotonic() - t0
g0 = time.monotonic(); rpc("torrent-get", {"fields": ["id", "name", "status", "percentDone", "rateDownload", "rateUpload"]}); get_ms = (time.monotonic() - g0) * 1000
print(json.dumps({"phase": "idle", "cpu_percent": round(100 * (c1 - c0) / dt, 2), "rss_mib": round(rss, 1), "torrent_get_all_ms": round(get_ms, 1)}), flush=True)
p.terminate(); p.wait(timeout=120)
PY
