//! The KIP-848 consumer group records, in Kafka's formats: keys are
//! classic-encoded (version = record type, then group id and, for member
//! records, member id); values are flexible version 0.
//!
//! | key | record                                   |
//! |-----|------------------------------------------|
//! | 3   | ConsumerGroupMetadata (group epoch)      |
//! | 4   | ConsumerGroupPartitionMetadata (skipped) |
//! | 5   | ConsumerGroupMemberMetadata              |
//! | 6   | ConsumerGroupTargetAssignmentMetadata    |
//! | 7   | ConsumerGroupTargetAssignmentMember      |
//! | 8   | ConsumerGroupCurrentMemberAssignment     |

use bytes::Bytes;

use super::{DecodeError, Reader, Result, Writer};
use crate::group::assignors::TopicPartitions;

pub const GROUP_METADATA: i16 = 3;
pub const PARTITION_METADATA: i16 = 4;
pub const MEMBER_METADATA: i16 = 5;
pub const TARGET_METADATA: i16 = 6;
pub const TARGET_MEMBER: i16 = 7;
pub const CURRENT_ASSIGNMENT: i16 = 8;

/// A consumer group record key: its type, group and (member records) member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerKey {
    pub kind: i16,
    pub group: String,
    pub member: Option<String>,
}

fn has_member(kind: i16) -> bool {
    matches!(kind, MEMBER_METADATA | TARGET_MEMBER | CURRENT_ASSIGNMENT)
}

pub fn key(kind: i16, group: &str, member: Option<&str>) -> Bytes {
    let mut w = Writer::new(false);
    w.i16(kind);
    w.string(group);
    if let Some(m) = member.filter(|_| has_member(kind)) {
        w.string(m);
    }
    w.finish()
}

/// The rest of a key of `kind` (its version already read).
pub(super) fn decode_key(kind: i16, r: &mut Reader) -> Result<ConsumerKey> {
    let group = r.string()?;
    let member = if has_member(kind) {
        Some(r.string()?)
    } else {
        None
    };
    Ok(ConsumerKey {
        kind,
        group,
        member,
    })
}

/// ConsumerGroupMemberMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// ConsumerGroupCurrentMemberAssignmentValue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: i8,
    pub assigned: TopicPartitions,
    pub pending_revocation: TopicPartitions,
}

fn value_writer() -> Writer {
    let mut w = Writer::new(true);
    w.i16(0);
    w
}

fn value_reader(bytes: &[u8]) -> Result<Reader<'_>> {
    let mut r = Reader::new(bytes, true);
    if r.i16()? != 0 {
        return Err(DecodeError("unknown consumer group value version"));
    }
    Ok(r)
}

/// ConsumerGroupMetadataValue and ConsumerGroupTargetAssignmentMetadataValue
/// are both one epoch.
pub fn epoch_value(epoch: i32) -> Bytes {
    let mut w = value_writer();
    w.i32(epoch);
    w.tags();
    w.finish()
}

pub fn decode_epoch_value(bytes: &[u8]) -> Result<i32> {
    let mut r = value_reader(bytes)?;
    let epoch = r.i32()?;
    r.skip_tags()?;
    Ok(epoch)
}

pub fn member_value(m: &MemberMetadata) -> Bytes {
    let mut w = value_writer();
    w.nullable_string(m.instance_id.as_deref());
    w.nullable_string(m.rack_id.as_deref());
    w.string(&m.client_id);
    w.string(&m.client_host);
    w.array_len(m.subscribed_topic_names.len());
    for t in &m.subscribed_topic_names {
        w.string(t);
    }
    w.nullable_string(m.subscribed_topic_regex.as_deref());
    w.i32(m.rebalance_timeout_ms);
    w.nullable_string(m.server_assignor.as_deref());
    w.tags();
    w.finish()
}

pub fn decode_member_value(bytes: &[u8]) -> Result<MemberMetadata> {
    let mut r = value_reader(bytes)?;
    let instance_id = r.nullable_string()?;
    let rack_id = r.nullable_string()?;
    let client_id = r.string()?;
    let client_host = r.string()?;
    let n = r.array_len()?;
    let mut subscribed_topic_names = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        subscribed_topic_names.push(r.string()?);
    }
    let m = MemberMetadata {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex: r.nullable_string()?,
        rebalance_timeout_ms: r.i32()?,
        server_assignor: r.nullable_string()?,
    };
    r.skip_tags()?;
    Ok(m)
}

fn write_partitions(w: &mut Writer, tps: &TopicPartitions) {
    w.array_len(tps.len());
    for (topic, ps) in tps {
        w.uuid(topic);
        w.array_len(ps.len());
        for p in ps {
            w.i32(*p);
        }
        w.tags();
    }
}

fn read_partitions(r: &mut Reader) -> Result<TopicPartitions> {
    let n = r.array_len()?;
    let mut tps = TopicPartitions::new();
    for _ in 0..n {
        let topic = r.uuid()?;
        let count = r.array_len()?;
        let ps = tps.entry(topic).or_default();
        for _ in 0..count {
            ps.insert(r.i32()?);
        }
        r.skip_tags()?;
    }
    Ok(tps)
}

/// ConsumerGroupTargetAssignmentMemberValue.
pub fn target_member_value(tps: &TopicPartitions) -> Bytes {
    let mut w = value_writer();
    write_partitions(&mut w, tps);
    w.tags();
    w.finish()
}

pub fn decode_target_member_value(bytes: &[u8]) -> Result<TopicPartitions> {
    let mut r = value_reader(bytes)?;
    let tps = read_partitions(&mut r)?;
    r.skip_tags()?;
    Ok(tps)
}

pub fn current_assignment_value(a: &CurrentAssignment) -> Bytes {
    let mut w = value_writer();
    w.i32(a.member_epoch);
    w.i32(a.previous_member_epoch);
    w.i8(a.state);
    write_partitions(&mut w, &a.assigned);
    write_partitions(&mut w, &a.pending_revocation);
    w.tags();
    w.finish()
}

pub fn decode_current_assignment_value(bytes: &[u8]) -> Result<CurrentAssignment> {
    let mut r = value_reader(bytes)?;
    let a = CurrentAssignment {
        member_epoch: r.i32()?,
        previous_member_epoch: r.i32()?,
        state: r.i8()?,
        assigned: read_partitions(&mut r)?,
        pending_revocation: read_partitions(&mut r)?,
    };
    r.skip_tags()?;
    Ok(a)
}
