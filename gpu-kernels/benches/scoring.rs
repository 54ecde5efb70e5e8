//! CPU against GPU scoring for logistic regression, an MLP and a tree ensemble, at batch sizes
//! from 64 rows to 1M rows (rows/s via `Throughput::Elements`). Prints the adapter; without one
//! only the CPU side runs. `STRIX_BENCH_MAX_ROWS` caps the batch sizes (slow machines,
//! software drivers).

use cep_core::scorer::Scorer;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gpu_kernels::context::GpuContext;
use gpu_kernels::model::{
    Activation, Layer, Model, ModelKind, Node, Standardize, Tree, TreeOutput,
};
use gpu_kernels::score::{CpuScorer, GpuScorer};
use std::time::Duration;

const FEATURES: usize = 30;
const SIZES: [usize; 6] = [64, 1024, 16_384, 65_536, 262_144, 1_048_576];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn features() -> Vec<String> {
    (0..FEATURES).map(|i| format!("V{i}")).collect()
}

fn logistic(r: &mut Lcg) -> Model {
    let standardize = Some(Standardize {
        mean: r.vec(FEATURES, 1.0),
        std: vec![1.5; FEATURES],
    });
    Model {
        name: "logistic".into(),
        features: features(),
        kind: ModelKind::Logistic {
            weights: r.vec(FEATURES, 0.3),
            bias: 0.1,
            standardize,
        },
    }
}

fn layer(r: &mut Lcg, inputs: usize, outputs: usize, activation: Activation) -> Layer {
    Layer {
        weights: (0..outputs)
            .map(|_| r.vec(inputs, 1.0 / inputs as f32))
            .collect(),
        bias: r.vec(outputs, 0.1),
        activation,
    }
}

/// 30 → 64 → 32 → 1, a typical small fraud MLP.
fn mlp(r: &mut Lcg) -> Model {
    let layers = vec![
        layer(r, FEATURES, 64, Activation::Relu),
        layer(r, 64, 32, Activation::Tanh),
        layer(r, 32, 1, Activation::Sigmoid),
    ];
    Model {
        name: "mlp".into(),
        features: features(),
        kind: ModelKind::Mlp {
            layers,
            standardize: None,
        },
    }
}

fn grow(r: &mut Lcg, nodes: &mut Vec<Node>, depth: u32) -> u32 {
    let at = nodes.len() as u32;
    if depth == 0 {
        nodes.push(Node::Leaf {
            value: r.next() * 0.1,
        });
        return at;
    }
    nodes.push(Node::Leaf { value: 0.0 });
    let feature = ((r.next() + 1.0) * 0.5 * FEATURES as f32) as u32 % FEATURES as u32;
    let threshold = r.next();
    let left = grow(r, nodes, depth - 1);
    let right = grow(r, nodes, depth - 1);
    nodes[at as usize] = Node::Split {
        feature,
        threshold,
        left,
        right,
        default_left: threshold > 0.0,
    };
    at
}

/// 100 full trees of depth 6, like a small XGBoost fraud model.
fn trees(r: &mut Lcg) -> Model {
    let trees = (0..100)
        .map(|_| {
            let mut nodes = Vec::new();
            grow(r, &mut nodes, 6);
            Tree { nodes }
        })
        .collect();
    Model {
        name: "trees".into(),
        features: features(),
        kind: ModelKind::Trees {
            trees,
            base_score: 0.0,
            output: TreeOutput::Sigmoid,
        },
    }
}

fn scoring(c: &mut Criterion) {
    let max_rows: usize = std::env::var("STRIX_BENCH_MAX_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let ctx = match GpuContext::shared() {
        Ok(ctx) => {
            println!("adapter: {}", ctx.adapter());
            Some(ctx)
        }
        Err(e) => {
            println!("skipped GPU benches: no GPU adapter ({e})");
            None
        }
    };
    let mut r = Lcg(42);
    for model in [logistic(&mut r), mlp(&mut r), trees(&mut r)] {
        let mut group = c.benchmark_group(format!("score/{}", model.name));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        let mut cpu = CpuScorer::new(model.clone());
        let mut gpu = ctx
            .map(|ctx| GpuScorer::new(ctx, &model).expect("the bench models fit the GPU kernels"));
        for &n in SIZES.iter().filter(|&&n| n <= max_rows) {
            let rows = r.vec(n * FEATURES, 3.0);
            let mut out = vec![0.0f32; n];
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("cpu", n), &n, |b, _| {
                b.iter(|| cpu.score_batch(&rows, &mut out).unwrap())
            });
            if let Some(gpu) = gpu.as_mut() {
                group.bench_with_input(BenchmarkId::new("gpu", n), &n, |b, _| {
                    b.iter(|| gpu.score_batch(&rows, &mut out).unwrap())
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, scoring);
criterion_main!(benches);
