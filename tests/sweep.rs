//! `strix sweep` end to end: parameter flags, the kernel paths (CPU and GPU) against the engine
//! path, the table and JSON output, and the errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use common::{s, strix, text, tmp_in};
use serde_json::Value;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/rules/cards_sweep.cep"
);

/// A 30k-event card tape, generated once per test process.
fn cards_tape() -> &'static Path {
    static TAPE: OnceLock<PathBuf> = OnceLock::new();
    TAPE.get_or_init(|| {
        let p = tmp_in("sweep", "cards30k.tape");
        let out = strix(&[
            "gen",
            "cards",
            "--events",
            "30000",
            "--seed",
            "11",
            "-o",
            s(&p),
        ])
        .expect("strix gen cards");
        assert!(out.status.success(), "{}", text(&out.stderr));
        p
    })
}

/// Runs `strix sweep` on the card tape with `args`; returns (success, stdout, stderr).
fn sweep(args: &[&str]) -> Result<(bool, String, String)> {
    let mut all = vec![
        "sweep",
        "--rules",
        RULES,
        "--tape",
        s(cards_tape()),
        "--quiet",
    ];
    all.extend_from_slice(args);
    let out = strix(&all)?;
    Ok((out.status.success(), text(&out.stdout), text(&out.stderr)))
}

/// `strix sweep ... --json`, parsed.
fn sweep_json(args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = sweep(&all)?;
    assert!(ok, "sweep failed: {err}");
    Ok(serde_json::from_str(&out)?)
}

/// (index, signals, TP, instances found) of every variant, in index order.
fn counts(report: &Value) -> Vec<(u64, u64, u64, u64)> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["signals"].as_u64().expect("signals"),
                r["true_positives"].as_u64().expect("tp"),
                r["instances_found"].as_u64().expect("found"),
            )
        })
        .collect()
}

/// The table part of the text output (from the column header on).
fn table(out: &str) -> String {
    let at = out.find("\n\n").expect("a blank line before the table");
    out[at..].to_string()
}

/// Parameter sets shared by the path comparisons (product: 96 variants).
const SMALL: [&str; 8] = [
    "--param",
    "probes=1..4:1",
    "--param",
    "tiny_max=2,10,30",
    "--param",
    "window=2m..8m:2m",
    "--param",
    "big_min=100,800",
];

#[test]
fn cpu_kernel_sweeps_a_thousand_variants_into_a_ranked_table() -> Result<()> {
    let (ok, out, err) = sweep(&[
        "--rule",
        "card_testing",
        "--cpu",
        "--param",
        "probes=1..10:1",
        "--param",
        "tiny_max=0.5..5:0.5",
        "--param",
        "big_min=100..1000:100",
    ])?;
    assert!(ok, "{err}");
    assert!(out.contains("sweep rule card_testing"), "{out}");
    assert!(
        out.contains("variants   1000 over probes, tiny_max, big_min"),
        "{out}"
    );
    assert!(out.contains("CPU kernel"), "{out}");
    assert!(out.contains("label card_testing:"), "{out}");
    assert!(out.contains("variant·events/s"), "{out}");
    let t = table(&out);
    let mut lines = t.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "rank",
            "probes",
            "tiny_max",
            "big_min",
            "signals",
            "TP",
            "precision",
            "recall",
            "F1"
        ]
    );
    let rows: Vec<Vec<&str>> = lines
        .take_while(|l| !l.starts_with('('))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 20, "--top defaults to 20:\n{out}");
    // Ranked by F1 descending; the generator's instances (5+ probes below 2.00, a cash-out of
    // 800 or more) are all found exactly by probes <= 5, tiny_max >= 2, big_min <= 800.
    let f1: Vec<f64> = rows.iter().map(|r| r[8].parse().expect("F1")).collect();
    assert!(f1.windows(2).all(|w| w[0] >= w[1]), "{out}");
    assert_eq!(rows[0][0], "1");
    assert_eq!(rows[0][8], "1.0000", "{out}");
    assert!(out.contains("(20 of 1000 variants shown"), "{out}");
    Ok(())
}

