//! End-to-end tests of the `strix` binary: check, explain, gen, replay, tape import/info/export.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

mod common;
use common::{s, strix, text, tmp_in};

fn tmp(name: &str) -> PathBuf {
    tmp_in("cli", name)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example(rules: &str) -> PathBuf {
    root().join("examples/rules").join(rules)
}

fn shared_data() -> Option<PathBuf> {
    let p = root().join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: ../shared/data not found");
        None
    }
}

/// `strix gen KIND --events N --seed SEED -o TAPE`, which must succeed.
fn generate(kind: &str, events: &str, seed: &str, tape: &Path) -> Result<()> {
    let out = strix(&[
        "gen",
        kind,
        "--events",
        events,
        "--seed",
        seed,
        "-o",
        s(tape),
    ])?;
    ensure!(out.status.success(), "gen failed: {}", text(&out.stderr));
    Ok(())
}

/// `strix replay --rules RULES --tape TAPE [--out OUT] --json`, which must succeed; the report.
fn replay_report(rules: &Path, tape: &Path, out: Option<&Path>) -> Result<Value> {
    let mut args = vec!["replay", "--rules", s(rules), "--tape", s(tape), "--json"];
    if let Some(o) = out {
        args.extend(["--out", s(o)]);
    }
    let out = strix(&args)?;
    ensure!(out.status.success(), "replay failed: {}", text(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `strix tape import --format csv --schema SCHEMA --type Tick INPUT -o TAPE`.
fn import_ticks(schema: &Path, input: &Path, tape: &Path) -> Result<Output> {
    strix(&[
        "tape",
        "import",
        "--format",
        "csv",
        "--schema",
        s(schema),
        "--type",
        "Tick",
        s(input),
        "-o",
        s(tape),
    ])
}

#[test]
fn check_reports_misspelled_field_with_caret() -> Result<()> {
    let rules = tmp("typo.cep");
    std::fs::write(
        &rules,
        "event Order { id: u64, qty: f64 }\nrule big\n  from Order\n  pattern b\n  define b as Order and qyt > 5\n",
    )?;
    let out = strix(&["check", s(&rules)])?;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("typo.cep:5:25"), "{err}");
    assert!(err.contains("unknown field `qyt`"), "{err}");
    assert!(err.contains("  define b as Order and qyt > 5"), "{err}");
    let caret_line = err
        .lines()
        .find(|l| l.contains('^'))
        .context("caret line")?;
    // The caret sits under `qyt`: same column in the rendered source line.
    let src_line = err
        .lines()
        .find(|l| l.contains("define b as"))
        .context("source line")?;
    assert_eq!(caret_line.find('^'), src_line.find("qyt"), "{err}");
    assert_eq!(caret_line.matches('^').count(), 3);
    Ok(())
}

#[test]
fn check_accepts_the_example_rules() -> Result<()> {
    for f in ["market.cep", "cards.cep", "lobster.cep", "debs2022.cep"] {
        let p = example(f);
        let out = strix(&["check", s(&p)])?;
        assert!(out.status.success(), "{f}: {}", text(&out.stderr));
        let out = strix(&["explain", s(&p)])?;
        assert!(out.status.success(), "{f}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("states"),
            "{}",
            text(&out.stdout)
        );
        let out = strix(&["explain", "--dot", s(&p)])?;
        assert!(text(&out.stdout).starts_with("digraph"));
    }
    Ok(())
}

#[test]
fn explain_shows_score_clauses() -> Result<()> {
    let out = strix(&["explain", s(&example("creditcard.cep"))])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l == "  score using \"../models/creditcard_logistic.json\" threshold 0.5"),
        "{stdout}"
    );
    let p = tmp_in("cli", "score_expr.cep");
    std::fs::write(
        &p,
        "event A { x: f64 }\nrule r pattern a define a as A emit s { v: a.x } score a.x * 2\n",
    )?;
    let out = strix(&["explain", s(&p)])?;
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l == "  score (last(a).x * 2)"),
        "{}",
        text(&out.stdout)
    );
    Ok(())
}

