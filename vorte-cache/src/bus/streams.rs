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

/// The id a receiver that has never read `stream` starts after: the newest id it ever had, so
/// that everything appended from now on is read, and `0-0` for a stream that does not exist.
pub(super) fn start_id(info: Option<&StreamInfo>) -> String {
    let (ms, seq) = info.map_or((0, 0), |i| i.last_generated);
    format!("{ms}-{seq}")
}

/// Whether entries after `last` were removed before the receiver read them.
///
/// `info` is `None` when the stream no longer exists. Trimming removes the oldest entries, so
/// after `last` something was lost when:
/// - `last` is `0-0` (the stream did not exist when the receiver started, and it has read nothing
///   since): every entry was added after the start, so more added than held means some went
///   (`entries-added`, Redis ≥ 7.0; an older server cannot tell);
/// - the stream is empty although it reached past `last` (everything was trimmed);
/// - the stream is gone (a Redis restarted without persistence): what it held after `last` cannot
///   be known, so it counts as lost;
/// - its oldest entry is past `last`. This can also hold when `last` was the only entry trimmed
///   away, which drops L1 for nothing: a rare cost on the safe side.
pub(super) fn lost_after(info: Option<&StreamInfo>, last: &str) -> bool {
    let last = parse_id(last);
    let Some(info) = info else {
        return last != (0, 0);
    };
    if last == (0, 0) {
        return info.entries_added.is_some_and(|added| added > info.length);
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

    #[test]
    fn start_ids() {
        assert_eq!(start_id(None), "0-0");
        assert_eq!(start_id(Some(&info(0, (5, 1), None, Some(9)))), "5-1");
        assert_eq!(start_id(Some(&info(2, (7, 0), Some((6, 0)), None))), "7-0");
    }

    #[test]
    fn gaps_are_detected_from_the_stream_info() {
        // Nothing lost: the next entry is still there, or nothing came.
        assert!(!lost_after(
            Some(&info(3, (9, 0), Some((5, 0)), Some(3))),
            "5-0"
        ));
        assert!(!lost_after(
            Some(&info(3, (9, 0), Some((5, 0)), Some(10))),
            "7-0"
        ));
        assert!(!lost_after(Some(&info(0, (5, 0), None, Some(5))), "5-0"));
        assert!(!lost_after(None, "0-0"));
        // Trimmed past the last id read.
        assert!(lost_after(
            Some(&info(3, (9, 0), Some((8, 0)), Some(20))),
            "5-0"
        ));
        // Everything trimmed, with more added after the last id read.
        assert!(lost_after(Some(&info(0, (9, 0), None, Some(20))), "5-0"));
        // The stream is gone (a Redis restarted without persistence).
        assert!(lost_after(None, "5-0"));
        // The stream did not exist when the receiver started and it has read nothing: lost
        // exactly when more entries were added than it holds.
        assert!(!lost_after(
            Some(&info(4, (9, 0), Some((2, 0)), Some(4))),
            "0-0"
        ));
        assert!(lost_after(
            Some(&info(4, (9, 0), Some((6, 0)), Some(7))),
            "0-0"
        ));
        assert!(
            !lost_after(Some(&info(4, (9, 0), Some((6, 0)), None)), "0-0"),
            "Redis 6"
        );
    }
}
