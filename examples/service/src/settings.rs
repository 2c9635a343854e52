//! What the service reads from its environment, and the cache configuration built from it.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `PORT` | the port to listen on | `3000` |
//! | `BIND` | the address to listen on (an IP, or `IP:PORT`, which overrides `PORT`) | `127.0.0.1` |
//! | `VORTE_SERVICE_DATA` | the directory of the L4 cache and of the default database | `./vorte-service-data` |
//! | `VORTE_SERVICE_DB` | the SQLite file | `$VORTE_SERVICE_DATA/service.db` |
//! | `DATABASE_URL` | a `sqlite:` URL, used when `VORTE_SERVICE_DB` is not set | — |
//! | `REDIS_URL` | L1 + L2 `redis` at this URL instead of L1 + L4 `file`; the invalidation bus rides on it | — |
//! | `VORTE__CACHE__…` | the library's own overrides of any cache setting (`Config::with_env_overrides`), e.g. `VORTE__CACHE__DEFAULT_TTL=600` | — |
//! | `RUST_LOG` | the log filter | `info` |

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use vorte_cache::Config;

/// The port when `PORT` is not set.
const DEFAULT_PORT: u16 = 3000;
/// The data directory when `VORTE_SERVICE_DATA` is not set, relative to the working directory.
const DEFAULT_DATA_DIR: &str = "vorte-service-data";

/// A setting the service cannot use: its name and why.
#[derive(Debug)]
pub(crate) struct SettingsError(String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// Where the cache's shared layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SharedLayer {
    /// L4 `file` in this directory: survives restarts; no bus, so instances on one directory
    /// see each other's changes only once their own L1 copy expires.
    File(PathBuf),
    /// L2 `redis` at this URL, with the invalidation bus on it: instances share entries and
    /// drop each other's L1 copies within milliseconds.
    Redis(String),
}

