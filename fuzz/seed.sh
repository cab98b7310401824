#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seeds from the repository: rule files,
# conformance events, configs, a real log segment and checkpoint.
set -euo pipefail
cd "$(dirname "$0")"
root=..
mkdir -p corpus/{rules,decode,body,wal,checkpoint,config}
cp "$root"/rules/*.rules "$root"/tests/conformance/diag/*.rules corpus/rules/ 2>/dev/null || true
cp "$root"/tests/cases/rules/*.rules corpus/rules/ 2>/dev/null || true
i=0
for f in "$root"/tests/conformance/cases/*/events.ndjson; do
  cp "$f" "corpus/body/$(basename "$(dirname "$f")").ndjson"
  while IFS= read -r line; do
    i=$((i + 1)); printf '%s' "$line" > "corpus/decode/$i.json"
  done < "$f"
done
cp "$root"/config/*.yaml corpus/config/
# Log segments and records built with the same framing as src/wal.
python3 - <<'PY'
import struct, zlib, json, hashlib
def s(b): return struct.pack('<I', len(b)) + b
def batch(events, key=None):
    p = b'\x01' + s(b'http') + b'\x00'
    p += (b'\x01' + s(key.encode()) + struct.pack('<H', 202) + s(b'{"accepted":1}')) if key else b'\x00'
    p += struct.pack('<I', len(events))
    for t, raw in events: p += struct.pack('<q', t) + s(raw.encode())
    return p
recs = [batch([(1000, '{"type":"a","ts":1000}'), (2000, '{"type":"b","ts":2000,"v":1}')], 'k1'), b'\x02' + struct.pack('<q', 5000)]
seg = b''
for lsn, p in enumerate(recs, 1):
    body = struct.pack('<Q', lsn) + p
    seg += struct.pack('<II', len(body), zlib.crc32(body)) + body
open('corpus/wal/segment', 'wb').write(seg)
for i, p in enumerate(recs): open(f'corpus/wal/record{i}', 'wb').write(p)
snap = {"lsn": 3, "written_at": 0, "pipeline": {"sequencer": {"max_seen": 2000, "watermark": 2000, "held": []},
        "engine": {"rules": []}, "stage": {"throttles": [], "alerts": []}, "late": 0},
        "file_offsets": [], "idempotency": [{"key": "k1", "status": 202, "body": "{}"}]}
body = json.dumps(snap).encode()
open('corpus/checkpoint/body.json', 'wb').write(body)
open('corpus/checkpoint/framed', 'wb').write(b'tocsin-checkpoint 1 sha256=' + hashlib.sha256(body).hexdigest().encode() + b'\n' + body)
PY
echo "seeded: $(find corpus -type f | wc -l) files"
