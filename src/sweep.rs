//! Parameter sweeps: one rule template, many parameter vectors, one pass over a tape.
//!
//! Input: a `.cep` file declaring `param NAME = LITERAL` items, a labelled tape, and one
//! `--param NAME=LIST|RANGE` flag per swept parameter ([`parse_param_flag`]). Stages:
//!
//! 1. **Variants** ([`build_variants`]): the cartesian product of the swept values, in flag
//!    order (the first flag varies slowest); each variant is compiled once with
//!    `pattern_lang::compile_with_params` against the tape's catalog and symbols. Parameters
//!    not swept keep their declared default.
//! 2. **Delivered events** ([`read_delivered`]): the tape is read once and its events go through
//!    the event-time layer ([`cep_core::time::Sequencer`]) with the same options as
//!    `strix replay`; the events it delivers, in delivery order and with their labels, form a
//!    [`DeliveredEvents`]. Late events and duplicates are dropped and counted.
//! 3. **Counting**, on one of three paths: the sweep kernels ([`crate::sweep_kernel`], on the
//!    GPU or on one CPU core) when the target is in a kernel class; otherwise the **engine
//!    path** ([`run_engine_path`]): every delivered batch is pushed to one [`Engine`] per
//!    variant. A sweep of only the `threshold` of a `score using` emit runs the engine once and
//!    scores its signals once ([`crate::scoring::SignalScorer`]), counting per threshold.
//! 4. **Report** ([`SweepReport`]): per variant signals, true positives, instances found,
//!    precision, recall and F1 against the tape's labels; rendered as a ranked table
//!    ([`SweepReport::render`]) or one JSON object. Next stage: the `strix sweep` command prints
//!    it.
//!
//! Label semantics are those of [`crate::LabelScore`]: the target is scored against the label
//! class named like its signal (a query: its output), else like the rule (query) itself; a signal
//! is a true positive when any matched event carries that class; an instance is found when any
//! signal matched one of its events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use cep_core::event::{EventBatch, EventView, Label};
use cep_core::reference::MatcherConfig;
use cep_core::rule::{Program, ScoreSource};
use cep_core::schema::Catalog;
use cep_core::signal::{Signal as RawSignal, SignalKind};
use cep_core::symbol::SymbolTable;
use cep_core::time::{Ready, Sequencer};
use feeds::tape::{TapeError, TapeReader};
use pattern_lang::{ParamDecl, ParamValue};
use serde::Serialize;

use crate::scoring::{ScoreOptions, SignalScorer};
use crate::sweep_kernel::{
    self, DeliveredEvents, KernelPlan, SweepDevice, Target, Variant, VariantCounts,
};
use crate::{Engine, EngineConfig, EngineError, MatcherKind, TimeOptions};
use gpu_kernels::score::ScoreDevice;

/// Most variants one sweep may have.
pub const MAX_VARIANTS: usize = 1_000_000;

/// Rows per batch pushed to the engines on the engine path.
pub const ENGINE_BATCH_ROWS: usize = 4096;

/// Errors of a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Reading the rule file failed.
    #[error("cannot read rules {path}")]
    ReadRules {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The rules do not parse or compile; the rendered diagnostic (`file:line:col`, caret).
    #[error("{0}")]
    Rules(String),
    /// A `--param` names no declared parameter.
    #[error("--param {flag}: the rules declare no parameter `{name}` (declared: {declared})")]
    UnknownParam {
        /// The flag as given.
        flag: String,
        /// The name it gives.
        name: String,
        /// The declared parameters, with their defaults.
        declared: String,
    },
    /// A `--param` flag that does not parse.
    #[error("--param {flag}: {why}")]
    BadParam {
        /// The flag as given.
        flag: String,
        /// What is wrong.
        why: String,
    },
    /// The product of the swept values is too large.
    #[error(
        "{count} variants: a sweep may have at most {MAX_VARIANTS} (narrow a range or use fewer values)"
    )]
    TooManyVariants {
        /// The product of the value counts.
        count: u128,
    },
    /// `--rule` names no rule or query, or the file has several and none was named.
    #[error("{0}")]
    Target(String),
    /// The tape is unreadable, truncated or corrupt.
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// The event-time options do not fit the program.
    #[error("{0}")]
    Time(String),
    /// `--gpu` was asked for a target outside the kernel classes.
    #[error("--gpu: {target} is not in a kernel class: {why}")]
    NotInClass {
        /// `rule NAME` or `query NAME`.
        target: String,
        /// Why (from the kernel planner).
        why: String,
    },
    /// `--gpu` was asked for and there is no usable adapter.
    #[error("--gpu: {0}")]
    NoAdapter(String),
    /// A query outside the kernel classes: the engine path scores rules only.
    #[error(
        "query {query} is not in a kernel class ({why}); the engine path sweeps rules only (their signals list the matched events)"
    )]
    QueryNotInClass {
        /// Query name.
        query: String,
        /// Why it is not in a class.
        why: String,
    },
    /// The kernel failed.
    #[error("sweep kernel: {0}")]
    Kernel(String),
    /// An engine could not be built for a variant.
    #[error("variant {index}: {source}")]
    Engine {
        /// Variant index.
        index: usize,
        /// Cause.
        source: EngineError,
    },
    /// Scoring signals with the rule's model failed.
    #[error("scoring: {0}")]
    Scoring(String),
}

// ---------------------------------------------------------------------------------------------
// Parameter flags

/// The values one `--param` flag sweeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSweep {
    /// Parameter name.
    pub name: String,
    /// Values, in the order they are swept.
    pub values: Vec<ParamValue>,
}

/// Renders a parameter value as `.cep` source text (`3`, `2.5`, `10m`, `"XNAS"`).
pub fn render_value(v: &ParamValue) -> String {
    v.to_string()
}

/// The value as JSON: numbers as numbers, durations and strings as their text.
fn value_json(v: &ParamValue) -> serde_json::Value {
    match v {
        ParamValue::Int(i) => serde_json::json!(i),
        ParamValue::Float(f) => serde_json::json!(f),
        ParamValue::Duration(_) => serde_json::json!(v.to_string()),
        ParamValue::Str(s) => serde_json::json!(s),
    }
}

/// The kind of a value, for messages.
fn kind_name(v: &ParamValue) -> &'static str {
    match v {
        ParamValue::Int(_) => "an integer",
        ParamValue::Float(_) => "a float",
        ParamValue::Duration(_) => "a duration",
        ParamValue::Str(_) => "a string",
    }
}

/// Parses one `--param NAME=LIST|RANGE` flag against the declared parameters.
///
/// LIST is `a,b,c` (one value is a list of one); RANGE is `START..END:STEP`, inclusive of END
/// when the steps reach it exactly, for integers (`2..9:1`), floats (`0.5..2:0.25`; value `i`
/// is `START + i·STEP`, so no error accumulates) and durations (`1m..20m:1m`). Values are
/// typed by the parameter's declared default ([`ParamValue::parse_like`]).
pub fn parse_param_flag(flag: &str, decls: &[ParamDecl]) -> Result<ParamSweep, SweepError> {
    let bad = |why: String| SweepError::BadParam {
        flag: flag.to_string(),
        why,
    };
    let (name, spec) = flag
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=LIST or NAME=START..END:STEP".into()))?;
    let name = name.trim().trim_start_matches('$');
    let decl = decls
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| SweepError::UnknownParam {
            flag: flag.to_string(),
            name: name.to_string(),
            declared: declared_list(decls),
        })?;
    let values = expand(spec.trim(), &decl.default).map_err(bad)?;
    Ok(ParamSweep {
        name: name.to_string(),
        values,
    })
}

