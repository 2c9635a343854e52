//! Coalescing of concurrent reads into multi-key reads (`MGET`).
//!
//! A network store pays a fixed cost per command on both ends (framing, dispatch, a task wake in
//! the client; parsing and dispatch in the server), and with many tasks reading at once that
//! fixed cost, not the bytes, is what caps reads per second. So while `max_direct` reads are in
//! flight as single commands, a further read joins a queue instead; the read that finds the queue
//! empty spawns a flush task, which yields once (so that the tasks ready at that moment queue
//! their reads too) and then sends the whole queue as multi-key reads of up to `max_batch` keys,
//! handing each answer back to its read. Batches do not wait for one another or for the single
//! reads: a slow read holds up nothing queued behind it.
//!
//! A lone caller never waits: with nothing in flight, its read is sent at once as a single
//! command, and the only added cost is one uncontended lock taken twice. Under load the batches
//! grow by themselves with the number of waiting callers, with no timer and no delay added.
//!
//! Time: a batch gets what is left of its oldest read's timeout (on the coarse clock), so a
//! queued read too is answered within the layer's timeout, with no timer of its own.
//!
//! Cancellation: a single read's slot is a [`Permit`] freed on drop, whether the read finished or
//! its caller gave up; a queued read whose caller gave up is answered to no one.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::BoxFuture;
use crate::error::{Error, ErrorKind, Result};

/// Reads many physical keys in one round trip, within the given time; answers in the order of the
/// keys.
pub(crate) type MultiGet = Arc<
    dyn Fn(Vec<String>, Duration) -> BoxFuture<'static, Result<Vec<Option<Bytes>>>> + Send + Sync,
>;

/// One store's read coalescer.
pub(crate) struct ReadBatch {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    multi_get: MultiGet,
    max_direct: usize,
    max_batch: usize,
    /// The layer's timeout, which bounds a queued read as it does a single one.
    timeout: Duration,
    /// Names the store in errors.
    what: String,
}

struct State {
    /// Single reads in flight.
    in_flight: usize,
    queue: Vec<Waiter>,
}

struct Waiter {
    key: String,
    reply: oneshot::Sender<Result<Option<Bytes>>>,
    /// When it was queued, on the coarse clock.
    queued_ms: u64,
}

impl ReadBatch {
    /// `what` names the store in errors ("l2 redis").
    pub(crate) fn new(
        multi_get: MultiGet,
        max_direct: usize,
        max_batch: usize,
        timeout: Duration,
        what: String,
    ) -> Self {
        ReadBatch {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    in_flight: 0,
                    queue: Vec::new(),
                }),
                multi_get,
                max_direct: max_direct.max(1),
                max_batch: max_batch.max(1),
                timeout,
                what,
            }),
        }
    }

    /// Reads `key`: with `single` at once when a slot is free, else in the next batch.
    pub(crate) async fn get<Fut>(
        &self,
        key: String,
        single: impl FnOnce(String) -> Fut,
    ) -> Result<Option<Bytes>>
    where
        Fut: Future<Output = Result<Option<Bytes>>>,
    {
        let answer = match self.join(key) {
            Turn::Direct(permit, key) => {
                let result = single(key).await;
                drop(permit);
                return result;
            }
            Turn::Queued(answer) => answer,
        };
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Backend,
                format!("{}: a batched read was abandoned", self.inner.what),
            )),
        }
    }
}

/// What a read does: go at once, holding a slot, or wait for a batch.
enum Turn {
    Direct(Permit, String),
    Queued(oneshot::Receiver<Result<Option<Bytes>>>),
}

