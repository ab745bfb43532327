//! A real KRaft cluster over real sockets: three combined broker+controller
//! nodes in-process (tokio, loopback, ephemeral ports, their own data dirs),
//! configured from the shipped `config/kraft/node-N.properties`. A controller
//! is elected, brokers register, a replicated topic is created; the active
//! controller is killed (no orderly shutdown), a new one is elected and
//! CreateTopics works again; the killed node restarts on its data dir and
//! rejoins. Plus the `stormlog-broker` binary as a one-node cluster.
//!
//! Every wait is bounded and polls; timings are printed (`--nocapture`).
//! `STORMLOG_TEST_LOG=info` (a tracing filter) shows the nodes' logs.

#[path = "support/kclient.rs"]
mod kclient;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::config::{BrokerConfig, ProcessRole, Properties};
use broker::runtime::{self, BrokerHandle, NamedListener, RunOptions};
use kclient::{broker_ids, quorum_leader, topic_partitions, Client, NONE, TOPIC_ALREADY_EXISTS};

/// Each single request and connect.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First election plus three registrations.
const FORM_LIMIT: Duration = Duration::from_secs(60);
/// From killing the active controller to a successful CreateTopics.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// A restarted node catching up and being unfenced again.
const REJOIN_LIMIT: Duration = Duration::from_secs(60);
/// A dead broker being fenced (`broker.session.timeout.ms` is 9 s).
const FENCE_LIMIT: Duration = Duration::from_secs(40);
/// Metadata converging on every node after a change.
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);

