//! The fast matcher: the reference matcher's answers, in the same order, without the work for
//! events that provably change nothing.
//!
//! Input: the events of one stream in event-time order, one at a time
//! ([`FastMatcher::on_event`]) or as rows of a batch whose masks [`FastMatcher::prepare_batch`]
//! computed first ([`FastMatcher::on_batch_row`], [`FastMatcher::on_event_with`]), and
//! watermarks ([`FastMatcher::on_watermark`]). Output: the same [`Signal`]s as
//! [`crate::reference::ReferenceMatcher`] for the same calls, in the same order. Next stage: a
//! sink.
//!
//! How it differs from the reference matcher:
//! - **Prefilter.** A partition with no runs (no partial matches, no pending `select first`
//!   matches, no waiting absences) changes only if the event starts a run, and an event starts a
//!   run only if it satisfies a start variable's condition, hence every single-event conjunct of
//!   it. The prefilter is the `or` over start variables of the `and` of those conjuncts. For a
//!   batch, the columnar kernels ([`KernelSet`]) turn it into two bitmasks over the whole
//!   [`EventBatch`]: rows the rule reads, and rows it reads that pass the prefilter; single
//!   events evaluate it directly. An event that fails it in a partition without runs is skipped
//!   without touching the partition store: only its delivery position (and the event count)
//!   advances. While no partition is active, a caller may even leave such rows out and account
//!   for them in bulk ([`FastMatcher::skip_rows`], a popcount of the first mask).
//! - **Active partitions only.** Partitions live in a hash map with a multiplicative hasher
//!   ([`KeyHasher`]) only while they hold runs; one that becomes empty is removed, so checking
//!   whether a key is active is a cheap lookup in a small, cache-resident table, and an empty
//!   table needs no key at all. Keys of batch rows are read from the columns, and a row's slots
//!   are copied only when a partition processes it.
//! - **History.** Removing a partition drops the events it kept for `prev`. That is safe only
//!   when no expression can read an event before a run's start: a start variable's `prev(_, n)`
//!   reads `n` events back from the start, another variable's `n - 1` (it is at least one event
//!   past the start), emit and timeout fields `n` (a match may end at its start). When that
//!   depth ([`history_depth`]) is not 0, the matcher neither skips events nor removes partitions,
//!   and does exactly what the reference matcher does.
//!
//! Active partitions run the reference algorithm itself (`reference::Core`: expiry, stepping,
//! reporting, timers), so the two matchers share one implementation of the semantics. Timer
//! entries and the end-of-stream order depend only on live runs (see [`crate::reference`]), which
//! is why dropping empty partitions changes no order. [`MatcherStats::partitions`] counts
//! partitions created, which differs: a key becomes a partition each time it becomes active.
//!
//! Nothing allocates for a skipped event.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

use crate::event::{EventBatch, EventView};
use crate::expr::{CurrentEvent, Expr, VarId};
use crate::kernel::{KernelSet, Scratch, mask_bit};
use crate::nfa::Target;
use crate::reference::{Core, MatcherConfig, MatcherStats, Partition, kill_all};
use crate::rule::{PartitionKey, Rule, ShardSpec};
use crate::schema::TypeId;
use crate::signal::Signal;

/// A multiplicative hasher for partition keys (the FxHash step with a final rotation so that the
/// well-mixed high bits reach the table index). Keys are not attacker-chosen hash-flooding input
/// in this setting; speed matters more than DoS resistance.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// Hash maps keyed by partition key with [`KeyHasher`].
pub type KeyMap<V> = HashMap<PartitionKey, V, BuildHasherDefault<KeyHasher>>;

/// How many events before a run's start an expression of `rule` can read through `prev`: a
/// start variable's `prev(_, n)` needs `n`, any other variable's `n - 1`, emit and timeout fields
/// `n`.
pub fn history_depth(rule: &Rule) -> u32 {
    let starts = start_vars(rule);
    let vars = rule.nfa.vars.iter().enumerate().map(|(v, var)| {
        let n = var.condition.max_prev();
        if starts.iter().any(|&s| usize::from(s) == v) {
            n
        } else {
            n.saturating_sub(1)
        }
    });
    let emits = rule
        .emit
        .exprs()
        .chain(rule.timeout.iter().flat_map(|t| t.exprs()))
        .map(Expr::max_prev);
    vars.chain(emits).max().unwrap_or(0)
}

/// Variables of the states a run can start in.
fn start_vars(rule: &Rule) -> Vec<VarId> {
    let mut vars: Vec<VarId> = rule
        .nfa
        .start
        .iter()
        .filter_map(|t| match t {
            Target::State(s) => rule.nfa.states.get(*s as usize).map(|st| st.var),
            Target::Accept => None,
        })
        .collect();
    vars.sort_unstable();
    vars.dedup();
    vars
}

