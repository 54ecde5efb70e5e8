//! Event time end to end: a tape whose events arrive out of time order (within a bound) plus late
//! events yields, through `strix replay --max-delay`, the same signals as the sorted tape of its
//! on-time events; the late ones are counted and written to `--late-out`. Also the CLI's errors
//! for bad time options, and dedup through the CLI.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::Value as Json;
use strix::cep_core::event::Label;
use strix::cep_core::symbol::SymbolTable;
use strix::cep_core::value::Value;
use strix::feeds::tape::TapeWriter;

mod common;
use common::{s, strix, text, tmp_in};

fn tmp(name: &str) -> PathBuf {
    tmp_in("time", name)
}

const RULES: &str = "
event Txn { id: u64, card: sym, amount: f64 }

rule testing
  from Txn
  partition by card
  pattern tiny{2} -> big
  define tiny as amount < 2, big as amount >= 500
  within 10m
  select all
  emit card_testing { card, total: sum(tiny.amount) + big.amount }

rule jump
  from Txn
  partition by card
  pattern a b
  define a as amount < 100, b as amount >= 500
  emit jump { card, first: a.amount }
";

/// Bound of the out-of-orderness, seconds.
const DELAY_S: i64 = 30;

/// xorshift64*: a fixed, seeded stream of test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One test event: its id (the `id` field), time, card and amount.
#[derive(Debug, Clone, Copy)]
struct Txn {
    id: u64,
    ts: i64,
    card: u32,
    amount: f64,
}

/// Writes `events` in the given order; returns the id of each seq.
fn write_tape(path: &Path, events: &[Txn]) -> Result<Vec<u64>> {
    let mut symbols = SymbolTable::new();
    let program = strix::pattern_lang::compile(RULES, None, &mut symbols)
        .map_err(|d| anyhow::anyhow!("{}", d.render("rules", RULES)))?;
    let txn = program.catalog.type_by_name("Txn").context("Txn")?;
    let cards: Vec<u32> = (0..12).map(|i| symbols.intern(&format!("C{i}"))).collect();
    let mut w = TapeWriter::create(path, &program.catalog, &["none".to_string()], "time test")?;
    for e in events {
        let slots = [
            Value::U64(e.id).to_slot(),
            Value::Sym(cards[e.card as usize]).to_slot(),
            Value::F64(e.amount).to_slot(),
        ];
        w.push(e.ts, txn, Label::default(), &slots)?;
    }
    w.finish(&symbols)?;
    Ok(events.iter().map(|e| e.id).collect())
}

/// The test data: on-time events in time order, and the arrival order (on-time events shuffled
/// within `DELAY_S` plus late events) with the ids of the late ones.
fn scenario() -> (Vec<Txn>, Vec<Txn>, BTreeSet<u64>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let amounts = [1.0, 1.5, 0.5, 50.0, 600.0, 900.0, 20.0];
    let base = 1_700_000_000_000_000_000i64;
    let sorted: Vec<Txn> = (0..3000u64)
        .map(|i| Txn {
            id: i,
            // Distinct times: tie order cannot differ between the two tapes.
            ts: base + i as i64 * 1_000_000_000 + rng.below(900) as i64 * 1_000_000,
            card: rng.below(12) as u32,
            amount: amounts[rng.below(amounts.len() as u64) as usize],
        })
        .collect();
    // Arrival = time + a delay in [0, DELAY_S]: no event arrives more than DELAY_S behind the
    // latest one before it.
    let mut arrival: Vec<(i64, usize)> = sorted
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                e.ts + rng.below(DELAY_S as u64 * 1000 + 1) as i64 * 1_000_000,
                i,
            )
        })
        .collect();
    arrival.sort_unstable();
    let mut shuffled = Vec::new();
    let mut late = BTreeSet::new();
    let mut max_ts = i64::MIN;
    for (n, &(_, i)) in arrival.iter().enumerate() {
        let e = sorted[i];
        max_ts = max_ts.max(e.ts);
        shuffled.push(e);
        if n > 100 && rng.below(60) == 0 {
            // Behind the watermark (max - delay - 1 ns) by up to a minute: late. "Big" amounts,
            // so they would complete matches if they were let in.
            let id = 1_000_000 + late.len() as u64;
            late.insert(id);
            shuffled.push(Txn {
                id,
                ts: max_ts - DELAY_S * 1_000_000_000 - 1 - rng.below(60_000) as i64 * 1_000_000,
                card: rng.below(12) as u32,
                amount: 900.0,
            });
        }
    }
    (sorted, shuffled, late)
}

