//! The pure part of the Redis Streams transport: stream names, event shards, stream ids and gap
//! detection. No I/O here, so every case is a table test.

/// A stream id `ms-seq` as a comparable pair.
pub(super) fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Which of `shards` event streams carries `event`.
///
/// xxh3 with no seed is specified byte for byte, so every process, on every platform and in every
/// version, sends one event name to the same stream (one reader, so its events keep their order).
pub(super) fn event_shard(event: &str, shards: usize) -> usize {
    let shards = shards.max(1) as u64;
    // The remainder is below `shards`, a usize, so the cast cannot truncate.
    (xxhash_rust::xxh3::xxh3_64(event.as_bytes()) % shards) as usize
}

/// How many candidate hash tags [`event_stream`] tries before giving up on placing a shard. The
/// narrowest target (64 shards) is 128 slots of 16,384, so 10,000 tries all miss with a chance of
/// about e⁻⁷⁸; only a `key_prefix` that pins the slot exhausts them, in well under a second.
pub(super) const TAG_SEARCH: u32 = 10_000;

/// The key of event stream `shard` of `shards`: `<key_prefix>bus:ev:<shard>/<shards>:{<tag>}`.
///
/// A cluster places a key by the CRC16 slot of its hash tag, and the usual even split gives the
/// primaries consecutive slot ranges of equal size. So shard `i`'s tag is the first of "0", "1",
/// "2", … whose key falls in the middle half of the slot range [i·16384/N, (i+1)·16384/N): shards
/// on different ranges land on different primaries, and the middle half keeps a tag off a range's
/// edges, where a split rounded the other way (or a moved slot) would put it on a neighbour.
/// The whole key is hashed, not just the tag, so a `key_prefix` holding braces of its own is
/// accounted for; if the prefix pins every key to one slot, no tag can help and the shard number
/// is used as the tag. The search is pure, so every process derives the same names.
pub(super) fn event_stream(key_prefix: &str, shard: usize, shards: usize) -> String {
    const SLOTS: usize = 16_384;
    let shards = shards.max(1);
    let (lo, hi) = (shard * SLOTS / shards, (shard + 1) * SLOTS / shards);
    let margin = (hi - lo) / 4;
    let wanted = lo + margin..hi - margin;
    let key = |tag: &str| format!("{key_prefix}bus:ev:{shard}/{shards}:{{{tag}}}");
    (0..TAG_SEARCH)
        .map(|n| key(&n.to_string()))
        .find(|k| wanted.contains(&usize::from(fred::util::redis_keyslot(k.as_bytes()))))
        .unwrap_or_else(|| key(&shard.to_string()))
}

/// What `XINFO STREAM` says about a stream, as far as gap detection needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamInfo {
    /// How many entries it holds.
    pub(super) length: u64,
    /// The newest id ever added (kept when the entries are trimmed away).
    pub(super) last_generated: (u64, u64),
    /// The oldest id it holds.
    pub(super) first: Option<(u64, u64)>,
    /// How many entries were ever added (Redis ≥ 7.0).
    pub(super) entries_added: Option<u64>,
}

/// Where a receiver reads from: the id it reads after, and whether the stream holds an entry of
/// that id to find again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    /// The id read after.
    pub(super) last: String,
    /// `None` when `last` is an entry the stream held when the position was taken (one read, or
    /// the newest of a stream that held entries). `Some(n)` when it held none (the stream was
    /// empty or did not exist): then every entry it holds later is newer than `last`, and `n` is
    /// how many it had removed by then (`entries-added` − `length`), so any further removal lost
    /// an unread entry. A server older than Redis 7.0 does not count entries added: `u64::MAX`,
    /// and such a loss cannot be told.
    pub(super) bare: Option<u64>,
}

impl Position {
    /// Just after the entry `id`, read from the stream.
    pub(super) fn after(id: String) -> Position {
        Position {
            last: id,
            bare: None,
        }
    }

    /// Where a receiver that has never read the stream starts: after the newest id it ever had,
    /// so that everything appended from now on is read; `0-0` for a stream that does not exist.
    pub(super) fn start(info: Option<&StreamInfo>) -> Position {
        let (ms, seq) = info.map_or((0, 0), |i| i.last_generated);
        let bare = match info {
            None => Some(0),
            Some(i) if i.length == 0 => Some(removed(i).unwrap_or(u64::MAX)),
            Some(_) => None,
        };
        Position {
            last: format!("{ms}-{seq}"),
            bare,
        }
    }
}

/// How many entries `info`'s stream had removed (Redis ≥ 7.0).
fn removed(info: &StreamInfo) -> Option<u64> {
    info.entries_added
        .map(|added| added.saturating_sub(info.length))
}

