//! Small constructors for hand-written histories in the checkers' tests.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Event, History, Op, Outcome, Read, Write};

pub fn history(events: Vec<Event>) -> History {
    History { events }
}

fn event(
    process: u32,
    invoke: u64,
    complete: Option<u64>,
    outcome: Option<Outcome>,
    op: Op,
) -> Event {
    Event {
        process,
        invoke_nanos: invoke,
        complete_nanos: complete,
        outcome,
        op,
    }
}

/// An ok send of `(value, acknowledged offset)` records to one partition.
pub fn send(
    process: u32,
    invoke: u64,
    complete: u64,
    partition: i32,
    writes: &[(&str, i64)],
) -> Event {
    let writes = writes
        .iter()
        .map(|(value, offset)| Write {
            partition,
            value: value.to_string(),
            offset: Some(*offset),
        })
        .collect();
    event(
        process,
        invoke,
        Some(complete),
        Some(Outcome::Ok),
        Op::Send { writes },
    )
}

/// An ok send of `(partition, value, offset)` records.
pub fn send_multi(process: u32, invoke: u64, complete: u64, writes: &[(i32, &str, i64)]) -> Event {
    let writes = writes
        .iter()
        .map(|(partition, value, offset)| Write {
            partition: *partition,
            value: value.to_string(),
            offset: Some(*offset),
        })
        .collect();
    event(
        process,
        invoke,
        Some(complete),
        Some(Outcome::Ok),
        Op::Send { writes },
    )
}

fn unacknowledged(partition: i32, values: &[&str]) -> Op {
    Op::Send {
        writes: values
            .iter()
            .map(|value| Write {
                partition,
                value: value.to_string(),
                offset: None,
            })
            .collect(),
    }
}

pub fn send_unknown(
    process: u32,
    invoke: u64,
    complete: u64,
    partition: i32,
    values: &[&str],
) -> Event {
    let outcome = Outcome::Unknown {
        reason: "request timed out".into(),
    };
    event(
        process,
        invoke,
        Some(complete),
        Some(outcome),
        unacknowledged(partition, values),
    )
}

pub fn send_failed(
    process: u32,
    invoke: u64,
    complete: u64,
    partition: i32,
    values: &[&str],
) -> Event {
    let outcome = Outcome::Fail {
        error: "NotLeaderOrFollower".into(),
    };
    event(
        process,
        invoke,
        Some(complete),
        Some(outcome),
        unacknowledged(partition, values),
    )
}

pub fn send_in_flight(process: u32, invoke: u64, partition: i32, values: &[&str]) -> Event {
    event(
        process,
        invoke,
        None,
        None,
        unacknowledged(partition, values),
    )
}

fn reads(parts: &[(i32, &[(i64, &str)])]) -> BTreeMap<i32, Vec<Read>> {
    parts
        .iter()
        .map(|(partition, records)| {
            let records = records
                .iter()
                .map(|(offset, value)| Read {
                    offset: *offset,
                    value: value.to_string(),
                })
                .collect();
            (*partition, records)
        })
        .collect()
}

/// An ok poll: per partition, `(offset, value)` records in returned order.
pub fn poll(process: u32, invoke: u64, complete: u64, parts: &[(i32, &[(i64, &str)])]) -> Event {
    let op = Op::Poll {
        reads: reads(parts),
    };
    event(process, invoke, Some(complete), Some(Outcome::Ok), op)
}

pub fn poll_failed(
    process: u32,
    invoke: u64,
    complete: u64,
    parts: &[(i32, &[(i64, &str)])],
) -> Event {
    let op = Op::Poll {
        reads: reads(parts),
    };
    let outcome = Outcome::Fail {
        error: "fetch failed".into(),
    };
    event(process, invoke, Some(complete), Some(outcome), op)
}

/// An ok poll that returned nothing at all.
pub fn poll_empty(process: u32, invoke: u64, complete: u64) -> Event {
    let op = Op::Poll {
        reads: BTreeMap::new(),
    };
    event(process, invoke, Some(complete), Some(Outcome::Ok), op)
}

pub fn seek(process: u32, at: u64, positions: &[(i32, i64)]) -> Event {
    let op = Op::Seek {
        positions: positions.iter().copied().collect(),
    };
    event(process, at, Some(at), Some(Outcome::Ok), op)
}

/// The kinds found, in report order.
pub fn kinds(anomalies: &[Anomaly]) -> Vec<&str> {
    anomalies.iter().map(|a| a.kind.as_str()).collect()
}

/// Assert there is exactly one anomaly, of `kind`, and that its explanation
/// mentions every one of `needles`. Returns it.
pub fn only(anomalies: &[Anomaly], kind: &str, needles: &[&str]) -> Anomaly {
    assert_eq!(kinds(anomalies), vec![kind], "{anomalies:#?}");
    let a = anomalies[0].clone();
    for needle in needles {
        assert!(
            a.explanation.contains(needle),
            "explanation {:?} does not mention {needle:?}",
            a.explanation
        );
    }
    a
}

/// A clean history of `sends` acknowledged records: 8 producers, 4
/// partitions, one record per send, sequential per producer, with a gap
/// (an offset nobody observes, like a transaction marker) every 1000
/// offsets. Consumer 100 reads every partition in polls of up to 97 records;
/// consumer 101 does the same, and halfway through seeks every partition
/// back to 0 and reads it all again.
pub fn large_clean_history(sends: usize) -> History {
    const PARTITIONS: i32 = 4;
    const PRODUCERS: u32 = 8;
    let mut events = Vec::with_capacity(sends + sends / 20);
    let mut next_offset = [0i64; PARTITIONS as usize];
    let mut logs: Vec<Vec<(i64, String)>> = vec![Vec::new(); PARTITIONS as usize];
    for seq in 0..sends {
        let process = (seq as u32) % PRODUCERS;
        let partition = ((seq / PRODUCERS as usize) % PARTITIONS as usize) as i32;
        let p = partition as usize;
        if next_offset[p] % 1000 == 999 {
            next_offset[p] += 1;
        }
        let offset = next_offset[p];
        next_offset[p] += 1;
        let value = format!("{process}-{seq}");
        let t = seq as u64 * 10;
        events.push(send(
            process,
            t,
            t + 5,
            partition,
            &[(value.as_str(), offset)],
        ));
        logs[p].push((offset, value));
    }
    let end = sends as u64 * 10 + 100;
    let mut t = end;
    for consumer in [100u32, 101] {
        for (p, log) in logs.iter().enumerate() {
            let chunks: Vec<&[(i64, String)]> = log.chunks(97).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                if consumer == 101 && i == chunks.len() / 2 {
                    events.push(seek(consumer, t, &[(p as i32, 0)]));
                    t += 1;
                    for again in &chunks[..i] {
                        events.push(poll_chunk(consumer, t, p as i32, again));
                        t += 2;
                    }
                }
                events.push(poll_chunk(consumer, t, p as i32, chunk));
                t += 2;
            }
        }
    }
    History { events }
}

fn poll_chunk(process: u32, t: u64, partition: i32, chunk: &[(i64, String)]) -> Event {
    let records = chunk
        .iter()
        .map(|(offset, value)| Read {
            offset: *offset,
            value: value.clone(),
        })
        .collect();
    let op = Op::Poll {
        reads: BTreeMap::from([(partition, records)]),
    };
    event(process, t, Some(t + 1), Some(Outcome::Ok), op)
}
