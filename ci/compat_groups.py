#!/usr/bin/env python3
"""Consumer groups with real Kafka clients against a running Stormlog broker.

For one client, three checks, each printed as one line
`compat: PASS|FAIL|SKIP CLIENT CHECK (detail)`:

  group-resume  a fresh 3-partition topic gets keyed messages (12 keys, each
                pinned to one partition); a consumer subscribes with a fresh
                group, must read every key's messages exactly once and in
                order, commits, reports its committed offsets (they must equal
                the partitions' ends) and closes; more messages are produced; a
                new consumer in the same group must read exactly the new ones.
  group-split   two consumers (separate processes) in one group on a fresh
                4-partition topic: their assignments must be disjoint, both
                non-empty and cover every partition.
  group-kill    the second consumer's process is killed (SIGKILL, no
                LeaveGroup): the first must own every partition within the
                session timeout (plus a few heartbeats of slack).

Every consumer runs in its own process ("worker"), started by this script:
`compat_groups.py worker ...` for the Python clients, `node
ci/compat_kafkajs.js ...` for kafkajs, `kcat -G ...` for kcat. A worker
reports on stdout, one event per line:

  ASSIGNED 0,2         its whole current assignment (empty: "ASSIGNED")
  MSG P OFFSET KEY VALUE
  COMMITTED 0=20,1=20  committed offsets read back after its commit
  DONE                 drain mode: committed and closed
  ERROR text           a client error; the worker exits non-zero

and logs on stderr. Every step has a deadline, so a broken broker fails in
seconds to a minute instead of hanging. Messages are produced with
confluent-kafka to explicit partitions, the same for every client.

Clients: kafka-python, confluent (classic protocol, eager range/roundrobin
assignors), confluent-cooperative (classic protocol, cooperative-sticky
assignor: incremental rebalances), confluent-consumer
(`group.protocol=consumer`, KIP-848: skipped unless the broker advertises
ConsumerGroupHeartbeat), aiokafka, kcat, kafkajs.

    python3 ci/compat_groups.py --bootstrap 127.0.0.1:9092 --client kafka-python
    python3 ci/compat_groups.py --bootstrap ... --client kafkajs --node-path .node-compat/node_modules
Exits 0 when no check failed, 1 otherwise.
"""

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = 12
SESSION_MS = 6000  # the broker's group.min.session.timeout.ms default
HEARTBEAT_MS = 1000
KCAT_AUTO_COMMIT_S = 5  # librdkafka's auto.commit.interval.ms default
JOIN_TIMEOUT = 20  # seconds for a first assignment (initial rebalance delay is 0)
CLIENTS = ["kafka-python", "confluent", "confluent-cooperative", "confluent-consumer", "aiokafka", "kcat",
           "kafkajs"]
LABEL = {
    "confluent-consumer": "confluent[group.protocol=consumer]",
    "confluent-cooperative": "confluent[cooperative-sticky]",
}


def key_name(i):
    return "k%02d" % i


