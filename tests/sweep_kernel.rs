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
    if let Some(ctx) = gpu_kernels::test_support::context_or_skip("sweep chain gpu == cpu") {
        let gpu = plan
            .run(&events, SweepDevice::Gpu(ctx))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(gpu, got, "GPU against CPU: {}", &bodies[0]);
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

/// A count-threshold query template's variants: (where form, t, size s, slide s, n, `>`?).
#[derive(Debug, Clone)]
struct QueryCase {
    variants: Vec<(usize, i64, i64, i64, i64, bool)>,
    grouped: bool,
    rows: Vec<(u16, i64, i64, u8, i64, u16, u32)>,
}

const WHERES: [&str; 3] = ["", "where v >= $t", "where A and x > 0.25"];

fn passes(form: usize, t: i64, row: &(u16, i64, i64, u8, i64, u16, u32)) -> bool {
    match form {
        0 => true,
        1 => row.2 >= t,
        _ => row.0 == 0 && f64::from(row.3) / 4.0 > 0.25,
    }
}

impl QueryCase {
    fn body(&self, v: usize) -> String {
        let (form, t, size, slide, n, gt) = self.variants[v];
        let window = if size == slide {
            format!("tumbling {size}s")
        } else {
            format!("sliding {size}s every {slide}s")
        };
        format!(
            "query q from A, B {} {} window {window} having count(*) {} {n} emit hit {{ n: count(*) }}\n",
            WHERES[form].replace("$t", &t.to_string()),
            if self.grouped { "group by k" } else { "" },
            if gt { ">" } else { ">=" },
        )
    }

    /// Derived events, true positives and instances found, computed directly from §21.2.
    fn direct(&self, v: usize, events: &DeliveredEvents) -> (VariantCounts, u64) {
        use std::collections::{BTreeMap, BTreeSet};
        let (form, t, size, slide, n, gt) = self.variants[v];
        let (size, slide) = (size * 1_000_000_000, slide * 1_000_000_000);
        let mut windows: BTreeMap<(i64, i64), (i64, bool, BTreeSet<u32>)> = BTreeMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            if row.0 > 1 || !passes(form, t, row) {
                continue;
            }
            let ts = events.batch.ts()[i];
            let key = if self.grouped { row.1 } else { 0 };
            let mut end = ts.div_euclid(slide) * slide + slide;
            while end - size <= ts {
                let w = windows.entry((key, end)).or_default();
                w.0 += 1;
                if row.5 == 1 {
                    w.1 = true;
                    w.2.insert(row.6);
                }
                end += slide;
            }
        }
        let thr = if gt { n + 1 } else { n };
        let mut c = VariantCounts::default();
        let mut found = BTreeSet::new();
        for w in windows.values().filter(|w| w.0 >= thr) {
            c.signals += 1;
            if w.1 {
                c.true_positives += 1;
                found.extend(w.2.iter().copied());
            }
        }
        c.instances_found = found.len() as u64;
        (c, c.signals)
    }
}

/// Derived events of query 0 by the engine.
fn engine_derived(body: &str, events: &DeliveredEvents) -> u64 {
    let src = format!("{DECLS}{body}");
    let mut engine = Engine::build(
        "test.cep",
        &src,
        None,
        SymbolTable::new(),
        EngineConfig::default(),
    )
    .expect("compiles");
    engine.push_batch(&events.batch, |_| {}, |_| {});
    engine.finish(|_| {});
    engine.query_stats()[0].emitted
}

fn arb_query_case() -> impl Strategy<Value = QueryCase> {
    (
        vec(
            (
                0..3usize,
                0..4i64,
                1..4i64,
                1..=3i64,
                0..5i64,
                any::<bool>(),
            ),
            1..=6,
        ),
        any::<bool>(),
        vec(
            (
                0..3u16,
                0..3i64,
                0..4i64,
                0..4u8,
                prop_oneof![Just(0i64), 1..2_500_000_000i64],
                prop_oneof![4 => Just(0u16), 2 => Just(1u16), 1 => Just(2u16)],
                0..6u32,
            ),
            0..150,
        ),
    )
        .prop_map(|(variants, grouped, rows)| QueryCase {
            // Sliding sizes are whole multiples of the slide.
            variants: variants
                .into_iter()
                .map(|(f, t, m, s, n, gt)| (f, t, m * s, s, n, gt))
                .collect(),
            grouped,
            rows,
        })
}

