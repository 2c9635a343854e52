//! Object names: every logical key is encoded into `[A-Za-z0-9_-]` plus `=XX` escapes, so no
//! name can leave the store's root.

use object_store::path::Path;

/// Encodes a name into `[A-Za-z0-9_-]` plus `=XX` escapes.
pub(crate) fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('=');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 15) as usize]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes [`encode_name`]; `None` for anything it could not have written.
pub(crate) fn decode_name(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(super) fn decode_location(base: &Path, location: &Path) -> Option<String> {
    let parts: Vec<_> = location.prefix_match(base)?.collect();
    let (last, dirs) = parts.split_last()?;
    let mut encoded = String::new();
    for dir in dirs {
        encoded.push_str(dir.as_ref().strip_suffix('+')?);
    }
    encoded.push_str(last.as_ref());
    decode_name(&encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_never_escape() {
        for name in [
            "user:1", "..", ".", "a/b\\c", "%2E", "ключ", "x y\0z", "=41",
        ] {
            let enc = encode_name(name);
            assert!(
                enc.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b))
            );
            assert_eq!(decode_name(&enc).as_deref(), Some(name));
        }
    }
}
