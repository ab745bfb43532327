//! A real Kafka client (librdkafka, through the rdkafka crate) against the
//! `stormlog-broker` binary: 10,000 keyed messages to a 3-partition topic,
//! a restart on the same data directory, and every message read back in order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use common::Broker;

const TOPIC: &str = "real-client";
const PARTITIONS: i32 = 3;
const MESSAGES: usize = 10_000;
const KEYS: usize = 50;

/// Delivery reports, collected from librdkafka's callback.
#[derive(Default)]
struct Deliveries {
    /// (partition, offset) -> value, for every acknowledged message.
    acked: Mutex<BTreeMap<(i32, i64), String>>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let value = String::from_utf8_lossy(message.payload().unwrap_or(b"")).into_owned();
                self.acked
                    .lock()
                    .unwrap()
                    .insert((message.partition(), message.offset()), value);
            }
            Err((err, message)) => self.failed.lock().unwrap().push(format!(
                "{err} (key {:?})",
                message.key().map(String::from_utf8_lossy)
            )),
        }
    }
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("broker.address.family", "v4");
    config
}

fn create_topic(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                admin.create_topics([&topic], &options),
            )
            .await
        })
        .expect("CreateTopics timed out")
        .expect("CreateTopics failed");
    for result in results {
        if let Err((name, code)) = result {
            panic!("creating {name}: {code:?}");
        }
    }
}

/// Produce MESSAGES keyed messages ("k{key}" -> "k{key}:{seq}") and wait for
/// every delivery report. Returns (partition, offset) -> value.
fn produce(bootstrap: &str) -> BTreeMap<(i32, i64), String> {
    let producer: rdkafka::producer::BaseProducer<Deliveries> = client_config(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        // Strict order within a partition even if something is retried.
        .set("max.in.flight.requests.per.connection", "1")
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .create_with_context(Deliveries::default())
        .expect("producer");
    let deadline = Instant::now() + Duration::from_secs(40);
    for i in 0..MESSAGES {
        let key = format!("k{}", i % KEYS);
        let value = format!("{key}:{}", i / KEYS);
        loop {
            let record = BaseRecord::to(TOPIC).key(&key).payload(&value);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    assert!(Instant::now() < deadline, "producer queue stayed full");
                    producer.poll(Duration::from_millis(10));
                }
                Err((err, _)) => panic!("send {i}: {err}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    producer
        .flush(left.max(Duration::from_secs(1)))
        .expect("flush: not every message was acknowledged in time");
    let context = producer.context();
    let failed = context.failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} deliveries failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let acked = std::mem::take(&mut *context.acked.lock().unwrap());
    assert_eq!(
        acked.len(),
        MESSAGES,
        "acknowledged (partition, offset) pairs must be distinct"
    );
    acked
}

/// Read every partition from the beginning until MESSAGES messages arrived.
/// Returns (partition, offset, key, value) in the order read.
fn consume(bootstrap: &str) -> Vec<(i32, i64, String, String)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        // Required by librdkafka even for `assign`; the broker has no groups yet
        // and nothing here commits or subscribes.
        .set("group.id", "stormlog-real-client-test")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut read = Vec::with_capacity(MESSAGES);
    while read.len() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "only {} of {MESSAGES} messages read back in time",
            read.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or(b"")).into_owned();
                read.push((
                    message.partition(),
                    message.offset(),
                    text(message.key()),
                    text(message.payload()),
                ));
            }
            Some(Err(err)) => panic!("consume: {err}"),
        }
    }
    // Anything beyond MESSAGES is a duplicate; give it a moment to show up.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            panic!(
                "message beyond the {MESSAGES} produced: partition {} offset {}",
                message.partition(),
                message.offset()
            );
        }
    }
    read
}

#[test]

fn ten_thousand_keyed_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let mut broker = Broker::start(&["--data-dir", data_arg]);
    let bootstrap = broker.addr.to_string();
    create_topic(&bootstrap);
    let acked = produce(&bootstrap);

    broker.signal("TERM");
    let status = broker
        .wait_timeout(Duration::from_secs(15))
        .expect("broker still running 15 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "broker exit status");
    drop(broker);

    let broker = Broker::start(&["--data-dir", data_arg]);
    let read = consume(&broker.addr.to_string());

    // Offsets increase within each partition, each key lives in one
    // partition, and each key's sequence numbers come back 0, 1, 2, ...
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut key_partition: BTreeMap<String, i32> = BTreeMap::new();
    let mut next_seq: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (partition, offset, key, value) in &read {
        if let Some(last) = last_offset.insert(*partition, *offset) {
            assert!(
                offset > &last,
                "partition {partition}: offset {offset} after {last}"
            );
        }
        assert!(
            seen.insert((*partition, *offset)),
            "({partition}, {offset}) read twice"
        );
        let home = *key_partition.entry(key.clone()).or_insert(*partition);
        assert_eq!(home, *partition, "key {key} in two partitions");
        let (value_key, seq) = value.split_once(':').expect("value is key:seq");
        assert_eq!(value_key, key, "value {value} under key {key}");
        let seq: usize = seq.parse().expect("sequence number");
        let expected = next_seq.entry(key.clone()).or_insert(0);
        assert_eq!(
            seq, *expected,
            "key {key}: got seq {seq}, expected {expected}"
        );
        *expected += 1;
        assert_eq!(
            acked.get(&(*partition, *offset)),
            Some(value),
            "read ({partition}, {offset}) differs from what was acknowledged there"
        );
    }
    assert_eq!(read.len(), MESSAGES);
    assert_eq!(next_seq.len(), KEYS);
    for (key, count) in &next_seq {
        assert_eq!(*count, MESSAGES / KEYS, "key {key}");
    }
    assert!(
        last_offset.len() > 1,
        "{KEYS} keys should spread over several partitions: {last_offset:?}"
    );
}