/// Runs `strix replay` with `extra` options; returns the signals and the JSON report.
fn replay(tape: &Path, rules: &Path, name: &str, extra: &[&str]) -> Result<(Vec<Json>, Json)> {
    let out_path = tmp(&format!("{name}.jsonl"));
    let mut args = vec![
        "replay",
        "--rules",
        s(rules),
        "--tape",
        s(tape),
        "--out",
        s(&out_path),
        "--json",
    ];
    args.extend(extra);
    let out = strix(&args)?;
    ensure!(out.status.success(), "replay failed: {}", text(&out.stderr));
    let report: Json = serde_json::from_slice(&out.stdout)?;
    let signals = std::fs::read_to_string(&out_path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Json>, _>>()?;
    Ok((signals, report))
}

/// Signals by content: rule, signal, key, time, fields and the ids of the matched events (seqs
/// mapped through the tape's order), sorted.
fn content(signals: &[Json], ids: &[u64]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for sig in signals {
        let seq = sig["seq"].as_array().context("seq")?;
        let matched = seq
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|s| ids.get(s as usize).copied())
                    .context("seq on the tape")
            })
            .collect::<Result<Vec<u64>>>()?;
        out.push(format!(
            "{} {} {} {} {:?} {}",
            sig["rule"], sig["signal"], sig["key"], sig["ts"], matched, sig["fields"]
        ));
    }
    out.sort();
    Ok(out)
}

/// Fails listing the first differences (the lists are long).
fn assert_same(got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let only_got: Vec<&String> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    let only_want: Vec<&String> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
    panic!(
        "signals differ from the sorted tape's ({} vs {}): only in the shuffled run {only_got:#?}, only in the sorted run {only_want:#?}",
        got.len(),
        want.len()
    );
}

