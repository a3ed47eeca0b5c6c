//! Parses the attribute's arguments: the key template, then each option through its own
//! setter, which parses the value. A repeated option is rejected in one place; rules that
//! involve several options are in `valid.rs`.

use std::iter::Peekable;
use std::time::Duration;

use proc_macro2::{Ident, Span, TokenStream};
use quote::ToTokens as _;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprAssign, ExprLit, ExprPath, Lit, LitStr, Path, Token};

use crate::errors::Errors;
use crate::{duration, ident, names};

/// A value with the span of the option that set it.
#[derive(Debug, Clone)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// What to do when the lock is lost during the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnLost {
    /// Drop the body's future and return `LockError::Lost`.
    Abort,
    /// Let the body finish.
    Ignore,
}

/// The parsed attribute: the options the user wrote, nothing else.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) template: Option<LitStr>,
    pub(crate) timeout: Option<Spanned<Duration>>,
    /// `None`: `auto_renew` as a flag; `Some(d)`: `auto_renew = d`.
    pub(crate) auto_renew: Option<Spanned<Option<Duration>>>,
    pub(crate) wait: Option<Spanned<Duration>>,
    pub(crate) retry: Option<Spanned<u32>>,
    pub(crate) retry_delay: Option<Spanned<Duration>>,
    pub(crate) durable: Option<Spanned<u32>>,
    pub(crate) durable_wait: Option<Spanned<Duration>>,
    pub(crate) skip: Option<Spanned<()>>,
    pub(crate) min_hold: Option<Spanned<Duration>>,
    pub(crate) fencing: Option<Spanned<()>>,
    pub(crate) on_lost: Option<Spanned<OnLost>>,
    pub(crate) escape: Option<Spanned<()>>,
    pub(crate) permits: Option<Spanned<u32>>,
    pub(crate) reentrant: Option<Spanned<()>>,
    pub(crate) locker: Option<Spanned<Expr>>,
    pub(crate) krate: Option<Spanned<Path>>,
}

/// One `name` or `name = value` argument.
struct Given {
    name: Ident,
    value: Option<Expr>,
}

type Setter = fn(&mut Args, Given) -> syn::Result<()>;

/// Every option with its setter, in the order the docs list them.
const OPTIONS: &[(&str, Setter)] = &[
    ("timeout", Args::set_timeout),
    ("auto_renew", Args::set_auto_renew),
    ("wait", Args::set_wait),
    ("retry", Args::set_retry),
    ("retry_delay", Args::set_retry_delay),
    ("durable", Args::set_durable),
    ("durable_wait", Args::set_durable_wait),
    ("skip", Args::set_skip),
    ("min_hold", Args::set_min_hold),
    ("fencing", Args::set_fencing),
    ("on_lost", Args::set_on_lost),
    ("escape", Args::set_escape),
    ("permits", Args::set_permits),
    ("reentrant", Args::set_reentrant),
    ("locker", Args::set_locker),
    ("crate", Args::set_crate),
];

/// The shortest TTL a lock can have (the runtime refuses shorter ones on every call).
const MIN_TTL: Duration = Duration::from_millis(1);

const GRAMMAR: &str = "expected #[distributed_lock(\"key:<arg>\", option, option = value, ...)]";

/// Parses `tokens`, recording every problem in `errors`; what could be parsed is returned.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let items = match Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(items) => items,
        Err(error) => {
            errors.at(error.span(), format!("{error}; {GRAMMAR}"));
            return args;
        }
    };
    let mut items = items.into_iter().peekable();
    args.template = template(&mut items, errors);
    let mut seen = Vec::new();
    for item in items {
        let set = Given::from_expr(item).and_then(|given| args.set(given, &mut seen));
        if let Err(error) = set {
            errors.push(error);
        }
    }
    args
}

/// The first argument: the template. `key = "..."` is taken as one, with an error.
fn template(
    items: &mut Peekable<impl Iterator<Item = Expr>>,
    errors: &mut Errors,
) -> Option<LitStr> {
    let missing = "missing key template: the first argument names the lock, e.g. \
                   #[distributed_lock(\"order:<order_id>\", timeout = 30)]";
    let Some(first) = items.peek() else {
        errors.at(Span::call_site(), missing);
        return None;
    };
    if let Some(template) = string_literal(first).cloned() {
        items.next();
        return Some(template);
    }
    if let Expr::Assign(ExprAssign { left, right, .. }) = first
        && option_name(left)
            .is_some_and(|name| names::alias_hint(&name) == Some(names::TEMPLATE_IS_POSITIONAL))
    {
        let message = format!(
            "the key template is the first, positional argument: write the string alone, without `{} =`",
            left.to_token_stream()
        );
        errors.at(left.span(), message);
        let template = string_literal(right).cloned();
        items.next();
        return template;
    }
    if matches!(first, Expr::Assign(_))
        || option_name(first).is_some_and(|name| option(&name).is_some())
    {
        errors.at(Span::call_site(), missing);
        return None;
    }
    errors.at(
        first.span(),
        "the key template must be a string literal, e.g. \"order:<order_id>\"; \
         placeholders in `<...>` are filled from the function's arguments",
    );
    items.next();
    None
}

