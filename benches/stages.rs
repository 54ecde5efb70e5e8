//! Criterion benches per stage, each with `Throughput::Elements` (events):
//! generation into a tape, tape decode, predicate kernel, automaton step (reference, fast and
//! bit-parallel matchers over in-memory batches), ring hop (one batch message through the
//! pipeline's SPSC ring between two threads) and end-to-end replay (inline and sharded).
//! Run with `cargo bench --bench stages` (add `-- STAGE` to pick one, e.g. `-- automaton`).

use std::io::sink;
use std::sync::Arc;

use cep_core::event::EventBatch;
use cep_core::kernel::{KernelSet, Scratch};
use cep_core::reference::MatcherConfig;
use cep_core::shift_and::ShiftAndMatcher;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use feeds::r#gen::{GenSpec, Generator, write_tape};
use feeds::tape::TapeReader;
use strix::pipeline::ring::{Wait, ring};
use strix::replay::{ReplayOptions, RunOptions, replay_run};
use strix::{Engine, EngineConfig, MatcherKind};

const EVENTS: u64 = 1_000_000;

const DECLS: &str = "
event Order  { id: u64, account: sym, symbol: sym, side: side, price: f64, qty: f64 }
event Cancel { id: u64, account: sym, symbol: sym }
event Trade  { symbol: sym, price: f64, qty: f64, side: side, account: sym }
";

/// The keyed 3-step pattern of the throughput target and the peer comparison (relaxed).
const BENCH3: &str = "
rule bench3
  from Order, Cancel, Trade
  partition by account
  pattern o -> c -> t
  define
    o as Order and qty >= 5000
    c as Cancel
    t as Trade and qty < 1000
  within 2s
  select all
  after match no skip
  emit bench3 { account }
";

/// A keyed 3-step strict sequence (the bit-parallel matcher's class): three large orders of one
/// account in a row.
const BENCH3_STRICT: &str = "
rule bench3_strict
  from Order, Cancel, Trade
  partition by account
  pattern a b c
  define
    a as Order and qty >= 5000
    b as Order and qty >= 5000
    c as Order and qty >= 5000
  within 2s
  select all
  after match no skip
  emit bench3_strict { account }
";

fn market_rules() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/rules/market.cep"
    ))
    .expect("market rules")
}

