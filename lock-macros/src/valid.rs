//! Every rule the attribute checks at compile time; produces the validated model.

use std::time::Duration;

use syn::spanned::Spanned;
use syn::{Expr, LitStr, Path};

use crate::attr::{Args, OnLost};
use crate::errors::Errors;
use crate::func::{LockFn, Returns};
use crate::key::{self, Segment};

/// The options as the runtime receives them.
pub(crate) struct Options {
    pub(crate) ttl: Option<Duration>,
    pub(crate) wait: Option<Duration>,
    pub(crate) retry: Option<(u32, Duration)>,
    pub(crate) renew: Option<Option<Duration>>,
    pub(crate) fencing: bool,
    pub(crate) skip: bool,
    pub(crate) min_hold: Option<Duration>,
    pub(crate) abort_on_lost: bool,
}

/// A function and attribute that passed every check.
pub(crate) struct Model {
    pub(crate) func: LockFn,
    pub(crate) template: LitStr,
    pub(crate) segments: Vec<Segment>,
    pub(crate) options: Options,
    pub(crate) locker: Option<Expr>,
    pub(crate) krate: Path,
}

/// The delay between retries when `retry` is given without `retry_delay`: the Python
/// original's 0.1 s.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Checks `args` against `func`, recording every problem in `errors`.
pub(crate) fn validate(args: Args, func: LockFn, errors: &mut Errors) -> Option<Model> {
    check_signature(&func, errors);
    let segments = args
        .template
        .as_ref()
        .and_then(|template| check_template(template, &func, errors));
    let options = check_options(&args, &func, errors);
    let template = args.template?;
    Some(Model {
        func,
        template,
        segments: segments?,
        options,
        locker: args.locker,
        krate: args
            .krate
            .unwrap_or_else(|| syn::parse_quote!(::lock_runtime)),
    })
}

fn check_signature(func: &LockFn, errors: &mut Errors) {
    let sig = &func.item.sig;
    if let Some(constness) = &sig.constness {
        errors.at(
            constness.span(),
            "#[distributed_lock] cannot go on a `const fn`: taking a lock needs I/O at run time",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.at(
            abi.span(),
            "#[distributed_lock] cannot go on an `extern` function; wrap it in a plain `async fn`",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(
            variadic.span(),
            "#[distributed_lock] does not support variadic functions",
        );
    }
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span(),
            "#[distributed_lock] goes on an `async fn`: write `async fn`. \
             If another attribute such as #[tokio::test] is above this one, put #[distributed_lock] first",
        );
    }
}

/// Parses the template and checks every placeholder against the function's bindings.
fn check_template(template: &LitStr, func: &LockFn, errors: &mut Errors) -> Option<Vec<Segment>> {
    let span = template.span();
    let segments = match key::parse(&template.value()) {
        Ok(segments) => segments,
        Err(problems) => {
            problems.iter().for_each(|problem| errors.at(span, problem));
            return None;
        }
    };
    let mut ok = true;
    for segment in &segments {
        let Segment::Value(placeholder) = segment else {
            continue;
        };
        if placeholder.root == "self" && !placeholder.raw_root {
            if !func.has_receiver {
                ok = false;
                errors.at(
                    span,
                    format!(
                        "`{}` uses `self`, but `{}` has no `self` receiver; name one of its arguments instead",
                        placeholder.source, func.item.sig.ident
                    ),
                );
            }
            continue;
        }
        let known = func
            .bindings
            .iter()
            .any(|binding| syn::ext::IdentExt::unraw(&binding.ident) == placeholder.root);
        if known {
            continue;
        }
        ok = false;
        let names: Vec<String> = func
            .bindings
            .iter()
            .map(|binding| syn::ext::IdentExt::unraw(&binding.ident).to_string())
            .chain(func.has_receiver.then(|| "self".to_owned()))
            .collect();
        let hint = names
            .iter()
            .map(|name| (strsim::levenshtein(&placeholder.root, name), name))
            .min()
            .filter(|(distance, name)| *distance <= 2.max(name.len() / 3))
            .map(|(_, name)| format!("; did you mean `{name}`?"))
            .unwrap_or_default();
        let available = if names.is_empty() {
            "the function has no arguments".to_owned()
        } else {
            format!(
                "its arguments are {}",
                names
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        errors.at(
            span,
            format!(
                "`{}` names no argument of `{}`{hint} ({available})",
                placeholder.source, func.item.sig.ident
            ),
        );
    }
    ok.then_some(segments)
}

fn check_options(args: &Args, func: &LockFn, errors: &mut Errors) -> Options {
    let ttl = args.timeout.as_ref().map(|timeout| timeout.value);
    if let (Some(timeout), Some(renew)) = (&args.timeout, &args.auto_renew)
        && let Some(every) = renew.value.filter(|every| *every >= timeout.value)
    {
        errors.at(
            renew.span,
            format!(
                "`auto_renew = {every:?}` must be shorter than `timeout = {:?}`; \
                 leave it as `auto_renew` to renew every third of the timeout",
                timeout.value
            ),
        );
    }
    if let (Some(min_hold), None) = (&args.min_hold, &args.auto_renew) {
        let ttl_text = ttl.map_or("the default timeout of 30s".to_owned(), |ttl| {
            format!("`timeout = {ttl:?}`")
        });
        if min_hold.value > ttl.unwrap_or(Duration::from_secs(30)) {
            errors.at(
                min_hold.span,
                format!(
                    "`min_hold = {:?}` is longer than {ttl_text}: the lock would expire first; \
                     raise `timeout` or add `auto_renew`",
                    min_hold.value
                ),
            );
        }
    }
    if let (Some(delay), None) = (&args.retry_delay, &args.retry) {
        errors.at(
            delay.span,
            "`retry_delay` needs `retry = N` (how many retries to make)",
        );
    }
    if let (Some(retry), Some(wait)) = (&args.retry, &args.wait) {
        let mut error = syn::Error::new(
            retry.span,
            "`retry` and `wait` are two waiting policies: give one (`wait` is woken by the release, `retry` sleeps a fixed delay)",
        );
        error.combine(syn::Error::new(wait.span, "`wait` given here"));
        errors.push(error);
    }
    if func.returns == Returns::Other && args.skip.is_none() {
        let span = match &func.item.sig.output {
            syn::ReturnType::Type(_, ty) => ty.span(),
            syn::ReturnType::Default => func.item.sig.ident.span(),
        };
        errors.at(
            span,
            "a #[distributed_lock] function must return `Result<T, E>` with `E: From<lock_runtime::LockError>`, \
             so that a held lock or a Redis failure can be returned as an error; \
             or add `skip` to return `Default::default()` without running the body when another instance holds the lock",
        );
    }
    Options {
        ttl,
        wait: args.wait.as_ref().map(|wait| wait.value),
        retry: args.retry.as_ref().map(|retry| {
            (
                retry.value,
                args.retry_delay
                    .as_ref()
                    .map_or(DEFAULT_RETRY_DELAY, |delay| delay.value),
            )
        }),
        renew: args.auto_renew.as_ref().map(|renew| renew.value),
        fencing: args.fencing.is_some(),
        skip: args.skip.is_some(),
        min_hold: args.min_hold.as_ref().map(|min_hold| min_hold.value),
        abort_on_lost: args
            .on_lost
            .as_ref()
            .is_some_and(|policy| policy.value == OnLost::Abort),
    }
}
