//! The records of the metadata log ([`MetadataRecord`]) and their binary
//! encoding.
//!
//! Wire format of one record (see [`super::codec`] for the primitives):
//!
//! ```text
//! type: u8 | version: u8 | fields of that (type, version), in declaration order
//! ```
//!
//! Every record type is at version 0, but for `RegisterBroker`, which has
//! two: version 0 (no log directories) and version 1 (adds `log_dirs`, a
//! count and that many UUIDs, after `rack`). A `RegisterBroker` with no log
//! directories is written at version 0, so that every record keeps exactly
//! one encoding (and logs written before version 1 existed read the same);
//! version 1 with an empty `log_dirs` is refused as non-canonical. A
//! decoder refuses unknown types, unknown versions and trailing bytes, so a
//! record is either understood whole or not at all.

use super::codec::{
    put_i32_array, put_opt_string, put_string, put_uuid, put_varint, DecodeError, Reader,
};
use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// `leader` value of a partition that has no leader.
pub const NO_LEADER: i32 = -1;

/// `Config::resource_type` of a topic (Kafka's `ConfigResource.Type.TOPIC`).
pub const RESOURCE_TOPIC: i8 = 2;
/// `Config::resource_type` of a broker (Kafka's `ConfigResource.Type.BROKER`).
pub const RESOURCE_BROKER: i8 = 4;

/// One listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

/// A change to the cluster metadata, as stored in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataRecord {
    /// A broker (re-)registers. The registration starts fenced.
    RegisterBroker {
        broker_id: i32,
        incarnation_id: Uuid,
        broker_epoch: i64,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
        /// The directory ids (KIP-858 `directory.id`) of the broker's log
        /// directories: the storage it runs on. Empty if it sent none.
        log_dirs: Vec<Uuid>,
    },
    /// The registration with this epoch is removed.
    UnregisterBroker { broker_id: i32, broker_epoch: i64 },
    /// The registration with this epoch is fenced.
    FenceBroker { broker_id: i32, broker_epoch: i64 },
    /// The registration with this epoch is unfenced.
    UnfenceBroker { broker_id: i32, broker_epoch: i64 },
    /// The registration with this epoch begins a controlled shutdown.
    BeginControlledShutdown { broker_id: i32, broker_epoch: i64 },
    /// A topic is created (its partitions follow as `Partition` records).
    Topic { name: String, topic_id: Uuid },
    /// The full state of one partition.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        /// [`NO_LEADER`] (-1) for none.
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// A change to one partition. Applying it always bumps the partition
    /// epoch, and the leader epoch when the leader changes.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        leader: Option<i32>,
        isr: Option<Vec<i32>>,
        replicas: Option<Vec<i32>>,
    },
    /// A topic, its partitions and its configs are removed.
    RemoveTopic { topic_id: Uuid },
    /// Sets (`Some`) or deletes (`None`) one config of a resource.
    Config {
        /// [`RESOURCE_TOPIC`] or [`RESOURCE_BROKER`].
        resource_type: i8,
        resource_name: String,
        name: String,
        value: Option<String>,
    },
    /// Changes nothing (the controller writes it to advance the log).
    NoOp,
    /// The controller handed broker `broker_id` the producer ids below
    /// `next_producer_id` not handed out before (Kafka's ProducerIdsRecord):
    /// the next block starts there.
    ProducerIds {
        broker_id: i32,
        broker_epoch: i64,
        next_producer_id: i64,
    },
}

const T_REGISTER_BROKER: u8 = 1;
const T_UNREGISTER_BROKER: u8 = 2;
const T_FENCE_BROKER: u8 = 3;
const T_UNFENCE_BROKER: u8 = 4;
const T_BEGIN_CONTROLLED_SHUTDOWN: u8 = 5;
const T_TOPIC: u8 = 6;
const T_PARTITION: u8 = 7;
const T_PARTITION_CHANGE: u8 = 8;
const T_REMOVE_TOPIC: u8 = 9;
const T_CONFIG: u8 = 10;
const T_NO_OP: u8 = 11;
const T_PRODUCER_IDS: u8 = 12;

/// The version every record type is written at (but see
/// [`REGISTER_BROKER_WITH_DIRS`]).
const VERSION: u8 = 0;
/// The version of a `RegisterBroker` that carries log directories.
const REGISTER_BROKER_WITH_DIRS: u8 = 1;
/// Encoded size of a UUID.
const UUID_SIZE: usize = 16;

/// Smallest encoding of an [`Endpoint`]: three empty strings' lengths plus
/// the port.
const MIN_ENDPOINT_SIZE: usize = 1 + 1 + 2;

