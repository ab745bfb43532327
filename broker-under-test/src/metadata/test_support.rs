//! Proptest strategies shared by the metadata tests (compiled for tests only).

use super::records::{Endpoint, MetadataRecord};
use proptest::prelude::*;
use uuid::Uuid;

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    (".{0,8}", ".{0,12}", any::<u16>()).prop_map(|(listener, host, port)| Endpoint {
        listener,
        host,
        port,
    })
}

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn arb_i32s() -> impl Strategy<Value = Vec<i32>> {
    proptest::collection::vec(any::<i32>(), 0..6)
}

/// Any record with any field values (for codec tests).
pub(crate) fn arb_record() -> impl Strategy<Value = MetadataRecord> {
    prop_oneof![
        (
            any::<i32>(),
            arb_uuid(),
            any::<i64>(),
            proptest::collection::vec(arb_endpoint(), 0..4),
            proptest::option::of(".{0,6}"),
            proptest::collection::vec(arb_uuid(), 0..3),
        )
            .prop_map(
                |(broker_id, incarnation_id, broker_epoch, endpoints, rack, log_dirs)| {
                    MetadataRecord::RegisterBroker {
                        broker_id,
                        incarnation_id,
                        broker_epoch,
                        endpoints,
                        rack,
                        log_dirs,
                    }
                }
            ),
        (any::<i32>(), any::<i64>(), 0..4u8).prop_map(|(broker_id, broker_epoch, k)| match k {
            0 => MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch
            },
            1 => MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch
            },
            2 => MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch
            },
            _ => MetadataRecord::BeginControlledShutdown {
                broker_id,
                broker_epoch
            },
        }),
        (".{0,12}", arb_uuid())
            .prop_map(|(name, topic_id)| MetadataRecord::Topic { name, topic_id }),
        (
            arb_uuid(),
            any::<i32>(),
            arb_i32s(),
            arb_i32s(),
            any::<i32>(),
            any::<i32>(),
            any::<i32>()
        )
            .prop_map(
                |(topic_id, partition, replicas, isr, leader, leader_epoch, partition_epoch)| {
                    MetadataRecord::Partition {
                        topic_id,
                        partition,
                        replicas,
                        isr,
                        leader,
                        leader_epoch,
                        partition_epoch,
                    }
                }
            ),
        (
            arb_uuid(),
            any::<i32>(),
            proptest::option::of(any::<i32>()),
            proptest::option::of(arb_i32s()),
            proptest::option::of(arb_i32s()),
        )
            .prop_map(|(topic_id, partition, leader, isr, replicas)| {
                MetadataRecord::PartitionChange {
                    topic_id,
                    partition,
                    leader,
                    isr,
                    replicas,
                }
            }),
        arb_uuid().prop_map(|topic_id| MetadataRecord::RemoveTopic { topic_id }),
        (
            any::<i8>(),
            ".{0,8}",
            ".{0,8}",
            proptest::option::of(".{0,8}")
        )
            .prop_map(|(resource_type, resource_name, name, value)| {
                MetadataRecord::Config {
                    resource_type,
                    resource_name,
                    name,
                    value,
                }
            }),
        Just(MetadataRecord::NoOp),
        (any::<i32>(), any::<i64>(), any::<i64>()).prop_map(
            |(broker_id, broker_epoch, next_producer_id)| MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id,
            }
        ),
    ]
}

/// Topic ids drawn from a small pool, so records refer to each other.
pub(crate) fn pool_uuid(i: u8) -> Uuid {
    Uuid::from_u128(0xabcd_0000_0000_4000_8000_0000_0000_0000 + u128::from(i))
}

fn pool_name(i: u8) -> String {
    format!("topic-{i}")
}

fn pool_brokers() -> impl Strategy<Value = Vec<i32>> {
    proptest::collection::vec(0..5i32, 0..4)
}

/// Records over small pools of broker ids, topic names and ids, partition
/// numbers and config names: most of them apply to an image built from the
/// ones before, and some deliberately do not.
pub(crate) fn arb_pooled_record() -> impl Strategy<Value = MetadataRecord> {
    prop_oneof![
        3 => (0..5i32, 0..3u8, 0..4i64, proptest::option::of(0..2u8), proptest::option::of(0..2u8)).prop_map(
            |(broker_id, inc, broker_epoch, rack, dir)| MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id: pool_uuid(100 + inc),
                broker_epoch,
                endpoints: vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    host: format!("b{broker_id}"),
                    port: 9092,
                }],
                rack: rack.map(|r| format!("rack-{r}")),
                log_dirs: dir.map(|d| pool_uuid(200 + d)).into_iter().collect(),
            }
        ),
        4 => (0..5i32, 0..4i64, 0..4u8).prop_map(|(broker_id, broker_epoch, k)| match k {
            0 => MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch
            },
            1 => MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch
            },
            2 => MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch
            },
            _ => MetadataRecord::BeginControlledShutdown {
                broker_id,
                broker_epoch
            },
        }),
        3 => (0..4u8, 0..4u8).prop_map(|(n, i)| MetadataRecord::Topic {
            name: pool_name(n),
            topic_id: pool_uuid(i)
        }),
        4 => (0..5u8, 0..3i32, pool_brokers(), pool_brokers(), -1..5i32, 0..3i32, 0..3i32)
            .prop_map(
                |(t, partition, replicas, isr, leader, leader_epoch, partition_epoch)| {
                    MetadataRecord::Partition {
                        topic_id: pool_uuid(t),
                        partition,
                        replicas,
                        isr,
                        leader,
                        leader_epoch,
                        partition_epoch,
                    }
                }
            ),
        4 => (
            0..5u8,
            0..3i32,
            proptest::option::of(-1..5i32),
            proptest::option::of(pool_brokers()),
            proptest::option::of(pool_brokers()),
        )
            .prop_map(|(t, partition, leader, isr, replicas)| {
                MetadataRecord::PartitionChange {
                    topic_id: pool_uuid(t),
                    partition,
                    leader,
                    isr,
                    replicas,
                }
            }),
        1 => (0..5u8).prop_map(|t| MetadataRecord::RemoveTopic {
            topic_id: pool_uuid(t)
        }),
        3 => (
            prop_oneof![Just(2i8), Just(4i8)],
            0..3u8,
            0..3u8,
            proptest::option::of(0..3u8)
        )
            .prop_map(|(resource_type, r, n, v)| MetadataRecord::Config {
                resource_type,
                resource_name: if resource_type == 2 {
                    pool_name(r)
                } else {
                    r.to_string()
                },
                name: format!("config.{n}"),
                value: v.map(|v| format!("value-{v}")),
            }),
        1 => Just(MetadataRecord::NoOp),
    ]
}