#[test]
fn gpu_and_cpu_kernels_and_the_engine_path_count_the_same() -> Result<()> {
    let mut cpu_args = vec!["--rule", "card_testing", "--cpu"];
    cpu_args.extend(SMALL);
    let cpu = sweep_json(&cpu_args)?;
    assert_eq!(cpu["path"], "cpu_kernel");
    assert_eq!(cpu["variants"], 96);
    let mut engine_args = vec!["--rule", "card_testing", "--engine"];
    engine_args.extend(SMALL);
    let engine = sweep_json(&engine_args)?;
    assert_eq!(engine["path"], "engine");
    assert_eq!(counts(&cpu), counts(&engine));
    // Some variants find something and some do not: the comparison means something.
    assert!(counts(&cpu).iter().any(|c| c.2 > 0));
    assert!(counts(&cpu).iter().any(|c| c.2 < c.1));

    if gpu_kernels::test_support::context_or_skip("sweep gpu == cpu").is_none() {
        return Ok(());
    }
    let mut gpu_args = vec!["--rule", "card_testing", "--gpu"];
    gpu_args.extend(SMALL);
    let gpu = sweep_json(&gpu_args)?;
    assert_eq!(gpu["path"], "gpu_kernel");
    assert_eq!(counts(&gpu), counts(&cpu));
    assert_eq!(gpu["results"], cpu["results"]);
    // The tables are the same too (the headers differ in path and timing only).
    let mut text_gpu = vec!["--rule", "card_testing", "--gpu", "--top", "0"];
    text_gpu.extend(SMALL);
    let mut text_cpu = vec!["--rule", "card_testing", "--cpu", "--top", "0"];
    text_cpu.extend(SMALL);
    let (ok_g, out_g, err_g) = sweep(&text_gpu)?;
    let (ok_c, out_c, err_c) = sweep(&text_cpu)?;
    assert!(ok_g && ok_c, "{err_g}{err_c}");
    assert!(out_g.contains("GPU kernel on "), "{out_g}");
    assert_eq!(table(&out_g), table(&out_c));
    Ok(())
}

#[test]
fn count_threshold_query_sweeps_agree_on_cpu_and_gpu() -> Result<()> {
    let args = [
        "--rule",
        "card_testing_burst",
        "--param",
        "burst=2..8:2",
        "--param",
        "tiny_max=1,2,3",
        "--param",
        "burst_window=2m,5m",
    ];
    let mut cpu_args = args.to_vec();
    cpu_args.push("--cpu");
    let cpu = sweep_json(&cpu_args)?;
    assert_eq!(cpu["path"], "cpu_kernel");
    assert_eq!(cpu["variants"], 24);
    let c = counts(&cpu);
    let total = cpu["instances"].as_u64().context("instances")?;
    // Some variants find every instance and some miss some: the comparison means something.
    assert!(
        c.iter().any(|c| c.3 == total) && c.iter().any(|c| c.3 < total),
        "{total}: {c:?}"
    );
    if gpu_kernels::test_support::context_or_skip("query sweep gpu == cpu").is_none() {
        return Ok(());
    }
    let mut gpu_args = args.to_vec();
    gpu_args.push("--gpu");
    let gpu = sweep_json(&gpu_args)?;
    assert_eq!(gpu["path"], "gpu_kernel");
    assert_eq!(gpu["results"], cpu["results"]);
    Ok(())
}

#[test]
fn rules_outside_the_kernel_classes_run_on_the_engine_path() -> Result<()> {
    let report = sweep_json(&[
        "--rule",
        "card_testing_loose",
        "--cpu",
        "--param",
        "probes=3..6:1",
        "--param",
        "window=3m,10m",
    ])?;
    assert_eq!(report["path"], "engine");
    let reason = report["reason"].as_str().expect("reason");
    assert!(reason.contains("not in a kernel class"), "{reason}");
    assert_eq!(report["variants"], 8);
    // Variants are the product in flag order: the first flag varies slowest.
    let params: Vec<(u64, String)> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["params"]["probes"].as_u64().expect("probes"),
                r["params"]["window"].as_str().expect("window").to_string(),
            )
        })
        .collect();
    assert_eq!(params[0], (3, "3m".into()));
    assert_eq!(params[1], (3, "10m".into()));
    assert_eq!(params[7], (6, "10m".into()));
    Ok(())
}

