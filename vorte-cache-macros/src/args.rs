//! The grammar of `#[cached(..)]`: a comma-separated list of `name = value` arguments.
//!
//! ```text
//! ttl          = 300 | 5m | Duration::from_secs(300)      (an integer is seconds)
//! negative_ttl = 30  | 30s | Duration::from_millis(500)
//! key          = "user:{user_id}"
//! layer        = "l1"
//! layers       = ["l1", "l2"]
//! tags         = ["products", "category:{category}"]
//! returns      = result | option | result_option | value
//! crate        = ::my::reexport::vorte_cache
//! ```
//!
//! Parsing checks only what each argument says on its own (a known name, a value of the right
//! form, no argument twice, layer names). What depends on the fn or on other arguments is checked
//! in [`valid`](crate::valid).

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitInt, LitStr, Path, Token, bracketed};

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(negative_ttl);
    syn::custom_keyword!(key);
    syn::custom_keyword!(layer);
    syn::custom_keyword!(layers);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(returns);
}

/// The arguments of one `#[cached(..)]`, each with the span of its keyword.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) ttl: Option<Setting<Ttl>>,
    pub(crate) negative_ttl: Option<Setting<Ttl>>,
    pub(crate) key: Option<Setting<LitStr>>,
    pub(crate) layer: Option<Setting<LayerName>>,
    pub(crate) layers: Option<Setting<Vec<LayerName>>>,
    pub(crate) tags: Option<Setting<Vec<LitStr>>>,
    pub(crate) returns: Option<Setting<Shape>>,
    pub(crate) krate: Option<Setting<Path>>,
}

/// An argument's value and the span of the keyword that set it.
pub(crate) struct Setting<T> {
    pub(crate) keyword: Span,
    pub(crate) value: T,
}

/// A TTL: whole seconds, a suffixed literal, or any `Duration` expression.
pub(crate) enum Ttl {
    /// `300` or `300s`.
    Secs(LitInt, u64),
    /// `500ms`.
    Millis(LitInt, u64),
    /// A `core::time::Duration` expression, evaluated in a `const` context.
    Expr(Box<Expr>),
}

/// One of `"l1"` .. `"l4"`.
#[derive(Clone, Copy)]
pub(crate) struct LayerName {
    pub(crate) index: u8,
    pub(crate) span: Span,
}

/// How the return value is cached; see `vorte_cache::__private::Output`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Shape {
    /// `Result<T, E>`: `Ok` is cached.
    Result,
    /// `Option<T>`: `Some` is cached, `None` with negative caching.
    Option,
    /// `Result<Option<T>, E>`: `Ok(Some)` is cached, `Ok(None)` with negative caching.
    ResultOption,
    /// Anything else: always cached.
    Value,
}

impl Shape {
    /// Whether a result of this shape can be negative, i.e. `negative_ttl` means something.
    pub(crate) fn has_negative(self) -> bool {
        matches!(self, Shape::Option | Shape::ResultOption)
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        let mut errors = Errors::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::ttl) {
                let keyword = input.parse::<kw::ttl>()?.span;
                let value = parse_value(input, Ttl::parse)?;
                errors.set(&mut args.ttl, "ttl", keyword, value);
            } else if lookahead.peek(kw::negative_ttl) {
                let keyword = input.parse::<kw::negative_ttl>()?.span;
                let value = parse_value(input, Ttl::parse)?;
                errors.set(&mut args.negative_ttl, "negative_ttl", keyword, value);
            } else if lookahead.peek(kw::key) {
                let keyword = input.parse::<kw::key>()?.span;
                let value = parse_value(input, parse_template)?;
                errors.set(&mut args.key, "key", keyword, value);
            } else if lookahead.peek(kw::layers) {
                let keyword = input.parse::<kw::layers>()?.span;
                let names = parse_value(input, parse_list)?;
                let value = errors.collect(names.iter().map(LayerName::from_lit));
                errors.set(&mut args.layers, "layers", keyword, value);
            } else if lookahead.peek(kw::layer) {
                let keyword = input.parse::<kw::layer>()?.span;
                let name = parse_value(input, <LitStr as Parse>::parse)?;
                if let Some(value) = errors.check(LayerName::from_lit(&name)) {
                    errors.set(&mut args.layer, "layer", keyword, value);
                }
            } else if lookahead.peek(kw::tags) {
                let keyword = input.parse::<kw::tags>()?.span;
                let value = parse_value(input, parse_list)?;
                errors.set(&mut args.tags, "tags", keyword, value);
            } else if lookahead.peek(kw::returns) {
                let keyword = input.parse::<kw::returns>()?.span;
                let hint = parse_value(input, <Ident as Parse>::parse)?;
                if let Some(value) = errors.check(Shape::from_hint(&hint)) {
                    errors.set(&mut args.returns, "returns", keyword, value);
                }
            } else if lookahead.peek(Token![crate]) {
                let keyword = input.parse::<Token![crate]>()?.span;
                let value = parse_value(input, Path::parse_mod_style)?;
                errors.set(&mut args.krate, "crate", keyword, value);
            } else {
                let mut error = lookahead.error();
                if let Ok(ident) = input.fork().call(<Ident as syn::ext::IdentExt>::parse_any) {
                    error = syn::Error::new(
                        ident.span(),
                        format_args!(
                            "unknown argument `{ident}`; expected one of `ttl`, `key`, `layer`, \
                             `layers`, `tags`, `negative_ttl`, `returns`, `crate`"
                        ),
                    );
                }
                return Err(errors.with(error));
            }
            if input.is_empty() {
                break;
            }
            if let Err(error) = input.parse::<Token![,]>() {
                return Err(errors.with(error));
            }
        }
        errors.finish(args)
    }
}

