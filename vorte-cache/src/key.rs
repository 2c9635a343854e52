//! Key rules, and the keys of `#[cached]` functions: default keys and rendered templates.

use std::fmt;

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

/// The tag whose version is the cache's flush epoch: every entry below L1 carries it, and `flush`
/// moves it on, so an entry written by a fill that began before a flush is invalid after it in
/// every process (`docs/consistency.md#flush-moves-an-epoch`). Reserved: not a user tag.
pub(crate) const FLUSH_EPOCH_TAG: &str = "vorte-cache:flush-epoch";

/// Checks the tags of one entry: at most [`MAX_TAGS`], each a valid key, none reserved.
pub(crate) fn validate_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("{} tags given; the limit is {MAX_TAGS}", tags.len()),
        ));
    }
    tags.iter().try_for_each(|t| {
        if t == FLUSH_EPOCH_TAG {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("the tag `{t}` is reserved for the cache's flush epoch"),
            ));
        }
        validate(t, "tag")
    })
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

/// Bytes of a [`KeyBuf`] kept on the stack: room for the usual `"user:{id}"` keys.
const KEY_INLINE: usize = 128;

/// A key rendered from a `#[cached]` template, on the stack while it fits in `KEY_INLINE` bytes,
/// so that an L1 hit (looked up by `&str`) allocates nothing; it becomes a `String` only when it
/// is longer, or on a miss, where the engine needs an owned key
/// (`docs/performance.md#p2--an-l1-hit-through-a-cached-fn`).
#[derive(Clone)]
pub struct KeyBuf {
    repr: KeyRepr,
}

#[derive(Clone)]
enum KeyRepr {
    Inline { bytes: [u8; KEY_INLINE], len: usize },
    Heap(String),
}

impl KeyBuf {
    /// An empty key.
    #[inline]
    pub fn new() -> Self {
        KeyBuf {
            repr: KeyRepr::Inline {
                bytes: [0; KEY_INLINE],
                len: 0,
            },
        }
    }

    /// The key.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.repr {
            // Only whole `&str`s are ever copied in, so the bytes are UTF-8; an empty key (which
            // validation refuses) is the answer if that ever stopped being so.
            KeyRepr::Inline { bytes, len } => std::str::from_utf8(&bytes[..*len]).unwrap_or(""),
            KeyRepr::Heap(string) => string,
        }
    }

    /// The key as an owned `String`, for the engine on a miss; leaves the buffer empty.
    pub fn take_string(&mut self) -> String {
        if let KeyRepr::Heap(string) = &mut self.repr {
            return std::mem::take(string);
        }
        let key = self.as_str().to_owned();
        if let KeyRepr::Inline { len, .. } = &mut self.repr {
            *len = 0;
        }
        key
    }

    /// Holds `key`, already owned (a default key).
    pub fn set_owned(&mut self, key: String) -> &mut Self {
        self.repr = KeyRepr::Heap(key);
        self
    }

    /// Whether the key has left the stack (tests only).
    #[cfg(test)]
    fn spilled(&self) -> bool {
        matches!(self.repr, KeyRepr::Heap(_))
    }
}

impl Default for KeyBuf {
    fn default() -> Self {
        KeyBuf::new()
    }
}

impl From<String> for KeyBuf {
    fn from(string: String) -> Self {
        KeyBuf {
            repr: KeyRepr::Heap(string),
        }
    }
}

impl fmt::Write for KeyBuf {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match &mut self.repr {
            KeyRepr::Heap(string) => string.push_str(s),
            KeyRepr::Inline { bytes, len } => {
                let end = *len + s.len();
                match bytes.get_mut(*len..end) {
                    Some(free) => {
                        free.copy_from_slice(s.as_bytes());
                        *len = end;
                    }
                    None => {
                        let mut string = String::with_capacity(end.max(2 * KEY_INLINE));
                        string.push_str(self.as_str());
                        string.push_str(s);
                        self.repr = KeyRepr::Heap(string);
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Renders a `#[cached]` key template into `key`, in place (a `KeyBuf` returned by value is
/// copied, which costs more than the allocation it saves). A `Display` impl that fails gives an
/// `InvalidKey` error (the call then runs uncached), where `format!` would panic.
#[inline]
pub(crate) fn render<'k>(key: &'k mut KeyBuf, args: fmt::Arguments<'_>) -> Result<&'k mut KeyBuf> {
    match fmt::Write::write_fmt(key, args) {
        Ok(()) => Ok(key),
        Err(fmt::Error) => Err(Error::new(
            ErrorKind::InvalidKey,
            "a `Display` impl of a key parameter returned an error",
        )),
    }
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
    fn key_bufs_stay_on_the_stack_until_they_are_long() {
        let mut buf = KeyBuf::new();
        let key = render(&mut buf, format_args!("user:{}", 42u64)).unwrap();
        assert_eq!(key.as_str(), "user:42");
        assert!(!key.spilled());
        assert_eq!(key.take_string(), "user:42");
        assert_eq!(key.as_str(), "");

        let exact = "k".repeat(KEY_INLINE);
        let mut buf = KeyBuf::new();
        let key = render(&mut buf, format_args!("{exact}")).unwrap();
        assert!(!key.spilled());
        assert_eq!(key.as_str(), exact);

        let long = "é".repeat(KEY_INLINE);
        let mut buf = KeyBuf::new();
        let key = render(&mut buf, format_args!("user:{long}:{}", 7)).unwrap();
        assert!(key.spilled());
        assert_eq!(key.as_str(), format!("user:{long}:7"));
        assert_eq!(key.take_string(), format!("user:{long}:7"));

        let mut buf = KeyBuf::new();
        assert_eq!(buf.set_owned("m::f:[1]".into()).take_string(), "m::f:[1]");
    }

    #[test]
    fn a_failing_display_is_an_invalid_key() {
        struct Broken;
        impl fmt::Display for Broken {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        let mut buf = KeyBuf::new();
        let error = render(&mut buf, format_args!("user:{}", Broken)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidKey);
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
