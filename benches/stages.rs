//! Criterion benches per stage: generation into a tape, tape decode, and the reference matcher
//! over the example market rules. Run with `cargo bench --bench stages`.

use std::path::Path;

use cep_core::event::{EventBatch, EventView};
use cep_core::rule::Program;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use feeds::r#gen::{self as generators, EventSink, GenSpec};
use feeds::tape::{TapeError, TapeReader, TapeWriter};
use strix::{Engine, EngineConfig};

const EVENTS: u64 = 200_000;

struct Sink<'a>(&'a mut TapeWriter);

impl EventSink for Sink<'_> {
    type Error = TapeError;
    fn push(
        &mut self,
        ts: i64,
        type_id: u16,
        label: cep_core::event::Label,
        slots: &[u64],
    ) -> Result<(), TapeError> {
        self.0.push(ts, type_id, label, slots).map(|_| ())
    }
}

fn write_market_tape(path: &Path) -> anyhow::Result<()> {
    let labels: Vec<String> = generators::market::LABELS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut w = TapeWriter::create(path, &generators::market_catalog(), &labels, "bench")?;
    let g = generators::market(&GenSpec::new(EVENTS, 7), &mut Sink(&mut w))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    w.finish(&g.symbols)?;
    Ok(())
}

fn stages(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("strix-bench-{}.tape", std::process::id()));
    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);

    group.bench_function("gen_market_to_tape", |b| {
        b.iter(|| write_market_tape(&path).expect("writing the bench tape"));
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

    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/rules/market.cep"
    ))
    .expect("market rules");
    let mut events: Vec<(u64, i64, u16, Vec<u64>)> = Vec::new();
    let mut batch = EventBatch::new(tape.slot_count());
    for i in 0..tape.block_count() {
        tape.read_block(i, &mut batch).expect("block");
        for r in 0..batch.len() {
            let mut slots = Vec::new();
            batch.copy_slots(r, &mut slots);
            events.push((batch.seq()[r], batch.ts()[r], batch.type_ids()[r], slots));
        }
    }
    group.bench_function("reference_matcher_market_rules", |b| {
        b.iter(|| {
            let mut engine = Engine::build(
                "market.cep",
                &rules,
                Some(tape.catalog()),
                tape.symbols().clone(),
                EngineConfig::default(),
            )
            .expect("rules compile");
            let mut signals = 0u64;
            for (seq, ts, type_id, slots) in &events {
                engine.push_view(
                    EventView {
                        seq: *seq,
                        ts: *ts,
                        type_id: *type_id,
                        slots,
                    },
                    |_| signals += 1,
                );
            }
            engine.finish(|_| signals += 1);
            let _: &Program = engine.program();
            signals
        });
    });
    group.finish();
    std::fs::remove_file(&path).ok();
}

criterion_group!(benches, stages);
criterion_main!(benches);