/// `a = 1, b = 5m` or `none`.
fn declared_list(decls: &[ParamDecl]) -> String {
    if decls.is_empty() {
        return "none".into();
    }
    decls
        .iter()
        .map(|d| format!("{} = {}", d.name, render_value(&d.default)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Expands a LIST or RANGE typed like `default`.
pub fn expand(spec: &str, default: &ParamValue) -> Result<Vec<ParamValue>, String> {
    if spec.is_empty() {
        return Err("no values after `=`".into());
    }
    let is_str = matches!(default, ParamValue::Str(_));
    if !is_str && let Some((start, rest)) = spec.split_once("..") {
        let (end, step) = rest.rsplit_once(':').ok_or_else(|| {
            format!("range `{spec}` has no step: write START..END:STEP (e.g. 2..9:1)")
        })?;
        return expand_range(spec, start.trim(), end.trim(), step.trim(), default);
    }
    let mut values = Vec::new();
    for item in split_list(spec, is_str) {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty value in list `{spec}`"));
        }
        values.push(parse_value(item, default)?);
        if values.len() > MAX_VARIANTS {
            return Err(format!("more than {MAX_VARIANTS} values"));
        }
    }
    Ok(values)
}

/// Splits a list at commas; for strings, commas inside double quotes do not split.
fn split_list(spec: &str, is_str: bool) -> Vec<&str> {
    if !is_str {
        return spec.split(',').collect();
    }
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in spec.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&spec[start..]);
    out
}

/// One value typed like `default`; strings may be written bare or quoted.
fn parse_value(text: &str, default: &ParamValue) -> Result<ParamValue, String> {
    if let ParamValue::Str(_) = default {
        let t = text.trim();
        if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
            let inner = &t[1..t.len() - 1];
            return Ok(ParamValue::Str(
                inner.replace("\\\"", "\"").replace("\\\\", "\\"),
            ));
        }
        return Ok(ParamValue::Str(t.to_string()));
    }
    ParamValue::parse_like(text, default)
        .map_err(|why| format!("`{text}` is not {}: {why}", kind_name(default)))
}

fn expand_range(
    spec: &str,
    start: &str,
    end: &str,
    step: &str,
    default: &ParamValue,
) -> Result<Vec<ParamValue>, String> {
    let (a, b, s) = (
        parse_value(start, default)?,
        parse_value(end, default)?,
        parse_value(step, default)?,
    );
    match (a, b, s) {
        (ParamValue::Int(a), ParamValue::Int(b), ParamValue::Int(s)) => {
            int_range(spec, a, b, s).map(|v| v.into_iter().map(ParamValue::Int).collect())
        }
        (ParamValue::Duration(a), ParamValue::Duration(b), ParamValue::Duration(s)) => {
            int_range(spec, a, b, s).map(|v| v.into_iter().map(ParamValue::Duration).collect())
        }
        (ParamValue::Float(a), ParamValue::Float(b), ParamValue::Float(s)) => {
            let decimals = [start, end, step]
                .iter()
                .map(|t| decimals_of(t))
                .try_fold(0usize, |m, d| d.map(|d| m.max(d)));
            float_range(spec, a, b, s, decimals)
                .map(|v| v.into_iter().map(ParamValue::Float).collect())
        }
        (a, _, _) => Err(format!(
            "range `{spec}`: START, END and STEP must all be {}",
            kind_name(&a)
        )),
    }
}

/// Integer (or nanosecond) range `a..=b` by `s`.
fn int_range(spec: &str, a: i64, b: i64, s: i64) -> Result<Vec<i64>, String> {
    if s == 0 {
        return Err(format!("range `{spec}`: the step is zero"));
    }
    if s < 0 {
        return Err(format!("range `{spec}`: the step must be positive"));
    }
    if a > b {
        return Err(format!("range `{spec}` is empty: START is above END"));
    }
    let n = (i128::from(b) - i128::from(a)) / i128::from(s) + 1;
    if n > MAX_VARIANTS as i128 {
        return Err(format!(
            "range `{spec}` has {n} values; a sweep may have at most {MAX_VARIANTS} variants"
        ));
    }
    // n <= MAX_VARIANTS and every value lies in a..=b, so neither cast nor sum overflows.
    Ok((0..n as i64).map(|i| a + i * s).collect())
}

/// Digits after the decimal point as written (`None` with an exponent: no rounding then).
fn decimals_of(text: &str) -> Option<usize> {
    if text.contains(['e', 'E']) {
        return None;
    }
    Some(text.split_once('.').map_or(0, |(_, frac)| frac.len()))
}

/// Float range: value `i` is `a + i·s` (not a running sum), rounded to the most decimals the
/// bounds and step were written with, so `0.1..0.3:0.1` gives 0.1, 0.2, 0.3.
fn float_range(
    spec: &str,
    a: f64,
    b: f64,
    s: f64,
    decimals: Option<usize>,
) -> Result<Vec<f64>, String> {
    if !(a.is_finite() && b.is_finite() && s.is_finite()) {
        return Err(format!("range `{spec}`: bounds and step must be finite"));
    }
    if s == 0.0 {
        return Err(format!("range `{spec}`: the step is zero"));
    }
    if s < 0.0 {
        return Err(format!("range `{spec}`: the step must be positive"));
    }
    if a > b {
        return Err(format!("range `{spec}` is empty: START is above END"));
    }
    // A last step that lands on END up to rounding error counts as reaching it.
    let steps = ((b - a) / s * (1.0 + 1e-12) + 1e-9).floor();
    if steps + 1.0 > MAX_VARIANTS as f64 {
        return Err(format!(
            "range `{spec}` has {} values; a sweep may have at most {MAX_VARIANTS} variants",
            steps + 1.0
        ));
    }
    let n = steps as usize + 1;
    let round = |x: f64| match decimals {
        Some(d) if d <= 15 => format!("{x:.d$}").parse::<f64>().unwrap_or(x),
        _ => x,
    };
    Ok((0..n).map(|i| round(a + i as f64 * s)).collect())
}

/// The number of variants of `sweeps` (the product of their value counts).
pub fn variant_count(sweeps: &[ParamSweep]) -> Result<usize, SweepError> {
    let mut n: u128 = 1;
    for s in sweeps {
        n = n.saturating_mul(s.values.len() as u128);
    }
    if n > MAX_VARIANTS as u128 {
        return Err(SweepError::TooManyVariants { count: n });
    }
    // n <= MAX_VARIANTS fits usize.
    Ok(n as usize)
}

/// The parameter values of variant `index`: mixed radix with the first flag most significant,
/// so variants are in nested-loop order of the flags.
pub fn variant_values(sweeps: &[ParamSweep], index: usize) -> Vec<(String, ParamValue)> {
    let mut rest = index;
    let mut out = vec![(String::new(), ParamValue::Int(0)); sweeps.len()];
    for (slot, s) in out.iter_mut().zip(sweeps).rev() {
        let n = s.values.len().max(1);
        *slot = (s.name.clone(), s.values[rest % n].clone());
        rest /= n;
    }
    out
}

/// Parses every `--param` flag; a parameter given twice is an error.
pub fn parse_param_flags(
    flags: &[String],
    decls: &[ParamDecl],
) -> Result<Vec<ParamSweep>, SweepError> {
    let mut sweeps: Vec<ParamSweep> = Vec::new();
    for flag in flags {
        let s = parse_param_flag(flag, decls)?;
        if sweeps.iter().any(|o| o.name == s.name) {
            return Err(SweepError::BadParam {
                flag: flag.clone(),
                why: format!("`{}` is swept by an earlier --param", s.name),
            });
        }
        sweeps.push(s);
    }
    variant_count(&sweeps)?;
    Ok(sweeps)
}

