//! The bit-parallel (Shift-And) matcher for strict sequences of single-event conditions.
//!
//! Input: the events of one stream in event-time order ([`ShiftAndMatcher::on_event`], or
//! [`ShiftAndMatcher::on_event_masked`] with the variables' predicate bits already computed by the
//! columnar kernels) and watermarks. Output: the same [`Signal`]s, in the same order, as the
//! reference matcher gives for the rule. Next stage: a sink.
//!
//! The class it runs ([`ShiftAndMatcher::supports`]): the pattern is one variable or a sequence of
//! variables joined by juxtaposition (strict contiguity), each taken exactly once, every
//! condition reads only the current event, no `prev` anywhere, no `on timeout emit`, and the
//! per-key run cap is at least the pattern length. Any `within`, selection and after-match
//! strategy. In that class every partial match is fixed by its start: the run that started `j`
//! events ago in the partition has taken `j + 1` events, so a partition's live runs are one word
//! `D` whose bit `j` is that run. With `B` the event's predicate bits (bit `j`: the event satisfies
//! the `j`-th variable's condition), one event is
//!
//! ```text
//! D' = ((D & (B >> 1)) << 1) | (B & 1)
//! ```
//!
//! and bit `k - 1` of `D'` is a completed match. Why the reference matcher agrees:
//! - under strict contiguity a run either takes the next event or dies, so there is exactly one
//!   path per start and at most one match completes per event;
//! - a completed run is always the oldest live run of its partition, so `select first` reports it
//!   at once, exactly like `select all` (no earlier start can be unresolved);
//! - without timeouts or trailing absences, `within` expiry and watermarks emit nothing; a
//!   timer heap (one entry per partition, its earliest deadline) still clears expired runs at
//!   the watermark, so the live-run counters equal the reference matcher's;
//! - after-match strategies drop runs by start position, which the partition's ring of its last
//!   `k` events gives for every bit.
//!
//! Partitions exist only while `D != 0`; a partition with no runs whose event cannot start one is
//! not even looked up. Partition state (the word and a ring of the last `k` events) is recycled
//! through a free list, so steady-state matching allocates only for signals.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::event::{EventBatch, EventView};
use crate::expr::{Bindings, CurrentEvent, Expr, VarId};
use crate::fast::{KeyMap, count_ones};
use crate::kernel::{KernelSet, Scratch};
use crate::nfa::{AfterMatch, Contiguity, PatternNode, Quantifier};
use crate::reference::{MatcherConfig, MatcherStats};
use crate::rule::{PartitionKey, Rule, ShardSpec};
use crate::signal::{Signal, SignalKind};

/// Longest pattern the one-word state holds.
pub const MAX_LEN: usize = 64;

/// One partition's live runs and its last `k` events.
#[derive(Debug, Clone)]
struct Lane {
    /// Bit `j`: the run that started `j` events before the newest one is alive.
    runs: u64,
    /// The deadline this lane has in the timer heap, if any.
    timer: Option<i64>,
    /// Ring index of the newest event.
    head: usize,
    pos: Vec<u64>,
    seq: Vec<u64>,
    ts: Vec<i64>,
    type_id: Vec<u16>,
    /// `k * slot_count` slots, event by event.
    slots: Vec<u64>,
}

impl Lane {
    fn new(k: usize) -> Self {
        Self {
            runs: 0,
            timer: None,
            head: 0,
            pos: vec![0; k],
            seq: vec![0; k],
            ts: vec![0; k],
            type_id: vec![0; k],
            slots: Vec::new(),
        }
    }

    /// Ring index of the event `back` events before the newest.
    #[inline]
    fn at(&self, back: usize) -> usize {
        let k = self.pos.len();
        (self.head + k - back % k) % k
    }

    fn push(&mut self, e: &EventView<'_>, pos: u64, slot_count: usize) {
        let k = self.pos.len();
        self.head = (self.head + 1) % k;
        let i = self.head;
        self.pos[i] = pos;
        self.seq[i] = e.seq;
        self.ts[i] = e.ts;
        self.type_id[i] = e.type_id;
        if self.slots.len() < k * slot_count {
            self.slots.resize(k * slot_count, 0);
        }
        let n = slot_count.min(e.slots.len());
        self.slots[i * slot_count..i * slot_count + n].copy_from_slice(&e.slots[..n]);
        self.slots[i * slot_count + n..(i + 1) * slot_count].fill(0);
    }

