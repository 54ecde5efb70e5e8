//! `param NAME = LITERAL`, `$NAME` references and overrides; the emit score clause.

use std::collections::BTreeMap;

use cep_core::expr::Expr;
use cep_core::rule::{ModelRef, Program, ScoreSource, ScoreSpec};
use cep_core::symbol::SymbolTable;
use pattern_lang::{
    Diagnostic, ParamDecl, ParamValue, Span, compile, compile_with_params, params, parse_file,
};

fn ok(src: &str) -> Program {
    compile(src, None, &mut SymbolTable::new())
        .unwrap_or_else(|e| panic!("{}", e.render("t.cep", src)))
}

fn with(src: &str, overrides: &[(&str, ParamValue)]) -> Result<Program, Diagnostic> {
    let o: BTreeMap<String, ParamValue> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    compile_with_params(src, None, &mut SymbolTable::new(), &o)
}

/// The rendered error of compiling `src` with `overrides`, and its `line:col`.
fn err(src: &str, overrides: &[(&str, ParamValue)]) -> (String, String) {
    let e = with(src, overrides).expect_err("should not compile");
    let r = e.render("t.cep", src);
    let loc = r
        .lines()
        .nth(1)
        .and_then(|l| l.split("t.cep:").nth(1))
        .unwrap_or("")
        .to_string();
    (r, loc)
}

const EVENTS: &str = "event Trade { account: sym, price: f64, qty: i64, side: side, venue: sym }\n";

/// A rule and a query using a parameter at every place one may stand.
const TEMPLATE: &str = "
rule r
  from Trade
  partition by account
  pattern a{$n} -> b{$lo,$hi} -> c{$m,} -> d
  define
    a as qty >= $min_qty and venue == $venue
    b as price > $z * prev(price) + $off
    c as qty < $neg
    d as price - a.price > $w / 1000000 - 1
  within $w
  emit hit { account, size: sum(b.qty) * $z } score sum(a.qty) / $z threshold $t

query bars
  from Trade
  where qty > $min_qty
  group by account
  window sliding $size every $slide
  having count(*) >= $n
  emit bar { account, n: count(*), big: max(qty) > $min_qty }

query sessions
  from Trade
  group by account
  window session gap $gap
  emit sess { account, n: count(*) }

query tumbling
  from Trade
  group by venue
  window tumbling $size
  emit tb { venue, n: count(*) }
";

const DECLS: &str = r#"
param n = 3
param lo = 1
param hi = 4
param m = 2
param min_qty = 5000
param venue = "XNAS"
param z = 1.5
param off = -2.5
param neg = -7
param w = 2s
param t = 0.8
param size = 5m
param slide = 1m
param gap = 30s
"#;

/// `TEMPLATE` with each `$name` replaced by `values[name]` written as a literal.
fn substituted(values: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = TEMPLATE;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let name_len = rest[i + 1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - i - 1);
        let name = &rest[i + 1..i + 1 + name_len];
        out.push_str(values[name]);
        rest = &rest[i + 1 + name_len..];
    }
    out.push_str(rest);
    out
}

#[test]
fn params_give_the_program_of_the_literals_written_in() {
    let defaults: BTreeMap<&str, &str> = [
        ("n", "3"),
        ("lo", "1"),
        ("hi", "4"),
        ("m", "2"),
        ("min_qty", "5000"),
        ("venue", "\"XNAS\""),
        ("z", "1.5"),
        ("off", "-2.5"),
        ("neg", "-7"),
        ("w", "2s"),
        ("t", "0.8"),
        ("size", "5m"),
        ("slide", "1m"),
        ("gap", "30s"),
    ]
    .into_iter()
    .collect();
    // Declarations before and after their uses.
    let before = format!("{EVENTS}{DECLS}{TEMPLATE}");
    let after = format!("{EVENTS}{TEMPLATE}{DECLS}");
    let literal = format!("{EVENTS}{}", substituted(&defaults));
    assert_eq!(ok(&before), ok(&literal));
    assert_eq!(ok(&after), ok(&literal));

    let overrides = [
        ("n", ParamValue::Int(5)),
        ("hi", ParamValue::Int(9)),
        ("venue", ParamValue::Str("BATS".into())),
        ("z", ParamValue::Int(2)),
        ("off", ParamValue::Float(0.25)),
        ("w", ParamValue::Duration(90_000_000_000)),
        ("t", ParamValue::Float(-1.0)),
        ("size", ParamValue::Duration(600_000_000_000)),
        ("gap", ParamValue::Duration(1_500_000)),
    ];
    let mut values = defaults.clone();
    for (k, v) in [
        ("n", "5"),
        ("hi", "9"),
        ("venue", "\"BATS\""),
        ("z", "2.0"),
        ("off", "0.25"),
        ("w", "90s"),
        ("t", "-1.0"),
        ("size", "10m"),
        ("gap", "1500us"),
    ] {
        values.insert(k, v);
    }
    let literal = format!("{EVENTS}{}", substituted(&values));
    let got = with(&before, &overrides).unwrap_or_else(|e| panic!("{}", e.render("t", &before)));
    assert_eq!(got, ok(&literal));
    // The overrides changed what they should.
    assert_ne!(got, ok(&before));
    let score = got.rules[0].emit.score.as_ref().expect("score");
    assert_eq!(score.threshold, Some(-1.0));
    assert_eq!(got.rules[0].nfa.within, Some(90_000_000_000));
}

