#!/usr/bin/env python3
"""Real Python Kafka clients against a running Stormlog broker.

Creates a single-partition topic, produces N messages with acks=all, reads
them back from the beginning (assign, no consumer group) and checks that
exactly the N values come back, in order. Exits 0 on success, 1 on a check
failure, 2 on bad usage.

    python3 ci/compat_clients.py --bootstrap 127.0.0.1:9092 --client kafka-python
    python3 ci/compat_clients.py --bootstrap 127.0.0.1:9092 --client confluent
    python3 ci/compat_clients.py --bootstrap ... --client kafka-python --create-only --topic t
"""

import argparse
import os
import sys
import time


def values(n):
    return ["msg-%06d" % i for i in range(n)]


class Failure(Exception):
    pass


# --- kafka-python -----------------------------------------------------------


def kp_create(bootstrap, topic, timeout):
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=timeout * 1000,
        api_version_auto_timeout_ms=10000,
    )
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def kp_produce(bootstrap, topic, msgs, timeout):
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_in_flight_requests_per_connection=1,
        request_timeout_ms=timeout * 1000,
        api_version_auto_timeout_ms=10000,
    )
    futures = [producer.send(topic, value=v.encode(), partition=0) for v in msgs]
    producer.flush(timeout=timeout)
    offsets = []
    for i, f in enumerate(futures):
        try:
            offsets.append(f.get(timeout=timeout).offset)
        except Exception as e:  # noqa: BLE001 - report any client error
            raise Failure("message %d not acknowledged: %r" % (i, e))
    producer.close(timeout=timeout)
    return offsets


def kp_consume(bootstrap, topic, n, timeout):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=max(timeout * 1000, 31000),
        api_version_auto_timeout_ms=10000,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend((r.offset, r.value.decode()) for r in records)
    got.extend(_drain(lambda: [
        (r.offset, r.value.decode())
        for rs in consumer.poll(timeout_ms=200).values()
        for r in rs
    ]))
    consumer.close()
    return got


# --- confluent-kafka --------------------------------------------------------


def ck_create(bootstrap, topic, timeout):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for f in futures.values():
        try:
            f.result(timeout=timeout)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def ck_produce(bootstrap, topic, msgs, timeout):
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "max.in.flight.requests.per.connection": 1,
        "enable.idempotence": False,
        "message.timeout.ms": timeout * 1000,
    })
    results = {}

    def report(i):
        def cb(err, msg):
            results[i] = err if err is not None else msg.offset()
        return cb

    for i, v in enumerate(msgs):
        while True:
            try:
                producer.produce(topic, value=v.encode(), partition=0, on_delivery=report(i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(timeout)
    if left:
        raise Failure("%d messages still unacknowledged after %ds" % (left, timeout))
    offsets = []
    for i in range(len(msgs)):
        r = results.get(i)
        if not isinstance(r, int):
            raise Failure("message %d not acknowledged: %r" % (i, r))
        offsets.append(r)
    return offsets


def ck_consume(bootstrap, topic, n, timeout):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        # Required by librdkafka even for assign(); nothing here commits.
        "group.id": "stormlog-compat",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []

    def batch(wait):
        out = []
        for m in consumer.consume(num_messages=500, timeout=wait):
            if m.error():
                raise Failure("consume error: %s" % m.error())
            out.append((m.offset(), m.value().decode()))
        return out

    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got.extend(batch(0.5))
    got.extend(_drain(lambda: batch(0.2)))
    consumer.close()
    return got


# --- common -----------------------------------------------------------------


def _drain(poll, seconds=1.0):
    """Whatever else arrives within `seconds` (anything is a duplicate)."""
    extra = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        extra.extend(poll())
    return extra


CLIENTS = {
    "kafka-python": (kp_create, kp_produce, kp_consume),
    "confluent": (ck_create, ck_produce, ck_consume),
}


def check(client, bootstrap, topic, n, timeout):
    create, produce, consume = CLIENTS[client]
    expected = values(n)
    create(bootstrap, topic, timeout)
    offsets = produce(bootstrap, topic, expected, timeout)
    if offsets != sorted(offsets) or len(set(offsets)) != n:
        raise Failure("acknowledged offsets are not distinct and increasing: %r..." % offsets[:10])
    got = consume(bootstrap, topic, n, timeout)
    got_values = [v for _, v in got]
    if got_values != expected:
        missing = sorted(set(expected) - set(got_values))
        extra = len(got_values) - len(set(got_values))
        first_bad = next(
            (i for i, (a, b) in enumerate(zip(got_values, expected)) if a != b), None
        )
        raise Failure(
            "read %d values, expected %d: %d missing (e.g. %s), %d duplicates, first difference at %s"
            % (len(got_values), n, len(missing), missing[:3], extra, first_bad)
        )
    got_offsets = [o for o, _ in got]
    if got_offsets != offsets:
        raise Failure("offsets read differ from the acknowledged ones")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="broker address, HOST:PORT")
    parser.add_argument("--client", required=True, choices=sorted(CLIENTS))
    parser.add_argument("--messages", type=int, default=1000, help="messages to produce (default 1000)")
    parser.add_argument("--topic", help="topic name (default compat-CLIENT-PID)")
    parser.add_argument("--timeout", type=int, default=30, help="seconds allowed per step (default 30)")
    parser.add_argument("--create-only", action="store_true", help="only create the topic (for kcat)")
    args = parser.parse_args()
    topic = args.topic or "compat-%s-%d" % (args.client, os.getpid())
    try:
        if args.create_only:
            CLIENTS[args.client][0](args.bootstrap, topic, args.timeout)
            print("created topic %s with %s" % (topic, args.client))
        else:
            check(args.client, args.bootstrap, topic, args.messages, args.timeout)
            print("%s: %d messages produced and read back in order on %s"
                  % (args.client, args.messages, topic))
    except Failure as e:
        print("%s: %s" % (args.client, e), file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - any client error is a failure
        print("%s: %s: %s" % (args.client, type(e).__name__, e or "(no detail; timed out?)"),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
