//! Key and tag templates: `"user:{user_id}"`.
//!
//! A template is text with `{name}` placeholders, each naming a parameter of the function; the
//! parameter is rendered with `Display`. `{{` and `}}` stand for literal braces. Nothing else is
//! accepted inside braces (no format specs, no field access), so a template always reads as the
//! key it makes.

use syn::LitStr;

/// One piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text, with `{{`/`}}` already unescaped.
    Text(String),
    /// A `{name}` placeholder.
    Placeholder(String),
}

/// Splits the template `lit` into text and placeholders. Errors are spanned on the literal.
pub(crate) fn parse(lit: &LitStr) -> syn::Result<Vec<Piece>> {
    parse_str(&lit.value()).map_err(|message| syn::Error::new(lit.span(), message))
}

fn parse_str(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!(
                                "unclosed `{{` in template `{template}`; \
                                 close it with `}}`, or write `{{{{` for a literal brace"
                            ));
                        }
                    }
                }
                if !is_ident(&name) {
                    return Err(format!(
                        "`{{{name}}}` is not a placeholder; write a parameter name between \
                         braces, such as `{{user_id}}`, or `{{{{` and `}}}}` for literal braces"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Placeholder(name));
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in template `{template}`; write `}}}}` for a literal brace"
                ));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// A Rust identifier (raw identifiers excepted), which is what a parameter name can be.
fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && name != "_"
}

#[cfg(test)]
mod tests {
    use super::{Piece, parse_str};

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }

    fn param(s: &str) -> Piece {
        Piece::Placeholder(s.to_owned())
    }

    #[test]
    fn splits_text_and_placeholders() {
        assert_eq!(
            parse_str("user:{id}:{kind}"),
            Ok(vec![text("user:"), param("id"), text(":"), param("kind")])
        );
        assert_eq!(parse_str("{id}"), Ok(vec![param("id")]));
        assert_eq!(parse_str("static"), Ok(vec![text("static")]));
        assert_eq!(parse_str(""), Ok(vec![]));
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(
            parse_str("{{raw}}:{id}"),
            Ok(vec![text("{raw}:"), param("id")])
        );
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(parse_str("user:{id").is_err_and(|e| e.contains("unclosed `{`")));
        assert!(parse_str("user:id}").is_err_and(|e| e.contains("unmatched `}`")));
        assert!(parse_str("user:{}").is_err_and(|e| e.contains("`{}` is not a placeholder")));
        assert!(parse_str("{id:?}").is_err_and(|e| e.contains("`{id:?}`")));
        assert!(parse_str("{a.b}").is_err());
    }
}
