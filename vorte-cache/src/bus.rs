//! The invalidation bus: carries invalidations and events between processes on Redis Streams.
//!
//! Every process appends what it invalidates (deleted or rewritten keys, new tag versions,
//! flushes) to the main stream, `<key_prefix>bus`, and the events it emits to one of N event
//! streams, and reads every stream from dedicated connections with `XREAD BLOCK`. Streams rather
//! than pub/sub, because a stream keeps what was sent while a receiver was away: after a
//! reconnect, each receiver reads on from the last id it saw, so a brief disconnection loses
//! nothing (SPEC G4, and events after a reconnect).
//!
//! Invalidations share one stream because their relative order matters (a flush, then a tag
//! version, then a delete must be applied in that order). Events only need their order per event
//! name, so they are spread over `event_shards` streams by a stable hash of the name: on a Redis
//! Cluster one stream key lives on one primary, and one stream for every event would put all of
//! `emit`'s traffic on one node. Each event stream's key carries a hash tag chosen so that the N
//! streams sit in N evenly spread slot ranges, hence on different primaries under the usual even
//! slot split (see [`event_stream`]). Events are therefore not ordered relative to invalidations,
//! nor relative to events of another name.
//!
//! Every stream is capped by `XADD MAXLEN ~ retention` (`[cache.bus] retention`, default 100,000;
//! the defaults apply when the bus rides on L2 or L3), which keeps at least that many entries.
//! A receiver that comes back from a reconnection to find entries it had not read trimmed away
//! has lost messages (an event's handlers may be what invalidates), so it drops its whole L1 and
//! its memoised tag versions, and logs why ([`lost_after`] says how that is told).
//!
//! `event_shards` defaults to 1 on a single Redis and to 3 on a cluster (one stream per primary of
//! the smallest cluster; set it to the number of primaries for a larger one). The default is a
//! constant, not read off the cluster's topology, because every process must use the same number,
//! or events land on streams others do not read: processes started before and after a resharding
//! would otherwise disagree.
//!
//! Each message carries the id of the cache that sent it, which skips its own messages because it
//! applied them before publishing; several caches in one process (tests use them to stand in for
//! processes) still hear each other. Events also carry the sending process's id: they are run by
//! the global cache of every *other* process, never twice in the emitting one.

use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub(crate) use redis_stream::{Bus, bus_config};

/// What one process tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Notice {
    /// These keys were deleted or rewritten: drop their L1 copies.
    Keys { keys: Vec<String> },
    /// A tag has a new version.
    Tag { tag: String, version: u64 },
    /// Everything under the prefix was flushed.
    Flush,
    /// An event for the `#[on_event]` handlers.
    Event {
        event: String,
        payload: serde_json::Value,
    },
}

#[cfg(feature = "redis")]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    /// The sending cache's id.
    pub(crate) origin: u64,
    /// The sending process's id.
    #[serde(default)]
    pub(crate) process: u64,
    #[serde(flatten)]
    pub(crate) notice: Notice,
}

/// A stream id `ms-seq` as a comparable pair.
#[cfg(feature = "redis")]
fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Which of `shards` event streams carries `event`.
///
/// xxh3 with no seed is specified byte for byte, so every process, on every platform and in every
/// version, sends one event name to the same stream (one reader, so its events keep their order).
#[cfg(feature = "redis")]
fn event_shard(event: &str, shards: usize) -> usize {
    let shards = shards.max(1) as u64;
    // The remainder is below `shards`, a usize, so the cast cannot truncate.
    (xxhash_rust::xxh3::xxh3_64(event.as_bytes()) % shards) as usize
}

/// How many candidate hash tags [`event_stream`] tries before giving up on placing a shard. The
/// narrowest target (64 shards) is 128 slots of 16,384, so 10,000 tries all miss with a chance of
/// about e⁻⁷⁸; only a `key_prefix` that pins the slot exhausts them, in well under a second.
#[cfg(feature = "redis")]
const TAG_SEARCH: u32 = 10_000;

