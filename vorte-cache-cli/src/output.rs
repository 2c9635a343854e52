//! Where a command's answer goes: plain text for people, or one JSON document with `--json`.

use std::io::Write as _;

use serde::Serialize;

use crate::exit::{CliError, CliResult, Exit};

/// The output mode chosen by the global `--json` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Output {
    /// `--json`: every read command prints one JSON document on stdout, and errors are a JSON
    /// object on stderr.
    pub(crate) json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON on stdout, one document.
    pub(crate) fn print_json<T: Serialize + ?Sized>(&self, value: &T) -> CliResult {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::new(Exit::Failure, format!("cannot render JSON: {e}")))?;
        println_stdout(&text)
    }

    /// Prints `text` on stdout (text mode).
    pub(crate) fn print_text(&self, text: &str) -> CliResult {
        println_stdout(text)
    }

    /// Reports `error` on stderr: `vorte-cache: <message>`, or with `--json`
    /// `{"error": {"exit": 4, "kind": "unreachable", "message": "..."}}`.
    pub(crate) fn report(&self, error: &CliError) {
        let text = if self.json {
            serde_json::json!({
                "error": {
                    "exit": error.exit().code(),
                    "kind": error.exit().name(),
                    "message": error.message(),
                }
            })
            .to_string()
        } else {
            format!("vorte-cache: {}", error.message())
        };
        // Nothing more can be done if stderr is gone.
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

/// Writes a line on stdout; a closed pipe (`vorte-cache keys '*' | head`) is not a failure worth
/// a panic, so it ends the command quietly with the failure code.
fn println_stdout(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::new(Exit::Failure, format!("cannot write to stdout: {e}")))
}
