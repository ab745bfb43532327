//! Record batches (format v2, magic 2): parsing and validation. Pure functions.
//!
//! Layout of the 61-byte header:
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
//! crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
//! maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
//! recordsCount i32 | records`. The CRC-32C covers `attributes` to the end.

use std::fmt;

use bytes::Bytes;
use kafka_protocol::compression::Decompressor;
use kafka_protocol::records::Compression;

use super::producers::{Marker, CONTROL_FLAG};

/// Bytes of a batch header, including the 12-byte offset + length prefix.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;

/// The parsed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The whole batch's size in bytes, including the 12-byte prefix.
    pub length: usize,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
    pub compression: Compression,
}

impl BatchHeader {
    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
}

/// Why a record set was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Malformed, truncated or failing its CRC (Kafka's CORRUPT_MESSAGE /
    /// INVALID_RECORD).
    Corrupt(String),
    /// A batch bigger than `message.max.bytes` (MESSAGE_TOO_LARGE).
    TooLarge { size: usize, max: usize },
    /// A magic byte other than 2 (UNSUPPORTED_FOR_MESSAGE_FORMAT).
    UnsupportedMagic(i8),
    /// A follower's append whose batches do not continue the log: `got` is the
    /// base offset found where `expected` was due.
    OffsetMismatch { expected: i64, got: i64 },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Corrupt(why) => write!(f, "corrupt record batch: {why}"),
            BatchError::TooLarge { size, max } => {
                write!(
                    f,
                    "record batch of {size} bytes exceeds the maximum of {max}"
                )
            }
            BatchError::UnsupportedMagic(m) => write!(f, "unsupported record batch magic {m}"),
            BatchError::OffsetMismatch { expected, got } => {
                write!(f, "batch at offset {got} where {expected} was expected")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// Why [`parse_header`] could not produce a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The buffer ends before the batch does; `needed` is the batch's whole
    /// length if known, else the header length.
    Incomplete {
        needed: usize,
    },
    Corrupt(String),
    UnsupportedMagic(i8),
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The whole length of the batch starting at `bytes[0]`, if its prefix is there.
fn declared_len(bytes: &[u8]) -> Option<Result<usize, HeaderError>> {
    if bytes.len() < LOG_OVERHEAD {
        return None;
    }
    let batch_length = be_i32(bytes, 8);
    if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Some(Err(HeaderError::Corrupt(format!(
            "batch length {batch_length} is too small"
        ))));
    }
    Some(Ok(batch_length as usize + LOG_OVERHEAD))
}

/// Parse the header of the batch at the start of `bytes` (no CRC check). The
/// whole batch must be present.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, HeaderError> {
    let length = match declared_len(bytes) {
        None => return Err(HeaderError::Incomplete { needed: HEADER_LEN }),
        Some(r) => r?,
    };
    if bytes.len() > MAGIC_POS {
        let magic = bytes[MAGIC_POS] as i8;
        if magic != 2 {
            return Err(HeaderError::UnsupportedMagic(magic));
        }
    }
    if bytes.len() < length {
        return Err(HeaderError::Incomplete { needed: length });
    }
    let b = &bytes[..length];
    let attributes = be_i16(b, ATTRIBUTES_POS);
    let compression = match attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => {
            return Err(HeaderError::Corrupt(format!(
                "unknown compression codec {other}"
            )))
        }
    };
    let header = BatchHeader {
        base_offset: be_i64(b, 0),
        length,
        partition_leader_epoch: be_i32(b, 12),
        magic: b[MAGIC_POS] as i8,
        crc: be_i32(b, CRC_POS) as u32,
        attributes,
        last_offset_delta: be_i32(b, 23),
        base_timestamp: be_i64(b, 27),
        max_timestamp: be_i64(b, 35),
        producer_id: be_i64(b, 43),
        producer_epoch: be_i16(b, 51),
        base_sequence: be_i32(b, 53),
        record_count: be_i32(b, 57),
        compression,
    };
    if header.last_offset_delta < 0 {
        return Err(HeaderError::Corrupt(format!(
            "negative lastOffsetDelta {}",
            header.last_offset_delta
        )));
    }
    Ok(header)
}

