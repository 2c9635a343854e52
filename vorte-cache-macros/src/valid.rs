//! The semantic checks of `#[cached]`: what depends on the function or on several arguments.
//!
//! [`check`] turns the parsed arguments and the function into a [`Plan`], the only input of
//! [`expand`](crate::expand). Every problem is reported, each at the user's token.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type};

use crate::args::{Args, Errors, LayerName, LoadArgs, Setting, Shape, Ttl};
use crate::owned;
use crate::template::{self, Piece};

/// Everything the expansion needs, checked.
pub(crate) struct Plan {
    /// The path of the runtime crate: `::vorte_cache`, or the `crate = ..` override.
    pub(crate) krate: TokenStream,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) negative_ttl: Option<Ttl>,
    pub(crate) layers: Option<Vec<LayerName>>,
    pub(crate) key: Key,
    pub(crate) tags: Vec<Template>,
    pub(crate) shape: Shape,
    pub(crate) loads: LoadArgs,
    /// Whether the arguments are all owned ([`owned`]), so that the body may outlive the call:
    /// then the runtime may detach it for a soft timeout or an early refresh, whether the
    /// attribute or the config asks for one.
    pub(crate) owned: bool,
    /// The generated `get_user::key`, `::invalidate` and `::refresh`, when the fn can have them
    /// ([`companions`]).
    pub(crate) companions: Option<Companions>,
}

/// Where the companions go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A free fn's: associated fns of a type named after it, declared beside it
    /// (`get_user::key`).
    Type,
    /// A method's, on `companions = true`: siblings in its impl block (`Repo::find_key`,
    /// `Repo::invalidate_find`, `repo.refresh_find(..)`).
    Impl,
}

/// What the companions of a fn need beyond the [`Plan`].
pub(crate) struct Companions {
    pub(crate) place: Place,
    /// Every parameter, in order (all plain identifiers: checked).
    pub(crate) params: Vec<Ident>,
    /// The key as the companions' rustdoc shows it: the template, or the default key's form.
    pub(crate) key_doc: String,
}

/// Where the key comes from.
pub(crate) enum Key {
    /// `key = "user:{user_id}"`.
    Template(Template),
    /// The function's path and every parameter but `self`.
    Default(Vec<Ident>),
}

/// A template whose placeholders all name parameters.
pub(crate) struct Template {
    /// The literal as written, for spans.
    pub(crate) lit: LitStr,
    pub(crate) pieces: Vec<Rendered>,
}

/// A piece of a [`Template`].
pub(crate) enum Rendered {
    Text(String),
    /// The parameter to render, spanned on the template literal so that a missing `Display` impl
    /// is reported there.
    Param(Ident),
}

/// Checks `args` (already parsed, or the parse error) against `item`.
pub(crate) fn check(args: syn::Result<Args>, item: &ItemFn) -> syn::Result<Plan> {
    let mut errors = Errors::default();
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "#[cached] works on `async fn` only; make this function `async`",
        ));
    }
    let args = match args {
        Ok(args) => args,
        Err(error) => return Err(errors.with(error)),
    };
    let params = Params::of(item);

    if let (Some(layer), Some(_)) = (&args.layer, &args.layers) {
        errors.push(syn::Error::new(
            layer.keyword,
            "`layer` and `layers` cannot be used together; list every layer in `layers = [..]`",
        ));
    }

    if let Some(layers) = &args.layers
        && layers.value.is_empty()
    {
        errors.push(syn::Error::new(
            layers.keyword,
            "`layers = []` selects no layer, so nothing would be cached; name at least one layer",
        ));
    }

    let key = match &args.key {
        Some(Setting { value: lit, .. }) => errors.check(params.template(lit)).map(Key::Template),
        None => errors.check(params.default_key()).map(Key::Default),
    };
    let tags = args.tags.as_ref().map_or_else(Vec::new, |tags| {
        errors.collect(tags.value.iter().map(|lit| params.template(lit)))
    });

    let shape = match &args.returns {
        Some(hint) => hint.value,
        None => detect_shape(&sig.output),
    };
    if let Some(negative_ttl) = &args.negative_ttl
        && !shape.has_negative()
    {
        let returns = match shape {
            Shape::Result => "`Result<T, E>`, which caches only `Ok`",
            _ => "a plain value, which is always cached",
        };
        errors.push(syn::Error::new(
            negative_ttl.keyword,
            format_args!(
                "`negative_ttl` needs a result that can be negative, `Option<T>` or \
                     `Result<Option<T>, E>`; this function returns {returns}"
            ),
        ));
    }

    let companions = companions(
        args.companions.as_ref(),
        item,
        args.key.as_ref(),
        &mut errors,
    );
    let borrow = owned::borrow(sig);
    check_loads(&args.loads, borrow.as_ref(), shape, &mut errors);

    let krate = match &args.krate {
        Some(path) => path.value.to_token_stream(),
        None => quote!(::vorte_cache),
    };
    let layers = match (args.layers, args.layer) {
        (Some(layers), _) => Some(layers.value),
        (None, Some(layer)) => Some(vec![layer.value]),
        (None, None) => None,
    };
    errors.finish(())?;
    let Some(key) = key else {
        unreachable!("a key that does not check was reported above");
    };
    Ok(Plan {
        krate,
        ttl: args.ttl.map(|ttl| ttl.value),
        negative_ttl: args.negative_ttl.map(|ttl| ttl.value),
        layers,
        key,
        tags,
        shape,
        loads: args.loads,
        owned: borrow.is_none(),
        companions,
    })
}

