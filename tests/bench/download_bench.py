#!/usr/bin/python3
"""End-to-end download benchmark on loopback: one seeder, several downloaders taking turns.

A single-file torrent with 1 MiB pieces is seeded by one client (libtorrent 2.0 with its
default or its high-performance settings, transmission-daemon, qbittorrent-nox or burrow);
each downloader fetches it into an empty folder in turn, round after round, so that every
client meets the same machine state as often as the others. Every round is printed, then
the median, p10 and p90 of wall time, CPU time (user + sys) and peak RSS per client, the
seeder's CPU time per download, and burrow's ratios to libtorrent round by round.

Downloaders: burrow (direct I/O, the default), burrow-pagecache (--no-direct-io) and
libtorrent. Needs python3-libtorrent; transmission-daemon and qbittorrent-nox for those
seeders. Usage: see --help (tests/bench/download_1gib.sh runs it with the defaults).
"""
import argparse
import filecmp
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BURROW = os.path.join(ROOT, "target", "release", "burrow")
LT = os.path.join(ROOT, "tests", "support", "lt_peer.py")
MEASURE = os.path.join(ROOT, "tests", "bench", "measure.py")
PY = "/usr/bin/python3"


def free_port():
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def make_data(path, size_mib):
    if os.path.exists(path) and os.path.getsize(path) == size_mib << 20:
        return
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size_mib):
            f.write(bytes([i & 255]) + block[1:])


def cpu_of(pid):
    """User + system CPU seconds of a process and its reaped children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = sum(int(x) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"seeder did not listen on {port}")


class Seeder:
    """A seeding client in the background; `port` is its peer port."""

    def __init__(self, kind, work, torrent, src_dir, transport):
        self.kind, self.work = kind, work
        self.port = free_port()
        log = open(os.path.join(work, "seed.log"), "w")
        if kind in ("libtorrent", "libtorrent-hp"):
            cmd = [PY, LT, "--mode", "seed", "--torrent", torrent, "--save", src_dir,
                   "--listen", f"127.0.0.1:{self.port}", "--timeout", "100000",
                   "--transport", transport]
            if kind == "libtorrent-hp":
                cmd.append("--high-performance")
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
            wait_port(self.port)
        elif kind == "burrow":
            state = os.path.join(work, "seed-state")
            self.proc = subprocess.Popen(
                [BURROW, "seed", torrent, "--data", src_dir, "--port", str(self.port),
                 "--listen", "127.0.0.1", "--state-dir", state, "--no-dht",
                 "--transport", "both" if transport == "both" else transport],
                stdout=log, stderr=log)
            self._wait_log("seeding")
        elif kind == "transmission":
            self._transmission(torrent, src_dir, transport, log)
        elif kind == "qbittorrent":
            self._qbittorrent(torrent, src_dir, transport, log)
        else:
            raise SystemExit(f"unknown seeder {kind}")
        time.sleep(1)

    def _wait_log(self, needle, timeout=120):
        deadline = time.time() + timeout
        path = os.path.join(self.work, "seed.log")
        while time.time() < deadline:
            if needle in open(path, errors="replace").read():
                return
            if self.proc.poll() is not None:
                raise SystemExit(open(path).read())
            time.sleep(0.1)
        raise SystemExit(f"seeder did not say {needle!r}")

    def _transmission(self, torrent, src_dir, transport, log):
        conf = os.path.join(self.work, "tr-conf")
        os.makedirs(conf, exist_ok=True)
        rpc = free_port()
        settings = {
            "peer-port": self.port, "peer-port-random-on-start": False,
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
            "port-forwarding-enabled": False, "utp-enabled": transport != "tcp",
            "encryption": 0, "rpc-port": rpc, "rpc-whitelist": "127.0.0.1",
            "rpc-authentication-required": False, "speed-limit-up-enabled": False,
            "download-dir": src_dir, "bind-address-ipv4": "127.0.0.1",
            "peer-limit-global": 500, "peer-limit-per-torrent": 100,
            "message-level": 1,
        }
        with open(os.path.join(conf, "settings.json"), "w") as f:
            json.dump(settings, f)
        self.proc = subprocess.Popen(["transmission-daemon", "-f", "-g", conf], stdout=log,
                                     stderr=log)
        wait_port(rpc)
        remote = ["transmission-remote", f"127.0.0.1:{rpc}"]
        subprocess.run(remote + ["-a", torrent, "-w", src_dir], check=True,
                       stdout=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline:
            out = subprocess.run(remote + ["-t", "all", "-i"], capture_output=True,
                                 text=True).stdout
            if "State: Seeding" in out or "State: Idle" in out and "Percent Done: 100%" in out:
                wait_port(self.port)
                return
            time.sleep(0.5)
        raise SystemExit("transmission did not start seeding")

    def _qbittorrent(self, torrent, src_dir, transport, log):
        profile = os.path.join(self.work, "qbt")
        conf_dir = os.path.join(profile, "qBittorrent", "config")
        os.makedirs(conf_dir, exist_ok=True)
        web = free_port()
        proto = {"tcp": "TCP", "utp": "UTP", "both": "Both"}[transport]
        with open(os.path.join(conf_dir, "qBittorrent.conf"), "w") as f:
            f.write(f"""[LegalNotice]
