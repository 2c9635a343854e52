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
//! command, and the only added cost is two atomic additions. Under load the batches
//! grow by themselves with the number of waiting callers, with no timer and no delay added.
//!
//! Time: a batch gets what is left of its oldest read's timeout (on the coarse clock), so a
//! queued read too is answered within the layer's timeout, with no timer of its own.
//!
//! Cancellation: a single read's slot is a [`Permit`] freed on drop, whether the read finished or
//! its caller gave up; a queued read whose caller gave up is answered to no one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::BoxFuture;
use crate::error::{Error, ErrorKind, Result};

/// Reads many physical keys in one round trip, within the given time; answers in the order of the
/// keys, one result per key (on a cluster, the keys of one node may fail while the others are
/// read), or one error for all.
pub(crate) type MultiGet = Arc<
    dyn Fn(Vec<String>, Duration) -> BoxFuture<'static, Result<Vec<Result<Option<Bytes>>>>>
        + Send
        + Sync,
>;

/// One store's read coalescer.
pub(crate) struct ReadBatch {
    inner: Arc<Inner>,
    /// Queueing time is measured on the coarse clock: keep its thread running.
    _clock: crate::clock::Ticker,
}

/// Every reader touches only atomics and the queue's lock-free sending side: a lock shared by all
/// readers stalls them all whenever its holder's thread is descheduled, which on a busy VM
/// happens mid-hold.
struct Inner {
    /// Single reads in flight (briefly one more while a reader finds the slots taken).
    in_flight: AtomicUsize,
    /// Whether a flush task is on its way to send the queue.
    flush_scheduled: AtomicBool,
    queue: mpsc::UnboundedSender<Waiter>,
    /// The queue's receiving side, taken only by flush tasks.
    queued: Mutex<mpsc::UnboundedReceiver<Waiter>>,
    multi_get: MultiGet,
    max_direct: usize,
    max_batch: usize,
    /// The layer's timeout, which bounds a queued read as it does a single one.
    timeout: Duration,
    /// Names the store in errors.
    what: String,
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
        let (queue, queued) = mpsc::unbounded_channel();
        ReadBatch {
            inner: Arc::new(Inner {
                in_flight: AtomicUsize::new(0),
                flush_scheduled: AtomicBool::new(false),
                queue,
                queued: Mutex::new(queued),
                multi_get,
                max_direct: max_direct.max(1),
                max_batch: max_batch.max(1),
                timeout,
                what,
            }),
            _clock: crate::clock::Ticker::acquire(),
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

    fn join(&self, key: String) -> Turn {
        let inner = &self.inner;
        if inner.in_flight.fetch_add(1, Ordering::AcqRel) < inner.max_direct {
            return Turn::Direct(Permit(inner.clone()), key);
        }
        inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        // Queueing needs a runtime for the flush (always there when called from a Tokio task);
        // without one, the read goes as a single one after all.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            inner.in_flight.fetch_add(1, Ordering::AcqRel);
            return Turn::Direct(Permit(inner.clone()), key);
        };
        let (reply, answer) = oneshot::channel();
        let waiter = Waiter {
            key,
            reply,
            queued_ms: crate::clock::coarse_ms(),
        };
        // The receiver lives as long as `inner`, which this holds: sending cannot fail, and if
        // it did, the dropped reply would tell the caller.
        let _ = inner.queue.send(waiter);
        // SeqCst with the flush's reset: a waiter sent before the reset is drained after it;
        // one sent after it sees `false` here and schedules the next flush.
        if !inner.flush_scheduled.swap(true, Ordering::SeqCst) {
            runtime.spawn(flush(inner.clone()));
        }
        Turn::Queued(answer)
    }
}

/// What a read does: go at once, holding a slot, or wait for a batch.
enum Turn {
    Direct(Permit, String),
    Queued(oneshot::Receiver<Result<Option<Bytes>>>),
}

/// One single read's slot, freed on drop.
struct Permit(Arc<Inner>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sends what queued up while this task waited for its turn, as batches of up to `max_batch`.
async fn flush(inner: Arc<Inner>) {
    // Let the tasks that are ready now queue their reads first.
    tokio::task::yield_now().await;
    inner.flush_scheduled.store(false, Ordering::SeqCst);
    let mut waiting = Vec::new();
    {
        // Only flush tasks take this lock, and only to drain: the holder of a poisoned lock
        // panicked between two receives, which leaves the channel consistent.
        let mut queued = inner
            .queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Ok(waiter) = queued.try_recv() {
            waiting.push(waiter);
        }
    }
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
                let _ = reply.send(value); // the caller may have given up
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
                    .map(|k| Ok(Some(Bytes::from(format!("value-of-{k}")))))
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
        assert_eq!(reads.inner.in_flight.load(Ordering::SeqCst), 0);
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
        while reads.inner.in_flight.load(Ordering::SeqCst) == 0 {
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
            reads.inner.in_flight.load(Ordering::SeqCst),
            0,
            "the aborted read freed its slot"
        );
    }

    /// No read is ever left in the queue without a flush on its way (a lost wake-up would hang
    /// its caller): 64 tasks on two threads, 300 reads each, with single reads that yield.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_contention_every_read_is_answered_with_its_own_value() {
        let (multi, batches) = recording();
        let reads = batch(multi, 1);
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let reads = reads.clone();
                tokio::spawn(async move {
                    for i in 0..300 {
                        let key = format!("t{t}-{i}");
                        let got = reads
                            .get(key.clone(), |k| async move {
                                tokio::task::yield_now().await;
                                Ok(Some(Bytes::from(format!("value-of-{k}"))))
                            })
                            .await
                            .expect("get");
                        assert_eq!(got, value(&key));
                    }
                })
            })
            .collect();
        let all = async {
            for task in tasks {
                task.await.expect("reader");
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every read answered");
        assert!(
            !batches.lock().expect("lock").is_empty(),
            "some reads were batched"
        );
        assert_eq!(reads.inner.in_flight.load(Ordering::SeqCst), 0);
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
            Box::pin(async move { Ok(keys.iter().map(|_| Ok(None)).collect()) })
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
