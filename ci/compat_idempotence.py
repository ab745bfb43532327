#!/usr/bin/env python3
"""Idempotent producers of real Kafka clients against a real stormlog-broker.

Checks (one PASS/FAIL line each):
  default  kafka-python with its DEFAULT settings (KafkaProducer(bootstrap)
           only) produces and every record is read back.
  produce  produce keyed records with idempotence on, read them back: every
           record exactly once, per key in order.
  kill     a broker of its own (free port, fresh data dir) is killed with
           SIGKILL while the client produces (acks=all, idempotence on) and
           started again on the same port and data: every ACKNOWLEDGED record
           is in the log exactly once, no record at all is in it twice, and
           each key's records are in the order they were produced.

Every step has a deadline: a broken broker fails in seconds, never hangs.
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PARTITIONS = 3
KEYS = 12


class Failure(Exception):
    pass


def say(line):
    print("compat: " + line, flush=True)


def create_topic(bootstrap, topic):
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                             api_version_auto_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def read_all(bootstrap, topic, deadline_s=60):
    """Every record of the topic: [(partition, offset, key, value)]."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-idem-reader",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        ends = {}
        for p in range(PARTITIONS):
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        got = []
        pos = {p: 0 for p in range(PARTITIONS)}
        deadline = time.time() + deadline_s
        while any(pos[p] < ends[p] for p in ends):
            if time.time() > deadline:
                raise Failure("reading back timed out at %s of %s" % (pos, ends))
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                raise Failure("read error: %s" % m.error())
            got.append((m.partition(), m.offset(), m.key().decode(), m.value().decode()))
            pos[m.partition()] = m.offset() + 1
        return got
    finally:
        c.close()


def judge(got, acked, produced_order):
    """acked: {value: (partition, offset), or None when the client does not
    tell}; produced_order: per key, values in order."""
    seen = {}
    for (p, off, _key, value) in got:
        if value in seen:
            raise Failure("value %s is in the log twice: %s and %s" % (value, seen[value], (p, off)))
        seen[value] = (p, off)
    missing = [v for v in acked if v not in seen]
    if missing:
        raise Failure("%d acknowledged records are missing, e.g. %s" % (len(missing), missing[:3]))
    wrong = [v for v, at in acked.items() if at is not None and seen[v] != at]
    if wrong:
        v = wrong[0]
        raise Failure("%d records were acknowledged at other offsets than they sit at, e.g. %s: %s vs %s"
                      % (len(wrong), v, acked[v], seen[v]))
    by_key = {}
    for (p, off, key, value) in sorted(got):
        by_key.setdefault(key, []).append(int(value.split(":")[1]))
    for key, ns in by_key.items():
        if ns != sorted(ns):
            raise Failure("key %s read out of order: %s" % (key, ns[:20]))
    return len(seen)


# --- producers: each produces (key, value) pairs and reports acks -----------

def kp_producer(bootstrap, timeout_s):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                      api_version_auto_timeout_ms=10000, request_timeout_ms=10000)
    acked = {}
    lock = threading.Lock()

    def send(topic, key, value):
        fut = p.send(topic, key=key.encode(), value=value.encode())

        def ok(md):
            with lock:
                acked[value] = (md.partition, md.offset)
        fut.add_callback(ok)

    def finish():
        p.flush(timeout=timeout_s)
        p.close(timeout=10)
    return send, finish, acked


def ck_producer(bootstrap, timeout_s):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": timeout_s * 1000,
                  "max.in.flight.requests.per.connection": 5, "log_level": 0})
    acked = {}

    def cb(err, msg):
        if err is None:
            acked[msg.value().decode()] = (msg.partition(), msg.offset())

    def send(topic, key, value):
        while True:
            try:
                p.produce(topic, key=key.encode(), value=value.encode(), on_delivery=cb)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)

    def finish():
        left = p.flush(timeout_s)
        if left:
            raise Failure("%d records still undelivered after %d s" % (left, timeout_s))
    return send, finish, acked


def aio_produce_all(bootstrap, topic, count, timeout_s):
    from aiokafka import AIOKafkaProducer

    acked = {}
    order = {}

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                             request_timeout_ms=10000)
        await p.start()
        try:
            futs = []
            for i in range(count):
                key = "k%d" % (i % KEYS)
                value = "%s:%d" % (key, i)
                order.setdefault(key, []).append(value)
                futs.append((value, await p.send(topic, key=key.encode(), value=value.encode())))
            for value, f in futs:
                md = await asyncio.wait_for(f, timeout_s)
                acked[value] = (md.partition, md.offset)
        finally:
            await p.stop()
    asyncio.run(run())
    return acked, order


def default_check(bootstrap, count, timeout_s):
    from kafka import KafkaProducer

    topic = "compat-default-%d" % os.getpid()
    create_topic(bootstrap, topic)
    p = KafkaProducer(bootstrap_servers=bootstrap)
    acked, order = {}, {}
    futs = []
    for i in range(count):
        key = "k%d" % (i % KEYS)
        value = "%s:%d" % (key, i)
        order.setdefault(key, []).append(value)
        futs.append((value, p.send(topic, key=key.encode(), value=value.encode())))
    for value, f in futs:
        md = f.get(timeout=timeout_s)
        acked[value] = (md.partition, md.offset)
    p.close(timeout=10)
    n = judge(read_all(bootstrap, topic), acked, order)
    return "%d records, default settings" % n


