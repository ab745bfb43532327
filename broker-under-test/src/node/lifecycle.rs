//! A broker's life in the cluster: it registers with the active controller
//! (BrokerRegistration), heartbeats (BrokerHeartbeat) so that it is unfenced
//! once caught up and stays so, asks for a controlled shutdown when told to
//! stop, and forwards the admin requests clients send it to the controller.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId, BrokerRegistrationRequest,
    BrokerRegistrationResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::peers::{decode_response, PeerTag, RawBody};
use super::{Node, Op, OpId, OpKind, ReplyTo, TIMER_LIFECYCLE};
use crate::metadata::records::Endpoint;
use crate::protocol::RawRequest;
use crate::seam::{Now, Output};

/// Kafka error codes the lifecycle reacts to.
const NOT_CONTROLLER: i16 = 41;
const STALE_BROKER_EPOCH: i16 = 77;
const BROKER_ID_NOT_REGISTERED: i16 = 102;

/// Retry soon after a failure or while no controller is known.
const RETRY_MS: u64 = 100;

/// The BrokerRegistration version sent: v2 is the first with `LogDirs`
/// (KIP-858), which lets the controller recognize a restart of this broker
/// on the same storage. (v1 adds only `IsMigratingZkBroker`, v3
/// `PreviousBrokerEpoch`, neither used here.)
const REGISTRATION_VERSION: i16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Unregistered,
    Registering,
    Registered { epoch: i64 },
}

pub(super) struct BrokerLifecycle {
    /// A fresh id per process start (Kafka's incarnation id).
    pub incarnation: Uuid,
    pub registration: Registration,
    pub heartbeat_in_flight: bool,
    /// The controller's view of this broker, from the last heartbeat.
    pub fenced: bool,
    /// Unfenced at least once in this process's life: the broker has caught
    /// up with the metadata its registration produced, so its image no longer
    /// names it leader of what it led before a restart.
    pub unfenced_once: bool,
    /// Stopping: heartbeats ask for a controlled shutdown.
    pub want_shutdown: bool,
    /// The controller moved our leaderships away: we may stop.
    pub shutdown_granted: bool,
}

impl BrokerLifecycle {
    pub fn new(incarnation: Uuid) -> BrokerLifecycle {
        BrokerLifecycle {
            incarnation,
            registration: Registration::Unregistered,
            heartbeat_in_flight: false,
            fenced: true,
            unfenced_once: false,
            want_shutdown: false,
            shutdown_granted: false,
        }
    }
}

/// A client's admin request waiting for the controller's answer.
pub(super) struct PendingForward {
    pub raw: RawRequest,
    /// Sent to a controller and not yet answered.
    pub sent: bool,
}