    fn view(&self, i: usize, slot_count: usize) -> EventView<'_> {
        EventView {
            seq: self.seq[i],
            ts: self.ts[i],
            type_id: self.type_id[i],
            slots: &self.slots[i * slot_count..(i + 1) * slot_count],
        }
    }
}

/// A completed match: the last `k` events of the lane, bound to the sequence's variables.
struct MatchBindings<'a> {
    lane: &'a Lane,
    vars: &'a [VarId],
    slot_count: usize,
}

impl MatchBindings<'_> {
    /// Ring index of the event bound to sequence element `i`.
    fn element(&self, i: usize) -> usize {
        self.lane.at(self.vars.len() - 1 - i)
    }
}

impl Bindings for MatchBindings<'_> {
    fn current(&self) -> EventView<'_> {
        self.lane.view(self.lane.head, self.slot_count)
    }
    fn var_len(&self, var: VarId) -> usize {
        self.vars.iter().filter(|v| **v == var).count()
    }
    fn var_event(&self, var: VarId, i: usize) -> Option<EventView<'_>> {
        let e = self
            .vars
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == var)
            .nth(i)?
            .0;
        Some(self.lane.view(self.element(e), self.slot_count))
    }
    fn prev(&self, _: u32) -> Option<EventView<'_>> {
        None
    }
}

/// The Shift-And matcher for one rule of the supported class.
#[derive(Debug)]
pub struct ShiftAndMatcher {
    rule: Rule,
    rule_index: usize,
    /// Variable of each sequence element, in order.
    vars: Vec<VarId>,
    /// Condition of each sequence element (bit `j` of a predicate word).
    conditions: Vec<Expr>,
    lanes: KeyMap<Lane>,
    free: Vec<Lane>,
    /// (deadline, key), earliest first: lanes whose oldest run expires then (with `within`).
    timers: BinaryHeap<Reverse<(i64, PartitionKey)>>,
    slot_count: usize,
    /// Highest watermark seen: runs whose deadline is at or before it are dead.
    watermark: i64,
    /// Only the keys of this shard are matched (every event still counts).
    shard: Option<ShardSpec>,
    /// Per type id: whether the rule reads it.
    reads: Vec<bool>,
    /// The predicates as columnar kernels, and the masks of the last prepared batch.
    kernels: Option<KernelSet>,
    scratch: Scratch,
    masks: Vec<Vec<u64>>,
    next_pos: u64,
    stats: MatcherStats,
}

