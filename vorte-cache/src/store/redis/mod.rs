//! L2 `redis` and L3 `redis-cluster`, on fred.
//!
//! Physical names: `<key_prefix>e:<key>` for entries, `<key_prefix>t:<tag>` for tag records and
//! `<key_prefix>l:<key>` for leases ([`lease`]), so every key this store touches starts with
//! `key_prefix` (`docs/guarantees.md#g6-prefix-isolation`). Listing and flushing use
//! `SCAN MATCH <escaped prefix>*` (on every primary of a cluster, checked complete by
//! [`listing`]) and `UNLINK` one key at a time, so no cross-slot multi-key command is sent, and
//! `KEYS`, `FLUSHDB` and `FLUSHALL` never are.
//!
//! The client is a fred `Pool` of `pool_size` clients (default 2), always with a reconnect policy
//! and a command timeout: with fred's defaults (no policy, no timeout) a command hangs forever when
//! the server dies, and the client never reconnects after a restart although `is_connected()` says
//! `true` (found by killing a server under load; `tests/redis_layers.rs`
//! `cached_calls_never_fail_while_redis_is_down_and_the_layer_rejoins` holds it). Every call is also
//! bounded by the layer's `timeout_ms`, after which it fails as `Timeout` and the engine skips the
//! layer for that call.
//!
//! Concurrent entry reads coalesce into `MGET`s ([`super::read_batch`]); on a cluster, one per
//! hash slot, so that no multi-key command crosses slots there either.
//!
//! On a cluster, fred follows `MOVED` (re-reading the topology) and `ASK` up to [`REDIRECTIONS`]
//! times per command. Every command is `fail_fast`: one whose connection closes while it is in
//! flight fails rather than being written again, since it may have run (a compare-and-set run
//! twice counts an increment twice). A redirected command has not run, so following it is safe,
//! and so is sending it again when the redirections ran out ([`redirect`])
//! (`docs/consistency.md#redis-cluster-topology-changes`).

use std::time::Duration;

use bytes::Bytes;
use fred::clients::WithOptions;
use fred::prelude::{
    Client, ClientLike, Config as FredConfig, Expiration, KeysInterface, LuaInterface, Pool,
};
use fred::types::Builder;
use fred::types::config::Options;
use fred::types::scan::Scanner;
use futures_util::{Stream, TryStreamExt};

mod conn;
mod errors;
mod lease;
mod listing;
mod mget;
mod nodes;
mod redirect;

pub(crate) use self::conn::{RedisTarget, fred_config, reconnect_policy};
use self::errors::{command_error, is_out_of_memory};
use self::lease::LeaseScript;
use self::mget::multi_get;
use super::read_batch::ReadBatch;
use super::{BoxFuture, Slot, Store, Usage};
use crate::config::RedisConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::glob;

