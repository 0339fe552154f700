//! Memory bound of streaming: 100 MB up and echoed back down through edge and agent, measured
//! two ways. Its own test binary, so no other test's allocations share the process.
//!
//! - Bytes in flight: at any moment, what the client has sent minus what it has received back is
//!   everything the path (sockets, HTTP/2 windows, hyper's buffers, the upstream) holds.
//! - Peak resident memory: `VmHWM` of this process (edge, agent, upstream and client all live
//!   in it) after the transfer, minus `VmRSS` before it.
//!
//! Both must stay far below the body size; the bounds are generous (64 MiB) so that allocator
//! and kernel behaviour cannot make the test flaky, while buffering the body would exceed them.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;
use http_body_util::BodyExt;

use support::*;

const SIZE: u64 = 100 * 1024 * 1024;
const BOUND: u64 = 64 * 1024 * 1024;

/// A `kB` field of `/proc/self/status`, in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_echo_keeps_in_flight_bytes_and_memory_growth_bounded() {
    let c = certs();
    let up = upstream("app").await;
    let (edge, agent) =
        edge_and_web_agent(&c, edge_config(&c), "https://mem.example.test", up).await;
    let https = edge.addrs().https.unwrap();
    let mut conn = connect(https, Some((&c, "mem.example.test")), true).await;
    // Warm up the path (TLS, HTTP/2, pools) before the baseline.
    let r = conn.get("https", "mem.example.test", "/id/warm").await;
    assert_eq!(r.status, StatusCode::OK);
    let rss_before = proc_status("VmRSS:");

    let produced = Arc::new(AtomicU64::new(0));
    let mut body = conn.post_echo("mem.example.test", SIZE, &produced).await;
    let mut received = 0u64;
    let mut max_in_flight = 0u64;
    while let Some(frame) = within("echo frame", body.frame()).await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        received += data.len() as u64;
        let in_flight = produced.load(Ordering::SeqCst).saturating_sub(received);
        max_in_flight = max_in_flight.max(in_flight);
    }
    assert_eq!(received, SIZE);
    let growth = proc_status("VmHWM:").saturating_sub(rss_before);
    println!(
        "100 MiB echo: at most {} KiB in flight, peak RSS growth {} KiB",
        max_in_flight / 1024,
        growth / 1024
    );
    assert!(
        max_in_flight < BOUND,
        "{max_in_flight} bytes in flight at once"
    );
    assert!(
        growth < BOUND,
        "peak resident memory grew by {growth} bytes"
    );
    agent.shutdown().await;
    edge.shutdown().await;
}
