//! Syntax errors: message, `file:line:col` position and caret rendering.

use pattern_lang::ast::{AfterMatch, Contiguity, ExprKind, Item, Selection};
use pattern_lang::{Diagnostic, parse_file};

/// (what it checks, source, expected message fragment, line, column)
const CASES: &[(&str, &str, &str, usize, usize)] = &[
    (
        "missing `}` in event",
        "event A { x: i64\nevent B { y: u64 }",
        "expected `}` or `,` after field, found keyword `event`",
        2,
        1,
    ),
    (
        "bad field separator",
        "event A { x: i64; y: u64 }",
        "expected `}` or `,` after field, found `;`",
        1,
        17,
    ),
    (
        "bad field type",
        "event A { x: 5 }",
        "expected a field type (i64, u64, f64, bool, sym, ts, side, or an enum name)",
        1,
        14,
    ),
    (
        "missing `:` in field",
        "event A {\n  x i64\n}",
        "expected `:` after field name `x`",
        2,
        5,
    ),
    (
        "unknown clause word after pattern",
        "rule r\n  pattern a -> b\n  defines b as x > 1",
        "expected `->`, `->>`, `|`, a pattern element, or a clause keyword (define, within, select, after, emit)",
        3,
        13,
    ),
    (
        "unknown clause word after a clause",
        "rule r\n  pattern a -> b\n  within 1s\n  selct first",
        "expected a clause keyword",
        4,
        3,
    ),
    (
        "unterminated string",
        "rule r pattern a\n  define a as side == \"buy\n  within 1s",
        "unterminated string literal",
        2,
        23,
    ),
    (
        "unknown string escape",
        r#"rule r pattern a define a as s == "x\q""#,
        "unknown escape `\\q` in string literal",
        1,
        37,
    ),
    (
        "bad duration unit",
        "rule r pattern a within 2x",
        "expected a duration unit",
        1,
        26,
    ),
    (
        "duration without unit",
        "rule r pattern a within 2",
        "expected a duration (e.g. `2s`, `500ms`) after `within`",
        1,
        25,
    ),
    (
        "duration overflow",
        "rule r pattern a within 9999999999999h",
        "is too long",
        1,
        25,
    ),
    (
        "quantifier min > max",
        "rule r pattern a -> b{3,1} -> c",
        "quantifier `{3,1}`: minimum is larger than maximum",
        1,
        22,
    ),
    (
        "duplicate clause",
        "rule x\n  pattern a\n  within 1s\n  within 2s",
        "duplicate `within` clause in rule `x`",
        4,
        3,
    ),
    (
        "missing pattern",
        "rule lonely\n  from Trade\n  within 1s",
        "rule `lonely` has no `pattern` clause",
        1,
        6,
    ),
    (
        "reserved word as pattern variable",
        "rule r pattern a -> in",
        "`in` is a reserved word and cannot be used as a pattern variable",
        1,
        21,
    ),
    (
        "reserved word as rule name",
        "rule event",
        "expected a rule name after `rule`, found keyword `event`",
        1,
        6,
    ),
    (
        "`->` at end of pattern",
        "rule r\n  pattern a ->\n  within 1s",
        "expected a pattern variable after `->`, found keyword `within`",
        3,
        3,
    ),
    (
        "`->` at end of input",
        "rule r pattern a ->\n\n",
        "expected a pattern variable after `->`, found end of input",
        1,
        20,
    ),
    (
        "integer too large",
        "rule r pattern a define a as qty > 99999999999999999999",
        "integer literal `99999999999999999999` is too large",
        1,
        36,
    ),
    (
        "missing expression",
        "rule r pattern a define a as\n  within 1s",
        "expected an expression, found keyword `within`",
        2,
        3,
    ),
    (
        "garbage top-level token",
        "event A { x: i64 }\n@@",
        "expected an item (`enum`, `event`, `rule`, `query`, or `param`), found `@`",
        2,
        1,
    ),
    (
        "misspelled item keyword",
        "evnt A { x: i64 }",
        "expected an item",
        1,
        1,
    ),
    (
        "bad skip strategy",
        "rule r pattern a after match skip to middle",
        "expected `next`, `first VAR`, or `last VAR` after `skip to`",
        1,
        38,
    ),
    (
        "bad selection",
        "rule r pattern a select any",
        "expected `all` or `first` after `select`",
        1,
        25,
    ),
    (
        "emit field separator",
        "rule r pattern a emit s { a; b }",
        "expected `}` or `,` after emit field",
        1,
        28,
    ),
    (
        "unclosed call",
        "rule r pattern a define a as f(x, y\nwithin 1s",
        "expected `,` or `)` in the argument list",
        2,
        1,
    ),
    (
        "chained comparison",
        "rule r pattern a define a as x < y < z",
        "comparison operators cannot be chained",
        1,
        36,
    ),
    (
        "column counts chars, not bytes",
        "rule r pattern a define a as s == \"é\" and ?",
        "expected an expression, found `?`",
        1,
        43,
    ),
];