/// The key of event stream `shard` of `shards`: `<key_prefix>bus:ev:<shard>/<shards>:{<tag>}`.
///
/// A cluster places a key by the CRC16 slot of its hash tag, and the usual even split gives the
/// primaries consecutive slot ranges of equal size. So shard `i`'s tag is the first of "0", "1",
/// "2", … whose key falls in the middle half of the slot range [i·16384/N, (i+1)·16384/N): shards
/// on different ranges land on different primaries, and the middle half keeps a tag off a range's
/// edges, where a split rounded the other way (or a moved slot) would put it on a neighbour.
/// The whole key is hashed, not just the tag, so a `key_prefix` holding braces of its own is
/// accounted for; if the prefix pins every key to one slot, no tag can help and the shard number
/// is used as the tag. The search is pure, so every process derives the same names.
#[cfg(feature = "redis")]
fn event_stream(key_prefix: &str, shard: usize, shards: usize) -> String {
    const SLOTS: usize = 16_384;
    let shards = shards.max(1);
    let (lo, hi) = (shard * SLOTS / shards, (shard + 1) * SLOTS / shards);
    let margin = (hi - lo) / 4;
    let wanted = lo + margin..hi - margin;
    let key = |tag: &str| format!("{key_prefix}bus:ev:{shard}/{shards}:{{{tag}}}");
    (0..TAG_SEARCH)
        .map(|n| key(&n.to_string()))
        .find(|k| wanted.contains(&usize::from(fred::util::redis_keyslot(k.as_bytes()))))
        .unwrap_or_else(|| key(&shard.to_string()))
}

/// What `XINFO STREAM` says about a stream, as far as gap detection needs it.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamInfo {
    /// How many entries it holds.
    length: u64,
    /// The newest id ever added (kept when the entries are trimmed away).
    last_generated: (u64, u64),
    /// The oldest id it holds.
    first: Option<(u64, u64)>,
    /// How many entries were ever added (Redis ≥ 7.0).
    entries_added: Option<u64>,
}

/// The id a receiver that has never read `stream` starts after: the newest id it ever had, so
/// that everything appended from now on is read, and `0-0` for a stream that does not exist.
#[cfg(feature = "redis")]
fn start_id(info: Option<&StreamInfo>) -> String {
    let (ms, seq) = info.map_or((0, 0), |i| i.last_generated);
    format!("{ms}-{seq}")
}

/// Whether entries after `last` were removed before the receiver read them.
///
/// `info` is `None` when the stream no longer exists. Trimming removes the oldest entries, so
/// after `last` something was lost when:
/// - `last` is `0-0` (the stream did not exist when the receiver started, and it has read nothing
///   since): every entry was added after the start, so more added than held means some went
///   (`entries-added`, Redis ≥ 7.0; an older server cannot tell);
/// - the stream is empty although it reached past `last` (everything was trimmed);
/// - the stream is gone (a Redis restarted without persistence): what it held after `last` cannot
///   be known, so it counts as lost;
/// - its oldest entry is past `last`. This can also hold when `last` was the only entry trimmed
///   away, which drops L1 for nothing: a rare cost on the safe side.
#[cfg(feature = "redis")]
fn lost_after(info: Option<&StreamInfo>, last: &str) -> bool {
    let last = parse_id(last);
    let Some(info) = info else {
        return last != (0, 0);
    };
    if last == (0, 0) {
        return info.entries_added.is_some_and(|added| added > info.length);
    }
    match info.first {
        None => info.last_generated > last,
        Some(first) => first > last,
    }
}

#[cfg(feature = "redis")]
mod redis_stream {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use fred::prelude::{
        Builder, Client, ClientLike, Config as FredConfig, Pool, ReconnectPolicy, StreamsInterface,
        Value,
    };

