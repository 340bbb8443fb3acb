//! Stopping a node in order (in the style of tokio-rs/mini-redis's `Shutdown`): one
//! [`ShutdownSignal`] is fired once by `startup::Application::run_until_stopped` (or `finish`,
//! for a command that never served), and every
//! background task holds a [`Shutdown`] listener that it selects on between steps of its work.
//!
//! # Order
//!
//! 1. The HTTP server stops (actix-web on SIGTERM/SIGINT): no new connections, in-flight
//!    requests finish (at most `shutdown_timeout`). Events acknowledged until then are in Redis
//!    or durably in the outage spool.
//! 2. The signal fires; the refresher and the breaker's probe stop at their next await (a spool
//!    replay cut short is safe: the spool is only emptied after a whole replay, and the events
//!    script's dedupe makes the next start's replay count each event once). Both are joined, so
//!    nothing still waits on Redis while the runtime shuts down.
//! 3. The refresher writes the catalog cache a last time; the spool stays on disk for the next
//!    start. The exporter runs one last round (this node's served counts, and the outbox as the
//!    last requests left it); what it cannot write stays in the outbox for any node's next
//!    round.

use tokio::sync::watch;

/// Fires the shutdown, once, for every [`Shutdown`] made from it.
pub struct ShutdownSignal {
    sender: watch::Sender<bool>,
}

/// A task's view of the shutdown: resolves [`recv`](Shutdown::recv) once it fired.
#[derive(Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        Self {
            sender: watch::channel(false).0,
        }
    }
}

impl ShutdownSignal {
    pub fn listener(&self) -> Shutdown {
        Shutdown {
            receiver: self.sender.subscribe(),
        }
    }

    pub fn fire(&self) {
        self.sender.send_replace(true);
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once the shutdown fired (at once if it already has). Cancel-safe: select on it.
    pub async fn recv(&mut self) {
        // An error means the signal was dropped, which only happens when its owner is gone:
        // treat it as the shutdown too.
        let _ = self.receiver.wait_for(|fired| *fired).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_listener_sees_the_signal_once_fired() {
        let signal = ShutdownSignal::default();
        let (mut a, mut b) = (signal.listener(), signal.listener());
        assert!(!a.is_shutdown());
        signal.fire();
        a.recv().await;
        b.recv().await;
        assert!(a.is_shutdown() && b.is_shutdown());
        let mut late = signal.listener();
        late.recv().await;
    }
}
