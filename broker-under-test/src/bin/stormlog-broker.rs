//! `stormlog-broker`: run one Stormlog broker for real, on tokio.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use broker::config::{BrokerConfig, ProcessRole, Properties, IGNORED_KAFKA_KEYS};
use broker::runtime::{self, NamedListener, RunOptions};

/// Run a Stormlog broker: a Kafka-compatible event-streaming broker.
///
/// Kafka clients (librdkafka, kcat, kafka-python, confluent-kafka, the Java
/// client) connect to the listen address. Data lives under the data
/// directory; restarting on the same directory recovers it.
///
/// Settings come from defaults, then the --config file, then the flags
/// (flags win).
///
/// Single node: `stormlog-broker --listen 127.0.0.1:9092 --data-dir DIR`.
///
/// Cluster (KRaft): give each process a properties file with Kafka 4's
/// KRaft keys and start it with `--config FILE`:
///
///   process.roles=broker,controller        (or broker, or controller)
///   node.id=1
///   controller.quorum.voters=1@localhost:19093,2@localhost:19095,3@localhost:19097
///   listeners=PLAINTEXT://:19092,CONTROLLER://:19093
///   advertised.listeners=PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093
///   controller.listener.names=CONTROLLER
///   inter.broker.listener.name=PLAINTEXT
///   cluster.id=...                         (the same on every node)
///   log.dirs=/tmp/stormlog-kraft-1
///
/// Every listener is bound (an empty host means all interfaces) and serves
/// the same node; clients use the PLAINTEXT one, the quorum the CONTROLLER
/// one. The voters elect an active controller over Raft; brokers register
/// with it; CreateTopics sent to any broker is forwarded to it. A fresh data
/// dir is formatted for `cluster.id` on first start; a data dir of another
/// cluster is refused. Ready-made files for a 3-node cluster on one machine:
/// broker-under-test/config/kraft/node-{1,2,3}.properties (`ci/cluster start`).
#[derive(Debug, Parser)]
#[command(
    name = "stormlog-broker",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
struct Args {
    /// Address to listen on for Kafka clients, HOST:PORT, when the --config
    /// file names no `listeners` (default 127.0.0.1:9092). Port 0 picks a
    /// free port; the chosen address is printed on stdout. Not allowed
    /// together with `listeners`: edit those instead.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,

    /// Directory holding the broker's data (Kafka's `log.dirs`). Created if
    /// missing. Overrides `log.dirs` from --config.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Address clients are told to connect to, HOST:PORT (Kafka's
    /// `advertised.listeners`). Default: the first non-controller listener
    /// of `advertised.listeners` from --config, else the address actually
    /// bound (a wildcard address is advertised as 127.0.0.1).
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,

    /// This broker's id (Kafka's `node.id` / `broker.id`). Default 0.
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,

    /// A server.properties-style file (`key=value` lines, `#` comments).
    /// Kafka's property names are accepted: node.id, broker.id, log.dirs,
    /// listeners, advertised.listeners, process.roles,
    /// controller.quorum.voters, controller.listener.names,
    /// inter.broker.listener.name, cluster.id, num.partitions,
    /// default.replication.factor, min.insync.replicas,
    /// auto.create.topics.enable, log.segment.bytes, log.roll.ms/hours,
    /// log.retention.ms/minutes/hours, log.retention.bytes,
    /// log.retention.check.interval.ms, log.index.interval.bytes,
    /// log.flush.interval.ms, message.max.bytes, socket.request.max.bytes,
    /// replica.fetch.wait.max.ms, controller.quorum.*.ms,
    /// broker.session.timeout.ms, broker.heartbeat.interval.ms, plus
    /// stormlog.durability=sync|page-cache. Kafka keys with no effect here
    /// (listener.security.protocol.map, num.io.threads,
    /// offsets.topic.replication.factor, ...) are accepted and logged; unknown
    /// keys are an error.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Seed for the broker's random choices. Default: drawn from the clock.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// Seconds to wait for an orderly stop after SIGTERM or ctrl-c before
    /// exiting anyway (with status 1).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    shutdown_timeout: u64,
}

/// The legacy listen address when neither --listen nor `listeners` is given.
const DEFAULT_LISTEN: &str = "127.0.0.1:9092";

/// A startup error: the message and the exit status.
struct Fatal(String, u8);

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(message, code)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The configuration from the file and the flags, and the data directory.
/// `advertised` is `None` when it should be the bound address.
fn load_config(args: &Args) -> Result<(BrokerConfig, PathBuf, Option<String>), Fatal> {
    let mut config = BrokerConfig::default();
    let mut data_dir = None;
    let mut advertised = None;
    if let Some(file) = &args.config {
        let shown = file.display();
        let text = std::fs::read_to_string(file)
            .map_err(|err| Fatal(format!("{shown}: cannot read: {err}"), 2))?;
        let located = |err: broker::config::ConfigError| {
            if err.line == 0 {
                Fatal(format!("{shown}: {}", err.message), 2)
            } else {
                Fatal(format!("{shown}:{}: {}", err.line, err.message), 2)
            }
        };
        let props = Properties::parse(&text).map_err(located)?;
        data_dir = config
            .apply_properties(&props)
            .map_err(located)?
            .map(PathBuf::from);
        if props.get("advertised.listeners").is_some() {
            advertised = Some(config.advertised.clone());
        }
        let ignored: Vec<&str> = props
            .entries
            .keys()
            .map(String::as_str)
            .filter(|key| IGNORED_KAFKA_KEYS.contains(key))
            .collect();
        if !ignored.is_empty() {
            tracing::info!(
                keys = %ignored.join(", "),
                "{shown}: Kafka properties with no effect in Stormlog; ignored"
            );
        }
    }
    if let Some(id) = args.node_id {
        config.node_id = id;
    }
    if let Some(addr) = &args.advertised {
        let Some((host, port)) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
        else {
            return Err(Fatal(
                format!("--advertised: expected HOST:PORT, found `{addr}`"),
                2,
            ));
        };
        // In a cluster the node registers its advertised listeners: the
        // flag replaces the client one there too.
        let controllers = config.controller_listener_names.clone();
        if let Some(l) = config
            .advertised_listeners
            .iter_mut()
            .find(|l| !controllers.contains(&l.name))
        {
            l.host = host.trim_matches(['[', ']']).to_string();
            l.port = port;
        }
        advertised = Some(addr.clone());
    }
    if args.listen.is_some() && !config.listeners.is_empty() {
        return Err(Fatal(
            "--listen cannot be combined with `listeners` in the --config file; edit `listeners` there"
                .to_string(),
            2,
        ));
    }
    if let Some(dir) = &args.data_dir {
        data_dir = Some(dir.clone());
    }
    let data_dir = data_dir.ok_or_else(|| {
        Fatal(
            "no data directory: pass --data-dir DIR or set log.dirs in the --config file"
                .to_string(),
            2,
        )
    })?;
    Ok((config, data_dir, advertised))
}

