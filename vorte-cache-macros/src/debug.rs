//! `VORTE_MACROS_DEBUG`: print expansions to stderr.

use proc_macro2::{TokenStream, TokenTree};

/// Prints `expanded` to stderr when `VORTE_MACROS_DEBUG` is set.
///
/// `VORTE_MACROS_DEBUG=1` (or any empty value) prints every expansion; any other value prints only
/// the expansions of functions with that name.
pub(crate) fn print(macro_name: &str, expanded: &TokenStream) {
    let Some(filter) = std::env::var_os("VORTE_MACROS_DEBUG") else {
        return;
    };
    let filter = filter.to_string_lossy();
    let fn_name = fn_name(expanded).unwrap_or_default();
    if filter.is_empty() || filter == "1" || filter == fn_name {
        eprintln!("#[{macro_name}] {fn_name}:\n{expanded}\n");
    }
}

/// The name after the first `fn` token, for the filter.
fn fn_name(tokens: &TokenStream) -> Option<String> {
    let mut tokens = tokens.clone().into_iter();
    while let Some(token) = tokens.next() {
        if matches!(&token, TokenTree::Ident(ident) if ident == "fn") {
            return tokens.next().map(|name| name.to_string());
        }
    }
    None
}
