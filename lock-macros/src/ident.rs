//! Rust's rules for the names the attribute reads from strings (placeholders, `crate`),
//! so that every identifier it generates is valid and `Ident::new` never panics.

use proc_macro2::{Ident, Span};
use syn::punctuated::Punctuated;
use syn::{Path, Token};

/// Keywords (strict and reserved, of every edition) that are names only as raw
/// identifiers: the argument `r#type`, the field `r#match`.
const RAW_ONLY: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// Keywords that start paths; none of them can be a raw identifier.
pub(crate) const PATH_KEYWORDS: &[&str] = &["crate", "self", "Self", "super"];

/// `name` is an identifier or keyword (`order_id`, `été`, `type`, `self`), not `_`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first == '_' || unicode_ident::is_xid_start(first))
        && chars.all(unicode_ident::is_xid_continue)
        && name != "_"
}

/// `name` is a keyword that is a name only as a raw identifier (`type`, `match`).
pub(crate) fn is_raw_only(name: &str) -> bool {
    RAW_ONLY.contains(&name)
}

/// Why `r#name` is not a raw identifier, if it is not.
pub(crate) fn raw_problem(name: &str) -> Option<String> {
    if PATH_KEYWORDS.contains(&name) {
        Some(format!("`{name}` cannot be a raw identifier"))
    } else if !is_identifier(name) {
        Some(format!("`r#{name}` is not an identifier"))
    } else {
        None
    }
}

/// The identifier `name` at `span`, raw when it is a keyword (`r#type`). `name` passed
/// [`is_identifier`].
pub(crate) fn new(name: &str, span: Span) -> Ident {
    if is_raw_only(name) {
        Ident::new_raw(name, span)
    } else {
        Ident::new(name, span)
    }
}

/// `lock_runtime`, `::deps::locks`, `crate::locks`, with each name checked before it is
/// made an identifier (the string is never lexed). Spans are the literal's, marked as
/// generated so that no suggestion rewrites it.
pub(crate) fn path(text: &str, at: Span) -> Option<Path> {
    let span = Span::mixed_site().located_at(at);
    let (leading, rest) = match text.strip_prefix("::") {
        Some(rest) => (Some(Token![::](span)), rest),
        None => (None, text),
    };
    let mut segments = Punctuated::new();
    for name in rest.split("::") {
        let valid = is_identifier(name) && !is_raw_only(name);
        segments.push(syn::PathSegment::from(
            valid.then(|| Ident::new(name, span))?,
        ));
    }
    Some(Path {
        leading_colon: leading,
        segments,
    })
}

pub(crate) fn path_problem(text: &str) -> String {
    let underscored = text.replace('-', "_");
    if underscored != text && path(&underscored, Span::call_site()).is_some() {
        format!(
            "`{text}` is a package name; in Rust paths its crate is `{underscored}`: write `crate = \"{underscored}\"`"
        )
    } else {
        format!(
            "`crate = \"{text}\"` is not a path; give the path at which `lock_runtime` is reached, \
             e.g. `crate = \"my_locks\"` or `crate = \"::deps::lock_runtime\"`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_rust() {
        for name in ["order_id", "_x", "été", "type", "self", "x1"] {
            assert!(is_identifier(name), "{name}");
        }
        for name in ["", "_", "1st", "a b", "a-b", "r#x", "0"] {
            assert!(!is_identifier(name), "{name}");
        }
    }

    #[test]
    fn keywords_become_raw_and_nothing_panics() {
        assert_eq!(new("type", Span::call_site()).to_string(), "r#type");
        assert_eq!(new("self", Span::call_site()).to_string(), "self");
        assert_eq!(new("order", Span::call_site()).to_string(), "order");
        assert!(raw_problem("self").is_some());
        assert!(raw_problem("0").is_some());
        assert!(raw_problem("type").is_none());
    }

    #[test]
    fn crate_paths_are_checked_not_lexed() {
        for text in ["lock_runtime", "::deps::locks", "crate::locks", "self::x"] {
            assert!(path(text, Span::call_site()).is_some(), "{text}");
        }
        for text in [
            "",
            "::",
            "a::",
            "lock-runtime",
            "a b",
            "\\",
            "\"x",
            "type::x",
        ] {
            assert!(path(text, Span::call_site()).is_none(), "{text}");
        }
        assert!(path_problem("lock-runtime").contains("write `crate = \"lock_runtime\"`"));
        assert!(path_problem("a b").contains("is not a path"));
    }
}
