#!/usr/bin/python3
"""A small DHT made of libtorrent sessions on 127.0.0.1, driven over stdin/stdout.

Started by dht/tests/libtorrent_interop.rs. Every line on stdout is one JSON object; commands
arrive as JSON lines on stdin:

  {"cmd": "announce", "session": 0, "info_hash": "<hex>"}   (adds the torrent; libtorrent
      announces it to the DHT with the session's listen port)
  {"cmd": "find", "session": 3, "info_hash": "<hex>", "peer": "127.0.0.1:46002", "timeout": 30}
  {"cmd": "quit"}

With --isolated the sessions know only the --bootstrap node (not each other), so whatever they
end up knowing they learned through it; "ready" comes once every session's routing table holds
--min-nodes nodes (or after --wait seconds). With --router the --bootstrap node is given as
libtorrent's bootstrap router (`dht_bootstrap_nodes`, as the public routers are), which starts a
bootstrap search through it; otherwise it is added as a plain node, which libtorrent only pings.

Exit status 2 means python3-libtorrent is not installed.
"""

import argparse
import json
import sys
import tempfile
import time

try:
    import libtorrent as lt
except ImportError as e:
    print(json.dumps({"event": "error", "error": "python3-libtorrent missing: %s" % e}), flush=True)
    sys.exit(2)


def emit(obj):
    print(json.dumps(obj), flush=True)


def make_session(router=""):
    mask = (lt.alert.category_t.dht_notification
            | lt.alert.category_t.dht_operation_notification
            | lt.alert.category_t.error_notification)
    settings = {
        # An explicit loopback interface: with 0.0.0.0 libtorrent starts no DHT on loopback.
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": True,
        "dht_bootstrap_nodes": router,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # All nodes share 127.0.0.1.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_block_ratelimit": 10000,
        "alert_mask": mask,
    }
    return lt.session(settings)


def routing_nodes(ses, timeout=2.0):
    """Number of nodes in the session's DHT routing table (status().dht_nodes stays 0 in 2.0)."""
    ses.post_dht_stats()
    deadline = time.time() + timeout
    while time.time() < deadline:
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.dht_stats_alert):
                return sum(b["num_nodes"] for b in a.routing_table)
    return -1


def find(ses, info_hash, peer, timeout):
    want_host, want_port = peer.rsplit(":", 1)
    want = (want_host, int(want_port))
    seen = set()
    deadline = time.time() + timeout
    next_query = 0.0
    while time.time() < deadline:
        if time.time() >= next_query:
            ses.dht_get_peers(info_hash)
            next_query = time.time() + 3.0
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.dht_get_peers_reply_alert) and str(a.info_hash) == str(info_hash):
                for p in a.peers():
                    seen.add((p[0], p[1]))
        if want in seen:
            return True, sorted(seen)
    return False, sorted(seen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--bootstrap", required=True, help="host:port of the node under test")
    ap.add_argument("--isolated", action="store_true", help="sessions know only --bootstrap")
    ap.add_argument("--router", action="store_true", help="--bootstrap is a bootstrap router")
    ap.add_argument("--min-nodes", type=int, default=3)
    ap.add_argument("--wait", type=float, default=30)
    args = ap.parse_args()

    sessions = [make_session(args.bootstrap if args.router else "") for _ in range(args.sessions)]
    ports = [s.listen_port() for s in sessions]
    host, port = args.bootstrap.rsplit(":", 1)
    for i, s in enumerate(sessions):
        if not args.router:
            s.add_dht_node((host, int(port)))
        if args.isolated:
            continue
        for j, p in enumerate(ports):
            if i != j:
                s.add_dht_node(("127.0.0.1", p))

    # Wait until the sessions have formed a DHT among themselves and the node under test.
    deadline = time.time() + args.wait
    counts = []
    while time.time() < deadline:
        counts = [routing_nodes(s) for s in sessions]
        if min(counts) >= args.min_nodes:
            break
        time.sleep(0.5)
    emit({"event": "ready", "ports": ports, "routing_nodes": counts})

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        ses = sessions[cmd["session"]]
        ih = lt.sha1_hash(bytes.fromhex(cmd["info_hash"]))
        if cmd["cmd"] == "announce":
            # session.dht_announce needs a flags type the 2.0 bindings do not export; a torrent
            # added by info-hash is announced to the DHT by libtorrent itself.
            atp = lt.add_torrent_params()
            atp.info_hashes = lt.info_hash_t(ih)
            atp.save_path = tempfile.mkdtemp(prefix="lt-dht-")
            ses.add_torrent(atp)
            emit({"event": "announced", "port": ses.listen_port()})
        elif cmd["cmd"] == "find":
            ok, seen = find(ses, ih, cmd["peer"], cmd.get("timeout", 30))
            emit({"event": "found" if ok else "not_found", "peers": ["%s:%d" % p for p in seen]})
        else:
            emit({"event": "error", "error": "unknown command %r" % cmd["cmd"]})
    emit({"event": "bye", "routing_nodes": [routing_nodes(s) for s in sessions]})


if __name__ == "__main__":
    main()
