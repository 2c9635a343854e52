//! The code generation of `#[cached]`.
//!
//! The signature is re-emitted exactly as written (attributes, visibility, generics, receiver,
//! `impl Trait` arguments, where-clause); only the block is replaced:
//!
//! ```text
//! async fn get_user(user_id: i64) -> Result<User, DbError> {
//!     fn __vorte_returns<T, F: Future<Output = T>>(f: F) -> F { f }
//!     static __VORTE_CALLSITE: Callsite = Callsite::new(concat!(module_path!(), "::get_user"), ..);
//!     let __vorte_call = {
//!         let mut __vorte_key_buf = KeyBuf::new();                 // no heap `String`
//!         let __vorte_key = key(&mut __vorte_key_buf, format_args!("user:{}", user_id));
//!         let __vorte_tags = Vec::new();                           // before the body moves
//!         let __vorte_body = __vorte_returns::<Result<User, DbError>, _>(async move { ..body.. });
//!         let __vorte_body = assert_send(async move { ResultShape(__vorte_body.await) });
//!         cached(&__VORTE_CALLSITE, false, __vorte_key, __vorte_tags, __vorte_body) // L1 hit, or boxed
//!     };
//!     __vorte_call.await.0
//! }
//! ```
//!
//! That is the expansion of a fn without companions. With them (a free fn, or a method with
//! `companions = true`), the key, the callsite and the body move into hidden helpers that the fn
//! and its companions share: see [`companions`](crate::companions).
//!
//! `__vorte_returns` gives the body's `async` block the declared return type up front, so `?` and
//! `return` inside it work as in the original fn, and a type error lands on the user's expression.
//! The callsite is a non-generic fn-local `static`, so generic fns and methods need nothing extra.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{AttrStyle, ItemFn, LitStr, ReturnType, Type};

use crate::args::{Args, LoadArgs, Setting, Shape, Ttl};
use crate::valid::{self, Key, Place, Plan, Rendered, Template};

/// `#[cached(args)] item`.
pub(crate) fn cached(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item = parse_fn(item)?;
    let args = syn::parse2::<Args>(args);
    let plan = valid::check(args, &item)?;
    Ok(expand(item, &plan))
}

/// The item as a fn, or an error that says the attribute applies to fns.
pub(crate) fn parse_fn(item: TokenStream) -> syn::Result<ItemFn> {
    let is_fn = item
        .clone()
        .into_iter()
        .any(|token| matches!(&token, proc_macro2::TokenTree::Ident(ident) if ident == "fn"));
    syn::parse2::<ItemFn>(item).map_err(|error| {
        if is_fn {
            error
        } else {
            syn::Error::new(
                Span::call_site(),
                "this attribute applies to an `async fn` only",
            )
        }
    })
}

fn expand(item: ItemFn, plan: &Plan) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = item;
    let (inner, outer): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Inner(_)));
    let krate = &plan.krate;
    let private = quote!(#krate::__private);
    let parts = Parts::of(&private, &sig, plan);

    let Some(companions) = &plan.companions else {
        // No companions: the key, the callsite and the body all live in the fn.
        let Parts {
            callsite, key, ret, ..
        } = &parts;
        let key = key(quote!(&mut __vorte_key_buf));
        let prelude = quote! {
            #(#inner)*
            fn __vorte_returns<__VorteT, __VorteF>(f: __VorteF) -> __VorteF
            where
                __VorteF: ::core::future::Future<Output = __VorteT>,
            {
                f
            }
            #callsite
        };
        let body = quote!(__vorte_returns::<#ret, _>(async move #block));
        let call = parts.call(&private, quote!(&__VORTE_CALLSITE), key, body);
        return quote! {
            #(#outer)*
            #vis #sig {
                #prelude
                #call
            }
        };
    };
    crate::companions::expand(
        crate::companions::Fn {
            outer,
            inner,
            vis,
            sig,
            block,
        },
        companions,
        &private,
        &parts,
    )
}

