//! Tests of [`super::controller::Controller`].

use super::controller::{
    AlterPartitionReply, AlterPartitionReq, BrokerRegistrationReq, Controller, ControllerConfig,
    CreatePartitionsReq, CreateTopicReq, CreateTopicResult, HeartbeatReply, HeartbeatReq,
    PRODUCER_ID_BLOCK_SIZE,
};
use super::errors::*;
use super::image::{MetadataImage, PartitionImage};
use super::records::{Endpoint, MetadataRecord, NO_LEADER, RESOURCE_TOPIC};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const CLUSTER: &str = "test-cluster";
const TIMEOUT: u64 = 9000;

fn config() -> ControllerConfig {
    ControllerConfig {
        session_timeout_ms: TIMEOUT,
        default_replication_factor: 3,
        num_partitions: 2,
        cluster_id: CLUSTER.into(),
        ..ControllerConfig::default()
    }
}

fn incarnation(id: i32, gen: u8) -> Uuid {
    Uuid::from_u128(((gen as u128) << 64) | (id as u32 as u128 + 1))
}

fn reg_req(id: i32, gen: u8) -> BrokerRegistrationReq {
    BrokerRegistrationReq {
        broker_id: id,
        cluster_id: CLUSTER.into(),
        incarnation_id: incarnation(id, gen),
        endpoints: vec![Endpoint {
            listener: "PLAINTEXT".into(),
            host: format!("broker{id}"),
            port: 9092,
        }],
        rack: None,
        log_dirs: Vec::new(),
    }
}

/// A log directory id of broker `id`'s storage number `disk` (ids outside
/// Kafka's reserved range).
fn dir(id: i32, disk: u8) -> Uuid {
    Uuid::from_u128(0xd000_0000_0000_0000_0000_0000_0000_0000 | ((disk as u128) << 32) | id as u128)
}

fn reg_req_dirs(id: i32, gen: u8, log_dirs: Vec<Uuid>) -> BrokerRegistrationReq {
    BrokerRegistrationReq {
        log_dirs,
        ..reg_req(id, gen)
    }
}

fn topic_req(name: &str, partitions: i32, rf: i16) -> CreateTopicReq {
    CreateTopicReq {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: Vec::new(),
        configs: Vec::new(),
    }
}

/// A controller plus the log of everything it proposed, and the committed
/// image it started from, so every test can check the replay property.
struct Harness {
    c: Controller,
    committed: MetadataImage,
    log: Vec<MetadataRecord>,
}

impl Harness {
    fn new(seed: u64) -> Self {
        Self::from_image(MetadataImage::new(), 0, seed)
    }

    fn from_image(committed: MetadataImage, now: u64, seed: u64) -> Self {
        Self::from_image_with(committed, now, seed, config())
    }

    fn from_image_with(
        committed: MetadataImage,
        now: u64,
        seed: u64,
        config: ControllerConfig,
    ) -> Self {
        Harness {
            c: Controller::new(committed.clone(), config, now, seed),
            committed,
            log: Vec::new(),
        }
    }

    /// A cluster with brokers `1..=n` registered and unfenced at time 0.
    fn with_brokers(n: i32, seed: u64) -> Self {
        Self::with_brokers_config(n, seed, config())
    }

    fn with_brokers_config(n: i32, seed: u64, config: ControllerConfig) -> Self {
        let mut h = Self::from_image_with(MetadataImage::new(), 0, seed, config);
        for id in 1..=n {
            h.register(0, id, 0).unwrap();
            let r = h.heartbeat_caught_up(0, id);
            assert!(!r.is_fenced);
        }
        h
    }

    fn record(&mut self, recs: Vec<MetadataRecord>) -> Vec<MetadataRecord> {
        self.log.extend(recs.iter().cloned());
        recs
    }

    fn register(&mut self, now: u64, id: i32, gen: u8) -> Result<i64, i16> {
        self.register_req(now, reg_req(id, gen))
    }

    fn register_req(&mut self, now: u64, req: BrokerRegistrationReq) -> Result<i64, i16> {
        let next = self.c.working().applied_offset + 1;
        let (recs, res) = self.c.register_broker(now, next, req);
        self.record(recs);
        res
    }

    fn epoch(&self, id: i32) -> i64 {
        self.c.working().broker(id).unwrap().epoch
    }

    fn heartbeat(&mut self, now: u64, req: HeartbeatReq) -> HeartbeatReply {
        let (recs, reply) = self.c.heartbeat(now, req);
        self.record(recs);
        reply
    }

    fn hb(&self, id: i32) -> HeartbeatReq {
        HeartbeatReq {
            broker_id: id,
            broker_epoch: self.epoch(id),
            current_metadata_offset: self.c.working().applied_offset,
            want_fence: false,
            want_shutdown: false,
        }
    }

    fn heartbeat_caught_up(&mut self, now: u64, id: i32) -> HeartbeatReply {
        let req = self.hb(id);
        self.heartbeat(now, req)
    }

    fn shutdown_heartbeat(&mut self, now: u64, id: i32) -> HeartbeatReply {
        let req = HeartbeatReq {
            want_shutdown: true,
            ..self.hb(id)
        };
        self.heartbeat(now, req)
    }

    fn tick(&mut self, now: u64) -> Vec<MetadataRecord> {
        let recs = self.c.tick(now);
        self.record(recs)
    }

    fn create(
        &mut self,
        topics: Vec<CreateTopicReq>,
        validate_only: bool,
    ) -> Vec<CreateTopicResult> {
        let (recs, res) = self.c.create_topics(0, topics, validate_only);
        self.record(recs);
        res
    }

    fn create_one(&mut self, name: &str, partitions: i32, rf: i16) -> CreateTopicResult {
        self.create(vec![topic_req(name, partitions, rf)], false)
            .remove(0)
    }

    fn leaders(&self, topic: &str) -> Vec<i32> {
        let t = self.c.working().topic(topic).unwrap();
        t.partitions.values().map(|p| p.leader).collect()
    }

    /// Replaying the log onto the committed image gives the working image.
    fn check_replay(&self) {
        let mut img = self.committed.clone();
        let mut offset = img.applied_offset;
        for r in &self.log {
            offset += 1;
            img.apply(offset, r);
        }
        assert_eq!(&img, self.c.working());
        check_invariants(self.c.working());
    }
}

/// Partition invariants the controller maintains.
fn check_invariants(img: &MetadataImage) {
    for t in img.topics.values() {
        for (idx, p) in &t.partitions {
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(
                distinct.len(),
                p.replicas.len(),
                "{}-{idx} duplicate replicas",
                t.name
            );
            assert!(!p.isr.is_empty(), "{}-{idx} empty ISR", t.name);
            assert!(
                p.isr.iter().all(|r| p.replicas.contains(r)),
                "{}-{idx} ISR not in replicas",
                t.name
            );
            if p.leader != NO_LEADER {
                assert!(
                    p.isr.contains(&p.leader),
                    "{}-{idx} leader not in ISR",
                    t.name
                );
                assert!(
                    img.is_active(p.leader),
                    "{}-{idx} leader {} not active",
                    t.name,
                    p.leader
                );
            }
            // A fenced broker stays in an ISR only as its last member.
            for r in &p.isr {
                let active = img.broker(*r).is_some_and(|b| !b.fenced);
                assert!(
                    active || p.isr.len() == 1,
                    "{}-{idx} fenced {r} in ISR {:?}",
                    t.name,
                    p.isr
                );
            }
        }
    }
}

// --------------------------------------------------------------------
// Registration
// --------------------------------------------------------------------

#[test]
fn registered_broker_starts_fenced_with_epoch_at_next_offset() {
    let mut h = Harness::new(1);
    let (recs, res) = h.c.register_broker(5, 0, reg_req(1, 0));
    h.record(recs.clone());
    assert_eq!(res, Ok(0));
    assert!(matches!(
        recs[0],
        MetadataRecord::RegisterBroker {
            broker_epoch: 0,
            ..
        }
    ));
    let b = h.c.working().broker(1).unwrap();
    assert!(b.fenced);
    assert_eq!(b.epoch, 0);
    assert!(h.c.working().live_brokers().is_empty());
    h.check_replay();
}

#[test]
fn registration_with_wrong_cluster_id_is_refused() {
    let mut h = Harness::new(1);
    let mut req = reg_req(1, 0);
    req.cluster_id = "other".into();
    let (recs, res) = h.c.register_broker(0, 0, req);
    assert!(recs.is_empty());
    assert_eq!(res, Err(INCONSISTENT_CLUSTER_ID));
    assert!(h.c.working().brokers.is_empty());
}

#[test]
fn registration_with_negative_id_is_refused() {
    let mut h = Harness::new(1);
    let (recs, res) = h.c.register_broker(0, 0, reg_req(-1, 0));
    assert!(recs.is_empty());
    assert_eq!(res, Err(INVALID_REQUEST));
}

#[test]
fn duplicate_registration_is_refused_while_the_session_lives() {
    let mut h = Harness::with_brokers(1, 1);
    assert_eq!(h.register(1000, 1, 7), Err(DUPLICATE_BROKER_REGISTRATION));
    // Exactly at the timeout the session still lives; just after, it does not.
    assert_eq!(
        h.register(TIMEOUT, 1, 7),
        Err(DUPLICATE_BROKER_REGISTRATION)
    );
    let epoch = h.register(TIMEOUT + 1, 1, 7).unwrap();
    let b = h.c.working().broker(1).unwrap();
    assert_eq!(
        (b.epoch, b.incarnation_id, b.fenced),
        (epoch, incarnation(1, 7), true)
    );
    h.check_replay();
}

