//! The Redis Streams transport: where it travels, connecting a cache to it, and the receivers,
//! one per stream (`receiver.rs`), that hand what they read to the engine (invalidations) and to
//! the application (events). The publisher is `publisher.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, Config as FredConfig, StreamsInterface, Value};

use super::publisher::{Publisher, PublisherSetup};
use super::receiver::Receiver;
use super::stats::Counters;
use super::streams::{Position, StreamInfo, event_stream, parse_id};
use super::{EventSink, NoticeSink};
use crate::config::{
    BackendConfig, CacheConfig, DEFAULT_BUS_HANDLER_TIMEOUT, DEFAULT_BUS_RETENTION,
};
use crate::error::{Error, ErrorKind, Result};
use crate::layer::Layer;
use crate::store::redis::{RedisTarget, fred_config, reconnect_policy};

/// How long `connect` waits for the server before it goes on and lets the clients connect in
/// the background.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// The event shards of a cluster bus unless `[cache.bus] event_shards` says otherwise: 3, one
/// per primary of the smallest cluster `redis-cli --cluster create` builds. Every shard is a
/// reader client of its own in every process, holding one connection to each primary.
const DEFAULT_CLUSTER_SHARDS: usize = 3;

/// Where and how the bus travels.
pub(crate) struct BusSetup {
    fred: FredConfig,
    clustered: bool,
    timeout: Duration,
    /// `[cache.bus] event_shards`; `None` decides at connect time.
    event_shards: Option<usize>,
    retention: u64,
    /// `[cache.bus] handler_timeout_ms`.
    handler_timeout: Duration,
    /// The layer whose Redis the bus rides on, without `[cache.bus]`.
    rides_on: Option<Layer>,
}

/// Where the bus travels: `[cache.bus]`, else the Redis of L2, else the cluster of L3.
pub(crate) fn bus_config(config: &CacheConfig) -> Result<Option<BusSetup>> {
    if let Some(bus) = &config.bus {
        let path = "cache.bus.url";
        let target = RedisTarget::bus(&bus.url, path)?;
        return Ok(Some(BusSetup {
            fred: fred_config(&target, None, path)?,
            clustered: target.is_cluster(),
            timeout: Duration::from_millis(250),
            event_shards: bus.event_shards,
            retention: bus.retention,
            handler_timeout: bus.handler_timeout,
            rides_on: None,
        }));
    }
    for (layer, cfg) in [
        (Layer::L2, &config.layers.l2),
        (Layer::L3, &config.layers.l3),
    ] {
        let Some(cfg) = cfg else { continue };
        let path = format!("cache.layers.{}.url", layer.name());
        let (target, tls_ca_file) = match &cfg.backend {
            BackendConfig::Redis(redis) => {
                (RedisTarget::server(&redis.url, &path)?, &redis.tls_ca_file)
            }
            BackendConfig::RedisCluster(cluster) => (
                RedisTarget::cluster(&cluster.urls, &path)?,
                &cluster.tls_ca_file,
            ),
            _ => continue,
        };
        return Ok(Some(BusSetup {
            fred: fred_config(&target, tls_ca_file.as_deref(), &path)?,
            clustered: target.is_cluster(),
            timeout: cfg.timeout,
            event_shards: None,
            retention: DEFAULT_BUS_RETENTION,
            handler_timeout: DEFAULT_BUS_HANDLER_TIMEOUT,
            rides_on: Some(layer),
        }));
    }
    Ok(None)
}

fn backend(what: &str, e: &fred::error::Error) -> Error {
    Error::new(ErrorKind::Backend, format!("bus {what}: {}", e.details()))
}

/// The receiving half, connected but not started: one reader per stream, each with the id to
/// read after. [`Receivers::start`] hands them their sinks; dropped unstarted, they quit.
pub(crate) struct Receivers {
    readers: Vec<(Client, String, Option<Position>)>,
    origin: u64,
    closed: Arc<AtomicBool>,
    counters: Arc<Counters>,
    handler_timeout: Duration,
    /// The bus timeout: a read of the main stream unanswered for longer suspends L1.
    timeout: Duration,
}

