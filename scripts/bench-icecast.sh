#!/usr/bin/env bash
# `make bench-icecast`: earshot and Icecast side by side, in one run, on 127.0.0.1.
#
# Both serve the same audio at the same byte rate: the bundled sample decoded once to a WAV file
# (44.1 kHz, 16-bit stereo PCM: 176,400 bytes/s, 1411.2 kbit/s). earshot streams that WAV
# itself; Icecast gets it from ffmpeg as a continuous WAV stream (pcm_s16le, real time, looped)
# over its source protocol, and relays the bytes unchanged. Neither server decodes anything, so
# their CPU is spent on what is compared: delivering the same bytes to many listeners. The same
# ladder of listeners is attached to each with `earshot bench` (WebSocket for earshot, plain
# HTTP GETs for Icecast), and each server's CPU and RSS are read from /proc.
#
# Installs Debian's icecast2 and ffmpeg when missing. Writes its own Icecast config (own port,
# high client limit), kills only what it started, by pid. Results: BENCHMARKS.md (section "Side
# by side with Icecast") and benchmarks/{earshot,icecast}-compare*.{csv,svg}.
#
# Environment: LADDER, STEP_S, SETTLE_S, BATCHES (earshot's --batch-ms values, one ladder
# each), EARSHOT_PORT, ICECAST_PORT, RECORD=0 to leave BENCHMARKS.md and benchmarks/ as they
# are (the CSVs and SVGs then go to target/bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

LADDER=${LADDER:-1,10,50,100,200,500,1000,2000,3000}
STEP_S=${STEP_S:-10}
SETTLE_S=${SETTLE_S:-2}
EARSHOT_PORT=${EARSHOT_PORT:-18080}
BATCHES=${BATCHES:-auto 60}
ICECAST_PORT=${ICECAST_PORT:-18000}
RECORD=${RECORD:-1}
LOGS=$PWD/target/bench
OUT=benchmarks
[ "$RECORD" = 1 ] || OUT=$LOGS
BYTE_RATE=176400
mkdir -p "$LOGS" "$OUT"
trap bench_cleanup EXIT

# --- what is needed -------------------------------------------------------------------------
bench_need icecast2:icecast2 ffmpeg:ffmpeg curl:curl

cargo build --release -q
bin=target/release/earshot
max=$(bench_ladder_max "$LADDER")
bench_raise_fd_limit $((max + 256))
machine=$(bench_machine)
steps=$(tr ',' '\n' <<<"$LADDER" | wc -l)
limit=$((steps * (STEP_S + SETTLE_S + 20) + 60))

wav=$LOGS/sample-44100-s16-stereo.wav
ffmpeg -nostdin -loglevel error -y -i audio/earshot-sample.mp3 -ar 44100 -ac 2 -c:a pcm_s16le "$wav"

bench_args=(--clients "$LADDER" --duration "$STEP_S" --settle "$SETTLE_S")