#[test]
fn a_fenced_registration_does_not_block_the_next_incarnation() {
    // Found by the simulator (cluster-controller-kill seed 0x0): each new
    // controller gave every registered broker a fresh session, fenced ones
    // too, so a killed broker's restarts were refused as duplicates for as
    // long as controllers kept changing, and it stayed fenced.
    let mut h = Harness::with_brokers(2, 1);
    // Broker 9 registers (fenced until caught up) and is then replaced by a
    // new incarnation at once: allowed, since a fenced registration holds
    // no session.
    h.register(100, 9, 1).unwrap();
    assert!(h.c.working().broker(9).unwrap().fenced);
    let epoch = h.register(200, 9, 2).unwrap();
    let b = h.c.working().broker(9).unwrap();
    assert_eq!((b.epoch, b.incarnation_id), (epoch, incarnation(9, 2)));
    h.check_replay();
}

/// Brokers 1..=3 registered at time 0 with log directories `dir(id, 0)`
/// (broker 3 with two), unfenced, and a topic "t" of 6 partitions over all three.
fn with_brokers_on_disks(seed: u64) -> Harness {
    let mut h = Harness::new(seed);
    for id in 1..=3 {
        let mut dirs = vec![dir(id, 0)];
        if id == 3 {
            dirs.push(dir(id, 1));
        }
        h.register_req(0, reg_req_dirs(id, 0, dirs)).unwrap();
        assert!(!h.heartbeat_caught_up(0, id).is_fenced);
    }
    assert_eq!(h.create_one("t", 6, 3).error, NONE);
    h
}

#[test]
fn a_restart_on_the_same_storage_replaces_the_live_registration_at_once() {
    // Found by the simulator (cluster-controller-kill): a combined
    // broker+controller killed again and again was refused as a duplicate
    // for as long as each new controller granted its old registration a
    // fresh session, and never served again. Its log directory ids show it
    // is the same broker restarted.
    let mut h = with_brokers_on_disks(3);
    assert!(h.leaders("t").contains(&2));
    let old = h.epoch(2);
    let epoch = h
        .register_req(1000, reg_req_dirs(2, 1, vec![dir(2, 0)]))
        .unwrap();
    assert!(epoch > old);
    let b = h.c.working().broker(2).unwrap();
    assert_eq!(
        (b.epoch, b.incarnation_id, b.fenced, b.log_dirs.clone()),
        (epoch, incarnation(2, 1), true, vec![dir(2, 0)])
    );
    // As after a session expiry: the old registration leads nothing and is
    // in no ISR any more; its leaderships moved to other ISR members.
    for p in h.c.working().topic("t").unwrap().partitions.values() {
        assert_ne!(p.leader, 2);
        assert_ne!(p.leader, NO_LEADER);
        assert!(!p.isr.contains(&2));
    }
    // The old epoch is stale; the new one unfences once caught up.
    let stale = HeartbeatReq {
        broker_epoch: old,
        ..h.hb(2)
    };
    assert_eq!(h.heartbeat(1100, stale).error, STALE_BROKER_EPOCH);
    assert!(!h.heartbeat_caught_up(1200, 2).is_fenced);
    // The same set of directories in another order is the same storage.
    h.register_req(1300, reg_req_dirs(3, 1, vec![dir(3, 1), dir(3, 0)]))
        .unwrap();
    h.check_replay();
}

#[test]
fn other_or_no_storage_is_still_a_duplicate_while_the_session_lives() {
    let mut h = with_brokers_on_disks(5);
    let refused = [
        // A wiped broker formats a new directory id.
        (2, vec![dir(2, 9)]),
        // No log directories (an older broker, or an unknown id).
        (2, Vec::new()),
        // Only part of the storage, or more than it.
        (3, vec![dir(3, 0)]),
        (2, vec![dir(2, 0), dir(2, 1)]),
        // Another broker's storage.
        (2, vec![dir(1, 0)]),
    ];
    for (id, dirs) in refused {
        assert_eq!(
            h.register_req(1000, reg_req_dirs(id, 1, dirs.clone())),
            Err(DUPLICATE_BROKER_REGISTRATION),
            "broker {id} with {dirs:?}"
        );
    }
    // Kafka's reserved directory ids (unassigned, lost, ...) name no
    // storage, even when both registrations carry the same one.
    let lost = vec![Uuid::from_u128(1)];
    h.register_req(1000, reg_req_dirs(4, 0, lost.clone()))
        .unwrap();
    assert!(!h.heartbeat_caught_up(1000, 4).is_fenced);
    assert_eq!(
        h.register_req(1100, reg_req_dirs(4, 1, lost)),
        Err(DUPLICATE_BROKER_REGISTRATION)
    );
    h.check_replay();
    // A registration without directories never matches one, either way.
    let mut h = Harness::with_brokers(1, 1);
    assert_eq!(
        h.register_req(1000, reg_req_dirs(1, 1, vec![dir(1, 0)])),
        Err(DUPLICATE_BROKER_REGISTRATION)
    );
    h.check_replay();
}

#[test]
fn other_storage_is_accepted_once_the_session_expired() {
    let mut h = with_brokers_on_disks(6);
    let wiped = reg_req_dirs(2, 1, vec![dir(2, 9)]);
    assert_eq!(
        h.register_req(TIMEOUT, wiped.clone()),
        Err(DUPLICATE_BROKER_REGISTRATION)
    );
    let epoch = h.register_req(TIMEOUT + 1, wiped).unwrap();
    let b = h.c.working().broker(2).unwrap();
    assert_eq!(
        (b.epoch, b.log_dirs.clone(), b.fenced),
        (epoch, vec![dir(2, 9)], true)
    );
    h.check_replay();
}

#[test]
fn same_incarnation_may_re_register() {
    let mut h = Harness::with_brokers(1, 1);
    let old = h.epoch(1);
    let new = h.register(100, 1, 0).unwrap();
    assert!(new > old);
    assert!(h.c.working().broker(1).unwrap().fenced);
    // The old epoch is now stale.
    let stale = HeartbeatReq {
        broker_epoch: old,
        ..h.hb(1)
    };
    assert_eq!(h.heartbeat(200, stale).error, STALE_BROKER_EPOCH);
    h.check_replay();
}

#[test]
fn re_registration_takes_the_old_registration_out_of_its_partitions() {
    let mut h = Harness::with_brokers(3, 4);
    assert_eq!(h.create_one("t", 6, 3).error, NONE);
    h.register(100, 2, 0).unwrap();
    let img = h.c.working();
    for p in img.topic("t").unwrap().partitions.values() {
        assert_ne!(p.leader, 2);
        assert!(!p.isr.contains(&2));
    }
    h.check_replay();
}

// --------------------------------------------------------------------
// Heartbeats, fencing, sessions
// --------------------------------------------------------------------

#[test]
fn heartbeat_from_unknown_broker_is_refused() {
    let mut h = Harness::new(1);
    let reply = h.heartbeat(
        0,
        HeartbeatReq {
            broker_id: 9,
            broker_epoch: 0,
            current_metadata_offset: 0,
            want_fence: false,
            want_shutdown: false,
        },
    );
    assert_eq!(reply.error, BROKER_ID_NOT_REGISTERED);
    assert!(h.log.is_empty());
}

#[test]
fn heartbeat_with_stale_epoch_is_refused() {
    let mut h = Harness::with_brokers(1, 1);
    let req = HeartbeatReq {
        broker_epoch: h.epoch(1) + 1,
        ..h.hb(1)
    };
    let (recs, reply) = h.c.heartbeat(10, req);
    assert!(recs.is_empty());
    assert_eq!(reply.error, STALE_BROKER_EPOCH);
}

#[test]
fn heartbeat_not_caught_up_stays_fenced_then_caught_up_unfences() {
    let mut h = Harness::new(1);
    let epoch = h.register(0, 1, 0).unwrap();
    h.register(0, 2, 0).unwrap();
    let behind = HeartbeatReq {
        current_metadata_offset: epoch - 1,
        ..h.hb(1)
    };
    let r = h.heartbeat(10, behind);
    assert_eq!(r.error, NONE);
    assert!(r.is_fenced && !r.is_caught_up);
    let at = HeartbeatReq {
        current_metadata_offset: epoch,
        ..h.hb(1)
    };
    let (recs, r) = h.c.heartbeat(20, at);
    h.record(recs.clone());
    assert!(!r.is_fenced && r.is_caught_up);
    assert_eq!(
        recs,
        vec![MetadataRecord::UnfenceBroker {
            broker_id: 1,
            broker_epoch: epoch
        }]
    );
    assert_eq!(h.c.working().live_brokers(), vec![1]);
    h.check_replay();
}

#[test]
fn want_fence_keeps_or_makes_a_broker_fenced() {
    let mut h = Harness::with_brokers(2, 1);
    assert_eq!(h.create_one("t", 2, 2).error, NONE);
    let req = HeartbeatReq {
        want_fence: true,
        ..h.hb(1)
    };
    let r = h.heartbeat(10, req);
    assert!(r.is_fenced);
    assert!(h.c.working().broker(1).unwrap().fenced);
    assert_eq!(h.leaders("t"), vec![2, 2]);
    // Still wanting to be fenced: stays fenced even though caught up.
    let req = HeartbeatReq {
        want_fence: true,
        ..h.hb(1)
    };
    assert!(h.heartbeat(20, req).is_fenced);
    h.check_replay();
}

