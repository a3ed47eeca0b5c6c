//! The key template: literal text and `<name>`, `<name.field>`, `<pair.0>`, `<self.field>`
//! placeholders. `<<` is a literal `<`; `{{` and `}}` are literal braces, and a single
//! brace is an error, since `{name}` is `format!` syntax that would otherwise lock one
//! literal name for every call.

use crate::ident;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal text.
    Text(String),
    /// A value: the root binding and a field path after it.
    Value(Placeholder),
}

/// `<root.field.0>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    /// The binding (`order_id`, `self`, `type` for `r#type`), without any `r#`.
    pub(crate) root: String,
    /// The fields and tuple indices after the root.
    pub(crate) fields: Vec<Field>,
    /// The placeholder as written, `<...>` included.
    pub(crate) source: String,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    /// A named field, without any `r#`.
    Named(String),
    /// A tuple index.
    Index(u32),
}

/// Parses `template`; returns the segments or every problem found.
pub(crate) fn parse(template: &str) -> Result<Vec<Segment>, Vec<String>> {
    if template.is_empty() {
        return Err(vec![
            "the key template is empty; name the resource, e.g. \"order:<order_id>\"".to_owned(),
        ]);
    }
    let mut segments = Vec::new();
    let mut problems = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(at) = rest.find(['<', '{', '}']) {
        text.push_str(&rest[..at]);
        let special = char::from(rest.as_bytes()[at]);
        let after = &rest[at + 1..];
        if after.starts_with(special) {
            // `<<`, `{{`, `}}`: the character itself.
            text.push(special);
            rest = &after[1..];
            continue;
        }
        let close = match special {
            '<' => '>',
            '{' => '}',
            _ => {
                problems.push(
                    "a single `}` in the key template; write `}}` for a literal `}`".to_owned(),
                );
                rest = after;
                continue;
            }
        };
        let Some(end) = after.find(close) else {
            problems.push(unclosed(&rest[at..]));
            rest = "";
            break;
        };
        let inner = &after[..end];
        rest = &after[end + 1..];
        if special == '{' {
            problems.push(format_braces(inner));
            continue;
        }
        match placeholder(inner) {
            Ok(placeholder) => push_value(
                &mut segments,
                std::mem::take(&mut text),
                placeholder,
                &mut problems,
            ),
            Err(problem) => problems.push(problem),
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    if problems.is_empty() {
        Ok(segments)
    } else {
        Err(problems)
    }
}

/// Appends the text before a placeholder and the placeholder, refusing two placeholders
/// with no text between them (`<a><b>`: `1`,`23` and `12`,`3` would share a lock).
fn push_value(
    segments: &mut Vec<Segment>,
    text: String,
    placeholder: Placeholder,
    problems: &mut Vec<String>,
) {
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    } else if let Some(Segment::Value(before)) = segments.last() {
        problems.push(format!(
            "`{}{}` has no separator between the placeholders, so different values can give \
             the same lock name (`1` and `23`, `12` and `3`); put a separator between them, \
             e.g. `{}:{}`",
            before.source, placeholder.source, before.source, placeholder.source
        ));
    }
    segments.push(Segment::Value(placeholder));
}

fn unclosed(from: &str) -> String {
    if from.starts_with('{') {
        format!("unclosed `{{` in the key template: `{from}`; write `{{{{` for a literal `{{`")
    } else {
        format!(
            "unclosed `<` in the key template: `{from}`; close the placeholder with `>`, or write `<<` for a literal `<`"
        )
    }
}

/// `{order_id}`, `{}`, `{0}`, `{id:?}`: `format!` syntax.
fn format_braces(inner: &str) -> String {
    let name = inner.split(':').next().unwrap_or_default().trim();
    let instead = match placeholder(name) {
        Ok(placeholder) => format!("write `{}`", placeholder.source),
        Err(_) => "write the argument's name, e.g. `<order_id>`".to_owned(),
    };
    format!(
        "`{{{inner}}}` is `format!` syntax, which the key template does not use: placeholders \
         are written in angle brackets, so {instead} (values are formatted with `Display`; \
         `{{{{` and `}}}}` are literal braces)"
    )
}

fn placeholder(inner: &str) -> Result<Placeholder, String> {
    let source = format!("<{inner}>");
    if inner.trim().is_empty() {
        return Err(
            "empty placeholder `<>` in the key template; write an argument name inside, e.g. `<order_id>`"
                .to_owned(),
        );
    }
    if let Some(problem) = unsupported(inner, &source) {
        return Err(problem);
    }
    let mut parts = inner.split('.');
    let root = root(parts.next().unwrap_or_default(), &source)?;
    let fields = parts
        .map(|part| field(part, &source))
        .collect::<Result<_, _>>()?;
    Ok(Placeholder {
        root,
        fields,
        source,
    })
}

/// Forms a placeholder does not support, with what to write instead.
fn unsupported(inner: &str, source: &str) -> Option<String> {
    let trimmed = inner.trim();
    let instead = "a placeholder is an argument name, optionally followed by fields or tuple \
                   indices, such as `<order_id>`, `<user.id>` or `<pair.0>`";
    if trimmed != inner && placeholder(trimmed).is_ok() {
        Some(format!(
            "`{source}`: spaces are not allowed inside a placeholder; write `<{trimmed}>`"
        ))
    } else if inner.contains("::") {
        Some(format!(
            "`{source}`: paths are not supported in a placeholder; {instead}"
        ))
    } else if let Some((name, spec)) = inner.split_once(':') {
        Some(format!(
            "`{source}`: format specs (`:{spec}`) are not supported; values are formatted with \
             `Display`, so write `<{name}>`, and for another format pass an argument whose \
             `Display` is what you want"
        ))
    } else if inner.contains('(') {
        Some(format!(
            "`{source}`: calls are not supported in a placeholder; {instead}; compute other \
             values before the call and pass them as an argument"
        ))
    } else if inner
        .chars()
        .any(|c| !(c == '_' || c == '.' || c == '#' || c.is_alphanumeric() || c.is_whitespace()))
    {
        Some(format!(
            "`{source}`: expressions are not supported in a placeholder; {instead}"
        ))
    } else {
        None
    }
}

fn root(part: &str, source: &str) -> Result<String, String> {
    if part == "_" {
        return Err(format!(
            "`{source}` names a `_` pattern, which binds nothing; give the argument a name and use it here"
        ));
    }
    let (name, problem) = match part.strip_prefix("r#") {
        Some(raw) => (raw, ident::raw_problem(raw)),
        None if ident::is_identifier(part) => (part, None),
        None => (part, Some(format!("`{part}` is not an identifier"))),
    };
    match problem {
        None => Ok(name.to_owned()),
        Some(problem) => Err(format!(
            "`{source}` is not a valid placeholder: {problem}; expected an argument name or a \
             field path such as `<user.id>`"
        )),
    }
}

/// A field name or tuple index, by Rust's rules: `id`, `r#type` (or `type`), `0`.
fn field(part: &str, source: &str) -> Result<Field, String> {
    let invalid = |problem: String| {
        Err(format!(
            "`{source}` is not a valid placeholder: {problem}; expected a field path such as \
             `<user.id>` or `<pair.0>`"
        ))
    };
    if part.is_empty() {
        return invalid("a field name is missing after a `.`".to_owned());
    }
    if part.bytes().all(|byte| byte.is_ascii_digit()) {
        return match part.parse::<u32>() {
            Ok(index) if index.to_string() == part => Ok(Field::Index(index)),
            _ if part.starts_with('0') => invalid(format!(
                "`{part}` is not a tuple index (indices have no leading zeros)"
            )),
            _ => invalid(format!("`{part}` is not a tuple index (too large)")),
        };
    }
    let (name, problem) = match part.strip_prefix("r#") {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) => (
            digits,
            Some(format!(
                "`{part}` is not a field: tuple indices take no `r#`, write `.{digits}`"
            )),
        ),
        Some(raw) => (raw, ident::raw_problem(raw)),
        None if ident::PATH_KEYWORDS.contains(&part) => {
            (part, Some(format!("`{part}` is not a field name")))
        }
        None if ident::is_identifier(part) => (part, None),
        None => (part, Some(format!("`{part}` is not a field name"))),
    };
    match problem {
        None => Ok(Field::Named(name.to_owned())),
        Some(problem) => invalid(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(template: &str) -> Vec<(String, Vec<Field>)> {
        parse(template)
            .unwrap()
            .into_iter()
            .filter_map(|segment| match segment {
                Segment::Value(p) => Some((p.root, p.fields)),
                Segment::Text(_) => None,
            })
            .collect()
    }

    fn problem(template: &str) -> String {
        let problems = parse(template).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        problems.into_iter().next().unwrap()
    }

    #[test]
    fn splits_text_and_placeholders() {
        let segments = parse("tenant:<self.tenant>:user:<user.id>").unwrap();
        assert_eq!(segments.len(), 4);
        assert_eq!(segments[0], Segment::Text("tenant:".into()));
        assert_eq!(
            values("tenant:<self.tenant>:user:<user.id>"),
            vec![
                ("self".into(), vec![Field::Named("tenant".into())]),
                ("user".into(), vec![Field::Named("id".into())])
            ]
        );
        assert_eq!(
            values("<pair.0.1>"),
            vec![("pair".into(), vec![Field::Index(0), Field::Index(1)])]
        );
    }

    #[test]
    fn doubled_characters_are_literals() {
        assert_eq!(
            parse("a<<b>c").unwrap(),
            vec![Segment::Text("a<b>c".into())]
        );
        assert_eq!(parse("<<<id>").unwrap()[0], Segment::Text("<".into()));
        assert_eq!(
            parse("json:{{<id>}}").unwrap()[0],
            Segment::Text("json:{".into())
        );
        assert_eq!(parse("{{}}").unwrap(), vec![Segment::Text("{}".into())]);
    }

    #[test]
    fn raw_identifiers_and_keywords() {
        for template in ["<r#type>", "<type>"] {
            assert_eq!(values(template), vec![("type".into(), vec![])]);
        }
        assert_eq!(
            values("<self.r#match.type>"),
            vec![(
                "self".into(),
                vec![Field::Named("match".into()), Field::Named("type".into())]
            )]
        );
    }

    #[test]
    fn field_paths_follow_rust_and_never_panic() {
        for (template, says) in [
            ("<pair.r#0>", "tuple indices take no `r#`"),
            ("<pair.01>", "not a tuple index"),
            ("<pair.99999999999>", "not a tuple index"),
            ("<r#self>", "cannot be a raw identifier"),
            ("<user.r#self>", "cannot be a raw identifier"),
            ("<user.self>", "not a field name"),
            ("<user.r#>", "not an identifier"),
            ("<1st>", "not an identifier"),
        ] {
            assert!(
                problem(template).contains(says),
                "{template}: {}",
                problem(template)
            );
        }
    }

    #[test]
    fn format_syntax_is_refused_with_the_placeholder_to_write() {
        assert!(problem("order:{order_id}").contains("write `<order_id>`"));
        assert!(problem("order:{id:?}").contains("write `<id>`"));
        assert!(problem("order:{}").contains("e.g. `<order_id>`"));
        assert!(problem("order:{0}").contains("e.g. `<order_id>`"));
        assert!(problem("order:{id").contains("`{{` for a literal"));
        assert!(problem("order:}").contains("`}}` for a literal"));
    }

    #[test]
    fn unsupported_forms_say_what_to_write() {
        assert!(problem("<id:?>").contains("write `<id>`"));
        assert!(problem("< id >").contains("write `<id>`"));
        assert!(problem("<id()>").contains("calls are not supported"));
        assert!(problem("<a+b>").contains("expressions are not supported"));
        assert!(problem("<a::b>").contains("paths are not supported"));
    }

    #[test]
    fn adjacent_placeholders_need_a_separator() {
        assert!(problem("<a><b>").contains("no separator"));
        assert!(parse("<a>:<b>").is_ok());
        assert!(parse("<a><<<b>").is_ok());
    }

    #[test]
    fn reports_every_problem() {
        let problems = parse("<> <a b> <_> <x.> <ok> <open").unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].contains("empty placeholder"));
        assert!(problems[1].contains("not an identifier"));
        assert!(problems[2].contains("`_` pattern"));
        assert!(problems[3].contains("field name is missing"));
        assert!(problems[4].contains("unclosed"));
        assert!(parse("").unwrap_err()[0].contains("empty"));
    }
}
