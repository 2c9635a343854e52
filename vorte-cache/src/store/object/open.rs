//! Opening an object-store layer: one builder per backend, from its typed config.

use std::sync::Arc;
use std::time::Duration;

use super::ObjectStorage;
use crate::config::BackendConfig;
use crate::error::{Error, ErrorKind, Result};

/// Tight retries for a cache tier: object_store's defaults (10 retries, 3 minutes) would hold a
/// read far longer than the layer's timeout allows.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure", feature = "http"))]
fn retry(timeout: Duration) -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: timeout,
        ..Default::default()
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure", feature = "http"))]
fn client_options(timeout: Duration, allow_http: bool) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(2)))
        .with_allow_http(allow_http)
}

fn config_error(path: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{path}: {e}"))
}

impl ObjectStorage {
    /// Opens the object store `backend` describes, for `layer`.
    pub(crate) fn open(
        layer: &str,
        backend: &BackendConfig,
        timeout: Duration,
        key_prefix: &str,
    ) -> Result<Self> {
        let path = |key: &str| format!("cache.layers.{layer}.{key}");
        let prefix = backend.prefix();
        match backend {
            BackendConfig::File(file) => {
                Self::open_file(file.path.clone(), prefix, key_prefix, timeout)
            }
            #[cfg(feature = "s3")]
            BackendConfig::S3(s3) => {
                // `from_env` reads AWS_REGION, AWS_ENDPOINT and the credentials; the layer's own
                // keys override them when set.
                // Conditional puts (`If-None-Match`, `If-Match`) carry compare-and-set
                // (`swap.rs`): always on, whatever the environment says.
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                    .with_bucket_name(&s3.bucket)
                    .with_allow_http(s3.allow_http)
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, s3.allow_http));
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(keys) = &s3.credentials {
                    builder = builder
                        .with_access_key_id(keys.access_key_id.expose())
                        .with_secret_access_key(keys.secret_access_key.expose());
                }
                let store = builder
                    .build()
                    .map_err(|e| config_error(&path("bucket"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "s3",
                    format!("s3://{}", s3.bucket),
                    prefix,
                    key_prefix,
                    timeout,
                    None,
                ))
            }
            #[cfg(feature = "gcs")]
            BackendConfig::Gcs(gcs) => {
                let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&gcs.bucket)
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, false))
                    .build()
                    .map_err(|e| config_error(&path("bucket"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "gcs",
                    format!("gs://{}", gcs.bucket),
                    prefix,
                    key_prefix,
                    timeout,
                    None,
                ))
            }
            #[cfg(feature = "azure")]
            BackendConfig::Azure(azure) => {
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&azure.container)
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, false));
                if let Some(endpoint) = &azure.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                let store = builder
                    .build()
                    .map_err(|e| config_error(&path("bucket"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "azure",
                    format!("azure://{}", azure.container),
                    prefix,
                    key_prefix,
                    timeout,
                    None,
                ))
            }
            #[cfg(feature = "http")]
            BackendConfig::Http(http) => {
                let store = object_store::http::HttpBuilder::new()
                    .with_url(http.url.expose())
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, http.allow_http))
                    .build()
                    .map_err(|e| config_error(&path("url"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "http",
                    "http origin".into(),
                    prefix,
                    key_prefix,
                    timeout,
                    None,
                ))
            }
            other => Err(config_error(
                &path("backend"),
                format!(
                    "`{}` is not an object store built into this build",
                    other.kind().name()
                ),
            )),
        }
    }

    /// Opens (creating it when missing) the directory `dir`, keeping names under the optional
    /// `prefix` (the layer's `prefix` setting, `/`-separated) and then `key_prefix`.
    pub(crate) fn open_file(
        dir: std::path::PathBuf,
        prefix: Option<&str>,
        key_prefix: &str,
        timeout: Duration,
    ) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cache.layers.l4.path: cannot create {}: {e}", dir.display()),
            )
            .with_source(e)
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("cache.layers.l4.path: cannot open {}: {e}", dir.display()),
                )
                .with_source(e)
            })?
            .with_automatic_cleanup(true);
        let locks = super::lock::FileLocks::new(&dir).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "cache.layers.l4.path: cannot create the lock directory in {}: {e}",
                    dir.display()
                ),
            )
            .with_source(e)
        })?;
        Ok(Self::new(
            Arc::new(store),
            "file",
            dir.display().to_string(),
            prefix,
            key_prefix,
            timeout,
            Some(locks),
        ))
    }
}
