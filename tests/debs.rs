//! The DEBS 2022 Grand Challenge workload end to end: a `gen ticks` tape replayed through
//! `examples/rules/debs2022.cep` by the `strix` binary must give exactly the crossover signals of
//! a straightforward computation written here, independently of the engine, from the tape's
//! events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use strix::feeds::r#gen::ticks::{TICK, WINDOW_NS};
use strix::feeds::r#gen::{GenSpec, Generator, write_tape};
use strix::feeds::tape::TapeReader;

mod common;
use common::{s, tmp_in};

fn tmp(name: &str) -> PathBuf {
    tmp_in("debs", name)
}

/// Events of the test tape.
const EVENTS: u64 = 200_000;
/// Symbols of the test tape: few enough that each trades in hundreds of windows (the EMAs need
/// about a hundred updates to settle), many enough for a long tail that skips windows.
const SYMBOLS: u32 = 100;
/// Relative tolerance on EMA values.
const TOLERANCE: f64 = 1e-9;

fn rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules/debs2022.cep")
}

/// One crossover: signal name, symbol, window end, EMA38 and EMA100 after the update.
#[derive(Debug, Clone, PartialEq)]
struct Crossover {
    signal: String,
    symbol: String,
    ts: i64,
    ema38: f64,
    ema100: f64,
}

/// Windows in which each symbol traded, by symbol name.
type TradedWindows = BTreeMap<String, Vec<i64>>;

/// One symbol's state in the straightforward computation.
#[derive(Debug, Default)]
struct SymbolWindows {
    /// Index (`ts / WINDOW_NS`) of the window being filled and its last price so far.
    open: Option<(i64, f64)>,
    ema38: f64,
    ema100: f64,
    /// Windows in which the symbol traded.
    traded: Vec<i64>,
}

impl SymbolWindows {
    /// Closes the open window, if any: updates both EMAs and reports a crossover.
    fn close(&mut self, symbol: &str, out: &mut Vec<Crossover>) {
        let Some((window, close)) = self.open.take() else {
            return;
        };
        let ema = |prev: f64, j: f64| close * 2.0 / (1.0 + j) + prev * (1.0 - 2.0 / (1.0 + j));
        let (before38, before100) = (self.ema38, self.ema100);
        self.ema38 = ema(before38, 38.0);
        self.ema100 = ema(before100, 100.0);
        let signal = if self.ema38 > self.ema100 && before38 <= before100 {
            Some("bullish")
        } else if self.ema38 < self.ema100 && before38 >= before100 {
            Some("bearish")
        } else {
            None
        };
        if let Some(signal) = signal {
            out.push(Crossover {
                signal: signal.to_owned(),
                symbol: symbol.to_owned(),
                ts: (window + 1) * WINDOW_NS,
                ema38: self.ema38,
                ema100: self.ema100,
            });
        }
        self.traded.push(window);
    }
}

/// The challenge computed directly from the tape: per symbol, the close of each 5-minute window
/// (aligned to multiples of 5 minutes of event time) is the last price by `(ts, seq)`; the
/// EMAs update once per window in which the symbol traded; every window closes at the end of
/// the stream. Also returns each symbol's traded windows.
fn expected_crossovers(tape: &TapeReader) -> Result<(Vec<Crossover>, TradedWindows)> {
    let tick = tape.catalog().event_type(TICK).context("Tick type")?;
    ensure!(tick.name == "Tick");
    let sym_slot = tick.slot("symbol").context("symbol field")?;
    let px_slot = tick.slot("last_trade_price").context("price field")?;
    let mut state: HashMap<u64, SymbolWindows> = HashMap::new();
    let mut out = Vec::new();
    let mut last = (i64::MIN, 0u64);
    let name = |id: u64| -> Result<String> {
        Ok(tape
            .symbols()
            .name(u32::try_from(id)?)
            .context("interned symbol")?
            .to_owned())
    };
    for batch in tape.batches() {
        let batch = batch?;
        for row in 0..batch.len() {
            let (ts, seq) = (batch.ts()[row], batch.seq()[row]);
            ensure!((ts, seq) > last, "tape not in (ts, seq) order at seq {seq}");
            last = (ts, seq);
            ensure!(batch.type_ids()[row] == TICK);
            let sym = batch.slot_column(sym_slot)[row];
            let price = f64::from_bits(batch.slot_column(px_slot)[row]);
            let window = ts.div_euclid(WINDOW_NS);
            let st = state.entry(sym).or_default();
            if st.open.is_some_and(|(w, _)| w != window) {
                st.close(&name(sym)?, &mut out);
            }
            // Events come in (ts, seq) order, so the latest one is the window's close so far.
            st.open = Some((window, price));
        }
    }
    let mut traded = BTreeMap::new();
    for (sym, mut st) in state {
        let symbol = name(sym)?;
        st.close(&symbol, &mut out);
        traded.insert(symbol, st.traded);
    }
    Ok((out, traded))
}

