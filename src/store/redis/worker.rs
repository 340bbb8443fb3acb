//! Each actix-web worker's own Redis connection, for the request path's scripts (a decision's
//! commit, an event batch).
//!
//! The shared hot connection's driver task lives on the store's home runtime, so every call
//! from a worker crossed threads twice: the request to the driver, the reply back, each a
//! wake-up of a sleeping thread. A connection made on the worker's own (single-threaded)
//! runtime is driven by that runtime, on the thread that awaits the call.
//!
//! Safe where the shared connection needed [`super::OnHome`]: a worker connection is only ever
//! used on its own thread (it lives in a thread-local), so nothing it spawns or times can be
//! awaited after its runtime has stopped. It is a plain multiplexed connection without
//! reconnection: a call that fails as unavailable drops it, and the next call makes a new one
//! in the background (using the shared connection meanwhile). Only actix-web's worker threads,
//! whose runtime lives as long as the thread, get one; every other caller and Redis Cluster use
//! the shared connections.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// Distinguishes the stores of one process (tests and the load bench run several).
static NEXT_STORE: AtomicU64 = AtomicU64::new(1);

pub fn new_store_id() -> u64 {
    NEXT_STORE.fetch_add(1, Ordering::Relaxed)
}

enum Slot {
    Connecting,
    Ready(MultiplexedConnection),
}

thread_local! {
    /// This thread's connection to each store, by store id.
    static CONNECTIONS: RefCell<Vec<(u64, Slot)>> = const { RefCell::new(Vec::new()) };
}

fn on_worker() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with("actix-server worker"))
}

/// This worker's connection to store `store`, if it has one. On a worker without one, a
/// connection is begun on the worker's runtime and `None` answered (the caller uses the shared
/// connection until it is ready).
pub fn connection(
    store: u64,
    client: &redis::Client,
    timeout: Duration,
) -> Option<MultiplexedConnection> {
    if !on_worker() {
        return None;
    }
    CONNECTIONS.with(|slots| {
        let mut slots = slots.borrow_mut();
        match slots.iter().find(|(id, _)| *id == store) {
            Some((_, Slot::Ready(conn))) => return Some(conn.clone()),
            Some((_, Slot::Connecting)) => return None,
            None => {}
        }
        slots.push((store, Slot::Connecting));
        let client = client.clone();
        // A worker's runtime is single-threaded: the task, and the connection's driver it
        // spawns, run on this thread.
        tokio::spawn(async move {
            let made = tokio::time::timeout(timeout * 4, client.get_multiplexed_async_connection())
                .await
                .ok()
                .and_then(Result::ok);
            CONNECTIONS.with(|slots| {
                let mut slots = slots.borrow_mut();
                slots.retain(|(id, _)| *id != store);
                if let Some(conn) = made {
                    slots.push((store, Slot::Ready(conn)));
                }
            });
        });
        None
    })
}

/// Drops this thread's connection to `store` (a call on it failed as unavailable).
pub fn forget(store: u64) {
    CONNECTIONS.with(|slots| slots.borrow_mut().retain(|(id, _)| *id != store));
}
