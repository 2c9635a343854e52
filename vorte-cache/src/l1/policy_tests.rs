use super::*;
use quick_cache::UnitWeighter;

fn policy(capacity: u64) -> Policy<u64, (), UnitWeighter> {
    Policy::new(
        PolicySize {
            max_items: capacity,
            capacity,
            shards: Some(MIN_SHARDS),
        },
        UnitWeighter,
    )
}

/// A read, then the insert a miss leads to; whether it hit.
fn access(policy: &Policy<u64, (), UnitWeighter>, key: u64) -> bool {
    let hit = policy.get(&key).is_some();
    if !hit {
        policy.insert(key, ());
    }
    hit
}

/// Admission on its own, its sketch having counted the victim `42` `times` times.
fn admission_with_victim_seen(times: usize) -> Admission {
    let admission = Admission {
        sketch: FrequencySketch::new(100),
        duel: AtomicI32::new(0),
        evicted: AtomicU64::new(0),
    };
    for _ in 0..times {
        admission.sketch.increment(42);
    }
    admission
}

#[test]
fn a_scan_does_not_flush_a_hot_set() {
    let policy = policy(1000);
    let hot: Vec<u64> = (0..200).collect();
    for _ in 0..5 {
        for &key in &hot {
            access(&policy, key);
        }
    }
    // A scan of ten times the capacity, each key once, with the hot set still read now and then.
    for (i, key) in (1_000_000..1_010_000u64).enumerate() {
        access(&policy, key);
        if i % 50 == 0 {
            access(&policy, hot[(i / 50) % hot.len()]);
        }
    }
    let kept = hot.iter().filter(|&&k| policy.get(&k).is_some()).count();
    assert!(kept >= 180, "only {kept} of 200 hot keys survived the scan");
    assert!(policy.len() <= 1000);
}

#[test]
fn the_filter_turns_a_one_off_key_away_and_admits_a_frequent_one() {
    // The last victim was missed three times.
    let admission = admission_with_victim_seen(3);
    // In the filtering leader, a key missed once is refused; missed a third time, it goes in.
    assert!(!admission.admits(7, FILTER_LEADER, MIN_SHARDS, 42));
    assert!(!admission.admits(7, FILTER_LEADER, MIN_SHARDS, 42));
    assert!(admission.admits(7, FILTER_LEADER, MIN_SHARDS, 42));
    // The admitting leader takes anything.
    assert!(admission.admits(8, ADMIT_LEADER, MIN_SHARDS, 42));
}

#[test]
fn nothing_is_refused_while_the_cache_fills() {
    let policy = policy(1000);
    // Half the capacity: no shard fills up, so nothing is evicted or refused.
    for key in 0..500u64 {
        policy.insert(key, ());
    }
    let held = (0..500u64).filter(|k| policy.get(k).is_some()).count();
    assert_eq!(held, 500);
    assert_eq!(policy.evicted(), 0);
}

#[test]
fn followers_take_the_side_of_the_leader_that_misses_less() {
    let admission = admission_with_victim_seen(5);
    // Even: followers admit (the filter is off).
    assert!(admission.admits(1, 5, MIN_SHARDS, 42));
    // The admitting leader misses more: followers filter.
    for key in 100..110 {
        admission.admits(key, ADMIT_LEADER, MIN_SHARDS, 42);
    }
    assert!(!admission.admits(2, 5, MIN_SHARDS, 42));
    // Then the filtering leader misses more: followers admit again.
    for key in 200..230 {
        admission.admits(key, FILTER_LEADER, MIN_SHARDS, 42);
    }
    assert!(admission.admits(3, 5, MIN_SHARDS, 42));
    assert!(admission.duel.load(Ordering::Relaxed) >= -DUEL_BOUND);
}

#[test]
fn a_refused_key_still_replaces_the_value_it_has() {
    let policy: Policy<u64, u32, UnitWeighter> = Policy::new(
        PolicySize {
            max_items: 100,
            capacity: 100,
            shards: Some(MIN_SHARDS),
        },
        UnitWeighter,
    );
    let held = (1..)
        .find(|k| policy.cache.shard_index(k) != ADMIT_LEADER)
        .unwrap_or(1);
    policy.insert(held, 1);
    // Make every later new key lose to the victim, in every shard.
    policy.admission.duel.store(DUEL_BOUND, Ordering::Relaxed);
    let victim = policy.hasher.hash_one(99u64);
    for _ in 0..15 {
        policy.admission.sketch.increment(victim);
    }
    for slot in policy.victims.iter() {
        slot.store(victim, Ordering::Relaxed);
    }
    let key = (held + 1..)
        .find(|k| policy.cache.shard_index(k) != ADMIT_LEADER)
        .unwrap_or(held + 1);
    policy.insert(key, 2);
    assert!(policy.get(&key).is_none(), "a new one-off key is refused");
    assert_eq!(policy.evicted(), 1, "a refusal counts as an eviction");
    policy.insert(held, 3);
    assert_eq!(policy.get(&held), Some(3), "a held key takes its new value");
}

#[test]
fn larger_policies_get_more_shards_and_two_leaders_of_each_kind() {
    assert_eq!(leaders(2), 0);
    assert_eq!(leaders(8), 2);
    assert_eq!(leaders(32), 4);
    let small = policy(1000);
    let large: Policy<u64, (), UnitWeighter> = Policy::new(
        PolicySize {
            max_items: 40_000,
            capacity: 40_000,
            shards: None,
        },
        UnitWeighter,
    );
    assert!(small.victims.len() >= MIN_SHARDS);
    assert!(
        large.victims.len() >= 32,
        "{} shards for 40,000 entries",
        large.victims.len()
    );
    // The third shard admits and the fourth filters, like the first two.
    let admission = &large.admission;
    for key in 0..10 {
        admission.admits(key, 3, 32, 42);
    }
    assert_eq!(admission.duel.load(Ordering::Relaxed), -10);
    for key in 0..4 {
        admission.admits(key, 2, 32, 42);
    }
    assert_eq!(admission.duel.load(Ordering::Relaxed), -6);
}
