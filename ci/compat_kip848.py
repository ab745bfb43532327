#!/usr/bin/env python3
"""KIP-848 (the consumer group protocol, `group.protocol=consumer`) with a
real client: confluent-kafka / librdkafka against a Stormlog broker.

Steps, each with its own deadline:
  1. create a 4-partition topic;
  2. consumer A joins and gets all 4 partitions;
  3. consumer B joins: A revokes two, B gets them (disjoint, 2 + 2);
  4. 40 messages are produced; A and B each read exactly their partitions'
     messages and commit them;
  5. B closes (leaves the group): A gets all 4 partitions;
  6. 20 more messages: A reads exactly those (B's commits are honoured), commits;
  7. A closes; consumer C joins, resumes from the commits: reads only 4 new ones.

Exits 0 on success, 1 with a message naming the failed step, 2 on bad usage.

    # against a running broker (started with group.initial.rebalance.delay.ms=0)
    python3 ci/compat_kip848.py --bootstrap 127.0.0.1:9092
    # or let the script start one
    python3 ci/compat_kip848.py --broker-bin target/release/stormlog-broker
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PARTITIONS = 4


class Failure(Exception):
    pass


def step(name):
    print("kip848: %s" % name, flush=True)


def deadline_loop(what, timeout, body, interval=0.0):
    """Calls body() until it returns a truthy value or `timeout` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = body()
        if result:
            return result
        if interval:
            time.sleep(interval)
    raise Failure("timed out after %ss: %s" % (timeout, what))


def consumer(bootstrap, group, name):
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "socket.timeout.ms": 10000,
        }
    )


class Member:
    """A consumer and what it read, per partition."""

    def __init__(self, bootstrap, group, topic, name):
        self.name = name
        self.c = consumer(bootstrap, group, name)
        self.c.subscribe([topic])
        self.read = []  # (partition, offset, value)

    def poll(self, t=0.1):
        msg = self.c.poll(t)
        if msg is None:
            return
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise Failure("%s: fatal consumer error: %s" % (self.name, err))
            return  # partition EOF and other informational errors
        self.read.append((msg.partition(), msg.offset(), msg.value().decode()))

    def owned(self):
        return sorted(tp.partition for tp in self.c.assignment())

    def commit(self):
        from confluent_kafka import KafkaException

        try:
            self.c.commit(asynchronous=False)
        except KafkaException as e:
            raise Failure("%s: commit failed: %s" % (self.name, e))

    def close(self):
        self.c.close()


def poll_all(members, rounds=1):
    for _ in range(rounds):
        for m in members:
            m.poll(0.05)


def create_topic(bootstrap, topic, timeout):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
        request_timeout=timeout,
    )
    try:
        futures[topic].result(timeout=timeout)
    except Exception as e:  # noqa: BLE001
        raise Failure("creating %s: %s" % (topic, e))


def produce(bootstrap, topic, prefix, per_partition, timeout):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failed = []
    sent = []
    for part in range(PARTITIONS):
        for i in range(per_partition):
            value = "%s-p%d-%03d" % (prefix, part, i)
            sent.append((part, value))
            p.produce(
                topic,
                value=value.encode(),
                partition=part,
                on_delivery=lambda err, _m: err and failed.append(err),
            )
    if p.flush(timeout) != 0 or failed:
        raise Failure("producing %s: %s undelivered" % (prefix, failed or "some"))
    return sent


def expect_values(member, sent, partitions, what):
    got = sorted(v for (_, _, v) in member.read)
    want = sorted(v for (p, v) in sent if p in partitions)
    if got != want:
        raise Failure(
            "%s: %s read %d values, expected %d (partitions %s); first differences: %s"
            % (
                what,
                member.name,
                len(got),
                len(want),
                partitions,
                sorted(set(got) ^ set(want))[:5],
            )
        )


