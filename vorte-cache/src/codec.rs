//! The envelope every layer stores, and the value codecs inside it.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! magic "vc" | version u8 | flags u8 | crc32 u32 (of every byte after it)
//! expires_at_ms u64 | created_at_ms u64
//! fresh_until_ms u64 | load_ms u32                  (versions 2 and 3)
//! validator_len u16 | validator                     (version 3 only)
//! key_len u16 | key
//! tag_count u16 | (tag_len u16 | tag | tag_version u64)*
//! payload_len u32 | payload
//! ```
//!
//! `flags` holds the codec (bit 0: 0 = msgpack, 1 = JSON) and the compression (bit 1: lz4, bit 2:
//! zstd; both with the decompressed size prepended, little-endian u32). The payload is the value serialized by the codec, compressed when
//! it was larger than the configured threshold. The envelope frames itself: trailing bytes, a bad
//! length, an unknown version or a checksum mismatch make it [`Corrupt`], which the engine treats as
//! a miss and removes (`docs/guarantees.md#f4-a-corrupt-entry-is-a-miss-a-type-mismatch-is-an-error`). The key is stored so that a layer whose physical names are hashed
//! or chunked can still list logical keys.
//!
//! Two expiries: `expires_at_ms` is when the entry is gone from every layer (the store's own TTL),
//! `fresh_until_ms` when it stops being fresh. Between the two it is *stale*: no read returns it,
//! but a load whose loader fails or is slow may serve it (fail-safe,
//! `docs/resilience.md#fail-safe`). `load_ms` is how long the load that produced the value took,
//! for early refresh (`docs/resilience.md#early-refresh`). Version 1 envelopes, written before
//! these fields, read as fresh until they expire, with a load time of 0. An entry without a
//! stale window and without a load time is still written as version 1, so that builds from
//! before version 2 keep reading it.
//!
//! Version 3 adds the validator a loader stored with its value (an ETag, a last-modified time),
//! for conditional refresh (`docs/architecture.md#conditional-refresh`). Only an entry with a
//! validator is written as version 3; one without is written as before, and reads as before.

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// How values are encoded before they reach a layer (`serialization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Serialization {
    /// MessagePack through rmp-serde (`"msgpack"`): compact and fast. The default.
    #[default]
    Msgpack,
    /// JSON (`"json"`): readable with `redis-cli`, larger.
    Json,
}

/// Whether encoded values are compressed (`compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (`"none"`). The default.
    #[default]
    None,
    /// zstd (`"zstd"`): smaller than LZ4 and slower; meant for L4, where bytes cost money.
    Zstd {
        /// Values of at most this many bytes (serialized) are stored uncompressed. Default 1024.
        threshold: usize,
    },
    /// LZ4 (`"lz4"`), for values longer than `threshold` bytes once serialized.
    Lz4 {
        /// Values of at most this many bytes (serialized) are stored uncompressed. Default 1024.
        threshold: usize,
    },
}

const MAGIC: &[u8; 2] = b"vc";
/// The envelope without `fresh_until_ms` and `load_ms`.
const VERSION_1: u8 = 1;
/// The envelope with them.
const VERSION_2: u8 = 2;
/// The envelope with them and a validator.
const VERSION_3: u8 = 3;
/// The longest validator an entry keeps, in bytes (`load::set_validator` refuses longer ones).
pub(crate) const MAX_VALIDATOR_LEN: usize = 1024;
const FLAG_JSON: u8 = 0b01;
const FLAG_LZ4: u8 = 0b10;
const FLAG_ZSTD: u8 = 0b100;
const HEADER: usize = 2 + 1 + 1 + 4;

/// One tag of an entry, with the version of the tag that was current when the entry was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagStamp {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) version: u64,
}

/// When an entry stops being fresh and when it goes (wall-clock ms), and how long the load that
/// made it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub(crate) fresh_until_ms: u64,
    pub(crate) expires_at_ms: u64,
    pub(crate) load_ms: u32,
}

