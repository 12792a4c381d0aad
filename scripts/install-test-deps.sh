#!/usr/bin/env bash
# Installs what `make test` needs and is missing: Debian packages (as root, or through sudo)
# and the npm packages in package-lock.json. Safe to run again; does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: ALSA headers for the `alsa` feature, Chromium, Firefox ESR,
# PulseAudio and Node.js (20 or newer, with npm: NodeSource's build) for the browser tests,
# JACK (its dummy backend: a clock without a sound card) for the capture overrun test,
# HAProxy and nginx for the proxy and failover tests, Icecast for the bench's HTTP side,
# openssl for the proxy tests' certificates, sox for fixtures. WebKitGTK's WebDriver (it brings
# the MiniBrowser and GStreamer's PulseAudio sink) and Xvfb for the WebKit test: MiniBrowser has
# no headless mode.
# qemu and a static busybox for the virtual machine of tests/kernel_alsa.rs (ALSA's loopback
# kernel driver; its kernel is fetched below).
packages=(libasound2-dev alsa-utils chromium firefox-esr pulseaudio pulseaudio-utils jackd2 nodejs haproxy nginx icecast2 openssl sox
  webkit2gtk-driver xvfb qemu-system-x86 busybox-static)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-test-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's kernel for that virtual machine, unpacked into target/vm/kernel, not installed here:
# vmlinuz, and of its modules ALSA's core and drivers (snd-aloop among them) and the e1000
# network card qemu emulates.
kernel_dir=target/vm/kernel
if [ ! -f "$kernel_dir/vmlinuz" ]; then
  package=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  echo "install-test-deps: fetching $package for tests/kernel_alsa.rs"
  unpack=$(mktemp -d)
  (cd "$unpack" && apt-get download -qq "$package" 2>/dev/null)
  dpkg-deb -x "$unpack"/*.deb "$unpack/root"
  modules=$(echo "$unpack"/root/lib/modules/*)
  rm -rf "$kernel_dir"
  mkdir -p "$kernel_dir/lib/modules"
  for part in sound/soundcore.ko sound/core sound/drivers drivers/net/ethernet/intel/e1000; do
    mkdir -p "$kernel_dir/lib/modules/$(basename "$modules")/kernel/$(dirname "$part")"
    cp -r "$modules/kernel/$part" "$kernel_dir/lib/modules/$(basename "$modules")/kernel/$part"
  done
  cp "$unpack"/root/boot/vmlinuz-* "$kernel_dir/vmlinuz.part"
  mv "$kernel_dir/vmlinuz.part" "$kernel_dir/vmlinuz"
  rm -rf "$unpack"
fi

# Debian 12's own nodejs is 18 and comes without npm; the browser tests need 20.10 or newer.
if ! command -v npm >/dev/null; then
  echo "install-test-deps: npm is missing: install Node.js 20 or newer with npm (NodeSource's" \
    "nodejs package, https://github.com/nodesource/distributions) and run make test again" >&2
  exit 1
fi

if [ -f package-lock.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "install-test-deps: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
