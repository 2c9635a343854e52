//! Opening a layer's store from its configuration.

use std::sync::Arc;

use crate::config::LayerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::layer::Layer;
use crate::store::Store;

/// Opens the store that `cfg` describes for `layer`, with every key under `key_prefix`.
///
/// This is what the cache does for each configured layer below L1; it is public so that a
/// store can be exercised on its own (the store contract suite does). The store trusts what
/// resolution checks: `cfg` as the loaders build it, and a `key_prefix` as `[cache] key_prefix`
/// resolves with this backend: ending with its only `:`, so that no two prefixes' names overlap,
/// and for memcached printable ASCII.
///
/// # Errors
///
/// [`ErrorKind::Config`] when the backend is not built into this build, or a URL or file of
/// `cfg` cannot be used; the message names the config path.
pub async fn open(
    layer: Layer,
    cfg: &LayerConfig,
    #[cfg_attr(
        not(any(feature = "redis", feature = "memcached", feature = "object-store")),
        expect(unused_variables, reason = "no store is built")
    )]
    key_prefix: &str,
) -> Result<Arc<dyn Store>> {
    let built: &[&str] = &[
        #[cfg(feature = "redis")]
        "redis",
        #[cfg(feature = "redis-cluster")]
        "redis-cluster",
        #[cfg(feature = "memcached")]
        "memcached",
        #[cfg(feature = "file")]
        "file",
        #[cfg(feature = "s3")]
        "s3",
        #[cfg(feature = "gcs")]
        "gcs",
        #[cfg(feature = "azure")]
        "azure",
        #[cfg(feature = "http")]
        "http",
    ];
    match &cfg.backend {
        #[cfg(feature = "object-store")]
        backend @ (crate::config::BackendConfig::File(_)
        | crate::config::BackendConfig::S3(_)
        | crate::config::BackendConfig::Gcs(_)
        | crate::config::BackendConfig::Azure(_)
        | crate::config::BackendConfig::Http(_))
            if built.contains(&backend.kind().name()) =>
        {
            Ok(Arc::new(crate::store::object::ObjectStorage::open(
                layer.name(),
                backend,
                cfg.timeout,
                key_prefix,
            )?))
        }
        #[cfg(feature = "redis")]
        crate::config::BackendConfig::Redis(redis) => Ok(Arc::new(
            crate::store::redis::RedisStore::connect(layer.name(), redis, cfg.timeout, key_prefix)
                .await?,
        )),
        #[cfg(feature = "redis-cluster")]
        crate::config::BackendConfig::RedisCluster(cluster) => Ok(Arc::new(
            crate::store::redis::RedisStore::connect_cluster(
                layer.name(),
                cluster,
                cfg.timeout,
                key_prefix,
                cfg.breaker,
            )
            .await?,
        )),
        #[cfg(feature = "memcached")]
        crate::config::BackendConfig::Memcached(memcached) => Ok(Arc::new(
            crate::store::memcached::MemcachedStore::connect(
                layer.name(),
                memcached,
                key_prefix,
                cfg.timeout,
                cfg.breaker,
            )
            .await?,
        )),
        other => Err(Error::new(
            ErrorKind::Config,
            format!(
                "cache.layers.{layer}.backend: the `{}` backend is not built into this build of \
                 vorte-cache (built: {}); enable its cargo feature",
                other.kind().name(),
                built.join(", ")
            ),
        )),
    }
}