/// The prefilter of `rule`: true for every event that satisfies some start variable's condition
/// (possibly for more). Built from the single-event conjuncts of those conditions.
pub fn prefilter(rule: &Rule) -> Expr {
    start_vars(rule)
        .into_iter()
        .filter_map(|v| rule.nfa.vars.get(usize::from(v)))
        .map(|var| {
            let mut parts = Vec::new();
            single_event_conjuncts(&var.condition, &mut parts);
            parts
                .into_iter()
                .reduce(|a, b| Expr::And(Box::new(a), Box::new(b)))
                .unwrap_or(Expr::Const(crate::value::Value::Bool(true)))
        })
        .reduce(|a, b| Expr::Or(Box::new(a), Box::new(b)))
        .unwrap_or(Expr::Const(crate::value::Value::Bool(false)))
}

/// False if no event of type `type_id` can pass the prefilter of `rule`: every start
/// variable's condition has a conjunct `type is ...` that excludes it.
fn type_may_pass(rule: &Rule, type_id: TypeId) -> bool {
    start_vars(rule)
        .into_iter()
        .filter_map(|v| rule.nfa.vars.get(usize::from(v)))
        .any(|var| {
            let mut parts = Vec::new();
            single_event_conjuncts(&var.condition, &mut parts);
            parts
                .iter()
                .all(|c| !matches!(c, Expr::TypeIs(types) if !types.contains(&type_id)))
        })
}

/// Appends the top-level `and` operands of `e` that read only the current event. `e` is true
/// only if each of them is.
fn single_event_conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::And(l, r) => {
            single_event_conjuncts(l, out);
            single_event_conjuncts(r, out);
        }
        e if e.is_single_event() => out.push(e.clone()),
        _ => {}
    }
}

/// The prefilter, per event and per batch.
#[derive(Debug)]
struct Prefilter {
    expr: Expr,
    /// Per type id: false if no event of the type can pass (checked before `expr`).
    type_may_pass: Vec<bool>,
    /// Two predicates: the rule reads the event's type; it does and the prefilter holds.
    kernels: KernelSet,
    scratch: Scratch,
    /// The masks of the last prepared batch, in the order of `kernels`.
    masks: Vec<Vec<u64>>,
}

/// Mask index of "the rule reads the row's type".
const READS: usize = 0;
/// Mask index of "the rule reads the row and its prefilter holds".
const STARTS: usize = 1;

impl Prefilter {
    #[inline]
    fn eval(&self, e: EventView<'_>) -> bool {
        self.type_may_pass
            .get(usize::from(e.type_id))
            .copied()
            .unwrap_or(true)
            && self.expr.eval(&CurrentEvent(e)).is_true()
    }
}

/// The fast matcher for one rule.
#[derive(Debug)]
pub struct FastMatcher {
    core: Core,
    /// Partitions with runs (all partitions seen when skipping is off).
    partitions: KeyMap<Partition>,
    /// Per type id: whether the rule reads it.
    reads: Vec<bool>,
    /// `None`: skipping is off ([`history_depth`] is not 0).
    prefilter: Option<Prefilter>,
}

impl FastMatcher {
    /// A matcher for `rule`, which is rule number `rule_index` of its program (copied into signals).
    pub fn new(rule: Rule, rule_index: usize, config: MatcherConfig) -> Self {
        let reads = rule.read_table();
        let prefilter = if history_depth(&rule) == 0 {
            let expr = prefilter(&rule);
            let reads_type = Expr::TypeIs(rule.from.clone());
            let starts = Expr::And(Box::new(reads_type.clone()), Box::new(expr.clone()));
            // Both read only the current event, so they always compile; if they did not,
            // matching without skipping stays correct.
            KernelSet::new(&[reads_type, starts])
                .ok()
                .map(|kernels| Prefilter {
                    expr,
                    type_may_pass: (0..reads.len())
                        .map(|t| TypeId::try_from(t).is_ok_and(|t| type_may_pass(&rule, t)))
                        .collect(),
                    kernels,
                    scratch: Scratch::new(),
                    masks: Vec::new(),
                })
        } else {
            None
        };
        Self {
            core: Core::new(rule, rule_index, config),
            partitions: KeyMap::default(),
            reads,
            prefilter,
        }
    }

    /// Restricts the matcher to the partition keys of `shard` (`None`: every key).
    pub fn with_shard(mut self, shard: Option<ShardSpec>) -> Self {
        self.core.shard = shard;
        self
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.core.rule
    }

    /// Counters so far (`partitions`: partitions created, see the module docs).
    pub fn stats(&self) -> MatcherStats {
        self.core.stats
    }

    /// True if events that cannot change anything are skipped (no `prev` history needed).
    pub fn skips(&self) -> bool {
        self.prefilter.is_some()
    }

