//! A violation as a short, readable piece of history: the read, the call that replaced its
//! version, where the version came from, and every call on the key in between.

use std::fmt::Write as _;

use super::{Call, Fault, Notice, Op, Version, Violation, parse_value};

/// The violation `v` of `calls`, with at most `max_calls` calls of the key around it. Times are in
/// ms from the first call of the history.
pub fn excerpt(calls: &[Call], v: &Violation, max_calls: usize) -> String {
    let base = calls.iter().map(|c| c.start_us).min().unwrap_or(0);
    let read = &calls[v.read];
    let mut out = String::new();
    let Fault::Stale {
        superseded_by,
        late_us,
    } = v.fault
    else {
        let _ = writeln!(out, "{:?} value: {}", v.fault, describe(read, base));
        return out;
    };
    let (key, version) = read_value(read);
    let source = source_of(calls, key, version, read, &calls[superseded_by]);
    let _ = writeln!(
        out,
        "stale read of {key}: it began {} ms after the deadline of the call that replaced {key}@{version}",
        ms(late_us)
    );
    let _ = writeln!(out, "  shape    {}", shape_of(calls, v));
    if let Some((s, _)) = source {
        let _ = writeln!(out, "  source   {}", describe(&calls[s], base));
    }
    let _ = writeln!(out, "  replaced {}", describe(&calls[superseded_by], base));
    let _ = writeln!(out, "  read     {}", describe(read, base));
    let from = source.map_or(calls[superseded_by].start_us, |(s, _)| calls[s].start_us);
    let around: Vec<&Call> = calls
        .iter()
        .filter(|c| c.end_us >= from && c.start_us <= read.end_us && touches(c, key))
        .collect();
    let _ = writeln!(
        out,
        "  every call on {key} from then to the read ({}):",
        around.len()
    );
    for c in around.iter().take(max_calls) {
        let _ = writeln!(out, "    {}", describe(c, base));
    }
    if around.len() > max_calls {
        let _ = writeln!(out, "    ... {} more", around.len() - max_calls);
    }
    out
}

/// Where the stale version most likely came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A load still running in the read's process when the read began: single-flight shared it.
    Joined,
    /// A load that ended after the replacing call began: written back late.
    LateLoad,
    /// The `set` that wrote it.
    Set,
    /// A load that ended before the replacing call began: a copy the call left in place.
    EarlierLoad,
}

impl Source {
    fn says(self) -> &'static str {
        match self {
            Source::Joined => "a load in flight it joined",
            Source::LateLoad => "a load that ended after the call began",
            Source::Set => "its set, which ended before the call began",
            Source::EarlierLoad => "a load that ended before the call began",
        }
    }
}

/// The call that most likely gave `read` its `key@version`, the version `replaced` had replaced,
/// trying each [`Source`] in turn.
fn source_of(
    calls: &[Call],
    key: &str,
    version: Version,
    read: &Call,
    replaced: &Call,
) -> Option<(usize, Source)> {
    let is_set =
        |c: &Call| matches!(&c.op, Op::Set { key: k, version: x } if k == key && *x == version);
    let loads = || {
        calls.iter().enumerate().filter(|(_, c)| {
            c.end_us <= read.end_us
                && matches!(&c.op, Op::Load { key: k, version: x } if k == key && *x == version)
        })
    };
    let last = |it: &mut dyn Iterator<Item = (usize, &Call)>| {
        it.max_by_key(|(_, c)| c.end_us).map(|(i, _)| i)
    };
    let joined = |c: &Call| c.process == read.process && c.end_us >= read.start_us;
    let tag = |source| move |i| (i, source);
    last(&mut loads().filter(|(_, c)| joined(c)))
        .map(tag(Source::Joined))
        .or_else(|| {
            last(&mut loads().filter(|(_, c)| c.end_us >= replaced.start_us))
                .map(tag(Source::LateLoad))
        })
        .or_else(|| calls.iter().position(is_set).map(tag(Source::Set)))
        .or_else(|| last(&mut loads()).map(tag(Source::EarlierLoad)))
}

