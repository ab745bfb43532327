#!/usr/bin/env python3
"""Replication under faults, with a real client (confluent-kafka / librdkafka).

Runs its own 3-node KRaft cluster on loopback: copies of
broker-under-test/config/kraft/node-N.properties with their ports moved to a
free block and their data dirs in a temporary directory, so it never touches
a cluster that `ci/cluster` (or another checkout) runs.

Modes:

  check (default)  Produce REPL_RECORDS keyed records (acks=all, idempotence
                   on as in Kafka clients, retries on) to an RF 3 /
                   min.insync.replicas 2 topic
                   while the broker leading most partitions is kill -9ed
                   (restarted on its data dir later) and then the next one
                   is SIGSTOPped (SIGCONT later). Then read every partition
                   from the beginning to its high watermark and check that
                   every acknowledged record is there, at its acknowledged
                   offset, in the order of the producer's sequence numbers.
                   Reports acknowledged, lost, duplicates and the failover
                   time the client saw. Exits 1 if anything acknowledged was
                   lost or misplaced, if order broke, if a record is in the
                   log twice (idempotent), or if nothing was acknowledged
                   after a fault.
  bench            1 KB records, acks=all: throughput (MB/s) and produce
                   latency p50/p99 for an RF 3 and an RF 1 topic.
  failover         Kill the leader REPL_KILLS times in a row (restarting it
                   each time) under a steady produce; failover time per kill,
                   p50 and max; then the same read-back check as `check`.

  transactions     REPL_TXN_PRODUCERS transactional producers (confluent-kafka,
                   transactional.id) each run transactions of one record per
                   partition of an RF 3 topic for REPL_TXN_SECONDS, committing
                   two of every three and aborting the third, while the broker
                   leading most partitions is kill -9ed and later the next one
                   (each restarted). Each transaction's outcome is what the
                   client was told: committed, aborted, or unknown (a commit
                   that failed fatally). Then a read_committed consumer reads
                   every partition: every committed record once, no aborted
                   record, and each unknown transaction all or nothing (never
                   in part); the committed records written after the faults
                   are readable, so no transaction was left hanging.

Run through ci/replication, which installs confluent-kafka and finds the
broker binary; directly: python3 ci/replication_check.py --broker BIN [MODE].

Environment (defaults in brackets):
  REPL_RECORDS [200000]       records produced in `check`
  REPL_SCHEDULE [kill@6+12,stop@26+10]
                              faults, comma separated KIND@START+DURATION in
                              seconds from the start of the produce; KIND is
                              kill (SIGKILL, restart after DURATION) or stop
                              (SIGSTOP, SIGCONT after DURATION). Each hits the
                              broker leading most partitions at that moment.
                              Empty: no faults.
  REPL_PRODUCE_SECONDS [44]   the produce is paced over this long (at least
                              until 8 s after the last fault heals)
  REPL_PARTITIONS [6] REPL_RF [3] REPL_MIN_ISR [2]
  REPL_TOPIC_CONFIG []        more topic configs, k=v,k=v
  REPL_BROKER_PROPS []        more broker properties for every node, k=v,k=v
                              (e.g. broker.session.timeout.ms=4000)
  REPL_PRODUCER_CONFIG []     more/overriding producer settings, k=v,k=v
  REPL_IDEMPOTENT [1]         enable.idempotence: a retry the old leader
                              wrote is deduplicated, so a duplicate fails the
                              check and order holds at 5 in flight; 0: the
                              producer of before, duplicates only reported
  REPL_MAX_IN_FLIGHT [5 idempotent, else 1]  max.in.flight.requests.per.connection;
                              without idempotence, with 1 order violations
                              fail the check, above 1 they are only reported
  REPL_REQUEST_TIMEOUT_MS [10000] REPL_MESSAGE_TIMEOUT_MS [120000]
  REPL_PORT_BASE [a free block in 20000-30000]  six ports from here
  REPL_KEEP [0]               1: keep the work dir (configs, data, logs)
  REPL_BENCH_RECORDS [150000]  records per topic in the throughput run
  REPL_BENCH_RATE [500]       records/s in the latency run (REPL_BENCH_SECONDS [6])
  REPL_KILLS [10]             kills in `failover`; REPL_FAILOVER_RATE [2000]
                              records/s; REPL_FAILOVER_DOWN [3] seconds the
                              killed node stays down after writes resumed;
                              REPL_FAILOVER_WAIT [30] longest wait for them;
                              REPL_FAILOVER_ISR_WAIT [30] longest wait for the
                              restarted node to be back in every ISR (then
                              the next kill; else the mode stops and fails)
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "broker-under-test", "config", "kraft")
NODES = (1, 2, 3)
# The ports of the shipped configs: node N listens on 19090+2N (PLAINTEXT) and
# 19091+2N (CONTROLLER).
SHIPPED_PORTS = range(19092, 19098)


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_pairs(name):
    out = {}
    for item in filter(None, (s.strip() for s in os.environ.get(name, "").split(","))):
        k, _, v = item.partition("=")
        out[k.strip()] = v.strip()
    return out


def say(msg):
    print("replication: %s" % msg, flush=True)


class Failure(Exception):
    pass


# --- the cluster ------------------------------------------------------------


def ports_free(base, count=6):
    for port in range(base, base + count):
        for host in ("0.0.0.0", "127.0.0.1"):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, port))
            except OSError:
                return False
            finally:
                s.close()
    return True


def pick_port_base():
    if os.environ.get("REPL_PORT_BASE"):
        base = int(os.environ["REPL_PORT_BASE"])
        if not ports_free(base):
            raise Failure("REPL_PORT_BASE=%d: ports %d-%d are not free" % (base, base, base + 5))
        return base
    rng = random.Random()
    for _ in range(200):
        # Below the ephemeral range (32768+): a restarted node must get its
        # port back, which a client's outbound connection could hold there.
        base = rng.randrange(20000, 30000, 10)
        if ports_free(base):
            return base
    raise Failure("no free block of 6 ports in 20000-30000")


class Cluster:
    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.base = pick_port_base()
        self.procs = {}
        self.stopped = set()
        extra = env_pairs("REPL_BROKER_PROPS")
        self.client_port = {}
        for n in NODES:
            with open(os.path.join(CONF, "node-%d.properties" % n)) as f:
                text = f.read()
            text = re.sub(r"\b(19\d\d\d)\b", lambda m: self._port(int(m.group(1))), text)
            text = re.sub(r"(?m)^log\.dirs\s*=.*$", "log.dirs=%s/data-%d" % (work, n), text)
            for k, v in extra.items():
                text = re.sub(r"(?m)^%s\s*=.*\n" % re.escape(k), "", text)
                text += "\n%s=%s\n" % (k, v)
            with open(self.config(n), "w") as f:
                f.write(text)
            self.client_port[n] = self.base + 2 * (n - 1)
        self.bootstrap = ",".join("localhost:%d" % self.client_port[n] for n in NODES)

    def _port(self, shipped):
        if shipped not in SHIPPED_PORTS:
            raise Failure("unexpected port %d in the shipped configs" % shipped)
        return str(self.base + shipped - SHIPPED_PORTS[0])

    def config(self, n):
        return os.path.join(self.work, "node-%d.properties" % n)

    def log(self, n):
        return os.path.join(self.work, "node-%d.log" % n)

    def running(self, n):
        p = self.procs.get(n)
        return p is not None and p.poll() is None

    def start(self, n, wait=30.0):
        if self.running(n):
            return
        out = os.path.join(self.work, "node-%d.out" % n)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        with open(out, "w") as o, open(self.log(n), "a") as e:
            self.procs[n] = subprocess.Popen(
                [self.binary, "--config", self.config(n)], stdout=o, stderr=e,
                stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with open(out) as o:
                if "listening on" in o.read():
                    return
            if self.procs[n].poll() is not None:
                raise Failure("node %d exited at start (status %s); its log ends:\n%s"
                              % (n, self.procs[n].returncode, self.tail(n)))
            time.sleep(0.05)
        raise Failure("node %d printed no listening line within %.0f s" % (n, wait))

    def start_all(self):
        for n in NODES:
            self.start(n)

    def kill(self, n):
        p = self.procs[n]
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.stopped.discard(n)

    def sigstop(self, n):
        self.procs[n].send_signal(signal.SIGSTOP)
        self.stopped.add(n)

    def sigcont(self, n):
        self.procs[n].send_signal(signal.SIGCONT)
        self.stopped.discard(n)

    def shutdown(self):
        for n, p in self.procs.items():
            if p.poll() is None:
                if n in self.stopped:
                    p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def tail(self, n, lines=20):
        try:
            with open(self.log(n), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"


# --- metadata ---------------------------------------------------------------


class Meta:
    """Leaders and brokers as the cluster reports them, from a private AdminClient."""

    def __init__(self, bootstrap):
        from confluent_kafka.admin import AdminClient
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def leaders(self, topic, timeout=5.0):
        """{partition: leader id} (-1 for none); {} if metadata could not be had."""
        try:
            md = self.admin.list_topics(topic, timeout=timeout)
        except Exception:  # noqa: BLE001 - a fault may make metadata fail for a while
            return {}
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return {}
        return {p: pm.leader for p, pm in t.partitions.items()}

    def partitions(self, topic, timeout=5.0):
        md = self.admin.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        return {} if t is None or t.error is not None else t.partitions

    def state_text(self, topic, timeout=2.0):
        """p0:L[isr] ... as the cluster reports it now."""
        try:
            parts = self.partitions(topic, timeout=timeout)
        except Exception:  # noqa: BLE001
            return "unknown"
        if not parts:
            return "unknown"
        return " ".join("p%d:%s%s" % (p, parts[p].leader if parts[p].leader >= 0 else "none",
                                       list(parts[p].isrs)) for p in sorted(parts))

    def brokers(self, timeout=5.0):
        try:
            return set(self.admin.list_topics(timeout=timeout).brokers)
        except Exception:  # noqa: BLE001
            return set()

    def create_topic(self, topic, partitions, rf, configs, timeout=30.0):
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import NewTopic
        f = self.admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=rf, config=configs)],
            operation_timeout=timeout, request_timeout=timeout)[topic]
        try:
            f.result(timeout=timeout)
        except KafkaException as e:
            raise Failure("creating %s (%d partitions, RF %d, %s): %s"
                          % (topic, partitions, rf, configs, e.args[0]))

    def wait_leaders(self, topic, want_partitions, timeout=60.0, exclude=()):
        """Waits until every partition has a live leader; returns the leaders."""
        deadline = time.monotonic() + timeout
        leaders = {}
        while time.monotonic() < deadline:
            leaders = self.leaders(topic)
            if len(leaders) == want_partitions and all(
                    l >= 0 and l not in exclude for l in leaders.values()):
                return leaders
            time.sleep(0.2)
        raise Failure("%s: partitions without a leader after %.0f s: %s"
                      % (topic, timeout, leaders))

    def wait_brokers(self, count, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.brokers()) >= count:
                return
            time.sleep(0.2)
        raise Failure("fewer than %d brokers registered after %.0f s: %s"
                      % (count, timeout, sorted(self.brokers())))


def most_leading(leaders):
    counts = {}
    for l in leaders.values():
        if l >= 0:
            counts[l] = counts.get(l, 0) + 1
    if not counts:
        return None, []
    victim = max(sorted(counts), key=lambda b: counts[b])
    return victim, sorted(p for p, l in leaders.items() if l == victim)


# --- producing --------------------------------------------------------------


class Recorder:
    """Per record: when it was handed to the producer, and its outcome."""

    def __init__(self, n):
        self.send_t = [0.0] * n
        self.ack_t = [0.0] * n
        self.ack_part = [-1] * n
        self.ack_off = [-1] * n
        self.failed = {}
        self.acked = 0
        self.last_ack = 0.0
        self.sent = 0

    def on_delivery(self, err, msg):
        seq = int(msg.value()[:12])
        now = time.monotonic()
        if err is None:
            self.ack_t[seq] = now
            self.ack_part[seq] = msg.partition()
            self.ack_off[seq] = msg.offset()
            self.acked += 1
            self.last_ack = now
        else:
            self.failed[seq] = (now, err.str())

    def acked_seqs(self):
        return [s for s in range(len(self.ack_off)) if self.ack_off[s] >= 0]


def value_of(seq, size):
    head = b"%012d" % seq
    return head + b"." * max(0, size - len(head))


def idempotent():
    return env_int("REPL_IDEMPOTENT", 1) == 1


def max_in_flight():
    return env_int("REPL_MAX_IN_FLIGHT", 5 if idempotent() else 1)


def strict_order():
    # Idempotence keeps each partition's order across retries at up to 5 in flight.
    return idempotent() or max_in_flight() == 1


def producer_config(bootstrap, recorder, overrides=None):
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": idempotent(),
        "retries": 2147483647,
        "retry.backoff.ms": 100,
        "linger.ms": 5,
        "max.in.flight.requests.per.connection": max_in_flight(),
        "request.timeout.ms": env_int("REPL_REQUEST_TIMEOUT_MS", 10000),
        "message.timeout.ms": env_int("REPL_MESSAGE_TIMEOUT_MS", 120000),
        "on_delivery": recorder.on_delivery,
    }
    conf.update(overrides or {})
    conf.update(env_pairs("REPL_PRODUCER_CONFIG"))
    return conf


def produce_paced(producer, topic, recorder, count, seconds, size=40, until=None, progress=None):
    """Produces `count` records evenly over `seconds` (or, with `until`, at
    count/seconds per second until until() is true; count is then the cap)."""
    rate = count / seconds
    t0 = time.monotonic()
    seq = 0
    next_report = t0 + 5
    while seq < count:
        now = time.monotonic()
        if until is not None and until():
            break
        due = min(count, int((now - t0) * rate) + 1)
        while seq < due:
            try:
                recorder.send_t[seq] = time.monotonic()
                producer.produce(topic, key=b"key-%d" % (seq % 1000),
                                 value=value_of(seq, size))
                seq += 1
                recorder.sent = seq
            except BufferError:
                producer.poll(0.01)
        producer.poll(0.002)
        if progress and now >= next_report:
            progress(now - t0, seq)
            next_report += 5
    return seq


# --- faults -----------------------------------------------------------------


def parse_schedule(text):
    events = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = re.fullmatch(r"(kill|stop)@(\d+(?:\.\d+)?)\+(\d+(?:\.\d+)?)", item)
        if not m:
            raise Failure("bad REPL_SCHEDULE item %r (want kill@START+DURATION or stop@START+DURATION)"
                          % item)
        events.append((m.group(1), float(m.group(2)), float(m.group(3))))
    events.sort(key=lambda e: e[1])
    for (_, s1, d1), (_, s2, _) in zip(events, events[1:]):
        if s1 + d1 > s2:
            raise Failure("REPL_SCHEDULE: faults overlap")
    return events


class Fault:
    def __init__(self, kind, victim, moved, at):
        self.kind, self.victim, self.moved, self.at = kind, victim, moved, at
        self.healed = None
        self.state_during = "unknown"


def run_schedule(cluster, meta, topic, events, t0, faults, errors):
    """Runs in a thread: each fault at its time, on the broker leading most partitions."""
    try:
        for kind, start, duration in events:
            delay = t0 + start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            victim, moved = most_leading(meta.leaders(topic))
            if victim is None:
                say("t=%.1fs: %s: no partition has a leader; skipped" % (start, kind))
                continue
            f = Fault(kind, victim, moved, time.monotonic())
            if kind == "kill":
                cluster.kill(victim)
                say("t=%.1fs: kill -9 node %d (leader of partitions %s)"
                    % (f.at - t0, victim, moved))
            else:
                cluster.sigstop(victim)
                say("t=%.1fs: SIGSTOP node %d (leader of partitions %s)"
                    % (f.at - t0, victim, moved))
            faults.append(f)
            time.sleep(max(0.0, f.at + duration - time.monotonic() - 1.0))
            f.state_during = meta.state_text(topic, timeout=1.0)
            time.sleep(max(0.0, f.at + duration - time.monotonic()))
            if kind == "kill":
                cluster.start(victim)
                what = "restarted node %d" % victim
            else:
                cluster.sigcont(victim)
                what = "SIGCONT node %d" % victim
            f.healed = time.monotonic()
            say("t=%.1fs: %s (leader[isr] just before: %s)"
                % (f.healed - t0, what, f.state_during))
    except Exception as e:  # noqa: BLE001 - reported by the main thread
        errors.append(e)


def leader_text(leaders):
    if not leaders:
        return "unknown"
    return " ".join("p%d:%s" % (p, l if l >= 0 else "none") for p, l in sorted(leaders.items()))


def failover_figures(rec, fault, until):
    """What the client saw of one fault, up to `until` (the next fault or the end):
    (largest gap between acknowledgements on the moved partitions, from the
     last one before the fault; fault -> first acknowledgement on a moved
     partition of a record sent after the fault; how many records sent after
     the fault were acknowledged, on any partition)."""
    moved = set(fault.moved)
    times = []
    first = None
    after_count = 0
    for s in range(len(rec.ack_t)):
        t = rec.ack_t[s]
        if t <= 0 or t > until:
            continue
        if rec.ack_part[s] in moved and t >= fault.at - 5:
            times.append(t)
        if rec.send_t[s] > fault.at:
            after_count += 1
            if rec.ack_part[s] in moved and (first is None or t < first):
                first = t
    times.sort()
    before = [t for t in times if t <= fault.at]
    after = [t for t in times if t > fault.at]
    gap = None
    if after:
        points = [before[-1] if before else fault.at] + after
        gap = max(b - a for a, b in zip(points, points[1:]))
    return gap, (None if first is None else first - fault.at), after_count


# --- reading back -----------------------------------------------------------


def read_back(bootstrap, topic, partitions, timeout=90.0):
    """{partition: [(offset, seq), ...]} from the beginning to the high watermark."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        # librdkafka wants a group.id even for assign(); nothing here commits.
        "group.id": "stormlog-replication-check",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    try:
        highs = {}
        for p in range(partitions):
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            highs[p] = hi
        say("high watermarks: %s" % " ".join("p%d:%d" % kv for kv in sorted(highs.items())))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got = {p: [] for p in range(partitions)}
        done = {p for p in range(partitions) if highs[p] <= 0}
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            if time.monotonic() > deadline:
                raise Failure("reading back: partitions %s not read to their high watermark within %.0f s"
                              " (read up to %s)" % (sorted(set(range(partitions)) - done), timeout,
                                                    {p: (got[p][-1][0] if got[p] else None)
                                                     for p in range(partitions) if p not in done}))
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                p = m.partition()
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= highs[p]:
                            done.add(p)
                        continue
                    raise Failure("consume error on partition %s: %s" % (p, m.error()))
                got[p].append((m.offset(), int(m.value()[:12])))
                if m.offset() >= highs[p] - 1:
                    done.add(p)
        return got
    finally:
        consumer.close()


