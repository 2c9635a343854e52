//! `#[on_event("event.name")]`: the fn unchanged, plus a registration through inventory.
//!
//! ```text
//! async fn invalidate_user(user_id: i64, name: &str) -> vorte_cache::Result<()> { .. }   // unchanged
//! const _: () = {
//!     const __VORTE_HANDLER_NAME: &str = concat!(module_path!(), "::invalidate_user");
//!     fn __vorte_invoke(__vorte_payload: Arc<Value>) -> HandlerFuture {
//!         Box::pin(async move {
//!             let __vorte_arg_0 = event_arg::<i64>(&__vorte_payload, __VORTE_HANDLER_NAME, "user_id")?;
//!             let __vorte_arg_1 = event_arg::<String>(&__vorte_payload, __VORTE_HANDLER_NAME, "name")?;
//!             HandlerOutput::into_result(invalidate_user(__vorte_arg_0, &*__vorte_arg_1).await)
//!         })
//!     }
//!     inventory::submit! { EventHandler { event: "user.updated", name: .., call: __vorte_invoke } }
//! };
//! ```
//!
//! The payload's fields bind to the parameters by name. A `&str` parameter is read as a `String`,
//! any other `&T` as a `T`, and passed by reference.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, Pat, Type};

use crate::args::Errors;
use crate::valid::unraw;

/// `#[on_event(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item = crate::expand::parse_fn(item)?;
    let mut errors = Errors::default();
    let event = errors.check(syn::parse2::<EventName>(args));
    let params = errors.check(check(&item));
    errors.finish(())?;
    match (event, params) {
        (Some(event), Some(params)) => Ok(register(&item, &event.0, &params)),
        _ => unreachable!("an invalid handler was reported above"),
    }
}

/// The one string literal argument.
struct EventName(LitStr);

impl Parse for EventName {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        const EXPECTED: &str =
            "expected the event name as a string literal, such as #[on_event(\"user.updated\")]";
        if input.is_empty() || !input.peek(LitStr) {
            return Err(input.error(EXPECTED));
        }
        let name: LitStr = input.parse()?;
        if name.value().is_empty() {
            return Err(syn::Error::new(
                name.span(),
                "the event name must not be empty",
            ));
        }
        if !input.is_empty() {
            return Err(input.error(
                "#[on_event] takes only the event name; the payload's fields bind to the \
                 parameters by name",
            ));
        }
        Ok(EventName(name))
    }
}

/// One parameter of the handler.
struct Param<'a> {
    name: String,
    ty: &'a Type,
}

/// The handler must be a free, non-generic `async fn` whose parameters are plain identifiers.
fn check(item: &ItemFn) -> syn::Result<Vec<Param<'_>>> {
    let mut errors = Errors::default();
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "#[on_event] handlers must be `async fn`; make this function `async`",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "#[on_event] handlers cannot be generic: the payload decides nothing about types",
        ));
    }
    let mut params = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "#[on_event] handlers must be free functions: an event supplies no `self`; \
                 move the handler out of the `impl` block",
            )),
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                    params.push(Param {
                        name: unraw(&pat.ident),
                        ty: &typed.ty,
                    });
                }
                pat => errors.push(syn::Error::new_spanned(
                    pat,
                    "#[on_event] binds payload fields to parameters by name, so each parameter \
                     must be a plain identifier (`user_id: i64`)",
                )),
            },
        }
    }
    errors.finish(params)
}

fn register(item: &ItemFn, event: &LitStr, params: &[Param<'_>]) -> TokenStream {
    let private = quote!(::vorte_cache::__private);
    let fn_ident = &item.sig.ident;
    let fn_name = unraw(fn_ident);
    let mut binds = Vec::new();
    let mut args = Vec::new();
    for (i, param) in params.iter().enumerate() {
        let var = format_ident!("__vorte_arg_{}", i);
        let name = &param.name;
        let (read, arg) = match param.ty {
            Type::Reference(reference) if is_str(&reference.elem) => {
                (quote!(::std::string::String), quote!(&*#var))
            }
            Type::Reference(reference) if reference.mutability.is_some() => {
                let elem = &reference.elem;
                (quote!(#elem), quote!(&mut #var))
            }
            Type::Reference(reference) => {
                let elem = &reference.elem;
                (quote!(#elem), quote!(&#var))
            }
            ty => (quote!(#ty), quote!(#var)),
        };
        // Spanned on the parameter's type: a type that does not deserialize is reported there.
        let read = quote_spanned! {param.ty.span()=>
            #private::event_arg::<#read>(&__vorte_payload, __VORTE_HANDLER_NAME, #name)
        };
        let mutability = match param.ty {
            Type::Reference(reference) => reference.mutability,
            _ => None,
        };
        binds.push(quote!(let #mutability #var = #read?;));
        args.push(arg);
    }
    quote! {
        #item
        const _: () = {
            const __VORTE_HANDLER_NAME: &::core::primitive::str =
                ::core::concat!(::core::module_path!(), "::", #fn_name);
            fn __vorte_invoke(
                __vorte_payload: ::std::sync::Arc<#private::serde_json::Value>,
            ) -> #private::HandlerFuture {
                ::std::boxed::Box::pin(async move {
                    #(#binds)*
                    #private::HandlerOutput::into_result(#fn_ident(#(#args),*).await)
                })
            }
            #private::inventory::submit! {
                #private::EventHandler {
                    event: #event,
                    name: __VORTE_HANDLER_NAME,
                    call: __vorte_invoke,
                }
            }
        };
    }
}

/// `str`, the one borrowed parameter type that is read as something else (`String`).
fn is_str(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("str"))
}
