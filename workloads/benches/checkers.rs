//! The checkers over a large clean history: 1M operations (800k one-record
//! sends by two producers over 16 partitions, 200k polls by one consumer
//! reading them back in order). The history is built once, outside the
//! timed loop; the run reports operations per second.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use workloads::checkers::check;
use workloads::history::{Event, History, Op, Outcome, Read, Write};

const OPERATIONS: usize = 1_000_000;
const PARTITIONS: usize = 16;
/// Sends between two polls; the poll reads exactly those records.
const SENDS_PER_POLL: usize = 4;

fn clean_history() -> History {
    let mut events = Vec::with_capacity(OPERATIONS);
    let mut next_offset = [0i64; PARTITIONS];
    let mut seq = [0u64; 2];
    let mut t = 0u64;
    let rounds = OPERATIONS / (SENDS_PER_POLL + 1);
    for round in 0..rounds {
        let partition = round % PARTITIONS;
        let mut read = Vec::with_capacity(SENDS_PER_POLL);
        for i in 0..SENDS_PER_POLL {
            let process = (i % 2) as u32;
            let value = format!("{process}-{}", seq[process as usize]);
            seq[process as usize] += 1;
            let offset = next_offset[partition];
            next_offset[partition] += 1;
            read.push(Read {
                offset,
                value: value.clone(),
            });
            events.push(Event {
                process,
                invoke_nanos: t,
                complete_nanos: Some(t + 500),
                outcome: Some(Outcome::Ok),
                op: Op::Send {
                    writes: vec![Write {
                        partition: partition as i32,
                        value,
                        offset: Some(offset),
                    }],
                },
            });
            t += 1_000;
        }
        let mut reads = BTreeMap::new();
        reads.insert(partition as i32, read);
        events.push(Event {
            process: 2,
            invoke_nanos: t,
            complete_nanos: Some(t + 500),
            outcome: Some(Outcome::Ok),
            op: Op::Poll { reads },
        });
        t += 1_000;
    }
    History { events }
}

fn bench(c: &mut Criterion) {
    let history = clean_history();
    assert_eq!(history.events.len(), OPERATIONS);
    let found = check(&history);
    assert!(
        found.is_empty(),
        "the generated history must be clean: {:?}",
        &found[..found.len().min(3)]
    );
    let mut group = c.benchmark_group("checkers");
    group.sample_size(10);
    group.throughput(Throughput::Elements(history.events.len() as u64));
    group.bench_function("check_1M_ops_clean", |b| {
        b.iter(|| black_box(check(black_box(&history))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
