#!/usr/bin/env python3
"""A TLS front for a plain TCP service, for tests: accepts TLS on 127.0.0.1 and relays each
connection's bytes to and from --backend. Prints JSON lines: {"event": "listening", "port": N}
once, then {"event": "tls_connection"} for every completed handshake. Closes connections
without a TLS close_notify, as many HTTPS servers do."""

import argparse
import json
import socket
import ssl
import sys
import threading


def say(**kw):
    print(json.dumps(kw), flush=True)


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, ctx, backend):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as e:
        say(event="handshake_failed", error=str(e))
        conn.close()
        return
    say(event="tls_connection")
    host, port = backend.rsplit(":", 1)
    plain = socket.create_connection((host, int(port)))
    t = threading.Thread(target=pipe, args=(plain, tls), daemon=True)
    t.start()
    pipe(tls, plain)
    t.join(timeout=10)
    plain.close()
    tls.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--backend", required=True)
    args = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    say(event="listening", port=listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, ctx, args.backend), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
