//! The leader's view of a partition: each follower's fetch progress, the ISR
//! it may count (Kafka's "maximal ISR", KIP-497), the high watermark, and the
//! ISR changes it should ask the controller for.

use std::collections::BTreeMap;

/// What the leader knows of one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end as its last fetch showed it; -1 until it fetches
    /// in this leader epoch. In sync mode a follower only fetches once what it
    /// has is durable, so this is its durable end.
    pub log_end: i64,
    /// When it last fetched (ms).
    pub last_fetch_ms: u64,
    /// The last time it was known to have everything the leader had.
    pub last_caught_up_ms: u64,
    /// The leader's log end when answering its previous fetch.
    leader_end_at_last_fetch: i64,
}

/// An ISR change asked of the controller whose outcome is not known yet
/// (Kafka's `PendingPartitionChange`). It stays until the controller's
/// answer or newer metadata settles it: an AlterPartition that failed in
/// transit, or whose controller resigned before answering, may still be
/// committed (a new controller commits what its predecessor appended), so
/// until then the high watermark must count the members it adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIsr {
    pub isr: Vec<i32>,
    /// The request carrying it now (the node's id for it); `None` while
    /// none is in flight.
    pub request: Option<u64>,
    /// With no request in flight: when to send it again (`None`: not
    /// again; newer metadata settles it).
    pub retry_at_ms: Option<u64>,
}

/// How an AlterPartition that was not accepted leaves the pending change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterFailure {
    /// The controller says it did not apply it (`INELIGIBLE_REPLICA`,
    /// `OPERATION_NOT_ATTEMPTED`) at the current partition epoch: no
    /// controller, past or future, can have applied it. Back to the
    /// committed ISR.
    NotApplied,
    /// The leader's view is stale (older leader or partition epoch, unknown
    /// partition, refused request, an answer for another leader epoch):
    /// keep the change pending until the metadata brings the committed state.
    AwaitMetadata,
    /// Unknown outcome (the request or its answer was lost, the controller
    /// moved or resigned, anything unexpected): keep it pending and send it
    /// again.
    Retry,
}

impl AlterFailure {
    /// Kafka's classification of an AlterPartition error: the top-level
    /// error if any, else the partition's; `None`: no answer at all.
    pub fn of(top_level: Option<i16>, partition: Option<i16>) -> AlterFailure {
        use kafka_protocol::error::ResponseError as E;
        let Some(top) = top_level else {
            return AlterFailure::Retry;
        };
        if top != 0 {
            return AlterFailure::Retry;
        }
        let Some(code) = partition else {
            return AlterFailure::Retry;
        };
        match code {
            c if c == E::OperationNotAttempted.code() || c == E::IneligibleReplica.code() => {
                AlterFailure::NotApplied
            }
            c if c == E::UnknownTopicOrPartition.code()
                || c == E::UnknownTopicId.code()
                || c == E::FencedLeaderEpoch.code()
                || c == E::InvalidUpdateVersion.code()
                || c == E::InvalidRequest.code()
                || c == E::NewLeaderElected.code() =>
            {
                AlterFailure::AwaitMetadata
            }
            _ => AlterFailure::Retry,
        }
    }
}

/// A partition this node leads, in one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    me: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    /// The ISR as last committed by the controller.
    pub isr: Vec<i32>,
    pub pending: Option<PendingIsr>,
    /// The log end when this epoch began: a follower must reach it to join the ISR.
    pub epoch_start_offset: i64,
    followers: BTreeMap<i32, FollowerProgress>,
}