// ---------------------------------------------------------------------------------------------
// Target, variants

/// The rules, the swept parameters and the compiled variants of one sweep.
#[derive(Debug)]
pub struct Prepared {
    /// The rule or query swept.
    pub target: Target,
    /// `rule NAME` or `query NAME`.
    pub target_label: String,
    /// Name of the label class it is scored against (its signal or output name, else its own).
    pub class_name: String,
    /// Declared parameters.
    pub decls: Vec<ParamDecl>,
    /// The swept parameters, in flag order.
    pub sweeps: Vec<ParamSweep>,
    /// One per parameter vector, in index order.
    pub variants: Vec<Variant>,
}

/// Renders a diagnostic against the rules file.
fn rules_error(file: &str, source: &str, d: &pattern_lang::Diagnostic) -> SweepError {
    SweepError::Rules(d.render(file, source))
}

/// Picks the target: `--rule NAME` (a rule or a query), else the file's only rule or query.
pub fn select_target(program: &Program, name: Option<&str>) -> Result<Target, SweepError> {
    let names = || {
        let rules = program.rules.iter().map(|r| format!("rule {}", r.name));
        let queries = program.queries.iter().map(|q| format!("query {}", q.name));
        let all: Vec<String> = rules.chain(queries).collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    match name {
        Some(n) => {
            if let Some(i) = program.rules.iter().position(|r| r.name == n) {
                Ok(Target::Rule(i))
            } else if let Some(i) = program.queries.iter().position(|q| q.name == n) {
                Ok(Target::Query(i))
            } else {
                Err(SweepError::Target(format!(
                    "--rule {n}: the file has no rule or query `{n}` (it has: {})",
                    names()
                )))
            }
        }
        None => match (program.rules.len(), program.queries.len()) {
            (1, 0) => Ok(Target::Rule(0)),
            (0, 1) => Ok(Target::Query(0)),
            (0, 0) => Err(SweepError::Target(
                "the file has no rule or query to sweep".into(),
            )),
            _ => Err(SweepError::Target(format!(
                "the file has several rules and queries; pick one with --rule NAME ({})",
                names()
            ))),
        },
    }
}

/// `rule NAME` or `query NAME`, and the label class name it is scored against.
fn target_names(program: &Program, target: Target) -> (String, String) {
    match target {
        Target::Rule(i) => {
            let r = &program.rules[i];
            (format!("rule {}", r.name), r.emit.signal.clone())
        }
        Target::Query(i) => {
            let q = &program.queries[i];
            let output = program
                .catalog
                .event_type(q.output)
                .map_or_else(|| q.name.clone(), |t| t.name.clone());
            (format!("query {}", q.name), output)
        }
    }
}

/// The label class of the target: the tape's class named like its signal (or output), else
/// like the rule or query; 0 (none) when the tape has neither.
pub fn target_class(label_names: &[String], program: &Program, target: Target) -> Option<u16> {
    let own = match target {
        Target::Rule(i) => &program.rules[i].name,
        Target::Query(i) => &program.queries[i].name,
    };
    crate::label_class(label_names, &[&target_names(program, target).1, own])
}

/// Parses the parameter flags and compiles every variant against the tape's catalog.
pub fn build_variants(
    file: &str,
    source: &str,
    catalog: &Catalog,
    symbols: &SymbolTable,
    rule: Option<&str>,
    param_flags: &[String],
) -> Result<Prepared, SweepError> {
    let decls = pattern_lang::params(source).map_err(|d| rules_error(file, source, &d))?;
    let sweeps = parse_param_flags(param_flags, &decls)?;
    let count = variant_count(&sweeps)?;
    let mut variants = Vec::with_capacity(count);
    // One symbol table for every variant: compiling only interns the rules' string literals, so
    // a literal gets the same id in every variant (and the tape's symbols keep theirs), and the
    // tape's table (one entry per card, account, ...) is copied once, not once per variant.
    let mut syms = symbols.clone();
    for index in 0..count {
        let values = variant_values(&sweeps, index);
        let overrides: BTreeMap<String, ParamValue> = values.iter().cloned().collect();
        let program =
            pattern_lang::compile_with_params(source, Some(catalog), &mut syms, &overrides)
                .map_err(|d| {
                    let at = values
                        .iter()
                        .map(|(n, v)| format!("{n}={}", render_value(v)))
                        .collect::<Vec<_>>()
                        .join(" ");
                    SweepError::Rules(format!(
                        "variant {index} ({at}):\n{}",
                        d.render(file, source)
                    ))
                })?;
        variants.push(Variant {
            index,
            values,
            program,
        });
    }
    let first = &variants[0].program;
    let target = select_target(first, rule)?;
    let (target_label, class_name) = target_names(first, target);
    Ok(Prepared {
        target,
        target_label,
        class_name,
        decls,
        sweeps,
        variants,
    })
}

// ---------------------------------------------------------------------------------------------
// Delivered events

/// A tape read once through the event-time layer.
#[derive(Debug)]
pub struct Delivered {
    /// The delivered events in delivery order, with their labels.
    pub events: DeliveredEvents,
    /// Events read from the tape.
    pub read: u64,
    /// Events dropped as late.
    pub late: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// Events admitted within allowed lateness (delivered out of time order).
    pub admitted_late: u64,
    /// Distinct labelled instances per class over every tape event (as `strix replay` counts).
    pub instances: HashMap<u16, u64>,
}

/// Reads the whole tape through a [`Sequencer`] configured like `strix replay`'s: the events
/// it delivers (at once or released from the reorder buffer) are appended in that order; late
/// events and duplicates are dropped and counted. `progress(done, total)` gets tape events.
pub fn read_delivered(
    tape: &TapeReader,
    program: &Program,
    time: &TimeOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Delivered, SweepError> {
    let config = crate::resolve_time(program, time).map_err(|e| match e {
        EngineError::Time(m) => SweepError::Time(m),
        other => SweepError::Time(other.to_string()),
    })?;
    let mut seq = Sequencer::new(&config).map_err(|e| SweepError::Time(e.to_string()))?;
    let total = tape.info().event_count;
    let width = tape.slot_count();
    let mut out = EventBatch::with_capacity(width, usize::try_from(total).unwrap_or(0));
    let mut labels: Vec<Label> = Vec::new();
    // Labels of events in the reorder buffer (the buffer keeps no labels).
    let mut held: HashMap<u64, Label> = HashMap::new();
    let mut instances: HashMap<u16, HashSet<u32>> = HashMap::new();
    let buffering = seq.reads_slots();
    let mut slots = Vec::with_capacity(width);
    let mut read = 0u64;
    let (mut late, mut duplicates) = (0u64, 0u64);
    let drain = |seq: &mut Sequencer,
                 out: &mut EventBatch,
                 labels: &mut Vec<Label>,
                 held: &mut HashMap<u64, Label>| {
        while let Some(r) = seq.pop_ready() {
            if let Ready::Event { event, .. } = r {
                let label = held.remove(&event.seq).unwrap_or_default();
                out.push(event.seq, event.ts, event.type_id, label, &event.slots);
                labels.push(label);
            }
        }
    };
    for batch in tape.batches() {
        let batch = batch?;
        for row in 0..batch.len() {
            let label = batch.label(row);
            if label.class != 0 {
                instances
                    .entry(label.class)
                    .or_default()
                    .insert(label.instance);
            }
            batch.copy_slots(row, &mut slots);
            let view = EventView {
                seq: batch.seq()[row],
                ts: batch.ts()[row],
                type_id: batch.type_ids()[row],
                slots: &slots,
            };
            match seq.arrive(view) {
                cep_core::time::Arrival::Deliver { .. } => {
                    out.push(view.seq, view.ts, view.type_id, label, &slots);
                    labels.push(label);
                }
                cep_core::time::Arrival::Buffered => {
                    if buffering && label.class != 0 {
                        held.insert(view.seq, label);
                    }
                }
                cep_core::time::Arrival::Late => late += 1,
                cep_core::time::Arrival::Duplicate => duplicates += 1,
            }
            drain(&mut seq, &mut out, &mut labels, &mut held);
        }
        read += batch.len() as u64;
        progress(read, total);
    }
    seq.finish();
    drain(&mut seq, &mut out, &mut labels, &mut held);
    let admitted_late = seq.stats().admitted_late;
    Ok(Delivered {
        events: DeliveredEvents {
            batch: out,
            labels,
            label_names: tape.label_names().to_vec(),
        },
        read,
        late,
        duplicates,
        admitted_late,
        instances: instances
            .into_iter()
            .map(|(c, s)| (c, s.len() as u64))
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Engine path

/// Counts of one variant as the engine path accumulates them.
#[derive(Debug, Default)]
struct Tally {
    signals: u64,
    true_positives: u64,
    found: HashSet<u32>,
}

impl Tally {
    /// Scores one signal's matched events against the class labels (seq to instance), as
    /// [`crate::LabelScore::score`] does.
    fn score(&mut self, labels: &ClassLabels, seq: &[u64]) {
        self.signals += 1;
        let mut tp = false;
        for s in seq {
            if let Some(&inst) = labels.get(s) {
                tp = true;
                self.found.insert(inst);
            }
        }
        if tp {
            self.true_positives += 1;
        }
    }

    fn counts(&self) -> VariantCounts {
        VariantCounts {
            signals: self.signals,
            true_positives: self.true_positives,
            instances_found: self.found.len() as u64,
        }
    }
}

/// Which delivered events carry the class: seq to instance.
type ClassLabels = HashMap<u64, u32>;

/// A target rule's signals kept for the model scorer, with what the labels say of each.
#[derive(Debug, Default)]
struct Scored {
    signals: Vec<RawSignal>,
}

impl Scored {
    /// Scores the kept signals, tallies those that reach `threshold` (timeouts always count,
    /// as in replay) and forgets them.
    fn flush(
        &mut self,
        scorer: &mut SignalScorer,
        threshold: Option<f64>,
        labels: &ClassLabels,
        tally: &mut Tally,
    ) -> Result<(), SweepError> {
        scorer
            .score(&mut self.signals)
            .map_err(|e| SweepError::Scoring(e.to_string()))?;
        for s in self.signals.drain(..) {
            if passes(&s, threshold) {
                tally.score(labels, &s.seq);
            }
        }
        Ok(())
    }
}

/// Whether a signal reaches `threshold` (`score >= threshold`; NaN and no score never do;
/// timeout signals carry no model score and always pass), as the scorer stage decides.
fn passes(s: &RawSignal, threshold: Option<f64>) -> bool {
    s.kind != SignalKind::Match || threshold.is_none_or(|t| s.score.is_some_and(|x| x >= t))
}

/// How the engine path runs.
#[derive(Debug, Clone)]
pub struct EngineRun<'a> {
    /// Rules file name (for messages).
    pub file: &'a str,
    /// Rules source.
    pub source: &'a str,
    /// The tape's catalog and symbols.
    pub catalog: &'a Catalog,
    /// Symbols of the tape.
    pub symbols: &'a SymbolTable,
    /// Cap of live partial matches per partition key.
    pub max_runs_per_key: usize,
    /// Allowed lateness of the engines: the delivered stream is in time order except for
    /// events the first pass admitted late, which must not be dropped again.
    pub lateness: i64,
    /// Rows per batch.
    pub batch_rows: usize,
    /// How to score signals of a `score using` target (`None`: it has none).
    pub scoring: Option<ScoreOptions>,
}

/// One engine of `prepared`'s variant `v`, compiled from the source with its values.
fn variant_engine(run: &EngineRun<'_>, v: &Variant) -> Result<Engine, SweepError> {
    let engine_err = |source| SweepError::Engine {
        index: v.index,
        source,
    };
    // Recompiled with the variant's overrides against a fresh copy of the tape's symbols, so
    // the engine's symbol table holds whatever string literals the variant interned.
    let overrides: BTreeMap<String, ParamValue> = v.values.iter().cloned().collect();
    let mut symbols = run.symbols.clone();
    let program =
        pattern_lang::compile_with_params(run.source, Some(run.catalog), &mut symbols, &overrides)
            .map_err(|d| engine_err(EngineError::Rules(d.render(run.file, run.source))))?;
    let engine = Engine::from_program(
        program,
        symbols,
        EngineConfig {
            matcher: MatcherConfig {
                max_runs_per_key: run.max_runs_per_key,
            },
            time: TimeOptions {
                allowed_lateness: run.lateness,
                ..TimeOptions::default()
            },
            kind: MatcherKind::Fast,
            shard: None,
        },
    )
    .map_err(engine_err)?;
    Ok(engine)
}

/// The engine path: one pass over the delivered events in batches, each batch pushed to one
/// [`Engine`] per variant; signals of the target rule are scored against `class`.
/// `progress(done, total)` gets delivered events.
pub fn run_engine_path(
    run: &EngineRun<'_>,
    prepared: &Prepared,
    events: &DeliveredEvents,
    class: Option<u16>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<VariantCounts>, SweepError> {
    let Target::Rule(rule) = prepared.target else {
        return Err(SweepError::QueryNotInClass {
            query: prepared.target_label.clone(),
            why: "queries run on the kernels only".into(),
        });
    };
    let mut engines = prepared
        .variants
        .iter()
        .map(|v| variant_engine(run, v))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = class_labels(events, class);
    let mut tallies: Vec<Tally> = (0..engines.len()).map(|_| Tally::default()).collect();
    // A model-scored target: signals are scored per batch and count when they reach the
    // variant's threshold (the model and fields are the same in every variant).
    let mut scorer = match &run.scoring {
        Some(opts) => new_scorer(&prepared.variants[0].program, opts)?,
        None => None,
    };
    let thresholds: Vec<Option<f64>> = prepared
        .variants
        .iter()
        .map(|v| score_threshold(&v.program, rule))
        .collect();
    let mut kept = Scored::default();
    let all = &events.batch;
    let total = all.len();
    let step = run.batch_rows.max(1);
    let mut chunk = EventBatch::with_capacity(all.slot_count(), step);
    let mut start = 0;
    loop {
        let end = (start + step).min(total);
        let last = start >= total;
        if !last {
            chunk.clear();
            chunk.extend_from_rows(all, start..end);
        }
        for (v, (engine, tally)) in engines.iter_mut().zip(&mut tallies).enumerate() {
            let mut on_signal = |s: crate::Signal<'_>| {
                if s.raw.rule == rule {
                    if scorer.is_some() {
                        kept.signals.push(s.raw.clone());
                    } else {
                        tally.score(&labels, &s.raw.seq);
                    }
                }
            };
            if last {
                engine.finish(&mut on_signal);
            } else {
                engine.push_batch(&chunk, &mut on_signal, |_| {});
            }
            if let Some(sc) = scorer.as_mut() {
                kept.flush(sc, thresholds[v], &labels, tally)?;
            }
        }
        if last {
            break;
        }
        start = end;
        progress(end as u64, total as u64);
    }
    Ok(tallies.iter().map(Tally::counts).collect())
}

/// The scorer stage of `program`, or `None` when no rule uses `score using`.
fn new_scorer(program: &Program, opts: &ScoreOptions) -> Result<Option<SignalScorer>, SweepError> {
    SignalScorer::new(program, opts).map_err(|e| SweepError::Scoring(e.to_string()))
}

/// The `threshold` of rule `rule`'s `score using` clause.
fn score_threshold(program: &Program, rule: usize) -> Option<f64> {
    program.rules.get(rule)?.emit.score.as_ref()?.threshold
}

/// True when rule `rule`'s signals are scored by a model (`score using`).
fn model_scored(program: &Program, rule: usize) -> bool {
    program.rules.get(rule).is_some_and(|r| {
        matches!(
            r.emit.score.as_ref().map(|s| &s.source),
            Some(ScoreSource::Model(_))
        )
    })
}

/// The score thresholds of the variants when the target is a model-scored rule and the
/// variants differ in nothing but that threshold; `None` otherwise.
fn threshold_sweep(prepared: &Prepared) -> Option<Vec<Option<f64>>> {
    let Target::Rule(rule) = prepared.target else {
        return None;
    };
    let first = &prepared.variants[0].program;
    if !model_scored(first, rule) {
        return None;
    }
    let strip = |p: &Program| {
        let mut p = p.clone();
        if let Some(spec) = p.rules.get_mut(rule).and_then(|r| r.emit.score.as_mut()) {
            spec.threshold = None;
        }
        p
    };
    let base = strip(first);
    let mut thresholds = Vec::with_capacity(prepared.variants.len());
    for v in &prepared.variants {
        if v.index > 0 && strip(&v.program) != base {
            return None;
        }
        thresholds.push(score_threshold(&v.program, rule));
    }
    Some(thresholds)
}

/// The score-threshold path: the engine runs once (the first variant's program, its
/// threshold aside), the target's signals are scored once, and each variant counts the
/// signals reaching its threshold. Returns the counts and the scoring device's name.
fn run_threshold_path(
    run: &EngineRun<'_>,
    prepared: &Prepared,
    thresholds: &[Option<f64>],
    events: &DeliveredEvents,
    class: Option<u16>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<VariantCounts>, String), SweepError> {
    let Target::Rule(rule) = prepared.target else {
        return Err(SweepError::Scoring(
            "score thresholds apply to rules only".into(),
        ));
    };
    let opts = run
        .scoring
        .as_ref()
        .ok_or_else(|| SweepError::Scoring("no scoring options".into()))?;
    let first = &prepared.variants[0];
    let mut engine = variant_engine(run, first)?;
    let mut signals: Vec<RawSignal> = Vec::new();
    let all = &events.batch;
    let total = all.len();
    let step = run.batch_rows.max(1);
    let mut chunk = EventBatch::with_capacity(all.slot_count(), step);
    let mut start = 0;
    while start < total {
        let end = (start + step).min(total);
        chunk.clear();
        chunk.extend_from_rows(all, start..end);
        engine.push_batch(
            &chunk,
            |s| {
                if s.raw.rule == rule {
                    signals.push(s.raw.clone());
                }
            },
            |_| {},
        );
        start = end;
        progress(end as u64, total as u64);
    }
    engine.finish(|s| {
        if s.raw.rule == rule {
            signals.push(s.raw.clone());
        }
    });
    let mut scorer = new_scorer(&first.program, opts)?
        .ok_or_else(|| SweepError::Scoring(format!("{} uses no model", prepared.target_label)))?;
    scorer
        .score(&mut signals)
        .map_err(|e| SweepError::Scoring(e.to_string()))?;
    let device = scorer
        .stats()
        .first()
        .map_or_else(|| "cpu".to_string(), |m| m.device_name.clone());
    // What the labels say of each signal once; then each threshold is a filter.
    let labels = class_labels(events, class);
    let judged: Vec<(bool, Vec<u32>)> = signals
        .iter()
        .map(|s| {
            let inst: Vec<u32> = s
                .seq
                .iter()
                .filter_map(|q| labels.get(q).copied())
                .collect();
            (!inst.is_empty(), inst)
        })
        .collect();
    let counts = thresholds
        .iter()
        .map(|&t| {
            let mut c = VariantCounts::default();
            let mut found: HashSet<u32> = HashSet::new();
            for (s, (tp, inst)) in signals.iter().zip(&judged) {
                if passes(s, t) {
                    c.signals += 1;
                    c.true_positives += u64::from(*tp);
                    found.extend(inst);
                }
            }
            c.instances_found = found.len() as u64;
            c
        })
        .collect();
    Ok((counts, device))
}

/// Seq to instance of the delivered events of `class`.
fn class_labels(events: &DeliveredEvents, class: Option<u16>) -> ClassLabels {
    let Some(class) = class else {
        return HashMap::new();
    };
    events
        .batch
        .seq()
        .iter()
        .zip(&events.labels)
        .filter(|(_, l)| l.class == class)
        .map(|(&s, l)| (s, l.instance))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The whole sweep

/// Where the variants are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU kernel when the target is in a kernel class and there is an adapter, else the CPU
    /// kernel, else the engine path.
    #[default]
    Auto,
    /// The GPU kernel, or an error saying why not.
    Gpu,
    /// The kernel on one CPU core, or the engine path when the target is in no kernel class.
    Cpu,
    /// The engine path even for a target in a kernel class (the semantic reference).
    Engine,
}

/// What to sweep and how.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Rule file.
    pub rules: PathBuf,
    /// Labelled tape.
    pub tape: PathBuf,
    /// Rule or query to sweep (`None`: the file's only one).
    pub rule: Option<String>,
    /// `--param NAME=LIST|RANGE` flags, in order.
    pub params: Vec<String>,
    /// Where to count.
    pub device: DeviceChoice,
    /// Event time, as `strix replay` takes it.
    pub time: TimeOptions,
    /// Cap of live partial matches per partition key (engine path).
    pub max_runs_per_key: usize,
    /// Rows per batch on the engine path.
    pub batch: usize,
    /// Directory of bare model names of `score using NAME` (default: the rules file's).
    pub models: Option<PathBuf>,
}

impl SweepOptions {
    /// Options with the defaults of `strix sweep`.
    pub fn new(rules: PathBuf, tape: PathBuf, params: Vec<String>) -> Self {
        Self {
            rules,
            tape,
            rule: None,
            params,
            device: DeviceChoice::Auto,
            time: TimeOptions::default(),
            max_runs_per_key: 10_000,
            batch: ENGINE_BATCH_ROWS,
            models: None,
        }
    }
}

/// Which stage a progress call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the tape (tape events).
    Reading,
    /// Counting on the engine path (delivered events, each pushed to every variant).
    Engines,
    /// Counting on a kernel (no intermediate progress: `done` is 0 until it ends).
    Kernel,
}

/// The path that counted the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepPath {
    /// Sweep kernel on a GPU adapter.
    GpuKernel,
    /// Sweep kernel on one CPU core.
    CpuKernel,
    /// One engine per variant.
    Engine,
    /// One engine run, its signals scored once, counted per score threshold.
    ScoreThreshold,
}

impl SweepPath {
    fn describe(self) -> &'static str {
        match self {
            SweepPath::GpuKernel => "GPU kernel",
            SweepPath::CpuKernel => "CPU kernel (one core)",
            SweepPath::Engine => "engine (one engine per variant)",
            SweepPath::ScoreThreshold => "score thresholds (one engine run, signals scored once)",
        }
    }
}