/// Compare-and-set of a whole value: `KEYS[1]`; whether an entry is expected (`ARGV[1]`, `1` or
/// `0`) and which (`ARGV[2]`); the new value (`ARGV[3]`); its TTL in ms (`ARGV[4]`). Absence is a
/// flag of its own, so an empty value is never taken for no entry. One key: cluster-safe.
const CAS_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
local expected_absent = ARGV[1] == '0'
if (expected_absent and current == false) or (not expected_absent and current == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0
"#;

/// Replaces `KEYS[1]` with the tombstone `ARGV[1]` for `ARGV[2]` ms; 1 when a real entry (not
/// absent, not a tombstone: a value that begins with `ARGV[3]`, the tombstone prefix) was there.
const TOMBSTONE_SCRIPT: &str = r#"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if old == false or string.sub(old, 1, #ARGV[3]) == ARGV[3] then
  return 0
end
return 1
"#;

/// A Redis or Redis Cluster store.
pub(crate) struct RedisStore {
    pool: Pool,
    backend: &'static str,
    layer: &'static str,
    entries: String,
    tags: String,
    /// Where leases live ([`lease`]).
    leases: String,
    root: String,
    clustered: bool,
    timeout: Duration,
    /// Every command's options: `fail_fast` (see the module's documentation).
    options: Options,
    /// Coalesces concurrent entry reads into `MGET`s (see [`super::read_batch`]).
    reads: ReadBatch,
    /// On a cluster, one circuit breaker per node ([`nodes`]); a single server is put behind the
    /// layer's circuit by the cache instead.
    nodes: Option<nodes::NodeCircuits>,
}

/// The `MOVED` or `ASK` redirections fred follows for one command (its default). Each is one more
/// write of the command, so a command may be written `1 + REDIRECTIONS` times.
const REDIRECTIONS: u32 = 5;

/// The options of every command: never written again after its connection closed in flight.
fn command_options() -> Options {
    Options {
        fail_fast: true,
        ..Options::default()
    }
}

/// Reads in flight as single `GET`s before further reads are batched into `MGET`s. One: the
/// P4 bench (64 tasks) measured 1 and 2 alike within its noise, with pools of 1 and 2; any
/// concurrency at all is worth coalescing.
const DIRECT_READS: usize = 1;

/// The most keys one `MGET` carries.
const MAX_BATCH: usize = 256;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold credentials: never printed (`docs/guarantees.md#s1-credentials-never-shown`).
        f.debug_struct("RedisStore")
            .field("backend", &self.backend)
            .field("prefix", &self.root)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the single server of a `redis` layer (see [`Self::open`]).
    pub(crate) async fn connect(
        layer: &'static str,
        cfg: &RedisConfig,
        timeout: Duration,
        key_prefix: &str,
    ) -> Result<Self> {
        let path = format!("cache.layers.{layer}.url");
        let target = RedisTarget::server(&cfg.url, &path)?;
        let config = fred_config(&target, cfg.tls_ca_file.as_deref(), &path)?;
        Self::open(layer, config, None, cfg.pool_size, timeout, key_prefix).await
    }

    /// Connects to the seed nodes of a `redis-cluster` layer (see [`Self::open`]).
    #[cfg(feature = "redis-cluster")]
    pub(crate) async fn connect_cluster(
        layer: &'static str,
        cfg: &crate::config::RedisClusterConfig,
        timeout: Duration,
        key_prefix: &str,
        breaker: crate::config::BreakerConfig,
    ) -> Result<Self> {
        let path = format!("cache.layers.{layer}.urls");
        let target = RedisTarget::cluster(&cfg.urls, &path)?;
        let config = fred_config(&target, cfg.tls_ca_file.as_deref(), &path)?;
        let nodes = nodes::NodeCircuits::new(layer, breaker);
        Self::open(
            layer,
            config,
            Some(nodes),
            cfg.pool_size,
            timeout,
            key_prefix,
        )
        .await
    }

    /// Builds the pool and connects (in the background: a server that is down at start-up is
    /// retried, and the layer is skipped until it answers). `nodes`: a cluster's breakers.
    async fn open(
        layer: &'static str,
        mut config: FredConfig,
        nodes: Option<nodes::NodeCircuits>,
        pool_size: usize,
        timeout: Duration,
        key_prefix: &str,
    ) -> Result<Self> {
        let path = format!("cache.layers.{layer}.url");
        let clustered = nodes.is_some();
        config.version = fred::types::RespVersion::RESP3;
        let pool = Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                // The first write, and one per redirection; `fail_fast` (on every command) keeps
                // a command that was in flight from being written again.
                c.max_command_attempts = 1 + REDIRECTIONS;
                c.max_redirections = REDIRECTIONS;
            })
            .set_policy(reconnect_policy())
            .build_pool(pool_size)
            .map_err(|e| Error::new(ErrorKind::Config, format!("{path}: {}", e.details())))?;
        if let Some(nodes) = &nodes {
            nodes.watch(&pool);
        }
        // Connect in the background; wait briefly so that a healthy server is ready at once.
        drop(pool.connect()); // the connection tasks run on; the handles are not needed
        if tokio::time::timeout(Duration::from_secs(2), pool.wait_for_connect())
            .await
            .is_err()
        {
            tracing::warn!(
                layer,
                "Redis not reachable at start-up; retrying in the background"
            );
        }
        let backend = if clustered { "redis-cluster" } else { "redis" };
        let reads = ReadBatch::new(
            multi_get(pool.clone(), clustered, layer, backend, timeout),
            DIRECT_READS,
            MAX_BATCH,
            timeout,
            format!("{layer} {backend}"),
        );
        Ok(RedisStore {
            pool,
            backend,
            layer,
            entries: format!("{key_prefix}e:"),
            tags: format!("{key_prefix}t:"),
            leases: format!("{key_prefix}l:"),
            root: key_prefix.to_owned(),
            clustered,
            timeout,
            options: command_options(),
            reads,
            nodes,
        })
    }

    /// Runs `call`, a command on the physical key `name`: on a cluster through the circuit of
    /// the key's node, else as it is (the layer's circuit is around the whole store).
    async fn guarded<T>(&self, name: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        match &self.nodes {
            Some(nodes) => {
                let slot = fred::util::redis_keyslot(name.as_bytes());
                nodes.guard(&self.pool, slot, call).await
            }
            None => call.await,
        }
    }

    /// The next client of the pool, with [`command_options`].
    fn client(&self) -> WithOptions<Client> {
        self.pool.next().with_options(&self.options)
    }

    fn name(&self, slot: Slot<'_>) -> String {
        match slot {
            Slot::Entry(k) => format!("{}{k}", self.entries),
            Slot::Tag(t) => format!("{}{t}", self.tags),
        }
    }

    /// Runs `call` (again while its redirections run out, see [`redirect`]) and maps fred's
    /// result. The bound on time is fred's own per-command timeout (set from the layer's
    /// `timeout_ms` when the client is built): no extra timer per call on the hot path.
    async fn mapped<T, Fut>(&self, what: &str, call: impl Fn() -> Fut) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, fred::error::Error>>,
    {
        redirect::follow(self.timeout, call)
            .await
            .map_err(|e| command_error(self.layer, self.backend, self.timeout, what, &e))
    }

    /// Every key matching `pattern` on a single server.
    fn scan(
        &self,
        pattern: String,
    ) -> impl Stream<Item = std::result::Result<String, fred::error::Error>> + '_ {
        self.pool
            .next()
            .scan(pattern, Some(1000), None)
            .map_ok(|mut page| {
                let keys = page.take_results().unwrap_or_default();
                futures_util::stream::iter(
                    keys.into_iter()
                        .filter_map(|k| k.into_string())
                        .map(Ok::<_, fred::error::Error>),
                )
            })
            .try_flatten()
    }

    /// Keys under `prefix`, bounded by the layer's timeout scaled for a listing.
    async fn scan_all(&self, what: &str, pattern: String) -> Result<Vec<String>> {
        if let Some(nodes) = &self.nodes {
            nodes.admit_scan(&self.pool)?;
        }
        // A listing is allowed far longer than one command, so fail fast when there is no
        // connection at all rather than wait out that long bound.
        if !self.pool.is_connected() {
            return Err(Error::new(
                ErrorKind::Backend,
                format!("{} {} {what}: not connected", self.layer, self.backend),
            ));
        }
        let listing = async {
            if self.clustered {
                listing::list(self.pool.next(), &self.options, &pattern).await
            } else {
                self.scan(pattern).try_collect::<Vec<_>>().await
            }
        };
        match tokio::time::timeout(self.timeout.max(Duration::from_secs(5)) * 4, listing).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Backend,
                format!("{} {} {what}: {}", self.layer, self.backend, e.details()),
            )),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} {} {what}: the listing did not finish",
                    self.layer, self.backend
                ),
            )),
        }
    }

    /// The delete of a Redis at `maxmemory` with `noeviction`, which refuses the tombstone (a
    /// `SET`) but allows `UNLINK`: the entry goes, with no tombstone to hold off a load that
    /// began before (its fill is a `SET` too, refused while the server stays full)
    /// (`docs/consistency.md#redis-at-maxmemory-with-noeviction`).
    async fn delete_when_full(&self, key: &str, name: &str) -> Result<Option<bool>> {
        tracing::warn!(
            layer = self.layer,
            key,
            "{} is full (maxmemory, noeviction): tombstone refused, entry unlinked instead",
            self.backend
        );
        let removed: i64 = self
            .mapped("delete", || async move { self.client().unlink(name).await })
            .await?;
        Ok(Some(removed > 0))
    }

    async fn cas(
        &self,
        key: &str,
        expected: Option<&Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> Result<bool> {
        let name = self.name(Slot::Entry(key));
        // "No entry" travels as its own flag: an empty value is a value, not an absence.
        let present = Bytes::from_static(if expected.is_some() { b"1" } else { b"0" });
        let expected = expected.cloned().unwrap_or_default();
        let ttl = ttl.as_millis().max(1).to_string();
        let args = vec![present, expected, new, Bytes::from(ttl)];
        let (name, args) = (name.as_str(), &args);
        let swapped: i64 = self
            .mapped("compare-and-set", || async move {
                self.client()
                    .eval(CAS_SCRIPT, vec![name], args.clone())
                    .await
            })
            .await?;
        Ok(swapped == 1)
    }
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let name = self.name(slot);
            if let Slot::Tag(_) = slot {
                // Tag records are read rarely (their versions are memoised): no batching.
                let name = name.as_str();
                let get = self.mapped("get", || async move {
                    redirect::value(self.client().get(name).await)
                });
                return self.guarded(name, get).await;
            }
            let slot = fred::util::redis_keyslot(name.as_bytes());
            let read = self.reads.get(name, |name| async move {
                let name = name.as_str();
                self.mapped("get", || async move {
                    redirect::value(self.client().get(name).await)
                })
                .await
            });
            match &self.nodes {
                Some(nodes) => nodes.guard(&self.pool, slot, read).await,
                None => read.await,
            }
        })
    }

    fn put<'a>(&'a self, slot: Slot<'a>, value: Bytes, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let name = self.name(slot);
            let px = ttl.as_millis().clamp(1, i64::MAX as u128) as i64;
            let (name, value) = (name.as_str(), &value);
            let set = self.mapped("set", || async move {
                let px = Expiration::PX(px);
                self.client()
                    .set::<(), _, _>(name, value.clone(), Some(px), None, false)
                    .await
            });
            self.guarded(name, set).await
        })
    }

    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let name = self.name(slot);
            let name = name.as_str();
            let unlink = self.mapped("delete", || async move { self.client().unlink(name).await });
            let n: i64 = self.guarded(name, unlink).await?;
            Ok(n > 0)
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let pattern = format!("{}{}*", glob::escape(&self.entries), glob::escape(prefix));
            let names = self.scan_all("list", pattern).await?;
            Ok(names
                .into_iter()
                .filter_map(|n| n.strip_prefix(&self.entries).map(str::to_owned))
                .collect())
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let mut removed = 0;
            for space in [&self.entries, &self.tags] {
                let names = self
                    .scan_all("flush", format!("{}*", glob::escape(space)))
                    .await?;
                // One key per UNLINK: a cluster refuses multi-key commands across slots.
                let unlinks: Vec<_> = names
                    .iter()
                    .map(|n| {
                        let n = n.as_str();
                        self.mapped("flush", move || async move {
                            self.client().unlink::<i64, _>(n).await
                        })
                    })
                    .collect();
                for r in futures_util::future::join_all(unlinks).await {
                    removed += r? as u64;
                }
            }
            Ok(removed)
        })
    }

    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        Box::pin(async move {
            let names = self
                .scan_all("usage", format!("{}*", glob::escape(&self.entries)))
                .await?;
            let lengths: Vec<_> = names
                .iter()
                .map(|n| {
                    let n = n.as_str();
                    self.mapped("usage", move || async move {
                        self.client().strlen::<u64, _>(n).await
                    })
                })
                .collect();
            let mut bytes = 0;
            for r in futures_util::future::join_all(lengths).await {
                bytes += r?;
            }
            Ok(Usage {
                keys: names.len() as u64,
                bytes,
            })
        })
    }

    fn has_compare_and_set(&self) -> bool {
        true
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move {
            let name = self.name(Slot::Entry(key));
            self.guarded(&name, self.cas(key, expected, new, ttl))
                .await
                .map(Some)
        })
    }

    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move {
            let name = self.name(Slot::Entry(key));
            self.guarded(&name, self.tombstone_at(key, &name, marker, ttl))
                .await
        })
    }

    fn has_leases(&self) -> bool {
        true
    }

    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move { self.acquire_lease(key, token, ttl).await.map(Some) })
    }

    fn lease_renew<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.lease_script("lease renew", LeaseScript::Renew, key, token, ttl))
    }

    fn lease_release<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<bool>> {
        let release = LeaseScript::Release;
        Box::pin(self.lease_script("lease release", release, key, token, Duration::ZERO))
    }

    /// On a cluster, one circuit per node ([`nodes`]).
    fn has_own_breakers(&self) -> bool {
        self.nodes.is_some()
    }

    fn circuits(&self) -> Vec<crate::stats::CircuitStats> {
        self.nodes
            .as_ref()
            .map(nodes::NodeCircuits::stats)
            .unwrap_or_default()
    }

    fn takeovers(&self) -> Option<u64> {
        self.nodes.as_ref().map(nodes::NodeCircuits::takeovers)
    }
}

impl RedisStore {
    /// [`Store::tombstone`] of `key`, whose physical name is `name`.
    async fn tombstone_at(
        &self,
        key: &str,
        name: &str,
        marker: Bytes,
        ttl: Duration,
    ) -> Result<Option<bool>> {
        let ttl = Bytes::from(ttl.as_millis().max(1).to_string());
        let args = vec![
            marker,
            ttl,
            Bytes::from_static(crate::store::TOMBSTONE_PREFIX),
        ];
        let args = &args;
        let tombstone = || async move {
            self.client()
                .eval(TOMBSTONE_SCRIPT, vec![name], args.clone())
                .await
        };
        let existed: i64 = match redirect::follow(self.timeout, tombstone).await {
            Ok(existed) => existed,
            Err(e) if is_out_of_memory(&e) => return self.delete_when_full(key, name).await,
            Err(e) => {
                return Err(command_error(
                    self.layer,
                    self.backend,
                    self.timeout,
                    "delete",
                    &e,
                ));
            }
        };
        Ok(Some(existed == 1))
    }
}