fn string_literal(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Some(text),
        _ => None,
    }
}

impl Given {
    /// A whole number (`retry = 5`, `durable = 1`): `example` for the missing-value
    /// message, `range` when it does not fit a `u32`, `shape` when it is no number.
    fn count(&self, example: &str, range: &str, shape: &str) -> syn::Result<u32> {
        match self.value(example)? {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => int
                .base10_parse::<u32>()
                .map_err(|_| syn::Error::new(int.span(), range)),
            other => Err(syn::Error::new(other.span(), shape)),
        }
    }

    /// A whole number of at least 1: [`count`](Self::count), and `zero` when it is 0.
    fn positive_count(
        &self,
        example: &str,
        (range, shape): (&str, &str),
        zero: &str,
    ) -> syn::Result<u32> {
        match self.count(example, range, shape)? {
            0 => Err(syn::Error::new(self.name.span(), zero)),
            count => Ok(count),
        }
    }

    fn from_expr(item: Expr) -> syn::Result<Self> {
        let (name, value) = match item {
            Expr::Assign(ExprAssign { left, right, .. }) => {
                (option_name(&left).ok_or(left), Some(*right))
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(extra),
                ..
            }) => {
                return Err(syn::Error::new(
                    extra.span(),
                    "only one key template is allowed; it must be the first argument",
                ));
            }
            other => (option_name(&other).ok_or(Box::new(other)), None),
        };
        match name {
            Ok(name) => Ok(Self { name, value }),
            Err(not_a_name) => Err(syn::Error::new(
                not_a_name.span(),
                format!("expected an option name; {}", names::valid(&option_names())),
            )),
        }
    }

    fn spanned<T>(&self, value: T) -> Option<Spanned<T>> {
        Some(Spanned {
            value,
            span: self.name.span(),
        })
    }

    /// The value of an option that needs one.
    fn value(&self, example: &str) -> syn::Result<&Expr> {
        self.value.as_ref().ok_or_else(|| {
            let name = &self.name;
            syn::Error::new(
                name.span(),
                format!("`{name}` needs a value: `{name} = {example}`"),
            )
        })
    }

    /// A flag: `skip`, not `skip = true`.
    fn flag(&self) -> syn::Result<Option<Spanned<()>>> {
        let name = &self.name;
        match &self.value {
            None => Ok(self.spanned(())),
            Some(value) if is_bool(value, false) => Err(syn::Error::new(
                value.span(),
                format!("`{name} = false` is the default: leave `{name}` out"),
            )),
            Some(value) => Err(syn::Error::new(
                value.span(),
                format!("`{name}` is a flag and takes no value: write `{name}`"),
            )),
        }
    }

    fn duration(&self, example: &str) -> syn::Result<Duration> {
        duration::parse(&self.name.to_string(), self.value(example)?)
    }

    fn positive(&self, example: &str) -> syn::Result<Duration> {
        let duration = self.duration(example)?;
        if duration.is_zero() {
            let name = &self.name;
            return Err(syn::Error::new(
                self.value(example)?.span(),
                format!("`{name}` must be positive"),
            ));
        }
        Ok(duration)
    }
}

impl Args {
    fn set(&mut self, given: Given, seen: &mut Vec<Ident>) -> syn::Result<()> {
        let setter =
            option(&given.name).ok_or_else(|| names::unknown(&given.name, &option_names()))?;
        if let Some(first) = seen.iter().find(|seen| **seen == given.name) {
            let name = &given.name;
            let mut error = syn::Error::new(
                name.span(),
                format!("duplicate option `{name}`; give it once"),
            );
            error.combine(syn::Error::new(
                first.span(),
                format!("`{name}` first given here"),
            ));
            return Err(error);
        }
        seen.push(given.name.clone());
        setter(self, given)
    }

    fn set_timeout(&mut self, given: Given) -> syn::Result<()> {
        let ttl = given.positive("30")?;
        if ttl < MIN_TTL {
            return Err(syn::Error::new(
                given.value("30")?.span(),
                format!(
                    "`timeout` is {ttl:?}, below 1 ms, the shortest TTL a lock can have; give at least `\"1ms\"`"
                ),
            ));
        }
        self.timeout = given.spanned(ttl);
        Ok(())
    }

    fn set_auto_renew(&mut self, given: Given) -> syn::Result<()> {
        let every = match &given.value {
            None => None,
            Some(Expr::Lit(ExprLit {
                lit: Lit::Bool(flag),
                ..
            })) => {
                let what = if flag.value {
                    "write `auto_renew` to renew every third of the timeout, or `auto_renew = 10` to renew every 10 s"
                } else {
                    "leave it out to not renew"
                };
                return Err(syn::Error::new(
                    flag.span(),
                    format!("`auto_renew` is a flag: {what}"),
                ));
            }
            Some(_) => Some(given.positive("10")?),
        };
        self.auto_renew = given.spanned(every);
        Ok(())
    }

