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

use cep_core::event::{Event, EventBatch, EventView, Label};
use cep_core::fast::FastMatcher;
use cep_core::query::{QueryOperator, QueryStats};
use cep_core::reference::{MatcherConfig, MatcherStats, ReferenceMatcher};
use cep_core::rule::{EmitSpec, Program, Rule};
use cep_core::schema::{Catalog, FieldType, TypeId};
use cep_core::shift_and::ShiftAndMatcher;
use cep_core::signal::{Signal as RawSignal, SignalKind};
use cep_core::symbol::SymbolTable;
use cep_core::time::{Arrival, DedupConfig, Ready, Sequencer, TimeConfig, TimeStats};
use cep_core::value::Value;
use serde_json::json;

pub use cep_core;
pub use cep_core::rule::ShardSpec;
pub use feeds;
pub use pattern_lang;

pub mod fit;
pub mod pipeline;
pub mod replay;
pub mod scoring;
pub mod sweep;
pub mod sweep_kernel;

/// Errors of the embedding API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The rules did not compile; the string is the rendered diagnostic (`file:line:col`, caret).
    #[error("{0}")]
    Rules(String),
    /// An event was built with an unknown type or field, or a value of the wrong type.
    #[error("{0}")]
    Event(String),
    /// The event-time options do not fit the program (unknown type or field, negative duration).
    #[error("{0}")]
    Time(String),
    /// The shard is out of range (`index` must be below `count`).
    #[error("shard {index} of {count}: the index must be below the count")]
    Shard {
        /// Shard index given.
        index: u32,
        /// Shard count given.
        count: u32,
    },
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
    /// The engine step (matcher call) that emitted it.
    step: u64,
}

/// Where a signal stands in the engine's output: the engine emits signals in ascending order
/// (ties keep emission order), and merging the outputs of sharded engines ([`ShardSpec`]) by this
/// order, stably within each shard, gives exactly the output of the unsharded engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignalOrder {
    /// The engine step (one per matcher call, counted the same in every shard) that emitted it.
    pub step: u64,
    /// Deadline of the timer that fired it (`i64::MIN` if an event or the end of stream did).
    pub deadline: i64,
    /// Tie-break within the step: see [`cep_core::signal::Signal::order`].
    pub tiebreak: u64,
}

impl Signal<'_> {
    /// The signal's place in the engine's output (see [`SignalOrder`]).
    pub fn order(&self) -> SignalOrder {
        SignalOrder {
            step: self.step,
            deadline: self.raw.order.0,
            tiebreak: self.raw.order.1,
        }
    }

    /// Rule name.
    pub fn rule(&self) -> &str {
        &self.engine.program.rules[self.raw.rule].name
    }

    /// What the signal emits: the rule's `emit`, or its `on timeout emit` for a timeout.
    fn spec(&self) -> &EmitSpec {
        let rule = &self.engine.program.rules[self.raw.rule];
        match self.raw.kind {
            SignalKind::Match => &rule.emit,
            SignalKind::Timeout => rule.timeout.as_ref().unwrap_or(&rule.emit),
        }
    }

    /// Signal name (from `emit NAME`, or `on timeout emit NAME` for a timed-out partial match).
    pub fn signal(&self) -> &str {
        &self.spec().signal
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

    /// The JSON Lines object: `{"rule","signal","ts","key","seq","fields","id"}`, with
    /// `"score"` after `"fields"` when the signal has a score (`null` if it is not finite). For
    /// rules over a query's output, `seq` lists derived-event numbers (see
    /// [`Engine::derived_events`]).
    pub fn to_json(&self) -> serde_json::Value {
        let spec = self.spec();
        let mut fields = serde_json::Map::new();
        for (f, v) in spec.fields.iter().zip(&self.raw.fields) {
            fields.insert(f.name.clone(), self.engine.render_value(*v, f.ty));
        }
        let mut out = serde_json::Map::new();
        out.insert("rule".into(), json!(self.rule()));
        out.insert("signal".into(), json!(spec.signal));
        out.insert("ts".into(), json!(self.raw.ts));
        out.insert("key".into(), json!(self.key()));
        out.insert("seq".into(), json!(self.raw.seq));
        out.insert("fields".into(), serde_json::Value::Object(fields));
        if let Some(score) = self.raw.score {
            // `from_f64` is `None` for NaN and infinities, which JSON cannot hold.
            let v = serde_json::Number::from_f64(score).map_or(serde_json::Value::Null, Into::into);
            out.insert("score".into(), v);
        }
        out.insert("id".into(), json!(self.id()));
        serde_json::Value::Object(out)
    }
}

/// Event-time options by type and field name; [`Engine::build`] resolves them against the
/// program's catalog. All durations are ns. See `docs/time.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeOptions {
    /// Bounded out-of-orderness of the input (0: events arrive in time order).
    pub max_delay: i64,
    /// Input types that are sources of their own, with their own bound.
    pub max_delay_per_type: Vec<(String, i64)>,
    /// Allowed lateness: events up to this much behind the watermark are still admitted.
    pub allowed_lateness: i64,
    /// Optional deduplication by an id field.
    pub dedup: Option<DedupOptions>,
}

/// Deduplication by an id field: every input type with a field of this name is deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupOptions {
    /// Name of the id field.
    pub field: String,
    /// Events of one type with equal ids whose times differ by at most this are duplicates.
    pub horizon: i64,
}

/// Which matcher runs the rules. Both give the same signals in the same order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MatcherKind {
    /// [`cep_core::fast::FastMatcher`]: skips events that provably change nothing.
    #[default]
    Fast,
    /// [`ReferenceMatcher`]: the semantic oracle.
    Reference,
}

