//! Deterministic synthetic event streams with labelled, injected pattern instances.
//!
//! Input: a [`GenSpec`] (stream length, seed, population sizes). Output: exactly
//! [`GenSpec::events`] events pushed, in sequence order with non-decreasing timestamps, into an
//! [`EventSink`], plus a [`Generated`] value describing them (catalog, symbol table, label
//! names, injected instance counts). Next stage: whatever the sink is — a tape writer, an
//! [`EventBatch`] for a matcher, or a `Vec<Event>` in tests.
//!
//! Three generators exist:
//!
//! - [`market()`]: orders, cancels and trades on ~200 symbols by ~5000 accounts, with injected
//!   `layering` (spoofing) and `momentum` (ignition) instances; see [`market`](mod@market).
//! - [`cards()`]: card transactions with injected `card_testing` and `velocity` instances; see
//!   [`cards`](mod@cards).
//! - [`ticks()`]: last trade prices of thousands of instruments with skewed activity, in the
//!   schema of the DEBS 2022 Grand Challenge; nothing is injected; see [`ticks`](mod@ticks).
//!
//! Every event of an injected instance carries `Label { class, instance }`, where `class`
//! indexes [`Generated::label_names`] (0 = `"none"`, background) and `instance` is unique over
//! the whole stream (counting from 1). Background events are built so that they can never form
//! the injected patterns on their own, and injected instances are kept clear of each other, so
//! the rules in `examples/rules/*.cep` match exactly the injected instances.
//!
//! The same seed always gives the same stream. Generation allocates only during setup (symbol
//! names, per-key state); the per-event path works on fixed-size records, so throughput is in
//! the tens of millions of events per second in release builds.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::convert::Infallible;

use cep_core::event::Label;
use cep_core::{Catalog, Event, EventBatch, SymbolTable, TypeId};
use thiserror::Error;

pub mod cards;
pub mod market;
pub mod ticks;
mod to_tape;

pub use cards::{cards, cards_catalog};
pub use market::{market, market_catalog};
pub use ticks::{ticks, ticks_catalog};
pub use to_tape::{Generator, write_tape};

/// 2024-01-02T14:30:00Z (a US market open) in ns since the UNIX epoch: the default start time.
pub const DEFAULT_START_TS: i64 = 1_704_205_800_000_000_000;

/// Variant index of `buy` in the built-in `side` enum.
pub const BUY: u64 = 0;
/// Variant index of `sell` in the built-in `side` enum.
pub const SELL: u64 = 1;

/// Receives generated events in sequence order.
///
/// The sink assigns sequence numbers itself (the n-th pushed event is sequence n). `slots` has
/// one entry per field of the event's type, encoded as documented on [`cep_core::FieldType`];
/// the slice is only valid for the duration of the call.
pub trait EventSink {
    /// Why the sink could not take an event; generation stops at the first error.
    type Error;

    /// Takes one event.
    fn push(
        &mut self,
        ts: i64,
        type_id: TypeId,
        label: Label,
        slots: &[u64],
    ) -> Result<(), Self::Error>;
}

/// Collects events as owned rows, numbering them from the vector's current length.
impl EventSink for Vec<Event> {
    type Error = Infallible;

    fn push(
        &mut self,
        ts: i64,
        type_id: TypeId,
        label: Label,
        slots: &[u64],
    ) -> Result<(), Infallible> {
        let seq = self.len() as u64;
        Vec::push(
            self,
            Event {
                seq,
                ts,
                type_id,
                label,
                slots: slots.to_vec(),
            },
        );
        Ok(())
    }
}

/// Appends events to a batch, numbering them from the batch's current length. Create the batch
/// with the catalog's [`Catalog::slot_count`] columns.
impl EventSink for EventBatch {
    type Error = Infallible;

    fn push(
        &mut self,
        ts: i64,
        type_id: TypeId,
        label: Label,
        slots: &[u64],
    ) -> Result<(), Infallible> {
        let seq = self.len() as u64;
        EventBatch::push(self, seq, ts, type_id, label, slots);
        Ok(())
    }
}

/// A sink that only counts events and folds them into a checksum; for benchmarks and smoke
/// runs that must not store the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountingSink {
    /// Events received.
    pub events: u64,
    /// Events received with a non-zero label class.
    pub labelled: u64,
    /// Order-sensitive checksum of every field of every event (equal streams, equal checksums).
    pub checksum: u64,
}

impl EventSink for CountingSink {
    type Error = Infallible;

    #[inline]
    fn push(
        &mut self,
        ts: i64,
        type_id: TypeId,
        label: Label,
        slots: &[u64],
    ) -> Result<(), Infallible> {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        self.events += 1;
        self.labelled += u64::from(label.class != 0);
        let mut h = self.checksum ^ (ts as u64);
        h = h.rotate_left(23).wrapping_mul(K) ^ u64::from(type_id);
        h = h.rotate_left(23).wrapping_mul(K)
            ^ (u64::from(label.class) << 32 | u64::from(label.instance));
        for &s in slots {
            h = h.rotate_left(23).wrapping_mul(K) ^ s;
        }
        self.checksum = h;
        Ok(())
    }
}