/// The companions of `item`, if it has them.
///
/// A free fn (no receiver, no `Self`) has them as associated fns of a type named after it,
/// declared beside it. A method has them only on `companions = true`, as siblings in its impl
/// block: the attribute cannot see whether that block is an inherent impl, where they fit, or a
/// trait impl, where they do not. Either way the parameters must be plain identifiers and the
/// return type written out (no `impl Trait`): the companions pass the arguments on by name and
/// call the body as a function returning that type. Absent `companions = ..`, a fn that cannot
/// have them has none; `companions = true` on one is an error that says why.
fn companions(
    setting: Option<&Setting<bool>>,
    item: &ItemFn,
    key: Option<&Setting<LitStr>>,
    errors: &mut Errors,
) -> Option<Companions> {
    let asked = match setting {
        Some(setting) if !setting.value => return None,
        Some(_) => true,
        None => false,
    };
    let sig = &item.sig;
    let name = unraw(&sig.ident);
    let mut params = Vec::new();
    let mut refusal = None;
    let mut in_impl = false;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => in_impl = true,
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                    params.push(pat.ident.clone());
                }
                _ => {
                    refusal = Some(format!(
                        "the companions of `{name}` take its parameters by name, and this one \
                         is a pattern; bind it to an identifier (`name: Type`), or remove \
                         `companions = true`"
                    ));
                }
            },
        }
    }
    let sig_tokens = quote!(#sig).to_string();
    in_impl |= sig_tokens.split_whitespace().any(|token| token == "Self");
    if let ReturnType::Type(_, ty) = &sig.output
        && quote!(#ty)
            .to_string()
            .split_whitespace()
            .any(|token| token == "impl")
    {
        refusal = Some(format!(
            "the companions of `{name}` call its body as a function returning its return type, \
             which must then be written out: `impl Trait` cannot be; remove `companions = true`"
        ));
    }
    if let Some(refusal) = refusal {
        if let Some(setting) = setting.filter(|_| asked) {
            errors.push(syn::Error::new(setting.keyword, refusal));
        }
        return None;
    }
    // A method's companions are opt-in (see above).
    if in_impl && !asked {
        return None;
    }
    let key_doc = match key {
        Some(template) => format!("`{}`", template.value.value()),
        None => "the default key (the function's path and its arguments as JSON)".to_owned(),
    };
    Some(Companions {
        place: if in_impl { Place::Impl } else { Place::Type },
        params,
        key_doc,
    })
}

/// The checks of the resilience arguments that depend on the fn or on each other.
fn check_loads(
    loads: &LoadArgs,
    borrow: Option<&owned::Borrow>,
    shape: Shape,
    errors: &mut Errors,
) {
    // Each of these runs the body after the caller has its answer (a soft timeout serves the
    // stale value and lets the load finish; an early refresh reloads behind a hit).
    let background = [
        (
            "soft_timeout",
            loads
                .soft_timeout
                .as_ref()
                .filter(|soft| soft.value.literal_millis() != Some(0))
                .map(|soft| soft.keyword),
        ),
        (
            "early_refresh",
            loads.early_refresh.as_ref().map(|setting| setting.keyword),
        ),
        (
            "xfetch",
            loads.xfetch.as_ref().map(|setting| setting.keyword),
        ),
    ];
    if let Some(borrow) = borrow {
        for (name, keyword) in background {
            if let Some(keyword) = keyword {
                errors.push(syn::Error::new(
                    keyword,
                    format_args!(
                        "`{name}` needs owned arguments: the load goes on after the call \
                         returns, and {}",
                        borrow.reason
                    ),
                ));
            }
        }
    }

    if let Some(hard) = &loads.hard_timeout
        && !matches!(shape, Shape::Result | Shape::ResultOption)
    {
        let returns = match shape {
            Shape::Option => "`Option<T>`",
            _ => "a plain value",
        };
        errors.push(syn::Error::new(
            hard.keyword,
            format_args!(
                "a hard timeout with no stale value returns an error, and this function returns \
                 {returns}: return `Result<T, E>` or `Result<Option<T>, E>` with \
                 `E: From<vorte_cache::Error>`"
            ),
        ));
    }

    if let (Some(soft), Some(hard)) = (&loads.soft_timeout, &loads.hard_timeout)
        && let (Some(soft_ms), Some(hard_ms)) =
            (soft.value.literal_millis(), hard.value.literal_millis())
        // Zero turns a timeout off.
        && soft_ms != 0
        && hard_ms != 0
        && soft_ms >= hard_ms
    {
        errors.push(syn::Error::new(
            soft.keyword,
            format_args!(
                "`soft_timeout` ({soft_ms} ms) must be shorter than `hard_timeout` ({hard_ms} ms): \
                 the soft timeout serves the stale value while the load goes on, the hard one \
                 ends the wait"
            ),
        ));
    }
}

/// The function's parameters, as the templates and the default key see them.
struct Params<'a> {
    fn_name: &'a Ident,
    /// Each non-receiver parameter: its name if the pattern is a plain identifier, else the
    /// pattern.
    typed: Vec<Result<&'a Ident, &'a Pat>>,
}

