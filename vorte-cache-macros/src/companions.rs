//! The expansion of a free `#[cached]` fn with its companions: `get_user::key(..)`,
//! `get_user::invalidate(..)` and `get_user::refresh(..)`, so that code that invalidates an entry
//! never writes the key template a second time.
//!
//! A fn lives in the value namespace and a braced struct only in the type namespace, so a struct
//! may carry the fn's own name; its inherent impl holds the companions:
//!
//! ```text
//! async fn get_user(user_id: i64) -> Result<User, DbError> {      // the fn, as written
//!     let __vorte_callsite = get_user::__vorte_callsite();
//!     .. key: get_user::__vorte_key(&mut buf, &user_id) ..       // one rendering, shared
//!     .. body: get_user::__vorte_body(user_id) ..                // the body, now a fn
//! }
//! struct get_user { _private: () }
//! impl get_user {
//!     fn key(user_id: i64) -> Result<String, Error>;
//!     fn invalidate(user_id: i64) -> BoxFuture<'static, Result<bool, Error>>;
//!     async fn refresh(user_id: i64) -> Result<User, DbError>;   // the body, then a set
//!     fn __vorte_key(buf: &mut KeyBuf, user_id: &i64) -> Result<&mut KeyBuf, Error>;
//!     fn __vorte_callsite() -> &'static Callsite;
//!     async fn __vorte_body(user_id: i64) -> Result<User, DbError> { ..body.. }
//! }
//! ```
//!
//! A method with `companions = true` gets the same items as siblings in its own impl block, named
//! after it (`find_key`, `invalidate_find`, `refresh_find(&self, ..)`, `__vorte_find_key`, ..):
//! an impl block cannot hold a type.
//!
//! The struct and its impl sit where the fn is, in the same scope, so every type of the signature
//! means there what it means for the fn: block-local types, `self::`/`super::` paths, generics
//! (copied onto each companion), `impl Trait` arguments and lifetimes need nothing. The fn and the
//! companions build the key through the one `__vorte_key`, so they cannot disagree. The body moves
//! into `__vorte_body` so that `refresh` can run it without the cache.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{
    Attribute, Block, FnArg, GenericParam, Ident, Lifetime, LifetimeParam, Pat, ReturnType,
    Signature, Type, Visibility,
};

use crate::expand::{Parts, respan};
use crate::valid::{Companions, Place, unraw};

/// The user's fn, taken apart.
pub(crate) struct Fn {
    pub(crate) outer: Vec<Attribute>,
    pub(crate) inner: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) block: Box<Block>,
}

