//! Differential tests of the sweep kernels: per variant, the kernel's counts (signals, true
//! positives, instances found) against one `Engine` per variant scored by `LabelScore`, on random
//! strict-chain rules and random tapes, on count-threshold queries, and on a generated card tape;
//! the GPU kernels against the CPU kernels (skipped without an adapter); and the reasons given
//! for rules outside the kernel classes.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use strix::cep_core::event::{EventBatch, Label};
use strix::cep_core::symbol::SymbolTable;
use strix::sweep_kernel::{DeliveredEvents, SweepDevice, Target, Variant, VariantCounts, plan};
use strix::{Engine, EngineConfig, LabelScore};

mod common;

const DECLS: &str = "event A { k: i64, v: i64, x: f64 }\nevent B { k: i64, v: i64, x: f64 }\nevent C { k: i64, v: i64, x: f64 }\n";
const LABELS: [&str; 3] = ["none", "hit", "other"];

/// Compiles `body` (after the declarations) into a variant.
fn variant(index: usize, body: &str) -> Variant {
    let src = format!("{DECLS}{body}");
    let mut symbols = SymbolTable::new();
    let program = strix::pattern_lang::compile(&src, None, &mut symbols)
        .unwrap_or_else(|d| panic!("{}", d.render("test.cep", &src)));
    Variant {
        index,
        values: Vec::new(),
        program,
    }
}

/// A tape of `(type, k, v, x, ts step, label class, instance)` rows, time rising by the steps.
fn tape(rows: &[(u16, i64, i64, u8, i64, u16, u32)]) -> DeliveredEvents {
    let mut batch = EventBatch::new(3);
    let mut labels = Vec::new();
    let mut ts = 1_000_000_000_000i64;
    for (i, &(t, k, v, x, step, class, instance)) in rows.iter().enumerate() {
        ts += step;
        let label = Label { class, instance };
        let x = f64::from(x) / 4.0;
        batch.push(i as u64, ts, t, label, &[k as u64, v as u64, x.to_bits()]);
        labels.push(label);
    }
    DeliveredEvents {
        batch,
        labels,
        label_names: LABELS.iter().map(|s| s.to_string()).collect(),
    }
}

/// One engine per variant over the delivered events, scored as the replay scores rules.
fn engine_counts(body: &str, events: &DeliveredEvents, rule: usize) -> VariantCounts {
    let src = format!("{DECLS}{body}");
    let mut engine = Engine::build(
        "test.cep",
        &src,
        None,
        SymbolTable::new(),
        EngineConfig::default(),
    )
    .expect("compiles");
    let r = &engine.program().rules[rule];
    let pos = |n: &str| {
        events
            .label_names
            .iter()
            .position(|l| l == n)
            .filter(|&i| i > 0)
            .map(|i| i as u16)
    };
    let class = pos(&r.emit.signal).or_else(|| pos(&r.name));
    let mut score = LabelScore::default();
    for (i, l) in events.labels.iter().enumerate() {
        score.observe(events.batch.seq()[i], *l);
    }
    let mut late = 0;
    engine.push_batch(
        &events.batch,
        |s| {
            if s.raw.rule == rule {
                score.score(rule, class, &s.raw.seq)
            }
        },
        |_| late += 1,
    );
    engine.finish(|s| {
        if s.raw.rule == rule {
            score.score(rule, class, &s.raw.seq)
        }
    });
    assert_eq!(late, 0);
    let (signals, tp, found) = score.counts(rule);
    VariantCounts {
        signals,
        true_positives: tp,
        instances_found: found as u64,
    }
}

/// A strict-chain template and its variants.
#[derive(Debug, Clone)]
struct ChainCase {
    /// Elements: (condition index, repetitions per variant offset).
    elements: Vec<(usize, u32)>,
    /// Per variant: (extra repetitions of element 0, threshold, within in s).
    variants: Vec<(u32, i64, Option<i64>)>,
    conds: Vec<usize>,
    partition: bool,
    from_ab: bool,
    select_all: bool,
    after: usize,
    rows: Vec<(u16, i64, i64, u8, i64, u16, u32)>,
}

