//! [`MetadataImage`]: the cluster metadata obtained by applying the metadata
//! log's records in offset order, and its snapshot format.
//!
//! `apply` is total: a record that does not fit the image (an unknown topic
//! id, a stale broker epoch, a name already taken, ...) is skipped with a
//! `tracing::warn!` and changes nothing but `applied_offset`.
//!
//! Snapshot format (integers big-endian):
//!
//! ```text
//! magic "SLMS" (4) | crc32c (u32) | version (u8, 1) | applied_offset (i64)
//! | record_count (u32) | body_len (u64) | body
//! ```
//!
//! where the body is `record_count` records, each a varint length followed
//! by [`MetadataRecord::encode`] bytes, and the CRC-32C covers every byte
//! after the CRC field (so a flip anywhere, header included, is detected).
//! Applying the body's records to an empty image rebuilds the image exactly.

use super::codec::{put_varint, DecodeError, Reader};
use super::records::{Endpoint, MetadataRecord, NO_LEADER, RESOURCE_TOPIC};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use tracing::warn;
use uuid::Uuid;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub incarnation_id: Uuid,
    /// The broker epoch: the metadata offset of its registration.
    pub epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The directory ids of the broker's log directories, as registered
    /// (empty if it sent none).
    pub log_dirs: Vec<Uuid>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

impl BrokerInfo {
    /// Unfenced and not shutting down: may lead partitions and receive new
    /// replicas.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// The state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// [`NO_LEADER`] (-1) when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// One topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// The cluster metadata at `applied_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_names_by_id: BTreeMap<Uuid, String>,
    /// `(resource_type, resource_name) -> (config name -> value)`; never
    /// holds an empty inner map.
    pub configs: BTreeMap<(i8, String), BTreeMap<String, String>>,
    /// The first producer id no broker has been handed yet (every id below
    /// it went out in some block).
    pub next_producer_id: i64,
    /// Offset of the last record applied; -1 for the empty image.
    pub applied_offset: i64,
}