def run_kip848(bootstrap, timeout=60):
    """The whole scenario against `bootstrap`; raises Failure on a failed step."""
    topic = "kip848-%d-%d" % (os.getpid(), int(time.time()))
    group = topic + "-group"

    step("create topic %s with %d partitions" % (topic, PARTITIONS))
    create_topic(bootstrap, topic, timeout)

    step("consumer A joins and gets all partitions")
    a = Member(bootstrap, group, topic, "kip848-a")
    deadline_loop(
        "A owning all 4 partitions",
        timeout,
        lambda: (a.poll(0.1), a.owned() == list(range(PARTITIONS)))[1],
    )

    step("consumer B joins; A revokes two; B gets them")
    b = Member(bootstrap, group, topic, "kip848-b")

    def split():
        poll_all([a, b])
        oa, ob = a.owned(), b.owned()
        if set(oa) & set(ob):
            raise Failure("partitions %s owned by A and B at once" % (set(oa) & set(ob)))
        return len(oa) == 2 and len(ob) == 2

    deadline_loop("A and B owning 2 partitions each", timeout, split)
    owned_a, owned_b = a.owned(), b.owned()
    step("A owns %s, B owns %s" % (owned_a, owned_b))

    step("produce 40 messages; each consumer reads its partitions' and commits")
    first = produce(bootstrap, topic, "one", 10, timeout)
    deadline_loop(
        "A and B reading the 40 messages",
        timeout,
        lambda: (poll_all([a, b]), len(a.read) + len(b.read) >= len(first))[1],
    )
    poll_all([a, b], rounds=5)  # anything extra would show up now
    if a.owned() != owned_a or b.owned() != owned_b:
        raise Failure("assignment moved while consuming: A %s B %s" % (a.owned(), b.owned()))
    expect_values(a, first, owned_a, "first batch")
    expect_values(b, first, owned_b, "first batch")
    a.commit()
    b.commit()

    step("B closes; A takes all partitions")
    b.close()
    a.read = []
    deadline_loop(
        "A owning all 4 partitions after B left",
        timeout,
        lambda: (a.poll(0.1), a.owned() == list(range(PARTITIONS)))[1],
    )

    step("produce 20 more; A reads exactly those (B's commits honoured)")
    second = produce(bootstrap, topic, "two", 5, timeout)
    deadline_loop(
        "A reading the 20 new messages",
        timeout,
        lambda: (a.poll(0.1), len(a.read) >= len(second))[1],
    )
    for _ in range(10):
        a.poll(0.1)
    expect_values(a, second, range(PARTITIONS), "after B left")
    a.commit()
    a.close()

    step("consumer C resumes the group from the commits")
    c = Member(bootstrap, group, topic, "kip848-c")
    deadline_loop(
        "C owning all 4 partitions",
        timeout,
        lambda: (c.poll(0.1), c.owned() == list(range(PARTITIONS)))[1],
    )
    third = produce(bootstrap, topic, "three", 1, timeout)
    deadline_loop("C reading 4 new messages", timeout, lambda: (c.poll(0.1), len(c.read) >= 4)[1])
    for _ in range(10):
        c.poll(0.1)
    expect_values(c, third, range(PARTITIONS), "resume")
    c.close()
    step("PASS")


def start_broker(binary, timeout):
    """Starts a broker on a free port; returns (process, address, workdir)."""
    work = tempfile.mkdtemp(prefix="stormlog-kip848.")
    config = os.path.join(work, "broker.properties")
    with open(config, "w") as f:
        f.write("group.initial.rebalance.delay.ms=0\n")
        f.write("group.consumer.heartbeat.interval.ms=1000\n")
    out = open(os.path.join(work, "broker.out"), "w")
    log = open(os.path.join(work, "broker.log"), "w")
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "data"),
         "--config", config, "--shutdown-timeout", "5"],
        stdout=out,
        stderr=log,
    )

    def address():
        if proc.poll() is not None:
            raise Failure("broker exited (%s); see %s" % (proc.returncode, log.name))
        with open(out.name) as f:
            m = re.search(r"^stormlog-broker listening on (\S+)", f.read(), re.M)
        return m and m.group(1)

    return proc, deadline_loop("the broker to listen", timeout, address, 0.1), work


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--bootstrap", help="HOST:PORT of a running broker")
    where.add_argument("--broker-bin", help="start this stormlog-broker binary")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per step")
    ap.add_argument("--keep", action="store_true", help="keep the broker's directory")
    args = ap.parse_args()
    proc, work, status = None, None, 1
    try:
        bootstrap = args.bootstrap
        if args.broker_bin:
            proc, bootstrap, work = start_broker(args.broker_bin, args.timeout)
            step("broker %s on %s (logs in %s)" % (args.broker_bin, bootstrap, work))
        run_kip848(bootstrap, args.timeout)
        status = 0
    except Failure as e:
        print("kip848: FAIL: %s" % e, file=sys.stderr, flush=True)
        if work:
            print("kip848: broker logs kept in %s" % work, file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if work and status == 0 and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
