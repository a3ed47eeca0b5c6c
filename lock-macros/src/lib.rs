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
mod key;
mod valid;

use proc_macro::TokenStream;

/// Runs an `async fn`'s body under a distributed lock whose key is built from the
/// function's arguments. See `lock_runtime::distributed_lock` for the documentation.
#[proc_macro_attribute]
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::distributed_lock(args.into(), item.into()).into()
}

mod entry {
    use proc_macro2::TokenStream;
    use quote::ToTokens;

    use crate::errors::Errors;
    use crate::func::LockFn;
    use crate::{attr, expand, valid};

    /// Parses, validates and expands; on any error emits the function unchanged plus
    /// every error, so call sites do not cascade into more errors.
    pub(crate) fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
        let mut errors = Errors::default();
        let parsed_args = attr::parse(args, &mut errors);
        let item_fn = match syn::parse2::<syn::ItemFn>(item.clone()) {
            Ok(item_fn) => item_fn,
            Err(error) => {
                let mut tokens = item;
                errors.push(syn::Error::new(
                    error.span(),
                    format!("#[distributed_lock] goes on an `async fn` with a body ({error})"),
                ));
                if let Err(error) = errors.finish() {
                    tokens.extend(error.into_compile_error());
                }
                return tokens;
            }
        };
        let model = valid::validate(parsed_args, LockFn::new(item_fn.clone()), &mut errors);
        match (errors.finish(), model) {
            (Ok(()), Some(model)) => expand::expand(&model),
            (result, _) => {
                let mut tokens = item_fn.into_token_stream();
                if let Err(error) = result {
                    tokens.extend(error.into_compile_error());
                }
                tokens
            }
        }
    }
}
