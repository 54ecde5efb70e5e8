//! Rule-file parameters: `param NAME = LITERAL` declarations and the values `$NAME` stands for.
//!
//! Input: the declarations of a `.cep` file (found by the parser) and optional overrides (e.g.
//! from `--param NAME=VALUE` or a sweep variant). Output: the value of every parameter, which the
//! parser substitutes for each `$NAME` reference as if the literal had been written there. Next
//! stage: the rest of parsing and lowering, which never see a parameter.

use std::collections::BTreeMap;
use std::fmt;

use crate::diag::{Diagnostic, Span};

/// The value of a parameter: one of the literal kinds a declaration may have.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// An integer, e.g. `param n = 3` or `param floor = -2`.
    Int(i64),
    /// A float, e.g. `param z = 2.5`.
    Float(f64),
    /// A duration in nanoseconds, e.g. `param w = 10m`.
    Duration(i64),
    /// A string, e.g. `param venue = "XNAS"`.
    Str(String),
}

/// A `param NAME = LITERAL` declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    /// The parameter's name (without `$`).
    pub name: String,
    /// The value written in the declaration.
    pub default: ParamValue,
    /// The whole declaration, from `param` to the end of the literal.
    pub span: Span,
}

impl ParamValue {
    /// The kind's name as messages say it: "integer", "float", "duration" or "string".
    pub fn kind_name(&self) -> &'static str {
        match self {
            ParamValue::Int(_) => "integer",
            ParamValue::Float(_) => "float",
            ParamValue::Duration(_) => "duration",
            ParamValue::Str(_) => "string",
        }
    }

    /// The kind with its article: "an integer", "a float", "a duration" or "a string".
    pub fn kind_with_article(&self) -> &'static str {
        match self {
            ParamValue::Int(_) => "an integer",
            ParamValue::Float(_) => "a float",
            ParamValue::Duration(_) => "a duration",
            ParamValue::Str(_) => "a string",
        }
    }

    /// Parses `text` (e.g. a `--param` value) as a value of the same kind as `like`: an integer
    /// (`-3`, `1_000`), a float (`2.5`, `1e-3`, or an integer such as `2`), a duration with a
    /// unit (`500ms`, `5m`; not negative) or, for a string, the text itself. The error says what
    /// was expected.
    pub fn parse_like(text: &str, like: &ParamValue) -> Result<ParamValue, String> {
        let t = text.trim();
        let cleaned: String = t.chars().filter(|&c| c != '_').collect();
        match like {
            ParamValue::Int(_) => cleaned
                .parse::<i64>()
                .map(ParamValue::Int)
                .map_err(|_| format!("expected an integer, found `{text}`")),
            ParamValue::Float(_) => match cleaned.parse::<f64>() {
                Ok(v) if v.is_finite() && looks_numeric(&cleaned) => Ok(ParamValue::Float(v)),
                _ => Err(format!("expected a number (e.g. `2.5`), found `{text}`")),
            },
            ParamValue::Duration(_) => parse_duration(&cleaned)
                .map(ParamValue::Duration)
                .ok_or_else(|| {
                    format!(
                        "expected a duration with a unit (ns, us, ms, s, m, h or d, e.g. `5m`), found `{text}`"
                    )
                }),
            ParamValue::Str(_) => Ok(ParamValue::Str(text.to_string())),
        }
    }

    /// `self` as a value of `like`'s kind: the same kind, or an integer for a float.
    pub(crate) fn coerce_like(&self, like: &ParamValue) -> Option<ParamValue> {
        match (self, like) {
            (ParamValue::Int(v), ParamValue::Float(_)) => Some(ParamValue::Float(*v as f64)),
            (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => Some(a.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    /// The value written as a literal of the rule language (`3`, `2.5`, `10m`, `"XNAS"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => {
                if v.fract() == 0.0 && v.abs() < 1e15 {
                    write!(f, "{v:.1}")
                } else {
                    write!(f, "{v}")
                }
            }
            ParamValue::Duration(ns) => {
                let (n, unit) = duration_parts(*ns);
                write!(f, "{n}{unit}")
            }
            ParamValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// Duration units and their length in nanoseconds, longest first for display.
const UNITS: &[(&str, i64)] = &[
    ("d", 86_400 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// `ns` as a whole number of the largest unit that divides it.
fn duration_parts(ns: i64) -> (i64, &'static str) {
    for &(unit, len) in UNITS {
        if ns != 0 && ns % len == 0 {
            return (ns / len, unit);
        }
    }
    (ns, "ns")
}

/// Digits, an optional sign, a point and an exponent only (rejects `inf`, `NaN`).
fn looks_numeric(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
        && t.chars().any(|c| c.is_ascii_digit())
}

/// `DIGITS UNIT`, e.g. `500ms`; `None` if malformed, negative or out of range.
fn parse_duration(t: &str) -> Option<i64> {
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let len = UNITS.iter().find(|(u, _)| *u == unit)?.1;
    digits.parse::<i64>().ok()?.checked_mul(len)
}

/// The effective value of every declared parameter: its default, or its override. Errors: an
/// override naming no declared parameter (no span: the name is not in the source; the message
/// lists the declared parameters), or one of another kind (at the declaration).
pub(crate) fn resolve(
    decls: &[ParamDecl],
    overrides: &BTreeMap<String, ParamValue>,
) -> Result<BTreeMap<String, ParamValue>, Diagnostic> {
    let mut values: BTreeMap<String, ParamValue> = decls
        .iter()
        .map(|d| (d.name.clone(), d.default.clone()))
        .collect();
    for (name, v) in overrides {
        let Some(decl) = decls.iter().find(|d| &d.name == name) else {
            let declared = if decls.is_empty() {
                "the file declares no parameters".to_string()
            } else {
                let names: Vec<String> = decls.iter().map(|d| format!("${}", d.name)).collect();
                format!("declared parameters: {}", names.join(", "))
            };
            return Err(Diagnostic::new(
                format!("unknown parameter `{name}` in the overrides ({declared})"),
                Span::default(),
            )
            .with_help("declare it in the rules file with `param NAME = VALUE`"));
        };
        let Some(v) = v.coerce_like(&decl.default) else {
            return Err(Diagnostic::new(
                format!(
                    "parameter `${name}` is {} (default `{}`), but its override is {} (`{v}`)",
                    decl.default.kind_with_article(),
                    decl.default,
                    v.kind_with_article()
                ),
                decl.span,
            ));
        };
        values.insert(name.clone(), v);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_like_table() {
        use ParamValue::*;
        let ok = [
            ("3", Int(0), Int(3)),
            ("-42", Int(0), Int(-42)),
            ("1_000", Int(0), Int(1000)),
            (" 7 ", Int(0), Int(7)),
            ("2.5", Float(0.0), Float(2.5)),
            ("2", Float(0.0), Float(2.0)),
            ("-1e-3", Float(0.0), Float(-0.001)),
            ("5m", Duration(0), Duration(300_000_000_000)),
            ("500ms", Duration(0), Duration(500_000_000)),
            ("1_500us", Duration(0), Duration(1_500_000)),
            ("0s", Duration(1), Duration(0)),
            ("2d", Duration(1), Duration(172_800_000_000_000)),
            ("XNAS", Str(String::new()), Str("XNAS".into())),
            ("", Str("a".into()), Str(String::new())),
        ];
        for (text, like, want) in ok {
            assert_eq!(ParamValue::parse_like(text, &like), Ok(want), "{text:?}");
        }
        let bad = [
            ("2.5", Int(0), "integer"),
            ("3m", Int(0), "integer"),
            ("", Int(0), "integer"),
            ("9223372036854775808", Int(0), "integer"),
            ("x", Float(0.0), "number"),
            ("inf", Float(0.0), "number"),
            ("NaN", Float(0.0), "number"),
            ("5", Duration(0), "duration"),
            ("5 m", Duration(0), "duration"),
            ("-5m", Duration(0), "duration"),
            ("1.5s", Duration(0), "duration"),
            ("5y", Duration(0), "duration"),
            ("m", Duration(0), "duration"),
            ("99999999999d", Duration(0), "duration"),
        ];
        for (text, like, word) in bad {
            let err = ParamValue::parse_like(text, &like).expect_err(text);
            assert!(err.contains(word) && err.contains(text), "{text:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips_through_parse_like() {
        use ParamValue::*;
        for v in [
            Int(-3),
            Float(2.5),
            Float(3.0),
            Duration(90_000_000_000),
            Duration(1_500_000),
            Duration(7),
        ] {
            let text = v.to_string();
            assert_eq!(ParamValue::parse_like(&text, &v), Ok(v.clone()), "{text}");
        }
        assert_eq!(Duration(90_000_000_000).to_string(), "90s");
        assert_eq!(Str("a\"b".into()).to_string(), r#""a\"b""#);
    }

    #[test]
    fn overrides_are_checked() {
        let decls = vec![
            ParamDecl {
                name: "n".into(),
                default: ParamValue::Int(3),
                span: Span::new(0, 11),
            },
            ParamDecl {
                name: "z".into(),
                default: ParamValue::Float(1.5),
                span: Span::new(12, 25),
            },
        ];
        let mut o = BTreeMap::new();
        o.insert("z".to_string(), ParamValue::Int(2));
        let v = resolve(&decls, &o).expect("int for float");
        assert_eq!(v["z"], ParamValue::Float(2.0));
        assert_eq!(v["n"], ParamValue::Int(3));
        o.insert("q".to_string(), ParamValue::Int(2));
        let e = resolve(&decls, &o).expect_err("unknown");
        assert!(
            e.message.contains("`q`") && e.message.contains("$n, $z"),
            "{e}"
        );
        let mut o = BTreeMap::new();
        o.insert("n".to_string(), ParamValue::Float(2.0));
        let e = resolve(&decls, &o).expect_err("kind");
        assert_eq!(e.span, Span::new(0, 11));
        assert!(
            e.message.contains("integer") && e.message.contains("float"),
            "{e}"
        );
    }
}