#[test]
fn session_expiry_fences_and_moves_leadership_to_another_isr_member() {
    let mut h = Harness::with_brokers(3, 7);
    assert_eq!(h.create_one("t", 6, 3).error, NONE);
    assert!(h.leaders("t").contains(&1));
    // Brokers 2 and 3 keep heartbeating, 1 goes silent.
    for now in [3000, 6000, 9000] {
        h.heartbeat_caught_up(now, 2);
        h.heartbeat_caught_up(now, 3);
        assert!(h.tick(now).is_empty());
    }
    assert_eq!(h.c.next_deadline(), Some(TIMEOUT + 1));
    let recs = h.tick(TIMEOUT + 1);
    assert!(matches!(
        recs.last(),
        Some(MetadataRecord::FenceBroker { broker_id: 1, .. })
    ));
    let img = h.c.working();
    assert!(img.broker(1).unwrap().fenced);
    for p in img.topic("t").unwrap().partitions.values() {
        assert_ne!(p.leader, 1);
        assert!(!p.isr.contains(&1));
        // The new leader is the first surviving replica in ISR order.
        let expected = p.replicas.iter().copied().find(|r| *r != 1).unwrap();
        assert_eq!(p.leader, expected);
    }
    // Leader epochs moved where the leader changed.
    assert!(img
        .topic("t")
        .unwrap()
        .partitions
        .values()
        .any(|p| p.leader_epoch == 1));
    h.check_replay();
}

#[test]
fn last_isr_member_fenced_leaves_no_leader_and_its_return_restores_it() {
    let mut h = Harness::with_brokers(2, 3);
    assert_eq!(h.create_one("solo", 2, 1).error, NONE);
    let img = h.c.working();
    let (idx, p) = img
        .topic("solo")
        .unwrap()
        .partitions
        .iter()
        .find(|(_, p)| p.leader == 1)
        .map(|(i, p)| (*i, p.clone()))
        .unwrap();
    assert_eq!(p.isr, vec![1]);
    h.heartbeat_caught_up(TIMEOUT, 2);
    h.tick(TIMEOUT + 1);
    let p = h.c.working().partition("solo", idx).unwrap().clone();
    assert_eq!(p.leader, NO_LEADER);
    assert_eq!(p.isr, vec![1]);
    assert_eq!(p.leader_epoch, 1);
    assert_eq!(h.c.working().leader_of("solo", idx), None);
    h.check_replay();
    // Broker 1 restarts with a new incarnation, catches up, is unfenced and
    // leads its partition again.
    let epoch = h.register(TIMEOUT + 10, 1, 1).unwrap();
    assert_eq!(
        h.c.working().partition("solo", idx).unwrap().leader,
        NO_LEADER
    );
    let req = HeartbeatReq {
        broker_id: 1,
        broker_epoch: epoch,
        current_metadata_offset: epoch,
        want_fence: false,
        want_shutdown: false,
    };
    let r = h.heartbeat(TIMEOUT + 20, req);
    assert!(!r.is_fenced);
    let p = h.c.working().partition("solo", idx).unwrap();
    assert_eq!(p.leader, 1);
    assert_eq!(p.leader_epoch, 2);
    h.check_replay();
}

#[test]
fn new_controller_gives_every_broker_a_full_session() {
    let mut h = Harness::with_brokers(3, 1);
    h.create_one("t", 3, 3);
    // Committed image as of a long time later; the new controller starts
    // at 1_000_000 and must not fence anyone before its own timeout.
    let mut committed = h.c.working().clone();
    committed.applied_offset = 500;
    let mut h2 = Harness::from_image(committed, 1_000_000, 2);
    assert!(h2.tick(1_000_000).is_empty());
    assert!(h2.tick(1_000_000 + TIMEOUT).is_empty());
    assert_eq!(h2.c.next_deadline(), Some(1_000_000 + TIMEOUT + 1));
    let recs = h2.tick(1_000_000 + TIMEOUT + 1);
    let fenced: Vec<i32> = recs
        .iter()
        .filter_map(|r| match r {
            MetadataRecord::FenceBroker { broker_id, .. } => Some(*broker_id),
            _ => None,
        })
        .collect();
    assert_eq!(fenced, vec![1, 2, 3]);
    assert_eq!(h2.c.next_deadline(), None);
    h2.check_replay();
}

#[test]
fn next_deadline_follows_the_oldest_unfenced_session() {
    let mut h = Harness::new(1);
    assert_eq!(h.c.next_deadline(), None);
    h.register(0, 1, 0).unwrap();
    // Fenced brokers have no deadline.
    assert_eq!(h.c.next_deadline(), None);
    h.heartbeat_caught_up(100, 1);
    assert_eq!(h.c.next_deadline(), Some(100 + TIMEOUT + 1));
    h.heartbeat_caught_up(500, 1);
    assert_eq!(h.c.next_deadline(), Some(500 + TIMEOUT + 1));
}

#[test]
fn controlled_shutdown_moves_leaders_then_allows_shutdown() {
    let mut h = Harness::with_brokers(3, 11);
    assert_eq!(h.create_one("t", 6, 3).error, NONE);
    assert_eq!(h.create_one("solo", 3, 1).error, NONE);
    let solo_idx =
        *h.c.working()
            .topic("solo")
            .unwrap()
            .partitions
            .iter()
            .find(|(_, p)| p.leader == 2)
            .unwrap()
            .0;
    let r = h.shutdown_heartbeat(100, 2);
    assert_eq!(r.error, NONE);
    assert!(!r.should_shutdown && !r.is_fenced);
    let img = h.c.working();
    assert!(img.broker(2).unwrap().in_controlled_shutdown);
    assert!(!h.leaders("t").contains(&2));
    for p in img.topic("t").unwrap().partitions.values() {
        assert!(!p.isr.contains(&2));
    }
    // The partition only broker 2 holds is left leaderless (Kafka does the same).
    let solo = img.partition("solo", solo_idx).unwrap();
    assert_eq!((solo.leader, solo.isr.clone()), (NO_LEADER, vec![2]));
    // No new replicas land on a broker in controlled shutdown.
    assert_eq!(h.create_one("more", 3, 3).error, INVALID_REPLICATION_FACTOR);
    // It leads nothing now: the next heartbeat lets it shut down, fenced.
    let r = h.shutdown_heartbeat(200, 2);
    assert!(r.should_shutdown && r.is_fenced);
    assert!(h.c.working().broker(2).unwrap().fenced);
    assert!(!h.c.working().broker(2).unwrap().in_controlled_shutdown);
    // Asking again after being fenced: still yes, nothing proposed.
    let before = h.log.len();
    let r = h.shutdown_heartbeat(300, 2);
    assert!(r.should_shutdown && r.is_fenced);
    assert_eq!(h.log.len(), before);
    h.check_replay();
}

#[test]
fn fenced_broker_asking_to_shut_down_may_do_so_at_once() {
    let mut h = Harness::new(1);
    h.register(0, 1, 0).unwrap();
    let req = HeartbeatReq {
        want_shutdown: true,
        current_metadata_offset: -1,
        ..h.hb(1)
    };
    let (recs, r) = h.c.heartbeat(10, req);
    assert!(recs.is_empty());
    assert!(r.should_shutdown && r.is_fenced);
}

// --------------------------------------------------------------------
// CreateTopics
// --------------------------------------------------------------------

#[test]
fn placement_spreads_leaders_evenly() {
    for seed in 0..20 {
        let mut h = Harness::with_brokers(3, seed);
        let res = h.create_one("t", 6, 3);
        assert_eq!(res.error, NONE);
        assert_eq!((res.num_partitions, res.replication_factor), (6, 3));
        let mut per_leader = BTreeMap::new();
        for l in h.leaders("t") {
            *per_leader.entry(l).or_insert(0) += 1;
        }
        assert_eq!(
            per_leader,
            BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
            "seed {seed}"
        );
        for p in h.c.working().topic("t").unwrap().partitions.values() {
            assert_eq!(p.isr, p.replicas);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        }
        h.check_replay();
    }
}

#[test]
fn placement_spreads_replicas_evenly() {
    let mut h = Harness::with_brokers(4, 5);
    assert_eq!(h.create_one("t", 8, 2).error, NONE);
    let mut per_broker = BTreeMap::new();
    for p in h.c.working().topic("t").unwrap().partitions.values() {
        for r in &p.replicas {
            *per_broker.entry(*r).or_insert(0) += 1;
        }
    }
    assert_eq!(per_broker, BTreeMap::from([(1, 4), (2, 4), (3, 4), (4, 4)]));
}

#[test]
fn placement_uses_only_unfenced_brokers() {
    let mut h = Harness::with_brokers(3, 5);
    h.register(0, 4, 0).unwrap(); // registered, fenced
    assert_eq!(h.create_one("t", 12, 3).error, NONE);
    for p in h.c.working().topic("t").unwrap().partitions.values() {
        assert!(!p.replicas.contains(&4));
    }
}

#[test]
fn defaults_apply_for_minus_one() {
    let mut h = Harness::with_brokers(3, 5);
    let r = h.create_one("t", -1, -1);
    assert_eq!(r.error, NONE);
    assert_eq!((r.num_partitions, r.replication_factor), (2, 3));
    assert_eq!(h.c.working().topic("t").unwrap().id, r.topic_id);
    assert!(!r.topic_id.is_nil());
    assert_eq!(r.topic_id.get_version_num(), 4);
    h.check_replay();
}

