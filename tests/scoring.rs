//! The scorer stage in replays: `score using` a hand-written logistic model on a generated
//! tape. Scores equal the hand-computed ones, GPU and CPU agree within the documented
//! tolerance, thresholds drop signals (counted), output order and bytes do not depend on the
//! score batch, and bad models or rules fail with `file:line:col` and a non-zero exit.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use gpu_kernels::score::{ScoreDevice, within_tolerance};
use serde_json::Value;
use strix::cep_core::event::Label;
use strix::cep_core::symbol::SymbolTable;
use strix::feeds::tape::TapeWriter;
use strix::replay::{ReplayOptions, ReplayReport, RunOptions, ScoreRun, replay_run};

use common::{s, strix, text, tmp_in};

const EVENTS: usize = 600;
const WEIGHTS: [f64; 3] = [0.8, -0.05, 1.5];
const BIAS: f64 = -0.4;

const DECLS: &str = "event Obs { x: f64, n: i64, flag: bool, who: sym }\n";

/// Two rules: `hit` is model-scored (every Obs), `big` is not and fires on some events, so
/// scored and unscored signals interleave.
fn rules(score: &str) -> String {
    format!(
        "{DECLS}param t = 0.5
rule hit
  from Obs
  pattern o
  define o as Obs
  emit hit {{ who: o.who, n: o.n, x: o.x, flag: o.flag }}
  {score}
rule big
  from Obs
  pattern o
  define o as x > 1.5
  emit big {{ x: o.x }}
"
    )
}

const MODEL: &str = r#"{"format":"strix-model","version":1,"name":"hand","features":["x","n","flag"],
 "kind":"logistic","weights":[0.8,-0.05,1.5],"bias":-0.4}"#;

