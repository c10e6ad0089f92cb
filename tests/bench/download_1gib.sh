#!/usr/bin/env bash
# End-to-end download benchmark on loopback: a 1 GiB single-file torrent with 1 MiB pieces,
# seeded by libtorrent 2.0 (TCP only, no rate limits). burrow and a libtorrent downloader each
# fetch it into an empty folder; wall time, CPU time and peak RSS are printed for both.
# Usage: tests/bench/download_1gib.sh [SIZE_MIB]   (needs python3-libtorrent; builds release)
# TRANSPORT=utp runs the same over µTP only (seeder and both downloaders).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB="${1:-1024}"
TRANSPORT="${TRANSPORT:-tcp}"
cargo build --release --quiet
BURROW="$PWD/target/release/burrow"
LT="$PWD/tests/support/lt_peer.py"
MEASURE="$PWD/tests/bench/measure.py"
W="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT

mkdir -p "$W/src"
python3 -c "
import os, sys
size = $SIZE_MIB * 1024 * 1024
with open('$W/src/data.bin', 'wb') as f:
    block = os.urandom(1 << 20)
    for i in range(size >> 20):
        f.write(bytes([i & 255]) + block[1:])
"
"$BURROW" create "$W/src/data.bin" -o "$W/data.torrent" --piece-length 1048576 >/dev/null

/usr/bin/python3 "$LT" --mode seed --torrent "$W/data.torrent" --save "$W/src" --listen 127.0.0.1:0 --timeout 600 \
  --transport "$TRANSPORT" > "$W/seed.log" 2>&1 &
for _ in $(seq 100); do grep -q listening "$W/seed.log" && break; sleep 0.1; done
SEED_PORT=$(grep -m1 listening "$W/seed.log" | sed 's/.*"port": \([0-9]*\).*/\1/')
sleep 1  # let the seed finish loading its pieces

run_burrow() {
  rm -rf "$W/out-burrow" "$W/state"; mkdir -p "$W/out-burrow"
  /usr/bin/python3 "$MEASURE" burrow -- "$BURROW" download "$W/data.torrent" -o "$W/out-burrow" \
    --peer "127.0.0.1:$SEED_PORT" --port 0 --listen 127.0.0.1 --state-dir "$W/state" --transport "$TRANSPORT"
  cmp "$W/src/data.bin" "$W/out-burrow/data.bin"
}
run_lt() {
  rm -rf "$W/out-lt"; mkdir -p "$W/out-lt"
  /usr/bin/python3 "$MEASURE" libtorrent -- /usr/bin/python3 "$LT" --mode download --torrent "$W/data.torrent" \
    --save "$W/out-lt" --peer "127.0.0.1:$SEED_PORT" --timeout 300 --transport "$TRANSPORT"
  cmp "$W/src/data.bin" "$W/out-lt/data.bin"
}
# One unmeasured round first: on a fresh virtual machine, the first write into page-cache
# pages never touched since boot costs several times more than later ones, whichever client
# does it. Then alternate the two, three measured rounds each.
run_burrow >/dev/null; run_lt >/dev/null
for round in 1 2 3; do
  sync; run_burrow; sync; run_lt
done
