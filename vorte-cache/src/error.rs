//! The one error type of the crate.

use std::fmt;
use std::sync::Arc;

/// `Result<T, vorte_cache::Error>`, returned by every fallible call of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that want to react to a class of failure.
///
/// Match on [`Error::kind`]. The enum is `#[non_exhaustive]`: keep a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid. The message names the config path (`cache.layers.l2.url`).
    /// Fix the configuration; retrying will not help.
    Config,
    /// The key is empty, longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes, or holds a NUL byte.
    InvalidKey,
    /// The encoded value is larger than the limit of every layer it was meant for.
    ValueTooLarge,
    /// The glob given to [`Cache::keys`](crate::Cache::keys) is malformed (for example an unclosed `[`).
    InvalidGlob,
    /// [`Cache::increment`](crate::Cache::increment) found a value that is not an integer, or the
    /// sum overflowed `i64`. The stored value is left as it was.
    NotAnInteger,
    /// The stored value is well formed but does not decode into the requested type. The value stays
    /// in the cache; read it with the type it was written with, or overwrite it.
    TypeMismatch,
    /// The value could not be serialized (for example a map with non-string keys in JSON).
    Serialize,
    /// The loader given to [`Cache::get_or_set`](crate::Cache::get_or_set) failed. The source is kept
    /// and nothing was cached.
    Loader,
    /// An `#[on_event]` handler failed, or its payload did not bind to its parameters.
    Handler,
    /// A layer's backend failed (I/O, network, server error). Reads skip such a layer; writes report
    /// it once every selected layer has been tried.
    Backend,
    /// A layer did not answer within its timeout.
    Timeout,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "invalid configuration",
            ErrorKind::InvalidKey => "invalid key",
            ErrorKind::ValueTooLarge => "value too large",
            ErrorKind::InvalidGlob => "invalid glob",
            ErrorKind::NotAnInteger => "not an integer",
            ErrorKind::TypeMismatch => "type mismatch",
            ErrorKind::Serialize => "serialization failed",
            ErrorKind::Loader => "loader failed",
            ErrorKind::Handler => "event handler failed",
            ErrorKind::Backend => "backend error",
            ErrorKind::Timeout => "timed out",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every fallible call in vorte-cache: a [`kind`](Error::kind), a message, and the
/// underlying error as [`source`](std::error::Error::source) when there is one.
///
/// `Display` renders `"{kind}: {message}"`, e.g.
/// `invalid configuration: cache.layers.l2.url: missing field`.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Source>,
}

impl Error {
    /// An error of `kind` with `message` (shown after the kind: `"{kind}: {message}"`).
    ///
    /// For an outside [`Store`](crate::Store), [`Error::backend`] and [`Error::timeout`] say the
    /// same in fewer words; those are the two kinds the cache expects from a store (it skips the
    /// layer for that call and counts the failure).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A [`ErrorKind::Backend`] error: the store's server or I/O failed.
    ///
    /// ```
    /// use vorte_cache::{Error, ErrorKind};
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    /// let e = Error::backend("l2 mystore get: connection lost").with_source(io);
    /// assert_eq!(e.kind(), ErrorKind::Backend);
    /// assert_eq!(e.to_string(), "backend error: l2 mystore get: connection lost");
    /// assert!(std::error::Error::source(&e).is_some());
    ///
    /// let slow = Error::timeout("l2 mystore get took longer than 50ms");
    /// assert_eq!(slow.kind(), ErrorKind::Timeout);
    /// ```
    pub fn backend(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Backend, message)
    }

    /// A [`ErrorKind::Timeout`] error: the store did not answer within its time limit.
    pub fn timeout(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Timeout, message)
    }

    /// Keeps `source` as the underlying error ([`std::error::Error::source`]), replacing any
    /// earlier one. The message is not changed: put what the reader needs in it.
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// The class of failure, to match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