#[test]
fn create_writes_topic_configs() {
    let mut h = Harness::with_brokers(1, 5);
    let mut req = topic_req("t", 1, 1);
    req.configs = vec![
        ("retention.ms".into(), Some("1".into())),
        ("cleanup.policy".into(), Some("compact".into())),
        ("retention.ms".into(), Some("2".into())),
    ];
    let res = h.create(vec![req], false);
    assert_eq!(res[0].error, NONE);
    let cfg = h.c.working().resource_configs(RESOURCE_TOPIC, "t");
    assert_eq!(cfg.get("retention.ms").map(String::as_str), Some("2"));
    assert_eq!(
        cfg.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    h.check_replay();
}

#[test]
fn create_of_existing_topic_is_refused() {
    let mut h = Harness::with_brokers(1, 5);
    assert_eq!(h.create_one("t", 1, 1).error, NONE);
    let r = h.create_one("t", 1, 1);
    assert_eq!(r.error, TOPIC_ALREADY_EXISTS);
    assert!(r.topic_id.is_nil());
    assert_eq!((r.num_partitions, r.replication_factor), (-1, -1));
}

#[test]
fn two_creates_of_one_name_in_one_working_image_are_refused() {
    let mut h = Harness::with_brokers(1, 5);
    // Same batch.
    let res = h.create(vec![topic_req("t", 1, 1), topic_req("t", 1, 1)], false);
    assert_eq!(res[0].error, NONE);
    assert_eq!(res[1].error, TOPIC_ALREADY_EXISTS);
    // A later call, before anything committed.
    assert_eq!(h.create_one("t", 1, 1).error, TOPIC_ALREADY_EXISTS);
    // validate_only sees the batch as well.
    let res = h.create(vec![topic_req("u", 1, 1), topic_req("u", 1, 1)], true);
    assert_eq!((res[0].error, res[1].error), (NONE, TOPIC_ALREADY_EXISTS));
    h.check_replay();
}

#[test]
fn non_positive_partitions_are_refused() {
    let mut h = Harness::with_brokers(1, 5);
    let before = h.log.len();
    for n in [0, -2, i32::MIN] {
        let r = h.create_one("t", n, 1);
        assert_eq!(r.error, INVALID_PARTITIONS, "{n}");
    }
    let r = h.create_one("t", super::controller::MAX_PARTITIONS_PER_TOPIC + 1, 1);
    assert_eq!(r.error, INVALID_PARTITIONS);
    assert_eq!(h.log.len(), before);
}

#[test]
fn non_positive_replication_factor_is_refused() {
    let mut h = Harness::with_brokers(1, 5);
    for rf in [0, -2] {
        assert_eq!(h.create_one("t", 1, rf).error, INVALID_REPLICATION_FACTOR);
    }
}

#[test]
fn replication_factor_above_live_brokers_is_refused() {
    let mut h = Harness::with_brokers(2, 5);
    h.register(0, 3, 0).unwrap(); // fenced: does not count
    let r = h.create_one("t", 1, 3);
    assert_eq!(r.error, INVALID_REPLICATION_FACTOR);
    let msg = r.message.unwrap();
    assert!(msg.contains('3') && msg.contains('2'), "{msg}");
    assert!(h.c.working().topic("t").is_none());
    // validate_only answers the same.
    let r = h.create(vec![topic_req("t", 1, 3)], true).remove(0);
    assert_eq!(r.error, INVALID_REPLICATION_FACTOR);
}

#[test]
fn explicit_assignments_are_validated() {
    let mut h = Harness::with_brokers(3, 5);
    h.register(0, 4, 0).unwrap(); // registered but fenced
    let with = |a: Vec<(i32, Vec<i32>)>| CreateTopicReq {
        assignments: a,
        ..topic_req("t", -1, -1)
    };
    type Assignment = Vec<(i32, Vec<i32>)>;
    let cases: Vec<(Assignment, i16)> = vec![
        (vec![(0, vec![1, 9])], INVALID_REPLICA_ASSIGNMENT), // unknown broker
        (vec![(0, vec![1, 1])], INVALID_REPLICA_ASSIGNMENT), // duplicate broker
        (vec![(0, vec![])], INVALID_REPLICA_ASSIGNMENT),     // empty
        (vec![(1, vec![1])], INVALID_REPLICA_ASSIGNMENT),    // not 0-based
        (vec![(0, vec![1]), (0, vec![2])], INVALID_REPLICA_ASSIGNMENT), // repeated
        (
            vec![(0, vec![1]), (1, vec![2, 3])],
            INVALID_REPLICA_ASSIGNMENT,
        ), // uneven RF
        (vec![(0, vec![4])], INVALID_REPLICA_ASSIGNMENT),    // only fenced
    ];
    for (a, code) in cases {
        let r = h.create(vec![with(a.clone())], false).remove(0);
        assert_eq!(r.error, code, "{a:?}");
        assert!(r.message.is_some());
    }
    let both = CreateTopicReq {
        num_partitions: 1,
        ..with(vec![(0, vec![1])])
    };
    assert_eq!(h.create(vec![both], false)[0].error, INVALID_REQUEST);
    assert!(h
        .log
        .iter()
        .all(|r| !matches!(r, MetadataRecord::Topic { .. })));

    // A valid one: a fenced replica is kept out of the ISR and cannot lead.
    let r = h
        .create(vec![with(vec![(1, vec![4, 2]), (0, vec![3, 1])])], false)
        .remove(0);
    assert_eq!(
        (r.error, r.num_partitions, r.replication_factor),
        (NONE, 2, 2)
    );
    let p0 = h.c.working().partition("t", 0).unwrap();
    assert_eq!(
        (p0.replicas.clone(), p0.isr.clone(), p0.leader),
        (vec![3, 1], vec![3, 1], 3)
    );
    let p1 = h.c.working().partition("t", 1).unwrap();
    assert_eq!(
        (p1.replicas.clone(), p1.isr.clone(), p1.leader),
        (vec![4, 2], vec![2], 2)
    );
    h.check_replay();
}

#[test]
fn null_config_value_is_refused() {
    let mut h = Harness::with_brokers(1, 5);
    let before = h.log.len();
    let req = CreateTopicReq {
        configs: vec![("retention.ms".into(), None)],
        ..topic_req("t", 1, 1)
    };
    assert_eq!(h.create(vec![req], false)[0].error, INVALID_CONFIG);
    let req = CreateTopicReq {
        configs: vec![(String::new(), Some("x".into()))],
        ..topic_req("t", 1, 1)
    };
    assert_eq!(h.create(vec![req], false)[0].error, INVALID_CONFIG);
    assert_eq!(h.log.len(), before);
}

#[test]
fn validate_only_proposes_nothing() {
    let mut h = Harness::with_brokers(3, 5);
    let before = h.c.working().clone();
    let res = h.create(vec![topic_req("t", 3, 3), topic_req("u", 0, 3)], true);
    assert_eq!(res[0].error, NONE);
    assert_eq!((res[0].num_partitions, res[0].replication_factor), (3, 3));
    assert_eq!(res[1].error, INVALID_PARTITIONS);
    assert!(h.log.len() == 6); // only the with_brokers records
    assert_eq!(h.c.working(), &before);
}

#[test]
fn topic_ids_come_from_the_seed() {
    let ids = |seed| {
        let mut h = Harness::with_brokers(1, seed);
        (
            h.create_one("a", 1, 1).topic_id,
            h.create_one("b", 1, 1).topic_id,
        )
    };
    assert_eq!(ids(1), ids(1));
    assert_ne!(ids(1), ids(2));
    let (a, b) = ids(1);
    assert_ne!(a, b);
}

// --------------------------------------------------------------------
// DeleteTopics, CreatePartitions
// --------------------------------------------------------------------

#[test]
fn delete_topics_by_name_and_id() {
    let mut h = Harness::with_brokers(1, 5);
    let a = h.create_one("a", 1, 1).topic_id;
    let b = h.create_one("b", 1, 1).topic_id;
    let unknown = Uuid::from_u128(42);
    let (recs, res) =
        h.c.delete_topics(vec!["a".into(), "nope".into()], vec![b, unknown, b]);
    h.record(recs.clone());
    assert_eq!(
        recs,
        vec![
            MetadataRecord::RemoveTopic { topic_id: a },
            MetadataRecord::RemoveTopic { topic_id: b }
        ]
    );
    let summary: Vec<_> = res
        .iter()
        .map(|r| (r.name.clone(), r.topic_id, r.error))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("a".into()), a, NONE),
            (Some("nope".into()), Uuid::nil(), UNKNOWN_TOPIC_OR_PARTITION),
            (Some("b".into()), b, NONE),
            (None, unknown, UNKNOWN_TOPIC_ID),
            (None, b, UNKNOWN_TOPIC_ID),
        ]
    );
    assert!(h.c.working().topics.is_empty());
    // The name is free again.
    assert_eq!(h.create_one("a", 1, 1).error, NONE);
    h.check_replay();
}

