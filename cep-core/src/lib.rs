//! `cep-core`: the engine's data model and the reference matcher.
//!
//! Stages that live here, in run-time order:
//! - [`schema`] and [`symbol`]: event types and interned strings (input: declarations; output: a
//!   [`schema::Catalog`] that tapes, rules and batches share).
//! - [`event`]: fixed-width records and struct-of-arrays [`event::EventBatch`]es (input: decoded
//!   feeds; next stage: a matcher).
//! - [`expr`]: compiled conditions evaluated against an event and a partial match.
//! - [`kernel`]: single-event conditions compiled into columnar (SIMD) kernels that turn an
//!   [`event::EventBatch`] into one bitmask per predicate (next stage: the fast matcher).
//! - [`nfa`]: the compiled automaton of one rule ([`nfa::Builder`] -> [`nfa::Nfa`]).
//! - [`rule`]: a compiled rule (stream filter, partition key, automaton, emit spec).
//! - [`time`]: the event-time layer: reorder buffer, watermarks, allowed lateness, dedup (input:
//!   events in arrival order; output: events in time order and watermarks for the operators).
//! - [`query`]: windowed queries over event time (input: events and watermarks; output: derived
//!   events that rules and other queries read).
//! - [`reference`](mod@reference): the reference matcher, the semantic oracle (input: events; output: [`signal::Signal`]s).
//! - [`fast`]: the fast matcher, the reference matcher's answers without the work for events that
//!   cannot change anything (input: events and prefilter masks from [`kernel`]; output: the same
//!   signals in the same order).
//! - [`shift_and`]: the bit-parallel matcher for strict sequences of single-event conditions
//!   (input: events with their predicate words from the kernels; output: the reference matcher's
//!   signals).
//! - [`signal`]: matches turned into signals (next stage: a sink or scorer).
//!
//! This crate depends on no other workspace crate.

pub mod event;
pub mod expr;
pub mod fast;
pub mod kernel;
pub mod nfa;
pub mod query;
pub mod reference;
pub mod rule;
pub mod schema;
pub mod scorer;
pub mod shift_and;
pub mod signal;
pub mod symbol;
pub mod time;
pub mod value;

pub use event::{Event, EventBatch, EventView};
pub use schema::{Catalog, FieldType, TypeId};
pub use symbol::SymbolTable;
pub use value::Value;