/// The shape of violation `v`, to group many: what replaced the version, where, and where the
/// version most likely came from.
pub fn shape_of(calls: &[Call], v: &Violation) -> String {
    let read = &calls[v.read];
    let Fault::Stale { superseded_by, .. } = v.fault else {
        return format!("{:?}", v.fault);
    };
    let replaced = &calls[superseded_by];
    let (key, version) = read_value(read);
    let by = match replaced.op {
        Op::Set { .. } => "set",
        Op::Delete { .. } => "delete",
        Op::InvalidateTag { .. } => "invalidate_tag",
        Op::Flush { .. } => "flush",
        Op::Get { .. }
        | Op::GetOrSet { .. }
        | Op::Load { .. }
        | Op::BusOrigin { .. }
        | Op::Applied { .. } => "read",
    };
    let whose = if replaced.process == read.process {
        "same"
    } else {
        "another"
    };
    let from = source_of(calls, key, version, read, replaced)
        .map_or("no call (version 0)", |(_, source)| source.says());
    format!(
        "{} after a {by} in {whose} process; value from {from}",
        read_kind(read)
    )
}

/// The key and version a read returned.
fn read_value(read: &Call) -> (&str, Version) {
    match &read.op {
        Op::Get { key, value } | Op::GetOrSet { key, value } => (
            key.as_str(),
            value.as_deref().and_then(parse_value).map_or(0, |(_, x)| x),
        ),
        _ => ("?", 0),
    }
}

fn read_kind(read: &Call) -> &'static str {
    match read.op {
        Op::GetOrSet { .. } => "get_or_set",
        _ => "get",
    }
}

/// Whether `call` reads, loads or changes `key`.
fn touches(call: &Call, key: &str) -> bool {
    match &call.op {
        Op::Get { key: k, .. }
        | Op::GetOrSet { key: k, .. }
        | Op::Load { key: k, .. }
        | Op::Set { key: k, .. }
        | Op::Delete { key: k, .. } => k == key,
        Op::InvalidateTag { bumps, .. } | Op::Flush { bumps } => bumps.contains_key(key),
        Op::Applied { notice, .. } => match notice {
            Notice::Keys { keys } => keys.iter().any(|k| k == key),
            // Which keys a tag covers is the workload's business: shown, as a flush is.
            Notice::Tag { .. } | Notice::Flush => true,
        },
        Op::BusOrigin { .. } => false,
    }
}

/// One line: who, when, what.
fn describe(call: &Call, base: u64) -> String {
    let what = match &call.op {
        Op::Get { key, value } => format!("get {key} = {}", value.as_deref().unwrap_or("none")),
        Op::GetOrSet { key, value } => {
            format!("get_or_set {key} = {}", value.as_deref().unwrap_or("none"))
        }
        Op::Load { key, version } => format!("  load {key} read {key}@{version}"),
        Op::Set { key, version } => format!("set {key}@{version}"),
        Op::Delete { key, version } => format!("delete {key} (db {key}@{version})"),
        Op::InvalidateTag { tag, bumps } => format!("invalidate_tag {tag} (db {bumps:?})"),
        Op::Flush { bumps } => format!("flush (db {bumps:?})"),
        Op::BusOrigin { origin } => format!("bus origin {origin}"),
        Op::Applied { origin, notice } => format!("  applied {notice:?} from {origin}"),
    };
    let error = call
        .error
        .as_deref()
        .map(|e| format!(" ERROR {e}"))
        .unwrap_or_default();
    format!(
        "{}/t{} {:>10} .. {:>10} ms  {what}{error}",
        call.process,
        call.task,
        ms(call.start_us.saturating_sub(base)),
        ms(call.end_us.saturating_sub(base)),
    )
}

/// Microseconds as milliseconds with three decimals.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}
