//! A TCP proxy in front of a server, whose server can vanish as a host behind an address does
//! in a failover or a dropped route: every connection open at that moment, and every one made
//! while it is gone, takes bytes and never answers or closes (no reset ever comes). When the
//! server is back, new connections pass again; the old ones stay silent for good.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct VanishingProxy {
    pub port: u16,
    state: Arc<State>,
    accepting: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Connections made before the last vanishing belong to an older generation: silent.
    generation: AtomicU64,
    gone: AtomicBool,
}

impl VanishingProxy {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let accepting = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let state = state.clone();
                    tokio::spawn(async move { relay(client, target, state).await });
                }
            }
        });
        Self {
            port,
            state,
            accepting,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server vanishes: open connections go silent, new ones are silent from the start.
    pub fn vanish(&self) {
        self.state.gone.store(true, Ordering::SeqCst);
        self.state.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The server is reachable again, through new connections only.
    pub fn come_back(&self) {
        self.state.gone.store(false, Ordering::SeqCst);
    }
}

impl Drop for VanishingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn relay(client: TcpStream, target: u16, state: Arc<State>) {
    let generation = state.generation.load(Ordering::SeqCst);
    let (mut client_read, mut client_write) = client.into_split();
    if state.gone.load(Ordering::SeqCst) {
        // Swallowed: read (so the sender never sees a full window) and drop.
        let mut buf = [0u8; 4096];
        while matches!(client_read.read(&mut buf).await, Ok(n) if n > 0) {}
        drop(client_write);
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut server_read, mut server_write) = server.into_split();
    let silent = {
        let state = state.clone();
        move || state.generation.load(Ordering::SeqCst) != generation
    };
    let upstream = {
        let silent = silent.clone();
        async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = client_read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if !silent() && server_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let downstream = async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if !silent() && client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        // Left open: a vanished peer never closes.
        std::future::pending::<()>().await;
    };
    tokio::join!(upstream, downstream);
}
