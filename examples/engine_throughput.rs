//! Engine throughput on one core: a tape's blocks are decoded into memory first, then pushed
//! through one engine (`push_batch`, or `push_view` row by row) and timed as a whole; signals are
//! rendered as JSON Lines into a file (or counted).
//!
//! Run with `cargo run --release --example engine_throughput -- RULES TAPE [fast|reference]
//! [batch|rows] [--out FILE] [--shard INDEX/COUNT] [--repeat N]` (`--repeat` runs the engine
//! N times over the decoded tape and reports the best run).

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use strix::cep_core::EventBatch;
use strix::cep_core::event::EventView;
use strix::feeds::tape::TapeReader;
use strix::{Engine, EngineConfig, MatcherKind, ShardSpec};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(rules), Some(tape)) = (args.first(), args.get(1)) else {
        bail!("usage: RULES TAPE [fast|reference] [batch|rows] [--out FILE] [--shard I/N]");
    };
    let mut kind = MatcherKind::Fast;
    let mut rows = false;
    let mut out_path = None;
    let mut shard = None;
    let mut repeat = 1usize;
    let mut rest = args[2..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "fast" => kind = MatcherKind::Fast,
            "reference" => kind = MatcherKind::Reference,
            "batch" => rows = false,
            "rows" => rows = true,
            "--out" => out_path = rest.next().cloned(),
            "--shard" => {
                let s = rest.next().context("--shard INDEX/COUNT")?;
                let (i, n) = s.split_once('/').context("--shard INDEX/COUNT")?;
                shard = Some(ShardSpec {
                    index: i.parse()?,
                    count: n.parse()?,
                });
            }
            "--repeat" => repeat = rest.next().context("--repeat N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let source = std::fs::read_to_string(rules)?;
    let reader = TapeReader::open(tape.as_ref())?;
    let decode = Instant::now();
    let mut batches = Vec::with_capacity(reader.block_count());
    for b in 0..reader.block_count() {
        let mut batch = EventBatch::new(reader.slot_count());
        reader.read_block(b, &mut batch)?;
        batches.push(batch);
    }
    let decode_s = decode.elapsed().as_secs_f64();
    let events: usize = batches.iter().map(EventBatch::len).sum();
    for _ in 0..repeat {
        run(
            &reader, rules, &source, &batches, kind, rows, shard, &out_path, decode_s, events,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run(
    reader: &TapeReader,
    rules: &str,
    source: &str,
    batches: &[EventBatch],
    kind: MatcherKind,
    rows: bool,
    shard: Option<ShardSpec>,
    out_path: &Option<String>,
    decode_s: f64,
    events: usize,
) -> Result<()> {
    let config = EngineConfig {
        kind,
        shard,
        ..EngineConfig::default()
    };
    let mut engine = Engine::build(
        rules,
        source,
        Some(reader.catalog()),
        reader.symbols().clone(),
        config,
    )?;
    let mut out: Box<dyn Write> = match out_path {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::sink()),
    };
    let mut signals = 0u64;
    let mut line = Vec::with_capacity(256);
    let mut write = |s: strix::Signal<'_>| {
        signals += 1;
        line.clear();
        // Writing into a Vec cannot fail.
        serde_json::to_writer(&mut line, &s.to_json()).expect("JSON into a Vec");
        line.push(b'\n');
        out.write_all(&line).expect("write signals");
    };
    let mut late = 0u64;
    let mut row = Vec::new();
    let cpu_started = thread_cpu_s();
    let started = Instant::now();
    for batch in batches {
        if rows {
            for i in 0..batch.len() {
                batch.copy_slots(i, &mut row);
                let e = EventView {
                    seq: batch.seq()[i],
                    ts: batch.ts()[i],
                    type_id: batch.type_ids()[i],
                    slots: &row,
                };
                if engine.push_view(e, &mut write) == strix::Admission::Late {
                    late += 1;
                }
            }
        } else {
            engine.push_batch(batch, &mut write, |_| late += 1);
        }
    }
    engine.finish(&mut write);
    let secs = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_s().zip(cpu_started).map(|(b, a)| b - a);
    out.flush()?;
    let stats = engine.stats();
    println!(
        "{kind:?} {} {events} events in {secs:.3} s: {:.2} M events/s, per CPU second {} \
         (decode {:.2} M/s), {signals} signals, {late} late, partitions {:?}",
        if rows { "rows" } else { "batch" },
        events as f64 / secs / 1e6,
        cpu.map_or("?".to_string(), |c| format!(
            "{:.2} M/s",
            events as f64 / c / 1e6
        )),
        events as f64 / decode_s / 1e6,
        stats.iter().map(|s| s.partitions).collect::<Vec<_>>(),
    );
    Ok(())
}

/// CPU time of this thread (user + system) in seconds, from `/proc/thread-self/stat` (Linux; 10 ms
/// resolution): on a shared machine it counts only the time the engine actually ran.
fn thread_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may contain spaces) end at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
