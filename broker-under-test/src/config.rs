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
    /// `socket.request.max.bytes`: largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// `replica.fetch.wait.max.ms` caps a fetch's long-poll wait as well.
    pub fetch_max_wait_cap_ms: u64,
    /// `stormlog.durability`: `sync` (default) or `page-cache`.
    pub durability: Durability,
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
            socket_request_max_bytes: 100 * 1024 * 1024,
            fetch_max_wait_cap_ms: 30_000,
            durability: Durability::Sync,
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
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
    "listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "group.initial.rebalance.delay.ms",
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
            match key.as_str() {
                "node.id" | "broker.id" => {
                    self.node_id = i32::try_from(int()?).map_err(|_| bad("out of range"))?
                }
                "advertised.listeners" => {
                    // Kafka form `PLAINTEXT://host:port`; take the first listener.
                    let first = value.split(',').next().unwrap_or("");
                    let addr = first.rsplit("://").next().unwrap_or(first);
                    if !addr.contains(':') {
                        return Err(bad("expected `host:port` or `PLAINTEXT://host:port`"));
                    }
                    self.advertised = addr.to_string();
                }
                "cluster.id" => self.cluster_id = value.clone(),
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
                "socket.request.max.bytes" => self.socket_request_max_bytes = positive()? as usize,
                "replica.fetch.wait.max.ms" => self.fetch_max_wait_cap_ms = positive()?,
                "stormlog.durability" => {
                    self.durability = match value.as_str() {
                        "sync" => Durability::Sync,
                        "page-cache" => Durability::PageCache,
                        _ => return Err(bad("expected `sync` or `page-cache`")),
                    }
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
