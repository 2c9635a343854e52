//! The hooks of [`TestStore`](super::TestStore): pause or fail a chosen call of a chosen key, and
//! count calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::Error;

/// A kind of [`Store`](crate::Store) call, to choose which call a hook catches.
///
/// A hook names an operation and a key: for entry and tag calls the logical key or tag, for
/// [`Op::DeleteMany`] any one of its keys, for [`Op::List`] the listed prefix. [`Op::Clear`],
/// [`Op::Usage`] and [`Op::Sweep`] have no key: hook them with `""`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `get` of an entry.
    Get,
    /// `put` of an entry.
    Put,
    /// `delete` of an entry.
    Delete,
    /// `get` of a tag record.
    GetTag,
    /// `put` of a tag record.
    PutTag,
    /// `delete` of a tag record.
    DeleteTag,
    /// `compare_and_set` of an entry.
    CompareAndSet,
    /// `tombstone` of an entry.
    Tombstone,
    /// `delete_many`, caught by any one of its keys.
    DeleteMany,
    /// `list`, by its prefix.
    List,
    /// `clear` (key `""`).
    Clear,
    /// `usage` (key `""`).
    Usage,
    /// `sweep` (key `""`).
    Sweep,
    /// `lease_acquire` of a key's lease.
    LeaseAcquire,
    /// `lease_renew` of a key's lease.
    LeaseRenew,
    /// `lease_release` of a key's lease.
    LeaseRelease,
}

/// Which call a hook catches: an operation on a key, the `nth` such call from when the hook is
/// set (1 = the next), held or failed before it takes effect or after.
///
/// ```
/// use vorte_cache::testing::{Call, Op};
///
/// // The second read of "k", once it has read the value but before it answers.
/// let call = Call::new(Op::Get, "k").nth(2).after_effect();
/// # let _ = call;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    op: Op,
    key: String,
    nth: usize,
    after: bool,
}

impl Call {
    /// The next call of `op` on `key`, caught before it reads or changes anything.
    pub fn new(op: Op, key: &str) -> Self {
        Call {
            op,
            key: key.to_owned(),
            nth: 1,
            after: false,
        }
    }

    /// The `nth` matching call instead of the next (`nth(1)` is the next; 0 counts as 1).
    #[must_use]
    pub fn nth(mut self, nth: usize) -> Self {
        self.nth = nth.max(1);
        self
    }

    /// Catches the call after it took effect (a read has read, a write is stored), before it
    /// answers: a pause then holds an answer that may be stale by the time it is released, and a
    /// failure is one whose effect happened anyway (as a timeout after the server applied it).
    #[must_use]
    pub fn after_effect(mut self) -> Self {
        self.after = true;
        self
    }
}

/// What a hook does to the call it catches.
enum Action {
    Pause(Arc<Gate>),
    Fail(Error),
}

/// One armed hook: it catches the `skip + 1`-th matching call from the time it was armed.
struct Hook {
    op: Op,
    key: String,
    after: bool,
    skip: usize,
    action: Action,
}

/// Where a paused call and its [`Pause`] handle meet.
#[derive(Debug)]
struct Gate {
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Self {
        Gate {
            reached: watch::Sender::new(false),
            released: watch::Sender::new(false),
        }
    }
}

/// A call held by the store, before or after its effect (see [`Call`]).
///
/// Returned by [`TestStore::pause`](super::TestStore::pause) and
/// [`TestStore::pause_call`](super::TestStore::pause_call). The call waits until
/// [`release`](Pause::release), or until the handle is dropped (so a failing test never leaves a
/// call hanging).
#[derive(Debug)]
#[must_use = "dropping the handle releases the call at once"]
pub struct Pause {
    gate: Arc<Gate>,
}

impl Pause {
    /// Waits until the chosen call has arrived and is held.
    pub async fn reached(&self) {
        let mut reached = self.gate.reached.subscribe();
        // The sender lives in `self.gate`, so the channel cannot close while we wait.
        let _ = reached.wait_for(|r| *r).await;
    }

    /// Whether the chosen call has arrived (and is held, unless released).
    pub fn is_reached(&self) -> bool {
        *self.gate.reached.borrow()
    }

    /// Lets the held call go on (or the chosen call pass straight through, if it has not come
    /// yet).
    pub fn release(&self) {
        self.gate.released.send_replace(true);
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.release();
    }
}

/// The hooks and call counts of one [`TestStore`](super::TestStore) and its neighbours.
#[derive(Default)]
pub(super) struct Hooks {
    armed: Mutex<Vec<Hook>>,
    calls: Mutex<HashMap<(Op, String), usize>>,
}

impl Hooks {
    fn arm(&self, call: Call, action: Action) {
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Hook {
                op: call.op,
                key: call.key,
                after: call.after,
                skip: call.nth - 1,
                action,
            });
    }

    pub(super) fn pause(&self, call: Call) -> Pause {
        let gate = Arc::new(Gate::new());
        self.arm(call, Action::Pause(gate.clone()));
        Pause { gate }
    }

    pub(super) fn fail(&self, call: Call, error: Error) {
        self.arm(call, Action::Fail(error));
    }

    pub(super) fn calls(&self, op: Op, key: &str) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(op, key.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// A call of `op` on `keys` arrives: counts it, then runs the hooks set for before its effect.
    pub(super) async fn enter(&self, op: Op, keys: &[&str]) -> Result<(), Error> {
        {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            for key in keys {
                *calls.entry((op, (*key).to_owned())).or_default() += 1;
            }
        }
        self.run(op, keys, false).await
    }

    /// The call took effect: runs the hooks set for after it.
    pub(super) async fn leave(&self, op: Op, keys: &[&str]) -> Result<(), Error> {
        self.run(op, keys, true).await
    }

    /// Waits out a pause or returns the chosen error. Each hook catches one call, then is gone.
    async fn run(&self, op: Op, keys: &[&str], after: bool) -> Result<(), Error> {
        let caught = {
            let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
            // Every matching hook counts this call; the first one due catches it.
            let mut caught = None;
            for (i, hook) in armed.iter_mut().enumerate() {
                if hook.op != op || hook.after != after || !keys.contains(&hook.key.as_str()) {
                    continue;
                }
                if hook.skip > 0 {
                    hook.skip -= 1;
                } else if caught.is_none() {
                    caught = Some(i);
                }
            }
            caught.map(|i| armed.remove(i).action)
        };
        match caught {
            None => Ok(()),
            Some(Action::Fail(error)) => Err(error),
            Some(Action::Pause(gate)) => {
                let mut released = gate.released.subscribe();
                gate.reached.send_replace(true);
                let _ = released.wait_for(|r| *r).await;
                Ok(())
            }
        }
    }
}
