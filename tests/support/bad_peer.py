#!/usr/bin/python3
"""A lying BitTorrent peer for burrow's smart-ban tests.

Dials burrow from its own loopback address (so that a ban of it cannot touch the honest
peers on 127.0.0.1), speaks the plain peer wire protocol (BEP 3), says it has every piece of
a single-file torrent and serves requests from the real data, but corrupts a fraction of
the blocks it sends. In withholding mode it also never answers a request for the last block
of a piece, so that an honest peer has to complete the pieces it poisoned.

Prints one JSON object per line: {"event": "connected"} when the handshake is done and, when
the connection ends, {"event": "closed", "served": N, "corrupted": M, "withheld": W}.
Reconnects (and reports each attempt) until --timeout, so a test can see a ban hold.
"""
import argparse
import hashlib
import json
import socket
import struct
import time


def bdecode(b, i=0):
    """Decodes one bencoded value at b[i:]; returns (value, end). Dict keys stay bytes."""
    c = b[i:i + 1]
    if c == b"i":
        e = b.index(b"e", i)
        return int(b[i + 1:e]), e + 1
    if c == b"l":
        out, i = [], i + 1
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i)
            start = i
            v, i = bdecode(b, i)
            out[k] = v
            out[k + b".raw"] = b[start:i]
        return out, i + 1
    colon = b.index(b":", i)
    n = int(b[i:colon])
    return b[colon + 1:colon + 1 + n], colon + 1 + n


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def serve(s, info_hash, data, piece_len, pieces, args, stats):
    s.sendall(b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-XX0001-" + bytes(12))
    hs = read_exact(s, 68)
    if hs[28:48] != info_hash:
        raise ConnectionError("wrong torrent")
    print(json.dumps({"event": "connected"}), flush=True)
    bits = bytearray((pieces + 7) // 8)
    for p in range(pieces):
        bits[p // 8] |= 0x80 >> (p % 8)
    s.sendall(struct.pack(">IB", 1 + len(bits), 5) + bytes(bits))
    s.sendall(struct.pack(">IB", 1, 1))  # unchoke
    while True:
        (n,) = struct.unpack(">I", read_exact(s, 4))
        if n == 0:
            continue
        msg = read_exact(s, n)
        if msg[0] != 6:  # only requests matter
            continue
        index, begin, length = struct.unpack(">III", msg[1:13])
        start = index * piece_len + begin
        this_piece = min(piece_len, len(data) - index * piece_len)
        if args.withhold and begin + length >= this_piece:
            stats["withheld"] += 1
            continue
        block = bytearray(data[start:start + length])
        nth = start // 16384
        if nth % args.corrupt_every == 0:
            block[len(block) // 2] ^= 0xFF
            stats["corrupted"] += 1
        s.sendall(struct.pack(">IBII", 9 + len(block), 7, index, begin) + bytes(block))
        stats["served"] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--data", required=True, help="the torrent's one file")
    ap.add_argument("--connect", required=True, help="burrow's HOST:PORT")
    ap.add_argument("--bind", default="127.0.0.2")
    ap.add_argument("--corrupt-every", type=int, default=4,
                    help="corrupt one block in this many (by position in the torrent)")
    ap.add_argument("--withhold", action="store_true",
                    help="never send the last block of a piece")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()

    meta, _ = bdecode(open(args.torrent, "rb").read())
    info = meta[b"info"]
    info_hash = hashlib.sha1(meta[b"info.raw"]).digest()
    piece_len = info[b"piece length"]
    data = open(args.data, "rb").read()
    assert len(data) == info[b"length"], "single-file torrent expected"
    pieces = len(info[b"pieces"]) // 20
    host, port = args.connect.rsplit(":", 1)
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        stats = {"served": 0, "corrupted": 0, "withheld": 0}
        s = socket.socket()
        s.bind((args.bind, 0))
        s.settimeout(max(1.0, deadline - time.time()))
        try:
            s.connect((host, int(port)))
            serve(s, info_hash, data, piece_len, pieces, args, stats)
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            s.close()
        if stats["served"] or stats["withheld"]:
            print(json.dumps({"event": "closed", **stats}), flush=True)
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
