//! The coordinator of every group whose `__consumer_offsets` partition this
//! node leads. SKELETON: the interface the node is written against; the
//! bodies are being filled in.

use super::*;

/// Whether a `__consumer_offsets` partition is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Loaded,
}

pub struct Coordinator {
    config: GroupConfig,
}

impl Coordinator {
    /// `seed` feeds the member ids it hands out.
    pub fn new(config: GroupConfig, seed: u64) -> Coordinator {
        let _ = seed;
        Coordinator { config }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The `__consumer_offsets` partition of `group_id`.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_partitions)
    }

    /// The partitions served or loading.
    pub fn partitions(&self) -> Vec<(i32, LoadState)> {
        todo!()
    }

    /// This node now leads `partition`: start loading it (forgetting any
    /// earlier state of it).
    pub fn begin_load(&mut self, partition: i32, out: &mut Vec<Effect>) {
        let _ = (partition, out);
        todo!()
    }

    /// One record of `partition`, in log order. A record that does not parse
    /// is skipped with a warning (never a panic).
    pub fn replay(&mut self, partition: i32, offset: i64, key: &[u8], value: Option<&[u8]>) {
        let _ = (partition, offset, key, value);
        todo!()
    }

    /// Every record up to the partition's end was replayed: serve it.
    /// Restored groups with members get their session timers from `now_ms`.
    pub fn finish_load(&mut self, partition: i32, now_ms: i64, out: &mut Vec<Effect>) {
        let _ = (partition, now_ms, out);
        todo!()
    }

    /// Leadership of `partition` moved away: drop its groups, answering their
    /// waiting requests NOT_COORDINATOR; appends in flight are forgotten.
    pub fn unload(&mut self, partition: i32, out: &mut Vec<Effect>) {
        let _ = (partition, out);
        todo!()
    }

    pub fn join(&mut self, now_ms: i64, req: ReqId, request: JoinRequest, out: &mut Vec<Effect>) {
        let _ = (now_ms, req, request, out);
        todo!()
    }

    pub fn sync(&mut self, now_ms: i64, req: ReqId, request: SyncRequest, out: &mut Vec<Effect>) {
        let _ = (now_ms, req, request, out);
        todo!()
    }

    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        req: ReqId,
        request: HeartbeatRequest,
        out: &mut Vec<Effect>,
    ) {
        let _ = (now_ms, req, request, out);
        todo!()
    }

    pub fn leave(&mut self, now_ms: i64, req: ReqId, request: LeaveRequest, out: &mut Vec<Effect>) {
        let _ = (now_ms, req, request, out);
        todo!()
    }

    pub fn commit(
        &mut self,
        now_ms: i64,
        req: ReqId,
        request: CommitRequest,
        out: &mut Vec<Effect>,
    ) {
        let _ = (now_ms, req, request, out);
        todo!()
    }

    /// Answered at once.
    pub fn fetch_offsets(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        let _ = request;
        todo!()
    }

    /// ListGroups over every served partition; `states`: Kafka's v4+ filter
    /// (empty: all). The error is COORDINATOR_LOAD_IN_PROGRESS while any
    /// partition loads.
    pub fn list_groups(&self, states: &[String]) -> (i16, Vec<GroupListing>) {
        let _ = states;
        todo!()
    }

    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let _ = group_id;
        todo!()
    }

    /// DeleteGroups: answered with one [`Reply::Delete`] once the tombstones
    /// are replicated (or at once when nothing is to be written).
    pub fn delete_groups(
        &mut self,
        now_ms: i64,
        req: ReqId,
        groups: Vec<String>,
        out: &mut Vec<Effect>,
    ) {
        let _ = (now_ms, req, groups, out);
        todo!()
    }

    /// OffsetDelete for one group.
    pub fn delete_offsets(
        &mut self,
        now_ms: i64,
        req: ReqId,
        group_id: String,
        partitions: Vec<(String, i32)>,
        out: &mut Vec<Effect>,
    ) {
        let _ = (now_ms, req, group_id, partitions, out);
        todo!()
    }

    /// When [`Coordinator::tick`] must next run (session, rebalance and
    /// join-delay timeouts, offset expiry).
    pub fn next_deadline(&self) -> Option<i64> {
        todo!()
    }

    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Effect>) {
        let _ = (now_ms, out);
        todo!()
    }

    pub fn on_append_done(
        &mut self,
        now_ms: i64,
        token: AppendToken,
        result: Result<(), i16>,
        out: &mut Vec<Effect>,
    ) {
        let _ = (now_ms, token, result, out);
        todo!()
    }

    /// Every served group, for the simulator's monitor.
    pub fn views(&self) -> Vec<GroupView> {
        todo!()
    }
}