/// The caret line under the source line: `  | ` then spaces then at least one `^`.
fn caret_column(rendered: &str) -> Option<usize> {
    rendered.lines().find_map(|line| {
        let after_bar = line.trim_start().strip_prefix('|')?.strip_prefix(' ')?;
        let indent = after_bar.len() - after_bar.trim_start().len();
        let carets = after_bar.trim_start();
        (!carets.is_empty() && carets.chars().all(|c| c == '^')).then_some(indent + 1)
    })
}

#[test]
fn error_table() {
    let mut failures = Vec::new();
    for &(what, src, fragment, line, col) in CASES {
        let rendered = match parse_file(src) {
            Ok(file) => {
                failures.push(format!("{what}: parsed without error: {file:?}"));
                continue;
            }
            Err(e) => e.render("t.cep", src),
        };
        let location = format!("t.cep:{line}:{col}");
        let ok = rendered.starts_with("error: ")
            && rendered.contains(fragment)
            && rendered.contains(&location)
            && caret_column(&rendered) == Some(col);
        if !ok {
            failures.push(format!(
                "{what}: wanted `{fragment}` at {location}, got:\n{rendered}\n"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn help_lines() {
    let src = "rule r\n  pattern a -> b\n  defines b as x > 1";
    let err = parse_file(src).unwrap_err();
    assert!(
        err.render("t.cep", src)
            .ends_with("  = help: `defines` was read as a pattern variable; did you mean the clause keyword `define`?"),
        "{}",
        err.render("t.cep", src)
    );
    // After a pattern, `selct first` would read as two more pattern variables; after any other
    // clause it is an unknown clause word.
    let src = "rule r pattern a within 1s\n  selct first";
    let help = parse_file(src).unwrap_err().help;
    assert_eq!(help.as_deref(), Some("did you mean `select`?"));
}

#[test]
fn exact_rendering() {
    let src = "event Order { id: u64, qty f64 }\n";
    let err = parse_file(src).unwrap_err();
    assert_eq!(
        err.render("rules.cep", src),
        "error: expected `:` after field name `qty`, found `f64`
 --> rules.cep:1:28
  |
1 | event Order { id: u64, qty f64 }
  |                            ^^^"
    );
}

#[test]
fn diagnostic_is_a_std_error() {
    let err: Box<dyn std::error::Error> = Box::new(parse_file("rule").unwrap_err());
    assert_eq!(
        err.to_string(),
        "expected a rule name after `rule`, found end of input"
    );
    let d: Diagnostic = parse_file("@").unwrap_err();
    assert_eq!(d.to_string(), d.message);
}

#[test]
fn empty_input_is_ok() {
    for src in ["", "   \n\t", "# only a comment", "// and another\n"] {
        assert_eq!(parse_file(src).map(|f| f.items.len()), Ok(0), "{src:?}");
    }
}

const EXAMPLE: &str = r#"
enum venue { nasdaq, nyse }
event Trade  { symbol: sym, price: f64, qty: f64, side: side, account: sym }
event Order  { id: u64, account: sym, symbol: sym, side: side, price: f64, qty: f64 }
event Cancel { id: u64, account: sym }
rule layering
  from Order, Cancel, Trade
  partition by account
  pattern big{3,} -> c{3,} -> t          # juxtaposition = strict, -> = relaxed, ->> = any
  define
    big as Order  and qty >= 10 * 5.5
    c   as Cancel and id in big.id
    t   as Trade  and side != first(big).side
  within 2s
  select first
  after match skip past last
  emit layering { account, orders: count(big), score: sum(big.qty) / t.qty }
"#;

#[test]
fn full_example() {
    let file = parse_file(EXAMPLE).unwrap_or_else(|e| panic!("{}", e.render("ex.cep", EXAMPLE)));
    assert_eq!(file.items.len(), 5);
    assert!(matches!(&file.items[0], Item::Enum(e) if e.variants.len() == 2));
    let Item::Event(order) = &file.items[2] else {
        panic!("{:?}", file.items[2])
    };
    assert_eq!(order.name.name, "Order");
    assert_eq!(order.fields.len(), 6);
    let Item::Rule(rule) = &file.items[4] else {
        panic!("{:?}", file.items[4])
    };
    let span_text = |s: pattern_lang::Span| &EXAMPLE[s.start..s.end];
    assert_eq!(rule.name.name, "layering");
    let from: Vec<_> = rule.from.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(from, ["Order", "Cancel", "Trade"]);
    assert_eq!(rule.partition_by[0].name, "account");

    let els = &rule.pattern.alternatives[0].elements;
    assert_eq!(els.len(), 3);
    assert_eq!(
        (
            els[0].quantifier.min,
            els[0].quantifier.max,
            els[0].contiguity
        ),
        (3, None, Contiguity::Strict)
    );
    assert_eq!(els[1].contiguity, Contiguity::Relaxed);
    assert_eq!(els[2].contiguity, Contiguity::Relaxed);
    assert_eq!(span_text(rule.pattern.span), "big{3,} -> c{3,} -> t");

    assert_eq!(rule.defines.len(), 3);
    assert_eq!(
        span_text(rule.defines[0].cond.span),
        "Order  and qty >= 10 * 5.5"
    );
    assert_eq!(
        span_text(rule.defines[2].cond.span),
        "Trade  and side != first(big).side"
    );
    assert!(matches!(
        &rule.defines[1].cond.kind,
        ExprKind::Binary { rhs, .. } if matches!(rhs.kind, ExprKind::In { negated: false, .. })
    ));
    assert_eq!(rule.within.map(|w| w.0), Some(2_000_000_000));
    assert_eq!(rule.select.map(|s| s.0), Some(Selection::First));
    assert_eq!(
        rule.after_match.as_ref().map(|a| &a.0),
        Some(&AfterMatch::PastLast)
    );
    let emit = rule.emit.as_ref().unwrap_or_else(|| panic!("no emit"));
    let names: Vec<_> = emit.fields.iter().map(|f| f.name.name.as_str()).collect();
    assert_eq!(names, ["account", "orders", "score"]);
    assert_eq!(span_text(emit.fields[2].value.span), "sum(big.qty) / t.qty");
    assert_eq!(
        span_text(rule.span).lines().last(),
        Some("  emit layering { account, orders: count(big), score: sum(big.qty) / t.qty }")
    );
}

/// Cheap deterministic fuzzing: random edits of the example must give a file or a diagnostic
/// (never a panic), and every diagnostic must render with a caret line.
#[test]
fn mutated_inputs_never_panic() {
    const ALPHABET: &[&str] = &[
        "{", "}", "(", ")", "[", "]", ",", ":", ".", "?", "*", "+", "-", ">", "<", "=", "!", "\"",
        "\\", "#", "/", "%", "->", "->>", " ", "\n", "é", "0", "9", "1e", "5m", "in", "not",
        "rule", "within", "a", "_",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(state >> 33).unwrap_or(0) % n.max(1)
    };
    for _ in 0..3000 {
        let mut src = EXAMPLE.to_string();
        for _ in 0..1 + next(4) {
            let mut at = next(src.len() + 1);
            while !src.is_char_boundary(at) {
                at -= 1;
            }
            match next(3) {
                0 => src.insert_str(at, ALPHABET[next(ALPHABET.len())]),
                1 => {
                    let mut end = (at + 1 + next(8)).min(src.len());
                    while !src.is_char_boundary(end) {
                        end -= 1;
                    }
                    src.replace_range(at..end, "");
                }
                _ => {
                    let mut end = (at + 1).min(src.len());
                    while !src.is_char_boundary(end) {
                        end += 1;
                    }
                    src.replace_range(at..end, ALPHABET[next(ALPHABET.len())]);
                }
            }
        }
        if let Err(e) = parse_file(&src) {
            let rendered = e.render("f.cep", &src);
            assert!(caret_column(&rendered).is_some(), "{src:?}\n{rendered}");
            assert!(
                e.span.start <= e.span.end && e.span.end <= src.len(),
                "{src:?} {e:?}"
            );
        }
    }
}
