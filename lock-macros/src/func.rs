//! The annotated function: its parts, the names its arguments bind, and the body that
//! runs under the lock with the type it returns.

use syn::{
    Attribute, Expr, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Stmt, Type,
    TypeParamBound,
};

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
    /// `None` when the function is not async (an error).
    pub(crate) body: Option<Body>,
}

/// What runs under the lock.
pub(crate) struct Body {
    pub(crate) stmts: Vec<Stmt>,
    /// The type the statements evaluate to; `None` for `()` written as no return type.
    pub(crate) output: Option<Type>,
    /// `#[async_trait]` rewrote the `async fn` into a `fn` returning
    /// `Pin<Box<dyn Future<Output = T>>>` whose body is `Box::pin(async move { .. })`;
    /// the expansion is boxed the same way.
    pub(crate) boxed: bool,
}

impl LockFn {
    pub(crate) fn new(item: ItemFn) -> Self {
        let mut bindings = Vec::new();
        for input in &item.sig.inputs {
            if let FnArg::Typed(typed) = input {
                collect(&typed.pat, &mut bindings);
            }
        }
        let body = if item.sig.asyncness.is_some() {
            Some(Body {
                stmts: item.block.stmts.clone(),
                output: match &item.sig.output {
                    ReturnType::Type(_, ty) => Some((**ty).clone()),
                    ReturnType::Default => None,
                },
                boxed: false,
            })
        } else {
            async_trait_body(&item)
        };
        Self {
            has_receiver: item.sig.receiver().is_some(),
            bindings,
            body,
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

/// The body `#[async_trait]` gives an `async fn`: `Box::pin(async move { .. })` as the only
/// statement, and `Output = T` in the return type.
fn async_trait_body(item: &ItemFn) -> Option<Body> {
    let [Stmt::Expr(Expr::Call(call), None)] = item.block.stmts.as_slice() else {
        return None;
    };
    let Expr::Path(pin) = &*call.func else {
        return None;
    };
    let names: Vec<String> = pin
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let boxed_pin = names.ends_with(&["Box".to_owned(), "pin".to_owned()]);
    let mut args = call.args.iter();
    let (Some(Expr::Async(future)), None) = (args.next(), args.next()) else {
        return None;
    };
    if !boxed_pin || future.capture.is_none() {
        return None;
    }
    Some(Body {
        stmts: future.block.stmts.clone(),
        output: Some(future_output(&item.sig.output)?.clone()),
        boxed: true,
    })
}

/// `T` in `Pin<Box<dyn Future<Output = T> + Send + 'a>>`.
fn future_output(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::TraitObject(object) = type_argument(type_argument(ty, "Pin")?, "Box")? else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let future = bound.path.segments.last().filter(|s| s.ident == "Future")?;
        let PathArguments::AngleBracketed(args) = &future.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// The first type argument of `ty` when its last segment is `name`: `T` in `Pin<T>`.
fn type_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let segment = path.path.segments.last().filter(|s| s.ident == name)?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}