/// The service's settings.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Where to listen.
    pub(crate) listen: SocketAddr,
    /// The SQLite database.
    pub(crate) database: SqliteConnectOptions,
    /// A printable name of the database, for the start-up log.
    pub(crate) database_name: String,
    /// The cache's shared layer.
    pub(crate) shared: SharedLayer,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub(crate) fn from_env() -> Result<Settings, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the settings through `var` (the environment, or a map in a test).
    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let port = match var("PORT") {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| SettingsError(format!("PORT: {p:?} is not a port number")))?,
            None => DEFAULT_PORT,
        };
        let listen = match var("BIND") {
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            Some(bind) => match (bind.parse::<SocketAddr>(), bind.parse::<IpAddr>()) {
                (Ok(addr), _) => addr,
                (_, Ok(ip)) => SocketAddr::new(ip, port),
                _ => {
                    return Err(SettingsError(format!(
                        "BIND: {bind:?} is neither an IP address nor IP:PORT"
                    )));
                }
            },
        };
        let data_dir = PathBuf::from(var("VORTE_SERVICE_DATA").unwrap_or(DEFAULT_DATA_DIR.into()));
        let (database, database_name) = match (var("VORTE_SERVICE_DB"), var("DATABASE_URL")) {
            (Some(path), _) => (SqliteConnectOptions::new().filename(&path), path),
            (None, Some(url)) => {
                if !url.starts_with("sqlite:") {
                    return Err(SettingsError(format!(
                        "DATABASE_URL: {url:?} is not a sqlite: URL (this service runs on SQLite)"
                    )));
                }
                let options = SqliteConnectOptions::from_str(&url)
                    .map_err(|e| SettingsError(format!("DATABASE_URL: {e}")))?;
                (options, url)
            }
            (None, None) => {
                let path = data_dir.join("service.db");
                let name = path.display().to_string();
                (SqliteConnectOptions::new().filename(path), name)
            }
        };
        let shared = match var("REDIS_URL") {
            Some(url) => SharedLayer::Redis(url),
            None => SharedLayer::File(data_dir.join("cache")),
        };
        Ok(Settings {
            listen,
            database,
            database_name,
            shared,
        })
    }

    /// The data directory to create before opening the database and L4, if any.
    pub(crate) fn directories(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(parent) = self.database.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            dirs.push(parent.to_path_buf());
        }
        if let SharedLayer::File(dir) = &self.shared {
            dirs.push(dir.clone());
        }
        dirs
    }

    /// The cache configuration: L1 plus the shared layer, as the seed's dict writes it, then the
    /// library's `VORTE__…` environment overrides on top (checked like the same keys in a file).
    pub(crate) fn cache_config(&self) -> vorte_cache::Result<Config> {
        let shared = match &self.shared {
            SharedLayer::File(path) => serde_json::json!({
                "l4": { "enabled": true, "backend": "file", "path": path, "ttl": 86400 }
            }),
            SharedLayer::Redis(url) => serde_json::json!({
                "l2": { "enabled": true, "backend": "redis", "url": url, "ttl": 300 }
            }),
        };
        let mut layers = serde_json::json!({
            "l1": { "enabled": true, "max_size": 10000, "ttl": 60 }
        });
        if let (Some(layers), Some(shared)) = (layers.as_object_mut(), shared.as_object()) {
            layers.extend(shared.clone());
        }
        Config::from_json(serde_json::json!({
            "cache": {
                "default_ttl": 300,
                "key_prefix": "vorte-service:",
                "serialization": "msgpack",
                "layers": layers,
            }
        }))?
        .with_env_overrides()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn no_environment_is_l1_and_l4_file_on_port_3000() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(
            s.shared,
            SharedLayer::File(PathBuf::from("vorte-service-data/cache"))
        );
        assert_eq!(s.database_name, "vorte-service-data/service.db");
        let config = s.cache_config().unwrap();
        assert!(config.cache.layers.l2.is_none());
        assert_eq!(
            config.cache.layers.l4.map(|l| l.kind()),
            Some(vorte_cache::config::Backend::File)
        );
    }

    #[test]
    fn redis_url_gives_l1_and_l2_redis() {
        let s = settings(&[("REDIS_URL", "redis://127.0.0.1:6390"), ("PORT", "3001")]).unwrap();
        assert_eq!(s.listen.port(), 3001);
        let config = s.cache_config().unwrap();
        assert!(config.cache.layers.l4.is_none());
        assert_eq!(
            config.cache.layers.l2.map(|l| l.kind()),
            Some(vorte_cache::config::Backend::Redis)
        );
    }

    #[test]
    fn bind_takes_an_ip_or_an_address() {
        let s = settings(&[("BIND", "0.0.0.0"), ("PORT", "8080")]).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        let s = settings(&[("BIND", "127.0.0.1:9000"), ("PORT", "8080")]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
    }

    #[test]
    fn bad_values_are_errors_that_name_the_variable() {
        let e = settings(&[("PORT", "http")]).unwrap_err();
        assert!(e.to_string().starts_with("PORT:"), "{e}");
        let e = settings(&[("BIND", "localhost:x")]).unwrap_err();
        assert!(e.to_string().starts_with("BIND:"), "{e}");
        let e = settings(&[("DATABASE_URL", "postgres://x")]).unwrap_err();
        assert!(e.to_string().starts_with("DATABASE_URL:"), "{e}");
        let e = settings(&[("REDIS_URL", "localhost:6379")])
            .unwrap()
            .cache_config()
            .unwrap_err();
        assert!(e.to_string().contains("cache.layers.l2.url"), "{e}");
    }

    #[test]
    fn the_database_file_is_the_one_named() {
        let s = settings(&[("VORTE_SERVICE_DB", "/tmp/x/shared.db")]).unwrap();
        assert_eq!(s.database_name, "/tmp/x/shared.db");
        assert_eq!(
            s.directories()[0],
            PathBuf::from("/tmp/x"),
            "the database's directory is created"
        );
    }
}