impl Default for MetadataImage {
    fn default() -> Self {
        Self::new()
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"SLMS";
const SNAPSHOT_VERSION: u8 = 1;
/// magic + crc + version + applied_offset + record_count + body_len
const SNAPSHOT_HEADER_LEN: usize = 4 + 4 + 1 + 8 + 4 + 8;
/// Smallest encoded record: type and version bytes.
const MIN_RECORD_LEN: usize = 2;

impl MetadataImage {
    /// The empty image (`applied_offset` -1).
    pub fn new() -> Self {
        MetadataImage {
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            topic_names_by_id: BTreeMap::new(),
            configs: BTreeMap::new(),
            next_producer_id: 0,
            applied_offset: -1,
        }
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.get(&id)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_names_by_id
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionImage> {
        self.topic(topic)?.partitions.get(&partition)
    }

    pub fn partition_by_id(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionImage> {
        self.topic_by_id(topic_id)?.partitions.get(&partition)
    }

    /// The leader of a partition; `None` when the partition is unknown or
    /// has no leader.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partition(topic, partition)
            .map(|p| p.leader)
            .filter(|&l| l != NO_LEADER)
    }

    /// Registered and unfenced brokers, by id.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    /// Registered, unfenced brokers that are not in controlled shutdown, by
    /// id: the ones that may lead and receive new replicas.
    pub fn active_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| b.is_active())
            .map(|b| b.id)
            .collect()
    }

    pub fn is_active(&self, broker_id: i32) -> bool {
        self.brokers
            .get(&broker_id)
            .is_some_and(BrokerInfo::is_active)
    }

    /// The configs of one resource (empty map if it has none).
    /// One config of one resource, if set (no copy of the resource's map).
    pub fn resource_config(&self, resource_type: i8, name: &str, key: &str) -> Option<&str> {
        self.configs
            .get(&(resource_type, name.to_owned()))?
            .get(key)
            .map(String::as_str)
    }

    pub fn resource_configs(&self, resource_type: i8, name: &str) -> BTreeMap<String, String> {
        self.configs
            .get(&(resource_type, name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Applies the record at `offset`. A record at or below `applied_offset`
    /// was applied already and is skipped.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) {
        if offset <= self.applied_offset {
            warn!(
                offset,
                applied_offset = self.applied_offset,
                "metadata record at or below the applied offset skipped"
            );
            return;
        }
        self.apply_record(record);
        self.applied_offset = offset;
    }

    fn broker_with_epoch(&mut self, what: &str, id: i32, epoch: i64) -> Option<&mut BrokerInfo> {
        match self.brokers.get_mut(&id) {
            Some(b) if b.epoch == epoch => Some(b),
            Some(b) => {
                warn!(
                    broker_id = id,
                    epoch,
                    current_epoch = b.epoch,
                    "{what} with a stale broker epoch ignored"
                );
                None
            }
            None => {
                warn!(broker_id = id, "{what} for an unregistered broker ignored");
                None
            }
        }
    }

    fn partition_mut(
        &mut self,
        what: &str,
        id: &Uuid,
        partition: i32,
    ) -> Option<&mut PartitionImage> {
        let Some(name) = self.topic_names_by_id.get(id) else {
            warn!(topic_id = %id, "{what} for an unknown topic id ignored");
            return None;
        };
        let part = self
            .topics
            .get_mut(name)
            .and_then(|t| t.partitions.get_mut(&partition));
        if part.is_none() {
            warn!(topic_id = %id, partition, "{what} for an unknown partition ignored");
        }
        part
    }

    fn apply_record(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id,
                broker_epoch,
                endpoints,
                rack,
                log_dirs,
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerInfo {
                        id: *broker_id,
                        incarnation_id: *incarnation_id,
                        epoch: *broker_epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        log_dirs: log_dirs.clone(),
                        fenced: true,
                        in_controlled_shutdown: false,
                    },
                );
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                if self
                    .broker_with_epoch("UnregisterBroker", *broker_id, *broker_epoch)
                    .is_some()
                {
                    self.brokers.remove(broker_id);
                }
            }
            MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            } => {
                if let Some(b) = self.broker_with_epoch("FenceBroker", *broker_id, *broker_epoch) {
                    b.fenced = true;
                    b.in_controlled_shutdown = false;
                }
            }
            MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => {
                if let Some(b) = self.broker_with_epoch("UnfenceBroker", *broker_id, *broker_epoch)
                {
                    b.fenced = false;
                }
            }
            MetadataRecord::BeginControlledShutdown {
                broker_id,
                broker_epoch,
            } => {
                if let Some(b) =
                    self.broker_with_epoch("BeginControlledShutdown", *broker_id, *broker_epoch)
                {
                    b.in_controlled_shutdown = true;
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topics.contains_key(name) || self.topic_names_by_id.contains_key(topic_id) {
                    warn!(topic = %name, topic_id = %topic_id, "Topic record for an existing name or id ignored");
                    return;
                }
                self.topic_names_by_id.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                if *partition < 0 {
                    warn!(topic_id = %topic_id, partition, "Partition record with a negative index ignored");
                    return;
                }
                let Some(topic) = self
                    .topic_names_by_id
                    .get(topic_id)
                    .and_then(|name| self.topics.get_mut(name))
                else {
                    warn!(topic_id = %topic_id, "Partition record for an unknown topic id ignored");
                    return;
                };
                topic.partitions.insert(
                    *partition,
                    PartitionImage {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                    },
                );
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
            } => {
                let Some(p) = self.partition_mut("PartitionChange", topic_id, *partition) else {
                    return;
                };
                if let Some(leader) = leader {
                    if *leader != p.leader {
                        p.leader = *leader;
                        p.leader_epoch = p.leader_epoch.wrapping_add(1);
                    }
                }
                if let Some(isr) = isr {
                    p.isr = isr.clone();
                }
                if let Some(replicas) = replicas {
                    p.replicas = replicas.clone();
                }
                p.partition_epoch = p.partition_epoch.wrapping_add(1);
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let Some(name) = self.topic_names_by_id.remove(topic_id) else {
                    warn!(topic_id = %topic_id, "RemoveTopic for an unknown topic id ignored");
                    return;
                };
                self.topics.remove(&name);
                self.configs.remove(&(RESOURCE_TOPIC, name));
            }
            MetadataRecord::Config {
                resource_type,
                resource_name,
                name,
                value,
            } => {
                let key = (*resource_type, resource_name.clone());
                match value {
                    Some(v) => {
                        self.configs
                            .entry(key)
                            .or_default()
                            .insert(name.clone(), v.clone());
                    }
                    None => {
                        if let Some(map) = self.configs.get_mut(&key) {
                            map.remove(name);
                            if map.is_empty() {
                                self.configs.remove(&key);
                            }
                        }
                    }
                }
            }
            MetadataRecord::NoOp => {}
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                // Ids only move forward: a lower value would hand ids out twice.
                if *next_producer_id > self.next_producer_id {
                    self.next_producer_id = *next_producer_id;
                } else {
                    warn!(
                        next_producer_id,
                        current = self.next_producer_id,
                        "ProducerIds that does not move forward ignored"
                    );
                }
            }
        }
    }

    /// Records that, applied in order to an empty image, rebuild this one
    /// (all but `applied_offset`).
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker {
                broker_id: b.id,
                incarnation_id: b.incarnation_id,
                broker_epoch: b.epoch,
                endpoints: b.endpoints.clone(),
                rack: b.rack.clone(),
                log_dirs: b.log_dirs.clone(),
            });
            if !b.fenced {
                out.push(MetadataRecord::UnfenceBroker {
                    broker_id: b.id,
                    broker_epoch: b.epoch,
                });
            }
            if b.in_controlled_shutdown {
                out.push(MetadataRecord::BeginControlledShutdown {
                    broker_id: b.id,
                    broker_epoch: b.epoch,
                });
            }
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::Topic {
                name: t.name.clone(),
                topic_id: t.id,
            });
            for (&idx, p) in &t.partitions {
                out.push(MetadataRecord::Partition {
                    topic_id: t.id,
                    partition: idx,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                });
            }
        }
        for ((resource_type, resource_name), map) in &self.configs {
            for (name, value) in map {
                out.push(MetadataRecord::Config {
                    resource_type: *resource_type,
                    resource_name: resource_name.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        if self.next_producer_id > 0 {
            out.push(MetadataRecord::ProducerIds {
                broker_id: -1,
                broker_epoch: -1,
                next_producer_id: self.next_producer_id,
            });
        }
        out
    }

    /// The snapshot of this image (format in the module docs).
    pub fn encode_snapshot(&self) -> Bytes {
        let records = self.to_records();
        let mut body = BytesMut::new();
        let mut scratch = BytesMut::new();
        for r in &records {
            scratch.clear();
            r.encode_into(&mut scratch);
            put_varint(&mut body, scratch.len() as u64);
            body.put_slice(&scratch);
        }
        let mut out = BytesMut::with_capacity(SNAPSHOT_HEADER_LEN + body.len());
        out.put_slice(SNAPSHOT_MAGIC);
        out.put_u32(0); // CRC, filled in below
        out.put_u8(SNAPSHOT_VERSION);
        out.put_i64(self.applied_offset);
        out.put_u32(u32::try_from(records.len()).unwrap_or(u32::MAX));
        out.put_u64(body.len() as u64);
        out.put_slice(&body);
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    /// Rebuilds an image from [`encode_snapshot`](Self::encode_snapshot)
    /// bytes. A wrong magic, version, checksum or length is an error; so is
    /// any record that does not decode.
    pub fn decode_snapshot(buf: &[u8]) -> Result<MetadataImage, DecodeError> {
        let mut r = Reader::new(buf);
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let stored = r.u32()?;
        let computed = crc32c::crc32c(&buf[8..]);
        if stored != computed {
            return Err(DecodeError::ChecksumMismatch { stored, computed });
        }
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(DecodeError::UnsupportedSnapshotVersion(version));
        }
        let applied_offset = r.i64()?;
        let record_count = r.u32()?;
        let body_len = r.u64()?;
        if body_len != r.remaining() as u64 {
            return Err(DecodeError::InconsistentSnapshot(
                "body length does not match the bytes present",
            ));
        }
        if u64::from(record_count) > body_len / MIN_RECORD_LEN as u64 {
            return Err(DecodeError::InconsistentSnapshot(
                "more records than the body could hold",
            ));
        }
        let mut image = MetadataImage::new();
        for _ in 0..record_count {
            let len = r.count(1)?;
            let mut rec_reader = Reader::new(r.take(len)?);
            let rec = MetadataRecord::decode_from(&mut rec_reader)?;
            rec_reader.finish()?;
            image.apply_record(&rec);
        }
        if r.remaining() != 0 {
            return Err(DecodeError::InconsistentSnapshot(
                "bytes after the last record",
            ));
        }
        image.applied_offset = applied_offset;
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::RESOURCE_BROKER;
    use super::super::test_support::{arb_pooled_record, pool_uuid};
    use super::*;
    use proptest::prelude::*;

    fn register(id: i32, epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            broker_id: id,
            incarnation_id: Uuid::from_u128(id as u128 + 1000),
            broker_epoch: epoch,
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: format!("host{id}"),
                port: 9092,
            }],
            rack: None,
            // Broker 2 registers with a log directory (RegisterBroker v1).
            log_dirs: if id == 2 {
                vec![Uuid::from_u128(0xd12)]
            } else {
                Vec::new()
            },
        }
    }

    fn sample_image() -> MetadataImage {
        let tid = pool_uuid(1);
        let recs = vec![
            register(1, 0),
            register(2, 1),
            MetadataRecord::UnfenceBroker {
                broker_id: 1,
                broker_epoch: 0,
            },
            MetadataRecord::UnfenceBroker {
                broker_id: 2,
                broker_epoch: 1,
            },
            MetadataRecord::BeginControlledShutdown {
                broker_id: 2,
                broker_epoch: 1,
            },
            MetadataRecord::Topic {
                name: "orders".into(),
                topic_id: tid,
            },
            MetadataRecord::Partition {
                topic_id: tid,
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            MetadataRecord::Partition {
                topic_id: tid,
                partition: 1,
                replicas: vec![2, 1],
                isr: vec![2, 1],
                leader: 2,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            MetadataRecord::PartitionChange {
                topic_id: tid,
                partition: 1,
                leader: Some(1),
                isr: Some(vec![1]),
                replicas: None,
            },
            MetadataRecord::Config {
                resource_type: RESOURCE_TOPIC,
                resource_name: "orders".into(),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            },
            MetadataRecord::Config {
                resource_type: RESOURCE_BROKER,
                resource_name: "1".into(),
                name: "log.retention.ms".into(),
                value: Some("5".into()),
            },
        ];
        let mut img = MetadataImage::new();
        for (i, r) in recs.iter().enumerate() {
            img.apply(i as i64 + 10, r);
        }
        img
    }

    #[test]
    fn apply_builds_the_expected_image() {
        let img = sample_image();
        assert_eq!(img.applied_offset, 20);
        assert_eq!(img.live_brokers(), vec![1, 2]);
        assert_eq!(img.active_brokers(), vec![1]);
        assert!(img.broker(2).unwrap().in_controlled_shutdown);
        let p1 = img.partition("orders", 1).unwrap();
        assert_eq!(p1.leader, 1);
        assert_eq!(p1.isr, vec![1]);
        assert_eq!(p1.leader_epoch, 1);
        assert_eq!(p1.partition_epoch, 1);
        assert_eq!(img.leader_of("orders", 0), Some(1));
        assert_eq!(img.leader_of("orders", 7), None);
        assert_eq!(img.topic_by_id(&pool_uuid(1)).unwrap().name, "orders");
        assert_eq!(
            img.resource_configs(RESOURCE_TOPIC, "orders")
                .get("retention.ms")
                .map(String::as_str),
            Some("1000")
        );
    }

    #[test]
    fn new_registration_is_fenced() {
        let mut img = MetadataImage::new();
        img.apply(0, &register(5, 0));
        assert!(img.broker(5).unwrap().fenced);
        assert!(img.live_brokers().is_empty());
    }

    #[test]
    fn partition_change_bumps_epochs() {
        let mut img = sample_image();
        let tid = pool_uuid(1);
        // Same leader: only the partition epoch moves.
        img.apply(
            21,
            &MetadataRecord::PartitionChange {
                topic_id: tid,
                partition: 0,
                leader: Some(1),
                isr: Some(vec![1]),
                replicas: None,
            },
        );
        let p = img.partition("orders", 0).unwrap();
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 1));
        img.apply(
            22,
            &MetadataRecord::PartitionChange {
                topic_id: tid,
                partition: 0,
                leader: Some(NO_LEADER),
                isr: None,
                replicas: None,
            },
        );
        let p = img.partition("orders", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (-1, 1, 2));
    }

    #[test]
    fn records_that_do_not_fit_are_ignored() {
        let before = sample_image();
        let unknown = Uuid::from_u128(77);
        let misfits = vec![
            MetadataRecord::Partition {
                topic_id: unknown,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            MetadataRecord::PartitionChange {
                topic_id: unknown,
                partition: 0,
                leader: Some(1),
                isr: None,
                replicas: None,
            },
            MetadataRecord::PartitionChange {
                topic_id: pool_uuid(1),
                partition: 99,
                leader: Some(1),
                isr: None,
                replicas: None,
            },
            MetadataRecord::RemoveTopic { topic_id: unknown },
            MetadataRecord::Topic {
                name: "orders".into(),
                topic_id: unknown,
            },
            MetadataRecord::Topic {
                name: "other".into(),
                topic_id: pool_uuid(1),
            },
            MetadataRecord::FenceBroker {
                broker_id: 1,
                broker_epoch: 999,
            },
            MetadataRecord::UnfenceBroker {
                broker_id: 42,
                broker_epoch: 0,
            },
            MetadataRecord::UnregisterBroker {
                broker_id: 2,
                broker_epoch: 0,
            },
            MetadataRecord::Config {
                resource_type: RESOURCE_TOPIC,
                resource_name: "nope".into(),
                name: "x".into(),
                value: None,
            },
            MetadataRecord::NoOp,
        ];
        let mut img = before.clone();
        for (i, r) in misfits.iter().enumerate() {
            img.apply(before.applied_offset + 1 + i as i64, r);
        }
        let mut expected = before.clone();
        expected.applied_offset = img.applied_offset;
        assert_eq!(img, expected);
    }

    #[test]
    fn stale_offsets_are_skipped() {
        let mut img = sample_image();
        let before = img.clone();
        img.apply(
            5,
            &MetadataRecord::RemoveTopic {
                topic_id: pool_uuid(1),
            },
        );
        assert_eq!(img, before);
    }

    #[test]
    fn remove_topic_drops_its_configs() {
        let mut img = sample_image();
        img.apply(
            21,
            &MetadataRecord::RemoveTopic {
                topic_id: pool_uuid(1),
            },
        );
        assert!(img.topic("orders").is_none());
        assert!(img.topic_by_id(&pool_uuid(1)).is_none());
        assert!(img.resource_configs(RESOURCE_TOPIC, "orders").is_empty());
        assert_eq!(img.configs.len(), 1);
    }

    #[test]
    fn config_delete_removes_empty_maps() {
        let mut img = sample_image();
        img.apply(
            21,
            &MetadataRecord::Config {
                resource_type: RESOURCE_BROKER,
                resource_name: "1".into(),
                name: "log.retention.ms".into(),
                value: None,
            },
        );
        assert!(!img
            .configs
            .contains_key(&(RESOURCE_BROKER, "1".to_string())));
    }

    #[test]
    fn snapshot_round_trips() {
        for img in [MetadataImage::new(), sample_image()] {
            let snap = img.encode_snapshot();
            assert_eq!(MetadataImage::decode_snapshot(&snap).unwrap(), img);
        }
    }

    #[test]
    fn snapshot_with_any_flipped_byte_is_refused() {
        let snap = sample_image().encode_snapshot();
        for pos in 0..snap.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = snap.to_vec();
                bad[pos] ^= mask;
                assert!(
                    MetadataImage::decode_snapshot(&bad).is_err(),
                    "flip {mask:#x} at {pos} accepted"
                );
            }
        }
    }

    #[test]
    fn snapshot_truncation_and_bad_header_are_refused() {
        let snap = sample_image().encode_snapshot();
        for cut in 0..snap.len() {
            assert!(MetadataImage::decode_snapshot(&snap[..cut]).is_err());
        }
        let mut bad = snap.to_vec();
        bad[0] = b'X';
        assert_eq!(
            MetadataImage::decode_snapshot(&bad),
            Err(DecodeError::BadMagic)
        );
        let mut bad = snap.to_vec();
        bad[4] ^= 0xff;
        assert!(matches!(
            MetadataImage::decode_snapshot(&bad),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
        // A correct checksum over a wrong version is still refused.
        let mut bad = snap.to_vec();
        bad[8] = 9;
        let crc = crc32c::crc32c(&bad[8..]);
        bad[4..8].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            MetadataImage::decode_snapshot(&bad),
            Err(DecodeError::UnsupportedSnapshotVersion(9))
        );
    }

    /// Re-seals hostile bytes with a valid header and CRC so the decoder's
    /// record parsing (not just the checksum) sees them.
    fn seal(applied: i64, count: u32, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(SNAPSHOT_MAGIC);
        out.put_u32(0);
        out.put_u8(SNAPSHOT_VERSION);
        out.put_i64(applied);
        out.put_u32(count);
        out.put_u64(body.len() as u64);
        out.put_slice(body);
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_be_bytes());
        out.to_vec()
    }

    #[test]
    fn sealed_garbage_is_an_error_not_a_panic() {
        assert!(MetadataImage::decode_snapshot(&seal(0, u32::MAX, &[1, 2, 3])).is_err());
        assert!(MetadataImage::decode_snapshot(&seal(0, 1, &[0xff; 12])).is_err());
        assert!(MetadataImage::decode_snapshot(&seal(0, 0, &[0])).is_err());
        assert_eq!(
            MetadataImage::decode_snapshot(&seal(7, 0, &[])).unwrap(),
            MetadataImage {
                applied_offset: 7,
                ..MetadataImage::new()
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_snapshot_round_trip(recs in proptest::collection::vec(arb_pooled_record(), 0..60)) {
            let mut img = MetadataImage::new();
            for (i, r) in recs.iter().enumerate() {
                img.apply(i as i64, r);
            }
            let snap = img.encode_snapshot();
            prop_assert_eq!(MetadataImage::decode_snapshot(&snap).unwrap(), img.clone());
            // And the image's records rebuild it directly, too.
            let mut rebuilt = MetadataImage::new();
            for r in img.to_records() {
                rebuilt.apply_record(&r);
            }
            rebuilt.applied_offset = img.applied_offset;
            prop_assert_eq!(rebuilt, img);
        }

        #[test]
        fn prop_sealed_bytes_never_panic(count in 0u32..8, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MetadataImage::decode_snapshot(&seal(3, count, &body));
        }

        #[test]
        fn prop_arbitrary_snapshot_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MetadataImage::decode_snapshot(&bytes);
        }
    }
}
