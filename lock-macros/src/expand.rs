//! Code generation. Assumes a validated model and reports no user errors.
//!
//! The expansion builds the request with the public API (`locker.lock(name)` and the
//! setters of the options the user wrote) and runs the body through
//! `__private::run`, i.e. `LockRequest::run`:
//!
//! ```text
//! let __lock_request = match (locker, KeyBuilder::..finish()) {
//!     (Ok(locker), Ok(name)) => Ok(locker.lock(name).ttl(..).auto_renew()),
//!     (Err(error), _) | (_, Err(error)) => Err(error),
//! };
//! let __lock_body = async move { BODY };
//! match __private::run("pay", __lock_request, __lock_body).await {
//!     Ok(output) => output,
//!     Err(error) => <Ret as __private::LockResult>::from_lock_error(error),
//! }
//! ```
//!
//! Spans: a name the user's code must resolve (an argument, `self`) resolves at the call
//! site; every other generated token resolves at the macro (`Span::mixed_site()`). Tokens
//! about a piece of user code (the template, the return type, the `locker` expression)
//! are located on it, so that rustc's errors point there, but stay marked as generated,
//! so that rustc offers no suggestion that would rewrite the user's text with them.

use std::time::Duration;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::Type;
use syn::ext::IdentExt as _;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;

use crate::attr::OnLost;
use crate::ident;
use crate::key::{Field, Placeholder, Segment};
use crate::valid::Model;