#[test]
fn declarations_are_listed_in_source_order() {
    let src = format!(
        "{EVENTS}param b = 10m\nrule r pattern x define x as qty > $a within $b\nparam a = -3\nparam s = \"x\\ty\"\nparam f = -0.5"
    );
    let got = params(&src).expect("params");
    let names: Vec<(&str, &ParamValue)> =
        got.iter().map(|d| (d.name.as_str(), &d.default)).collect();
    assert_eq!(
        names,
        [
            ("b", &ParamValue::Duration(600_000_000_000)),
            ("a", &ParamValue::Int(-3)),
            ("s", &ParamValue::Str("x\ty".into())),
            ("f", &ParamValue::Float(-0.5)),
        ]
    );
    let first: &ParamDecl = &got[0];
    assert_eq!(&src[first.span.start..first.span.end], "param b = 10m");
    assert_eq!(&src[got[1].span.start..got[1].span.end], "param a = -3");
    assert!(params("event A { x: i64 }").expect("no params").is_empty());
    // The whole file must parse.
    assert!(params("param a = 1\nrule").is_err());
    assert_eq!(
        params("param a = 9223372036854775807\nparam b = -9223372036854775808")
            .expect("extremes")
            .iter()
            .map(|d| d.default.clone())
            .collect::<Vec<_>>(),
        [ParamValue::Int(i64::MAX), ParamValue::Int(i64::MIN)]
    );
}