/// Whether the batch's stored CRC-32C matches its content. `batch` starts
/// with the batch `header` was parsed from and holds all of it.
pub fn crc_ok(batch: &[u8], header: &BatchHeader) -> bool {
    match batch.get(ATTRIBUTES_POS..header.length) {
        Some(covered) => crc32c::crc32c(covered) == header.crc,
        None => false,
    }
}

/// Read a zig-zag varint (up to 10 bytes) at `*pos`.
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Count the records in an (uncompressed) records section by walking their
/// length prefixes; the section must end exactly after the last one.
fn count_records(buf: &[u8]) -> Result<usize, String> {
    let mut pos = 0;
    let mut count = 0;
    while pos < buf.len() {
        let len = read_varint(buf, &mut pos).ok_or("malformed record length varint")?;
        if len <= 0 || len as u64 > (buf.len() - pos) as u64 {
            return Err(format!(
                "record {count} has length {len} with {} bytes left",
                buf.len() - pos
            ));
        }
        pos += len as usize;
        count += 1;
    }
    Ok(count)
}

fn count_compressed(records: &[u8], compression: Compression) -> Result<usize, String> {
    use kafka_protocol::compression as c;
    let mut input = Bytes::copy_from_slice(records);
    let walk = |buf: &mut Bytes| -> anyhow::Result<usize> {
        count_records(buf).map_err(anyhow::Error::msg)
    };
    let result = match compression {
        Compression::None => return count_records(records),
        Compression::Gzip => c::Gzip::decompress(&mut input, walk),
        Compression::Snappy => c::Snappy::decompress(&mut input, walk),
        Compression::Lz4 => c::Lz4::decompress(&mut input, walk),
        Compression::Zstd => c::Zstd::decompress(&mut input, walk),
    };
    result.map_err(|e| format!("{e:#}"))
}

/// Walk the records of one (possibly compressed) section, calling `f` with
/// each record's (offset delta, timestamp delta) until it returns true.
fn walk_record_times(buf: &[u8], f: &mut dyn FnMut(i64, i64) -> bool) -> Result<(), String> {
    let mut pos = 0;
    while pos < buf.len() {
        let len = read_varint(buf, &mut pos).ok_or("malformed record length varint")?;
        if len <= 0 || len as u64 > (buf.len() - pos) as u64 {
            return Err(format!(
                "record length {len} with {} bytes left",
                buf.len() - pos
            ));
        }
        let end = pos + len as usize;
        let mut p = pos + 1; // attributes
        let ts_delta = read_varint(&buf[..end], &mut p).ok_or("malformed timestamp delta")?;
        let offset_delta = read_varint(&buf[..end], &mut p).ok_or("malformed offset delta")?;
        if f(offset_delta, ts_delta) {
            return Ok(());
        }
        pos = end;
    }
    Ok(())
}

/// The first record of `batch` (one whole batch) with timestamp >= `target`:
/// (offset, timestamp). Decompresses if needed; never trusts the record count.
pub fn find_timestamp(batch: &[u8], target: i64) -> Result<Option<(i64, i64)>, BatchError> {
    let header = parse_header(batch).map_err(|e| BatchError::Corrupt(format!("{e:?}")))?;
    let log_append_time = header.attributes & (1 << 3) != 0;
    let mut found = None;
    let mut visit = |offset_delta: i64, ts_delta: i64| {
        let ts = if log_append_time {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(ts_delta)
        };
        if ts >= target {
            found = Some((header.base_offset.saturating_add(offset_delta), ts));
            true
        } else {
            false
        }
    };
    let records = &batch[HEADER_LEN..header.length];
    let result = match header.compression {
        Compression::None => walk_record_times(records, &mut visit),
        c => {
            use kafka_protocol::compression as cmp;
            let mut input = Bytes::copy_from_slice(records);
            let walk = |buf: &mut Bytes| -> anyhow::Result<()> {
                walk_record_times(buf, &mut visit).map_err(anyhow::Error::msg)
            };
            let r = match c {
                Compression::Gzip => cmp::Gzip::decompress(&mut input, walk),
                Compression::Snappy => cmp::Snappy::decompress(&mut input, walk),
                Compression::Lz4 => cmp::Lz4::decompress(&mut input, walk),
                _ => cmp::Zstd::decompress(&mut input, walk),
            };
            r.map_err(|e| format!("{e:#}"))
        }
    };
    result.map_err(BatchError::Corrupt)?;
    Ok(found)
}