    fn set_wait(&mut self, given: Given) -> syn::Result<()> {
        self.wait = given.spanned(given.duration("5")?);
        Ok(())
    }

    fn set_retry(&mut self, given: Given) -> syn::Result<()> {
        let times = given.count(
            "5",
            "`retry` must be a whole number of retries up to 4294967295",
            "`retry` takes the number of retries after the first try, e.g. `retry = 5`",
        )?;
        self.retry = given.spanned(times);
        Ok(())
    }

    fn set_durable(&mut self, given: Given) -> syn::Result<()> {
        let replicas = given.positive_count(
            "1",
            (
                "`durable` must be a whole number of replicas up to 4294967295",
                "`durable` takes how many replicas must have the lock before the body runs, e.g. `durable = 1`",
            ),
            "`durable = 0` waits for no replica: give at least 1, or leave `durable` out",
        )?;
        self.durable = given.spanned(replicas);
        Ok(())
    }

    fn set_durable_wait(&mut self, given: Given) -> syn::Result<()> {
        self.durable_wait = given.spanned(given.positive("\"500ms\"")?);
        Ok(())
    }

    fn set_retry_delay(&mut self, given: Given) -> syn::Result<()> {
        self.retry_delay = given.spanned(given.duration("\"200ms\"")?);
        Ok(())
    }

    fn set_skip(&mut self, given: Given) -> syn::Result<()> {
        self.skip = given.flag()?;
        Ok(())
    }

    fn set_min_hold(&mut self, given: Given) -> syn::Result<()> {
        self.min_hold = given.spanned(given.positive("60")?);
        Ok(())
    }

    fn set_fencing(&mut self, given: Given) -> syn::Result<()> {
        self.fencing = given.flag()?;
        Ok(())
    }

    fn set_on_lost(&mut self, given: Given) -> syn::Result<()> {
        let value = given.value("abort")?;
        let (written, quoted) = match string_literal(value) {
            Some(text) => (Some(text.value()), true),
            None => (option_name(value).map(|name| name.to_string()), false),
        };
        let policy = match written.as_deref() {
            Some("abort") if !quoted => OnLost::Abort,
            Some("ignore") if !quoted => OnLost::Ignore,
            Some(word @ ("abort" | "ignore")) => {
                return Err(syn::Error::new(
                    value.span(),
                    format!("write `on_lost = {word}`, without quotes"),
                ));
            }
            _ => {
                return Err(syn::Error::new(
                    value.span(),
                    "`on_lost` is `abort` (drop the body and return `LockError::Lost`) or `ignore` (the default)",
                ));
            }
        };
        self.on_lost = given.spanned(policy);
        Ok(())
    }

    fn set_escape(&mut self, given: Given) -> syn::Result<()> {
        self.escape = given.flag()?;
        Ok(())
    }

    fn set_permits(&mut self, given: Given) -> syn::Result<()> {
        let permits = given.positive_count(
            "4",
            (
                "`permits` must be a whole number of permits up to 4294967295",
                "`permits` is how many callers may hold the lock at once (a semaphore), e.g. `permits = 4`",
            ),
            "`permits = 0` would admit nobody: give at least 1, or leave `permits` out for a lock",
        )?;
        self.permits = given.spanned(permits);
        Ok(())
    }

    fn set_reentrant(&mut self, given: Given) -> syn::Result<()> {
        self.reentrant = given.flag()?;
        Ok(())
    }

    fn set_locker(&mut self, given: Given) -> syn::Result<()> {
        self.locker = given.spanned(given.value("self.locker")?.clone());
        Ok(())
    }

    fn set_crate(&mut self, given: Given) -> syn::Result<()> {
        let value = given.value("\"lock_runtime\"")?;
        let Some(text) = string_literal(value) else {
            let written = value.to_token_stream().to_string().replace(' ', "");
            return Err(syn::Error::new(
                value.span(),
                format!("`crate` takes the path in quotes: `crate = \"{written}\"`"),
            ));
        };
        let path = ident::path(&text.value(), text.span())
            .ok_or_else(|| syn::Error::new(text.span(), ident::path_problem(&text.value())))?;
        self.krate = given.spanned(path);
        Ok(())
    }
}

fn option_names() -> Vec<&'static str> {
    OPTIONS.iter().map(|(name, _)| *name).collect()
}

fn option(name: &Ident) -> Option<Setter> {
    OPTIONS
        .iter()
        .find(|(option, _)| name == option)
        .map(|(_, setter)| *setter)
}

/// `timeout`, `crate`: a single-segment path.
fn option_name(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Path(ExprPath {
            path, qself: None, ..
        }) if path.segments.len() == 1 && path.leading_colon.is_none() => {
            Some(path.segments[0].ident.clone())
        }
        _ => None,
    }
}

fn is_bool(expr: &Expr, value: bool) -> bool {
    matches!(expr, Expr::Lit(ExprLit { lit: Lit::Bool(lit), .. }) if lit.value == value)
}
