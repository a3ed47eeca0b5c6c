//! The annotated function: its parts, the names its arguments bind, and its return type.

use proc_macro2::TokenStream;
use syn::{Attribute, FnArg, ItemFn, Pat, ReturnType, Type};

/// What the return type says about how the lock's errors can be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returns {
    /// A type named `...Result`: errors are returned as `Err(LockError.into())`.
    Result,
    /// Anything else (`()`, `Option<T>`, `bool`, ...): only `skip` can handle contention.
    Other,
}

/// One name bound by the function's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub(crate) ident: syn::Ident,
}

/// The function as the attribute sees it.
pub(crate) struct LockFn {
    pub(crate) item: ItemFn,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) has_receiver: bool,
    pub(crate) returns: Returns,
}

impl LockFn {
    pub(crate) fn new(item: ItemFn) -> Self {
        let mut bindings = Vec::new();
        for input in &item.sig.inputs {
            if let FnArg::Typed(typed) = input {
                collect(&typed.pat, &mut bindings);
            }
        }
        let returns = match &item.sig.output {
            ReturnType::Type(_, ty) if is_result(ty) => Returns::Result,
            _ => Returns::Other,
        };
        Self {
            has_receiver: item.sig.receiver().is_some(),
            bindings,
            returns,
            item,
        }
    }

    /// Outer attributes (docs, `#[must_use]`, other macros), kept on the function.
    pub(crate) fn outer_attrs(&self) -> impl Iterator<Item = &Attribute> {
        self.item
            .attrs
            .iter()
            .filter(|attr| matches!(attr.style, syn::AttrStyle::Outer))
    }

    /// Inner attributes (`#![allow(..)]` at the top of the body), re-emitted there.
    pub(crate) fn inner_attrs(&self) -> impl Iterator<Item = &Attribute> {
        self.item
            .attrs
            .iter()
            .filter(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)))
    }

    /// The body's statements.
    pub(crate) fn body(&self) -> TokenStream {
        let stmts = &self.item.block.stmts;
        quote::quote!(#(#stmts)*)
    }
}

/// Names bound by a parameter pattern, recursively (`(a, b)`, `Point { x, .. }`, `ref mut c`).
fn collect(pat: &Pat, out: &mut Vec<Binding>) {
    match pat {
        Pat::Ident(ident) => {
            out.push(Binding {
                ident: ident.ident.clone(),
            });
            if let Some((_, sub)) = &ident.subpat {
                collect(sub, out);
            }
        }
        Pat::Reference(reference) => collect(&reference.pat, out),
        Pat::Paren(paren) => collect(&paren.pat, out),
        Pat::Type(typed) => collect(&typed.pat, out),
        Pat::Tuple(tuple) => tuple.elems.iter().for_each(|pat| collect(pat, out)),
        Pat::TupleStruct(tuple) => tuple.elems.iter().for_each(|pat| collect(pat, out)),
        Pat::Slice(slice) => slice.elems.iter().for_each(|pat| collect(pat, out)),
        Pat::Struct(strukt) => strukt
            .fields
            .iter()
            .for_each(|field| collect(&field.pat, out)),
        // Wildcards, literals, ranges and the rest bind nothing.
        _ => {}
    }
}

/// `Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`, `AppResult<T>`: a path whose
/// last segment's name ends in `Result`.
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident.to_string().ends_with("Result")),
        Type::Paren(paren) => is_result(&paren.elem),
        Type::Group(group) => is_result(&group.elem),
        _ => false,
    }
}
