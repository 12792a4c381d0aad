#!/usr/bin/env bash
# `make lbtest`: failover through Debian's real HAProxy (installed when missing). Runs
# tests/failover_haproxy.rs, the same test `make test` runs: three earshot instances and HAProxy
# on 127.0.0.1 (deploy/haproxy.cfg's backend), six `earshot listen --reconnect --json`
# listeners, then a drain (SIGUSR1), a crash (SIGKILL) and a 3 s freeze (SIGSTOP/SIGCONT). Prints
# the table and records it in BENCHMARKS.md (section "Failover through HAProxy") with the exact
# command, the machine and the date. Every process it starts is stopped by the test, by pid.
#
# Environment: RECORD=0 to leave BENCHMARKS.md as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
RECORD=${RECORD:-1}

bench_need haproxy:haproxy

mkdir -p target/lbtest
table=target/lbtest/table.md
rm -f "$table"
machine=$(bench_machine)
when=$(date -u +%Y-%m-%dT%H:%MZ)
cmd=(cargo test --release --test failover_haproxy -- --nocapture)
LBTEST_TABLE=$table timeout 300 "${cmd[@]}"
[ -s "$table" ] || { echo "lbtest: the test wrote no table" >&2; exit 1; }

if [ "$RECORD" = 1 ]; then
  body=target/lbtest/section.md
  {
    bench_section_head "Measured $when on $machine; $(haproxy -v | head -1 | cut -d' ' -f1-3)." \
      "make lbtest   # ${cmd[*]}"
    echo
    cat "$table"
    echo
  } >"$body"
  bench_replace_section BENCHMARKS.md lbtest "$body"
  echo "lbtest: recorded in BENCHMARKS.md"
fi
