//! Broker configuration, named after Kafka's own `server.properties` keys.

use std::collections::BTreeMap;
use std::fmt;

use crate::seam::NodeId;

/// When a produce is acknowledged relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge only after the batch is synced (group commit). The default.
    Sync,
    /// Kafka's default behaviour: acknowledge once written to the page cache;
    /// a power loss may lose acknowledged data.
    PageCache,
}

/// Everything a broker node is configured with. Field names follow Kafka's
/// property names (`log.segment.bytes` -> `log_segment_bytes`).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id` (or `broker.id`).
    pub node_id: NodeId,
    /// The `host:port` clients are told to connect to (`advertised.listeners`).
    pub advertised: String,
    /// `cluster.id`, reported in Metadata.
    pub cluster_id: String,
    /// `num.partitions`: partitions of an auto-created topic, or of a
    /// CreateTopics request asking for the default (-1).
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `log.segment.bytes`: roll the active segment when it would grow past this.
    pub log_segment_bytes: u64,
    /// `log.roll.ms`: roll the active segment when its first batch is older than this.
    pub log_roll_ms: i64,
    /// `log.retention.ms`: delete segments whose newest record is older (-1 = forever).
    pub log_retention_ms: i64,
    /// `log.retention.bytes`: delete the oldest segments while the log is larger (-1 = no limit).
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.index.interval.bytes`: bytes between two entries of the sparse offset index.
    pub log_index_interval_bytes: u64,
    /// `log.flush.interval.ms`: in page-cache mode, how often dirty data is synced.
    pub log_flush_interval_ms: u64,
    /// `message.max.bytes`: largest record batch accepted.
    pub message_max_bytes: usize,
    /// `producer.id.expiration.ms`: a partition forgets a producer silent this long.
    pub producer_id_expiration_ms: u64,
    /// `producer.id.expiration.check.interval.ms`.
    pub producer_id_expiration_check_interval_ms: u64,
    /// `socket.request.max.bytes`: largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// `replica.fetch.wait.max.ms` caps a fetch's long-poll wait as well.
    pub fetch_max_wait_cap_ms: u64,
    /// `stormlog.durability`: `sync` (default) or `page-cache`.
    pub durability: Durability,
    /// `process.roles`. Empty: the legacy single-node broker with no
    /// metadata quorum (topics are whatever is on its disk).
    pub process_roles: Vec<ProcessRole>,
    /// `controller.quorum.voters`: (node id, `host:port`), sorted by id.
    pub controller_quorum_voters: Vec<(NodeId, String)>,
    /// `listeners`: where the real shell binds, by listener name.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`: what other nodes and clients are told.
    pub advertised_listeners: Vec<Listener>,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name` (default PLAINTEXT).
    pub inter_broker_listener_name: String,
    /// `min.insync.replicas` (broker default; topics may override).
    pub min_insync_replicas: i16,
    /// `replica.lag.time.max.ms`: an ISR member not caught up for this long is dropped.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: a follower's fetch long-poll.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: per partition of a follower's fetch.
    pub replica_fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes`: a follower's whole fetch.
    pub replica_fetch_response_max_bytes: usize,
    /// `replica.fetch.backoff.ms`: a follower's pause after a failed fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    pub replica_hw_checkpoint_interval_ms: u64,
    /// `controller.quorum.election.timeout.ms`.
    pub quorum_election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`.
    pub quorum_fetch_timeout_ms: u64,
    /// `controller.quorum.election.backoff.max.ms`.
    pub quorum_election_backoff_max_ms: u64,
    /// `controller.quorum.request.timeout.ms`.
    pub quorum_request_timeout_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`.
    pub metadata_snapshot_bytes: u64,
    /// `unclean.leader.election.enable` (broker default; topics may override).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: u32,
    /// `offsets.topic.replication.factor`: replicas of `__consumer_offsets`
    /// (its creation waits until that many brokers are registered, as Kafka's).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.commit.timeout.ms`: how long a group write waits for replication.
    pub offsets_commit_timeout_ms: u64,
    /// The group coordinator's settings (`offsets.topic.num.partitions`, `group.*`).
    pub group: crate::group::GroupConfig,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub txn_state_partitions: i32,
    /// `transaction.state.log.replication.factor`.
    pub txn_state_replication_factor: i16,
    /// `transaction.state.log.min.isr`: its `min.insync.replicas`.
    pub txn_state_min_isr: i16,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask.
    pub txn_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub txn_abort_check_interval_ms: u64,
}

