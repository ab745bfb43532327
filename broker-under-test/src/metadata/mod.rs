//! Cluster metadata, KRaft style, as three deterministic sans-IO layers.
//!
//! 1. [`records`]: [`MetadataRecord`], the entries of the metadata log
//!    (broker registrations and fencing, topics, partitions and their
//!    changes, configs), with a compact versioned binary encoding whose
//!    decoder refuses hostile bytes with a [`DecodeError`] and never panics.
//! 2. [`image`]: [`MetadataImage`], the state obtained by applying committed
//!    records in offset order (`apply(offset, &record)`, total: a record
//!    that does not fit is skipped with a warning), plus its snapshot
//!    format: the records that rebuild the image, under a header with the
//!    applied offset and a CRC-32C.
//! 3. [`controller`]: [`Controller`], the active controller's command
//!    handling (broker registration, heartbeats and session expiry,
//!    controlled shutdown, topic creation and deletion, partition creation,
//!    ISR changes) over a *working* image: the committed image plus its own
//!    not-yet-committed proposals, applied at once so that commands see
//!    each other.
//!
//! How the node uses them:
//!
//! - Every node keeps a committed [`MetadataImage`]. It applies the
//!   metadata records the quorum commits, in offset order, and serves
//!   Metadata / DescribeCluster and partition leadership from it.
//! - It snapshots the image with [`MetadataImage::encode_snapshot`] (so the
//!   metadata log can be truncated) and restores it at start with
//!   [`MetadataImage::decode_snapshot`] followed by the log after
//!   `applied_offset`.
//! - Whenever the node becomes the active controller it builds a fresh
//!   [`Controller`] from a clone of the committed image
//!   ([`Controller::new`]); each command returns records that the node
//!   proposes through the quorum in order, answering the client once they
//!   commit. `tick` runs at [`Controller::next_deadline`] to fence brokers
//!   whose sessions expired. When the node loses leadership (or a proposal
//!   is lost) it drops the `Controller`: its working image may hold records
//!   that will never commit.
//! - The property the node relies on: replaying the controller's records,
//!   in the order returned, onto the committed image it was built from
//!   yields exactly the controller's working image.
//!
//! Error codes are Kafka's, as plain `i16` constants in [`errors`].

mod codec;
pub mod controller;
pub mod errors;
pub mod image;
pub mod records;

#[cfg(test)]
mod controller_tests;
#[cfg(test)]
mod test_support;

pub use codec::DecodeError;
pub use controller::{
    AlterPartitionReply, AlterPartitionReq, BrokerRegistrationReq, Controller, ControllerConfig,
    CreatePartitionsReq, CreatePartitionsResult, CreateTopicReq, CreateTopicResult,
    DeleteTopicResult, HeartbeatReply, HeartbeatReq, MAX_PARTITIONS_PER_TOPIC,
};
pub use image::{BrokerInfo, MetadataImage, PartitionImage, TopicImage};
pub use records::{Endpoint, MetadataRecord, NO_LEADER, RESOURCE_BROKER, RESOURCE_TOPIC};
