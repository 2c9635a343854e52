//! How a tombstone is kept in an object: object stores have no native expiry, and local files no
//! metadata, so the tombstone carries its expiry in a 16-byte header before the marker.
//!
//! ```text
//! "vc" | 0xFF | 0x00 | "tomb" | expires_at_ms (u64, big-endian) | marker
//! ```
//!
//! The expiry sits at bytes 8..16, where an envelope keeps its own (`codec.rs`), so the sweeper
//! removes expired tombstones as it removes expired envelopes, reading the same 8 bytes. Version
//! `0xFF` is no envelope version, so no envelope is ever taken for a tombstone; `get` strips the
//! header and returns the marker exactly as it was given.

use bytes::{BufMut, Bytes, BytesMut};

/// The first 8 bytes of every stored tombstone.
const HEADER: &[u8; 8] = b"vc\xff\x00tomb";

/// The header's length: the marker follows it.
pub(super) const HEADER_LEN: usize = 16;

/// The longest marker a tombstone takes. `list` and `usage` tell tombstones from entries by
/// reading the first bytes of objects no larger than [`LARGEST`] (so they need not read larger
/// ones), which holds only if markers are bounded.
pub(super) const MAX_MARKER: usize = 256;

/// The largest stored object that may be a tombstone.
pub(super) const LARGEST: u64 = (HEADER_LEN + MAX_MARKER) as u64;

/// What every marker the cache writes begins with (`engine/invalidate.rs`): a value with this
/// prefix is a tombstone even when it was written raw, without the header.
const MARKER_PREFIX: &[u8] = b"vorte-tombstone";

/// How many leading bytes [`is_tombstone`] needs to decide.
pub(super) const DECIDING_BYTES: u64 = MARKER_PREFIX.len() as u64;

/// The stored form of a tombstone of `marker` expiring at `expires_at_ms`.
pub(super) fn encode(marker: &[u8], expires_at_ms: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + marker.len());
    out.put_slice(HEADER);
    out.put_u64(expires_at_ms);
    out.put_slice(marker);
    out.freeze()
}

/// What `get` returns for a stored entry: the marker of a tombstone, anything else unchanged.
pub(super) fn logical(stored: Bytes) -> Bytes {
    if is_framed(&stored) {
        stored.slice(HEADER_LEN..)
    } else {
        stored
    }
}

fn is_framed(stored: &[u8]) -> bool {
    stored.len() >= HEADER_LEN && stored.starts_with(HEADER)
}

/// Whether stored bytes (or the first [`DECIDING_BYTES`] of them) are a tombstone: framed by
/// [`encode`], or a raw value that begins as the cache's markers do.
pub(super) fn is_tombstone(stored: &[u8]) -> bool {
    stored.starts_with(HEADER) || stored.starts_with(MARKER_PREFIX)
}

/// Whether the entry a tombstone replaces was a real one: not absent, not a tombstone (framed, a
/// raw marker, or exactly the marker being written).
pub(super) fn was_real(previous: Option<&Bytes>, marker: &[u8]) -> bool {
    previous.is_some_and(|old| !is_tombstone(old) && old.as_ref() != marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_reads_back_as_its_marker_with_its_expiry_where_envelopes_keep_theirs() {
        let stored = encode(b"vorte-tombstone:1", 0x0102_0304_0506_0708);
        assert_eq!(&stored[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(is_tombstone(&stored));
        assert_eq!(logical(stored).as_ref(), b"vorte-tombstone:1");
        // An empty marker still round-trips; anything else is returned as it is.
        assert_eq!(logical(encode(b"", 1)).as_ref(), b"");
        let envelope_like = Bytes::from_static(b"vc\x01\x00crc!12345678payload");
        assert!(!is_tombstone(&envelope_like));
        assert_eq!(logical(envelope_like.clone()), envelope_like);
    }

    #[test]
    fn only_a_real_entry_is_reported_as_replaced() {
        let marker = b"contract-tombstone";
        assert!(!was_real(None, marker));
        assert!(!was_real(Some(&encode(b"x", 1)), marker));
        assert!(!was_real(
            Some(&Bytes::from_static(b"vorte-tombstone-7")),
            marker
        ));
        assert!(!was_real(Some(&Bytes::from_static(marker)), marker));
        assert!(was_real(Some(&Bytes::new()), marker));
        assert!(was_real(Some(&Bytes::from_static(b"value")), marker));
    }
}