/// One of `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProcessRole {
    Broker,
    Controller,
}

/// A named listener, `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    /// Empty for "all interfaces" (`PLAINTEXT://:9092`).
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// `host:port`, with an empty host shown as given.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl BrokerConfig {
    /// A member of a KRaft cluster (any `process.roles`), as opposed to the
    /// legacy single-node broker.
    pub fn is_cluster(&self) -> bool {
        !self.process_roles.is_empty()
    }

    pub fn is_controller(&self) -> bool {
        self.process_roles.contains(&ProcessRole::Controller)
    }

    pub fn is_broker(&self) -> bool {
        self.process_roles.is_empty() || self.process_roles.contains(&ProcessRole::Broker)
    }

    /// The ids of the quorum's voters, sorted.
    pub fn voter_ids(&self) -> Vec<NodeId> {
        self.controller_quorum_voters
            .iter()
            .map(|(id, _)| *id)
            .collect()
    }

    /// Where to reach voter `id`'s controller listener.
    pub fn voter_address(&self, id: NodeId) -> Option<&str> {
        self.controller_quorum_voters
            .iter()
            .find(|(v, _)| *v == id)
            .map(|(_, a)| a.as_str())
    }

    /// The listeners this node advertises to clients and brokers (not the
    /// controller listeners).
    pub fn client_listeners(&self) -> Vec<&Listener> {
        self.advertised_listeners
            .iter()
            .filter(|l| !self.controller_listener_names.contains(&l.name))
            .collect()
    }

    /// Check the cluster settings hang together; called once all keys are applied.
    pub fn validate_cluster(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError { line: 0, message });
        if !self.is_cluster() {
            return Ok(());
        }
        if self.controller_quorum_voters.is_empty() {
            return fail(
                "`process.roles` is set but `controller.quorum.voters` is not: name the voters as \
                 `id@host:port,...` (a dynamic quorum through `controller.quorum.bootstrap.servers` \
                 alone, KIP-853, is not supported)"
                    .into(),
            );
        }
        let is_voter = self.voter_ids().contains(&self.node_id);
        if self.is_controller() && !is_voter {
            return fail(format!(
                "node {} has the controller role but is not in `controller.quorum.voters`",
                self.node_id
            ));
        }
        if !self.is_controller() && is_voter {
            return fail(format!(
                "node {} is in `controller.quorum.voters` but `process.roles` lacks `controller`",
                self.node_id
            ));
        }
        if self.is_controller()
            && self.controller_listener_names.is_empty()
            && !self.listeners.is_empty()
        {
            return fail("a controller needs `controller.listener.names`".into());
        }
        Ok(())
    }
}

/// Parse `NAME://host:port,NAME2://host:port`.
fn parse_listeners(value: &str) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| format!("`{item}` is not of the form NAME://host:port"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{item}` has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{item}`: `{port}` is not a port number"))?;
        if name.is_empty() {
            return Err(format!("`{item}` has no listener name"));
        }
        listeners.push(Listener {
            name: name.to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        });
    }
    Ok(listeners)
}