fn check_query(case: &QueryCase, totals: &Cell<[u64; 3]>) -> Result<(), TestCaseError> {
    let events = tape(&case.rows);
    let bodies: Vec<String> = (0..case.variants.len()).map(|v| case.body(v)).collect();
    let variants: Vec<Variant> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| variant(i, b))
        .collect();
    let plan = plan(Target::Query(0), &variants)
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", bodies[0])))?;
    let got = plan
        .run(&events, SweepDevice::Cpu)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (i, b) in bodies.iter().enumerate() {
        let (want, _) = case.direct(i, &events);
        prop_assert_eq!(got[i], want, "variant {}: {}", i, b);
        prop_assert_eq!(got[i].signals, engine_derived(b, &events), "engine: {}", b);
        let t = totals.get();
        totals.set([
            t[0] + want.signals,
            t[1] + want.true_positives,
            t[2] + want.instances_found,
        ]);
    }
    if let Some(ctx) = gpu_kernels::test_support::context_or_skip("sweep window gpu == cpu") {
        let gpu = plan
            .run(&events, SweepDevice::Gpu(ctx))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(gpu, got, "GPU against CPU: {}", &bodies[0]);
    }
    Ok(())
}

#[test]
fn count_threshold_queries_equal_the_engine_and_a_direct_count() {
    let mut runner = TestRunner::new(common::proptest_config(128, 0x5eed_9e71));
    let totals = Cell::new([0u64; 3]);
    runner
        .run(&arb_query_case(), |c| check_query(&c, &totals))
        .expect("kernel == engine");
    let [signals, tp, found] = totals.get();
    eprintln!("derived events {signals}, true positives {tp}, instances found {found}");
    assert!(
        signals > 1000 && tp > 200 && found > 100,
        "{signals} {tp} {found}"
    );
}

fn reason(body: &str) -> String {
    match plan(Target::Rule(0), &[variant(0, body)]) {
        Ok(p) => panic!("in class: {}", p.describe()),
        Err(e) => e.0,
    }
}

#[test]
fn rules_outside_the_classes_say_why() {
    let r = reason("rule r pattern a -> b define a as A, b as B");
    assert!(r.contains("`->` or `->>`"), "{r}");
    let r = reason("rule r pattern a b+ define a as A, b as B");
    assert!(r.contains("without bound"), "{r}");
    let r = reason("rule r pattern a b? c define a as A, b as B, c as C");
    assert!(r.contains("optional"), "{r}");
    let r = reason("rule r pattern a b | c define a as A, b as B, c as C");
    assert!(r.contains("several start states"), "{r}");
    let r = reason("rule r pattern a !x b define a as A, x as C, b as B");
    assert!(r.contains("negation"), "{r}");
    let r = reason("rule r pattern a b define a as A, b as B and v > a.v");
    assert!(r.contains("more than the current event"), "{r}");
    let r = reason("rule r pattern a b define a as A, b as B and v > prev(v, 1)");
    assert!(r.contains("more than the current event"), "{r}");
    let r = reason(
        "rule r pattern a b define a as A, b as B within 5s emit ok { } on timeout emit late { }",
    );
    assert!(r.contains("on timeout emit"), "{r}");
    let r = reason("rule r pattern a{33} define a as A");
    assert!(r.contains("more than 32 states"), "{r}");
    let r = reason("rule r pattern a b define a as A, b as B emit hit { } score 1.0 threshold 0.5");
    assert!(r.contains("score threshold"), "{r}");
    // More than 64 distinct conditions over all variants.
    let many: Vec<Variant> = (0..65)
        .map(|i| variant(i, &format!("rule r pattern a define a as v == {i}")))
        .collect();
    let r = plan(Target::Rule(0), &many).expect_err("65 conditions").0;
    assert!(r.contains("more than 64 distinct conditions"), "{r}");
    // Variants must read the same types.
    let mixed = [
        variant(0, "rule r from A pattern a define a as A"),
        variant(1, "rule r from A, B pattern a define a as A"),
    ];
    let r = plan(Target::Rule(0), &mixed).expect_err("different from").0;
    assert!(r.contains("differ"), "{r}");
    let q = |body: &str| match plan(Target::Query(0), &[variant(0, body)]) {
        Ok(p) => panic!("in class: {}", p.describe()),
        Err(e) => e.0,
    };
    let r = q("query q from A window session gap 5s emit w { n: count(*) }");
    assert!(r.contains("session"), "{r}");
    let r = q("query q from A window tumbling 5s having sum(v) > 3 emit w { n: count(*) }");
    assert!(r.contains("having"), "{r}");
    let r = q("query q from A window tumbling 5s having count(*) < 3 emit w { n: count(*) }");
    assert!(r.contains("having"), "{r}");
    let r = match plan(
        Target::Query(1),
        &[variant(
            0,
            "query q from A window tumbling 5s emit w { n: count(*) }
             query q2 from w window tumbling 10s emit w2 { n: count(*) }",
        )],
    ) {
        Ok(p) => panic!("in class: {}", p.describe()),
        Err(e) => e.0,
    };
    assert!(r.contains("derived events"), "{r}");
    // In class: the plan describes itself.
    let p = plan(
        Target::Rule(0),
        &[variant(
            0,
            "rule r pattern a{3} b define a as A, b as B within 5s",
        )],
    )
    .expect("a strict chain");
    assert_eq!(
        p.describe(),
        "strict chain of 4 conditions, 2 distinct conditions"
    );
}

