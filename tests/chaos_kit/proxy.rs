//! A fault-injecting TCP proxy: it forwards 127.0.0.1:`port` to an upstream port, delaying each
//! chunk of bytes by a fixed latency, and holding a share of chunks back as a lost segment would
//! be (TCP retransmits a lost segment after its retransmission timeout, 200 ms at least on Linux,
//! and every later byte waits behind it). Bytes are never dropped or reordered: on a TCP
//! connection loss shows as latency, never as corruption. Portable, unlike a network namespace
//! with `tc netem`, and it needs no privileges.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::Rng;

/// What the proxy does to the bytes it forwards (each direction alike).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Added to every chunk, one way.
    pub delay: Duration,
    /// The share of chunks held back as lost (`0..=1`).
    pub loss: f64,
    /// How long a lost chunk is held back: the retransmission timeout.
    pub retransmit_after: Duration,
}

impl Faults {
    /// Forwards as is.
    pub const NONE: Faults = Faults {
        delay: Duration::ZERO,
        loss: 0.0,
        retransmit_after: Duration::from_millis(200),
    };
}

/// A running proxy; it stops when dropped (its runtime thread ends).
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    faults: Arc<std::sync::Mutex<Faults>>,
    held_back: Arc<AtomicU64>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FaultProxy {
    /// Starts a proxy to 127.0.0.1:`upstream` on a free port, forwarding as is until
    /// [`FaultProxy::set_faults`].
    pub fn start(upstream: u16) -> std::io::Result<FaultProxy> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let faults = Arc::new(std::sync::Mutex::new(Faults::NONE));
        let held_back = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (shared, held) = (faults.clone(), held_back.clone());
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                let accept = async {
                    let mut seed = 1u64;
                    while let Ok((client, _)) = listener.accept().await {
                        seed += 1;
                        let (faults, held) = (shared.clone(), held.clone());
                        tokio::spawn(serve(client, upstream, faults, held, seed));
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(FaultProxy {
            port,
            faults,
            held_back,
            _stop: stop,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes the faults for the bytes forwarded from now on (open connections too).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// How many chunks were held back as lost so far.
    pub fn held_back(&self) -> u64 {
        self.held_back.load(Ordering::Relaxed)
    }
}

async fn serve(
    client: TcpStream,
    upstream: u16,
    faults: Arc<std::sync::Mutex<Faults>>,
    held: Arc<AtomicU64>,
    seed: u64,
) {
    let Ok(server) = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, upstream))).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pipe(
        client_read,
        server_write,
        faults.clone(),
        held.clone(),
        seed * 2,
    );
    let down = pipe(server_read, client_write, faults, held, seed * 2 + 1);
    // Either side closing ends the connection.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Forwards one direction: a reader stamps each chunk with the time it may leave, a writer sends
/// it then, so chunks keep their order and a delay does not throttle the throughput.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<std::sync::Mutex<Faults>>,
    held: Arc<AtomicU64>,
    seed: u64,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut rng = Rng(seed);
        let mut last_due = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let f = *faults.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Instant::now() + f.delay;
            if f.loss > 0.0 && (rng.below(1_000_000) as f64) < f.loss * 1_000_000.0 {
                held.fetch_add(1, Ordering::Relaxed);
                due += f.retransmit_after;
            }
            // In order: nothing overtakes a chunk held back before it.
            due = due.max(last_due);
            last_due = due;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    // The reader ending drops the channel; the writer sends what is left, then ends too.
    tokio::join!(writer, reader);
}