fn stages(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("strix-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("market.tape");

    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);

    group.bench_function("gen_market_to_tape", |b| {
        b.iter(|| {
            write_tape(
                Generator::Market,
                &GenSpec::new(EVENTS, 7),
                &path,
                &mut |_| {},
            )
            .expect("writing the bench tape")
        });
    });

    let tape = TapeReader::open(&path).expect("bench tape");
    group.bench_function("tape_decode", |b| {
        let mut batch = EventBatch::new(tape.slot_count());
        b.iter(|| {
            let mut n = 0;
            for i in 0..tape.block_count() {
                tape.read_block(i, &mut batch).expect("block");
                n += batch.len();
            }
            n
        });
    });

    // Decoded once: the later stages start from struct-of-arrays batches in memory.
    let batches: Vec<EventBatch> = tape.batches().map(|b| b.expect("block")).collect();

    // Predicate kernel: the start condition of bench3 over every batch (best ISA of this CPU).
    let program = strix::pattern_lang::compile(
        &format!("{DECLS}{BENCH3}"),
        Some(tape.catalog()),
        &mut tape.symbols().clone(),
    )
    .expect("bench3 compiles");
    let start = program.rules[0].nfa.vars[0].condition.clone();
    let kernels = KernelSet::new(&[start]).expect("single-event condition");
    group.bench_function(format!("predicate_kernel_{:?}", kernels.isa()), |b| {
        let mut scratch = Scratch::new();
        let mut masks = Vec::new();
        b.iter(|| {
            let mut ones = 0u32;
            for batch in &batches {
                kernels.eval(batch, &mut scratch, &mut masks);
                ones += masks[0].iter().map(|w| w.count_ones()).sum::<u32>();
            }
            ones
        });
    });

    // Automaton step: the engine (time layer included) over in-memory batches.
    let market = market_rules();
    for (name, rules) in [
        ("market", market.clone()),
        ("bench3", format!("{DECLS}{BENCH3}")),
        ("bench3_strict", format!("{DECLS}{BENCH3_STRICT}")),
    ] {
        for kind in [MatcherKind::Reference, MatcherKind::Fast] {
            let id = BenchmarkId::new(format!("automaton_{name}"), format!("{kind:?}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let mut engine = Engine::build(
                        name,
                        &rules,
                        Some(tape.catalog()),
                        tape.symbols().clone(),
                        EngineConfig {
                            kind,
                            ..EngineConfig::default()
                        },
                    )
                    .expect("rules compile");
                    let mut signals = 0u64;
                    for batch in &batches {
                        engine.push_batch(batch, |_| signals += 1, |_| {});
                    }
                    engine.finish(|_| signals += 1);
                    signals
                });
            });
        }
    }

    // The bit-parallel matcher alone on the strict pattern, predicate words from the kernels.
    let strict = strix::pattern_lang::compile(
        &format!("{DECLS}{BENCH3_STRICT}"),
        Some(tape.catalog()),
        &mut tape.symbols().clone(),
    )
    .expect("strict bench3 compiles");
    let rule = strict.rules[0].clone();
    group.bench_function("automaton_bench3_strict/ShiftAnd", |b| {
        let config = MatcherConfig::default();
        let probe = ShiftAndMatcher::new(rule.clone(), 0, config, tape.slot_count())
            .expect("strict sequence of single-event conditions");
        let kernels = KernelSet::new(probe.predicates()).expect("single-event predicates");
        let mut scratch = Scratch::new();
        let mut masks = Vec::new();
        let mut row = Vec::new();
        b.iter(|| {
            let mut m = ShiftAndMatcher::new(rule.clone(), 0, config, tape.slot_count())
                .expect("supported");
            let mut out = Vec::new();
            for batch in &batches {
                kernels.eval(batch, &mut scratch, &mut masks);
                for i in 0..batch.len() {
                    let (w, bit) = (i / 64, i % 64);
                    let word = masks
                        .iter()
                        .enumerate()
                        .fold(0u64, |acc, (j, p)| acc | (((p[w] >> bit) & 1) << j));
                    batch.copy_slots(i, &mut row);
                    let e = cep_core::event::EventView {
                        seq: batch.seq()[i],
                        ts: batch.ts()[i],
                        type_id: batch.type_ids()[i],
                        slots: &row,
                    };
                    m.on_event_masked(e, word, &mut out);
                }
            }
            m.finish(&mut out);
            out.len()
        });
    });

    // Ring hop: every batch as one message through an SPSC ring to a consumer thread.
    let shared: Vec<Arc<EventBatch>> = batches.iter().cloned().map(Arc::new).collect();
    group.bench_function("ring_hop", |b| {
        b.iter(|| {
            let (mut tx, mut rx) = ring::<Arc<EventBatch>>(64, Wait::Spin);
            let consumer = std::thread::spawn(move || {
                let mut rows = 0usize;
                while let Some(batch) = rx.recv() {
                    rows += batch.len();
                }
                rows
            });
            for batch in &shared {
                if tx.send(Arc::clone(batch)).is_err() {
                    break;
                }
            }
            drop(tx);
            consumer.join().expect("consumer thread")
        });
    });

    // End to end: `strix replay` as a library call, signals to a sink writer.
    let rules_path = dir.join("market.cep");
    std::fs::write(&rules_path, &market).expect("rules file");
    let opts = ReplayOptions {
        rules: rules_path,
        tape: path.clone(),
        max_runs_per_key: MatcherConfig::default().max_runs_per_key,
        time: Default::default(),
    };
    for (label, matcher, shards) in [
        ("reference_inline", MatcherKind::Reference, 0),
        ("fast_inline", MatcherKind::Fast, 0),
        ("fast_1_shard", MatcherKind::Fast, 1),
    ] {
        group.bench_function(BenchmarkId::new("end_to_end_market", label), |b| {
            b.iter(|| {
                let run = RunOptions {
                    matcher,
                    shards,
                    ..RunOptions::default()
                };
                replay_run(&opts, &run, &mut sink(), None, &mut |_, _| {})
                    .expect("replay")
                    .signals
            });
        });
    }
    group.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, stages);
criterion_main!(benches);
