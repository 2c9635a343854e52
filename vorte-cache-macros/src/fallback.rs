//! What a macro emits when it fails: the errors, and the user's item unchanged.
//!
//! Emitting the item keeps callers type-checking, so the user sees our errors and not a cascade of
//! secondary "cannot find function" errors at every call site.

use proc_macro2::TokenStream;

/// `error` as `compile_error!`s, next to `item` exactly as written.
pub(crate) fn expand(item: TokenStream, error: syn::Error) -> TokenStream {
    let mut tokens = error.into_compile_error();
    tokens.extend(item);
    tokens
}
