# Shared by scripts/bench.sh, scripts/bench-icecast.sh and scripts/lbtest.sh (sourced, not run):
# the open-file limit, installing missing tools, starting earshot, stopping what a benchmark
# starts (by pid, nothing else), waiting for a port, describing the machine, and rewriting a
# marked section of BENCHMARKS.md.

# Pids this script started; `bench_cleanup` stops exactly these.
BENCH_PIDS=()

# Stops one process this script started: SIGTERM, up to 5 s to exit, then SIGKILL.
bench_stop() {
  local pid=$1 keep=() p
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

# Stops everything this script started (the EXIT trap).
bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do bench_stop "$pid"; done
}

# Raises the soft open-file limit to at least $1 (and the hard one too when root).
bench_raise_fd_limit() {
  local need=$1 hard
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    ulimit -Hn "$need" 2>/dev/null || {
      echo "bench: the open-file limit is $hard and $need are needed; run as root or raise it" >&2
      exit 1
    }
  fi
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need"
  fi
}

# Exits with a message when something already listens on 127.0.0.1:$1: a server this script
# starts there would fail to bind while the wait below found the other one answering. $2 names
# the variable that chooses the port.
bench_port_free() {
  local port=$1 variable=$2
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "bench: 127.0.0.1:$port is already in use by a process this script did not start; stop it or set $variable" >&2
    exit 1
  fi
}

# Waits up to $2 seconds until an HTTP GET of $1 succeeds (any status), with curl.
bench_wait_http() {
  local url=$1 seconds=$2
  for _ in $(seq $((seconds * 10))); do
    curl -s -m 1 -o /dev/null "$url" && return 0
    sleep 0.1
  done
  echo "bench: nothing answers at $url after $seconds s" >&2
  return 1
}

# Installs the Debian packages of the commands not found: "$@" are COMMAND:PACKAGE pairs
# (as root, or through sudo). Exits with a message when neither is possible.
bench_need() {
  local pair missing=() sudo=""
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "bench: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "bench: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Starts the release earshot on 127.0.0.1:$1 streaming $2 for up to $3 listeners in 20 ms
# chunks, with no per-address limit (every listener comes from 127.0.0.1) and any further
# arguments; its output goes to $LOGS/$4.{out,log}. Waits until it answers. Sets
# BENCH_SERVE_ARGS (the arguments after `earshot`, for the record) and BENCH_SERVER_PID.
bench_start_earshot() {
  local port=$1 source=$2 listeners=$3 name=$4
  shift 4
  BENCH_SERVE_ARGS=(serve --listen "127.0.0.1:$port" --source "$source" --chunk-ms 20
    --max-listeners "$listeners" --max-per-address 0 "$@")
  target/release/earshot "${BENCH_SERVE_ARGS[@]}" >"$LOGS/$name.out" 2>"$LOGS/$name.log" &
  BENCH_SERVER_PID=$!
  BENCH_PIDS+=("$BENCH_SERVER_PID")
  bench_wait_http "http://127.0.0.1:$port/healthz" 10
}

# CPU time a process's live threads have used, in nanoseconds (from their schedstat).
bench_cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ ns += $1 } END { printf "%.0f", ns }'
}

# The largest count in a comma-separated ladder.
bench_ladder_max() {
  tr ',' '\n' <<<"$1" | sort -n | tail -1
}

# One paragraph about the machine and its load, for BENCHMARKS.md.
bench_machine() {
  local model cores mem load
  model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  cores=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "$cores cores ($model), $mem RAM, Linux $(uname -r); load average before the run: $load"
}

# The head of a recorded section: SENTENCE (when and where it was measured), then the commands
# that made it, one per further argument, as a shell block.
bench_section_head() {
  local sentence=$1
  shift
  echo
  echo "$sentence"
  echo
  echo '```sh'
  printf '%s\n' "$@"
  echo '```'
}

# Replaces what lies between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in FILE with the
# contents of BODY (a file).
bench_replace_section() {
  local file=$1 name=$2 body=$3
  grep -q "<!-- $name:begin -->" "$file" || {
    echo "bench: no <!-- $name:begin --> marker in $file" >&2
    return 1
  }
  awk -v begin="<!-- $name:begin -->" -v end="<!-- $name:end -->" -v body="$body" '
    $0 == begin { print; while ((getline line < body) > 0) print line; skipping = 1; next }
    $0 == end { skipping = 0 }
    !skipping { print }
  ' "$file" >"$file.new"
  mv "$file.new" "$file"
}
