//! The group coordinator over `__consumer_offsets`: classic groups (JoinGroup
//! and SyncGroup) and KIP-848 consumer groups (ConsumerGroupHeartbeat, in
//! `consumer.rs` and `consumer_heartbeat.rs`). A group id names one or the other.
//!
//! Pure and sans-IO like the rest of the broker: the node decodes requests
//! into the plain structs below, calls [`Coordinator`], and carries out the
//! [`Effect`]s it returns — answers (some of them long after the request, as
//! a JoinGroup waits for the rebalance) and appends to a `__consumer_offsets`
//! partition whose completion (once replicated like an acks=all write) it
//! reports back with [`Coordinator::on_append_done`].
//!
//! The coordinator serves the groups of the `__consumer_offsets` partitions
//! this node leads. A partition is *loading* from [`Coordinator::begin_load`]
//! until [`Coordinator::finish_load`]: its records are fed in log order with
//! [`Coordinator::replay`], and requests for its groups are answered
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile. [`Coordinator::unload`] drops a
//! partition when leadership moves away: its groups' waiting requests are
//! answered NOT_COORDINATOR.
//!
//! Error codes are Kafka's (`kafka_protocol::error::ResponseError::code()`).

pub mod assignors;
pub mod consumer;
mod consumer_heartbeat;
pub mod coordinator;
#[allow(clippy::module_inception)] // the folder is the coordinator; this file is one group
pub mod group;
mod membership;
mod offsets;
pub mod records;
#[cfg(test)]
mod tests;

pub use coordinator::Coordinator;

/// The node's handle of one request, echoed in the [`Effect::Reply`] for it.
pub type ReqId = u64;
/// The coordinator's handle of one append, echoed in `on_append_done`.
pub type AppendToken = u64;

/// Kafka's partition for a group: `abs(javaStringHashCode(group_id)) % partitions`,
/// so a group lands where Kafka would put it.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// What the coordinator is configured with (Kafka's broker config names).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an
    /// empty group waits for more members.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 members).
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms` (KIP-848 members).
    pub consumer_session_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_session_timeout_ms: 45_000,
        }
    }
}

/// JoinGroup, as decoded by the node (all versions).
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub group_id: String,
    pub session_timeout_ms: i32,
    /// v0 has none: the node passes the session timeout, as Kafka does.
    pub rebalance_timeout_ms: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, bytes::Bytes)>,
    /// v4+: an unknown member joining with an empty id is first given an id
    /// and answered MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    pub client_id: String,
    pub client_host: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: bytes::Bytes,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinResponse {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinMember>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+; checked against the group's when present (INCONSISTENT_GROUP_PROTOCOL).
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment bytes).
    pub assignments: Vec<(String, bytes::Bytes)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: bytes::Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// LeaveGroup: v0-2 name one member by id; v3+ a batch by id or instance id.
#[derive(Debug, Clone, Default)]
pub struct LeaveRequest {
    pub group_id: String,
    /// (member id, group instance id, reason).
    pub members: Vec<(String, Option<String>, Option<String>)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaveResponse {
    /// Group-level error (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, ...).
    pub error: i16,
    /// Per member, in request order: (member id, group instance id, error).
    pub members: Vec<(String, Option<String>, i16)>,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, Default)]
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 with an empty member id: a commit from outside any generation
    /// (assign()-style consumers, admin tools), allowed only for groups
    /// without members.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// Partitions the node already refused (unknown topic or partition);
    /// they are answered with their error and not committed.
    pub partitions: Vec<(CommitPartition, i16)>,
}

/// Per partition, in request order: (topic, partition, error).
pub type CommitResponse = Vec<(String, i32, i16)>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// OffsetFetch for one group. `None`: all the group's committed partitions.
#[derive(Debug, Clone, Default)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    pub partitions: Option<Vec<(String, i32)>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetFetchResponse {
    pub error: i16,
    /// (topic, partition, committed offset or None (answered -1), error).
    pub partitions: Vec<(String, i32, Option<CommittedOffset>, i16)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// "classic" or "consumer" (ListGroups v5).
    pub group_type: String,
    /// Kafka's state name: "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead".
    pub state: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: bytes::Bytes,
    pub assignment: bytes::Bytes,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribedGroup {
    pub error: i16,
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// Which answer a request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
    Heartbeat(i16),
    Leave(LeaveResponse),
    Commit(CommitResponse),
    /// DeleteGroups: one error per group of the request, answered when the
    /// tombstones are replicated.
    Delete(Vec<(String, i16)>),
    /// OffsetDelete: group-level error and per-partition errors.
    OffsetDelete(i16, Vec<(String, i32, i16)>),
    ConsumerHeartbeat(ConsumerHeartbeatResponse),
}

/// ConsumerGroupHeartbeat (KIP-848), as decoded by the node (v0-1).
#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeatRequest {
    pub version: i16,
    pub group_id: String,
    pub member_id: String,
    /// 0: join; -1: leave; -2: static member leaving for a while.
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns; `None`: unchanged since the last heartbeat.
    pub owned: Option<assignors::TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerHeartbeatResponse {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed (or the member's view differs): the partitions
    /// the member may own now.
    pub assignment: Option<assignors::TopicPartitions>,
}

/// One member of a ConsumerGroupDescribe answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribedConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: assignors::TopicPartitions,
    pub target_assignment: assignors::TopicPartitions,
}

/// ConsumerGroupDescribe for one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribedConsumerGroup {
    pub error: i16,
    pub group_id: String,
    /// "Empty", "Assigning", "Reconciling", "Stable" or "Dead".
    pub state: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<DescribedConsumerMember>,
}

/// What the node must do for the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer request `req`.
    Reply { req: ReqId, reply: Reply },
    /// Append these records (key, value or tombstone) as one batch to
    /// `__consumer_offsets` partition `partition`, then call
    /// [`Coordinator::on_append_done`] with `token` once the high watermark
    /// passes the batch (`Ok`), or with the Kafka error code when it fails
    /// (not leader any more, timeout, storage error).
    Append {
        partition: i32,
        token: AppendToken,
        records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
    },
}

/// A snapshot of one group for the simulator's monitor (no two members own
/// one partition in one generation is checked on histories; this lets the
/// monitor see generations and states after every step).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub group_id: String,
    pub state: String,
    pub generation_id: i32,
    pub protocol: Option<String>,
    /// member id -> assignment bytes of the current generation (empty until synced).
    pub assignments: Vec<(String, bytes::Bytes)>,
    /// (topic, partition) -> committed offset.
    pub offsets: Vec<((String, i32), i64)>,
}
