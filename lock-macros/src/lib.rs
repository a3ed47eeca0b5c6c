//! The `#[distributed_lock]` attribute of the [`lock-runtime`] crate. Depend on
//! `lock-runtime`, which re-exports it and documents it; this crate is an implementation
//! detail.
//!
//! [`lock-runtime`]: https://docs.rs/lock-runtime

mod attr;
mod duration;
mod errors;
mod expand;
mod func;
mod ident;
mod key;
mod names;
mod valid;

use proc_macro::TokenStream;

/// Runs an `async fn`'s body under a distributed lock whose key is built from the
/// function's arguments. See `lock_runtime::distributed_lock` for the documentation.
#[proc_macro_attribute]
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::distributed_lock(args.into(), item.into()).into()
}

mod entry {
    use std::panic::{self, AssertUnwindSafe};

    use proc_macro2::{Span, TokenStream};
    use quote::ToTokens;

    use crate::errors::Errors;
    use crate::func::LockFn;
    use crate::{attr, expand, valid};

    /// Expands the attribute. A bug that panics still leaves the function in place, with
    /// an error, so that call sites do not cascade into more errors.
    pub(crate) fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
        let fallback = item.clone();
        panic::catch_unwind(AssertUnwindSafe(|| try_expand(args, item))).unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|why| (*why).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            with_error(fallback, Err(internal(&why)))
        })
    }

    /// Parses, validates and expands; on any error emits the function unchanged plus
    /// every error.
    fn try_expand(args: TokenStream, item: TokenStream) -> TokenStream {
        let mut errors = Errors::default();
        let parsed_args = attr::parse(args, &mut errors);
        let item_fn = match syn::parse2::<syn::ItemFn>(item.clone()) {
            Ok(item_fn) => item_fn,
            Err(error) => {
                errors.push(syn::Error::new(
                    error.span(),
                    format!("#[distributed_lock] goes on an `async fn` with a body ({error})"),
                ));
                return with_error(item, errors.finish());
            }
        };
        let model = valid::validate(parsed_args, LockFn::new(item_fn.clone()), &mut errors);
        match (errors.finish(), model) {
            (Ok(()), Some(model)) => expand::expand(&model),
            // Never expand to the function without its lock, even on a bug.
            (Ok(()), None) => with_error(item, Err(internal("no model and no error"))),
            (result, _) => with_error(item_fn.into_token_stream(), result),
        }
    }

    fn internal(why: &str) -> syn::Error {
        syn::Error::new(
            Span::call_site(),
            format!(
                "internal error in #[distributed_lock] ({why}); please report it with this attribute"
            ),
        )
    }

    fn with_error(mut tokens: TokenStream, result: syn::Result<()>) -> TokenStream {
        if let Err(error) = result {
            tokens.extend(error.into_compile_error());
        }
        tokens
    }

    #[cfg(test)]
    mod tests {
        use proc_macro2::Span;
        use quote::quote;

        use super::try_expand;

        /// Expands without the panic safety net, so a panic fails the test.
        fn expand(template: &str, options: proc_macro2::TokenStream) -> String {
            let template = syn::LitStr::new(template, Span::call_site());
            let item = quote! {
                async fn locked(pair: (u8, (u8, u8)), r#type: u8, été: u8) -> Result<(), E> { Ok(()) }
            };
            try_expand(quote!(#template #options), item).to_string()
        }

        #[test]
        fn odd_templates_are_errors_or_locks_never_panics() {
            for template in [
                "<pair.r#0>",
                "<r#self>",
                "<pair.r#>",
                "<pair.r#0x1>",
                "<pair.4294967296>",
                "<pair.01>",
                "<pair..0>",
                "<pair.->",
                "<pair.1.r#type>",
                "<type>",
                "<r#type>",
                "<été>",
                "<r#été>",
                "<\u{300}a>",
                "<pair.\u{300}>",
                "<a\u{0}>",
                "<>",
                "<<>",
                "{",
                "}",
                "{type}",
                "<type:?>",
                "<type()>",
                "< type >",
                "<1.0>",
                "<self>",
                "<Self>",
                "<crate>",
                "<super.x>",
                "<pair><type>",
                "\"",
                "<\\>",
            ] {
                let expanded = expand(template, quote!());
                assert!(expanded.contains("fn locked"), "{template}: {expanded}");
            }
            assert!(!expand("<type>:<pair.1.0>:<été>", quote!()).contains("compile_error"));
            assert!(expand("<pair.r#0>", quote!()).contains("compile_error"));
        }

        #[test]
        fn odd_crate_paths_are_errors_never_panics() {
            for krate in [
                "lock-runtime",
                "\\",
                "\"",
                "a b",
                "",
                "::",
                "type",
                "r#type",
                "a::",
            ] {
                let expanded = expand("job", quote!(, crate = #krate));
                assert!(expanded.contains("compile_error"), "{krate}: {expanded}");
            }
        }
    }
}
