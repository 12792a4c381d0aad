#!/usr/bin/env bash
# `make pi-zero`: one static earshot with ALSA capture for the ARMv6 Raspberry Pi Zero, Zero W
# and Pi 1, built on a Debian 12 x86-64 machine from Debian's packages alone (no Docker, no
# rustup target). Copy target/pi-zero/earshot to the Pi; it needs no library there.
#
# Why it is built this way:
# - rustup's ARMv6 standard library is a download this project's machines cannot make, and
#   Debian has none. Debian's rustc-web (Rust 1.96, from bookworm-security) and rust-web-src (the
#   source of that same standard library) let cargo's -Zbuild-std compile std for ARMv6 here.
#   -Zbuild-std is unstable: RUSTC_BOOTSTRAP=1 lets this stable toolchain accept it, for this
#   build only.
# - Debian has no ARMv6 hard-float C library (its armhf one is ARMv7), but its armel one
#   (ARMv5TE, floats passed in integer registers) runs on an ARMv6 CPU. So the Rust target is
#   arm-unknown-linux-gnueabi, the code is compiled for the Pi's own CPU (arm1176jzf-s, with its
#   VFP unit: -mfloat-abi=softfp uses the FPU and only passes floats the soft-float way), and the
#   binary is linked statically, so Raspberry Pi OS (armhf) needs no armel libraries to run it.
# - libasound has no static library in Debian, so alsa-lib 1.2.8 (Debian 12's) is built here
#   from Debian's source tarball, checked against the SHA-256 in Debian's signed .dsc. It is
#   built without dlopen: ALSA plugins that live in their own .so (PulseAudio's, PipeWire's)
#   cannot be loaded into a static binary, so `alsa:default` works where the default device is
#   a card (Raspberry Pi OS Lite) and `alsa:plughw:CARD=…` works everywhere (README).
#
# Installs, when missing (as root or through sudo): rustc-web, cargo-web, rust-web-src,
# gcc-arm-linux-gnueabi and libc6-dev-armel-cross. Adds no Debian architecture. rustc-web puts
# a rustc and a cargo in /usr/bin; rustup's in ~/.cargo/bin come first on PATH and stay the
# ones every other target uses.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=arm-unknown-linux-gnueabi
CPU=arm1176jzf-s
CFLAGS_PI="-O2 -mcpu=$CPU -mfpu=vfp -mfloat-abi=softfp"
ALSA_VERSION=1.2.8
ALSA_TARBALL=alsa-lib_$ALSA_VERSION.orig.tar.bz2
ALSA_URL=http://deb.debian.org/debian/pool/main/a/alsa-lib/$ALSA_TARBALL
ALSA_SHA256=1ab01b74e33425ca99c2e36c0844fd6888273193bd898240fe8f93accbcbf347
# Debian's Rust, by full path: the rustup toolchain on PATH has no ARMv6 standard library.
DEB_RUSTC=/usr/bin/rustc
DEB_CARGO=/usr/bin/cargo
out=$PWD/target/pi-zero

say() { echo "pi-zero: $*"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
need=()
for p in rustc-web cargo-web rust-web-src gcc-arm-linux-gnueabi libc6-dev-armel-cross; do
  installed "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  say "installing ${need[*]}"
  $sudo apt-get update -qq || say "apt-get update reported errors; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! "$DEB_RUSTC" --version | grep -q '^rustc 1\.'; then
  echo "pi-zero: $DEB_RUSTC is not Debian's rustc-web" >&2
  exit 1
fi
if [ "$(command -v cargo)" = "$DEB_CARGO" ]; then
  say "note: $DEB_CARGO comes before rustup's cargo on PATH; put ~/.cargo/bin first" \
    "(make lint needs rustup's clippy)"
fi

# libasound.a for the Pi's CPU, built once into target/pi-zero/sysroot.
sysroot=$out/sysroot
if [ ! -f "$sysroot/usr/lib/libasound.a" ]; then
  src=$out/alsa-lib-$ALSA_VERSION
  mkdir -p "$out"
  if [ ! -f "$out/$ALSA_TARBALL" ]; then
    say "downloading $ALSA_URL"
    curl -sSfL -o "$out/$ALSA_TARBALL.part" "$ALSA_URL"
    mv "$out/$ALSA_TARBALL.part" "$out/$ALSA_TARBALL"
  fi
  if ! echo "$ALSA_SHA256  $out/$ALSA_TARBALL" | sha256sum -c --quiet; then
    echo "pi-zero: $out/$ALSA_TARBALL does not match Debian's SHA-256; removed it" >&2
    rm -f "$out/$ALSA_TARBALL"
    exit 1
  fi
  rm -rf "$src" "$sysroot"
  tar -xjf "$out/$ALSA_TARBALL" -C "$out"
  say "building alsa-lib $ALSA_VERSION (static, for $CPU)"
  (
    cd "$src"
    CFLAGS="$CFLAGS_PI" ./configure -q --host=arm-linux-gnueabi --prefix=/usr \
      --enable-static --disable-shared --without-libdl \
      --disable-python --disable-ucm --disable-topology >"$out/alsa-configure.log" 2>&1
    make -s -j"$(nproc)" >"$out/alsa-make.log" 2>&1
    make -s install DESTDIR="$sysroot" >>"$out/alsa-make.log" 2>&1
  ) || { echo "pi-zero: building alsa-lib failed; see $out/alsa-*.log" >&2; exit 1; }
fi

say "building earshot for $TARGET ($CPU) with $("$DEB_RUSTC" --version)"
target_env=$(tr 'a-z-' 'A-Z_' <<<"$TARGET")
env RUSTC="$DEB_RUSTC" RUSTC_BOOTSTRAP=1 \
  "CARGO_TARGET_${target_env}_LINKER=arm-linux-gnueabi-gcc" \
  "CARGO_TARGET_${target_env}_RUSTFLAGS=-C target-cpu=$CPU -C target-feature=+crt-static" \
  "CC_${TARGET//-/_}=arm-linux-gnueabi-gcc" "CFLAGS_${TARGET//-/_}=$CFLAGS_PI" \
  PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_ALL_STATIC=1 PKG_CONFIG_SYSROOT_DIR="$sysroot" \
  PKG_CONFIG_LIBDIR="$sysroot/usr/lib/pkgconfig" \
  "$DEB_CARGO" build --release --features alsa -Zbuild-std=std,panic_unwind \
  --target "$TARGET" --target-dir "$out/build"
cp "$out/build/$TARGET/release/earshot" "$out/earshot"
say "$(ls -l "$out/earshot" | awk '{print $NF " (" $5 " bytes)"}')"
file "$out/earshot" 2>/dev/null || true
