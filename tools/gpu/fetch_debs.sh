#!/usr/bin/env bash
# Run on a Debian 12 (bookworm) machine with apt access, from the repository
# root. Downloads the Debian packages that the GPU machine lacks for building
# fedfm (it has LibTorch 2.x with CUDA, protobuf, OpenSSL and gtest, but no
# Abseil, SQLite headers, toml++, nlohmann-json, spdlog/fmt, CLI11, Asio,
# zlib headers or dygraphs) into .carry/debs/ (ignored by git), and writes a
# source snapshot of the committed tree, HEAD, to .carry/src.tar.gz, so that
# the build there sees a consistent tree even while the checkout is being
# edited. tools/gpu/build.sh unpacks both on the GPU machine.
#
# Usage: tools/gpu/fetch_debs.sh [--no-snapshot | --snapshot-only]
set -euo pipefail

root=$(git rev-parse --show-toplevel)
cd "$root"
mode=${1:-}
mkdir -p .carry
snapshot() {
  git archive --format=tar HEAD | gzip -1 > .carry/src.tar.gz
  echo "fetch_debs: snapshot of $(git rev-parse --short HEAD) in .carry/src.tar.gz"
}
if [[ "$mode" == "--snapshot-only" ]]; then
  snapshot
  exit 0
fi
out=.carry/debs
mkdir -p "$out"

# Runtime libraries come with their -dev packages where the -dev package's
# .so symlink points at them (absl, sqlite, spdlog, fmt, zlib).
packages=(
  libabsl-dev libabsl20220623
  libsqlite3-dev libsqlite3-0
  libtomlplusplus-dev libtomlplusplus3
  nlohmann-json3-dev
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  libcli11-dev
  libasio-dev
  zlib1g-dev zlib1g
  libjs-dygraphs
  libgtest-dev libgmock-dev googletest
)

if ! apt-cache show libabsl20220623 >/dev/null 2>&1; then
  echo "fetch_debs: apt lists are missing or not Debian 12's; run 'apt-get update' first" >&2
  exit 1
fi

# apt-get download runs as the unprivileged _apt user where it can; a
# temporary directory it may write to avoids the sandbox warning.
tmp=$(mktemp -d)
chmod 777 "$tmp"
(cd "$tmp" && apt-get download -q "${packages[@]}")
rm -f "$out"/*.deb
mv "$tmp"/*.deb "$out"/
rmdir "$tmp"

if [[ "$mode" != "--no-snapshot" ]]; then snapshot; fi
du -ch "$out"/*.deb | tail -1
ls "$out"