def verify(rec, got, strict_order):
    """Checks the records read against the acknowledgements; returns (figures, problems)."""
    seen = {}
    at = {}
    for p, records in got.items():
        for off, seq in records:
            seen[seq] = seen.get(seq, 0) + 1
            at[(p, off)] = seq
    acked = rec.acked_seqs()
    lost = [s for s in acked if seen.get(s, 0) == 0]
    misplaced = [s for s in acked if seen.get(s, 0) > 0
                 and at.get((rec.ack_part[s], rec.ack_off[s])) != s]
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    # Per partition, acknowledged offsets must rise with the sequence number.
    by_part = {}
    for s in acked:
        by_part.setdefault(rec.ack_part[s], []).append(s)
    disorder = []
    for p, seqs in by_part.items():
        offs = [rec.ack_off[s] for s in seqs]
        disorder += [(p, seqs[i], seqs[i + 1]) for i in range(len(seqs) - 1) if offs[i] >= offs[i + 1]]
    unacked_present = sum(1 for s in rec.failed if s in seen)
    never = len(rec.ack_off) - len(acked) - len(rec.failed)
    figures = {
        "acknowledged": len(acked), "failed": len(rec.failed), "no-outcome": never,
        "read": sum(len(v) for v in got.values()), "lost": len(lost),
        "misplaced": len(misplaced), "duplicates": duplicates,
        "out-of-order": len(disorder), "unacknowledged-but-present": unacked_present,
    }
    problems = []
    if lost:
        per = {}
        for s in lost:
            per[rec.ack_part[s]] = per.get(rec.ack_part[s], 0) + 1
        problems.append("LOST %d acknowledged records (per partition %s; e.g. seq %s at %s)"
                        % (len(lost), dict(sorted(per.items())), lost[0],
                           "p%d@%d" % (rec.ack_part[lost[0]], rec.ack_off[lost[0]])))
    if misplaced:
        s = misplaced[0]
        problems.append("%d acknowledged records are not at their acknowledged offset (e.g. seq %d "
                        "acknowledged at p%d@%d, which holds %s)"
                        % (len(misplaced), s, rec.ack_part[s], rec.ack_off[s],
                           at.get((rec.ack_part[s], rec.ack_off[s]), "nothing")))
    if disorder and strict_order:
        p, a, b = disorder[0]
        problems.append("%d acknowledged records out of order (e.g. p%d: seq %d at %d, seq %d at %d)"
                        % (len(disorder), p, a, rec.ack_off[a], b, rec.ack_off[b]))
    if duplicates and idempotent():
        problems.append("%d records are in the log twice, with an idempotent producer" % duplicates)
    if never:
        problems.append("%d records got no delivery report at all" % never)
    return figures, problems


