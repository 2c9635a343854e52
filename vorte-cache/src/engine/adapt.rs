//! A loader's decisions applied to its fill: adaptive caching
//! (`docs/architecture.md#adaptive-loads`; the decisions are taken in [`crate::load`]).

use std::time::Duration;

use super::fill::FillJob;
use super::{Aging, Engine, Fill, WriteOptions};
use crate::codec::{TagStamp, Validator};
use crate::key;
use crate::layer::{Layer, LayerSet};
use crate::load::Adapted;
use crate::stats::Counters;

/// How a loaded value is written once its loader's decisions are applied.
pub(super) struct Adaptation {
    pub(super) ttl: Option<Duration>,
    pub(super) layers: LayerSet,
    pub(super) stamps: Box<[TagStamp]>,
    /// Stored with the value, which is then kept past its TTL to be revalidated.
    pub(super) validator: Option<Validator>,
}

impl Adaptation {
    /// The fill that stores the value as decided, with the load's credentials and aging.
    pub(super) fn into_job(self, fill: Fill, aging: Aging) -> FillJob {
        FillJob {
            ttl: self.ttl,
            layers: self.layers,
            stamps: self.stamps,
            fill,
            aging,
            validator: self.validator,
        }
    }
}

impl Engine {
    /// The write of a loaded value as its loader decided, or `None` when it is not cached: the
    /// loader skipped it, chose no enabled layer, or added tags that cannot be stamped safely.
    ///
    /// Tags the loader added are stamped now, after the load; an invalidation of one of them
    /// while the load ran would not show in a stamp taken now, so if any tag invalidation reached
    /// this process since `tag_epoch` (taken before the load) the value is not cached: a refused
    /// fill costs a later miss, a kept one could outlive its invalidation
    /// (`docs/guarantees.md#g3-no-resurrection`).
    pub(super) async fn adapt(
        &self,
        key: &str,
        adapted: &Adapted,
        ttl: Option<Duration>,
        layers: LayerSet,
        stamps: Box<[TagStamp]>,
        tag_epoch: u64,
    ) -> Option<Adaptation> {
        if adapted.is_plain() {
            return Some(Adaptation {
                ttl,
                layers,
                stamps,
                validator: None,
            });
        }
        if adapted.not_modified {
            Counters::bump(&self.counters.loads.not_modified);
        }
        let layers = self.adapted_layers(key, adapted, layers)?;
        let stamps = if adapted.tags.is_empty() {
            stamps
        } else {
            if !added_tags_valid(key, adapted) {
                return None;
            }
            if self.tags.epoch() != tag_epoch {
                tracing::debug!(
                    key,
                    "a tag invalidation arrived while the load ran; its value, with tags of its \
                     own, is not cached"
                );
                return None;
            }
            let added = match self.stamps_for(&adapted.tags).await {
                Ok(added) => added,
                Err(e) => {
                    tracing::warn!(key, error = %e, "tag versions unavailable; the value is not cached");
                    return None;
                }
            };
            let mut all = stamps.into_vec();
            for stamp in added {
                if all.iter().all(|s| s.name != stamp.name) {
                    all.push(stamp);
                }
            }
            all.into_boxed_slice()
        };
        Some(Adaptation {
            ttl: adapted.ttl.or(ttl),
            layers,
            stamps,
            validator: adapted.validator.clone(),
        })
    }

    /// The `set` of a value whose producer decided how it is kept (a `#[cached]` function's
    /// `refresh`), or `None` when it is not cached: the same decisions as [`Engine::adapt`]
    /// takes for a load. The tags it added go with the call's and are stamped by the `set`, as
    /// of its write: a `set` is new truth, not a fill that may predate an invalidation.
    pub(crate) fn adapt_set(
        &self,
        key: &str,
        adapted: &Adapted,
        options: WriteOptions,
    ) -> Option<(WriteOptions, Option<Validator>)> {
        if adapted.is_plain() {
            return Some((options, None));
        }
        let layers = self.adapted_layers(key, adapted, options.layers.unwrap_or(LayerSet::ALL))?;
        if !added_tags_valid(key, adapted) {
            return None;
        }
        let mut tags = options.tags;
        for tag in &adapted.tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let options = WriteOptions {
            ttl: adapted.ttl.or(options.ttl),
            tags,
            layers: Some(layers),
        };
        Some((options, adapted.validator.clone()))
    }

    /// The layers that take a value its loader decided about, or `None` when it is not cached:
    /// the loader skipped it, or chose no enabled layer.
    fn adapted_layers(&self, key: &str, adapted: &Adapted, layers: LayerSet) -> Option<LayerSet> {
        if adapted.skip {
            return None;
        }
        let layers = adapted.layers.unwrap_or(layers);
        if !Layer::ALL
            .into_iter()
            .any(|l| layers.contains(l) && self.enabled.contains(l))
        {
            tracing::debug!(key, "the loader chose no enabled layer; not cached");
            return None;
        }
        Some(layers)
    }
}

/// Whether the tags a loader added may be stored (none is a tag the call would refuse).
fn added_tags_valid(key: &str, adapted: &Adapted) -> bool {
    match key::validate_tags(&adapted.tags) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(key, error = %e, "a tag the loader added is not valid; not cached");
            false
        }
    }
}