/// One variant's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantResult {
    /// Position in the sweep (cartesian-product order of the flags).
    pub index: usize,
    /// Rank by F1 (1 = best; ties by index).
    pub rank: usize,
    /// Swept parameter values, in flag order (numbers, or duration and string text).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Signals of the target.
    pub signals: u64,
    /// Signals with a matched event of the label class.
    pub true_positives: u64,
    /// Instances of the class found by some signal.
    pub instances_found: u64,
    /// `true_positives / signals` (`None` without signals).
    pub precision: Option<f64>,
    /// `instances_found / instances` (`None` without instances).
    pub recall: Option<f64>,
    /// `2PR / (P + R)` (`None` when either is `None`; 0 when both are 0).
    pub f1: Option<f64>,
}

impl VariantResult {
    /// Precision, recall and F1 of `c` against `instances` class instances.
    pub fn new(
        index: usize,
        params: serde_json::Map<String, serde_json::Value>,
        c: VariantCounts,
        instances: u64,
    ) -> Self {
        let precision = (c.signals > 0).then(|| c.true_positives as f64 / c.signals as f64);
        let recall = (instances > 0).then(|| c.instances_found as f64 / instances as f64);
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        Self {
            index,
            rank: 0,
            params,
            signals: c.signals,
            true_positives: c.true_positives,
            instances_found: c.instances_found,
            precision,
            recall,
            f1,
        }
    }
}

