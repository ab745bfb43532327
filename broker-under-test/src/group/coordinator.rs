//! The coordinator of every group whose `__consumer_offsets` partition this
//! node leads: partitions and their load state, the groups, appends in
//! flight, and the entry points the node calls. The group protocol itself
//! is in `membership.rs`, offsets in `offsets.rs`.

use std::collections::BTreeMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::consumer::ConsumerGroup;
use super::group::{code, join_error, reply, sync_error, ClassicGroup, GroupState};
use super::membership::{self, Cx};
use super::records::{self, RecordKey};
use super::*;

/// Whether a `__consumer_offsets` partition is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Loaded,
}

pub(super) struct PartitionState {
    pub load: LoadState,
    /// When offset expiry next runs (set once loaded).
    pub next_expiry_ms: Option<i64>,
}

/// What to do once an append is replicated (or failed).
#[derive(Debug, Clone)]
pub(super) enum Then {
    /// The leader's SyncGroup: hand out `assignment` of `generation`.
    LeaderSync {
        group: String,
        generation: i32,
        assignment: BTreeMap<String, bytes::Bytes>,
    },
    /// A static member took its instance's place in a Stable group.
    StaticReplace(membership::StaticReplace),
    /// A GroupMetadata record nobody waits for (the group went Empty).
    Nothing,
    Commit {
        req: ReqId,
        group: String,
        response: CommitResponse,
    },
    OffsetDelete {
        req: ReqId,
        response: Vec<(String, i32, i16)>,
    },
    DeleteGroups {
        req: ReqId,
        groups: Vec<String>,
    },
    /// Offset expiry; `groups` were marked Dead to be deleted.
    Expiry {
        groups: Vec<String>,
    },
    /// A ConsumerGroupHeartbeat whose state change must be replicated first.
    ConsumerHeartbeat {
        req: ReqId,
        response: ConsumerHeartbeatResponse,
    },
}

pub(super) struct PendingAppend {
    pub partition: i32,
    pub records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
    pub then: Then,
}

/// Appends in flight, in token (= log) order.
#[derive(Default)]
pub(super) struct Appends {
    next_token: AppendToken,
    pub pending: BTreeMap<AppendToken, PendingAppend>,
}

impl Appends {
    pub fn append(
        &mut self,
        partition: i32,
        records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
        then: Then,
        out: &mut Vec<Effect>,
    ) {
        let token = self.next_token;
        self.next_token += 1;
        out.push(Effect::Append {
            partition,
            token,
            records: records.clone(),
        });
        self.pending.insert(
            token,
            PendingAppend {
                partition,
                records,
                then,
            },
        );
    }
}

/// DeleteGroups' tombstones per partition, and the groups they delete.
type DeleteBatches = BTreeMap<i32, (Vec<(bytes::Bytes, Option<bytes::Bytes>)>, Vec<String>)>;

/// A DeleteGroups answered once every partition's tombstones are in.
struct DeleteRequest {
    results: Vec<(String, i16)>,
    outstanding: usize,
}

pub struct Coordinator {
    config: GroupConfig,
    rng: ChaCha8Rng,
    pub(super) partitions: BTreeMap<i32, PartitionState>,
    pub(super) groups: BTreeMap<String, ClassicGroup>,
    /// KIP-848 groups. Their offsets live in an offsets-only entry of
    /// `groups` (no protocol, no members), as a simple group's do.
    pub(super) consumer_groups: BTreeMap<String, ConsumerGroup>,
    /// Topic name -> (id, partition count), from [`Coordinator::set_topics`].
    pub(super) topics: BTreeMap<String, (uuid::Uuid, i32)>,
    pub(super) appends: Appends,
    deletes: BTreeMap<ReqId, DeleteRequest>,
}

impl Coordinator {
    /// `seed` feeds the member ids it hands out.
    pub fn new(config: GroupConfig, seed: u64) -> Coordinator {
        Coordinator {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            partitions: BTreeMap::new(),
            groups: BTreeMap::new(),
            consumer_groups: BTreeMap::new(),
            topics: BTreeMap::new(),
            appends: Appends::default(),
            deletes: BTreeMap::new(),
        }
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
        self.partitions.iter().map(|(p, s)| (*p, s.load)).collect()
    }

