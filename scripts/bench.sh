#!/usr/bin/env bash
# `make bench`: starts a release earshot on 127.0.0.1, runs the standard ladder of listeners
# against it with `earshot bench` (load generator on the same machine), and records the results
# in BENCHMARKS.md (section "earshot ladder") with the exact command, the machine and the date,
# plus benchmarks/earshot-ladder.{csv,svg}. Bounded in time; stops only the server it started.
#
# Environment: LADDER (listener counts), STEP_S (seconds measured per step), SETTLE_S, SOURCE
# (what the server streams), BATCH (its --batch-ms), PORT, RECORD=0 to leave BENCHMARKS.md and
# benchmarks/ as they are (the CSV and SVG then go to target/bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

LADDER=${LADDER:-1,5,10,20,35,50,100,200,500,1000,1500,2000,3000,4000,5000}
# 20 s = 1000 chunks per listener, so one late chunk still leaves a listener at 99.9 %.
STEP_S=${STEP_S:-20}
SETTLE_S=${SETTLE_S:-2}
SOURCE=${SOURCE:-tone:}
BATCH=${BATCH:-auto}
PORT=${PORT:-18080}
RECORD=${RECORD:-1}
LOGS=target/bench
OUT=benchmarks
[ "$RECORD" = 1 ] || OUT=$LOGS
mkdir -p "$LOGS" "$OUT"
trap bench_cleanup EXIT
bench_need curl:curl

cargo build --release -q
bin=target/release/earshot
max=$(bench_ladder_max "$LADDER")
# Each listener is one descriptor in the server and one in the generator, plus some spare.
bench_raise_fd_limit $((max + 256))
machine=$(bench_machine)

# BATCH: the server's --batch-ms (auto, or 60 to measure the CPU-saving mode).
bench_port_free "$PORT" PORT
bench_start_earshot "$PORT" "$SOURCE" $((max + 100)) earshot-server --batch-ms "$BATCH"
server=$BENCH_SERVER_PID

steps=$(tr ',' '\n' <<<"$LADDER" | wc -l)
limit=$((steps * (STEP_S + SETTLE_S + 20) + 60))
cmd=("$bin" bench "ws://127.0.0.1:$PORT/ws" --clients "$LADDER" --duration "$STEP_S"
  --settle "$SETTLE_S" --server-pid "$server" --label earshot
  --csv "$OUT/earshot-ladder.csv" --svg "$OUT/earshot-ladder.svg"
  --markdown "$LOGS/earshot-ladder.md")
echo "bench: ${cmd[*]} (at most $limit s)"
started=$(date -u +%Y-%m-%dT%H:%MZ)
timeout "$limit" "${cmd[@]}" | tee "$LOGS/earshot-ladder.txt"
bench_stop "$server"

if [ "$RECORD" = 1 ]; then
  body=$LOGS/earshot-section.md
  {
    bench_section_head "Measured $started on $machine." \
      "make bench   # LADDER=$LADDER STEP_S=$STEP_S SETTLE_S=$SETTLE_S SOURCE=$SOURCE BATCH=$BATCH" \
      "earshot ${BENCH_SERVE_ARGS[*]}" \
      "$(echo "${cmd[*]#target/release/}" | sed "s|--server-pid $server|--server-pid \$SERVER_PID|")"
    echo
    cat "$LOGS/earshot-ladder.md"
    echo
    grep -E '^target (\(|missed)' "$LOGS/earshot-ladder.txt" | sed 's/^/- /' || true
    echo
    echo '![earshot: latency and chunks on time against listeners](benchmarks/earshot-ladder.svg)'
    echo
  } >"$body"
  bench_replace_section BENCHMARKS.md bench:earshot "$body"
  echo "bench: BENCHMARKS.md updated (section 'earshot ladder')"
fi
