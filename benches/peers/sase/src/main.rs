//! The rule of `examples/rules/bench3.cep` run by the `varpulis-sase` crate (a SASE+ NFA engine)
//! on the events of a Strix tape exported as CSV (`strix tape export --format csv`).
//!
//! Input: the CSV file. Output: one line per match (`o.seq c.seq t.seq`) in the `--matches` file,
//! and one JSON line on stdout with the event count, the match count, the elapsed time and the
//! throughput. The CSV is loaded into columns before timing starts; the timed loop builds each
//! event as a `varpulis_core::Event` (type, `ts`, `seq`, `account`, `qty`: what the pattern
//! reads), as the Flink job's map function does, and passes it to `SaseEngine::process_shared`,
//! on one thread.
//!
//! Semantics: `SEQ(Order[qty >= 5000] o, Cancel c, Trade[qty < 1000] t) WITHIN 2s`, partitioned
//! by account, skip till next match, event time with the watermark at the largest timestamp
//! seen; a run expires once the watermark is past start + 2 s, so `last.ts - first.ts <= 2s` as
//! in Strix.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow_free::{Error, Result};
use chrono::DateTime;
use varpulis_core::{Event, Value};
use varpulis_sase::{CompareOp, Predicate, SaseEngine, SasePattern, SelectionStrategy};

/// Errors without an extra dependency.
mod anyhow_free {
    pub type Error = Box<dyn std::error::Error>;
    pub type Result<T> = std::result::Result<T, Error>;
}

fn main() -> Result<()> {
    let mut csv = None;
    let mut matches_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--csv" => csv = args.next(),
            "--matches" => matches_path = args.next(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let csv = csv.ok_or("usage: strix-peer-sase --csv FILE [--matches FILE]")?;

    let load_start = Instant::now();
    let events = load(&csv)?;
    let load_s = load_start.elapsed().as_secs_f64();

    let event = |ty: &str, alias: &str, predicate: Option<Predicate>| SasePattern::Event {
        event_type: ty.into(),
        predicate,
        alias: Some(alias.into()),
    };
    let qty = |op, v: f64| Predicate::Compare {
        field: "qty".into(),
        op,
        value: Value::Float(v),
    };
    let pattern = SasePattern::Within(
        Box::new(SasePattern::Seq(vec![
            event("Order", "o", Some(qty(CompareOp::Ge, 5000.0))),
            event("Cancel", "c", None),
            event("Trade", "t", Some(qty(CompareOp::Lt, 1000.0))),
        ])),
        Duration::from_secs(2),
    );
    let mut engine = SaseEngine::new(pattern)
        .with_partition_by("account".into())
        .with_strategy(SelectionStrategy::SkipTillNextMatch)
        .with_event_time()
        .with_max_runs(usize::MAX / 2);

    let seq = |m: &varpulis_sase::MatchResult, alias: &str| -> i64 {
        match m.captured.get(alias).and_then(|e| e.get("seq")) {
            Some(Value::Int(s)) => *s,
            _ => -1,
        }
    };
    let (k_seq, k_account, k_qty): (Arc<str>, Arc<str>, Arc<str>) =
        ("seq".into(), "account".into(), "qty".into());
    let mut found: Vec<[i64; 3]> = Vec::new();
    let start = Instant::now();
    for i in 0..events.len() {
        let mut e = Event::new_at(
            Arc::clone(&events.type_names[usize::from(events.types[i])]),
            DateTime::from_timestamp_nanos(events.ts[i]),
        )
        .with_field(Arc::clone(&k_seq), Value::Int(events.seq[i]))
        .with_field(
            Arc::clone(&k_account),
            Value::Str(events.account_names[events.accounts[i] as usize].clone()),
        );
        if !events.qty[i].is_nan() {
            e = e.with_field(Arc::clone(&k_qty), Value::Float(events.qty[i]));
        }
        for m in engine.process_shared(Arc::new(e)) {
            found.push([seq(&m, "o"), seq(&m, "c"), seq(&m, "t")]);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();

    if let Some(path) = matches_path {
        let mut w = BufWriter::new(File::create(path)?);
        for [o, c, t] in &found {
            writeln!(w, "{o} {c} {t}")?;
        }
        w.flush()?;
    }
    println!(
        "{{\"peer\":\"varpulis-sase\",\"events\":{},\"matches\":{},\"elapsed_s\":{:.6},\
         \"events_per_s\":{:.1},\"load_s\":{:.3}}}",
        events.len(),
        found.len(),
        elapsed,
        events.len() as f64 / elapsed,
        load_s
    );
    Ok(())
}

/// The tape's events as columns (only what the pattern reads).
#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    ts: Vec<i64>,
    types: Vec<u8>,
    type_names: Vec<Arc<str>>,
    accounts: Vec<u32>,
    account_names: Vec<Box<str>>,
    /// NaN where the event has no `qty`.
    qty: Vec<f64>,
}

impl Columns {
    fn len(&self) -> usize {
        self.seq.len()
    }
}

fn load(path: &str) -> Result<Columns> {
    let mut lines = BufReader::with_capacity(1 << 20, File::open(path)?).lines();
    let header = lines.next().ok_or("empty CSV")??;
    let header: Vec<&str> = header.split(',').collect();
    let col = |name: &str| -> Result<usize> {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::from(format!("CSV has no column {name}")))
    };
    let (c_seq, c_type, c_ts) = (col("seq")?, col("type")?, col("ts")?);
    let (c_account, c_qty) = (col("account")?, col("qty")?);
    let mut c = Columns::default();
    let mut type_ids: HashMap<String, u8> = HashMap::new();
    let mut account_ids: HashMap<String, u32> = HashMap::new();
    for line in lines {
        let line = line?;
        let f: Vec<&str> = line.split(',').collect();
        let field = |i: usize| f.get(i).copied().ok_or("short CSV line");
        c.seq.push(field(c_seq)?.parse()?);
        c.ts.push(field(c_ts)?.parse()?);
        let ty = field(c_type)?;
        let next_type = u8::try_from(type_ids.len())?;
        let t = *type_ids.entry(ty.to_string()).or_insert_with(|| {
            c.type_names.push(ty.into());
            next_type
        });
        c.types.push(t);
        let account = field(c_account)?;
        let next_account = u32::try_from(account_ids.len())?;
        let a = *account_ids.entry(account.to_string()).or_insert_with(|| {
            c.account_names.push(account.into());
            next_account
        });
        c.accounts.push(a);
        let qty = field(c_qty)?;
        c.qty.push(if qty.is_empty() {
            f64::NAN
        } else {
            qty.parse()?
        });
    }
    Ok(c)
}