const CONDS: [&str; 7] = [
    "A",
    "v < $t",
    "A and v >= $t",
    "B or (A and x > 0.5)",
    "v != $t",
    "B and x <= 0.25",
    "true",
];

impl ChainCase {
    fn body(&self, v: usize) -> String {
        let (extra, t, within) = self.variants[v];
        let names = ["a", "b", "c", "d", "e"];
        let mut pattern = Vec::new();
        let mut define = Vec::new();
        for (i, &(c, reps)) in self.elements.iter().enumerate() {
            let reps = if i == 0 { reps + extra } else { reps };
            pattern.push(if reps == 1 {
                names[i].to_string()
            } else {
                format!("{}{{{reps}}}", names[i])
            });
            define.push(format!(
                "{} as {}",
                names[i],
                CONDS[self.conds[c]].replace("$t", &t.to_string())
            ));
        }
        let after = [
            "no skip",
            "skip to next",
            "skip past last",
            "skip to first b",
            "skip to last a",
        ];
        let after = if self.elements.len() < 2 && self.after == 3 {
            "skip to first a"
        } else {
            after[self.after]
        };
        format!(
            "rule r {} {} pattern {} define {} {} select {} after match {} emit hit {{ }}\n",
            if self.from_ab { "from A, B" } else { "" },
            if self.partition { "partition by k" } else { "" },
            pattern.join(" "),
            define.join(", "),
            within.map_or(String::new(), |w| format!("within {w}s")),
            if self.select_all { "all" } else { "first" },
            after,
        )
    }
}

fn arb_chain_case() -> impl Strategy<Value = ChainCase> {
    (
        vec((0..3usize, 1..=3u32), 1..=4),
        vec((0..3u32, 0..4i64, prop::option::of(1..8i64)), 1..=6),
        vec(0..CONDS.len(), 3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0..5usize,
        vec(
            (
                0..3u16,
                0..3i64,
                0..4i64,
                0..4u8,
                prop_oneof![Just(0i64), 1..3_000_000_000i64],
                prop_oneof![4 => Just(0u16), 2 => Just(1u16), 1 => Just(2u16)],
                0..6u32,
            ),
            0..120,
        ),
    )
        .prop_map(
            |(elements, variants, conds, partition, from_ab, select_all, after, rows)| ChainCase {
                elements,
                variants,
                conds,
                partition,
                from_ab,
                select_all,
                after,
                rows,
            },
        )
}

fn check_chain(case: &ChainCase, totals: &Cell<[u64; 3]>) -> Result<(), TestCaseError> {
    let events = tape(&case.rows);
    let bodies: Vec<String> = (0..case.variants.len()).map(|v| case.body(v)).collect();
    let variants: Vec<Variant> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| variant(i, b))
        .collect();
    let plan = plan(Target::Rule(0), &variants)
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", bodies[0])))?;
    let got = plan
        .run(&events, SweepDevice::Cpu)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (i, b) in bodies.iter().enumerate() {
        let want = engine_counts(b, &events, 0);
        prop_assert_eq!(got[i], want, "variant {}: {}", i, b);
        let t = totals.get();
        totals.set([
            t[0] + want.signals,
            t[1] + want.true_positives,
            t[2] + want.instances_found,
        ]);
    }
    Ok(())
}

#[test]
fn strict_chains_equal_the_engine_per_variant() {
    let mut runner = TestRunner::new(common::proptest_config(256, 0x5eed_c4a1));
    let totals = Cell::new([0u64; 3]);
    runner
        .run(&arb_chain_case(), |c| check_chain(&c, &totals))
        .expect("kernel == engine");
    // The cases exercise matches, true positives and found instances, not just empty outputs.
    let [signals, tp, found] = totals.get();
    eprintln!("signals {signals}, true positives {tp}, instances found {found}");
    assert!(
        signals > 1000 && tp > 200 && found > 100,
        "{signals} {tp} {found}"
    );
}
