//! What a write stores: when its entry stops being fresh and when it goes
//! (`docs/resilience.md#ttl-jitter`, `docs/resilience.md#fail-safe`), and the envelope a layer
//! below L1 keeps of it.

use std::time::Duration;

use bytes::Bytes;

use super::{Engine, Tier};
use crate::codec::{Envelope, Lifetime, TagStamp, Validator};
use crate::config::Serialization;

/// When a written entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Fresh for this long from now (`None`: the cache's `default_ttl`), aged by the write's
    /// [`Aging`].
    Ttl(Option<Duration>),
    /// Exactly this lifetime: a copy keeps what is left of its original's.
    At(Lifetime),
}

/// What turns a TTL into a [`Lifetime`], besides the TTL itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Aging {
    /// Kept stale this long past its TTL, for fail-safe; `None`: the config's `fail_safe_max`.
    pub(crate) stale_for: Option<Duration>,
    /// The TTL times a random factor in `1 ± jitter`; `None`: the config's `ttl_jitter`.
    pub(crate) jitter: Option<f64>,
    /// How long the load that made the value took.
    pub(crate) load_ms: u32,
}

impl Engine {
    /// When an entry written `now` stops being fresh and when it goes
    /// (`docs/resilience.md#ttl-jitter`, `docs/resilience.md#fail-safe`). A value with a
    /// validator (`validated`) is kept stale at least as long again as its TTL, for its loader to
    /// revalidate it (`docs/architecture.md#conditional-refresh`).
    pub(super) fn lifetime(
        &self,
        expiry: Expiry,
        aging: Aging,
        validated: bool,
        now: u64,
    ) -> Lifetime {
        let ttl = match expiry {
            Expiry::At(life) => return life,
            Expiry::Ttl(ttl) => ttl.unwrap_or(self.config.default_ttl).as_millis().max(1) as u64,
        };
        let loads = &self.config.loads;
        let jitter = aging.jitter.unwrap_or(loads.ttl_jitter);
        let ttl = if jitter > 0.0 {
            let factor = 1.0 + jitter * (2.0 * rand::random::<f64>() - 1.0);
            ((ttl as f64) * factor).max(1.0) as u64
        } else {
            ttl
        };
        let fresh_until_ms = now.saturating_add(ttl);
        let mut stale_ms = aging
            .stale_for
            .or(loads.fail_safe_max)
            .map_or(0, |d| d.as_millis() as u64);
        if validated {
            stale_ms = stale_ms.max(ttl);
        }
        Lifetime {
            fresh_until_ms,
            expires_at_ms: fresh_until_ms.saturating_add(stale_ms),
            load_ms: aging.load_ms,
        }
    }

    /// The bytes `tier` stores for an entry, and the TTL to give the store: the one place an
    /// envelope is built for a layer below L1 (writes and counters).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encode_for(
        tier: &Tier,
        key: &str,
        life: Lifetime,
        now: u64,
        stamps: &[TagStamp],
        serialization: Serialization,
        payload: &Bytes,
        validator: Option<&Validator>,
    ) -> (Bytes, Duration) {
        let life = life.capped(tier.ttl_cap, now);
        let env = Envelope {
            expires_at_ms: life.expires_at_ms,
            created_at_ms: now,
            fresh_until_ms: life.fresh_until_ms,
            load_ms: life.load_ms,
            validator: validator.cloned(),
            key: key.to_owned(),
            tags: stamps.to_vec(),
            serialization,
            payload: payload.clone(),
        };
        let ttl = Duration::from_millis(env.expires_at_ms.saturating_sub(now).max(1));
        (env.encode(tier.compression), ttl)
    }
}
