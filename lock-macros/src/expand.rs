//! Code generation. Assumes a validated model and reports no user errors.

use std::time::Duration;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{ReturnType, Type};

use crate::func::Returns;
use crate::key::Segment;
use crate::valid::Model;

/// The annotated function with its body running under the lock.
pub(crate) fn expand(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let func = &model.func;
    let outer_attrs = func.outer_attrs();
    let inner_attrs = func.inner_attrs();
    let vis = &func.item.vis;
    let sig = &func.item.sig;
    let body = func.body();

    let site = Span::mixed_site();
    let name = Ident::new("__lock_name", site);
    let locker = Ident::new("__lock_locker", site);
    let body_future = Ident::new("__lock_body", site);
    let ret = Ident::new("__lock_ret", site);
    let output = Ident::new("__lock_output", site);
    let error = Ident::new("__lock_error", site);

    let key = key_expr(model);
    let locker_expr = match &model.locker {
        Some(expr) => quote!(#krate::__private::locker_of(&(#expr))),
        None => quote!(#krate::default_locker()),
    };
    let options = options_expr(model);

    let (ret_ty, ret_span) = match &sig.output {
        ReturnType::Type(_, ty) => (erase_impl_trait(ty), ty.span()),
        ReturnType::Default => (quote!(()), sig.ident.span()),
    };
    // The helpers' paths carry the return type's span, so an unsatisfied bound (an error
    // type without `From<LockError>`, a `skip` type without `Default`) is reported there.
    let helper = |name: &str| {
        let name = Ident::new(name, ret_span);
        respan(quote!(#krate::__private::#name), ret_span)
    };
    let skipped = match func.returns {
        Returns::Result => helper("skipped"),
        Returns::Other => helper("skipped_default"),
    };
    let skipped = quote_spanned!(ret_span=> #skipped());
    let failed = match func.returns {
        Returns::Result => helper("fail"),
        Returns::Other => helper("skipped_on_failure"),
    };
    let failed = quote_spanned!(ret_span=> #failed(#error));
    let (skipped_arm, failed_arm) = if model.options.skip {
        (
            quote!(#krate::__private::Outcome::Skipped(_) => #skipped,),
            quote!(#krate::__private::Outcome::Failed(#error) => #failed,),
        )
    } else {
        (
            quote!(),
            quote!(#krate::__private::Outcome::Failed(#error) | #krate::__private::Outcome::Skipped(#error) => #failed,),
        )
    };

    let inner = quote! {
            #(#inner_attrs)*
            let #name: ::std::string::String = #key;
            let #locker = #locker_expr;
            let #body_future = async move {
                #[allow(unreachable_code, clippy::diverging_sub_expression)]
                if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#ret_ty> {
                    return #ret;
                }
                let #ret: #ret_ty = { #body };
                #[allow(unreachable_code)]
                #ret
            };
            match #krate::__private::run(#locker, #name, #options, #body_future).await {
                #krate::__private::Outcome::Ran(#output) => #output,
                #skipped_arm
                #failed_arm
            }
    };
    let mut tokens = quote!(#(#outer_attrs)* #vis #sig);
    // The user's braces keep the item's span in user code, so lints such as `dead_code`
    // still fire for the function.
    func.item
        .block
        .brace_token
        .surround(&mut tokens, |tokens| tokens.extend(inner));
    tokens
}

/// `KeyBuilder::with_capacity(n).text("order:").value(&(order_id)).finish()`, with the
/// placeholders' tokens spanned at the template so rustc's errors point there.
fn key_expr(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let span = model.template.span();
    let mut capacity = 0;
    let mut calls = TokenStream::new();
    for segment in &model.segments {
        match segment {
            Segment::Text(text) => {
                capacity += text.len();
                calls.extend(quote!(.text(#text)));
            }
            Segment::Value(placeholder) => {
                capacity += 8;
                let root = if placeholder.raw_root {
                    Ident::new_raw(&placeholder.root, span)
                } else {
                    Ident::new(&placeholder.root, span)
                };
                let mut value = root.into_token_stream();
                for part in &placeholder.path {
                    let member = match part.parse::<u32>() {
                        Ok(index) => syn::Index { index, span }.into_token_stream(),
                        Err(_) => match part.strip_prefix("r#") {
                            Some(raw) => Ident::new_raw(raw, span).into_token_stream(),
                            None => Ident::new(part, span).into_token_stream(),
                        },
                    };
                    value.extend(quote_spanned!(span=> . #member));
                }
                calls.extend(quote_spanned!(span=> .value(&(#value))));
            }
        }
    }
    quote!(#krate::__private::KeyBuilder::with_capacity(#capacity) #calls .finish())
}

/// `tokens` with every span set to `span` (for paths, whose resolution does not depend on it).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = proc_macro2::TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

fn duration(value: Duration) -> TokenStream {
    let secs = Literal::u64_suffixed(value.as_secs());
    let nanos = Literal::u32_suffixed(value.subsec_nanos());
    quote!(::core::time::Duration::new(#secs, #nanos))
}

fn optional(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

fn options_expr(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let options = &model.options;
    let ttl = optional(options.ttl.map(duration));
    let wait = optional(options.wait.map(duration));
    let retry = optional(options.retry.map(|(times, delay)| {
        let delay = duration(delay);
        quote!((#times, #delay))
    }));
    let renew = optional(options.renew.map(|every| optional(every.map(duration))));
    let min_hold = optional(options.min_hold.map(duration));
    let fencing = options.fencing;
    let skip = options.skip;
    let abort_on_lost = options.abort_on_lost;
    quote! {
        #krate::__private::Options {
            ttl: #ttl,
            wait: #wait,
            retry: #retry,
            renew: #renew,
            fencing: #fencing,
            skip: #skip,
            min_hold: #min_hold,
            abort_on_lost: #abort_on_lost,
        }
    }
}

/// The return type with every `impl Trait` replaced by `_`, so it can annotate the body.
fn erase_impl_trait(ty: &Type) -> TokenStream {
    struct Eraser;
    impl VisitMut for Eraser {
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
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty.into_token_stream()
}
