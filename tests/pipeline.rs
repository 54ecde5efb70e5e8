//! The replay pipeline end to end through the library: the signal lines (and the late-event
//! lines) are the same bytes for every shard count (0 = inline, 1..4 threads), batch size (1, 7,
//! 1024) and matcher, on generated market and tick tapes with the example rules, on rules with
//! windowed queries and `on timeout emit`, and on an out-of-order tape with late events. A ring
//! of one message blocks instead of dropping; a paced replay reports latency.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use strix::cep_core::event::Label;
use strix::cep_core::symbol::SymbolTable;
use strix::cep_core::value::Value;
use strix::feeds::r#gen::{GenSpec, Generator, write_tape};
use strix::feeds::tape::TapeWriter;
use strix::replay::{ReplayOptions, ReplayReport, RunOptions, replay_run};
use strix::{MatcherKind, TimeOptions};

mod common;
use common::tmp_in;

fn tmp(name: &str) -> PathBuf {
    tmp_in("pipeline", name)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example(rules: &str) -> PathBuf {
    root().join("examples/rules").join(rules)
}

/// Signals, late events and the report of one replay.
struct Replayed {
    signals: Vec<u8>,
    late: Vec<u8>,
    report: ReplayReport,
}

fn run(opts: &ReplayOptions, run: &RunOptions) -> Result<Replayed> {
    let (mut signals, mut late) = (Vec::new(), Vec::new());
    let report = replay_run(opts, run, &mut signals, Some(&mut late), &mut |_, _| {})
        .with_context(|| format!("replay with {run:?}"))?;
    Ok(Replayed {
        signals,
        late,
        report,
    })
}

fn options(rules: PathBuf, tape: PathBuf, time: TimeOptions) -> ReplayOptions {
    ReplayOptions {
        rules,
        tape,
        max_runs_per_key: 10_000,
        time,
    }
}

fn run_options(matcher: MatcherKind, shards: u32, batch: usize) -> RunOptions {
    RunOptions {
        matcher,
        shards,
        batch,
        // Tests run side by side: leave the cores to the scheduler.
        pin: false,
        ..RunOptions::default()
    }
}

/// A rule's name, signals, events read, recall and precision.
type RuleFacts = (String, u64, u64, Option<f64>, Option<f64>);

/// Per-rule facts that must not depend on how the replay ran.
fn rule_facts(r: &ReplayReport) -> Vec<RuleFacts> {
    r.rules
        .iter()
        .map(|x| {
            (
                x.rule.clone(),
                x.signals,
                x.events_read,
                x.recall,
                x.precision,
            )
        })
        .collect()
}

/// Replays with the reference matcher inline, then with every shard count and batch size (fast
/// matcher) and a few reference-matcher shard runs; every output must equal the first.
/// Returns the first run.
fn assert_same_everywhere(opts: &ReplayOptions) -> Result<Replayed> {
    let want = run(opts, &run_options(MatcherKind::Reference, 0, 1024))?;
    let mut runs = Vec::new();
    for shards in 0..=4 {
        for batch in [1, 7, 1024] {
            runs.push(run_options(MatcherKind::Fast, shards, batch));
        }
    }
    runs.push(run_options(MatcherKind::Reference, 2, 7));
    runs.push(run_options(MatcherKind::Reference, 3, 1024));
    for r in &runs {
        let got = run(opts, r)?;
        let what = format!(
            "{} matcher, {} shards, batch {}",
            got.report.matcher, r.shards, r.batch
        );
        ensure!(
            got.signals == want.signals,
            "signals differ with {what}: {} bytes vs {} (first difference at byte {:?})",
            got.signals.len(),
            want.signals.len(),
            got.signals
                .iter()
                .zip(&want.signals)
                .position(|(a, b)| a != b)
        );
        ensure!(got.late == want.late, "late events differ with {what}");
        let (g, w) = (&got.report, &want.report);
        ensure!(g.signals == w.signals && g.events == w.events, "{what}");
        ensure!(
            rule_facts(g) == rule_facts(w),
            "{what}: per-rule results differ"
        );
        ensure!(g.time == w.time, "{what}: event-time counters differ");
        ensure!(g.queries == w.queries, "{what}: query results differ");
        ensure!(
            (g.shards, g.batch) == (r.shards, r.batch),
            "{what}: report says {} shards, batch {}",
            g.shards,
            g.batch
        );
        ensure!(g.latency.p50_ns <= g.latency.p99_ns && g.latency.p99_ns <= g.latency.max_ns);
    }
    Ok(want)
}

fn gen_tape(kind: Generator, events: u64, seed: u64, name: &str) -> Result<PathBuf> {
    let path = tmp(name);
    let mut spec = GenSpec::new(events, seed);
    if kind == Generator::Ticks {
        spec.symbols = 40;
    }
    write_tape(kind, &spec, &path, &mut |_| {})?;
    Ok(path)
}

#[test]
fn market_rules_give_the_same_bytes_for_every_shard_count_and_batch() -> Result<()> {
    let tape = gen_tape(Generator::Market, 20_000, 11, "market.tape")?;
    let first = assert_same_everywhere(&options(
        example("market.cep"),
        tape,
        TimeOptions::default(),
    ))?;
    ensure!(first.report.signals > 0, "the tape holds injected patterns");
    Ok(())
}

#[test]
fn card_rules_give_the_same_bytes_for_every_shard_count_and_batch() -> Result<()> {
    let tape = gen_tape(Generator::Cards, 20_000, 5, "cards.tape")?;
    let first =
        assert_same_everywhere(&options(example("cards.cep"), tape, TimeOptions::default()))?;
    ensure!(first.report.signals > 0, "the tape holds injected fraud");
    Ok(())
}

#[test]
fn windowed_queries_give_the_same_bytes_for_every_shard_count_and_batch() -> Result<()> {
    let tape = gen_tape(Generator::Ticks, 20_000, 5, "ticks.tape")?;
    let first = assert_same_everywhere(&options(
        example("debs2022.cep"),
        tape,
        TimeOptions::default(),
    ))?;
    ensure!(first.report.derived_events > 0 && first.report.signals > 0);
    Ok(())
}

/// Many signals on many keys, timeouts firing at shared watermarks, and an unpartitioned rule
/// (whose one key lives on one shard).
const MARKET_TIMEOUTS: &str = "
event Order  { id: u64, account: sym, symbol: sym, side: side, price: f64, qty: f64 }
event Cancel { id: u64, account: sym, symbol: sym }
event Trade  { symbol: sym, price: f64, qty: f64, side: side, account: sym }

rule quick_cancel
  from Order, Cancel
  partition by account
  pattern o -> c
  define o as Order, c as Cancel and id == o.id
  within 20ms
  select all
  emit quick_cancel { account, id: o.id }
  on timeout emit kept { account, id: o.id }

rule uptick
  from Trade
  partition by symbol
  pattern a b
  define a as Trade, b as Trade and price > a.price
  emit uptick { symbol, lo: a.price, hi: b.price }

rule big_trade
  from Trade
  pattern t
  define t as qty >= 300
  emit big_trade { symbol: t.symbol, qty: t.qty }
";

#[test]
fn timeouts_on_many_keys_give_the_same_bytes_for_every_shard_count_and_batch() -> Result<()> {
    let tape = gen_tape(Generator::Market, 12_000, 3, "timeouts.tape")?;
    let rules = tmp("timeouts.cep");
    std::fs::write(&rules, MARKET_TIMEOUTS)?;
    let first = assert_same_everywhere(&options(rules, tape, TimeOptions::default()))?;
    let text = String::from_utf8(first.signals)?;
    for signal in [
        "\"kept\"",
        "\"quick_cancel\"",
        "\"uptick\"",
        "\"big_trade\"",
    ] {
        ensure!(text.contains(signal), "no {signal} signal");
    }
    Ok(())
}

const CARD_RULES: &str = "
event Txn { id: u64, card: sym, amount: f64 }

query per_card
  from Txn
  group by card
  window tumbling 1m
  emit card_minute { card, n: count(*), total: sum(amount) }

rule testing
  from Txn
  partition by card
  pattern tiny{2} -> big
  define tiny as amount < 2, big as amount >= 500
  within 2m
  select all
  emit card_testing { card, total: sum(tiny.amount) + big.amount }
  on timeout emit abandoned { card, tiny: count(tiny) }

rule busy_minute
  from card_minute
  partition by card
  pattern m
  define m as n >= 2
  emit busy_minute { card, n: m.n }
";

/// xorshift64*: a fixed, seeded stream of test data.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Card transactions on 50 cards arriving up to 30 s out of time order, with some late ones.
fn write_out_of_order_tape(path: &Path) -> Result<()> {
    let mut symbols = SymbolTable::new();
    // The tape holds input events only (the query's output type is the rules' own).
    let decl = "event Txn { id: u64, card: sym, amount: f64 }";
    let program = strix::pattern_lang::compile(decl, None, &mut symbols)
        .map_err(|d| anyhow::anyhow!("{}", d.render("decl", decl)))?;
    let txn = program.catalog.type_by_name("Txn").context("Txn")?;
    let cards: Vec<u32> = (0..50).map(|i| symbols.intern(&format!("C{i}"))).collect();
    let mut w = TapeWriter::create(path, &program.catalog, &["none".to_string()], "test")?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let amounts = [1.0, 1.5, 0.5, 50.0, 600.0, 900.0, 20.0];
    let base = 1_700_000_000_000_000_000i64;
    let mut events: Vec<(i64, i64, u64)> = (0..6000u64)
        .map(|i| {
            let ts = base + i as i64 * 200_000_000 + rng.below(150) as i64 * 1_000_000;
            (ts + rng.below(30_001) as i64 * 1_000_000, ts, i)
        })
        .collect();
    events.sort_unstable();
    let mut max_ts = i64::MIN;
    for (n, &(_, ts, id)) in events.iter().enumerate() {
        max_ts = max_ts.max(ts);
        let mut push = |id: u64, ts: i64, amount: f64, rng: &mut Rng| {
            let slots = [
                Value::U64(id).to_slot(),
                Value::Sym(cards[rng.below(50) as usize]).to_slot(),
                Value::F64(amount).to_slot(),
            ];
            w.push(ts, txn, Label::default(), &slots)
        };
        let amount = amounts[rng.below(amounts.len() as u64) as usize];
        push(id, ts, amount, &mut rng)?;
        if n > 100 && rng.below(40) == 0 {
            // Behind the watermark by more than the allowed lateness: late.
            let late_ts = max_ts - 40_000_000_000 - rng.below(60_000) as i64 * 1_000_000;
            push(1_000_000 + id, late_ts, 900.0, &mut rng)?;
        }
    }
    w.finish(&symbols)?;
    Ok(())
}

#[test]
fn out_of_order_input_gives_the_same_signals_and_late_events_everywhere() -> Result<()> {
    let tape = tmp("out_of_order.tape");
    write_out_of_order_tape(&tape)?;
    let rules = tmp("cards_time.cep");
    std::fs::write(&rules, CARD_RULES)?;
    let time = TimeOptions {
        max_delay: 30_000_000_000,
        allowed_lateness: 5_000_000_000,
        ..TimeOptions::default()
    };
    let first = assert_same_everywhere(&options(rules, tape, time))?;
    let r = &first.report;
    ensure!(r.time.late > 0 && r.time.reordered > 0, "{:?}", r.time);
    // One line per late event: every shard sees them, exactly one writes them.
    let late_lines = first.late.iter().filter(|&&b| b == b'\n').count() as u64;
    ensure!(
        late_lines == r.time.late,
        "{late_lines} lines, {} late",
        r.time.late
    );
    let text = String::from_utf8(first.signals)?;
    for signal in ["\"card_testing\"", "\"abandoned\"", "\"busy_minute\""] {
        ensure!(text.contains(signal), "no {signal} signal");
    }
    Ok(())
}

/// A writer that stalls on its first write, so the stages before the sink fill their rings.
struct SlowStart<W> {
    inner: W,
    stalled: bool,
}

impl<W: Write> Write for SlowStart<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.stalled {
            self.stalled = true;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_ring_of_one_message_blocks_the_feed_instead_of_dropping() -> Result<()> {
    let tape = gen_tape(Generator::Market, 8_000, 3, "backpressure.tape")?;
    let rules = tmp("backpressure.cep");
    std::fs::write(&rules, MARKET_TIMEOUTS)?;
    let opts = options(rules, tape, TimeOptions::default());
    let want = run(&opts, &run_options(MatcherKind::Fast, 0, 1024))?;
    for shards in [1, 3] {
        let tiny = RunOptions {
            ring_capacity: Some(1),
            ..run_options(MatcherKind::Fast, shards, 1)
        };
        let mut out = SlowStart {
            inner: Vec::new(),
            stalled: false,
        };
        let report = replay_run(&opts, &tiny, &mut out, None, &mut |_, _| {})?;
        ensure!(out.inner == want.signals, "{shards} shards: signals differ");
        ensure!(report.events == 8_000, "every event was processed");
        // The sink stalled with thousands of one-row batches still to come: the feed had to wait.
        ensure!(report.backpressure_waits > 0, "{shards} shards: no wait");
    }
    Ok(())
}

#[test]
fn a_paced_replay_reports_latency_and_the_same_signals() -> Result<()> {
    let tape = gen_tape(Generator::Market, 10_000, 11, "paced.tape")?;
    let opts = options(example("market.cep"), tape, TimeOptions::default());
    let want = run(&opts, &run_options(MatcherKind::Fast, 0, 1024))?;
    for shards in [0, 2] {
        let paced = RunOptions {
            rate: Some(500_000),
            ..run_options(MatcherKind::Fast, shards, 256)
        };
        let got = run(&opts, &paced)?;
        ensure!(
            got.signals == want.signals,
            "{shards} shards: signals differ"
        );
        let r = &got.report;
        ensure!(r.rate == Some(500_000) && r.events == 10_000);
        ensure!(r.latency.p50_ns > 0 && r.latency.p50_ns <= r.latency.p999_ns);
        ensure!(r.latency.p999_ns <= r.latency.max_ns);
        // Not a speed claim: the last event is due 20 ms after the first, so the run lasts that.
        ensure!(r.elapsed_s >= 0.019_998, "{} s", r.elapsed_s);
    }
    Ok(())
}
