//! Event time: the reorder buffer, watermark generator, allowed lateness and deduplication that
//! sit between an input stream and the operators (queries and rule matchers).
//!
//! Input: events in arrival order (tape order; sequence numbers rise with arrival) through
//! [`Sequencer::arrive`], explicit watermarks through [`Sequencer::watermark`], and the end of the
//! stream through [`Sequencer::finish`]. Output: for each arrival an [`Arrival`] verdict (deliver
//! now, buffered, late, duplicate), then [`Ready`] items from [`Sequencer::pop_ready`]: buffered
//! events released in `(ts, seq)` order and operator watermarks. Next stage: the engine, which
//! advances its operators to each item's watermark and hands them the events.
//!
//! Rules (see `docs/time.md`):
//! - Sources: every type with its own delay in [`TimeConfig::max_delay_per_type`] is a source of
//!   its own; all other types form the default source with [`TimeConfig::max_delay`]. A source's
//!   bound is `max_ts_seen - delay - 1`; the input watermark `W` is the minimum over the sources
//!   seen so far (or an explicit watermark, whichever is higher), and never goes back.
//! - Buffered events are released in `(ts, seq)` order once `ts <= W + 1`: every later arrival
//!   that is not late has `ts > W`, and one at exactly `W + 1` arrives later, so its `seq` is
//!   higher. With delay 0 and events in order this is a pass-through: nothing is copied.
//! - Operators see `W - L` (`L` = [`TimeConfig::allowed_lateness`]). An arrival with
//!   `ts <= W - L` is late: it is reported as [`Arrival::Late`] (for the late output) and counted.
//!   One with `W - L < ts <= W` is admitted late and delivered at once, in arrival order.
//! - Dedup (optional): an on-time arrival whose id field equals that of an earlier admitted event
//!   of the same type with `|ts - earlier ts| <= horizon` is dropped and counted. Ids are
//!   forgotten once the operator watermark passes `earlier ts + horizon`.
//! - End of stream: every buffered event is released, then the watermark `i64::MAX`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use crate::event::{Event, EventView, Label};
use crate::schema::TypeId;

/// Event-time settings, resolved against a catalog (type ids and slots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeConfig {
    /// Bounded out-of-orderness of the default source, ns (0: events arrive in time order).
    pub max_delay: i64,
    /// Types that are sources of their own, with their bound (ns).
    pub max_delay_per_type: Vec<(TypeId, i64)>,
    /// Allowed lateness `L`, ns: operators see watermark `W - L`, and events with
    /// `W - L < ts <= W` are still admitted.
    pub allowed_lateness: i64,
    /// Optional deduplication by an id field.
    pub dedup: Option<DedupConfig>,
}

/// Deduplication by an event-id field within an event-time horizon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupConfig {
    /// Per type id, the slot of its id field; `None` (or a type past the end): not deduplicated.
    pub id_slot: Vec<Option<usize>>,
    /// Two events of one type with equal ids are duplicates when their times differ by at most
    /// this many ns.
    pub horizon: i64,
}

/// Invalid event-time settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// A duration that must not be negative is.
    #[error("{what} must not be negative (got {value} ns)")]
    Negative {
        /// Which setting.
        what: String,
        /// The value given.
        value: i64,
    },
    /// A type has two per-type delays.
    #[error("type id {0} has more than one max delay")]
    DuplicateType(TypeId),
}

/// What happened to one arriving event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Deliver the event now, right after advancing the operators to `advance_to` (a watermark
    /// that never exceeds `ts - 1`; ignore it when it is not above the operators' watermark).
    Deliver {
        /// Watermark to give the operators first.
        advance_to: i64,
        /// True when the event came after the watermark passed it but within allowed lateness.
        admitted_late: bool,
    },
    /// The event waits in the reorder buffer; [`Sequencer::pop_ready`] releases it.
    Buffered,
    /// Later than watermark minus allowed lateness: not delivered; write it to the late output.
    Late,
    /// A repeat of an id within the dedup horizon: dropped.
    Duplicate,
}