/// Parse `1@host:port,2@host:port` into sorted (id, address) pairs.
fn parse_voters(value: &str) -> Result<Vec<(NodeId, String)>, String> {
    let mut voters = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("`{item}` is not of the form id@host:port"))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| format!("`{item}`: `{id}` is not a node id"))?;
        if id < 0 {
            return Err(format!("`{item}`: node ids are not negative"));
        }
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{item}` has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("`{item}`: expected id@host:port"));
        }
        if voters.iter().any(|(v, _)| *v == id) {
            return Err(format!("voter {id} is named twice"));
        }
        voters.push((id, addr.to_string()));
    }
    if voters.is_empty() {
        return Err("no voters named".into());
    }
    voters.sort();
    Ok(voters)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            advertised: "127.0.0.1:9092".to_string(),
            cluster_id: "stormlog-cluster".to_string(),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            log_segment_bytes: 1024 * 1024 * 1024,
            log_roll_ms: 7 * 24 * 60 * 60 * 1000,
            log_retention_ms: 7 * 24 * 60 * 60 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 5 * 60 * 1000,
            log_index_interval_bytes: 4096,
            log_flush_interval_ms: 1000,
            message_max_bytes: 1024 * 1024 + 12,
            producer_id_expiration_ms: 86_400_000,
            producer_id_expiration_check_interval_ms: 600_000,
            socket_request_max_bytes: 100 * 1024 * 1024,
            fetch_max_wait_cap_ms: 30_000,
            durability: Durability::Sync,
            process_roles: Vec::new(),
            controller_quorum_voters: Vec::new(),
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            controller_listener_names: Vec::new(),
            inter_broker_listener_name: "PLAINTEXT".to_string(),
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1024 * 1024,
            replica_fetch_response_max_bytes: 10 * 1024 * 1024,
            replica_fetch_backoff_ms: 1000,
            replica_hw_checkpoint_interval_ms: 5000,
            quorum_election_timeout_ms: 1000,
            quorum_fetch_timeout_ms: 2000,
            quorum_election_backoff_max_ms: 1000,
            quorum_request_timeout_ms: 2000,
            broker_session_timeout_ms: 9000,
            broker_heartbeat_interval_ms: 2000,
            metadata_snapshot_bytes: 20 * 1024 * 1024,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
            offsets_topic_replication_factor: 3,
            offsets_commit_timeout_ms: 5000,
            group: crate::group::GroupConfig::default(),
            txn_state_partitions: 50,
            txn_state_replication_factor: 3,
            txn_state_min_isr: 2,
            txn_max_timeout_ms: 900_000,
            txn_abort_check_interval_ms: 10_000,
        }
    }
}

/// A problem in a properties file, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A parsed `server.properties` file: the keys in order of appearance, with
/// the line each was on.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    pub entries: BTreeMap<String, (String, usize)>,
}

impl Properties {
    /// Parse Java-properties-style text: `key=value` or `key: value`,
    /// `#` and `!` comments, blank lines ignored.
    pub fn parse(text: &str) -> Result<Properties, ConfigError> {
        let mut entries = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let split = line.find(['=', ':']).ok_or_else(|| ConfigError {
                line: line_no,
                message: format!("expected `key=value`, found `{line}`"),
            })?;
            let key = line[..split].trim().to_string();
            let value = line[split + 1..].trim().to_string();
            if key.is_empty() {
                return Err(ConfigError {
                    line: line_no,
                    message: "empty key".to_string(),
                });
            }
            entries.insert(key, (value, line_no));
        }
        Ok(Properties { entries })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|(v, _)| v.as_str())
    }
}

/// Keys that are Kafka's but have no effect here; accepted so that an existing
/// `server.properties` loads, and logged by the shell.
pub const IGNORED_KAFKA_KEYS: &[&str] = &[
    "listener.security.protocol.map",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "log.cleaner.enable",
    "metadata.log.dir",
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
];