    /// The earliest deadline in the timer heap (`i64::MAX` if none): a watermark below it
    /// changes nothing.
    #[inline]
    pub fn next_deadline(&self) -> i64 {
        self.core.next_deadline()
    }

    /// Partitions currently held.
    pub fn active_partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Evaluates the prefilter over `batch` with the columnar kernels; afterwards
    /// [`Self::can_start`] answers for its rows.
    pub fn prepare_batch(&mut self, batch: &EventBatch) {
        if let Some(p) = &mut self.prefilter {
            p.kernels.eval(batch, &mut p.scratch, &mut p.masks);
        }
    }

    /// True if the matcher skips events and holds no partition: then only the rows of
    /// [`Self::attention`] can change anything.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.prefilter.is_some() && self.partitions.is_empty()
    }

    /// The rows of the last prepared batch that can start a run (`None` when the matcher does
    /// not skip).
    pub fn attention(&self) -> Option<&[u64]> {
        Some(self.prefilter.as_ref()?.masks.get(STARTS)?)
    }

    /// Accounts for rows `from..to` of the last prepared batch, delivered to the engine but not
    /// fed to the matcher because it was idle and none of them is in [`Self::attention`]: their
    /// positions and the event count advance by the rows the rule reads. The caller guarantees
    /// those conditions.
    pub fn skip_rows(&mut self, from: usize, to: usize) {
        let Some(p) = &self.prefilter else { return };
        let reads = count_ones(p.masks.get(READS).map_or(&[], Vec::as_slice), from, to);
        self.core.next_pos += reads;
        self.core.stats.events += reads;
    }

    /// The prefilter's verdict for row `row` of the last prepared batch (`None` when the matcher
    /// does not skip).
    #[inline]
    pub fn can_start(&self, row: usize) -> Option<bool> {
        let p = self.prefilter.as_ref()?;
        Some(p.masks.get(STARTS).is_some_and(|m| mask_bit(m, row)))
    }

    /// Feeds one event, evaluating the prefilter for it; see
    /// [`crate::reference::ReferenceMatcher::on_event`].
    pub fn on_event(&mut self, e: EventView<'_>, out: &mut Vec<Signal>) {
        self.on_event_with(e, None, out);
    }

    /// Feeds one event whose prefilter verdict may be known already (`can_start`, e.g. from
    /// [`Self::can_start`]); `None` evaluates it.
    #[inline]
    pub fn on_event_with(
        &mut self,
        e: EventView<'_>,
        can_start: Option<bool>,
        out: &mut Vec<Signal>,
    ) {
        self.feed(
            e.type_id,
            |p| can_start.unwrap_or_else(|| p.eval(e)),
            |rule| rule.key_of(&e),
            || e,
            out,
        );
    }

    /// Feeds row `row` of `batch`, the batch last given to [`Self::prepare_batch`]. The row's
    /// slots are copied (into `scratch`) only if a partition has to process it.
    #[inline]
    pub fn on_batch_row(
        &mut self,
        batch: &EventBatch,
        row: usize,
        scratch: &mut Vec<u64>,
        out: &mut Vec<Signal>,
    ) {
        // The common case without branching on the row's type: nothing active and the row
        // cannot start a run (whichever shard owns its key); only the position and the event
        // count advance if the rule reads the row.
        if let Some(p) = &self.prefilter
            && self.partitions.is_empty()
        {
            let bit = |m: usize| {
                p.masks
                    .get(m)
                    .and_then(|m| m.get(row / 64))
                    .map_or(0, |w| (w >> (row % 64)) & 1)
            };
            if bit(STARTS) == 0 {
                let reads = bit(READS);
                self.core.next_pos += reads;
                self.core.stats.events += reads;
                return;
            }
        }
        self.feed(
            batch.type_ids()[row],
            |p| p.masks.get(STARTS).is_some_and(|m| mask_bit(m, row)),
            |rule| rule.key_of_row(batch, row),
            move || {
                batch.copy_slots(row, scratch);
                let slots: &Vec<u64> = scratch;
                EventView {
                    seq: batch.seq()[row],
                    ts: batch.ts()[row],
                    type_id: batch.type_ids()[row],
                    slots,
                }
            },
            out,
        );
    }

    /// One event of type `type_id`: `can_start` gives the prefilter's verdict, `key` its
    /// partition key, `event` the event itself; each is asked for only when needed.
    #[inline(always)]
    fn feed<'e>(
        &mut self,
        type_id: TypeId,
        can_start: impl FnOnce(&Prefilter) -> bool,
        key: impl FnOnce(&Rule) -> PartitionKey,
        event: impl FnOnce() -> EventView<'e>,
        out: &mut Vec<Signal>,
    ) {
        if !self
            .reads
            .get(usize::from(type_id))
            .copied()
            .unwrap_or(false)
        {
            return;
        }
        let core = &mut self.core;
        let pos = core.next_pos;
        core.next_pos += 1;
        core.stats.events += 1;
        let Some(p) = &self.prefilter else {
            let key = key(&core.rule);
            if !core.owns(key) {
                return;
            }
            let part = self.partitions.entry(key).or_insert_with(|| {
                core.stats.partitions += 1;
                Partition::default()
            });
            core.process(part, key, event(), pos, out);
            return;
        };
        // Asked at most once, and only when the partition is not active.
        let mut can_start = Some(can_start);
        let mut verdict = None;
        let mut starts =
            |p: &Prefilter| *verdict.get_or_insert_with(|| can_start.take().is_some_and(|f| f(p)));
        // The common case first: nothing active and the event cannot start a run, whichever
        // shard owns its key.
        if self.partitions.is_empty() && !starts(p) {
            return;
        }
        let key = key(&core.rule);
        if !core.owns(key) {
            return;
        }
        match self.partitions.entry(key) {
            Entry::Occupied(mut o) => {
                core.process(o.get_mut(), key, event(), pos, out);
                if o.get().runs.is_empty() {
                    o.remove();
                }
            }
            Entry::Vacant(v) => {
                if !starts(p) {
                    return;
                }
                // Kept only if the event left runs behind.
                let mut part = Partition::default();
                core.process(&mut part, key, event(), pos, out);
                if !part.runs.is_empty() {
                    core.stats.partitions += 1;
                    v.insert(part);
                }
            }
        }
    }

    /// Watermark `w`; see [`crate::reference::ReferenceMatcher::on_watermark`].
    pub fn on_watermark(&mut self, w: i64, out: &mut Vec<Signal>) {
        let remove_empty = self.prefilter.is_some();
        while let Some(&std::cmp::Reverse((d, tiebreak, key))) = self.core.timers.peek() {
            if d > w {
                break;
            }
            self.core.timers.pop();
            let Entry::Occupied(mut o) = self.partitions.entry(key) else {
                continue; // the partition emptied and was removed: a stale entry
            };
            if o.get().timer() != Some((d, tiebreak)) {
                continue; // stale entry
            }
            self.core.fire(o.get_mut(), key, (d, tiebreak), out);
            if remove_empty && o.get().runs.is_empty() {
                o.remove();
            }
        }
    }

    /// Ends the stream: the watermark `i64::MAX`, then [`Self::finish_runs`].
    pub fn finish(&mut self, out: &mut Vec<Signal>) {
        self.on_watermark(i64::MAX, out);
        self.finish_runs(out);
    }

    /// The final phase of [`Self::finish`]; see
    /// [`crate::reference::ReferenceMatcher::finish_runs`].
    pub fn finish_runs(&mut self, out: &mut Vec<Signal>) {
        kill_all(&mut self.core, &mut self.partitions, out);
        if self.prefilter.is_some() {
            self.partitions.clear();
        }
    }
}

