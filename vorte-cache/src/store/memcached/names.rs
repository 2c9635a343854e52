//! Memcached key names and expiry times: what the protocol accepts, and how an entry or tag of
//! any key gets a name that fits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use xxhash_rust::xxh3::xxh3_128;

use crate::store::Slot;

/// The longest key memcached accepts.
const MAX_NAME_LEN: usize = 250;
/// Memcached reads an expiry above this many seconds as an absolute unix time.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;

/// A byte memcached accepts in a key: printable ASCII, no space.
fn is_key_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// The physical name of `slot` in namespace generation `generation`.
pub(super) fn physical_name(prefix: &str, generation: u64, slot: Slot<'_>) -> String {
    let (plain, hashed, key) = match slot {
        Slot::Entry(k) => ("e", "h", k),
        Slot::Tag(t) => ("t", "th", t),
    };
    fitted(&format!("{prefix}{generation}:"), plain, hashed, key)
}

/// The name of `key`'s lease: `<prefix>l:<key>`, or `<prefix>lh:<hex xxh3_128(key)>` when that
/// does not fit. Outside every generation (a flush does not end a load in flight), and never
/// mistaken for an entry, a tag record or the generation record, whose names go on with digits
/// or `gen` after the prefix.
pub(super) fn lease_name(prefix: &str, key: &str) -> String {
    fitted(prefix, "l", "lh", key)
}

/// `<head><plain>:<key>` when memcached takes that name, else `<head><hashed>:<hex hash>`.
fn fitted(head: &str, plain: &str, hashed: &str, key: &str) -> String {
    let name = format!("{head}{plain}:{key}");
    if name.len() <= MAX_NAME_LEN && name.bytes().all(is_key_byte) {
        name
    } else {
        format!("{head}{hashed}:{:032x}", xxh3_128(key.as_bytes()))
    }
}

/// The memcached expiry for `ttl`, `now` being the time since the unix epoch: whole seconds
/// rounded up (at least 1), an absolute unix time above 30 days, and 0 ("never") beyond what
/// memcached can represent.
pub(super) fn exptime(ttl: Duration, now: Duration) -> u64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
        .max(1);
    if secs <= MAX_RELATIVE_TTL {
        return secs;
    }
    let now_ceil = now.as_secs() + u64::from(now.subsec_nanos() > 0);
    let at = now_ceil.saturating_add(secs);
    if at > i32::MAX as u64 { 0 } else { at }
}

pub(super) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_keep_the_key() {
        assert_eq!(
            physical_name("v:", 7, Slot::Entry("user:1")),
            "v:7:e:user:1"
        );
        assert_eq!(
            physical_name("v:", 7, Slot::Tag("products")),
            "v:7:t:products"
        );
    }

    #[test]
    fn unfit_names_are_hashed() {
        let hashed = |k: &str| format!("v:7:h:{:032x}", xxh3_128(k.as_bytes()));
        for key in ["has space", "ключ", "tab\there", "nl\n", "del\x7f"] {
            assert_eq!(
                physical_name("v:", 7, Slot::Entry(key)),
                hashed(key),
                "{key:?}"
            );
        }
        // Exactly 250 bytes stays plain; 251 is hashed.
        let fits = "k".repeat(MAX_NAME_LEN - "v:7:e:".len());
        assert_eq!(
            physical_name("v:", 7, Slot::Entry(&fits)).len(),
            MAX_NAME_LEN
        );
        assert!(physical_name("v:", 7, Slot::Entry(&fits)).ends_with(&fits));
        let long = format!("{fits}k");
        assert_eq!(physical_name("v:", 7, Slot::Entry(&long)), hashed(&long));
        // Tags use their own hashed namespace.
        assert!(physical_name("v:", 7, Slot::Tag("a b")).starts_with("v:7:th:"));
        // Every name is a valid memcached key.
        for key in ["x", "has space", &long, "ü"] {
            for slot in [Slot::Entry(key), Slot::Tag(key)] {
                let name = physical_name("vorte:", u64::MAX, slot);
                assert!(name.len() <= MAX_NAME_LEN && name.bytes().all(is_key_byte));
                assert!(name.starts_with("vorte:"));
            }
        }
    }

    #[test]
    fn lease_names_fit_and_stay_apart() {
        assert_eq!(lease_name("v:", "user:1"), "v:l:user:1");
        let hashed = lease_name("v:", "has space");
        assert_eq!(hashed, format!("v:lh:{:032x}", xxh3_128(b"has space")));
        let long = lease_name("v:", &"k".repeat(400));
        assert!(long.len() <= MAX_NAME_LEN && long.starts_with("v:lh:"));
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        let now = Duration::from_secs(1_800_000_000);
        assert_eq!(exptime(Duration::from_secs(5), now), 5);
        assert_eq!(exptime(Duration::from_millis(5_001), now), 6);
        assert_eq!(exptime(Duration::from_millis(1), now), 1);
        assert_eq!(exptime(Duration::ZERO, now), 1);
        assert_eq!(
            exptime(Duration::from_secs(MAX_RELATIVE_TTL), now),
            MAX_RELATIVE_TTL
        );
    }

    #[test]
    fn long_ttls_are_absolute() {
        let now = Duration::from_millis(1_800_000_000_500);
        let ttl = Duration::from_secs(MAX_RELATIVE_TTL + 1);
        assert_eq!(exptime(ttl, now), 1_800_000_001 + MAX_RELATIVE_TTL + 1);
        assert_eq!(exptime(Duration::from_secs(400 * 365 * 86_400), now), 0);
        assert_eq!(exptime(Duration::MAX, now), 0);
    }
}