/// The card-testing template of the sweep examples; `$n`, `$tiny`, `$big` and `$w` vary.
pub const CARD_TESTING: &str = r#"
param n = 5
param tiny = 2.0
param big = 800.0
param w = 10m
rule card_testing
  from Txn
  partition by card
  pattern tiny{$n} big
  define
    tiny as Txn and amount < $tiny and channel == "online",
    big as Txn and amount >= $big
  within $w
  emit card_testing { card }
"#;

/// The 64 parameter vectors of the card test: n 3..6, tiny 1.5/2/3/5, big 500/800, w 5m/10m.
fn card_values() -> Vec<Vec<(String, strix::sweep_kernel::ParamValue)>> {
    use strix::sweep_kernel::ParamValue as P;
    let mut out = Vec::new();
    for n in 3..=6 {
        for tiny in [1.5, 2.0, 3.0, 5.0] {
            for big in [500.0, 800.0] {
                for w in [5, 10] {
                    out.push(vec![
                        ("n".to_string(), P::Int(n)),
                        ("tiny".to_string(), P::Float(tiny)),
                        ("big".to_string(), P::Float(big)),
                        ("w".to_string(), P::Duration(w * 60_000_000_000)),
                    ]);
                }
            }
        }
    }
    out
}

#[test]
fn card_testing_sweep_on_a_generated_tape_equals_the_engine() {
    use strix::feeds::r#gen::{GenSpec, cards};
    let mut spec = GenSpec::new(50_000, 7);
    spec.inject_every = 400;
    spec.cards = 2_000;
    let mut batch = EventBatch::new(strix::feeds::r#gen::cards_catalog().slot_count());
    let generated = cards(&spec, &mut batch).expect("generates");
    let labels: Vec<Label> = (0..batch.len()).map(|r| batch.label(r)).collect();
    let events = DeliveredEvents {
        batch,
        labels,
        label_names: generated.label_names.clone(),
    };
    let values = card_values();
    let variants: Vec<Variant> = values
        .iter()
        .enumerate()
        .map(|(i, vals)| {
            let overrides = vals.iter().cloned().collect();
            let mut symbols = generated.symbols.clone();
            let program = strix::pattern_lang::compile_with_params(
                CARD_TESTING,
                Some(&generated.catalog),
                &mut symbols,
                &overrides,
            )
            .unwrap_or_else(|d| panic!("{}", d.render("cards.cep", CARD_TESTING)));
            Variant {
                index: i,
                values: vals.clone(),
                program,
            }
        })
        .collect();
    let plan = plan(Target::Rule(0), &variants).expect("a strict chain");
    assert_eq!(
        plan.describe(),
        "strict chain of 4 to 7 conditions, 6 distinct conditions"
    );
    let cpu = plan.run(&events, SweepDevice::Cpu).expect("runs");
    assert!(plan.describe().ends_with("keys"), "{}", plan.describe());
    let mut best = (0, 0);
    for (i, vals) in values.iter().enumerate() {
        // The engine runs the template with this variant's values as the defaults.
        let mut src = String::new();
        for (name, v) in vals {
            let lit = match v {
                strix::sweep_kernel::ParamValue::Int(x) => x.to_string(),
                strix::sweep_kernel::ParamValue::Float(x) => format!("{x:?}"),
                strix::sweep_kernel::ParamValue::Duration(x) => format!("{}s", x / 1_000_000_000),
                strix::sweep_kernel::ParamValue::Str(s) => format!("{s:?}"),
            };
            src.push_str(&format!("param {name} = {lit}\n"));
        }
        src.push_str(
            CARD_TESTING
                .split_once("param w = 10m\n")
                .expect("template")
                .1,
        );
        let mut engine = Engine::build(
            "cards.cep",
            &src,
            Some(&generated.catalog),
            generated.symbols.clone(),
            EngineConfig::default(),
        )
        .expect("compiles");
        let mut score = LabelScore::default();
        for (r, l) in events.labels.iter().enumerate() {
            score.observe(events.batch.seq()[r], *l);
        }
        let class = Some(strix::feeds::r#gen::cards::CARD_TESTING);
        engine.push_batch(&events.batch, |s| score.score(0, class, &s.raw.seq), |_| {});
        engine.finish(|s| score.score(0, class, &s.raw.seq));
        let (signals, tp, found) = score.counts(0);
        let want = VariantCounts {
            signals,
            true_positives: tp,
            instances_found: found as u64,
        };
        assert_eq!(cpu[i], want, "variant {i}: {vals:?}");
        if found > best.1 {
            best = (i, found);
        }
    }
    // The sweep is informative: some variants find instances, and they differ.
    assert!(best.1 > 10, "{best:?}");
    assert!(cpu.iter().any(|c| c.instances_found < best.1 as u64 / 2));
    if let Some(ctx) = gpu_kernels::test_support::context_or_skip("sweep cards gpu == cpu") {
        assert_eq!(plan.run(&events, SweepDevice::Gpu(ctx)).expect("runs"), cpu);
    }
}
