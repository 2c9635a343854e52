//! When each process applied each other process's invalidations: the moment from which a read in
//! that process may no longer return what the invalidation replaced
//! (`docs/guarantees.md#g2-invalidation`: once the bus has carried its message).
//!
//! Each process records its cache's bus id ([`Op::BusOrigin`]) and every invalidation its cache
//! applied from the bus, with the sender's id ([`Op::Applied`]). Every process is ready (its
//! receivers placed) before any call is made, so each sees every notice of the others. Call `W`
//! of process `Q` sends one notice; process `P` applies `Q`'s notices in the order `Q` sent them.
//! So the notices `P` applied from `Q` that cover `W`'s subject (its key, its tag, a flush) pair,
//! in order, with `Q`'s calls on that subject: `W`'s is the `m`-th, where `m` counts `Q`'s calls
//! on the subject that began before `W` returned (`W` and those before it; with a call of `Q`'s
//! other task that overlapped `W`, whose notice may have gone first, the later of the two). A
//! call that sent no notice (one that failed early) only makes the moment later: never a false
//! alarm.

use std::collections::HashMap;

use super::{Call, Notice, Op};

/// What a notice is about: the pairing of calls with notices is per subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject<'a> {
    Key(&'a str),
    Tag(&'a str),
    Flush,
}

/// The subject of the notice `call` sends, if it sends one.
fn subject_of(call: &Call) -> Option<Subject<'_>> {
    match &call.op {
        Op::Set { key, .. } | Op::Delete { key, .. } => Some(Subject::Key(key)),
        Op::InvalidateTag { tag, .. } => Some(Subject::Tag(tag)),
        Op::Flush { .. } => Some(Subject::Flush),
        _ => None,
    }
}

/// The subjects `notice` covers.
fn subjects_of(notice: &Notice) -> Vec<Subject<'_>> {
    match notice {
        Notice::Keys { keys } => keys.iter().map(|k| Subject::Key(k)).collect(),
        Notice::Tag { tag } => vec![Subject::Tag(tag)],
        Notice::Flush => vec![Subject::Flush],
    }
}

/// The invalidations applied in each process, and each process's bus id.
#[derive(Debug, Default)]
pub struct Notices<'a> {
    /// Process name -> its cache's bus id.
    origins: HashMap<&'a str, &'a str>,
    /// (applying process, sender's id, subject) -> when each such notice was applied, in order.
    applied: HashMap<(&'a str, &'a str, Subject<'a>), Vec<u64>>,
    /// (calling process, subject) -> when each call that sends such a notice began, in order.
    began: HashMap<(&'a str, Subject<'a>), Vec<u64>>,
}

impl<'a> Notices<'a> {
    /// Gathers the bus ids, the applied notices and the calls that send them, of `calls`.
    pub fn of(calls: &'a [Call]) -> Notices<'a> {
        let mut notices = Notices::default();
        for call in calls {
            match &call.op {
                Op::BusOrigin { origin } => {
                    notices.origins.insert(&call.process, origin);
                }
                Op::Applied { origin, notice } => {
                    for subject in subjects_of(notice) {
                        notices
                            .applied
                            .entry((&call.process, origin, subject))
                            .or_default()
                            .push(call.end_us);
                    }
                }
                _ => {
                    if let Some(subject) = subject_of(call) {
                        notices
                            .began
                            .entry((&call.process, subject))
                            .or_default()
                            .push(call.start_us);
                    }
                }
            }
        }
        notices.applied.values_mut().for_each(|l| l.sort_unstable());
        notices.began.values_mut().for_each(|l| l.sort_unstable());
        notices
    }

    /// When `process` applied the notice of `w`, a call of another process; `None` when it never
    /// did within the run, when `w` sends no notice, or when `w`'s process has no bus id.
    pub fn applied(&self, process: &str, w: &Call) -> Option<u64> {
        let origin = *self.origins.get(w.process.as_str())?;
        let subject = subject_of(w)?;
        // `Q`'s calls on `w`'s subject that began before `w` returned, `w` among them.
        let m = self
            .began
            .get(&(w.process.as_str(), subject))?
            .partition_point(|&start| start < w.end_us);
        let list = self.applied.get(&(process, origin, subject))?;
        list.get(m.checked_sub(1)?).copied()
    }

    /// Over every successful call that sends a notice and every other process with a bus: the
    /// largest time from the call's return to that process applying its notice (0 when it did
    /// before the call returned; `None` when none was applied), and how many times it never did.
    pub fn delays(&self, calls: &[Call]) -> (Option<u64>, usize) {
        let mut largest = None;
        let mut unapplied = 0;
        for w in calls
            .iter()
            .filter(|w| w.error.is_none() && !w.bumps().is_empty())
        {
            for &p in self.origins.keys().filter(|&&p| p != w.process) {
                match self.applied(p, w) {
                    Some(at) => largest = largest.max(Some(at.saturating_sub(w.end_us))),
                    None => unapplied += 1,
                }
            }
        }
        (largest, unapplied)
    }
}
