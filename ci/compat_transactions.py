#!/usr/bin/env python3
"""Transactions of real clients against a Stormlog broker (ci/compat runs it).

Checks (--check):
  commit-abort  a transactional producer (transactional.id) runs 30
                transactions over two partitions, committing two of every
                three and aborting the third (its records flushed to the log
                first). A read_committed consumer must read every committed
                record once and no aborted one; a read_uncommitted consumer
                reads both.
  kill          a broker of its own (free port, fresh data dir,
                transaction.timeout.ms 3000, the abort check every second)
                is killed with SIGKILL while a transaction is open, and
                started again on the same data. The producer never returns.
                A second producer then commits records: a read_committed
                consumer must get them once the open transaction times out
                (the last stable offset moves on: no hanging transaction),
                and must never see the abandoned transaction's records.

Clients (--client): confluent (confluent-kafka), aiokafka, kafkajs.
Prints one "compat: PASS/FAIL <client> transactions <check>" line; exits 1
on failure.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compat_idempotence import Failure, OwnBroker, create_topic, say  # noqa: E402

TRANSACTIONS = 30


def plan(topic):
    """(values, commit) per transaction: every third aborts."""
    out = []
    for i in range(TRANSACTIONS):
        values = ["%s-%d-%d" % (topic, i, j) for j in range(4)]
        out.append((values, i % 3 != 2))
    return out


def confluent_run(bootstrap, topic, txn_id, transactions, timeout_s):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": 10000})
    p.init_transactions(timeout_s)
    for values, commit in transactions:
        p.begin_transaction()
        for j, v in enumerate(values):
            p.produce(topic, value=v.encode(), key=str(j).encode(), partition=j % 2)
        if commit:
            p.commit_transaction(timeout_s)
        else:
            p.flush(timeout_s)  # in the log: else librdkafka purges them unsent
            p.abort_transaction(timeout_s)


def aiokafka_run(bootstrap, topic, txn_id, transactions, timeout_s):
    from aiokafka import AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id,
                             request_timeout_ms=timeout_s * 1000)
        await p.start()
        try:
            for values, commit in transactions:
                await p.begin_transaction()
                futures = [await p.send(topic, value=v.encode(), key=str(j).encode(), partition=j % 2)
                           for j, v in enumerate(values)]
                for f in futures:
                    await f
                if commit:
                    await p.commit_transaction()
                else:
                    await p.abort_transaction()
        finally:
            await p.stop()

    asyncio.run(asyncio.wait_for(run(), timeout_s * 4))


def kafkajs_run(bootstrap, topic, txn_id, transactions, node_path, timeout_s):
    script = r"""
const { Kafka, logLevel } = require('kafkajs');
const [bootstrap, topic, txnId, planJson] = process.argv.slice(1);
const plan = JSON.parse(planJson);
(async () => {
  const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ transactionalId: txnId, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (const [values, commit] of plan) {
    const txn = await producer.transaction();
    await txn.send({ topic, messages: values.map((v, j) => ({ key: String(j), value: v, partition: j % 2 })) });
    if (commit) { await txn.commit(); } else { await txn.abort(); }
  }
  await producer.disconnect();
})().catch(e => { console.error(e); process.exit(1); });
"""
    env = dict(os.environ, NODE_PATH=node_path)
    r = subprocess.run(["node", "-e", script, bootstrap, topic, txn_id, json.dumps(transactions)],
                       env=env, capture_output=True, text=True, timeout=timeout_s * 4)
    if r.returncode != 0:
        raise Failure("kafkajs transactional producer failed: %s" % r.stderr.strip()[-400:])


def read(bootstrap, topic, isolation, want, deadline_s):
    """Every value of both partitions from the start, with confluent-kafka,
    until `want` values came or the deadline passed (then a little more, to
    catch extras)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-txn-%s" % uuid.uuid4().hex[:6],
                  "isolation.level": isolation, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got = []
    deadline = time.time() + deadline_s
    while time.time() < deadline and len(got) < want:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.value().decode())
    extra = time.time() + 1.0
    while time.time() < extra:
        m = c.poll(0.1)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    return got


