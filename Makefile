# earshot: `make run` starts the server on :8080 with the bundled audio; `make test` installs
# what the tests need and runs every test. See README.md.

CARGO      ?= cargo
LISTEN     ?= 0.0.0.0:8080
RELEASE    := target/release/earshot
STATIC_TARGET ?= x86_64-unknown-linux-gnu

.PHONY: run build build-alsa test test-deps test-rust test-browser static fmt lint bench bench-icecast clean

run: build
	$(RELEASE) serve --listen $(LISTEN)

build:
	$(CARGO) build --release

# Build with ALSA capture (needs libasound2-dev).
build-alsa:
	$(CARGO) build --release --features alsa

test: test-deps lint test-rust test-browser

test-deps:
	./scripts/install-test-deps.sh

test-rust:
	$(CARGO) build --release
	$(CARGO) test --all-targets --features alsa -- --test-threads=2

# Browser tests in real Chromium; filled in by the browser-player work.
test-browser:
	@if [ -f tests/browser/run.sh ]; then ./tests/browser/run.sh; else echo "no browser tests yet"; fi

# A fully static binary (no ALSA) to copy to any Linux machine of the same architecture.
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(STATIC_TARGET)
	@ls -l target/$(STATIC_TARGET)/release/earshot | awk '{print "static binary: " $$NF " (" $$5 " bytes)"}'
	@file target/$(STATIC_TARGET)/release/earshot 2>/dev/null || true

# Load benchmarks, not part of `make test` (minutes, and the whole machine): the standard ladder
# of listeners against a release server on 127.0.0.1, and the same ladder against earshot and
# Icecast side by side (installs icecast2 and ffmpeg when missing). Both record their results in
# BENCHMARKS.md; LADDER=1,10,100 STEP_S=5 make bench for a quick look.
bench:
	./scripts/bench.sh

bench-icecast:
	./scripts/bench-icecast.sh

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features alsa -- -D warnings

clean:
	$(CARGO) clean