/// What to generate. Each generator reads only the knobs documented as its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    /// Exact number of events to produce (injected events included).
    pub events: u64,
    /// Seed of the pseudo-random generator; equal specs give identical streams.
    pub seed: u64,
    /// Timestamp of the start of the stream, ns since the UNIX epoch.
    pub start_ts: i64,
    /// Mean number of events between two injected instances of the same class; 0 injects none.
    pub inject_every: u64,
    /// Market: number of ticker symbols (`SYM0001`, ...). At least 32. Ticks: number of
    /// instruments, 1 to [`ticks::MAX_TICK_SYMBOLS`] (`strix gen ticks` defaults to
    /// [`ticks::DEFAULT_TICK_SYMBOLS`]).
    pub symbols: u32,
    /// Market: number of trading accounts (`ACC00001`, ...). At least 32.
    pub accounts: u32,
    /// Cards: number of cards (`CARD00001`, ...). At least 16.
    pub cards: u32,
    /// Cards: number of merchants (`MER0001`, ...). At least 2.
    pub merchants: u32,
    /// Cards: number of countries (ISO codes, then `X031`, ...). At least 4.
    pub countries: u32,
}

impl GenSpec {
    /// A spec with the default population sizes (200 symbols, 5000 accounts, 20000 cards, 2000
    /// merchants, 30 countries), one injected instance per class per 5000 events on average, and
    /// the stream starting at [`DEFAULT_START_TS`].
    pub fn new(events: u64, seed: u64) -> Self {
        Self {
            events,
            seed,
            start_ts: DEFAULT_START_TS,
            inject_every: 5_000,
            symbols: 200,
            accounts: 5_000,
            cards: 20_000,
            merchants: 2_000,
            countries: 30,
        }
    }
}

impl Default for GenSpec {
    /// One million events with seed 0; see [`GenSpec::new`].
    fn default() -> Self {
        Self::new(1_000_000, 0)
    }
}

/// Description of a generated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Event types (and enums) of the stream.
    pub catalog: Catalog,
    /// Interned strings; `sym` slots hold ids into this table.
    pub symbols: SymbolTable,
    /// Label class names indexed by `Label::class`; `[0]` is `"none"`.
    pub label_names: Vec<String>,
    /// Injected instances per label class, in class order (class 0 is not listed).
    pub injected: Vec<(String, u64)>,
    /// Timestamp of the last event (the start time when no event was produced).
    pub last_ts: i64,
}

/// Why generation failed.
#[derive(Debug, Error)]
pub enum GenError<E> {
    /// The spec is unusable (the message says which knob and why).
    #[error("invalid generator spec: {0}")]
    Spec(String),
    /// The sink refused an event.
    #[error("event sink failed")]
    Sink(#[source] E),
}

/// Most slots any generated event type has.
const MAX_GEN_SLOTS: usize = 6;

/// One event scheduled for a future timestamp (injected instance events, background cancels).
#[derive(Debug, Clone, Copy)]
struct Pending {
    ts: i64,
    /// Insertion counter: ties on `ts` pop in insertion order, keeping the stream deterministic.
    order: u64,
    type_id: TypeId,
    label: Label,
    len: u8,
    slots: [u64; MAX_GEN_SLOTS],
}

impl Pending {
    fn slots(&self) -> &[u64] {
        &self.slots[..usize::from(self.len)]
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so that [`BinaryHeap`] pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.ts, other.order).cmp(&(self.ts, self.order))
    }
}

/// Min-heap of scheduled events, counting how many of them are labelled (injected).
#[derive(Debug)]
struct Queue {
    heap: BinaryHeap<Pending>,
    next_order: u64,
    injected: u64,
}

impl Queue {
    fn new() -> Self {
        Self {
            heap: BinaryHeap::with_capacity(4096),
            next_order: 0,
            injected: 0,
        }
    }

    /// Schedules an event; `slots` longer than [`MAX_GEN_SLOTS`] are truncated (never the
    /// case for the generators' own types).
    fn push(&mut self, ts: i64, type_id: TypeId, label: Label, slots: &[u64]) {
        let len = slots.len().min(MAX_GEN_SLOTS);
        let mut p = Pending {
            ts,
            order: self.next_order,
            type_id,
            label,
            len: len as u8,
            slots: [0; MAX_GEN_SLOTS],
        };
        p.slots[..len].copy_from_slice(&slots[..len]);
        self.reschedule(p);
    }

    /// Puts a popped event back (possibly with a new timestamp), behind every earlier push.
    fn reschedule(&mut self, mut p: Pending) {
        p.order = self.next_order;
        self.next_order += 1;
        if p.label.class != 0 {
            self.injected += 1;
        }
        self.heap.push(p);
    }

    fn peek_ts(&self) -> Option<i64> {
        self.heap.peek().map(|p| p.ts)
    }

    fn pop(&mut self) -> Option<Pending> {
        let p = self.heap.pop()?;
        if p.label.class != 0 {
            self.injected -= 1;
        }
        Some(p)
    }
}

/// An exponentially distributed gap with the given mean, in ns (capped at 20 means).
#[inline]
fn exp_gap(rng: &mut fastrand::Rng, mean_ns: f64) -> i64 {
    // 1 - u is in (0, 1], so the logarithm is finite and <= 0.
    let g = -(1.0 - rng.f64()).ln() * mean_ns;
    g.min(20.0 * mean_ns) as i64
}

/// Number of events until the next injected instance of one class (uniform, mean `every`).
#[inline]
fn next_injection(rng: &mut fastrand::Rng, every: u64) -> u64 {
    if every == 0 {
        u64::MAX
    } else {
        rng.u64(1..=2 * every)
    }
}

/// Slot encoding of a price or quantity.
#[inline]
fn f(x: f64) -> u64 {
    x.to_bits()
}

/// Slot encoding of an amount in cents, as currency units with two decimals.
#[inline]
fn cents(c: i64) -> u64 {
    (c as f64 / 100.0).to_bits()
}

/// Label names as owned strings.
fn names(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|s| (*s).to_owned()).collect()
}
