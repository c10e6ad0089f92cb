"""libtorrent (python3-libtorrent) peers that speak only µTP, for burrow's socket-layer tests.

Usage: lt_utp_peer.py WORKDIR PORT SIZE
Writes SIZE random bytes to WORKDIR/payload.bin, makes a v1 torrent of it (64 KiB pieces),
seeds it on 127.0.0.1:PORT and [::1]:PORT with TCP disabled and encryption off, prints one JSON
line {"info_hash": hex, "port": n, "piece_length": n} once seeding, then reads commands:
  connect HOST PORT  -> the seed dials HOST:PORT; prints "ok"
  peers              -> JSON list of the seed's peers: {"ip", "port", "utp"}
  leech HOST PORT    -> starts a second session without the data, adds the torrent and
                        dials HOST:PORT for it; prints "ok"
  leech_status       -> JSON {"progress": 0..1, "seeding": bool, "rate": bytes/s}
  quit
Set LT_ALERTS=1 to log libtorrent's alerts to stderr.
"""
import json
import os
import sys
import threading
import time

import libtorrent as lt

# peer_info::utp_socket (bit 17 of peer_info::flags in libtorrent 2.0); the Python binding
# does not export the constant.
UTP_SOCKET = 1 << 17


def settings(listen):
    return {
        "listen_interfaces": listen,
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "out_enc_policy": lt.enc_policy.disabled,
        "in_enc_policy": lt.enc_policy.enabled,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.all_categories,
    }


def log_alerts(ses, name):
    while True:
        ses.wait_for_alert(1000)
        for a in ses.pop_alerts():
            print(f"lt {name}: {a.what()}: {a.message()}", file=sys.stderr, flush=True)


def main():
    workdir, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = os.path.join(workdir, "payload.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(size))

    fs = lt.file_storage()
    lt.add_files(fs, data)
    # v1 only: for a hybrid torrent libtorrent 2.0 may open outgoing connections with the
    # truncated v2 info-hash, and these tests speak v1.
    ct = lt.create_torrent(fs, 65536, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, workdir)
    info = lt.torrent_info(ct.generate())

    seed = lt.session(settings(f"127.0.0.1:{port},[::1]:{port}"))
    handle = seed.add_torrent({"ti": info, "save_path": workdir})
    deadline = time.time() + 30
    while handle.status().state != lt.torrent_status.seeding:
        if time.time() > deadline:
            print(json.dumps({"error": "torrent never became a seed"}), flush=True)
            return 1
        time.sleep(0.05)
    if os.environ.get("LT_ALERTS"):
        threading.Thread(target=log_alerts, args=(seed, "seed"), daemon=True).start()

    print(json.dumps({"info_hash": str(info.info_hash()), "port": seed.listen_port(),
                      "piece_length": info.piece_length()}), flush=True)
    leech = leech_handle = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "connect":
            handle.connect_peer((words[1], int(words[2])))
            print("ok", flush=True)
        elif words[0] == "peers":
            peers = [
                {"ip": p.ip[0], "port": p.ip[1], "utp": bool(p.flags & UTP_SOCKET)}
                for p in handle.get_peer_info()
            ]
            print(json.dumps(peers), flush=True)
        elif words[0] == "leech":
            leech = lt.session(settings("127.0.0.1:0"))
            if os.environ.get("LT_ALERTS"):
                threading.Thread(target=log_alerts, args=(leech, "leech"), daemon=True).start()
            leech_dir = os.path.join(workdir, "leech")
            os.makedirs(leech_dir, exist_ok=True)
            leech_handle = leech.add_torrent({"ti": info, "save_path": leech_dir})
            leech_handle.connect_peer((words[1], int(words[2])))
            print("ok", flush=True)
        elif words[0] == "leech_status":
            st = leech_handle.status()
            print(json.dumps({"progress": st.progress,
                              "seeding": st.state == lt.torrent_status.seeding,
                              "rate": st.download_payload_rate}), flush=True)
        elif words[0] == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
