//! The `#[cached]` and `#[on_event]` attribute macros of [vorte-cache].
//!
//! Use them through the `vorte_cache` crate (`vorte_cache::cached`, `vorte_cache::on_event`), which
//! re-exports them; the documentation with examples lives there.
//!
//! The macros only arrange tokens: every generated path goes through
//! `::vorte_cache::__private`, where the runtime does the work (keys, layers, single-flight,
//! events). The crate is split by phase, one file each:
//!
//! - [`args`]: the typed grammar of `#[cached(..)]`;
//! - [`template`]: the `"user:{user_id}"` key and tag templates;
//! - [`valid`]: the semantic checks, which turn the arguments and the fn into a [`valid::Plan`];
//! - [`owned`]: whether the fn's arguments are all owned, so that its body may outlive the call;
//! - [`expand`]: the code generation;
//! - [`companions`]: the code generation of a free fn with its companions (`get_user::key`,
//!   `::invalidate`, `::refresh`);
//! - [`fallback`]: what is emitted on error (the user's fn unchanged, next to the errors);
//! - [`on_event`]: `#[on_event("event.name")]`, from parse to expansion.
//!
//! Arguments are parsed with hand-written `syn::parse::Parse` impls rather than darling: a typed
//! parser keeps the span of every keyword and literal, so each error (a duplicate, an unknown
//! layer, a placeholder that names no parameter) points at the user's own token, and all errors
//! are reported at once through `syn::Error::combine`.
//!
//! Set `VORTE_MACROS_DEBUG=1` to print every expansion to stderr, or `VORTE_MACROS_DEBUG=fn_name`
//! to print only the expansions of functions with that name.
//!
//! [vorte-cache]: https://docs.rs/vorte-cache

mod args;
mod companions;
mod debug;
mod expand;
mod fallback;
mod on_event;
mod owned;
mod template;
mod valid;

use proc_macro::TokenStream;

/// Caches an `async fn`. See `vorte_cache::cached` for the arguments and examples.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let expanded = expand::cached(args.into(), item.clone())
        .unwrap_or_else(|error| fallback::expand(item, error));
    debug::print("cached", &expanded);
    expanded.into()
}

/// Registers an `async fn` as a handler of an event. See `vorte_cache::on_event`.
#[proc_macro_attribute]
pub fn on_event(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let expanded = on_event::expand(args.into(), item.clone())
        .unwrap_or_else(|error| fallback::expand(item, error));
    debug::print("on_event", &expanded);
    expanded.into()
}