/// Engine options.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Matcher limits.
    pub matcher: MatcherConfig,
    /// Event time: reordering, lateness, dedup.
    pub time: TimeOptions,
    /// Which matcher runs the rules.
    pub kind: MatcherKind,
    /// Run only one shard of every rule's partition keys (`None`: all keys). Everything else
    /// (event time, queries, watermarks, step counting) runs exactly as unsharded, so the
    /// outputs of shards `0..count` merged by [`Signal::order`] equal the unsharded output.
    pub shard: Option<ShardSpec>,
}

/// What [`Engine::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Delivered to the operators now (possibly with buffered events released before it).
    Delivered,
    /// Delivered now although the watermark had passed it (within allowed lateness).
    AdmittedLate,
    /// Put in the reorder buffer; delivered, in time order, once the watermark passes it (which
    /// may already happen within the same call, when the event itself advances the watermark).
    Buffered,
    /// Later than watermark minus allowed lateness: not delivered. Write it to the late output.
    Late,
    /// A repeated id within the dedup horizon: dropped.
    Duplicate,
}

/// Counters of the engine's event-time layer and derived streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Reordering, lateness and dedup counters.
    pub time: TimeStats,
    /// Derived events emitted by all queries.
    pub derived_events: u64,
}

/// A windowed query as the engine drives it (a trait so tests can substitute a double).
trait WindowOperator: std::fmt::Debug + Send {
    fn reads(&self, type_id: TypeId) -> bool;
    fn on_event(&mut self, e: EventView<'_>);
    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>);
    fn stats(&self) -> QueryStats;
}

impl WindowOperator for QueryOperator {
    fn reads(&self, type_id: TypeId) -> bool {
        QueryOperator::reads(self, type_id)
    }
    fn on_event(&mut self, e: EventView<'_>) {
        QueryOperator::on_event(self, e)
    }
    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) {
        QueryOperator::on_watermark(self, w, out)
    }
    fn stats(&self) -> QueryStats {
        QueryOperator::stats(self)
    }
}