    /// This node now leads `partition`: start loading it (forgetting any
    /// earlier state of it).
    pub fn begin_load(&mut self, partition: i32, out: &mut Vec<Effect>) {
        self.unload(partition, out);
        self.partitions.insert(
            partition,
            PartitionState {
                load: LoadState::Loading,
                next_expiry_ms: None,
            },
        );
    }

    /// One record of `partition`, in log order. A record that does not parse
    /// is skipped with a warning (never a panic).
    pub fn replay(&mut self, partition: i32, offset: i64, key: &[u8], value: Option<&[u8]>) {
        if let Err(e) = self.apply_record(partition, key, value) {
            tracing::warn!(partition, offset, "skipping __consumer_offsets record: {e}");
        }
    }

    /// A record's effect on the state: what loading does, and what a
    /// replicated append does for offsets and group tombstones.
    fn apply_record(
        &mut self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), records::DecodeError> {
        match records::decode_key(key)? {
            RecordKey::Offset {
                group,
                topic,
                partition: p,
            } => match value {
                Some(v) => {
                    let v = records::decode_offset_value(v)?;
                    let g = self.group_or_new(&group, partition, None);
                    g.offsets.insert((topic, p), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, p));
                    }
                }
            },
            RecordKey::Group { group } => match value {
                Some(v) => {
                    let v = records::decode_group_value(v)?;
                    self.group_or_new(&group, partition, None).restore(v);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
            RecordKey::Consumer(k) => self.replay_consumer(partition, k, value)?,
            RecordKey::Other { .. } => {}
        }
        Ok(())
    }

