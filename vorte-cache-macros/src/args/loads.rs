//! The resilience arguments of `#[cached(..)]`: `fail_safe`, `fail_safe_throttle`,
//! `soft_timeout`, `hard_timeout`, `early_refresh`, `xfetch` and `distributed_lock` (grammar in
//! [`args`](super)). Ranges are checked here, at the literal; what depends on the fn is checked in
//! [`valid`](crate::valid).

use proc_macro2::Span;
use syn::parse::{Lookahead1, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Lit, LitBool};

use super::{Errors, Setting, Ttl, kw, parse_value};

/// The resilience arguments: what a load does when the source fails, is slow, or is about to
/// expire. Each is passed to the runtime's `CachedLoads`; an absent one takes the config's value.
#[derive(Default)]
pub(crate) struct LoadArgs {
    pub(crate) fail_safe: Option<Setting<Ttl>>,
    pub(crate) fail_safe_throttle: Option<Setting<Ttl>>,
    pub(crate) soft_timeout: Option<Setting<Ttl>>,
    pub(crate) hard_timeout: Option<Setting<Ttl>>,
    /// In `0 < f < 1`, checked here.
    pub(crate) early_refresh: Option<Setting<f64>>,
    /// Above 0, checked here.
    pub(crate) xfetch: Option<Setting<f64>>,
    pub(crate) distributed_lock: Option<Setting<bool>>,
}

impl LoadArgs {
    /// Parses the next argument if it is a resilience argument, and says whether it was.
    pub(super) fn parse_next(
        &mut self,
        input: ParseStream<'_>,
        lookahead: &Lookahead1<'_>,
        errors: &mut Errors,
    ) -> syn::Result<bool> {
        if lookahead.peek(kw::fail_safe_throttle) {
            let keyword = input.parse::<kw::fail_safe_throttle>()?.span;
            let value = parse_value(input, Ttl::parse)?;
            errors.set(
                &mut self.fail_safe_throttle,
                "fail_safe_throttle",
                keyword,
                value,
            );
        } else if lookahead.peek(kw::fail_safe) {
            let keyword = input.parse::<kw::fail_safe>()?.span;
            let value = parse_value(input, Ttl::parse)?;
            errors.set(&mut self.fail_safe, "fail_safe", keyword, value);
        } else if lookahead.peek(kw::soft_timeout) {
            let keyword = input.parse::<kw::soft_timeout>()?.span;
            let value = parse_value(input, Ttl::parse)?;
            errors.set(&mut self.soft_timeout, "soft_timeout", keyword, value);
        } else if lookahead.peek(kw::hard_timeout) {
            let keyword = input.parse::<kw::hard_timeout>()?.span;
            let value = parse_value(input, Ttl::parse)?;
            errors.set(&mut self.hard_timeout, "hard_timeout", keyword, value);
        } else if lookahead.peek(kw::early_refresh) {
            let keyword = input.parse::<kw::early_refresh>()?.span;
            let (value, span) = parse_value(input, parse_number)?;
            let fraction = (value > 0.0 && value < 1.0).then_some(value).ok_or_else(|| {
                syn::Error::new(
                    span,
                    format_args!(
                        "`early_refresh` is the fraction of the TTL after which a hit refreshes \
                         the entry, so it must be above 0 and below 1 (such as `0.8`); got {value:?}"
                    ),
                )
            });
            if let Some(value) = errors.check(fraction) {
                errors.set(&mut self.early_refresh, "early_refresh", keyword, value);
            }
        } else if lookahead.peek(kw::xfetch) {
            let keyword = input.parse::<kw::xfetch>()?.span;
            let (value, span) = parse_value(input, parse_number)?;
            let beta = (value > 0.0 && value.is_finite())
                .then_some(value)
                .ok_or_else(|| {
                    syn::Error::new(
                        span,
                        format_args!(
                            "`xfetch` is XFetch's beta, which must be above 0 (`1.0` is the usual \
                             value; a larger one refreshes earlier); got {value:?}"
                        ),
                    )
                });
            if let Some(value) = errors.check(beta) {
                errors.set(&mut self.xfetch, "xfetch", keyword, value);
            }
        } else if lookahead.peek(kw::distributed_lock) {
            let keyword = input.parse::<kw::distributed_lock>()?.span;
            let value = parse_value(input, parse_bool)?;
            errors.set(
                &mut self.distributed_lock,
                "distributed_lock",
                keyword,
                value,
            );
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Whether no resilience argument is given, so every option comes from the config.
    pub(crate) fn is_empty(&self) -> bool {
        self.fail_safe.is_none()
            && self.fail_safe_throttle.is_none()
            && self.soft_timeout.is_none()
            && self.hard_timeout.is_none()
            && self.early_refresh.is_none()
            && self.xfetch.is_none()
            && self.distributed_lock.is_none()
    }
}

/// A number literal (`0.8`, `1`, `-0.5`) as an `f64`, with the span of what was written.
fn parse_number(input: ParseStream<'_>) -> syn::Result<(f64, Span)> {
    let expr: Expr = input.parse()?;
    let (negative, lit) = match &expr {
        Expr::Unary(unary) if matches!(unary.op, syn::UnOp::Neg(_)) => (true, &*unary.expr),
        lit => (false, lit),
    };
    let value = match lit {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Float(float),
            ..
        }) => float.base10_parse::<f64>(),
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<f64>(),
        _ => Err(syn::Error::new(
            expr.span(),
            "expected a number literal, such as `0.8`",
        )),
    };
    let value = value?;
    Ok((if negative { -value } else { value }, expr.span()))
}

/// `true` or `false`.
pub(super) fn parse_bool(input: ParseStream<'_>) -> syn::Result<bool> {
    if input.peek(LitBool) {
        return Ok(input.parse::<LitBool>()?.value);
    }
    let expr: Expr = input.parse()?;
    Err(syn::Error::new(expr.span(), "expected `true` or `false`"))
}
