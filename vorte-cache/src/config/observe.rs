//! `[cache.observe]`: what the cache's spans and recent-activity list may show
//! (`docs/observability.md`).

use serde::{Deserialize, Serialize};

use super::resolve::{config_error, join};
use crate::error::Result;

/// The default of [`ObserveConfig::recent_activity`].
const DEFAULT_RECENT: usize = 100;
/// The most [`ObserveConfig::recent_activity`] may be.
const MAX_RECENT: usize = 10_000;

/// How keys and tags appear in spans and in the recent activity (`record_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRecording {
    /// Not at all (the default): keys can carry personal data.
    #[default]
    None,
    /// As a 64-bit hash (hex): the same key always looks the same, and cannot be read back.
    Hash,
    /// As they are.
    Plain,
}

/// `[cache.observe]`, with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveConfig {
    /// `record_keys`: `"none"` (default), `"hash"` or `"plain"`.
    pub record_keys: KeyRecording,
    /// `recent_activity`: how many of the latest invalidations and events
    /// [`Cache::recent_activity`](crate::Cache::recent_activity) keeps (0 to 10,000; default 100).
    pub recent_activity: usize,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            record_keys: KeyRecording::None,
            recent_activity: DEFAULT_RECENT,
        }
    }
}

/// The file grammar of `[cache.observe]`.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of observability settings")]
pub(super) struct RawObserve {
    #[serde(skip_serializing_if = "Option::is_none")]
    record_keys: Option<KeyRecording>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recent_activity: Option<usize>,
}

impl RawObserve {
    /// `observe` in the file grammar: resolving it again gives `observe` back.
    pub(super) fn from_resolved(observe: &ObserveConfig) -> RawObserve {
        RawObserve {
            record_keys: Some(observe.record_keys),
            recent_activity: Some(observe.recent_activity),
        }
    }
}

/// Applies the defaults and checks the range; errors name `path.key`.
pub(super) fn resolve_observe(raw: RawObserve, path: &str) -> Result<ObserveConfig> {
    let recent_activity = raw.recent_activity.unwrap_or(DEFAULT_RECENT);
    if recent_activity > MAX_RECENT {
        return Err(config_error(
            &join(path, "recent_activity"),
            format!("{recent_activity} is out of range: 0 to {MAX_RECENT}"),
        ));
    }
    Ok(ObserveConfig {
        record_keys: raw.record_keys.unwrap_or_default(),
        recent_activity,
    })
}