def commit_abort_check(bootstrap, client, node_path, timeout_s):
    topic = "compat-txn-%s-%s" % (client, uuid.uuid4().hex[:6])
    create_topic_2(bootstrap, topic)
    transactions = plan(topic)
    txn_id = "compat-txn-" + topic
    started = time.time()
    if client == "confluent":
        confluent_run(bootstrap, topic, txn_id, transactions, timeout_s)
    elif client == "aiokafka":
        aiokafka_run(bootstrap, topic, txn_id, transactions, timeout_s)
    else:
        kafkajs_run(bootstrap, topic, txn_id, transactions, node_path, timeout_s)
    took = time.time() - started
    committed = [v for vs, c in transactions if c for v in vs]
    aborted = [v for vs, c in transactions if not c for v in vs]
    rc = read(bootstrap, topic, "read_committed", len(committed), timeout_s)
    if set(rc) & set(aborted):
        raise Failure("read_committed read %d aborted records (e.g. %s)"
                      % (len(set(rc) & set(aborted)), sorted(set(rc) & set(aborted))[0]))
    if sorted(rc) != sorted(committed):
        raise Failure("read_committed read %d records, %d distinct, of %d committed"
                      % (len(rc), len(set(rc)), len(committed)))
    ru = read(bootstrap, topic, "read_uncommitted", len(committed) + len(aborted), timeout_s)
    missing = set(committed) - set(ru)
    if missing:
        raise Failure("read_uncommitted missed %d committed records" % len(missing))
    return "%d transactions in %.1f s; read_committed: %d committed records once, none of %d aborted; read_uncommitted: %d" % (
        TRANSACTIONS, took, len(rc), len(aborted), len(ru))


def create_topic_2(bootstrap, topic):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        f.result(20)


def kill_check(binary, timeout_s):
    from confluent_kafka import Producer

    work = tempfile.mkdtemp(prefix="stormlog-txn-kill-")
    broker = OwnBroker(binary, work)
    with open(os.path.join(work, "broker.properties"), "a") as f:
        f.write("transaction.state.log.replication.factor=1\n")
        f.write("transaction.state.log.num.partitions=4\n")
        f.write("transaction.abort.timed.out.transaction.cleanup.interval.ms=1000\n")
    try:
        broker.start()
        topic = "compat-txn-kill"
        create_topic_2(broker.bootstrap, topic)
        abandoned = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "compat-abandoned",
                              "transaction.timeout.ms": 3000})
        abandoned.init_transactions(timeout_s)
        abandoned.begin_transaction()
        gone = ["abandoned-%d" % i for i in range(10)]
        for i, v in enumerate(gone):
            abandoned.produce(topic, value=v.encode(), partition=i % 2)
        abandoned.flush(timeout_s)
        broker.kill()
        killed_at = time.time()
        broker.start()
        second = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "compat-after-kill"})
        second.init_transactions(timeout_s)
        second.begin_transaction()
        after = ["after-%d" % i for i in range(10)]
        for i, v in enumerate(after):
            second.produce(topic, value=v.encode(), partition=i % 2)
        second.commit_transaction(timeout_s)
        got = read(broker.bootstrap, topic, "read_committed", len(after), timeout_s)
        waited = time.time() - killed_at
        if set(got) & set(gone):
            raise Failure("read_committed read the abandoned transaction's records")
        if sorted(got) != sorted(after):
            raise Failure("read_committed read %d of %d committed records %.1f s after the kill: the open transaction hangs"
                          % (len(set(got) & set(after)), len(after), waited))
        del abandoned
        return "the transaction open at the kill -9 was aborted by its timeout; committed records readable %.1f s after the kill" % waited
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="the shared broker (commit-abort check)")
    ap.add_argument("--broker-binary", help="stormlog-broker to start and kill (kill check)")
    ap.add_argument("--client", required=True, choices=["confluent", "aiokafka", "kafkajs"])
    ap.add_argument("--node-path", default=".node-compat/node_modules", help="NODE_PATH holding kafkajs")
    ap.add_argument("--check", required=True, choices=["commit-abort", "kill"])
    ap.add_argument("--timeout", type=int, default=30)
    a = ap.parse_args()
    name = "%s transactions %s" % (a.client, a.check)
    try:
        if a.check == "commit-abort":
            detail = commit_abort_check(a.bootstrap, a.client, a.node_path, a.timeout)
        else:
            detail = kill_check(a.broker_binary, a.timeout)
    except Failure as e:
        say("FAIL %s: %s" % (name, e))
        return 1
    except Exception as e:  # noqa: BLE001 - any client error is a failure
        say("FAIL %s: %r" % (name, e))
        return 1
    say("PASS %s (%s)" % (name, detail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
