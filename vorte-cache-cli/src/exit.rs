//! The CLI's error type and its exit codes (`docs/cli.md#exit-codes`).
//!
//! Scripts rely on the codes, so they are fixed here and documented there; each error says
//! which one it ends with, and its message is what the user reads on stderr.

use std::fmt;
use std::process::ExitCode;

use vorte_cache::ErrorKind;

/// The exit codes of `vorte-cache` (`docs/cli.md#exit-codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 1: the key is not in the cache, or nothing matched (`get`, `ttl`, `keys`, `del`).
    NotFound = 1,
    /// 2: a usage error: clap's own (unknown option, missing argument), and the arguments the
    /// command checks itself (invalid key or glob, bad JSON, `flush` without `--yes` off a terminal).
    Usage = 2,
    /// 3: the configuration cannot be read or is invalid.
    Config = 3,
    /// 4: a server of the cache did not answer (refused, timed out, failed).
    Unreachable = 4,
    /// 5: any other failure.
    Failure = 5,
}

impl Exit {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// The name shown in `--json` errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Exit::NotFound => "not_found",
            Exit::Usage => "usage",
            Exit::Config => "config",
            Exit::Unreachable => "unreachable",
            Exit::Failure => "failure",
        }
    }
}

/// A failed command: what to tell the user, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError {
    exit: Exit,
    message: String,
}

/// The result of a command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// An error ending with `exit`.
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
        }
    }

    /// Exit 1: nothing found.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        CliError::new(Exit::NotFound, message)
    }

    /// Exit 2: bad arguments.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, message)
    }

    /// The exit code this error ends the process with.
    pub(crate) fn exit(&self) -> Exit {
        self.exit
    }

    /// What the user reads.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit.code())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A library error keeps its message (the library never puts credentials in one:
/// `docs/guarantees.md#s1-credentials-never-shown`) and gets the exit code of its kind.
impl From<vorte_cache::Error> for CliError {
    fn from(e: vorte_cache::Error) -> Self {
        let exit = match e.kind() {
            ErrorKind::Config => Exit::Config,
            ErrorKind::InvalidKey | ErrorKind::InvalidGlob => Exit::Usage,
            ErrorKind::Backend | ErrorKind::Timeout => Exit::Unreachable,
            _ => Exit::Failure,
        };
        CliError::new(exit, e.to_string())
    }
}
