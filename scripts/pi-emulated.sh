#!/usr/bin/env bash
# `make test-pi-zero`, `make test-pi` and `make test-pi-aarch64`: builds a Raspberry Pi binary
# with ALSA and runs the Rust integration tests against it under qemu user emulation: the test
# harness runs here, every `earshot` it starts is the ARM binary (EARSHOT_TEST_BINARY).
#
#   scripts/pi-emulated.sh armv6     # Pi Zero, Zero W, 1: scripts/pi-zero.sh's static binary,
#                                    # run on qemu's ARM1176 (an ARMv7 instruction is SIGILL)
#   scripts/pi-emulated.sh armv7     # 32-bit: Pi 2/3/4/Zero 2 W with a 32-bit OS (the default)
#   scripts/pi-emulated.sh aarch64   # 64-bit: Pi 3/4/5/Zero 2 W with a 64-bit OS
#
# That catches what only an ARM build gets wrong (on armv7 C long is 32 bits, so ALSA's frame
# counts are; atomics; alignment; the ALSA bindings for that architecture) in the same
# behaviour the x86 build is held to. (qemu on x86 does not reproduce ARM's weaker memory
# ordering, so this is no test of that.)
#
# Installs, when missing (as root or through sudo): qemu-user; for armv7 and aarch64 the cross
# gcc, Debian's libasound2-dev for the target's architecture (multiarch) and the Rust target
# through rustup; for armv6 what scripts/pi-zero.sh needs (no Debian architecture).
#
# Left out, each for a reason of the emulation, not of the binary:
#   an_unplugged_device..., a_capture_held_up... and a_capture_overrun...: need the PulseAudio
#     or JACK ALSA plugin for the target's architecture, which Debian's libasound2-plugins
#     cannot be installed for beside the amd64 desktop packages (and which the static armv6
#     binary could not load: it has no dlopen);
#   thousands_of_broken_requests...: checks RSS, and the process measured is qemu (its
#     translation cache is hundreds of MB), not earshot;
#   tests/kernel_alsa.rs and tests/vm_console.rs (every test with "kernel" in its name) and
#     tests/wall_clock.rs (every test starting "a_wall_clock_"): they
#     boot an x86 virtual machine with this machine's binary, so they would only repeat what
#     `make test` ran.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-armv7}" in
  armv6) TARGET=arm-unknown-linux-gnueabi QEMU="qemu-arm -cpu arm1176" ;;
  armv7) TARGET=armv7-unknown-linux-gnueabihf TRIPLET=arm-linux-gnueabihf DEB_ARCH=armhf QEMU=qemu-arm ;;
  aarch64) TARGET=aarch64-unknown-linux-gnu TRIPLET=aarch64-linux-gnu DEB_ARCH=arm64 QEMU=qemu-aarch64 ;;
  *) echo "usage: $0 [armv6|armv7|aarch64]" >&2; exit 2 ;;
esac
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if [ "$TARGET" = arm-unknown-linux-gnueabi ]; then
  # Static, so it needs neither a Debian architecture nor a qemu sysroot.
  command -v qemu-arm >/dev/null || {
    echo "test-pi: installing qemu-user"
    $sudo apt-get update -qq || echo "test-pi: apt-get update reported errors; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
  }
  ./scripts/pi-zero.sh
  binary=$PWD/target/pi-zero/earshot
  work=$PWD/target/pi-zero/test-pi
  # The emulated CPU must refuse what a Pi Zero lacks, or this run proves nothing about ARMv6:
  # an ARMv7 instruction (movw) must die with SIGILL on it and run on a Cortex-A7.
  mkdir -p "$work"
  printf 'int main(void) { unsigned x; __asm__ volatile("movw %%0, #0x1234" : "=r"(x)); return x != 0x1234; }\n' \
    >"$work/armv7-probe.c"
  arm-linux-gnueabi-gcc -static -march=armv7-a -marm -o "$work/armv7-probe" "$work/armv7-probe.c"
  qemu-arm -cpu cortex-a7 "$work/armv7-probe" || { echo "test-pi: the ARMv7 probe fails on a Cortex-A7" >&2; exit 1; }
  rc=0
  (ulimit -c 0; $QEMU "$work/armv7-probe") 2>/dev/null || rc=$?
  if [ "$rc" -ne 132 ]; then
    echo "test-pi: '$QEMU' ran an ARMv7 instruction (exit $rc, not SIGILL): it is no ARMv6 check" >&2
    exit 1
  fi
  echo "test-pi: '$QEMU' refuses ARMv7 instructions (SIGILL), as a Pi Zero does"
else
  # Cargo's per-target variables: the target in capitals, with underscores.
  TARGET_ENV=$(tr 'a-z-' 'A-Z_' <<<"$TARGET")

  need=()
  command -v $QEMU >/dev/null || need+=(qemu-user)
  command -v $TRIPLET-gcc >/dev/null || need+=(gcc-$TRIPLET)
  # The C library headers for the cross gcc (ring, under rustls, compiles C): only a Recommends of
  # gcc-$TRIPLET, which --no-install-recommends leaves out.
  installed libc6-dev-$DEB_ARCH-cross || need+=(libc6-dev-$DEB_ARCH-cross)
  installed libasound2-dev:$DEB_ARCH || need+=(libasound2-dev:$DEB_ARCH)
  if [ ${#need[@]} -gt 0 ]; then
    echo "test-pi: installing ${need[*]}"
    dpkg --print-foreign-architectures | grep -qx $DEB_ARCH || $sudo dpkg --add-architecture $DEB_ARCH
    # A mirror mid-sync can fail one index (seen: armhf security); the install says if it matters.
    $sudo apt-get update -qq || echo "test-pi: apt-get update reported errors; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  rustup target list --installed | grep -qx $TARGET || rustup target add $TARGET

  echo "test-pi: building the $TARGET binary with ALSA"
  # Only for this build: the tests below are built for this machine, against its own libasound.
  env "CARGO_TARGET_${TARGET_ENV}_LINKER=$TRIPLET-gcc" "CC_${TARGET//-/_}=$TRIPLET-gcc" \
    PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_LIBDIR=/usr/lib/$TRIPLET/pkgconfig:/usr/share/pkgconfig \
    cargo build --release --features alsa --target $TARGET
  binary=$PWD/target/$TARGET/release/earshot
  work=$PWD/target/$TARGET/test-pi
fi

# What the tests start instead of the x86 binary.
mkdir -p "$work"
printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$QEMU" "$binary" >"$work/earshot"
chmod +x "$work/earshot"
echo "test-pi: $("$work/earshot" --version) runs under '$QEMU' ($(${QEMU%% *} --version | head -1))"
# The tests that need ALSA devices write their own configuration; the rest (listen --play on
# the null device) get one without the desktop's PulseAudio hooks, whose ARM modules are
# missing.
printf 'pcm.null {\n    type null\n}\n' >"$work/asound.conf"

EARSHOT_TEST_BINARY=$work/earshot ALSA_CONFIG_PATH=$work/asound.conf \
  cargo test --features alsa --tests -- \
  --skip an_unplugged_device_is_reported_down_and_capture_resumes_by_itself \
  --skip a_capture_held_up_for_seconds_catches_up_at_once_instead_of_staying_behind \
  --skip a_capture_overrun_is_recovered_and_the_audio_it_lost_is_a_sequence_gap \
  --skip thousands_of_broken_requests_and_frames_leave_twenty_listeners_gap_free \
  --skip kernel \
  --skip a_wall_clock_
