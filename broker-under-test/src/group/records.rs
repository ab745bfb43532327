//! `__consumer_offsets` record keys and values in Kafka's own formats.
//!
//! Every key and value starts with an int16 version. Keys: versions 0/1 are
//! OffsetCommitKey (group, topic, partition), version 2 is GroupMetadataKey
//! (group); versions 3 to 8 are the KIP-848 consumer group records
//! (`records/consumer.rs`); higher ones are skipped. Values up to version 3 use the classic encoding
//! (int16-length strings, int32-length bytes and arrays); version 4 is the
//! first "flexible" one (varint lengths plus tagged fields).
//! Decoding never trusts a length: garbage yields an error, never a panic.

use bytes::{BufMut, Bytes, BytesMut};

pub mod consumer;

/// Why a key or value did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed __consumer_offsets record: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// A KIP-848 consumer group record (key versions 3 to 8).
    Consumer(consumer::ConsumerKey),
    /// A record type this coordinator does not serve (share and streams groups).
    Other {
        version: i16,
    },
}

/// OffsetCommitValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1: none (v0-2 carry no epoch).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// v1 only: an explicit expiry time set by an old client.
    pub expire_timestamp_ms: Option<i64>,
}

/// One member in a GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1: unknown (v0/1 carry none).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// The versions written: what Kafka writes today.
pub const OFFSET_VALUE_VERSION: i16 = 3;
pub const GROUP_VALUE_VERSION: i16 = 3;

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut w = Writer::new(false);
    w.i16(1);
    w.string(group);
    w.string(topic);
    w.i32(partition);
    w.finish()
}

pub fn group_key(group: &str) -> Bytes {
    let mut w = Writer::new(false);
    w.i16(2);
    w.string(group);
    w.finish()
}

/// v3, or v1 when an explicit expire timestamp must be kept.
pub fn offset_value(value: &OffsetValue) -> Bytes {
    let version = if value.expire_timestamp_ms.is_some() {
        1
    } else {
        OFFSET_VALUE_VERSION
    };
    offset_value_version(value, version)
}

pub fn offset_value_version(value: &OffsetValue, version: i16) -> Bytes {
    let mut w = Writer::new(version >= 4);
    w.i16(version);
    w.i64(value.offset);
    if version >= 3 {
        w.i32(value.leader_epoch);
    }
    w.string(&value.metadata);
    w.i64(value.commit_timestamp_ms);
    if version == 1 {
        w.i64(value.expire_timestamp_ms.unwrap_or(-1));
    }
    w.tags();
    w.finish()
}

pub fn group_value(value: &GroupValue) -> Bytes {
    group_value_version(value, GROUP_VALUE_VERSION)
}

pub fn group_value_version(value: &GroupValue, version: i16) -> Bytes {
    let mut w = Writer::new(version >= 4);
    w.i16(version);
    w.string(&value.protocol_type);
    w.i32(value.generation);
    w.nullable_string(value.protocol.as_deref());
    w.nullable_string(value.leader.as_deref());
    if version >= 2 {
        w.i64(value.current_state_timestamp_ms);
    }
    w.array_len(value.members.len());
    for m in &value.members {
        w.string(&m.member_id);
        if version >= 3 {
            w.nullable_string(m.group_instance_id.as_deref());
        }
        w.string(&m.client_id);
        w.string(&m.client_host);
        if version >= 1 {
            w.i32(m.rebalance_timeout_ms);
        }
        w.i32(m.session_timeout_ms);
        w.bytes(&m.subscription);
        w.bytes(&m.assignment);
        w.tags();
    }
    w.tags();
    w.finish()
}

pub fn decode_key(bytes: &[u8]) -> Result<RecordKey> {
    let mut r = Reader::new(bytes, false);
    let version = r.i16()?;
    match version {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.string()?,
            topic: r.string()?,
            partition: r.i32()?,
        }),
        2 => Ok(RecordKey::Group { group: r.string()? }),
        3..=8 => Ok(RecordKey::Consumer(consumer::decode_key(version, &mut r)?)),
        v if v > 2 => Ok(RecordKey::Other { version: v }),
        _ => Err(DecodeError("negative key version")),
    }
}

pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue> {
    let mut r = Reader::new(bytes, false);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(DecodeError("unknown OffsetCommitValue version"));
    }
    r.flexible = version >= 4;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 {
        Some(r.i64()?).filter(|t| *t != -1)
    } else {
        None
    };
    r.skip_tags()?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

