//! Differential tests of the fast matcher and of sharding against the reference matcher.
//!
//! Input: random rules (the pattern generator of `tests/oracle/mod.rs`, plus `prev` in a
//! condition, `prev` and variable fields in the emit clause, `on timeout emit`, a second rule, a
//! small run cap) and random tapes (up to 40 events over 4 keys, ties in time, arrival out of
//! time order under a reordering bound and allowed lateness, explicit watermarks).
//! Output: pass, or the first failing case shrunk, printed as rule text and input script.
//!
//! What is compared, as whole JSON lines in emission order with each signal's
//! [`strix::SignalOrder`], plus late events and the matcher counters (except `partitions`, which
//! differ by design):
//! - the reference matcher pushed event by event against the fast matcher pushed event by event,
//!   and against the fast matcher fed random batches ([`Engine::push_batch`]);
//! - the unsharded engine against the merge, by [`strix::SignalOrder`], of the outputs of the
//!   engines of shards `0..count` for `count` 1 to 4, with both matchers.
//!
//! The run is deterministic (fixed seed); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` override it.

#[allow(dead_code)] // the enumerator is not used here, only the rule generator
mod oracle;

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use strix::cep_core::EventBatch;
use strix::cep_core::symbol::SymbolTable;
use strix::{
    Admission, Engine, EngineConfig, FieldValue, MatcherKind, ShardSpec, SignalOrder, TimeOptions,
};

/// Random cases per run.
const CASES: u32 = 3000;

/// Random cases of the sharding test (each runs 22 engines).
const SHARD_CASES: u32 = 1000;

/// Fixed seed so that every run checks the same cases.
const SEED: u64 = 0xfa57_d1ff;

const S: i64 = 1_000_000_000;

/// One generated rule with its extras.
#[derive(Debug, Clone)]
struct RuleSpec {
    /// Generator choices for the pattern (see `oracle::Gen`).
    choices: Vec<u8>,
    /// `prev(v, n) >= c` added to one variable's condition: (variable pick, n, c).
    prev_cond: Option<(u8, u32, i64)>,
    /// `emit s { p: prev(v, n), f: first(x).v }` with this `n`.
    emit_prev: Option<u32>,
    /// `on timeout emit t { … }` (only with `within`).
    timeout: bool,
}

impl RuleSpec {
    /// The rule as text, named `name`.
    fn text(&self, name: &str) -> String {
        let rule = oracle::Gen::new(&self.choices, true).rule();
        let mut text = rule.text().replacen("rule r", &format!("rule {name}"), 1);
        let bound: Vec<&oracle::VarDef> = rule.vars.iter().filter(|v| !v.negated).collect();
        if let Some((pick, n, c)) = self.prev_cond {
            let var = &rule.vars[pick as usize % rule.vars.len()];
            let cond = format!("prev(v, {n}) >= {c}");
            if var.cond == oracle::Cond::True {
                let def = format!("{} as {cond}", var.name);
                text = match text.find(" define ") {
                    Some(i) => format!("{} define {def},{}", &text[..i], &text[i + 7..]),
                    None => format!("{text} define {def}"),
                };
            } else {
                for lead in [" define ", ", "] {
                    let from = format!("{lead}{} as ", var.name);
                    if let Some(i) = text.find(&from) {
                        let at = i + from.len();
                        text = format!("{}{cond} and {}", &text[..at], &text[at..]);
                        break;
                    }
                }
            }
        }
        if let Some(n) = self.emit_prev {
            let first = bound.first().map_or("a", |v| v.name.as_str());
            text.push_str(&format!(
                " emit s {{ p: prev(v, {n}), f: first({first}).v }}"
            ));
        }
        if self.timeout && rule.within.is_some() {
            let last = bound.last().map_or("a", |v| v.name.as_str());
            text.push_str(&format!(
                " on timeout emit t {{ n: count({last}), p: prev(v, 1) }}"
            ));
        }
        text
    }
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        vec(any::<u8>(), 0..48),
        prop::option::weighted(0.5, (any::<u8>(), 1u32..3, 0i64..3)),
        prop::option::weighted(0.25, 1u32..3),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(choices, prev_cond, emit_prev, timeout)| RuleSpec {
            choices,
            prev_cond,
            emit_prev,
            timeout,
        })
}

/// One input step.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// An event: type index, key, value, time (ns).
    Event { ty: u8, k: i64, v: i64, ts: i64 },
    /// An explicit watermark (ns).
    Watermark(i64),
}

/// A generated scenario.
#[derive(Debug, Clone)]
struct Scenario {
    rules: Vec<RuleSpec>,
    steps: Vec<Step>,
    max_delay_s: i64,
    lateness_s: i64,
    max_runs: usize,
    /// Batch boundaries for `push_batch` (row counts, cycled).
    batch_sizes: Vec<usize>,
}

impl Scenario {
    fn source(&self) -> String {
        let mut src = oracle::DECLS.to_string();
        for (i, r) in self.rules.iter().enumerate() {
            src.push_str(&r.text(&format!("r{i}")));
            src.push('\n');
        }
        src
    }

