//! Reading the configuration the way the library does: a TOML, JSON or YAML file chosen by its
//! extension, then the `VORTE__…` environment overrides (`docs/cli.md#configuration`).

use std::path::Path;

use vorte_cache::config::{BackendConfig, LayerConfig, Secret};
use vorte_cache::{Config, Error, ErrorKind};

use crate::exit::{CliError, CliResult, Exit};

/// Loads `path` (or the embedded default without one) and applies the environment overrides.
///
/// The library's errors name the config path of the bad value and, for a file, the file (and the
/// line for a TOML syntax error); they are kept as they are, with exit code 3.
pub(crate) fn load(path: Option<&Path>) -> CliResult<Config> {
    let config = match path {
        None => Config::default(),
        Some(path) => from_file(path)?,
    };
    Ok(config.with_env_overrides()?)
}

fn from_file(path: &Path) -> CliResult<Config> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("toml") => Ok(Config::from_toml_file(path)?),
        Some("yaml" | "yml") => Ok(Config::from_yaml_file(path)?),
        Some("json") => {
            // The library has no JSON file loader: read it here, and name the file as its
            // TOML and YAML loaders do.
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::new(
                    Exit::Config,
                    format!("cannot read config file {}: {e}", path.display()),
                )
            })?;
            Config::from_json_str(&text).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("{} (in {})", e.message(), path.display()),
                )
                .into()
            })
        }
        _ => Err(CliError::new(
            Exit::Config,
            format!(
                "config file {}: unknown format; name it *.toml, *.json, *.yaml or *.yml",
                path.display()
            ),
        )),
    }
}

/// Where a layer's server is, for messages: URLs with their credentials replaced by `***` (the
/// library's [`Secret`] display), never the secret itself.
pub(crate) fn describe_layer(layer: &LayerConfig) -> String {
    let urls = |urls: &[Secret]| {
        urls.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &layer.backend {
        BackendConfig::Redis(redis) => format!("redis at {}", redis.url),
        BackendConfig::RedisCluster(cluster) => {
            format!("redis-cluster at {}", urls(&cluster.urls))
        }
        BackendConfig::Memcached(memcached) => format!("memcached at {}", urls(&memcached.urls)),
        BackendConfig::S3(s3) => match &s3.endpoint {
            Some(endpoint) => format!(
                "s3 bucket {} at {}",
                s3.bucket,
                Secret::new(endpoint.as_str())
            ),
            None => format!("s3 bucket {}", s3.bucket),
        },
        BackendConfig::File(file) => format!("file directory {}", file.path.display()),
        BackendConfig::Gcs(gcs) => format!("gcs bucket {}", gcs.bucket),
        BackendConfig::Azure(azure) => format!("azure container {}", azure.container),
        BackendConfig::Http(http) => format!("http at {}", http.url),
    }
}
