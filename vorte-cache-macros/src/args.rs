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
//! fail_safe          = "1h" | 3600 | 1h | Duration::from_secs(3600)   (every duration: as `ttl`)
//! fail_safe_throttle = "30s"
//! soft_timeout       = "100ms"
//! hard_timeout       = "2s"
//! early_refresh      = 0.8      (a fraction of the TTL, 0 < f < 1)
//! xfetch             = 1.0      (XFetch's beta, > 0)
//! distributed_lock   = true | false
//! companions         = true | false   (the generated `get_user::key`, `::invalidate`, `::refresh`)
//! ```
//!
//! A duration is whole seconds (`300`), a suffixed literal (`500ms`, `300s`, `5m`, `1h`), the same
//! in a string (`"500ms"`), or any `Duration` expression usable in a `const`.
//!
//! Parsing checks only what each argument says on its own (a known name, a value of the right
//! form, no argument twice, layer names). What depends on the fn or on other arguments is checked
//! in [`valid`](crate::valid).

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitStr, Path, Token, bracketed};

mod loads;

pub(crate) use loads::LoadArgs;
use loads::parse_bool;

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(negative_ttl);
    syn::custom_keyword!(key);
    syn::custom_keyword!(layer);
    syn::custom_keyword!(layers);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(returns);
    syn::custom_keyword!(fail_safe);
    syn::custom_keyword!(fail_safe_throttle);
    syn::custom_keyword!(soft_timeout);
    syn::custom_keyword!(hard_timeout);
    syn::custom_keyword!(early_refresh);
    syn::custom_keyword!(xfetch);
    syn::custom_keyword!(distributed_lock);
    syn::custom_keyword!(companions);
}

/// Every argument name, in the order the unknown-argument message lists them.
const ARGUMENTS: &[&str] = &[
    "ttl",
    "key",
    "layer",
    "layers",
    "tags",
    "negative_ttl",
    "returns",
    "crate",
    "fail_safe",
    "fail_safe_throttle",
    "soft_timeout",
    "hard_timeout",
    "early_refresh",
    "xfetch",
    "distributed_lock",
    "companions",
];

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
    /// `companions = true | false`; absent, a free fn has them and a method has none.
    pub(crate) companions: Option<Setting<bool>>,
    pub(crate) loads: LoadArgs,
}

/// An argument's value and the span of the keyword that set it.
pub(crate) struct Setting<T> {
    pub(crate) keyword: Span,
    pub(crate) value: T,
}

/// A TTL or any other duration: whole seconds, a suffixed literal (bare or in a string), or any
/// `Duration` expression.
pub(crate) enum Ttl {
    /// `300`, `300s` or `"300s"`; the span is the literal's.
    Secs(Span, u64),
    /// `500ms` or `"500ms"`.
    Millis(Span, u64),
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
            } else if lookahead.peek(kw::companions) {
                let keyword = input.parse::<kw::companions>()?.span;
                let value = parse_value(input, parse_bool)?;
                errors.set(&mut args.companions, "companions", keyword, value);
            } else if args.loads.parse_next(input, &lookahead, &mut errors)? {
                // A resilience argument.
            } else if lookahead.peek(Token![crate]) {
                let keyword = input.parse::<Token![crate]>()?.span;
                let value = parse_value(input, Path::parse_mod_style)?;
                errors.set(&mut args.krate, "crate", keyword, value);
            } else {
                let mut error = lookahead.error();
                if let Ok(ident) = input.fork().call(<Ident as syn::ext::IdentExt>::parse_any) {
                    error = unknown_argument(&ident);
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
        match &lit.lit {
            Lit::Int(int) => Ttl::of_number(int.base10_parse()?, int.suffix(), int.span()),
            Lit::Str(text) => {
                let value = text.value();
                let digits = value
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(value.len());
                let (number, unit) = value.split_at(digits);
                match number.parse::<u64>() {
                    Ok(n) => Ttl::of_number(n, unit, text.span()),
                    Err(_) => Err(syn::Error::new(
                        text.span(),
                        "expected a duration such as \"300ms\", \"30s\", \"5m\" or \"1h\"",
                    )),
                }
            }
            _ => Err(syn::Error::new(
                lit.span(),
                "expected a number of seconds (`300`, `5m`, `500ms`, `\"1h\"`) or a `Duration` \
                 expression",
            )),
        }
    }

    /// `n` in `unit`, which is the suffix of an integer literal or the text after a string's
    /// digits.
    fn of_number(n: u64, unit: &str, span: Span) -> syn::Result<Self> {
        let secs = match unit {
            "" | "s" => Some(n),
            "ms" => return Ok(Ttl::Millis(span, n)),
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            unit => {
                return Err(syn::Error::new(
                    span,
                    format_args!(
                        "unknown unit `{unit}`; write seconds (`300` or `300s`), `ms`, `m` or `h`"
                    ),
                ));
            }
        };
        match secs {
            Some(secs) => Ok(Ttl::Secs(span, secs)),
            None => Err(syn::Error::new(
                span,
                "this duration overflows a `u64` of seconds",
            )),
        }
    }

    /// The duration in milliseconds when it is a literal; `None` for an expression.
    pub(crate) fn literal_millis(&self) -> Option<u128> {
        match self {
            Ttl::Secs(_, secs) => Some(u128::from(*secs) * 1000),
            Ttl::Millis(_, millis) => Some(u128::from(*millis)),
            Ttl::Expr(_) => None,
        }
    }
}

/// The error for an argument that does not exist, with the likeliest one meant when the name is
/// close to one (`failsafe`, `soft_timout`).
fn unknown_argument(ident: &Ident) -> syn::Error {
    let name = ident.to_string();
    let expected = ARGUMENTS
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let closest = ARGUMENTS
        .iter()
        .map(|known| (edit_distance(&name, known), known))
        .filter(|(distance, known)| *distance <= known.len() / 4 + 1)
        .min_by_key(|(distance, _)| *distance);
    let message = match closest {
        Some((_, known)) => {
            format!("unknown argument `{name}`; did you mean `{known}`? expected one of {expected}")
        }
        None => format!("unknown argument `{name}`; expected one of {expected}"),
    };
    syn::Error::new(ident.span(), message)
}

/// The Levenshtein distance of two ASCII-ish names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
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
