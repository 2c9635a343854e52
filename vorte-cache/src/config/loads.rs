//! `[cache.loads]`: how loads behave when the source is slow or failing, and how entries age
//! (`docs/resilience.md`). Every key is optional; each is also settable per call (`get_or_set`'s
//! builder) and per `#[cached]` function, which win over these defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::raw::Seconds;
use super::resolve::{config_error, join};
use crate::error::Result;

/// The default of [`LoadsConfig::fail_safe_throttle`]: 30 s.
const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);
/// The default of [`LoadsConfig::distributed_lock_wait`]: 10 s.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// `[cache.loads]`, with every default applied. All of it is off by default.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadsConfig {
    /// `fail_safe_max`: how long an entry is kept past its TTL so that a load whose loader fails
    /// or times out can serve it instead of an error (`docs/resilience.md#fail-safe`). Never
    /// served after an invalidation. Seconds; `None` (the default) turns fail-safe off.
    pub fail_safe_max: Option<Duration>,
    /// `fail_safe_throttle`: when a stale value stands in for a failed load, it is cached as fresh
    /// for this long, so the failing source is asked again at most once per period. Default 30 s.
    pub fail_safe_throttle: Duration,
    /// `soft_timeout`: a load that has not finished after this long answers with the stale value,
    /// when there is one, and goes on in the background to update the cache
    /// (`docs/resilience.md#loader-timeouts`). Seconds; default off.
    pub soft_timeout: Option<Duration>,
    /// `hard_timeout`: a load that has not finished after this long ends the caller's wait with
    /// the stale value, or else a `Timeout` error. Seconds; default off.
    pub hard_timeout: Option<Duration>,
    /// `eager_refresh`: a fraction of the TTL (0 < f < 1) after which a hit starts one background
    /// refresh (`docs/resilience.md#early-refresh`). Default off.
    pub eager_refresh: Option<f64>,
    /// `xfetch_beta`: probabilistic early expiration (XFetch) with this β > 0, from each entry's
    /// measured load time (`docs/resilience.md#early-refresh`). 1.0 is the paper's choice. Default off.
    pub xfetch_beta: Option<f64>,
    /// `ttl_jitter`: each TTL is multiplied by a random factor in `1 ± ttl_jitter` (0 ≤ j < 1), so
    /// that keys written together do not expire together. Default 0.
    pub ttl_jitter: f64,
    /// `distributed_lock`: with a shared layer that supports leases and a bus, at most one
    /// process loads a key at a time (`docs/resilience.md#distributed-single-flight`). Default off.
    pub distributed_lock: bool,
    /// `distributed_lock_wait`: how long a process waits for another's load of the same key
    /// before it loads the value itself. Seconds; default 10 s.
    pub distributed_lock_wait: Duration,
}

impl Default for LoadsConfig {
    fn default() -> Self {
        LoadsConfig {
            fail_safe_max: None,
            fail_safe_throttle: DEFAULT_FAIL_SAFE_THROTTLE,
            soft_timeout: None,
            hard_timeout: None,
            eager_refresh: None,
            xfetch_beta: None,
            ttl_jitter: 0.0,
            distributed_lock: false,
            distributed_lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

// The fractions are checked finite when resolved, so equality is an equivalence.
impl Eq for LoadsConfig {}

/// The file grammar of `[cache.loads]`.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of load settings")]
pub(super) struct RawLoads {
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_safe_max: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_safe_throttle: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    soft_timeout: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hard_timeout: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eager_refresh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xfetch_beta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_jitter: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distributed_lock: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distributed_lock_wait: Option<Seconds>,
}

impl RawLoads {
    /// `loads` in the file grammar: resolving it again gives `loads` back.
    pub(super) fn from_resolved(loads: &LoadsConfig) -> RawLoads {
        RawLoads {
            fail_safe_max: loads.fail_safe_max.map(Seconds),
            fail_safe_throttle: Some(Seconds(loads.fail_safe_throttle)),
            soft_timeout: loads.soft_timeout.map(Seconds),
            hard_timeout: loads.hard_timeout.map(Seconds),
            eager_refresh: loads.eager_refresh,
            xfetch_beta: loads.xfetch_beta,
            ttl_jitter: Some(loads.ttl_jitter),
            distributed_lock: Some(loads.distributed_lock),
            distributed_lock_wait: Some(Seconds(loads.distributed_lock_wait)),
        }
    }
}

/// Applies the defaults and checks the ranges; errors name `path.key`.
pub(super) fn resolve_loads(raw: RawLoads, path: &str) -> Result<LoadsConfig> {
    let fraction = |v: Option<f64>, key: &str, lo_open: bool| -> Result<Option<f64>> {
        match v {
            None => Ok(None),
            Some(f) if f.is_finite() && f < 1.0 && (f > 0.0 || (!lo_open && f == 0.0)) => {
                Ok(Some(f))
            }
            Some(f) => Err(config_error(
                &join(path, key),
                format!(
                    "{f} is out of range: {}",
                    if lo_open {
                        "a fraction greater than 0 and less than 1"
                    } else {
                        "a fraction from 0 to less than 1"
                    }
                ),
            )),
        }
    };
    let xfetch_beta = match raw.xfetch_beta {
        Some(b) if !(b.is_finite() && b > 0.0) => {
            return Err(config_error(
                &join(path, "xfetch_beta"),
                format!("{b} is out of range: a number greater than 0 (1.0 is usual)"),
            ));
        }
        other => other,
    };
    let defaults = LoadsConfig::default();
    let loads = LoadsConfig {
        fail_safe_max: raw.fail_safe_max.map(|s| s.0),
        fail_safe_throttle: raw
            .fail_safe_throttle
            .map_or(defaults.fail_safe_throttle, |s| s.0),
        soft_timeout: raw.soft_timeout.map(|s| s.0),
        hard_timeout: raw.hard_timeout.map(|s| s.0),
        eager_refresh: fraction(raw.eager_refresh, "eager_refresh", true)?,
        xfetch_beta,
        ttl_jitter: fraction(raw.ttl_jitter, "ttl_jitter", false)?.unwrap_or(0.0),
        distributed_lock: raw.distributed_lock.unwrap_or(false),
        distributed_lock_wait: raw
            .distributed_lock_wait
            .map_or(defaults.distributed_lock_wait, |s| s.0),
    };
    if let (Some(soft), Some(hard)) = (loads.soft_timeout, loads.hard_timeout)
        && soft >= hard
    {
        return Err(config_error(
            &join(path, "soft_timeout"),
            format!("{soft:?} must be shorter than hard_timeout ({hard:?})"),
        ));
    }
    Ok(loads)
}
