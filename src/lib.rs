//! Strix: a complex event processing engine for finance.
//!
//! This facade wires the stages together and is the embedding API:
//! rule text --[`pattern_lang::compile`]--> [`cep_core::rule::Program`] --[`Engine`]--> [`Signal`]s.
//!
//! ```
//! use strix::{Engine, FieldValue};
//!
//! let rules = r#"
//! event Txn { card: sym, amount: f64 }
//! rule testing
//!   from Txn
//!   partition by card
//!   pattern tiny{3} -> big
//!   define tiny as amount < 2, big as amount >= 500
//!   within 10m
//!   emit card_testing { card, total: sum(tiny.amount) + big.amount }
//! "#;
//! let mut engine = Engine::from_rules("inline.cep", rules).unwrap();
//! let mut signals = Vec::new();
//! for (i, amount) in [1.0, 1.5, 0.5, 900.0].into_iter().enumerate() {
//!     let e = engine
//!         .event("Txn", i as i64 * 1_000_000_000, &[("card", FieldValue::Str("C1")), ("amount", FieldValue::F64(amount))])
//!         .unwrap();
//!     engine.push(&e, |s| signals.push(s.to_json()));
//! }
//! engine.finish(|s| signals.push(s.to_json()));
//! assert_eq!(signals.len(), 1);
//! assert_eq!(signals[0]["signal"], "card_testing");
//! assert_eq!(signals[0]["seq"], serde_json::json!([0, 1, 2, 3]));
//! ```

use std::collections::HashMap;

use cep_core::event::{Event, EventView, Label};
use cep_core::reference::{MatcherConfig, MatcherStats, ReferenceMatcher};
use cep_core::rule::{EmitSpec, Program};
use cep_core::schema::{Catalog, FieldType};
use cep_core::signal::{Signal as RawSignal, SignalKind};
use cep_core::symbol::SymbolTable;
use cep_core::value::Value;
use serde_json::json;

pub use cep_core;
pub use feeds;
pub use pattern_lang;

pub mod replay;

/// Errors of the embedding API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The rules did not compile; the string is the rendered diagnostic (`file:line:col`, caret).
    #[error("{0}")]
    Rules(String),
    /// An event was built with an unknown type or field, or a value of the wrong type.
    #[error("{0}")]
    Event(String),
}

/// A field value given to [`Engine::event`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// Signed integer (also for `ts` fields, ns).
    I64(i64),
    /// Unsigned integer.
    U64(u64),
    /// Number.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// A symbol (interned) or an enum variant name.
    Str(&'a str),
}

/// A signal ready for output: the raw match plus the names needed to render it.
#[derive(Debug, Clone)]
pub struct Signal<'e> {
    engine: &'e Engine,
    /// The raw signal.
    pub raw: &'e RawSignal,
}

impl Signal<'_> {
    /// Rule name.
    pub fn rule(&self) -> &str {
        &self.engine.program.rules[self.raw.rule].name
    }

    /// Signal name (from `emit NAME`, or `on timeout emit NAME` for a timeout).
    pub fn signal(&self) -> &str {
        &self.spec().signal
    }

    /// The emit clause this signal was produced by.
    fn spec(&self) -> &EmitSpec {
        let rule = &self.engine.program.rules[self.raw.rule];
        match (self.raw.kind, &rule.timeout) {
            (SignalKind::Timeout, Some(t)) => t,
            _ => &rule.emit,
        }
    }

    /// The partition key rendered as text: key field values joined by `|` (empty if unpartitioned).
    pub fn key(&self) -> String {
        self.engine.render_key(self.raw)
    }

    /// Stable id (rule, key, matched sequence numbers), as 16 hex digits.
    pub fn id(&self) -> String {
        format!(
            "{:016x}",
            RawSignal::stable_id(self.rule(), &self.key(), &self.raw.seq)
        )
    }

    /// The JSON Lines object: `{"rule","signal","ts","key","seq","fields","id"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let rule = &self.engine.program.rules[self.raw.rule];
        let spec = self.spec();
        let mut fields = serde_json::Map::new();
        for (f, v) in spec.fields.iter().zip(&self.raw.fields) {
            fields.insert(f.name.clone(), self.engine.render_value(*v, f.ty));
        }
        json!({
            "rule": rule.name,
            "signal": spec.signal,
            "ts": self.raw.ts,
            "key": self.key(),
            "seq": self.raw.seq,
            "fields": fields,
            "id": self.id(),
        })
    }
}

/// Engine options.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineConfig {
    /// Matcher limits.
    pub matcher: MatcherConfig,
}