/// What a read that starts *at* the receiver's position (`XRANGE <last> +`, inclusive) tells
/// about the entries after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continuity {
    /// The position's own entry came back first. Trimming removes the oldest entries, so every
    /// entry after it is still there: nothing was lost, and the read itself proves it, with no
    /// window between a check and the read.
    Intact,
    /// Entries came back, but not the position's own: it was trimmed, and maybe entries after it
    /// too. Counted as lost. When exactly the position's entry went and the next one stayed,
    /// this drops L1 for nothing: a rare cost on the safe side.
    Trimmed,
    /// Nothing came back, or the position is bare (there is no entry to find): only
    /// `XINFO STREAM` can tell ([`lost_after`]).
    Unknown,
}

/// What a read from `position`, inclusive, whose first entry is `first_read`, says (see
/// [`Continuity`]).
pub(super) fn continuity(position: &Position, first_read: Option<&str>) -> Continuity {
    match first_read.map(parse_id) {
        None => Continuity::Unknown,
        Some(_) if position.bare.is_some() => Continuity::Unknown,
        Some(first) if first == parse_id(&position.last) => Continuity::Intact,
        Some(_) => Continuity::Trimmed,
    }
}

/// Whether entries after `position` were removed before the receiver read them, as far as
/// `XINFO STREAM` tells.
///
/// `info` is `None` when the stream no longer exists. Trimming removes the oldest entries, so
/// after `last` something was lost when:
/// - the stream went back: its newest id ever is older than `last` (a Redis restarted from an
///   older snapshot, a failover to a replica that lagged). What was added after its new last id
///   and not yet read is gone;
/// - the stream is gone (a Redis restarted without persistence) although the receiver had
///   reached past `0-0`: what it held after `last` cannot be known, so it counts as lost;
/// - the position is bare (the stream held nothing when it was taken, or did not exist) and the
///   stream has removed more entries since: all of them came after `last`;
/// - the stream is empty although it reached past `last` (everything was trimmed);
/// - its oldest entry is past `last`. This can also hold when `last` was the only entry trimmed
///   away, which drops L1 for nothing: a rare cost on the safe side.
pub(super) fn lost_after(info: Option<&StreamInfo>, position: &Position) -> bool {
    let last = parse_id(&position.last);
    let Some(info) = info else {
        return last != (0, 0);
    };
    if info.last_generated < last {
        return true;
    }
    if let Some(removed_then) = position.bare {
        return removed(info).is_some_and(|now| now > removed_then);
    }
    match info.first {
        None => info.last_generated > last,
        Some(first) => first > last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_numerically() {
        assert!(parse_id("10-0") > parse_id("9-5"));
        assert!(parse_id("10-2") > parse_id("10-1"));
    }

    #[test]
    fn an_event_name_always_has_the_same_shard() {
        // Pinned: processes of different builds must agree, so this may never change. (The
        // cross-process test relies on the three `xp.` names using the three shards of 3.)
        assert_eq!(
            [
                "user.updated",
                "order.paid",
                "xp.ping",
                "xp.tick",
                "xp.tock"
            ]
            .map(|e| event_shard(e, 3)),
            [2, 1, 2, 1, 0]
        );
        for shards in 1..=64 {
            for n in 0..200 {
                let event = format!("event.{n}");
                let shard = event_shard(&event, shards);
                assert!(shard < shards);
                assert_eq!(shard, event_shard(&event, shards));
            }
        }
        assert_eq!(event_shard("anything", 1), 0);
        // Names spread over the shards.
        let mut used = [0usize; 8];
        for n in 0..800 {
            used[event_shard(&format!("event.{n}"), 8)] += 1;
        }
        assert!(used.iter().all(|&u| (50..150).contains(&u)), "{used:?}");
    }

    #[test]
    fn event_streams_sit_in_the_middle_of_their_slot_ranges() {
        for shards in 1..=64 {
            let mut names = std::collections::HashSet::new();
            for shard in 0..shards {
                let name = event_stream("vorte:", shard, shards);
                assert!(
                    name.starts_with(&format!("vorte:bus:ev:{shard}/{shards}:{{")),
                    "{name}"
                );
                let slot = usize::from(fred::util::redis_keyslot(name.as_bytes()));
                let (lo, hi) = (shard * 16_384 / shards, (shard + 1) * 16_384 / shards);
                let quarter = (hi - lo) / 4;
                assert!(
                    (lo + quarter..hi - quarter).contains(&slot),
                    "{name}: slot {slot} outside [{lo}, {hi})"
                );
                assert_eq!(name, event_stream("vorte:", shard, shards), "stable");
                names.insert(name);
            }
            assert_eq!(names.len(), shards);
        }
        // With 3 primaries splitting the slots as `redis-cli --cluster create` does (0–5460,
        // 5461–10922, 10923–16383), three shards land on three primaries.
        let owners: Vec<usize> = (0..3)
            .map(|i| {
                let slot = fred::util::redis_keyslot(event_stream("p:", i, 3).as_bytes());
                match slot {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                }
            })
            .collect();
        assert_eq!(owners, [0, 1, 2]);
    }

    #[test]
    fn a_prefix_with_its_own_hash_tag_still_gets_distinct_streams() {
        // `{app}` decides the slot of every key, so no tag can spread the shards: they still
        // get distinct names (and share the slot).
        let names: Vec<String> = (0..4).map(|i| event_stream("{app}:", i, 4)).collect();
        assert_eq!(names[2], "{app}:bus:ev:2/4:{2}");
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 4);
        // An unmatched brace does not pin the slot: the shards spread as usual.
        let slot = |i| fred::util::redis_keyslot(event_stream("a{b:", i, 2).as_bytes());
        assert!(slot(0) < 8_192 && slot(1) >= 8_192);
    }

    fn info(
        length: u64,
        last_generated: (u64, u64),
        first: Option<(u64, u64)>,
        entries_added: Option<u64>,
    ) -> StreamInfo {
        StreamInfo {
            length,
            last_generated,
            first,
            entries_added,
        }
    }

    fn at(last: &str) -> Position {
        Position::after(last.to_owned())
    }

    #[test]
    fn start_positions() {
        assert_eq!(
            Position::start(None),
            Position {
                last: "0-0".into(),
                bare: Some(0)
            }
        );
        // An empty stream: nothing to find at the start, and 9 entries removed so far.
        assert_eq!(
            Position::start(Some(&info(0, (5, 1), None, Some(9)))),
            Position {
                last: "5-1".into(),
                bare: Some(9)
            }
        );
        assert_eq!(
            Position::start(Some(&info(0, (5, 1), None, None))).bare,
            Some(u64::MAX),
            "Redis 6"
        );
        assert_eq!(
            Position::start(Some(&info(2, (7, 0), Some((6, 0)), None))),
            at("7-0")
        );
    }

    #[test]
    fn gaps_are_detected_from_the_stream_info() {
        // Nothing lost: the next entry is still there, or nothing came.
        assert!(!lost_after(
            Some(&info(3, (9, 0), Some((5, 0)), Some(3))),
            &at("5-0")
        ));
        assert!(!lost_after(
            Some(&info(3, (9, 0), Some((5, 0)), Some(10))),
            &at("7-0")
        ));
        assert!(!lost_after(
            Some(&info(0, (5, 0), None, Some(5))),
            &at("5-0")
        ));
        assert!(!lost_after(None, &Position::start(None)));
        // Trimmed past the last id read.
        assert!(lost_after(
            Some(&info(3, (9, 0), Some((8, 0)), Some(20))),
            &at("5-0")
        ));
        // Everything trimmed, with more added after the last id read.
        assert!(lost_after(
            Some(&info(0, (9, 0), None, Some(20))),
            &at("5-0")
        ));
        // The stream is gone (a Redis restarted without persistence).
        assert!(lost_after(None, &at("5-0")));
        // The stream did not exist when the receiver started and it has read nothing: lost
        // exactly when more entries were added than it holds.
        let absent = Position::start(None);
        assert!(!lost_after(
            Some(&info(4, (9, 0), Some((2, 0)), Some(4))),
            &absent
        ));
        assert!(lost_after(
            Some(&info(4, (9, 0), Some((6, 0)), Some(7))),
            &absent
        ));
        assert!(
            !lost_after(Some(&info(4, (9, 0), Some((6, 0)), None)), &absent),
            "Redis 6"
        );
        // The stream was empty at the start (9 entries removed before): its next entries are
        // all new, so their being past the position is no gap; one more removal is.
        let empty = Position::start(Some(&info(0, (5, 0), None, Some(9))));
        assert!(!lost_after(
            Some(&info(2, (8, 0), Some((6, 0)), Some(11))),
            &empty
        ));
        assert!(lost_after(
            Some(&info(1, (8, 0), Some((8, 0)), Some(11))),
            &empty
        ));
        // The stream went back behind the last id read (an older snapshot, a lagging replica):
        // what followed its new last id is gone.
        assert!(lost_after(
            Some(&info(2, (7, 0), Some((3, 0)), Some(2))),
            &at("8-0")
        ));
        assert!(lost_after(
            Some(&info(0, (7, 0), None, Some(2))),
            &at("7-1")
        ));
        assert!(lost_after(
            Some(&info(0, (7, 0), None, Some(2))),
            &Position::start(Some(&info(0, (8, 0), None, Some(3))))
        ));
    }

    #[test]
    fn a_read_that_finds_its_position_again_proves_nothing_was_lost() {
        assert_eq!(continuity(&at("5-0"), Some("5-0")), Continuity::Intact);
        assert_eq!(continuity(&at("5-0"), Some("5-1")), Continuity::Trimmed);
        assert_eq!(continuity(&at("5-0"), Some("9-0")), Continuity::Trimmed);
        // Nothing read, or no entry to find: the stream's info decides.
        assert_eq!(continuity(&at("5-0"), None), Continuity::Unknown);
        let bare = Position::start(Some(&info(0, (5, 0), None, Some(3))));
        assert_eq!(continuity(&bare, Some("6-0")), Continuity::Unknown);
        assert_eq!(
            continuity(&Position::start(None), Some("1-0")),
            Continuity::Unknown
        );
    }
}