#[test]
fn check_and_explain_show_windowed_queries() -> Result<()> {
    let p = example("debs2022.cep");
    let out = strix(&["check", s(&p)])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // `Tick` from the tape and `ema_bar` derived by the query.
    assert!(
        stdout.contains("ok (2 event types (1 derived), 1 query, 2 rules)"),
        "{stdout}"
    );
    let out = strix(&["check", s(&example("market.cep"))])?;
    assert!(
        text(&out.stdout).contains("ok (3 event types, 0 queries, 2 rules)"),
        "{}",
        text(&out.stdout)
    );

    let out = strix(&["explain", s(&p)])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    let at = |line: &str| lines.iter().position(|l| *l == line);
    let query = at("query ema_5m  (derived events `ema_bar`)").context(stdout.clone())?;
    for expected in [
        "  reads      Tick",
        "  where      (none: every event)",
        "  group by   symbol",
        "  window     tumbling 5m",
        "  having     (none: every window)",
        "  emit ema_bar {",
        "    symbol: sym = symbol",
        "    close: f64 = last(last_trade_price)",
        "    ema38: f64 = ema(last(last_trade_price), 38)",
        "    ema100: f64 = ema(last(last_trade_price), 100)",
    ] {
        let i = at(expected).with_context(|| format!("missing {expected:?} in\n{stdout}"))?;
        assert!(i > query, "{expected:?} before the query header\n{stdout}");
    }
    // Queries come before the rules, which name the query their input comes from.
    let rule = at("rule bullish  (signal `bullish`)").context(stdout.clone())?;
    assert!(query < rule, "{stdout}");
    assert_eq!(
        lines.get(rule + 1).copied(),
        Some("  reads      ema_bar (derived by query ema_5m)"),
        "{stdout}"
    );

    // Graphviz output covers the rules only, and still works with a query in the file.
    let out = strix(&["explain", "--dot", s(&p)])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"bullish\""), "{dot}");
    assert!(dot.contains("digraph \"bearish\""), "{dot}");
    assert!(!dot.contains("ema_5m"), "{dot}");
    Ok(())
}

#[test]
fn explain_prints_durations_as_written() -> Result<()> {
    let rules = tmp("windows.cep");
    std::fs::write(
        &rules,
        "event Trade { symbol: sym, price: f64, qty: i64 }\n\
         query a from Trade where price > 0 group by symbol window sliding 5m every 1m\n\
           having count(*) >= 2 emit bar { symbol, vwap: sum(price * qty) / sum(qty), end: window_end }\n\
         query b from bar window session gap 1500ms emit quiet { n: count(*) }\n\
         rule pair from Trade pattern x y within 90s emit pair { }\n",
    )?;
    let out = strix(&["explain", s(&rules)])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "  where      (price > 0)\n",
        "  window     sliding 5m every 1m\n",
        "  having     (count(*) >= 2)\n",
        "    vwap: f64 = (sum(price * qty) / sum(qty))\n",
        "    end: ts = window_end\n",
        "  reads      bar (derived by query a)\n",
        "  group by   (none: one group)\n",
        "  window     session gap 1500ms\n",
        "  within     90s\n",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    let out = strix(&["check", s(&rules)])?;
    assert!(
        text(&out.stdout).contains("ok (3 event types (2 derived), 2 queries, 1 rule)"),
        "{}",
        text(&out.stdout)
    );
    Ok(())
}

#[test]
fn gen_help_does_not_promise_labels_for_ticks() -> Result<()> {
    let out = strix(&["gen", "--help"])?;
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("unlabelled ticks"), "{help}");
    Ok(())
}

fn gen_and_replay(kind: &str, rules: &str, events: &str) -> Result<Value> {
    let tape = tmp(&format!("{kind}.tape"));
    generate(kind, events, "7", &tape)?;
    let signals = tmp(&format!("{kind}.jsonl"));
    let report = replay_report(&example(rules), &tape, Some(&signals))?;
    let lines = std::fs::read_to_string(&signals)?;
    assert_eq!(
        lines.lines().count() as u64,
        report["signals"].as_u64().context("signals")?
    );
    for l in lines.lines() {
        let signal: Value = serde_json::from_str(l)?;
        for k in ["rule", "signal", "ts", "key", "seq", "fields", "id"] {
            assert!(signal.get(k).is_some(), "signal lacks {k}: {l}");
        }
    }
    Ok(report)
}

/// Every rule of the report found every injected instance of its class, with few false alarms.
fn assert_full_recall(report: &Value) -> Result<()> {
    for r in report["rules"].as_array().context("rules")? {
        assert!(r["instances"].as_u64().context("instances")? > 0, "{r}");
        assert_eq!(r["recall"], 1.0, "{r}");
        assert!(r["precision"].as_f64().context("precision")? > 0.9, "{r}");
    }
    Ok(())
}