/// The results of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    /// Rule file path.
    pub rules_file: String,
    /// Tape path.
    pub tape: String,
    /// `rule NAME` or `query NAME`.
    pub target: String,
    /// The label class it is scored against (`None`: the tape has no class of that name).
    pub label: Option<String>,
    /// Instances of that class on the tape.
    pub instances: u64,
    /// Events read from the tape.
    pub events: u64,
    /// Events delivered by the event-time layer (what every variant sees).
    pub delivered: u64,
    /// Late events dropped.
    pub late: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Swept parameters, in flag order.
    pub params: Vec<String>,
    /// Number of variants.
    pub variants: usize,
    /// The path that counted.
    pub path: SweepPath,
    /// The device: adapter name for the GPU kernel, else `cpu`.
    pub device: String,
    /// Why this path.
    pub reason: String,
    /// Seconds reading the tape and compiling the variants.
    pub prepare_s: f64,
    /// Seconds counting.
    pub elapsed_s: f64,
    /// Variants times delivered events per second of counting.
    pub variant_events_per_s: f64,
    /// Every variant, in index order.
    pub results: Vec<VariantResult>,
}

/// Runs a sweep: variants, delivered events, the chosen path, the report.
/// `progress(stage, done, total)` is called now and then.
pub fn run_sweep(
    opts: &SweepOptions,
    progress: &mut dyn FnMut(Stage, u64, u64),
) -> Result<SweepReport, SweepError> {
    let started = Instant::now();
    let source = std::fs::read_to_string(&opts.rules).map_err(|source| SweepError::ReadRules {
        path: opts.rules.clone(),
        source,
    })?;
    let file = opts.rules.display().to_string();
    let tape = TapeReader::open(&opts.tape)?;
    let prepared = build_variants(
        &file,
        &source,
        tape.catalog(),
        tape.symbols(),
        opts.rule.as_deref(),
        &opts.params,
    )?;
    let first = &prepared.variants[0].program;
    let delivered = read_delivered(&tape, first, &opts.time, &mut |d, t| {
        progress(Stage::Reading, d, t)
    })?;
    let class = target_class(tape.label_names(), first, prepared.target);
    let instances = class
        .and_then(|c| delivered.instances.get(&c).copied())
        .unwrap_or(0);
    let prepare_s = started.elapsed().as_secs_f64();

    let counting = Instant::now();
    let (path, device, reason, counts) = count(
        opts, &file, &source, &tape, &prepared, &delivered, class, progress,
    )?;
    let elapsed_s = counting.elapsed().as_secs_f64();

    let delivered_n = delivered.events.batch.len() as u64;
    let mut results: Vec<VariantResult> = prepared
        .variants
        .iter()
        .zip(counts)
        .map(|(v, c)| {
            let params = v
                .values
                .iter()
                .map(|(n, val)| (n.clone(), value_json(val)))
                .collect();
            VariantResult::new(v.index, params, c, instances)
        })
        .collect();
    for (rank, i) in ranking(&results).into_iter().enumerate() {
        results[i].rank = rank + 1;
    }
    let work = prepared.variants.len() as f64 * delivered_n as f64;
    Ok(SweepReport {
        rules_file: file,
        tape: opts.tape.display().to_string(),
        target: prepared.target_label.clone(),
        label: class.and_then(|c| tape.label_names().get(usize::from(c)).cloned()),
        instances,
        events: delivered.read,
        delivered: delivered_n,
        late: delivered.late,
        duplicates: delivered.duplicates,
        params: prepared.sweeps.iter().map(|s| s.name.clone()).collect(),
        variants: prepared.variants.len(),
        path,
        device,
        reason,
        prepare_s,
        elapsed_s,
        variant_events_per_s: if elapsed_s > 0.0 {
            work / elapsed_s
        } else {
            0.0
        },
        results,
    })
}