fn init_logging() {
    if let Ok(filter) = std::env::var("STORMLOG_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A bounded wait: `retry` sleeps a little, or panics with what was last
/// seen once the limit has passed.
struct Wait {
    what: String,
    start: Instant,
    limit: Duration,
    attempts: u32,
}

impl Wait {
    fn new(what: impl Into<String>, limit: Duration) -> Wait {
        Wait {
            what: what.into(),
            start: Instant::now(),
            limit,
            attempts: 0,
        }
    }

    async fn retry(&mut self, last: impl std::fmt::Display) {
        self.attempts += 1;
        if self.start.elapsed() > self.limit {
            panic!(
                "{}: not done within {:?} ({} attempts); last seen: {last}",
                self.what, self.limit, self.attempts
            );
        }
        tokio::time::sleep(POLL).await;
    }

    fn done(&self) -> Duration {
        let took = self.start.elapsed();
        eprintln!(
            "[cluster] {}: {} ms ({} polls)",
            self.what,
            took.as_millis(),
            self.attempts + 1
        );
        took
    }
}

/// The shipped properties of node `n`, pointed at this test's ports and
/// loopback: `ports[k]` = (PLAINTEXT, CONTROLLER) of node k+1.
fn properties_for(n: usize, ports: &[(u16, u16)]) -> String {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/kraft/node-{n}.properties"));
    let mut text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    for (k, (plain, control)) in ports.iter().enumerate() {
        let shipped_plain = 19092 + 2 * k as u16;
        text = text.replace(&format!(":{shipped_plain}"), &format!(":{plain}"));
        text = text.replace(&format!(":{}", shipped_plain + 1), &format!(":{control}"));
    }
    text.replace("localhost", "127.0.0.1")
}

fn config_from(text: &str) -> BrokerConfig {
    let props = Properties::parse(text).expect("properties parse");
    let mut config = BrokerConfig::default();
    config.apply_properties(&props).expect("properties apply");
    config
}

struct TestNode {
    id: i32,
    config: BrokerConfig,
    data: PathBuf,
    plain: SocketAddr,
    control: SocketAddr,
    handle: Option<BrokerHandle>,
}

impl TestNode {
    fn addr(&self) -> String {
        self.plain.to_string()
    }

    async fn start(&mut self, listeners: Vec<NamedListener>, seed: u64) {
        let options = RunOptions {
            seed: Some(seed),
            shutdown_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            ..RunOptions::default()
        };
        let handle = runtime::start_with_listeners(
            self.config.clone(),
            self.data.clone(),
            listeners,
            options,
        )
        .await
        .expect("node starts");
        assert_eq!(handle.addr(), self.plain);
        self.handle = Some(handle);
    }

    /// Bind this node's two ports again (the killed node's sockets may take
    /// a moment to go away).
    async fn rebind(&self) -> Vec<NamedListener> {
        let mut wait = Wait::new(
            format!("node {}: rebind its ports", self.id),
            Duration::from_secs(15),
        );
        loop {
            let plain = runtime::bind(&self.plain.to_string()).await;
            let control = runtime::bind(&self.control.to_string()).await;
            match (plain, control) {
                (Ok(p), Ok(c)) => {
                    wait.done();
                    return vec![
                        NamedListener::new("PLAINTEXT", p),
                        NamedListener::new("CONTROLLER", c),
                    ];
                }
                (p, c) => wait.retry(format!("{:?} / {:?}", p.err(), c.err())).await,
            }
        }
    }
}

async fn client(addr: &str) -> anyhow::Result<Client> {
    Client::connect(addr, REQUEST_TIMEOUT).await
}

/// The quorum leader and epoch as the first of `nodes` that knows answers
/// (DescribeQuorum is forwarded to the leader by the others).
async fn find_leader(nodes: &[&TestNode]) -> Result<(i32, i32), String> {
    let mut seen = Vec::new();
    for node in nodes {
        let answer = match client(&node.addr()).await {
            Ok(mut c) => c.describe_quorum().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(response) => match quorum_leader(&response) {
                Some(leader) => return Ok(leader),
                None => seen.push(format!(
                    "node {}: no leader (error {})",
                    node.id, response.error_code
                )),
            },
            Err(e) => seen.push(format!("node {}: {e:#}", node.id)),
        }
    }
    Err(seen.join("; "))
}

/// How far voter `id`'s log end is behind the high watermark, as the quorum
/// leader `leader` describes it (`<= 0`: caught up).
async fn voter_lag(leader: &TestNode, id: i32) -> Result<i64, String> {
    let response = match client(&leader.addr()).await {
        Ok(mut c) => c.describe_quorum().await.map_err(|e| format!("{e:#}"))?,
        Err(e) => return Err(format!("{e:#}")),
    };
    let p = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("empty DescribeQuorum answer")?;
    let voter = p
        .current_voters
        .iter()
        .find(|v| v.replica_id.0 == id)
        .ok_or_else(|| format!("{id} is not among the voters"))?;
    Ok(p.high_watermark - voter.log_end_offset)
}

/// Brokers listed by `node`'s Metadata.
async fn brokers_seen_by(node: &TestNode) -> anyhow::Result<std::collections::BTreeSet<i32>> {
    let response = client(&node.addr()).await?.metadata(Some(&[])).await?;
    Ok(broker_ids(&response))
}

/// CreateTopics through `node` until it succeeds. A retry that finds the
/// topic existing counts (an earlier attempt's answer was lost).
async fn create_topic(
    node: &TestNode,
    name: &str,
    partitions: i32,
    rf: i16,
    limit: Duration,
) -> Duration {
    let mut wait = Wait::new(
        format!(
            "CreateTopics {name} ({partitions} partitions, RF {rf}) through node {}",
            node.id
        ),
        limit,
    );
    loop {
        let answer = match client(&node.addr()).await {
            Ok(mut c) => c.create_topic(name, partitions, rf, 10_000).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok((NONE, _)) => return wait.done(),
            Ok((TOPIC_ALREADY_EXISTS, _)) if wait.attempts > 0 => return wait.done(),
            Ok((code, message)) => wait.retry(format!("error {code} {message:?}")).await,
            Err(e) => wait.retry(format!("{e:#}")).await,
        }
    }
}

/// Wait until every one of `nodes` shows `name` with `partitions`
/// partitions of `rf` distinct live replicas each, and a leader among them.
async fn wait_topic_everywhere(nodes: &[&TestNode], name: &str, partitions: i32, rf: usize) {
    let ids: Vec<i32> = nodes.iter().map(|n| n.id).collect();
    let mut wait = Wait::new(
        format!("topic {name} in Metadata of nodes {ids:?}"),
        CONVERGE_LIMIT,
    );
    'poll: loop {
        for node in nodes {
            let seen = match client(&node.addr()).await {
                Ok(mut c) => c.metadata(Some(&[name])).await,
                Err(e) => Err(e),
            };
            let parts = match seen {
                Ok(response) => topic_partitions(&response, name),
                Err(e) => {
                    wait.retry(format!("node {}: {e:#}", node.id)).await;
                    continue 'poll;
                }
            };
            let good = parts.as_ref().is_some_and(|parts| {
                parts.len() == partitions as usize
                    && parts
                        .iter()
                        .enumerate()
                        .all(|(i, (index, leader, replicas, _isr))| {
                            let mut distinct = replicas.clone();
                            distinct.sort();
                            distinct.dedup();
                            *index == i as i32
                                && replicas.len() == rf
                                && distinct.len() == rf
                                && replicas.contains(leader)
                        })
            });
            if !good {
                wait.retry(format!("node {} shows {parts:?}", node.id))
                    .await;
                continue 'poll;
            }
        }
        wait.done();
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_fails_over_and_rejoins() {
    init_logging();
    let test_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();

    // Bind first: the voters' list needs the ports.
    let mut bound = Vec::new();
    for _ in 0..3 {
        // A killed node restarts on these ports: keep them out of the
        // ephemeral range other tests' connections draw from.
        let plain = runtime::bind_rebindable_loopback().await.unwrap();
        let control = runtime::bind_rebindable_loopback().await.unwrap();
        bound.push((plain, control));
    }
    let ports: Vec<(u16, u16)> = bound
        .iter()
        .map(|(p, c)| {
            (
                p.local_addr().unwrap().port(),
                c.local_addr().unwrap().port(),
            )
        })
        .collect();
    let mut nodes = Vec::new();
    let mut listeners = Vec::new();
    for (k, (plain, control)) in bound.into_iter().enumerate() {
        let id = k as i32 + 1;
        let config = config_from(&properties_for(k + 1, &ports));
        assert_eq!(config.node_id, id);
        assert_eq!(config.voter_ids(), vec![1, 2, 3]);
        nodes.push(TestNode {
            id,
            config,
            data: dir.path().join(format!("node-{id}")),
            plain: plain.local_addr().unwrap(),
            control: control.local_addr().unwrap(),
            handle: None,
        });
        listeners.push(vec![
            NamedListener::new("PLAINTEXT", plain),
            NamedListener::new("CONTROLLER", control),
        ]);
    }
    for (node, l) in nodes.iter_mut().zip(listeners) {
        let seed = node.id as u64;
        node.start(l, seed).await;
    }
    eprintln!(
        "[cluster] 3 nodes started on {:?}",
        nodes
            .iter()
            .map(|n| (n.id, n.plain.port(), n.control.port()))
            .collect::<Vec<_>>()
    );

    // 1. A controller is elected and every broker registers (Metadata lists
    //    unfenced brokers only).
    let all: Vec<&TestNode> = nodes.iter().collect();
    let mut wait = Wait::new(
        "controller elected and brokers 1,2,3 registered",
        FORM_LIMIT,
    );
    let (leader, epoch) = loop {
        match find_leader(&all).await {
            Ok((leader, epoch)) => match brokers_seen_by(&nodes[leader as usize - 1]).await {
                Ok(ids) if ids.len() == 3 => break (leader, epoch),
                Ok(ids) => {
                    wait.retry(format!("leader {leader}, brokers {ids:?}"))
                        .await
                }
                Err(e) => wait.retry(format!("leader {leader}: {e:#}")).await,
            },
            Err(e) => wait.retry(e).await,
        }
    };
    wait.done();
    eprintln!("[cluster] active controller: node {leader} (epoch {epoch})");

    // 2. A replicated topic, created through a node that is not the
    //    controller (forwarded), shows 3 replicas on 3 brokers everywhere.
    let other = nodes.iter().find(|n| n.id != leader).unwrap();
    create_topic(other, "replicated", 3, 3, CONVERGE_LIMIT).await;
    wait_topic_everywhere(&all, "replicated", 3, 3).await;

    // 3. Kill the active controller: no orderly shutdown.
    let killed = leader as usize - 1;
    let kill_start = Instant::now();
    nodes[killed]
        .handle
        .take()
        .unwrap()
        .kill(Duration::from_secs(10))
        .await
        .expect("the killed node goes away");
    eprintln!("[cluster] killed node {leader}");
    let survivors: Vec<&TestNode> = nodes.iter().filter(|n| n.id != leader).collect();
    let mut wait = Wait::new(
        format!("a new controller after killing node {leader}"),
        FAILOVER_LIMIT,
    );
    let (new_leader, new_epoch) = loop {
        match find_leader(&survivors).await {
            Ok((l, e)) if l != leader && e > epoch => break (l, e),
            Ok((l, e)) => wait.retry(format!("leader {l} epoch {e}")).await,
            Err(e) => wait.retry(e).await,
        }
    };
    let elected_after = kill_start.elapsed();
    wait.done();
    eprintln!("[cluster] new active controller: node {new_leader} (epoch {new_epoch})");
    // Two live brokers: RF 2 fits whether or not the dead one is fenced yet.
    let left = FAILOVER_LIMIT.saturating_sub(kill_start.elapsed());
    create_topic(survivors[0], "after-failover", 3, 2, left).await;
    let recovered_after = kill_start.elapsed();
    eprintln!(
        "[cluster] failover: new leader {} ms after the kill, CreateTopics succeeded {} ms after the kill",
        elected_after.as_millis(),
        recovered_after.as_millis()
    );
    assert!(recovered_after <= FAILOVER_LIMIT, "{recovered_after:?}");
    wait_topic_everywhere(&survivors, "after-failover", 3, 2).await;

    // 4. The controller fences the dead broker once its session expires
    //    (`broker.session.timeout.ms`): it leaves Metadata's broker list.
    let mut wait = Wait::new(format!("node {leader} fenced"), FENCE_LIMIT);
    loop {
        let seen = match find_leader(&survivors).await {
            Ok((l, _)) => brokers_seen_by(&nodes[l as usize - 1])
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e),
        };
        match seen {
            Ok(ids) if !ids.contains(&leader) && ids.len() == 2 => break,
            other => wait.retry(format!("brokers {other:?}")).await,
        }
    }
    wait.done();
    eprintln!(
        "[cluster] node {leader} fenced {} ms after the kill",
        kill_start.elapsed().as_millis()
    );

    // 5. The killed node restarts on its ports and data dir and rejoins: it
    //    catches up on the metadata log (it knows what was created while it
    //    was down), is a caught-up voter again, and registers and is
    //    unfenced as a broker.
    let listeners = nodes[killed].rebind().await;
    let rejoin_start = Instant::now();
    nodes[killed].start(listeners, 100).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let restarted = &nodes[killed];
    let mut wait = Wait::new(
        format!("node {leader} rejoins (caught up, registered, unfenced)"),
        REJOIN_LIMIT,
    );
    loop {
        let caught_up = match client(&restarted.addr()).await {
            Ok(mut c) => c.metadata(Some(&["after-failover"])).await,
            Err(e) => Err(e),
        };
        let caught_up = match caught_up {
            Ok(response) => topic_partitions(&response, "after-failover").is_some(),
            Err(e) => {
                wait.retry(format!("restarted node: {e:#}")).await;
                continue;
            }
        };
        let leader_now = find_leader(&all).await;
        let listed = match &leader_now {
            Ok((l, _)) => brokers_seen_by(&nodes[*l as usize - 1])
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        };
        let voter = match &leader_now {
            Ok((l, _)) => voter_lag(&nodes[*l as usize - 1], leader).await,
            Err(e) => Err(e.clone()),
        };
        match (&listed, &voter) {
            (Ok(ids), Ok(lag)) if caught_up && ids.len() == 3 && *lag <= 0 => break,
            _ => {
                wait.retry(format!(
                    "knows after-failover {caught_up}, leader {leader_now:?}, \
                     brokers {listed:?}, voter {leader} behind the high watermark by {voter:?}"
                ))
                .await
            }
        }
    }
    wait.done();
    eprintln!(
        "[cluster] node {leader} rejoined {} ms after its restart",
        rejoin_start.elapsed().as_millis()
    );
    create_topic(restarted, "after-rejoin", 3, 3, CONVERGE_LIMIT).await;
    wait_topic_everywhere(&all, "after-rejoin", 3, 3).await;
    wait_topic_everywhere(&all, "replicated", 3, 3).await;

    // 6. An orderly stop of the whole cluster, bounded.
    let stop_start = Instant::now();
    let handles: Vec<BrokerHandle> = nodes.iter_mut().filter_map(|n| n.handle.take()).collect();
    let stops = handles.into_iter().map(|h| tokio::spawn(h.shutdown()));
    for stop in stops {
        tokio::time::timeout(Duration::from_secs(60), stop)
            .await
            .expect("a node did not stop within 60 s")
            .expect("shutdown task panicked")
            .expect("node stopped with an error");
    }
    eprintln!(
        "[cluster] orderly stop: {} ms",
        stop_start.elapsed().as_millis()
    );
    eprintln!(
        "[cluster] whole test: {} ms",
        test_start.elapsed().as_millis()
    );
}

#[test]
fn shipped_kraft_properties_load_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kraft");
    for n in 1..=3 {
        let file = dir.join(format!("node-{n}.properties"));
        let text = std::fs::read_to_string(&file).unwrap();
        let props = Properties::parse(&text).unwrap();
        let mut config = BrokerConfig::default();
        let log_dirs = config
            .apply_properties(&props)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(
            log_dirs.as_deref(),
            Some(format!("/tmp/stormlog-kraft-{n}").as_str())
        );
        assert_eq!(config.node_id, n);
        assert!(config.is_cluster() && config.is_broker() && config.is_controller());
        assert_eq!(
            config.process_roles,
            vec![ProcessRole::Broker, ProcessRole::Controller]
        );
        assert_eq!(
            config.controller_quorum_voters,
            vec![
                (1, "localhost:19093".to_string()),
                (2, "localhost:19095".to_string()),
                (3, "localhost:19097".to_string())
            ]
        );
        let plain = 19090 + 2 * n as u16;
        let listeners: Vec<(String, String, u16)> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.host.clone(), l.port))
            .collect();
        assert_eq!(
            listeners,
            vec![
                ("PLAINTEXT".to_string(), String::new(), plain),
                ("CONTROLLER".to_string(), String::new(), plain + 1)
            ]
        );
        assert_eq!(config.advertised, format!("localhost:{plain}"));
        assert_eq!(
            config.controller_listener_names,
            vec!["CONTROLLER".to_string()]
        );
        assert_eq!(config.inter_broker_listener_name, "PLAINTEXT");
        assert_eq!(config.default_replication_factor, 3);
        assert_eq!(config.min_insync_replicas, 2);
        assert_eq!(config.cluster_id, "XBoKN-xARWqEXD2-e-np5Q");
    }
}

