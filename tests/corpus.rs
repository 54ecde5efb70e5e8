//! The semantic corpus: every `tests/corpus/*.toml` case runs through the engine and must yield
//! exactly the expected matches (as lists of tape sequence numbers, in emission order).
//!
//! Every case runs three ways, each of which must give the expected output: the reference
//! matcher with events pushed one by one, the fast matcher pushed one by one, and the fast matcher
//! with the events between two watermarks pushed as one batch ([`Engine::push_batch`]).
//!
//! File format:
//! ```toml
//! decls = "event A { v: i64 } ..."      # declarations shared by the file's cases
//! [[case]]
//! name = "unique name"
//! rule = "rule r pattern a b define a as A, b as B select all"
//! events = "A v=1; B @2s; A"           # `;` or newline separated: TYPE [@TIME] [field=value]...
//! expect = [[0, 1]]                     # matched seq lists in emission order
//! # optional:
//! fields = '{"v": 1}'                   # emitted fields of the first signal (JSON)
//! signals = ["r", "r_timeout"]          # signal names in emission order
//! scores = '[1.5, null]'                # every signal's `score` in emission order (JSON; null: none)
//! max_delay = "2s"                      # bounded out-of-orderness; also "A=1s, B=2s"
//! lateness = "1s"                       # allowed lateness
//! late = [3]                            # seqs of the events that must come out late (default none)
//! dedup = "id"                          # dedup by this field ...
//! dedup_horizon = "1m"                  # ... within this horizon
//! duplicates = 1                        # duplicates dropped (default 0)
//! ```
//! Event time defaults to `seq` seconds; `@TIME` takes ns or a unit (`ns us ms s m h`). A line
//! `WATERMARK @TIME` is an explicit watermark: it takes no sequence number. `rule` may also hold
//! `query` items; signals of rules over a query's output list derived-event numbers.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use strix::cep_core::EventBatch;
use strix::cep_core::symbol::SymbolTable;
use strix::{
    Admission, DedupOptions, Engine, EngineConfig, FieldValue, MatcherKind, Signal, TimeOptions,
};

/// How a case is run.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Events pushed one by one into an engine with this matcher.
    Push(MatcherKind),
    /// The fast matcher, events between watermarks pushed as one batch.
    Batch,
}

const MODES: [Mode; 3] = [
    Mode::Push(MatcherKind::Reference),
    Mode::Push(MatcherKind::Fast),
    Mode::Batch,
];

#[derive(Debug, Deserialize)]
struct CorpusFile {
    decls: String,
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    rule: String,
    events: String,
    expect: Vec<Vec<u64>>,
    /// Optional expected emitted fields of the first signal, as a JSON object string.
    fields: Option<String>,
    /// Optional expected signal names in emission order.
    signals: Option<Vec<String>>,
    /// Optional expected scores of every signal in emission order, as a JSON array string.
    scores: Option<String>,
    /// Bounded out-of-orderness: `DUR` or `TYPE=DUR, ...` (comma separated).
    max_delay: Option<String>,
    /// Allowed lateness.
    lateness: Option<String>,
    /// Expected late events (seqs); none when absent.
    late: Option<Vec<u64>>,
    /// Dedup field.
    dedup: Option<String>,
    /// Dedup horizon.
    dedup_horizon: Option<String>,
    /// Expected duplicates dropped; 0 when absent.
    duplicates: Option<u64>,
}

/// What one case produced.
#[derive(Debug, Default)]
struct Outcome {
    matches: Vec<Vec<u64>>,
    names: Vec<String>,
    /// Every signal's score as rendered in its JSON object (`null` when it has none).
    scores: Vec<serde_json::Value>,
    first_fields: Option<serde_json::Value>,
    late: Vec<u64>,
    duplicates: u64,
}

