#!/bin/bash
# One daemon load test (docs/performance.md): a fresh state directory,
# `tocsin run`, wrk posting NDJSON batches, then the daemon's counters,
# its peak RSS and the state directory size; the daemon is stopped.
#
#   benches/load/daemon-run.sh CONNECTIONS DURATION [MS_PER_EVENT [RATE]]
#   CONFIG=benches/load/daemon-ingest-only.yaml benches/load/daemon-run.sh 4 30s
#
# Environment (all optional):
#   CONFIG   the daemon config (default benches/load/daemon.yaml)
#   TOCSIN   the binary (default $CARGO_TARGET_DIR/release/tocsin, else
#            target/release/tocsin)
#   BENCH    the scratch directory (default /tmp/tocsin-bench): state in
#            $BENCH/state, daemon log in $BENCH/daemon.log
#   PORT     the daemon's HTTP port (default 18080)
#   BATCH    events per request (default 1000)
#   LOADGEN  wrk (default: benches/load/post_events.lua) or rust
#            (benches/load/loadgen.rs, the same requests for a tenth of the
#            CPU; built by `cargo bench`, so run the script where cargo is)
#   PACED    with LOADGEN=rust: requests per second per connection on a
#            fixed schedule, latency counted from each request's due time
#            (an open loop; RATE is then ignored)
# The config is copied with its state_dir, port and rules path rewritten,
# so runs with other BENCH/PORT values do not collide.
#
# Needs wrk, curl and /tmp/tocsin-bench/mixed.ndjson
# (python3 benches/gen_events.py --scenario mixed -n 1000000 > ...).
# Keep CONNECTIONS x 1000 x MS_PER_EVENT under max_delay (2000 ms).
# RATE: requests per second per connection (default 0: unpaced, closed
# loop); a paced run measures acknowledgements below saturation.
set -e
cd "$(dirname "$0")/../.."
D=${BENCH:-/tmp/tocsin-bench}
PORT=${PORT:-18080}
CONFIG=${CONFIG:-benches/load/daemon.yaml}
TOCSIN=${TOCSIN:-${CARGO_TARGET_DIR:-target}/release/tocsin}
# Build the load generator first: a daemon left idle for `idle_timeout`
# while it compiles advances its watermark to the wall clock, and every
# event (stamped a day back) would then be late.
if [ "${LOADGEN:-wrk}" = rust ]; then
  cargo bench -q --bench loadgen --no-run 2> /dev/null
fi
# A daemon still answering on the port (an earlier run draining a big
# state) would be measured instead of this one.
if curl -sf "127.0.0.1:$PORT/readyz" > /dev/null; then
  echo "port $PORT is busy: another daemon is still running" >&2
  exit 1
fi
rm -rf "$D/state" && mkdir -p "$D/state"
RULES=$(sed -n 's/^rules: *//p' "$CONFIG")
RULES=$(realpath "$(dirname "$CONFIG")/$RULES")
sed -e "s#^rules: .*#rules: $RULES#" -e "s#/tmp/tocsin-bench/state#$D/state#g" \
    -e "s#127.0.0.1:18080#127.0.0.1:$PORT#g" "$CONFIG" > "$D/daemon.yaml"
"$TOCSIN" run -c "$D/daemon.yaml" > "$D/daemon.log" 2>&1 &
PID=$!
until curl -sf "127.0.0.1:$PORT/readyz" > /dev/null; do sleep 0.2; done
# CPU seconds (user + system) the daemon has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$PID/stat"; }
CPU0=$(cpu)
if [ "${LOADGEN:-wrk}" = rust ]; then
  cargo bench -q --bench loadgen -- "http://127.0.0.1:$PORT/v1/events" /tmp/tocsin-bench/mixed.ndjson \
      "$1" "$2" --batch "${BATCH:-1000}" --ms-per-event "${3:-0.25}" --rate "${4:-0}" \
      ${PACED:+--paced "$PACED"}
else
  wrk -t1 -c"$1" -d"$2" --latency -s benches/load/post_events.lua \
      "http://127.0.0.1:$PORT/v1/events" -- /tmp/tocsin-bench/mixed.ndjson "${BATCH:-1000}" 1 "${3:-0.25}" "${4:-0}"
fi
curl -s "127.0.0.1:$PORT/metrics" \
    | grep -E '^tocsin_events_(received|late|rejected)_total|^tocsin_rule_keys' || true
echo "daemon $(grep -E 'VmHWM' /proc/$PID/status | tr -s ' \t' ' ')"
# CPU per received event: unlike events/s, not skewed by other processes
# taking the cores (the load average of the machine is printed with it).
RECEIVED=$(curl -s "127.0.0.1:$PORT/metrics" | awk '/^tocsin_events_received_total/ { n += $2 } END { print n + 0 }')
# Evaluated = received and on time (late events are acknowledged, logged and
# counted, but not evaluated): the figure that shows what the engine did.
LATE=$(curl -s "127.0.0.1:$PORT/metrics" | awk '/^tocsin_events_late_total/ { n += $2 } END { print n + 0 }')
awk -v r="$RECEIVED" -v l="$LATE" -v d="${2%s}" \
    'BEGIN { printf "evaluated events/s ((received - late) / duration): %.0f\n", (r - l) / d }'
awk -v a="$CPU0" -v b="$(cpu)" -v n="$RECEIVED" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" \
    'BEGIN { printf "daemon cpu: %.2f s for %d events, %.2f us/event (load average %s)\n", b - a, n, n ? (b - a) * 1e6 / n : 0, l }'
du -sh "$D/state" | sed 's/^/state dir: /'
kill $PID
wait $PID || true
