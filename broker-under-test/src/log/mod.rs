//! TEMPORARY in-memory stand-in for the partition log (replaced by the real log).
#![allow(dead_code, unused_variables)]
use std::collections::VecDeque;

use bytes::Bytes;

use crate::config::{BrokerConfig, Durability};
use crate::diskio::DiskIo;
use crate::seam::{DiskError, DiskReply, DiskReqId, Now};

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub roll_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub index_interval_bytes: u64,
    pub max_batch_bytes: usize,
    pub durability: Durability,
}
impl LogConfig {
    pub fn from_broker(c: &BrokerConfig) -> LogConfig {
        LogConfig {
            segment_bytes: c.log_segment_bytes,
            roll_ms: c.log_roll_ms,
            retention_ms: c.log_retention_ms,
            retention_bytes: c.log_retention_bytes,
            index_interval_bytes: c.log_index_interval_bytes,
            max_batch_bytes: c.message_max_bytes,
            durability: c.durability,
        }
    }
}
#[derive(Debug, Clone, PartialEq)]
pub enum LogState {
    Opening,
    Online,
    Failed(String),
    Deleting,
    Deleted,
}
#[derive(Debug)]
pub enum LogEvent {
    Opened,
    Failed {
        reason: String,
    },
    ReadDone {
        token: u64,
        result: Result<FetchData, LogError>,
    },
    TimestampFound {
        token: u64,
        result: Result<Option<(i64, i64)>, LogError>,
    },
    Deleted,
}
#[derive(Debug, Clone)]
pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}
#[derive(Debug, Clone)]
pub enum BatchError {
    Corrupt(String),
    TooLarge { size: usize, max: usize },
}
#[derive(Debug, Clone)]
pub enum LogError {
    Offline(String),
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        high_watermark: i64,
    },
    Batch(BatchError),
    NotReady,
}
#[derive(Debug, Clone)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time: i64,
    pub log_start_offset: i64,
}
pub struct PartitionLog {
    dir: String,
    topic_id: [u8; 16],
    state: LogState,
    events: VecDeque<LogEvent>,
    batches: Vec<(i64, i64, Bytes)>,
    next_token: u64,
}
impl PartitionLog {
    pub fn create(
        dir: String,
        topic_id: [u8; 16],
        config: LogConfig,
        now: Now,
        io: &mut DiskIo,
    ) -> PartitionLog {
        let mut events = VecDeque::new();
        events.push_back(LogEvent::Opened);
        PartitionLog {
            dir,
            topic_id,
            state: LogState::Online,
            events,
            batches: vec![],
            next_token: 0,
        }
    }
    pub fn open(dir: String, config: LogConfig, now: Now, io: &mut DiskIo) -> PartitionLog {
        Self::create(dir, [0; 16], config, now, io)
    }
    pub fn on_disk_done(
        &mut self,
        req: DiskReqId,
        result: Result<DiskReply, DiskError>,
        now: Now,
        io: &mut DiskIo,
    ) {
    }
    pub fn poll_event(&mut self) -> Option<LogEvent> {
        self.events.pop_front()
    }
    pub fn state(&self) -> &LogState {
        &self.state
    }
    pub fn dir(&self) -> &str {
        &self.dir
    }
    pub fn topic_id(&self) -> [u8; 16] {
        self.topic_id
    }
    pub fn log_start_offset(&self) -> i64 {
        0
    }
    pub fn log_end_offset(&self) -> i64 {
        self.batches.last().map(|b| b.1 + 1).unwrap_or(0)
    }
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }
    pub fn append(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now: Now,
        io: &mut DiskIo,
    ) -> Result<AppendInfo, LogError> {
        if records.len() < 61 {
            return Err(LogError::Batch(BatchError::Corrupt("short".into())));
        }
        let count = i32::from_be_bytes(records[57..61].try_into().unwrap()) as i64;
        let base = self.log_end_offset();
        let mut b = records.to_vec();
        b[0..8].copy_from_slice(&base.to_be_bytes());
        self.batches.push((base, base + count - 1, Bytes::from(b)));
        Ok(AppendInfo {
            base_offset: base,
            last_offset: base + count - 1,
            log_append_time: -1,
            log_start_offset: 0,
        })
    }
    pub fn read(
        &mut self,
        fetch_offset: i64,
        max_bytes: usize,
        now: Now,
        io: &mut DiskIo,
    ) -> Result<u64, LogError> {
        let hw = self.high_watermark();
        if fetch_offset > hw {
            return Err(LogError::OffsetOutOfRange {
                requested: fetch_offset,
                log_start: 0,
                high_watermark: hw,
            });
        }
        let mut out = Vec::new();
        for (b, l, data) in &self.batches {
            if *l >= fetch_offset && (out.is_empty() || out.len() + data.len() <= max_bytes) {
                out.extend_from_slice(data);
            }
        }
        self.next_token += 1;
        self.events.push_back(LogEvent::ReadDone {
            token: self.next_token,
            result: Ok(FetchData {
                records: Bytes::from(out),
                high_watermark: hw,
                log_start_offset: 0,
            }),
        });
        Ok(self.next_token)
    }
    pub fn bytes_available(&self, fetch_offset: i64) -> u64 {
        self.batches
            .iter()
            .filter(|b| b.1 >= fetch_offset)
            .map(|b| b.2.len() as u64)
            .sum()
    }
    pub fn find_offset_for_timestamp(
        &mut self,
        timestamp: i64,
        now: Now,
        io: &mut DiskIo,
    ) -> Result<u64, LogError> {
        self.next_token += 1;
        self.events.push_back(LogEvent::TimestampFound {
            token: self.next_token,
            result: Ok(None),
        });
        Ok(self.next_token)
    }
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        None
    }
    pub fn maintain(&mut self, now: Now, io: &mut DiskIo) {}
    pub fn delete(&mut self, io: &mut DiskIo) {
        self.state = LogState::Deleted;
        self.events.push_back(LogEvent::Deleted);
    }
    pub fn flush(&mut self, io: &mut DiskIo) {}
    pub fn is_idle(&self) -> bool {
        true
    }
}