fn dir() -> PathBuf {
    let d = tmp_in("scoring", "work");
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Event `i`: x in [-2, 2.5), n in -10..10, flag every third, who one of four accounts.
fn event(i: usize) -> (f64, i64, bool, &'static str) {
    let x = ((i * 37) % 90) as f64 / 20.0 - 2.0;
    let n = (i * 7 % 20) as i64 - 10;
    (x, n, i.is_multiple_of(3), ["a", "b", "c", "d"][i % 4])
}

/// The hand-computed score of event `i`.
fn expected(i: usize) -> f64 {
    let (x, n, flag, _) = event(i);
    let z = BIAS + WEIGHTS[0] * x + WEIGHTS[1] * n as f64 + WEIGHTS[2] * f64::from(u8::from(flag));
    1.0 / (1.0 + (-z).exp())
}

/// Writes the tape (labels: class 1 `hit` on events with flag) once per test process.
fn tape() -> Result<PathBuf> {
    let path = dir().join("obs.tape");
    let mut symbols = SymbolTable::new();
    let program = strix::pattern_lang::compile(&rules(""), None, &mut symbols)
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let catalog = &program.catalog;
    let ty = catalog.type_by_name("Obs").expect("declared");
    let tmp = dir().join(format!("obs-{:?}.tape", std::thread::current().id()));
    let mut w = TapeWriter::create(&tmp, catalog, &["none".into(), "hit".into()], "test")?;
    for i in 0..EVENTS {
        let (x, n, flag, who) = event(i);
        let who = symbols.intern(who);
        let label = Label {
            class: u16::from(flag),
            instance: if flag { i as u32 + 1 } else { 0 },
        };
        w.push(
            i as i64 * 1_000_000,
            ty,
            label,
            &[x.to_bits(), n as u64, u64::from(flag), u64::from(who)],
        )?;
    }
    w.finish(&symbols)?;
    // Tests run in parallel: each writes its own copy, the rename is atomic.
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Writes a test file atomically: tests run in parallel and several write (and read) the same
/// model file, so each writes its own copy and renames it into place.
fn write(name: &str, body: &str) -> PathBuf {
    let p = dir().join(name);
    let tmp = dir().join(format!("{name}-{:?}.tmp", std::thread::current().id()));
    std::fs::write(&tmp, body).expect("write test file");
    std::fs::rename(&tmp, &p).expect("rename test file");
    p
}

fn run_with(
    rules: &Path,
    tape: &Path,
    score: ScoreRun,
    shards: u32,
) -> Result<(Vec<Value>, ReplayReport)> {
    let opts = ReplayOptions {
        rules: rules.to_path_buf(),
        tape: tape.to_path_buf(),
        max_runs_per_key: 10_000,
        time: Default::default(),
    };
    let run = RunOptions {
        shards,
        batch: 64,
        pin: false,
        score,
        ..RunOptions::default()
    };
    let mut out = Vec::new();
    let report = replay_run(&opts, &run, &mut out, None, &mut |_, _| {})?;
    let lines = String::from_utf8(out)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?;
    Ok((lines, report))
}

fn cpu(batch: usize) -> ScoreRun {
    ScoreRun {
        device: ScoreDevice::Cpu,
        batch,
        ..ScoreRun::default()
    }
}

#[test]
fn every_signal_gets_the_hand_computed_score_in_the_unscored_order() -> Result<()> {
    let tape = tape()?;
    write("hand.json", MODEL);
    let scored = write("scored.cep", &rules("score using hand"));
    let plain = write("plain.cep", &rules(""));
    let (lines, report) = run_with(&scored, &tape, cpu(50), 1)?;
    let (want, _) = run_with(&plain, &tape, cpu(50), 1)?;
    ensure!(
        lines.len() == want.len(),
        "{} vs {}",
        lines.len(),
        want.len()
    );
    let mut hits = 0;
    for (got, mut want) in lines.into_iter().zip(want) {
        if got["signal"] == "hit" {
            hits += 1;
            let seq = got["seq"][0].as_u64().expect("seq") as usize;
            let score = got["score"].as_f64().expect("a score");
            ensure!(
                (score - expected(seq)).abs() < 1e-6,
                "event {seq}: {score} vs {}",
                expected(seq)
            );
            want["score"] = got["score"].clone();
        } else {
            ensure!(
                got.get("score").is_none(),
                "unscored rule got a score: {got}"
            );
        }
        // Same signal, same place, same bytes but for the score (which comes after "fields").
        ensure!(got == want, "{got} vs {want}");
        let keys: Vec<&String> = got.as_object().expect("object").keys().collect();
        if got["signal"] == "hit" {
            ensure!(keys[6] == "score" && keys[7] == "id", "{keys:?}");
        }
    }
    ensure!(hits == EVENTS, "{hits} scored signals");
    let m = &report.scoring;
    ensure!(m.len() == 1 && m[0].rows == EVENTS as u64, "{m:?}");
    ensure!(m[0].cpu_batches == 12 && m[0].gpu_batches == 0, "{m:?}");
    ensure!(m[0].adapter == "CPU" && m[0].rules == ["hit"], "{m:?}");
    ensure!(
        report.rules[0].below_threshold == Some(0),
        "{:?}",
        report.rules[0]
    );
    ensure!(report.rules[1].below_threshold.is_none());
    Ok(())
}

#[test]
fn thresholds_drop_signals_before_output_and_labels() -> Result<()> {
    let tape = tape()?;
    write("hand.json", MODEL);
    let scored = write(
        "threshold.cep",
        &rules("score using \"hand.json\" threshold $t"),
    );
    let (lines, report) = run_with(&scored, &tape, cpu(1000), 0)?;
    let keep: Vec<usize> = (0..EVENTS).filter(|&i| expected(i) >= 0.5).collect();
    let got: Vec<usize> = lines
        .iter()
        .filter(|l| l["signal"] == "hit")
        .map(|l| l["seq"][0].as_u64().expect("seq") as usize)
        .collect();
    ensure!(got == keep, "kept {} of {}", got.len(), keep.len());
    ensure!(
        lines
            .iter()
            .all(|l| l["signal"] != "hit" || l["score"].as_f64() >= Some(0.5))
    );
    let hit = &report.rules[0];
    ensure!(hit.signals == keep.len() as u64, "{hit:?}");
    ensure!(
        hit.below_threshold == Some((EVENTS - keep.len()) as u64),
        "{hit:?}"
    );
    // Precision and recall count only the signals let through.
    let tp = keep.iter().filter(|&&i| event(i).2).count();
    let flagged = (0..EVENTS).filter(|&i| event(i).2).count();
    ensure!(
        hit.precision == Some(tp as f64 / keep.len() as f64),
        "{hit:?}"
    );
    ensure!(hit.recall == Some(tp as f64 / flagged as f64), "{hit:?}");
    ensure!(report.signals == lines.len() as u64);
    Ok(())
}

#[test]
fn output_does_not_depend_on_score_batch_or_shards() -> Result<()> {
    let tape = tape()?;
    write("hand.json", MODEL);
    let scored = write("batches.cep", &rules("score using hand threshold 0.3"));
    let (want, _) = run_with(&scored, &tape, cpu(100_000), 0)?;
    for (batch, shards) in [(1, 0), (7, 2), (599, 1), (600, 3)] {
        let (got, report) = run_with(&scored, &tape, cpu(batch), shards)?;
        ensure!(got == want, "batch {batch}, {shards} shards");
        let calls = report.scoring[0].cpu_batches;
        ensure!(
            calls >= EVENTS.div_ceil(batch) as u64,
            "{batch}: {calls} calls"
        );
    }
    Ok(())
}

#[test]
fn gpu_and_cpu_scores_agree_and_nothing_else_differs() -> Result<()> {
    let Some(ctx) = gpu_kernels::test_support::context_or_skip("scoring gpu vs cpu") else {
        return Ok(());
    };
    let tape = tape()?;
    write("hand.json", MODEL);
    let scored = write("gpu.cep", &rules("score using hand"));
    let gpu = ScoreRun {
        device: ScoreDevice::Gpu,
        batch: 256,
        ..ScoreRun::default()
    };
    let (g, report) = run_with(&scored, &tape, gpu, 1)?;
    let (c, _) = run_with(&scored, &tape, cpu(256), 1)?;
    ensure!(g.len() == c.len());
    for (mut g, mut c) in g.into_iter().zip(c) {
        let (gs, cs) = (g["score"].take(), c["score"].take());
        if let (Some(gs), Some(cs)) = (gs.as_f64(), cs.as_f64()) {
            ensure!(within_tolerance(gs as f32, cs as f32), "{gs} vs {cs}");
        } else {
            ensure!(gs == cs);
        }
        ensure!(g == c, "{g} vs {c}");
    }
    let m = &report.scoring[0];
    ensure!(m.gpu_batches == 3 && m.cpu_batches == 0, "{m:?}");
    ensure!(m.adapter == ctx.adapter().to_string(), "{m:?}");
    Ok(())
}

/// Runs `strix replay` on `rules` and returns (success, stderr).
fn cli_replay(rules: &Path, extra: &[&str]) -> Result<(bool, String)> {
    let tape = tape()?;
    let mut args = vec!["replay", "--rules", s(rules), "--tape", s(&tape), "--json"];
    args.extend_from_slice(extra);
    let out = strix(&args)?;
    Ok((out.status.success(), text(&out.stderr)))
}

#[test]
fn bad_models_and_features_fail_with_file_line_col() -> Result<()> {
    // The `score using` reference is on line 8, column 15 of these files.
    write("hand.json", MODEL);
    let cases = [
        (
            "missing_file.cep",
            rules("score using nosuch"),
            ":8:15: model \"nosuch\": ",
            "nosuch.json",
        ),
        (
            "bad_json.cep",
            rules("score using broken"),
            ":8:15: model \"broken\": ",
            "invalid JSON",
        ),
        (
            "no_feature.cep",
            rules("score using \"needs_y.json\""),
            ":8:15: model \"needs_y.json\" needs feature \"y\", which emit hit does not have",
            "fields: who, n, x, flag",
        ),
        (
            "sym_feature.cep",
            rules("score using on_who"),
            ":8:15: model \"on_who\" feature \"who\": emit hit field `who` is a symbol",
            "not a number",
        ),
    ];
    write(
        "broken.json",
        "{\"format\": \"strix-model\",\n  \"version\": 1,, }",
    );
    write("needs_y.json", &MODEL.replace("\"flag\"]", "\"y\"]"));
    write("on_who.json", &MODEL.replace("\"flag\"]", "\"who\"]"));
    for (file, body, want, also) in cases {
        let path = write(file, &body);
        let lines: Vec<&str> = body.lines().collect();
        ensure!(lines[7].find("score using") == Some(2), "{}", lines[7]);
        let (ok, err) = cli_replay(&path, &[])?;
        ensure!(!ok, "{file}: succeeded");
        let at = format!("{}{want}", s(&path));
        ensure!(err.contains(&at), "{file}: {err}");
        ensure!(err.contains(also), "{file}: {err}");
    }
    Ok(())
}

#[test]
fn bare_names_resolve_in_the_models_dir() -> Result<()> {
    let models = dir().join("models");
    std::fs::create_dir_all(&models)?;
    std::fs::write(models.join("elsewhere.json"), MODEL)?;
    let path = write(
        "models_dir.cep",
        &rules("score using elsewhere threshold 0.9"),
    );
    let (ok, err) = cli_replay(&path, &["--score-device", "cpu"])?;
    ensure!(!ok && err.contains("elsewhere.json"), "{err}");
    let (ok, err) = cli_replay(&path, &["--score-device", "cpu", "--models", s(&models)])?;
    ensure!(ok, "{err}");
    Ok(())
}

#[test]
fn the_stage_scores_raw_signals_of_the_engine() -> Result<()> {
    use strix::scoring::{ScoreOptions, SignalScorer};
    use strix::{Engine, FieldValue};
    write("hand.json", MODEL);
    let path = write("raw.cep", &rules("score using hand threshold 0.5"));
    let src = std::fs::read_to_string(&path)?;
    let mut engine = Engine::from_rules(s(&path), &src)?;
    let mut raw = Vec::new();
    for i in 0..40 {
        let (x, n, flag, who) = event(i);
        let e = engine.event(
            "Obs",
            i as i64,
            &[
                ("x", FieldValue::F64(x)),
                ("n", FieldValue::I64(n)),
                ("flag", FieldValue::Bool(flag)),
                ("who", FieldValue::Str(who)),
            ],
        )?;
        engine.push(&e, |s| raw.push(s.raw.clone()));
    }
    engine.finish(|s| raw.push(s.raw.clone()));
    let opts = ScoreOptions {
        device: ScoreDevice::Cpu,
        batch: 16,
        ..ScoreOptions::for_rules(&path)
    };
    let mut scorer = SignalScorer::new(engine.program(), &opts)?.expect("a model rule");
    scorer.score(&mut raw)?;
    let mut passed = 0;
    for sig in &raw {
        if sig.rule == 0 {
            let i = sig.seq[0] as usize;
            let score = sig.score.expect("scored");
            ensure!((score - expected(i)).abs() < 1e-6, "{i}: {score}");
            ensure!(scorer.passes(sig) == (score >= 0.5));
            passed += usize::from(scorer.passes(sig));
        } else {
            ensure!(sig.score.is_none() && scorer.passes(sig));
        }
    }
    ensure!(passed == (0..40).filter(|&i| expected(i) >= 0.5).count());
    let st = scorer.stats();
    ensure!(
        st[0].stats.rows == 40 && st[0].stats.cpu_batches == 3,
        "{st:?}"
    );
    // A program without `score using` needs no stage.
    let plain = Engine::from_rules("plain.cep", &rules("score o.x threshold 1"))?;
    ensure!(SignalScorer::new(plain.program(), &opts)?.is_none());
    Ok(())
}
