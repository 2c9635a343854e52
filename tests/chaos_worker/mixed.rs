//! The steady mixed load: `--tasks` tasks, each making calls at its share of `--rate` until the
//! run ends: `#[cached]` reads, `get_or_set`, `get`, `set`, `delete` and `invalidate_tag`, mostly
//! on the hot keys. Every write bumps the database first and records itself after the call.

use std::time::Duration;

use vorte_cache::{Cache, cached};
use vorte_cache_tests::chaos_kit::stale::Read;
use vorte_cache_tests::chaos_kit::truth::{Truth, WriteKind, WriteRecord};
use vorte_cache_tests::chaos_kit::{Rng, parse_value, value_of};

use crate::state::{LoadError, State, state};

/// The share of each call in the mix, out of their sum.
const MIX: [(Kind, u64); 6] = [
    (Kind::Cached, 40),
    (Kind::GetOrSet, 30),
    (Kind::Get, 15),
    (Kind::Set, 6),
    (Kind::Delete, 6),
    (Kind::InvalidateTag, 3),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cached,
    GetOrSet,
    Get,
    Set,
    Delete,
    InvalidateTag,
}

/// One call as the report counts it.
#[derive(Debug, Clone)]
pub(crate) struct CallRecord {
    /// Before it began, µs (the database's clock).
    pub(crate) start_us: u64,
    pub(crate) latency_us: u64,
    pub(crate) read: bool,
    /// A `get` that found nothing (loads are counted by the loader).
    pub(crate) get_miss: bool,
    /// The error's kind and message, if the cache returned one.
    pub(crate) error: Option<(String, String)>,
    /// The call's name (`Cached`, `GetOrSet`, `InvalidateTag`, ...).
    pub(crate) call: &'static str,
}

/// What one task did.
#[derive(Debug, Default)]
pub(crate) struct TaskLog {
    pub(crate) calls: Vec<CallRecord>,
    pub(crate) reads: Vec<Read>,
    /// Reads that returned another key's value or a malformed one.
    pub(crate) foreign: Vec<String>,
}

#[cached(key = "{key}", tags = ["{tag}"])]
async fn cached_tagged(key: &str, tag: &str) -> Result<String, LoadError> {
    let _ = tag; // part of the entry's tags only
    state().load(key).await
}

#[cached(key = "{key}")]
async fn cached_untagged(key: &str) -> Result<String, LoadError> {
    state().load(key).await
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cached => "Cached",
            Kind::GetOrSet => "GetOrSet",
            Kind::Get => "Get",
            Kind::Set => "Set",
            Kind::Delete => "Delete",
            Kind::InvalidateTag => "InvalidateTag",
        }
    }
}

fn error_of(e: &vorte_cache::Error) -> (String, String) {
    (format!("{:?}", e.kind()), e.to_string())
}