#[test]
fn replay_finds_every_injected_market_pattern() -> Result<()> {
    let report = gen_and_replay("market", "market.cep", "200000")?;
    assert_eq!(report["events"], 200_000);
    assert_eq!(report["rules"].as_array().context("rules")?.len(), 2);
    assert_full_recall(&report)?;
    assert!(report["latency"]["p99_ns"].as_u64().is_some());
    Ok(())
}

#[test]
fn replay_finds_every_injected_card_fraud() -> Result<()> {
    let report = gen_and_replay("cards", "cards.cep", "200000")?;
    assert_eq!(report["rules"].as_array().context("rules")?.len(), 2);
    assert_full_recall(&report)
}

/// `strix replay ... --json [extra] --out OUT`, which must succeed: the signal bytes and the report.
fn replay_with(rules: &Path, tape: &Path, name: &str, extra: &[&str]) -> Result<(Vec<u8>, Value)> {
    let signals = tmp(name);
    let mut args = vec![
        "replay",
        "--rules",
        s(rules),
        "--tape",
        s(tape),
        "--json",
        "--out",
        s(&signals),
    ];
    args.extend_from_slice(extra);
    let out = strix(&args)?;
    ensure!(
        out.status.success(),
        "replay {extra:?} failed: {}",
        text(&out.stderr)
    );
    Ok((
        std::fs::read(&signals)?,
        serde_json::from_slice(&out.stdout)?,
    ))
}

#[test]
fn replay_help_explains_matcher_shards_batch_rate_and_pinning() -> Result<()> {
    let out = strix(&["replay", "--help"])?;
    ensure!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "--matcher",
        "reference",
        "--shards",
        "inline",
        "--batch",
        "--rate <EVENTS_PER_S>",
        "due time",
        "--no-pin",
        "[default: fast]",
        "[default: 1]",
        "[default: 1024]",
    ] {
        ensure!(help.contains(needle), "help lacks `{needle}`:\n{help}");
    }
    Ok(())
}

#[test]
fn replay_gives_the_same_signals_for_every_matcher_shard_count_batch_and_rate() -> Result<()> {
    let tape = tmp("pipeline-market.tape");
    generate("market", "30000", "11", &tape)?;
    let rules = example("market.cep");
    let (want, report) = replay_with(&rules, &tape, "pipeline-default.jsonl", &[])?;
    ensure!(!want.is_empty(), "the tape holds injected patterns");
    ensure!(report["matcher"] == "fast" && report["shards"] == 1 && report["batch"] == 1024);
    ensure!(report["rate"].is_null(), "{report}");
    ensure!(report["events_per_s"].as_f64().context("events_per_s")? > 0.0);
    ensure!(report["pinning"].as_str().is_some_and(|p| !p.is_empty()));
    for (name, extra, matcher, shards) in [
        (
            "ref-inline",
            &["--matcher", "reference", "--shards", "0"][..],
            "reference",
            0,
        ),
        (
            "fast-inline",
            &["--shards", "0", "--batch", "1"][..],
            "fast",
            0,
        ),
        (
            "fast-3",
            &["--shards", "3", "--batch", "7", "--no-pin"][..],
            "fast",
            3,
        ),
        (
            "ref-2",
            &["--matcher", "reference", "--shards", "2"][..],
            "reference",
            2,
        ),
        (
            "paced",
            &["--shards", "2", "--rate", "1000000"][..],
            "fast",
            2,
        ),
    ] {
        let (got, report) = replay_with(&rules, &tape, &format!("pipeline-{name}.jsonl"), extra)?;
        ensure!(got == want, "{name}: signals differ");
        ensure!(
            report["matcher"] == matcher && report["shards"] == shards,
            "{report}"
        );
        ensure!(report["events"] == 30_000, "{report}");
        let latency = &report["latency"];
        for p in ["p50_ns", "p99_ns", "p999_ns", "max_ns"] {
            ensure!(latency[p].as_u64().is_some(), "{name}: no {p}");
        }
    }
    let (_, paced) = replay_with(
        &rules,
        &tape,
        "pipeline-paced2.jsonl",
        &["--rate", "1000000"],
    )?;
    ensure!(paced["rate"] == 1_000_000, "{paced}");
    let (_, unpinned) = replay_with(&rules, &tape, "pipeline-nopin.jsonl", &["--no-pin"])?;
    let note = unpinned["pinning"].as_str().context("pinning")?;
    ensure!(note.contains("turned off"), "{note}");
    Ok(())
}

