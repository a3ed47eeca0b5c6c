//! Parses the attribute's arguments into typed options, each with its span.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprAssign, ExprLit, ExprPath, Lit, LitStr, Path, Token};

use crate::duration;
use crate::errors::Errors;

/// Every option, in the order the docs list them.
pub(crate) const OPTIONS: &[&str] = &[
    "timeout",
    "auto_renew",
    "wait",
    "retry",
    "retry_delay",
    "skip",
    "min_hold",
    "fencing",
    "on_lost",
    "locker",
    "crate",
];

/// A value with the span of the option that set it.
#[derive(Debug, Clone)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

impl<T> Spanned<T> {
    fn at(span: Span, value: T) -> Self {
        Self { value, span }
    }
}

/// What to do when the lock is lost during the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnLost {
    /// Drop the body's future and return `LockError::Lost`.
    Abort,
    /// Let the body finish.
    Ignore,
}

/// The parsed attribute.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) template: Option<LitStr>,
    pub(crate) timeout: Option<Spanned<Duration>>,
    /// `Some(None)`: `auto_renew` as a flag; `Some(Some(d))`: `auto_renew = d`.
    pub(crate) auto_renew: Option<Spanned<Option<Duration>>>,
    pub(crate) wait: Option<Spanned<Duration>>,
    pub(crate) retry: Option<Spanned<u32>>,
    pub(crate) retry_delay: Option<Spanned<Duration>>,
    pub(crate) skip: Option<Span>,
    pub(crate) min_hold: Option<Spanned<Duration>>,
    pub(crate) fencing: Option<Span>,
    pub(crate) on_lost: Option<Spanned<OnLost>>,
    pub(crate) locker: Option<Expr>,
    pub(crate) krate: Option<Path>,
}

const GRAMMAR: &str = "expected #[distributed_lock(\"key:<arg>\", option, option = value, ...)]";

/// Parses `tokens`, recording every problem in `errors`; what could be parsed is returned.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let items = match Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(items) => items,
        Err(error) => {
            errors.push(syn::Error::new(error.span(), format!("{error}; {GRAMMAR}")));
            return args;
        }
    };
    let mut items = items.into_iter().peekable();
    match items.peek() {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(template),
            ..
        })) => {
            args.template = Some(template.clone());
            items.next();
        }
        Some(Expr::Assign(_)) | None => errors.at(
            Span::call_site(),
            "missing key template: the first argument names the lock, e.g. \
             #[distributed_lock(\"order:<order_id>\", timeout = 30)]",
        ),
        Some(other) => {
            errors.at(
                other.span(),
                "the key template must be a string literal, e.g. \"order:<order_id>\"; \
                 placeholders in `<...>` are filled from the function's arguments",
            );
            items.next();
        }
    }
    let mut seen: Vec<(String, Span)> = Vec::new();
    for item in items {
        let (name, value) = match item {
            Expr::Assign(ExprAssign { left, right, .. }) => match option_name(&left) {
                Some(name) => (name, Some(*right)),
                None => {
                    errors.at(
                        left.span(),
                        format!("expected an option name; {}", valid_options()),
                    );
                    continue;
                }
            },
            Expr::Lit(ExprLit {
                lit: Lit::Str(extra),
                ..
            }) => {
                errors.at(
                    extra.span(),
                    "only one key template is allowed; it must be the first argument",
                );
                continue;
            }
            other => match option_name(&other) {
                Some(name) => (name, None),
                None => {
                    errors.at(
                        other.span(),
                        format!("expected an option; {}", valid_options()),
                    );
                    continue;
                }
            },
        };
        let (text, span) = (name.to_string(), name.span());
        if let Some((_, first)) = seen.iter().find(|(seen, _)| *seen == text) {
            let mut error =
                syn::Error::new(span, format!("duplicate option `{text}`; give it once"));
            error.combine(syn::Error::new(
                *first,
                format!("`{text}` first given here"),
            ));
            errors.push(error);
            continue;
        }
        seen.push((text.clone(), span));
        if let Err(error) = args.set(&text, span, value) {
            errors.push(error);
        }
    }
    args
}

fn valid_options() -> String {
    let list: Vec<String> = OPTIONS.iter().map(|name| format!("`{name}`")).collect();
    format!("valid options are {}", list.join(", "))
}

