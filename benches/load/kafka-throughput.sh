#!/bin/bash
# Throughput of one tocsin instance reading from a Kafka broker
# (docs/scale-out.md, "Measured throughput"): a release build, then
# benches/load/kafka-throughput.py for each rule set.
#
#   benches/load/kafka-throughput.sh [N]        (default 1000000 events)
#
# Uses CARGO_TARGET_DIR when set. Needs tests/kafka/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-1000000}"
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/tocsin"
for mode in user repartition; do
  python3 benches/load/kafka-throughput.py "$BIN" "$N" "$mode"
done