#[test]
fn replay_text_report_shows_the_pipeline_and_latency() -> Result<()> {
    let tape = tmp("pipeline-text.tape");
    generate("market", "5000", "3", &tape)?;
    let out = strix(&[
        "replay",
        "--rules",
        s(&example("market.cep")),
        "--tape",
        s(&tape),
        "--out",
        s(&tmp("pipeline-text.jsonl")),
        "--shards",
        "2",
        "--batch",
        "100",
    ])?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "fast matcher",
        "2 shards",
        "batch 100",
        "unpaced",
        "max throughput",
        "p99.9",
        "backpressure",
    ] {
        ensure!(
            report.contains(needle),
            "report lacks `{needle}`:\n{report}"
        );
    }
    Ok(())
}

#[test]
fn replay_rejects_bad_pipeline_flags() -> Result<()> {
    for (extra, needle) in [
        (&["--shards=-1"][..], "--shards"),
        (&["--shards", "257"][..], "--shards"),
        (&["--batch", "0"][..], "--batch"),
        (&["--batch", "many"][..], "--batch"),
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "1.5"][..], "--rate"),
        (&["--matcher", "quick"][..], "fast, reference"),
        (&["--no-pin", "yes"][..], "unexpected argument"),
    ] {
        let mut args = vec!["replay", "--rules", "r.cep", "--tape", "t.tape"];
        args.extend_from_slice(extra);
        let out = strix(&args)?;
        ensure!(!out.status.success(), "{extra:?} was accepted");
        let err = text(&out.stderr);
        ensure!(err.contains(needle), "{extra:?}: `{needle}` not in {err}");
        ensure!(!err.contains("panicked"), "{err}");
    }
    Ok(())
}

#[test]
fn truncated_tape_fails_replay_with_offset() -> Result<()> {
    let tape = tmp("cut.tape");
    generate("market", "50000", "3", &tape)?;
    let bytes = std::fs::read(&tape)?;
    let cut = tmp("cut-half.tape");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
    let out = strix(&[
        "replay",
        "--rules",
        s(&example("market.cep")),
        "--tape",
        s(&cut),
    ])?;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("offset"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "no signals may be printed from a broken tape"
    );
    Ok(())
}

#[test]
fn tape_info_and_export() -> Result<()> {
    let tape = tmp("small.tape");
    generate("cards", "1000", "1", &tape)?;
    let out = strix(&["tape", "info", "--json", "--verify", s(&tape)])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(info["events"], 1000);
    assert_eq!(info["types"][0]["name"], "Txn");
    let out = strix(&["tape", "export", "--format", "jsonl", s(&tape)])?;
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1000);
    let first: Value = serde_json::from_str(stdout.lines().next().context("line")?)?;
    assert_eq!(first["seq"], 0);
    assert_eq!(first["type"], "Txn");
    let out = strix(&["tape", "export", "--format", "csv", s(&tape)])?;
    assert_eq!(text(&out.stdout).lines().count(), 1001);
    Ok(())
}

#[test]
fn lobster_aapl_imports_and_runs() -> Result<()> {
    let Some(data) = shared_data() else {
        return Ok(());
    };
    let zip = data.join("lobster/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip");
    let tape = tmp("aapl.tape");
    let out = strix(&[
        "tape",
        "import",
        "--format",
        "lobster",
        "--symbol",
        "AAPL",
        s(&zip),
        "-o",
        s(&tape),
    ])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = strix(&["tape", "info", "--json", s(&tape)])?;
    let info: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(info["events"], 118_497);
    let report = replay_report(&example("lobster.cep"), &tape, None)?;
    assert_eq!(report["events"], 118_497);
    assert!(
        report["signals"].as_u64().context("signals")? > 0,
        "{report}"
    );
    Ok(())
}

#[test]
fn csv_import_reports_bad_rows_with_line_and_column() -> Result<()> {
    let schema = tmp("csv.cep");
    std::fs::write(&schema, "event Tick { symbol: sym, price: f64 }\n")?;
    let good = tmp("good.csv");
    std::fs::write(&good, "\u{feff}ts,symbol,price\n1,AAPL,10.5\n2,MSFT,20\n")?;
    let tape = tmp("csv.tape");
    let out = import_ticks(&schema, &good, &tape)?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bad = tmp("bad.csv");
    std::fs::write(&bad, "ts,symbol,price\n1,AAPL,10.5\n2,MSFT,abc\n")?;
    let out = import_ticks(&schema, &bad, &tape)?;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(":3:3"), "{err}");
    assert!(err.contains("price"), "{err}");
    Ok(())
}