impl LeaderState {
    /// Leadership taken at `log_end` (the new epoch's first offset).
    pub fn new(
        me: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        log_end: i64,
        now_ms: u64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                (
                    r,
                    FollowerProgress {
                        log_end: -1,
                        last_fetch_ms: now_ms,
                        // ISR members get a full lag window to show up.
                        last_caught_up_ms: if isr.contains(&r) { now_ms } else { 0 },
                        leader_end_at_last_fetch: -1,
                    },
                )
            })
            .collect();
        LeaderState {
            me,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            pending: None,
            epoch_start_offset: log_end,
            followers,
        }
    }

    /// The controller committed a change that keeps this leader and epoch
    /// (an ISR change, ours or not). Stale updates (older partition epoch) are ignored.
    pub fn on_partition_update(
        &mut self,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        now_ms: u64,
    ) {
        if partition_epoch < self.partition_epoch {
            return;
        }
        if partition_epoch > self.partition_epoch {
            self.pending = None;
        }
        self.partition_epoch = partition_epoch;
        for &r in &replicas {
            if r != self.me {
                self.followers.entry(r).or_insert(FollowerProgress {
                    log_end: -1,
                    last_fetch_ms: now_ms,
                    last_caught_up_ms: 0,
                    leader_end_at_last_fetch: -1,
                });
            }
        }
        self.followers.retain(|r, _| replicas.contains(r));
        self.replicas = replicas;
        self.isr = isr;
    }

    pub fn follower(&self, id: i32) -> Option<&FollowerProgress> {
        self.followers.get(&id)
    }

    pub fn is_replica(&self, id: i32) -> bool {
        self.followers.contains_key(&id)
    }

    /// A replica fetch from `follower` at `fetch_offset` while the leader's
    /// log ends at `leader_end` (Kafka's caught-up rule: a follower that
    /// reached the leader's end as of its previous fetch was caught up then).
    pub fn on_follower_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: u64,
    ) {
        let Some(f) = self.followers.get_mut(&follower) else {
            return;
        };
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.leader_end_at_last_fetch >= 0 && fetch_offset >= f.leader_end_at_last_fetch {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end = fetch_offset;
        f.leader_end_at_last_fetch = leader_end;
        f.last_fetch_ms = now_ms;
    }

    /// The ISR the high watermark and min.insync.replicas count: the committed
    /// ISR plus members a pending expansion adds (a pending shrink does not
    /// count until committed: until then the removed member may still hold
    /// the only copy the controller would elect from).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(p) = &self.pending {
            for r in &p.isr {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }

    /// The high watermark this state allows: the lowest log end over the
    /// maximal ISR, the leader's own counted as `leader_end` (its durable end
    /// in sync mode). A follower that has not fetched in this epoch holds it
    /// where it is (`None`).
    pub fn high_watermark(&self, leader_end: i64) -> Option<i64> {
        let mut hw = leader_end;
        for r in self.maximal_isr() {
            if r == self.me {
                continue;
            }
            let f = self.followers.get(&r)?;
            if f.log_end < 0 {
                return None;
            }
            hw = hw.min(f.log_end);
        }
        Some(hw)
    }

    /// A pending ISR change to send again now (its last request's outcome
    /// is unknown and its retry time has come).
    pub fn isr_to_resend(&self, now_ms: u64) -> Option<Vec<i32>> {
        let p = self.pending.as_ref()?;
        (p.request.is_none() && p.retry_at_ms.is_some_and(|at| at <= now_ms)).then(|| p.isr.clone())
    }

    /// The ISR change to ask for now, if any and none is pending: drop
    /// members not caught up within `lag_ms`; add `fetched` (the follower
    /// whose fetch is being handled, as in Kafka: only a fetch shows a
    /// replica live) if it reached both the high watermark and this epoch's
    /// start. The periodic check passes `None` and only shrinks: a replica
    /// cut off after its last fetch must not be added back on what that old
    /// fetch showed.
    pub fn wanted_isr(
        &self,
        now_ms: u64,
        lag_ms: u64,
        hw: i64,
        fetched: Option<i32>,
    ) -> Option<Vec<i32>> {
        if self.pending.is_some() {
            return None;
        }
        let mut isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&r| {
                r == self.me
                    || self
                        .followers
                        .get(&r)
                        .is_some_and(|f| now_ms.saturating_sub(f.last_caught_up_ms) <= lag_ms)
            })
            .collect();
        for (&r, f) in &self.followers {
            if Some(r) == fetched
                && !isr.contains(&r)
                && !self.isr.contains(&r)
                && f.log_end >= 0
                && f.log_end >= hw
                && f.log_end >= self.epoch_start_offset
            {
                isr.push(r);
            }
        }
        if !isr.contains(&self.me) {
            isr.insert(0, self.me);
        }
        // Keep replica order, as Kafka lists ISRs.
        isr.sort_by_key(|r| {
            self.replicas
                .iter()
                .position(|x| x == r)
                .unwrap_or(usize::MAX)
        });
        (isr != self.isr).then_some(isr)
    }

    /// `isr` asked of the controller by request `request` (a new change, or
    /// the pending one sent again).
    pub fn on_alter_sent(&mut self, isr: Vec<i32>, request: u64) {
        self.pending = Some(PendingIsr {
            isr,
            request: Some(request),
            retry_at_ms: None,
        });
    }

    /// Whether `request` carries the pending change (an answer to any other
    /// is stale: the change it carried was settled since).
    fn is_pending_request(&self, request: u64) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.request == Some(request))
    }

    /// Request `request` was not accepted (`failure`: what that leaves;
    /// `retry_at_ms`: when to send it again if it is retried). The pending
    /// change is dropped only when the controller says it was not applied.
    pub fn on_alter_failed(&mut self, request: u64, failure: AlterFailure, retry_at_ms: u64) {
        if !self.is_pending_request(request) {
            return;
        }
        match failure {
            AlterFailure::NotApplied => self.pending = None,
            AlterFailure::AwaitMetadata | AlterFailure::Retry => {
                if let Some(p) = &mut self.pending {
                    p.request = None;
                    p.retry_at_ms = (failure == AlterFailure::Retry).then_some(retry_at_ms);
                }
            }
        }
    }

    /// The controller accepted request `request`: its answer is the
    /// committed state.
    pub fn on_alter_accepted(&mut self, request: u64, partition_epoch: i32, isr: Vec<i32>) {
        if !self.is_pending_request(request) {
            return;
        }
        if partition_epoch >= self.partition_epoch {
            self.partition_epoch = partition_epoch;
            self.isr = isr;
        }
        self.pending = None;
    }
}

/// Kafka's check of a replica fetch's last fetched epoch (KIP-320): the
/// follower's log diverges from the leader's when the leader's history for
/// that epoch ends earlier, or has no such epoch. `Some((epoch, end))` is
/// the diverging epoch to answer with.
pub fn diverging_epoch(
    log: &impl super::follower::EpochLookup,
    last_fetched_epoch: i32,
    fetch_offset: i64,
) -> Option<(i32, i64)> {
    if last_fetched_epoch < 0 {
        return None;
    }
    let (epoch, end) = log.end_offset_for_epoch(last_fetched_epoch);
    (epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
}