fn time_options(case: &Case) -> Result<TimeOptions> {
    let mut time = TimeOptions::default();
    if let Some(spec) = &case.max_delay {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((ty, d)) => time
                    .max_delay_per_type
                    .push((ty.trim().to_string(), parse_time(d.trim())?)),
                None => time.max_delay = parse_time(part)?,
            }
        }
    }
    if let Some(l) = &case.lateness {
        time.allowed_lateness = parse_time(l)?;
    }
    match (&case.dedup, &case.dedup_horizon) {
        (Some(field), Some(h)) => {
            time.dedup = Some(DedupOptions {
                field: field.clone(),
                horizon: parse_time(h)?,
            })
        }
        (None, None) => {}
        _ => bail!("`dedup` and `dedup_horizon` go together"),
    }
    Ok(time)
}

/// An input line: an event or an explicit watermark.
enum Input {
    Event(strix::cep_core::Event),
    Watermark(i64),
}

fn parse_time(s: &str) -> Result<i64> {
    let (num, mult) = [
        ("ns", 1i64),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ]
    .iter()
    .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    let v: f64 = num.parse().with_context(|| format!("bad time `{s}`"))?;
    Ok((v * mult as f64).round() as i64)
}

/// Runs one case.
fn run_case(decls: &str, case: &Case, mode: Mode) -> Result<Outcome> {
    let src = format!("{decls}\n{}", case.rule);
    let config = EngineConfig {
        time: time_options(case)?,
        kind: match mode {
            Mode::Push(kind) => kind,
            Mode::Batch => MatcherKind::Fast,
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::build(
        &format!("{}.cep", case.name),
        &src,
        None,
        SymbolTable::new(),
        config,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut inputs = Vec::new();
    let mut seq = 0i64;
    for line in case
        .events
        .split([';', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let mut parts = line.split_whitespace();
        let ty = parts.next().context("empty event")?;
        if ty == "WATERMARK" {
            let t = match (parts.next(), parts.next()) {
                (Some(t), None) => t.strip_prefix('@'),
                _ => None,
            };
            let t = t.with_context(|| format!("`{line}`: write WATERMARK @TIME"))?;
            inputs.push(Input::Watermark(parse_time(t)?));
            continue;
        }
        let mut ts = seq * 1_000_000_000;
        seq += 1;
        let mut fields: Vec<(String, String)> = Vec::new();
        for p in parts {
            if let Some(t) = p.strip_prefix('@') {
                ts = parse_time(t)?;
            } else if let Some((k, v)) = p.split_once('=') {
                fields.push((k.to_string(), v.to_string()));
            } else {
                bail!("bad token `{p}` in event `{line}`");
            }
        }
        let et = engine
            .program()
            .catalog
            .type_by_name(ty)
            .and_then(|t| engine.program().catalog.event_type(t))
            .with_context(|| format!("unknown type {ty}"))?
            .clone();
        let mut values: Vec<(&str, FieldValue<'_>)> = Vec::new();
        for (k, v) in &fields {
            let f = et
                .fields
                .iter()
                .find(|f| &f.name == k)
                .with_context(|| format!("no field {k} on {ty}"))?;
            use strix::cep_core::schema::FieldType as T;
            let fv = match f.ty {
                T::I64 | T::Ts => FieldValue::I64(v.parse()?),
                T::U64 => FieldValue::U64(v.parse()?),
                T::F64 => FieldValue::F64(v.parse()?),
                T::Bool => FieldValue::Bool(v.parse()?),
                T::Sym | T::Enum(_) => FieldValue::Str(v),
            };
            values.push((k, fv));
        }
        let e = engine
            .event(ty, ts, &values)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        inputs.push(Input::Event(e));
    }
    let mut out = Outcome::default();
    let mut record = |s: Signal<'_>| {
        out.matches.push(s.raw.seq.clone());
        out.names.push(s.signal().to_string());
        out.scores
            .push(s.to_json().get("score").cloned().unwrap_or_default());
        out.first_fields
            .get_or_insert_with(|| s.to_json()["fields"].clone());
    };
    let mut late = Vec::new();
    let slots = engine.program().catalog.slot_count();
    let mut batch = EventBatch::new(slots);
    for input in &inputs {
        match (input, mode) {
            (Input::Event(e), Mode::Push(_)) => {
                if engine.push(e, &mut record) == Admission::Late {
                    late.push(e.seq);
                }
            }
            (Input::Event(e), Mode::Batch) => batch.push_event(e),
            (Input::Watermark(w), _) => {
                push_batch(&mut engine, &mut batch, &mut record, &mut late);
                engine.watermark_to(*w, &mut record);
            }
        }
    }
    push_batch(&mut engine, &mut batch, &mut record, &mut late);
    engine.finish(&mut record);
    out.late = late;
    out.duplicates = engine.engine_stats().time.duplicates;
    Ok(out)
}

/// Pushes and empties `batch`, collecting the seqs of late rows.
fn push_batch(
    engine: &mut Engine,
    batch: &mut EventBatch,
    record: impl FnMut(Signal<'_>),
    late: &mut Vec<u64>,
) {
    if batch.is_empty() {
        return;
    }
    let seqs = batch.seq().to_vec();
    engine.push_batch(batch, record, |row| late.push(seqs[row]));
    batch.clear();
}

#[test]
fn semantic_corpus() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    files.sort();
    let mut total = 0;
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for path in &files {
        let text = std::fs::read_to_string(path)?;
        let file: CorpusFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for case in &file.cases {
            total += 1;
            if !names.insert(case.name.clone()) {
                failures.push(format!("duplicate case name {}", case.name));
            }
            let file_name = path.file_name().unwrap_or_default().to_string_lossy();
            for mode in MODES {
                match run_case(&file.decls, case, mode) {
                    Ok(got) => {
                        if got.matches != case.expect {
                            failures.push(format!(
                                "{file_name} ({mode:?}): {}\n  expected {:?}\n  got      {:?}",
                                case.name, case.expect, got.matches
                            ));
                        }
                        if let Some(want) = &case.fields {
                            let want: serde_json::Value = serde_json::from_str(want)?;
                            if got.first_fields.as_ref() != Some(&want) {
                                failures.push(format!(
                                    "{} ({mode:?}): fields expected {want}, got {:?}",
                                    case.name, got.first_fields
                                ));
                            }
                        }
                        if let Some(want) = &case.signals
                            && *want != got.names
                        {
                            failures.push(format!(
                                "{file_name} ({mode:?}): {}\n  expected signals {want:?}\n  got              {:?}",
                                case.name, got.names
                            ));
                        }
                        if let Some(want) = &case.scores {
                            let want: Vec<serde_json::Value> = serde_json::from_str(want)?;
                            if want != got.scores {
                                failures.push(format!(
                                    "{file_name} ({mode:?}): {}\n  expected scores {want:?}\n  got             {:?}",
                                    case.name, got.scores
                                ));
                            }
                        }
                        let want_late = case.late.clone().unwrap_or_default();
                        if want_late != got.late {
                            failures.push(format!(
                                "{file_name} ({mode:?}): {}\n  expected late {want_late:?}\n  got late      {:?}",
                                case.name, got.late
                            ));
                        }
                        let want_dups = case.duplicates.unwrap_or(0);
                        if want_dups != got.duplicates {
                            failures.push(format!(
                                "{file_name} ({mode:?}): {}: expected {want_dups} duplicates, got {}",
                                case.name, got.duplicates
                            ));
                        }
                    }
                    Err(e) => failures.push(format!("{} ({mode:?}): error {e:#}", case.name)),
                }
            }
        }
    }
    println!("semantic corpus: {} cases in {} files", total, files.len());
    if !failures.is_empty() {
        bail!(
            "{} of {total} corpus cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    assert!(
        total >= 60,
        "the corpus must hold at least 60 cases, has {total}"
    );
    Ok(())
}