fn real_main(args: Args) -> Result<(), Fatal> {
    let (mut config, data_dir, advertised) = load_config(&args)?;
    std::fs::create_dir_all(&data_dir).map_err(|err| {
        Fatal(
            format!("cannot create data dir {}: {err}", data_dir.display()),
            1,
        )
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Fatal(format!("cannot start the tokio runtime: {err}"), 1))?;
    rt.block_on(async move {
        let listeners = if config.listeners.is_empty() {
            let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
            let listener = runtime::bind(listen)
                .await
                .map_err(|err| Fatal(format!("{err:#}"), 1))?;
            vec![NamedListener::from(listener)]
        } else {
            runtime::bind_listeners(&config.listeners)
                .await
                .map_err(|err| match &args.config {
                    Some(file) => Fatal(format!("{}: {err}", file.display()), 2),
                    None => Fatal(err.to_string(), 2),
                })?
        };
        let mut bound: Vec<(String, SocketAddr)> = Vec::with_capacity(listeners.len());
        for l in &listeners {
            let addr = l
                .local_addr()
                .map_err(|err| Fatal(format!("cannot read the bound address: {err}"), 1))?;
            bound.push((l.name.clone(), addr));
        }
        config.advertised = match advertised {
            Some(addr) => addr,
            None if config.listeners.is_empty() => bound[0].1.to_string(),
            None => {
                // Kafka advertises `listeners` when `advertised.listeners`
                // is unset; a wildcard is no address to give a client.
                let (_, addr) = bound
                    .iter()
                    .find(|(name, _)| !config.controller_listener_names.contains(name))
                    .unwrap_or(&bound[0]);
                let mut addr = *addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                addr.to_string()
            }
        };
        // Install the handlers before announcing the address, so that a
        // signal sent right after the line is seen is an orderly stop.
        let shutdown = shutdown_signal().map_err(|err| Fatal(err, 1))?;
        println!("{}", listening_line(&config, &bound, &data_dir));
        let options = RunOptions {
            seed: args.seed,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            ..RunOptions::default()
        };
        runtime::run_listeners(config, data_dir, listeners, options, shutdown)
            .await
            .map_err(|err| Fatal(format!("{err:#}"), 1))
    })
}

/// `stormlog-broker listening on ADDR (data dir DIR)` for the single
/// listener of old; with `listeners`, every one with its name, and in a
/// cluster the node id, roles and cluster id:
/// `stormlog-broker listening on 0.0.0.0:19092 (PLAINTEXT), 0.0.0.0:19093
/// (CONTROLLER); node 1, roles broker,controller, cluster.id X (data dir DIR)`.
/// The first word after `on` is always an address a client can dial.
fn listening_line(
    config: &BrokerConfig,
    bound: &[(String, SocketAddr)],
    data_dir: &Path,
) -> String {
    let mut line = String::from("stormlog-broker listening on ");
    if config.listeners.is_empty() {
        line.push_str(&bound[0].1.to_string());
    } else {
        // Clients' listener first.
        let mut ordered: Vec<&(String, SocketAddr)> = bound
            .iter()
            .filter(|(n, _)| !config.controller_listener_names.contains(n))
            .collect();
        ordered.extend(
            bound
                .iter()
                .filter(|(n, _)| config.controller_listener_names.contains(n)),
        );
        let shown: Vec<String> = ordered
            .iter()
            .map(|(name, addr)| format!("{addr} ({name})"))
            .collect();
        line.push_str(&shown.join(", "));
    }
    if config.is_cluster() {
        let roles: Vec<&str> = config
            .process_roles
            .iter()
            .map(|r| match r {
                ProcessRole::Broker => "broker",
                ProcessRole::Controller => "controller",
            })
            .collect();
        line.push_str(&format!(
            "; node {}, roles {}, cluster.id {}",
            config.node_id,
            roles.join(","),
            config.cluster_id
        ));
    }
    line.push_str(&format!(" (data dir {})", display_dir(data_dir)));
    line
}

fn display_dir(dir: &Path) -> String {
    dir.display().to_string()
}

/// A future that completes on SIGTERM or ctrl-c (SIGINT). The handlers are
/// installed at once, not when the future is first polled.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|err| format!("cannot handle SIGTERM: {err}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|err| format!("cannot handle SIGINT: {err}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("interrupt received"),
        }
    })
}
