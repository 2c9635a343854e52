//! Glob patterns in Redis `MATCH` syntax, compiled once and matched on `char`s.
//!
//! | pattern | matches |
//! |---|---|
//! | `*` | any run of characters, the empty one included |
//! | `?` | exactly one character |
//! | `[abc]` | one of `a`, `b`, `c` |
//! | `[^abc]` | one character that is none of them |
//! | `[a-z]` | one character in the range (the ends may be given in either order) |
//! | `\x` | the character `x` itself, also inside brackets |
//!
//! Differences from Redis's `stringmatchlen`, which works on bytes and never fails:
//! - `?` and classes match one `char` (a whole UTF-8 sequence), not one byte;
//! - an unclosed `[` and a trailing lone `\` are errors ([`ErrorKind::InvalidGlob`]) instead of
//!   being read leniently;
//! - a `-` just before the closing `]` (`[a-]`) is a literal `-`, where Redis would read a range
//!   ending in `]` and run past the bracket.
//!
//! As in Redis, `[]` matches nothing and `[^]` matches any one character.
//!
//! Matching is the iterative algorithm with one backtrack point (the last `*`), so it takes at most
//! O(pattern × input) steps: `a*a*a*a*a*b` against a long run of `a`s stays fast.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// A compiled glob.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: String,
    tokens: Vec<Token>,
    /// The characters matched literally before the first metacharacter, unescaped.
    prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One given character.
    Char(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters. Consecutive stars are merged at compile time.
    Star,
    /// `[...]` or `[^...]`.
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassItem {
    Char(char),
    /// Inclusive, with `lo <= hi`.
    Range(char, char),
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(t) => *t == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, items } => {
                let hit = items.iter().any(|item| match *item {
                    ClassItem::Char(t) => t == c,
                    ClassItem::Range(lo, hi) => lo <= c && c <= hi,
                });
                hit != *negated
            }
        }
    }
}

fn invalid(pattern: &str, why: &str) -> Error {
    Error::new(ErrorKind::InvalidGlob, format!("{pattern:?}: {why}"))
}

impl Glob {
    /// Compiles `pattern`. An unclosed `[` or a trailing lone `\` is an
    /// [`ErrorKind::InvalidGlob`] error. The empty pattern is valid and matches only `""`.
    pub(crate) fn new(pattern: &str) -> Result<Glob> {
        let mut tokens: Vec<Token> = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                '?' => Token::Any,
                '\\' => match chars.next() {
                    Some(escaped) => Token::Char(escaped),
                    None => return Err(invalid(pattern, "trailing `\\` escapes nothing")),
                },
                '[' => {
                    let negated = chars.next_if_eq(&'^').is_some();
                    let mut items = Vec::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        let lo = match c {
                            ']' => {
                                closed = true;
                                break;
                            }
                            '\\' => match chars.next() {
                                Some(escaped) => escaped,
                                None => break,
                            },
                            other => other,
                        };
                        // A range `lo-hi`, unless the `-` is the last thing before `]`.
                        let is_range = chars.peek() == Some(&'-') && {
                            let mut ahead = chars.clone();
                            ahead.next();
                            matches!(ahead.peek(), Some(c) if *c != ']')
                        };
                        if !is_range {
                            items.push(ClassItem::Char(lo));
                            continue;
                        }
                        chars.next(); // the `-`
                        let hi = match chars.next() {
                            Some('\\') => match chars.next() {
                                Some(escaped) => escaped,
                                None => break,
                            },
                            Some(hi) => hi,
                            None => break,
                        };
                        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                        items.push(ClassItem::Range(lo, hi));
                    }
                    if !closed {
                        return Err(invalid(pattern, "unclosed `[`"));
                    }
                    Token::Class { negated, items }
                }
                other => Token::Char(other),
            };
            tokens.push(token);
        }
        let prefix: String = tokens
            .iter()
            .map_while(|t| match t {
                Token::Char(c) => Some(*c),
                _ => None,
            })
            .collect();
        Ok(Glob {
            pattern: pattern.to_owned(),
            tokens,
            prefix,
        })
    }

    /// Whether the whole of `s` matches the pattern.
    pub(crate) fn matches(&self, s: &str) -> bool {
        let tokens = &self.tokens;
        let mut p = 0; // next token
        let mut i = 0; // byte offset in s
        // The last `*` seen, as (index of the token after it, byte offset it is tried from).
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            if p < tokens.len() && tokens[p] == Token::Star {
                p += 1;
                backtrack = Some((p, i));
                continue;
            }
            let Some(c) = s[i..].chars().next() else {
                break;
            };
            if p < tokens.len() && tokens[p].matches(c) {
                p += 1;
                i += c.len_utf8();
                continue;
            }
            // Mismatch: let the last star swallow one more character and retry after it.
            match backtrack {
                Some((after_star, from)) => {
                    let Some(skipped) = s[from..].chars().next() else {
                        return false;
                    };
                    let from = from + skipped.len_utf8();
                    backtrack = Some((after_star, from));
                    p = after_star;
                    i = from;
                }
                None => return false,
            }
        }
        // Input used up: only stars may remain.
        tokens[p..].iter().all(|t| *t == Token::Star)
    }

    /// The characters every match starts with: the pattern up to its first `*`, `?` or `[`, with
    /// escapes removed. `"user:*"` gives `"user:"`; `"*x"` gives `""`.
    pub(crate) fn literal_prefix(&self) -> &str {
        &self.prefix
    }
}