/// An item released by [`Sequencer::pop_ready`].
#[derive(Debug, Clone, PartialEq)]
pub enum Ready {
    /// A buffered event, in `(ts, seq)` order: advance operators to `advance_to`, then deliver.
    Event {
        /// The event.
        event: Event,
        /// Watermark to give the operators first (never above `event.ts - 1`).
        advance_to: i64,
    },
    /// The operators' watermark rose to this value: every event with `ts <=` it was delivered.
    Watermark(i64),
}

/// Counters of the event-time layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeStats {
    /// Events that arrived at or below watermark minus allowed lateness (late output).
    pub late: u64,
    /// Events admitted within allowed lateness (delivered out of time order).
    pub admitted_late: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// On-time events that arrived after an event with a later time and were put back in order.
    pub reordered: u64,
    /// Events in the reorder buffer now.
    pub buffered: usize,
    /// Most events in the reorder buffer at once.
    pub max_buffered: usize,
    /// The operators' watermark (`i64::MIN` before the first one).
    pub watermark: i64,
}

impl Default for TimeStats {
    fn default() -> Self {
        Self {
            late: 0,
            admitted_late: 0,
            duplicates: 0,
            reordered: 0,
            buffered: 0,
            max_buffered: 0,
            watermark: i64::MIN,
        }
    }
}

/// A buffered event ordered by `(ts, seq)` only.
#[derive(Debug)]
struct Pending(Event);

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
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0.ts, self.0.seq).cmp(&(other.0.ts, other.0.seq))
    }
}

/// Ids seen within the horizon.
#[derive(Debug)]
struct Dedup {
    id_slot: Vec<Option<usize>>,
    horizon: i64,
    /// (type, id) -> time of the last admitted event with that id.
    seen: HashMap<(TypeId, u64), i64>,
    /// (time, type, id), oldest first; entries whose time no longer matches `seen` are stale.
    expiry: BinaryHeap<Reverse<(i64, TypeId, u64)>>,
}

impl Dedup {
    /// True if `e` repeats an id seen within the horizon; otherwise remembers it.
    fn is_duplicate(&mut self, e: &EventView<'_>) -> bool {
        let Some(slot) = self.id_slot.get(usize::from(e.type_id)).copied().flatten() else {
            return false;
        };
        let key = (e.type_id, e.slot(slot));
        if let Some(&prev) = self.seen.get(&key)
            && e.ts.abs_diff(prev) <= self.horizon.unsigned_abs()
        {
            return true;
        }
        self.seen.insert(key, e.ts);
        self.expiry.push(Reverse((e.ts, key.0, key.1)));
        false
    }

    /// Forgets ids no event above operator watermark `w` can repeat.
    fn prune(&mut self, w: i64) {
        while let Some(&Reverse((ts, ty, id))) = self.expiry.peek() {
            if ts.saturating_add(self.horizon) > w {
                break;
            }
            self.expiry.pop();
            if self.seen.get(&(ty, id)) == Some(&ts) {
                self.seen.remove(&(ty, id));
            }
        }
    }
}

/// The reorder buffer and watermark generator of one input stream.
#[derive(Debug)]
pub struct Sequencer {
    /// Source index per type id (0: the default source).
    source_of: Vec<usize>,
    /// Delay per source.
    delays: Vec<i64>,
    /// Highest time seen per source (`None`: not seen yet).
    max_ts: Vec<Option<i64>>,
    /// Allowed lateness.
    lateness: i64,
    /// Input watermark `W` (`i64::MIN`: none yet).
    input_watermark: i64,
    /// Last operator watermark handed out by `pop_ready`.
    emitted: i64,
    finished: bool,
    /// Highest time seen over all sources.
    max_seen: i64,
    buffer: BinaryHeap<Reverse<Pending>>,
    dedup: Option<Dedup>,
    stats: TimeStats,
}