#[test]
fn parameter_errors_point_at_the_reference() {
    let rule = |body: &str| {
        format!("{EVENTS}param n = 3\nparam w = 2s\nparam s = \"x\"\nparam z = 0.5\n{body}")
    };
    // (what, rule body (line 6), overrides, message fragment, line:col)
    let cases: Vec<(&str, String, Vec<(&str, ParamValue)>, &str, &str)> = vec![
        (
            "unknown name with a suggestion",
            rule("rule r pattern a define a as qty > $nn"),
            vec![],
            "unknown parameter `$nn`",
            "6:36",
        ),
        (
            "duration in a quantifier",
            rule("rule r pattern a{$w} define a as qty > 1"),
            vec![],
            "parameter `$w` is a duration (`2s`), but a quantifier bound needs an integer",
            "6:18",
        ),
        (
            "float in a quantifier",
            rule("rule r pattern a{2,$z} define a as qty > 1"),
            vec![],
            "parameter `$z` is a float (`0.5`), but a quantifier bound needs an integer",
            "6:20",
        ),
        (
            "integer in within",
            rule("rule r pattern a define a as qty > 1 within $n"),
            vec![],
            "parameter `$n` is an integer (`3`), but `within` needs a duration",
            "6:45",
        ),
        (
            "string as a window size",
            rule("query q from Trade window tumbling $s emit b { n: count(*) }"),
            vec![],
            "parameter `$s` is a string (`\"x\"`), but the window size needs a duration",
            "6:36",
        ),
        (
            "duration as a threshold",
            rule(
                "rule r pattern a define a as qty > 1 emit e { q: a.qty } score a.qty threshold $w",
            ),
            vec![],
            "`threshold` needs a number",
            "6:80",
        ),
        (
            "zero within after an override",
            rule("rule r pattern a define a as qty > 1 within $w"),
            vec![("w", ParamValue::Duration(0))],
            "`within` must be positive, but `$w` is 0ns",
            "6:45",
        ),
        (
            "negative slide after an override",
            rule("query q from Trade window sliding 5m every $w emit b { n: count(*) }"),
            vec![("w", ParamValue::Duration(-60_000_000_000))],
            "the slide must be positive, but `$w` is -1m",
            "6:44",
        ),
        (
            "negative count after an override",
            rule("rule r pattern a{$n,} define a as qty > 1"),
            vec![("n", ParamValue::Int(-1))],
            "quantifier bound `$n` is -1, but a bound cannot be negative",
            "6:18",
        ),
        (
            "zero count after an override",
            rule("rule r pattern a{$n} define a as qty > 1"),
            vec![("n", ParamValue::Int(0))],
            "maximum must be at least 1",
            "6:17",
        ),
        (
            "min above max after an override",
            rule("rule r pattern a{2,$n} define a as qty > 1"),
            vec![("n", ParamValue::Int(1))],
            "quantifier `{2,1}`: minimum is larger than maximum",
            "6:17",
        ),
        (
            "kind mismatch in an expression is a type error",
            rule("rule r pattern a define a as qty > $s"),
            vec![],
            "a string literal cannot be compared with an integer",
            "6:36",
        ),
        (
            "duplicate declaration",
            format!("{EVENTS}param n = 3\nparam n = 4\nrule r pattern a define a as qty > $n"),
            vec![],
            "parameter `$n` is declared twice",
            "3:7",
        ),
        (
            "override of another kind",
            rule("rule r pattern a define a as qty > $n"),
            vec![("n", ParamValue::Duration(1))],
            "parameter `$n` is an integer (default `3`), but its override is a duration (`1ns`)",
            "2:1",
        ),
        (
            "a parameter's value is a literal",
            format!("{EVENTS}param a = 3\nparam b = $a\n"),
            vec![],
            "a parameter's value must be a literal, not another parameter",
            "3:11",
        ),
        (
            "negative duration declaration",
            format!("{EVENTS}param a = -3s\n"),
            vec![],
            "a duration parameter cannot be negative",
            "2:11",
        ),
        (
            "missing value",
            format!("{EVENTS}param a =\nrule r pattern x define x as qty > $a"),
            vec![],
            "expected a literal value after `=`",
            "3:1",
        ),
        (
            "a lone dollar",
            rule("rule r pattern a define a as qty > $ 1"),
            vec![],
            "expected a parameter name after `$`",
            "6:36",
        ),
        (
            "param is reserved",
            rule("rule r pattern param define param as qty > 1"),
            vec![],
            "reserved",
            "6:16",
        ),
    ];
    let mut failures = Vec::new();
    for (what, src, overrides, fragment, loc) in &cases {
        let (r, got_loc) = err(src, overrides);
        if !r.contains(fragment) || got_loc != *loc {
            failures.push(format!("{what}: wanted `{fragment}` at {loc}, got:\n{r}\n"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Helps: a close name, else the declared names.
    let e = with(
        &format!("{EVENTS}param limit = 3\nrule r pattern a define a as qty > $limt"),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.help.as_deref(), Some("did you mean `$limit`?"));
    let e = with(&rule("rule r pattern a define a as qty > $zzzz"), &[]).unwrap_err();
    assert_eq!(
        e.help.as_deref(),
        Some("declared parameters: $n, $w, $s, $z")
    );
    let e = with(
        &format!("{EVENTS}rule r pattern a define a as qty > $q"),
        &[],
    )
    .unwrap_err();
    assert!(
        e.help.as_deref().unwrap_or("").contains("param q = VALUE"),
        "{e:?}"
    );
}

#[test]
fn unknown_overrides_list_the_declared_parameters() {
    let src = format!(
        "{EVENTS}param n = 3\nparam w = 2s\nrule r pattern a{{$n}} define a as qty > 1 within $w"
    );
    let e = with(&src, &[("nn", ParamValue::Int(2))]).unwrap_err();
    assert_eq!(e.span, Span::default());
    assert_eq!(
        e.message,
        "unknown parameter `nn` in the overrides (declared parameters: $n, $w)"
    );
    let e = with(EVENTS, &[("x", ParamValue::Int(2))]).unwrap_err();
    assert!(e.message.contains("the file declares no parameters"), "{e}");
    // No overrides: exactly `compile`.
    assert_eq!(with(&src, &[]).expect("defaults"), ok(&src));
}

#[test]
fn params_do_not_change_unparameterized_files() {
    let src = format!(
        "{EVENTS}rule r pattern a b define a as qty > 1, b as qty > a.qty emit x {{ q: b.qty }}"
    );
    let file = parse_file(&src).expect("parse");
    assert_eq!(file.items.len(), 2);
    assert_eq!(with(&src, &[]).expect("compile"), ok(&src));
}

#[test]
fn score_clauses_lower_to_score_specs() {
    let src = format!(
        "{EVENTS}param t = 2
rule e from Trade pattern a define a as qty > 0 emit e {{ q: a.qty }} score a.price * a.qty threshold $t
rule m from Trade pattern a define a as qty > 0 emit m {{ qty: a.qty, price: a.price }}
  score using fraud_lr
rule p from Trade pattern a define a as qty > 0 emit p {{ q: a.qty }} score using \"models/x.json\" threshold -0.5
rule n from Trade pattern a define a as qty > 0 emit n {{ score: a.qty }}
rule s pattern a define a as qty > 0 emit s {{ q: a.qty }} score -a.qty threshold 3
"
    );
    let p = ok(&src);
    let specs: Vec<Option<&ScoreSpec>> = p.rules.iter().map(|r| r.emit.score.as_ref()).collect();
    let Some(ScoreSpec {
        source: ScoreSource::Expr(Expr::Arith(..)),
        threshold: Some(t),
    }) = specs[0]
    else {
        panic!("{:?}", specs[0]);
    };
    assert_eq!(*t, 2.0);
    assert_eq!(
        specs[1],
        Some(&ScoreSpec {
            source: ScoreSource::Model(ModelRef {
                name: "fraud_lr".into(),
                is_path: false,
                line: 5,
                col: 15,
            }),
            threshold: None,
        })
    );
    assert_eq!(
        specs[2],
        Some(&ScoreSpec {
            source: ScoreSource::Model(ModelRef {
                name: "models/x.json".into(),
                is_path: true,
                line: 6,
                col: 81,
            }),
            threshold: Some(-0.5),
        })
    );
    // `score` as an ordinary field name; no score clause.
    assert_eq!(specs[3], None);
    assert_eq!(p.rules[3].emit.fields[0].name, "score");
    assert!(matches!(
        specs[4],
        Some(ScoreSpec {
            source: ScoreSource::Expr(Expr::Neg(_)),
            threshold: Some(3.0)
        })
    ));
    assert!(p.rules.iter().all(|r| r.timeout.is_none()));
}

#[test]
fn score_clause_errors() {
    let cases = [
        (
            "a boolean score",
            "rule r pattern a define a as qty > 0 emit e { q: a.qty } score a.qty > 3",
            "a score must be a number, but this is a boolean",
            "2:64",
        ),
        (
            "a symbol score",
            "rule r pattern a define a as qty > 0 emit e { q: a.qty } score a.venue",
            "a score must be a number",
            "2:64",
        ),
        (
            "a score on a timeout emit",
            "rule r pattern a -> b define a as qty > 0, b as qty > 1 within 1s on timeout emit t { q: a.qty } score 1",
            "`on timeout emit` cannot have a `score` clause",
            "2:98",
        ),
        (
            "a score on a query emit",
            "query q from Trade window tumbling 1m emit b { n: count(*) } score 1",
            "a query's `emit` cannot have a `score` clause",
            "2:62",
        ),
        (
            "a threshold without a number",
            "rule r pattern a define a as qty > 0 emit e { q: a.qty } score a.qty threshold high",
            "expected a number or a `$parameter` after `threshold`",
            "2:80",
        ),
        (
            "an empty model path",
            "rule r pattern a define a as qty > 0 emit e { q: a.qty } score using \"\"",
            "the model path is empty",
            "2:70",
        ),
        (
            "using a keyword",
            "rule r pattern a define a as qty > 0 emit e { q: a.qty } score using and",
            "expected a model name or a string path after `score using`",
            "2:70",
        ),
        (
            "unknown field in a score",
            "rule r pattern a define a as qty > 0 emit e { q: a.qty } score a.qyt",
            "qyt",
            "2:66",
        ),
    ];
    let mut failures = Vec::new();
    for (what, body, fragment, loc) in cases {
        let src = format!("{EVENTS}{body}");
        let (r, got_loc) = err(&src, &[]);
        if !r.contains(fragment) || got_loc != loc {
            failures.push(format!("{what}: wanted `{fragment}` at {loc}, got:\n{r}\n"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
