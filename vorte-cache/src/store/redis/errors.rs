//! How fred's errors become ours: a timeout, a value too large for the server, a server at
//! `maxmemory`, or any other failure of the backend.

use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// Maps a fred error of `what` to ours. The bound on time is fred's own per-command timeout (set
/// from the layer's `timeout_ms` when the client is built): no extra timer per call on the hot
/// path.
pub(super) fn command_error(
    layer: &str,
    backend: &str,
    timeout: Duration,
    what: &str,
    e: &fred::error::Error,
) -> Error {
    if *e.kind() == fred::error::ErrorKind::Timeout {
        Error::new(
            ErrorKind::Timeout,
            format!("{layer} {backend} {what} took longer than {timeout:?}"),
        )
    } else if is_too_large(e) {
        Error::new(
            ErrorKind::ValueTooLarge,
            format!("{layer} {backend} {what}: {}", e.details()),
        )
    } else {
        Error::new(
            ErrorKind::Backend,
            format!("{layer} {backend} {what}: {}", e.details()),
        )
    }
}

/// Whether Redis refused a value for its size: a bulk string longer than the server's
/// `proto-max-bulk-len` (`-ERR Protocol error: invalid bulk length`, after which the server closes
/// the connection; `string exceeds maximum allowed size` from commands that grow a value). The
/// server is healthy: no failure of its circuit (`docs/guarantees.md#f2-circuit-breaker`).
fn is_too_large(e: &fred::error::Error) -> bool {
    let details = e.details();
    details.contains("invalid bulk length") || details.contains("exceeds maximum allowed size")
}

/// Whether Redis refused a command because it is at `maxmemory` with `noeviction` (`-OOM ...`).
pub(super) fn is_out_of_memory(e: &fred::error::Error) -> bool {
    e.details().contains("OOM command not allowed")
}