impl Node {
    fn registration_endpoints(&self) -> Vec<Endpoint> {
        let listeners = self.config.client_listeners();
        if listeners.is_empty() {
            // No `advertised.listeners`: the address clients are given.
            let (host, port) = self.advertised_host_port();
            return vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host,
                port: port as u16,
            }];
        }
        listeners
            .into_iter()
            .map(|l| Endpoint {
                listener: l.name.clone(),
                host: l.host.clone(),
                port: l.port,
            })
            .collect()
    }

    /// Run the lifecycle step now (e.g. a new controller is known).
    pub(super) fn lifecycle_kick(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.config.is_cluster() && self.config.is_broker() {
            out.push(Output::SetTimer {
                id: TIMER_LIFECYCLE,
                at_nanos: now.mono_nanos,
            });
        }
    }

    fn lifecycle_again_in(&self, now: Now, ms: u64, out: &mut Vec<Output>) {
        out.push(Output::SetTimer {
            id: TIMER_LIFECYCLE,
            at_nanos: now.after_millis(ms),
        });
    }

    /// Register or heartbeat, whichever is due.
    pub(super) fn on_lifecycle_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.config.is_broker() {
            return;
        }
        let interval = self.config.broker_heartbeat_interval_ms;
        let endpoints = self.registration_endpoints();
        let node_id = self.config.node_id;
        let cluster_id = self.config.cluster_id.clone();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let log_dirs: Vec<Uuid> = cluster.store.directory_id().into_iter().collect();
        let Some(controller) = cluster.leader() else {
            return self.lifecycle_again_in(now, RETRY_MS, out);
        };
        let Some(addr) = self.config.voter_address(controller).map(str::to_string) else {
            return self.lifecycle_again_in(now, RETRY_MS, out);
        };
        let life = &mut cluster.lifecycle;
        match life.registration {
            Registration::Unregistered => {
                life.registration = Registration::Registering;
                let request = BrokerRegistrationRequest::default()
                    .with_broker_id(BrokerId(node_id))
                    .with_cluster_id(StrBytes::from_string(cluster_id))
                    .with_incarnation_id(life.incarnation)
                    .with_listeners(
                        endpoints
                            .iter()
                            .map(|e| {
                                kafka_protocol::messages::broker_registration_request::Listener::default()
                                    .with_name(StrBytes::from_string(e.listener.clone()))
                                    .with_host(StrBytes::from_string(e.host.clone()))
                                    .with_port(e.port)
                            })
                            .collect(),
                    )
                    .with_log_dirs(log_dirs);
                debug!(controller, "registering with the controller");
                cluster.peers.send(
                    now.mono_nanos,
                    controller,
                    &addr,
                    ApiKey::BrokerRegistration,
                    REGISTRATION_VERSION,
                    &request,
                    PeerTag::BrokerRegistration,
                    out,
                );
                self.lifecycle_again_in(now, interval, out);
            }
            Registration::Registering => self.lifecycle_again_in(now, interval, out),
            Registration::Registered { epoch } => {
                if !life.heartbeat_in_flight {
                    life.heartbeat_in_flight = true;
                    let request = BrokerHeartbeatRequest::default()
                        .with_broker_id(BrokerId(node_id))
                        .with_broker_epoch(epoch)
                        .with_current_metadata_offset(cluster.applied_end - 1)
                        .with_want_fence(false)
                        .with_want_shut_down(life.want_shutdown);
                    cluster.peers.send(
                        now.mono_nanos,
                        controller,
                        &addr,
                        ApiKey::BrokerHeartbeat,
                        0,
                        &request,
                        PeerTag::BrokerHeartbeat,
                        out,
                    );
                }
                let next = if life.want_shutdown {
                    RETRY_MS
                } else {
                    interval
                };
                self.lifecycle_again_in(now, next, out);
            }
        }
        self.drain_peer_events(now, out);
    }

    /// A registration or heartbeat answer, or `None` if the request failed.
    pub(super) fn lifecycle_response(
        &mut self,
        now: Now,
        tag: PeerTag,
        version: i16,
        body: Option<Bytes>,
        out: &mut Vec<Output>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let life = &mut cluster.lifecycle;
        let mut retry_soon = false;
        let mut became_serving = false;
        match tag {
            PeerTag::BrokerRegistration => {
                let response =
                    body.and_then(|b| decode_response::<BrokerRegistrationResponse>(b, version));
                match response {
                    Some(r) if r.error_code == 0 => {
                        info!(epoch = r.broker_epoch, "registered with the controller");
                        life.registration = Registration::Registered {
                            epoch: r.broker_epoch,
                        };
                        life.heartbeat_in_flight = false;
                        retry_soon = true;
                    }
                    Some(r) => {
                        if r.error_code != NOT_CONTROLLER {
                            warn!(error = r.error_code, "broker registration refused");
                        }
                        life.registration = Registration::Unregistered;
                        retry_soon = r.error_code == NOT_CONTROLLER;
                    }
                    None => {
                        life.registration = Registration::Unregistered;
                        retry_soon = true;
                    }
                }
            }
            PeerTag::BrokerHeartbeat => {
                life.heartbeat_in_flight = false;
                let response =
                    body.and_then(|b| decode_response::<BrokerHeartbeatResponse>(b, version));
                match response {
                    Some(r) if r.error_code == 0 => {
                        if life.fenced != r.is_fenced {
                            info!(
                                fenced = r.is_fenced,
                                "the controller changed this broker's fencing"
                            );
                        }
                        life.fenced = r.is_fenced;
                        if !r.is_fenced && !life.unfenced_once {
                            life.unfenced_once = true;
                            became_serving = true;
                        }
                        if life.want_shutdown && r.should_shut_down {
                            life.shutdown_granted = true;
                        }
                    }
                    Some(r)
                        if r.error_code == STALE_BROKER_EPOCH
                            || r.error_code == BROKER_ID_NOT_REGISTERED =>
                    {
                        info!(
                            error = r.error_code,
                            "the controller does not know this registration; registering again"
                        );
                        life.registration = Registration::Unregistered;
                        retry_soon = true;
                    }
                    Some(_) | None => retry_soon = true,
                }
            }
            _ => {}
        }
        if became_serving {
            self.reconcile_replicas(now, out);
        }
        if retry_soon {
            self.lifecycle_again_in(
                now,
                if self.phase == super::Phase::ShuttingDown {
                    10
                } else {
                    RETRY_MS.min(10)
                },
                out,
            );
        }
    }

    /// Send a client's admin request on to the active controller. With no
    /// controller to send it to (an election is under way), it waits for one
    /// until its timeout, as Kafka's forwarding does.
    pub(super) fn forward_to_controller(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        timeout_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let deadline = now.after_millis(timeout_ms.max(1));
        let id = self.park(
            reply,
            Some(deadline),
            OpKind::Forward(PendingForward {
                raw: raw.clone(),
                sent: false,
            }),
            &[],
        );
        self.try_forward(now, id, out);
    }

    /// Send a waiting forward if a controller is known; if this node has
    /// become the active controller meanwhile, handle it here.
    fn try_forward(&mut self, now: Now, id: OpId, out: &mut Vec<Output>) {
        if self.is_active_controller() {
            let Some(op) = self.unpark(id) else { return };
            if let OpKind::Forward(pending) = op.kind {
                if self.route_admin(now, op.reply, &pending.raw, out).is_err() {
                    self.conns.remove(&op.reply.conn);
                    out.push(Output::Close {
                        conn: op.reply.conn,
                    });
                }
            }
            return;
        }
        let me = self.config.node_id;
        let target = self
            .cluster
            .as_ref()
            .and_then(|c| c.leader())
            .filter(|l| *l != me)
            .and_then(|l| self.config.voter_address(l).map(|a| (l, a.to_string())));
        let Some((controller, addr)) = target else {
            return; // wait for a leader
        };
        let Some(Op {
            kind: OpKind::Forward(pending),
            ..
        }) = self.ops.get_mut(&id)
        else {
            return;
        };
        if pending.sent {
            return;
        }
        pending.sent = true;
        let (api_key, version, body) = (
            pending.raw.api_key,
            pending.raw.api_version,
            pending.raw.body.clone(),
        );
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.peers.send(
                now.mono_nanos,
                controller,
                &addr,
                api_key,
                version,
                &RawBody(body),
                PeerTag::Forward { op: id },
                out,
            );
        }
        self.drain_peer_events(now, out);
    }

    /// Retry every forward that waits for a controller.
    pub(super) fn retry_forwards(&mut self, now: Now, out: &mut Vec<Output>) {
        let waiting: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, op)| matches!(&op.kind, OpKind::Forward(p) if !p.sent))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.try_forward(now, id, out);
        }
    }

    /// The controller answered a forwarded request (or the request failed).
    pub(super) fn forward_response(
        &mut self,
        op: OpId,
        api_key: ApiKey,
        _version: i16,
        body: Option<Bytes>,
        out: &mut Vec<Output>,
    ) {
        let Some(op) = self.unpark(op) else {
            return; // already answered (timed out)
        };
        let OpKind::Forward(pending) = op.kind else {
            return;
        };
        match body {
            Some(body) if api_key == pending.raw.api_key => {
                self.answer_raw(op.reply, api_key, body, out)
            }
            _ => self.admin_error_answer(op.reply, &pending.raw, NOT_CONTROLLER, out),
        }
    }

    pub(super) fn forward_expire(&mut self, id: OpId, out: &mut Vec<Output>) {
        let Some(op) = self.unpark(id) else { return };
        if let OpKind::Forward(pending) = op.kind {
            let code = kafka_protocol::error::ResponseError::RequestTimedOut.code();
            self.admin_error_answer(op.reply, &pending.raw, code, out);
        }
    }

    /// Relay a response body as it came, under the client's correlation id.
    fn answer_raw(&mut self, reply: ReplyTo, api_key: ApiKey, body: Bytes, out: &mut Vec<Output>) {
        let header = ResponseHeader::default().with_correlation_id(reply.correlation_id);
        let mut buf = BytesMut::with_capacity(16 + body.len());
        buf.put_i32(0);
        if header
            .encode(&mut buf, api_key.response_header_version(reply.version))
            .is_err()
        {
            self.conns.remove(&reply.conn);
            out.push(Output::Close { conn: reply.conn });
            return;
        }
        buf.put_slice(&body);
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.answer(reply, Some(buf.freeze()), out);
    }

    /// An answer to an admin request in which every part carries `code`.
    pub(super) fn admin_error_answer(
        &mut self,
        reply: ReplyTo,
        raw: &RawRequest,
        code: i16,
        out: &mut Vec<Output>,
    ) {
        use kafka_protocol::messages::create_partitions_response::{
            CreatePartitionsResponse, CreatePartitionsTopicResult,
        };
        use kafka_protocol::messages::{CreatePartitionsRequest, DescribeQuorumResponse};
        let result = match raw.api_key {
            ApiKey::CreatePartitions => super::decode::<CreatePartitionsRequest>(raw).map(|r| {
                let response = CreatePartitionsResponse::default().with_results(
                    r.topics
                        .iter()
                        .map(|t| {
                            CreatePartitionsTopicResult::default()
                                .with_name(t.name.clone())
                                .with_error_code(code)
                        })
                        .collect(),
                );
                self.respond(reply, &response, out);
            }),
            ApiKey::DescribeQuorum => {
                self.respond(
                    reply,
                    &DescribeQuorumResponse::default().with_error_code(code),
                    out,
                );
                Ok(())
            }
            _ => self.unsupported_answer(reply, raw, code, out),
        };
        if result.is_err() {
            self.conns.remove(&reply.conn);
            out.push(Output::Close { conn: reply.conn });
        }
    }
}
