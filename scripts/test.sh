#!/usr/bin/env bash
# Installs what burrow's tests need on a fresh Debian (bookworm) machine and runs every test:
# unit tests, interop tests against libtorrent, aria2 and transmission, and the network-namespace
# NAT lab (which needs root). Run as root, or with sudo available for the apt-get step.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3-libtorrent   # libtorrent 2.0 peers for interop tests
  aria2                # aria2c downloads from burrow
  transmission-cli     # transmission-remote against burrow's RPC
  transmission-daemon
  iproute2 nftables procps miniupnpd-nftables   # the NAT lab
  chromium             # the daemon's web page, in headless Chromium
  libsqlite3-dev pkg-config ca-certificates      # build: the daemon's database
  openssl              # certificates for the HTTPS tracker tests
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# Tests that need root print "SKIPPED (needs root)" and record themselves here.
export BURROW_SKIP_LOG="${BURROW_SKIP_LOG:-$(mktemp)}"
: > "$BURROW_SKIP_LOG"
LOG="$(mktemp)"
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
passed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($i ~ /^passed;?$/) s += $(i-1)} END {print s + 0}' "$LOG")
failed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($i ~ /^failed;?$/) s += $(i-1)} END {print s + 0}' "$LOG")
skipped=$(grep -c . "$BURROW_SKIP_LOG" || true)
rm -f "$LOG"
echo "summary: $passed passed, $failed failed, $skipped skipped"
[ "$status" -eq 0 ] || exit "$status"
if [ -s "$BURROW_SKIP_LOG" ]; then
  echo "Some tests were skipped:" >&2
  cat "$BURROW_SKIP_LOG" >&2
  if [ "${BURROW_ALLOW_SKIP:-0}" != 1 ]; then
    exit 1
  fi
fi
