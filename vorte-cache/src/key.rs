//! Key rules, default keys of `#[cached]` functions, and wall-clock time.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The most tags one entry may carry.
pub(crate) const MAX_TAGS: usize = 64;

/// Checks a key (or a tag): non-empty, at most [`MAX_KEY_LEN`] bytes, no NUL.
#[inline]
pub(crate) fn validate(key: &str, what: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("the {what} is empty"),
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!(
                "the {what} is {} bytes long; the limit is {MAX_KEY_LEN}",
                key.len()
            ),
        ));
    }
    if key.as_bytes().contains(&0) {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("the {what} contains a NUL byte"),
        ));
    }
    Ok(())
}

/// Checks the tags of one entry: at most [`MAX_TAGS`], each a valid key.
pub(crate) fn validate_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("{} tags given; the limit is {MAX_TAGS}", tags.len()),
        ));
    }
    tags.iter().try_for_each(|t| validate(t, "tag"))
}

/// See [`crate::__private::default_key`].
pub(crate) fn default_key<A: Serialize + ?Sized>(path: &str, args: &A) -> Result<String> {
    let json = serde_json::to_string(args).map_err(|e| {
        Error::new(
            ErrorKind::Serialize,
            format!("`{path}`: the arguments do not serialize into a key: {e}"),
        )
        .with_source(e)
    })?;
    // Readable while short; a stable hash once the arguments would make the key long.
    const READABLE: usize = 256;
    if path.len() + json.len() < READABLE {
        Ok(format!("{path}:{json}"))
    } else {
        let h = xxhash_rust::xxh3::xxh3_128(json.as_bytes());
        Ok(format!("{path}:#{h:032x}"))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(
            validate("", "key").unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
        assert_eq!(
            validate(&"k".repeat(MAX_KEY_LEN + 1), "key")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidKey
        );
        assert_eq!(
            validate("a\0b", "key").unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
        assert!(validate(&"k".repeat(MAX_KEY_LEN), "key").is_ok());
        assert!(validate("ключ/..\\%", "key").is_ok());
    }

    #[test]
    fn default_keys_are_stable_and_bounded() {
        assert_eq!(default_key("m::f", &(&1, &"a")).unwrap(), r#"m::f:[1,"a"]"#);
        let long = "x".repeat(5000);
        let k = default_key("m::f", &(&long,)).unwrap();
        assert_eq!(k, default_key("m::f", &(&long,)).unwrap());
        assert!(k.len() < 100, "{k}");
        assert_ne!(k, default_key("m::f", &(&format!("{long}y"),)).unwrap());
    }
}