/// Validate a produce request's record set: one or more whole v2 batches,
/// each within `max_batch_bytes`, with a good CRC and as many records as it
/// claims (decompressing if needed). Returns the headers.
pub fn validate_record_set(
    bytes: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, BatchError> {
    if bytes.is_empty() {
        return Err(BatchError::Corrupt("empty record set".into()));
    }
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if let Some(Ok(len)) = declared_len(rest) {
            if len > max_batch_bytes {
                return Err(BatchError::TooLarge {
                    size: len,
                    max: max_batch_bytes,
                });
            }
        }
        let header = match parse_header(rest) {
            Ok(h) => h,
            Err(HeaderError::Incomplete { needed }) => {
                return Err(BatchError::Corrupt(format!(
                    "truncated batch at byte {pos}: needs {needed} bytes, {} present",
                    rest.len()
                )))
            }
            Err(HeaderError::Corrupt(why)) => {
                return Err(BatchError::Corrupt(format!("batch at byte {pos}: {why}")))
            }
            Err(HeaderError::UnsupportedMagic(m)) => return Err(BatchError::UnsupportedMagic(m)),
        };
        let batch = &rest[..header.length];
        if !crc_ok(batch, &header) {
            return Err(BatchError::Corrupt(format!(
                "batch at byte {pos}: CRC mismatch"
            )));
        }
        if header.record_count <= 0 {
            return Err(BatchError::Corrupt(format!(
                "batch at byte {pos}: record count {}",
                header.record_count
            )));
        }
        if i64::from(header.last_offset_delta) != i64::from(header.record_count) - 1 {
            return Err(BatchError::Corrupt(format!(
                "batch at byte {pos}: lastOffsetDelta {} with {} records",
                header.last_offset_delta, header.record_count
            )));
        }
        let present = count_compressed(&batch[HEADER_LEN..], header.compression)
            .map_err(|why| BatchError::Corrupt(format!("batch at byte {pos}: {why}")))?;
        if present != header.record_count as usize {
            return Err(BatchError::Corrupt(format!(
                "batch at byte {pos}: claims {} records, holds {present}",
                header.record_count
            )));
        }
        headers.push(header);
        pos += header.length;
    }
    Ok(headers)
}

/// Rewrite each batch's baseOffset (and partitionLeaderEpoch) in place so
/// that offsets continue from `first_offset`. Both fields are outside the
/// CRC. Stops quietly at anything malformed (the input was validated).
pub fn assign_offsets(bytes: &mut [u8], first_offset: i64, leader_epoch: i32) {
    let mut pos = 0;
    let mut next = first_offset;
    while pos + HEADER_LEN <= bytes.len() {
        let header = match parse_header(&bytes[pos..]) {
            Ok(h) => h,
            Err(_) => return,
        };
        bytes[pos..pos + 8].copy_from_slice(&next.to_be_bytes());
        bytes[pos + 12..pos + 16].copy_from_slice(&leader_epoch.to_be_bytes());
        next = next.saturating_add(i64::from(header.last_offset_delta) + 1);
        pos += header.length;
    }
}

/// Set a batch's producer id, epoch and base sequence (and its CRC, which
/// covers them): how a client stamps a pre-encoded batch for idempotence.
/// Does nothing to bytes too short to be a batch.
pub fn set_producer(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    if batch.len() < HEADER_LEN {
        return;
    }
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A control record's type (the second field of its key).
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// The control batch ending a transaction of `producer_id`: one record whose
/// key is (version 0, abort 0 / commit 1) and whose value is (version 0,
/// coordinator epoch), as Kafka writes it. Offsets are assigned on append.
pub fn encode_marker(producer_id: i64, epoch: i16, marker: Marker, timestamp: i64) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let kind = if marker.commit {
        CONTROL_COMMIT
    } else {
        CONTROL_ABORT
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, std::iter::once(&record), &options)
        .expect("one small uncompressed record always encodes");
    buf.freeze()
}

