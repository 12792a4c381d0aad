#!/usr/bin/env bash
# `make bench-icecast-rounds`: the comparison with Icecast at small listener counts, run several
# times in a row, with each round's CPU ratio and their median.
#
# At 1-10 listeners both servers use well under 1 % of one core, mostly their fixed cost, and
# on a virtual machine that moves from minute to minute: one run of `make bench-icecast` can put
# the ratio anywhere from 0.7 to 1.2 there. Each round here is a whole `make bench-icecast`
# (earshot once per --batch-ms mode, then Icecast, one after the other) with RECORD=0, so the
# rounds interleave the servers and the median says where they sit better than any one round.
#
# Environment: ROUNDS (5), LADDER (1,10,50,100), STEP_S, SETTLE_S and BATCHES as for
# bench-icecast.sh; RECORD=0 to leave BENCHMARKS.md as it is. Results: the section "Small
# counts, round by round" of BENCHMARKS.md; each round's tables in target/bench/rounds/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

ROUNDS=${ROUNDS:-5}
export LADDER=${LADDER:-1,10,50,100}
export STEP_S=${STEP_S:-10}
export SETTLE_S=${SETTLE_S:-2}
export BATCHES=${BATCHES:-60 auto}
RECORD=${RECORD:-1}
LOGS=$PWD/target/bench
dir=$LOGS/rounds
rm -rf "$dir"
mkdir -p "$dir"

started=$(date -u +%Y-%m-%dT%H:%MZ)
machine=$(bench_machine)
for round in $(seq "$ROUNDS"); do
  echo "bench-icecast-rounds: round $round of $ROUNDS"
  RECORD=0 ./scripts/bench-icecast.sh >"$dir/round-$round.log" 2>&1 || {
    echo "bench-icecast-rounds: round $round failed; its log:" >&2
    tail -20 "$dir/round-$round.log" >&2
    exit 1
  }
  for batch in $BATCHES; do
    cp "$LOGS/compare-$batch.md" "$dir/compare-$batch-round-$round.md"
  done
done

# The CPU ratio e/i (the table's sixth column) of listener count $2 in round $3 of mode $1.
ratio() {
  awk -F'|' -v n="$2" '$2 + 0 == n && $2 ~ /[0-9]/ { gsub(/[* ]/, "", $7); print $7 }' \
    "$dir/compare-$1-round-$3.md"
}
# The median of the numbers on standard input (the mean of the middle two for an even count).
median() {
  sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

table=$dir/rounds.md
{
  for batch in $BATCHES; do
    echo
    if [ "$batch" = auto ]; then
      echo "**CPU ratio e/i, earshot with its default, \`--batch-ms auto\`:**"
    else
      echo "**CPU ratio e/i, earshot with \`--batch-ms $batch\`:**"
    fi
    echo
    header="| listeners |"
    rule="|---:|"
    for round in $(seq "$ROUNDS"); do
      header+=" round $round |"
      rule+="---:|"
    done
    echo "$header **median** | rounds above 1 |"
    echo "$rule---:|---:|"
    for n in ${LADDER//,/ }; do
      row="| $n |"
      values=()
      for round in $(seq "$ROUNDS"); do
        r=$(ratio "$batch" "$n" "$round")
        row+=" ${r:--} |"
        [ -n "$r" ] && [ "$r" != - ] && values+=("$r")
      done
      m=$(printf '%s\n' "${values[@]}" | median)
      above=$(printf '%s\n' "${values[@]}" | awk '$1 > 1 { k++ } END { print k + 0 }')
      echo "$row **$m** | $above of ${#values[@]} |"
    done
  done
} >"$table"
cat "$table"

if [ "$RECORD" = 1 ]; then
  body=$LOGS/rounds-section.md
  {
    bench_section_head "Measured $started on $machine: $ROUNDS rounds, one after the other." \
      "make bench-icecast-rounds   # ROUNDS=$ROUNDS LADDER=$LADDER STEP_S=$STEP_S SETTLE_S=$SETTLE_S BATCHES='$BATCHES'" \
      "# each round: RECORD=0 make bench-icecast with the same settings (commands in the section above)"
    cat "$table"
    echo
  } >"$body"
  bench_replace_section BENCHMARKS.md bench:rounds "$body"
  echo "bench-icecast-rounds: BENCHMARKS.md updated (section 'Small counts, round by round')"
fi