def print_partitions(rec, got, leaders):
    acked, lost = {}, {}
    present = {p: {seq for _, seq in records} for p, records in got.items()}
    for s in rec.acked_seqs():
        p = rec.ack_part[s]
        acked[p] = acked.get(p, 0) + 1
        if s not in present.get(p, ()):
            lost[p] = lost.get(p, 0) + 1
    print("  %-9s %6s %12s %10s %8s %s" % ("partition", "leader", "acknowledged", "read", "lost",
                                         "highest acked offset"))
    for p in sorted(got):
        top = max((rec.ack_off[s] for s in rec.acked_seqs() if rec.ack_part[s] == p), default=-1)
        print("  %-9d %6s %12d %10d %8d %d" % (p, leaders.get(p, "?"), acked.get(p, 0), len(got[p]),
                                              lost.get(p, 0), top))


def print_figures(figures):
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print("  %-*s %s" % (width, k, v), flush=True)


# --- modes ------------------------------------------------------------------


def topic_configs(min_isr):
    configs = {"min.insync.replicas": str(min_isr)}
    configs.update(env_pairs("REPL_TOPIC_CONFIG"))
    return configs


def mode_check(cluster, meta):
    from confluent_kafka import Producer

    n = env_int("REPL_RECORDS", 200000)
    partitions = env_int("REPL_PARTITIONS", 6)
    rf = env_int("REPL_RF", 3)
    min_isr = env_int("REPL_MIN_ISR", 2)
    events = parse_schedule(os.environ.get("REPL_SCHEDULE", "kill@6+12,stop@26+10"))
    seconds = float(os.environ.get("REPL_PRODUCE_SECONDS", 44))
    if events:
        seconds = max(seconds, max(s + d for _, s, d in events) + 8)
    topic = "replication-check-%d" % os.getpid()
    meta.create_topic(topic, partitions, rf, topic_configs(min_isr))
    leaders = meta.wait_leaders(topic, partitions)
    md = meta.partitions(topic)
    say("topic %s: %d partitions, RF %d, min.insync.replicas %d; replicas %s; leaders %s"
        % (topic, partitions, rf, min_isr,
           " ".join("p%d:%s" % (p, md[p].replicas) for p in sorted(md)), leader_text(leaders)))
    say("producing %d keyed records over %.0f s (acks=all, idempotence %s, max.in.flight %d); faults: %s"
        % (n, seconds, "on" if idempotent() else "off", max_in_flight(),
           ", ".join("%s@%g+%g" % e for e in events) or "none"))

    rec = Recorder(n)
    producer = Producer(producer_config(cluster.bootstrap, rec))
    faults, errors = [], []
    t0 = time.monotonic()
    thread = threading.Thread(target=run_schedule,
                              args=(cluster, meta, topic, events, t0, faults, errors), daemon=True)
    thread.start()

    def progress(elapsed, sent):
        say("t=%.0fs: sent %d, acknowledged %d, failed %d" % (elapsed, sent, rec.acked, len(rec.failed)))

    produce_paced(producer, topic, rec, n, seconds, progress=progress)
    thread.join()
    if errors:
        raise errors[0]
    flush_timeout = env_int("REPL_MESSAGE_TIMEOUT_MS", 120000) / 1000 + 15
    left = producer.flush(flush_timeout)
    t_end = time.monotonic()
    say("produce done in %.1f s: acknowledged %d, failed %d, no outcome %d"
        % (t_end - t0, rec.acked, len(rec.failed), left))
    if rec.failed:
        kinds = {}
        for _, why in rec.failed.values():
            kinds[why] = kinds.get(why, 0) + 1
        say("delivery failures: %s" % kinds)

    # Every node back, every partition led, then read everything.
    cluster.start_all()
    meta.wait_brokers(len(NODES))
    meta.wait_leaders(topic, partitions)
    got = read_back(cluster.bootstrap, topic, partitions)
    figures, problems = verify(rec, got, strict_order=strict_order())
    leaders_now = meta.leaders(topic)

    print("\nreplication check: %d records, topic RF %d / min.insync.replicas %d, %d partitions"
          % (n, rf, min_isr, partitions), flush=True)
    print_figures(figures)
    print_partitions(rec, got, leaders_now)
    for i, f in enumerate(faults):
        until = faults[i + 1].at if i + 1 < len(faults) else t_end
        gap, first, after = failover_figures(rec, f, until)
        print("  fault %d: %s node %d at t=%.1fs for %.1fs, moved partitions %s"
              % (i + 1, "kill -9" if f.kind == "kill" else "SIGSTOP", f.victim, f.at - t0,
                 (f.healed or t_end) - f.at, f.moved), flush=True)
        print("    client saw: fault -> first ack on the moved partitions %s; largest gap between "
              "their acks %s; records sent after the fault and acknowledged: %d"
              % (fmt_s(first), fmt_s(gap), after), flush=True)
        if after == 0 or (f.moved and first is None):
            problems.append("nothing sent after fault %d (%s node %d) was acknowledged%s"
                            % (i + 1, f.kind, f.victim, "" if after == 0 else
                               " on the partitions it led (%s)" % f.moved))
    if problems:
        for p in problems:
            print("FAIL: %s" % p, flush=True)
        return 1
    print("PASS: every acknowledged record read back at its offset, in order", flush=True)
    return 0


