//! The simulator's event loop: one steady run (one broker, two producers,
//! one consumer, no faults) of a few simulated seconds, reported as
//! simulated events per wall second. The run is deterministic, so its event
//! count is measured once up front.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sim::catalogue;
use sim::run::{run, RunOptions};

fn bench(c: &mut Criterion) {
    let mut scenario = catalogue::load("steady").expect("steady scenario");
    scenario.duration_ms = 4_000;
    scenario.quiet_ms = 1_000;
    let seed = 1;
    let first = run(&scenario, seed, &RunOptions::default()).expect("run");
    assert!(first.pass, "steady must pass: {:?}", first.reasons);
    let mut group = c.benchmark_group("event_loop");
    group.sample_size(20);
    group.throughput(Throughput::Elements(first.events));
    group.bench_function(
        format!("steady_5s_simulated_{}_events", first.events),
        |b| {
            b.iter(|| {
                let r = run(black_box(&scenario), seed, &RunOptions::default()).expect("run");
                black_box(r.events)
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
