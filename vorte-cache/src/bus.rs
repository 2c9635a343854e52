//! The invalidation bus: carries invalidations and events between processes on a Redis Stream.
//!
//! Every process appends what it invalidates (deleted or rewritten keys, new tag versions,
//! flushes) and the events it emits to one stream, `<key_prefix>bus`, and reads the stream from a
//! dedicated connection with `XREAD BLOCK`. A Stream rather than pub/sub, because a stream keeps
//! what was sent while a receiver was away: after a reconnect, the receiver reads on from the
//! last id it saw, so a brief disconnection loses nothing (SPEC G4, and events after a reconnect).
//! The stream is capped at [`RETENTION`] entries; a receiver that comes back to find the entries
//! after its last id trimmed has lost messages, so it drops its whole L1 and its memoised tag
//! versions, and logs why.
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

#[cfg(feature = "redis")]
mod redis_stream {
    use std::sync::Weak;
    use std::time::Duration;

    use fred::prelude::{
        Builder, ClientLike, Config as FredConfig, Pool, ReconnectPolicy, StreamsInterface,
    };

    use super::{Message, Notice, parse_id};
    use crate::config::{Backend, CacheConfig};
    use crate::error::{Error, ErrorKind, Result};
    use crate::router::Router;

    /// How many messages the stream keeps (approximately: `MAXLEN ~`).
    pub(crate) const RETENTION: u64 = 100_000;

    /// How long one `XREAD` blocks before the receiver checks that its cache still exists.
    const BLOCK: Duration = Duration::from_millis(500);

    /// Where the bus travels: `[cache.bus]`, else the Redis of L2, else the cluster of L3.
    pub(crate) fn bus_config(config: &CacheConfig) -> Result<Option<(FredConfig, Duration)>> {
        if let Some(bus) = &config.bus {
            let fred = crate::store::redis::fred_config(
                &[bus.url.expose()],
                false,
                None,
                "cache.bus.url",
            )?;
            return Ok(Some((fred, Duration::from_millis(250))));
        }
        for (layer, cfg) in [("l2", &config.layers.l2), ("l3", &config.layers.l3)] {
            let Some(cfg) = cfg else { continue };
            let mut urls: Vec<&str> = cfg.urls.iter().map(|u| u.expose()).collect();
            if let Some(url) = &cfg.url {
                urls.insert(0, url.expose());
            }
            let clustered = match cfg.backend {
                Backend::Redis => false,
                Backend::RedisCluster => true,
                _ => continue,
            };
            let path = format!("cache.layers.{layer}.url");
            let fred = crate::store::redis::fred_config(
                &urls,
                clustered,
                cfg.tls_ca_file.as_deref(),
                &path,
            )?;
            return Ok(Some((fred, cfg.timeout)));
        }
        Ok(None)
    }

    /// One cache's connection to the bus.
    pub(crate) struct Bus {
        publisher: Pool,
        stream: String,
        timeout: Duration,
        receiver: tokio::task::JoinHandle<()>,
    }