    use super::{Message, Notice, StreamInfo, event_shard, event_stream, lost_after, parse_id};
    use crate::config::{BackendConfig, CacheConfig, DEFAULT_BUS_RETENTION};
    use crate::error::{Error, ErrorKind, Result};
    use crate::router::Router;
    use crate::store::redis::{RedisTarget, fred_config};

    /// How long one `XREAD` blocks before the receiver checks that its cache still exists.
    const BLOCK: Duration = Duration::from_millis(500);

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
            }));
        }
        for (layer, cfg) in [("l2", &config.layers.l2), ("l3", &config.layers.l3)] {
            let Some(cfg) = cfg else { continue };
            let path = format!("cache.layers.{layer}.url");
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
            }));
        }
        Ok(None)
    }

    /// One cache's connection to the bus.
    pub(crate) struct Bus {
        publisher: Pool,
        /// The main stream: invalidations.
        stream: String,
        /// The event streams, indexed by [`event_shard`]; never empty.
        events: Vec<String>,
        /// `MAXLEN ~` of every stream.
        retention: i64,
        timeout: Duration,
        /// Set when the bus is dropped: tells the receivers to quit.
        closed: Arc<AtomicBool>,
    }

    impl std::fmt::Debug for Bus {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Bus")
                .field("stream", &self.stream)
                .field("events", &self.events)
                .field("retention", &self.retention)
                .finish_non_exhaustive()
        }
    }

    impl Drop for Bus {
        /// Closes every connection. fred keeps a client connected (and reconnecting) until it is
        /// told to quit, whether or not anyone holds it, so the receivers are not aborted: they
        /// see `closed` within one blocking read and quit their own clients.
        fn drop(&mut self) {
            self.closed.store(true, Ordering::Release);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let publisher = self.publisher.clone();
                runtime.spawn(async move {
                    let _ = publisher.quit().await;
                });
            }
        }
    }

    fn backend(what: &str, e: &fred::error::Error) -> Error {
        Error::new(ErrorKind::Backend, format!("bus {what}: {}", e.details()))
    }

    impl Bus {
        /// Connects the publisher and starts one receiver per stream, which apply other
        /// processes' notices to `router` for as long as it exists.
        pub(crate) async fn connect(
            setup: BusSetup,
            key_prefix: &str,
            router: Weak<Router>,
        ) -> Result<Bus> {
            let mut config = setup.fred;
            config.version = fred::types::RespVersion::RESP3;
            let policy = ReconnectPolicy::new_exponential(0, 50, 2_000, 2);
            let publisher = Builder::from_config(config.clone())
                .with_performance_config(|p| p.default_command_timeout = setup.timeout)
                .set_policy(policy.clone())
                .build_pool(1)
                .map_err(|e| backend("setup", &e))?;
            drop(publisher.connect()); // the connection task runs on; the handle is not needed
            let reachable = matches!(
                tokio::time::timeout(CONNECT_WAIT, publisher.wait_for_connect()).await,
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
            // One reader per stream: a blocking XREAD holds its client until it returns, and on
            // a cluster one XREAD cannot span the slots of several streams.
            let mut readers = Vec::with_capacity(shards + 1);
            for _ in 0..=shards {
                let reader = Builder::from_config(config.clone())
                    .set_policy(policy.clone())
                    // An XREAD cut by a lost connection must surface as an error, not be silently
                    // re-sent: the receiver has to check for a gap after every reconnection.
                    .with_connection_config(|c| c.max_command_attempts = 1)
                    .build()
                    .map_err(|e| backend("setup", &e))?;
                drop(reader.connect());
                readers.push(reader);
            }
            let streams: Vec<String> = std::iter::once(&stream).chain(&events).cloned().collect();
            // Fix every starting point before returning, so that nothing published after the
            // cache is built can be missed by its receivers. An unreachable server is not waited
            // for twice: the receivers find their starting points once it answers.
            let starts = if reachable {
                let starts = readers
                    .iter()
                    .zip(&streams)
                    .map(|(reader, stream)| async move {
                        let _ = reader.wait_for_connect().await;
                        let info = stream_info(reader, stream).await.ok()?;
                        Some(super::start_id(info.as_ref()))
                    });
                tokio::time::timeout(CONNECT_WAIT, futures_util::future::join_all(starts))
                    .await
                    .ok()
            } else {
                None
            };
            let starts = starts.unwrap_or_else(|| vec![None; streams.len()]);
            let closed = Arc::new(AtomicBool::new(false));
            for ((reader, stream), start) in readers.into_iter().zip(streams).zip(starts) {
                let receiver = Receiver {
                    reader,
                    stream,
                    router: router.clone(),
                    closed: closed.clone(),
                };
                // Detached: it ends by itself once the bus or the router is gone.
                drop(tokio::spawn(receiver.run(start)));
            }
            Ok(Bus {
                publisher,
                stream,
                events,
                retention: i64::try_from(setup.retention).unwrap_or(i64::MAX),
                timeout: setup.timeout,
                closed,
            })
        }

        /// Appends a notice for the other processes: an event to its name's event stream,
        /// anything else to the main stream.
        pub(crate) async fn publish(&self, origin: u64, notice: Notice) -> Result<()> {
            let stream = match &notice {
                Notice::Event { event, .. } => {
                    let shard = event_shard(event, self.events.len());
                    self.events.get(shard).unwrap_or(&self.stream)
                }
                _ => &self.stream,
            };
            let message = Message {
                origin,
                process: crate::events::process_id(),
                notice,
            };
            let body = serde_json::to_string(&message)
                .map_err(|e| Error::new(ErrorKind::Serialize, format!("bus message: {e}")))?;
            let add = self.publisher.xadd::<String, _, _, _, _>(
                stream.as_str(),
                false,
                ("MAXLEN", "~", self.retention),
                "*",
                vec![("m", body)],
            );
            match tokio::time::timeout(self.timeout, add).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(backend("publish", &e)),
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("bus publish took longer than {:?}", self.timeout),
                )),
            }
        }
    }

    /// A receiver, the same for the main stream and every event stream: reads its stream from
    /// where it left off and applies each notice, on a client of its own.
    struct Receiver {
        reader: Client,
        stream: String,
        router: Weak<Router>,
        /// Set when the bus is dropped.
        closed: Arc<AtomicBool>,
    }

    impl Receiver {
        /// Whether there is nothing left to receive for.
        fn gone(&self) -> bool {
            self.closed.load(Ordering::Acquire) || self.router.strong_count() == 0
        }

        /// Runs until the bus or the router is gone, then quits its client.
        ///
        /// `start` is the id to read after: the newest id when the cache was built (what was sent
        /// before it existed is not for it), or `None` when the server was unreachable then.
        async fn run(self, start: Option<String>) {
            self.receive(start).await;
            let _ = self.reader.quit().await;
        }

        async fn receive(&self, start: Option<String>) {
            let (reader, stream) = (&self.reader, self.stream.as_str());
            let mut last = match start {
                Some(id) => id,
                None => loop {
                    match stream_info(reader, stream).await {
                        Ok(info) => break super::start_id(info.as_ref()),
                        Err(e) => {
                            tracing::debug!(error = %e.details(), stream, "bus not reachable yet");
                            if self.gone() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                },
            };
            let mut check_gap = false;
            let mut reconnects = fred::interfaces::EventInterface::reconnect_rx(reader);
            loop {
                if self.gone() {
                    return;
                }
                // Any reconnection since the last read may have hidden a gap.
                while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
                    reconnects.try_recv()
                {
                    check_gap = true;
                }
                if check_gap {
                    match stream_info(reader, stream).await {
                        Ok(info) => {
                            if lost_after(info.as_ref(), &last) {
                                tracing::warn!(
                                    stream,
                                    last_seen = %last,
                                    oldest_kept = %info.and_then(|i| i.first).map_or_else(
                                        || "none".to_owned(),
                                        |(ms, seq)| format!("{ms}-{seq}"),
                                    ),
                                    "invalidation messages were trimmed while this process was \
                                     away: dropping L1 and tag versions"
                                );
                                if let Some(router) = self.router.upgrade() {
                                    router.drop_local_state();
                                }
                            }
                            check_gap = false;
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let read = reader.xread_map::<String, String, String, String, _, _>(
                    Some(1_000),
                    Some(BLOCK.as_millis() as u64),
                    stream,
                    last.as_str(),
                );
                let batch = match tokio::time::timeout(BLOCK + Duration::from_secs(2), read).await {
                    Ok(Ok(batch)) => batch,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e.details(), stream, "bus read failed; resuming after reconnect");
                        check_gap = true;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Err(_) => {
                        check_gap = true;
                        continue;
                    }
                };
                if self.closed.load(Ordering::Acquire) {
                    return;
                }
                let Some(router) = self.router.upgrade() else {
                    return;
                };
                let entries = batch.into_values().flatten().collect::<Vec<_>>();
                if entries.len() >= 1_000 {
                    // A full batch: this receiver may be lagging behind the trimming.
                    check_gap = true;
                }
                for (id, fields) in entries {
                    last = id;
                    let Some(body) = fields.get("m") else {
                        continue;
                    };
                    match serde_json::from_str::<Message>(body) {
                        Ok(message) => router.receive(message).await,
                        Err(e) => {
                            tracing::warn!(error = %e, stream, "unreadable bus message skipped");
                        }
                    }
                }
            }
        }
    }

    /// `XINFO STREAM`, or `None` when the stream does not exist.
    async fn stream_info(
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

    #[cfg(test)]
    mod tests {
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
        struct Server {
            child: std::process::Child,
            port: u16,
        }

        impl Drop for Server {
            fn drop(&mut self) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }

        fn redis_server() -> Server {
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
            assert!(lost_after(info.as_ref(), &last));
            let _ = client.quit().await;
        }
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_json() {
        let m = Message {
            origin: 7,
            process: 3,
            notice: Notice::Tag {
                tag: "t".into(),
                version: 9,
            },
        };
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(
            json,
            r#"{"origin":7,"process":3,"kind":"tag","tag":"t","version":9}"#
        );
        let back: Message = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.notice, m.notice);
    }

    #[test]
    fn ids_compare_numerically() {
        assert!(parse_id("10-0") > parse_id("9-5"));
        assert!(parse_id("10-2") > parse_id("10-1"));
    }

    #[test]
    fn an_event_name_always_has_the_same_shard() {
        // Pinned: processes of different builds must agree, so this may never change. (The
        // cross-process test relies on the three `xp.` names using the three shards of 3.)
        assert_eq!(
            [
                "user.updated",
                "order.paid",
                "xp.ping",
                "xp.tick",
                "xp.tock"
            ]
            .map(|e| event_shard(e, 3)),
            [2, 1, 2, 1, 0]
        );
        for shards in 1..=64 {
            for n in 0..200 {
                let event = format!("event.{n}");
                let shard = event_shard(&event, shards);
                assert!(shard < shards);
                assert_eq!(shard, event_shard(&event, shards));
            }
        }
        assert_eq!(event_shard("anything", 1), 0);
        // Names spread over the shards.
        let mut used = [0usize; 8];
        for n in 0..800 {
            used[event_shard(&format!("event.{n}"), 8)] += 1;
        }
        assert!(used.iter().all(|&u| (50..150).contains(&u)), "{used:?}");
    }

    #[test]
    fn event_streams_sit_in_the_middle_of_their_slot_ranges() {
        for shards in 1..=64 {
            let mut names = std::collections::HashSet::new();
            for shard in 0..shards {
                let name = event_stream("vorte:", shard, shards);
                assert!(
                    name.starts_with(&format!("vorte:bus:ev:{shard}/{shards}:{{")),
                    "{name}"
                );
                let slot = usize::from(fred::util::redis_keyslot(name.as_bytes()));
                let (lo, hi) = (shard * 16_384 / shards, (shard + 1) * 16_384 / shards);
                let quarter = (hi - lo) / 4;
                assert!(
                    (lo + quarter..hi - quarter).contains(&slot),
                    "{name}: slot {slot} outside [{lo}, {hi})"
                );
                assert_eq!(name, event_stream("vorte:", shard, shards), "stable");
                names.insert(name);
            }
            assert_eq!(names.len(), shards);
        }
        // With 3 primaries splitting the slots as `redis-cli --cluster create` does (0–5460,
        // 5461–10922, 10923–16383), three shards land on three primaries.
        let owners: Vec<usize> = (0..3)
            .map(|i| {
                let slot = fred::util::redis_keyslot(event_stream("p:", i, 3).as_bytes());
                match slot {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                }
            })
            .collect();
        assert_eq!(owners, [0, 1, 2]);
    }

    #[test]
    fn a_prefix_with_its_own_hash_tag_still_gets_distinct_streams() {
        // `{app}` decides the slot of every key, so no tag can spread the shards: they still
        // get distinct names (and share the slot).
        let names: Vec<String> = (0..4).map(|i| event_stream("{app}:", i, 4)).collect();
        assert_eq!(names[2], "{app}:bus:ev:2/4:{2}");
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 4);
        // An unmatched brace does not pin the slot: the shards spread as usual.
        let slot = |i| fred::util::redis_keyslot(event_stream("a{b:", i, 2).as_bytes());
        assert!(slot(0) < 8_192 && slot(1) >= 8_192);
    }

    fn info(
        length: u64,
        last_generated: (u64, u64),
        first: Option<(u64, u64)>,
        entries_added: Option<u64>,
    ) -> StreamInfo {
        StreamInfo {
            length,
            last_generated,
            first,
            entries_added,
        }
    }

    #[test]
    fn start_ids() {
        assert_eq!(start_id(None), "0-0");
        assert_eq!(start_id(Some(&info(0, (5, 1), None, Some(9)))), "5-1");
        assert_eq!(start_id(Some(&info(2, (7, 0), Some((6, 0)), None))), "7-0");
    }

    #[test]
    fn gaps_are_detected_from_the_stream_info() {
        // Nothing lost: the next entry is still there, or nothing came.
        assert!(!lost_after(
            Some(&info(3, (9, 0), Some((5, 0)), Some(3))),
            "5-0"
        ));
        assert!(!lost_after(
            Some(&info(3, (9, 0), Some((5, 0)), Some(10))),
            "7-0"
        ));
        assert!(!lost_after(Some(&info(0, (5, 0), None, Some(5))), "5-0"));
        assert!(!lost_after(None, "0-0"));
        // Trimmed past the last id read.
        assert!(lost_after(
            Some(&info(3, (9, 0), Some((8, 0)), Some(20))),
            "5-0"
        ));
        // Everything trimmed, with more added after the last id read.
        assert!(lost_after(Some(&info(0, (9, 0), None, Some(20))), "5-0"));
        // The stream is gone (a Redis restarted without persistence).
        assert!(lost_after(None, "5-0"));
        // The stream did not exist when the receiver started and it has read nothing: lost
        // exactly when more entries were added than it holds.
        assert!(!lost_after(
            Some(&info(4, (9, 0), Some((2, 0)), Some(4))),
            "0-0"
        ));
        assert!(lost_after(
            Some(&info(4, (9, 0), Some((6, 0)), Some(7))),
            "0-0"
        ));
        assert!(
            !lost_after(Some(&info(4, (9, 0), Some((6, 0)), None)), "0-0"),
            "Redis 6"
        );
    }
}
