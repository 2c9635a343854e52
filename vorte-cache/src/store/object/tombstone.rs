//! How a tombstone is kept in an object: object stores have no native expiry, and local files no
//! metadata, so the tombstone carries its expiry in a 16-byte header before the marker.
//!
//! ```text
//! "vc" | 0xFF | 0x00 | "tomb" | expires_at_ms (u64, big-endian) | marker length (u16) | marker
//!      | zeros, up to [`STORED_LEN`] bytes in all
//! ```
//!
//! The expiry sits at bytes 8..16, where an envelope keeps its own (`codec.rs`), so the sweeper
//! removes expired tombstones as it removes expired envelopes, reading the same 8 bytes. Version
//! `0xFF` is no envelope version, so no envelope is ever taken for a tombstone; `get` strips the
//! framing and returns the marker exactly as it was given.
//!
//! Every tombstone has the same size, so `list` and `usage`, which see only names and sizes, read
//! the first bytes of objects of exactly that size to tell them apart, and of no other.

use bytes::{BufMut, Bytes, BytesMut};

/// The first 8 bytes of every stored tombstone.
const HEADER: &[u8; 8] = b"vc\xff\x00tomb";

/// The framing before the marker: header, expiry, marker length.
const FRAME_LEN: usize = 18;

/// The longest marker a tombstone takes.
pub(super) const MAX_MARKER: usize = 256;

/// The size of every stored tombstone.
pub(super) const STORED_LEN: u64 = (FRAME_LEN + MAX_MARKER) as u64;

/// How many leading bytes tell a tombstone of [`STORED_LEN`] bytes from an entry of that size.
pub(super) const DECIDING_BYTES: u64 = HEADER.len() as u64;

/// What every marker the cache writes begins with (`engine/invalidate.rs`).
const MARKER_PREFIX: &[u8] = b"vorte-tombstone";

/// The stored form of a tombstone of `marker` (at most [`MAX_MARKER`] bytes) expiring at
/// `expires_at_ms`.
pub(super) fn encode(marker: &[u8], expires_at_ms: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(STORED_LEN as usize);
    out.put_slice(HEADER);
    out.put_u64(expires_at_ms);
    out.put_u16(marker.len() as u16);
    out.put_slice(marker);
    out.resize(STORED_LEN as usize, 0);
    out.freeze()
}

/// What `get` returns for a stored entry: the marker of a tombstone, anything else unchanged.
pub(super) fn logical(stored: Bytes) -> Bytes {
    match marker_len(&stored) {
        Some(len) => stored.slice(FRAME_LEN..FRAME_LEN + len),
        None => stored,
    }
}

/// The marker length of a tombstone [`encode`] wrote; `None` for anything else.
fn marker_len(stored: &[u8]) -> Option<usize> {
    if stored.len() as u64 != STORED_LEN || !stored.starts_with(HEADER) {
        return None;
    }
    let len = u16::from_be_bytes([stored[16], stored[17]]) as usize;
    (len <= MAX_MARKER).then_some(len)
}

/// Whether the first [`DECIDING_BYTES`] of an object of [`STORED_LEN`] bytes make it a tombstone.
pub(super) fn begins_as_tombstone(head: &[u8]) -> bool {
    head.starts_with(HEADER)
}

/// Whether the entry a tombstone replaces was a real one: not absent, not a tombstone (one
/// [`encode`] wrote, a raw value that begins as the cache's markers do, or exactly the marker
/// being written).
pub(super) fn was_real(previous: Option<&Bytes>, marker: &[u8]) -> bool {
    previous.is_some_and(|old| {
        marker_len(old).is_none() && !old.starts_with(MARKER_PREFIX) && old.as_ref() != marker
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_reads_back_as_its_marker_with_its_expiry_where_envelopes_keep_theirs() {
        let stored = encode(b"vorte-tombstone:1", 0x0102_0304_0506_0708);
        assert_eq!(&stored[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(stored.len() as u64, STORED_LEN);
        assert!(begins_as_tombstone(&stored[..DECIDING_BYTES as usize]));
        assert_eq!(logical(stored).as_ref(), b"vorte-tombstone:1");
        // The shortest and the longest markers round-trip; anything else is returned as it is.
        assert_eq!(logical(encode(b"", 1)).as_ref(), b"");
        let longest = vec![7u8; MAX_MARKER];
        assert_eq!(logical(encode(&longest, 1)).as_ref(), &longest[..]);
        let envelope_like = Bytes::from_static(b"vc\x01\x00crc!12345678payload");
        assert!(!begins_as_tombstone(&envelope_like));
        assert_eq!(logical(envelope_like.clone()), envelope_like);
        // The header alone, at another size, is not a tombstone.
        let short = encode(b"m", 1).slice(..20);
        assert_eq!(logical(short.clone()), short);
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
