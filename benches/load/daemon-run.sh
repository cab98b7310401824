#!/bin/bash
# One daemon load test (docs/performance.md): a fresh state directory,
# `tocsin run`, wrk posting NDJSON batches, then the daemon's counters,
# its peak RSS and the state directory size; the daemon is stopped.
#
#   benches/load/daemon-run.sh CONNECTIONS DURATION [MS_PER_EVENT]
#   CONFIG=benches/load/daemon-ingest-only.yaml benches/load/daemon-run.sh 4 30s
#
# Needs target/release/tocsin, wrk, curl and /tmp/tocsin-bench/mixed.ndjson
# (python3 benches/gen_events.py --scenario mixed -n 1000000 > ...).
# Keep CONNECTIONS x 1000 x MS_PER_EVENT under max_delay (2000 ms).
set -e
cd "$(dirname "$0")/../.."
D=/tmp/tocsin-bench
rm -rf $D/state && mkdir -p $D/state
target/release/tocsin run -c "${CONFIG:-benches/load/daemon.yaml}" > $D/daemon.log 2>&1 &
PID=$!
until curl -sf 127.0.0.1:18080/readyz > /dev/null; do sleep 0.2; done
wrk -t1 -c"$1" -d"$2" --latency -s benches/load/post_events.lua \
    http://127.0.0.1:18080/v1/events -- $D/mixed.ndjson 1000 1 "${3:-0.25}"
curl -s 127.0.0.1:18080/metrics \
    | grep -E '^tocsin_events_(received|late|rejected)_total|^tocsin_rule_keys' || true
echo "daemon $(grep -E 'VmHWM' /proc/$PID/status | tr -s ' \t' ' ')"
du -sh $D/state | sed 's/^/state dir: /'
kill $PID
wait $PID || true