/// `= value`.
fn parse_value<T>(
    input: ParseStream<'_>,
    value: fn(ParseStream<'_>) -> syn::Result<T>,
) -> syn::Result<T> {
    input.parse::<Token![=]>()?;
    value(input)
}

/// A string literal, with a hint when the user wrote an expression instead.
fn parse_template(input: ParseStream<'_>) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    Err(input.error(
        "expected a key template string, such as `key = \"user:{user_id}\"`; \
         `{name}` inserts the parameter `name`",
    ))
}

/// `["a", "b"]`.
fn parse_list(input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    if !input.peek(syn::token::Bracket) {
        return Err(input.error("expected a list of string literals, such as `[\"a\", \"b\"]`"));
    }
    let content;
    bracketed!(content in input);
    let list = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
    Ok(list.into_iter().collect())
}

impl Ttl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let expr: Expr = input.parse()?;
        let Expr::Lit(lit) = &expr else {
            return Ok(Ttl::Expr(Box::new(expr)));
        };
        let Lit::Int(int) = &lit.lit else {
            return Err(syn::Error::new(
                lit.span(),
                "expected a number of seconds (`300`, `5m`, `500ms`) or a `Duration` expression",
            ));
        };
        let n: u64 = int.base10_parse()?;
        let (secs, millis) = match int.suffix() {
            "" | "s" => (Some(n), None),
            "ms" => (None, Some(n)),
            "m" => (n.checked_mul(60), None),
            "h" => (n.checked_mul(3600), None),
            suffix => {
                return Err(syn::Error::new(
                    int.span(),
                    format_args!(
                        "unknown unit `{suffix}`; write seconds (`300` or `300s`), `ms`, `m` or `h`"
                    ),
                ));
            }
        };
        match (secs, millis) {
            (Some(secs), _) => Ok(Ttl::Secs(int.clone(), secs)),
            (None, Some(millis)) => Ok(Ttl::Millis(int.clone(), millis)),
            (None, None) => Err(syn::Error::new(
                int.span(),
                "this TTL overflows a `u64` of seconds",
            )),
        }
    }
}

impl LayerName {
    fn from_lit(lit: &LitStr) -> syn::Result<Self> {
        let index = match lit.value().as_str() {
            "l1" => 1,
            "l2" => 2,
            "l3" => 3,
            "l4" => 4,
            other => {
                return Err(syn::Error::new(
                    lit.span(),
                    format_args!(
                        "unknown layer `{other}`; expected one of \"l1\", \"l2\", \"l3\", \"l4\""
                    ),
                ));
            }
        };
        Ok(LayerName {
            index,
            span: lit.span(),
        })
    }
}

impl Shape {
    fn from_hint(hint: &Ident) -> syn::Result<Self> {
        match hint.to_string().as_str() {
            "result" => Ok(Shape::Result),
            "option" => Ok(Shape::Option),
            "result_option" => Ok(Shape::ResultOption),
            "value" => Ok(Shape::Value),
            other => Err(syn::Error::new(
                hint.span(),
                format_args!(
                    "unknown return shape `{other}`; expected `result`, `option`, \
                     `result_option` or `value`"
                ),
            )),
        }
    }
}

/// The errors found so far; parsing goes on after an error that does not break the grammar, so
/// the user sees every mistake at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// The value, or `None` after recording its error.
    pub(crate) fn check<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// Every value that is `Ok`, recording the errors of the others.
    pub(crate) fn collect<T>(
        &mut self,
        results: impl IntoIterator<Item = syn::Result<T>>,
    ) -> Vec<T> {
        results
            .into_iter()
            .filter_map(|result| self.check(result))
            .collect()
    }

    /// Sets an argument, or records a duplicate at its second keyword.
    fn set<T>(&mut self, slot: &mut Option<Setting<T>>, name: &str, keyword: Span, value: T) {
        if slot.is_some() {
            self.push(syn::Error::new(
                keyword,
                format_args!("duplicate argument `{name}`: it may be given only once"),
            ));
        } else {
            *slot = Some(Setting { keyword, value });
        }
    }

    /// Every error so far, then `last`.
    pub(crate) fn with(self, last: syn::Error) -> syn::Error {
        match self.0 {
            Some(mut errors) => {
                errors.combine(last);
                errors
            }
            None => last,
        }
    }

    /// `Ok(value)` if nothing went wrong.
    pub(crate) fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}
