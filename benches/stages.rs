//! Criterion benches per stage: generation into a tape, tape decode, and the reference matcher
//! over the example market rules. Run with `cargo bench --bench stages`.

use cep_core::event::{Event, EventBatch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use feeds::r#gen::{GenSpec, Generator, write_tape};
use feeds::tape::TapeReader;
use strix::{Engine, EngineConfig};

const EVENTS: u64 = 200_000;

fn stages(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("strix-bench-{}.tape", std::process::id()));
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

    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/rules/market.cep"
    ))
    .expect("market rules");
    let events: Vec<Event> = tape
        .batches()
        .flat_map(|b| {
            let b = b.expect("block");
            (0..b.len()).map(move |r| b.event(r)).collect::<Vec<_>>()
        })
        .collect();
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
            for e in &events {
                engine.push(e, |_| signals += 1);
            }
            engine.finish(|_| signals += 1);
            signals
        });
    });
    group.finish();
    std::fs::remove_file(&path).ok();
}

criterion_group!(benches, stages);
criterion_main!(benches);