impl ShiftAndMatcher {
    /// The sequence's variables if `rule` is in the class this matcher runs (see the module docs).
    fn sequence(rule: &Rule, config: &MatcherConfig) -> Option<Vec<VarId>> {
        let one = |node: &PatternNode| match node {
            PatternNode::Var { var, quantifier }
                if quantifier.min == Quantifier::ONE.min
                    && quantifier.max == Quantifier::ONE.max =>
            {
                Some(*var)
            }
            _ => None,
        };
        let vars: Vec<VarId> = match &rule.nfa.pattern {
            PatternNode::Seq(steps) => steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if i > 0 && s.op != Contiguity::Strict {
                        return None;
                    }
                    one(&s.node)
                })
                .collect::<Option<_>>()?,
            node => vec![one(node)?],
        };
        let simple = |e: &Expr| e.is_single_event();
        let ok = !vars.is_empty()
            && vars.len() <= MAX_LEN
            && config.max_runs_per_key >= vars.len()
            && rule.timeout.is_none()
            && rule.max_prev() == 0
            && vars.iter().all(|v| {
                rule.nfa
                    .vars
                    .get(*v as usize)
                    .is_some_and(|x| simple(&x.condition))
            });
        ok.then_some(vars)
    }

    /// True if `rule` is in the class this matcher runs with the same answers as the reference
    /// matcher (see the module docs).
    pub fn supports(rule: &Rule, config: &MatcherConfig) -> bool {
        Self::sequence(rule, config).is_some()
    }

    /// A matcher for `rule` (rule number `rule_index` of its program), reading events with
    /// `slot_count` slots; `None` if the rule is outside the class.
    pub fn new(
        rule: Rule,
        rule_index: usize,
        config: MatcherConfig,
        slot_count: usize,
    ) -> Option<Self> {
        let vars = Self::sequence(&rule, &config)?;
        let conditions: Vec<Expr> = vars
            .iter()
            .map(|v| rule.nfa.vars[*v as usize].condition.clone())
            .collect();
        let reads = rule.read_table();
        // The sequence's predicates, then "the rule reads the row's type". Single-event
        // conditions always compile; without kernels, batch rows evaluate their predicates one
        // by one, which gives the same words.
        let mut predicates = conditions.clone();
        predicates.push(Expr::TypeIs(rule.from.clone()));
        let kernels = KernelSet::new(&predicates).ok();
        Some(Self {
            rule,
            rule_index,
            vars,
            conditions,
            shard: None,
            reads,
            kernels,
            scratch: Scratch::new(),
            masks: Vec::new(),
            lanes: KeyMap::default(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            slot_count,
            watermark: i64::MIN,
            next_pos: 0,
            stats: MatcherStats::default(),
        })
    }

    /// Restricts the matcher to the partition keys of `shard` (`None`: every key).
    pub fn with_shard(mut self, shard: Option<ShardSpec>) -> Self {
        self.shard = shard;
        self
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// True if batch rows are skipped with the kernels' masks ([`Self::attention`]).
    pub fn skips(&self) -> bool {
        self.kernels.is_some()
    }

    /// True if no partition holds a run.
    pub fn is_idle(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Evaluates the predicates over `batch` with the columnar kernels; afterwards
    /// [`Self::on_batch_row`] takes its rows.
    pub fn prepare_batch(&mut self, batch: &EventBatch) {
        match &self.kernels {
            Some(k) => k.eval(batch, &mut self.scratch, &mut self.masks),
            None => self.masks.clear(),
        }
    }

    /// The rows of the last prepared batch that can start a run (a superset: rows of types the
    /// rule does not read may be set); `None` without kernels.
    pub fn attention(&self) -> Option<&[u64]> {
        (self.masks.len() == self.conditions.len() + 1).then(|| self.masks[0].as_slice())
    }

    /// Accounts for rows `from..to` of the last prepared batch, delivered but not fed to the
    /// matcher because it was idle and none of them is in [`Self::attention`]: positions and
    /// the event count advance by the rows the rule reads.
    pub fn skip_rows(&mut self, from: usize, to: usize) {
        let Some(reads) = self.masks.get(self.conditions.len()) else {
            return;
        };
        if self.masks.len() != self.conditions.len() + 1 {
            return;
        }
        let n = count_ones(reads, from, to);
        self.next_pos += n;
        self.stats.events += n;
    }

    /// Feeds row `row` of `batch`, the batch last given to [`Self::prepare_batch`]; the row's
    /// slots are copied (into `scratch`) only if a partition has to process it.
    #[inline]
    pub fn on_batch_row(
        &mut self,
        batch: &EventBatch,
        row: usize,
        scratch: &mut Vec<u64>,
        out: &mut Vec<Signal>,
    ) {
        let type_id = batch.type_ids()[row];
        if !self
            .reads
            .get(usize::from(type_id))
            .copied()
            .unwrap_or(false)
        {
            return;
        }
        if self.masks.len() != self.conditions.len() + 1 {
            batch.copy_slots(row, scratch);
            let e = EventView {
                seq: batch.seq()[row],
                ts: batch.ts()[row],
                type_id,
                slots: scratch,
            };
            self.on_event(e, out);
            return;
        }
        let (w, bit) = (row / 64, row % 64);
        let mut mask = 0u64;
        for (j, m) in self.masks[..self.conditions.len()].iter().enumerate() {
            mask |= ((m.get(w).copied().unwrap_or(0) >> bit) & 1) << j;
        }
        if mask & 1 == 0 && self.lanes.is_empty() {
            self.stats.events += 1;
            self.next_pos += 1;
            return;
        }
        let key = self.rule.key_of_row(batch, row);
        batch.copy_slots(row, scratch);
        let e = EventView {
            seq: batch.seq()[row],
            ts: batch.ts()[row],
            type_id,
            slots: scratch,
        };
        self.step(e, key, mask, out);
    }

    /// The predicate of each sequence element in order: bit `j` of the word
    /// [`ShiftAndMatcher::on_event_masked`] takes is predicate `j` (single-event, so the columnar
    /// kernels can evaluate them over a batch).
    pub fn predicates(&self) -> &[Expr] {
        &self.conditions
    }

    /// Counters so far (the reference matcher's, except `partitions`: partitions that held runs).
    pub fn stats(&self) -> MatcherStats {
        self.stats
    }

    /// Feeds one event, evaluating the predicates it needs; signals are appended to `out`.
    pub fn on_event(&mut self, e: EventView<'_>, out: &mut Vec<Signal>) {
        if !self.rule.reads(e.type_id) {
            return;
        }
        let key = self.rule.key_of(&e);
        let runs = self.lanes.get(&key).map_or(0, |l| l.runs);
        // Element 0 always (a start); element j + 1 only where a run waits for it.
        let mut need = 1 | (runs << 1);
        if self.vars.len() < 64 {
            need &= (1u64 << self.vars.len()) - 1;
        }
        let b = CurrentEvent(e);
        let mut mask = 0u64;
        while need != 0 {
            let j = need.trailing_zeros() as usize;
            need &= need - 1;
            if self.conditions[j].eval(&b).is_true() {
                mask |= 1 << j;
            }
        }
        self.step(e, key, mask, out);
    }

    /// Feeds one event whose predicate word is `mask` (bit `j`: predicate `j` of
    /// [`ShiftAndMatcher::predicates`] holds for it).
    pub fn on_event_masked(&mut self, e: EventView<'_>, mask: u64, out: &mut Vec<Signal>) {
        if !self.rule.reads(e.type_id) {
            return;
        }
        if mask & 1 == 0 && self.lanes.is_empty() {
            // Nothing alive anywhere and no start: only the position advances.
            self.stats.events += 1;
            self.next_pos += 1;
            return;
        }
        let key = self.rule.key_of(&e);
        self.step(e, key, mask, out);
    }

    fn step(&mut self, e: EventView<'_>, key: PartitionKey, mask: u64, out: &mut Vec<Signal>) {
        self.stats.events += 1;
        let pos = self.next_pos;
        self.next_pos += 1;
        if self.shard.is_some_and(|s| !s.owns(key)) {
            return;
        }
        let k = self.vars.len();
        let mut created = false;
        let mut lane = match self.lanes.remove(&key) {
            Some(lane) => lane,
            None if mask & 1 == 0 => return,
            None => {
                created = true;
                let mut lane = self.free.pop().unwrap_or_else(|| Lane::new(k));
                lane.runs = 0;
                lane.timer = None;
                lane
            }
        };
        let before = lane.runs.count_ones() as usize;
        // Runs whose `within` deadline is at or before max(watermark, ts - 1) are dead.
        self.expire(&mut lane, self.watermark.max(e.ts.saturating_sub(1)));
        let shifted = (lane.runs & (mask >> 1)) << 1;
        lane.runs = shifted | (mask & 1);
        if k < 64 {
            lane.runs &= (1u64 << k) - 1;
        }
        if lane.runs != 0 {
            lane.push(&e, pos, self.slot_count);
        }
        let done = 1u64 << (k - 1);
        if lane.runs & done != 0 {
            lane.runs &= !done;
            out.push(self.signal(&lane, key));
            self.stats.matches += 1;
            if let Some(drop) = self.skip_range(&lane) {
                let mut live = lane.runs;
                while live != 0 {
                    let j = live.trailing_zeros() as usize;
                    live &= live - 1;
                    if drop.contains(&lane.pos[lane.at(j)]) {
                        lane.runs &= !(1 << j);
                    }
                }
            }
        }
        let after = lane.runs.count_ones() as usize;
        self.stats.live_runs = self.stats.live_runs + after - before;
        self.stats.peak_live_runs = self.stats.peak_live_runs.max(self.stats.live_runs);
        if lane.runs == 0 {
            self.free.push(lane);
        } else {
            if created {
                self.stats.partitions += 1;
            }
            self.arm(&mut lane, key);
            self.lanes.insert(key, lane);
        }
    }

    /// Clears the lane's runs whose `within` deadline is at or before `upto`.
    fn expire(&self, lane: &mut Lane, upto: i64) {
        let Some(w) = self.rule.nfa.within else {
            return;
        };
        let mut live = lane.runs;
        while live != 0 {
            let j = live.trailing_zeros() as usize;
            live &= live - 1;
            if lane.ts[lane.at(j)].saturating_add(w) <= upto {
                lane.runs &= !(1 << j);
            }
        }
    }

    /// Puts the lane's earliest deadline in the timer heap unless an entry at or before it is
    /// already there (as the reference matcher does, so that live runs die at the same
    /// watermark in both).
    fn arm(&mut self, lane: &mut Lane, key: PartitionKey) {
        let Some(w) = self.rule.nfa.within else {
            return;
        };
        let mut live = lane.runs;
        let mut next = i64::MAX;
        while live != 0 {
            let j = live.trailing_zeros() as usize;
            live &= live - 1;
            next = next.min(lane.ts[lane.at(j)].saturating_add(w));
        }
        if next == i64::MAX || lane.timer.is_some_and(|t| t <= next) {
            return;
        }
        lane.timer = Some(next);
        self.timers.push(Reverse((next, key)));
    }

    /// Start positions the after-match strategy drops after the match that just completed at
    /// the lane's newest event.
    fn skip_range(&self, lane: &Lane) -> Option<std::ops::Range<u64>> {
        let k = self.vars.len();
        let first = lane.pos[lane.at(k - 1)];
        let last = lane.pos[lane.head];
        let bound = |var: VarId, pick_last: bool| {
            let mut it = self
                .vars
                .iter()
                .enumerate()
                .filter(|(_, v)| **v == var)
                .map(|(i, _)| lane.pos[lane.at(k - 1 - i)]);
            if pick_last { it.next_back() } else { it.next() }
        };
        match self.rule.nfa.after_match {
            AfterMatch::NoSkip => None,
            AfterMatch::ToNext => Some(first..first + 1),
            AfterMatch::PastLast => Some(first..last + 1),
            AfterMatch::ToFirst(v) => bound(v, false).map(|s| first..s),
            AfterMatch::ToLast(v) => bound(v, true).map(|s| first..s),
        }
    }

    fn signal(&self, lane: &Lane, key: PartitionKey) -> Signal {
        let b = MatchBindings {
            lane,
            vars: &self.vars,
            slot_count: self.slot_count,
        };
        let k = self.vars.len();
        Signal {
            kind: SignalKind::Match,
            rule: self.rule_index,
            ts: lane.ts[lane.head],
            key,
            seq: (0..k).map(|i| lane.seq[b.element(i)]).collect(),
            fields: self
                .rule
                .emit
                .fields
                .iter()
                .map(|f| f.expr.eval(&b))
                .collect(),
            score: self.rule.emit.eval_score(&b),
            order: (i64::MIN, 0),
        }
    }

    /// Watermark `w`: runs whose deadline is at or before `w` die (nothing in this class fires
    /// a signal on a watermark; the live-run counters follow the reference matcher's).
    pub fn on_watermark(&mut self, w: i64, _out: &mut Vec<Signal>) {
        self.watermark = self.watermark.max(w);
        while let Some(&Reverse((d, key))) = self.timers.peek() {
            if d > w {
                break;
            }
            self.timers.pop();
            let Some(mut lane) = self.lanes.remove(&key) else {
                continue; // the lane emptied: a stale entry
            };
            if lane.timer != Some(d) {
                self.lanes.insert(key, lane);
                continue; // superseded entry
            }
            lane.timer = None;
            let before = lane.runs.count_ones() as usize;
            self.expire(&mut lane, w);
            self.stats.live_runs -= before - lane.runs.count_ones() as usize;
            if lane.runs == 0 {
                self.free.push(lane);
            } else {
                self.arm(&mut lane, key);
                self.lanes.insert(key, lane);
            }
        }
    }

    /// The earliest deadline in the timer heap (`i64::MAX` if none): a watermark below it
    /// changes nothing.
    pub fn next_deadline(&self) -> i64 {
        self.timers.peek().map_or(i64::MAX, |Reverse((d, _))| *d)
    }

    /// Ends the stream: every partial match dies; nothing in this class is pending.
    pub fn finish(&mut self, out: &mut Vec<Signal>) {
        self.on_watermark(i64::MAX, out);
        self.finish_runs(out);
    }

    /// The final phase of [`Self::finish`]: the remaining partial matches die silently.
    pub fn finish_runs(&mut self, _out: &mut Vec<Signal>) {
        for (_, lane) in self.lanes.drain() {
            self.free.push(lane);
        }
        self.timers.clear();
        self.stats.live_runs = 0;
    }
}
