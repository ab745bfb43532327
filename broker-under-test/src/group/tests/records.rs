//! `__consumer_offsets` formats: every version round-trips, Kafka's exact
//! bytes for a known record, and garbage is an error, never a panic.

use bytes::Bytes;
use proptest::prelude::*;

use crate::group::records::*;

fn offset_strategy() -> impl Strategy<Value = OffsetValue> {
    (any::<i64>(), any::<i32>(), ".{0,20}", any::<i64>()).prop_map(|(offset, epoch, md, ts)| {
        OffsetValue {
            offset,
            leader_epoch: epoch,
            metadata: md,
            commit_timestamp_ms: ts,
            expire_timestamp_ms: None,
        }
    })
}

fn member_strategy() -> impl Strategy<Value = MemberValue> {
    (
        "[a-z0-9-]{0,12}",
        proptest::option::of("[a-z]{1,6}"),
        ".{0,8}",
        any::<i32>(),
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(id, instance, client, rt, st, sub, asg)| MemberValue {
            member_id: id,
            group_instance_id: instance,
            client_id: client,
            client_host: "/10.0.0.1".into(),
            rebalance_timeout_ms: rt,
            session_timeout_ms: st,
            subscription: Bytes::from(sub),
            assignment: Bytes::from(asg),
        })
}

fn group_strategy() -> impl Strategy<Value = GroupValue> {
    (
        "[a-z]{0,8}",
        any::<i32>(),
        proptest::option::of("[a-z]{1,8}"),
        proptest::option::of("[a-z0-9-]{1,8}"),
        any::<i64>(),
        proptest::collection::vec(member_strategy(), 0..4),
    )
        .prop_map(
            |(pt, generation, protocol, leader, ts, members)| GroupValue {
                protocol_type: pt,
                generation,
                protocol,
                leader,
                current_state_timestamp_ms: ts,
                members,
            },
        )
}

/// What survives writing `v` as `version`.
fn group_as_read(mut v: GroupValue, version: i16) -> GroupValue {
    if version < 2 {
        v.current_state_timestamp_ms = -1;
    }
    for m in &mut v.members {
        if version < 3 {
            m.group_instance_id = None;
        }
        if version < 1 {
            m.rebalance_timeout_ms = m.session_timeout_ms;
        }
    }
    v
}

proptest! {
    #[test]
    fn offset_values_round_trip(v in offset_strategy(), version in 0i16..=4) {
        let mut expected = v.clone();
        if version < 3 {
            expected.leader_epoch = -1;
        }
        let bytes = offset_value_version(&v, version);
        prop_assert_eq!(decode_offset_value(&bytes).unwrap(), expected);
    }

    #[test]
    fn group_values_round_trip(v in group_strategy(), version in 0i16..=4) {
        let bytes = group_value_version(&v, version);
        prop_assert_eq!(decode_group_value(&bytes).unwrap(), group_as_read(v, version));
    }

    #[test]
    fn keys_round_trip(group in ".{0,12}", topic in ".{0,12}", partition in any::<i32>()) {
        prop_assert_eq!(
            decode_key(&offset_key(&group, &topic, partition)).unwrap(),
            RecordKey::Offset { group: group.clone(), topic, partition }
        );
        prop_assert_eq!(decode_key(&group_key(&group)).unwrap(), RecordKey::Group { group });
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_key(&bytes);
        let _ = decode_offset_value(&bytes);
        let _ = decode_group_value(&bytes);
    }

    #[test]
    fn truncated_records_are_errors(v in group_strategy(), version in 0i16..=4, cut in 0usize..64) {
        let bytes = group_value_version(&v, version);
        if cut < bytes.len() {
            prop_assert!(decode_group_value(&bytes[..cut]).is_err());
        }
    }
}

#[test]
fn offset_commit_key_and_value_v3_bytes_are_kafkas() {
    let key = offset_key("g", "t", 7);
    assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
    let value = offset_value(&OffsetValue {
        offset: 5,
        leader_epoch: 2,
        metadata: "m".into(),
        commit_timestamp_ms: 9,
        expire_timestamp_ms: None,
    });
    let mut expected = vec![0, 3];
    expected.extend(5i64.to_be_bytes());
    expected.extend(2i32.to_be_bytes());
    expected.extend([0, 1, b'm']);
    expected.extend(9i64.to_be_bytes());
    assert_eq!(&value[..], &expected[..]);
}

#[test]
fn group_metadata_v3_bytes_are_kafkas() {
    let v = GroupValue {
        protocol_type: "c".into(),
        generation: 1,
        protocol: None,
        leader: Some("l".into()),
        current_state_timestamp_ms: 4,
        members: vec![MemberValue {
            member_id: "l".into(),
            group_instance_id: None,
            client_id: "x".into(),
            client_host: "h".into(),
            rebalance_timeout_ms: 2,
            session_timeout_ms: 3,
            subscription: Bytes::from_static(&[9]),
            assignment: Bytes::new(),
        }],
    };
    let mut e = vec![0, 3, 0, 1, b'c', 0, 0, 0, 1, 0xff, 0xff, 0, 1, b'l'];
    e.extend(4i64.to_be_bytes());
    e.extend([0, 0, 0, 1]); // one member
    e.extend([0, 1, b'l', 0xff, 0xff, 0, 1, b'x', 0, 1, b'h']);
    e.extend([0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1, 9, 0, 0, 0, 0]);
    assert_eq!(&group_value(&v)[..], &e[..]);
    assert_eq!(&group_key("g")[..], &[0, 2, 0, 1, b'g']);
}

#[test]
fn v1_offset_value_keeps_the_expire_timestamp() {
    let v = OffsetValue {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 2,
        expire_timestamp_ms: Some(3),
    };
    let bytes = offset_value(&v);
    assert_eq!(&bytes[..2], &[0, 1]);
    assert_eq!(decode_offset_value(&bytes).unwrap(), v);
}

#[test]
fn unknown_versions_and_lengths_past_the_end_are_errors() {
    assert!(decode_offset_value(&[0, 9, 0, 0]).is_err());
    assert!(decode_group_value(&[0xff, 0xff]).is_err());
    assert_eq!(
        decode_key(&[0, 11, 1, 2]).unwrap(),
        RecordKey::Other { version: 11 }
    );
    // A consumer group member key whose group id runs past the end.
    assert!(decode_key(&[0, 5, 1, 2]).is_err());
    // A string claiming more bytes than there are.
    assert!(decode_key(&[0, 2, 0x7f, 0xff, b'a']).is_err());
    // A member array claiming 2^31-1 members.
    let mut v = vec![0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
    v.extend(0i64.to_be_bytes());
    v.extend([0x7f, 0xff, 0xff, 0xff]);
    assert!(decode_group_value(&v).is_err());
}
