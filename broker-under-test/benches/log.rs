//! Microbenchmarks of the partition log: record batch validation, and
//! appends driven to completion on the in-memory disk.

use std::time::{Duration, Instant};

use broker::config::Durability;
use broker::diskio::DiskIo;
use broker::log::{batch, LogConfig, PartitionLog};
use broker::memdisk::MemDisk;
use broker::seam::{DiskExecutor, DiskReqId, Now, Output};
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One uncompressed v2 batch of `count` records with `value_len`-byte values.
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
            sequence: i as i32 - 1,
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

struct Driver {
    disk: MemDisk,
    next: DiskReqId,
    now: Now,
}

impl Driver {
    fn call<R>(
        &mut self,
        log: &mut PartitionLog,
        f: impl FnOnce(&mut PartitionLog, &mut DiskIo, Now) -> R,
    ) -> R {
        let mut out = Vec::new();
        let r = {
            let mut io = DiskIo::new(&mut self.next, &mut out);
            f(log, &mut io, self.now)
        };
        self.complete(log, out);
        r
    }

    fn complete(&mut self, log: &mut PartitionLog, mut out: Vec<Output>) {
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
        while log.poll_event().is_some() {}
    }
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

fn bench(c: &mut Criterion) {
    let batch = make_batch(100, 1024);

    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("validate_100x1KiB_uncompressed", |b| {
        b.iter(|| batch::validate_record_set(black_box(&batch), 1024 * 1024).expect("valid"))
    });
    group.bench_function("append_100x1KiB_sync_memdisk", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // A fresh disk every 200 appends keeps memory bounded.
                let n = left.min(200);
                left -= n;
                let mut d = Driver {
                    disk: MemDisk::new(),
                    next: 1,
                    now: Now::from_millis(0, 1_700_000_000_000),
                };
                let mut out = Vec::new();
                let mut log = {
                    let mut io = DiskIo::new(&mut d.next, &mut out);
                    PartitionLog::create("bench-0".into(), [1; 16], config(), d.now, &mut io)
                };
                d.complete(&mut log, out);
                let start = Instant::now();
                for _ in 0..n {
                    let records = batch.clone();
                    d.call(&mut log, |log, io, now| {
                        log.append(records, 0, now, io).expect("append")
                    });
                }
                total += start.elapsed();
                assert_eq!(log.high_watermark(), n as i64 * 100);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