    fn script(&self) -> String {
        self.steps
            .iter()
            .map(|s| match *s {
                Step::Event { ty, k, v, ts } => format!(
                    "{} k={k} v={v} @{}",
                    oracle::TYPES[ty as usize],
                    ts as f64 / S as f64
                ),
                Step::Watermark(w) => format!("WATERMARK @{}", w as f64 / S as f64),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        vec(rule_spec(), 1..=2),
        // (type, key, value, time step in half seconds, lag in half seconds, watermark after)
        vec(
            (
                0u8..4,
                0i64..4,
                0i64..4,
                0i64..4,
                0i64..4,
                prop::bool::weighted(0.1),
            ),
            1..40,
        ),
        0i64..3,
        0i64..2,
        // A cap keeps patterns that multiply runs (`->>` with loops) small; evictions must agree too.
        prop_oneof![Just(64usize), 1usize..4],
        vec(1usize..8, 1..4),
    )
        .prop_map(
            |(rules, raw, max_delay_s, lateness_s, max_runs, batch_sizes)| {
                let mut steps = Vec::new();
                let mut clock = 0i64;
                for (ty, k, v, step, lag, mark) in raw {
                    clock += step * S / 2;
                    let ts = clock - lag * S / 2;
                    steps.push(Step::Event { ty, k, v, ts });
                    if mark {
                        steps.push(Step::Watermark(clock - S));
                    }
                }
                Scenario {
                    rules,
                    steps,
                    max_delay_s,
                    lateness_s,
                    max_runs,
                    batch_sizes,
                }
            },
        )
}

/// How the engine is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Push,
    Batch,
}

/// What one engine produced.
#[derive(Debug, Clone, PartialEq)]
struct Output {
    /// Signals in emission order: their order and JSON line.
    signals: Vec<(SignalOrder, String)>,
    late: Vec<u64>,
    /// Per rule: events, matches, timeouts, live runs, peak live runs, evictions.
    counters: Vec<[u64; 6]>,
    /// Engine steps at the end.
    steps: u64,
}

fn run(
    sc: &Scenario,
    kind: MatcherKind,
    feed: Feed,
    shard: Option<ShardSpec>,
) -> Result<Output, String> {
    let mut config = EngineConfig {
        time: TimeOptions {
            max_delay: sc.max_delay_s * S,
            allowed_lateness: sc.lateness_s * S,
            ..TimeOptions::default()
        },
        kind,
        shard,
        ..EngineConfig::default()
    };
    config.matcher.max_runs_per_key = sc.max_runs;
    let src = sc.source();
    let mut engine = Engine::build("diff.cep", &src, None, SymbolTable::new(), config)
        .map_err(|e| format!("does not compile: {e}\n{src}"))?;
    let mut signals = Vec::new();
    let mut late = Vec::new();
    let mut batch = EventBatch::new(engine.program().catalog.slot_count());
    let mut sizes = sc.batch_sizes.iter().cycle();
    let mut want = *sizes.next().unwrap_or(&1);
    let mut record = |s: strix::Signal<'_>| signals.push((s.order(), s.to_json().to_string()));
    let flush = |engine: &mut Engine,
                 batch: &mut EventBatch,
                 record: &mut dyn FnMut(strix::Signal<'_>),
                 late: &mut Vec<u64>| {
        let seqs = batch.seq().to_vec();
        engine.push_batch(batch, record, |row| late.push(seqs[row]));
        batch.clear();
    };
    for step in &sc.steps {
        match *step {
            Step::Event { ty, k, v, ts } => {
                let e = engine
                    .event(
                        oracle::TYPES[ty as usize],
                        ts,
                        &[("k", FieldValue::I64(k)), ("v", FieldValue::I64(v))],
                    )
                    .map_err(|e| e.to_string())?;
                match feed {
                    Feed::Push => {
                        if engine.push(&e, &mut record) == Admission::Late {
                            late.push(e.seq);
                        }
                    }
                    Feed::Batch => {
                        batch.push_event(&e);
                        if batch.len() >= want {
                            flush(&mut engine, &mut batch, &mut record, &mut late);
                            want = *sizes.next().unwrap_or(&1);
                        }
                    }
                }
            }
            Step::Watermark(w) => {
                flush(&mut engine, &mut batch, &mut record, &mut late);
                engine.watermark_to(w, &mut record);
            }
        }
    }
    flush(&mut engine, &mut batch, &mut record, &mut late);
    engine.finish(&mut record);
    let counters = engine
        .stats()
        .iter()
        .map(|s| {
            [
                s.events,
                s.matches,
                s.timeouts,
                s.live_runs as u64,
                s.peak_live_runs as u64,
                s.evictions,
            ]
        })
        .collect();
    Ok(Output {
        signals,
        late,
        counters,
        steps: engine.steps(),
    })
}

/// Merges shard outputs by signal order, stably within each shard.
fn merge(shards: Vec<Vec<(SignalOrder, String)>>) -> Vec<(SignalOrder, String)> {
    let mut all: Vec<(SignalOrder, usize, usize, String)> = shards
        .into_iter()
        .enumerate()
        .flat_map(|(shard, sigs)| {
            sigs.into_iter()
                .enumerate()
                .map(move |(i, (o, line))| (o, shard, i, line))
        })
        .collect();
    // Equal orders come from one partition, hence one shard: (order, shard, index) is the
    // stable merge.
    all.sort_by_key(|a| (a.0, a.1, a.2));
    all.into_iter().map(|(o, _, _, line)| (o, line)).collect()
}

fn differ(what: &str, sc: &Scenario, a: &Output, b: &Output) -> TestCaseError {
    TestCaseError::fail(format!(
        "{what}\nrules:\n{}\ninput: {}\nmax delay {}s, lateness {}s, run cap {}, batches {:?}\n\
         expected {a:#?}\ngot {b:#?}",
        sc.source(),
        sc.script(),
        sc.max_delay_s,
        sc.lateness_s,
        sc.max_runs,
        sc.batch_sizes
    ))
}

fn check_matchers(sc: &Scenario) -> Result<(), TestCaseError> {
    let reference =
        run(sc, MatcherKind::Reference, Feed::Push, None).map_err(TestCaseError::fail)?;
    let orders: Vec<SignalOrder> = reference.signals.iter().map(|s| s.0).collect();
    if !orders.is_sorted() {
        return Err(differ(
            "reference output not in SignalOrder",
            sc,
            &reference,
            &reference,
        ));
    }
    for feed in [Feed::Push, Feed::Batch] {
        let fast = run(sc, MatcherKind::Fast, feed, None).map_err(TestCaseError::fail)?;
        if fast != reference {
            return Err(differ(
                &format!("fast ({feed:?}) differs"),
                sc,
                &reference,
                &fast,
            ));
        }
    }
    let batched =
        run(sc, MatcherKind::Reference, Feed::Batch, None).map_err(TestCaseError::fail)?;
    if batched != reference {
        return Err(differ(
            "reference (Batch) differs",
            sc,
            &reference,
            &batched,
        ));
    }
    Ok(())
}

fn check_shards(sc: &Scenario) -> Result<(), TestCaseError> {
    for kind in [MatcherKind::Reference, MatcherKind::Fast] {
        let whole = run(sc, kind, Feed::Push, None).map_err(TestCaseError::fail)?;
        for count in 1..=4u32 {
            let mut outs = Vec::new();
            for index in 0..count {
                let feed = if index % 2 == 0 {
                    Feed::Push
                } else {
                    Feed::Batch
                };
                let shard = Some(ShardSpec { index, count });
                let out = run(sc, kind, feed, shard).map_err(TestCaseError::fail)?;
                // Every shard runs the same event-time layer and reads the same events.
                if out.late != whole.late {
                    return Err(differ("shard late events differ", sc, &whole, &out));
                }
                let events = |o: &Output| o.counters.iter().map(|c| c[0]).collect::<Vec<_>>();
                prop_assert_eq!(events(&out), events(&whole), "events read per rule");
                prop_assert_eq!(out.steps, whole.steps, "steps");
                outs.push(out.signals);
            }
            let merged = Output {
                signals: merge(outs),
                late: whole.late.clone(),
                counters: whole.counters.clone(),
                steps: whole.steps,
            };
            if merged.signals != whole.signals {
                return Err(differ(
                    &format!("{kind:?}: {count} shards merged differ"),
                    sc,
                    &whole,
                    &merged,
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(CASES, SEED))]

    #[test]
    fn fast_matcher_equals_reference_matcher(sc in scenario()) {
        check_matchers(&sc)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(SHARD_CASES, SEED))]

    #[test]
    fn merged_shards_equal_the_unsharded_engine(sc in scenario()) {
        check_shards(&sc)?;
    }
}

/// The generated rules reach the cases the fast matcher treats differently: skipping on (no
/// `prev` before a run's start) and off, `prev` in a later variable with skipping on, timeouts.
#[test]
fn generator_reaches_skipping_and_history_cases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use strix::cep_core::fast::{FastMatcher, history_depth};
    use strix::cep_core::reference::MatcherConfig;

    let mut runner = TestRunner::new(common::proptest_config(CASES, SEED));
    let (mut skipping, mut not_skipping, mut prev_with_skipping, mut timeouts) = (0, 0, 0, 0);
    for _ in 0..500 {
        let Ok(tree) = scenario().new_tree(&mut runner) else {
            continue;
        };
        let sc = tree.current();
        let Ok(engine) = Engine::from_rules("gen.cep", &sc.source()) else {
            continue;
        };
        for rule in &engine.program().rules {
            let m = FastMatcher::new(rule.clone(), 0, MatcherConfig::default());
            if m.skips() {
                skipping += 1;
                if rule.max_prev() > 0 {
                    prev_with_skipping += 1;
                }
            } else {
                not_skipping += 1;
                assert!(history_depth(rule) > 0);
            }
            if rule.timeout.is_some() {
                timeouts += 1;
            }
        }
    }
    for (what, n) in [
        ("skipping", skipping),
        ("not skipping", not_skipping),
        ("prev with skipping", prev_with_skipping),
        ("timeouts", timeouts),
    ] {
        assert!(n >= 20, "{what}: only {n} of 500 scenarios");
    }
}
