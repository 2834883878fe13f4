#!/usr/bin/env bash
# Builds the two cross images that Cross.toml names (needs Docker or Podman). Run once, then:
#   cross build --release --target aarch64-unknown-linux-gnu
#   cross build --release --target armv7-unknown-linux-gnueabihf
set -euo pipefail
cd "$(dirname "$0")"
engine=${CROSS_CONTAINER_ENGINE:-docker}
"$engine" build -t campeer-cross:aarch64-bookworm \
    --build-arg DEB_ARCH=arm64 --build-arg GNU_TRIPLE=aarch64-linux-gnu \
    --build-arg RUST_TARGET=aarch64-unknown-linux-gnu .
"$engine" build -t campeer-cross:armv7-bookworm \
    --build-arg DEB_ARCH=armhf --build-arg GNU_TRIPLE=arm-linux-gnueabihf \
    --build-arg RUST_TARGET=armv7-unknown-linux-gnueabihf .
