//! Windowed queries: `query NAME from ... group by ... window ... having ... emit NAME { ... }`.
//!
//! Input: events of the query's `from` types in event-time order, and watermarks. Output: derived
//! events of the query's output type (one per closed window and group that passes `having`), which
//! the engine feeds to the rules and queries that read that type. Next stage: those readers.
//!
//! Windows close on watermark progress ([`QueryOperator::on_watermark`]), never on an event.

use crate::event::{Event, EventView};
use crate::schema::TypeId;

/// One compiled windowed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Query name.
    pub name: String,
    /// Event types the query reads.
    pub from: Vec<TypeId>,
    /// The type of the derived events it emits (registered in the program's catalog).
    pub output: TypeId,
}

/// Counters of one query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Events the query read.
    pub events: u64,
    /// Derived events emitted.
    pub emitted: u64,
    /// Windows currently open over all groups.
    pub open_windows: usize,
}

/// The run-time state of one query.
#[derive(Debug)]
pub struct QueryOperator {
    query: Query,
    stats: QueryStats,
}

impl QueryOperator {
    /// An operator for `query`.
    pub fn new(query: Query) -> Self {
        Self {
            query,
            stats: QueryStats::default(),
        }
    }

    /// The query.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// True if the query reads events of this type.
    pub fn reads(&self, type_id: TypeId) -> bool {
        self.query.from.contains(&type_id)
    }

    /// Counters so far.
    pub fn stats(&self) -> QueryStats {
        self.stats
    }

    /// Adds one event (events arrive in event-time order; all have `ts` > the last watermark).
    pub fn on_event(&mut self, _e: EventView<'_>) {
        self.stats.events += 1;
    }

    /// Closes every window that watermark `w` completes (all events with `ts <= w` have been
    /// given) and appends the derived events in ascending `ts`, ties by group first appearance.
    /// Their `seq` is 0: the engine numbers derived events.
    pub fn on_watermark(&mut self, _w: i64, _out: &mut Vec<Event>) {}
}
