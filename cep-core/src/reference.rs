//! The reference matcher: simple, obviously correct, and the oracle every faster matcher is
//! tested against.
//!
//! Input: the events of one stream in event-time order, one at a time
//! ([`ReferenceMatcher::on_event`]), and watermarks ([`ReferenceMatcher::on_watermark`]).
//! Output: [`Signal`]s for one rule (matches and, with `on timeout emit`, timeouts). Next stage: a
//! sink.
//!
//! How it works (see `docs/language.md` for the semantics it implements):
//! - Events whose type the rule does not read are ignored; the rest are split by partition key.
//! - Each partition keeps a list of *runs* (partial matches), ordered by start event and then by
//!   preference. On an event, every run waiting in state `q` is replaced, in order, by: one run per
//!   edge of `q` if the event satisfies `q`'s condition (an edge to `Accept` completes a match; one
//!   that crossed a trailing negation waits for the `within` deadline instead), then the run itself
//!   if `q`'s contiguity lets it skip the event (strict: never; relaxed: only if the event was not
//!   taken; any: always) and no negation guard it carries forbids skipping it. Then a new run
//!   starts at the event if it satisfies a start state.
//! - `within`: a run that started at `t` dies when the watermark reaches `t + within`. Deadlines
//!   sit in a timer heap, so partitions that see no more events still expire; at expiry trailing
//!   absences complete and timeouts are emitted. Each partition with partial matches has one live
//!   entry: its earliest deadline and, as tie-break, the start position of its first run (in
//!   run-list order) with that deadline. The entry is renewed whenever that pair changes, so the
//!   order in which partitions fire depends only on their live runs, not on their past. An event
//!   first expires its own partition's runs up to `ts - 1`, exactly as the watermark `ts - 1`
//!   would.
//! - `select all` reports every completed match at once. `select first` keeps completed matches in
//!   the run list and reports them strictly in start order: the first start's preferred match once
//!   every run preferred to it has died; later starts wait while an earlier one is unresolved.
//! - After each reported match, the after-match strategy drops other runs by their start event.
//! - Live runs per partition are capped ([`MatcherConfig::max_runs_per_key`]); the oldest are
//!   evicted first and every eviction is counted in [`MatcherStats::evictions`].
//! - [`ReferenceMatcher::finish`] ends the stream: the watermark `i64::MAX`, then every partial
//!   match dies and pending preferred matches are reported, partitions in the order of their
//!   smallest run start position ([`ReferenceMatcher::finish_runs`]).
//! - Every signal carries its order ([`Signal::order`]): `(i64::MIN, 0)` when emitted while an
//!   event is processed, the timer entry `(deadline, tie-break)` when a watermark fired it, and
//!   `(i64::MIN, smallest run start position)` in the final phase of `finish`. Within one call
//!   signals come out in ascending order, and equal orders belong to one partition, so outputs of
//!   matchers that own disjoint sets of partition keys ([`ShardSpec`]) merge into exactly the
//!   output of one matcher owning all of them.
//! - Sharding ([`ReferenceMatcher::with_shard`]): a matcher may own only the keys of one shard.
//!   Events of other keys still take a delivery position, so positions (and with them the
//!   tie-breaks above) are the same in every shard.
//!
//! The partition store, per-event processing and timer firing are shared with the fast matcher
//! ([`crate::fast`]), which differs only in which events and partitions it keeps.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ops::Range;

use crate::event::EventView;
use crate::expr::{Bindings, VarId};
use crate::nfa::{AfterMatch, Contiguity, Edge, Guard, Selection, StateId, Target};
use crate::rule::{EmitSpec, PartitionKey, Rule, ShardSpec};
use crate::signal::{Signal, SignalKind};
use crate::value::Value;

/// Matcher limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatcherConfig {
    /// Most live runs (partial matches) per partition key; beyond it the oldest are evicted.
    pub max_runs_per_key: usize,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            max_runs_per_key: 10_000,
        }
    }
}