/// Indices of `results` by F1 descending (no F1 last), then by variant index.
fn ranking(results: &[VariantResult]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = results[a].f1.unwrap_or(f64::NEG_INFINITY);
        let fb = results[b].f1.unwrap_or(f64::NEG_INFINITY);
        fb.total_cmp(&fa)
            .then(results[a].index.cmp(&results[b].index))
    });
    order
}

/// Picks the path and counts every variant on it: (path, device, reason, counts).
#[allow(clippy::too_many_arguments)]
fn count(
    opts: &SweepOptions,
    file: &str,
    source: &str,
    tape: &TapeReader,
    prepared: &Prepared,
    delivered: &Delivered,
    class: Option<u16>,
    progress: &mut dyn FnMut(Stage, u64, u64),
) -> Result<(SweepPath, String, String, Vec<VariantCounts>), SweepError> {
    let events = &delivered.events;
    let plan = sweep_kernel::plan(prepared.target, &prepared.variants);
    let kernel_err = |e: sweep_kernel::SweepError| SweepError::Kernel(e.to_string());
    let run_kernel =
        |plan: &KernelPlan, device: SweepDevice<'_>, progress: &mut dyn FnMut(Stage, u64, u64)| {
            let n = events.batch.len() as u64;
            progress(Stage::Kernel, 0, n);
            let counts = plan.run(events, device).map_err(kernel_err)?;
            progress(Stage::Kernel, n, n);
            Ok::<_, SweepError>(counts)
        };
    let scored = match prepared.target {
        Target::Rule(r) => model_scored(&prepared.variants[0].program, r),
        Target::Query(_) => false,
    };
    let run = EngineRun {
        file,
        source,
        catalog: tape.catalog(),
        symbols: tape.symbols(),
        max_runs_per_key: opts.max_runs_per_key,
        lateness: engine_lateness(&opts.time),
        batch_rows: opts.batch,
        scoring: scored.then(|| ScoreOptions {
            models_dir: opts.models.clone(),
            device: match opts.device {
                DeviceChoice::Gpu => ScoreDevice::Gpu,
                DeviceChoice::Cpu => ScoreDevice::Cpu,
                DeviceChoice::Auto | DeviceChoice::Engine => ScoreDevice::Auto,
            },
            ..ScoreOptions::for_rules(&opts.rules)
        }),
    };
    let engine = |why: String, progress: &mut dyn FnMut(Stage, u64, u64)| {
        if let Target::Query(_) = prepared.target {
            return Err(SweepError::QueryNotInClass {
                query: prepared.target_label.clone(),
                why,
            });
        }
        let counts = run_engine_path(&run, prepared, events, class, &mut |d, t| {
            progress(Stage::Engines, d, t)
        })?;
        Ok((SweepPath::Engine, "cpu".to_string(), why, counts))
    };
    if scored && opts.device != DeviceChoice::Engine {
        // The kernels count matches; a model's threshold applies to scored signals after them.
        if let Some(thresholds) = threshold_sweep(prepared) {
            let (counts, device) =
                run_threshold_path(&run, prepared, &thresholds, events, class, &mut |d, t| {
                    progress(Stage::Engines, d, t)
                })?;
            let reason = format!(
                "the variants differ only in the score threshold: one engine run, its signals scored once on {device}"
            );
            return Ok((SweepPath::ScoreThreshold, device, reason, counts));
        }
        let why = "its signals are scored by a model (`score using`) and the variants differ in more than the threshold";
        if opts.device == DeviceChoice::Gpu {
            return Err(SweepError::NotInClass {
                target: prepared.target_label.clone(),
                why: why.into(),
            });
        }
        return engine(format!("not in a kernel class: {why}"), progress);
    }
    match (opts.device, plan) {
        (DeviceChoice::Engine, plan) => engine(
            match plan {
                Ok(_) => "--engine (the target is in a kernel class too)".into(),
                Err(why) => format!("--engine (not in a kernel class: {})", why.0),
            },
            progress,
        ),
        (DeviceChoice::Gpu, Err(why)) => Err(SweepError::NotInClass {
            target: prepared.target_label.clone(),
            why: why.0,
        }),
        (DeviceChoice::Gpu, Ok(plan)) => {
            let ctx = gpu_kernels::context::GpuContext::shared()
                .map_err(|e| SweepError::NoAdapter(e.to_string()))?;
            let adapter = ctx.adapter().to_string();
            let counts = run_kernel(&plan, SweepDevice::Gpu(ctx), progress)?;
            Ok((
                SweepPath::GpuKernel,
                adapter,
                format!("--gpu; {}", plan.describe()),
                counts,
            ))
        }
        (DeviceChoice::Cpu, Ok(plan)) => {
            let counts = run_kernel(&plan, SweepDevice::Cpu, progress)?;
            Ok((
                SweepPath::CpuKernel,
                "cpu".into(),
                format!("--cpu; {}", plan.describe()),
                counts,
            ))
        }
        (DeviceChoice::Cpu | DeviceChoice::Auto, Err(why)) => {
            engine(format!("not in a kernel class: {}", why.0), progress)
        }
        (DeviceChoice::Auto, Ok(plan)) => match gpu_kernels::context::GpuContext::shared() {
            // A CPU driver (lavapipe, SwiftShader) runs the kernel slower than the CPU kernel
            // does on one core; `--gpu` still uses it.
            Ok(ctx) if ctx.adapter().is_cpu => {
                let counts = run_kernel(&plan, SweepDevice::Cpu, progress)?;
                Ok((
                    SweepPath::CpuKernel,
                    "cpu".into(),
                    format!(
                        "{}; the only GPU adapter is a CPU driver ({}), --gpu uses it",
                        plan.describe(),
                        ctx.adapter()
                    ),
                    counts,
                ))
            }
            Ok(ctx) => {
                let adapter = ctx.adapter().to_string();
                let counts = run_kernel(&plan, SweepDevice::Gpu(ctx), progress)?;
                Ok((
                    SweepPath::GpuKernel,
                    adapter,
                    format!("{}; a GPU adapter is present", plan.describe()),
                    counts,
                ))
            }
            Err(e) => {
                let counts = run_kernel(&plan, SweepDevice::Cpu, progress)?;
                Ok((
                    SweepPath::CpuKernel,
                    "cpu".into(),
                    format!("{}; {e}", plan.describe()),
                    counts,
                ))
            }
        },
    }
}

