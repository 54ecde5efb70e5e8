//! Scorers: GPU against the CPU reference for every model kind, chunking, the automatic
//! device choice and its statistics, use through the `Scorer` trait.

mod common;

use cep_core::scorer::Scorer;
use gpu_kernels::model::Model;
use gpu_kernels::score::{
    AutoScorer, CpuScorer, GpuScorer, ScoreDevice, ScoreStats, within_tolerance,
};
use gpu_kernels::test_support::context_or_skip;
use proptest::prelude::*;

fn cpu_scores(m: &Model, rows: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; rows.len() / m.features.len()];
    CpuScorer::new(m.clone())
        .score_batch(rows, &mut out)
        .unwrap();
    out
}

fn assert_agree(gpu: &[f32], cpu: &[f32], what: &str) {
    assert_eq!(gpu.len(), cpu.len());
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(
            within_tolerance(*g, *c),
            "{what}: row {i}: gpu {g} vs cpu {c}"
        );
    }
}

fn check_gpu(name: &str, m: &Model, rows: usize, chunk: usize) {
    let Some(ctx) = context_or_skip(name) else {
        return;
    };
    let data = common::rows_for(
        m,
        rows,
        rows as u64 + 3,
        matches!(m.kind, gpu_kernels::model::ModelKind::Trees { .. }),
    );
    let mut gpu = GpuScorer::with_chunk_rows(ctx, m, chunk).unwrap();
    let mut out = vec![f32::NAN; rows];
    gpu.score_batch(&data, &mut out).unwrap();
    assert_agree(
        &out,
        &cpu_scores(m, &data),
        &format!("{name} {}", m.summary()),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn gpu_matches_cpu_logistic(m in common::logistic(40), rows in 1usize..300) {
        check_gpu("gpu_matches_cpu_logistic", &m, rows, usize::MAX);
    }

    #[test]
    fn gpu_matches_cpu_mlp(m in common::mlp(10, 24), rows in 1usize..300) {
        check_gpu("gpu_matches_cpu_mlp", &m, rows, usize::MAX);
    }

    #[test]
    fn gpu_matches_cpu_trees(m in common::trees(10, 8), rows in 1usize..300) {
        check_gpu("gpu_matches_cpu_trees", &m, rows, usize::MAX);
    }
}

#[test]
fn chunks_cover_every_row() {
    let Some(ctx) = context_or_skip("chunks_cover_every_row") else {
        return;
    };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let m = proptest::strategy::Strategy::new_tree(&common::any_model(), &mut runner).unwrap();
    let m = proptest::strategy::ValueTree::current(&m);
    // 1000 rows in chunks of 96: ten full chunks and a partial one, one scorer reused.
    let mut gpu = GpuScorer::with_chunk_rows(ctx, &m, 96).unwrap();
    assert_eq!(gpu.chunk_rows(), 96);
    for rows in [1000usize, 5, 96, 97, 0] {
        let data = common::rows_for(&m, rows, 11, true);
        let mut out = vec![f32::NAN; rows];
        gpu.score_batch(&data, &mut out).unwrap();
        assert_agree(&out, &cpu_scores(&m, &data), &format!("{} rows", rows));
    }
    for kind in [
        common::logistic(5).boxed(),
        common::mlp(5, 8).boxed(),
        common::trees(5, 4).boxed(),
    ] {
        let m = proptest::strategy::ValueTree::current(&kind.new_tree(&mut runner).unwrap());
        check_gpu("chunks_cover_every_row", &m, 500, 64);
        check_gpu("chunks_cover_every_row", &m, 130, 1);
    }
}

fn toy() -> Model {
    Model::from_json(
        r#"{"format": "strix-model", "version": 1, "name": "toy", "features": ["a", "b"],
            "kind": "logistic", "weights": [2.0, -1.0], "bias": 0.5}"#,
        "toy.json",
    )
    .unwrap()
}

#[test]
fn auto_scorer_cpu_device() {
    let mut s = AutoScorer::new(toy(), ScoreDevice::Cpu, 1).unwrap();
    assert!(!s.uses_gpu());
    assert_eq!(s.device_name(), "CPU");
    let mut out = [0.0; 3];
    s.score_batch(&[1.0, 3.0, 0.0, 0.0, 1.0, 1.0], &mut out)
        .unwrap();
    s.score_batch(&[], &mut []).unwrap();
    assert_eq!(
        s.stats(),
        ScoreStats {
            gpu_batches: 0,
            cpu_batches: 2,
            rows: 3
        }
    );
    assert_eq!(
        out.to_vec(),
        cpu_scores(&toy(), &[1.0, 3.0, 0.0, 0.0, 1.0, 1.0])
    );
}

#[test]
fn auto_scorer_gpu_device() {
    let Some(ctx) = context_or_skip("auto_scorer_gpu_device") else {
        return;
    };
    let mut s = AutoScorer::new(toy(), ScoreDevice::Gpu, 1_000_000).unwrap();
    assert!(s.uses_gpu());
    assert_eq!(s.device_name(), ctx.adapter().to_string());
    let rows = common::rows_for(&toy(), 10, 1, false);
    let mut out = [0.0; 10];
    // Gpu ignores min_gpu_batch: every batch goes to the device.
    s.score_batch(&rows, &mut out).unwrap();
    assert_agree(&out, &cpu_scores(&toy(), &rows), "forced gpu");
    assert_eq!(
        s.stats(),
        ScoreStats {
            gpu_batches: 1,
            cpu_batches: 0,
            rows: 10
        }
    );
}

