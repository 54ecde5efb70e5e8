//! `feeds`: getting events in and out of Strix.
//!
//! - [`tape`]: the `.tape` format (writer, memmap2 reader).
//! - [`csv_import`], [`lobster`]: importers that decode external files into tapes.
//! - [`export`]: tapes back out as CSV or JSON Lines.
//! - [`gen`]: deterministic synthetic market and card-transaction streams with labelled
//!   injected patterns.
//!
//! Every decoder's output is [`cep_core::EventBatch`]es in sequence order; the next stage is a
//! matcher.

pub mod csv_import;
pub mod export;
pub mod r#gen;
pub mod lobster;
pub mod tape;
