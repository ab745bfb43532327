//! Microbenchmark of partition log reads: a consumer scanning a 20 MiB log
//! (200 batches of 100 x 1 KiB) 1 MiB per fetch, each read driven to its
//! `ReadDone` on the in-memory disk.

use broker::config::Durability;
use broker::diskio::DiskIo;
use broker::log::{LogConfig, LogEvent, PartitionLog};
use broker::memdisk::MemDisk;
use broker::seam::{DiskExecutor, DiskReqId, Now, Output};
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const BATCHES: i64 = 200;
const RECORDS_PER_BATCH: i64 = 100;
const FETCH_BYTES: usize = 1024 * 1024;

fn make_batch(count: usize, value_len: usize) -> Bytes {
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
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; value_len])),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
    buf.freeze()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024 * 1024,
        roll_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        index_interval_bytes: 4096,
        max_batch_bytes: 1024 * 1024,
        durability: Durability::Sync,
        flush_interval_ms: 1000,
        producer_id_expiration_ms: 86_400_000,
        producer_id_expiration_check_interval_ms: 600_000,
    }
}

struct Driver {
    disk: MemDisk,
    next: DiskReqId,
    now: Now,
}

impl Driver {
    /// Run `f`, carry out every disk request it leads to, and collect the
    /// log's events.
    fn call<R>(
        &mut self,
        log: &mut PartitionLog,
        f: impl FnOnce(&mut PartitionLog, &mut DiskIo, Now) -> R,
        events: &mut Vec<LogEvent>,
    ) -> R {
        let mut out = Vec::new();
        let r = {
            let mut io = DiskIo::new(&mut self.next, &mut out);
            f(log, &mut io, self.now)
        };
        self.complete(log, out, events);
        r
    }

    fn complete(
        &mut self,
        log: &mut PartitionLog,
        mut out: Vec<Output>,
        events: &mut Vec<LogEvent>,
    ) {
        while !out.is_empty() {
            let mut more = Vec::new();
            for o in out {
                if let Output::Disk { req, op } = o {
                    let result = self.disk.execute(&op);
                    let mut io = DiskIo::new(&mut self.next, &mut more);
                    log.on_disk_done(req, result, self.now, &mut io);
                }
            }
            out = more;
        }
        while let Some(e) = log.poll_event() {
            events.push(e);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut d = Driver {
        disk: MemDisk::new(),
        next: 1,
        now: Now::from_millis(0, 1_700_000_000_000),
    };
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut log = {
        let mut io = DiskIo::new(&mut d.next, &mut out);
        PartitionLog::create("bench-0".into(), [1; 16], config(), d.now, &mut io)
    };
    d.complete(&mut log, out, &mut events);
    let batch = make_batch(RECORDS_PER_BATCH as usize, 1024);
    for _ in 0..BATCHES {
        let records = batch.clone();
        d.call(
            &mut log,
            |log, io, now| log.append(records, 0, now, io).expect("append"),
            &mut events,
        );
    }
    let end = BATCHES * RECORDS_PER_BATCH;
    assert_eq!(log.high_watermark(), end);
    events.clear();

    let mut group = c.benchmark_group("log_read");
    group.throughput(Throughput::Bytes(FETCH_BYTES as u64));
    let mut offset = 0i64;
    group.bench_function("scan_1MiB_fetches_memdisk", |b| {
        b.iter(|| {
            let token = d.call(
                &mut log,
                |log, io, now| log.read(offset, FETCH_BYTES, now, io).expect("read"),
                &mut events,
            );
            let Some(LogEvent::ReadDone { token: t, result }) = events.pop() else {
                panic!("no ReadDone: {events:?}");
            };
            assert_eq!(t, token);
            let data = result.expect("read ok");
            // Whole batches of 100 records: move on, wrapping at the end.
            let batches = (data.records.len() / batch.len()).max(1) as i64;
            offset += batches * RECORDS_PER_BATCH;
            if offset >= end {
                offset = 0;
            }
            black_box(data.records.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
