#!/usr/bin/env bash
# `make test-pi`: builds the 32-bit Raspberry Pi binary (armv7, Pi 2/3/4/Zero 2 W with a 32-bit
# OS, with ALSA) and runs the Rust integration tests against it under qemu-arm user emulation:
# the test harness runs here, every `earshot` it starts is the ARM binary (EARSHOT_TEST_BINARY).
# That catches what only a 32-bit ARM build gets wrong (C long is 32 bits, so ALSA's frame
# counts are; atomics; alignment) in the same behaviour the x86 build is held to.
#
# Installs, when missing (as root or through sudo): qemu-user, gcc-arm-linux-gnueabihf and
# Debian's armhf libasound2-dev (multiarch), and the armv7 Rust target through rustup.
#
# Left out, each for a reason of the emulation, not of the binary:
#   an_unplugged_device... and a_capture_held_up...: need the PulseAudio ALSA plugin for
#     armhf, which Debian's libasound2-plugins:armhf cannot be installed beside the amd64
#     desktop packages for;
#   thousands_of_broken_requests...: checks RSS, and the process measured is qemu (its
#     translation cache is hundreds of MB), not earshot.
# The Pi Zero (ARMv6) build cannot be run this way: Debian's armhf libraries are ARMv7.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=armv7-unknown-linux-gnueabihf
TRIPLET=arm-linux-gnueabihf

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
need=()
command -v qemu-arm >/dev/null || need+=(qemu-user)
command -v $TRIPLET-gcc >/dev/null || need+=(gcc-$TRIPLET)
dpkg-query -W -f='${Status}' libasound2-dev:armhf 2>/dev/null | grep -q "install ok installed" ||
  need+=(libasound2-dev:armhf)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-pi: installing ${need[*]}"
  dpkg --print-foreign-architectures | grep -qx armhf || $sudo dpkg --add-architecture armhf
  # A mirror mid-sync can fail one index (seen: armhf security); the install says if it matters.
  $sudo apt-get update -qq || echo "test-pi: apt-get update reported errors; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx $TARGET || rustup target add $TARGET

echo "test-pi: building the $TARGET binary with ALSA"
# Only for this build: the tests below are built for this machine, against its own libasound.
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=$TRIPLET-gcc \
  CC_armv7_unknown_linux_gnueabihf=$TRIPLET-gcc \
  PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_LIBDIR=/usr/lib/$TRIPLET/pkgconfig:/usr/share/pkgconfig \
  cargo build --release --features alsa --target $TARGET
binary=$PWD/target/$TARGET/release/earshot

# What the tests start instead of the x86 binary.
work=$PWD/target/$TARGET/test-pi
mkdir -p "$work"
printf '#!/bin/sh\nexec qemu-arm "%s" "$@"\n' "$binary" >"$work/earshot"
chmod +x "$work/earshot"
echo "test-pi: $("$work/earshot" --version) runs under $(qemu-arm --version | head -1)"
# The tests that need ALSA devices write their own configuration; the rest (listen --play on
# the null device) get one without the desktop's PulseAudio hooks, whose armhf modules are
# missing.
printf 'pcm.null {\n    type null\n}\n' >"$work/asound.conf"

EARSHOT_TEST_BINARY=$work/earshot ALSA_CONFIG_PATH=$work/asound.conf \
  cargo test --features alsa --tests -- \
  --skip an_unplugged_device_is_reported_down_and_capture_resumes_by_itself \
  --skip a_capture_held_up_for_seconds_catches_up_at_once_instead_of_staying_behind \
  --skip thousands_of_broken_requests_and_frames_leave_twenty_listeners_gap_free
