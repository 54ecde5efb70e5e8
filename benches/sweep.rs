//! Criterion bench of the sweep kernels: a 4096-variant card-testing sweep (`tiny{$n} big` with
//! `$n`, `$tiny`, `$big`, `$w` over 8 values each) over a generated cards tape, on one CPU thread
//! against the GPU (whatever adapter `GpuContext::shared` finds; on a machine with only a software
//! Vulkan driver that is the CPU too). Each iteration is a whole `KernelPlan::run`: condition
//! masks, the key-grouped tape, the kernel and the read-back.
//!
//! Tape size from `SWEEP_EVENTS` (default 200,000, small enough for a software driver); the
//! 10M-event figure is `SWEEP_EVENTS=10000000 cargo bench --bench sweep`. Throughput is in
//! variant·events per second.

use std::collections::BTreeMap;

use cep_core::event::{EventBatch, Label};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strix::feeds::r#gen::{GenSpec, cards, cards_catalog};
use strix::sweep_kernel::{DeliveredEvents, ParamValue, SweepDevice, Target, Variant, plan};

const TEMPLATE: &str = r#"
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

fn bench(c: &mut Criterion) {
    let events: u64 = std::env::var("SWEEP_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let spec = GenSpec::new(events, 11);
    let mut batch = EventBatch::with_capacity(cards_catalog().slot_count(), events as usize);
    let generated = cards(&spec, &mut batch).expect("generates");
    let labels: Vec<Label> = (0..batch.len()).map(|r| batch.label(r)).collect();
    let tape = DeliveredEvents {
        batch,
        labels,
        label_names: generated.label_names.clone(),
    };
    let mut variants = Vec::new();
    for n in 2..10 {
        for tiny in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0] {
            for big in [300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0] {
                for w in 1..=8i64 {
                    let values = vec![
                        ("n".to_string(), ParamValue::Int(n)),
                        ("tiny".to_string(), ParamValue::Float(tiny)),
                        ("big".to_string(), ParamValue::Float(big)),
                        ("w".to_string(), ParamValue::Duration(w * 120_000_000_000)),
                    ];
                    let overrides: BTreeMap<_, _> = values.iter().cloned().collect();
                    let mut symbols = generated.symbols.clone();
                    let program = strix::pattern_lang::compile_with_params(
                        TEMPLATE,
                        Some(&generated.catalog),
                        &mut symbols,
                        &overrides,
                    )
                    .expect("template compiles");
                    variants.push(Variant {
                        index: variants.len(),
                        values,
                        program,
                    });
                }
            }
        }
    }
    let plan = plan(Target::Rule(0), &variants).expect("a strict chain");
    let mut group = c.benchmark_group("sweep");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events * variants.len() as u64));
    let cpu = plan.run(&tape, SweepDevice::Cpu).expect("cpu run");
    eprintln!(
        "{} ({} variants, {events} events)",
        plan.describe(),
        variants.len()
    );
    group.bench_function(BenchmarkId::new("cpu_1_thread", events), |b| {
        b.iter(|| plan.run(&tape, SweepDevice::Cpu).expect("cpu run"))
    });
    match gpu_kernels::context::GpuContext::shared() {
        Ok(ctx) => {
            let gpu = plan.run(&tape, SweepDevice::Gpu(ctx)).expect("gpu run");
            assert_eq!(gpu, cpu, "GPU and CPU kernels disagree");
            eprintln!("GPU adapter: {}", ctx.adapter());
            group.bench_function(BenchmarkId::new("gpu", events), |b| {
                b.iter(|| plan.run(&tape, SweepDevice::Gpu(ctx)).expect("gpu run"))
            });
        }
        Err(e) => eprintln!("sweep/gpu skipped: {e}"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
