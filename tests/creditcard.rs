//! The credit-card walk-through of `docs/creditcard.md` on the real ULB file: import (sorted by
//! time, labels `none,fraud`), fit, replay `examples/rules/creditcard.cep` on the CPU and the
//! GPU. Precision and recall at 0.5 must be what the committed model gives, computed here
//! independently from the model document and the CSV rows; GPU and CPU scores must agree.
//! Skips with a message when `../shared` is absent.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use common::{s, strix, text, tmp_in};

const CSV: &str = "../shared/data/creditcard_ulb/creditcard_allfrauds_plus_first3000s.csv";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data() -> Option<PathBuf> {
    let p = root().join(CSV);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {CSV} not found");
        None
    }
}

fn features() -> Vec<String> {
    (1..=28)
        .map(|i| format!("V{i}"))
        .chain(["Amount".to_string()])
        .collect()
}

/// Runs `strix ARGS`, which must succeed; returns stdout.
fn ok(args: &[&str]) -> Result<String> {
    let out = strix(args)?;
    ensure!(
        out.status.success(),
        "strix {args:?} failed: {}",
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

/// CSV rows as (time, features, class), in time order (stable, as `--sort-by-time` writes them).
fn rows(csv: &Path) -> Result<Vec<(f64, Vec<f64>, u8)>> {
    let body = std::fs::read_to_string(csv)?;
    let mut lines = body.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines
        .next()
        .context("header")?
        .trim_end()
        .split(',')
        .collect();
    let col = |n: &str| header.iter().position(|h| *h == n).context("column");
    let (time, class) = (col("Time")?, col("Class")?);
    let fcols = features()
        .iter()
        .map(|f| col(f))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for line in lines {
        let cells: Vec<&str> = line.trim_end().split(',').collect();
        let num = |i: usize| -> Result<f64> { Ok(cells[i].trim().parse::<f64>()?) };
        let x = fcols.iter().map(|&i| num(i)).collect::<Result<Vec<_>>>()?;
        out.push((num(time)?, x, cells[class].trim().parse::<u8>()?));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// The model's probability for `x`, from its JSON document, in f64.
fn probability(model: &Value, x: &[f64]) -> f64 {
    let w = model["weights"].as_array().expect("weights");
    let mut z = model["bias"].as_f64().expect("bias");
    for (i, v) in x.iter().enumerate() {
        let v = match model.get("standardize") {
            Some(st) if !st.is_null() => {
                (v - st["mean"][i].as_f64().expect("mean")) / st["std"][i].as_f64().expect("std")
            }
            _ => *v,
        };
        z += w[i].as_f64().expect("weight") * v;
    }
    1.0 / (1.0 + (-z).exp())
}

/// `strix tape import` as `docs/creditcard.md` runs it.
fn import(csv: &Path, tape: &Path) -> Result<()> {
    let schema = root().join("examples/rules/creditcard.cep");
    let args = "tape import --format csv --type Txn --time-field Time --time-unit s \
                --sort-by-time --label-field Class --label-names none,fraud";
    let mut args: Vec<&str> = args.split_whitespace().collect();
    args.extend(["--schema", s(&schema), s(csv), "-o", s(tape)]);
    let log = ok(&args)?;
    ensure!(log.contains("imported 4002 events"), "{log}");
    Ok(())
}

fn replay(rules: &Path, tape: &Path, device: &str, out: &Path) -> Result<(Value, Vec<Value>)> {
    let report = ok(&[
        "replay",
        "--rules",
        s(rules),
        "--tape",
        s(tape),
        "--score-device",
        device,
        "--out",
        s(out),
        "--json",
    ])?;
    let lines = std::fs::read_to_string(out)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?;
    Ok((serde_json::from_str(&report)?, lines))
}

#[test]
fn import_fit_and_replay_give_the_models_precision_and_recall() -> Result<()> {
    let Some(csv) = data() else { return Ok(()) };
    let tape = tmp_in("creditcard", "cc.tape");
    let rules = root().join("examples/rules/creditcard.cep");
    import(&csv, &tape)?;

    // The committed model is what `strix model fit` gives on this tape.
    let fitted = tmp_in("creditcard", "fitted.json");
    let log = ok(&[
        "model",
        "fit",
        "--tape",
        s(&tape),
        "--type",
        "Txn",
        "--features",
        &features().join(","),
        "--label-class",
        "1",
        "--standardize",
        "--out",
        s(&fitted),
        "--name",
        "creditcard_logistic",
    ])?;
    ensure!(log.contains("4002 rows (492 positive)"), "{log}");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(
        root().join("examples/models/creditcard_logistic.json"),
    )?)?;
    let fresh: Value = serde_json::from_str(&std::fs::read_to_string(&fitted)?)?;
    let flat = |m: &Value| -> Vec<f64> {
        let mut v: Vec<f64> = m["weights"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        v.push(m["bias"].as_f64().unwrap_or(f64::NAN));
        v
    };
    ensure!(committed["features"] == fresh["features"]);
    for (a, b) in flat(&committed).iter().zip(flat(&fresh)) {
        ensure!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
    }

    // Independent counts at 0.5 from the model document and the CSV.
    let rows = rows(&csv)?;
    ensure!(rows.len() == 4002);
    let probs: Vec<f64> = rows.iter().map(|r| probability(&committed, &r.1)).collect();
    // f32 scoring moves a probability by far less than this: no row is a coin toss.
    ensure!(probs.iter().all(|p| (p - 0.5).abs() > 1e-4));
    let frauds = rows.iter().filter(|r| r.2 == 1).count();
    let flagged: Vec<usize> = (0..rows.len()).filter(|&i| probs[i] >= 0.5).collect();
    let tp = flagged.iter().filter(|&&i| rows[i].2 == 1).count();

    let (report, cpu) = replay(&rules, &tape, "cpu", &tmp_in("creditcard", "cpu.jsonl"))?;
    let rule = &report["rules"][0];
    ensure!(rule["signals"] == flagged.len() as u64, "{rule}");
    ensure!(rule["instances"] == frauds as u64, "{rule}");
    ensure!(
        rule["precision"].as_f64() == Some(tp as f64 / flagged.len() as f64),
        "{rule}"
    );
    ensure!(
        rule["recall"].as_f64() == Some(tp as f64 / frauds as f64),
        "{rule}"
    );
    ensure!(
        rule["below_threshold"] == (rows.len() - flagged.len()) as u64,
        "{rule}"
    );
    let seqs: Vec<usize> = cpu
        .iter()
        .map(|l| l["seq"][0].as_u64().unwrap_or(u64::MAX) as usize)
        .collect();
    ensure!(
        seqs == flagged,
        "the signals are the rows the model flags, in time order"
    );
    for l in &cpu {
        let i = l["seq"][0].as_u64().unwrap_or(0) as usize;
        let score = l["score"].as_f64().context("score")?;
        ensure!(
            (score - probs[i]).abs() < 1e-5,
            "row {i}: {score} vs {}",
            probs[i]
        );
    }
    eprintln!(
        "creditcard at 0.5: {} signals, precision {:.4}, recall {:.4}",
        flagged.len(),
        tp as f64 / flagged.len() as f64,
        tp as f64 / frauds as f64
    );
    Ok(())
}

#[test]
fn gpu_scores_every_transaction_like_the_cpu() -> Result<()> {
    let Some(csv) = data() else { return Ok(()) };
    let Some(_) = gpu_kernels::test_support::context_or_skip("creditcard gpu vs cpu") else {
        return Ok(());
    };
    let tape = tmp_in("creditcard", "gpu.tape");
    let example = root().join("examples/rules/creditcard.cep");
    import(&csv, &tape)?;
    // Every transaction scored (threshold 0), the committed model by absolute path.
    let model = root().join("examples/models/creditcard_logistic.json");
    let src = std::fs::read_to_string(&example)?
        .replace("../models/creditcard_logistic.json", s(&model))
        .replace("param threshold = 0.5", "param threshold = 0");
    let rules = tmp_in("creditcard", "all.cep");
    std::fs::write(&rules, src)?;
    let (greport, gpu) = replay(&rules, &tape, "gpu", &tmp_in("creditcard", "g.jsonl"))?;
    let (_, cpu) = replay(&rules, &tape, "cpu", &tmp_in("creditcard", "c.jsonl"))?;
    ensure!(gpu.len() == 4002 && cpu.len() == 4002);
    let mut same = 0;
    for (mut g, mut c) in gpu.into_iter().zip(cpu) {
        let (gs, cs) = (g["score"].take(), c["score"].take());
        let (gs, cs) = (
            gs.as_f64().context("gpu score")?,
            cs.as_f64().context("cpu score")?,
        );
        ensure!(
            gpu_kernels::score::within_tolerance(gs as f32, cs as f32),
            "{gs} vs {cs}"
        );
        same += usize::from(gs == cs);
        ensure!(g == c, "{g} vs {c}");
    }
    let m = &greport["scoring"][0];
    ensure!(
        m["gpu_batches"].as_u64() >= Some(1) && m["cpu_batches"] == 0,
        "{m}"
    );
    eprintln!("creditcard gpu vs cpu: {same} of 4002 scores bit-identical, all within tolerance");
    Ok(())
}