    pub(super) fn group_or_new(
        &mut self,
        group_id: &str,
        partition: i32,
        now_ms: Option<i64>,
    ) -> &mut ClassicGroup {
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| ClassicGroup::new(group_id, partition, now_ms))
    }

    /// Every record up to the partition's end was replayed: serve it.
    /// Restored groups with members get their session timers from `now_ms`.
    pub fn finish_load(&mut self, partition: i32, now_ms: i64, out: &mut Vec<Effect>) {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        state.load = LoadState::Loaded;
        state.next_expiry_ms = Some(now_ms + self.config.offsets_retention_check_interval_ms);
        self.consumer_loaded(partition, now_ms);
        let (groups, mut cx) = self.split(now_ms, out);
        for g in groups.values_mut().filter(|g| g.partition == partition) {
            membership::on_loaded(g, &mut cx);
        }
    }

    /// Leadership of `partition` moved away: drop its groups, answering their
    /// waiting requests NOT_COORDINATOR; appends in flight are forgotten.
    pub fn unload(&mut self, partition: i32, out: &mut Vec<Effect>) {
        let not_coordinator = code::NOT_COORDINATOR;
        let ids: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.partition == partition)
            .map(|g| g.group_id.clone())
            .collect();
        for id in ids {
            let g = self.groups.remove(&id).expect("listed above");
            for m in g.members.values() {
                if let Some(req) = m.join_waiter {
                    reply(
                        out,
                        req,
                        Reply::Join(join_error(&m.member_id, not_coordinator)),
                    );
                }
                if let Some(req) = m.sync_waiter {
                    reply(out, req, Reply::Sync(sync_error(not_coordinator)));
                }
            }
        }
        self.consumer_groups.retain(|_, g| g.partition != partition);
        let tokens: Vec<AppendToken> = self
            .appends
            .pending
            .iter()
            .filter(|(_, p)| p.partition == partition)
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            let pending = self.appends.pending.remove(&token).expect("listed above");
            self.fail_waiters(pending.then, not_coordinator, out);
        }
        self.partitions.remove(&partition);
    }

    /// Answers whoever waits on an append that will never complete.
    fn fail_waiters(&mut self, then: Then, error: i16, out: &mut Vec<Effect>) {
        match then {
            Then::Commit { req, response, .. } => {
                reply(out, req, Reply::Commit(fail_commit(response, error)));
            }
            Then::OffsetDelete { req, .. } => {
                reply(out, req, Reply::OffsetDelete(error, Vec::new()));
            }
            Then::DeleteGroups { req, groups } => self.delete_done(req, &groups, error, out),
            Then::ConsumerHeartbeat { req, .. } => {
                let error = if error == code::NOT_COORDINATOR {
                    error
                } else {
                    code::COORDINATOR_NOT_AVAILABLE
                };
                let response = ConsumerHeartbeatResponse {
                    error,
                    ..Default::default()
                };
                reply(out, req, Reply::ConsumerHeartbeat(response));
            }
            // Their waiters are the groups' members, answered with them.
            Then::LeaderSync { .. }
            | Then::StaticReplace(_)
            | Then::Nothing
            | Then::Expiry { .. } => {}
        }
    }

    /// Where `group_id` is served: its partition, or the error to answer.
    pub(super) fn serving(&self, group_id: &str) -> Result<i32, i16> {
        let partition = self.partition_of(group_id);
        match self.partitions.get(&partition).map(|s| s.load) {
            Some(LoadState::Loaded) => Ok(partition),
            Some(LoadState::Loading) => Err(code::COORDINATOR_LOAD_IN_PROGRESS),
            None => Err(code::NOT_COORDINATOR),
        }
    }

    /// The groups and the context their state machine runs in (split so
    /// both can be borrowed at once).
    pub(super) fn split<'a>(
        &'a mut self,
        now_ms: i64,
        out: &'a mut Vec<Effect>,
    ) -> (&'a mut BTreeMap<String, ClassicGroup>, Cx<'a>) {
        (
            &mut self.groups,
            Cx {
                cfg: &self.config,
                now: now_ms,
                out,
                appends: &mut self.appends,
            },
        )
    }

    /// A fresh member id suffix, from the seeded generator.
    pub(super) fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    pub fn join(&mut self, now_ms: i64, req: ReqId, request: JoinRequest, out: &mut Vec<Effect>) {
        let fail = |out: &mut Vec<Effect>, error| {
            reply(out, req, Reply::Join(join_error(&request.member_id, error)));
        };
        if request.group_id.is_empty() {
            return fail(out, code::INVALID_GROUP_ID);
        }
        let partition = match self.serving(&request.group_id) {
            Ok(p) => p,
            Err(e) => return fail(out, e),
        };
        let timeout = request.session_timeout_ms;
        if timeout < self.config.min_session_timeout_ms
            || timeout > self.config.max_session_timeout_ms
        {
            return fail(out, code::INVALID_SESSION_TIMEOUT);
        }
        if let Some(g) = self.consumer_groups.get(&request.group_id) {
            if !g.members.is_empty() {
                return fail(out, code::INCONSISTENT_GROUP_PROTOCOL);
            }
            // An empty consumer group becomes a classic one.
            let records = g.group_tombstones();
            self.consumer_groups.remove(&request.group_id);
            self.appends.append(partition, records, Then::Nothing, out);
        }
        let unknown = request.member_id.is_empty();
        let existed = self.groups.contains_key(&request.group_id);
        if !existed && !unknown {
            return fail(out, code::UNKNOWN_MEMBER_ID);
        }
        // Drawn only for members that get a new id, so ids stay reproducible.
        let new_id = if unknown {
            let prefix = request
                .group_instance_id
                .clone()
                .unwrap_or_else(|| request.client_id.clone());
            Some(format!("{prefix}-{}", self.uuid()))
        } else {
            None
        };
        let group_id = request.group_id.clone();
        self.group_or_new(&group_id, partition, Some(now_ms));
        let (groups, mut cx) = self.split(now_ms, out);
        let g = groups.get_mut(&group_id).expect("created above");
        membership::join(g, &mut cx, req, request, new_id);
        // A join refused before it created anything leaves no group behind.
        if !existed
            && g.is(GroupState::Empty)
            && g.members.is_empty()
            && g.pending_members.is_empty()
            && g.offsets.is_empty()
        {
            groups.remove(&group_id);
        }
    }

    pub fn sync(&mut self, now_ms: i64, req: ReqId, request: SyncRequest, out: &mut Vec<Effect>) {
        let error = if request.group_id.is_empty() {
            Some(code::INVALID_GROUP_ID)
        } else {
            self.serving(&request.group_id).err()
        };
        if let Some(e) = error {
            return reply(out, req, Reply::Sync(sync_error(e)));
        }
        let group_id = request.group_id.clone();
        let (groups, mut cx) = self.split(now_ms, out);
        match groups.get_mut(&group_id) {
            None => reply(
                cx.out,
                req,
                Reply::Sync(sync_error(code::UNKNOWN_MEMBER_ID)),
            ),
            Some(g) => membership::sync(g, &mut cx, req, request),
        }
    }

    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        req: ReqId,
        request: HeartbeatRequest,
        out: &mut Vec<Effect>,
    ) {
        let error = if request.group_id.is_empty() {
            Some(code::INVALID_GROUP_ID)
        } else {
            match self.serving(&request.group_id) {
                // Kafka answers heartbeats blindly while the group loads.
                Err(code::COORDINATOR_LOAD_IN_PROGRESS) => Some(code::NONE),
                Err(e) => Some(e),
                Ok(_) => None,
            }
        };
        if let Some(e) = error {
            return reply(out, req, Reply::Heartbeat(e));
        }
        let group_id = request.group_id.clone();
        let (groups, mut cx) = self.split(now_ms, out);
        let error = match groups.get_mut(&group_id) {
            None => code::UNKNOWN_MEMBER_ID,
            Some(g) => membership::heartbeat(g, &mut cx, &request),
        };
        reply(out, req, Reply::Heartbeat(error));
    }

    pub fn leave(&mut self, now_ms: i64, req: ReqId, request: LeaveRequest, out: &mut Vec<Effect>) {
        let error = if request.group_id.is_empty() {
            Some(code::INVALID_GROUP_ID)
        } else {
            self.serving(&request.group_id).err()
        };
        if let Some(e) = error {
            let resp = LeaveResponse {
                error: e,
                members: Vec::new(),
            };
            return reply(out, req, Reply::Leave(resp));
        }
        let group_id = request.group_id.clone();
        let (groups, mut cx) = self.split(now_ms, out);
        let resp = match groups.get_mut(&group_id) {
            // An unknown group knows none of the members.
            None => LeaveResponse {
                error: code::NONE,
                members: request
                    .members
                    .into_iter()
                    .map(|(id, instance, _)| (id, instance, code::UNKNOWN_MEMBER_ID))
                    .collect(),
            },
            Some(g) => membership::leave(g, &mut cx, request),
        };
        reply(out, req, Reply::Leave(resp));
    }

    /// ListGroups over every served partition; `states`: Kafka's v4+ filter
    /// (empty: all). The error is COORDINATOR_LOAD_IN_PROGRESS while any
    /// partition loads.
    pub fn list_groups(&self, states: &[String]) -> (i16, Vec<GroupListing>) {
        let loading = self
            .partitions
            .values()
            .any(|s| s.load == LoadState::Loading);
        let error = if loading {
            code::COORDINATOR_LOAD_IN_PROGRESS
        } else {
            code::NONE
        };
        let mut listed: Vec<GroupListing> = self
            .served_groups()
            .filter(|g| !g.is(GroupState::Dead))
            .filter(|g| !self.consumer_groups.contains_key(&g.group_id))
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                group_type: "classic".to_string(),
                state: g.state.name().to_string(),
            })
            .collect();
        let consumer = self
            .consumer_groups
            .values()
            .filter(|g| self.is_loaded(g.partition))
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state_name()))
            })
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: "consumer".to_string(),
                group_type: "consumer".to_string(),
                state: g.state_name().to_string(),
            });
        listed.extend(consumer);
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        (error, listed)
    }

    fn is_loaded(&self, partition: i32) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|s| s.load == LoadState::Loaded)
    }

    fn served_groups(&self) -> impl Iterator<Item = &ClassicGroup> {
        self.groups.values().filter(|g| {
            self.partitions
                .get(&g.partition)
                .is_some_and(|s| s.load == LoadState::Loaded)
        })
    }

    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let mut described = DescribedGroup {
            group_id: group_id.to_string(),
            ..DescribedGroup::default()
        };
        if group_id.is_empty() {
            described.error = code::INVALID_GROUP_ID;
            return described;
        }
        if let Err(e) = self.serving(group_id) {
            described.error = e;
            return described;
        }
        if let Some(g) = self.consumer_groups.get(group_id) {
            // What DescribeGroups can say of a KIP-848 group.
            described.state = g.state_name().to_string();
            described.protocol_type = "consumer".to_string();
            described.members = g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.meta.instance_id.clone(),
                    client_id: m.meta.client_id.clone(),
                    client_host: m.meta.client_host.clone(),
                    ..DescribedMember::default()
                })
                .collect();
            return described;
        }
        let Some(g) = self
            .groups
            .get(group_id)
            .filter(|g| !g.is(GroupState::Dead))
        else {
            // Kafka describes an unknown group as Dead, without an error.
            described.state = GroupState::Dead.name().to_string();
            return described;
        };
        let stable = g.is(GroupState::Stable);
        let protocol = g.protocol_name.clone().unwrap_or_default();
        described.state = g.state.name().to_string();
        described.protocol_type = g.protocol_type.clone().unwrap_or_default();
        // Metadata and assignments only make sense for a Stable group.
        if stable {
            described.protocol = protocol.clone();
        }
        described.members = g
            .members
            .values()
            .map(|m| DescribedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Default::default()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Default::default()
                },
            })
            .collect();
        described
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
        let _ = now_ms;
        let mut results = Vec::new();
        let mut batches = DeleteBatches::new();
        for id in groups {
            let error = if id.is_empty() {
                code::INVALID_GROUP_ID
            } else {
                match self.serving(&id) {
                    Err(e) => e,
                    Ok(partition) if self.consumer_groups.contains_key(&id) => {
                        self.delete_consumer_group(&id, partition, &mut batches)
                    }
                    Ok(partition) => match self.groups.get(&id) {
                        None => code::GROUP_ID_NOT_FOUND,
                        Some(g) if g.is(GroupState::Dead) => code::GROUP_ID_NOT_FOUND,
                        Some(g) if !g.is(GroupState::Empty) => code::NON_EMPTY_GROUP,
                        Some(_) => {
                            let tombstones = self.group_tombstones(&id);
                            let batch = batches.entry(partition).or_default();
                            batch.0.extend(tombstones);
                            batch.1.push(id.clone());
                            // Dead until replicated: nothing joins or commits meanwhile.
                            self.groups.get_mut(&id).expect("found").state = GroupState::Dead;
                            code::NONE
                        }
                    },
                }
            };
            results.push((id, error));
        }
        if batches.is_empty() {
            return reply(out, req, Reply::Delete(results));
        }
        self.deletes.insert(
            req,
            DeleteRequest {
                results,
                outstanding: batches.len(),
            },
        );
        for (partition, (records, groups)) in batches {
            let then = Then::DeleteGroups { req, groups };
            self.appends.append(partition, records, then, out);
        }
    }

    /// DeleteGroups of a consumer group: only an empty one, with its offsets.
    fn delete_consumer_group(
        &mut self,
        id: &str,
        partition: i32,
        batches: &mut DeleteBatches,
    ) -> i16 {
        if self.consumer_groups[id].members.is_empty() {
            let g = self.consumer_groups.remove(id).expect("checked");
            let batch = batches.entry(partition).or_default();
            batch.0.extend(g.group_tombstones());
            batch.0.extend(self.group_tombstones(id));
            batch.1.push(id.to_string());
            if let Some(holder) = self.groups.get_mut(id) {
                holder.state = GroupState::Dead;
            }
            code::NONE
        } else {
            code::NON_EMPTY_GROUP
        }
    }

    /// Tombstones for every offset of the group (committed or on its way)
    /// and for the group itself.
    pub(super) fn group_tombstones(
        &self,
        group_id: &str,
    ) -> Vec<(bytes::Bytes, Option<bytes::Bytes>)> {
        let mut tps: std::collections::BTreeSet<(String, i32)> = self
            .groups
            .get(group_id)
            .map(|g| g.offsets.keys().cloned().collect())
            .unwrap_or_default();
        tps.extend(self.pending_commits(group_id));
        let mut records: Vec<_> = tps
            .into_iter()
            .map(|(t, p)| (records::offset_key(group_id, &t, p), None))
            .collect();
        records.push((records::group_key(group_id), None));
        records
    }

    /// Partitions of the group with a commit in flight.
    pub(super) fn pending_commits(&self, group_id: &str) -> Vec<(String, i32)> {
        let mut tps = Vec::new();
        for p in self.appends.pending.values() {
            if let Then::Commit { group, .. } = &p.then {
                if group == group_id {
                    for (key, _) in &p.records {
                        if let Ok(RecordKey::Offset {
                            topic, partition, ..
                        }) = records::decode_key(key)
                        {
                            tps.push((topic, partition));
                        }
                    }
                }
            }
        }
        tps
    }

    fn delete_done(&mut self, req: ReqId, groups: &[String], error: i16, out: &mut Vec<Effect>) {
        let Some(d) = self.deletes.get_mut(&req) else {
            return;
        };
        for (id, e) in d.results.iter_mut() {
            if groups.contains(id) {
                *e = error;
            }
        }
        d.outstanding -= 1;
        if d.outstanding == 0 {
            let d = self.deletes.remove(&req).expect("present");
            reply(out, req, Reply::Delete(d.results));
        }
    }

    /// A deletion that did not make it: the group is Empty again.
    pub(super) fn revive(&mut self, group_id: &str) {
        if let Some(g) = self.groups.get_mut(group_id) {
            if g.is(GroupState::Dead) {
                g.state = GroupState::Empty;
            }
        }
    }

    /// When [`Coordinator::tick`] must next run (session, rebalance and
    /// join-delay timeouts, offset expiry).
    pub fn next_deadline(&self) -> Option<i64> {
        let expiry = self.partitions.values().filter_map(|s| s.next_expiry_ms);
        let groups = self.served_groups().filter_map(membership::next_deadline);
        let consumer = self.consumer_next_deadline(|p| self.is_loaded(p));
        expiry.chain(groups).chain(consumer).min()
    }

    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Effect>) {
        let served: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.load == LoadState::Loaded)
            .map(|(p, _)| *p)
            .collect();
        {
            let (groups, mut cx) = self.split(now_ms, out);
            for g in groups
                .values_mut()
                .filter(|g| served.contains(&g.partition))
            {
                membership::tick(g, &mut cx);
            }
        }
        self.consumer_tick(now_ms, &served, out);
        for partition in served {
            let state = self.partitions.get_mut(&partition).expect("served");
            if state.next_expiry_ms.is_some_and(|t| t <= now_ms) {
                state.next_expiry_ms =
                    Some(now_ms + self.config.offsets_retention_check_interval_ms);
                self.expire_offsets(partition, now_ms, out);
            }
        }
    }

    pub fn on_append_done(
        &mut self,
        now_ms: i64,
        token: AppendToken,
        result: Result<(), i16>,
        out: &mut Vec<Effect>,
    ) {
        let Some(pending) = self.appends.pending.remove(&token) else {
            return;
        };
        match result {
            Ok(()) => {
                // Offsets and tombstones take effect as loading would apply them;
                // group records describe what the group already is.
                for (key, value) in &pending.records {
                    let is_group_value = match records::decode_key(key) {
                        Ok(RecordKey::Group { .. }) => value.is_some(),
                        Ok(RecordKey::Consumer(_)) => true,
                        _ => false,
                    };
                    if !is_group_value {
                        let _ = self.apply_record(pending.partition, key, value.as_deref());
                    }
                }
                self.succeeded(now_ms, pending.then, out);
            }
            Err(error) => self.failed(now_ms, pending.then, error, out),
        }
    }

    fn succeeded(&mut self, now_ms: i64, then: Then, out: &mut Vec<Effect>) {
        match then {
            Then::Commit { req, response, .. } => reply(out, req, Reply::Commit(response)),
            Then::OffsetDelete { req, response } => {
                reply(out, req, Reply::OffsetDelete(code::NONE, response))
            }
            Then::DeleteGroups { req, groups } => self.delete_done(req, &groups, code::NONE, out),
            Then::Expiry { .. } | Then::Nothing => {}
            Then::ConsumerHeartbeat { req, response } => {
                reply(out, req, Reply::ConsumerHeartbeat(response))
            }
            Then::LeaderSync {
                group,
                generation,
                assignment,
            } => {
                let (groups, mut cx) = self.split(now_ms, out);
                if let Some(g) = groups.get_mut(&group) {
                    membership::leader_sync_done(g, &mut cx, generation, Ok(assignment));
                }
            }
            Then::StaticReplace(s) => {
                let (groups, mut cx) = self.split(now_ms, out);
                if let Some(g) = groups.get_mut(&s.group) {
                    membership::static_replace_done(g, &mut cx, s, Ok(()));
                }
            }
        }
    }

    fn failed(&mut self, now_ms: i64, then: Then, error: i16, out: &mut Vec<Effect>) {
        match then {
            Then::Commit { .. } | Then::OffsetDelete { .. } => {
                self.fail_waiters(then, code::for_offset_append(error), out)
            }
            Then::ConsumerHeartbeat { .. } => self.fail_waiters(then, error, out),
            Then::DeleteGroups { req, groups } => {
                for id in &groups {
                    self.revive(id);
                }
                self.delete_done(req, &groups, code::for_group_append(error), out);
            }
            Then::Expiry { groups } => groups.iter().for_each(|id| self.revive(id)),
            Then::Nothing => {}
            Then::LeaderSync {
                group, generation, ..
            } => {
                let (groups, mut cx) = self.split(now_ms, out);
                if let Some(g) = groups.get_mut(&group) {
                    let e = code::for_group_append(error);
                    membership::leader_sync_done(g, &mut cx, generation, Err(e));
                }
            }
            Then::StaticReplace(s) => {
                let (groups, mut cx) = self.split(now_ms, out);
                if let Some(g) = groups.get_mut(&s.group) {
                    let e = code::for_group_append(error);
                    membership::static_replace_done(g, &mut cx, s, Err(e));
                }
            }
        }
    }

    /// Every served group, for the simulator's monitor.
    pub fn views(&self) -> Vec<GroupView> {
        self.served_groups()
            .map(|g| {
                // A generation's assignments exist once it is Stable; during
                // the next PreparingRebalance the members still hold them.
                let holds = matches!(g.state, GroupState::Stable | GroupState::PreparingRebalance);
                GroupView {
                    group_id: g.group_id.clone(),
                    state: g.state.name().to_string(),
                    generation_id: g.generation_id,
                    protocol: g.protocol_name.clone(),
                    assignments: g
                        .members
                        .values()
                        .map(|m| {
                            let current = holds && m.assignment_generation == g.generation_id;
                            let bytes = if current {
                                m.assignment.clone()
                            } else {
                                Default::default()
                            };
                            (m.member_id.clone(), bytes)
                        })
                        .collect(),
                    offsets: g
                        .offsets
                        .iter()
                        .map(|(tp, v)| (tp.clone(), v.offset))
                        .collect(),
                }
            })
            .collect()
    }
}

/// A commit's answer once its append failed: what would have been written
/// gets the error; partitions refused up front keep theirs.
pub(super) fn fail_commit(response: CommitResponse, error: i16) -> CommitResponse {
    response
        .into_iter()
        .map(|(t, p, e)| (t, p, if e == code::NONE { error } else { e }))
        .collect()
}
