//! `stormlog-broker`: run one Stormlog broker for real, on tokio.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use broker::config::{BrokerConfig, Properties, IGNORED_KAFKA_KEYS};
use broker::runtime::{self, RunOptions};

/// Run a Stormlog broker: a Kafka-compatible event-streaming broker.
///
/// Kafka clients (librdkafka, kcat, kafka-python, confluent-kafka, the Java
/// client) connect to the listen address. Data lives under the data
/// directory; restarting on the same directory recovers it.
///
/// Settings come from defaults, then the --config file, then the flags
/// (flags win).
#[derive(Debug, Parser)]
#[command(name = "stormlog-broker", version, about, long_about)]
struct Args {
    /// Address to listen on for Kafka clients, HOST:PORT. Port 0 picks a free
    /// port; the chosen address is printed on stdout.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    listen: String,

    /// Directory holding the broker's data (Kafka's `log.dirs`). Created if
    /// missing. Overrides `log.dirs` from --config.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Address clients are told to connect to, HOST:PORT (Kafka's
    /// `advertised.listeners`). Default: `advertised.listeners` from --config,
    /// else the address actually bound by --listen.
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,

    /// This broker's id (Kafka's `node.id` / `broker.id`). Default 0.
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,

    /// A server.properties-style file (`key=value` lines, `#` comments).
    /// Kafka's property names are accepted: node.id, broker.id, log.dirs,
    /// advertised.listeners, cluster.id, num.partitions,
    /// default.replication.factor, auto.create.topics.enable,
    /// log.segment.bytes, log.roll.ms/hours, log.retention.ms/minutes/hours,
    /// log.retention.bytes, log.retention.check.interval.ms,
    /// log.index.interval.bytes, log.flush.interval.ms, message.max.bytes,
    /// socket.request.max.bytes, replica.fetch.wait.max.ms, plus
    /// stormlog.durability=sync|page-cache. Kafka keys with no effect here
    /// (listeners, process.roles, num.io.threads, ...) are accepted and
    /// ignored; unknown keys are an error.
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
        for key in props.entries.keys() {
            if IGNORED_KAFKA_KEYS.contains(&key.as_str()) {
                tracing::info!(
                    key,
                    "{shown}: Kafka property has no effect in Stormlog; ignored"
                );
            }
        }
    }
    if let Some(id) = args.node_id {
        config.node_id = id;
    }
    if let Some(addr) = &args.advertised {
        if !addr.contains(':') {
            return Err(Fatal(
                format!("--advertised: expected HOST:PORT, found `{addr}`"),
                2,
            ));
        }
        advertised = Some(addr.clone());
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
        let listener = runtime::bind(&args.listen)
            .await
            .map_err(|err| Fatal(format!("{err:#}"), 1))?;
        let bound: SocketAddr = listener
            .local_addr()
            .map_err(|err| Fatal(format!("cannot read the bound address: {err}"), 1))?;
        config.advertised = advertised.unwrap_or_else(|| bound.to_string());
        // Install the handlers before announcing the address, so that a
        // signal sent right after the line is seen is an orderly stop.
        let shutdown = shutdown_signal().map_err(|err| Fatal(err, 1))?;
        println!(
            "stormlog-broker listening on {bound} (data dir {})",
            display_dir(&data_dir)
        );
        let options = RunOptions {
            seed: args.seed,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            ..RunOptions::default()
        };
        runtime::run_with(config, data_dir, listener, options, shutdown)
            .await
            .map_err(|err| Fatal(format!("{err:#}"), 1))
    })
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