/// A compiled rule set with per-partition matcher state: push events in, get signals out.
///
/// Events must be pushed in sequence order with non-decreasing event time per partition.
#[derive(Debug)]
pub struct Engine {
    program: Program,
    symbols: SymbolTable,
    matchers: Vec<ReferenceMatcher>,
    next_seq: u64,
    pending: Vec<RawSignal>,
}

impl Engine {
    /// Compiles `source` (named `file_name` in errors) against its own event declarations.
    pub fn from_rules(file_name: &str, source: &str) -> Result<Self, EngineError> {
        Self::build(
            file_name,
            source,
            None,
            SymbolTable::new(),
            EngineConfig::default(),
        )
    }

    /// Compiles `source` against the schemas and symbols of an input stream (e.g. a tape).
    pub fn build(
        file_name: &str,
        source: &str,
        stream: Option<&Catalog>,
        mut symbols: SymbolTable,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let program = pattern_lang::compile(source, stream, &mut symbols)
            .map_err(|d| EngineError::Rules(d.render(file_name, source)))?;
        let matchers = program
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| ReferenceMatcher::new(r.clone(), i, config.matcher))
            .collect();
        Ok(Self {
            program,
            symbols,
            matchers,
            next_seq: 0,
            pending: Vec::new(),
        })
    }

    /// The compiled program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The symbol table (stream symbols plus literals interned by the rules).
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// Counters per rule.
    pub fn stats(&self) -> Vec<MatcherStats> {
        self.matchers.iter().map(ReferenceMatcher::stats).collect()
    }

    /// Builds an event of type `type_name` at time `ts` (ns) with the next sequence number.
    /// Fields not given are zero; unknown fields and mistyped values are errors.
    pub fn event(
        &mut self,
        type_name: &str,
        ts: i64,
        fields: &[(&str, FieldValue<'_>)],
    ) -> Result<Event, EngineError> {
        let catalog = &self.program.catalog;
        let type_id = catalog
            .type_by_name(type_name)
            .ok_or_else(|| EngineError::Event(format!("unknown event type `{type_name}`")))?;
        let et = catalog
            .event_type(type_id)
            .ok_or_else(|| EngineError::Event(format!("unknown event type `{type_name}`")))?;
        let mut slots = vec![0u64; catalog.slot_count()];
        for (name, v) in fields {
            let slot = et.slot(name).ok_or_else(|| {
                EngineError::Event(format!("`{type_name}` has no field `{name}`"))
            })?;
            let ty = et.fields[slot].ty;
            let value = match (ty, *v) {
                (FieldType::I64 | FieldType::Ts, FieldValue::I64(x)) => Value::I64(x),
                (FieldType::U64, FieldValue::U64(x)) => Value::U64(x),
                (FieldType::U64, FieldValue::I64(x)) if x >= 0 => Value::U64(x as u64),
                (FieldType::F64, FieldValue::F64(x)) => Value::F64(x),
                (FieldType::F64, FieldValue::I64(x)) => Value::F64(x as f64),
                (FieldType::Bool, FieldValue::Bool(b)) => Value::Bool(b),
                (FieldType::Sym, FieldValue::Str(s)) => Value::Sym(self.symbols.intern(s)),
                (FieldType::Enum(e), FieldValue::Str(s)) => {
                    let def = catalog
                        .enum_def(e)
                        .ok_or_else(|| EngineError::Event("unknown enum".into()))?;
                    let i = def
                        .variants
                        .iter()
                        .position(|v| v.eq_ignore_ascii_case(s))
                        .ok_or_else(|| {
                            EngineError::Event(format!(
                                "`{s}` is not a variant of `{}` ({})",
                                def.name,
                                def.variants.join(", ")
                            ))
                        })?;
                    Value::Enum(i as u32)
                }
                (ty, v) => {
                    return Err(EngineError::Event(format!(
                        "field `{name}` of `{type_name}` is {}, got {v:?}",
                        catalog.type_name(ty)
                    )));
                }
            };
            slots[slot] = value.to_slot();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(Event {
            seq,
            ts,
            type_id,
            label: Label::default(),
            slots,
        })
    }

    /// Pushes one event; `on_signal` is called for each signal it completes.
    pub fn push(&mut self, e: &Event, on_signal: impl FnMut(Signal<'_>)) {
        self.push_view(e.view(), on_signal);
    }

    /// Pushes one borrowed event (the replay hot path).
    pub fn push_view(&mut self, e: EventView<'_>, mut on_signal: impl FnMut(Signal<'_>)) {
        self.next_seq = self.next_seq.max(e.seq + 1);
        let mut pending = std::mem::take(&mut self.pending);
        for m in &mut self.matchers {
            m.on_event(e, &mut pending);
        }
        for raw in &pending {
            on_signal(Signal { engine: self, raw });
        }
        pending.clear();
        self.pending = pending;
    }

    /// Pushes events and returns the signals they complete as JSON objects (iterator style).
    pub fn push_all<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for e in events {
            self.push(e, |s| out.push(s.to_json()));
        }
        out
    }

    /// Ends the stream: reports matches that were waiting for better alternatives to die.
    pub fn finish(&mut self, mut on_signal: impl FnMut(Signal<'_>)) {
        let mut pending = std::mem::take(&mut self.pending);
        for m in &mut self.matchers {
            m.finish(&mut pending);
        }
        for raw in &pending {
            on_signal(Signal { engine: self, raw });
        }
        pending.clear();
        self.pending = pending;
    }

    fn render_key(&self, s: &RawSignal) -> String {
        let rule = &self.program.rules[s.rule];
        let mut out = String::new();
        for (i, f) in rule.partition_by.iter().enumerate() {
            if i > 0 {
                out.push('|');
            }
            match self.render_value(Value::from_slot(f.ty, s.key.0[i]), Some(f.ty)) {
                serde_json::Value::String(x) => out.push_str(&x),
                other => out.push_str(&other.to_string()),
            }
        }
        out
    }

    /// Renders a value as JSON: symbols and enum variants by name, numbers as numbers.
    pub fn render_value(&self, v: Value, ty: Option<FieldType>) -> serde_json::Value {
        match (v, ty) {
            (Value::Null, _) => serde_json::Value::Null,
            (Value::Sym(s), _) => match self.symbols.name(s) {
                Some(n) => json!(n),
                None => json!(format!("sym#{s}")),
            },
            (Value::Enum(i), Some(FieldType::Enum(e))) => {
                match self
                    .program
                    .catalog
                    .enum_def(e)
                    .and_then(|d| d.variants.get(i as usize))
                {
                    Some(n) => json!(n),
                    None => json!(i),
                }
            }
            (Value::Enum(i), _) => json!(i),
            (Value::I64(x), _) => json!(x),
            (Value::U64(x), _) => json!(x),
            (Value::F64(x), _) => serde_json::Number::from_f64(x)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            (Value::Bool(b), _) => json!(b),
        }
    }
}

/// Per-rule recall and precision against a tape's ground-truth labels.
///
/// A rule is scored against the label class whose name equals its signal name (or, failing
/// that, its rule name). A signal is a true positive when any of its matched events carries that
/// class; an injected instance is found when any signal's matched events include one of its events.
#[derive(Debug, Default, Clone)]
pub struct LabelScore {
    /// Label class per labelled event seq: (class, instance).
    labels: HashMap<u64, (u16, u32)>,
    /// Instances per class.
    instances: HashMap<u16, std::collections::HashSet<u32>>,
    /// Per rule: (signals, true-positive signals, instances found).
    per_rule: HashMap<usize, (u64, u64, std::collections::HashSet<u32>)>,
}

impl LabelScore {
    /// Records an event's label (call for every labelled event before its signals are scored).
    pub fn observe(&mut self, seq: u64, label: Label) {
        if label.class != 0 {
            self.labels.insert(seq, (label.class, label.instance));
            self.instances
                .entry(label.class)
                .or_default()
                .insert(label.instance);
        }
    }

    /// Scores one signal of rule `rule` against class `class`.
    pub fn score(&mut self, rule: usize, class: Option<u16>, seq: &[u64]) {
        let entry = self.per_rule.entry(rule).or_default();
        entry.0 += 1;
        let Some(class) = class else { return };
        let mut tp = false;
        for s in seq {
            if let Some(&(c, inst)) = self.labels.get(s)
                && c == class
            {
                tp = true;
                entry.2.insert(inst);
            }
        }
        if tp {
            entry.1 += 1;
        }
    }

    /// (signals, true-positive signals, instances found) of `rule`.
    pub fn counts(&self, rule: usize) -> (u64, u64, usize) {
        self.per_rule
            .get(&rule)
            .map_or((0, 0, 0), |(n, tp, found)| (*n, *tp, found.len()))
    }

    /// (recall, precision, instances of the class) for `rule` scored against `class`.
    /// Recall is `None` without instances; precision is `None` without signals.
    pub fn result(&self, rule: usize, class: u16) -> (Option<f64>, Option<f64>, usize) {
        let total = self.instances.get(&class).map_or(0, |s| s.len());
        let (signals, tp, found) = self.per_rule.get(&rule).cloned().unwrap_or_default();
        let recall = (total > 0).then(|| found.len() as f64 / total as f64);
        let precision = (signals > 0).then(|| tp as f64 / signals as f64);
        (recall, precision, total)
    }
}
