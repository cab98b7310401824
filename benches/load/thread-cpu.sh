#!/bin/bash
# CPU per evaluated event of each daemon thread, by thread name, over one
# closed-loop load run (docs/performance.md section "Stop 16"):
#
#   benches/load/thread-cpu.sh [DURATION_SECONDS]
#
# Runs benches/load/daemon-run.sh 4 DURATION 0.25 with LOADGEN=rust (the
# environment — TOCSIN, CONFIG, BENCH, PORT — passes through), samples
# /proc/PID/task/*/stat every half second while the load generator runs,
# and divides each thread name's user + system ticks between the first and
# the last sample by the events evaluated in that time. (Sampling until
# the daemon exits would count its shutdown checkpoint, seconds of engine
# work for a state of this size.)
set -e
cd "$(dirname "$0")/../.."
DUR=${1:-20}
OUT=$(mktemp)
cargo bench -q --bench loadgen --no-run 2> /dev/null
LOADGEN=rust benches/load/daemon-run.sh "${CONNECTIONS:-4}" "${DUR}s" 0.25 > "$OUT" 2>&1 &
RUN=$!
# The first process whose command line matches $1, waited for (30 s).
pid_of() {
  local p
  for _ in $(seq 1 300); do
    p=$(pgrep -f "$1" | head -1 || true)
    [ -n "$p" ] && echo "$p" && return
    sleep 0.1
  done
}
PID=$(pid_of " run -c ${BENCH:-/tmp/tocsin-bench}/daemon.yaml")
LG=$(pid_of "loadgen-.* http://")
SAMPLES=$(mktemp)
metric() {
  curl -s "127.0.0.1:${PORT:-18080}/metrics" \
    | awk -v m="$1" 'index($0, m) == 1 { n += $2 } END { print n + 0 }'
}
sample() {
  echo "@ $(date +%s.%N) $(( $(metric tocsin_events_received_total) - $(metric tocsin_events_late_total) ))"
  for t in /proc/"$PID"/task/*; do
    echo "$(cat "$t/comm" 2> /dev/null) $(cut -d' ' -f14,15 "$t/stat" 2> /dev/null)"
  done | awk 'NF == 3 { a[$1] += $2 + $3 } END { for (k in a) print k, a[k] }'
}
sample > "$SAMPLES.first"
while [ -n "$LG" ] && kill -0 "$LG" 2> /dev/null; do
  sample > "$SAMPLES.last"
  sleep 0.5
done
wait $RUN || true
cat "$OUT"
awk -v hz="$(getconf CLK_TCK)" '
    FNR == 1 { f = (FILENAME ~ /first$/); if (f) { t0 = $2; e0 = $3 } else { t1 = $2; e1 = $3 }; next }
    { if (f) a[$1] = $2; else b[$1] = $2 }
    END {
      ev = e1 - e0
      printf "load window %.1f s, %d events evaluated (%.0f/s)\n", t1 - t0, ev, ev / (t1 - t0)
      for (k in b) if (b[k] - a[k] > 0)
        printf "thread %-16s %.2f us per evaluated event\n", k, (b[k] - a[k]) / hz * 1e6 / ev
    }' "$SAMPLES.first" "$SAMPLES.last" | sort
rm -f "$OUT" "$SAMPLES" "$SAMPLES.first" "$SAMPLES.last"
