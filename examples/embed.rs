//! Embedding Strix in a fraud service: compile rules once, push transactions as they arrive, act
//! on signals in a callback.
//!
//! Run with `cargo run --example embed`.

use anyhow::Result;
use strix::{Engine, FieldValue};

const RULES: &str = r#"
event Txn { card: sym, merchant: sym, amount: f64, country: sym }

rule card_testing
  from Txn
  partition by card
  pattern tiny{3,} -> big
  define
    tiny as amount < 2
    big  as amount >= 500
  within 10m
  select all                 # report as soon as the large charge arrives
  after match skip past last
  emit card_testing { card, probes: count(tiny), amount: big.amount }

rule velocity
  from Txn
  partition by card
  pattern a -> b -> c
  define
    b as country != a.country
    c as country != a.country and country != b.country
  within 60s
  emit velocity { card, first_country: a.country, last_country: c.country }
"#;

/// Feeds a small stream of transactions through the engine and returns the signals as JSON lines.
pub fn run() -> Result<Vec<String>> {
    let mut engine = Engine::from_rules("fraud.cep", RULES).map_err(|e| anyhow::anyhow!("{e}"))?;
    // (card, merchant, amount, country, seconds since start)
    let stream = [
        ("C1", "M1", 1.00, "NL", 0),
        ("C2", "M2", 45.10, "FR", 5),
        ("C1", "M3", 0.50, "NL", 20),
        ("C1", "M3", 1.20, "NL", 40),
        ("C2", "M4", 12.00, "DE", 50),
        ("C2", "M5", 80.00, "IT", 58),
        ("C1", "M9", 950.00, "NL", 90),
    ];
    let mut out = Vec::new();
    for (card, merchant, amount, country, secs) in stream {
        let e = engine
            .event(
                "Txn",
                secs * 1_000_000_000,
                &[
                    ("card", FieldValue::Str(card)),
                    ("merchant", FieldValue::Str(merchant)),
                    ("amount", FieldValue::F64(amount)),
                    ("country", FieldValue::Str(country)),
                ],
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The callback runs on the pushing thread as soon as a match completes.
        engine.push(&e, |signal| out.push(signal.to_json().to_string()));
    }
    engine.finish(|signal| out.push(signal.to_json().to_string()));
    Ok(out)
}

#[allow(dead_code)] // Unused when the tests include this file as a module.
fn main() -> Result<()> {
    for line in run()? {
        println!("{line}");
    }
    Ok(())
}
