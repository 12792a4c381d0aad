#!/usr/bin/env bash
# Runs the browser tests: builds the release binary, starts a private PulseAudio daemon (its own
# socket and runtime directory, so it neither needs nor disturbs a desktop session, and works as
# root), then node's test runner over tests/browser/*.test.js, one file at a time because they
# share two cores with real Chromium and real servers. Exits non-zero on any failure.
#
#   ./tests/browser/run.sh                       # everything (~1–2 minutes)
#   ./tests/browser/run.sh tests/browser/plays-audio.test.js   # one file
#   TEST_NAME='Stop' ./tests/browser/run.sh      # tests whose name matches a pattern
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
for tool in chromium firefox-esr WebKitWebDriver Xvfb pulseaudio parec pactl haproxy nginx jackd jack_lsp node npm; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
[ -f /usr/include/alsa/asoundlib.h ] || need+=(libasound2-dev) # the server is built with `alsa`
if [ ${#need[@]} -gt 0 ] || [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/puppeteer-core ]; then
  echo "browser tests: missing ${need[*]:-node_modules}; running scripts/install-test-deps.sh"
  ./scripts/install-test-deps.sh
fi

# node:test's mock timers and --test-concurrency, and playwright-core itself, need Node 20.10+.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'; then
  echo "browser tests: need Node.js 20.10 or newer, found $(node --version) (Debian 12's own nodejs is 18; NodeSource has 20)" >&2
  exit 1
fi

cargo build --release --features alsa --quiet

# The tests measure the player, not the scheduler: on a shared machine, concurrent builds or
# load generators would otherwise starve the sound server, the earshot server and Chromium, which
# need little CPU but need it on time. Raise the priority of this script when allowed (root, or
# CAP_SYS_NICE); the daemon and everything the test runner starts inherit it.
renice -n -10 -p $$ >/dev/null 2>&1 || true

runtime=$(mktemp -d "${TMPDIR:-/tmp}/earshot-pulse.XXXXXX")
pulse_pid=""
cleanup() {
  if [ -n "$pulse_pid" ]; then kill "$pulse_pid" 2>/dev/null || true; fi
  rm -rf "$runtime"
}
trap cleanup EXIT

# -n: no default.pa (no hardware probing, no X11/dbus modules); one anonymous-access socket;
# a null sink as default so nothing ever reaches a real card. Tests add a sink each.
# HOME points into the runtime dir so the daemon writes no cookie or state into the real one.
# The debug log, with times, is where the daemon notes each time the browser's stream ran dry
# (the machine too busy to feed it): support/pulse.js reads it to tell those gaps, which are
# not the page's, from the page's own faults.
HOME="$runtime" PULSE_RUNTIME_PATH="$runtime/run" pulseaudio -n \
  --daemonize=yes --use-pid-file=yes --exit-idle-time=-1 --disallow-exit \
  --log-target="file:$runtime/pulse.log" --log-level=debug --log-time=1 \
  -L "module-native-protocol-unix socket=$runtime/native auth-anonymous=1" \
  -L "module-null-sink sink_name=earshot_idle rate=48000" \
  || { echo "browser tests: pulseaudio did not start:"; cat "$runtime/pulse.log" 2>/dev/null; exit 1; }
pulse_pid=$(cat "$runtime/run/pid")
export PULSE_SERVER="unix:$runtime/native"
export EARSHOT_PULSE_LOG="$runtime/pulse.log"
for _ in $(seq 50); do
  pactl info >/dev/null 2>&1 && break
  sleep 0.1
done
pactl info >/dev/null || { echo "browser tests: pulseaudio is not answering"; cat "$runtime/pulse.log"; exit 1; }

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(tests/browser/*.test.js)
  rm -rf tests/artifacts # a full run leaves only its own evidence
fi
args=(--test --test-concurrency=1 --test-reporter=spec --test-timeout=120000)
[ -z "${TEST_NAME:-}" ] || args+=(--test-name-pattern="$TEST_NAME")
mkdir -p tests/artifacts
node "${args[@]}" "${files[@]}"