# --- earshot, once per --batch-ms mode ---------------------------------------------------
# auto (the default: every chunk as produced below 200 listeners, 60 ms at once from there) and
# 60 (always 60 ms at once: the CPU-saving mode). Each mode gets its own fresh server.
# Files of the earshot run with --batch-ms $1: earshot-compare (auto), earshot-compare-batch-60.
compare_name() {
  if [ "$1" = auto ]; then echo earshot-compare; else echo "earshot-compare-batch-$1"; fi
}
started=$(date -u +%Y-%m-%dT%H:%MZ)
earshot_lines=()
for batch in $BATCHES; do
  name=$(compare_name "$batch")
  bench_port_free "$EARSHOT_PORT" EARSHOT_PORT
  bench_start_earshot "$EARSHOT_PORT" "$wav" $((max + 100)) "$name" --batch-ms "$batch"
  earshot=$BENCH_SERVER_PID
  earshot_cmd=("$bin" bench "ws://127.0.0.1:$EARSHOT_PORT/ws" "${bench_args[@]}"
    --server-pid "$earshot" --label "earshot-$batch"
    --csv "$OUT/$name.csv" --svg "$OUT/$name.svg")
  echo "bench-icecast: ${earshot_cmd[*]} (at most $limit s)"
  timeout "$limit" "${earshot_cmd[@]}" | tee "$LOGS/$name.txt"
  bench_stop "$earshot"
  earshot_lines+=("earshot ${BENCH_SERVE_ARGS[*]//$wav/sample.wav}")
  earshot_lines+=("$(echo "${earshot_cmd[*]#target/release/}" | sed "s|--server-pid $earshot|--server-pid \$EARSHOT_PID|")")
done

# --- Icecast ------------------------------------------------------------------------------
ice=$LOGS/icecast
rm -rf "$ice"
mkdir -p "$ice/log"
password=bench-$$-$RANDOM
owner=""
if [ "$(id -u)" -eq 0 ]; then
  # Icecast refuses to run as root; the Debian package's user runs it instead.
  owner="<changeowner><user>icecast2</user><group>icecast</group></changeowner>"
  chown -R icecast2:icecast "$ice"
fi
cat >"$ice/icecast.xml" <<XML
<icecast>
  <location>loopback</location>
  <admin>bench@localhost</admin>
  <limits>
    <clients>$((max + 100))</clients>
    <sources>2</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>$password</source-password>
    <admin-user>admin</admin-user>
    <admin-password>$password</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket>
    <port>$ICECAST_PORT</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>$ice/log</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
  </logging>
  <security>
    <chroot>0</chroot>
    $owner
  </security>
</icecast>
XML
bench_port_free "$ICECAST_PORT" ICECAST_PORT
icecast2 -c "$ice/icecast.xml" >"$LOGS/icecast.out" 2>&1 &
icecast=$!
BENCH_PIDS+=("$icecast")
bench_wait_http "http://127.0.0.1:$ICECAST_PORT/status-json.xsl" 10

# The feed: the same WAV, in real time, looped, as one continuous WAV stream.
ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$wav" -c:a pcm_s16le -f wav \
  -content_type audio/wav "icecast://source:$password@127.0.0.1:$ICECAST_PORT/earshot.wav" \
  >"$LOGS/icecast-feed.log" 2>&1 &
feed=$!
BENCH_PIDS+=("$feed")
for _ in $(seq 100); do
  curl -s -m 1 "http://127.0.0.1:$ICECAST_PORT/status-json.xsl" | grep -q earshot.wav && break
  sleep 0.1
done
sleep 1
icecast_cmd=("$bin" bench "http://127.0.0.1:$ICECAST_PORT/earshot.wav" "${bench_args[@]}"
  --server-pid "$icecast" --label icecast --byte-rate "$BYTE_RATE"
  --csv "$OUT/icecast-compare.csv" --svg "$OUT/icecast-compare.svg")
echo "bench-icecast: ${icecast_cmd[*]} (at most $limit s)"
# The feed does for Icecast what earshot's producer does inside earshot (reads the file and
# paces it in real time), so its CPU over the ladder is recorded too.
feed_started=$(date +%s.%N)
feed_before=$(bench_cpu_ns "$feed")
timeout "$limit" "${icecast_cmd[@]}" | tee "$LOGS/compare-icecast.txt"
feed_pct=$(awk -v a="$feed_before" -v b="$(bench_cpu_ns "$feed")" -v t0="$feed_started" -v t1="$(date +%s.%N)" \
  'BEGIN { printf "%.2f", (b - a) / 1e9 / (t1 - t0) * 100 }')
echo "bench-icecast: the ffmpeg feed used $feed_pct % of one core during the Icecast ladder"
bench_stop "$feed"
bench_stop "$icecast"

# --- the comparison tables ----------------------------------------------------------------
# Joins an earshot CSV ($1) with Icecast's on the listener count, by column name.
compare_table() {
  awk -F, -v feed="$feed_pct" '
  FNR == 1 { for (i = 1; i <= NF; i++) col[FILENAME, $i] = i; next }
  function v(name) { return (col[FILENAME, name] ? $(col[FILENAME, name]) : "") }
  FILENAME ~ /earshot/ { n = v("listeners"); e_cpu[n] = v("server_cpu_pct"); e_us[n] = v("cpu_us_per_listener_s")
    e_add[n] = v("added_cpu_us_per_listener_s"); e_p99[n] = v("p99_ms")
    e_rss[n] = v("server_rss_mib"); e_kib[n] = v("rss_kib_per_listener"); e_mb[n] = v("mbytes_per_s")
    e_ok[n] = v("on_time_pct"); e_conn[n] = v("connected"); order[++count] = n }
  FILENAME ~ /icecast/ { n = v("listeners"); i_cpu[n] = v("server_cpu_pct"); i_us[n] = v("cpu_us_per_listener_s")
    i_add[n] = v("added_cpu_us_per_listener_s")
    i_rss[n] = v("server_rss_mib"); i_kib[n] = v("rss_kib_per_listener"); i_mb[n] = v("mbytes_per_s")
    i_ok[n] = v("delivered_pct"); i_conn[n] = v("connected") }
  function ratio(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "-" }
  function f(x, d) { return x == "" ? "-" : sprintf("%." d "f", x) }
  END {
    print "| listeners | connected e / i | MB/s e / i | CPU % e / i | CPU µs per listener-second e / i | **CPU ratio e/i** | CPU µs a listener adds e / i | **added ratio e/i** | CPU % i + feed | **ratio e/(i + feed)** | RSS MiB e / i | RSS KiB per listener e / i | **RSS ratio e/i** | on time % e / bytes % i | p99 ms e |"
    print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for (k = 1; k <= count; k++) { n = order[k]
      whole = (i_cpu[n] == "") ? "" : i_cpu[n] + feed
      printf "| %s | %s / %s | %s / %s | %s / %s | %s / %s | **%s** | %s / %s | **%s** | %s | **%s** | %s / %s | %s / %s | **%s** | %s / %s | %s |\n", n,
        e_conn[n], i_conn[n], f(e_mb[n], 1), f(i_mb[n], 1), f(e_cpu[n], 1), f(i_cpu[n], 1),
        f(e_us[n], 0), f(i_us[n], 0), ratio(e_us[n], i_us[n]), f(e_add[n], 0), f(i_add[n], 0),
        ratio(e_add[n], i_add[n]), f(whole, 1), ratio(e_cpu[n], whole), f(e_rss[n], 1), f(i_rss[n], 1),
        f(e_kib[n], 1), f(i_kib[n], 1), ratio(e_kib[n], i_kib[n]), f(e_ok[n], 3), f(i_ok[n], 2), f(e_p99[n], 1) }
  }' "$1" "$OUT/icecast-compare.csv"
}
for batch in $BATCHES; do
  name=$(compare_name "$batch")
  echo "earshot --batch-ms $batch against Icecast:"
  compare_table "$OUT/$name.csv" | tee "$LOGS/compare-$batch.md"
done

if [ "$RECORD" = 1 ]; then
  body=$LOGS/icecast-section.md
  {
    bench_section_head \
      "Measured $started on $machine. $(icecast2 -v 2>&1 | head -1); $(ffmpeg -version | head -1 | cut -d' ' -f1-3)." \
      "make bench-icecast   # LADDER=$LADDER STEP_S=$STEP_S SETTLE_S=$SETTLE_S BATCHES='$BATCHES'" \
      "ffmpeg -i audio/earshot-sample.mp3 -ar 44100 -ac 2 -c:a pcm_s16le sample.wav" \
      "${earshot_lines[@]}" \
      "icecast2 -c icecast.xml   # written by scripts/bench-icecast.sh: port $ICECAST_PORT, <clients>$((max + 100))</clients>" \
      "ffmpeg -re -stream_loop -1 -i sample.wav -c:a pcm_s16le -f wav -content_type audio/wav icecast://source:PASSWORD@127.0.0.1:$ICECAST_PORT/earshot.wav" \
      "$(echo "${icecast_cmd[*]#target/release/}" | sed "s|--server-pid $icecast|--server-pid \$ICECAST_PID|")"
    echo
    echo "e = earshot (WebSocket), i = Icecast (HTTP). Ratios below 1 favour earshot. \"CPU µs a"
    echo "listener adds\" is the server's CPU above what it used with no listeners (measured for one"
    echo "step before the ladder: earshot producing its stream, Icecast taking in its feed), per"
    echo "listener-second. \"CPU % i + feed\" adds the ffmpeg feed's CPU during the Icecast ladder"
    echo "($feed_pct % of one core): the feed reads the file and paces it in real time for Icecast,"
    echo "which earshot's producer does inside earshot, so this column compares the whole job."
    for batch in $BATCHES; do
      echo
      if [ "$batch" = auto ]; then
        echo "**earshot with its default, \`--batch-ms auto\`:**"
      else
        echo "**earshot with \`--batch-ms $batch\`:**"
      fi
      echo
      cat "$LOGS/compare-$batch.md"
    done
    echo
    echo "Each server's own chart (earshot: latency and chunks on time; Icecast: CPU and bytes"
    echo "delivered, since an HTTP stream carries no timestamps):"
    echo
    for batch in $BATCHES; do
      name=$(compare_name "$batch")
      echo "![earshot --batch-ms $batch in the comparison run](benchmarks/$name.svg)"
    done
    echo '![Icecast in the comparison run](benchmarks/icecast-compare.svg)'
    echo
  } >"$body"
  bench_replace_section BENCHMARKS.md bench:icecast "$body"
  echo "bench-icecast: BENCHMARKS.md updated (section 'Side by side with Icecast')"
fi