def fmt_s(x):
    return "none" if x is None else "%.2f s" % x


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def mode_bench(cluster, meta):
    from confluent_kafka import Producer

    partitions = env_int("REPL_PARTITIONS", 6)
    n = env_int("REPL_BENCH_RECORDS", 150000)
    rate = env_int("REPL_BENCH_RATE", 500)
    lat_seconds = env_int("REPL_BENCH_SECONDS", 6)
    size = 1024
    rows = []
    for rf, min_isr in ((3, env_int("REPL_MIN_ISR", 2)), (1, 1)):
        topic = "replication-bench-rf%d-%d" % (rf, os.getpid())
        meta.create_topic(topic, partitions, rf, topic_configs(min_isr))
        meta.wait_leaders(topic, partitions)
        # Throughput: as fast as the producer goes.
        rec = Recorder(n)
        producer = Producer(producer_config(cluster.bootstrap, rec, {
            "max.in.flight.requests.per.connection": 5, "linger.ms": 5}))
        t0 = time.monotonic()
        for seq in range(n):
            while True:
                try:
                    rec.send_t[seq] = time.monotonic()
                    producer.produce(topic, key=b"key-%d" % (seq % 1000), value=value_of(seq, size))
                    break
                except BufferError:
                    producer.poll(0.005)
            producer.poll(0)
        producer.flush(120)
        acked = rec.acked_seqs()
        elapsed = (max(rec.ack_t[s] for s in acked) - t0) if acked else float("nan")
        mbps = len(acked) * size / elapsed / 1e6 if acked else 0.0
        load_lat = [(rec.ack_t[s] - rec.send_t[s]) * 1000 for s in acked]
        # Latency: a steady, light load.
        lrec = Recorder(rate * lat_seconds)
        lproducer = Producer(producer_config(cluster.bootstrap, lrec, {
            "max.in.flight.requests.per.connection": 5, "linger.ms": 0}))
        produce_paced(lproducer, topic, lrec, rate * lat_seconds, lat_seconds, size=size)
        lproducer.flush(60)
        lat = [(lrec.ack_t[s] - lrec.send_t[s]) * 1000 for s in lrec.acked_seqs()]
        rows.append((rf, min_isr, len(acked), n, mbps, percentile(load_lat, 50), percentile(load_lat, 99),
                     percentile(lat, 50), percentile(lat, 99)))
        say("RF %d: %.1f MB/s" % (rf, mbps))
    print("\nproduce benchmark: 1 KB records, acks=all, %d partitions, loopback, 3 nodes" % partitions)
    print("  %-16s %13s %8s %19s %26s" % ("topic", "acked", "MB/s", "p50/p99 under load",
                                          "p50/p99 at %d rec/s" % rate))
    for rf, min_isr, acked, total, mbps, lp50, lp99, p50, p99 in rows:
        print("  %-16s %13s %8.1f %10.1f/%6.1f ms %17.1f/%6.1f ms"
              % ("RF %d, min.isr %d" % (rf, min_isr), "%d/%d" % (acked, total), mbps, lp50, lp99, p50, p99))
    if rows[1][4] > 0:
        print("  RF 3 throughput is %.0f%% of RF 1 (aim: >= 50%%)" % (100 * rows[0][4] / rows[1][4]))
    return 0