#[test]
fn create_partitions_errors_and_success() {
    let mut h = Harness::with_brokers(3, 5);
    assert_eq!(h.create_one("t", 2, 2).error, NONE);
    let req = |name: &str, count, assignments| CreatePartitionsReq {
        name: name.into(),
        count,
        assignments,
    };
    let (recs, res) = h.c.create_partitions(
        0,
        vec![
            req("nope", 3, vec![]),
            req("t", 2, vec![]),
            req("t", 1, vec![]),
        ],
        false,
    );
    assert!(recs.is_empty());
    let codes: Vec<i16> = res.iter().map(|r| r.1).collect();
    assert_eq!(
        codes,
        vec![
            UNKNOWN_TOPIC_OR_PARTITION,
            INVALID_PARTITIONS,
            INVALID_REQUEST
        ]
    );
    let (recs, res) = h.c.create_partitions(0, vec![req("t", 2, vec![])], false);
    assert!(recs.is_empty());
    assert_eq!(res[0].1, INVALID_PARTITIONS);
    let (recs, res) = h.c.create_partitions(0, vec![req("t", 1, vec![])], false);
    assert!(recs.is_empty());
    assert_eq!(res[0].1, INVALID_PARTITIONS);
    // Wrong number of assignments, wrong RF, unknown broker.
    for a in [
        vec![vec![1, 2]],
        vec![vec![1], vec![2]],
        vec![vec![1, 9], vec![2, 3]],
    ] {
        let (recs, res) = h.c.create_partitions(0, vec![req("t", 4, a)], false);
        assert!(recs.is_empty());
        assert_eq!(res[0].1, INVALID_REPLICA_ASSIGNMENT);
    }
    // validate_only: fine, nothing proposed.
    let (recs, res) = h.c.create_partitions(0, vec![req("t", 4, vec![])], true);
    assert!(recs.is_empty());
    assert_eq!(res[0], ("t".to_string(), NONE, None));
    // Automatic placement keeps the RF.
    let (recs, res) = h.c.create_partitions(0, vec![req("t", 5, vec![])], false);
    h.record(recs.clone());
    assert_eq!(res[0].1, NONE);
    assert_eq!(recs.len(), 3);
    let t = h.c.working().topic("t").unwrap();
    assert_eq!(
        t.partitions.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(t.partitions.values().all(|p| p.replicas.len() == 2));
    // Explicit placement.
    let (recs, res) =
        h.c.create_partitions(0, vec![req("t", 6, vec![vec![3, 1]])], false);
    h.record(recs);
    assert_eq!(res[0].1, NONE);
    assert_eq!(
        h.c.working().partition("t", 5).unwrap().replicas,
        vec![3, 1]
    );
    h.check_replay();
}

#[test]
fn create_partitions_needs_enough_live_brokers() {
    let mut h = Harness::with_brokers(3, 5);
    assert_eq!(h.create_one("t", 1, 3).error, NONE);
    h.heartbeat_caught_up(TIMEOUT, 1);
    h.heartbeat_caught_up(TIMEOUT, 2);
    h.tick(TIMEOUT + 1); // broker 3 fenced
    let (recs, res) = h.c.create_partitions(
        0,
        vec![CreatePartitionsReq {
            name: "t".into(),
            count: 2,
            assignments: vec![],
        }],
        false,
    );
    assert!(recs.is_empty());
    assert_eq!(res[0].1, INVALID_REPLICATION_FACTOR);
    h.check_replay();
}

// --------------------------------------------------------------------
// AlterPartition
// --------------------------------------------------------------------

#[test]
fn alter_partition_shrinks_and_expands_the_isr() {
    let mut h = Harness::with_brokers(3, 5);
    assert_eq!(h.create_one("t", 1, 3).error, NONE);
    let tid = h.c.working().topic("t").unwrap().id;
    let p = h.c.working().partition("t", 0).unwrap().clone();
    let leader = p.leader;
    let follower = *p.replicas.iter().find(|r| **r != leader).unwrap();
    let base = AlterPartitionReq {
        broker_id: leader,
        broker_epoch: h.epoch(leader),
        topic_id: tid,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: p.isr.iter().copied().filter(|r| *r != follower).collect(),
        new_isr_broker_epochs: Vec::new(),
        leader_recovery_state: 0,
    };
    // Error paths.
    let bad = |f: &dyn Fn(&mut AlterPartitionReq)| {
        let mut r = base.clone();
        f(&mut r);
        r
    };
    // Kafka's codes: an unknown broker is a stale epoch too, and epochs
    // newer than the controller's mean this controller is the stale one.
    let cases: Vec<(AlterPartitionReq, i16)> = vec![
        (bad(&|r| r.broker_id = 9), STALE_BROKER_EPOCH),
        (bad(&|r| r.broker_epoch += 100), STALE_BROKER_EPOCH),
        (bad(&|r| r.topic_id = Uuid::from_u128(5)), UNKNOWN_TOPIC_ID),
        (bad(&|r| r.partition = 3), UNKNOWN_TOPIC_OR_PARTITION),
        (bad(&|r| r.leader_epoch += 1), NOT_CONTROLLER),
        (bad(&|r| r.partition_epoch += 1), NOT_CONTROLLER),
        (bad(&|r| r.new_isr = vec![follower]), INVALID_REQUEST),
        (bad(&|r| r.new_isr = vec![leader, leader]), INVALID_REQUEST),
        (bad(&|r| r.new_isr = vec![leader, 9]), INVALID_REQUEST),
        (
            bad(&|r| r.new_isr_broker_epochs = vec![-1, -1, -1, -1]),
            INVALID_REQUEST,
        ),
        (bad(&|r| r.leader_recovery_state = 1), INVALID_REQUEST),
    ];
    for (req, code) in cases {
        let (recs, reply) = h.c.alter_partition(req.clone());
        assert!(recs.is_empty());
        assert_eq!(reply.error, code, "{req:?}");
    }
    assert_eq!(
        h.c.check_broker_epoch(leader, h.epoch(leader) + 1),
        STALE_BROKER_EPOCH
    );
    assert_eq!(h.c.check_broker_epoch(leader, h.epoch(leader)), NONE);
    // A follower with the current epochs is not the leader: Kafka answers
    // INVALID_REQUEST.
    let mut wrong_leader = base.clone();
    wrong_leader.broker_id = follower;
    wrong_leader.broker_epoch = h.epoch(follower);
    assert_eq!(h.c.alter_partition(wrong_leader).1.error, INVALID_REQUEST);

    // Shrink.
    let (recs, reply) = h.c.alter_partition(base.clone());
    h.record(recs);
    assert_eq!(reply.error, NONE);
    assert!(!reply.isr.contains(&follower));
    assert_eq!((reply.leader_epoch, reply.partition_epoch), (0, 1));
    // Expand back, while the follower is fenced: refused; once back: accepted.
    let req = HeartbeatReq {
        want_fence: true,
        ..h.hb(follower)
    };
    h.heartbeat(10, req);
    let expand = AlterPartitionReq {
        partition_epoch: 1,
        new_isr: p.isr.clone(),
        ..base.clone()
    };
    assert_eq!(
        h.c.alter_partition(expand.clone()).1.error,
        INELIGIBLE_REPLICA
    );
    h.heartbeat_caught_up(20, follower);
    let (recs, reply) = h.c.alter_partition(expand);
    h.record(recs);
    assert_eq!(reply.error, NONE);
    assert_eq!(reply.isr, p.isr);
    assert_eq!(reply.partition_epoch, 2);
    h.check_replay();
}

impl Harness {
    fn alter_req(&self, topic: &str, idx: i32, new_isr: Vec<i32>) -> AlterPartitionReq {
        let t = self.c.working().topic(topic).unwrap();
        let p = &t.partitions[&idx];
        AlterPartitionReq {
            broker_id: p.leader,
            broker_epoch: self.epoch(p.leader),
            topic_id: t.id,
            partition: idx,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr,
            new_isr_broker_epochs: Vec::new(),
            leader_recovery_state: 0,
        }
    }

    fn alter(&mut self, req: AlterPartitionReq) -> AlterPartitionReply {
        let (recs, reply) = self.c.alter_partition(req);
        self.record(recs);
        reply
    }

    /// The partition's leader shrinks its ISR to `new_isr`.
    fn shrink(&mut self, topic: &str, idx: i32, new_isr: Vec<i32>) {
        let req = self.alter_req(topic, idx, new_isr.clone());
        let reply = self.alter(req);
        assert_eq!((reply.error, reply.isr), (NONE, new_isr));
    }

    fn fence(&mut self, now: u64, id: i32) {
        let req = HeartbeatReq {
            want_fence: true,
            ..self.hb(id)
        };
        assert!(self.heartbeat(now, req).is_fenced);
    }

    fn unfence(&mut self, now: u64, id: i32) {
        assert!(!self.heartbeat_caught_up(now, id).is_fenced);
    }

    /// Creates `name` with explicit replicas per partition and topic configs.
    fn create_assigned(&mut self, name: &str, replicas: &[&[i32]], configs: &[(&str, &str)]) {
        let req = CreateTopicReq {
            assignments: replicas
                .iter()
                .enumerate()
                .map(|(i, r)| (i as i32, r.to_vec()))
                .collect(),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            ..topic_req(name, -1, -1)
        };
        let r = self.create(vec![req], false).remove(0);
        assert_eq!(r.error, NONE, "{r:?}");
    }

    fn part(&self, topic: &str, idx: i32) -> PartitionImage {
        self.c.working().partition(topic, idx).unwrap().clone()
    }
}

fn config_with(f: impl FnOnce(&mut ControllerConfig)) -> ControllerConfig {
    let mut c = config();
    f(&mut c);
    c
}

#[test]
fn alter_partition_no_change_proposes_nothing_and_answers_the_state() {
    let mut h = Harness::with_brokers(2, 1);
    h.create_assigned("t", &[&[1, 2]], &[]);
    let req = h.alter_req("t", 0, vec![1, 2]);
    let (recs, reply) = h.c.alter_partition(req);
    assert!(recs.is_empty());
    assert_eq!(
        (
            reply.error,
            reply.leader,
            reply.leader_epoch,
            reply.partition_epoch
        ),
        (NONE, 1, 0, 0)
    );
    assert_eq!(reply.isr, vec![1, 2]);
}

#[test]
fn alter_partition_after_a_leader_change_is_fenced_by_epochs() {
    let mut h = Harness::with_brokers(3, 2);
    h.create_assigned("t", &[&[1, 2, 3]], &[]);
    let old = h.alter_req("t", 0, vec![1, 2]);
    // Broker 1 is fenced: 2 leads at leader epoch 1.
    h.fence(10, 1);
    let p = h.part("t", 0);
    assert_eq!(
        (p.leader, p.leader_epoch, p.isr.clone()),
        (2, 1, vec![2, 3])
    );
    // The fenced former leader, still registered with its epoch, sends its
    // stale request: its leader epoch is older.
    assert_eq!(h.alter(old.clone()).error, FENCED_LEADER_EPOCH);
    // Even claiming the current epochs it is not the leader.
    let claims = AlterPartitionReq {
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        ..old
    };
    assert_eq!(h.alter(claims).error, INVALID_REQUEST);
    // The new leader with an older partition epoch (an ISR change it has
    // not seen yet).
    h.shrink("t", 0, vec![2]);
    let stale = AlterPartitionReq {
        partition_epoch: p.partition_epoch,
        ..h.alter_req("t", 0, vec![2, 3])
    };
    assert_eq!(h.alter(stale).error, INVALID_UPDATE_VERSION);
    h.check_replay();
}

#[test]
fn alter_partition_refuses_ineligible_new_isr_members() {
    let mut h = Harness::with_brokers(4, 3);
    h.create_assigned("t", &[&[1, 2, 3, 4]], &[]);
    h.shrink("t", 0, vec![1]);
    // 2 fenced, 3 in controlled shutdown, 4 live.
    h.fence(10, 2);
    assert!(!h.shutdown_heartbeat(10, 3).should_shutdown);
    assert!(h.c.working().broker(3).unwrap().in_controlled_shutdown);
    for isr in [vec![1, 2], vec![1, 3], vec![1, 4, 2]] {
        let req = h.alter_req("t", 0, isr.clone());
        assert_eq!(h.alter(req).error, INELIGIBLE_REPLICA, "{isr:?}");
    }
    // v3: a member's broker epoch must match its registration (-1: not checked).
    let mut req = h.alter_req("t", 0, vec![1, 4]);
    req.new_isr_broker_epochs = vec![h.epoch(1), h.epoch(4) + 1];
    assert_eq!(h.alter(req.clone()).error, INELIGIBLE_REPLICA);
    req.new_isr_broker_epochs = vec![-1, h.epoch(4)];
    let reply = h.alter(req);
    assert_eq!((reply.error, reply.isr), (NONE, vec![1, 4]));
    h.check_replay();
}

// --------------------------------------------------------------------
// Leader election: clean, unclean, on unfencing
// --------------------------------------------------------------------

#[test]
fn fenced_leader_moves_to_the_first_active_isr_member_not_the_first_replica() {
    let mut h = Harness::with_brokers(3, 4);
    h.create_assigned("t", &[&[1, 2, 3]], &[]);
    h.shrink("t", 0, vec![1, 3]);
    h.fence(10, 1);
    let p = h.part("t", 0);
    assert_eq!((p.leader, p.isr), (3, vec![3]));
    h.check_replay();
}

#[test]
fn last_isr_member_fenced_without_unclean_leaves_no_leader_and_keeps_it_in_the_isr() {
    let mut h = Harness::with_brokers(2, 5);
    h.create_assigned("t", &[&[1, 2]], &[]);
    h.shrink("t", 0, vec![1]);
    h.fence(10, 1);
    let p = h.part("t", 0);
    assert_eq!((p.leader, p.isr, p.leader_epoch), (NO_LEADER, vec![1], 1));
    // Broker 2 is active but out of the ISR: it is not elected, now or
    // when it heartbeats again.
    h.heartbeat_caught_up(20, 2);
    assert_eq!(h.part("t", 0).leader, NO_LEADER);
    h.check_replay();
}

#[test]
fn unclean_broker_default_elects_the_first_active_replica_as_the_whole_isr() {
    let cfg = config_with(|c| c.unclean_leader_election_enable = true);
    let mut h = Harness::with_brokers_config(3, 6, cfg);
    h.create_assigned("t", &[&[1, 2, 3]], &[]);
    h.shrink("t", 0, vec![1]);
    // A clean candidate wins while there is one.
    h.create_assigned("u", &[&[1, 2, 3]], &[]);
    h.shrink("u", 0, vec![1, 3]);
    h.fence(10, 1);
    let p = h.part("t", 0);
    assert_eq!((p.leader, p.isr, p.leader_epoch), (2, vec![2], 1));
    let u = h.part("u", 0);
    assert_eq!((u.leader, u.isr), (3, vec![3]));
    assert!(h.c.unclean_leader_election_enabled("t"));
    h.check_replay();
}

#[test]
fn unclean_applies_to_controlled_shutdown_too() {
    let cfg = config_with(|c| c.unclean_leader_election_enable = true);
    let mut h = Harness::with_brokers_config(2, 7, cfg);
    h.create_assigned("t", &[&[1, 2]], &[]);
    h.shrink("t", 0, vec![1]);
    h.shutdown_heartbeat(10, 1);
    let p = h.part("t", 0);
    assert_eq!((p.leader, p.isr), (2, vec![2]));
    assert!(h.shutdown_heartbeat(20, 1).should_shutdown);
    h.check_replay();
}

#[test]
fn unclean_topic_config_overrides_the_broker_default_both_ways() {
    // Broker default off, topic on.
    let mut h = Harness::with_brokers(2, 8);
    h.create_assigned(
        "on",
        &[&[1, 2]],
        &[("unclean.leader.election.enable", "true")],
    );
    h.create_assigned("off", &[&[1, 2]], &[]);
    h.shrink("on", 0, vec![1]);
    h.shrink("off", 0, vec![1]);
    h.fence(10, 1);
    assert_eq!(h.part("on", 0).leader, 2);
    assert_eq!(h.part("off", 0).leader, NO_LEADER);
    h.check_replay();
    // Broker default on, topic off.
    let cfg = config_with(|c| c.unclean_leader_election_enable = true);
    let mut h = Harness::with_brokers_config(2, 9, cfg);
    h.create_assigned(
        "off",
        &[&[1, 2]],
        &[("unclean.leader.election.enable", "FALSE")],
    );
    h.create_assigned(
        "junk",
        &[&[1, 2]],
        &[("unclean.leader.election.enable", "maybe")],
    );
    h.shrink("off", 0, vec![1]);
    h.shrink("junk", 0, vec![1]);
    h.fence(10, 1);
    let p = h.part("off", 0);
    assert_eq!((p.leader, p.isr), (NO_LEADER, vec![1]));
    // A value that is neither true nor false falls back to the default.
    assert_eq!(h.part("junk", 0).leader, 2);
    h.check_replay();
}

#[test]
fn unfencing_elects_leaderless_partitions_cleanly_or_uncleanly() {
    for unclean in [false, true] {
        let cfg = config_with(|c| c.unclean_leader_election_enable = unclean);
        let mut h = Harness::with_brokers_config(3, 10, cfg);
        // "back": its last ISR member returns. "other": a replica outside
        // the ISR returns.
        h.create_assigned("back", &[&[1, 2]], &[]);
        h.create_assigned("other", &[&[3, 2]], &[]);
        h.shrink("back", 0, vec![1]);
        h.shrink("other", 0, vec![3]);
        h.fence(10, 2);
        h.fence(10, 1);
        h.fence(10, 3);
        for t in ["back", "other"] {
            assert_eq!(h.part(t, 0).leader, NO_LEADER, "{t}");
        }
        h.unfence(20, 1);
        let p = h.part("back", 0);
        assert_eq!((p.leader, p.isr), (1, vec![1]));
        h.unfence(30, 2);
        let p = h.part("other", 0);
        if unclean {
            assert_eq!((p.leader, p.isr), (2, vec![2]));
        } else {
            assert_eq!((p.leader, p.isr), (NO_LEADER, vec![3]));
            // Its last ISR member elects it when back.
            h.unfence(40, 3);
            let p = h.part("other", 0);
            assert_eq!((p.leader, p.isr), (3, vec![3]));
        }
        h.check_replay();
    }
}

// --------------------------------------------------------------------
// Preferred leader election (auto leader rebalance)
// --------------------------------------------------------------------

const INTERVAL: u64 = 30_000;
/// Sessions in the rebalance tests outlive every tick they make.
const LONG_SESSION: u64 = 10_000_000;

/// The controller's deadline if it is not a session expiry.
fn rebalance_deadline(h: &Harness) -> Option<u64> {
    h.c.next_deadline().filter(|&t| t < LONG_SESSION)
}

fn rebalance_config(percentage: u32) -> ControllerConfig {
    config_with(|c| {
        c.session_timeout_ms = LONG_SESSION;
        c.leader_imbalance_check_interval_ms = INTERVAL;
        c.leader_imbalance_per_broker_percentage = percentage;
    })
}

/// Brokers 1 and 2; topic "t" with `n` partitions preferring broker 1
/// (replicas [1, 2]), the first `moved` of them led by 2 with 1 back in
/// the ISR, the others led by 1.
fn imbalanced(n: i32, moved: i32, percentage: u32) -> Harness {
    let mut h = Harness::with_brokers_config(2, 11, rebalance_config(percentage));
    let replicas: Vec<&[i32]> = (0..n).map(|_| &[1, 2][..]).collect();
    h.create_assigned("t", &replicas, &[]);
    // Partitions that 1 alone holds go leaderless on its fence and come
    // back to it when it returns; the others move to 2.
    for idx in moved..n {
        h.shrink("t", idx, vec![1]);
    }
    h.fence(10, 1);
    h.unfence(20, 1);
    for idx in 0..n {
        let p = h.part("t", idx);
        assert_eq!(p.leader, if idx < moved { 2 } else { 1 });
        if idx < moved {
            h.shrink("t", idx, vec![2, 1]);
        }
    }
    h
}

#[test]
fn preferred_leader_returns_once_in_the_isr_and_the_interval_passed() {
    let mut h = Harness::with_brokers_config(2, 12, rebalance_config(10));
    h.create_assigned("t", &[&[1, 2]], &[]);
    assert_eq!(rebalance_deadline(&h), None, "nothing to rebalance");
    h.fence(10, 1);
    h.unfence(20, 1);
    // Broker 1 is active but not in the ISR: not movable, no deadline.
    assert_eq!(h.part("t", 0).leader, 2);
    assert_eq!(rebalance_deadline(&h), None);
    assert!(h.tick(INTERVAL).is_empty());
    // Back in the ISR: the check is due INTERVAL after the last one.
    h.shrink("t", 0, vec![2, 1]);
    assert_eq!(rebalance_deadline(&h), Some(2 * INTERVAL));
    assert!(h.tick(2 * INTERVAL - 1).is_empty());
    let recs = h.tick(2 * INTERVAL);
    assert_eq!(recs.len(), 1);
    let p = h.part("t", 0);
    assert_eq!((p.leader, p.isr, p.leader_epoch), (1, vec![2, 1], 2));
    assert_eq!(rebalance_deadline(&h), None);
    h.check_replay();
}

#[test]
fn preferred_leader_election_needs_the_imbalance_above_the_percentage() {
    // 1 of 10 partitions away from broker 1: 10% is not above 10%.
    let mut h = imbalanced(10, 1, 10);
    assert!(h.tick(INTERVAL).is_empty());
    assert_eq!(h.part("t", 0).leader, 2);
    // 2 of 10: 20% > 10%, both move back.
    let mut h = imbalanced(10, 2, 10);
    assert_eq!(h.tick(INTERVAL).len(), 2);
    assert_eq!(h.leaders("t"), vec![1; 10]);
    h.check_replay();
    // Percentage 0: any imbalance.
    let mut h = imbalanced(10, 1, 0);
    assert_eq!(h.tick(INTERVAL).len(), 1);
    assert_eq!(h.leaders("t"), vec![1; 10]);
    h.check_replay();
}

#[test]
fn preferred_leader_is_not_elected_when_inactive_or_disabled() {
    // Preferred replica fenced while it is the last ISR member: leaderless
    // and not active, so nothing moves.
    let mut h = Harness::with_brokers_config(2, 13, rebalance_config(0));
    h.create_assigned("t", &[&[1, 2]], &[]);
    h.shrink("t", 0, vec![1]);
    h.fence(10, 1);
    assert!(h.tick(INTERVAL).is_empty());
    assert_eq!(h.part("t", 0).leader, NO_LEADER);
    // Disabled: nothing moves and no deadline for it.
    let mut h = imbalanced(4, 4, 0);
    h.c = Controller::new(
        h.c.working().clone(),
        config_with(|c| {
            c.auto_leader_rebalance_enable = false;
            c.session_timeout_ms = LONG_SESSION;
        }),
        0,
        1,
    );
    assert_eq!(rebalance_deadline(&h), None);
    assert!(h.tick(10 * INTERVAL).is_empty());
    assert_eq!(h.leaders("t"), vec![2; 4]);
}

#[test]
fn preferred_leader_checks_run_at_most_once_per_interval() {
    let mut h = imbalanced(2, 1, 0);
    // The check at INTERVAL + 5 moves partition 0 back.
    assert_eq!(h.tick(INTERVAL + 5).len(), 1);
    assert_eq!(h.leaders("t"), vec![1, 1]);
    // Both become movable right after; they wait a whole interval.
    h.shrink("t", 1, vec![1, 2]);
    h.fence(INTERVAL + 6, 1);
    h.unfence(INTERVAL + 7, 1);
    assert_eq!(h.leaders("t"), vec![2, 2]);
    h.shrink("t", 0, vec![2, 1]);
    h.shrink("t", 1, vec![2, 1]);
    assert_eq!(rebalance_deadline(&h), Some(2 * INTERVAL + 5));
    assert!(h.tick(2 * INTERVAL + 4).is_empty());
    assert_eq!(h.tick(2 * INTERVAL + 5).len(), 2);
    assert_eq!(h.leaders("t"), vec![1, 1]);
    h.check_replay();
}

// --------------------------------------------------------------------
// The replay property and determinism over random command sequences
// --------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Cmd {
    Register {
        id: i32,
        gen: u8,
        wrong_cluster: bool,
    },
    Heartbeat {
        id: i32,
        stale: bool,
        caught_up: bool,
        want_fence: bool,
        want_shutdown: bool,
    },
    Advance {
        ms: u64,
    },
    Tick,
    Create {
        names: Vec<(u8, i32, i16)>,
        validate_only: bool,
        /// Topic config `unclean.leader.election.enable`: none, false, true.
        unclean: Option<bool>,
    },
    CreateManual {
        name: u8,
        assignment: Vec<Vec<i32>>,
    },
    Delete {
        names: Vec<u8>,
        by_id: Vec<u8>,
    },
    AddPartitions {
        name: u8,
        extra: i32,
        validate_only: bool,
    },
    Alter {
        name: u8,
        partition: i32,
        /// 0: shrink to the leader; 1: every replica; 2: the leader and
        /// the active replicas.
        mode: u8,
    },
}