#[test]
fn out_of_order_tape_yields_the_sorted_tapes_signals_and_late_events_go_to_the_late_output()
-> Result<()> {
    let (sorted, shuffled, late_ids) = scenario();
    ensure!(late_ids.len() >= 20, "only {} late events", late_ids.len());
    let rules = tmp("txn.cep");
    std::fs::write(&rules, RULES)?;
    let sorted_tape = tmp("sorted.tape");
    let shuffled_tape = tmp("shuffled.tape");
    let sorted_ids = write_tape(&sorted_tape, &sorted)?;
    let shuffled_ids = write_tape(&shuffled_tape, &shuffled)?;

    let (want, want_report) = replay(&sorted_tape, &rules, "sorted", &[])?;
    let late_out = tmp("late.jsonl");
    let (got, report) = replay(
        &shuffled_tape,
        &rules,
        "shuffled",
        &["--max-delay", "30s", "--late-out", s(&late_out)],
    )?;

    // Enough signals of both rules that the comparison means something.
    for rule in ["testing", "jump"] {
        let n = want.iter().filter(|s| s["rule"] == rule).count();
        ensure!(n >= 20, "{rule}: only {n} signals on the sorted tape");
    }
    assert_eq!(want_report["time"]["late"], 0);
    assert_eq!(want_report["time"]["reordered"], 0);
    assert_same(
        &content(&got, &shuffled_ids)?,
        &content(&want, &sorted_ids)?,
    );

    // The late events: counted, and written as `tape export --format jsonl` writes them.
    assert_eq!(report["time"]["late"], late_ids.len());
    assert!(
        report["time"]["reordered"]
            .as_u64()
            .is_some_and(|n| n > 1000)
    );
    assert!(
        report["time"]["max_buffered"]
            .as_u64()
            .is_some_and(|n| n > 1)
    );
    assert_eq!(report["time"]["max_delay_ns"], DELAY_S * 1_000_000_000);
    let late_lines: Vec<Json> = std::fs::read_to_string(&late_out)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let written: BTreeSet<u64> = late_lines
        .iter()
        .filter_map(|l| l["fields"]["id"].as_u64())
        .collect();
    assert_eq!(written, late_ids);
    assert_eq!(late_lines.len(), late_ids.len());
    let export = strix(&["tape", "export", s(&shuffled_tape), "--format", "jsonl"])?;
    ensure!(export.status.success(), "{}", text(&export.stderr));
    let exported: Vec<Json> = text(&export.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    for l in &late_lines {
        let seq = l["seq"].as_u64().context("seq")? as usize;
        assert_eq!(l, &exported[seq], "late line differs from the export");
    }

    // The text report shows the counters.
    let out = strix(&[
        "replay",
        "--rules",
        s(&rules),
        "--tape",
        s(&shuffled_tape),
        "--out",
        s(&tmp("text.jsonl")),
        "--max-delay",
        "30s",
    ])?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("late {}", late_ids.len())),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn without_a_bound_the_shuffled_tape_loses_events_to_lateness() -> Result<()> {
    let (sorted, shuffled, late_ids) = scenario();
    let rules = tmp("txn2.cep");
    std::fs::write(&rules, RULES)?;
    let sorted_tape = tmp("sorted2.tape");
    let shuffled_tape = tmp("shuffled2.tape");
    let sorted_ids = write_tape(&sorted_tape, &sorted)?;
    let shuffled_ids = write_tape(&shuffled_tape, &shuffled)?;
    let (want, _) = replay(&sorted_tape, &rules, "sorted2", &[])?;
    let (got, report) = replay(&shuffled_tape, &rules, "unbounded", &[])?;
    let late = report["time"]["late"].as_u64().context("late")?;
    assert!(late > late_ids.len() as u64 + 100, "late {late}");
    assert_ne!(content(&got, &shuffled_ids)?, content(&want, &sorted_ids)?);
    // A bound too small for the data: fewer late events than with none, more than needed.
    let (_, report) = replay(&shuffled_tape, &rules, "small", &["--max-delay", "5s"])?;
    let small = report["time"]["late"].as_u64().context("late")?;
    assert!(small < late && small > late_ids.len() as u64, "{small}");
    Ok(())
}

#[test]
fn allowed_lateness_admits_what_the_bound_missed() -> Result<()> {
    let (_, shuffled, late_ids) = scenario();
    let rules = tmp("txn3.cep");
    std::fs::write(&rules, RULES)?;
    let tape = tmp("shuffled3.tape");
    write_tape(&tape, &shuffled)?;
    // Bound 0 but lateness 2m: every event is admitted (the late ones are at most 90 s behind).
    let (_, report) = replay(&tape, &rules, "lateness", &["--allowed-lateness", "2m"])?;
    assert_eq!(report["time"]["late"], 0);
    let admitted = report["time"]["admitted_late"]
        .as_u64()
        .context("admitted")?;
    assert!(admitted > late_ids.len() as u64, "{admitted}");
    assert_eq!(report["time"]["allowed_lateness_ns"], 120_000_000_000i64);
    assert_eq!(report["events"], shuffled.len());
    Ok(())
}

#[test]
fn dedup_through_the_cli() -> Result<()> {
    let rules = tmp("dedup.cep");
    std::fs::write(&rules, RULES)?;
    let tape = tmp("dedup.tape");
    let base = 1_000_000_000_000i64;
    let ev = |id: u64, s: i64, amount: f64| Txn {
        id,
        ts: base + s * 1_000_000_000,
        card: 0,
        amount,
    };
    // id 1 twice within a minute (dropped), id 2 again after two minutes (kept).
    let events = [
        ev(1, 0, 1.0),
        ev(1, 10, 1.0),
        ev(2, 20, 1.0),
        ev(2, 150, 1.0),
        ev(3, 160, 900.0),
    ];
    write_tape(&tape, &events)?;
    let (signals, report) = replay(
        &tape,
        &rules,
        "dedup",
        &["--dedup", "id", "--dedup-horizon", "1m"],
    )?;
    assert_eq!(report["time"]["duplicates"], 1);
    // tiny{2} -> big: the dropped repeat (seq 1) is in no match.
    let testing: Vec<&Json> = signals.iter().filter(|s| s["rule"] == "testing").collect();
    ensure!(!testing.is_empty(), "no card_testing signal: {signals:?}");
    for sig in &testing {
        assert!(
            !sig["seq"]
                .as_array()
                .context("seq")?
                .contains(&Json::from(1))
        );
    }
    let (_, report) = replay(&tape, &rules, "nodedup", &[])?;
    assert_eq!(report["time"]["duplicates"], 0);
    Ok(())
}

#[test]
fn bad_time_options_are_clear_errors() -> Result<()> {
    let rules = tmp("err.cep");
    std::fs::write(&rules, RULES)?;
    let tape = tmp("err.tape");
    write_tape(
        &tape,
        &[Txn {
            id: 0,
            ts: 0,
            card: 0,
            amount: 1.0,
        }],
    )?;
    let base = ["replay", "--rules", s(&rules), "--tape", s(&tape), "--json"];
    let cases: [(&[&str], &str); 7] = [
        (&["--max-delay", "5x"], "bad duration `5x`"),
        (&["--max-delay", "-1s"], "never negative"),
        (&["--max-delay", "Nope=1s"], "unknown event type `Nope`"),
        (&["--max-delay", "1s", "--max-delay", "2s"], "given twice"),
        (&["--allowed-lateness", "soon"], "--allowed-lateness"),
        (&["--dedup", "id"], "--dedup-horizon"),
        (
            &["--dedup", "serial", "--dedup-horizon", "1m"],
            "dedup field `serial`",
        ),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend(extra);
        let out = strix(&args)?;
        assert!(!out.status.success(), "{extra:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    Ok(())
}
