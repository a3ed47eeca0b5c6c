//! Every rule the attribute checks at compile time; produces the validated model.
//!
//! Only what is known at compile time is checked here. Rules that depend on the locker's
//! settings (its default TTL against `min_hold` or an `auto_renew` interval, fencing on
//! Redlock) are checked by `LockRequest` on every call, and that error names the
//! attribute and the function. Whether the return type can carry a `LockError`, or has a
//! default value under `skip`, is decided from the type by the compiler (see
//! `lock_runtime::__private::{LockResult, SkipResult}`), never from its name.

use syn::ext::IdentExt as _;
use syn::spanned::Spanned;
use syn::{LitStr, Path};

use crate::attr::Args;
use crate::errors::Errors;
use crate::func::{Body, LockFn};
use crate::key::{self, Placeholder, Segment};

/// A function and attribute that passed every check.
pub(crate) struct Model {
    pub(crate) func: LockFn,
    pub(crate) body: Body,
    pub(crate) template: LitStr,
    pub(crate) segments: Vec<Segment>,
    pub(crate) args: Args,
    pub(crate) krate: Path,
}

/// Checks `args` against `func`, recording every problem in `errors`.
pub(crate) fn validate(args: Args, mut func: LockFn, errors: &mut Errors) -> Option<Model> {
    check_signature(&func, errors);
    let segments = args
        .template
        .as_ref()
        .and_then(|template| check_template(template, &func, errors));
    check_options(&args, errors);
    if let (Some(segments), Some(template)) = (&segments, &args.template) {
        check_escaped_separators(segments, &args, template, errors);
    }
    Some(Model {
        body: func.body.take()?,
        template: args.template.clone()?,
        segments: segments?,
        krate: args.krate.as_ref().map_or_else(
            || syn::parse_quote!(::lock_runtime),
            |krate| krate.value.clone(),
        ),
        func,
        args,
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
    if func.body.is_none() {
        errors.at(
            sig.fn_token.span(),
            "#[distributed_lock] goes on an `async fn` (also one in an `#[async_trait]` impl): \
             write `async fn`. If another attribute such as #[tokio::test] is above this one, \
             put #[distributed_lock] first",
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
        if let Segment::Value(placeholder) = segment
            && let Err(problem) = check_placeholder(placeholder, func)
        {
            ok = false;
            errors.at(span, problem);
        }
    }
    ok.then_some(segments)
}

fn check_placeholder(placeholder: &Placeholder, func: &LockFn) -> Result<(), String> {
    let function = &func.item.sig.ident;
    let source = &placeholder.source;
    if placeholder.root == "self" {
        return match func.has_receiver {
            true => Ok(()),
            false => Err(format!(
                "`{source}` uses `self`, but `{function}` has no `self` receiver; name one of its arguments instead"
            )),
        };
    }
    let names: Vec<String> = func
        .bindings
        .iter()
        .map(|binding| binding.ident.unraw().to_string())
        .chain(func.has_receiver.then(|| "self".to_owned()))
        .collect();
    if names.contains(&placeholder.root) {
        return Ok(());
    }
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
        let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
        format!("its arguments are {}", names.join(", "))
    };
    Err(format!(
        "`{source}` names no argument of `{function}`{hint} ({available})"
    ))
}

/// Rules across options, known at compile time.
fn check_options(args: &Args, errors: &mut Errors) {
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
    if let (Some(timeout), Some(min_hold), None) = (&args.timeout, &args.min_hold, &args.auto_renew)
        && min_hold.value > timeout.value
    {
        errors.at(
            min_hold.span,
            format!(
                "`min_hold = {:?}` is longer than `timeout = {:?}`: the lock would expire first; \
                 raise `timeout` or add `auto_renew`",
                min_hold.value, timeout.value
            ),
        );
    }
    if let (Some(wait), None) = (&args.durable_wait, &args.durable) {
        errors.at(
            wait.span,
            "`durable_wait` needs `durable = N` (how many replicas to wait for)",
        );
    }
    if let (Some(reentrant), Some(permits)) = (&args.reentrant, &args.permits) {
        let mut error = syn::Error::new(
            reentrant.span,
            "`reentrant` is for locks: with `permits`, each call takes one more permit of the semaphore; remove one of them",
        );
        error.combine(syn::Error::new(permits.span, "`permits` given here"));
        errors.push(error);
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
}

/// With `escape`, a value keeps ASCII letters, digits, `-`, `.`, `_` and `~`, and `%`
/// starts its escapes: text between two placeholders separates them only if it starts
/// with another character.
fn check_escaped_separators(
    segments: &[Segment],
    args: &Args,
    template: &LitStr,
    errors: &mut Errors,
) {
    if args.escape.is_none() {
        return;
    }
    for window in segments.windows(3) {
        if let [
            Segment::Value(before),
            Segment::Text(text),
            Segment::Value(after),
        ] = window
            && let Some(first) = text
                .chars()
                .next()
                .filter(|c| c.is_ascii_alphanumeric() || "-._~%".contains(*c))
        {
            errors.at(
                template.span(),
                format!(
                    "with `escape`, values keep ASCII letters, digits, `-`, `.`, `_` and `~` (and `%` \
                     starts an escape), so the `{first}` after `{}` does not separate it from `{}`; \
                     start the separator with another character, e.g. `{}:{text}{}`",
                    before.source, after.source, before.source, after.source
                ),
            );
        }
    }
}
