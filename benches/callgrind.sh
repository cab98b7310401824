#!/bin/bash
# Instruction counts (valgrind --tool=callgrind) of `tocsin replay` per rule
# kind, for docs/performance.md. Repeatable where wall-clock time on a
# shared 2-core machine is not.
#
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/profiling \
#       cargo build --release                      # symbols for callgrind_annotate
#   benches/callgrind.sh target/profiling/release/tocsin main [CASE...]
#   callgrind_annotate --inclusive=no /tmp/tocsin-bench/main.mixed.out | head -40
#
# Inputs: the first 100,000 lines (10,000 for sliding10) of the files made
# by benches/gen_events.py in /tmp/tocsin-bench (see docs/performance.md).
# Prints, per case, the total instructions (Ir) and replay's summary; a
# rule's own cost per event is (case - none_<input>) / events.
set -e
BIN=$1; P=$2; shift 2
cd "$(dirname "$0")/.."
D=/tmp/tocsin-bench; R=benches/rules
for f in mixed auth http heartbeat orders; do
  [ -f $D/${f}100k.ndjson ] || head -100000 $D/$f.ndjson > $D/${f}100k.ndjson
done
[ -f $D/http1010k.ndjson ] || head -10000 $D/http10.ndjson > $D/http1010k.ndjson
declare -A RULES=( [none]=$R/mem/baseline.rules [none_auth]=$R/mem/baseline.rules
  [none_http]=$R/mem/baseline.rules [none_http10]=$R/mem/baseline.rules
  [none_heartbeat]=$R/mem/baseline.rules [none_orders]=$R/mem/baseline.rules
  [filter]=$R/filter.rules [filter_busy]=$R/filter-busy.rules [sliding]=$R/sliding.rules
  [sliding10]=$R/sliding.rules [tumbling]=$R/tumbling.rules [absence]=$R/absence.rules
  [sequence]=$R/sequence.rules [trailing]=$R/trailing-not.rules [mixed]=rules )
declare -A INPUT=( [none]=mixed100k [none_auth]=auth100k [none_http]=http100k
  [none_http10]=http1010k [none_heartbeat]=heartbeat100k [none_orders]=orders100k
  [filter]=auth100k [filter_busy]=auth100k [sliding]=http100k [sliding10]=http1010k
  [tumbling]=http100k [absence]=heartbeat100k [sequence]=auth100k [trailing]=orders100k
  [mixed]=mixed100k )
CASES=${*:-none none_auth none_http none_http10 none_heartbeat none_orders filter filter_busy sliding sliding10 tumbling absence sequence trailing mixed}
for c in $CASES; do
  valgrind --tool=callgrind --callgrind-out-file=$D/$P.$c.out "$BIN" replay \
      --rules "${RULES[$c]}" "$D/${INPUT[$c]}.ndjson" > /dev/null 2> $D/$P.$c.log
  echo "$c $(grep -o 'refs:.*' $D/$P.$c.log | tr -s ' ') | $(grep 'replay:' $D/$P.$c.log)"
done
