#!/usr/bin/env python3
"""Transactional throughput against a running broker, with confluent-kafka.

For each size in --sizes (records per transaction) a transactional producer
writes --records records (100-byte values, one partition per record, round
robin over the topic's partitions) in transactions of that size, then a
non-transactional idempotent producer writes the same number; the modes are
interleaved --rounds times so that both see the same machine. Prints
records/s per mode (median over rounds) and the ratio to the plain producer,
and the end-to-end latency of a read_committed consumer (p50/p99 from
produce to consume, over the last round's transactional records).

  .venv-compat/bin/python ci/bench_transactions.py --bootstrap 127.0.0.1:9092
"""

import argparse
import statistics
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        f.result(30)


def run_transactional(bootstrap, topic, partitions, records, size):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "bench-" + uuid.uuid4().hex[:8],
                  "linger.ms": 1})
    p.init_transactions(30)
    start = time.perf_counter()
    sent = 0
    while sent < records:
        p.begin_transaction()
        for _ in range(min(size, records - sent)):
            value = b"%020.6f" % time.time() + b"." * 80
            p.produce(topic, value=value, partition=sent % partitions)
            sent += 1
        p.commit_transaction(30)
    return records / (time.perf_counter() - start)


def run_plain(bootstrap, topic, partitions, records):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 1})
    start = time.perf_counter()
    for i in range(records):
        value = b"%020.6f" % time.time() + b"." * 80
        while True:
            try:
                p.produce(topic, value=value, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    return records / (time.perf_counter() - start)


def e2e_latencies(bootstrap, topic, partitions, records, size):
    """Produce `records` in transactions of `size` while a read_committed
    consumer reads them: latency from the value's timestamp to its receipt."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex[:6],
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100})
    # From the end of each partition: only the records produced below count.
    ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    c.assign([TopicPartition(topic, p, ends[p]) for p in range(partitions)])
    lat = []
    done = threading.Event()

    def consume():
        while not done.is_set() or len(lat) < records:
            m = c.poll(0.05)
            if m is None or m.error():
                if done.is_set() and len(lat) >= records:
                    break
                continue
            lat.append(time.time() - float(m.value()[:20]))
            if len(lat) >= records:
                break

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    run_transactional(bootstrap, topic, partitions, records, size)
    done.set()
    t.join(30)
    c.close()
    lat.sort()
    if not lat:
        return None
    return lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=4)
    a = ap.parse_args()
    topic = "bench-txn-" + uuid.uuid4().hex[:6]
    create(a.bootstrap, topic, a.partitions)
    sizes = [int(s) for s in a.sizes.split(",")]
    rates = {s: [] for s in sizes}
    plain = []
    for r in range(a.rounds):
        for s in sizes:
            # Small transactions are slow: fewer records keep the run short.
            n = a.records if s >= 10 else max(500, a.records // 10)
            rates[s].append(run_transactional(a.bootstrap, topic, a.partitions, n, s))
        plain.append(run_plain(a.bootstrap, topic, a.partitions, a.records))
        print("round %d done" % (r + 1), flush=True)
    base = statistics.median(plain)
    print("\nrecords/s (median of %d rounds), 100-byte records, %d partitions:" % (a.rounds, a.partitions))
    print("  %-26s %10.0f   1.00x" % ("idempotent, no transaction", base))
    for s in sizes:
        m = statistics.median(rates[s])
        print("  %-26s %10.0f   %.3fx" % ("%d records/transaction" % s, m, m / base))
    for s in sizes:
        lat = e2e_latencies(a.bootstrap, topic, a.partitions, min(2000, a.records), s)
        if lat:
            print("  read_committed end to end, %d records/transaction: p50 %.1f ms, p99 %.1f ms" % (s, lat[0], lat[1]))


if __name__ == "__main__":
    main()