# =============================================================================
# Workers: one consumer each, in its own process.
# =============================================================================


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fatal(what):
    """Report a client error and exit at once: a close() on a broken broker
    may hang, and the orchestrator only needs the error line."""
    emit("ERROR " + " ".join(str(what).split()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


class Drain:
    """Drain mode bookkeeping: stop once `expect` messages arrived and a short
    quiet period saw nothing more (anything more is a duplicate to report)."""

    def __init__(self, expect, extra_seconds=1.5):
        self.expect = expect
        self.got = 0
        self.extra_seconds = extra_seconds
        self.reached_at = None

    def count(self, n):
        self.got += n
        if self.reached_at is None and self.got >= self.expect:
            self.reached_at = time.monotonic()

    def finished(self):
        return self.reached_at is not None and time.monotonic() - self.reached_at >= self.extra_seconds


def fmt_assignment(parts):
    return "ASSIGNED " + ",".join(str(p) for p in sorted(parts))


def fmt_committed(committed):
    return "COMMITTED " + ",".join("%d=%d" % (p, o) for p, o in sorted(committed.items()))


def worker_kafka_python(a):
    import logging

    from kafka import KafkaConsumer

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="kafka-python %(levelname)s %(name)s: %(message)s")
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=a.bootstrap,
            group_id=a.group,
            client_id=a.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=a.session_ms,
            heartbeat_interval_ms=HEARTBEAT_MS,
            request_timeout_ms=30000,
            api_version_auto_timeout_ms=10000,
        )
        consumer.subscribe([a.topic])
    except Exception as e:  # noqa: BLE001
        fatal("%s: %s" % (type(e).__name__, e))
    drain = Drain(a.expect)
    last = None
    while True:
        try:
            batch = consumer.poll(timeout_ms=200)
        except Exception as e:  # noqa: BLE001
            fatal("poll: %s: %s" % (type(e).__name__, e))
        parts = frozenset(tp.partition for tp in consumer.assignment())
        if parts != last:
            emit(fmt_assignment(parts))
            last = parts
        for tp, records in batch.items():
            for r in records:
                emit("MSG %d %d %s %s" % (tp.partition, r.offset, r.key.decode(), r.value.decode()))
            drain.count(len(records))
        if a.mode == "member" and batch:
            # Commit what was read before polling again (the next poll may
            # rebalance): the check expects no re-reads across owners.
            try:
                consumer.commit()
                emit(fmt_committed({tp.partition: rs[-1].offset + 1 for tp, rs in batch.items() if rs}))
            except Exception as e:  # noqa: BLE001
                print("kafka-python commit failed: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
        if a.mode == "drain" and drain.finished():
            break
    try:
        consumer.commit()
        tps = list(consumer.assignment())
        emit(fmt_committed({tp.partition: consumer.committed(tp) for tp in tps}))
        consumer.close()
    except Exception as e:  # noqa: BLE001
        fatal("commit/close: %s: %s" % (type(e).__name__, e))
    emit("DONE")


def worker_confluent(a, protocol, assignor=None):
    from confluent_kafka import Consumer, KafkaException

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": a.name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "group.protocol": protocol,
        "error_cb": lambda err: print("confluent error_cb: %s" % err, file=sys.stderr, flush=True),
    }
    if protocol == "classic":
        # With KIP-848 these are the broker's (group.consumer.*) and librdkafka
        # refuses them.
        conf["session.timeout.ms"] = a.session_ms
        conf["heartbeat.interval.ms"] = HEARTBEAT_MS
    if assignor:
        conf["partition.assignment.strategy"] = assignor
    try:
        consumer = Consumer(conf)
        consumer.subscribe([a.topic])
    except Exception as e:  # noqa: BLE001
        fatal("%s: %s" % (type(e).__name__, e))
    drain = Drain(a.expect)
    last = None
    while True:
        try:
            msgs = consumer.consume(num_messages=500, timeout=0.2)
            parts = frozenset(tp.partition for tp in consumer.assignment())
        except KafkaException as e:
            fatal("consume: %s" % e)
        if parts != last:
            emit(fmt_assignment(parts))
            last = parts
        n, read = 0, {}
        for m in msgs:
            if m.error():
                if m.error().fatal():
                    fatal("consume: %s" % m.error())
                print("confluent consume error: %s" % m.error(), file=sys.stderr, flush=True)
                continue
            emit("MSG %d %d %s %s" % (m.partition(), m.offset(), m.key().decode(), m.value().decode()))
            read[m.partition()] = m.offset() + 1
            n += 1
        drain.count(n)
        if a.mode == "member" and read:
            try:
                consumer.commit(asynchronous=False)
                emit(fmt_committed(read))
            except KafkaException as e:
                print("confluent commit failed: %s" % e, file=sys.stderr, flush=True)
        if a.mode == "drain" and drain.finished():
            break
    try:
        consumer.commit(asynchronous=False)
        tps = consumer.committed(consumer.assignment(), timeout=10)
        emit(fmt_committed({tp.partition: tp.offset for tp in tps}))
        consumer.close()
    except Exception as e:  # noqa: BLE001
        fatal("commit/close: %s: %s" % (type(e).__name__, e))
    emit("DONE")