impl std::fmt::Debug for Receivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receivers")
            .field("streams", &self.readers.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        if self.readers.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            for (reader, _, _) in self.readers.drain(..) {
                runtime.spawn(async move {
                    let _ = reader.quit().await;
                });
            }
        }
    }
}

impl Receivers {
    /// Starts one detached receiver per stream. Each hands invalidations to `notices` and events
    /// to `events` (when there is an event sink), and ends once the publisher or the notice sink
    /// is gone.
    pub(crate) fn start(
        mut self,
        notices: Weak<dyn NoticeSink>,
        events: Option<Weak<dyn EventSink>>,
        instruments: Arc<crate::observe::Instruments>,
    ) {
        for (i, (reader, stream, start)) in self.readers.drain(..).enumerate() {
            let receiver = Receiver {
                reader,
                stream,
                // The first stream is the main one, which carries the invalidations.
                carries_notices: i == 0,
                suspended: AtomicU8::new(0),
                suspend_calls: AtomicU64::new(0),
                trusted_within: self.timeout,
                origin: self.origin,
                notices: notices.clone(),
                events: events.clone(),
                closed: self.closed.clone(),
                counters: self.counters.clone(),
                handler_timeout: self.handler_timeout,
                instruments: instruments.clone(),
            };
            if start.is_none() {
                // Its stream could not be asked: what it carries cannot be heard until it can,
                // and the cache is about to be used.
                receiver.suspend(super::Doubt::Outage);
            }
            drop(tokio::spawn(receiver.run(start)));
        }
    }
}

/// A connection attempt that the server does not complete (it accepted the socket and went
/// silent) is given up after [`CONNECT_WAIT`] and tried again, rather than after fred's default of
/// 10 s: the receivers and the publisher's retries renew connections that stopped answering, and
/// must not wait that long on the new one.
fn bounded_connecting(connection: &mut fred::types::config::ConnectionConfig) {
    connection.connection_timeout = CONNECT_WAIT;
    connection.internal_command_timeout = CONNECT_WAIT;
}

/// Connects a cache to the bus: the publisher, and the receivers, which read from the newest id
/// of each stream at this moment once started, so nothing published after this returns is
/// missed.
pub(crate) async fn connect(setup: BusSetup, key_prefix: &str) -> Result<(Publisher, Receivers)> {
    let mut config = setup.fred;
    config.version = fred::types::RespVersion::RESP3;
    let policy = reconnect_policy();
    let pool = Builder::from_config(config.clone())
        .with_performance_config(|p| p.default_command_timeout = setup.timeout)
        .with_connection_config(bounded_connecting)
        .set_policy(policy.clone())
        .build_pool(1)
        .map_err(|e| backend("setup", &e))?;
    drop(pool.connect()); // the connection task runs on; the handle is not needed
    let reachable = matches!(
        tokio::time::timeout(CONNECT_WAIT, pool.wait_for_connect()).await,
        Ok(Ok(()))
    );
    if !reachable {
        tracing::warn!(
            "the invalidation bus is not reachable at start-up; retrying in the background"
        );
    }
    let shards = match setup.event_shards {
        Some(n) => n,
        None if setup.clustered => DEFAULT_CLUSTER_SHARDS,
        None => 1,
    };
    let stream = format!("{key_prefix}bus");
    let events: Vec<String> = (0..shards)
        .map(|i| event_stream(key_prefix, i, shards))
        .collect();
    // One reader per stream: a blocking XREAD holds its client until it returns, and on a
    // cluster one XREAD cannot span the slots of several streams.
    let mut readers = Vec::with_capacity(shards + 1);
    for _ in 0..=shards {
        let reader = Builder::from_config(config.clone())
            .set_policy(policy.clone())
            // A read cut by a lost connection must surface as an error, not be silently re-sent:
            // the receiver renews what it needs and reads again from its position, inclusive.
            .with_connection_config(|c| {
                bounded_connecting(c);
                c.max_command_attempts = 1;
            })
            .build()
            .map_err(|e| backend("setup", &e))?;
        drop(reader.connect());
        readers.push(reader);
    }
    let streams: Vec<String> = std::iter::once(&stream).chain(&events).cloned().collect();
    // Fix every starting point before returning, so that nothing published after the cache is
    // built can be missed by its receivers. An unreachable server is not waited for twice: the
    // receivers find their starting points once it answers, and drop L1 then (what was sent
    // meanwhile is unknown).
    // Each reader on its own deadline: one slow reader must not leave the others unstarted too
    // (each such receiver drops L1 once it starts).
    let starts = if reachable {
        let starts = readers
            .iter()
            .zip(&streams)
            .map(|(reader, stream)| async move {
                let start = async {
                    let _ = reader.wait_for_connect().await;
                    let info = stream_info(reader, stream).await.ok()?;
                    Some(Position::start(info.as_ref()))
                };
                tokio::time::timeout(CONNECT_WAIT, start)
                    .await
                    .ok()
                    .flatten()
            });
        futures_util::future::join_all(starts).await
    } else {
        vec![None; streams.len()]
    };
    let origin = rand::random();
    let closed = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let receivers = Receivers {
        readers: readers
            .into_iter()
            .zip(streams)
            .zip(starts)
            .map(|((reader, stream), start)| (reader, stream, start))
            .collect(),
        origin,
        closed: closed.clone(),
        counters: counters.clone(),
        handler_timeout: setup.handler_timeout,
        timeout: setup.timeout,
    };
    let publisher = Publisher::start(PublisherSetup {
        pool,
        origin,
        stream,
        events,
        retention: setup.retention,
        timeout: setup.timeout,
        counters,
        closed,
        rides_on: setup.rides_on,
    });
    Ok((publisher, receivers))
}

