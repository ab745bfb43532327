//! Records of the `__transaction_state` topic, in Kafka's own format, so
//! that the transaction coordinator's log reads like Kafka's: the key is
//! (version 0, transactional id), the value (version 0) the transaction's
//! metadata; a tombstone (no value) removes an expired transactional id.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::state::{TxnMetadata, TxnState};
use crate::group::records::{DecodeError, Reader, Writer};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn key(transactional_id: &str) -> Bytes {
    let mut w = Writer::new(false);
    w.i16(KEY_VERSION);
    w.string(transactional_id);
    w.finish()
}

pub fn value(md: &TxnMetadata) -> Bytes {
    let mut w = Writer::new(false);
    w.i16(VALUE_VERSION);
    w.i64(md.producer_id);
    w.i16(md.producer_epoch);
    w.i32(md.timeout_ms);
    w.i8(md.state.id());
    // Partitions grouped by topic, as Kafka writes them.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &md.partitions {
        match topics.last_mut() {
            Some((t, parts)) if *t == topic.as_str() => parts.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    w.array_len(topics.len());
    for (topic, parts) in topics {
        w.string(topic);
        w.array_len(parts.len());
        for p in parts {
            w.i32(p);
        }
    }
    w.i64(md.last_update_ms);
    w.i64(md.start_ms);
    w.finish()
}

pub fn decode_key(bytes: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader::new(bytes, false);
    if r.i16()? != KEY_VERSION {
        return Err(DecodeError("unknown transaction log key version"));
    }
    r.string()
}

pub fn decode_value(bytes: &[u8]) -> Result<TxnMetadata, DecodeError> {
    let mut r = Reader::new(bytes, false);
    let version = r.i16()?;
    // Version 1 is flexible (compact lengths, tagged fields); Kafka writes
    // version 0 until transactions V2, and so does this broker.
    if version != 0 {
        return Err(DecodeError("unknown transaction log value version"));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.i8()?).ok_or(DecodeError("unknown transaction state"))?;
    let mut partitions = BTreeSet::new();
    for _ in 0..r.array_len()? {
        let topic = r.string()?;
        for _ in 0..r.array_len()? {
            partitions.insert((topic.clone(), r.i32()?));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    if producer_id < 0 || producer_epoch < 0 {
        return Err(DecodeError("negative producer id or epoch"));
    }
    Ok(TxnMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMetadata {
        TxnMetadata {
            producer_id: 4242,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeSet::from([
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]),
            start_ms: 1_000,
            last_update_ms: 1_500,
        }
    }

    #[test]
    fn keys_and_values_round_trip() {
        assert_eq!(decode_key(&key("my-txn")).unwrap(), "my-txn");
        let md = sample();
        assert_eq!(decode_value(&value(&md)).unwrap(), md);
        let empty = TxnMetadata {
            partitions: BTreeSet::new(),
            state: TxnState::CompleteAbort,
            ..md
        };
        assert_eq!(decode_value(&value(&empty)).unwrap(), empty);
    }

    /// The bytes Kafka's TransactionLogValue v0 gives for the same metadata
    /// (written out field by field from the message's schema).
    #[test]
    fn values_have_kafkas_layout() {
        let md = TxnMetadata {
            partitions: BTreeSet::from([("a".to_string(), 7)]),
            ..sample()
        };
        let mut expected = Vec::new();
        expected.extend_from_slice(&0i16.to_be_bytes());
        expected.extend_from_slice(&4242i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&1i16.to_be_bytes());
        expected.push(b'a');
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(&1_500i64.to_be_bytes());
        expected.extend_from_slice(&1_000i64.to_be_bytes());
        assert_eq!(&value(&md)[..], &expected[..]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = value(&sample());
        for cut in 0..bytes.len() {
            assert!(decode_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_state = bytes.to_vec();
        bad_state[16] = 9;
        assert!(decode_value(&bad_state).is_err());
        assert!(decode_key(&[0, 1]).is_err());
        assert!(decode_value(&[0, 5, 1, 2]).is_err());
    }
}
