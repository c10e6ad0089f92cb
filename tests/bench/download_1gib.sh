#!/usr/bin/env bash
# End-to-end download benchmark on loopback: a 1 GiB single-file torrent with 1 MiB pieces
# seeded by one client; burrow (direct I/O), burrow with --no-direct-io and libtorrent's
# downloader fetch it in turn for ten rounds. Prints every round, then median / p10 / p90 of
# wall, CPU and peak RSS per client and burrow's ratios to libtorrent.
# Usage: tests/bench/download_1gib.sh [options of tests/bench/download_bench.py]
#   SEEDER=libtorrent|libtorrent-hp|transmission|qbittorrent|burrow (default libtorrent)
#   TRANSPORT=tcp|utp (default tcp); ROUNDS=N (default 10); SIZE_MIB=N (default 1024)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
exec /usr/bin/python3 tests/bench/download_bench.py --seeder "${SEEDER:-libtorrent}" \
  --transport "${TRANSPORT:-tcp}" --rounds "${ROUNDS:-10}" --size-mib "${SIZE_MIB:-1024}" "$@"
