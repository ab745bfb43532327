//! A coordinator with a clock, a replicated log and request ids, to script
//! scenarios with.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::group::*;

pub use crate::group::group::code;

pub const SESSION: i32 = 10_000;
pub const REBALANCE: i32 = 30_000;

pub type Record = (i32, Bytes, Option<Bytes>);
/// An append not completed yet: its partition and records.
pub type Batch = (i32, Vec<(Bytes, Option<Bytes>)>);

pub struct H {
    pub c: Coordinator,
    pub now: i64,
    next_req: ReqId,
    /// Replies not looked at yet.
    pub replies: BTreeMap<ReqId, Reply>,
    /// Appends not completed yet: token -> (partition, records).
    pub appends: BTreeMap<AppendToken, Batch>,
    /// Every record whose append succeeded, in order.
    pub log: Vec<Record>,
}

pub fn config() -> GroupConfig {
    GroupConfig {
        offsets_partitions: 1,
        ..GroupConfig::default()
    }
}

/// A ConsumerProtocolSubscription v0 for `topics`.
pub fn subscription(topics: &[&str]) -> Bytes {
    let mut b = vec![0, 0];
    b.extend((topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend((t.len() as i16).to_be_bytes());
        b.extend(t.as_bytes());
    }
    b.extend((-1i32).to_be_bytes());
    Bytes::from(b)
}

pub fn range(topics: &[&str]) -> Vec<(String, Bytes)> {
    vec![("range".to_string(), subscription(topics))]
}

impl H {
    pub fn new(config: GroupConfig) -> H {
        let partitions = config.offsets_partitions;
        let mut h = H {
            c: Coordinator::new(config, 7),
            now: 1_000,
            next_req: 1,
            replies: BTreeMap::new(),
            appends: BTreeMap::new(),
            log: Vec::new(),
        };
        let mut out = Vec::new();
        for p in 0..partitions {
            h.c.begin_load(p, &mut out);
            h.c.finish_load(p, h.now, &mut out);
        }
        h.absorb(out);
        h
    }

    pub fn absorb(&mut self, out: Vec<Effect>) {
        for e in out {
            match e {
                Effect::Reply { req, reply } => {
                    assert!(self.replies.insert(req, reply).is_none(), "answered twice");
                }
                Effect::Append {
                    partition,
                    token,
                    records,
                } => {
                    self.appends.insert(token, (partition, records));
                }
            }
        }
    }

    pub fn next_req(&mut self) -> ReqId {
        self.req()
    }

    fn req(&mut self) -> ReqId {
        self.next_req += 1;
        self.next_req
    }

    pub fn join_req(&mut self, r: JoinRequest) -> ReqId {
        let req = self.req();
        let mut out = Vec::new();
        self.c.join(self.now, req, r, &mut out);
        self.absorb(out);
        req
    }

    /// A consumer joining group `g` (KIP-394 off unless `require`).
    pub fn join(&mut self, member: &str, instance: Option<&str>) -> ReqId {
        self.join_req(join_request("g", member, instance, range(&["t"])))
    }

    pub fn sync(&mut self, member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> ReqId {
        let req = self.req();
        let r = SyncRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a)))
                .collect(),
            ..SyncRequest::default()
        };
        let mut out = Vec::new();
        self.c.sync(self.now, req, r, &mut out);
        self.absorb(out);
        req
    }

    pub fn heartbeat(&mut self, member: &str, instance: Option<&str>, generation: i32) -> i16 {
        let req = self.req();
        let r = HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: instance.map(str::to_string),
        };
        let mut out = Vec::new();
        self.c.heartbeat(self.now, req, r, &mut out);
        self.absorb(out);
        match self.take(req) {
            Reply::Heartbeat(e) => e,
            other => panic!("not a heartbeat answer: {other:?}"),
        }
    }

    pub fn leave(&mut self, members: &[(&str, Option<&str>)]) -> LeaveResponse {
        let req = self.req();
        let r = LeaveRequest {
            group_id: "g".into(),
            members: members
                .iter()
                .map(|(m, i)| (m.to_string(), i.map(str::to_string), None))
                .collect(),
        };
        let mut out = Vec::new();
        self.c.leave(self.now, req, r, &mut out);
        self.absorb(out);
        match self.take(req) {
            Reply::Leave(r) => r,
            other => panic!("not a leave answer: {other:?}"),
        }
    }

    pub fn commit_req(&mut self, r: CommitRequest) -> ReqId {
        let req = self.req();
        let mut out = Vec::new();
        self.c.commit(self.now, req, r, &mut out);
        self.absorb(out);
        req
    }

    pub fn commit(&mut self, member: &str, generation: i32, offsets: &[(&str, i32, i64)]) -> ReqId {
        self.commit_req(commit_request("g", member, generation, offsets))
    }

    pub fn fetch(&self, topic: &str, partition: i32) -> Option<i64> {
        let r = OffsetFetchRequest {
            group_id: "g".into(),
            partitions: Some(vec![(topic.into(), partition)]),
        };
        let resp = self.c.fetch_offsets(&r);
        assert_eq!(resp.error, 0);
        resp.partitions[0].2.as_ref().map(|o| o.offset)
    }

    pub fn take(&mut self, req: ReqId) -> Reply {
        self.replies
            .remove(&req)
            .unwrap_or_else(|| panic!("request {req} not answered"))
    }

    pub fn answered(&self, req: ReqId) -> bool {
        self.replies.contains_key(&req)
    }

    pub fn take_join(&mut self, req: ReqId) -> JoinResponse {
        match self.take(req) {
            Reply::Join(r) => r,
            other => panic!("not a join answer: {other:?}"),
        }
    }

    pub fn take_sync(&mut self, req: ReqId) -> SyncResponse {
        match self.take(req) {
            Reply::Sync(r) => r,
            other => panic!("not a sync answer: {other:?}"),
        }
    }

    pub fn take_commit(&mut self, req: ReqId) -> CommitResponse {
        match self.take(req) {
            Reply::Commit(r) => r,
            other => panic!("not a commit answer: {other:?}"),
        }
    }

    /// Completes the oldest outstanding append.
    pub fn complete_next(&mut self, result: Result<(), i16>) {
        let token = *self.appends.keys().next().expect("an append");
        self.complete(token, result);
    }

    pub fn complete(&mut self, token: AppendToken, result: Result<(), i16>) {
        let (partition, records) = self.appends.remove(&token).expect("known token");
        if result.is_ok() {
            self.log
                .extend(records.into_iter().map(|(k, v)| (partition, k, v)));
        }
        let mut out = Vec::new();
        self.c.on_append_done(self.now, token, result, &mut out);
        self.absorb(out);
    }

    pub fn complete_all(&mut self) {
        while !self.appends.is_empty() {
            self.complete_next(Ok(()));
        }
    }

    /// Moves the clock, firing every timer on the way.
    pub fn advance(&mut self, ms: i64) {
        let until = self.now + ms;
        while let Some(t) = self.c.next_deadline().filter(|t| *t <= until) {
            self.now = self.now.max(t);
            let mut out = Vec::new();
            self.c.tick(self.now, &mut out);
            self.absorb(out);
        }
        self.now = until;
    }

    pub fn view(&self) -> GroupView {
        self.c
            .views()
            .into_iter()
            .find(|v| v.group_id == "g")
            .expect("group g")
    }

    pub fn state(&self) -> String {
        self.c.describe("g").state
    }

    /// A fresh coordinator loaded from the replicated log.
    pub fn replayed(&self) -> Coordinator {
        let mut c = Coordinator::new(self.c.config().clone(), 8);
        let mut out = Vec::new();
        let partitions = self.c.config().offsets_partitions;
        for p in 0..partitions {
            c.begin_load(p, &mut out);
        }
        for (i, (p, k, v)) in self.log.iter().enumerate() {
            c.replay(*p, i as i64, k, v.as_deref());
        }
        for p in 0..partitions {
            c.finish_load(p, self.now, &mut out);
        }
        c
    }
}

pub fn join_request(
    group: &str,
    member: &str,
    instance: Option<&str>,
    protocols: Vec<(String, Bytes)>,
) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        member_id: member.into(),
        group_instance_id: instance.map(str::to_string),
        protocol_type: "consumer".into(),
        protocols,
        require_known_member_id: false,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        reason: None,
    }
}

pub fn commit_request(
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        partitions: offsets
            .iter()
            .map(|(t, p, o)| {
                let part = CommitPartition {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: 3,
                    metadata: Some("md".into()),
                };
                (part, 0)
            })
            .collect(),
    }
}