/// The pieces of a `#[cached]` fn's expansion that its companions share.
pub(crate) struct Parts {
    /// `static __VORTE_CALLSITE: Callsite = ..;`.
    pub(crate) callsite: TokenStream,
    /// The key into a `&mut KeyBuf` expression: a `Result<&mut KeyBuf>` expression, naming the
    /// parameters.
    pub(crate) key: Box<dyn Fn(TokenStream) -> TokenStream>,
    /// The tags: a `Vec<String>` expression, naming the parameters.
    pub(crate) tags: TokenStream,
    /// The return type, `impl Trait` erased to `_`.
    pub(crate) ret: TokenStream,
    /// The span of the written return type (or of the fn's name without one).
    pub(crate) ret_span: Span,
    /// The shape wrapper, `ResultShape` ..
    pub(crate) shape: TokenStream,
    /// The parameters the key or a tag renders.
    pub(crate) rendered: Vec<syn::Ident>,
    /// `Some(detach_body)` when the arguments are owned.
    pub(crate) detach: TokenStream,
    /// The answer to a hard timeout.
    pub(crate) on_timeout: TokenStream,
    /// Whether the arguments are all owned (the body may outlive the call).
    pub(crate) owned: bool,
}

impl Parts {
    fn of(private: &TokenStream, sig: &syn::Signature, plan: &Plan) -> Parts {
        let fn_name = valid::unraw(&sig.ident);
        let ttl = duration(plan.ttl.as_ref());
        let negative_ttl = duration(plan.negative_ttl.as_ref());
        let layers = match &plan.layers {
            Some(layers) => {
                let layers = layers.iter().map(|layer| {
                    let variant = format_ident!("L{}", layer.index);
                    quote_spanned!(layer.span=> #private::Layer::#variant)
                });
                quote!(::core::option::Option::Some(&[#(#layers),*]))
            }
            None => quote!(::core::option::Option::None),
        };
        let with_loads = with_loads(private, &plan.loads);
        let callsite = quote! {
            static __VORTE_CALLSITE: #private::Callsite = #private::Callsite::new(
                ::core::concat!(::core::module_path!(), "::", #fn_name),
                #ttl,
                #negative_ttl,
                #layers,
            )#with_loads;
        };
        let key: Box<dyn Fn(TokenStream) -> TokenStream> = match &plan.key {
            // Into a stack buffer: an L1 hit then allocates nothing for its key.
            Key::Template(template) => {
                let private = private.clone();
                let (format, params) = format_string(template);
                let format = LitStr::new(&format, template.lit.span());
                let params: Vec<_> = params.into_iter().cloned().collect();
                Box::new(
                    move |buf| quote!(#private::key(#buf, ::core::format_args!(#format, #(#params),*))),
                )
            }
            Key::Default(params) => {
                let private = private.clone();
                let params = params.clone();
                let site = match &plan.companions {
                    None => KeySite::Fn,
                    Some(companions) => match companions.place {
                        Place::Type => KeySite::CompanionType,
                        Place::Impl => KeySite::MethodHelper(valid::unraw(&sig.ident)),
                    },
                };
                Box::new(move |buf| default_key(&private, buf, &params, &site))
            }
        };
        let tags = if plan.tags.is_empty() {
            quote!(::std::vec::Vec::new())
        } else {
            let tags = plan.tags.iter().map(|tag| render(private, tag));
            quote!(::std::vec![#(#tags),*])
        };
        let ret = match &sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => {
                let mut ty = (**ty).clone();
                ImplTraitEraser.visit_type_mut(&mut ty);
                quote!(#ty)
            }
        };
        let ret_span = match &sig.output {
            ReturnType::Default => sig.ident.span(),
            ReturnType::Type(_, ty) => ty.span(),
        };
        let shape = match plan.shape {
            Shape::Result => quote!(ResultShape),
            Shape::Option => quote!(OptionShape),
            Shape::ResultOption => quote!(ResultOptionShape),
            Shape::Value => quote!(ValueShape),
        };
        let detach = if plan.owned {
            quote!(::core::option::Option::Some(#private::detach_body))
        } else {
            quote!(::core::option::Option::None)
        };
        let mut rendered: Vec<syn::Ident> = Vec::new();
        let templates = match &plan.key {
            Key::Template(template) => Some(template),
            Key::Default(params) => {
                rendered.extend(params.iter().cloned());
                None
            }
        };
        for template in templates.into_iter().chain(&plan.tags) {
            for ident in format_string(template).1 {
                if !rendered.iter().any(|known| known == ident) {
                    rendered.push(ident.clone());
                }
            }
        }
        Parts {
            callsite,
            key,
            tags,
            rendered,
            ret,
            ret_span,
            shape,
            detach,
            on_timeout: on_timeout(private, plan),
            owned: plan.owned,
        }
    }

    /// The statements of the fn's block: the key, the tags and the body's future handed to the
    /// runtime, then awaited.
    pub(crate) fn call(
        &self,
        private: &TokenStream,
        callsite: TokenStream,
        key: TokenStream,
        body: TokenStream,
    ) -> TokenStream {
        let Parts {
            tags,
            ret_span,
            shape,
            detach,
            on_timeout,
            ..
        } = self;
        // Spanned on the return type: a type that cannot be cached (not `Serialize`, say) is
        // reported there rather than on the attribute.
        let cached = respan(quote!(#private::cached), *ret_span);
        let call = quote_spanned! {*ret_span=>
            #cached(
                #callsite,
                false,
                __vorte_key,
                __vorte_tags,
                __vorte_body,
                #detach,
                #on_timeout,
            )
        };
        // rustc's "future cannot be sent between threads safely" notes the `.await` in the user's
        // body that holds the non-`Send` value.
        let assert_send = quote!(#private::assert_send);
        quote! {
            // In a block, so that the key's buffer is gone before the await: the future of the
            // call does not carry it.
            let __vorte_call = {
                let mut __vorte_key_buf = #private::KeyBuf::new();
                let __vorte_key = #key;
                let __vorte_tags = #tags;
                let __vorte_body = #body;
                let __vorte_body = #assert_send(async move {
                    #private::#shape(__vorte_body.await)
                });
                #call
            };
            __vorte_call.await.0
        }
    }
}

/// Where a default key is rendered, which decides how it finds the fn's path.
enum KeySite {
    /// In the fn's block (a fn without companions).
    Fn,
    /// In `__vorte_key` of a free fn's companions' type.
    CompanionType,
    /// In `__vorte_{name}_key`, a method's sibling.
    MethodHelper(String),
}

/// The default key into `buf`: the fn's path and its parameters as JSON.
///
/// In the fn, the path comes from `type_name` of a fn-local type, not from `module_path!()`: it
/// names the impl too (`app::Repo::find`, `<app::Repo as app::Find>::find`), so that same-named
/// methods of two types in one module get distinct keys. For a free fn with companions it is
/// `type_name` of the companions' type, declared beside the fn under its name: the same
/// `app::users::find`. For a method with companions, the fn-local type is in the helper
/// `__vorte_find_key`, whose name is then replaced by the method's: the same `app::Repo::find`.
fn default_key(
    private: &TokenStream,
    buf: TokenStream,
    params: &[syn::Ident],
    site: &KeySite,
) -> TokenStream {
    let local = quote! {
        struct __VorteSite;
        let __vorte_path = ::core::any::type_name::<__VorteSite>();
        let __vorte_path = __vorte_path.strip_suffix("::__VorteSite").unwrap_or(__vorte_path);
        let __vorte_path = __vorte_path.strip_suffix("::{{closure}}").unwrap_or(__vorte_path);
    };
    let path = match site {
        KeySite::Fn => quote! {{
            #local
            __vorte_path
        }},
        KeySite::CompanionType => quote!(::core::any::type_name::<Self>()),
        KeySite::MethodHelper(name) => {
            let helper = format!("::__vorte_{name}_key");
            let name = format!("::{name}");
            quote! {{
                #local
                let __vorte_path = __vorte_path.strip_suffix(#helper).unwrap_or(__vorte_path);
                #private::format!("{}{}", __vorte_path, #name)
            }}
        }
    };
    // In a helper the parameters are references already (see `companions::expand`).
    let args = if matches!(site, KeySite::Fn) {
        quote!(&(#(&#params,)*))
    } else {
        quote!(&(#(#params,)*))
    };
    quote! {{
        // A `&str`, or for a method's helper a `String`.
        let __vorte_path = #path;
        #private::owned_key(#buf, #private::default_key(&*__vorte_path, #args))
    }}
}

/// `tokens`, every one of them spanned at `span` (a path must be spanned as a whole for rustc to
/// point an error at it).
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut respanned =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                token = respanned.into();
            }
            token.set_span(span);
            token
        })
        .collect()
}

/// `.with_loads(CachedLoads { .. })` when the attribute sets a resilience argument.
fn with_loads(private: &TokenStream, loads: &LoadArgs) -> TokenStream {
    let LoadArgs {
        fail_safe,
        fail_safe_throttle,
        soft_timeout,
        hard_timeout,
        early_refresh,
        xfetch,
        distributed_lock,
    } = loads;
    if loads.is_empty() {
        return TokenStream::new();
    }
    let value = |setting: Option<&Setting<Ttl>>| duration(setting.map(|setting| &setting.value));
    let fraction = |setting: &Option<Setting<f64>>| match setting {
        Some(setting) => {
            let mut lit = proc_macro2::Literal::f64_suffixed(setting.value);
            lit.set_span(setting.keyword);
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let (fail_safe, fail_safe_throttle) = (
        value(fail_safe.as_ref()),
        value(fail_safe_throttle.as_ref()),
    );
    let (soft_timeout, hard_timeout) = (value(soft_timeout.as_ref()), value(hard_timeout.as_ref()));
    let (early_refresh, xfetch) = (fraction(early_refresh), fraction(xfetch));
    let distributed_lock = match distributed_lock {
        Some(setting) => {
            let lock = setting.value;
            quote!(::core::option::Option::Some(#lock))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        .with_loads(#private::CachedLoads {
            fail_safe: #fail_safe,
            fail_safe_throttle: #fail_safe_throttle,
            soft_timeout: #soft_timeout,
            hard_timeout: #hard_timeout,
            early_refresh: #early_refresh,
            xfetch: #xfetch,
            distributed_lock: #distributed_lock,
        })
    }
}

/// The function's answer when its `hard_timeout` passes with no stale value: the timeout as the
/// `Result`'s error. Spanned on `hard_timeout`, so a missing `From<vorte_cache::Error>` impl is
/// reported at the argument that needs it.
fn on_timeout(private: &TokenStream, plan: &Plan) -> TokenStream {
    let Some(hard) = &plan.loads.hard_timeout else {
        return quote!(::core::option::Option::None);
    };
    let answer = match plan.shape {
        Shape::Result => quote!(#private::timed_out),
        Shape::ResultOption => quote!(#private::timed_out_option),
        // Refused by `valid::check`.
        Shape::Option | Shape::Value => return quote!(::core::option::Option::None),
    };
    let answer = respan(answer, hard.keyword);
    quote!(::core::option::Option::Some(#answer))
}

/// `Option<Duration>`, in a `const` context.
fn duration(ttl: Option<&Ttl>) -> TokenStream {
    let duration = match ttl {
        None => return quote!(::core::option::Option::None),
        Some(Ttl::Secs(span, secs)) => {
            quote_spanned!(*span=> ::core::time::Duration::from_secs(#secs))
        }
        Some(Ttl::Millis(span, millis)) => {
            quote_spanned!(*span=> ::core::time::Duration::from_millis(#millis))
        }
        // The binding gives a type error on the user's expression, not on `Callsite::new`.
        Some(Ttl::Expr(expr)) => quote_spanned! {expr.span()=>
            {
                let __vorte_ttl: ::core::time::Duration = #expr;
                __vorte_ttl
            }
        },
    };
    quote!(::core::option::Option::Some(#duration))
}

/// The `format!` string of a checked template, and the parameters its `{}` stand for.
fn format_string(template: &Template) -> (String, Vec<&syn::Ident>) {
    let mut format = String::new();
    let mut params = Vec::new();
    for piece in &template.pieces {
        match piece {
            Rendered::Text(text) => format.push_str(&text.replace('{', "{{").replace('}', "}}")),
            Rendered::Param(ident) => {
                format.push_str("{}");
                params.push(ident);
            }
        }
    }
    (format, params)
}

/// A `String` expression for a checked tag template.
fn render(private: &TokenStream, template: &Template) -> TokenStream {
    let (format, params) = format_string(template);
    if params.is_empty() {
        let text = LitStr::new(
            &format.replace("{{", "{").replace("}}", "}"),
            template.lit.span(),
        );
        return quote!(::std::string::String::from(#text));
    }
    let format = LitStr::new(&format, template.lit.span());
    quote!(#private::format!(#format, #(#params),*))
}

/// Replaces `impl Trait` with `_` in the return type, which is then usable in a turbofish.
struct ImplTraitEraser;

impl VisitMut for ImplTraitEraser {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                attrs: Vec::new(),
                underscore_token: syn::Token![_](impl_trait.impl_token.span),
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}