def kafkajs_produce_all(bootstrap, topic, count, node_path):
    env = dict(os.environ, NODE_PATH=node_path)
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(["node", os.path.join(here, "compat_kafkajs_idempotent.js"),
                          "--bootstrap", bootstrap, "--topic", topic, "--count", str(count),
                          "--keys", str(KEYS)], env=env, capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or "DONE" not in lines:
        raise Failure("kafkajs producer: %s %s" % ([l for l in lines if l.startswith("ERROR")], out.stderr[-500:]))
    acked = {l.split()[1]: None for l in lines if l.startswith("ACK ")}
    order = {}
    for i in range(count):
        key = "k%d" % (i % KEYS)
        order.setdefault(key, []).append("%s:%d" % (key, i))
    return acked, order


def produce_check(bootstrap, client, count, timeout_s, node_path):
    topic = "compat-idem-%s-%d" % (client, os.getpid())
    create_topic(bootstrap, topic)
    if client == "kafkajs":
        acked, order = kafkajs_produce_all(bootstrap, topic, count, node_path)
    elif client == "aiokafka":
        acked, order = aio_produce_all(bootstrap, topic, count, timeout_s)
    else:
        make = kp_producer if client == "kafka-python" else ck_producer
        send, finish, acked = make(bootstrap, timeout_s)
        order = {}
        for i in range(count):
            key = "k%d" % (i % KEYS)
            value = "%s:%d" % (key, i)
            order.setdefault(key, []).append(value)
            send(topic, key, value)
        finish()
    if len(acked) != count:
        raise Failure("%d of %d records acknowledged" % (len(acked), count))
    n = judge(read_all(bootstrap, topic), acked, order)
    return "%d records, each once, in order per key" % n


# --- the kill check ----------------------------------------------------------

class OwnBroker:
    """A broker on a fixed port and data dir, killed and started again."""

    def __init__(self, binary, work):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.binary = binary
        self.work = work
        self.proc = None
        with open(os.path.join(work, "broker.properties"), "w") as f:
            f.write("offsets.topic.replication.factor=1\n")

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        log = open(os.path.join(self.work, "broker.log"), "a")
        out = open(os.path.join(self.work, "broker.out"), "a")
        deadline = time.time() + 20
        while True:
            self.proc = subprocess.Popen(
                [self.binary, "--config", os.path.join(self.work, "broker.properties"),
                 "--listen", self.bootstrap, "--data-dir", os.path.join(self.work, "data"),
                 "--shutdown-timeout", "5"], stdout=out, stderr=log)
            # Ready once it accepts connections (it may still be recovering:
            # requests wait for that).
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            if time.time() >= deadline:
                raise Failure("broker did not start on %s" % self.bootstrap)
            time.sleep(0.2)  # the port may still be held by the killed one

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def kill_check(binary, client, seconds, rate, timeout_s):
    work = tempfile.mkdtemp(prefix="stormlog-idem-kill-")
    broker = OwnBroker(binary, work)
    broker.start()
    try:
        topic = "compat-idem-kill-%s" % client
        create_topic(broker.bootstrap, topic)
        make = kp_producer if client == "kafka-python" else ck_producer
        send, finish, acked = make(broker.bootstrap, timeout_s)
        order = {}
        total = int(seconds * rate)
        kill_at, restart_at = total // 3, total // 3 + int(rate)  # down for about 1 s
        start = time.time()
        for i in range(total):
            if i == kill_at:
                broker.kill()
            if i == restart_at:
                broker.start()
            key = "k%d" % (i % KEYS)
            value = "%s:%d" % (key, i)
            order.setdefault(key, []).append(value)
            send(topic, key, value)
            # Paced: the load goes on across the kill.
            ahead = start + (i + 1) / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
        finish()
        if len(acked) < total // 2:
            raise Failure("only %d of %d records acknowledged" % (len(acked), total))
        got = read_all(broker.bootstrap, topic)
        n = judge(got, acked, order)
        return "%d of %d records acknowledged across a kill -9; %d in the log, each once, in order per key" % (
            len(acked), total, n)
    except Failure:
        with open(os.path.join(work, "broker.log")) as log:
            sys.stderr.write(log.read()[-4000:])
        raise
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="the shared broker (produce check)")
    ap.add_argument("--broker-binary", help="stormlog-broker to start and kill (kill check)")
    ap.add_argument("--client", required=True, choices=["kafka-python", "confluent", "aiokafka", "kafkajs"])
    ap.add_argument("--node-path", default=".node-compat/node_modules", help="NODE_PATH holding kafkajs")
    ap.add_argument("--check", required=True, choices=["default", "produce", "kill"])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--timeout", type=int, default=60)
    a = ap.parse_args()
    name = "%s idempotent %s" % (a.client, a.check)
    try:
        if a.check == "default":
            detail = default_check(a.bootstrap, a.messages, a.timeout)
        elif a.check == "produce":
            detail = produce_check(a.bootstrap, a.client, a.messages, a.timeout, a.node_path)
        else:
            detail = kill_check(a.broker_binary, a.client, a.seconds, a.rate, a.timeout)
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