impl Sequencer {
    /// A sequencer for `config`.
    pub fn new(config: &TimeConfig) -> Result<Self, TimeError> {
        let negative = |what: &str, value: i64| {
            if value < 0 {
                Err(TimeError::Negative {
                    what: what.to_string(),
                    value,
                })
            } else {
                Ok(())
            }
        };
        negative("max delay", config.max_delay)?;
        negative("allowed lateness", config.allowed_lateness)?;
        let mut source_of: Vec<usize> = Vec::new();
        let mut delays = vec![config.max_delay];
        for &(ty, delay) in &config.max_delay_per_type {
            negative("max delay", delay)?;
            let i = usize::from(ty);
            if source_of.len() <= i {
                source_of.resize(i + 1, 0);
            }
            if source_of[i] != 0 {
                return Err(TimeError::DuplicateType(ty));
            }
            source_of[i] = delays.len();
            delays.push(delay);
        }
        let dedup = match &config.dedup {
            Some(d) => {
                negative("dedup horizon", d.horizon)?;
                Some(Dedup {
                    id_slot: d.id_slot.clone(),
                    horizon: d.horizon,
                    seen: HashMap::new(),
                    expiry: BinaryHeap::new(),
                })
            }
            None => None,
        };
        Ok(Self {
            source_of,
            max_ts: vec![None; delays.len()],
            delays,
            lateness: config.allowed_lateness,
            input_watermark: i64::MIN,
            emitted: i64::MIN,
            finished: false,
            max_seen: i64::MIN,
            buffer: BinaryHeap::new(),
            dedup,
            stats: TimeStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> TimeStats {
        TimeStats {
            buffered: self.buffer.len(),
            watermark: self.emitted,
            ..self.stats
        }
    }

    /// True if [`Self::arrive`] may read an event's slots: to deduplicate it, or to copy it
    /// into the reorder buffer, which only a reordering bound or a second source can make
    /// happen. Otherwise callers may pass events without their slots.
    pub fn reads_slots(&self) -> bool {
        self.dedup.is_some() || self.delays.len() > 1 || self.delays.iter().any(|&d| d != 0)
    }

    /// The input watermark `W` (before allowed lateness; `i64::MIN` before the first).
    pub fn input_watermark(&self) -> i64 {
        self.input_watermark
    }

    /// The watermark operators may see now: `W - L`, or `i64::MAX` after [`Self::finish`].
    #[inline]
    pub fn operator_watermark(&self) -> i64 {
        if self.finished {
            i64::MAX
        } else if self.input_watermark == i64::MIN {
            i64::MIN
        } else {
            self.input_watermark.saturating_sub(self.lateness)
        }
    }

    /// Takes one arriving event (arrival order; `seq` rising). Call [`Self::pop_ready`] until it
    /// returns `None` after every arrival, before the next.
    #[inline]
    pub fn arrive(&mut self, e: EventView<'_>) -> Arrival {
        let t = e.ts;
        let op = self.operator_watermark();
        if op != i64::MIN && t <= op {
            self.stats.late += 1;
            return Arrival::Late;
        }
        if let Some(d) = &mut self.dedup
            && d.is_duplicate(&e)
        {
            self.stats.duplicates += 1;
            return Arrival::Duplicate;
        }
        let out_of_order = t < self.max_seen;
        self.max_seen = self.max_seen.max(t);
        if self.input_watermark != i64::MIN && t <= self.input_watermark {
            // Within allowed lateness: the operators are at `op < t`, so it can go at once.
            self.stats.admitted_late += 1;
            return Arrival::Deliver {
                advance_to: op,
                admitted_late: true,
            };
        }
        let source = self
            .source_of
            .get(usize::from(e.type_id))
            .copied()
            .unwrap_or(0);
        let m = &mut self.max_ts[source];
        *m = Some(m.map_or(t, |m| m.max(t)));
        let bound = self
            .max_ts
            .iter()
            .zip(&self.delays)
            .filter_map(|(m, d)| m.map(|m| m.saturating_sub(*d).saturating_sub(1)))
            .min()
            .unwrap_or(i64::MIN);
        self.input_watermark = self.input_watermark.max(bound);
        if out_of_order {
            self.stats.reordered += 1;
        }
        if self.buffer.is_empty() && t <= self.input_watermark.saturating_add(1) {
            return Arrival::Deliver {
                advance_to: t.saturating_sub(1).min(self.operator_watermark()),
                admitted_late: false,
            };
        }
        self.buffer.push(Reverse(Pending(Event {
            seq: e.seq,
            ts: t,
            type_id: e.type_id,
            label: Label::default(),
            slots: e.slots.to_vec(),
        })));
        self.stats.max_buffered = self.stats.max_buffered.max(self.buffer.len());
        Arrival::Buffered
    }

    /// An explicit watermark from the input (a tape marker, a source's heartbeat): every event
    /// with `ts <= w` has arrived. Lower than the current watermark: no effect. Call
    /// [`Self::pop_ready`] until it returns `None` afterwards.
    pub fn watermark(&mut self, w: i64) {
        if !self.finished {
            self.input_watermark = self.input_watermark.max(w);
        }
    }

    /// Ends the stream: everything buffered is released, then the watermark `i64::MAX`. Call
    /// [`Self::pop_ready`] until it returns `None` afterwards; later arrivals are late.
    pub fn finish(&mut self) {
        self.finished = true;
        self.input_watermark = i64::MAX;
    }

    /// The next released event (in `(ts, seq)` order) or watermark rise, or `None`.
    #[inline]
    pub fn pop_ready(&mut self) -> Option<Ready> {
        let releasable = self.input_watermark.saturating_add(1);
        if self
            .buffer
            .peek()
            .is_some_and(|Reverse(p)| p.0.ts <= releasable)
        {
            let Reverse(Pending(event)) = self.buffer.pop()?;
            let advance_to = event.ts.saturating_sub(1).min(self.operator_watermark());
            return Some(Ready::Event { event, advance_to });
        }
        let w = self.operator_watermark();
        if w > self.emitted {
            self.emitted = w;
            if let Some(d) = &mut self.dedup {
                d.prune(w);
            }
            return Some(Ready::Watermark(w));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TypeId = 0;
    const B: TypeId = 1;

    /// What the operators observe, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        /// Event (seq), delivered late-admitted or not.
        E(u64, bool),
        /// Watermark.
        W(i64),
        Late(u64),
        Dup(u64),
    }
    use Seen::*;

    struct Harness {
        seq: Sequencer,
        next_seq: u64,
        seen: Vec<Seen>,
        /// Operator watermark as the engine would track it.
        op: i64,
    }

    impl Harness {
        fn new(config: TimeConfig) -> Self {
            Self {
                seq: Sequencer::new(&config).expect("valid config"),
                next_seq: 0,
                seen: Vec::new(),
                op: i64::MIN,
            }
        }

        fn advance(&mut self, w: i64) {
            if w > self.op {
                self.op = w;
                self.seen.push(W(w));
            }
        }

        fn deliver(&mut self, seq: u64, ts: i64, late: bool) {
            // The invariant every operator relies on.
            assert!(
                ts > self.op,
                "event {seq} at {ts} after watermark {}",
                self.op
            );
            self.seen.push(E(seq, late));
        }

        fn drain(&mut self) {
            while let Some(r) = self.seq.pop_ready() {
                match r {
                    Ready::Event { event, advance_to } => {
                        assert!(advance_to < event.ts);
                        self.advance(advance_to);
                        self.deliver(event.seq, event.ts, false);
                    }
                    Ready::Watermark(w) => self.advance(w),
                }
            }
        }

        fn push_typed(&mut self, ty: TypeId, ts: i64, id: u64) -> Arrival {
            let seq = self.next_seq;
            self.next_seq += 1;
            let slots = [id];
            let a = self.seq.arrive(EventView {
                seq,
                ts,
                type_id: ty,
                slots: &slots,
            });
            match a {
                Arrival::Deliver {
                    advance_to,
                    admitted_late,
                } => {
                    assert!(advance_to < ts);
                    self.advance(advance_to);
                    self.deliver(seq, ts, admitted_late);
                }
                Arrival::Buffered => {}
                Arrival::Late => self.seen.push(Late(seq)),
                Arrival::Duplicate => self.seen.push(Dup(seq)),
            }
            self.drain();
            a
        }

        fn push(&mut self, ts: i64) -> Arrival {
            self.push_typed(A, ts, 0)
        }

        fn finish(&mut self) {
            self.seq.finish();
            self.drain();
        }

        /// Delivered seqs in order.
        fn events(&self) -> Vec<u64> {
            self.seen
                .iter()
                .filter_map(|s| match s {
                    E(q, _) => Some(*q),
                    _ => None,
                })
                .collect()
        }
    }

    fn delay(d: i64) -> TimeConfig {
        TimeConfig {
            max_delay: d,
            ..TimeConfig::default()
        }
    }

    #[test]
    fn in_order_with_zero_delay_passes_through_without_buffering() {
        let mut h = Harness::new(TimeConfig::default());
        for ts in [1, 2, 2, 5] {
            assert!(matches!(
                h.push(ts),
                Arrival::Deliver {
                    admitted_late: false,
                    ..
                }
            ));
        }
        h.finish();
        assert_eq!(
            h.seen,
            vec![
                W(0),
                E(0, false),
                W(1),
                E(1, false),
                E(2, false),
                W(4),
                E(3, false),
                W(i64::MAX)
            ]
        );
        let s = h.seq.stats();
        assert_eq!((s.max_buffered, s.reordered, s.late), (0, 0, 0));
    }

    #[test]
    fn zero_delay_makes_any_older_event_late_but_not_a_tie() {
        let mut h = Harness::new(TimeConfig::default());
        h.push(10);
        assert_eq!(
            h.push(10),
            Arrival::Deliver {
                advance_to: 9,
                admitted_late: false
            }
        );
        assert_eq!(h.push(9), Arrival::Late);
        assert_eq!(h.seq.stats().late, 1);
        assert_eq!(h.events(), vec![0, 1]);
    }

    #[test]
    fn reorders_within_the_bound_by_time_then_seq() {
        let mut h = Harness::new(delay(5));
        for ts in [10, 8, 12, 8, 9, 20] {
            h.push(ts);
        }
        // W after 20 is 14: 8(1), 8(3), 9(4), 10(0), 12(2) released; 20 waits.
        assert_eq!(h.events(), vec![1, 3, 4, 0, 2]);
        assert_eq!(h.seq.stats().buffered, 1);
        assert_eq!(h.seq.stats().reordered, 3);
        h.finish();
        assert_eq!(h.events(), vec![1, 3, 4, 0, 2, 5]);
        assert_eq!(h.seq.stats().max_buffered, 6);
        assert_eq!(h.seen.last(), Some(&W(i64::MAX)));
    }

    #[test]
    fn watermark_is_max_minus_delay_minus_one_and_exact_bound_is_not_late() {
        let mut h = Harness::new(delay(5));
        h.push(100);
        assert_eq!(h.seq.input_watermark(), 94);
        assert_eq!(h.seq.operator_watermark(), 94);
        // ts 95 = max - delay: exactly at the bound, still on time (buffered behind 100, then
        // released at once as W + 1).
        assert_eq!(h.push(95), Arrival::Buffered);
        // ts 94 = W: late.
        assert_eq!(h.push(94), Arrival::Late);
        assert_eq!(h.seen, vec![W(94), E(1, false), Late(2)]);
    }

    #[test]
    fn events_at_w_plus_one_are_released_at_once() {
        let mut h = Harness::new(delay(2));
        h.push(10); // W = 7; 10 waits.
        assert_eq!(h.events(), Vec::<u64>::new());
        h.push(11); // W = 8
        h.push(12); // W = 9: 10 is W + 1, released.
        assert_eq!(h.events(), vec![0]);
        assert_eq!(h.seen, vec![W(7), W(8), W(9), E(0, false)]);
    }

    #[test]
    fn allowed_lateness_admits_between_w_minus_l_and_w() {
        let mut h = Harness::new(TimeConfig {
            max_delay: 0,
            allowed_lateness: 10,
            ..TimeConfig::default()
        });
        h.push(100); // W = 99, operators see 89.
        assert_eq!(h.seq.operator_watermark(), 89);
        assert_eq!(
            h.push(95),
            Arrival::Deliver {
                advance_to: 89,
                admitted_late: true
            }
        );
        // Exactly W - L + 1 is admitted, W - L is late.
        assert!(matches!(
            h.push(90),
            Arrival::Deliver {
                admitted_late: true,
                ..
            }
        ));
        assert_eq!(h.push(89), Arrival::Late);
        // Exactly W is admitted too.
        assert!(matches!(
            h.push(99),
            Arrival::Deliver {
                admitted_late: true,
                ..
            }
        ));
        let s = h.seq.stats();
        assert_eq!((s.admitted_late, s.late), (3, 1));
        assert_eq!(
            h.seen,
            vec![
                W(89),
                E(0, false),
                E(1, true),
                E(2, true),
                Late(3),
                E(4, true)
            ]
        );
    }

    #[test]
    fn lateness_holds_the_operator_watermark_back_for_released_events() {
        let mut h = Harness::new(TimeConfig {
            max_delay: 0,
            allowed_lateness: 5,
            ..TimeConfig::default()
        });
        h.push(10);
        h.push(20); // operators at 14, not 19: an event at 15 may still come.
        assert_eq!(h.seq.stats().watermark, 14);
        h.push(15);
        assert_eq!(
            h.seen,
            vec![W(4), E(0, false), W(14), E(1, false), E(2, true)]
        );
    }

    #[test]
    fn per_type_sources_take_the_minimum() {
        let mut h = Harness::new(TimeConfig {
            max_delay: 0,
            max_delay_per_type: vec![(B, 10)],
            ..TimeConfig::default()
        });
        h.push_typed(A, 100, 0); // only A seen: W = 99
        assert_eq!(h.seq.input_watermark(), 99);
        h.push_typed(B, 150, 0); // B bound 139, A 99: W stays 99, B waits
        assert_eq!(h.seq.input_watermark(), 99);
        h.push_typed(A, 120, 0); // A 119, B 139 -> W = 119
        assert_eq!(h.seq.input_watermark(), 119);
        h.push_typed(B, 145, 0); // B still 139
        h.push_typed(A, 160, 0); // A 159, B 139 -> W = 139: B(145),B(150) wait
        assert_eq!(h.seq.input_watermark(), 139);
        assert_eq!(h.events(), vec![0, 2]);
        h.push_typed(B, 170, 0); // B 159 -> W = 159: 145, 150 released; 160 is W + 1.
        assert_eq!(h.events(), vec![0, 2, 3, 1, 4]);
    }

    #[test]
    fn an_idle_source_holds_the_watermark_until_the_end() {
        let mut h = Harness::new(TimeConfig {
            max_delay: 0,
            max_delay_per_type: vec![(B, 0)],
            ..TimeConfig::default()
        });
        h.push_typed(B, 5, 0);
        for ts in [10, 20, 30] {
            h.push_typed(A, ts, 0);
        }
        assert_eq!(h.seq.input_watermark(), 4);
        assert_eq!(h.events(), vec![0]);
        assert_eq!(h.seq.stats().buffered, 3);
        h.finish();
        assert_eq!(h.events(), vec![0, 1, 2, 3]);
        assert_eq!(h.seen.last(), Some(&W(i64::MAX)));
    }

    #[test]
    fn the_watermark_never_goes_back_when_a_new_source_appears() {
        let mut h = Harness::new(TimeConfig {
            max_delay: 0,
            max_delay_per_type: vec![(B, 0)],
            ..TimeConfig::default()
        });
        h.push_typed(A, 100, 0);
        assert_eq!(h.push_typed(B, 50, 0), Arrival::Late);
        assert_eq!(h.seq.input_watermark(), 99);
        h.push_typed(B, 100, 0);
        assert_eq!(h.seq.input_watermark(), 99);
    }

    #[test]
    fn explicit_watermarks_release_and_make_older_events_late() {
        let mut h = Harness::new(delay(1_000));
        h.push(10);
        h.push(5);
        assert_eq!(h.events(), Vec::<u64>::new());
        h.seq.watermark(9);
        h.drain();
        // 5 <= 9 released; 10 = W + 1 released too.
        assert_eq!(h.events(), vec![1, 0]);
        assert_eq!(h.op, 9);
        assert_eq!(h.push(9), Arrival::Late);
        // A lower explicit watermark changes nothing.
        h.seq.watermark(3);
        assert_eq!(h.seq.pop_ready(), None);
    }

    #[test]
    fn dedup_drops_repeats_within_the_horizon_only() {
        let mut h = Harness::new(TimeConfig {
            max_delay: 100,
            dedup: Some(DedupConfig {
                id_slot: vec![Some(0), None],
                horizon: 10,
            }),
            ..TimeConfig::default()
        });
        h.push_typed(A, 100, 7);
        assert_eq!(h.push_typed(A, 110, 7), Arrival::Duplicate); // exactly the horizon
        assert_eq!(h.push_typed(A, 90, 7), Arrival::Duplicate); // earlier in time, too
        assert_eq!(h.push_typed(A, 111, 7), Arrival::Buffered); // beyond it
        assert_eq!(h.push_typed(A, 100, 8), Arrival::Buffered); // another id
        assert_eq!(h.push_typed(B, 100, 7), Arrival::Buffered); // B is not deduplicated
        assert_eq!(h.push_typed(B, 100, 7), Arrival::Buffered);
        assert_eq!(h.seq.stats().duplicates, 2);
        h.finish();
        assert_eq!(h.events(), vec![0, 4, 5, 6, 3]);
    }

    #[test]
    fn dedup_state_is_pruned_as_the_watermark_passes() {
        let mut h = Harness::new(TimeConfig {
            max_delay: 0,
            dedup: Some(DedupConfig {
                id_slot: vec![Some(0)],
                horizon: 10,
            }),
            ..TimeConfig::default()
        });
        h.push_typed(A, 0, 1);
        h.push_typed(A, 5, 2);
        h.push_typed(A, 11, 3); // operators at 10: id 1 (0 + 10 <= 10) forgotten
        let d = h.seq.dedup.as_ref().expect("dedup on");
        assert_eq!(d.seen.len(), 2);
        h.push_typed(A, 16, 4); // at 15: id 2 forgotten
        let d = h.seq.dedup.as_ref().expect("dedup on");
        assert_eq!(d.seen.len(), 2);
        // id 3 at 11 is still remembered: 21 is within the horizon.
        assert_eq!(h.push_typed(A, 21, 3), Arrival::Duplicate);
        assert_eq!(
            h.push_typed(A, 22, 3),
            Arrival::Deliver {
                advance_to: 21,
                admitted_late: false
            }
        );
    }

    #[test]
    fn late_events_are_not_deduplicated_but_reported() {
        let mut h = Harness::new(TimeConfig {
            dedup: Some(DedupConfig {
                id_slot: vec![Some(0)],
                horizon: 1_000,
            }),
            ..TimeConfig::default()
        });
        h.push_typed(A, 10, 1);
        assert_eq!(h.push_typed(A, 5, 1), Arrival::Late);
        let s = h.seq.stats();
        assert_eq!((s.late, s.duplicates), (1, 0));
    }

    #[test]
    fn everything_after_finish_is_late() {
        let mut h = Harness::new(delay(10));
        h.push(5);
        h.finish();
        assert_eq!(h.push(i64::MAX - 1), Arrival::Late);
        assert_eq!(h.events(), vec![0]);
    }

    #[test]
    fn extreme_times_saturate() {
        let mut h = Harness::new(delay(i64::MAX));
        h.push(i64::MIN + 1);
        h.push(i64::MAX);
        h.push(0);
        h.finish();
        assert_eq!(h.events(), vec![0, 2, 1]);
        let mut h = Harness::new(TimeConfig {
            allowed_lateness: i64::MAX,
            ..TimeConfig::default()
        });
        h.push(i64::MIN + 1);
        h.push(i64::MAX);
        h.push(0);
        h.finish();
        assert_eq!(h.events(), vec![0, 1, 2]);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(matches!(
            Sequencer::new(&delay(-1)),
            Err(TimeError::Negative { .. })
        ));
        let twice = TimeConfig {
            max_delay_per_type: vec![(A, 1), (A, 2)],
            ..TimeConfig::default()
        };
        assert_eq!(
            Sequencer::new(&twice).err(),
            Some(TimeError::DuplicateType(A))
        );
    }
}
