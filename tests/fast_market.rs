//! The fast matcher and sharding on a generated market tape: `examples/rules/market.cep` plus a
//! keyed three-step rule with selective single-event conditions (which the tape's layering
//! instances match: a large order, a cancel, a trade), over 60,000 events of `strix gen market`.
//!
//! Every way of running must give the reference matcher's JSON lines, byte for byte and in the
//! same order: the fast matcher fed row by row and batch by batch (the tape's blocks), with and
//! without a reordering bound (which sends every event through the reorder buffer, so the
//! prefilter is evaluated per event), and the outputs of 1 to 4 shards merged by
//! [`strix::SignalOrder`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use strix::cep_core::EventBatch;
use strix::cep_core::event::EventView;
use strix::feeds::r#gen::{GenSpec, Generator, write_tape};
use strix::feeds::tape::TapeReader;
use strix::{Engine, EngineConfig, MatcherKind, ShardSpec, SignalOrder, TimeOptions};

const EVENTS: u64 = 60_000;
const SEED: u64 = 5;

/// A reordering bound (1 ms): every event waits in the reorder buffer and is released later.
const DELAY: i64 = 1_000_000;

const BIG_CANCEL_TRADE: &str = "
rule big_cancel_trade
  from Order, Cancel, Trade
  partition by account
  pattern o -> c -> t
  define
    o as Order and qty >= 5000
    c as Cancel
    t as Trade and qty >= 100
  within 2s
  select all
  after match skip past last
  emit big_cancel_trade { account, qty: o.qty }
";

/// Removes the temporary tape when the test ends, passing or failing.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rules() -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules/market.cep");
    let market = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(format!("{market}\n{BIG_CANCEL_TRADE}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Rows,
    Batches,
}

/// Signals (order, JSON line) and per-rule (matches, partitions created).
type Run = (Vec<(SignalOrder, String)>, Vec<(u64, usize)>);

fn run(
    tape: &TapeReader,
    rules: &str,
    kind: MatcherKind,
    feed: Feed,
    shard: Option<ShardSpec>,
    max_delay: i64,
) -> Result<Run> {
    let config = EngineConfig {
        kind,
        shard,
        time: TimeOptions {
            max_delay,
            ..TimeOptions::default()
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::build(
        "market.cep",
        rules,
        Some(tape.catalog()),
        tape.symbols().clone(),
        config,
    )?;
    let mut out = Vec::new();
    let mut record = |s: strix::Signal<'_>| out.push((s.order(), s.to_json().to_string()));
    let mut batch = EventBatch::new(tape.slot_count());
    let mut row = Vec::new();
    let mut late = 0;
    for b in 0..tape.block_count() {
        tape.read_block(b, &mut batch)?;
        match feed {
            Feed::Batches => engine.push_batch(&batch, &mut record, |_| late += 1),
            Feed::Rows => {
                for i in 0..batch.len() {
                    batch.copy_slots(i, &mut row);
                    let e = EventView {
                        seq: batch.seq()[i],
                        ts: batch.ts()[i],
                        type_id: batch.type_ids()[i],
                        slots: &row,
                    };
                    if engine.push_view(e, &mut record) == strix::Admission::Late {
                        late += 1;
                    }
                }
            }
        }
    }
    engine.finish(&mut record);
    ensure!(late == 0, "{late} late events on a tape in time order");
    let stats = engine
        .stats()
        .iter()
        .map(|s| (s.matches, s.partitions))
        .collect();
    Ok((out, stats))
}

#[test]
fn fast_matcher_and_shards_reproduce_the_reference_on_a_market_tape() -> Result<()> {
    let path = std::env::temp_dir().join(format!("strix-fast-market-{}.tape", std::process::id()));
    let _cleanup = TempFile(path.clone());
    write_tape(
        Generator::Market,
        &GenSpec::new(EVENTS, SEED),
        &path,
        &mut |_| {},
    )?;
    let tape = TapeReader::open(&path)?;
    let rules = rules()?;

    let (reference, ref_stats) = run(&tape, &rules, MatcherKind::Reference, Feed::Rows, None, 0)?;
    // Every rule matches something, so the comparison covers each of them.
    for (rule, (matches, _)) in ref_stats.iter().enumerate() {
        ensure!(*matches > 0, "rule {rule} matched nothing on the tape");
    }
    ensure!(
        reference.windows(2).all(|w| w[0].0 <= w[1].0),
        "reference output is not in SignalOrder"
    );

    let (delayed_reference, _) = run(
        &tape,
        &rules,
        MatcherKind::Reference,
        Feed::Rows,
        None,
        DELAY,
    )?;
    let lines = |run: &[(SignalOrder, String)]| run.iter().map(|s| s.1.clone()).collect::<Vec<_>>();
    ensure!(
        lines(&delayed_reference) == lines(&reference),
        "a reordering bound on a tape in time order changed the signals"
    );
    for (feed, delay) in [(Feed::Rows, 0), (Feed::Batches, 0), (Feed::Batches, DELAY)] {
        let (fast, fast_stats) = run(&tape, &rules, MatcherKind::Fast, feed, None, delay)?;
        let want = if delay == 0 {
            &reference
        } else {
            &delayed_reference
        };
        ensure!(
            fast == *want,
            "fast matcher ({feed:?}, max delay {delay} ns) differs from the reference: {} vs {} \
             signals, first difference at {:?}",
            fast.len(),
            want.len(),
            fast.iter().zip(want).position(|(a, b)| a != b)
        );
        // The fast matcher keeps partitions only while they hold partial matches.
        for ((_, fast_parts), (_, ref_parts)) in fast_stats.iter().zip(&ref_stats) {
            ensure!(
                fast_parts < ref_parts,
                "fast matcher created {fast_parts} partitions, the reference {ref_parts}"
            );
        }
    }

    for count in 1..=4u32 {
        for kind in [MatcherKind::Fast, MatcherKind::Reference] {
            if kind == MatcherKind::Reference && count != 3 {
                continue; // one sharded reference run suffices; the fast runs cover every count
            }
            let mut merged: Vec<(SignalOrder, u32, usize, String)> = Vec::new();
            for index in 0..count {
                let (sigs, _) = run(
                    &tape,
                    &rules,
                    kind,
                    Feed::Batches,
                    Some(ShardSpec { index, count }),
                    0,
                )?;
                merged.extend(
                    sigs.into_iter()
                        .enumerate()
                        .map(|(i, (o, line))| (o, index, i, line)),
                );
            }
            merged.sort_by_key(|a| (a.0, a.1, a.2));
            let merged: Vec<(SignalOrder, String)> = merged
                .into_iter()
                .map(|(o, _, _, line)| (o, line))
                .collect();
            ensure!(
                merged == reference,
                "{kind:?}: {count} shards merged differ from the unsharded reference"
            );
        }
    }
    Ok(())
}