/// A compiled program with its run-time state: push events in (in arrival order), get signals out.
///
/// Dataflow (see `docs/time.md`): input events go through the event-time layer
/// ([`cep_core::time::Sequencer`]), which reorders them within the configured bound and produces
/// watermarks. Operators are the queries (in file order) then the rules. Before an event at time
/// `t` every operator is advanced to watermark `t - 1` (less under allowed lateness), then the
/// event goes to every operator that reads its type. When operators are advanced to a watermark
/// `w`, each in turn first receives the derived events that earlier queries emitted at this step
/// (in time order, each preceded by advancing it to `ts - 1`), then `w` itself, which may close
/// its windows and emit derived events for the operators after it.
///
/// Each rule runs on a matcher of [`EngineConfig::kind`]; both kinds give the same signals in the
/// same order. Every matcher call the engine makes (an event, a watermark, the two phases of
/// [`Engine::finish`]) is one *step*, counted whether or not the call does anything, and every
/// signal carries its [`SignalOrder`] (step, then the matcher's order within the call); output is
/// in ascending order. With [`EngineConfig::shard`] the rules keep only their partitions of one
/// shard while everything else runs unchanged, so shards count the same steps and their outputs
/// merge by [`SignalOrder`] into the unsharded output. [`Engine::push_batch`] feeds a whole
/// [`EventBatch`], letting fast matchers evaluate their prefilters with the columnar kernels and
/// pass over rows that cannot change anything.
#[derive(Debug)]
pub struct Engine {
    program: Program,
    symbols: SymbolTable,
    sequencer: Sequencer,
    queries: Vec<Box<dyn WindowOperator>>,
    matchers: Vec<Matcher>,
    /// Watermark per operator: queries first, then rules (kept only with queries; without,
    /// every operator is at `watermark`).
    op_watermarks: Vec<i64>,
    /// Every operator is at least at this watermark.
    watermark: i64,
    next_seq: u64,
    next_derived_seq: u64,
    pending: Vec<RawSignal>,
    /// The step that emitted each pending signal.
    pending_steps: Vec<u64>,
    /// Matcher calls so far (see [`SignalOrder::step`]).
    step: u64,
    /// Scratch: a batch's slots row by row.
    rows: Vec<u64>,
    /// Scratch: the rows of a batch some matcher must see even while idle.
    attention: Vec<u64>,
    /// Derived events emitted during the current watermark step, in emission (seq) order.
    derived: Vec<Event>,
    /// Scratch: one query's output, then indices of derived events an operator reads.
    emitted: Vec<Event>,
    inbox: Vec<usize>,
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
        Self::from_program(program, symbols, config)
    }

    /// Builds an engine from a program compiled elsewhere (e.g. by
    /// `pattern_lang::compile_with_params` with parameter overrides) and the symbol table it was
    /// compiled with.
    pub fn from_program(
        program: Program,
        symbols: SymbolTable,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let queries = program
            .queries
            .iter()
            .map(|q| Box::new(QueryOperator::new(q.clone())) as Box<dyn WindowOperator>)
            .collect();
        Self::assemble(program, symbols, config, queries)
    }

    fn assemble(
        program: Program,
        symbols: SymbolTable,
        config: EngineConfig,
        queries: Vec<Box<dyn WindowOperator>>,
    ) -> Result<Self, EngineError> {
        let time = resolve_time(&program, &config.time)?;
        let sequencer = Sequencer::new(&time).map_err(|e| EngineError::Time(e.to_string()))?;
        if let Some(s) = config.shard
            && !s.is_valid()
        {
            return Err(EngineError::Shard {
                index: s.index,
                count: s.count,
            });
        }
        let matchers: Vec<Matcher> = program
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Matcher::new(
                    config.kind,
                    r.clone(),
                    i,
                    config.matcher,
                    config.shard,
                    program.catalog.slot_count(),
                )
            })
            .collect();
        let operators = queries.len() + matchers.len();
        Ok(Self {
            program,
            symbols,
            sequencer,
            queries,
            matchers,
            op_watermarks: vec![i64::MIN; operators],
            watermark: i64::MIN,
            next_seq: 0,
            next_derived_seq: 0,
            pending: Vec::new(),
            pending_steps: Vec::new(),
            step: 0,
            rows: Vec::new(),
            attention: Vec::new(),
            derived: Vec::new(),
            emitted: Vec::new(),
            inbox: Vec::new(),
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

    /// Counters per rule. `partitions` counts the partitions the matcher created: the reference
    /// matcher keeps one per key it ever saw, the fast matcher one per key while it holds partial
    /// matches (created again when the key becomes active again). Sharded engines count the
    /// events and partitions of their own keys only.
    pub fn stats(&self) -> Vec<MatcherStats> {
        self.matchers.iter().map(Matcher::stats).collect()
    }

    /// Counters per query (in file order); `emitted` counts its derived events.
    pub fn query_stats(&self) -> Vec<QueryStats> {
        self.queries.iter().map(|q| q.stats()).collect()
    }

    /// Event-time counters (late, admitted late, duplicates, reordered, buffer) and the number
    /// of derived events.
    pub fn engine_stats(&self) -> EngineStats {
        EngineStats {
            time: self.sequencer.stats(),
            derived_events: self.next_derived_seq,
        }
    }

    /// Derived events emitted so far; they are numbered `0..derived_events()` in emission order,
    /// and signals of rules over query outputs list these numbers in `seq`.
    pub fn derived_events(&self) -> u64 {
        self.next_derived_seq
    }

    /// Matcher calls so far ([`SignalOrder::step`]): the same in every shard after the same
    /// input, so every signal with a step up to it is final once all shards report it.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The watermark the operators have reached (`i64::MIN` before the first).
    pub fn watermark(&self) -> i64 {
        self.watermark
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

    /// Pushes one event (in arrival order, sequence numbers rising); `on_signal` is called for
    /// each signal it completes. Returns what the event-time layer did with it: a
    /// [`Admission::Late`] event was not delivered and belongs in the late output.
    pub fn push(&mut self, e: &Event, on_signal: impl FnMut(Signal<'_>)) -> Admission {
        self.push_view(e.view(), on_signal)
    }

    /// Pushes one borrowed event (the replay hot path: in-order input with no delay is delivered
    /// without copying).
    pub fn push_view(&mut self, e: EventView<'_>, on_signal: impl FnMut(Signal<'_>)) -> Admission {
        let admission = self.arrive(e, |engine| engine.deliver(e, None));
        self.flush(on_signal);
        admission
    }

    /// Pushes the rows of `batch` in order, with the same semantics as [`Self::push_view`] for
    /// each row; `on_late(row)` is called for each row that came back [`Admission::Late`].
    ///
    /// The fast matchers first evaluate their prefilters over the whole batch with the columnar
    /// kernels; rows delivered at once use those masks, events released later from the reorder
    /// buffer are checked one by one.
    pub fn push_batch(
        &mut self,
        batch: &EventBatch,
        mut on_signal: impl FnMut(Signal<'_>),
        mut on_late: impl FnMut(usize),
    ) {
        for m in &mut self.matchers {
            m.prepare_batch(batch);
        }
        let mut rows = std::mem::take(&mut self.rows);
        let (seq, ts, types) = (batch.seq(), batch.ts(), batch.type_ids());
        if self.sequencer.reads_slots() {
            // The rows' slots, row after row: every event view is a slice of it.
            let width = batch.slot_count();
            rows.clear();
            rows.resize(batch.len() * width, 0);
            for c in 0..width {
                for (r, &x) in batch.slot_column(c).iter().enumerate() {
                    rows[r * width + c] = x;
                }
            }
            for i in 0..batch.len() {
                let e = EventView {
                    seq: seq[i],
                    ts: ts[i],
                    type_id: types[i],
                    slots: &rows[i * width..(i + 1) * width],
                };
                if self.arrive(e, |engine| engine.deliver(e, Some(i))) == Admission::Late {
                    on_late(i);
                }
                self.flush(&mut on_signal);
            }
        } else if self.queries.is_empty() && self.matchers.iter().all(Matcher::skips) {
            self.push_rows_skipping(batch, &mut rows, &mut on_signal, &mut on_late);
        } else {
            // The event-time layer reads no slots here, and the operators read a row's slots
            // (copied into `rows`) only when they process it.
            for i in 0..batch.len() {
                let e = EventView {
                    seq: seq[i],
                    ts: ts[i],
                    type_id: types[i],
                    slots: &[],
                };
                let admission = self.arrive(e, |engine| engine.deliver_row(batch, i, &mut rows));
                if admission == Admission::Late {
                    on_late(i);
                }
                self.flush(&mut on_signal);
            }
        }
        self.rows = rows;
    }

    /// [`Self::push_batch`] when the event-time layer reads no slots, there are no queries, and
    /// every matcher skips events: while every matcher is idle (no partition holds a run), rows
    /// that no prefilter passes are not fed to the matchers at all. Their steps are counted, and
    /// each matcher accounts for their positions in bulk ([`FastMatcher::skip_rows`]) before it
    /// is fed the next row, so everything else is as in the row-by-row path.
    fn push_rows_skipping(
        &mut self,
        batch: &EventBatch,
        rows: &mut Vec<u64>,
        mut on_signal: impl FnMut(Signal<'_>),
        mut on_late: impl FnMut(usize),
    ) {
        let mut attention = std::mem::take(&mut self.attention);
        attention.clear();
        attention.resize(cep_core::kernel::mask_words(batch.len()), 0);
        for m in &self.matchers {
            let mask = match m {
                Matcher::Fast(m) => m.attention(),
                Matcher::Bits(m) => m.attention(),
                Matcher::Reference(_) => None,
            };
            if let Some(mask) = mask {
                for (a, w) in attention.iter_mut().zip(mask) {
                    *a |= w;
                }
            }
        }
        let matchers = self.matchers.len() as u64;
        // Rows from here on have been delivered but not fed to the matchers.
        let mut skipped_from = 0;
        let mut idle = false;
        let (seq, ts, types) = (batch.seq(), batch.ts(), batch.type_ids());
        for i in 0..batch.len() {
            let e = EventView {
                seq: seq[i],
                ts: ts[i],
                type_id: types[i],
                slots: &[],
            };
            let admission = self.arrive(e, |engine| {
                // A watermark may have emptied the last partitions.
                idle = idle || engine.matchers.iter().all(Matcher::is_idle);
                if idle && !cep_core::kernel::mask_bit(&attention, i) {
                    engine.step += matchers;
                    return;
                }
                for m in &mut engine.matchers {
                    m.skip_rows(skipped_from, i);
                }
                engine.deliver_row(batch, i, rows);
                skipped_from = i + 1;
                idle = engine.matchers.iter().all(Matcher::is_idle);
            });
            if !matches!(admission, Admission::Delivered | Admission::AdmittedLate) {
                // Not delivered: no position.
                for m in &mut self.matchers {
                    m.skip_rows(skipped_from, i);
                }
                skipped_from = i + 1;
                if admission == Admission::Late {
                    on_late(i);
                }
            }
            if !self.pending.is_empty() {
                self.flush(&mut on_signal);
            }
        }
        for m in &mut self.matchers {
            m.skip_rows(skipped_from, batch.len());
        }
        self.attention = attention;
    }

    /// One arrival through the event-time layer to the operators (signals stay pending); `row`:
    /// its row in the batch last prepared by the matchers.
    #[inline(always)]
    fn arrive(&mut self, e: EventView<'_>, deliver: impl FnOnce(&mut Self)) -> Admission {
        self.next_seq = self.next_seq.max(e.seq + 1);
        let admission = match self.sequencer.arrive(e) {
            Arrival::Deliver {
                advance_to,
                admitted_late,
            } => {
                self.advance(advance_to);
                deliver(self);
                if admitted_late {
                    Admission::AdmittedLate
                } else {
                    Admission::Delivered
                }
            }
            Arrival::Buffered => Admission::Buffered,
            Arrival::Late => Admission::Late,
            Arrival::Duplicate => Admission::Duplicate,
        };
        self.drain();
        admission
    }

    /// An explicit watermark from the input: every event with `ts <= w` has arrived. Releases
    /// buffered events up to it and advances the operators (minus allowed lateness), which may
    /// fire `within` expiries, timeouts, absences and windows. Lower than the current watermark:
    /// no effect.
    pub fn watermark_to(&mut self, w: i64, on_signal: impl FnMut(Signal<'_>)) {
        self.sequencer.watermark(w);
        self.drain();
        self.flush(on_signal);
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

    /// Ends the stream: releases buffered events, advances every operator to `i64::MAX` (closing
    /// every window and expiring every partial match), then reports matches that were waiting
    /// for better alternatives to die.
    pub fn finish(&mut self, on_signal: impl FnMut(Signal<'_>)) {
        self.sequencer.finish();
        self.drain();
        for m in &mut self.matchers {
            self.step += 1;
            m.on_watermark(i64::MAX, &mut self.pending);
            tag(&self.pending, &mut self.pending_steps, self.step);
            self.step += 1;
            m.finish_runs(&mut self.pending);
            tag(&self.pending, &mut self.pending_steps, self.step);
        }
        self.flush(on_signal);
    }

    /// Hands the pending signals to `on_signal`.
    #[inline]
    fn flush(&mut self, mut on_signal: impl FnMut(Signal<'_>)) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for (raw, &step) in pending.iter().zip(&self.pending_steps) {
            on_signal(Signal {
                engine: self,
                raw,
                step,
            });
        }
        self.pending = pending;
        self.pending.clear();
        self.pending_steps.clear();
    }

    /// Delivers what the sequencer released: buffered events and watermarks.
    #[inline(always)]
    fn drain(&mut self) {
        while let Some(item) = self.sequencer.pop_ready() {
            match item {
                Ready::Event { event, advance_to } => {
                    self.advance(advance_to);
                    self.deliver(event.view(), None);
                }
                Ready::Watermark(w) => self.advance(w),
            }
        }
    }

    /// Gives an input event to every operator that reads its type (queries, then rules); `row`:
    /// its row in the batch last prepared by the matchers.
    #[inline]
    fn deliver(&mut self, e: EventView<'_>, row: Option<usize>) {
        for q in &mut self.queries {
            if q.reads(e.type_id) {
                q.on_event(e);
            }
        }
        for m in &mut self.matchers {
            self.step += 1;
            m.on_event_row(e, row, &mut self.pending);
            tag(&self.pending, &mut self.pending_steps, self.step);
        }
    }

    /// [`Self::deliver`] for row `row` of `batch` (the batch last prepared by the matchers),
    /// copying its slots into `scratch` only for operators that process it.
    #[inline]
    fn deliver_row(&mut self, batch: &EventBatch, row: usize, scratch: &mut Vec<u64>) {
        let view = |scratch: &mut Vec<u64>| {
            batch.copy_slots(row, scratch);
        };
        let type_id = batch.type_ids()[row];
        for q in &mut self.queries {
            if q.reads(type_id) {
                view(scratch);
                q.on_event(EventView {
                    seq: batch.seq()[row],
                    ts: batch.ts()[row],
                    type_id,
                    slots: scratch,
                });
            }
        }
        for m in &mut self.matchers {
            self.step += 1;
            m.on_batch_row(batch, row, scratch, &mut self.pending);
            tag(&self.pending, &mut self.pending_steps, self.step);
        }
    }

    /// Advances every operator to watermark `w`, passing derived events downstream in time order.
    #[inline(always)]
    fn advance(&mut self, w: i64) {
        if w <= self.watermark {
            return;
        }
        self.watermark = w;
        if !self.queries.is_empty() {
            self.advance_with_queries(w);
            return;
        }
        // Without queries every matcher is at `self.watermark`, which `w` exceeds (so the
        // per-operator watermarks are not needed).
        for m in &mut self.matchers {
            self.step += 1;
            // A matcher with no timer due by `w` would do nothing; the step counts anyway.
            if m.next_deadline() <= w {
                m.on_watermark(w, &mut self.pending);
                tag(&self.pending, &mut self.pending_steps, self.step);
            }
        }
    }

    /// [`Self::advance`] with queries: derived events flow downstream in time order.
    fn advance_with_queries(&mut self, w: i64) {
        self.derived.clear();
        let nq = self.queries.len();
        for i in 0..nq + self.matchers.len() {
            // Derived events from earlier queries that this operator reads, by (ts, seq).
            self.inbox.clear();
            for (k, d) in self.derived.iter().enumerate() {
                let reads = match i.checked_sub(nq) {
                    None => self.queries[i].reads(d.type_id),
                    Some(r) => self.matchers[r].rule().reads(d.type_id),
                };
                if reads {
                    self.inbox.push(k);
                }
            }
            // Stable: equal times keep emission order, which is seq order.
            let derived = &self.derived;
            self.inbox.sort_by_key(|&k| derived[k].ts);
            for &k in &self.inbox {
                let d = &self.derived[k];
                let before = d.ts.saturating_sub(1);
                let at = &mut self.op_watermarks[i];
                match i.checked_sub(nq) {
                    None => {
                        let q = &mut self.queries[i];
                        if before > *at {
                            *at = before;
                            q.on_watermark(before, &mut self.emitted);
                        }
                        q.on_event(d.view());
                    }
                    Some(r) => {
                        let m = &mut self.matchers[r];
                        if before > *at {
                            *at = before;
                            self.step += 1;
                            m.on_watermark(before, &mut self.pending);
                            tag(&self.pending, &mut self.pending_steps, self.step);
                        }
                        self.step += 1;
                        m.on_event(d.view(), &mut self.pending);
                        tag(&self.pending, &mut self.pending_steps, self.step);
                    }
                }
            }
            let at = &mut self.op_watermarks[i];
            if w > *at {
                *at = w;
                match i.checked_sub(nq) {
                    None => self.queries[i].on_watermark(w, &mut self.emitted),
                    Some(r) => {
                        self.step += 1;
                        self.matchers[r].on_watermark(w, &mut self.pending);
                        tag(&self.pending, &mut self.pending_steps, self.step);
                    }
                }
            }
            // Number what this query emitted (during its inbox and its watermark).
            for mut d in self.emitted.drain(..) {
                d.seq = self.next_derived_seq;
                self.next_derived_seq += 1;
                self.derived.push(d);
            }
        }
        self.derived.clear();
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

/// Records `step` as the emitting step of the signals pending beyond those already tagged.
#[inline]
fn tag(pending: &[RawSignal], steps: &mut Vec<u64>, step: u64) {
    if steps.len() < pending.len() {
        steps.resize(pending.len(), step);
    }
}

/// A rule's matcher of the configured kind.
// One per rule in a Vec: the size difference costs nothing, and boxing would add an indirection
// to every call on the per-event path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Matcher {
    Reference(ReferenceMatcher),
    Fast(FastMatcher),
    /// The fast path for strict sequences of single-event conditions (bit-parallel).
    Bits(ShiftAndMatcher),
}

impl Matcher {
    fn new(
        kind: MatcherKind,
        rule: Rule,
        index: usize,
        config: MatcherConfig,
        shard: Option<ShardSpec>,
        slot_count: usize,
    ) -> Self {
        match kind {
            MatcherKind::Reference => {
                Matcher::Reference(ReferenceMatcher::new(rule, index, config).with_shard(shard))
            }
            MatcherKind::Fast if ShiftAndMatcher::supports(&rule, &config) => {
                match ShiftAndMatcher::new(rule.clone(), index, config, slot_count) {
                    Some(m) => Matcher::Bits(m.with_shard(shard)),
                    None => Matcher::Fast(FastMatcher::new(rule, index, config).with_shard(shard)),
                }
            }
            MatcherKind::Fast => {
                Matcher::Fast(FastMatcher::new(rule, index, config).with_shard(shard))
            }
        }
    }

    fn rule(&self) -> &Rule {
        match self {
            Matcher::Reference(m) => m.rule(),
            Matcher::Fast(m) => m.rule(),
            Matcher::Bits(m) => m.rule(),
        }
    }

    /// The earliest deadline in the matcher's timer heap (`i64::MAX` if none).
    #[inline]
    fn next_deadline(&self) -> i64 {
        match self {
            Matcher::Reference(m) => m.next_deadline(),
            Matcher::Fast(m) => m.next_deadline(),
            Matcher::Bits(m) => m.next_deadline(),
        }
    }

    fn stats(&self) -> MatcherStats {
        match self {
            Matcher::Reference(m) => m.stats(),
            Matcher::Fast(m) => m.stats(),
            Matcher::Bits(m) => m.stats(),
        }
    }

    #[inline]
    fn on_event(&mut self, e: EventView<'_>, out: &mut Vec<RawSignal>) {
        self.on_event_row(e, None, out);
    }

    /// `row`: the event's row in the batch last given to [`Self::prepare_batch`].
    #[inline]
    fn on_event_row(&mut self, e: EventView<'_>, row: Option<usize>, out: &mut Vec<RawSignal>) {
        match self {
            Matcher::Reference(m) => m.on_event(e, out),
            Matcher::Fast(m) => {
                let can_start = row.and_then(|r| m.can_start(r));
                m.on_event_with(e, can_start, out)
            }
            Matcher::Bits(m) => m.on_event(e, out),
        }
    }

    /// Row `row` of the batch last given to [`Self::prepare_batch`]; its slots are copied into
    /// `scratch` only if the matcher processes it.
    #[inline]
    fn on_batch_row(
        &mut self,
        batch: &EventBatch,
        row: usize,
        scratch: &mut Vec<u64>,
        out: &mut Vec<RawSignal>,
    ) {
        match self {
            Matcher::Reference(m) => {
                let type_id = batch.type_ids()[row];
                if m.rule().reads(type_id) {
                    batch.copy_slots(row, scratch);
                    let e = EventView {
                        seq: batch.seq()[row],
                        ts: batch.ts()[row],
                        type_id,
                        slots: scratch,
                    };
                    m.on_event(e, out);
                }
            }
            Matcher::Fast(m) => m.on_batch_row(batch, row, scratch, out),
            Matcher::Bits(m) => m.on_batch_row(batch, row, scratch, out),
        }
    }

    /// True for a fast or bit-parallel matcher that skips events.
    fn skips(&self) -> bool {
        match self {
            Matcher::Reference(_) => false,
            Matcher::Fast(m) => m.skips(),
            Matcher::Bits(m) => m.skips(),
        }
    }

    /// True for a fast or bit-parallel matcher that skips events and holds no partition.
    #[inline]
    fn is_idle(&self) -> bool {
        match self {
            Matcher::Reference(_) => false,
            Matcher::Fast(m) => m.is_idle(),
            Matcher::Bits(m) => m.skips() && m.is_idle(),
        }
    }

    /// See [`FastMatcher::skip_rows`].
    #[inline]
    fn skip_rows(&mut self, from: usize, to: usize) {
        if from < to {
            match self {
                Matcher::Reference(_) => {}
                Matcher::Fast(m) => m.skip_rows(from, to),
                Matcher::Bits(m) => m.skip_rows(from, to),
            }
        }
    }

    fn prepare_batch(&mut self, batch: &EventBatch) {
        match self {
            Matcher::Reference(_) => {}
            Matcher::Fast(m) => m.prepare_batch(batch),
            Matcher::Bits(m) => m.prepare_batch(batch),
        }
    }

    #[inline]
    fn on_watermark(&mut self, w: i64, out: &mut Vec<RawSignal>) {
        match self {
            Matcher::Reference(m) => m.on_watermark(w, out),
            Matcher::Fast(m) => m.on_watermark(w, out),
            Matcher::Bits(m) => m.on_watermark(w, out),
        }
    }

    fn finish_runs(&mut self, out: &mut Vec<RawSignal>) {
        match self {
            Matcher::Reference(m) => m.finish_runs(out),
            Matcher::Fast(m) => m.finish_runs(out),
            Matcher::Bits(m) => m.finish_runs(out),
        }
    }
}

/// Resolves type and field names of `options` against the program's input types (every type
/// that is not a query's output).
pub fn resolve_time(program: &Program, options: &TimeOptions) -> Result<TimeConfig, EngineError> {
    let catalog = &program.catalog;
    let is_derived = |t: TypeId| program.queries.iter().any(|q| q.output == t);
    let input_types: Vec<TypeId> = (0..catalog.types().len())
        .filter_map(|i| TypeId::try_from(i).ok())
        .filter(|&t| !is_derived(t))
        .collect();
    let mut per_type = Vec::new();
    for (name, delay) in &options.max_delay_per_type {
        let t = catalog.type_by_name(name).ok_or_else(|| {
            EngineError::Time(format!(
                "max delay for unknown event type `{name}` (known: {})",
                type_names(catalog, &input_types)
            ))
        })?;
        if is_derived(t) {
            return Err(EngineError::Time(format!(
                "`{name}` is a query's output: its time follows its inputs, it takes no max delay"
            )));
        }
        if per_type.iter().any(|&(u, _)| u == t) {
            return Err(EngineError::Time(format!(
                "more than one max delay for `{name}`"
            )));
        }
        per_type.push((t, *delay));
    }
    let dedup = match &options.dedup {
        None => None,
        Some(d) => {
            let mut id_slot = vec![None; catalog.types().len()];
            for &t in &input_types {
                id_slot[usize::from(t)] = catalog.event_type(t).and_then(|et| et.slot(&d.field));
            }
            if id_slot.iter().all(Option::is_none) {
                return Err(EngineError::Time(format!(
                    "dedup field `{}`: no input event type has it (types: {})",
                    d.field,
                    type_names(catalog, &input_types)
                )));
            }
            Some(DedupConfig {
                id_slot,
                horizon: d.horizon,
            })
        }
    };
    Ok(TimeConfig {
        max_delay: options.max_delay,
        max_delay_per_type: per_type,
        allowed_lateness: options.allowed_lateness,
        dedup,
    })
}

fn type_names(catalog: &Catalog, types: &[TypeId]) -> String {
    types
        .iter()
        .filter_map(|&t| catalog.event_type(t))
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The label class a rule or query is scored against: the first of `names` (its signal or
/// output name, then its own name) that names a class other than 0 (`none`) in `label_names`.
pub fn label_class(label_names: &[String], names: &[&str]) -> Option<u16> {
    names.iter().find_map(|n| {
        label_names
            .iter()
            .position(|l| l == n)
            .filter(|&i| i > 0)
            .and_then(|i| u16::try_from(i).ok())
    })
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

#[cfg(test)]
mod tests {
    //! The engine's dataflow with hand-built window operators standing in for compiled queries.

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use cep_core::rule::EmitField;

    /// A tumbling count window: one derived event `{ n }` at each window end.
    #[derive(Debug)]
    struct Tumbling {
        name: &'static str,
        reads: TypeId,
        output: TypeId,
        size: i64,
        counts: BTreeMap<i64, i64>,
        watermark: i64,
        stats: QueryStats,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Tumbling {
        fn boxed(
            name: &'static str,
            reads: TypeId,
            output: TypeId,
            size_s: i64,
            log: &Arc<Mutex<Vec<String>>>,
        ) -> Box<dyn WindowOperator> {
            Box::new(Self {
                name,
                reads,
                output,
                size: size_s * 1_000_000_000,
                counts: BTreeMap::new(),
                watermark: i64::MIN,
                stats: QueryStats::default(),
                log: Arc::clone(log),
            })
        }

        fn note(&self, s: String) {
            self.log.lock().expect("test log").push(s);
        }
    }

    impl WindowOperator for Tumbling {
        fn reads(&self, type_id: TypeId) -> bool {
            type_id == self.reads
        }
        fn on_event(&mut self, e: EventView<'_>) {
            assert!(
                e.ts > self.watermark,
                "{}: event at {} after watermark {}",
                self.name,
                e.ts,
                self.watermark
            );
            self.stats.events += 1;
            *self
                .counts
                .entry(e.ts.div_euclid(self.size) * self.size)
                .or_default() += 1;
            self.note(format!(
                "{} event {}@{}s",
                self.name,
                e.seq,
                e.ts / 1_000_000_000
            ));
        }
        fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) {
            assert!(
                w > self.watermark,
                "{}: watermark went from {} to {w}",
                self.name,
                self.watermark
            );
            self.watermark = w;
            while let Some((&start, &n)) = self.counts.first_key_value() {
                if w < start + self.size - 1 {
                    break;
                }
                self.counts.remove(&start);
                self.stats.emitted += 1;
                out.push(Event {
                    seq: 0,
                    ts: start + self.size,
                    type_id: self.output,
                    label: Label::default(),
                    slots: vec![n as u64],
                });
            }
        }
        fn stats(&self) -> QueryStats {
            self.stats
        }
    }

    const DECLS: &str = "
event A { v: i64 }
event B { v: i64 }
event Bar { n: i64 }
event Baz { n: i64 }
";

    fn engine(
        rules: &str,
        queries: impl FnOnce(&Catalog) -> Vec<Box<dyn WindowOperator>>,
    ) -> Engine {
        let mut symbols = SymbolTable::new();
        let src = format!("{DECLS}{rules}");
        let program = pattern_lang::compile(&src, None, &mut symbols).expect("test rules compile");
        let qs = queries(&program.catalog);
        Engine::assemble(program, symbols, EngineConfig::default(), qs).expect("engine")
    }

    fn ty(c: &Catalog, name: &str) -> TypeId {
        c.type_by_name(name).expect("declared type")
    }

    fn s(n: i64) -> i64 {
        n * 1_000_000_000
    }

    #[test]
    fn derived_events_reach_rules_in_time_order_across_queries() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut e = engine(
            "rule pairs from Bar pattern x y define x as Bar, y as Bar select all after match no skip
             emit pair { first: x.n, second: y.n }",
            |c| {
                vec![
                    Tumbling::boxed("q10", ty(c, "A"), ty(c, "Bar"), 10, &log),
                    Tumbling::boxed("q4", ty(c, "B"), ty(c, "Bar"), 4, &log),
                ]
            },
        );
        let mut got = Vec::new();
        let mut fields = Vec::new();
        for (t, at) in [("A", 1), ("B", 2), ("A", 3), ("B", 5), ("A", 12), ("B", 13)] {
            let ev = e.event(t, s(at), &[]).expect("event");
            let adm = e.push(&ev, |sig| {
                got.push(sig.raw.seq.clone());
                fields.push(sig.to_json()["fields"].clone());
            });
            assert_eq!(adm, Admission::Delivered);
        }
        e.finish(|sig| got.push(sig.raw.seq.clone()));
        // Derived: 0 = q4 [0,4s) at 4s; at the watermark before 12s, 1 = q10 [0,10s) at 10s and
        // 2 = q4 [4s,8s) at 8s (emission order follows query order, delivery follows time);
        // at the end 3 = q10 at 20s, 4 = q4 at 16s.
        assert_eq!(got, vec![vec![0, 2], vec![2, 1], vec![1, 4], vec![4, 3]]);
        assert_eq!(fields[0], json!({"first": 1, "second": 1}));
        assert_eq!(e.derived_events(), 5);
        assert_eq!(e.engine_stats().derived_events, 5);
        let qs = e.query_stats();
        assert_eq!((qs[0].events, qs[0].emitted), (3, 2));
        assert_eq!((qs[1].events, qs[1].emitted), (3, 3));
        assert_eq!(e.watermark(), i64::MAX);
    }

    #[test]
    fn a_query_reading_a_query_gets_each_derived_event_before_the_watermark_passes_it() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut e = engine(
            "rule big from Baz pattern x define x as Baz select all emit big { n: x.n }",
            |c| {
                vec![
                    Tumbling::boxed("bars", ty(c, "A"), ty(c, "Bar"), 10, &log),
                    Tumbling::boxed("bazs", ty(c, "Bar"), ty(c, "Baz"), 20, &log),
                ]
            },
        );
        let mut got = Vec::new();
        for at in [1, 11, 25] {
            let ev = e.event("A", s(at), &[]).expect("event");
            e.push(&ev, |sig| {
                got.push((sig.raw.seq.clone(), sig.to_json()["fields"]["n"].clone()))
            });
        }
        e.finish(|sig| got.push((sig.raw.seq.clone(), sig.to_json()["fields"]["n"].clone())));
        // bars: 0 @10s, 1 @20s, 3 @30s; bazs: [0,20s) closes before bar 1 (at 20s) arrives -> 2
        // with n = 1; [20s,40s) at the end -> 4 with n = 2.
        assert_eq!(got, vec![(vec![2], json!(1)), (vec![4], json!(2))]);
        // Each operator checks that no event comes at or below its watermark; the order of what
        // `bazs` read is the order of time.
        let log = log.lock().expect("test log").clone();
        let pos = |s: &str| {
            log.iter()
                .position(|l| l == s)
                .unwrap_or_else(|| panic!("{s} in {log:?}"))
        };
        assert!(pos("bazs event 0@10s") < pos("bazs event 1@20s"));
    }

    #[test]
    fn operators_wait_for_the_watermark_under_a_delay() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut e = engine(
            "rule r from Bar pattern x define x as Bar select all",
            |c| vec![Tumbling::boxed("q", ty(c, "A"), ty(c, "Bar"), 10, &log)],
        );
        e.sequencer = Sequencer::new(&TimeConfig {
            max_delay: s(5),
            ..TimeConfig::default()
        })
        .expect("config");
        let mut got = Vec::new();
        for at in [3, 1, 12, 9, 16] {
            let ev = e.event("A", s(at), &[]).expect("event");
            let adm = e.push(&ev, |sig| got.push(sig.raw.seq.clone()));
            assert_eq!(adm, Admission::Buffered, "A@{at}s");
        }
        // W = 16s - 5s - 1ns: [0,10s) holds 1s, 3s, 9s and closes; 12s is still buffered.
        assert_eq!(got, vec![vec![0]]);
        assert_eq!(e.query_stats()[0].events, 3);
        let late = e.event("A", s(2), &[]).expect("event");
        assert_eq!(e.push(&late, |_| {}), Admission::Late);
        e.finish(|sig| got.push(sig.raw.seq.clone()));
        assert_eq!(got, vec![vec![0], vec![1]]);
        let st = e.engine_stats().time;
        assert_eq!((st.late, st.reordered, st.max_buffered), (1, 2, 3));
    }

    #[test]
    fn timeout_signals_render_with_the_timeout_spec() {
        let mut e = engine(
            "event Order { k: sym }
             rule r from Order partition by k pattern o define o as Order emit placed { k }",
            |_| Vec::new(),
        );
        let rule = &mut e.program.rules[0];
        rule.timeout = Some(EmitSpec {
            signal: "unpaid".into(),
            fields: vec![
                EmitField {
                    name: "who".into(),
                    expr: rule.emit.fields[0].expr.clone(),
                    ty: rule.emit.fields[0].ty,
                },
                EmitField {
                    name: "paid".into(),
                    expr: rule.emit.fields[0].expr.clone(),
                    ty: None,
                },
            ],
            score: None,
        });
        let ev = e
            .event("Order", 5, &[("k", FieldValue::Str("acct7"))])
            .expect("event");
        let mut placed = None;
        e.push(&ev, |sig| placed = Some(sig.raw.clone()));
        let mut raw = placed.expect("a match signal");
        let sym = raw.fields[0];
        raw.kind = SignalKind::Timeout;
        raw.fields = vec![sym, Value::Null];
        let sig = Signal {
            engine: &e,
            raw: &raw,
            step: 0,
        };
        assert_eq!(sig.signal(), "unpaid");
        let j = sig.to_json();
        assert_eq!(j["signal"], "unpaid");
        assert_eq!(j["rule"], "r");
        assert_eq!(j["key"], "acct7");
        assert_eq!(j["fields"], json!({"who": "acct7", "paid": null}));
        assert!(j.get("score").is_none());
        let keys: Vec<&str> = j
            .as_object()
            .map_or(Vec::new(), |o| o.keys().map(String::as_str).collect());
        assert_eq!(keys, ["rule", "signal", "ts", "key", "seq", "fields", "id"]);
        for (score, want) in [
            (2.5, json!(2.5)),
            (f64::NAN, json!(null)),
            (f64::INFINITY, json!(null)),
        ] {
            raw.score = Some(score);
            let sig = Signal {
                engine: &e,
                raw: &raw,
                step: 0,
            };
            let j = sig.to_json();
            assert_eq!(j["score"], want);
            let text = j.to_string();
            let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
            assert!(
                at("fields") < at("score") && at("score") < at("id"),
                "{text}"
            );
        }
    }
}