def mode_failover(cluster, meta):
    from confluent_kafka import Producer

    kills = env_int("REPL_KILLS", 10)
    partitions = env_int("REPL_PARTITIONS", 6)
    rf = env_int("REPL_RF", 3)
    min_isr = env_int("REPL_MIN_ISR", 2)
    rate = env_int("REPL_FAILOVER_RATE", 2000)
    down = float(os.environ.get("REPL_FAILOVER_DOWN", 3))
    wait = float(os.environ.get("REPL_FAILOVER_WAIT", 30))
    topic = "replication-failover-%d" % os.getpid()
    meta.create_topic(topic, partitions, rf, topic_configs(min_isr))
    meta.wait_leaders(topic, partitions)
    cap = rate * 60 * kills  # far more than needed; the kills end the produce
    rec = Recorder(cap)
    producer = Producer(producer_config(cluster.bootstrap, rec))
    isr_wait = float(os.environ.get("REPL_FAILOVER_ISR_WAIT", 30))
    results, errors, aborted = [], [], []
    done = threading.Event()

    def isr_full():
        try:
            parts = meta.partitions(topic, timeout=2.0)
        except Exception:  # noqa: BLE001
            return False
        return len(parts) == partitions and all(len(pm.isrs) >= rf for pm in parts.values())

    def killer():
        try:
            time.sleep(3)
            for i in range(kills):
                # Steady state first: every node up and registered, every partition led, acks flowing.
                meta.wait_brokers(len(NODES))
                leaders = meta.wait_leaders(topic, partitions)
                while time.monotonic() - rec.last_ack > 0.5:
                    time.sleep(0.1)
                # Every replica back in the ISR: otherwise the next kill may
                # take the last in-sync replica, and no leader may be elected.
                deadline = time.monotonic() + isr_wait
                while not isr_full() and time.monotonic() < deadline:
                    time.sleep(0.2)
                if not isr_full():
                    aborted.append("before kill %d: the ISR did not get back to %d replicas within %.0f s "
                                   "(the restarted node never rejoined); leader[isr]: %s"
                                   % (i + 1, rf, isr_wait, meta.state_text(topic)))
                    say(aborted[-1])
                    break
                leaders = meta.wait_leaders(topic, partitions)
                victim, moved = most_leading(leaders)
                f = Fault("kill", victim, moved, time.monotonic())
                cluster.kill(victim)
                first = None
                deadline = f.at + wait
                moved_set = set(moved)
                while first is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                    for s in range(rec.sent - 1, -1, -1):
                        if rec.send_t[s] <= f.at:
                            break
                        if rec.ack_t[s] > 0 and rec.ack_part[s] in moved_set:
                            first = rec.ack_t[s] if first is None else min(first, rec.ack_t[s])
                took = None if first is None else first - f.at
                results.append((victim, moved, took))
                say("kill %d: node %d (leader of %s): writes to its partitions resumed after %s%s"
                    % (i + 1, victim, moved, fmt_s(took), "" if took is not None else
                       " within %.0f s; leader[isr] now: %s" % (wait, meta.state_text(topic))))
                time.sleep(down)
                cluster.start(victim)
            time.sleep(3)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    produce_paced(producer, topic, rec, cap, cap / rate, until=done.is_set)
    thread.join()
    producer.flush(env_int("REPL_MESSAGE_TIMEOUT_MS", 120000) / 1000 + 15)
    if errors:
        raise errors[0]
    cluster.start_all()
    meta.wait_brokers(len(NODES))
    meta.wait_leaders(topic, partitions)
    sent = sum(1 for t in rec.send_t if t > 0)
    rec.send_t, rec.ack_t = rec.send_t[:sent], rec.ack_t[:sent]
    rec.ack_part, rec.ack_off = rec.ack_part[:sent], rec.ack_off[:sent]
    got = read_back(cluster.bootstrap, topic, partitions)
    figures, problems = verify(rec, got, strict_order=strict_order())
    times = [t for _, _, t in results if t is not None]
    print("\nfailover: %d kills of the leader of most partitions, %d records/s, acks=all, RF %d"
          % (kills, rate, rf))
    for i, (victim, moved, took) in enumerate(results):
        print("  kill %2d: node %d, partitions %s: %s" % (i + 1, victim, moved, fmt_s(took)))
    if times:
        print("  failover time p50 %.2f s, max %.2f s (%d of %d kills recovered)"
              % (percentile(times, 50), max(times), len(times), len(results)))
    print_figures(figures)
    problems += aborted
    if len(times) < len(results):
        problems.append("%d kills were never followed by writes on the moved partitions"
                        % (len(results) - len(times)))
    for p in problems:
        print("FAIL: %s" % p)
    return 1 if problems else 0


