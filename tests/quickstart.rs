//! `wicket quickstart` as a process: it prints where things are and the `curl` commands, and it
//! drains and exits cleanly when told to stop (here: when its standard input closes). The
//! requests themselves are checked in `runtime/tests/quickstart.rs`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound for start-up and for shutdown.
const T: Duration = Duration::from_secs(60);

#[test]
fn prints_the_curl_commands_and_stops_cleanly_when_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("qs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wicket"))
        .args(["quickstart", "--http-port", "0", "--https-port", "0"])
        .arg("--data-dir")
        .arg(&data)
        .args(["--until-stdin-closes", "--log", "warn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Read the banner up to the rate-limit loop, its last command.
    let deadline = Instant::now() + T;
    let mut banner = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with("for i in");
                banner.push(line);
                if done {
                    break;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("no complete banner ({e}); got {banner:#?}");
            }
        }
    }
    let text = banner.join("\n");
    assert!(text.contains(&data.display().to_string()), "{text}");
    let ca = data.join("dev-ca.pem");
    assert!(ca.exists());
    assert!(data.join("quickstart-policy.yml").exists());
    let curls: Vec<&String> = banner
        .iter()
        .filter(|l| l.starts_with("curl ") || l.starts_with("for i in"))
        .collect();
    assert_eq!(curls.len(), 6, "{text}");
    for c in &curls {
        assert!(c.contains("--resolve demo.wicket.test:"), "{c}");
        assert!(c.contains(":127.0.0.1 "), "{c}");
        if c.contains("https://") {
            assert!(c.contains(&format!("--cacert {}", ca.display())), "{c}");
        }
    }
    assert!(text.contains("-u demo:wicket-demo"), "{text}");

    // Closing stdin stops it: drain, then exit 0.
    drop(child.stdin.take());
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("quickstart did not stop after stdin closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("draining") && err.contains("stopped"), "{err}");
}