/// The fn, its companions' struct and their impl.
pub(crate) fn expand(
    item: Fn,
    companions: &Companions,
    private: &TokenStream,
    parts: &Parts,
) -> TokenStream {
    let Fn {
        outer,
        inner,
        vis,
        sig,
        block,
    } = item;
    let name = &sig.ident;
    let names = Names::new(name, companions.place);
    let Names {
        key: key_fn,
        invalidate: invalidate_fn,
        refresh: refresh_fn,
        key_helper,
        callsite_helper,
        body_helper,
        call_helper,
        from_fn,
    } = &names;
    let params = &companions.params;
    // A method's receiver: the body takes it as written, `refresh` without `mut`.
    let (receiver, body_receiver) = match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            let mut receiver = receiver.clone();
            receiver.mutability = None;
            (quote!(#receiver,), quote!(self,))
        }
        _ => (TokenStream::new(), TokenStream::new()),
    };
    let rendered = &parts.rendered;
    let types: Vec<&Type> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(&*typed.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let call_turbofish = turbofish(generics, true);
    let turbofish = turbofish(generics, false);
    let tags = &parts.tags;
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let error = quote!(#private::Error);

    // The fn keeps its signature, minus `mut` on its parameters: they are only passed on.
    let mut fn_sig = sig.clone();
    for input in &mut fn_sig.inputs {
        match input {
            FnArg::Typed(typed) => {
                if let Pat::Ident(pat) = &mut *typed.pat {
                    pat.mutability = None;
                }
            }
            FnArg::Receiver(receiver) => receiver.mutability = None,
        }
    }
    // The fn and `refresh` differ only in what they ask of the one `__vorte_call`.
    let statements = |refresh: bool, from: &TokenStream| {
        quote! {
            // In a block, so that the key's buffer is gone before the await: the future of the
            // call does not carry it.
            let __vorte_call = {
                let mut __vorte_key_buf = #private::KeyBuf::new();
                let __vorte_key =
                    #from #key_helper #turbofish (&mut __vorte_key_buf, #(&#params),*);
                let __vorte_tags = #tags;
                let __vorte_body =
                    #from #body_helper #turbofish (#body_receiver #(#params),*);
                #from #call_helper #call_turbofish (
                    #refresh,
                    __vorte_key,
                    __vorte_tags,
                    __vorte_body,
                )
            };
            __vorte_call.await.0
        }
    };
    let (call, refresh_call) = (
        statements(false, from_fn),
        statements(true, &quote!(Self::)),
    );
    let run = run(private, parts, generics, &names);

    let mut body_sig = sig.clone();
    body_sig.ident = body_helper.clone();
    let mut key_generics = generics.clone();
    key_generics.params.insert(
        0,
        GenericParam::Lifetime(LifetimeParam::new(Lifetime::new(
            "'__vorte_buf",
            Span::call_site(),
        ))),
    );
    let key_into = (parts.key)(quote!(__vorte_key_buf));
    let callsite = &parts.callsite;

    let attrs = Attrs::sort(&outer);
    let Attrs {
        fn_attrs,
        lints,
        shared,
    } = &attrs;
    let docs = Docs::new(name, companions, &names);
    let (fn_doc, struct_doc) = (&docs.function, &docs.companions);
    let (key_doc, invalidate_doc, refresh_doc) = (&docs.key, &docs.invalidate, &docs.refresh);
    let allow = quote_spanned!(name.span()=> #[allow(non_camel_case_types, dead_code)]);

    let items = quote! {
        #[doc = #key_doc]
        #vis fn #key_fn #generics (#(#params: #types),*)
            -> ::core::result::Result<::std::string::String, #error>
        #where_clause
        {
            let mut __vorte_key_buf = #private::KeyBuf::new();
            #private::key_string(
                Self::#key_helper #turbofish (&mut __vorte_key_buf, #(&#params),*)
            )
        }

        #[doc = #invalidate_doc]
        #vis fn #invalidate_fn #generics (#(#params: #types),*)
            -> #private::BoxFuture<'static, ::core::result::Result<bool, #error>>
        #where_clause
        {
            #private::invalidate(Self::#key_fn #turbofish (#(#params),*))
        }

        #[doc = #refresh_doc]
        #vis async fn #refresh_fn #generics (#receiver #(#params: #types),*) -> #output
        #where_clause
        {
            #refresh_call
        }

        #run

        /// The key of a call, rendered into `__vorte_key_buf`: the fn's and every companion's.
        #[doc(hidden)]
        #[inline]
        #[allow(unused_parens, unused_variables, clippy::ptr_arg)]
        fn #key_helper #key_generics (
            __vorte_key_buf: &'__vorte_buf mut #private::KeyBuf,
            #(#params: &(#types)),*
        ) -> ::core::result::Result<&'__vorte_buf mut #private::KeyBuf, #error>
        #where_clause
        {
            #key_into
        }

        #[doc(hidden)]
        fn #callsite_helper() -> &'static #private::Callsite {
            #callsite
            &__VORTE_CALLSITE
        }

        #[doc(hidden)]
        #(#lints)*
        #body_sig {
            #(#inner)*
            // Used by the key or the tags: not unused, as they were not in the fn.
            #(let _ = &#rendered;)*
            #block
        }
    };
    let function = quote! {
        #(#fn_attrs)*
        #[doc = #fn_doc]
        #vis #fn_sig {
            #call
        }
    };
    match companions.place {
        // Siblings of the method, in the user's impl block.
        Place::Impl => quote! {
            #function
            #items
        },
        Place::Type => quote! {
            #function

            #(#shared)*
            #[doc = #struct_doc]
            #allow
            #vis struct #name {
                _private: (),
            }

            #(#shared)*
            #[allow(dead_code)]
            impl #name {
                #items
            }
        },
    }
}

/// The names of the companions and of their hidden helpers.
struct Names {
    key: Ident,
    invalidate: Ident,
    refresh: Ident,
    key_helper: Ident,
    callsite_helper: Ident,
    body_helper: Ident,
    call_helper: Ident,
    /// How the fn names its helpers: `get_user::` or `Self::`.
    from_fn: TokenStream,
}