/// Counters of one matcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatcherStats {
    /// Events the rule read (after the `from` filter; in a shard, also those of other shards'
    /// keys).
    pub events: u64,
    /// Matches reported.
    pub matches: u64,
    /// Timeout signals reported (`on timeout emit`).
    pub timeouts: u64,
    /// Runs currently alive over all partitions.
    pub live_runs: usize,
    /// Highest `live_runs` seen.
    pub peak_live_runs: usize,
    /// Runs evicted by the per-key cap.
    pub evictions: u64,
    /// Partitions seen.
    pub partitions: usize,
}

#[derive(Debug, Clone)]
struct StoredEvent {
    /// Delivery position in this matcher (what runs refer to events by).
    pos: u64,
    /// Sequence number (the tape's, or the engine's for derived events), reported in signals.
    seq: u64,
    ts: i64,
    type_id: u16,
    slots: Box<[u64]>,
}

impl StoredEvent {
    fn view(&self) -> EventView<'_> {
        EventView {
            seq: self.seq,
            ts: self.ts,
            type_id: self.type_id,
            slots: &self.slots,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    /// Waiting in `state` for its next event.
    Waiting,
    /// Took its last event; completes at the `within` deadline unless a guard is hit first.
    Absent,
    /// A completed match awaiting its turn (`select first` only).
    Accepted,
}

#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Waiting state (meaningful for `Waiting` only).
    state: StateId,
    kind: RunKind,
    /// Negations the events this run skips must not satisfy.
    guards: Vec<Guard>,
    start_pos: u64,
    start_ts: i64,
    /// Event time the match completed at (`Accepted`): its last event's, or the deadline.
    done_ts: i64,
    /// Bound events in order: (variable, delivery position).
    taken: Vec<(VarId, u64)>,
}

/// One partition key's state.
#[derive(Debug, Default)]
pub(crate) struct Partition {
    history: VecDeque<StoredEvent>,
    pub(crate) runs: Vec<Run>,
    /// The live timer-heap entry of this partition (deadline, tie-break), if any; other entries
    /// for it in the heap are stale.
    timer: Option<(i64, u64)>,
}

impl Partition {
    /// The live timer entry.
    pub(crate) fn timer(&self) -> Option<(i64, u64)> {
        self.timer
    }

    /// Smallest start position of its runs (`None` without runs).
    pub(crate) fn first_start(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.start_pos).min()
    }
}

/// Signal order of signals emitted while an event is processed.
pub(crate) const EVENT_ORDER: (i64, u64) = (i64::MIN, 0);

/// Timer heap: `(deadline, tie-break, key)`, earliest first.
pub(crate) type Timers = BinaryHeap<Reverse<(i64, u64, PartitionKey)>>;

/// Bindings of one run (or completed match) over a partition's history.
struct RunBindings<'a> {
    history: &'a VecDeque<StoredEvent>,
    taken: &'a [(VarId, u64)],
    current: usize,
}

impl RunBindings<'_> {
    fn find(&self, pos: u64) -> Option<EventView<'_>> {
        let i = self.history.binary_search_by_key(&pos, |e| e.pos).ok()?;
        Some(self.history[i].view())
    }
}

impl Bindings for RunBindings<'_> {
    fn current(&self) -> EventView<'_> {
        self.history[self.current].view()
    }
    fn var_len(&self, var: VarId) -> usize {
        self.taken.iter().filter(|(v, _)| *v == var).count()
    }
    fn var_event(&self, var: VarId, i: usize) -> Option<EventView<'_>> {
        let (_, pos) = self.taken.iter().filter(|(v, _)| *v == var).nth(i)?;
        self.find(*pos)
    }
    fn prev(&self, n: u32) -> Option<EventView<'_>> {
        let i = self.current.checked_sub(n as usize)?;
        Some(self.history[i].view())
    }
}

/// What both matchers share besides the partition store: the rule, the timer heap, delivery
/// positions, counters and the shard, with the per-partition steps that use them.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) rule: Rule,
    rule_index: usize,
    config: MatcherConfig,
    /// How many events before the newest one a partition keeps beyond its oldest run's start.
    keep_prev: usize,
    pub(crate) timers: Timers,
    /// Delivery position of the next event. Runs refer to events by position, not by `seq`, so
    /// the matcher needs no particular `seq` order (reordered or derived input).
    pub(crate) next_pos: u64,
    pub(crate) stats: MatcherStats,
    pub(crate) shard: Option<ShardSpec>,
}