impl Lifetime {
    /// Fresh until it goes, with no load time.
    pub(crate) fn plain(expires_at_ms: u64) -> Lifetime {
        Lifetime {
            fresh_until_ms: expires_at_ms,
            expires_at_ms,
            load_ms: 0,
        }
    }

    /// Fresh at most `cap` from `now` (a layer's `ttl`), keeping the stale window after it: the
    /// cap bounds freshness, not fail-safe (`docs/resilience.md#fail-safe`).
    pub(crate) fn capped(self, cap: Option<std::time::Duration>, now: u64) -> Lifetime {
        match cap {
            Some(cap) => {
                let fresh_until_ms = self
                    .fresh_until_ms
                    .min(now.saturating_add(cap.as_millis() as u64));
                let stale_ms = self.expires_at_ms.saturating_sub(self.fresh_until_ms);
                Lifetime {
                    fresh_until_ms,
                    expires_at_ms: self
                        .expires_at_ms
                        .min(fresh_until_ms.saturating_add(stale_ms)),
                    load_ms: self.load_ms,
                }
            }
            None => self,
        }
    }
}

/// A decoded envelope: metadata plus the (decompressed) serialized value.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// When every layer drops the entry.
    pub(crate) expires_at_ms: u64,
    pub(crate) created_at_ms: u64,
    /// When the entry stops being fresh: at most `expires_at_ms`.
    pub(crate) fresh_until_ms: u64,
    /// How long the load that produced the value took; 0 when unknown (a `set`).
    pub(crate) load_ms: u32,
    /// What the loader stored to revalidate the value with (conditional refresh).
    pub(crate) validator: Option<Validator>,
    pub(crate) key: String,
    pub(crate) tags: Vec<TagStamp>,
    pub(crate) serialization: Serialization,
    pub(crate) payload: Bytes,
}

/// A validator: an ETag, a last-modified time, whatever the loader compares with its source.
/// A thin pointer: it sits in the envelope that every read's future holds.
pub(crate) type Validator = std::sync::Arc<String>;

/// Why an envelope could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// A well-formed envelope compressed with zstd, read by a build without zstd: not corrupt, only
/// unreadable here. Builds that have zstd read it, so it must not be removed.
pub(crate) const ZSTD_NOT_BUILT: Corrupt = Corrupt("zstd is not built into this build");

impl Corrupt {
    /// Whether another build can read what this one cannot (see [`ZSTD_NOT_BUILT`]).
    pub(crate) fn readable_elsewhere(&self) -> bool {
        *self == ZSTD_NOT_BUILT
    }
}

/// The initial capacity of an encoding buffer.
const ENCODE_CAPACITY: usize = 128;

/// Serializes a value with the configured codec.
pub(crate) fn serialize<V: Serialize + ?Sized>(
    serialization: Serialization,
    value: &V,
) -> Result<Vec<u8>> {
    // Room for a small value up front: grown from empty, the buffer is reallocated several times
    // per write (most of the cost of encoding a small struct; `docs/performance.md#l1-miss-then-insert`).
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    match serialization {
        Serialization::Msgpack => rmp_serde::encode::write_named(&mut out, value)
            .map_err(|e| Error::new(ErrorKind::Serialize, format!("msgpack: {e}")).with_source(e)),
        Serialization::Json => serde_json::to_writer(&mut out, value)
            .map_err(|e| Error::new(ErrorKind::Serialize, format!("json: {e}")).with_source(e)),
    }?;
    Ok(out)
}

/// Deserializes a value; a failure is a type mismatch (the envelope itself was sound).
pub(crate) fn deserialize<T: DeserializeOwned>(
    serialization: Serialization,
    key: &str,
    payload: &[u8],
) -> Result<T> {
    let result = match serialization {
        Serialization::Msgpack => rmp_serde::from_slice(payload).map_err(|e| e.to_string()),
        Serialization::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
    };
    result.map_err(|e| {
        Error::new(
            ErrorKind::TypeMismatch,
            format!(
                "key `{key}` holds a value that does not decode as {}: {e}",
                std::any::type_name::<T>()
            ),
        )
    })
}

