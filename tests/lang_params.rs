//! Scores and parameters through the engine: every matcher computes `score EXPR` the same way,
//! rules with a score stay on the matchers they used without one, and the JSON line carries it.

use std::collections::BTreeMap;

use strix::cep_core::fast::history_depth;
use strix::cep_core::reference::MatcherConfig;
use strix::cep_core::shift_and::ShiftAndMatcher;
use strix::cep_core::symbol::SymbolTable;
use strix::pattern_lang::{ParamValue, compile, compile_with_params};
use strix::{Engine, EngineConfig, FieldValue, MatcherKind};

const DECLS: &str = "event Trade { account: sym, price: f64, qty: i64 }\n";

fn rule(src: &str) -> strix::cep_core::rule::Rule {
    let src = format!("{DECLS}{src}");
    let p = compile(&src, None, &mut SymbolTable::new())
        .unwrap_or_else(|e| panic!("{}", e.render("t.cep", &src)));
    p.rules.into_iter().next().expect("one rule")
}

#[test]
fn a_score_expression_keeps_a_rule_on_its_matcher() {
    let config = MatcherConfig::default();
    let chain = "rule r from Trade partition by account pattern a b c define a as qty > 1, b as qty > 2, c as price > 1.5";
    let cases = [
        ("", true),
        (" emit s { account } score a.price * c.qty - b.price", true),
        (
            " emit s { n: sum(b.qty) } score sum(a.qty) / count(c) threshold 2",
            true,
        ),
        (" emit s { account } score using fraud threshold 0.5", true),
        // `prev` disqualifies a score as it disqualifies an emit field.
        (" emit s { account } score prev(price, 2)", false),
        (" emit s { p: prev(price, 2) }", false),
    ];
    for (emit, supported) in cases {
        let r = rule(&format!("{chain}{emit}"));
        assert_eq!(ShiftAndMatcher::supports(&r, &config), supported, "{emit}");
    }
    // The fast matcher keeps the history a score's `prev` reads.
    let r = rule("rule r pattern a define a as qty > 0 emit s { q: a.qty } score prev(price, 3)");
    assert_eq!(history_depth(&r), 3);
    let r = rule("rule r pattern a define a as qty > 0 emit s { q: a.qty } score a.price");
    assert_eq!(history_depth(&r), 0);
}

/// `(seq, score, json line)` of every signal of `src` on a deterministic stream.
fn run(src: &str, kind: MatcherKind) -> Vec<(Vec<u64>, Option<f64>, String)> {
    let config = EngineConfig {
        kind,
        ..EngineConfig::default()
    };
    let mut e = Engine::build("t.cep", src, None, SymbolTable::new(), config)
        .unwrap_or_else(|e| panic!("{e}"));
    let accounts = ["a", "b", "c"];
    let mut events = Vec::new();
    let mut x = 7u64;
    for i in 0..600i64 {
        // A small LCG: the same stream every run.
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let account = accounts[(x >> 33) as usize % accounts.len()];
        let qty = ((x >> 40) % 6) as i64;
        let price = ((x >> 20) % 40) as f64 / 10.0;
        events.push(
            e.event(
                "Trade",
                i * 1_000_000,
                &[
                    ("account", FieldValue::Str(account)),
                    ("price", FieldValue::F64(price)),
                    ("qty", FieldValue::I64(qty)),
                ],
            )
            .expect("event"),
        );
    }
    let mut out = Vec::new();
    let mut record = |s: strix::Signal<'_>| {
        out.push((s.raw.seq.clone(), s.raw.score, s.to_json().to_string()));
    };
    for ev in &events {
        e.push(ev, &mut record);
    }
    e.finish(&mut record);
    out
}

#[test]
fn every_matcher_scores_alike() {
    let rules = [
        // Shift-And class.
        "rule r from Trade partition by account pattern a b c define a as qty > 1, b as qty > 2, c as price > 1.5 select all after match skip to next emit s { account } score a.price * c.qty - b.price / b.qty",
        // Fast matcher with aggregates and prev; some scores are Null (division by zero).
        "rule r from Trade partition by account pattern a -> b+ -> c define a as qty >= 4, b as price > a.price, c as qty == 0 within 50ms select all emit s { account, n: count(b) } score (sum(b.price) - prev(price, 1)) / (last(b).qty - 3)",
    ];
    for body in rules {
        let src = format!("{DECLS}{body}");
        let reference = run(&src, MatcherKind::Reference);
        let fast = run(&src, MatcherKind::Fast);
        assert!(reference.len() > 5, "too few signals: {}", reference.len());
        assert!(reference.iter().any(|(_, s, _)| s.is_some()));
        assert_eq!(reference, fast, "{body}");
        for (_, score, line) in &reference {
            match score {
                Some(v) => {
                    let fields = line.find("\"fields\":").expect("fields");
                    let at = line.find("\"score\":").expect("score");
                    let id = line.find("\"id\":").expect("id");
                    assert!(fields < at && at < id, "{line}");
                    let json: serde_json::Value = serde_json::from_str(line).expect("json");
                    if v.is_finite() {
                        // serde_json's default float parser may be 1 ulp off.
                        let got = json["score"].as_f64().expect("a number");
                        assert!((got - v).abs() <= 1e-12 * v.abs(), "{line}");
                    } else {
                        assert!(json["score"].is_null(), "{line}");
                    }
                }
                None => assert!(!line.contains("\"score\""), "{line}"),
            }
        }
    }
    assert!(
        run(&format!("{DECLS}{}", rules[1]), MatcherKind::Reference)
            .iter()
            .any(|(_, s, _)| s.is_none()),
        "a Null score case"
    );
}

