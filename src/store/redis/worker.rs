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
//! in the background (using the shared connection meanwhile); a connection that cannot be made
//! is tried again no sooner than [`RETRY_AFTER`] later, logged. Only actix-web's worker threads,
//! whose runtime lives as long as the thread, get one; every other caller and Redis Cluster use
//! the shared connections.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// How long a worker waits before trying again to make a connection that failed: Redis may
/// refuse new connections (`maxclients`, credentials) while the shared ones still work.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Distinguishes the stores of one process (tests and the load bench run several).
static NEXT_STORE: AtomicU64 = AtomicU64::new(1);

pub fn new_store_id() -> u64 {
    NEXT_STORE.fetch_add(1, Ordering::Relaxed)
}

enum Slot {
    Connecting,
    /// A connection, with the number that tells it from its successors and the store's failure
    /// count when it was begun.
    Ready(u64, u64, MultiplexedConnection),
    /// The last attempt failed: none before then.
    Failed(Instant),
}

thread_local! {
    /// This thread's connection to each store, by store id.
    static CONNECTIONS: RefCell<Vec<(u64, Slot)>> = const { RefCell::new(Vec::new()) };
    static MADE: Cell<u64> = const { Cell::new(0) };
}

fn on_worker() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with("actix-server worker"))
}

/// This worker's connection to store `store` (with its number, for [`forget`]), if it has
/// one begun since the store's last failed call (`failures`, the store's count of calls that
/// found Redis unavailable: a connection older than a failure may be to a Redis that has gone,
/// and is made again). On a worker without one, a connection is begun on the worker's runtime
/// and `None` answered (the caller uses the shared connection until it is ready).
pub fn connection(
    store: u64,
    failures: u64,
    client: &redis::Client,
    timeout: Duration,
) -> Option<(u64, MultiplexedConnection)> {
    if !on_worker() {
        return None;
    }
    CONNECTIONS.with(|slots| {
        let mut slots = slots.borrow_mut();
        match slots.iter().find(|(id, _)| *id == store) {
            Some((_, Slot::Ready(number, begun, conn))) if *begun == failures => {
                return Some((*number, conn.clone()))
            }
            Some((_, Slot::Connecting)) => return None,
            Some((_, Slot::Failed(until))) if Instant::now() < *until => return None,
            _ => {}
        }
        slots.retain(|(id, _)| *id != store);
        slots.push((store, Slot::Connecting));
        let client = client.clone();
        // A worker's runtime is single-threaded: the task, and the connection's driver it
        // spawns, run on this thread.
        tokio::spawn(async move {
            let made =
                tokio::time::timeout(timeout * 4, client.get_multiplexed_async_connection()).await;
            let slot = match made {
                Ok(Ok(conn)) => {
                    let number = MADE.with(|made| {
                        made.set(made.get() + 1);
                        made.get()
                    });
                    Slot::Ready(number, failures, conn)
                }
                failed => {
                    let reason = match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => "no answer".to_owned(),
                    };
                    tracing::warn!(%reason, "worker's own Redis connection not made; using the shared one");
                    Slot::Failed(Instant::now() + RETRY_AFTER)
                }
            };
            CONNECTIONS.with(|slots| {
                let mut slots = slots.borrow_mut();
                slots.retain(|(id, _)| *id != store);
                slots.push((store, slot));
            });
        });
        None
    })
}

/// Drops this thread's connection `number` to `store` (a call on it failed as unavailable);
/// a successor already made is kept.
pub fn forget(store: u64, number: u64) {
    CONNECTIONS.with(|slots| {
        slots.borrow_mut().retain(|(id, slot)| {
            *id != store || !matches!(slot, Slot::Ready(n, _, _) if *n == number)
        })
    });
}