impl ReadBatch {
    // Not async, so that the lock's guard is never part of a future (it is not `Send`).
    fn join(&self, key: String) -> Turn {
        let mut state = self.inner.lock();
        // `None`: a single read; `Some(flush_on)`: queued, and the first of its batch when
        // `flush_on` holds the runtime to run the flush on.
        let queued = if state.in_flight < self.inner.max_direct {
            None
        } else if state.queue.is_empty() {
            // This read starts a batch: it needs a runtime to run its flush on (always there
            // when called from a Tokio task; without one, it goes as a single read).
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => Some(Some(runtime)),
                Err(_) => None,
            }
        } else {
            Some(None)
        };
        let Some(flush_on) = queued else {
            state.in_flight += 1;
            return Turn::Direct(Permit(self.inner.clone()), key);
        };
        let (reply, answer) = oneshot::channel();
        state.queue.push(Waiter {
            key,
            reply,
            queued_ms: crate::clock::coarse_ms(),
        });
        drop(state);
        if let Some(runtime) = flush_on {
            runtime.spawn(flush(self.inner.clone()));
        }
        Turn::Queued(answer)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock guards plain fields that every holder leaves consistent, so a poisoned
        // lock (a panic elsewhere while holding it) still holds valid state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One single read's slot, freed on drop.
struct Permit(Arc<Inner>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

/// Sends what queued up while this task waited for its turn, as batches of up to `max_batch`.
async fn flush(inner: Arc<Inner>) {
    // Let the tasks that are ready now queue their reads first.
    tokio::task::yield_now().await;
    let mut waiting = std::mem::take(&mut inner.lock().queue);
    while waiting.len() > inner.max_batch {
        let rest = waiting.split_off(inner.max_batch);
        let batch = std::mem::replace(&mut waiting, rest);
        let inner = inner.clone();
        tokio::spawn(async move { run_batch(&inner, batch).await });
    }
    if !waiting.is_empty() {
        run_batch(&inner, waiting).await;
    }
}

async fn run_batch(inner: &Arc<Inner>, batch: Vec<Waiter>) {
    // The queue is first in, first out: the first waiter is the oldest.
    let oldest = batch.first().map_or(0, |w| w.queued_ms);
    let waited = Duration::from_millis(crate::clock::coarse_ms().saturating_sub(oldest));
    // At least a millisecond, so that a batch formed at its deadline still gets one try.
    let left = inner
        .timeout
        .saturating_sub(waited)
        .max(Duration::from_millis(1));
    let (keys, replies): (Vec<String>, Vec<_>) =
        batch.into_iter().map(|w| (w.key, w.reply)).unzip();
    let count = keys.len();
    let result = (inner.multi_get)(keys, left).await;
    match result {
        Ok(values) if values.len() == count => {
            for (reply, value) in replies.into_iter().zip(values) {
                let _ = reply.send(Ok(value)); // the caller may have given up
            }
        }
        Ok(values) => {
            let e = Error::new(
                ErrorKind::Backend,
                format!(
                    "{}: a multi-key read of {count} keys answered {} values",
                    inner.what,
                    values.len()
                ),
            );
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A multi-get that answers `value-of-<key>` (or fails on a key named `fail`) and records
    /// every batch it was given.
    fn recording() -> (MultiGet, Arc<Mutex<Vec<Vec<String>>>>) {
        let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let seen = batches.clone();
        let multi: MultiGet = Arc::new(move |keys: Vec<String>, _| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.lock().expect("lock").push(keys.clone());
                if keys.iter().any(|k| k == "fail") {
                    return Err(Error::new(ErrorKind::Backend, "mget failed"));
                }
                Ok(keys
                    .iter()
                    .map(|k| Some(Bytes::from(format!("value-of-{k}"))))
                    .collect())
            })
        });
        (multi, batches)
    }

    fn batch(multi: MultiGet, direct: usize) -> Arc<ReadBatch> {
        Arc::new(ReadBatch::new(
            multi,
            direct,
            64,
            Duration::from_secs(5),
            "test".into(),
        ))
    }

    fn value(key: &str) -> Option<Bytes> {
        Some(Bytes::from(format!("value-of-{key}")))
    }

    #[tokio::test]
    async fn a_lone_read_goes_at_once_as_a_single_command() {
        let (multi, batches) = recording();
        let reads = batch(multi, 1);
        for _ in 0..3 {
            let got = reads
                .get("k".into(), |k| async move { Ok(Some(Bytes::from(k))) })
                .await
                .expect("get");
            assert_eq!(got, Some(Bytes::from("k")));
        }
        assert!(batches.lock().expect("lock").is_empty());
        assert_eq!(reads.inner.lock().in_flight, 0);
    }

    /// Starts a single read that never finishes, so that the reads after it queue.
    async fn stuck(reads: &Arc<ReadBatch>) -> tokio::task::JoinHandle<Result<Option<Bytes>>> {
        let task = tokio::spawn({
            let reads = reads.clone();
            async move {
                reads
                    .get("stuck".into(), |_| std::future::pending::<Result<_>>())
                    .await
            }
        });
        while reads.inner.lock().in_flight == 0 {
            tokio::task::yield_now().await;
        }
        task
    }

    #[tokio::test]
    async fn reads_beyond_the_single_ones_go_out_as_one_batch_with_their_own_answers() {
        let (multi, batches) = recording();
        let reads = batch(multi, 1);
        let first = stuck(&reads).await;
        let waiters: Vec<_> = (0..10)
            .map(|i| {
                let reads = reads.clone();
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    let got = reads
                        .get(key.clone(), |_| async { panic!("must be batched") })
                        .await;
                    (key, got)
                })
            })
            .collect();
        // None of them waits for the stuck read.
        for waiter in waiters {
            let (key, got) = waiter.await.expect("task");
            assert_eq!(got.expect("get"), value(&key));
        }
        let batches = batches.lock().expect("lock").clone();
        assert_eq!(batches.len(), 1, "{batches:?}");
        assert_eq!(batches[0].len(), 10);
        first.abort();
        let _ = first.await;
        assert_eq!(
            reads.inner.lock().in_flight,
            0,
            "the aborted read freed its slot"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_reads() {
        let (multi, _) = recording();
        let reads = batch(multi, 1);
        let _first = stuck(&reads).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = ["a", "fail"]
            .into_iter()
            .map(|key| {
                let (reads, calls) = (reads.clone(), calls.clone());
                tokio::spawn(async move {
                    reads
                        .get(key.into(), |_| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            Ok(None)
                        })
                        .await
                })
            })
            .collect();
        for waiter in waiters {
            let e = waiter.await.expect("task").expect_err("the batch failed");
            assert_eq!(e.kind(), ErrorKind::Backend);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_batch_gets_what_is_left_of_its_oldest_reads_timeout() {
        let given = Arc::new(Mutex::new(None));
        let seen = given.clone();
        let multi: MultiGet = Arc::new(move |keys: Vec<String>, left| {
            *seen.lock().expect("lock") = Some(left);
            Box::pin(async move { Ok(vec![None; keys.len()]) })
        });
        let reads = ReadBatch::new(multi, 1, 64, Duration::from_millis(500), "test".into());
        let (reply, answer) = oneshot::channel();
        let oldest = Waiter {
            key: "old".into(),
            reply,
            queued_ms: crate::clock::coarse_ms(),
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (reply, _) = oneshot::channel();
        let newest = Waiter {
            key: "new".into(),
            reply,
            queued_ms: crate::clock::coarse_ms(),
        };
        run_batch(&reads.inner, vec![oldest, newest]).await;
        assert_eq!(answer.await.expect("answered").expect("read"), None);
        let left = given.lock().expect("lock").expect("a batch ran");
        // ~300 ms of the 500 were left for the oldest (the coarse clock and the sleep move by a
        // few ms).
        assert!(
            left <= Duration::from_millis(302) && left >= Duration::from_millis(250),
            "{left:?}"
        );
    }
}
