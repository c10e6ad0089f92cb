#!/usr/bin/python3
"""A libtorrent peer for burrow's interoperability tests.

Seeds or downloads one torrent on loopback and prints one JSON object per line:
{"event": "listening", "port": N}, periodic {"event": "status", ...} and, when a download
completes, {"event": "finished"} (then exits 0). Only loopback is used: no DHT, LSD, UPnP or
NAT-PMP.
"""
import argparse
import json
import sys
import time

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["seed", "download", "node"], required=True)
    ap.add_argument("--torrent")
    ap.add_argument("--magnet")
    ap.add_argument("--save", default=".")
    ap.add_argument("--dht-node", action="append", default=[],
                    help="enable the DHT, bootstrapped from this HOST:PORT only (repeatable)")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--transport", choices=["tcp", "utp", "both"], default="tcp")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--upload-limit", type=int, default=0)
    ap.add_argument("--enc", choices=["forced", "enabled", "disabled"],
                    help="MSE/PE policy for both directions (default: plain out, either in)")
    ap.add_argument("--high-performance", action="store_true",
                    help="start from libtorrent's high_performance_seed settings")
    ap.add_argument("--upload-mode", action="store_true",
                    help="join the swarm without requesting anything (libtorrent's upload mode)")
    args = ap.parse_args()

    utp = args.transport in ("utp", "both")
    tcp = args.transport in ("tcp", "both")
    settings = {
        "listen_interfaces": args.listen,
        "enable_dht": bool(args.dht_node) or args.mode == "node",
        "dht_bootstrap_nodes": "",
        # Every test peer shares 127.0.0.1.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_block_ratelimit": 10000,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": utp,
        "enable_incoming_utp": utp,
        "enable_outgoing_tcp": tcp,
        "enable_incoming_tcp": tcp,
        "out_enc_policy": lt.enc_policy.disabled,
        "in_enc_policy": lt.enc_policy.enabled,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
        "upload_rate_limit": args.upload_limit,
        "user_agent": "lt-test",
    }
    if args.high_performance:
        tuned = lt.high_performance_seed()
        tuned.update(settings)
        settings = tuned
    if args.enc:
        settings["out_enc_policy"] = getattr(lt.enc_policy, args.enc)
        settings["in_enc_policy"] = getattr(lt.enc_policy, args.enc)
    ses = lt.session(settings)
    for n in args.dht_node:
        host, port = n.rsplit(":", 1)
        ses.add_dht_node((host.strip("[]"), int(port)))
    if args.mode == "node":
        port = 0
        while port == 0:
            port = ses.listen_port()
            time.sleep(0.05)
        print(json.dumps({"event": "listening", "port": port}), flush=True)
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            ses.pop_alerts()
            time.sleep(0.2)
        return 0
    if args.upload_limit:
        # Loopback peers are exempt from rate limits by default; put every address in the
        # global class so the limit applies to the test's peers too.
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << ses.global_peer_class_id)
        f.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << ses.global_peer_class_id)
        ses.set_peer_class_filter(f)
    params = lt.add_torrent_params()
    if args.torrent:
        params.ti = lt.torrent_info(args.torrent)
    else:
        params = lt.parse_magnet_uri(args.magnet)
    params.save_path = args.save
    if args.mode == "seed":
        params.flags |= lt.torrent_flags.seed_mode
    if args.upload_mode:
        params.flags |= lt.torrent_flags.upload_mode
    # Start at once: an auto-managed torrent waits for the queue and turns peers away meanwhile.
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(params)
    for p in args.peer:
        host, port = p.rsplit(":", 1)
        h.connect_peer((host.strip("[]"), int(port)))

    deadline = time.time() + args.timeout
    port = 0
    while port == 0 and time.time() < deadline:
        port = ses.listen_port()
        time.sleep(0.05)
    # Report readiness only once the torrent accepts connections (not while it loads).
    while time.time() < deadline and str(h.status().state) not in ("seeding", "downloading", "finished", "downloading_metadata"):
        time.sleep(0.05)
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    last = 0
    while time.time() < deadline:
        s = h.status()
        if time.time() - last > 1:
            last = time.time()
            print(json.dumps({"event": "status", "state": str(s.state), "progress": s.progress,
                              "peers": s.num_peers, "down": s.download_rate, "up": s.upload_rate,
                              "total_upload": s.total_payload_upload}), flush=True)
        if args.mode == "download" and s.is_seeding:
            print(json.dumps({"event": "finished", "total_download": s.total_payload_download}), flush=True)
            return 0
        for a in ses.pop_alerts():
            if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                print(json.dumps({"event": "error", "message": a.message()}), flush=True)
        # A downloader notices completion within 20 ms, so timing it is fair.
        time.sleep(0.02 if args.mode == "download" else 0.1)
    print(json.dumps({"event": "timeout"}), flush=True)
    return 2 if args.mode == "download" else 0


if __name__ == "__main__":
    sys.exit(main())