#[test]
fn one_variant_scores_like_replay() -> Result<()> {
    // The engine path's precision and recall are replay's for the same values: here the
    // defaults, swept as a single value.
    let report = sweep_json(&["--rule", "velocity", "--param", "span=60s"])?;
    assert_eq!(report["path"], "engine");
    let r = &report["results"][0];
    let replay = strix(&[
        "replay",
        "--rules",
        RULES,
        "--tape",
        s(cards_tape()),
        "--json",
    ])?;
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    let rep: Value = serde_json::from_slice(&replay.stdout)?;
    let rule = rep["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|x| x["rule"] == "velocity")
        .expect("velocity in replay report");
    assert_eq!(r["signals"], rule["signals"]);
    assert_eq!(r["precision"], rule["precision"]);
    assert_eq!(r["recall"], rule["recall"]);
    assert_eq!(report["instances"], rule["instances"]);
    assert!(r["signals"].as_u64().expect("signals") > 0);
    Ok(())
}

#[test]
fn json_goes_to_out_and_the_table_to_stdout() -> Result<()> {
    let out_path = tmp_in("sweep", "sweep.json");
    let (ok, out, err) = sweep(&[
        "--rule",
        "card_testing",
        "--cpu",
        "--param",
        "probes=4,5",
        "--out",
        s(&out_path),
        "--top",
        "0",
    ])?;
    assert!(ok, "{err}");
    assert!(out.contains("precision"), "{out}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out_path)?)?;
    assert_eq!(v["variants"], 2);
    assert_eq!(v["target"], "rule card_testing");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(2));
    for r in v["results"].as_array().expect("results") {
        let (sig, tp) = (
            r["signals"].as_f64().expect("n"),
            r["true_positives"].as_f64().expect("tp"),
        );
        if sig > 0.0 {
            assert_eq!(r["precision"].as_f64(), Some(tp / sig));
        }
    }
    Ok(())
}

#[test]
fn bad_flags_and_targets_fail_with_a_clear_message() -> Result<()> {
    let cases: [(&[&str], &str); 8] = [
        (
            &["--rule", "card_testing", "--param", "nope=1,2"],
            "declare no parameter `nope` (declared: probes = 5, tiny_max = 2.0",
        ),
        (
            &["--rule", "card_testing", "--param", "probes=5..2:1"],
            "is empty",
        ),
        (
            &["--rule", "card_testing", "--param", "probes=1..5:0"],
            "the step is zero",
        ),
        (
            &["--rule", "card_testing", "--param", "probes=1..5"],
            "has no step",
        ),
        (
            &["--rule", "card_testing", "--param", "window=1m..2m:abc"],
            "`abc` is not a duration",
        ),
        (
            &[
                "--rule",
                "card_testing",
                "--param",
                "probes=1..1000:1",
                "--param",
                "big_min=1..2000:1",
            ],
            "2000000 variants: a sweep may have at most 1000000",
        ),
        (
            &["--param", "probes=5"],
            "several rules and queries; pick one with --rule NAME (rule card_testing, rule card_testing_loose, rule velocity, query card_testing_burst)",
        ),
        (
            &[
                "--rule",
                "card_testing_loose",
                "--gpu",
                "--param",
                "probes=5",
            ],
            "--gpu: rule card_testing_loose is not in a kernel class",
        ),
    ];
    for (args, want) in cases {
        let (ok, _, err) = sweep(args)?;
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    Ok(())
}

#[test]
fn help_explains_the_parameter_syntax_with_an_example() -> Result<()> {
    let out = strix(&["sweep", "--help"])?;
    assert!(out.status.success());
    let help = text(&out.stdout);
    for want in [
        "NAME=START..END:STEP",
        "--gpu",
        "--cpu",
        "--top",
        "strix sweep --rules examples/rules/cards_sweep.cep",
        "precision",
        "engine path",
    ] {
        assert!(help.contains(want), "missing {want}:\n{help}");
    }
    Ok(())
}

/// A model-scored card rule and its one-feature logistic model, in a temp folder.
fn scored_rules() -> PathBuf {
    let dir = tmp_in("sweep", "scored");
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("amount.json"),
        r#"{"format":"strix-model","version":1,"name":"amount","features":["amount"],
            "kind":"logistic","weights":[0.004],"bias":-4.0}"#,
    )
    .expect("model");
    let rules = dir.join("scored.cep");
    std::fs::write(
        &rules,
        r#"
enum channel { pos, online, atm }
event Txn { card: sym, merchant: sym, amount: f64, country: sym, channel: channel }
param t = 0.5
param lo = 10.0
rule card_testing
  from Txn
  partition by card
  pattern tiny big
  define tiny as Txn and amount < $lo, big as Txn and amount >= 100
  emit card_testing { amount: big.amount }
  score using "amount.json" threshold $t
"#,
    )
    .expect("rules");
    rules
}

/// `strix sweep --json` with another rules file.
fn sweep_rules_json(rules: &Path, args: &[&str]) -> Result<Value> {
    let mut all = vec![
        "sweep",
        "--rules",
        s(rules),
        "--tape",
        s(cards_tape()),
        "--quiet",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = strix(&all)?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn a_threshold_sweep_scores_once_and_counts_like_one_engine_per_threshold() -> Result<()> {
    let rules = scored_rules();
    let thresholds = ["--param", "t=0.1..0.9:0.2", "--cpu"];
    let once = sweep_rules_json(&rules, &thresholds)?;
    assert_eq!(once["path"], "score_threshold", "{once}");
    assert_eq!(once["variants"], 5);
    let mut engine_args = thresholds[..2].to_vec();
    engine_args.push("--engine");
    let engines = sweep_rules_json(&rules, &engine_args)?;
    assert_eq!(engines["path"], "engine");
    assert_eq!(counts(&once), counts(&engines));
    // A higher threshold keeps a subset of the signals; the lowest keeps some, the highest
    // fewer.
    let c = counts(&once);
    assert!(
        c.windows(2).all(|w| w[0].1 >= w[1].1 && w[0].2 >= w[1].2),
        "{c:?}"
    );
    assert!(c[0].1 > c[4].1, "{c:?}");
    // Varying more than the threshold: one engine per variant, each scored.
    let mixed = sweep_rules_json(&rules, &["--param", "t=0.3,0.7", "--param", "lo=5,10"])?;
    assert_eq!(mixed["path"], "engine");
    let reason = mixed["reason"].as_str().expect("reason");
    assert!(reason.contains("scored by a model"), "{reason}");
    let m = counts(&mixed);
    // lo = 10 (the default) at t = 0.3 and 0.7 are variants 1 and 3 here, 1 and 3 above too.
    assert_eq!((m[1].1, m[3].1), (c[1].1, c[3].1));
    Ok(())
}