/// `XINFO STREAM`, or `None` when the stream does not exist.
pub(super) async fn stream_info(
    reader: &Client,
    stream: &str,
) -> std::result::Result<Option<StreamInfo>, fred::error::Error> {
    let info: HashMap<String, Value> = match reader.xinfo_stream(stream, false, None).await {
        Ok(info) => info,
        Err(e) if e.details().to_ascii_lowercase().contains("no such key") => return Ok(None),
        Err(e) => return Err(e),
    };
    let id = |v: &Value| v.as_str().map(|s| parse_id(&s));
    Ok(Some(StreamInfo {
        length: info.get("length").and_then(Value::as_u64).unwrap_or(0),
        last_generated: info.get("last-generated-id").and_then(id).unwrap_or((0, 0)),
        // `first-entry` is `[id, [field, value, …]]`, or nil for an empty stream.
        first: match info.get("first-entry") {
            Some(Value::Array(entry)) => entry.first().and_then(id),
            _ => None,
        },
        entries_added: info.get("entries-added").and_then(Value::as_u64),
    }))
}

/// Sleeps `pause`, cut short as soon as one of `clients` has reconnected: a retry right then
/// gets through, where one after the whole pause would leave the other processes waiting for
/// what this one queued (`docs/guarantees.md#g4-gap-detection`).
pub(super) async fn pause_until_reconnected(clients: &[Client], pause: Duration) {
    use fred::interfaces::EventInterface as _;
    let mut reconnects: Vec<_> = clients.iter().map(|c| c.reconnect_rx()).collect();
    if reconnects.is_empty() {
        tokio::time::sleep(pause).await;
        return;
    }
    let any = futures_util::future::select_all(reconnects.iter_mut().map(|rx| Box::pin(rx.recv())));
    let _ = tokio::time::timeout(pause, any).await;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::streams::lost_after;
    use super::*;

    #[test]
    fn cluster_urls_become_seed_nodes() {
        let target = |url: &str| {
            RedisTarget::bus(&crate::config::Secret::new(url), "cache.bus.url")
                .unwrap_or_else(|e| panic!("{url}: {e}"))
        };
        let cluster = target("redis-cluster://u:p@a:7000?node=b:7001&node=c:7002");
        assert!(cluster.is_cluster());
        let fred = fred_config(&cluster, None, "cache.bus.url").expect("fred config");
        assert_eq!(fred.username.as_deref(), Some("u"));
        assert_eq!(fred.password.as_deref(), Some("p"));
        let fred::prelude::ServerConfig::Clustered { hosts, .. } = &fred.server else {
            panic!("a cluster config");
        };
        let hosts: Vec<(String, u16)> =
            hosts.iter().map(|h| (h.host.to_string(), h.port)).collect();
        assert_eq!(
            hosts,
            [("a".into(), 7000), ("b".into(), 7001), ("c".into(), 7002)]
        );
        assert!(target("RedisS-Cluster://a:7000").is_cluster());
        let single = target("redis://a:6379/3");
        assert!(!single.is_cluster());
        let fred = fred_config(&single, None, "cache.bus.url").expect("fred config");
        assert_eq!(fred.database, Some(3));
    }

    /// A `redis-server` on a free loopback port, killed on drop.
    pub(crate) struct Server {
        child: std::process::Child,
        pub(crate) port: u16,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub(crate) fn redis_server() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port }
    }

    /// `connected_clients` of `INFO clients`, counting `client`'s own connection.
    async fn connected(client: &Client) -> usize {
        let info: String = client
            .info(Some(fred::types::InfoKind::Clients))
            .await
            .expect("info");
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("connected_clients")
    }

    /// A cache that is dropped closes its bus connections (publisher and every reader).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_cache_closes_its_bus_connections() {
        let server = redis_server();
        let url = format!("redis://127.0.0.1:{}", server.port);
        let client = Builder::from_config(FredConfig::from_url(&url).expect("url"))
            .build()
            .expect("client");
        client.init().await.expect("connect");
        let before = connected(&client).await;
        let toml = format!(
            "[cache.bus]\nurl = {url:?}\nevent_shards = 4\n[cache.layers.l1]\nmax_size = 10"
        );
        let config = crate::Config::from_toml_str(&toml).expect("config");
        let cache = crate::Cache::from_config(&config.cache)
            .await
            .expect("cache");
        assert!(cache.has_bus());
        // The publisher, the main stream's reader and four event readers.
        assert_eq!(connected(&client).await, before + 6);
        drop(cache);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while connected(&client).await > before {
            assert!(
                std::time::Instant::now() < deadline,
                "bus connections left open: {}",
                connected(&client).await - before
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = client.quit().await;
    }

    /// `stream_info` reads what `XINFO STREAM` answers, before and after a trim.
    #[tokio::test]
    async fn stream_info_reads_a_real_server() {
        let server = redis_server();
        let url = format!("redis://127.0.0.1:{}", server.port);
        let mut config = FredConfig::from_url(&url).expect("url");
        config.version = fred::types::RespVersion::RESP3;
        let client = Builder::from_config(config).build().expect("client");
        client.init().await.expect("connect");
        assert_eq!(stream_info(&client, "s").await.expect("xinfo"), None);
        let mut ids = Vec::new();
        for i in 0..3 {
            let id: String = client
                .xadd("s", false, None, "*", vec![("m", i)])
                .await
                .expect("xadd");
            ids.push(parse_id(&id));
        }
        let info = stream_info(&client, "s").await.expect("xinfo");
        assert_eq!(
            info,
            Some(StreamInfo {
                length: 3,
                last_generated: ids[2],
                first: Some(ids[0]),
                entries_added: Some(3),
            })
        );
        let _: u64 = client.xtrim("s", ("MAXLEN", 0)).await.expect("xtrim");
        let info = stream_info(&client, "s").await.expect("xinfo");
        assert_eq!(
            info,
            Some(StreamInfo {
                length: 0,
                last_generated: ids[2],
                first: None,
                entries_added: Some(3),
            })
        );
        let last = format!("{}-{}", ids[0].0, ids[0].1);
        assert!(lost_after(info.as_ref(), &Position::after(last)));
        let _ = client.quit().await;
    }
}