def worker_aiokafka(a):
    import asyncio
    import logging

    from aiokafka import AIOKafkaConsumer

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="aiokafka %(levelname)s %(name)s: %(message)s")

    async def run():
        consumer = AIOKafkaConsumer(
            a.topic,
            bootstrap_servers=a.bootstrap,
            group_id=a.group,
            client_id=a.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=a.session_ms,
            heartbeat_interval_ms=HEARTBEAT_MS,
            request_timeout_ms=30000,
        )
        try:
            await consumer.start()
        except Exception as e:  # noqa: BLE001
            fatal("start: %s: %s" % (type(e).__name__, e))
        drain = Drain(a.expect)
        last = None
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=200)
            except Exception as e:  # noqa: BLE001
                fatal("getmany: %s: %s" % (type(e).__name__, e))
            parts = frozenset(tp.partition for tp in consumer.assignment())
            if parts != last:
                emit(fmt_assignment(parts))
                last = parts
            for tp, records in batch.items():
                for r in records:
                    emit("MSG %d %d %s %s" % (tp.partition, r.offset, r.key.decode(), r.value.decode()))
                drain.count(len(records))
            if a.mode == "member" and batch:
                try:
                    await consumer.commit()
                    emit(fmt_committed({tp.partition: rs[-1].offset + 1 for tp, rs in batch.items() if rs}))
                except Exception as e:  # noqa: BLE001
                    print("aiokafka commit failed: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            if a.mode == "drain" and drain.finished():
                break
        try:
            await consumer.commit()
            committed = {}
            for tp in consumer.assignment():
                committed[tp.partition] = await consumer.committed(tp)
            emit(fmt_committed(committed))
            await consumer.stop()
        except Exception as e:  # noqa: BLE001
            fatal("commit/stop: %s: %s" % (type(e).__name__, e))
        emit("DONE")

    asyncio.run(run())


def worker_main(a):
    def on_alarm(signum, frame):
        fatal("worker deadline of %ds passed (still waiting on the client)" % a.deadline)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(a.deadline)
    if a.client == "kafka-python":
        worker_kafka_python(a)
    elif a.client == "confluent":
        worker_confluent(a, "classic")
    elif a.client == "confluent-cooperative":
        worker_confluent(a, "classic", "cooperative-sticky")
    elif a.client == "confluent-consumer":
        worker_confluent(a, "consumer")
    elif a.client == "aiokafka":
        worker_aiokafka(a)
    else:
        fatal("no Python worker for %s" % a.client)
    sys.stdout.flush()
    os._exit(0)


# =============================================================================
# The orchestrator.
# =============================================================================


class Worker:
    """A consumer process and what it reported."""

    def __init__(self, name, argv, env=None, kcat=False):
        self.name = name
        self.argv = argv
        self.kcat = kcat
        self.cond = threading.Condition()
        self.assignment = None  # latest reported, frozenset; None: never assigned
        self.ever_assigned = False
        self.msgs = []  # (partition, offset, key, value)
        self.committed = None
        self.done = False
        self.errors = []
        self.log = []  # stderr and unrecognised stdout, for failure reports
        self.rc = None
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, start_new_session=True, env=env, errors="replace",
        )
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._stdout_line), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._stderr_line), daemon=True),
        ]
        for t in self._threads:
            t.start()
        threading.Thread(target=self._reap, daemon=True).start()

    def _read(self, stream, handle):
        for line in stream:
            line = line.rstrip("\n")
            with self.cond:
                handle(line)
                self.cond.notify_all()

    def _reap(self):
        rc = self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        with self.cond:
            self.rc = rc
            if self.kcat and rc == 0:
                self.done = True  # kcat -e: exited at the end, committed on close
            self.cond.notify_all()

    def _set_assignment(self, parts):
        self.assignment = frozenset(parts)
        if self.assignment:
            self.ever_assigned = True

    def _stdout_line(self, line):
        word, _, rest = line.partition(" ")
        if word == "ASSIGNED":
            self._set_assignment(int(p) for p in rest.split(",") if p.strip())
        elif word == "MSG":
            p, off, key, value = rest.split(" ", 3)
            self.msgs.append((int(p), int(off), key, value))
        elif word == "COMMITTED":
            self.committed = dict(self.committed or {})
            for item in filter(None, rest.split(",")):
                p, o = item.split("=")
                self.committed[int(p)] = int(o) if o not in ("None", "null", "") else None
        elif word == "DONE":
            self.done = True
        elif word == "ERROR":
            self.errors.append(rest)
        else:
            self.log.append(line)

    def _stderr_line(self, line):
        self.log.append(line)
        if self.kcat:
            self._kcat_stderr(line)

    def _kcat_stderr(self, line):
        # "% Group G rebalanced (memberid M): assigned: T [0], T [1]"
        # "% Group G rebalanced (memberid M): revoked: T [0], T [1]"
        # incremental: "... incremental assignment|revoke of N partition(s) (...): T [0], ..."
        if line.startswith("% ERROR") or line.startswith("%3|") or "FAIL" in line:
            self.errors.append(line)
        if "rebalanced" not in line:
            return
        parts = set()
        for chunk in line.split("["):
            head, sep, _ = chunk.partition("]")
            if sep and head.strip().isdigit():
                parts.add(int(head))
        current = set(self.assignment or ())
        if "): assigned: " in line:
            self._set_assignment(parts)
        elif "): revoked: " in line:
            self._set_assignment(set())
        elif "incremental assignment" in line:
            self._set_assignment(current | parts)
        elif "incremental revoke" in line:
            self._set_assignment(current - parts)

    def wait(self, pred, timeout):
        """Wait until pred() holds (under the lock) or the process exits or
        the timeout passes; returns pred()'s final value."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                if pred():
                    return True
                left = end - time.monotonic()
                if left <= 0 or (self.rc is not None and not pred()):
                    return pred()
                self.cond.wait(min(left, 0.2))

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self):
        """Ask nicely, then kill; bounded."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def why(self, lines=6):
        """The worker's errors and last log lines, for a FAIL line."""
        out = list(self.errors[-3:])
        tail = [l for l in self.log if l.strip() and "CONFWARN" not in l][-lines:]
        out += ["log: " + (l if len(l) < 400 else l[:400] + "...") for l in tail if l not in out]
        if self.rc is not None:
            out.append("exited %d" % self.rc)
        return "; ".join(out) if out else "no output"