pub fn decode_group_value(bytes: &[u8]) -> Result<GroupValue> {
    let mut r = Reader::new(bytes, false);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(DecodeError("unknown GroupMetadataValue version"));
    }
    r.flexible = version >= 4;
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_len()?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout = if version >= 1 { Some(r.i32()?) } else { None };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        r.skip_tags()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            // v0 had no rebalance timeout: Kafka used the session timeout.
            rebalance_timeout_ms: rebalance_timeout.unwrap_or(session_timeout_ms),
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    r.skip_tags()?;
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// Big-endian writer; `flexible` switches to compact lengths and tag sections.
/// (Shared with the transaction log's records, `txn::records`.)
pub(crate) struct Writer {
    buf: BytesMut,
    flexible: bool,
}

impl Writer {
    pub(crate) fn new(flexible: bool) -> Writer {
        Writer {
            buf: BytesMut::new(),
            flexible,
        }
    }
    pub(crate) fn finish(self) -> Bytes {
        self.buf.freeze()
    }
    pub(crate) fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }
    pub(crate) fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }
    pub(crate) fn uuid(&mut self, v: &uuid::Uuid) {
        self.buf.put_slice(v.as_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }
    pub(crate) fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }
    /// A length; `None` is null.
    pub(crate) fn len(&mut self, len: Option<usize>, classic: fn(&mut Writer, usize)) {
        match (self.flexible, len) {
            (true, None) => self.uvarint(0),
            (true, Some(n)) => self.uvarint(n as u64 + 1),
            (false, Some(n)) => classic(self, n),
            (false, None) => classic(self, usize::MAX),
        }
    }
    pub(crate) fn string(&mut self, s: &str) {
        self.nullable_string(Some(s));
    }
    pub(crate) fn nullable_string(&mut self, s: Option<&str>) {
        self.len(s.map(str::len), |w, n| {
            w.i16(if n == usize::MAX { -1 } else { n as i16 })
        });
        if let Some(s) = s {
            self.buf.put_slice(s.as_bytes());
        }
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(Some(b.len()), |w, n| w.i32(n as i32));
        self.buf.put_slice(b);
    }
    pub(crate) fn array_len(&mut self, n: usize) {
        self.len(Some(n), |w, n| w.i32(n as i32));
    }
    /// An empty tagged-field section (flexible versions only).
    pub(crate) fn tags(&mut self) {
        if self.flexible {
            self.uvarint(0);
        }
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], flexible: bool) -> Reader<'a> {
        Reader { buf, flexible }
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub(crate) fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub(crate) fn i8(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }
    pub(crate) fn uuid(&mut self) -> Result<uuid::Uuid> {
        Ok(uuid::Uuid::from_bytes(self.take(16)?.try_into().unwrap()))
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn uvarint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }
    /// A length, `None` for null; never more than what is left.
    pub(crate) fn len(&mut self, classic_i16: bool) -> Result<Option<usize>> {
        let n: i64 = if self.flexible {
            self.uvarint()? as i64 - 1
        } else if classic_i16 {
            self.i16()? as i64
        } else {
            self.i32()? as i64
        };
        match n {
            -1 => Ok(None),
            n if n < -1 => Err(DecodeError("negative length")),
            n if n as usize > self.buf.len() => Err(DecodeError("length past the end")),
            n => Ok(Some(n as usize)),
        }
    }
    pub(crate) fn nullable_string(&mut self) -> Result<Option<String>> {
        match self.len(true)? {
            None => Ok(None),
            Some(n) => String::from_utf8(self.take(n)?.to_vec())
                .map(Some)
                .map_err(|_| DecodeError("string is not UTF-8")),
        }
    }
    pub(crate) fn string(&mut self) -> Result<String> {
        self.nullable_string()?
            .ok_or(DecodeError("null in a non-nullable string"))
    }
    pub(crate) fn bytes(&mut self) -> Result<Bytes> {
        match self.len(false)? {
            None => Err(DecodeError("null in a non-nullable bytes field")),
            Some(n) => Ok(Bytes::copy_from_slice(self.take(n)?)),
        }
    }
    pub(crate) fn array_len(&mut self) -> Result<usize> {
        self.len(false)?
            .ok_or(DecodeError("null in a non-nullable array"))
    }
    /// Skips a tagged-field section (flexible versions only).
    pub(crate) fn skip_tags(&mut self) -> Result<()> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()?;
            if size > self.buf.len() as u64 {
                return Err(DecodeError("tagged field past the end"));
            }
            self.take(size as usize)?;
        }
        Ok(())
    }
}
