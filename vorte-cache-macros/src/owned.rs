//! Whether a `#[cached]` fn's body can outlive its call: all its arguments owned.
//!
//! A soft timeout and an early refresh let the load go on after the caller has its answer, so
//! the runtime must own the body's future (`'static`). The async block of the body captures
//! exactly the fn's arguments, so it is `'static` when each argument's type is. The macro sees
//! only tokens, so this check is syntactic and errs on the side of "borrowed": a false "owned"
//! would make a fn that compiled without the macro fail to compile with it.
//!
//! Borrowed, for this check: a receiver of any kind (`&self` borrows; `self` and `self: Arc<Self>`
//! carry the impl's type, whose lifetimes and type parameters the macro cannot see), a type or
//! lifetime parameter of the fn, and an argument type with a `&` (other than `&'static`), a
//! lifetime (other than `'static`), an `impl Trait`, `Self`, or a type macro.
//!
//! No borrow can hide from this: an `async fn` may not elide a lifetime in a path (`Cow<str>`, or
//! an alias `Name` of `&'a str`, is error E0726 and must be written `Cow<'_, str>`), so every
//! lifetime of an argument type is in its tokens.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{FnArg, GenericParam, Pat, ReceiverKind, Signature};

/// The first reason the fn's arguments are not all owned, as the end of a sentence
/// ("... and {reason}").
pub(crate) struct Borrow {
    pub(crate) reason: String,
}

/// `None` when every argument is owned (by the syntactic rules above).
pub(crate) fn borrow(sig: &Signature) -> Option<Borrow> {
    for param in &sig.generics.params {
        let what = match param {
            GenericParam::Type(ty) => format!("type parameter `{}`", ty.ident),
            GenericParam::Lifetime(lt) => format!("lifetime parameter `{}`", lt.lifetime),
            // A const parameter is a value known at compile time: it borrows nothing.
            GenericParam::Const(_) => continue,
        };
        return Some(Borrow {
            reason: format!("the fn's {what} may stand for a borrowed type"),
        });
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                let reason = if matches!(receiver.kind, ReceiverKind::Reference(..)) {
                    "`&self` borrows the receiver".to_owned()
                } else {
                    "the receiver's type `Self` may borrow (the macro cannot see whether the \
                     impl's type has lifetimes or type parameters)"
                        .to_owned()
                };
                return Some(Borrow { reason });
            }
            FnArg::Typed(typed) => {
                if let Some(what) = borrowed_token(typed.ty.to_token_stream()) {
                    let param = match &*typed.pat {
                        Pat::Ident(pat) => format!("parameter `{}`", pat.ident),
                        _ => "a parameter".to_owned(),
                    };
                    return Some(Borrow {
                        reason: format!("{param} {what}"),
                    });
                }
            }
        }
    }
    None
}

/// What makes a type (possibly) borrowed: its first such token, described.
fn borrowed_token(tokens: TokenStream) -> Option<String> {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        let found = match token {
            // Looked into below, after this token's own checks.
            TokenTree::Group(_) => None,
            TokenTree::Punct(punct) if punct.as_char() == '&' && !is_static(&tokens[i + 1..]) => {
                Some("is a reference (`&`)".to_owned())
            }
            TokenTree::Punct(punct) if punct.as_char() == '\'' && !is_static(&tokens[i..]) => {
                Some("names a lifetime".to_owned())
            }
            TokenTree::Punct(punct) if punct.as_char() == '!' => {
                Some("is a type macro, which the macro cannot see into".to_owned())
            }
            TokenTree::Ident(ident) if ident == "impl" => {
                Some("is an `impl Trait`, a type parameter that may borrow".to_owned())
            }
            TokenTree::Ident(ident) if ident == "Self" => {
                Some("names `Self`, whose lifetimes the macro cannot see".to_owned())
            }
            _ => None,
        };
        if let Some(what) = found {
            return Some(what);
        }
        if let TokenTree::Group(group) = token
            && let Some(found) = borrowed_token(group.stream())
        {
            return Some(found);
        }
    }
    None
}

/// Whether `tokens` start with `'static`.
fn is_static(tokens: &[TokenTree]) -> bool {
    matches!(
        (tokens.first(), tokens.get(1)),
        (Some(TokenTree::Punct(p)), Some(TokenTree::Ident(ident)))
            if p.as_char() == '\'' && ident == "static"
    )
}