/// One task's calls until `deadline_us` (the database's clock).
pub(crate) async fn run_task(state: &State, cache: &Cache, task: u64, deadline_us: u64) -> TaskLog {
    let args = &state.args;
    let mut rng = Rng(args.seed ^ (task + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut truth = Truth::connect(args.db_port, &args.db_prefix)
        .await
        .unwrap_or_else(|e| panic!("the database: {e}"));
    let period = Duration::from_micros(1_000_000 * args.tasks / args.rate);
    let mut ticks = tokio::time::interval(period);
    // A slow call delays this task's next calls rather than bunching them up afterwards.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log = TaskLog::default();
    loop {
        ticks.tick().await;
        let start_us = state.now();
        if start_us >= deadline_us {
            return log;
        }
        let hot = args.cold == 0 || rng.below(100) < args.hot_share;
        let i = if hot {
            rng.below(args.hot as u64) as usize
        } else {
            args.hot + rng.below(args.cold as u64) as usize
        };
        let (key, tag) = (args.key(i), args.tag(i));
        let kind = rng.pick(&MIX);
        let mut record = CallRecord {
            start_us,
            latency_us: 0,
            read: matches!(kind, Kind::Cached | Kind::GetOrSet | Kind::Get),
            get_miss: false,
            error: None,
            call: kind.name(),
        };
        let returned: Option<String> = match kind {
            Kind::Cached => {
                let got = match &tag {
                    Some(tag) => cached_tagged(&key, tag).await,
                    None => cached_untagged(&key).await,
                };
                got.map_err(|e| record.error = Some(("Loader".to_owned(), e.0)))
                    .ok()
            }
            Kind::GetOrSet => {
                let load_key = key.clone();
                let call =
                    cache.get_or_set(&key, move || async move { state.load(&load_key).await });
                let got = match &tag {
                    Some(tag) => call.tags([tag.clone()]).await,
                    None => call.await,
                };
                got.map_err(|e| record.error = Some(error_of(&e))).ok()
            }
            Kind::Get => match cache.get::<String>(&key).await {
                Ok(value) => {
                    record.get_miss = value.is_none();
                    value
                }
                Err(e) => {
                    record.error = Some(error_of(&e));
                    None
                }
            },
            Kind::Set | Kind::Delete => {
                let version = truth
                    .bump(&key)
                    .await
                    .unwrap_or_else(|e| panic!("bump: {e}"));
                let done = if kind == Kind::Set {
                    let value = value_of(&key, version);
                    cache.set(&key, &value).tags(tag.clone()).await
                } else {
                    cache.delete(&key).await.map(drop)
                };
                record.error = done.as_ref().err().map(error_of);
                let written = if kind == Kind::Set {
                    WriteKind::Set
                } else {
                    WriteKind::Invalidate
                };
                let end_us = state.now();
                record_write(
                    state,
                    &mut truth,
                    &[(key.clone(), version)],
                    start_us,
                    end_us,
                    done.is_ok(),
                    written,
                )
                .await;
                None
            }
            Kind::InvalidateTag => {
                let j = rng.below(4) as usize;
                let tag = format!("t{j}");
                let mut bumps = Vec::new();
                for k in (0..args.hot).filter(|k| k % 4 == j) {
                    let key = args.key(k);
                    let version = truth
                        .bump(&key)
                        .await
                        .unwrap_or_else(|e| panic!("bump: {e}"));
                    bumps.push((key, version));
                }
                let done = cache.invalidate_tag(&tag).await;
                record.error = done.as_ref().err().map(error_of);
                let end_us = state.now();
                record_write(
                    state,
                    &mut truth,
                    &bumps,
                    start_us,
                    end_us,
                    done.is_ok(),
                    WriteKind::Invalidate,
                )
                .await;
                None
            }
        };
        record.latency_us = state.now().saturating_sub(start_us);
        if let Some((_, message)) = &mut record.error {
            let at_ms = (start_us - state.start_us) / 1000;
            *message = format!("{kind:?} of {key} at +{at_ms} ms: {message}");
        }
        if let Some(value) = returned {
            match parse_value(&value) {
                Some((k, version)) if k == key => log.reads.push(Read {
                    key: i,
                    version,
                    start_us,
                }),
                _ => log.foreign.push(format!("{key} returned {value:?}")),
            }
        }
        log.calls.push(record);
    }
}

/// Records the writes of one call in the database.
async fn record_write(
    state: &State,
    truth: &mut Truth,
    bumps: &[(String, u64)],
    start_us: u64,
    end_us: u64,
    ok: bool,
    kind: WriteKind,
) {
    let record = WriteRecord {
        start_us,
        end_us,
        process: state.args.process.clone(),
        kind: if ok { kind } else { WriteKind::Failed },
    };
    for (key, version) in bumps {
        truth
            .record(key, *version, &record)
            .await
            .unwrap_or_else(|e| panic!("record a write: {e}"));
    }
}