#[test]
fn auto_scorer_auto_device() {
    let ctx = gpu_kernels::context::GpuContext::shared();
    let mut s = AutoScorer::new(toy(), ScoreDevice::Auto, 50).unwrap();
    let real_gpu = matches!(ctx, Ok(c) if !c.adapter().is_cpu);
    assert_eq!(s.uses_gpu(), real_gpu);
    match ctx {
        Err(_) => assert!(s.fallback_reason().unwrap().contains("no GPU adapter")),
        Ok(c) if c.adapter().is_cpu => {
            assert!(
                s.fallback_reason().unwrap().contains("CPU driver"),
                "{:?}",
                s.fallback_reason()
            );
            assert_eq!(s.device_name(), "CPU");
        }
        Ok(c) => assert_eq!(s.device_name(), c.adapter().to_string()),
    }
    let small = common::rows_for(&toy(), 10, 2, false);
    let large = common::rows_for(&toy(), 200, 3, false);
    let mut out_small = [0.0; 10];
    let mut out_large = [0.0; 200];
    s.score_batch(&small, &mut out_small).unwrap();
    s.score_batch(&large, &mut out_large).unwrap();
    assert_eq!(out_small.to_vec(), cpu_scores(&toy(), &small));
    assert_agree(&out_large, &cpu_scores(&toy(), &large), "auto large");
    let gpu_batches = u64::from(real_gpu);
    assert_eq!(
        s.stats(),
        ScoreStats {
            gpu_batches,
            cpu_batches: 2 - gpu_batches,
            rows: 210
        }
    );
}

#[test]
fn scorers_work_as_trait_objects() {
    let mut scorers: Vec<Box<dyn Scorer>> = vec![
        Box::new(CpuScorer::new(toy())),
        Box::new(AutoScorer::new(toy(), ScoreDevice::Auto, 1).unwrap()),
    ];
    if let Some(ctx) = context_or_skip("scorers_work_as_trait_objects") {
        scorers.push(Box::new(GpuScorer::new(ctx, &toy()).unwrap()));
    }
    let rows = [1.0, 3.0, 0.0, 0.0];
    let want = cpu_scores(&toy(), &rows);
    for s in &mut scorers {
        assert_eq!(s.feature_count(), 2);
        let mut out = [0.0; 2];
        s.score_batch(&rows, &mut out).unwrap();
        assert_agree(&out, &want, "trait object");
        // A batch whose length is not rows × features is an error, not a panic.
        let e = s.score_batch(&rows[..3], &mut out).unwrap_err();
        assert!(e.message.contains("3 values"), "{e}");
    }
}

#[test]
fn invalid_and_unsupported_models_are_errors() {
    let mut bad = toy();
    bad.features.push("c".into());
    let e = AutoScorer::new(bad.clone(), ScoreDevice::Cpu, 1).unwrap_err();
    assert!(
        e.to_string().contains("weights: has 2 values, expected 3"),
        "{e}"
    );
    let Some(ctx) = context_or_skip("invalid_and_unsupported_models_are_errors") else {
        return;
    };
    assert!(GpuScorer::new(ctx, &bad).is_err());
    // An MLP layer wider than the kernel takes: an error on Gpu, the CPU on Auto.
    let wide = Model::from_json(
        &format!(
            r#"{{"format": "strix-model", "version": 1, "name": "wide", "features": ["a"], "kind": "mlp",
                "layers": [{{"weights": {w}, "bias": {b}, "activation": "relu"}},
                           {{"weights": [{r}], "bias": [0], "activation": "sigmoid"}}]}}"#,
            w = serde_json::to_string(&vec![vec![0.5f32]; 200]).unwrap(),
            b = serde_json::to_string(&vec![0.0f32; 200]).unwrap(),
            r = serde_json::to_string(&vec![0.01f32; 200]).unwrap(),
        ),
        "wide.json",
    )
    .unwrap();
    let e = GpuScorer::new(ctx, &wide).unwrap_err();
    assert!(e.to_string().contains("at most 128"), "{e}");
    assert!(AutoScorer::new(wide.clone(), ScoreDevice::Gpu, 1).is_err());
    let mut auto = AutoScorer::new(wide.clone(), ScoreDevice::Auto, 1).unwrap();
    assert!(!auto.uses_gpu());
    let mut out = [0.0; 2];
    auto.score_batch(&[1.0, -1.0], &mut out).unwrap();
    assert_eq!(out.to_vec(), cpu_scores(&wide, &[1.0, -1.0]));
}

#[test]
fn an_ensemble_without_trees_scores_its_base_score() {
    // An empty node array must still bind (at least one element's worth of bytes).
    let m = Model::from_json(
        r#"{"format":"strix-model","version":1,"name":"empty","features":["a"],
            "kind":"trees","base_score":0.25,"output":"identity","trees":[]}"#,
        "inline",
    )
    .unwrap();
    assert_eq!(cpu_scores(&m, &[1.0, 2.0]), vec![0.25, 0.25]);
    check_gpu(
        "an_ensemble_without_trees_scores_its_base_score",
        &m,
        5,
        usize::MAX,
    );
}