impl BrokerConfig {
    /// Apply the properties over `self`. Unknown keys are an error (a typo
    /// must not silently leave a default in place); `log.dirs` is returned
    /// for the shell since the core has no notion of real directories.
    pub fn apply_properties(&mut self, props: &Properties) -> Result<Option<String>, ConfigError> {
        let mut log_dirs = None;
        for (key, (value, line)) in &props.entries {
            let line = *line;
            let bad = |what: &str| ConfigError {
                line,
                message: format!("`{key}`: {what}, found `{value}`"),
            };
            let int = || value.parse::<i64>().map_err(|_| bad("expected an integer"));
            let positive = || match value.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad("expected a positive integer")),
            };
            let boolean = || match value.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(bad("expected true or false")),
            };
            match key.as_str() {
                "node.id" | "broker.id" => {
                    self.node_id = i32::try_from(int()?).map_err(|_| bad("out of range"))?
                }
                "advertised.listeners" => {
                    // Kafka form `PLAINTEXT://host:port,...`; a bare `host:port`
                    // is taken as PLAINTEXT. Clients are given the first
                    // listener that is not a controller listener (resolved after
                    // every key is read, since the names may come later).
                    let listeners = if value.contains("://") {
                        parse_listeners(value).map_err(|e| bad(&e))?
                    } else {
                        parse_listeners(&format!("PLAINTEXT://{value}")).map_err(|e| bad(&e))?
                    };
                    if listeners.iter().any(|l| l.host.is_empty()) {
                        return Err(bad("an advertised listener needs a host"));
                    }
                    self.advertised_listeners = listeners;
                }
                "listeners" => {
                    self.listeners = parse_listeners(value).map_err(|e| bad(&e))?;
                }
                "process.roles" => {
                    let mut roles = Vec::new();
                    for role in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        roles.push(match role {
                            "broker" => ProcessRole::Broker,
                            "controller" => ProcessRole::Controller,
                            _ => return Err(bad("expected `broker`, `controller` or both")),
                        });
                    }
                    roles.sort();
                    roles.dedup();
                    if roles.is_empty() {
                        return Err(bad("expected `broker`, `controller` or both"));
                    }
                    self.process_roles = roles;
                }
                "controller.quorum.voters" => {
                    self.controller_quorum_voters = parse_voters(value).map_err(|e| bad(&e))?;
                }
                "controller.quorum.bootstrap.servers" => {
                    // Used only with a dynamic quorum; with static voters Kafka ignores it too.
                }
                "controller.listener.names" => {
                    self.controller_listener_names = value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                "inter.broker.listener.name" => self.inter_broker_listener_name = value.clone(),
                "min.insync.replicas" => {
                    self.min_insync_replicas =
                        i16::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "controller.quorum.election.timeout.ms" => {
                    self.quorum_election_timeout_ms = positive()?
                }
                "controller.quorum.fetch.timeout.ms" => self.quorum_fetch_timeout_ms = positive()?,
                "controller.quorum.election.backoff.max.ms" => {
                    self.quorum_election_backoff_max_ms = positive()?
                }
                "controller.quorum.request.timeout.ms" => {
                    self.quorum_request_timeout_ms = positive()?
                }
                "broker.session.timeout.ms" => self.broker_session_timeout_ms = positive()?,
                "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms = positive()?,
                "metadata.log.max.record.bytes.between.snapshots" => {
                    self.metadata_snapshot_bytes = positive()?
                }
                "cluster.id" => self.cluster_id = value.clone(),
                "unclean.leader.election.enable" => {
                    self.unclean_leader_election_enable = boolean()?
                }
                "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable = boolean()?,
                "leader.imbalance.check.interval.seconds" => {
                    self.leader_imbalance_check_interval_ms = positive()?.saturating_mul(1000)
                }
                "leader.imbalance.per.broker.percentage" => {
                    self.leader_imbalance_per_broker_percentage = match value.parse::<u32>() {
                        Ok(n) if n <= 100 => n,
                        _ => return Err(bad("expected a percentage from 0 to 100")),
                    }
                }
                "log.dirs" | "log.dir" => {
                    let first = value.split(',').next().unwrap_or("").trim();
                    if first.is_empty() {
                        return Err(bad("expected a directory"));
                    }
                    log_dirs = Some(first.to_string());
                }
                "num.partitions" => {
                    self.num_partitions =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "default.replication.factor" => {
                    self.default_replication_factor =
                        i16::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "auto.create.topics.enable" => {
                    self.auto_create_topics_enable = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("expected true or false")),
                    }
                }
                "log.segment.bytes" => self.log_segment_bytes = positive()?,
                "log.roll.ms" => self.log_roll_ms = positive()? as i64,
                "log.roll.hours" => self.log_roll_ms = positive()? as i64 * 3_600_000,
                "log.retention.ms" => self.log_retention_ms = int()?,
                "log.retention.minutes" => self.log_retention_ms = int()? * 60_000,
                "log.retention.hours" => self.log_retention_ms = int()? * 3_600_000,
                "log.retention.bytes" => self.log_retention_bytes = int()?,
                "log.retention.check.interval.ms" => {
                    self.log_retention_check_interval_ms = positive()?
                }
                "log.index.interval.bytes" => self.log_index_interval_bytes = positive()?,
                "log.flush.interval.ms" => self.log_flush_interval_ms = positive()?,
                "message.max.bytes" => self.message_max_bytes = positive()? as usize,
                "producer.id.expiration.ms" => self.producer_id_expiration_ms = positive()?,
                "producer.id.expiration.check.interval.ms" => {
                    self.producer_id_expiration_check_interval_ms = positive()?
                }
                "socket.request.max.bytes" => self.socket_request_max_bytes = positive()? as usize,
                "replica.fetch.wait.max.ms" => {
                    // It caps clients' fetch long-polls as well.
                    self.replica_fetch_wait_max_ms = positive()?;
                    self.fetch_max_wait_cap_ms = self.replica_fetch_wait_max_ms;
                }
                "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = positive()?,
                "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = positive()? as usize,
                "replica.fetch.response.max.bytes" => {
                    self.replica_fetch_response_max_bytes = positive()? as usize
                }
                "replica.fetch.backoff.ms" => self.replica_fetch_backoff_ms = positive()?,
                "replica.high.watermark.checkpoint.interval.ms" => {
                    self.replica_hw_checkpoint_interval_ms = positive()?
                }
                "stormlog.durability" => {
                    self.durability = match value.as_str() {
                        "sync" => Durability::Sync,
                        "page-cache" => Durability::PageCache,
                        _ => return Err(bad("expected `sync` or `page-cache`")),
                    }
                }
                "offsets.topic.replication.factor" => {
                    self.offsets_topic_replication_factor =
                        i16::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "offsets.commit.timeout.ms" => self.offsets_commit_timeout_ms = positive()?,
                "transaction.state.log.num.partitions" => {
                    self.txn_state_partitions =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "transaction.state.log.replication.factor" => {
                    self.txn_state_replication_factor =
                        i16::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "transaction.state.log.min.isr" => {
                    self.txn_state_min_isr =
                        i16::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "transaction.max.timeout.ms" => {
                    self.txn_max_timeout_ms =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                    self.txn_abort_check_interval_ms = positive()?
                }
                "offsets.topic.num.partitions" => {
                    self.group.offsets_partitions =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "group.initial.rebalance.delay.ms" => {
                    self.group.initial_rebalance_delay_ms = i32::try_from(int()?.max(-1))
                        .map_err(|_| bad("out of range"))?
                        .max(0)
                }
                "group.min.session.timeout.ms" => {
                    self.group.min_session_timeout_ms =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "group.max.session.timeout.ms" => {
                    self.group.max_session_timeout_ms =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "group.max.size" => self.group.max_size = positive()? as usize,
                "offsets.retention.minutes" => {
                    self.group.offsets_retention_ms =
                        i64::try_from(positive()?.saturating_mul(60_000)).unwrap_or(i64::MAX)
                }
                "offsets.retention.check.interval.ms" => {
                    self.group.offsets_retention_check_interval_ms =
                        i64::try_from(positive()?).unwrap_or(i64::MAX)
                }
                "offset.metadata.max.bytes" => {
                    self.group.offset_metadata_max_bytes = positive()? as usize
                }
                "group.consumer.heartbeat.interval.ms" => {
                    self.group.consumer_heartbeat_interval_ms =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                "group.consumer.session.timeout.ms" => {
                    self.group.consumer_session_timeout_ms =
                        i32::try_from(positive()?).map_err(|_| bad("out of range"))?
                }
                other if IGNORED_KAFKA_KEYS.contains(&other) => {}
                other => {
                    return Err(ConfigError {
                        line,
                        message: format!("unknown property `{other}`"),
                    })
                }
            }
        }
        if let Some(first) = self.client_listeners().first() {
            self.advertised = first.address();
        }
        self.validate_cluster()?;
        Ok(log_dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_names() {
        let props = Properties::parse(
            "# comment\nlog.dirs=/tmp/x\nnum.partitions = 3\nauto.create.topics.enable=false\n\
             log.segment.bytes=1048576\nlog.retention.ms=-1\nmessage.max.bytes=2000\n\
             advertised.listeners=PLAINTEXT://localhost:9093\nstormlog.durability=page-cache\n",
        )
        .unwrap();
        let mut config = BrokerConfig::default();
        let dirs = config.apply_properties(&props).unwrap();
        assert_eq!(dirs.as_deref(), Some("/tmp/x"));
        assert_eq!(config.num_partitions, 3);
        assert!(!config.auto_create_topics_enable);
        assert_eq!(config.log_segment_bytes, 1_048_576);
        assert_eq!(config.log_retention_ms, -1);
        assert_eq!(config.message_max_bytes, 2000);
        assert_eq!(config.advertised, "localhost:9093");
        assert_eq!(config.durability, Durability::PageCache);
    }

    #[test]
    fn parses_leader_election_properties() {
        let mut config = BrokerConfig::default();
        assert!(!config.unclean_leader_election_enable);
        assert!(config.auto_leader_rebalance_enable);
        assert_eq!(config.leader_imbalance_check_interval_ms, 300_000);
        assert_eq!(config.leader_imbalance_per_broker_percentage, 10);
        let props = Properties::parse(
            "unclean.leader.election.enable=true\nauto.leader.rebalance.enable=false\n\
             leader.imbalance.check.interval.seconds=5\nleader.imbalance.per.broker.percentage=0\n",
        )
        .unwrap();
        config.apply_properties(&props).unwrap();
        assert!(config.unclean_leader_election_enable);
        assert!(!config.auto_leader_rebalance_enable);
        assert_eq!(config.leader_imbalance_check_interval_ms, 5_000);
        assert_eq!(config.leader_imbalance_per_broker_percentage, 0);
        for bad in [
            "unclean.leader.election.enable=yes",
            "leader.imbalance.check.interval.seconds=0",
            "leader.imbalance.per.broker.percentage=101",
        ] {
            let props = Properties::parse(bad).unwrap();
            assert!(
                BrokerConfig::default().apply_properties(&props).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn kraft_combined_mode_properties() {
        let props = Properties::parse(
            "process.roles=broker,controller\nnode.id=2\n\
             controller.quorum.voters=1@localhost:9093,2@localhost:9095,3@localhost:9097\n\
             listeners=PLAINTEXT://:9094,CONTROLLER://:9095\n\
             advertised.listeners=PLAINTEXT://localhost:9094,CONTROLLER://localhost:9095\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             min.insync.replicas=2\n",
        )
        .unwrap();
        let mut config = BrokerConfig::default();
        config.apply_properties(&props).unwrap();
        assert!(config.is_cluster() && config.is_broker() && config.is_controller());
        assert_eq!(config.voter_ids(), vec![1, 2, 3]);
        assert_eq!(config.voter_address(3), Some("localhost:9097"));
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[0].host, "");
        // Clients are told the first listener that is not a controller's.
        assert_eq!(config.advertised, "localhost:9094");
        assert_eq!(config.min_insync_replicas, 2);
    }

    #[test]
    fn inconsistent_kraft_settings_are_refused() {
        let refuse = |text: &str, needle: &str| {
            let props = Properties::parse(text).unwrap();
            let err = BrokerConfig::default()
                .apply_properties(&props)
                .unwrap_err();
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        };
        refuse("process.roles=broker\n", "controller.quorum.voters");
        refuse(
            "process.roles=controller\nnode.id=5\ncontroller.quorum.voters=1@h:1\n",
            "not in `controller.quorum.voters`",
        );
        refuse("controller.quorum.voters=1@h:1,1@h:2\n", "named twice");
        refuse("controller.quorum.voters=x@h:1\n", "not a node id");
        refuse("process.roles=router\n", "expected `broker`");
        refuse("advertised.listeners=PLAINTEXT://:9092\n", "needs a host");
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        let props = Properties::parse("log.segmnt.bytes=5\n").unwrap();
        let err = BrokerConfig::default()
            .apply_properties(&props)
            .unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("unknown property"));

        let props = Properties::parse("\nnum.partitions=zero\n").unwrap();
        let err = BrokerConfig::default()
            .apply_properties(&props)
            .unwrap_err();
        assert_eq!(err.line, 2);

        assert!(Properties::parse("just words\n").is_err());
    }
}