def mode_transactions(cluster, meta):
    from confluent_kafka import KafkaException, Producer

    partitions = env_int("REPL_PARTITIONS", 6)
    producers = env_int("REPL_TXN_PRODUCERS", 3)
    seconds = env_int("REPL_TXN_SECONDS", 24)
    topic = "replication-txn-%d" % os.getpid()
    meta.create_topic(topic, partitions, 3, topic_configs(2))
    meta.wait_leaders(topic, partitions)
    outcomes = {}  # transaction name -> (values, "committed" | "aborted" | "unknown")
    errors = []
    stop = threading.Event()
    t0 = time.monotonic()

    def run(n):
        txn_id = "%s-producer-%d" % (topic, n)
        conf = {"bootstrap.servers": cluster.bootstrap, "transactional.id": txn_id,
                "transaction.timeout.ms": 10000, "message.timeout.ms": 10000,
                "request.timeout.ms": 5000}
        p, i = None, 0
        while not stop.is_set():
            if p is None:
                try:
                    p = Producer(conf)
                    p.init_transactions(60)
                except KafkaException as e:
                    errors.append("producer %d init: %s" % (n, e))
                    p = None
                    time.sleep(0.5)
                    continue
            name = "%d-%d" % (n, i)
            i += 1
            values = ["%s-%s-%d" % (topic, name, part) for part in range(partitions)]
            commit = i % 3 != 0
            try:
                p.begin_transaction()
                for part, v in enumerate(values):
                    p.produce(topic, value=v.encode(), partition=part)
                if not commit:
                    p.flush(60)
                    p.abort_transaction(60)
                    outcomes[name] = (values, "aborted")
                    continue
                while True:
                    try:
                        p.commit_transaction(60)
                        outcomes[name] = (values, "committed")
                        break
                    except KafkaException as e:
                        err = e.args[0]
                        if err.retriable():
                            continue
                        if err.txn_requires_abort():
                            p.abort_transaction(60)
                            outcomes[name] = (values, "aborted")
                            break
                        raise
            except KafkaException as e:
                # Fatal (or the abort failed): the outcome is unknown; a new
                # producer fences this one and aborts what it left open.
                outcomes.setdefault(name, (values, "unknown"))
                if outcomes[name][1] != "unknown":
                    pass
                errors.append("producer %d transaction %s: %s" % (n, name, e))
                p = None

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(producers)]
    for t in threads:
        t.start()
    for at, down in ((seconds * 0.25, 3), (seconds * 0.55, 3)):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        victim = most_leading(meta.leaders(topic))[0]
        say("kill -9 node %d (leads most partitions) at %.1f s" % (victim, time.monotonic() - t0))
        cluster.kill(victim)
        time.sleep(down)
        cluster.start(victim)
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(120)
    counts = {k: sum(1 for _, o in outcomes.values() if o == k) for k in ("committed", "aborted", "unknown")}
    say("transactions: %s; client errors: %d" % (counts, len(errors)))
    for e in errors[:5]:
        say("  client error: %s" % e)
    want = sum(len(v) for v, o in outcomes.values() if o == "committed")
    got = read_committed_values(cluster.bootstrap, topic, partitions, want)
    problems = []
    seen = {}
    for v in got:
        seen[v] = seen.get(v, 0) + 1
    twice = [v for v, c in seen.items() if c > 1]
    if twice:
        problems.append("%d records read twice (e.g. %s)" % (len(twice), twice[0]))
    for name, (values, outcome) in sorted(outcomes.items()):
        present = [v for v in values if v in seen]
        if outcome == "committed" and len(present) != len(values):
            problems.append("committed transaction %s: %d of %d records readable" % (name, len(present), len(values)))
        elif outcome == "aborted" and present:
            problems.append("aborted transaction %s: %d records read (G1a)" % (name, len(present)))
        elif outcome == "unknown" and present and len(present) != len(values):
            problems.append("transaction %s read in part: %d of %d records" % (name, len(present), len(values)))
    if counts["committed"] == 0:
        problems.append("no transaction committed")
    for p in problems[:20]:
        print("FAIL: %s" % p)
    if not problems:
        say("read_committed: %d records, every committed one once, no aborted one, no transaction in part"
            % len(got))
    return 1 if problems else 0