    impl std::fmt::Debug for Bus {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Bus")
                .field("stream", &self.stream)
                .finish_non_exhaustive()
        }
    }

    impl Drop for Bus {
        fn drop(&mut self) {
            self.receiver.abort();
        }
    }

    fn backend(what: &str, e: &fred::error::Error) -> Error {
        Error::new(ErrorKind::Backend, format!("bus {what}: {}", e.details()))
    }

    impl Bus {
        /// Connects the publisher and starts the receiver, which applies other processes' notices to
        /// `router` for as long as it exists.
        pub(crate) async fn connect(
            config: FredConfig,
            key_prefix: &str,
            timeout: Duration,
            router: Weak<Router>,
        ) -> Result<Bus> {
            let mut config = config;
            config.version = fred::types::RespVersion::RESP3;
            let policy = ReconnectPolicy::new_exponential(0, 50, 2_000, 2);
            let publisher = Builder::from_config(config.clone())
                .with_performance_config(|p| p.default_command_timeout = timeout)
                .set_policy(policy.clone())
                .build_pool(1)
                .map_err(|e| backend("setup", &e))?;
            drop(publisher.connect()); // the connection task runs on; the handle is not needed
            let reader = Builder::from_config(config)
                .set_policy(policy)
                // An XREAD cut by a lost connection must surface as an error, not be silently
                // re-sent: the receiver has to check for a gap after every reconnection.
                .with_connection_config(|c| c.max_command_attempts = 1)
                .build()
                .map_err(|e| backend("setup", &e))?;
            drop(reader.connect());
            let wait = async {
                let _ = publisher.wait_for_connect().await;
                let _ = reader.wait_for_connect().await;
            };
            if tokio::time::timeout(Duration::from_secs(2), wait)
                .await
                .is_err()
            {
                tracing::warn!(
                    "the invalidation bus is not reachable at start-up; retrying in the background"
                );
            }
            let stream = format!("{key_prefix}bus");
            // Fix the starting point before returning, so that nothing published after the cache
            // is built can be missed by its receiver.
            let start = tokio::time::timeout(Duration::from_secs(2), newest_id(&reader, &stream))
                .await
                .ok()
                .and_then(|r| r.ok());
            let receiver = tokio::spawn(receive(reader, stream.clone(), router, start));
            Ok(Bus {
                publisher,
                stream,
                timeout,
                receiver,
            })
        }

        /// Appends a notice for the other processes.
        pub(crate) async fn publish(&self, origin: u64, notice: Notice) -> Result<()> {
            let message = Message {
                origin,
                process: crate::events::process_id(),
                notice,
            };
            let body = serde_json::to_string(&message)
                .map_err(|e| Error::new(ErrorKind::Serialize, format!("bus message: {e}")))?;
            let add = self.publisher.xadd::<String, _, _, _, _>(
                self.stream.as_str(),
                false,
                ("MAXLEN", "~", RETENTION as i64),
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

    /// The receiver: reads the stream from where it left off and applies each notice.
    ///
    /// `start` is the id to read after: the newest message when the cache was built (what was
    /// sent before it existed is not for it), or `None` when the server was unreachable then.
    async fn receive(
        reader: fred::prelude::Client,
        stream: String,
        router: Weak<Router>,
        start: Option<String>,
    ) {
        let mut last = match start {
            Some(id) => id,
            None => loop {
                match newest_id(&reader, &stream).await {
                    Ok(id) => break id,
                    Err(e) => {
                        tracing::debug!(error = %e.details(), "bus not reachable yet");
                        if router.strong_count() == 0 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
        };
        let mut check_gap = false;
        let mut reconnects = fred::interfaces::EventInterface::reconnect_rx(&reader);
        loop {
            if router.strong_count() == 0 {
                let _ = reader.quit().await;
                return;
            }
            // Any reconnection since the last read may have hidden a gap.
            while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
                reconnects.try_recv()
            {
                check_gap = true;
            }
            if check_gap {
                match first_id(&reader, &stream).await {
                    Ok(Some(first)) if parse_id(&first) > parse_id(&last) && last != "0-0" => {
                        tracing::warn!(
                            last_seen = %last,
                            oldest_kept = %first,
                            "invalidation messages were trimmed while this process was away: \
                             dropping L1 and tag versions"
                        );
                        if let Some(router) = router.upgrade() {
                            router.drop_local_state();
                        }
                        check_gap = false;
                    }
                    Ok(_) => check_gap = false,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let read = reader.xread_map::<String, String, String, String, _, _>(
                Some(1_000),
                Some(BLOCK.as_millis() as u64),
                stream.as_str(),
                last.as_str(),
            );
            let batch = match tokio::time::timeout(BLOCK + Duration::from_secs(2), read).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e.details(), "bus read failed; resuming after reconnect");
                    check_gap = true;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(_) => {
                    check_gap = true;
                    continue;
                }
            };
            let Some(router) = router.upgrade() else {
                let _ = reader.quit().await;
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
                    Err(e) => tracing::warn!(error = %e, "unreadable bus message skipped"),
                }
            }
        }
    }

    /// The id of the newest message, `0-0` for an empty stream.
    async fn newest_id(
        reader: &fred::prelude::Client,
        stream: &str,
    ) -> std::result::Result<String, fred::error::Error> {
        let newest: Vec<(String, std::collections::HashMap<String, String>)> =
            reader.xrevrange(stream, "+", "-", Some(1)).await?;
        Ok(newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
    }

    async fn first_id(
        reader: &fred::prelude::Client,
        stream: &str,
    ) -> std::result::Result<Option<String>, fred::error::Error> {
        let oldest: Vec<(String, std::collections::HashMap<String, String>)> =
            reader.xrange(stream, "-", "+", Some(1)).await?;
        Ok(oldest.into_iter().next().map(|(id, _)| id))
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
}
