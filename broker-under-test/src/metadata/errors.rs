//! Kafka protocol error codes used by the metadata layer, as plain `i16`
//! constants with the names and numbers of Kafka's `Errors.java`.

/// The server experienced an unexpected error.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// No error.
pub const NONE: i16 = 0;
/// This server does not host this topic-partition.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The broker is not the leader (or not a replica) of the partition.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// The request attempted to perform an operation on an invalid topic.
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
/// Topic with this name already exists.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Number of partitions is below 1 (or otherwise invalid).
pub const INVALID_PARTITIONS: i16 = 37;
/// Replication factor is below 1 or larger than the number of available brokers.
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
/// Replica assignment is invalid.
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
/// Configuration is invalid.
pub const INVALID_CONFIG: i16 = 40;
/// This is not the correct controller for this cluster.
pub const NOT_CONTROLLER: i16 = 41;
/// The request is malformed.
pub const INVALID_REQUEST: i16 = 42;
/// The leader epoch in the request is older than the epoch on the controller.
pub const FENCED_LEADER_EPOCH: i16 = 74;
/// Broker epoch has changed.
pub const STALE_BROKER_EPOCH: i16 = 77;
/// The given update version (partition epoch) was invalid.
pub const INVALID_UPDATE_VERSION: i16 = 95;
/// This server does not host this topic ID.
pub const UNKNOWN_TOPIC_ID: i16 = 100;
/// This broker ID is already in use.
pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
/// The given broker ID was not registered.
pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
/// The clusterId in the request does not match that found on the server.
pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
/// The new ISR contains at least one ineligible replica.
pub const INELIGIBLE_REPLICA: i16 = 107;

/// Kafka's name for an error code this module knows, for logs and messages.
pub fn name(code: i16) -> &'static str {
    match code {
        UNKNOWN_SERVER_ERROR => "UNKNOWN_SERVER_ERROR",
        NONE => "NONE",
        UNKNOWN_TOPIC_OR_PARTITION => "UNKNOWN_TOPIC_OR_PARTITION",
        NOT_LEADER_OR_FOLLOWER => "NOT_LEADER_OR_FOLLOWER",
        INVALID_TOPIC_EXCEPTION => "INVALID_TOPIC_EXCEPTION",
        TOPIC_ALREADY_EXISTS => "TOPIC_ALREADY_EXISTS",
        INVALID_PARTITIONS => "INVALID_PARTITIONS",
        INVALID_REPLICATION_FACTOR => "INVALID_REPLICATION_FACTOR",
        INVALID_REPLICA_ASSIGNMENT => "INVALID_REPLICA_ASSIGNMENT",
        INVALID_CONFIG => "INVALID_CONFIG",
        NOT_CONTROLLER => "NOT_CONTROLLER",
        INVALID_REQUEST => "INVALID_REQUEST",
        FENCED_LEADER_EPOCH => "FENCED_LEADER_EPOCH",
        STALE_BROKER_EPOCH => "STALE_BROKER_EPOCH",
        INVALID_UPDATE_VERSION => "INVALID_UPDATE_VERSION",
        UNKNOWN_TOPIC_ID => "UNKNOWN_TOPIC_ID",
        DUPLICATE_BROKER_REGISTRATION => "DUPLICATE_BROKER_REGISTRATION",
        BROKER_ID_NOT_REGISTERED => "BROKER_ID_NOT_REGISTERED",
        INCONSISTENT_CLUSTER_ID => "INCONSISTENT_CLUSTER_ID",
        INELIGIBLE_REPLICA => "INELIGIBLE_REPLICA",
        _ => "UNKNOWN_ERROR_CODE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers are part of the wire protocol: pin them against Kafka's
    /// `org.apache.kafka.common.protocol.Errors`.
    #[test]
    fn codes_match_kafka_errors_java() {
        let table: &[(i16, i16)] = &[
            (UNKNOWN_SERVER_ERROR, -1),
            (NONE, 0),
            (UNKNOWN_TOPIC_OR_PARTITION, 3),
            (NOT_LEADER_OR_FOLLOWER, 6),
            (INVALID_TOPIC_EXCEPTION, 17),
            (TOPIC_ALREADY_EXISTS, 36),
            (INVALID_PARTITIONS, 37),
            (INVALID_REPLICATION_FACTOR, 38),
            (INVALID_REPLICA_ASSIGNMENT, 39),
            (INVALID_CONFIG, 40),
            (NOT_CONTROLLER, 41),
            (INVALID_REQUEST, 42),
            (FENCED_LEADER_EPOCH, 74),
            (STALE_BROKER_EPOCH, 77),
            (INVALID_UPDATE_VERSION, 95),
            (UNKNOWN_TOPIC_ID, 100),
            (DUPLICATE_BROKER_REGISTRATION, 101),
            (BROKER_ID_NOT_REGISTERED, 102),
            (INCONSISTENT_CLUSTER_ID, 104),
            (INELIGIBLE_REPLICA, 107),
        ];
        for &(code, want) in table {
            assert_eq!(code, want, "{}", name(code));
            assert_ne!(name(code), "UNKNOWN_ERROR_CODE");
        }
        assert_eq!(name(9999), "UNKNOWN_ERROR_CODE");
    }
}