def read_committed_values(bootstrap, topic, partitions, want, timeout=60.0):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "replication-txn-reader-%d" % os.getpid(),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    committed_seen = 0
    while time.monotonic() < deadline and committed_seen < want:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.value().decode())
            committed_seen += 1
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        m = c.poll(0.1)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    return got


MODES = {"check": mode_check, "bench": mode_bench, "failover": mode_failover,
         "transactions": mode_transactions}


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", required=True, help="the stormlog-broker binary")
    parser.add_argument("mode", nargs="?", default="check", choices=sorted(MODES))
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="stormlog-replication.")
    keep = os.environ.get("REPL_KEEP") == "1"
    cluster = None
    status = 1
    try:
        cluster = Cluster(args.broker, work)
        say("cluster in %s, clients on %s" % (work, cluster.bootstrap))
        cluster.start_all()
        meta = Meta(cluster.bootstrap)
        meta.wait_brokers(len(NODES))
        status = MODES[args.mode](cluster, meta)
        del meta  # its client would log the nodes going away
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        status = 1
    finally:
        if cluster is not None:
            alive = {n: cluster.running(n) for n in NODES}
            cluster.shutdown()
            if status != 0:
                for n in NODES:
                    print("--- node %d (%s) log, last lines:\n%s"
                          % (n, "was running" if alive[n] else "NOT running", cluster.tail(n, 8)),
                          flush=True)
        if keep:
            say("work dir kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
