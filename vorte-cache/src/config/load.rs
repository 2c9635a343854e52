//! The loaders: TOML, JSON and YAML, from a string, a value or a file.

use std::path::Path;

use serde_json::Value;

use super::Config;
use super::raw::{PathError, StrictValue, no_path, parse_raw};
use super::resolve::{config_error, resolve_config};
use crate::error::{Error, ErrorKind, Result};

impl Config {
    /// Parses a TOML document holding a `[cache]` table.
    pub fn from_toml_str(toml: &str) -> Result<Config> {
        let syntax = |e: toml::de::Error| {
            let at = e.span().map_or(String::new(), |span| {
                let before = &toml[..span.start.min(toml.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            });
            Error::new(
                ErrorKind::Config,
                format!("TOML syntax error{at}: {}", e.message().trim_end()),
            )
            .with_source(e)
        };
        let deserializer = toml::Deserializer::parse(toml).map_err(syntax)?;
        let value = match serde_path_to_error::deserialize::<_, StrictValue>(deserializer) {
            Ok(v) => v.0,
            Err(e) if no_path(e.path()) => return Err(syntax(e.into_inner())),
            Err(e) => {
                let path = e.path().to_string();
                return Err(config_error(&path, e.into_inner().message().trim_end()));
            }
        };
        Config::from_json(value)
    }

    /// Reads and parses a TOML file. Errors name the file as well as the config path.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = read_file(path)?;
        Config::from_toml_str(&text).map_err(|e| in_file(e, path))
    }

    /// Takes the seed's dict as written: `{"cache": {"default_ttl": 300, "layers": {…}}}`.
    ///
    /// A `null` document is the default configuration.
    pub fn from_json(value: Value) -> Result<Config> {
        let raw = parse_raw(value).map_err(PathError::into_error)?;
        resolve_config(raw)
    }

    /// Parses a JSON document.
    pub fn from_json_str(json: &str) -> Result<Config> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            Error::new(ErrorKind::Config, format!("JSON syntax error: {e}")).with_source(e)
        })?;
        Config::from_json(value)
    }

    /// Parses a YAML document. An empty document is the default configuration.
    pub fn from_yaml_str(yaml: &str) -> Result<Config> {
        if yaml.trim().is_empty() {
            return Ok(Config::default());
        }
        let deserializer = serde_norway::Deserializer::from_str(yaml);
        let value = match serde_path_to_error::deserialize::<_, StrictValue>(deserializer) {
            Ok(v) => v.0,
            Err(e) if no_path(e.path()) => {
                let e = e.into_inner();
                return Err(
                    Error::new(ErrorKind::Config, format!("YAML syntax error: {e}")).with_source(e),
                );
            }
            Err(e) => {
                // serde_norway's message may already start with the path.
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = inner.to_string();
                let message = message
                    .strip_prefix(&format!("{path}: "))
                    .unwrap_or(&message)
                    .to_owned();
                return Err(config_error(&path, message).with_source(inner));
            }
        };
        Config::from_json(value)
    }

    /// Reads and parses a YAML file. Errors name the file as well as the config path.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = read_file(path)?;
        Config::from_yaml_str(&text).map_err(|e| in_file(e, path))
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read config file {}: {e}", path.display()),
        )
        .with_source(e)
    })
}

fn in_file(err: Error, path: &Path) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{} (in {})", err.message(), path.display()),
    )
}