fn arb_cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => (0..5i32, 0..2u8, proptest::bool::weighted(0.1))
            .prop_map(|(id, gen, wrong_cluster)| Cmd::Register { id, gen, wrong_cluster }),
        6 => (0..5i32, proptest::bool::weighted(0.1), proptest::bool::weighted(0.8),
              proptest::bool::weighted(0.1), proptest::bool::weighted(0.15))
            .prop_map(|(id, stale, caught_up, want_fence, want_shutdown)| Cmd::Heartbeat {
                id, stale, caught_up, want_fence, want_shutdown
            }),
        2 => (0..6000u64).prop_map(|ms| Cmd::Advance { ms }),
        2 => Just(Cmd::Tick),
        3 => (proptest::collection::vec((0..6u8, -1..5i32, -1..4i16), 1..3), proptest::bool::weighted(0.2),
              proptest::option::of(any::<bool>()))
            .prop_map(|(names, validate_only, unclean)| Cmd::Create { names, validate_only, unclean }),
        1 => (0..6u8, proptest::collection::vec(proptest::collection::vec(0..5i32, 1..3), 1..3))
            .prop_map(|(name, assignment)| Cmd::CreateManual { name, assignment }),
        1 => (proptest::collection::vec(0..6u8, 0..2), proptest::collection::vec(0..6u8, 0..2))
            .prop_map(|(names, by_id)| Cmd::Delete { names, by_id }),
        2 => (0..6u8, -1..3i32, proptest::bool::weighted(0.2))
            .prop_map(|(name, extra, validate_only)| Cmd::AddPartitions { name, extra, validate_only }),
        3 => (0..6u8, 0..3i32, 0..3u8)
            .prop_map(|(name, partition, mode)| Cmd::Alter { name, partition, mode }),
    ]
}

