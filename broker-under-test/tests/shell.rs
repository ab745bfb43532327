//! The `stormlog-broker` binary as a process: startup line, signals, config
//! errors, and what happens to a connection that sends garbage.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, BIN};

/// Run the binary to completion with `args`; (status, stderr).
fn run_to_end(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stormlog-broker");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Reads until EOF or reset; true if the peer closed within `timeout`.
fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn dir_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn prints_listening_line_and_accepts_connections() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&["--data-dir", dir_arg(&data)]);
    assert!(broker.addr.ip().is_loopback());
    assert_ne!(broker.addr.port(), 0, "must print the bound port");
    assert!(
        broker
            .line
            .ends_with(&format!("(data dir {})", data.display())),
        "{}",
        broker.line
    );
    assert!(data.is_dir(), "data dir is created");
    TcpStream::connect(broker.addr).expect("connect to the broker");
}

#[test]
fn sigterm_and_sigint_stop_the_process() {
    // With a node that does not stop by itself the shell gives up after the
    // shutdown timeout (status 1); either way the process must go away
    // promptly, also when signalled right after printing its address.
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut broker =
            Broker::start(&["--data-dir", dir_arg(dir.path()), "--shutdown-timeout", "2"]);
        broker.signal(signal);
        let status = broker
            .wait_timeout(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("still running 10 s after SIG{signal}"));
        assert!(
            matches!(status.code(), Some(0) | Some(1)),
            "SIG{signal}: {status:?}"
        );
    }
}

#[test]

fn sigterm_exits_zero_after_an_orderly_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&["--data-dir", dir_arg(dir.path())]);
    let _client = TcpStream::connect(broker.addr).unwrap();
    broker.signal("TERM");
    let status = broker
        .wait_timeout(Duration::from_secs(5))
        .expect("still running 5 s after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]

fn ctrl_c_exits_zero_after_an_orderly_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&["--data-dir", dir_arg(dir.path())]);
    broker.signal("INT");
    let status = broker
        .wait_timeout(Duration::from_secs(5))
        .expect("still running 5 s after SIGINT");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn config_error_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.properties");
    std::fs::write(
        &file,
        "# a comment\nnum.partitions=3\nlog.segmnt.bytes=1048576\n",
    )
    .unwrap();
    let (status, stderr) = run_to_end(&[
        "--config",
        dir_arg(&file),
        "--data-dir",
        dir_arg(dir.path()),
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let expected = format!("error: {}:3: ", file.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("log.segmnt.bytes"), "{stderr}");

    std::fs::write(&file, "num.partitions=3\nnum.partitions\n").unwrap();
    let (status, stderr) = run_to_end(&["--config", dir_arg(&file)]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("error: {}:2: ", file.display())),
        "{stderr}"
    );

    std::fs::write(&file, "\n\nnum.partitions=zero\n").unwrap();
    let (status, stderr) = run_to_end(&["--config", dir_arg(&file)]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("error: {}:3: ", file.display())),
        "{stderr}"
    );
}

#[test]
fn unreadable_config_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing.properties");
    let (status, stderr) = run_to_end(&["--config", dir_arg(&file), "--data-dir", "x"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.properties"), "{stderr}");
}

#[test]
fn missing_data_dir_is_a_clear_error() {
    let (status, stderr) = run_to_end(&["--listen", "127.0.0.1:0"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: no data directory"), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[test]
fn data_dir_comes_from_log_dirs_unless_the_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let from_flag = dir.path().join("from-flag");
    let file = dir.path().join("server.properties");
    std::fs::write(
        &file,
        format!(
            "num.io.threads=8\nlog.dirs={}\nnum.partitions=3\n",
            from_file.display()
        ),
    )
    .unwrap();

    let broker = Broker::start(&["--config", dir_arg(&file)]);
    assert!(
        broker
            .line
            .ends_with(&format!("(data dir {})", from_file.display())),
        "{}",
        broker.line
    );
    drop(broker);

    let broker = Broker::start(&[
        "--config",
        dir_arg(&file),
        "--data-dir",
        dir_arg(&from_flag),
    ]);
    assert!(
        broker
            .line
            .ends_with(&format!("(data dir {})", from_flag.display())),
        "{}",
        broker.line
    );
    assert!(from_flag.is_dir());
}

#[test]
fn listen_address_in_use_fails() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_to_end(&["--listen", &addr, "--data-dir", dir_arg(dir.path())]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[test]

fn unparseable_frame_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&["--data-dir", dir_arg(dir.path())]);
    let mut stream = TcpStream::connect(broker.addr).unwrap();
    // A 6-byte frame: too short even for a request header.
    stream
        .write_all(&[0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff])
        .unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)));
}

#[test]

fn unknown_api_key_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&["--data-dir", dir_arg(dir.path())]);
    let mut stream = TcpStream::connect(broker.addr).unwrap();
    // Request header v1: api_key 999, api_version 0, correlation_id 1, client_id null.
    let mut body = Vec::new();
    body.extend_from_slice(&999i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)));
}

#[test]

fn oversized_frame_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.properties");
    std::fs::write(&file, "socket.request.max.bytes=1024\n").unwrap();
    let broker = Broker::start(&[
        "--data-dir",
        dir_arg(dir.path()),
        "--config",
        dir_arg(&file),
    ]);
    let mut stream = TcpStream::connect(broker.addr).unwrap();
    stream.write_all(&(1_000_000i32).to_be_bytes()).unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)));
}

#[test]

fn api_versions_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&["--data-dir", dir_arg(dir.path())]);
    let mut stream = TcpStream::connect(broker.addr).unwrap();
    // ApiVersions v0: api_key 18, api_version 0, correlation_id 7, client_id "t".
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.push(b't');
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).unwrap();
    let len = i32::from_be_bytes(header[..4].try_into().unwrap());
    let correlation = i32::from_be_bytes(header[4..].try_into().unwrap());
    assert!(len >= 6, "{len}");
    assert_eq!(correlation, 7);
    let mut rest = vec![0u8; len as usize - 4];
    stream.read_exact(&mut rest).unwrap();
    let error_code = i16::from_be_bytes([rest[0], rest[1]]);
    assert_eq!(error_code, 0);
}