#[test]
fn overrides_compile_to_the_program_of_the_literals() {
    let template = |n: &str, w: &str, t: &str, q: &str| {
        format!(
            "{DECLS}rule r from Trade partition by account pattern a{{{n}}} -> b define a as qty >= {q}, b as price > a.price * {t} within {w} emit s {{ account }} score sum(a.qty) * {t} threshold {t}"
        )
    };
    let with_params = format!(
        "param n = 2\nparam w = 20ms\nparam t = 1.5\nparam q = 3\n{}",
        template("$n", "$w", "$t", "$q")
    );
    let mut overrides = BTreeMap::new();
    overrides.insert("n".to_string(), ParamValue::Int(3));
    overrides.insert(
        "w".to_string(),
        ParamValue::parse_like("45ms", &ParamValue::Duration(0)).expect("duration"),
    );
    overrides.insert(
        "t".to_string(),
        ParamValue::parse_like("2", &ParamValue::Float(0.0)).expect("float"),
    );
    let got = compile_with_params(&with_params, None, &mut SymbolTable::new(), &overrides)
        .expect("compile");
    let literal = compile(
        &template("3", "45ms", "2.0", "3"),
        None,
        &mut SymbolTable::new(),
    )
    .expect("literal");
    assert_eq!(got, literal);
    // And the engine runs the file with its defaults like the literal file.
    let defaults = run(&with_params, MatcherKind::Fast);
    let literal = run(&template("2", "20ms", "1.5", "3"), MatcherKind::Fast);
    assert!(!defaults.is_empty());
    assert_eq!(defaults, literal);
}

mod parse_like {
    use proptest::prelude::*;
    use strix::pattern_lang::ParamValue;

    proptest! {
        #[test]
        fn integers_round_trip(v in any::<i64>()) {
            let like = ParamValue::Int(0);
            prop_assert_eq!(ParamValue::parse_like(&v.to_string(), &like), Ok(ParamValue::Int(v)));
            // An integer is never accepted as a duration (no unit).
            prop_assert!(ParamValue::parse_like(&v.to_string(), &ParamValue::Duration(1)).is_err());
        }

        #[test]
        fn floats_round_trip(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
            let like = ParamValue::Float(0.0);
            // Display writes the shortest text that reads back as the same float.
            let text = ParamValue::Float(v).to_string();
            prop_assert_eq!(ParamValue::parse_like(&text, &like), Ok(ParamValue::Float(v)));
        }

        #[test]
        fn integers_are_accepted_for_floats(v in -1_000_000_000i64..1_000_000_000) {
            prop_assert_eq!(
                ParamValue::parse_like(&v.to_string(), &ParamValue::Float(1.0)),
                Ok(ParamValue::Float(v as f64))
            );
        }

        #[test]
        fn durations_round_trip(n in 0i64..100_000, unit in 0usize..7) {
            let (name, len) = [
                ("ns", 1i64), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
                ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
            ][unit];
            let like = ParamValue::Duration(1);
            let want = ParamValue::Duration(n * len);
            prop_assert_eq!(ParamValue::parse_like(&format!("{n}{name}"), &like), Ok(want.clone()));
            // Display picks the largest unit and reads back the same.
            prop_assert_eq!(ParamValue::parse_like(&want.to_string(), &like), Ok(want));
        }

        #[test]
        fn strings_are_taken_as_written(s in "[ -~]{0,20}") {
            prop_assert_eq!(
                ParamValue::parse_like(&s, &ParamValue::Str(String::new())),
                Ok(ParamValue::Str(s.clone()))
            );
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(s in "\\PC{0,12}") {
            for like in [ParamValue::Int(0), ParamValue::Float(0.0), ParamValue::Duration(0)] {
                if let Err(e) = ParamValue::parse_like(&s, &like) {
                    prop_assert!(e.contains(&s));
                }
            }
        }
    }
}