/// Runs the commands; returns every record and every answer, rendered.
fn run(h: &mut Harness, cmds: &[Cmd]) -> Vec<String> {
    let mut now = 0u64;
    let mut answers = Vec::new();
    let name = |n: u8| format!("topic-{n}");
    for cmd in cmds {
        match cmd.clone() {
            Cmd::Register {
                id,
                gen,
                wrong_cluster,
            } => {
                let mut req = reg_req(id, gen);
                if wrong_cluster {
                    req.cluster_id = "wrong".into();
                }
                let next = h.c.working().applied_offset + 1;
                let (recs, res) = h.c.register_broker(now, next, req);
                h.record(recs);
                answers.push(format!("{res:?}"));
            }
            Cmd::Heartbeat {
                id,
                stale,
                caught_up,
                want_fence,
                want_shutdown,
            } => {
                let epoch = h.c.working().broker(id).map_or(0, |b| b.epoch) + i64::from(stale);
                let offset = if caught_up {
                    h.c.working().applied_offset
                } else {
                    -1
                };
                let req = HeartbeatReq {
                    broker_id: id,
                    broker_epoch: epoch,
                    current_metadata_offset: offset,
                    want_fence,
                    want_shutdown,
                };
                answers.push(format!("{:?}", h.heartbeat(now, req)));
            }
            Cmd::Advance { ms } => now += ms,
            Cmd::Tick => {
                h.tick(now);
                answers.push(format!("{:?}", h.c.next_deadline()));
            }
            Cmd::Create {
                names,
                validate_only,
                unclean,
            } => {
                let configs: Vec<(String, Option<String>)> = unclean
                    .map(|u| ("unclean.leader.election.enable".into(), Some(u.to_string())))
                    .into_iter()
                    .collect();
                let reqs = names
                    .iter()
                    .map(|&(n, p, rf)| CreateTopicReq {
                        configs: configs.clone(),
                        ..topic_req(&name(n), p, rf)
                    })
                    .collect();
                answers.push(format!("{:?}", h.create(reqs, validate_only)));
            }
            Cmd::CreateManual {
                name: n,
                assignment,
            } => {
                let req = CreateTopicReq {
                    assignments: assignment
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| (i as i32, r))
                        .collect(),
                    ..topic_req(&name(n), -1, -1)
                };
                answers.push(format!("{:?}", h.create(vec![req], false)));
            }
            Cmd::Delete { names, by_id } => {
                let ids = by_id
                    .iter()
                    .map(|&n| {
                        h.c.working()
                            .topic(&name(n))
                            .map_or(Uuid::from_u128(n as u128), |t| t.id)
                    })
                    .collect();
                let (recs, res) =
                    h.c.delete_topics(names.iter().map(|&n| name(n)).collect(), ids);
                h.record(recs);
                answers.push(format!("{res:?}"));
            }
            Cmd::AddPartitions {
                name: n,
                extra,
                validate_only,
            } => {
                let current =
                    h.c.working()
                        .topic(&name(n))
                        .map_or(0, |t| t.partitions.len() as i32);
                let req = CreatePartitionsReq {
                    name: name(n),
                    count: current + extra,
                    assignments: vec![],
                };
                let (recs, res) = h.c.create_partitions(now, vec![req], validate_only);
                h.record(recs);
                answers.push(format!("{res:?}"));
            }
            Cmd::Alter {
                name: n,
                partition,
                mode,
            } => {
                let Some(t) = h.c.working().topic(&name(n)) else {
                    continue;
                };
                let Some(p) = t.partitions.get(&partition).cloned() else {
                    continue;
                };
                if p.leader == NO_LEADER {
                    continue;
                }
                let new_isr = match mode {
                    0 => vec![p.leader],
                    1 => p.replicas.clone(),
                    _ => p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|&r| r == p.leader || h.c.working().is_active(r))
                        .collect(),
                };
                let req = AlterPartitionReq {
                    broker_id: p.leader,
                    broker_epoch: h.epoch(p.leader),
                    topic_id: t.id,
                    partition,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr,
                    new_isr_broker_epochs: Vec::new(),
                    leader_recovery_state: 0,
                };
                let (recs, reply) = h.c.alter_partition(req);
                h.record(recs);
                answers.push(format!("{reply:?}"));
            }
        }
        check_invariants(h.c.working());
    }
    answers
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The node's contract: replaying the controller's records onto the
    /// committed image it started from gives exactly its working image.
    #[test]
    fn prop_replaying_proposals_rebuilds_the_working_image(
        cmds in proptest::collection::vec(arb_cmd(), 0..60),
        seed in any::<u64>(),
        prestart in any::<bool>(),
        unclean in any::<bool>(),
        percentage in 0..30u32,
    ) {
        // Unclean election by default or not, and preferred leader checks
        // often enough to run within a sequence.
        let cfg = config_with(|c| {
            c.unclean_leader_election_enable = unclean;
            c.leader_imbalance_check_interval_ms = 5_000;
            c.leader_imbalance_per_broker_percentage = percentage;
        });
        // Half the runs start from three live brokers (their registration
        // records are in the log too), so topics exist more often.
        let mut h = if prestart {
            Harness::with_brokers_config(3, seed, cfg.clone())
        } else {
            Harness::from_image_with(MetadataImage::new(), 0, seed, cfg.clone())
        };
        run(&mut h, &cmds);
        h.check_replay();
        // And a controller rebuilt mid-way from the replayed image carries on.
        let mut committed = h.committed.clone();
        for (i, r) in h.log.iter().enumerate() {
            committed.apply(i as i64, r);
        }
        let mut h2 = Harness::from_image_with(committed, 0, seed ^ 1, cfg);
        run(&mut h2, &cmds);
        h2.check_replay();
        // The snapshot of the working image restores it.
        let snap = h2.c.working().encode_snapshot();
        prop_assert_eq!(&MetadataImage::decode_snapshot(&snap).unwrap(), h2.c.working());
    }

    /// Same inputs, same records and answers.
    #[test]
    fn prop_controller_is_deterministic(
        cmds in proptest::collection::vec(arb_cmd(), 0..40),
        seed in any::<u64>(),
    ) {
        let mut a = Harness::new(seed);
        let mut b = Harness::new(seed);
        let ra = run(&mut a, &cmds);
        let rb = run(&mut b, &cmds);
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.log, b.log);
    }

    /// Placement never repeats a broker within a partition and balances
    /// leaders within one across brokers.
    #[test]
    fn prop_placement_is_distinct_and_balanced(
        brokers in 1..7i32,
        rf_pick in 0..7i16,
        partitions in 1..30i32,
        seed in any::<u64>(),
    ) {
        let rf = rf_pick % brokers as i16 + 1;
        let mut h = Harness::with_brokers(brokers, seed);
        let r = h.create_one("t", partitions, rf);
        prop_assert_eq!(r.error, NONE);
        let mut leads = BTreeMap::new();
        for p in h.c.working().topic("t").unwrap().partitions.values() {
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            prop_assert_eq!(distinct.len(), rf as usize);
            *leads.entry(p.leader).or_insert(0i32) += 1;
        }
        let max = leads.values().max().copied().unwrap_or(0);
        let min = if leads.len() < brokers as usize { 0 } else { leads.values().min().copied().unwrap_or(0) };
        prop_assert!(max - min <= 1, "{:?}", leads);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Brokers come and go and leaders change their ISRs; once every
    /// broker is back and in every ISR, one preferred-leader check leaves
    /// each broker either leading all the partitions it prefers or with an
    /// imbalance within the percentage. The log replays throughout.
    #[test]
    fn prop_preferred_election_restores_preferred_leaders_once_healed(
        ops in proptest::collection::vec((0..5u8, 1..4i32, 0..10i32, 0..7000u64), 0..50),
        seed in any::<u64>(),
        unclean in any::<bool>(),
        percentage in 0..60u32,
    ) {
        let cfg = config_with(|c| {
            c.unclean_leader_election_enable = unclean;
            c.session_timeout_ms = LONG_SESSION;
            c.leader_imbalance_check_interval_ms = 5_000;
            c.leader_imbalance_per_broker_percentage = percentage;
        });
        let mut h = Harness::with_brokers_config(3, seed, cfg);
        prop_assert_eq!(h.create_one("t", 6, 3).error, NONE);
        prop_assert_eq!(h.create_one("s", 4, 2).error, NONE);
        let parts: Vec<(&str, i32)> = (0..6).map(|i| ("t", i)).chain((0..4).map(|i| ("s", i))).collect();
        let mut now = 0;
        let expand = |h: &mut Harness, topic: &str, idx: i32| {
            let p = h.part(topic, idx);
            if p.leader == NO_LEADER {
                return;
            }
            let isr: Vec<i32> = p.replicas.iter().copied()
                .filter(|&r| r == p.leader || h.c.working().is_active(r)).collect();
            let req = h.alter_req(topic, idx, isr);
            assert_eq!(h.alter(req).error, NONE);
        };
        for (kind, b, which, ms) in ops {
            let (topic, idx) = parts[which as usize];
            let fenced = h.c.working().broker(b).unwrap().fenced;
            match kind {
                0 if !fenced => h.fence(now, b),
                1 if fenced => h.unfence(now, b),
                2 => expand(&mut h, topic, idx),
                3 => {
                    let p = h.part(topic, idx);
                    if p.leader != NO_LEADER {
                        let req = h.alter_req(topic, idx, vec![p.leader]);
                        prop_assert_eq!(h.alter(req).error, NONE);
                    }
                }
                4 => {
                    now += ms;
                    h.tick(now);
                }
                _ => {}
            }
            check_invariants(h.c.working());
        }
        // Heal: everyone back, every ISR full, one check.
        for b in 1..=3 {
            if h.c.working().broker(b).unwrap().fenced {
                h.unfence(now, b);
            }
        }
        for &(topic, idx) in &parts {
            prop_assert_ne!(h.part(topic, idx).leader, NO_LEADER);
            expand(&mut h, topic, idx);
        }
        now += 5_000;
        h.tick(now);
        for b in 1..=3 {
            let preferred: Vec<PartitionImage> = parts.iter()
                .map(|&(t, i)| h.part(t, i))
                .filter(|p| p.replicas[0] == b)
                .collect();
            let elsewhere = preferred.iter().filter(|p| p.leader != b).count() as u64;
            prop_assert!(
                elsewhere * 100 <= u64::from(percentage) * preferred.len() as u64,
                "broker {} leads {} of its {} preferred partitions (percentage {})",
                b, preferred.len() as u64 - elsewhere, preferred.len(), percentage
            );
        }
        h.check_replay();
    }
}