impl Envelope {
    /// The entry's lifetime.
    pub(crate) fn lifetime(&self) -> Lifetime {
        Lifetime {
            fresh_until_ms: self.fresh_until_ms,
            expires_at_ms: self.expires_at_ms,
            load_ms: self.load_ms,
        }
    }

    /// Encodes the envelope, compressing the payload when `compression` says so.
    pub(crate) fn encode(&self, compression: Compression) -> Bytes {
        let mut flags = 0u8;
        if self.serialization == Serialization::Json {
            flags |= FLAG_JSON;
        }
        let compressed;
        let payload: &[u8] = match compression {
            Compression::Lz4 { threshold } if self.payload.len() > threshold => {
                flags |= FLAG_LZ4;
                compressed = lz4_flex::block::compress_prepend_size(&self.payload);
                &compressed
            }
            #[cfg(feature = "object-store")]
            Compression::Zstd { threshold } if self.payload.len() > threshold => {
                match zstd::bulk::compress(&self.payload, 3) {
                    Ok(z) => {
                        flags |= FLAG_ZSTD;
                        let mut framed = Vec::with_capacity(4 + z.len());
                        framed.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
                        framed.extend_from_slice(&z);
                        compressed = framed;
                        &compressed
                    }
                    // zstd refusing a buffer is not worth failing a write: store it plain.
                    Err(_) => &self.payload,
                }
            }
            _ => &self.payload,
        };
        let tags_len: usize = self.tags.iter().map(|t| 2 + t.name.len() + 8).sum();
        // At most MAX_VALIDATOR_LEN (refused longer by `load::set_validator`), cut there anyway.
        let validator = self.validator.as_deref().map(|v| {
            let mut end = v.len().min(MAX_VALIDATOR_LEN);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            &v[..end]
        });
        let v3 = validator.is_some();
        let v2 = v3 || self.fresh_until_ms < self.expires_at_ms || self.load_ms > 0;
        let mut out = BytesMut::with_capacity(
            HEADER
                + 28
                + validator.map_or(0, |v| 2 + v.len())
                + 2
                + self.key.len()
                + 2
                + tags_len
                + 4
                + payload.len(),
        );
        out.put_slice(MAGIC);
        out.put_u8(if v3 {
            VERSION_3
        } else if v2 {
            VERSION_2
        } else {
            VERSION_1
        });
        out.put_u8(flags);
        out.put_u32(0); // checksum, filled below
        out.put_u64(self.expires_at_ms);
        out.put_u64(self.created_at_ms);
        if v2 {
            out.put_u64(self.fresh_until_ms.min(self.expires_at_ms));
            out.put_u32(self.load_ms);
        }
        if let Some(validator) = validator {
            out.put_u16(validator.len() as u16);
            out.put_slice(validator.as_bytes());
        }
        // Keys and tags are bounded well below u16::MAX by validation (MAX_KEY_LEN, MAX_TAGS).
        out.put_u16(self.key.len() as u16);
        out.put_slice(self.key.as_bytes());
        out.put_u16(self.tags.len() as u16);
        for tag in &self.tags {
            out.put_u16(tag.name.len() as u16);
            out.put_slice(tag.name.as_bytes());
            out.put_u64(tag.version);
        }
        out.put_u32(payload.len() as u32);
        out.put_slice(payload);
        let crc = crc32fast::hash(&out[HEADER..]);
        out[4..8].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    /// Decodes an envelope, refusing anything malformed. `max_payload` caps the decompressed size,
    /// because the size prepended by lz4 is read from the (untrusted) stored bytes.
    pub(crate) fn decode(stored: &Bytes, max_payload: usize) -> Result<Envelope, Corrupt> {
        let bytes: &[u8] = stored;
        let mut r = Reader(bytes);
        if r.take(2)? != MAGIC {
            return Err(Corrupt("bad magic"));
        }
        let version = r.u8()?;
        if !(VERSION_1..=VERSION_3).contains(&version) {
            return Err(Corrupt("unknown envelope version"));
        }
        let flags = r.u8()?;
        if flags & !(FLAG_JSON | FLAG_LZ4 | FLAG_ZSTD) != 0 {
            return Err(Corrupt("unknown flags"));
        }
        let crc = r.u32()?;
        if crc32fast::hash(r.0) != crc {
            return Err(Corrupt("checksum mismatch"));
        }
        let expires_at_ms = r.u64()?;
        let created_at_ms = r.u64()?;
        let (fresh_until_ms, load_ms) = if version >= VERSION_2 {
            let fresh = r.u64()?;
            if fresh > expires_at_ms {
                return Err(Corrupt("fresh past its expiry"));
            }
            (fresh, r.u32()?)
        } else {
            (expires_at_ms, 0)
        };
        let validator = if version == VERSION_3 {
            let len = r.u16()? as usize;
            let v =
                std::str::from_utf8(r.take(len)?).map_err(|_| Corrupt("validator is not UTF-8"))?;
            Some(Validator::new(v.to_owned()))
        } else {
            None
        };
        let key_len = r.u16()? as usize;
        let key = std::str::from_utf8(r.take(key_len)?)
            .map_err(|_| Corrupt("key is not UTF-8"))?
            .to_owned();
        let tag_count = r.u16()? as usize;
        let mut tags = Vec::with_capacity(tag_count.min(64));
        for _ in 0..tag_count {
            let len = r.u16()? as usize;
            let name =
                std::str::from_utf8(r.take(len)?).map_err(|_| Corrupt("tag is not UTF-8"))?;
            let version = r.u64()?;
            tags.push(TagStamp {
                name: name.into(),
                version,
            });
        }
        let payload_len = r.u32()? as usize;
        let payload = r.take(payload_len)?;
        if !r.0.is_empty() {
            return Err(Corrupt("trailing bytes"));
        }
        let declared = || {
            payload
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or(Corrupt("truncated compression header"))
                .and_then(|n| {
                    if n > max_payload {
                        Err(Corrupt("declared size over the limit"))
                    } else {
                        Ok(n)
                    }
                })
        };
        let payload = if flags & FLAG_LZ4 != 0 {
            declared()?;
            Bytes::from(
                lz4_flex::block::decompress_size_prepended(payload)
                    .map_err(|_| Corrupt("lz4 stream is malformed"))?,
            )
        } else if flags & FLAG_ZSTD != 0 {
            let size = declared()?;
            #[cfg(feature = "object-store")]
            {
                let out = zstd::bulk::decompress(&payload[4..], size)
                    .map_err(|_| Corrupt("zstd stream is malformed"))?;
                if out.len() != size {
                    return Err(Corrupt("zstd size mismatch"));
                }
                Bytes::from(out)
            }
            #[cfg(not(feature = "object-store"))]
            {
                let _ = size;
                return Err(ZSTD_NOT_BUILT);
            }
        } else {
            // A view of the stored bytes, not a copy.
            stored.slice_ref(payload)
        };
        let serialization = if flags & FLAG_JSON != 0 {
            Serialization::Json
        } else {
            Serialization::Msgpack
        };
        Ok(Envelope {
            expires_at_ms,
            created_at_ms,
            fresh_until_ms,
            load_ms,
            validator,
            key,
            tags,
            serialization,
            payload,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8]) -> Envelope {
        Envelope {
            expires_at_ms: 1_000,
            created_at_ms: 10,
            fresh_until_ms: 1_000,
            load_ms: 0,
            validator: None,
            key: "user:1".into(),
            tags: vec![TagStamp {
                name: "users".into(),
                version: 7,
            }],
            serialization: Serialization::Msgpack,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn round_trips_with_and_without_compression() {
        let big = vec![b'x'; 4096];
        for compression in [
            Compression::None,
            Compression::Lz4 { threshold: 16 },
            Compression::Zstd { threshold: 16 },
        ] {
            let env = sample(&big);
            let bytes = env.encode(compression);
            let back = Envelope::decode(&bytes, 1 << 20).expect("decodes");
            assert_eq!(back.payload, env.payload);
            assert_eq!(back.key, "user:1");
            assert_eq!(back.tags, env.tags);
            assert_eq!(back.expires_at_ms, 1_000);
        }
        let small = sample(b"ab").encode(Compression::Lz4 { threshold: 16 });
        assert_eq!(
            small[3] & FLAG_LZ4,
            0,
            "below the threshold nothing is compressed"
        );
    }

    /// Flipping any byte of an encoded envelope makes it corrupt.
    fn assert_every_flip_is_corrupt(bytes: &Bytes) {
        for i in 0..bytes.len() {
            let mut bad = bytes.to_vec();
            bad[i] ^= 0x55;
            assert!(
                Envelope::decode(&Bytes::from(bad), 1 << 20).is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_or_truncation_is_corrupt() {
        let bytes = sample(b"hello").encode(Compression::None);
        assert_every_flip_is_corrupt(&bytes);
        for n in 0..bytes.len() {
            assert!(
                Envelope::decode(&bytes.slice(..n), 1 << 20).is_err(),
                "cut at {n}"
            );
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            Envelope::decode(&Bytes::from(long), 1 << 20).unwrap_err(),
            Corrupt("checksum mismatch")
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "object-store"),
        expect(
            clippy::single_element_loop,
            reason = "lz4 only where zstd is not built"
        )
    )]
    fn a_declared_size_over_the_limit_is_refused() {
        for compression in [
            Compression::Lz4 { threshold: 0 },
            // A build without zstd refuses it at config time (`config::resolve`).
            #[cfg(feature = "object-store")]
            Compression::Zstd { threshold: 0 },
        ] {
            let bytes = sample(&vec![0u8; 10_000]).encode(compression);
            assert!(Envelope::decode(&bytes, 100).is_err(), "{compression:?}");
            assert!(
                bytes.len() < 1_000,
                "{compression:?} compressed: {}",
                bytes.len()
            );
        }
    }

    #[test]
    fn a_stale_window_and_a_load_time_round_trip_and_plain_entries_stay_version_1() {
        let plain = sample(b"v").encode(Compression::None);
        assert_eq!(
            plain[2], VERSION_1,
            "readable by builds from before version 2"
        );
        let mut env = sample(b"v");
        env.fresh_until_ms = 400;
        env.load_ms = 37;
        let bytes = env.encode(Compression::None);
        assert_eq!(bytes[2], VERSION_2);
        let back = Envelope::decode(&bytes, 1 << 20).expect("decodes");
        assert_eq!(
            (back.fresh_until_ms, back.load_ms, back.expires_at_ms),
            (400, 37, 1_000)
        );
        let v1 = Envelope::decode(&plain, 1 << 20).expect("decodes");
        assert_eq!(
            (v1.fresh_until_ms, v1.load_ms),
            (1_000, 0),
            "fresh until it expires"
        );
    }

    #[test]
    fn a_validator_round_trips_as_version_3_and_entries_without_one_keep_their_version() {
        let mut env = sample(b"v");
        env.fresh_until_ms = 400;
        env.validator = Some(Validator::new("\"etag-7\"".to_owned()));
        let bytes = env.encode(Compression::Lz4 { threshold: 0 });
        assert_eq!(bytes[2], VERSION_3);
        let back = Envelope::decode(&bytes, 1 << 20).expect("decodes");
        assert_eq!(
            back.validator.as_deref().map(String::as_str),
            Some("\"etag-7\"")
        );
        assert_eq!(
            (back.fresh_until_ms, back.expires_at_ms, back.key.as_str()),
            (400, 1_000, "user:1")
        );
        assert_eq!(back.payload.as_ref(), b"v");
        assert_every_flip_is_corrupt(&bytes);
        env.validator = None;
        let v2 = env.encode(Compression::None);
        assert_eq!(v2[2], VERSION_2, "no validator: written as before");
        assert_eq!(
            Envelope::decode(&v2, 1 << 20).expect("decodes").validator,
            None
        );
        let v1 = sample(b"v").encode(Compression::None);
        assert_eq!(
            Envelope::decode(&v1, 1 << 20).expect("decodes").validator,
            None
        );
    }
}
