//! Differential test: the bit-parallel (Shift-And) matcher against the reference matcher on random
//! rules of its class and random streams, compared signal for signal (kind, seq, ts, key, fields,
//! order) and counter for counter (events, matches, live and peak live runs), also when the predicate words come from the columnar kernels over whole batches.
//!
//! Input: rules `pattern v0 v1 … v(k-1)` (1 to 5 elements, conditions drawn from a pool of 3 so several elements often share one) with
//! random single-event conditions, `from` all types or by default, `partition by` or not, `within` or not, both
//! selections and all five after-match strategies; 0 to 60 events of types `A B C` with a key `k`
//! (3 values) and a value `x` (0..4), time rising in random steps, random watermarks in between.
//! Output: pass, or the failing rule and stream, shrunk. (With the fixed seed about half the
//! cases produce signals, ~9500 in all.)

use proptest::collection::vec;
use proptest::prelude::*;
use strix::cep_core::event::{EventBatch, EventView, Label};
use strix::cep_core::kernel::{KernelSet, Scratch, mask_bit};
use strix::cep_core::reference::{MatcherConfig, ReferenceMatcher};
use strix::cep_core::shift_and::ShiftAndMatcher;
use strix::cep_core::signal::Signal;
use strix::cep_core::symbol::SymbolTable;

mod common;

const DECLS: &str =
    "event A { k: i64, x: i64 }\nevent B { k: i64, x: i64 }\nevent C { k: i64, x: i64 }\n";

#[derive(Debug, Clone)]
struct Case {
    rule: String,
    /// (type index, k, x, time step, watermark lag before the event)
    events: Vec<(u16, i64, i64, i64, Option<i64>)>,
}

fn arb_condition() -> impl Strategy<Value = String> {
    let ty = prop::sample::select(vec!["A", "B", "C"]);
    let op = prop::sample::select(vec![">=", "<", "==", "!="]);
    prop_oneof![
        ty.clone().prop_map(String::from),
        (ty.clone(), op.clone(), 0..4i64).prop_map(|(t, o, v)| format!("{t} and x {o} {v}")),
        (op, 0..4i64).prop_map(|(o, v)| format!("x {o} {v}")),
        (ty.clone(), ty).prop_map(|(a, b)| format!("{a} or ({b} and x > 1)")),
    ]
}

fn arb_case() -> impl Strategy<Value = Case> {
    (1..=5usize)
        .prop_flat_map(|k| {
            (
                vec(0..3usize, k),
                vec(arb_condition(), 3),
                any::<bool>(),
                any::<bool>(),
                prop::option::of(1..6i64),
                any::<bool>(),
                (0..5usize, 0..3usize),
                vec(
                    (0..3u16, 0..3i64, 0..4i64, 0..3i64, prop::option::of(0..3i64)),
                    0..60,
                ),
            )
        })
        .prop_map(
            |(vars, conds, from_all, keyed, within, all, (skip, skip_var), events)| {
                let names: Vec<String> = (0..vars.len()).map(|i| format!("v{i}")).collect();
                let pattern = names.clone();
                let define: Vec<String> = vars
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} as {}", names[i], conds[*c]))
                    .collect();
                let skip_to = &names[skip_var % vars.len()];
                let after = match skip {
                    0 => "no skip".to_string(),
                    1 => "skip to next".to_string(),
                    2 => "skip past last".to_string(),
                    3 => format!("skip to first {skip_to}"),
                    _ => format!("skip to last {skip_to}"),
                };
                let first = &names[0];
                let last = &names[vars.len() - 1];
                let rule = format!(
                    "{DECLS}rule r\n{}{}  pattern {}\n  define {}\n{}  select {}\n  after match {after}\n  emit s {{ a: {first}.x, b: {last}.x, n: count({first}) }}\n",
                    if from_all { "  from A, B, C\n" } else { "" },
                    if keyed { "  partition by k\n" } else { "" },
                    pattern.join(" "),
                    define.join(", "),
                    within.map_or(String::new(), |w| format!("  within {w}s\n")),
                    if all { "all" } else { "first" },
                );
                Case { rule, events }
            },
        )
}

/// One input item: an event or a watermark.
enum Item {
    Event(u64, i64, u16, [u64; 2]),
    Watermark(i64),
}

