//! Duration literals of the attribute: `30`, `0.5` (seconds) or `"250ms"`, `"30s"`,
//! `"2m"`, `"1h"`.

use std::time::Duration;

use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, UnOp};

/// The longest duration accepted (about 34 years), as in the runtime.
const MAX: Duration = Duration::from_millis(1 << 40);

const EXPECTED: &str = "expected seconds (`30`, `0.5`) or a string with a unit (`\"250ms\"`, `\"30s\"`, `\"2m\"`, `\"1h\"`)";

/// Parses the value of option `name`.
pub(crate) fn parse(name: &str, value: &Expr) -> syn::Result<Duration> {
    let error = |message: String| syn::Error::new(value.span(), message);
    let duration = match value {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Int(int) => Duration::from_secs(int.base10_parse::<u64>().map_err(|_| {
                error(format!(
                    "`{name}` is too large: `{int}` does not fit in 64 bits"
                ))
            })?),
            Lit::Float(float) => {
                let seconds = float.base10_parse::<f64>()?;
                Duration::try_from_secs_f64(seconds)
                    .map_err(|_| error(format!("`{name} = {float}` is out of range")))?
            }
            Lit::Str(text) => parse_with_unit(&text.value()).map_err(|why| {
                error(format!("`{name} = {:?}`: {why}; {EXPECTED}", text.value()))
            })?,
            _ => return Err(error(format!("`{name}`: {EXPECTED}"))),
        },
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => return Err(error(format!("`{name}` cannot be negative; {EXPECTED}"))),
        _ => return Err(error(format!("`{name}`: {EXPECTED}"))),
    };
    if duration > MAX {
        return Err(error(format!(
            "`{name}` is too large: {duration:?} is over the maximum of {MAX:?}"
        )));
    }
    Ok(duration)
}

/// `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`.
fn parse_with_unit(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| "missing unit".to_owned())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(if unit.starts_with('-') {
            "negative durations are not allowed".to_owned()
        } else {
            "missing number".to_owned()
        });
    }
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a number"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| "out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(source: &str) -> syn::Result<Duration> {
        parse("timeout", &syn::parse_str(source).unwrap())
    }

    #[test]
    fn accepts_seconds_and_units() {
        assert_eq!(parse_str("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_str("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_str("\"250ms\"").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_str("\"1.5s\"").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_str("\"2m\"").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_str("\"1h\"").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn rejects_bad_values() {
        for (source, says) in [
            ("-1", "negative"),
            ("\"-5s\"", "negative"),
            ("\"5\"", "missing unit"),
            ("\"5 days\"", "unknown unit"),
            ("\"ms\"", "missing number"),
            ("99999999999999999999999", "64 bits"),
            ("\"99999999999h\"", "too large"),
            ("true", "expected seconds"),
        ] {
            let error = parse_str(source).unwrap_err().to_string();
            assert!(error.contains(says), "{source}: {error}");
        }
    }
}
