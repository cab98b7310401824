#!/bin/bash
# CPU per evaluated event of each daemon thread, by thread name, over one
# closed-loop load run (docs/performance.md section "Stop 16"):
#
#   benches/load/thread-cpu.sh [DURATION_SECONDS]
#
# Runs benches/load/daemon-run.sh 4 DURATION 0.25 with LOADGEN=rust (the
# environment — TOCSIN, CONFIG, BENCH, PORT — passes through), samples
# /proc/PID/task/*/stat every half second while the daemon lives, and
# divides each thread name's largest sample of user + system ticks (threads
# end one by one at shutdown) by the events evaluated.
set -e
cd "$(dirname "$0")/../.."
DUR=${1:-20}
OUT=$(mktemp)
cargo bench -q --bench loadgen --no-run 2> /dev/null
LOADGEN=rust benches/load/daemon-run.sh 4 "${DUR}s" 0.25 > "$OUT" 2>&1 &
RUN=$!
PID=""
for _ in $(seq 1 120); do
  PID=$(pgrep -f " run -c ${BENCH:-/tmp/tocsin-bench}/daemon.yaml" | head -1 || true)
  [ -n "$PID" ] && break
  sleep 0.25
done
SAMPLES=$(mktemp)
while [ -n "$PID" ] && kill -0 "$PID" 2> /dev/null; do
  for t in /proc/"$PID"/task/*; do
    echo "$(cat "$t/comm" 2> /dev/null) $(cut -d' ' -f14,15 "$t/stat" 2> /dev/null)"
  done | awk 'NF == 3 { a[$1] += $2 + $3 } END { for (k in a) print k, a[k] }' >> "$SAMPLES"
  sleep 0.5
done
wait $RUN || true
cat "$OUT"
EV=$(sed -n 's/^evaluated events\/s.*: \([0-9]*\)$/\1/p' "$OUT")
awk -v ev="$EV" -v d="$DUR" -v hz="$(getconf CLK_TCK)" \
    '$2 > m[$1] { m[$1] = $2 }
     END { for (k in m) if (m[k] > 0) printf "thread %-16s %.2f us per evaluated event\n", k, m[k] / hz * 1e6 / (ev * d) }' \
    "$SAMPLES" | sort
rm -f "$OUT" "$SAMPLES"
