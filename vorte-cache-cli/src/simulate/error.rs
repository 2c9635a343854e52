//! What can go wrong in a simulation, each case naming the file (and line) it is about
//! (`docs/simulate.md#errors-and-exit-codes`).

use std::fmt;
use std::path::PathBuf;

/// A simulation that could not run or could not write its report.
#[derive(Debug)]
pub(crate) enum SimulateError {
    /// An option's value makes no sense (a size of `0`, a TTL of `5x`, ...).
    Argument(String),
    /// The trace cannot be opened or read (missing, unreadable, a corrupt zstd frame).
    Io {
        /// The trace or output file.
        path: PathBuf,
        /// The line being read, when known.
        line: Option<u64>,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line of the trace is not in its format.
    Parse {
        /// The trace.
        path: PathBuf,
        /// The line, counted from 1.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The trace holds no request.
    Empty(PathBuf),
    /// A report (CSV, SVG) could not be written.
    Output {
        /// The file being written.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl SimulateError {
    /// The process exit code: 2 for a bad option (as clap's own usage errors), 1 for the rest.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            SimulateError::Argument(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for SimulateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimulateError::Argument(message) => write!(f, "{message}"),
            SimulateError::Io {
                path,
                line: Some(line),
                source,
            } => write!(f, "{}:{line}: {source}", path.display()),
            SimulateError::Io {
                path,
                line: None,
                source,
            } => write!(f, "{}: {source}", path.display()),
            SimulateError::Parse { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
            SimulateError::Empty(path) => {
                write!(f, "{}: the trace holds no request", path.display())
            }
            SimulateError::Output { path, reason } => {
                write!(f, "cannot write {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for SimulateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimulateError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
