//! Ports for the servers tests start (Redis, PostgreSQL, chromedriver, the binary).
//!
//! Binding port 0 hands out a port of the kernel's ephemeral range, which every outgoing
//! connection draws from too, and the port is free again once the probe closes: a client socket
//! of another test, or a second probe, can take it before the server binds it. So ports come
//! from below the ephemeral range, each given out once per process (processes start at
//! different points, by pid), and only if a bind finds them free.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many ports below the ephemeral range are drawn from.
const SPAN: u32 = 12_000;

/// A port no server of this process was given, free when asked.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let low = pool_start();
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (low + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + SPAN);
}

/// The first port of the pool: below the kernel's ephemeral range, or above it when the range
/// starts too low to leave room (Linux's default range when unreadable).
fn pool_start() -> u32 {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut bounds = range.split_whitespace().map(|b| b.parse::<u32>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32_768, 60_999));
    if low >= 1024 + SPAN {
        low - SPAN
    } else if high + SPAN <= 65_535 {
        high + 1
    } else {
        panic!("the ephemeral port range {low}-{high} leaves no {SPAN} ports outside it");
    }
}
