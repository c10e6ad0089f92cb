#!/usr/bin/env bash
# Builds and installs the `burrow` command on a Debian/Ubuntu machine with Rust installed:
# installs the one system library it links (SQLite, for the daemon's database) and the trusted
# certificates HTTPS trackers are checked against, then `cargo install`s it into ~/.cargo/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for p in libsqlite3-dev pkg-config ca-certificates; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo install --locked --path . "$@"
echo "installed: $(command -v burrow || echo ~/.cargo/bin/burrow)"