/// The annotated function with its body running under the lock.
pub(crate) fn expand(model: &Model) -> TokenStream {
    let func = &model.func;
    let outer_attrs = func.outer_attrs();
    let inner_attrs = func.inner_attrs();
    let vis = &func.item.vis;
    let sig = &func.item.sig;
    let mut locked = locked_body(model);
    if model.body.boxed {
        locked = quote!(::std::boxed::Box::pin(async move { #locked }));
    }
    let mut tokens = quote!(#(#outer_attrs)* #vis #sig);
    // The user's braces keep the item's span in user code, so lints such as `dead_code`
    // still fire for the function.
    func.item.block.brace_token.surround(&mut tokens, |tokens| {
        tokens.extend(quote!(#(#inner_attrs)* #locked));
    });
    tokens
}

/// Builds the request, runs the body under it, and turns a lock error into the return
/// type.
fn locked_body(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let [request, body, ret, output, error] = [
        "__lock_request",
        "__lock_body",
        "__lock_ret",
        "__lock_output",
        "__lock_error",
    ]
    .map(local);
    let build = request_expr(model);
    let (ret_ty, ret_span) = return_type(model);
    let stmts = &model.body.stmts;
    let function = model.func.item.sig.ident.unraw().to_string();
    let at = generated(ret_span);
    let conversion = match model.args.skip {
        Some(_) => quote_spanned!(at=> #krate::__private::SkipResult<_>),
        None => quote_spanned!(at=> #krate::__private::LockResult),
    };
    let from_lock_error = quote_spanned!(at=> <#ret_ty as #conversion>::from_lock_error(#error));
    quote! {
        let #request = #build;
        let #body = async move {
            #[allow(unreachable_code, clippy::diverging_sub_expression)]
            if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#ret_ty> {
                return #ret;
            }
            let #ret: #ret_ty = { #(#stmts)* };
            #[allow(unreachable_code)]
            #ret
        };
        match #krate::__private::run(#function, #request, #body).await {
            ::core::result::Result::Ok(#output) => #output,
            ::core::result::Result::Err(#error) => #from_lock_error,
        }
    }
}

/// `Result<LockRequest, LockError>`: the locker and the name, then `locker.lock(name)`
/// and the setters.
fn request_expr(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let [locker, name, error] = ["__lock_locker", "__lock_name", "__lock_error"].map(local);
    let locker_expr = match &model.args.locker {
        Some(given) => {
            let expr = &given.value;
            let at = generated(expr.span());
            quote_spanned! {at=>
                ::core::result::Result::<_, #krate::LockError>::Ok(
                    <_ as #krate::__private::AsLocker>::as_locker(&(#expr))
                )
            }
        }
        None => quote!(#krate::default_locker()),
    };
    let key = key_expr(model);
    let setters = setters(model);
    let kind = match &model.args.permits {
        Some(permits) => {
            let count = permits.value;
            let method = Ident::new("semaphore", generated(permits.span));
            quote!(#method(#name, #count))
        }
        None => quote!(lock(#name)),
    };
    quote! {
        match (#locker_expr, #key) {
            (::core::result::Result::Ok(#locker), ::core::result::Result::Ok(#name)) => {
                ::core::result::Result::Ok(#locker.#kind #setters)
            }
            (::core::result::Result::Err(#error), _) | (_, ::core::result::Result::Err(#error)) => {
                ::core::result::Result::Err(#error)
            }
        }
    }
}

/// The request's setters for the options the user wrote, each located on its option.
fn setters(model: &Model) -> TokenStream {
    let (args, krate) = (&model.args, &model.krate);
    let mut calls = TokenStream::new();
    let mut call = |span: Span, method: &str, arguments: TokenStream| {
        let method = Ident::new(method, generated(span));
        calls.extend(quote!(.#method(#arguments)));
    };
    if let Some(timeout) = &args.timeout {
        call(timeout.span, "ttl", duration(timeout.value));
    }
    if let Some(wait) = &args.wait {
        call(wait.span, "wait", duration(wait.value));
    }
    if let Some(retry) = &args.retry {
        let times = retry.value;
        let delay = match &args.retry_delay {
            Some(delay) => duration(delay.value),
            None => quote!(#krate::__private::DEFAULT_RETRY_DELAY),
        };
        call(retry.span, "retry", quote!(#times, #delay));
    }
    if let Some(renew) = &args.auto_renew {
        match renew.value {
            None => call(renew.span, "auto_renew", quote!()),
            Some(every) => call(renew.span, "renew_every", duration(every)),
        }
    }
    if let Some(fencing) = &args.fencing {
        call(fencing.span, "fencing", quote!());
    }
    if let Some(reentrant) = &args.reentrant {
        call(reentrant.span, "reentrant", quote!());
    }
    if let Some(on_lost) = &args.on_lost {
        let policy = match on_lost.value {
            OnLost::Abort => quote!(#krate::OnLost::Abort),
            OnLost::Ignore => quote!(#krate::OnLost::Ignore),
        };
        call(on_lost.span, "on_lost", policy);
    }
    if let Some(min_hold) = &args.min_hold {
        call(min_hold.span, "min_hold", duration(min_hold.value));
    }
    if let Some(durable) = &args.durable {
        let replicas = durable.value;
        let wait = match &args.durable_wait {
            Some(wait) => duration(wait.value),
            None => quote!(#krate::__private::DEFAULT_DURABLE_WAIT),
        };
        call(durable.span, "durable", quote!(#replicas, #wait));
    }
    // The template labels the lock's metrics and spans (a small, fixed set; the name is not).
    let template = &model.template;
    call(template.span(), "label", quote!(#template));
    calls
}

/// `KeyBuilder::with_capacity(n).text("order:").value(.., "<order_id>").finish()`,
/// located on the template so that rustc's errors about a value point there.
fn key_expr(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let at = model.template.span();
    let mut capacity = 0;
    let mut calls = TokenStream::new();
    if model.args.escape.is_some() {
        calls.extend(quote!(.escaped()));
    }
    for segment in &model.segments {
        match segment {
            Segment::Text(text) => {
                capacity += text.len();
                calls.extend(quote!(.text(#text)));
            }
            Segment::Value(placeholder) => {
                capacity += 8;
                let value = placeholder_expr(placeholder, at);
                let source = &placeholder.source;
                calls.extend(quote_spanned! {generated(at)=>
                    .value(<_ as #krate::__private::KeyPart>::key_part(&(#value)), #source)
                });
            }
        }
    }
    quote!(#krate::__private::KeyBuilder::with_capacity(#capacity) #calls .finish())
}

/// `order.customer.0`: the root resolves among the function's arguments, the fields are
/// generated.
fn placeholder_expr(placeholder: &Placeholder, at: Span) -> TokenStream {
    let root = ident::new(&placeholder.root, Span::call_site().located_at(at));
    let mut value = root.into_token_stream();
    let at = generated(at);
    for field in &placeholder.fields {
        let member = match field {
            Field::Named(name) => ident::new(name, at).into_token_stream(),
            Field::Index(index) => syn::Index {
                index: *index,
                span: at,
            }
            .into_token_stream(),
        };
        value.extend(quote_spanned!(at=> . #member));
    }
    value
}

/// The type the body evaluates to, with every `impl Trait` replaced by `_` so it can
/// annotate the body, and where to report about it.
fn return_type(model: &Model) -> (TokenStream, Span) {
    match &model.body.output {
        Some(ty) => (erase_impl_trait(ty), ty.span()),
        None => {
            let at = model.func.item.sig.ident.span();
            (quote_spanned!(generated(at)=> ()), at)
        }
    }
}

/// A local of the expansion, invisible to the user's code.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// A span at `at` that rustc treats as generated code: its errors point at `at`, but no
/// suggestion rewrites the user's text there.
fn generated(at: Span) -> Span {
    Span::mixed_site().located_at(at)
}

fn duration(value: Duration) -> TokenStream {
    let secs = Literal::u64_suffixed(value.as_secs());
    let nanos = Literal::u32_suffixed(value.subsec_nanos());
    quote!(::core::time::Duration::new(#secs, #nanos))
}

fn erase_impl_trait(ty: &Type) -> TokenStream {
    struct Eraser;
    impl VisitMut for Eraser {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    attrs: Vec::new(),
                    underscore_token: syn::Token![_](generated(impl_trait.impl_token.span)),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty.into_token_stream()
}