impl MetadataRecord {
    fn type_byte(&self) -> u8 {
        match self {
            MetadataRecord::RegisterBroker { .. } => T_REGISTER_BROKER,
            MetadataRecord::UnregisterBroker { .. } => T_UNREGISTER_BROKER,
            MetadataRecord::FenceBroker { .. } => T_FENCE_BROKER,
            MetadataRecord::UnfenceBroker { .. } => T_UNFENCE_BROKER,
            MetadataRecord::BeginControlledShutdown { .. } => T_BEGIN_CONTROLLED_SHUTDOWN,
            MetadataRecord::Topic { .. } => T_TOPIC,
            MetadataRecord::Partition { .. } => T_PARTITION,
            MetadataRecord::PartitionChange { .. } => T_PARTITION_CHANGE,
            MetadataRecord::RemoveTopic { .. } => T_REMOVE_TOPIC,
            MetadataRecord::Config { .. } => T_CONFIG,
            MetadataRecord::NoOp => T_NO_OP,
            MetadataRecord::ProducerIds { .. } => T_PRODUCER_IDS,
        }
    }

    /// Encodes the record in the format described in the module docs.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        self.encode_into(&mut b);
        b.freeze()
    }

    /// The version this record is written at.
    fn version(&self) -> u8 {
        match self {
            MetadataRecord::RegisterBroker { log_dirs, .. } if !log_dirs.is_empty() => {
                REGISTER_BROKER_WITH_DIRS
            }
            _ => VERSION,
        }
    }

    /// Appends the encoding of the record to `b`.
    pub fn encode_into(&self, b: &mut BytesMut) {
        b.put_u8(self.type_byte());
        b.put_u8(self.version());
        match self {
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id,
                broker_epoch,
                endpoints,
                rack,
                log_dirs,
            } => {
                b.put_i32(*broker_id);
                put_uuid(b, incarnation_id);
                b.put_i64(*broker_epoch);
                put_varint(b, endpoints.len() as u64);
                for e in endpoints {
                    put_string(b, &e.listener);
                    put_string(b, &e.host);
                    b.put_u16(e.port);
                }
                put_opt_string(b, rack.as_deref());
                if !log_dirs.is_empty() {
                    put_varint(b, log_dirs.len() as u64);
                    for dir in log_dirs {
                        put_uuid(b, dir);
                    }
                }
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            }
            | MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            }
            | MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            }
            | MetadataRecord::BeginControlledShutdown {
                broker_id,
                broker_epoch,
            } => {
                b.put_i32(*broker_id);
                b.put_i64(*broker_epoch);
            }
            MetadataRecord::Topic { name, topic_id } => {
                put_string(b, name);
                put_uuid(b, topic_id);
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
                put_uuid(b, topic_id);
                b.put_i32(*partition);
                put_i32_array(b, replicas);
                put_i32_array(b, isr);
                b.put_i32(*leader);
                b.put_i32(*leader_epoch);
                b.put_i32(*partition_epoch);
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
            } => {
                put_uuid(b, topic_id);
                b.put_i32(*partition);
                match leader {
                    Some(l) => {
                        b.put_u8(1);
                        b.put_i32(*l);
                    }
                    None => b.put_u8(0),
                }
                for list in [isr, replicas] {
                    match list {
                        Some(v) => {
                            b.put_u8(1);
                            put_i32_array(b, v);
                        }
                        None => b.put_u8(0),
                    }
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => put_uuid(b, topic_id),
            MetadataRecord::Config {
                resource_type,
                resource_name,
                name,
                value,
            } => {
                b.put_i8(*resource_type);
                put_string(b, resource_name);
                put_string(b, name);
                put_opt_string(b, value.as_deref());
            }
            MetadataRecord::NoOp => {}
            MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id,
            } => {
                b.put_i32(*broker_id);
                b.put_i64(*broker_epoch);
                b.put_i64(*next_producer_id);
            }
        }
    }

    /// Decodes one record that fills `buf` exactly. Never panics; never
    /// allocates more than `buf.len()` bytes' worth of items.
    pub fn decode(buf: &[u8]) -> Result<MetadataRecord, DecodeError> {
        let mut r = Reader::new(buf);
        let rec = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(rec)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<MetadataRecord, DecodeError> {
        let record_type = r.u8()?;
        if !(T_REGISTER_BROKER..=T_PRODUCER_IDS).contains(&record_type) {
            return Err(DecodeError::UnknownRecordType(record_type));
        }
        let version = r.u8()?;
        let known = version == VERSION
            || (record_type == T_REGISTER_BROKER && version == REGISTER_BROKER_WITH_DIRS);
        if !known {
            return Err(DecodeError::UnsupportedVersion {
                record_type,
                version,
            });
        }
        let rec = match record_type {
            T_REGISTER_BROKER => {
                let broker_id = r.i32()?;
                let incarnation_id = r.uuid()?;
                let broker_epoch = r.i64()?;
                let n = r.count(MIN_ENDPOINT_SIZE)?;
                // No `with_capacity(n)`: an Endpoint is larger in memory than
                // its smallest encoding, so growth follows the bytes decoded.
                let mut endpoints = Vec::new();
                for _ in 0..n {
                    let listener = r.string()?;
                    let host = r.string()?;
                    let port = r.u16()?;
                    endpoints.push(Endpoint {
                        listener,
                        host,
                        port,
                    });
                }
                let rack = r.opt_string()?;
                let mut log_dirs = Vec::new();
                if version == REGISTER_BROKER_WITH_DIRS {
                    let n = r.count(UUID_SIZE)?;
                    if n == 0 {
                        return Err(DecodeError::NonCanonical(
                            "RegisterBroker version 1 without log directories",
                        ));
                    }
                    for _ in 0..n {
                        log_dirs.push(r.uuid()?);
                    }
                }
                MetadataRecord::RegisterBroker {
                    broker_id,
                    incarnation_id,
                    broker_epoch,
                    endpoints,
                    rack,
                    log_dirs,
                }
            }
            T_UNREGISTER_BROKER
            | T_FENCE_BROKER
            | T_UNFENCE_BROKER
            | T_BEGIN_CONTROLLED_SHUTDOWN => {
                let broker_id = r.i32()?;
                let broker_epoch = r.i64()?;
                match record_type {
                    T_UNREGISTER_BROKER => MetadataRecord::UnregisterBroker {
                        broker_id,
                        broker_epoch,
                    },
                    T_FENCE_BROKER => MetadataRecord::FenceBroker {
                        broker_id,
                        broker_epoch,
                    },
                    T_UNFENCE_BROKER => MetadataRecord::UnfenceBroker {
                        broker_id,
                        broker_epoch,
                    },
                    _ => MetadataRecord::BeginControlledShutdown {
                        broker_id,
                        broker_epoch,
                    },
                }
            }
            T_TOPIC => {
                let name = r.string()?;
                let topic_id = r.uuid()?;
                MetadataRecord::Topic { name, topic_id }
            }
            T_PARTITION => MetadataRecord::Partition {
                topic_id: r.uuid()?,
                partition: r.i32()?,
                replicas: r.i32_array()?,
                isr: r.i32_array()?,
                leader: r.i32()?,
                leader_epoch: r.i32()?,
                partition_epoch: r.i32()?,
            },
            T_PARTITION_CHANGE => {
                let topic_id = r.uuid()?;
                let partition = r.i32()?;
                let leader = if r.present()? { Some(r.i32()?) } else { None };
                let isr = if r.present()? {
                    Some(r.i32_array()?)
                } else {
                    None
                };
                let replicas = if r.present()? {
                    Some(r.i32_array()?)
                } else {
                    None
                };
                MetadataRecord::PartitionChange {
                    topic_id,
                    partition,
                    leader,
                    isr,
                    replicas,
                }
            }
            T_REMOVE_TOPIC => MetadataRecord::RemoveTopic {
                topic_id: r.uuid()?,
            },
            T_CONFIG => MetadataRecord::Config {
                resource_type: r.i8()?,
                resource_name: r.string()?,
                name: r.string()?,
                value: r.opt_string()?,
            },
            T_PRODUCER_IDS => MetadataRecord::ProducerIds {
                broker_id: r.i32()?,
                broker_epoch: r.i64()?,
                next_producer_id: r.i64()?,
            },
            _ => MetadataRecord::NoOp,
        };
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::arb_record;
    use super::*;
    use proptest::prelude::*;

    fn sample_records() -> Vec<MetadataRecord> {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        vec![
            MetadataRecord::RegisterBroker {
                broker_id: 1,
                incarnation_id: id,
                broker_epoch: 42,
                endpoints: vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    host: "localhost".into(),
                    port: 9092,
                }],
                rack: Some("r1".into()),
                log_dirs: Vec::new(),
            },
            MetadataRecord::RegisterBroker {
                broker_id: 2,
                incarnation_id: id,
                broker_epoch: 43,
                endpoints: Vec::new(),
                rack: None,
                log_dirs: vec![Uuid::from_u128(7), id],
            },
            MetadataRecord::UnregisterBroker {
                broker_id: 1,
                broker_epoch: 42,
            },
            MetadataRecord::FenceBroker {
                broker_id: 2,
                broker_epoch: 7,
            },
            MetadataRecord::UnfenceBroker {
                broker_id: 2,
                broker_epoch: 7,
            },
            MetadataRecord::BeginControlledShutdown {
                broker_id: 3,
                broker_epoch: -1,
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 5,
                partition_epoch: 9,
            },
            MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 3,
                leader: Some(-1),
                isr: None,
                replicas: Some(vec![]),
            },
            MetadataRecord::RemoveTopic { topic_id: id },
            MetadataRecord::Config {
                resource_type: RESOURCE_TOPIC,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: None,
            },
            MetadataRecord::NoOp,
        ]
    }

    #[test]
    fn every_record_type_round_trips() {
        for rec in sample_records() {
            let bytes = rec.encode();
            assert_eq!(MetadataRecord::decode(&bytes).unwrap(), rec);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for rec in sample_records() {
            let bytes = rec.encode();
            for cut in 0..bytes.len() {
                assert!(
                    MetadataRecord::decode(&bytes[..cut]).is_err(),
                    "{rec:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn unknown_type_version_and_trailing_bytes_are_refused() {
        assert_eq!(
            MetadataRecord::decode(&[0, 0]),
            Err(DecodeError::UnknownRecordType(0))
        );
        assert_eq!(
            MetadataRecord::decode(&[200, 0]),
            Err(DecodeError::UnknownRecordType(200))
        );
        assert_eq!(
            MetadataRecord::decode(&[T_NO_OP, 1]),
            Err(DecodeError::UnsupportedVersion {
                record_type: T_NO_OP,
                version: 1
            })
        );
        assert_eq!(
            MetadataRecord::decode(&[T_NO_OP, 0, 0]),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            MetadataRecord::decode(&[T_NO_OP, 0]),
            Ok(MetadataRecord::NoOp)
        );
    }

    #[test]
    fn register_broker_is_version_0_without_log_dirs_and_1_with() {
        let mut rec = MetadataRecord::RegisterBroker {
            broker_id: 5,
            incarnation_id: Uuid::from_u128(1),
            broker_epoch: 9,
            endpoints: Vec::new(),
            rack: None,
            log_dirs: Vec::new(),
        };
        // A record as written before log directories existed: version 0,
        // ending with the rack. It still decodes, with no log directories.
        let mut v0 = BytesMut::new();
        v0.put_u8(T_REGISTER_BROKER);
        v0.put_u8(0);
        v0.put_i32(5);
        v0.put_slice(Uuid::from_u128(1).as_bytes());
        v0.put_i64(9);
        put_varint(&mut v0, 0);
        v0.put_u8(0);
        assert_eq!(rec.encode(), v0.clone().freeze());
        assert_eq!(MetadataRecord::decode(&v0), Ok(rec.clone()));

        // With log directories: version 1, the ids after the rack.
        let dir = Uuid::from_u128(0xd1);
        if let MetadataRecord::RegisterBroker { log_dirs, .. } = &mut rec {
            log_dirs.push(dir);
        }
        let mut v1 = v0.clone();
        v1[1] = 1;
        put_varint(&mut v1, 1);
        v1.put_slice(dir.as_bytes());
        assert_eq!(rec.encode(), v1.clone().freeze());
        assert_eq!(MetadataRecord::decode(&v1), Ok(rec));

        // Version 1 with an empty list is never written: refused.
        let mut empty = v0.clone();
        empty[1] = 1;
        put_varint(&mut empty, 0);
        assert!(matches!(
            MetadataRecord::decode(&empty),
            Err(DecodeError::NonCanonical(_))
        ));
        // Version 1 of any other record type is unknown.
        assert!(matches!(
            MetadataRecord::decode(&[T_FENCE_BROKER, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        // A version-1 log_dirs count larger than the bytes left.
        let mut hostile = v0.clone();
        hostile[1] = 1;
        put_varint(&mut hostile, u64::MAX);
        assert!(matches!(
            MetadataRecord::decode(&hostile),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        // RegisterBroker claiming u64::MAX endpoints.
        let mut b = BytesMut::new();
        b.put_u8(T_REGISTER_BROKER);
        b.put_u8(0);
        b.put_i32(1);
        b.put_slice(&[0; 16]);
        b.put_i64(0);
        put_varint(&mut b, u64::MAX);
        assert!(matches!(
            MetadataRecord::decode(&b),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_round_trip(rec in arb_record()) {
            let bytes = rec.encode();
            prop_assert_eq!(MetadataRecord::decode(&bytes), Ok(rec));
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = MetadataRecord::decode(&bytes);
        }

        #[test]
        fn prop_mutated_records_never_panic(
            rec in arb_record(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut bytes = rec.encode().to_vec();
            for (pos, val) in flips {
                let n = bytes.len();
                bytes[pos % n] = val;
            }
            let cut = cut % (bytes.len() + 1);
            let _ = MetadataRecord::decode(&bytes[..cut]);
            if let Ok(back) = MetadataRecord::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(back.encode().to_vec(), bytes);
            }
        }
    }
}