/// Whether the batch is a control batch.
pub fn is_control(h: &BatchHeader) -> bool {
    h.attributes & CONTROL_FLAG != 0
}

/// The marker of a control batch (whole, CRC-checked): `None` when it is
/// not one, or its record is not a commit or abort marker (Kafka skips
/// control records of unknown types).
pub fn read_marker(batch: &[u8], h: &BatchHeader) -> Option<Marker> {
    if !is_control(h) || h.compression != Compression::None || batch.len() < h.length {
        return None;
    }
    let mut r = VarReader(&batch[HEADER_LEN..h.length]);
    let _length = r.varint()?;
    let _attributes = r.take(1)?;
    let _timestamp_delta = r.varint()?;
    let _offset_delta = r.varint()?;
    let key_len = r.varint()?;
    if key_len != 4 {
        return None;
    }
    let key = r.take(4)?;
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let value_len = r.varint()?;
    let coordinator_epoch = if value_len >= 6 {
        let v = r.take(6)?;
        i32::from_be_bytes([v[2], v[3], v[4], v[5]])
    } else {
        -1
    };
    match kind {
        CONTROL_ABORT | CONTROL_COMMIT => Some(Marker {
            commit: kind == CONTROL_COMMIT,
            coordinator_epoch,
        }),
        _ => None,
    }
}

/// Zig-zag varints, as records encode their fields.
struct VarReader<'a>(&'a [u8]);

impl<'a> VarReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn varint(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }
}

/// Why [`scan`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// The buffer ended exactly after a batch.
    End,
    /// The last batch is cut; it needs `needed` bytes from its start.
    Incomplete { needed: usize },
    /// The batch at the valid prefix's end is invalid.
    Corrupt(String),
}

/// Walk whole batches with valid CRCs from the start of `bytes`.
pub fn scan(bytes: &[u8]) -> (Vec<BatchHeader>, usize, ScanStop) {
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let header = match parse_header(rest) {
            Ok(h) => h,
            Err(HeaderError::Incomplete { needed }) => {
                return (headers, pos, ScanStop::Incomplete { needed })
            }
            Err(HeaderError::Corrupt(why)) => return (headers, pos, ScanStop::Corrupt(why)),
            Err(HeaderError::UnsupportedMagic(m)) => {
                return (headers, pos, ScanStop::Corrupt(format!("magic byte {m}")))
            }
        };
        if !crc_ok(rest, &header) {
            return (headers, pos, ScanStop::Corrupt("CRC mismatch".into()));
        }
        headers.push(header);
        pos += header.length;
    }
    (headers, pos, ScanStop::End)
}

