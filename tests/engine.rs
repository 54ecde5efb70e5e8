//! Engine-level behaviour that the corpus format cannot express: the live-run cap and its
//! eviction counter, rule errors through the embedding API, mistyped event fields.

use anyhow::Result;
use strix::cep_core::reference::MatcherConfig;
use strix::{Engine, EngineConfig, EngineError, FieldValue};

const RULES: &str = "
event E { k: sym, v: i64 }
rule pairs from E partition by k pattern a ->> b define a as v == 1, b as v == 2 within 1h select all after match no skip
";

#[test]
fn run_cap_evicts_oldest_and_counts() -> Result<()> {
    let config = EngineConfig {
        matcher: MatcherConfig {
            max_runs_per_key: 3,
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::build("cap.cep", RULES, None, Default::default(), config)?;
    let mut signals = Vec::new();
    // Ten `a` events, each starting a run that waits (skip till any) for a `b`.
    for i in 0..10 {
        let e = engine.event(
            "E",
            i,
            &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(1))],
        )?;
        engine.push(&e, |s| signals.push(s.raw.seq.clone()));
    }
    let stats = engine.stats()[0];
    assert_eq!(stats.live_runs, 3);
    assert_eq!(stats.evictions, 7);
    let e = engine.event(
        "E",
        20,
        &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(2))],
    )?;
    engine.push(&e, |s| signals.push(s.raw.seq.clone()));
    // Only the three newest runs survived to meet the `b`.
    assert_eq!(signals, vec![vec![7, 10], vec![8, 10], vec![9, 10]]);
    Ok(())
}

#[test]
fn without_cap_pressure_nothing_is_evicted() -> Result<()> {
    let mut engine = Engine::from_rules("nocap.cep", RULES)?;
    let mut n = 0;
    for i in 0..10 {
        let e = engine.event(
            "E",
            i,
            &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(1))],
        )?;
        engine.push(&e, |_| n += 1);
    }
    let e = engine.event(
        "E",
        20,
        &[("k", FieldValue::Str("K")), ("v", FieldValue::I64(2))],
    )?;
    engine.push(&e, |_| n += 1);
    assert_eq!(n, 10);
    assert_eq!(engine.stats()[0].evictions, 0);
    assert_eq!(engine.stats()[0].peak_live_runs, 10);
    Ok(())
}

#[test]
fn embedding_errors_are_values() {
    let err = Engine::from_rules(
        "bad.cep",
        "event E { v: i64 }\nrule r pattern a define a as w > 1",
    )
    .unwrap_err();
    let EngineError::Rules(text) = err else {
        panic!("expected a rules error")
    };
    assert!(text.contains("bad.cep:2:30"), "{text}");
    let mut engine = Engine::from_rules("ok.cep", RULES).expect("rules compile");
    assert!(engine.event("Nope", 0, &[]).is_err());
    assert!(
        engine
            .event("E", 0, &[("missing", FieldValue::I64(1))])
            .is_err()
    );
    assert!(
        engine
            .event("E", 0, &[("v", FieldValue::Str("x"))])
            .is_err()
    );
}
