# earshot: `make run` starts the server on :8080 with the bundled audio; `make test` installs
# what the tests need and runs every test. See README.md.

CARGO      ?= cargo
LISTEN     ?= 0.0.0.0:8080
RELEASE    := target/release/earshot
STATIC_TARGET ?= x86_64-unknown-linux-gnu
# Cross-compiler for the Raspberry Pi targets: https://github.com/cross-rs/cross (Docker/Podman).
CROSS      ?= cross

.PHONY: run build build-alsa pi-zero pi-armv7 pi-aarch64 check-pi test-pi-zero test-pi test-pi-aarch64 test test-deps test-rust test-browser static fmt lint fuzz bench bench-icecast bench-icecast-rounds bench-floor lbtest clean

run: build
	$(RELEASE) serve --listen $(LISTEN)

build:
	$(CARGO) build --release

# Build with ALSA capture (needs libasound2-dev).
build-alsa:
	$(CARGO) build --release --features alsa

# Raspberry Pi builds with ALSA capture. Pick by the Pi's `uname -m`: an armv7 binary dies with
# "Illegal instruction" on an ARMv6 Pi. See README "Building for a Raspberry Pi".
# armv6l (Pi Zero, Zero W, Pi 1): one static binary, target/pi-zero/earshot, built here from
# Debian's packages (scripts/pi-zero.sh says how and why); no Docker.
pi-zero:
	./scripts/pi-zero.sh

# The others are cross-compiled with `cross` (Docker or Podman, which the CI machine has not);
# Cross.toml installs the Pi's libasound2-dev in the build image. The binary lands in
# target/TARGET/release/earshot.
pi-armv7:     # armv7l: Pi 2, 3, 4, Zero 2 W with a 32-bit OS
	$(call pi-build,armv7-unknown-linux-gnueabihf,arm-linux-gnueabihf)
pi-aarch64:   # aarch64: Pi 3, 4, 5, Zero 2 W with a 64-bit OS
	$(call pi-build,aarch64-unknown-linux-gnu,aarch64-linux-gnu)

# Type-checks the 32-bit Pi build here, without an ARM C compiler or libasound (ALSA's frame
# counts are 32 bits there). Adds the armv7 Rust target through rustup when it is missing.
check-pi:
	@rustup target list --installed | grep -qx armv7-unknown-linux-gnueabihf || rustup target add armv7-unknown-linux-gnueabihf
	CRATE_CC_NO_DEFAULTS=1 CC_armv7_unknown_linux_gnueabihf=cc PKG_CONFIG_ALLOW_CROSS=1 \
		$(CARGO) clippy --all-targets --features alsa --target armv7-unknown-linux-gnueabihf -- -D warnings

# Builds a Pi binary (with ALSA) and runs the Rust integration tests against it under qemu.
# test-pi-zero: the Pi Zero build on qemu's ARM1176 CPU (part of `make test`; it adds no Debian
# architecture). test-pi (armv7, qemu-arm) and test-pi-aarch64 (qemu-aarch64) install the cross
# compiler, qemu-user and the target's libasound when missing; they are not part of `make test`
# because they add a Debian architecture (armhf, arm64) to the machine (see the README).
test-pi-zero:
	./scripts/pi-emulated.sh armv6

test-pi:
	./scripts/pi-emulated.sh armv7

test-pi-aarch64:
	./scripts/pi-emulated.sh aarch64

# $(1): Rust target; $(2): the Debian multiarch triplet whose libasound pkg-config file to use.
define pi-build
	PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH=/usr/lib/$(2)/pkgconfig \
		$(CROSS) build --release --features alsa --target $(1)
	@ls -l target/$(1)/release/earshot
endef

test: test-deps lint test-rust test-pi-zero test-browser

test-deps:
	./scripts/install-test-deps.sh

# The release build is the one the browser tests run, with ALSA for their capture test.
test-rust:
	$(CARGO) build --release --features alsa
	$(CARGO) test --all-targets --features alsa -- --test-threads=2

# Browser tests in real Chromium; filled in by the browser-player work.
test-browser:
	@if [ -f tests/browser/run.sh ]; then ./tests/browser/run.sh; else echo "no browser tests yet"; fi

# A fully static binary (no ALSA) to copy to any Linux machine of the same architecture.
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(STATIC_TARGET)
	@ls -l target/$(STATIC_TARGET)/release/earshot | awk '{print "static binary: " $$NF " (" $$5 " bytes)"}'
	@file target/$(STATIC_TARGET)/release/earshot 2>/dev/null || true

# Fuzz every parser of client input and the MP3/WAV decoding, FUZZ_SECONDS each, with cargo fuzz
# on nightly (installed when missing). Not part of `make test`. A crash is saved under
# fuzz/artifacts/TARGET/; keep it in tests/fuzz-regressions/TARGET/ so every test run replays it.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := http_request upgrade credentials login_body client_message ws_frames server_frames source_file
fuzz:
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  seeds="fuzz/seeds/$$t"; [ $$t = source_file ] && seeds="$$seeds tests/fixtures"; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t $$seeds -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; \
	done

# Load benchmarks, not part of `make test` (minutes, and the whole machine): the standard ladder
# of listeners against a release server on 127.0.0.1, and the same ladder against earshot and
# Icecast side by side (installs icecast2 and ffmpeg when missing). Both record their results in
# BENCHMARKS.md; LADDER=1,10,100 STEP_S=5 make bench for a quick look.
bench:
	./scripts/bench.sh

bench-icecast:
	./scripts/bench-icecast.sh

# The comparison at 1-100 listeners, ROUNDS times in a row (5 by default, about 17 minutes):
# each round's CPU ratio and the median, since at small counts one run moves with the machine.
bench-icecast-rounds:
	./scripts/bench-icecast-rounds.sh

# The floor under a thread per listener: the CPU threads cost only to wake on a 20 or 60 ms grid,
# as sessions do, then to send the audio as well, and what one sender thread for all listeners
# (a pool) pays for the same (benches/wake_floor.rs). About ten minutes with every mode; prints
# a table for BENCHMARKS.md. FLOOR_MODES picks from socket,sleep,send,pool.
FLOOR_THREADS ?= 1,10,50,100,200,500
FLOOR_MODES   ?= socket,sleep,send,pool
FLOOR_S       ?= 10
bench-floor:
	$(CARGO) bench --bench wake_floor -- --listeners $(FLOOR_THREADS) --mode $(FLOOR_MODES) --seconds $(FLOOR_S)

# Failover through Debian's real HAProxy (installed when missing): three instances drained,
# killed and frozen under six listeners; the table goes to BENCHMARKS.md. The same test runs in
# `make test` (tests/failover_haproxy.rs), without recording.
lbtest:
	./scripts/lbtest.sh

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features alsa -- -D warnings
	$(MAKE) --no-print-directory check-pi

clean:
	$(CARGO) clean
