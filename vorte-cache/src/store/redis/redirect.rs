//! Sending a command again when fred gave up following its redirections.
//!
//! After a `MOVED`, fred re-reads the topology from one node and sends the command again. While
//! slots move, that node may not know the new owner yet, so the command goes back to the old one,
//! is redirected again, and after [`super::REDIRECTIONS`] fred fails it ("Too many
//! redirections"). Every redirection means the command did not run, so it is safe to send it
//! again, compare-and-set included, once the cluster had a moment to spread the news
//! (`docs/consistency.md#redis-cluster-topology-changes`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::error::{Error as FredError, ErrorKind as FredErrorKind};

/// The first pause before sending a command again; it doubles each time.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// The reply of the `ASKING` that fred sends before a command it follows to the node an `ASK`
/// named. While slots move, fred now and then hands it back as the followed read's own value
/// (`reads_during_resharding_find_every_key` read `OK` for an entry, about one run in five on
/// the project's machine). No entry, tombstone or tag record of ours is those two bytes, so such
/// a read did not answer what was asked, and is sent again like a redirected one.
const ASKING_REPLY: &[u8] = b"OK";

/// How a read that got [`ASKING_REPLY`] for a value fails, to be sent again.
const ASKING_REPLY_AS_VALUE: &str = "the ASKING reply came back as a read's value";

/// A single read's answer, or a failure that [`follow`] sends again if it is the `ASKING` reply.
pub(super) fn value(read: Result<Option<Bytes>, FredError>) -> Result<Option<Bytes>, FredError> {
    match read {
        Ok(Some(v)) if v.as_ref() == ASKING_REPLY => Err(asking_reply_as_value()),
        other => other,
    }
}

/// A multi-key read's answers, or a failure that [`follow`] sends again if one of them is the
/// `ASKING` reply.
pub(super) fn values(
    read: Result<Vec<Option<Bytes>>, FredError>,
) -> Result<Vec<Option<Bytes>>, FredError> {
    match read {
        Ok(values) if values.iter().any(|v| v.as_deref() == Some(ASKING_REPLY)) => {
            Err(asking_reply_as_value())
        }
        other => other,
    }
}

fn asking_reply_as_value() -> FredError {
    FredError::new(FredErrorKind::Routing, ASKING_REPLY_AS_VALUE)
}

/// Whether a command failed without running, so that sending it again is safe: fred's
/// redirections ran out, or a node answered `TRYAGAIN` (a multi-key command, such as a read
/// batch's `MGET`, on a slot whose keys are half moved) or `CLUSTERDOWN` (the cluster is
/// electing a new primary), or a read got the `ASKING` reply for its value.
fn redirected_too_often<T>(result: &Result<T, FredError>) -> bool {
    matches!(result, Err(e) if (*e.kind() == FredErrorKind::Routing
            && (e.details().contains("Too many redirections")
                || e.details() == ASKING_REPLY_AS_VALUE))
        || e.details().starts_with("TRYAGAIN")
        || e.details().starts_with("CLUSTERDOWN"))
}

/// Runs `call`, and again after a pause while it fails only because its redirections ran out,
/// until `budget` (counted from now) is spent; then the last result.
pub(super) async fn follow<T, F, Fut>(budget: Duration, call: F) -> Result<T, FredError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, FredError>>,
{
    let started = Instant::now();
    let mut result = call().await;
    let mut pause = FIRST_PAUSE;
    while redirected_too_often(&result) {
        let left = budget.saturating_sub(started.elapsed());
        if left <= pause {
            break;
        }
        tokio::time::sleep(pause).await;
        match tokio::time::timeout(left - pause, call()).await {
            Ok(next) => result = next,
            Err(_) => break,
        }
        pause *= 2;
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn too_many() -> FredError {
        FredError::new(FredErrorKind::Routing, "Too many redirections.")
    }

    #[tokio::test]
    async fn a_command_redirected_too_often_is_sent_again_until_it_lands() {
        let calls = AtomicU32::new(0);
        let result = follow(Duration::from_secs(5), || async {
            if calls.fetch_add(1, Ordering::Relaxed) < 2 {
                Err(too_many())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    /// `reads_during_resharding_find_every_key` (tests/cluster_topology.rs) missed a key now and
    /// then in full CI runs: a read batch's `MGET` of two keys of one slot met the slot half
    /// moved, and the node's `TRYAGAIN` became a miss.
    #[tokio::test]
    async fn tryagain_and_clusterdown_are_sent_again_until_the_command_lands() {
        for answer in [
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
        ] {
            let calls = AtomicU32::new(0);
            let result = follow(Duration::from_secs(5), || async {
                if calls.fetch_add(1, Ordering::Relaxed) < 2 {
                    Err(fred::error::Error::new(FredErrorKind::Unknown, answer))
                } else {
                    Ok(7)
                }
            })
            .await;
            assert_eq!(result.ok(), Some(7), "{answer}");
            assert_eq!(calls.load(Ordering::Relaxed), 3, "{answer}");
        }
    }

    #[tokio::test]
    async fn a_read_that_got_the_asking_reply_is_sent_again() {
        let calls = AtomicU32::new(0);
        let result = follow(Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            let answer = if n == 0 { ASKING_REPLY } else { b"entry" };
            value(Ok(Some(Bytes::from_static(answer))))
        })
        .await;
        assert_eq!(result.ok().flatten().as_deref(), Some(&b"entry"[..]));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        let calls = AtomicU32::new(0);
        let result = follow(Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            let second = if n == 0 { ASKING_REPLY } else { b"b" };
            values(Ok(vec![None, Some(Bytes::from_static(second))]))
        })
        .await;
        assert_eq!(
            result.ok(),
            Some(vec![None, Some(Bytes::from_static(b"b"))]),
            "a batch with the ASKING reply among its values is read again whole"
        );
    }

    #[tokio::test]
    async fn other_errors_are_never_sent_again() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = follow(Duration::from_secs(5), || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(FredError::new(FredErrorKind::IO, "connection closed"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_budget_bounds_the_retries() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = follow(Duration::from_millis(50), || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(too_many())
        })
        .await;
        assert!(redirected_too_often(&result));
        // 5, 10 and 20 ms pauses fit in 50 ms; 40 more would not.
        assert!(calls.load(Ordering::Relaxed) <= 4);
    }
}