/// `timeout`, `crate`: a single-segment path.
fn option_name(expr: &Expr) -> Option<syn::Ident> {
    match expr {
        Expr::Path(ExprPath {
            path, qself: None, ..
        }) if path.segments.len() == 1 && path.leading_colon.is_none() => {
            Some(path.segments[0].ident.clone())
        }
        _ => None,
    }
}

impl Args {
    fn set(&mut self, name: &str, span: Span, value: Option<Expr>) -> syn::Result<()> {
        let needs_value = |value: Option<Expr>, example: &str| {
            value.ok_or_else(|| {
                syn::Error::new(
                    span,
                    format!("`{name}` needs a value: `{name} = {example}`"),
                )
            })
        };
        let no_value = |value: &Option<Expr>| match value {
            Some(value) => Err(syn::Error::new(
                value.span(),
                format!("`{name}` is a flag and takes no value: write `{name}`"),
            )),
            None => Ok(span),
        };
        let positive = |value: &Expr| -> syn::Result<Duration> {
            let duration = duration::parse(name, value)?;
            if duration.is_zero() {
                return Err(syn::Error::new(
                    value.span(),
                    format!("`{name}` must be positive"),
                ));
            }
            Ok(duration)
        };
        match name {
            "timeout" => {
                let value = needs_value(value, "30")?;
                self.timeout = Some(Spanned::at(span, positive(&value)?));
            }
            "auto_renew" => {
                let every = value.as_ref().map(positive).transpose()?;
                self.auto_renew = Some(Spanned::at(span, every));
            }
            "wait" => {
                let value = needs_value(value, "5")?;
                self.wait = Some(Spanned::at(span, duration::parse(name, &value)?));
            }
            "retry" => {
                let value = needs_value(value, "5")?;
                let times = match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(int), ..
                    }) => int.base10_parse::<u32>().map_err(|_| {
                        syn::Error::new(
                            int.span(),
                            "`retry` must be a whole number of retries up to 4294967295",
                        )
                    })?,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "`retry` takes the number of retries after the first try, e.g. `retry = 5`",
                        ));
                    }
                };
                self.retry = Some(Spanned::at(span, times));
            }
            "retry_delay" => {
                let value = needs_value(value, "\"200ms\"")?;
                self.retry_delay = Some(Spanned::at(span, duration::parse(name, &value)?));
            }
            "skip" => self.skip = Some(no_value(&value)?),
            "fencing" => self.fencing = Some(no_value(&value)?),
            "min_hold" => {
                let value = needs_value(value, "60")?;
                self.min_hold = Some(Spanned::at(span, positive(&value)?));
            }
            "on_lost" => {
                let value = needs_value(value, "abort")?;
                let policy = match option_name(&value)
                    .map(|ident| ident.to_string())
                    .as_deref()
                {
                    Some("abort") => OnLost::Abort,
                    Some("ignore") => OnLost::Ignore,
                    _ => {
                        return Err(syn::Error::new(
                            value.span(),
                            "`on_lost` is `abort` (drop the body and return `LockError::Lost`) or `ignore` (the default)",
                        ));
                    }
                };
                self.on_lost = Some(Spanned::at(span, policy));
            }
            "locker" => self.locker = Some(needs_value(value, "self.locker")?),
            "crate" => {
                let value = needs_value(value, "\"lock_runtime\"")?;
                let path = match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(path),
                        ..
                    }) => path.parse::<Path>().ok(),
                    _ => None,
                };
                let path = path.ok_or_else(|| {
                    syn::Error::new(
                        value.span(),
                        "`crate` must be a path in a string, e.g. `crate = \"my_locks\"`",
                    )
                })?;
                self.krate = Some(path);
            }
            unknown => {
                let hint = OPTIONS
                    .iter()
                    .map(|option| (strsim::levenshtein(unknown, option), option))
                    .min()
                    .filter(|(distance, _)| *distance <= 3)
                    .map(|(_, option)| format!("did you mean `{option}`? "))
                    .unwrap_or_default();
                return Err(syn::Error::new(
                    span,
                    format!("unknown option `{unknown}`; {hint}{}", valid_options()),
                ));
            }
        }
        Ok(())
    }
}