impl<'a> Params<'a> {
    fn of(item: &'a ItemFn) -> Self {
        let typed = item
            .sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                FnArg::Receiver(_) => None,
                FnArg::Typed(typed) => Some(match &*typed.pat {
                    Pat::Ident(pat) if pat.subpat.is_none() => Ok(&pat.ident),
                    pat => Err(pat),
                }),
            })
            .collect();
        Params {
            fn_name: &item.sig.ident,
            typed,
        }
    }

    fn find(&self, name: &str) -> Option<&'a Ident> {
        self.typed
            .iter()
            .filter_map(|param| param.ok())
            .find(|ident| unraw(ident) == name)
    }

    fn names(&self) -> Vec<String> {
        self.typed
            .iter()
            .filter_map(|param| param.ok())
            .map(|ident| format!("`{}`", unraw(ident)))
            .collect()
    }

    /// Resolves every placeholder of `lit`, reporting all that name no parameter.
    fn template(&self, lit: &LitStr) -> syn::Result<Template> {
        let mut errors = Errors::default();
        let mut pieces = Vec::new();
        for piece in template::parse(lit)? {
            match piece {
                Piece::Text(text) => pieces.push(Rendered::Text(text)),
                Piece::Placeholder(name) if name == "self" => errors.push(syn::Error::new(
                    lit.span(),
                    "`{self}` cannot be rendered into a key or tag; a template may use only the \
                     function's parameters, so pass what the key needs as a parameter",
                )),
                Piece::Placeholder(name) => match self.find(&name) {
                    Some(ident) => {
                        let mut ident = ident.clone();
                        ident.set_span(lit.span());
                        pieces.push(Rendered::Param(ident));
                    }
                    None => errors.push(self.unknown_placeholder(lit, &name)),
                },
            }
        }
        errors.finish(Template {
            lit: lit.clone(),
            pieces,
        })
    }

    fn unknown_placeholder(&self, lit: &LitStr, name: &str) -> syn::Error {
        let fn_name = unraw(self.fn_name);
        let names = self.names();
        let message = if names.is_empty() {
            format!("placeholder `{{{name}}}` names no parameter: `{fn_name}` has no parameters")
        } else {
            format!(
                "placeholder `{{{name}}}` names no parameter of `{fn_name}`; its parameters are {}",
                names.join(", ")
            )
        };
        syn::Error::new(lit.span(), message)
    }

    /// The parameters of the default key, which must all have names.
    fn default_key(&self) -> syn::Result<Vec<Ident>> {
        let mut errors = Errors::default();
        let mut idents = Vec::new();
        for param in &self.typed {
            match param {
                Ok(ident) => idents.push((*ident).clone()),
                Err(pat) => errors.push(syn::Error::new_spanned(
                    pat,
                    "the default key is built from every parameter, and this one has no name; \
                     bind it to an identifier (`name: Type`) or give an explicit \
                     `key = \"...\"`",
                )),
            }
        }
        errors.finish(idents)
    }
}

/// The shape of the written return type: its last path segment `Result` or `Option`, and
/// `Result<Option<T>, E>`. A type alias hides its shape, hence the `returns = ..` hint.
fn detect_shape(output: &ReturnType) -> Shape {
    let ReturnType::Type(_, ty) = output else {
        return Shape::Value;
    };
    match last_segment(ty) {
        Some(("Option", _)) => Shape::Option,
        Some(("Result", Some(GenericArgument::Type(ok)))) => match last_segment(ok) {
            Some(("Option", _)) => Shape::ResultOption,
            _ => Shape::Result,
        },
        Some(("Result", _)) => Shape::Result,
        _ => Shape::Value,
    }
}

/// The last segment's name and first generic argument of a path type.
fn last_segment(ty: &Type) -> Option<(&str, Option<&GenericArgument>)> {
    match ty {
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            let name = match segment.ident.to_string().as_str() {
                "Result" => "Result",
                "Option" => "Option",
                _ => return None,
            };
            let first = match &segment.arguments {
                PathArguments::AngleBracketed(args) => args.args.first(),
                _ => None,
            };
            Some((name, first))
        }
        _ => None,
    }
}

/// An identifier's name without its `r#`.
pub(crate) fn unraw(ident: &Ident) -> String {
    let name = ident.to_string();
    match name.strip_prefix("r#") {
        Some(name) => name.to_owned(),
        None => name,
    }
}