impl Names {
    fn new(name: &Ident, place: Place) -> Self {
        match place {
            Place::Type => Names {
                key: format_ident!("key"),
                invalidate: format_ident!("invalidate"),
                refresh: format_ident!("refresh"),
                key_helper: format_ident!("__vorte_key"),
                callsite_helper: format_ident!("__vorte_callsite"),
                body_helper: format_ident!("__vorte_body"),
                call_helper: format_ident!("__vorte_call"),
                from_fn: quote!(#name::),
            },
            Place::Impl => {
                let shown = unraw(name);
                Names {
                    key: format_ident!("{}_key", shown, span = name.span()),
                    invalidate: format_ident!("invalidate_{}", shown, span = name.span()),
                    refresh: format_ident!("refresh_{}", shown, span = name.span()),
                    key_helper: format_ident!("__vorte_{}_key", shown),
                    callsite_helper: format_ident!("__vorte_{}_callsite", shown),
                    body_helper: format_ident!("__vorte_{}_body", shown),
                    call_helper: format_ident!("__vorte_{}_call", shown),
                    from_fn: quote!(Self::),
                }
            }
        }
    }
}

/// `__vorte_call`: the one place where the fn's output meets the cache, for the fn (a cached
/// call) and for `refresh` (the body, then a set). One place, so that a return type the cache
/// cannot hold (not `Serialize`, say) is reported once, at the return type.
fn run(
    private: &TokenStream,
    parts: &Parts,
    generics: &syn::Generics,
    names: &Names,
) -> TokenStream {
    let (call_helper, callsite_helper) = (&names.call_helper, &names.callsite_helper);
    let Parts {
        ret,
        ret_span,
        shape,
        detach,
        on_timeout,
        owned,
        ..
    } = parts;
    let mut run_generics = generics.clone();
    run_generics.params.insert(
        0,
        GenericParam::Lifetime(LifetimeParam::new(Lifetime::new(
            "'__vorte_a",
            Span::call_site(),
        ))),
    );
    let params = &run_generics.params;
    let predicates = generics
        .where_clause
        .as_ref()
        .map(|clause| &clause.predicates);
    // A detached body outlives the call.
    let lifetime = if *owned {
        quote!('static)
    } else {
        quote!('__vorte_a)
    };
    let call = respan(quote!(#private::cached), *ret_span);
    let call = quote_spanned! {*ret_span=>
        #call(
            Self::#callsite_helper(),
            __vorte_refresh,
            __vorte_key,
            __vorte_tags,
            __vorte_body,
            #detach,
            #on_timeout,
        )
    };
    quote! {
        #[doc(hidden)]
        #[allow(clippy::type_complexity)]
        fn #call_helper<#params, __VorteF>(
            __vorte_refresh: bool,
            __vorte_key: ::core::result::Result<&mut #private::KeyBuf, #private::Error>,
            __vorte_tags: ::std::vec::Vec<::std::string::String>,
            __vorte_body: __VorteF,
        ) -> #private::CachedCall<'__vorte_a, #private::#shape<#ret>>
        where
            // `Send` here, so that rustc's "future cannot be sent between threads safely" notes
            // the `.await` in the user's body that holds the non-`Send` value.
            __VorteF: ::core::future::Future<Output = #ret> + ::core::marker::Send + #lifetime,
            #predicates
        {
            let __vorte_body = async move { #private::#shape(__vorte_body.await) };
            #call
        }
    }
}

/// `::<T, N>` for the fn's type and const parameters (its lifetimes are inferred), so that a
/// parameter used only in the return type reaches the body and the key; with `infer`, a `_` after
/// them for `__vorte_call`'s body type.
fn turbofish(generics: &syn::Generics, infer: bool) -> TokenStream {
    let args: Vec<_> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(ty) => Some(&ty.ident),
            GenericParam::Const(konst) => Some(&konst.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    match (args.is_empty(), infer) {
        (true, _) => TokenStream::new(),
        (false, false) => quote!(::<#(#args),*>),
        (false, true) => quote!(::<#(#args,)* _>),
    }
}

/// The fn's outer attributes, sorted by where they go now that the body is a fn of its own.
struct Attrs<'a> {
    /// On the fn: all of them, an `#[expect(..)]` turned into an `#[allow(..)]` (the body, which
    /// holds what it expects, has the `expect`).
    fn_attrs: Vec<TokenStream>,
    /// The lint levels, for the body.
    lints: Vec<&'a Attribute>,
    /// `#[cfg(..)]` and `#[doc(hidden)]`: also on the struct and its impl.
    shared: Vec<&'a Attribute>,
}

impl<'a> Attrs<'a> {
    fn sort(outer: &'a [Attribute]) -> Self {
        let mut attrs = Attrs {
            fn_attrs: Vec::new(),
            lints: Vec::new(),
            shared: Vec::new(),
        };
        for attr in outer {
            let path = attr.path();
            if ["allow", "warn", "deny", "forbid", "expect"]
                .iter()
                .any(|lint| path.is_ident(lint))
            {
                attrs.lints.push(attr);
            }
            if path.is_ident("cfg") || is_doc_hidden(attr) {
                attrs.shared.push(attr);
            }
            if path.is_ident("expect")
                && let syn::Meta::List(list) = &attr.meta
            {
                let lints = &list.tokens;
                attrs.fn_attrs.push(quote!(#[allow(#lints)]));
            } else {
                attrs.fn_attrs.push(quote!(#attr));
            }
        }
        attrs
    }
}

fn is_doc_hidden(attr: &Attribute) -> bool {
    attr.path().is_ident("doc")
        && matches!(&attr.meta, syn::Meta::List(list) if list.tokens.to_string() == "hidden")
}

/// The rustdoc of the fn's companions section, of their struct, and of each companion.
struct Docs {
    function: String,
    companions: String,
    key: String,
    invalidate: String,
    refresh: String,
}

impl Docs {
    fn new(name: &syn::Ident, companions: &Companions, names: &Names) -> Self {
        let shown = unraw(name);
        let key_doc = &companions.key_doc;
        // A free fn's companions are `get_user::key`; a method's, `Self::find_key`.
        let (fn_link, link) = match companions.place {
            Place::Type => {
                let path = name.to_string();
                (format!("fn@{path}"), format!("{path}::"))
            }
            Place::Impl => (format!("Self::{name}"), "Self::".to_owned()),
        };
        let (key_fn, invalidate_fn, refresh_fn) = (
            unraw(&names.key),
            unraw(&names.invalidate),
            unraw(&names.refresh),
        );
        let shown_prefix = match companions.place {
            Place::Type => format!("{shown}::"),
            Place::Impl => String::new(),
        };
        let function = format!(
            "\n\n# Cache companions\n\n\
             `#[cached]` generates, beside this function, three companions that take its \
             arguments and build its key, {key_doc}, by its own code:\n\n\
             - [`{shown_prefix}{key_fn}`]({link}{key_fn})`(..)`: the key, as a `String`;\n\
             - [`{shown_prefix}{invalidate_fn}`]({link}{invalidate_fn})`(..).await`: removes the \
             entry from every layer and every process's L1;\n\
             - [`{shown_prefix}{refresh_fn}`]({link}{refresh_fn})`(..).await`: runs the body now \
             and stores what it returns."
        );
        let companions_doc = format!(
            "The cache companions of the `#[cached]` function [`{shown}`]({fn_link}), whose key \
             is {key_doc}.\n\nEach takes the function's arguments. This type only carries them: \
             it has no value."
        );
        let key = format!(
            "The cache key of [`{shown}`]({fn_link}) for these arguments: {key_doc}, rendered by \
             the function's own code.\n\n\
             # Errors\n\n`InvalidKey` when the rendered key is one the cache refuses (empty, over \
             1,024 bytes, with a NUL), and for the default key `Serialize` when an argument does \
             not serialize."
        );
        let invalidate = format!(
            "Removes the entry of [`{shown}`]({fn_link}) for these arguments (key {key_doc}) from \
             every layer, and through the bus from every other process's L1, as \
             `Cache::global().delete(..)` would: the next call runs the body. Resolves to whether \
             some layer held it.\n\n\
             The key is built before this returns; the future holds nothing of the arguments.\n\n\
             # Errors\n\nThose of [`{shown_prefix}{key_fn}`]({link}{key_fn}), and of `Cache::delete`."
        );
        let refresh = format!(
            "Runs the body of [`{shown}`]({fn_link}) now, without reading the cache, and stores \
             what it returns under its key ({key_doc}) as a call that missed would (the same TTL, \
             negative TTL, tags and layers), replacing the entry everywhere; returns what the \
             body returned.\n\n\
             An `Err` leaves the entry as it was; a `None` that is not cached (no \
             `negative_ttl`) removes it. As for the function, a cache failure is logged, never \
             returned."
        );
        Docs {
            function,
            companions: companions_doc,
            key,
            invalidate,
            refresh,
        }
    }
}