/// Allowed lateness of the engine path's engines: the delivered stream is in time order except
/// for events the event-time layer admitted late, which lag the newest delivered event by less
/// than the largest delay plus the allowed lateness; with that lateness no engine drops them.
fn engine_lateness(time: &TimeOptions) -> i64 {
    let delay = time
        .max_delay_per_type
        .iter()
        .map(|(_, d)| *d)
        .fold(time.max_delay, i64::max);
    match delay.saturating_add(time.allowed_lateness) {
        0 => 0,
        d => d.saturating_add(1),
    }
}

impl SweepReport {
    /// The header lines and the table of the `top` best variants (0: all), ranked by F1.
    pub fn render(&self, top: usize) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let label = match &self.label {
            Some(l) => format!("label {l}: {} instances", self.instances),
            None => "no label class of that name on the tape: no precision or recall".into(),
        };
        let _ = writeln!(s, "sweep {} in {} ({label})", self.target, self.rules_file);
        let _ = writeln!(
            s,
            "  tape       {}: {} events, {} delivered, {} late, {} duplicates",
            self.tape, self.events, self.delivered, self.late, self.duplicates
        );
        let _ = writeln!(
            s,
            "  variants   {} over {}",
            self.variants,
            if self.params.is_empty() {
                "no parameters (defaults)".to_string()
            } else {
                self.params.join(", ")
            }
        );
        let device = match self.path {
            SweepPath::GpuKernel => format!(" on {}", self.device),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  path       {}{device}: {}",
            self.path.describe(),
            self.reason
        );
        let _ = writeln!(
            s,
            "  elapsed    {:.3} s counting ({:.3} s reading and compiling), {} variant·events/s",
            self.elapsed_s,
            self.prepare_s,
            human_rate(self.variant_events_per_s)
        );
        let mut rows: Vec<&VariantResult> = self.results.iter().collect();
        rows.sort_by_key(|r| r.rank);
        let shown = if top == 0 {
            rows.len()
        } else {
            top.min(rows.len())
        };
        let mut header: Vec<String> = vec!["rank".into()];
        header.extend(self.params.iter().cloned());
        header.extend(
            ["signals", "TP", "precision", "recall", "F1"]
                .iter()
                .map(|h| h.to_string()),
        );
        let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
        let table: Vec<Vec<String>> = rows[..shown]
            .iter()
            .map(|r| {
                let mut row = vec![r.rank.to_string()];
                row.extend(self.params.iter().map(|p| match r.params.get(p) {
                    Some(serde_json::Value::String(t)) => t.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                }));
                row.extend([
                    r.signals.to_string(),
                    r.true_positives.to_string(),
                    f(r.precision),
                    f(r.recall),
                    f(r.f1),
                ]);
                row
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|c| {
                table
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([header[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        s.push('\n');
        for row in std::iter::once(&header).chain(&table) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| format!("{cell:>w$}"))
                .collect();
            let _ = writeln!(s, "{}", cells.join("  ").trim_end());
        }
        if shown < rows.len() {
            let _ = writeln!(
                s,
                "({} of {} variants shown; --top 0 shows all, --json gives every one)",
                shown,
                rows.len()
            );
        }
        s
    }
}

/// `1.23e9` as `1.23 G`.
fn human_rate(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, " G")
    } else if x >= 1e6 {
        (x / 1e6, " M")
    } else if x >= 1e3 {
        (x / 1e3, " k")
    } else {
        (x, "")
    };
    format!("{v:.2}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"
event Txn { card: sym, amount: f64, channel: sym }
param n = 3
param lo = 2.0
param w = 10m   # window
param ch = "online"
rule probe
  from Txn
  partition by card
  pattern t{$n} b
  define t as Txn and amount < $lo and channel == $ch, b as Txn and amount >= 100
  within $w
  emit probe { card }
"#;

    fn decls() -> Vec<ParamDecl> {
        pattern_lang::params(SRC).expect("params")
    }

    fn ints(v: &[ParamValue]) -> Vec<i64> {
        v.iter()
            .map(|x| match x {
                ParamValue::Int(i) | ParamValue::Duration(i) => *i,
                other => panic!("not an integer: {other:?}"),
            })
            .collect()
    }

    fn floats(v: &[ParamValue]) -> Vec<f64> {
        v.iter()
            .map(|x| match x {
                ParamValue::Float(f) => *f,
                other => panic!("not a float: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn integer_ranges_are_inclusive() {
        let d = ParamValue::Int(0);
        assert_eq!(
            ints(&expand("2..9:1", &d).unwrap()),
            (2..=9).collect::<Vec<_>>()
        );
        assert_eq!(ints(&expand("2..9:3", &d).unwrap()), vec![2, 5, 8]);
        assert_eq!(ints(&expand("-2..2:2", &d).unwrap()), vec![-2, 0, 2]);
        assert_eq!(ints(&expand("4..4:1", &d).unwrap()), vec![4]);
        assert_eq!(ints(&expand("1, 5,7", &d).unwrap()), vec![1, 5, 7]);
    }

    #[test]
    fn duration_ranges_step_in_nanoseconds() {
        let d = ParamValue::Duration(0);
        let v = expand("1m..20m:1m", &d).unwrap();
        assert_eq!(v.len(), 20);
        assert_eq!(v[0], ParamValue::Duration(60_000_000_000));
        assert_eq!(v[19], ParamValue::Duration(1_200_000_000_000));
        assert_eq!(
            ints(&expand("500ms..2s:500ms", &d).unwrap()),
            vec![500_000_000, 1_000_000_000, 1_500_000_000, 2_000_000_000]
        );
        assert_eq!(render_value(&v[2]), "3m");
    }

    #[test]
    fn float_ranges_do_not_accumulate_error() {
        let d = ParamValue::Float(0.0);
        assert_eq!(
            floats(&expand("0.5..2:0.25", &d).unwrap()),
            vec![0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
        );
        // A running sum gives 0.30000000000000004 and misses 1.0; START + i·STEP, rounded to
        // the decimals written, gives the values as written.
        assert_eq!(
            floats(&expand("0.1..0.3:0.1", &d).unwrap()),
            vec![0.1, 0.2, 0.3]
        );
        let tenths = floats(&expand("0..1:0.1", &d).unwrap());
        assert_eq!(tenths.len(), 11);
        assert_eq!(tenths[3], 0.3);
        assert_eq!(tenths[7], 0.7);
        assert_eq!(tenths[10], 1.0);
        // Integers are floats here.
        assert_eq!(floats(&expand("1..3:1", &d).unwrap()), vec![1.0, 2.0, 3.0]);
        // With an exponent nothing is rounded, but the count still reaches END.
        assert_eq!(expand("1e-1..3e-1:1e-1", &d).unwrap().len(), 3);
    }

    #[test]
    fn string_lists_split_outside_quotes() {
        let d = ParamValue::Str(String::new());
        assert_eq!(
            expand(r#"online,"a,b", pos"#, &d).unwrap(),
            vec![
                ParamValue::Str("online".into()),
                ParamValue::Str("a,b".into()),
                ParamValue::Str("pos".into())
            ]
        );
        // `..` is no range for strings.
        assert_eq!(expand("a..b:c", &d).unwrap().len(), 1);
    }

    #[test]
    fn bad_ranges_and_values_say_what_is_wrong() {
        let i = ParamValue::Int(0);
        let cases = [
            ("1..5:0", &i, "the step is zero"),
            ("5..1:1", &i, "is empty: START is above END"),
            ("1..5:-1", &i, "the step must be positive"),
            ("1..5", &i, "has no step"),
            ("1,,2", &i, "empty value"),
            ("x", &i, "`x` is not an integer"),
            ("1..2000000:1", &i, "2000000 values"),
            ("0..1:0.0", &ParamValue::Float(0.0), "the step is zero"),
            ("1m..2m:0s", &ParamValue::Duration(0), "the step is zero"),
            ("5", &ParamValue::Duration(0), "is not a duration"),
        ];
        for (spec, default, want) in cases {
            let e = expand(spec, default).expect_err(spec);
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn flags_are_typed_by_the_declared_default() {
        let d = decls();
        let s = parse_param_flag("w=5m,10m", &d).unwrap();
        assert_eq!(s.name, "w");
        assert_eq!(ints(&s.values), vec![300_000_000_000, 600_000_000_000]);
        let s = parse_param_flag("$lo=1..2:0.5", &d).unwrap();
        assert_eq!(floats(&s.values), vec![1.0, 1.5, 2.0]);
        let e = parse_param_flag("nope=1", &d).unwrap_err().to_string();
        assert!(
            e.contains("no parameter `nope` (declared: n = 3, lo = 2.0, w = 10m, ch = \"online\")"),
            "{e}"
        );
        let e = parse_param_flag("n", &d).unwrap_err().to_string();
        assert!(e.contains("expected NAME=LIST"), "{e}");
        let e = parse_param_flags(&["n=1".into(), "n=2".into()], &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("swept by an earlier --param"), "{e}");
    }

    #[test]
    fn variants_are_the_product_in_flag_order() {
        let d = decls();
        let sweeps = parse_param_flags(&["n=1..3:1".into(), "w=1m,2m".into()], &d).unwrap();
        assert_eq!(variant_count(&sweeps).unwrap(), 6);
        let at = |i| {
            variant_values(&sweeps, i)
                .into_iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(at(0), "n=1 w=1m");
        assert_eq!(at(1), "n=1 w=2m");
        assert_eq!(at(2), "n=2 w=1m");
        assert_eq!(at(5), "n=3 w=2m");
        let big = vec![
            ParamSweep {
                name: "a".into(),
                values: vec![ParamValue::Int(0); 1001],
            },
            ParamSweep {
                name: "b".into(),
                values: vec![ParamValue::Int(0); 1000],
            },
        ];
        let e = variant_count(&big).unwrap_err().to_string();
        assert!(
            e.starts_with("1001000 variants: a sweep may have at most 1000000"),
            "{e}"
        );
    }

    #[test]
    fn the_target_is_named_or_the_only_one() {
        let mut syms = SymbolTable::new();
        let p = pattern_lang::compile(SRC, None, &mut syms).unwrap();
        assert_eq!(select_target(&p, None).unwrap(), Target::Rule(0));
        assert_eq!(select_target(&p, Some("probe")).unwrap(), Target::Rule(0));
        let e = select_target(&p, Some("x")).unwrap_err().to_string();
        assert!(
            e.contains("no rule or query `x` (it has: rule probe)"),
            "{e}"
        );
        let names = vec!["none".to_string(), "probe".to_string()];
        assert_eq!(target_class(&names, &p, Target::Rule(0)), Some(1));
        assert_eq!(target_class(&names[..1], &p, Target::Rule(0)), None);
    }

    #[test]
    fn f1_is_the_harmonic_mean_and_missing_without_signals_or_instances() {
        let c = |signals, true_positives, instances_found| VariantCounts {
            signals,
            true_positives,
            instances_found,
        };
        let r = VariantResult::new(0, Default::default(), c(4, 2, 3), 6);
        assert_eq!((r.precision, r.recall), (Some(0.5), Some(0.5)));
        assert_eq!(r.f1, Some(0.5));
        let r = VariantResult::new(0, Default::default(), c(0, 0, 0), 6);
        assert_eq!((r.precision, r.recall, r.f1), (None, Some(0.0), None));
        let r = VariantResult::new(0, Default::default(), c(3, 0, 0), 6);
        assert_eq!(r.f1, Some(0.0));
        let r = VariantResult::new(0, Default::default(), c(3, 1, 1), 0);
        assert_eq!((r.recall, r.f1), (None, None));
    }
}