/// Reads the crossover signals of a replay's JSON Lines output.
fn replayed_crossovers(jsonl: &str) -> Result<Vec<Crossover>> {
    let mut out = Vec::new();
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).with_context(|| format!("signal {line}"))?;
        let signal = v["signal"].as_str().context("signal name")?;
        if signal != "bullish" && signal != "bearish" {
            continue;
        }
        let key = v["key"].as_str().context("key")?;
        let fields = &v["fields"];
        ensure!(
            fields["symbol"].as_str() == Some(key),
            "symbol field differs from the key: {line}"
        );
        out.push(Crossover {
            signal: signal.to_owned(),
            symbol: key.to_owned(),
            ts: v["ts"].as_i64().context("ts")?,
            ema38: fields["ema38"].as_f64().context("ema38")?,
            ema100: fields["ema100"].as_f64().context("ema100")?,
        });
    }
    Ok(out)
}

fn close_enough(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE * a.abs().max(b.abs())
}

#[test]
fn debs2022_crossovers_equal_the_straightforward_computation() -> Result<()> {
    // `STRIX_DEBS_TAPE` checks a given tape instead (e.g. a 10M-event `strix gen ticks` tape),
    // and `STRIX_DEBS_SIGNALS` the signals of an earlier (release) replay of it.
    let given_tape = std::env::var_os("STRIX_DEBS_TAPE").map(PathBuf::from);
    let given_signals = std::env::var_os("STRIX_DEBS_SIGNALS").map(PathBuf::from);
    let tape_path = match &given_tape {
        Some(p) => p.clone(),
        None => {
            let p = tmp("ticks.tape");
            let mut spec = GenSpec::new(EVENTS, 2022);
            spec.symbols = SYMBOLS;
            write_tape(Generator::Ticks, &spec, &p, &mut |_| {})?;
            p
        }
    };
    let tape = TapeReader::open(&tape_path)?;
    let (mut expected, traded) = expected_crossovers(&tape)?;

    // The workload is not vacuous: both kinds of crossover occur many times, and symbols of
    // the long tail skip windows in which the market traded.
    let count = |kind: &str| expected.iter().filter(|c| c.signal == kind).count();
    assert!(count("bullish") >= 10, "bullish: {}", count("bullish"));
    assert!(count("bearish") >= 10, "bearish: {}", count("bearish"));
    let market_windows: BTreeSet<i64> = traded.values().flatten().copied().collect();
    let skipping = traded
        .values()
        .filter(|w| {
            let (first, last) = (w[0], w[w.len() - 1]);
            market_windows.range(first..=last).count() > w.len()
        })
        .count();
    assert!(
        skipping >= traded.len() / 2,
        "only {skipping} of {} symbols skip windows",
        traded.len()
    );
    assert!(
        market_windows.len() >= 200,
        "{} windows",
        market_windows.len()
    );

    let signals = given_signals.clone().unwrap_or_else(|| tmp("debs.jsonl"));
    if given_signals.is_none() {
        run_replay(&tape_path, &signals)?;
    }
    let mut replayed = replayed_crossovers(&std::fs::read_to_string(&signals)?)?;

    let order = |a: &Crossover, b: &Crossover| {
        (a.ts, &a.symbol, &a.signal).cmp(&(b.ts, &b.symbol, &b.signal))
    };
    expected.sort_by(order);
    replayed.sort_by(order);
    let key = |c: &Crossover| (c.signal.clone(), c.symbol.clone(), c.ts);
    let expected_keys: Vec<_> = expected.iter().map(key).collect();
    let replayed_keys: Vec<_> = replayed.iter().map(key).collect();
    if expected_keys != replayed_keys {
        let e: BTreeSet<_> = expected_keys.iter().cloned().collect();
        let r: BTreeSet<_> = replayed_keys.iter().cloned().collect();
        let missing: Vec<_> = e.difference(&r).take(5).collect();
        let extra: Vec<_> = r.difference(&e).take(5).collect();
        panic!(
            "{} expected and {} replayed crossovers differ; missing {missing:?}, extra {extra:?}",
            expected.len(),
            replayed.len()
        );
    }
    for (e, r) in expected.iter().zip(&replayed) {
        assert!(
            close_enough(e.ema38, r.ema38) && close_enough(e.ema100, r.ema100),
            "EMAs differ: expected {e:?}, replayed {r:?}"
        );
    }
    if given_tape.is_none() {
        std::fs::remove_file(&tape_path).ok();
    }
    if given_signals.is_none() {
        std::fs::remove_file(&signals).ok();
    }
    Ok(())
}

/// `strix replay` of the DEBS rules over `tape`, signals to `signals`.
fn run_replay(tape: &Path, signals: &Path) -> Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_strix"))
        .args([
            "replay",
            "--rules",
            s(&rules()),
            "--tape",
            s(tape),
            "--out",
            s(signals),
            "--json",
        ])
        .output()
        .context("running strix replay")?;
    ensure!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn debs2022_rules_check_standalone() -> Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_strix"))
        .args(["check", s(&rules())])
        .output()
        .context("running strix check")?;
    ensure!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