impl Core {
    pub(crate) fn new(rule: Rule, rule_index: usize, config: MatcherConfig) -> Self {
        let keep_prev = rule.max_prev().max(timeout_prev(&rule)) as usize;
        Self {
            rule,
            rule_index,
            config,
            keep_prev,
            timers: BinaryHeap::new(),
            next_pos: 0,
            stats: MatcherStats::default(),
            shard: None,
        }
    }

    /// The earliest deadline in the timer heap (`i64::MAX` if none).
    #[inline]
    pub(crate) fn next_deadline(&self) -> i64 {
        self.timers.peek().map_or(i64::MAX, |Reverse((d, _, _))| *d)
    }

    /// True if this matcher owns partition `key`.
    #[inline]
    pub(crate) fn owns(&self, key: PartitionKey) -> bool {
        self.shard.is_none_or(|s| s.owns(key))
    }

    fn ctx<'a>(
        &'a mut self,
        key: PartitionKey,
        out: &'a mut Vec<Signal>,
        order: (i64, u64),
    ) -> Ctx<'a> {
        Ctx {
            rule: &self.rule,
            rule_index: self.rule_index,
            key,
            order,
            out,
            stats: &mut self.stats,
        }
    }

    /// Processes event `e` (delivery position `pos`) in its partition `part`: expires up to
    /// `ts - 1`, advances and starts runs, reports, evicts over the cap, prunes, re-arms.
    pub(crate) fn process(
        &mut self,
        part: &mut Partition,
        key: PartitionKey,
        e: EventView<'_>,
        pos: u64,
        out: &mut Vec<Signal>,
    ) {
        let before = part.runs.len();
        let max_runs = self.config.max_runs_per_key;
        let mut ctx = self.ctx(key, out, EVENT_ORDER);
        ctx.expire(part, e.ts.saturating_sub(1));
        part.history.push_back(StoredEvent {
            pos,
            seq: e.seq,
            ts: e.ts,
            type_id: e.type_id,
            slots: e.slots.into(),
        });
        ctx.step(part, pos, e.ts);

        let live = part.runs.len();
        if live > max_runs {
            // Evict the oldest partial matches; completed matches waiting for their turn stay.
            let mut excess = live - max_runs;
            part.runs.retain(|r| {
                if excess > 0 && r.kind != RunKind::Accepted {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
            ctx.stats.evictions += (live - part.runs.len()) as u64;
            // Evicting an earlier start may let later starts' matches through.
            if ctx.rule.nfa.selection == Selection::First {
                ctx.report_preferred(part);
            }
        }
        prune_history(part, self.keep_prev);
        arm(&self.rule, &mut self.timers, key, part);
        self.account(before, part.runs.len());
    }

    /// Fires the timer entry `(d, tiebreak)` of partition `part`, which must be its live entry:
    /// expires every run due at `d`, prunes, re-arms.
    pub(crate) fn fire(
        &mut self,
        part: &mut Partition,
        key: PartitionKey,
        (d, tiebreak): (i64, u64),
        out: &mut Vec<Signal>,
    ) {
        part.timer = None;
        let before = part.runs.len();
        self.ctx(key, out, (d, tiebreak)).expire(part, d);
        prune_history(part, self.keep_prev);
        arm(&self.rule, &mut self.timers, key, part);
        self.account(before, part.runs.len());
    }

    /// The final phase of the stream for one partition: every partial match dies and pending
    /// preferred matches are reported (order `(i64::MIN, smallest run start)`).
    pub(crate) fn kill(&mut self, part: &mut Partition, key: PartitionKey, out: &mut Vec<Signal>) {
        let Some(first) = part.first_start() else {
            return;
        };
        let before = part.runs.len();
        part.runs.retain(|r| r.kind == RunKind::Accepted);
        self.ctx(key, out, (i64::MIN, first)).report_preferred(part);
        part.runs.clear();
        part.timer = None;
        self.account(before, 0);
    }

    /// Updates the live-run counters after a partition went from `before` runs to `after`.
    fn account(&mut self, before: usize, after: usize) {
        self.stats.live_runs = self.stats.live_runs.saturating_sub(before) + after;
        self.stats.peak_live_runs = self.stats.peak_live_runs.max(self.stats.live_runs);
    }
}

/// The reference matcher for one rule.
#[derive(Debug)]
pub struct ReferenceMatcher {
    core: Core,
    partitions: HashMap<PartitionKey, Partition>,
}

impl ReferenceMatcher {
    /// A matcher for `rule`, which is rule number `rule_index` of its program (copied into signals).
    pub fn new(rule: Rule, rule_index: usize, config: MatcherConfig) -> Self {
        Self {
            core: Core::new(rule, rule_index, config),
            partitions: HashMap::new(),
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

    /// Counters so far.
    pub fn stats(&self) -> MatcherStats {
        self.core.stats
    }

    /// The earliest deadline in the timer heap (`i64::MAX` if none): a watermark below it
    /// changes nothing.
    #[inline]
    pub fn next_deadline(&self) -> i64 {
        self.core.next_deadline()
    }

    /// Feeds one event (events arrive in event-time order, ties in delivery order; `seq` may be in
    /// any order); signals are appended to `out`.
    ///
    /// The event's partition first expires what the watermark `ts - 1` would expire (so direct
    /// users see the same signals as the engine, which sends that watermark first).
    pub fn on_event(&mut self, e: EventView<'_>, out: &mut Vec<Signal>) {
        let core = &mut self.core;
        if !core.rule.reads(e.type_id) {
            return;
        }
        let pos = core.next_pos;
        core.next_pos += 1;
        core.stats.events += 1;
        let key = core.rule.key_of(&e);
        if !core.owns(key) {
            return;
        }
        let part = self.partitions.entry(key).or_insert_with(|| {
            core.stats.partitions += 1;
            Partition::default()
        });
        core.process(part, key, e, pos, out);
    }

    /// Watermark `w`: every event with `ts <= w` has been given. Partial matches whose `within`
    /// deadline is `<= w` expire, by deadline, then tie-break (the start position of the
    /// partition's first run due then), then run order: trailing absences complete, timeouts are
    /// emitted and pending preferred matches behind them are reported, also in partitions that
    /// receive no further events.
    pub fn on_watermark(&mut self, w: i64, out: &mut Vec<Signal>) {
        while let Some(&Reverse((d, tiebreak, key))) = self.core.timers.peek() {
            if d > w {
                break;
            }
            self.core.timers.pop();
            let Some(part) = self.partitions.get_mut(&key) else {
                continue;
            };
            if part.timer != Some((d, tiebreak)) {
                continue; // stale entry
            }
            self.core.fire(part, key, (d, tiebreak), out);
        }
    }

    /// Ends the stream: the watermark `i64::MAX` (every `within` deadline fires), then
    /// [`Self::finish_runs`].
    pub fn finish(&mut self, out: &mut Vec<Signal>) {
        self.on_watermark(i64::MAX, out);
        self.finish_runs(out);
    }

    /// The final phase of [`Self::finish`]: every remaining partial match dies and pending
    /// preferred matches are reported, partitions in the order of their smallest run start
    /// position.
    pub fn finish_runs(&mut self, out: &mut Vec<Signal>) {
        kill_all(&mut self.core, &mut self.partitions, out);
    }
}

/// Largest `prev(_, n)` of the timeout emit fields.
fn timeout_prev(rule: &Rule) -> u32 {
    rule.timeout
        .iter()
        .flat_map(|t| t.fields.iter().map(|f| f.expr.max_prev()))
        .max()
        .unwrap_or(0)
}

/// The final phase of the end of stream, shared by the reference and fast matchers: every
/// partition with runs, in the order of its smallest run start position, kills its partial
/// matches and reports its pending preferred matches.
pub(crate) fn kill_all<S: std::hash::BuildHasher>(
    core: &mut Core,
    partitions: &mut HashMap<PartitionKey, Partition, S>,
    out: &mut Vec<Signal>,
) {
    let mut keys: Vec<(u64, PartitionKey)> = partitions
        .iter()
        .filter_map(|(k, p)| Some((p.first_start()?, *k)))
        .collect();
    keys.sort_unstable();
    for (_, key) in keys {
        if let Some(part) = partitions.get_mut(&key) {
            core.kill(part, key, out);
        }
    }
}

/// `within` deadline of a run that started at `start_ts`.
fn deadline(within: i64, start_ts: i64) -> i64 {
    start_ts.saturating_add(within)
}

/// Keeps the partition's live timer entry equal to its earliest deadline over runs that can
/// still expire, with the start position of the first such run (in run-list order) as tie-break;
/// a new entry is pushed whenever that pair changes (the old one goes stale).
pub(crate) fn arm(rule: &Rule, timers: &mut Timers, key: PartitionKey, part: &mut Partition) {
    let Some(w) = rule.nfa.within else { return };
    // Completed matches waiting their turn never expire; they are released when the earlier
    // starts ahead of them resolve (an admitted-late start can sit behind a later-timed one).
    let mut next: Option<(i64, u64)> = None;
    for r in part.runs.iter().filter(|r| r.kind != RunKind::Accepted) {
        let d = deadline(w, r.start_ts);
        if next.is_none_or(|(n, _)| d < n) {
            next = Some((d, r.start_pos));
        }
    }
    if part.timer == next {
        return;
    }
    part.timer = next;
    if let Some((d, tiebreak)) = next {
        timers.push(Reverse((d, tiebreak, key)));
    }
}

/// Drops history no run (nor a `prev` from one of its events) can refer to any more.
fn prune_history(part: &mut Partition, keep_prev: usize) {
    let oldest = part
        .runs
        .iter()
        .map(|r| r.start_pos)
        .min()
        .unwrap_or(u64::MAX);
    let first_needed = part.history.partition_point(|h| h.pos < oldest);
    let keep_from = first_needed
        .saturating_sub(keep_prev)
        .min(part.history.len().saturating_sub(keep_prev + 1));
    part.history.drain(..keep_from);
}

/// Start sequence numbers whose runs the after-match strategy drops after match `m`.
fn skip_range(strategy: AfterMatch, m: &Run) -> Option<Range<u64>> {
    let first = m.start_pos;
    let last = m.taken.last().map_or(first, |t| t.1);
    let bound = |var: VarId, pick_last: bool| {
        let mut it = m.taken.iter().filter(|t| t.0 == var).map(|t| t.1);
        if pick_last { it.next_back() } else { it.next() }
    };
    match strategy {
        AfterMatch::NoSkip => None,
        AfterMatch::ToNext => Some(first..first + 1),
        AfterMatch::PastLast => Some(first..last + 1),
        AfterMatch::ToFirst(v) => bound(v, false).map(|s| first..s),
        AfterMatch::ToLast(v) => bound(v, true).map(|s| first..s),
    }
}

/// What processing one partition needs: the rule, where signals go, the counters.
struct Ctx<'a> {
    rule: &'a Rule,
    rule_index: usize,
    key: PartitionKey,
    /// [`Signal::order`] of the signals emitted.
    order: (i64, u64),
    out: &'a mut Vec<Signal>,
    stats: &'a mut MatcherStats,
}

impl Ctx<'_> {
    /// Whether the event at history index `cur` satisfies `var`'s condition for a run with `taken`.
    fn satisfies(&self, part: &Partition, var: VarId, taken: &[(VarId, u64)], cur: usize) -> bool {
        let b = RunBindings {
            history: &part.history,
            taken,
            current: cur,
        };
        self.rule.nfa.vars[var as usize]
            .condition
            .eval(&b)
            .is_true()
    }

    /// Whether skipping the event at `cur` violates one of the run's guards.
    fn guard_hit(&self, part: &Partition, run: &Run, cur: usize) -> bool {
        run.guards
            .iter()
            .any(|g| self.satisfies(part, g.var, &run.taken, cur))
    }

    /// Advances every run of the partition over its newest event, starts new runs, reports.
    fn step(&mut self, part: &mut Partition, pos: u64, ts: i64) {
        let nfa = &self.rule.nfa;
        let cur = part.history.len() - 1;
        let select_all = nfa.selection == Selection::All;
        let mut next: Vec<Run> = Vec::with_capacity(part.runs.len() + 2);
        let mut completed: Vec<Run> = Vec::new();
        let follow = |next: &mut Vec<Run>, completed: &mut Vec<Run>, edge: &Edge, base: &Run| {
            let mut r = base.clone();
            r.guards.clone_from(&edge.guards);
            match edge.target {
                Target::State(s) => {
                    r.state = s;
                    r.kind = RunKind::Waiting;
                    next.push(r);
                }
                Target::Accept if !edge.guards.is_empty() => {
                    r.kind = RunKind::Absent;
                    next.push(r);
                }
                Target::Accept => {
                    r.kind = RunKind::Accepted;
                    r.done_ts = ts;
                    r.guards.clear();
                    if select_all {
                        completed.push(r);
                    } else {
                        next.push(r);
                    }
                }
            }
        };
        for mut run in std::mem::take(&mut part.runs) {
            match run.kind {
                RunKind::Accepted => next.push(run),
                RunKind::Absent => {
                    if !self.guard_hit(part, &run, cur) {
                        run.guards.retain(|g| !g.strict);
                        next.push(run);
                    }
                }
                RunKind::Waiting => {
                    let st = &nfa.states[run.state as usize];
                    let ok = self.satisfies(part, st.var, &run.taken, cur);
                    if ok {
                        let mut taken = run.clone();
                        taken.taken.push((st.var, pos));
                        for edge in &st.next {
                            follow(&mut next, &mut completed, edge, &taken);
                        }
                    }
                    let may_skip = match st.contiguity {
                        Contiguity::Strict => false,
                        Contiguity::Relaxed => !ok,
                        Contiguity::Any => true,
                    };
                    if may_skip && !self.guard_hit(part, &run, cur) {
                        run.guards.retain(|g| !g.strict);
                        next.push(run);
                    }
                }
            }
        }
        for &t in &nfa.start {
            let Target::State(s) = t else { continue };
            let st = &nfa.states[s as usize];
            if self.satisfies(part, st.var, &[], cur) {
                let base = Run {
                    state: s,
                    kind: RunKind::Waiting,
                    guards: Vec::new(),
                    start_pos: pos,
                    start_ts: ts,
                    done_ts: ts,
                    taken: vec![(st.var, pos)],
                };
                for edge in &st.next {
                    follow(&mut next, &mut completed, edge, &base);
                }
            }
        }
        part.runs = next;

        if select_all {
            let mut pending = completed;
            while !pending.is_empty() {
                let m = pending.remove(0);
                if let Some(drop) = self.report(part, &m) {
                    part.runs.retain(|r| !drop.contains(&r.start_pos));
                    pending.retain(|r| !drop.contains(&r.start_pos));
                }
            }
        } else {
            self.report_preferred(part);
        }
    }

    /// Expires every run whose `within` deadline is `<= upto`, start by start in order:
    /// trailing absences complete (at the deadline), the rest time out.
    fn expire(&mut self, part: &mut Partition, upto: i64) {
        let Some(w) = self.rule.nfa.within else {
            return;
        };
        let mut starts: Vec<u64> = part
            .runs
            .iter()
            .filter(|r| deadline(w, r.start_ts) <= upto)
            .map(|r| r.start_pos)
            .collect();
        starts.dedup();
        for start in starts {
            let Some(first) = part.runs.iter().position(|r| r.start_pos == start) else {
                continue; // dropped by an earlier match's after-match strategy
            };
            let due = deadline(w, part.runs[first].start_ts);
            if self.rule.nfa.selection == Selection::All {
                // Absences complete first: their after-match strategy may drop runs that would
                // otherwise time out.
                while let Some(i) = part
                    .runs
                    .iter()
                    .position(|r| r.start_pos == start && r.kind == RunKind::Absent)
                {
                    let mut m = part.runs.remove(i);
                    m.done_ts = due;
                    if let Some(drop) = self.report(part, &m) {
                        part.runs.retain(|r| !drop.contains(&r.start_pos));
                    }
                }
                let mut seen: Vec<Vec<(VarId, u64)>> = Vec::new();
                let group: Vec<Run> = part
                    .runs
                    .iter()
                    .filter(|r| r.start_pos == start)
                    .cloned()
                    .collect();
                for r in group {
                    if !seen.contains(&r.taken) {
                        self.timeout(part, &r, due);
                        seen.push(r.taken);
                    }
                }
                part.runs.retain(|r| r.start_pos != start);
            } else {
                for r in part.runs.iter_mut().filter(|r| r.start_pos == start) {
                    if r.kind == RunKind::Absent {
                        r.kind = RunKind::Accepted;
                        r.done_ts = due;
                    }
                }
                let matched = part
                    .runs
                    .iter()
                    .any(|r| r.start_pos == start && r.kind == RunKind::Accepted);
                if !matched {
                    let preferred = part.runs[first].clone();
                    self.timeout(part, &preferred, due);
                }
                part.runs
                    .retain(|r| r.start_pos != start || r.kind == RunKind::Accepted);
                self.report_preferred(part);
            }
        }
    }

    /// Reports `m`; returns the start range the after-match strategy drops.
    fn report(&mut self, part: &Partition, m: &Run) -> Option<Range<u64>> {
        let signal = self.signal(part, m, SignalKind::Match, &self.rule.emit, m.done_ts);
        self.out.push(signal);
        self.stats.matches += 1;
        skip_range(self.rule.nfa.after_match, m)
    }

    /// Emits the timeout signal of partial match `r`, if the rule has `on timeout emit`.
    fn timeout(&mut self, part: &Partition, r: &Run, due: i64) {
        let Some(spec) = &self.rule.timeout else {
            return;
        };
        let signal = self.signal(part, r, SignalKind::Timeout, spec, due);
        self.out.push(signal);
        self.stats.timeouts += 1;
    }

    /// Reports, strictly in start order, each start's preferred completed match once no live
    /// run is preferred to it; a start with a live preferred run holds back every later start.
    /// Drops the rest of a reported start's runs and applies the after-match strategy.
    fn report_preferred(&mut self, part: &mut Partition) {
        while let Some(first) = part.runs.first() {
            if first.kind != RunKind::Accepted {
                return;
            }
            let m = part.runs.remove(0);
            let drop = self.report(part, &m);
            part.runs.retain(|r| {
                r.start_pos != m.start_pos
                    && !drop.as_ref().is_some_and(|d| d.contains(&r.start_pos))
            });
        }
    }

    fn signal(
        &self,
        part: &Partition,
        m: &Run,
        kind: SignalKind,
        spec: &EmitSpec,
        ts: i64,
    ) -> Signal {
        let history = &part.history;
        let last_pos = m.taken.last().map_or(m.start_pos, |t| t.1);
        let current = history
            .binary_search_by_key(&last_pos, |e| e.pos)
            .unwrap_or(history.len().saturating_sub(1));
        let b = RunBindings {
            history,
            taken: &m.taken,
            current,
        };
        let fields = spec
            .fields
            .iter()
            .map(|f| f.expr.eval(&b))
            .collect::<Vec<Value>>();
        let score = spec.eval_score(&b);
        Signal {
            kind,
            rule: self.rule_index,
            ts,
            key: self.key,
            order: self.order,
            // Every bound event is still in the history (pruning keeps the oldest run's start).
            seq: m
                .taken
                .iter()
                .filter_map(|t| {
                    let i = history.binary_search_by_key(&t.1, |e| e.pos).ok()?;
                    Some(history[i].seq)
                })
                .collect(),
            fields,
            score,
        }
    }
}
