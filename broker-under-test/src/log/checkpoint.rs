//! The small text files of a log directory: `checkpoint` and `partition.metadata`.

/// What `checkpoint` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Everything below this offset was durable when the checkpoint was written.
    pub recovery_point: i64,
    pub log_start_offset: i64,
}

pub const CHECKPOINT: &str = "checkpoint";
pub const CHECKPOINT_TMP: &str = "checkpoint.tmp";
pub const METADATA: &str = "partition.metadata";

impl Checkpoint {
    pub fn encode(&self) -> String {
        format!(
            "version: 0\nrecovery_point: {}\nlog_start_offset: {}\n",
            self.recovery_point, self.log_start_offset
        )
    }

    /// `None` for anything malformed.
    pub fn parse(bytes: &[u8]) -> Option<Checkpoint> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut version = None;
        let mut recovery_point = None;
        let mut log_start_offset = None;
        for line in text.lines() {
            let (key, value) = line.split_once(':')?;
            let value: i64 = value.trim().parse().ok()?;
            match key.trim() {
                "version" => version = Some(value),
                "recovery_point" => recovery_point = Some(value),
                "log_start_offset" => log_start_offset = Some(value),
                _ => return None,
            }
        }
        let cp = Checkpoint {
            recovery_point: recovery_point?,
            log_start_offset: log_start_offset?,
        };
        (version == Some(0) && cp.recovery_point >= 0 && cp.log_start_offset >= 0).then_some(cp)
    }
}

/// A topic id in the usual 8-4-4-4-12 hex form.
pub fn format_uuid(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

pub fn encode_metadata(topic_id: &[u8; 16]) -> String {
    format!("version: 0\ntopic_id: {}\n", format_uuid(topic_id))
}

pub fn parse_metadata(bytes: &[u8]) -> Option<[u8; 16]> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("topic_id:") {
            id = parse_uuid(v.trim());
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_and_rejects_garbage() {
        let cp = Checkpoint {
            recovery_point: 42,
            log_start_offset: 7,
        };
        assert_eq!(Checkpoint::parse(cp.encode().as_bytes()), Some(cp));
        assert_eq!(Checkpoint::parse(b"\xff\x00garbage"), None);
        assert_eq!(
            Checkpoint::parse(b"version: 0\nrecovery_point: -3\nlog_start_offset: 0\n"),
            None
        );
        let id = [0xab; 16];
        assert_eq!(parse_metadata(encode_metadata(&id).as_bytes()), Some(id));
        assert_eq!(parse_metadata(b"version: 0\ntopic_id: zz\n"), None);
    }
}