fn items(case: &Case) -> Vec<Item> {
    let mut out = Vec::new();
    let mut t = 0i64;
    for (i, &(ty, k, x, step, lag)) in case.events.iter().enumerate() {
        t += step * 1_000_000_000;
        if let Some(lag) = lag {
            out.push(Item::Watermark(t - 1 - lag * 1_000_000_000));
        }
        out.push(Item::Event(i as u64, t, ty, [k as u64, x as u64]));
    }
    out
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let mut symbols = SymbolTable::new();
    let program = strix::pattern_lang::compile(&case.rule, None, &mut symbols)
        .map_err(|d| TestCaseError::fail(format!("rule does not compile: {d:?}")))?;
    let rule = program.rules[0].clone();
    let config = MatcherConfig::default();
    prop_assert!(
        ShiftAndMatcher::supports(&rule, &config),
        "class: {}",
        case.rule
    );
    let slots = program.catalog.slot_count();
    let mut reference = ReferenceMatcher::new(rule.clone(), 0, config);
    let mut lazy = ShiftAndMatcher::new(rule.clone(), 0, config, slots).expect("supported");
    let mut masked = ShiftAndMatcher::new(rule, 0, config, slots).expect("supported");
    let kernels = KernelSet::new(masked.predicates()).expect("single-event predicates");

    let items = items(case);
    // Predicate words for every event, from the kernels over one batch.
    let mut batch = EventBatch::new(slots);
    for item in &items {
        if let Item::Event(seq, ts, ty, s) = item {
            batch.push(*seq, *ts, *ty, Label::default(), s);
        }
    }
    let mut masks = Vec::new();
    kernels.eval(&batch, &mut Scratch::new(), &mut masks);

    let (mut want, mut got_lazy, mut got_masked) = (Vec::new(), Vec::new(), Vec::new());
    let mut row = 0usize;
    let mut w = i64::MIN;
    for item in &items {
        match item {
            Item::Watermark(x) => {
                if *x > w {
                    w = *x;
                    reference.on_watermark(w, &mut want);
                    lazy.on_watermark(w, &mut got_lazy);
                    masked.on_watermark(w, &mut got_masked);
                }
            }
            Item::Event(seq, ts, ty, s) => {
                let e = EventView {
                    seq: *seq,
                    ts: *ts,
                    type_id: *ty,
                    slots: s,
                };
                if ts - 1 > w {
                    w = ts - 1;
                    reference.on_watermark(w, &mut want);
                    lazy.on_watermark(w, &mut got_lazy);
                    masked.on_watermark(w, &mut got_masked);
                }
                let mask = masks
                    .iter()
                    .enumerate()
                    .fold(0u64, |m, (j, p)| m | (u64::from(mask_bit(p, row)) << j));
                row += 1;
                reference.on_event(e, &mut want);
                lazy.on_event(e, &mut got_lazy);
                masked.on_event_masked(e, mask, &mut got_masked);
            }
        }
    }
    reference.finish(&mut want);
    lazy.finish(&mut got_lazy);
    masked.finish(&mut got_masked);
    let show = |v: &[Signal]| v.iter().map(|s| format!("{:?}", s.seq)).collect::<Vec<_>>();
    prop_assert_eq!(&want, &got_lazy, "{} -> {:?}", case.rule, show(&want));
    prop_assert_eq!(&want, &got_masked, "{} -> {:?}", case.rule, show(&want));
    for got in [lazy.stats(), masked.stats()] {
        let want = reference.stats();
        prop_assert_eq!(
            (
                want.events,
                want.matches,
                want.live_runs,
                want.peak_live_runs
            ),
            (got.events, got.matches, got.live_runs, got.peak_live_runs)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(3000, 0x5a1f_7a9d))]

    #[test]
    fn shift_and_equals_reference(case in arb_case()) {
        run_case(&case)?;
    }
}

#[test]
fn the_class_excludes_what_it_cannot_run() {
    let symbols = SymbolTable::new();
    let config = MatcherConfig::default();
    let supported = |body: &str| {
        let src = format!("{DECLS}{body}");
        let p = strix::pattern_lang::compile(&src, None, &mut symbols.clone())
            .unwrap_or_else(|d| panic!("{body}: {d:?}"));
        ShiftAndMatcher::supports(&p.rules[0], &config)
    };
    assert!(supported(
        "rule r pattern a b c define a as A, b as B, c as C emit s {}"
    ));
    assert!(supported(
        "rule r pattern a define a as A and x > 1 emit s { x: a.x }"
    ));
    // Relaxed contiguity, quantifiers, cross-event conditions, prev, timeouts: not in the class.
    assert!(!supported(
        "rule r pattern a -> b define a as A, b as B emit s {}"
    ));
    assert!(!supported(
        "rule r pattern a b+ define a as A, b as B emit s {}"
    ));
    assert!(!supported(
        "rule r pattern a b define a as A, b as B and x > a.x emit s {}"
    ));
    assert!(!supported(
        "rule r pattern a b define a as A, b as B and x > prev(x, 1) emit s {}"
    ));
    assert!(!supported(
        "rule r pattern a b define a as A, b as B within 1s on timeout emit t {} emit s {}"
    ));
}