/// Walk whole valid batches (CRC checked) for recovery: the headers, the
/// length of the valid prefix, and why the walk stopped before the end.
pub fn scan_batches(bytes: &[u8]) -> (Vec<BatchHeader>, usize, Option<String>) {
    let (headers, valid, stop) = scan(bytes);
    let why = match stop {
        ScanStop::End => None,
        ScanStop::Incomplete { needed } => Some(format!(
            "partial batch at byte {valid}: needs {needed} bytes, {} present",
            bytes.len() - valid
        )),
        ScanStop::Corrupt(why) => Some(format!("invalid batch at byte {valid}: {why}")),
    };
    (headers, valid, why)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    /// A v2 batch of `count` records with `value_len`-byte values and the given timestamps.
    pub(crate) fn make_batch_ts(
        count: usize,
        value_len: usize,
        compression: Compression,
        ts: &[i64],
    ) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: ts.get(i).copied().unwrap_or(1_000 + i as i64),
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; value_len])),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    /// One idempotent batch of `values`: producer `pid`, `epoch`, base
    /// sequence `seq`, timestamps from 1000.
    pub(crate) fn make_producer_batch(pid: i64, epoch: i16, seq: i32, values: &[&[u8]]) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 0,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // offset - sequence constant: the encoder keeps one batch.
                sequence: i as i32,
                timestamp: 1_000 + i as i64,
                key: None,
                value: Some(Bytes::copy_from_slice(v)),
                headers: IndexMap::new(),
            })
            .collect();
        let mut b = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut b, &records, &options).unwrap();
        set_producer(&mut b, pid, epoch, seq);
        b.freeze()
    }

    pub(crate) fn make_batch(count: usize, value_len: usize, compression: Compression) -> Bytes {
        make_batch_ts(count, value_len, compression, &[])
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn valid_batches_pass() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = make_batch(10, 20, c);
            let h = validate_record_set(&b, 1 << 20).unwrap();
            assert_eq!(h.len(), 1);
            assert_eq!(h[0].record_count, 10);
            assert_eq!(h[0].last_offset(), 9);
            assert_eq!(h[0].compression, c);
            assert_eq!(h[0].length, b.len());
        }
        let mut two = BytesMut::new();
        two.extend_from_slice(&make_batch(3, 5, Compression::None));
        two.extend_from_slice(&make_batch(2, 5, Compression::Gzip));
        assert_eq!(validate_record_set(&two, 1 << 20).unwrap().len(), 2);
    }

    #[test]
    fn set_producer_stamps_the_header_and_keeps_the_crc_valid() {
        let mut b = BytesMut::from(&make_batch(3, 10, Compression::None)[..]);
        set_producer(&mut b, 77, 2, 40);
        let h = validate_record_set(&b, 1 << 20).unwrap()[0];
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 2, 40)
        );
        set_producer(&mut b[..10], 1, 1, 1); // too short: left alone
    }

    #[test]
    fn flipped_byte_is_corrupt() {
        for c in [Compression::None, Compression::Gzip] {
            let b = make_batch(10, 20, c);
            for at in [30, b.len() - 1] {
                let mut m = b.to_vec();
                m[at] ^= 0x40;
                assert!(
                    matches!(
                        validate_record_set(&m, 1 << 20),
                        Err(BatchError::Corrupt(_))
                    ),
                    "{c:?} {at}"
                );
            }
        }
    }

    #[test]
    fn wrong_count_is_corrupt() {
        for c in [Compression::None, Compression::Zstd] {
            let mut m = make_batch(5, 10, c).to_vec();
            m[57..61].copy_from_slice(&4i32.to_be_bytes());
            m[23..27].copy_from_slice(&3i32.to_be_bytes());
            fix_crc(&mut m);
            let err = validate_record_set(&m, 1 << 20).unwrap_err();
            assert!(
                matches!(&err, BatchError::Corrupt(why) if why.contains("record")),
                "{err:?}"
            );
            // count and lastOffsetDelta disagreeing
            let mut m = make_batch(5, 10, c).to_vec();
            m[23..27].copy_from_slice(&7i32.to_be_bytes());
            fix_crc(&mut m);
            assert!(matches!(
                validate_record_set(&m, 1 << 20),
                Err(BatchError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn too_large_truncated_magic_empty() {
        let b = make_batch(10, 100, Compression::None);
        assert_eq!(
            validate_record_set(&b, 100),
            Err(BatchError::TooLarge {
                size: b.len(),
                max: 100
            })
        );
        for cut in [1, 11, 30, 60, b.len() - 1] {
            assert!(
                matches!(
                    validate_record_set(&b[..cut], 1 << 20),
                    Err(BatchError::Corrupt(_))
                ),
                "{cut}"
            );
        }
        let mut m = b.to_vec();
        m[16] = 1;
        assert_eq!(
            validate_record_set(&m, 1 << 20),
            Err(BatchError::UnsupportedMagic(1))
        );
        assert!(matches!(
            validate_record_set(&[], 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        let mut m = b.to_vec();
        m[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_record_set(&m, 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn assign_and_scan() {
        let mut set = BytesMut::new();
        set.extend_from_slice(&make_batch(3, 5, Compression::None));
        set.extend_from_slice(&make_batch(2, 5, Compression::Lz4));
        let mut set = set.to_vec();
        assign_offsets(&mut set, 100, 7);
        let h = validate_record_set(&set, 1 << 20).unwrap();
        assert_eq!((h[0].base_offset, h[0].partition_leader_epoch), (100, 7));
        assert_eq!((h[1].base_offset, h[1].last_offset()), (103, 104));
        let decoded =
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut Bytes::from(set.clone()))
                .unwrap();
        assert_eq!(decoded[1].records[1].offset, 104);

        let (hs, valid, why) = scan_batches(&set);
        assert_eq!((hs.len(), valid, why), (2, set.len(), None));
        let (hs, valid, why) = scan_batches(&set[..set.len() - 3]);
        assert_eq!((hs.len(), valid), (1, h[0].length));
        assert!(why.unwrap().contains("partial"));
        let mut m = set.clone();
        let last = m.len() - 2;
        m[last] ^= 1;
        let (hs, valid, why) = scan_batches(&m);
        assert_eq!((hs.len(), valid), (1, h[0].length));
        assert!(why.unwrap().contains("CRC"));
        let (hs, valid, _) = scan_batches(&[0u8; 100]);
        assert_eq!((hs.len(), valid), (0, 0));
    }

    #[test]
    fn finds_timestamps_in_batches() {
        for c in [Compression::None, Compression::Gzip, Compression::Lz4] {
            let mut b = make_batch_ts(3, 5, c, &[100, 300, 200]).to_vec();
            assign_offsets(&mut b, 10, 0);
            assert_eq!(find_timestamp(&b, 150), Ok(Some((11, 300))));
            assert_eq!(find_timestamp(&b, 100), Ok(Some((10, 100))));
            assert_eq!(find_timestamp(&b, 301), Ok(None));
        }
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = validate_record_set(&bytes, 1 << 20);
            let _ = scan_batches(&bytes);
            let _ = find_timestamp(&bytes, 0);
            let mut b = bytes.clone();
            assign_offsets(&mut b, 5, 1);
        }

        #[test]
        fn mutated_batches_never_panic(at in 0usize..400, value in proptest::prelude::any::<u8>(), codec in 0usize..3) {
            let c = [Compression::None, Compression::Gzip, Compression::Zstd][codec];
            let mut b = make_batch(4, 30, c).to_vec();
            let at = at % b.len();
            b[at] = value;
            // Valid CRC again, so the record walk sees the damage.
            fix_crc(&mut b);
            let _ = validate_record_set(&b, 1 << 20);
            let _ = scan_batches(&b);
            let _ = find_timestamp(&b, 1_002);
        }
    }

    /// A decompression bomb: a batch whose snappy payload claims 300 MB of
    /// records is refused as corrupt, without allocating them.
    #[test]
    fn decompression_bomb_is_refused() {
        let mut b = make_batch(1, 10, Compression::None).to_vec();
        // Replace the records with a raw snappy stream claiming 300 MB.
        b.truncate(HEADER_LEN);
        let mut claim = 300u64 << 20;
        while claim >= 0x80 {
            b.push((claim as u8) | 0x80);
            claim >>= 7;
        }
        b.push(claim as u8);
        b.extend_from_slice(&[0u8; 16]);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        // attributes: snappy (2)
        b[21..23].copy_from_slice(&2i16.to_be_bytes());
        fix_crc(&mut b);
        match validate_record_set(&b, 1 << 20) {
            Err(BatchError::Corrupt(why)) => {
                assert!(why.contains("claims"), "refused by the cap: {why}")
            }
            other => panic!("expected a corrupt-batch error, got {other:?}"),
        }
    }

    #[test]
    fn markers_round_trip_and_plain_batches_are_no_markers() {
        for (commit, coordinator_epoch) in [(true, 0), (false, 7), (true, i32::MAX)] {
            let marker = Marker {
                commit,
                coordinator_epoch,
            };
            let b = encode_marker(42, 3, marker, 5_000);
            let h = parse_header(&b).unwrap();
            assert!(crc_ok(&b, &h));
            assert!(is_control(&h));
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.record_count),
                (42, 3, 1)
            );
            assert_eq!(read_marker(&b, &h), Some(marker));
        }
        let plain = make_batch_ts(2, 10, Compression::None, &[]);
        let h = parse_header(&plain).unwrap();
        assert!(!is_control(&h));
        assert_eq!(read_marker(&plain, &h), None);
    }
}
