//! The confirmation `flush` asks for (`docs/cli.md#flush`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::exit::{CliError, CliResult};

/// Asks `question` on the terminal and returns `Ok` on `y` or `yes`.
///
/// Without a terminal on stdin nobody can answer, and a script that forgot `--yes` must not
/// flush a cache by accident: that is a usage error (exit 2), as is any answer but yes.
pub(super) fn flush(question: &str) -> CliResult {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(
            "refusing to flush without --yes: stdin is not a terminal, so nobody can confirm",
        ));
    }
    let mut err = std::io::stderr().lock();
    // The prompt goes to stderr so that stdout stays the command's answer.
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::usage(format!("cannot read the confirmation: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::usage("flush not confirmed: nothing was removed")),
    }
}
