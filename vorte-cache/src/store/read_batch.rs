//! Coalescing of concurrent reads into multi-key reads (`MGET`).
//!
//! A network store pays a fixed cost per command on both ends (framing, dispatch, a task wake in
//! the client; parsing and dispatch in the server), and that fixed cost, not the bytes, is what
//! caps reads per second when many tasks read at once. So a store lets at most `max_direct` reads
//! run as single commands at a time; a read that arrives while they are all busy joins a queue,
//! and when one of them finishes, the whole queue (up to `max_batch`) goes out as one multi-key
//! read, whose answers are handed back to each waiting read.
//!
//! A lone caller never waits: with nothing in flight, its read is sent at once as a single
//! command, and the only added cost is one uncontended lock taken twice. Under load the batches
//! grow by themselves with the number of waiting callers, with no timer and no delay added.
//!
//! Cancellation: the slot of a read in flight is a [`Permit`] that hands itself to the queue when
//! dropped, whether the read finished or its caller gave up, so the queue never stalls; a queued
//! read whose batch is lost (the runtime shutting down) sees a closed channel, i.e. an error.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::BoxFuture;
use crate::error::{Error, ErrorKind, Result};

/// Reads many physical keys in one round trip; answers in the order of the keys.
pub(crate) type MultiGet =
    Arc<dyn Fn(Vec<String>) -> BoxFuture<'static, Result<Vec<Option<Bytes>>>> + Send + Sync>;

/// One store's read coalescer.
pub(crate) struct ReadBatch {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    multi_get: MultiGet,
    max_direct: usize,
    max_batch: usize,
    /// How long a queued read waits for its batch before it fails as `Timeout`.
    timeout: Duration,
    /// Names the store in errors.
    what: String,
}

/// Invariant: `queue` is empty unless all `max_direct` slots are taken.
struct State {
    in_flight: usize,
    queue: Vec<Waiter>,
}

struct Waiter {
    key: String,
    reply: oneshot::Sender<Result<Option<Bytes>>>,
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
        match tokio::time::timeout(self.inner.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Backend,
                format!("{}: a batched read was abandoned", self.inner.what),
            )),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} batched get took longer than {:?}",
                    self.inner.what, self.inner.timeout
                ),
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
        if state.in_flight < self.inner.max_direct {
            state.in_flight += 1;
            return Turn::Direct(Permit(self.inner.clone()), key);
        }
        let (reply, answer) = oneshot::channel();
        state.queue.push(Waiter { key, reply });
        Turn::Queued(answer)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock guards two plain fields that every holder leaves consistent, so a poisoned
        // lock (a panic elsewhere while holding it) still holds valid state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One taken slot: its drop frees the slot or hands it to the next batch.
struct Permit(Arc<Inner>);

impl Drop for Permit {
    fn drop(&mut self) {
        let inner = &self.0;
        let batch = {
            let mut state = inner.lock();
            if state.queue.is_empty() {
                state.in_flight -= 1;
                return;
            }
            let take = state.queue.len().min(inner.max_batch);
            state.queue.drain(..take).collect::<Vec<_>>()
        };
        // The slot passes to the batch: `in_flight` stays as it is.
        let next = Permit(inner.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(run_batch(next, batch));
            }
            Err(_) => {
                // No runtime to run it on (shutting down): the waiters see a closed channel, and
                // the next permit's drop goes on with the rest of the queue.
                drop(batch);
                drop(next);
            }
        }
    }
}

async fn run_batch(permit: Permit, batch: Vec<Waiter>) {
    let (keys, replies): (Vec<String>, Vec<_>) =
        batch.into_iter().map(|w| (w.key, w.reply)).unzip();
    let count = keys.len();
    let result = (permit.0.multi_get)(keys).await;
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
                    permit.0.what,
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
    drop(permit);
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
        let multi: MultiGet = Arc::new(move |keys: Vec<String>| {
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

    #[tokio::test]
    async fn reads_behind_a_busy_slot_go_out_as_one_batch_with_their_own_answers() {
        let (multi, batches) = recording();
        let reads = batch(multi, 1);
        let (open, gate) = oneshot::channel::<()>();
        let first = tokio::spawn({
            let reads = reads.clone();
            async move {
                reads
                    .get("first".into(), |k| async move {
                        let _ = gate.await;
                        Ok(Some(Bytes::from(k)))
                    })
                    .await
            }
        });
        while reads.inner.lock().in_flight == 0 {
            tokio::task::yield_now().await;
        }
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
        while reads.inner.lock().queue.len() < 10 {
            tokio::task::yield_now().await;
        }
        open.send(()).expect("open the gate");
        assert_eq!(
            first.await.expect("task").expect("get"),
            Some(Bytes::from("first"))
        );
        for waiter in waiters {
            let (key, got) = waiter.await.expect("task");
            assert_eq!(got.expect("get"), value(&key));
        }
        let batches = batches.lock().expect("lock").clone();
        assert_eq!(batches.len(), 1, "{batches:?}");
        assert_eq!(batches[0].len(), 10);
        assert_eq!(reads.inner.lock().in_flight, 0);
    }

    #[tokio::test]
    async fn a_cancelled_read_hands_its_slot_to_the_queue() {
        let (multi, _) = recording();
        let reads = batch(multi, 1);
        let stuck = tokio::spawn({
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
        let queued = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get("k".into(), |_| async { Ok(None) }).await }
        });
        while reads.inner.lock().queue.is_empty() {
            tokio::task::yield_now().await;
        }
        stuck.abort();
        assert_eq!(queued.await.expect("task").expect("get"), value("k"));
        assert_eq!(reads.inner.lock().in_flight, 0);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_reads() {
        let (multi, _) = recording();
        let reads = batch(multi, 1);
        let calls = Arc::new(AtomicUsize::new(0));
        let (open, gate) = oneshot::channel::<()>();
        let first = tokio::spawn({
            let reads = reads.clone();
            async move {
                reads
                    .get("first".into(), |_| async move {
                        let _ = gate.await;
                        Ok(None)
                    })
                    .await
            }
        });
        while reads.inner.lock().in_flight == 0 {
            tokio::task::yield_now().await;
        }
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
        while reads.inner.lock().queue.len() < 2 {
            tokio::task::yield_now().await;
        }
        open.send(()).expect("open the gate");
        assert_eq!(first.await.expect("task").expect("get"), None);
        for waiter in waiters {
            let e = waiter.await.expect("task").expect_err("the batch failed");
            assert_eq!(e.kind(), ErrorKind::Backend);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_read_times_out_when_its_batch_never_comes() {
        let (multi, _) = recording();
        let reads = batch(multi, 1);
        let _stuck = tokio::spawn({
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
        let e = reads
            .get("k".into(), |_| async { Ok(None) })
            .await
            .expect_err("no batch can run while the slot is stuck");
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
}
