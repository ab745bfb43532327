//! Binary primitives shared by the record and snapshot formats: a bounds
//! checked [`Reader`] over untrusted bytes, the matching `put_*` writers, and
//! [`DecodeError`].
//!
//! Conventions: fixed-width integers are big-endian; lengths and counts are
//! unsigned LEB128 varints; strings are UTF-8 prefixed by their byte length;
//! optional values carry a presence byte (0 absent, 1 present, anything else
//! is an error); UUIDs are their 16 raw bytes. A length or count is checked
//! against the bytes that remain *before* anything is allocated, so hostile
//! input can never make the decoder allocate more than the input's size.

use bytes::{BufMut, BytesMut};
use std::fmt;
use uuid::Uuid;

/// Why bytes could not be decoded. Decoders never panic; they return this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended before a field was complete.
    UnexpectedEof { needed: usize, remaining: usize },
    /// A record type byte this version does not know.
    UnknownRecordType(u8),
    /// A record version this version does not know.
    UnsupportedVersion { record_type: u8, version: u8 },
    /// A presence / boolean byte other than 0 or 1.
    InvalidBool(u8),
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// A varint longer than 10 bytes, overflowing 64 bits, or overlong.
    InvalidVarint,
    /// A length or count larger than the bytes that remain could hold.
    LengthTooLarge { len: u64, remaining: usize },
    /// Bytes left over after a complete value.
    TrailingBytes(usize),
    /// A snapshot that does not start with the snapshot magic.
    BadMagic,
    /// A snapshot format version this version does not know.
    UnsupportedSnapshotVersion(u8),
    /// The snapshot's CRC-32C does not match its contents.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// A snapshot's header disagrees with its body.
    InconsistentSnapshot(&'static str),
    /// A value in an encoding this version never writes (every value has
    /// exactly one encoding).
    NonCanonical(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEof { needed, remaining } => {
                write!(f, "unexpected end of input: need {needed} bytes, {remaining} remain")
            }
            DecodeError::UnknownRecordType(t) => write!(f, "unknown metadata record type {t}"),
            DecodeError::UnsupportedVersion {
                record_type,
                version,
            } => write!(f, "unsupported version {version} of metadata record type {record_type}"),
            DecodeError::InvalidBool(b) => write!(f, "invalid presence byte {b}"),
            DecodeError::InvalidUtf8 => write!(f, "string is not valid UTF-8"),
            DecodeError::InvalidVarint => write!(f, "invalid varint"),
            DecodeError::LengthTooLarge { len, remaining } => {
                write!(f, "length {len} exceeds the {remaining} bytes remaining")
            }
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            DecodeError::BadMagic => write!(f, "not a metadata snapshot (bad magic)"),
            DecodeError::UnsupportedSnapshotVersion(v) => {
                write!(f, "unsupported metadata snapshot version {v}")
            }
            DecodeError::ChecksumMismatch { stored, computed } => write!(
                f,
                "metadata snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            DecodeError::InconsistentSnapshot(what) => {
                write!(f, "inconsistent metadata snapshot: {what}")
            }
            DecodeError::NonCanonical(what) => write!(f, "non-canonical encoding: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over untrusted bytes. Every read is bounds checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::UnexpectedEof {
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub(crate) fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    /// A presence byte: 0 or 1.
    pub(crate) fn present(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::InvalidBool(b)),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(DecodeError::InvalidVarint);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                // A zero final byte after the first is an overlong encoding:
                // refused, so every value has exactly one encoding.
                if byte == 0 && i > 0 {
                    return Err(DecodeError::InvalidVarint);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::InvalidVarint)
    }

    /// A length or count whose items take at least `min_item_size` bytes
    /// each: refused unless the remaining input could hold that many.
    pub(crate) fn count(&mut self, min_item_size: usize) -> Result<usize, DecodeError> {
        let len = self.varint()?;
        let remaining = self.buf.len();
        let max = remaining / min_item_size.max(1);
        if len > max as u64 {
            return Err(DecodeError::LengthTooLarge { len, remaining });
        }
        Ok(len as usize)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.bytes()?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        if self.present()? {
            Ok(Some(self.string()?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn i32_array(&mut self) -> Result<Vec<i32>, DecodeError> {
        let n = self.count(4)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.i32()?);
        }
        Ok(out)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

pub(crate) fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.put_slice(b);
}

pub(crate) fn put_string(buf: &mut BytesMut, s: &str) {
    put_bytes(buf, s.as_bytes());
}

pub(crate) fn put_opt_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.put_u8(1);
            put_string(buf, s);
        }
        None => buf.put_u8(0),
    }
}

pub(crate) fn put_i32_array(buf: &mut BytesMut, v: &[i32]) {
    put_varint(buf, v.len() as u64);
    for x in v {
        buf.put_i32(*x);
    }
}

pub(crate) fn put_uuid(buf: &mut BytesMut, id: &Uuid) {
    buf.put_slice(id.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_limits() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            let mut r = Reader::new(&b);
            assert_eq!(r.varint().unwrap(), v);
            r.finish().unwrap();
        }
        // 11 continuation bytes: too long.
        let long = [0xffu8; 11];
        assert_eq!(Reader::new(&long).varint(), Err(DecodeError::InvalidVarint));
        // 10th byte carrying more than the 64th bit: overflow.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(Reader::new(&over).varint(), Err(DecodeError::InvalidVarint));
        // Overlong encodings of 0 and 1.
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint(),
            Err(DecodeError::InvalidVarint)
        );
        assert_eq!(
            Reader::new(&[0x81, 0x00]).varint(),
            Err(DecodeError::InvalidVarint)
        );
        assert!(matches!(
            Reader::new(&[0x80]).varint(),
            Err(DecodeError::UnexpectedEof { .. })
        ));
    }

    #[test]
    fn counts_are_bounded_by_the_input() {
        let mut b = BytesMut::new();
        put_varint(&mut b, 1_000_000);
        b.put_slice(&[0; 16]);
        assert!(matches!(
            Reader::new(&b).i32_array(),
            Err(DecodeError::LengthTooLarge { .. })
        ));
        assert!(matches!(
            Reader::new(&b).string(),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn presence_byte_must_be_zero_or_one() {
        assert_eq!(
            Reader::new(&[2]).present(),
            Err(DecodeError::InvalidBool(2))
        );
        assert_eq!(
            Reader::new(&[1, 1, 0xff]).opt_string(),
            Err(DecodeError::InvalidUtf8)
        );
    }
}