/// Escapes `s` so that it matches itself literally, in this syntax and in Redis `MATCH`: every
/// `*`, `?`, `[`, `]`, `^`, `-` and `\` gets a `\`. Use it to put a key prefix in front of a
/// user's glob.
#[cfg_attr(
    all(not(feature = "redis"), not(test)),
    expect(
        dead_code,
        reason = "used by the Redis store, to put its key prefix before a glob"
    )
)]
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '^' | '-' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.pattern).finish()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::time::{Duration, Instant};

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
    }

    /// (pattern, input, expected)
    const CASES: &[(&str, &str, bool)] = &[
        // empty
        ("", "", true),
        ("", "a", false),
        // literals
        ("abc", "abc", true),
        ("abc", "abcd", false),
        ("abc", "ab", false),
        ("abc", "ABC", false),
        // ?
        ("?", "a", true),
        ("?", "", false),
        ("?", "ab", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("???", "abc", true),
        // *
        ("*", "", true),
        ("*", "anything", true),
        ("**", "", true),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("a*", "ba", false),
        ("*a", "ba", true),
        ("*a", "ab", false),
        ("a*b", "ab", true),
        ("a*b", "axxxb", true),
        ("a*b", "axxxbx", false),
        ("a*b*c", "abc", true),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXcYb", false),
        ("*b*", "abc", true),
        ("*b*", "ac", false),
        ("user:*", "user:1", true),
        ("user:*", "user:", true),
        ("user:*", "users:1", false),
        ("*:*:*", "a:b:c", true),
        ("*:*:*", "a:b", false),
        ("a*?", "a", false),
        ("a*?", "ab", true),
        ("*?*?*", "ab", true),
        ("*?*?*", "a", false),
        ("a*a", "aa", true),
        ("a*a", "aaa", true),
        ("a*a", "a", false),
        ("*ab", "aab", true),
        ("*aab", "aaab", true),
        ("ab*ba", "aba", false),
        ("ab*ba", "abba", true),
        // classes
        ("[abc]", "a", true),
        ("[abc]", "c", true),
        ("[abc]", "d", false),
        ("[abc]", "", false),
        ("[abc]", "ab", false),
        ("[^abc]", "d", true),
        ("[^abc]", "a", false),
        ("[^abc]", "", false),
        ("[a-z]", "m", true),
        ("[a-z]", "M", false),
        ("[z-a]", "m", true),
        ("[a-cx-z]", "b", true),
        ("[a-cx-z]", "y", true),
        ("[a-cx-z]", "m", false),
        ("[^a-z]", "5", true),
        ("[^a-z]", "q", false),
        ("[0-9][0-9]", "42", true),
        ("[0-9][0-9]", "4x", false),
        ("h[ae]llo", "hello", true),
        ("h[ae]llo", "hallo", true),
        ("h[ae]llo", "hillo", false),
        ("h[^e]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("[a-]", "-", true),
        ("[a-]", "a", true),
        ("[a-]", "b", false),
        ("[-a]", "-", true),
        ("[]", "a", false),
        ("[]", "", false),
        ("[^]", "a", true),
        ("[^]", "", false),
        ("[*]", "*", true),
        ("[*]", "a", false),
        ("[?]", "?", true),
        ("[[]", "[", true),
        ("[\\]]", "]", true),
        ("[\\]]", "\\", false),
        ("[\\-]", "-", true),
        ("[\\^]", "^", true),
        ("[a\\-z]", "-", true),
        ("[a\\-z]", "m", false),
        ("[\\a-\\c]", "b", true),
        ("[!-#]", "\"", true),
        ("x[^]]y", "xay", false), // `[^]` then `]y`: literal `]`
        ("x[^]]y", "xa]y", true),
        // escapes
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("\\?", "?", true),
        ("\\?", "a", false),
        ("\\[a]", "[a]", true),
        ("\\\\", "\\", true),
        ("a\\bc", "abc", true),
        ("user\\*:*", "user*:1", true),
        ("user\\*:*", "userX:1", false),
        // a lone `]` is literal
        ("a]", "a]", true),
        // UTF-8: one `?` is one char
        ("?", "é", true),
        ("??", "é", false),
        ("caf?", "café", true),
        ("*é", "café", true),
        ("[é]", "é", true),
        ("[à-ü]", "é", true),
        ("[^é]", "e", true),
        ("日本*", "日本語", true),
        ("*語", "日本語", true),
        ("?本?", "日本語", true),
        ("*\u{1F600}*", "a\u{1F600}b", true),
        // backtracking across several stars
        ("*a*b*c*", "xxaxxbxxcxx", true),
        ("*a*b*c*", "xxaxxcxxbxx", false),
        ("a*b?c", "abxbyc", true),
        ("a*b[0-9]", "ab1b2", true),
        ("a*b[0-9]", "ab1bx", false),
    ];

    #[test]
    fn table() {
        for &(pattern, input, expected) in CASES {
            assert_eq!(
                glob(pattern).matches(input),
                expected,
                "pattern {pattern:?} on {input:?}"
            );
        }
    }

    #[test]
    fn malformed() {
        for pattern in [
            "[", "[abc", "a[b", "[^", "[a-", "[a-\\", "[\\", "[\\]", "\\", "ab\\", "*\\",
        ] {
            let err = Glob::new(pattern).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidGlob, "{pattern:?}");
            assert!(
                err.message().contains(&format!("{pattern:?}")),
                "{}",
                err.message()
            );
        }
        assert!(
            Glob::new("[")
                .unwrap_err()
                .message()
                .contains("unclosed `[`")
        );
        assert!(Glob::new("\\").unwrap_err().message().contains("trailing"));
    }

    #[test]
    fn literal_prefix() {
        let cases = [
            ("", ""),
            ("abc", "abc"),
            ("user:*", "user:"),
            ("user:?", "user:"),
            ("user:[0-9]", "user:"),
            ("*", ""),
            ("?abc", ""),
            ("a\\*b*", "a*b"),
            ("a\\\\b?", "a\\b"),
            ("日本*", "日本"),
        ];
        for (pattern, prefix) in cases {
            assert_eq!(glob(pattern).literal_prefix(), prefix, "{pattern:?}");
        }
    }

    #[test]
    fn every_match_starts_with_the_literal_prefix() {
        for &(pattern, input, expected) in CASES {
            if expected {
                assert!(
                    input.starts_with(glob(pattern).literal_prefix()),
                    "{pattern:?}"
                );
            }
        }
    }

    #[test]
    fn escape_round_trips() {
        for s in ["", "plain", "a*b?c[d]e^f-g\\h", "vorte:", "[^]", "日本*"] {
            let g = glob(&escape(s));
            assert!(g.matches(s), "{s:?}");
            // Wholly literal: its literal prefix is all of `s`, and nothing longer matches.
            assert_eq!(g.literal_prefix(), s);
            assert!(!g.matches(&format!("{s}x")));
        }
        // A prefix glued to a user glob.
        let g = glob(&format!("{}user:*", escape("app[1]:")));
        assert!(g.matches("app[1]:user:7"));
        assert!(!g.matches("app1:user:7"));
        assert_eq!(g.literal_prefix(), "app[1]:user:");
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let started = Instant::now();
        let long = "a".repeat(100_000);
        assert!(!glob("a*a*a*a*a*b").matches(&long));
        assert!(glob("a*a*a*a*a*").matches(&long));
        assert!(!glob("*a*a*a*a*a*a*a*a*a*a*b").matches(&long[..20_000]));
        assert!(!glob("*?*?*?*?*?*?b").matches(&long[..20_000]));
        let mut tail = long.clone();
        tail.push('b');
        assert!(glob("a*a*a*a*a*b").matches(&tail));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn consecutive_stars_collapse() {
        assert_eq!(glob("a***b").tokens.len(), 3);
        assert!(glob("a***b").matches("ab"));
        assert!(glob("a***b").matches("a123b"));
    }

    #[test]
    fn debug_and_display_show_the_pattern() {
        let g = glob("user:[0-9]*");
        assert_eq!(g.to_string(), "user:[0-9]*");
        assert_eq!(format!("{g:?}"), "Glob(\"user:[0-9]*\")");
    }
}