#[test]
fn producer_id_blocks_are_disjoint_and_a_stale_broker_epoch_is_refused() {
    let mut h = Harness::with_brokers(2, 1);
    let e1 = h.epoch(1);
    let e2 = h.epoch(2);
    let (recs, first) = h.c.allocate_producer_ids(1, e1).unwrap();
    h.record(recs);
    let (recs, second) = h.c.allocate_producer_ids(2, e2).unwrap();
    h.record(recs);
    assert_eq!(first, (0, PRODUCER_ID_BLOCK_SIZE));
    assert_eq!(
        second,
        (i64::from(PRODUCER_ID_BLOCK_SIZE), PRODUCER_ID_BLOCK_SIZE)
    );
    assert_eq!(h.c.working().next_producer_id, 2000);
    h.check_replay();
    assert_eq!(
        h.c.allocate_producer_ids(1, e1 + 7),
        Err(STALE_BROKER_EPOCH)
    );
    assert_eq!(h.c.allocate_producer_ids(9, 0), Err(STALE_BROKER_EPOCH));
    // The image replayed from the records hands out nothing twice either.
    let mut replayed = MetadataImage::new();
    for (i, r) in h.log.iter().enumerate() {
        replayed.apply(i as i64, r);
    }
    assert_eq!(replayed.next_producer_id, 2000);
    let snap = replayed.encode_snapshot();
    assert_eq!(
        MetadataImage::decode_snapshot(&snap)
            .unwrap()
            .next_producer_id,
        2000
    );
    // A record that would move ids back is ignored.
    replayed.apply(
        1_000,
        &MetadataRecord::ProducerIds {
            broker_id: 1,
            broker_epoch: e1,
            next_producer_id: 5,
        },
    );
    assert_eq!(replayed.next_producer_id, 2000);
}
