#!/usr/bin/env bash
# Checks cross/Dockerfile without a container engine: runs its RUN step in a debootstrapped
# Debian bookworm chroot for one board architecture, then cross-compiles campeer there with
# the host's Rust toolchain bind-mounted (as cross mounts it) and a fresh target directory.
# Needs root, debootstrap, and the Rust target installed on the host.
#   cross/check-recipe.sh arm64     # or armhf
set -euo pipefail
cd "$(dirname "$0")/.."
project=$PWD
case "${1:-arm64}" in
  arm64) deb_arch=arm64 triple=aarch64-linux-gnu target=aarch64-unknown-linux-gnu ;;
  armhf) deb_arch=armhf triple=arm-linux-gnueabihf target=armv7-unknown-linux-gnueabihf ;;
  *) echo "usage: $0 arm64|armhf" >&2; exit 2 ;;
esac
root=$(mktemp -d /tmp/campeer-recipe.XXXXXX)
mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
bind() { mkdir -p "$root$2"; mount --bind "$1" "$root$2"; mounts+=("$root$2"); }

debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
cp /etc/resolv.conf "$root/etc/resolv.conf"
bind /proc /proc
bind /dev /dev
# The Dockerfile's RUN step, with its build arguments filled in.
step=$(python3 - "$project/cross/Dockerfile" <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
print(re.search(r"^RUN (.*)$", text, re.M).group(1))
PY
)
step=${step//\$DEB_ARCH/$deb_arch}
step=${step//\$GNU_TRIPLE/$triple}
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive /bin/sh -c "$step"
bind "$HOME/.rustup" /root/.rustup
bind "$HOME/.cargo" /root/.cargo
bind "$project" /work
chroot "$root" /usr/bin/env HOME=/root PATH=/root/.cargo/bin:/usr/bin:/bin \
  CARGO_TARGET_DIR=/tmp/target /bin/sh -c "cd /work && cargo build --release --target $target"
cp "$root/tmp/target/$target/release/campeer" "target/campeer-$deb_arch-from-recipe"
echo "check-recipe: built target/campeer-$deb_arch-from-recipe in the $deb_arch image recipe"
