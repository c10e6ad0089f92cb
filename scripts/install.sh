#!/usr/bin/env bash
# Builds and installs the `burrow` command on a Debian/Ubuntu machine with Rust installed:
# installs the one system library it links (SQLite, for the daemon's database), then
# `cargo install`s it into ~/.cargo/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg-query -W -f='${Status}' libsqlite3-dev 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libsqlite3-dev pkg-config
fi
cargo install --locked --path . "$@"
echo "installed: $(command -v burrow || echo ~/.cargo/bin/burrow)"