/// Two ports free right now (bound, then released).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn single_node_properties(plain: u16, control: u16, data: &Path, cluster_id: &str) -> String {
    format!(
        "process.roles=broker,controller\nnode.id=1\n\
         controller.quorum.voters=1@127.0.0.1:{control}\n\
         listeners=PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{control}\n\
         controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
         listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
         cluster.id={cluster_id}\nlog.dirs={}\ndefault.replication.factor=1\n",
        data.display()
    )
}

/// The binary with `--config file`; its first stdout line (or None if it
/// exits or prints nothing within 30 s).
fn spawn_broker(config: &Path) -> (Child, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormlog-broker"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--shutdown-timeout",
            "20",
        ])
        .env(
            "RUST_LOG",
            std::env::var("STORMLOG_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stormlog-broker");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).ok();
    (child, line)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
    }
    text
}

#[test]
fn binary_runs_a_one_node_cluster_and_refuses_a_foreign_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("node.properties");
    let (plain, control) = free_ports();
    std::fs::write(
        &file,
        single_node_properties(plain, control, &data, "one-node-cluster"),
    )
    .unwrap();

    let (mut child, line) = spawn_broker(&file);
    let Some(line) = line else {
        let _ = child.kill();
        panic!("no listening line; stderr: {}", stderr_of(&mut child));
    };
    eprintln!("[binary] {line}");
    let expected = format!(
        "stormlog-broker listening on 127.0.0.1:{plain} (PLAINTEXT), 127.0.0.1:{control} (CONTROLLER); \
         node 1, roles broker,controller, cluster.id one-node-cluster (data dir {})",
        data.display()
    );
    assert_eq!(line, expected);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = format!("127.0.0.1:{plain}");
    let served = rt.block_on(async {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < FORM_LIMIT {
            let attempt = async {
                let mut c = client(&addr).await?;
                let quorum = c.describe_quorum().await?;
                anyhow::ensure!(
                    quorum_leader(&quorum).map(|l| l.0) == Some(1),
                    "no leader yet"
                );
                let (code, message) = c.create_topic("one", 2, 1, 10_000).await?;
                anyhow::ensure!(
                    code == NONE || code == TOPIC_ALREADY_EXISTS,
                    "create: {code} {message:?}"
                );
                let metadata = c.metadata(Some(&["one"])).await?;
                let parts = topic_partitions(&metadata, "one")
                    .ok_or_else(|| anyhow::anyhow!("not in metadata yet"))?;
                anyhow::ensure!(
                    parts.len() == 2 && parts.iter().all(|p| p.1 == 1),
                    "{parts:?}"
                );
                Ok::<(), anyhow::Error>(())
            };
            match attempt.await {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(POLL).await;
        }
        Err(last)
    });
    if let Err(last) = &served {
        let _ = child.kill();
        panic!(
            "one-node cluster did not serve within {FORM_LIMIT:?}: {last}; stderr: {}",
            stderr_of(&mut child)
        );
    }
    eprintln!(
        "[binary] elected and created a topic in {} ms",
        served.unwrap().as_millis()
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status =
        wait_exit(&mut child, Duration::from_secs(40)).expect("still running 40 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr: {}", stderr_of(&mut child));

    // The same data dir under another cluster.id: refused, not served.
    std::fs::write(
        &file,
        single_node_properties(plain, control, &data, "another-cluster"),
    )
    .unwrap();
    let (mut child, _line) = spawn_broker(&file);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let stderr = stderr_of(&mut child);
    let _ = child.kill();
    let status = status.unwrap_or_else(|| {
        panic!("a foreign data dir was not refused within 30 s; stderr: {stderr}")
    });
    assert!(!status.success(), "{status:?}; stderr: {stderr}");
    eprintln!(
        "[binary] foreign data dir: {status:?}; {}",
        stderr.lines().last().unwrap_or("")
    );
}

#[test]
fn binary_names_a_listener_it_cannot_bind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let control = taken.local_addr().unwrap().port();
    let (plain, _) = free_ports();
    let file = dir.path().join("node.properties");
    std::fs::write(
        &file,
        single_node_properties(plain, control, &dir.path().join("data"), "c"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_stormlog-broker"))
        .args(["--config", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot bind listener CONTROLLER://127.0.0.1:{control}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");

    // --listen and `listeners` together is a configuration error.
    let output = Command::new(env!("CARGO_BIN_EXE_stormlog-broker"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--listen cannot be combined"), "{stderr}");
}