class Failure(Exception):
    pass


class Groups:
    def __init__(self, args):
        self.a = args
        self.bootstrap = args.bootstrap
        self.client = args.client
        self.label = LABEL.get(args.client, args.client)
        self.tag = "%s-%d" % (args.client, os.getpid())
        self.results = []
        self.workers = []

    # --- helpers -------------------------------------------------------------

    def say(self, status, check, detail):
        line = "compat: %s %s %s (%s)" % (status, self.label, check, detail)
        print(line, flush=True)
        self.results.append(status)

    def note(self, text):
        print("compat:   %s: %s" % (self.label, text), flush=True)

    def create_topic(self, topic, partitions):
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                      operation_timeout=20, request_timeout=20)
        for f in futures.values():
            try:
                f.result(timeout=30)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise Failure("creating topic %s: %s" % (topic, e))

    def produce(self, topic, partitions, seqs):
        """Keyed messages `kNN:SEQ` for every key and seq, key i to partition
        i % partitions. Returns {partition: end offset}."""
        from confluent_kafka import Producer

        producer = Producer({
            "bootstrap.servers": self.bootstrap,
            "log_level": 3,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": False,
            "max.in.flight.requests.per.connection": 1,
            "message.timeout.ms": 30000,
        })
        ends, errors = {}, []

        def cb(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                p = msg.partition()
                ends[p] = max(ends.get(p, 0), msg.offset() + 1)

        for seq in seqs:
            for i in range(KEYS):
                k = key_name(i)
                producer.produce(topic, key=k.encode(), value=("%s:%05d" % (k, seq)).encode(),
                                 partition=i % partitions, on_delivery=cb)
            producer.poll(0)
        left = producer.flush(40)
        if left or errors:
            raise Failure("producing to %s: %d unacknowledged, errors %s" % (topic, left, errors[:3]))
        return ends

    def start(self, name, group, topic, mode, expect=0, deadline=90):
        c = self.client
        if c == "kcat":
            argv = ["kcat", "-b", self.bootstrap, "-G", group, topic, "-u",
                    "-f", "MSG %p %o %k %s\\n",
                    "-X", "client.id=" + name,
                    "-X", "auto.offset.reset=earliest",
                    "-X", "session.timeout.ms=%d" % SESSION_MS,
                    "-X", "heartbeat.interval.ms=%d" % HEARTBEAT_MS]
            if mode == "drain":
                # Exit once every assigned partition is at its end; the
                # auto-commit on close commits what was read.
                argv += ["-e", "-X", "enable.partition.eof=true", "-X", "enable.auto.commit=true"]
            else:
                # kcat cannot commit on demand, and its -X sets
                # auto.commit.interval.ms on the topic (legacy) config, so
                # librdkafka auto-commits every 5 s (default) and on revoke:
                # before the kill the check waits that long.
                argv += ["-X", "enable.auto.commit=true"]
            # kcat has no deadline of its own: timeout(1) gives it one.
            argv = ["timeout", "-s", "KILL", str(deadline)] + argv
            w = Worker(name, argv, kcat=True)
        elif c == "kafkajs":
            env = dict(os.environ)
            env["NODE_PATH"] = self.a.node_path
            argv = ["node", os.path.join(HERE, "compat_kafkajs.js"),
                    "--bootstrap", self.bootstrap, "--group", group, "--topic", topic,
                    "--mode", mode, "--expect", str(expect), "--name", name,
                    "--session-ms", str(SESSION_MS), "--heartbeat-ms", str(HEARTBEAT_MS),
                    "--deadline", str(deadline)]
            w = Worker(name, argv, env=env)
        else:
            argv = [sys.executable, os.path.abspath(__file__), "worker",
                    "--bootstrap", self.bootstrap, "--client", c, "--group", group,
                    "--topic", topic, "--mode", mode, "--expect", str(expect), "--name", name,
                    "--session-ms", str(SESSION_MS), "--deadline", str(deadline)]
            w = Worker(name, argv)
        self.workers.append(w)
        return w

    def stop_all(self):
        for w in self.workers:
            w.stop()
        self.workers = []

    def drain(self, name, group, topic, expect, what):
        """One consumer reads `expect` messages, commits and closes."""
        w = self.start(name, group, topic, "drain", expect=expect, deadline=JOIN_TIMEOUT + 45)
        try:
            if not w.wait(lambda: w.ever_assigned, JOIN_TIMEOUT):
                if w.rc is not None:
                    raise Failure("%s: exited before any partition was assigned: %s" % (what, w.why()))
                raise Failure("%s: no partition assigned within %ds: %s" % (what, JOIN_TIMEOUT, w.why()))
            if not w.wait(lambda: w.done, 45):
                raise Failure("%s: did not finish (read %d of %d messages, committed=%s): %s"
                              % (what, len(w.msgs), expect, w.committed, w.why()))
            return w
        finally:
            w.stop()

    @staticmethod
    def verify(msgs, partitions, seqs, what):
        """Every key's messages exactly once, in order, on its partition."""
        by_key = {key_name(i): [] for i in range(KEYS)}
        problems = []
        for p, _off, key, value in msgs:
            k, _, seq = value.partition(":")
            if k != key or key not in by_key:
                problems.append("key %r with value %r" % (key, value))
                continue
            if p != int(key[1:]) % partitions:
                problems.append("%s on partition %d" % (key, p))
            by_key[key].append(int(seq))
        want = list(seqs)
        for key, got in by_key.items():
            if got != want:
                dups = len(got) - len(set(got))
                missing = sorted(set(want) - set(got))
                unexpected = sorted(set(got) - set(want))
                problems.append("%s: read %d (want %d), %d duplicate(s), missing %s, unexpected %s%s"
                                % (key, len(got), len(want), dups, missing[:4], unexpected[:4],
                                   ", out of order" if sorted(set(got)) == sorted(set(want)) and not dups else ""))
        if problems:
            raise Failure("%s: %d message(s) read; %s%s" % (
                what, len(msgs), "; ".join(problems[:3]),
                " (+%d more)" % (len(problems) - 3) if len(problems) > 3 else ""))

    # --- the checks ----------------------------------------------------------

    def check_resume(self):
        P, first, more = 3, range(0, 20), range(20, 30)
        topic = group = "compat-g-%s-resume" % self.tag
        t0 = time.monotonic()
        self.create_topic(topic, P)
        ends1 = self.produce(topic, P, first)
        w1 = self.drain("%s-r1" % self.tag, group, topic, KEYS * len(first), "first consumer")
        self.verify(w1.msgs, P, first, "first consumer")
        if self.client != "kcat":
            if w1.committed != ends1:
                raise Failure("first consumer: committed offsets read back %s, expected the ends %s"
                              % (w1.committed, ends1))
        ends2 = self.produce(topic, P, more)
        w2 = self.drain("%s-r2" % self.tag, group, topic, KEYS * len(more), "second consumer")
        self.verify(w2.msgs, P, more, "second consumer (resume from the committed offsets)")
        if self.client != "kcat" and w2.committed != ends2:
            raise Failure("second consumer: committed offsets read back %s, expected %s" % (w2.committed, ends2))
        return ("%d keyed messages read once each in order on %d partitions, committed %s; "
                "a new member resumed with exactly the %d new ones; %.1fs"
                % (len(w1.msgs), P, sorted(ends1.items()), len(w2.msgs), time.monotonic() - t0))

    # --- split and kill: reads across owners ---------------------------------

    @staticmethod
    def reads(w):
        """{key: [seq, ...]} in the order worker w read them."""
        out = {}
        for _p, _off, key, value in list(w.msgs):
            out.setdefault(key, []).append(int(value.partition(":")[2]))
        return out

    def complete(self, workers, upto):
        """Every key's seqs 0..upto-1 read by one of the workers."""
        seen = set()
        for w in workers:
            for key, seqs in self.reads(w).items():
                seen.update((key, s) for s in seqs if s < upto)
        return len(seen) == KEYS * upto

    def committed_reads(self, w):
        """Has w committed every offset it read? (kcat cannot say: it
        auto-commits every 5 s, and the caller waits past that.)"""
        if self.client == "kcat":
            return True
        last = {}
        for p, off, _k, _v in list(w.msgs):
            last[p] = max(last.get(p, -1), off + 1)
        committed = w.committed or {}
        return all(committed.get(p) == o for p, o in last.items())

    def settle(self, workers, upto, timeout, kcat_commit=False):
        """Wait until the workers read every key's seqs below `upto` and
        committed them; then a moment more for anything read twice. With
        kcat_commit, wait out kcat's auto-commit interval too."""
        ok = wait_for(lambda: self.complete(workers, upto)
                      and all(self.committed_reads(w) for w in workers), timeout)
        time.sleep(KCAT_AUTO_COMMIT_S + 0.5 if kcat_commit and self.client == "kcat" else 0.5)
        return ok

    def once_across(self, named, upto):
        """Every key's seqs 0..upto-1 read exactly once over all the workers,
        each worker reading a key's seqs in order. None, or what is wrong."""
        problems = []
        per = [(name, self.reads(w)) for name, w in named]
        for i in range(KEYS):
            key = key_name(i)
            got = [s for _n, r in per for s in r.get(key, [])]
            in_order = all(r.get(key, []) == sorted(r.get(key, [])) for _n, r in per)
            if sorted(got) != list(range(upto)) or not in_order:
                problems.append("%s (partition %d): %s" % (key, i % 4, ", ".join(
                    "%s read %s" % (n, r.get(key, [])) for n, r in per)))
        if problems:
            return "every key's messages 0..%d should be read exactly once; %s%s" % (
                upto - 1, "; ".join(problems[:3]),
                " (+%d more keys)" % (len(problems) - 3) if len(problems) > 3 else "")
        return None

    def check_split_kill(self):
        """Returns (split result, kill result); each ("PASS"|"FAIL", detail).

        Two seqs per key before the first member joins, two more once the
        group is split, two more after the second member is killed. Members
        commit what they read before they poll again, so across the two
        handoffs (first -> second at the split, second -> first at the kill)
        every message must be read exactly once: a new owner starts at the
        old owner's committed offset."""
        P = 4
        allp = frozenset(range(P))
        topic = group = "compat-g-%s-split" % self.tag
        self.create_topic(topic, P)
        self.produce(topic, P, range(0, 2))
        a = self.start("%s-a" % self.tag, group, topic, "member", deadline=120)
        if not a.wait(lambda: a.assignment == allp, JOIN_TIMEOUT):
            msg = "first member never owned all %d partitions within %ds (last %s): %s" % (
                P, JOIN_TIMEOUT, fmt(a.assignment), a.why())
            return ("FAIL", msg), ("FAIL", "not run: " + msg)
        if not self.settle([a], 2, 15):
            msg = "first member (alone) did not read and commit the first %d messages within 15s: read %d, committed %s: %s" % (
                2 * KEYS, len(a.msgs), a.committed, a.why(4))
            return ("FAIL", msg), ("FAIL", "not run: " + msg)
        t0 = time.monotonic()
        b = self.start("%s-b" % self.tag, group, topic, "member", deadline=120)

        def split():
            return (a.assignment and b.assignment and not (a.assignment & b.assignment)
                    and a.assignment | b.assignment == allp)

        limit = JOIN_TIMEOUT + SESSION_MS / 1000
        if not wait_for(split, limit):
            msg = "within %ds: first member %s, second %s; first: %s; second: %s" % (
                limit, fmt(a.assignment), fmt(b.assignment), a.why(3), b.why(3))
            return ("FAIL", msg), ("FAIL", "not run: the group never split")
        took = time.monotonic() - t0
        # Stable for a moment (no flapping back into overlap)?
        time.sleep(1.0)
        if not split():
            return (("FAIL", "split, then not: first member %s, second %s" % (fmt(a.assignment), fmt(b.assignment))),
                    ("FAIL", "not run: the group never split stably"))
        split_desc = "first member %s, second %s, %.1fs after the second joined" % (
            fmt(a.assignment), fmt(b.assignment), took)
        self.produce(topic, P, range(2, 4))
        named = [("first", a), ("second", b)]
        if not self.settle([a, b], 4, 15, kcat_commit=True):
            msg = "%s; then 2 more messages per key were not all read and committed within 15s: %s; first: %s; second: %s" % (
                split_desc, self.once_across(named, 4), a.why(3), b.why(3))
            return ("FAIL", msg), ("FAIL", "not run: the split group did not consume")
        wrong = self.once_across(named, 4)
        if wrong:
            msg = "%s; but %s" % (split_desc, wrong)
            return ("FAIL", msg), ("FAIL", "not run: the split group did not consume exactly once")
        split_res = ("PASS", "%s; each read its partitions from the committed offsets, every message once" % split_desc)

        moved = b.assignment
        b.kill()
        t1 = time.monotonic()
        limit = SESSION_MS / 1000 + 10
        if not a.wait(lambda: a.assignment == allp, limit):
            return split_res, ("FAIL", "second member SIGKILLed; within %ds the first still owns %s (of %s): %s"
                               % (limit, fmt(a.assignment), fmt(allp), a.why(4)))
        took = time.monotonic() - t1
        kill_desc = "second member SIGKILLed; its %s moved to the first after %.1fs (session.timeout.ms=%d)" % (
            fmt(moved), took, SESSION_MS)
        self.produce(topic, P, range(4, 6))
        if not self.settle([a, b], 6, 15):
            return split_res, ("FAIL", "%s; then 2 more messages per key were not all read within 15s: %s; first: %s"
                               % (kill_desc, self.once_across(named, 6), a.why(4)))
        wrong = self.once_across(named, 6)
        if wrong:
            return split_res, ("FAIL", "%s; but %s" % (kill_desc, wrong))
        return split_res, ("PASS", "%s; it resumed them at the dead member's committed offsets, every message once"
                           % kill_desc)

    def run(self):
        skip = self.skip_reason()
        if skip:
            for check in ("group-resume", "group-split", "group-kill"):
                self.say("SKIP", check, skip)
            return 0
        try:
            self.say("PASS", "group-resume", self.check_resume())
        except Exception as e:  # noqa: BLE001
            self.say("FAIL", "group-resume", e if isinstance(e, Failure) else "%s: %s" % (type(e).__name__, e))
        joined = any(w.ever_assigned for w in self.workers)
        self.stop_all()
        if not joined:
            why = "not run: no member of group-resume was ever assigned a partition"
            self.say("FAIL", "group-split", why)
            self.say("FAIL", "group-kill", why)
            return 1
        try:
            split, kill = self.check_split_kill()
        except Exception as e:  # noqa: BLE001
            split = kill = ("FAIL", "%s: %s" % (type(e).__name__, e))
        finally:
            self.stop_all()
        self.say(split[0], "group-split", split[1])
        self.say(kill[0], "group-kill", kill[1])
        return 1 if "FAIL" in self.results else 0

    def skip_reason(self):
        if self.client != "confluent-consumer":
            return None
        try:
            versions = api_versions(self.bootstrap)
        except OSError as e:
            return "cannot read ApiVersions to see whether KIP-848 is offered: %s" % e
        if 68 not in versions:
            return ("the broker does not advertise ConsumerGroupHeartbeat (API key 68) in ApiVersions, "
                    "so librdkafka's group.protocol=consumer (KIP-848) cannot be used")
        return None


def wait_for(pred, timeout, step=0.1):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= end:
            return False
        time.sleep(step)
    return True


def fmt(parts):
    return "[" + ",".join(str(p) for p in sorted(parts)) + "]" if parts is not None else "nothing"


def api_versions(bootstrap, timeout=10):
    """{api_key: (min, max)} from an ApiVersions v0 request."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"stormlog-compat"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(body)) + body)

        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise OSError("connection closed")
                buf += chunk
            return buf

        (size,) = struct.unpack(">i", read(4))
        data = read(size)
    _corr, err, count = struct.unpack(">ihi", data[:10])
    if err:
        raise OSError("ApiVersions error %d" % err)
    out = {}
    for i in range(count):
        k, lo, hi = struct.unpack(">hhh", data[10 + 6 * i:16 + 6 * i])
        out[k] = (lo, hi)
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        p = argparse.ArgumentParser(prog="compat_groups.py worker")
        p.add_argument("worker")
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--client", required=True, choices=CLIENTS)
        p.add_argument("--group", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--mode", choices=["drain", "member"], required=True)
        p.add_argument("--expect", type=int, default=0)
        p.add_argument("--name", default="stormlog-compat")
        p.add_argument("--session-ms", type=int, default=SESSION_MS)
        p.add_argument("--deadline", type=int, default=90)
        worker_main(p.parse_args())
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True, help="broker address, HOST:PORT")
    p.add_argument("--client", required=True, choices=CLIENTS)
    p.add_argument("--node-path", default=os.path.join(os.path.dirname(HERE), ".node-compat", "node_modules"),
                   help="NODE_PATH holding kafkajs (default .node-compat/node_modules)")
    args = p.parse_args()

    def on_term(signum, frame):
        raise SystemExit("compat_groups: signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    g = Groups(args)
    try:
        return g.run()
    finally:
        g.stop_all()


if __name__ == "__main__":
    sys.exit(main())
