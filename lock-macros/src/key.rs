//! The key template: literal text and `<name>`, `<name.field.path>`, `<self.field>`
//! placeholders; `<<` is a literal `<`.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal text.
    Text(String),
    /// A value: the root binding and a field path after it.
    Value(Placeholder),
}

/// `<root.path.0>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    /// The binding (`order_id`, `self`), without any `r#`.
    pub(crate) root: String,
    /// Whether the root was written as a raw identifier (`r#type`).
    pub(crate) raw_root: bool,
    /// Field names or tuple indices after the root.
    pub(crate) path: Vec<String>,
    /// The placeholder as written, `<...>` included.
    pub(crate) source: String,
    /// Byte offset of the `<` in the template (for a precise span where available).
    pub(crate) offset: usize,
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
    let mut offset = 0;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some(escaped) = after.strip_prefix('<') {
            text.push('<');
            offset += open + 2;
            rest = escaped;
            continue;
        }
        let Some(close) = after.find('>') else {
            problems.push(format!(
                "unclosed `<` in the key template: `{}`; close the placeholder with `>`, or write `<<` for a literal `<`",
                &rest[open..]
            ));
            rest = "";
            break;
        };
        let inner = &after[..close];
        let source = format!("<{inner}>");
        match placeholder(inner, source, offset + open) {
            Ok(placeholder) => {
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Value(placeholder));
            }
            Err(problem) => problems.push(problem),
        }
        offset += open + 1 + close + 1;
        rest = &after[close + 1..];
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

fn placeholder(inner: &str, source: String, offset: usize) -> Result<Placeholder, String> {
    if inner.trim().is_empty() {
        return Err(
            "empty placeholder `<>` in the key template; write an argument name inside, e.g. `<order_id>`"
                .to_owned(),
        );
    }
    let mut parts = inner.split('.');
    let first = parts.next().unwrap_or_default();
    if first == "_" {
        return Err(format!(
            "`{source}` names a `_` pattern, which binds nothing; give the argument a name and use it here"
        ));
    }
    let (root, raw_root) = match first.strip_prefix("r#") {
        Some(raw) => (raw, true),
        None => (first, false),
    };
    if !is_identifier(root) {
        return Err(format!(
            "`{source}` is not a valid placeholder: `{first}` is not an identifier; \
             expected an argument name or a field path such as `<user.id>`"
        ));
    }
    let mut path = Vec::new();
    for part in parts {
        let field = part.strip_prefix("r#").unwrap_or(part);
        if field.is_empty() {
            return Err(format!(
                "`{source}` is not a valid placeholder: a field name is missing after a `.`"
            ));
        }
        let index = field.bytes().all(|byte| byte.is_ascii_digit());
        if !(index || is_identifier(field)) || field == "self" {
            return Err(format!(
                "`{source}` is not a valid placeholder: `{part}` is not a field name; \
                 expected a field path such as `<user.id>` or `<pair.0>`"
            ));
        }
        path.push(part.to_owned());
    }
    Ok(Placeholder {
        root: root.to_owned(),
        raw_root,
        path,
        source,
        offset,
    })
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first == '_' || first.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && text != "_"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(template: &str) -> Vec<(String, Vec<String>)> {
        parse(template)
            .unwrap()
            .into_iter()
            .filter_map(|segment| match segment {
                Segment::Value(p) => Some((p.root, p.path)),
                Segment::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn splits_text_and_placeholders() {
        let segments = parse("tenant:<self.tenant>:user:<user.id>").unwrap();
        assert_eq!(segments.len(), 4);
        assert_eq!(segments[0], Segment::Text("tenant:".into()));
        assert_eq!(
            values("tenant:<self.tenant>:user:<user.id>"),
            vec![
                ("self".into(), vec!["tenant".into()]),
                ("user".into(), vec!["id".into()])
            ]
        );
        assert_eq!(values("<pair.0>"), vec![("pair".into(), vec!["0".into()])]);
    }

    #[test]
    fn double_angle_is_a_literal() {
        assert_eq!(
            parse("a<<b>c").unwrap(),
            vec![Segment::Text("a<b>c".into())]
        );
        assert_eq!(parse("<<<id>").unwrap()[0], Segment::Text("<".into()));
    }

    #[test]
    fn raw_identifiers() {
        let segments = parse("<r#type>").unwrap();
        let Segment::Value(placeholder) = &segments[0] else {
            panic!()
        };
        assert_eq!(placeholder.root, "type");
        assert!(placeholder.raw_root);
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
