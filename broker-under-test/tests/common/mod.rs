//! Running the `stormlog-broker` binary from integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_stormlog-broker");

/// A broker process, killed when dropped.
pub struct Broker {
    pub child: Child,
    pub addr: SocketAddr,
    /// The listening line it printed.
    pub line: String,
}

impl Broker {
    /// Start the binary with `args` (plus `--listen 127.0.0.1:0` unless given)
    /// and wait for its listening line.
    pub fn start(args: &[&str]) -> Broker {
        let mut command = Command::new(BIN);
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            // The child's stderr is the test's; keep it quiet unless asked.
            .env(
                "RUST_LOG",
                std::env::var("STORMLOG_TEST_LOG").unwrap_or_else(|_| "warn".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn stormlog-broker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("no listening line within 20 s");
            }
        };
        let addr =
            parse_listening_line(&line).unwrap_or_else(|| panic!("unexpected line `{line}`"));
        Broker { child, addr, line }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stormlog-broker listening on ADDR (data dir DIR)` -> ADDR.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("stormlog-broker listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}