Accepted=true

[BitTorrent]
Session\\Port={self.port}
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\Encryption=0
Session\\BTProtocol={proto}
Session\\QueueingSystemEnabled=false
Session\\AnonymousModeEnabled=false

[Preferences]
WebUI\\Port={web}
WebUI\\Address=127.0.0.1
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
Connection\\UPnP=false
""")
        self.proc = subprocess.Popen(["qbittorrent-nox", f"--profile={profile}"], stdout=log,
                                     stderr=log)
        wait_port(web)
        boundary = "burrowbench"
        body = b""
        for name, value in (("savepath", src_dir), ("skip_checking", "true"),
                            ("paused", "false")):
            body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                     f"{value}\r\n").encode()
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"torrents\"; "
                 f"filename=\"t.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
                 ).encode() + open(torrent, "rb").read() + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{web}/api/v2/torrents/add", data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        urllib.request.urlopen(req, timeout=30).read()
        deadline = time.time() + 120
        while time.time() < deadline:
            info = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{web}/api/v2/torrents/info", timeout=10).read())
            if info and info[0]["state"] in ("uploading", "stalledUP", "forcedUP"):
                wait_port(self.port)
                return
            time.sleep(0.5)
        raise SystemExit(f"qbittorrent did not start seeding: {info}")

    def cpu(self):
        return cpu_of(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


DOWNLOADS = [0]


def next_address():
    """A loopback address of its own for each download: transmission refuses connections
    from an address it has seen finish the torrent, and every download must start alike."""
    DOWNLOADS[0] += 1
    n = DOWNLOADS[0]
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def run_client(client, work, torrent, port, transport, src_file):
    out = os.path.join(work, "out-" + client)
    me = next_address()
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    if client.startswith("burrow"):
        state = os.path.join(work, "state")
        shutil.rmtree(state, ignore_errors=True)
        cmd = [BURROW, "download", torrent, "-o", out, "--peer", f"127.0.0.1:{port}",
               "--port", "0", "--listen", me, "--state-dir", state,
               "--transport", transport]
        if client == "burrow-pagecache":
            cmd.append("--no-direct-io")
    else:
        cmd = [PY, LT, "--mode", "download", "--torrent", torrent, "--save", out,
               "--peer", f"127.0.0.1:{port}", "--timeout", "600", "--transport", transport,
               "--listen", f"{me}:0"]
    subprocess.run(["sync"])
    r = subprocess.run([PY, MEASURE, client, "--"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{client} failed:\n{r.stdout}\n{r.stderr}")
    m = json.loads(r.stdout.strip().splitlines()[-1])
    got = os.path.join(out, os.path.basename(src_file))
    if not filecmp.cmp(src_file, got, shallow=False):
        raise SystemExit(f"{client}: downloaded bytes differ")
    shutil.rmtree(out, ignore_errors=True)
    return m


def quantile(xs, q):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    at = q * (len(xs) - 1)
    lo = int(at)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (at - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seeder", default="libtorrent",
                    choices=["libtorrent", "libtorrent-hp", "transmission", "qbittorrent",
                             "burrow"])
    ap.add_argument("--transport", default="tcp", choices=["tcp", "utp"])
    ap.add_argument("--clients", default="burrow,burrow-pagecache,libtorrent")
    ap.add_argument("--work", help="folder for data and downloads (default: a new temp dir)")
    ap.add_argument("--create-args", default="",
                    help="extra arguments for `burrow create` (for example --v2-only)")
    args = ap.parse_args()
    clients = args.clients.split(",")

    work = args.work or tempfile.mkdtemp(prefix="burrow-bench-")
    src_dir = os.path.join(work, "src")
    os.makedirs(src_dir, exist_ok=True)
    src_file = os.path.join(src_dir, "data.bin")
    make_data(src_file, args.size_mib)
    torrent = os.path.join(work, "data.torrent")
    subprocess.run([BURROW, "create", src_file, "-o", torrent, "--piece-length", "1048576"]
                   + args.create_args.split(), check=True, stdout=subprocess.DEVNULL)

    seeder = Seeder(args.seeder, work, torrent, src_dir, args.transport)
    print(f"# {args.size_mib} MiB, seeder {args.seeder}, {args.transport}, "
          f"{args.rounds} rounds, load before start {os.getloadavg()[0]:.2f}", flush=True)
    results = {c: [] for c in clients}
    seeder_cpu = {c: [] for c in clients}
    try:
        # One unmeasured round: on a fresh virtual machine the first writes into page-cache
        # pages never touched since boot cost several times more, whoever makes them.
        for c in clients:
            run_client(c, work, torrent, seeder.port, args.transport, src_file)
        for rnd in range(1, args.rounds + 1):
            for c in clients:
                before = seeder.cpu()
                m = run_client(c, work, torrent, seeder.port, args.transport, src_file)
                m["seeder_cpu_s"] = round(seeder.cpu() - before, 2)
                m["round"] = rnd
                m["load"] = round(os.getloadavg()[0], 2)
                results[c].append(m)
                seeder_cpu[c].append(m["seeder_cpu_s"])
                print(json.dumps(m), flush=True)
    finally:
        seeder.stop()

    print()
    print("| client | wall s median (p10–p90) | CPU s median (p10–p90) | peak RSS MiB median "
          "(p10–p90) | seeder CPU s median |")
    print("| --- | --- | --- | --- | --- |")
    for c in clients:
        cols = []
        for key in ("wall_s", "cpu_s", "rss_mib"):
            xs = [m[key] for m in results[c]]
            cols.append(f"{quantile(xs, .5):.2f} ({quantile(xs, .1):.2f}–{quantile(xs, .9):.2f})")
        print(f"| {c} | " + " | ".join(cols) + f" | {statistics.median(seeder_cpu[c]):.2f} |")
    print()
    for c in clients:
        print(f"{c} wall, every round: " + ", ".join(f"{m['wall_s']:.2f}" for m in results[c]))
    if "libtorrent" in results:
        lt_wall = [m["wall_s"] for m in results["libtorrent"]]
        lt_cpu = [m["cpu_s"] for m in results["libtorrent"]]
        for c in clients:
            if c == "libtorrent":
                continue
            wr = [a["wall_s"] / b for a, b in zip(results[c], lt_wall)]
            cr = [a["cpu_s"] / b for a, b in zip(results[c], lt_cpu)]
            p90 = quantile([m["wall_s"] for m in results[c]], .9)
            print(f"{c}/libtorrent per round: wall median {quantile(wr, .5):.2f} "
                  f"(p10 {quantile(wr, .1):.2f}, p90 {quantile(wr, .9):.2f}), CPU median "
                  f"{quantile(cr, .5):.2f}; {c} p90 wall / libtorrent median wall "
                  f"{p90 / statistics.median(lt_wall):.2f}")
    if "burrow" in results and "burrow-pagecache" in results:
        pc = [a["wall_s"] / b["wall_s"] for a, b in zip(results["burrow-pagecache"],
                                                        results["burrow"])]
        print(f"burrow-pagecache/burrow wall per round: median {quantile(pc, .5):.2f} "
              f"(p10 {quantile(pc, .1):.2f}, p90 {quantile(pc, .9):.2f})")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
