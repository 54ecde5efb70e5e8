//! The semantic corpus: every `tests/corpus/*.toml` case runs through the engine and must yield
//! exactly the expected matches (as lists of tape sequence numbers, in emission order).
//!
//! File format:
//! ```toml
//! decls = "event A { v: i64 } ..."      # declarations shared by the file's cases
//! [[case]]
//! name = "unique name"
//! rule = "rule r pattern a b define a as A, b as B select all"
//! events = "A v=1; B @2s; A"           # `;` or newline separated: TYPE [@TIME] [field=value]...
//! expect = [[0, 1]]                     # matched seq lists in emission order
//! ```
//! Event time defaults to `seq` seconds; `@TIME` takes ns or a unit (`ns us ms s m`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use strix::{Engine, FieldValue};

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
    /// Optional expected signal names in emission order (tells timeouts from matches).
    signals: Option<Vec<String>>,
}

fn parse_time(s: &str) -> Result<i64> {
    let (num, mult) = [
        ("ns", 1i64),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
    ]
    .iter()
    .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    let v: f64 = num.parse().with_context(|| format!("bad time `{s}`"))?;
    Ok((v * mult as f64).round() as i64)
}

/// What a case produced: seq lists, the first signal's fields, signal names.
type Outcome = (Vec<Vec<u64>>, Option<serde_json::Value>, Vec<String>);

/// Runs one case; returns the matches (seq lists), the first signal's fields and signal names.
fn run_case(decls: &str, case: &Case) -> Result<Outcome> {
    let src = format!("{decls}\n{}", case.rule);
    let mut engine = Engine::from_rules(&format!("{}.cep", case.name), &src)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut events = Vec::new();
    for (seq, line) in case
        .events
        .split([';', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let mut parts = line.split_whitespace();
        let ty = parts.next().context("empty event")?;
        let mut ts = seq as i64 * 1_000_000_000;
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
        events.push(e);
    }
    let mut out = Vec::new();
    let mut first_fields = None;
    let mut names = Vec::new();
    let mut record = |s: strix::Signal<'_>| {
        out.push(s.raw.seq.clone());
        let json = s.to_json();
        first_fields.get_or_insert_with(|| json["fields"].clone());
        names.push(json["signal"].as_str().unwrap_or_default().to_string());
    };
    for e in &events {
        engine.push(e, &mut record);
    }
    engine.finish(&mut record);
    Ok((out, first_fields, names))
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
            match run_case(&file.decls, case) {
                Ok((got, fields, got_names)) => {
                    if let Some(want) = &case.signals
                        && *want != got_names
                    {
                        failures.push(format!(
                            "{}: signals expected {want:?}, got {got_names:?}",
                            case.name
                        ));
                    }
                    if got != case.expect {
                        failures.push(format!(
                            "{}: {}\n  expected {:?}\n  got      {:?}",
                            path.file_name().unwrap_or_default().to_string_lossy(),
                            case.name,
                            case.expect,
                            got
                        ));
                    }
                    if let Some(want) = &case.fields {
                        let want: serde_json::Value = serde_json::from_str(want)?;
                        if fields.as_ref() != Some(&want) {
                            failures.push(format!(
                                "{}: fields expected {want}, got {fields:?}",
                                case.name
                            ));
                        }
                    }
                }
                Err(e) => failures.push(format!("{}: error {e:#}", case.name)),
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