/// Number of set bits `from..to` of `mask` (bits past the mask count as 0).
pub(crate) fn count_ones(mask: &[u64], from: usize, to: usize) -> u64 {
    let mut n = 0u64;
    let mut row = from;
    while row < to {
        let (w, b) = (row / 64, row % 64);
        let take = (64 - b).min(to - row);
        let bits = mask.get(w).copied().unwrap_or(0) >> b;
        let bits = if take == 64 {
            bits
        } else {
            bits & ((1u64 << take) - 1)
        };
        n += u64::from(bits.count_ones());
        row += take;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn count_ones_counts_a_range() {
        let mask = [u64::MAX, 0b1011, 0];
        assert_eq!(count_ones(&mask, 0, 0), 0);
        assert_eq!(count_ones(&mask, 0, 64), 64);
        assert_eq!(count_ones(&mask, 63, 66), 3);
        assert_eq!(count_ones(&mask, 65, 68), 2);
        assert_eq!(count_ones(&mask, 10, 300), 57);
        let naive = |from: usize, to: usize| {
            (from..to)
                .filter(|&r| mask.get(r / 64).is_some_and(|w| w >> (r % 64) & 1 == 1))
                .count() as u64
        };
        for from in 0..140 {
            for to in from..200 {
                assert_eq!(count_ones(&mask, from, to), naive(from, to), "{from}..{to}");
            }
        }
    }

    #[test]
    fn key_hasher_spreads_small_keys() {
        let b = BuildHasherDefault::<KeyHasher>::default();
        let mut buckets = [0u32; 64];
        for i in 0..6400u64 {
            let h = b.hash_one(PartitionKey([i, 0, 0, 0]));
            buckets[(h & 63) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 50), "{buckets:?}");
    }
}
