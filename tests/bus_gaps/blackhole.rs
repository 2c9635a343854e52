//! A TCP proxy in front of a server that can go silent: after [`Blackhole::swallow`], every
//! connection open at that moment stays open but forwards nothing more, in either direction, as
//! a server behind a dead link or a stuck load balancer would. Connections made afterwards are
//! forwarded as usual, so a client that gives up on its connection and opens a new one recovers;
//! between [`Blackhole::go_silent`] and [`Blackhole::heal`], new connections are silent too.
//! After [`Blackhole::swallow_after`], the first connection that forwards a reply holding the
//! given bytes goes silent right after it: the server's answer arrives, nothing after it does.
//! After [`Blackhole::cut_after`], the first connection that forwarded a reply holding one marker
//! is closed when its client next sends a request holding another, before that request reaches
//! the server: a connection the server killed between two commands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy; it stops with the test's runtime.
pub(crate) struct Blackhole {
    port: u16,
    /// Bumped by each `swallow`: a connection forwards until it changes.
    epoch: watch::Sender<u64>,
    /// Whether new connections are silent from the start.
    silent: Arc<AtomicBool>,
    /// Bytes whose first forwarded reply silences its connection (taken by that connection).
    marker: Marker,
    /// The reply and request markers of `cut_after` (taken by the connection it cuts).
    cut: Cut,
}

type Marker = Arc<Mutex<Option<Vec<u8>>>>;
type Cut = Arc<Mutex<Option<(Vec<u8>, Vec<u8>)>>>;

impl Blackhole {
    /// Listens on a free loopback port and forwards every connection to 127.0.0.1:`target`.
    pub(crate) async fn start(target: u16) -> Blackhole {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (epoch, watch) = watch::channel(0u64);
        let silent = Arc::new(AtomicBool::new(false));
        let new_ones = silent.clone();
        let marker = Marker::default();
        let armed = marker.clone();
        let cut = Cut::default();
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if new_ones.load(Ordering::SeqCst) {
                    tokio::spawn(async move {
                        let _held = inbound;
                        std::future::pending::<()>().await;
                    });
                    continue;
                }
                let born = *watch.borrow();
                let triggers = Triggers {
                    marker: armed.clone(),
                    cut: cuts.clone(),
                };
                tokio::spawn(forward(inbound, target, born, watch.clone(), triggers));
            }
        });
        Blackhole {
            port,
            epoch,
            silent,
            marker,
            cut,
        }
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection open now goes silent for good (still open, nothing forwarded).
    pub(crate) fn swallow(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Like [`Blackhole::swallow`], and every connection made from now on is silent too, until
    /// [`Blackhole::heal`]: a server that cannot be reached at all.
    pub(crate) fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
        self.swallow();
    }

    /// The first connection to forward a server reply that holds `marker` goes silent right
    /// after forwarding it; the others go on.
    pub(crate) fn swallow_after(&self, marker: &[u8]) {
        *self.marker.lock().expect("marker") = Some(marker.to_vec());
    }

    /// Whether a connection went silent after the marker of [`Blackhole::swallow_after`].
    pub(crate) fn swallowed(&self) -> bool {
        self.marker.lock().expect("marker").is_none()
    }

    /// The first connection to forward a server reply that holds `reply` is closed, both ways,
    /// when its client next sends a request that holds `request`; that request is not forwarded.
    pub(crate) fn cut_after(&self, reply: &[u8], request: &[u8]) {
        *self.cut.lock().expect("cut") = Some((reply.to_vec(), request.to_vec()));
    }

    /// Whether the connection of [`Blackhole::cut_after`] was cut.
    pub(crate) fn was_cut(&self) -> bool {
        self.cut.lock().expect("cut").is_none()
    }

    /// New connections are forwarded again (the silent ones stay silent).
    pub(crate) fn heal(&self) {
        self.silent.store(false, Ordering::SeqCst);
    }
}

async fn forward(
    inbound: TcpStream,
    target: u16,
    born: u64,
    mut epoch: watch::Receiver<u64>,
    triggers: Triggers,
) {
    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut from_client, mut to_client) = inbound.into_split();
    let (mut from_server, mut to_server) = outbound.into_split();
    let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    // Whether this connection forwarded the reply marker of `cut_after`.
    let mut primed = false;
    if *epoch.borrow_and_update() != born {
        std::future::pending::<()>().await;
    }
    loop {
        tokio::select! {
            _ = epoch.changed() => {
                // Silent: the sockets stay open (this task never returns) and are never
                // touched again.
                std::future::pending::<()>().await;
            }
            n = from_client.read(&mut up) => match n {
                Ok(n) if n > 0 => {
                    if primed && triggers.cuts_at(&up[..n]) {
                        // Dropping both halves of both sockets closes the connection.
                        return;
                    }
                    if to_server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            n = from_server.read(&mut down) => match n {
                Ok(n) if n > 0 => {
                    if to_client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                    primed = primed || triggers.primes(&down[..n]);
                    if holds_marker(&triggers.marker, &down[..n]) {
                        std::future::pending::<()>().await;
                    }
                }
                _ => return,
            },
        }
    }
}

/// What a connection watches its traffic for.
struct Triggers {
    marker: Marker,
    cut: Cut,
}

impl Triggers {
    /// Whether a reply holds the armed reply marker of `cut_after`.
    fn primes(&self, reply: &[u8]) -> bool {
        let armed = self.cut.lock().expect("cut");
        armed.as_ref().is_some_and(|(m, _)| holds(reply, m))
    }

    /// Whether a request holds the armed request marker; if so it is disarmed (one cut only).
    fn cuts_at(&self, request: &[u8]) -> bool {
        let mut armed = self.cut.lock().expect("cut");
        let found = armed.as_ref().is_some_and(|(_, m)| holds(request, m));
        if found {
            *armed = None;
        }
        found
    }
}

fn holds(chunk: &[u8], marker: &[u8]) -> bool {
    chunk.windows(marker.len()).any(|w| w == marker)
}

/// Whether `chunk` holds the armed marker; if so the marker is disarmed (one connection only).
fn holds_marker(marker: &Marker, chunk: &[u8]) -> bool {
    let mut armed = marker.lock().expect("marker");
    let found = armed.as_deref().is_some_and(|m| holds(chunk, m));
    if found {
        *armed = None;
    }
    found
}
