//! The reference matcher: simple, obviously correct, and the oracle every faster matcher is
//! tested against.
//!
//! Input: the events of one stream in sequence order, one at a time ([`ReferenceMatcher::on_event`]).
//! Output: [`Signal`]s for one rule. Next stage: a sink.
//!
//! How it works (see `docs/language.md` for the semantics it implements):
//! - Events whose type the rule does not read are ignored; the rest are split by partition key.
//! - Each partition keeps a list of *runs* (partial matches), ordered by start event and then by
//!   preference. On an event, every run waiting in state `q` is replaced, in order, by: one run per
//!   target of `q` if the event satisfies `q`'s condition (a target `Accept` completes a match), then
//!   the run itself if `q`'s contiguity lets it skip the event (strict: never; relaxed: only if the
//!   event was not taken; any: always). Then a new run starts at the event if it satisfies a start
//!   state. A run whose first event is more than `within` before the current event dies.
//! - `select all` reports every completed match at once. `select first` keeps completed matches in
//!   the run list and reports, per start event, the first entry in preference order once every
//!   run preferred to it has died; the rest of that start's runs are dropped.
//! - After each reported match, the after-match strategy drops other runs by their start event.
//! - Live runs per partition are capped ([`MatcherConfig::max_runs_per_key`]); the oldest are
//!   evicted first and every eviction is counted in [`MatcherStats::evictions`].
//! - [`ReferenceMatcher::finish`] ends the stream: pending preferred matches whose better
//!   alternatives can no longer complete are reported.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use crate::event::EventView;
use crate::expr::{Bindings, VarId};
use crate::nfa::{AfterMatch, Contiguity, Selection, StateId, Target};
use crate::rule::{PartitionKey, Rule};
use crate::signal::Signal;
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
    /// Events the rule read (after the `from` filter).
    pub events: u64,
    /// Matches reported.
    pub matches: u64,
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

#[derive(Debug, Clone)]
struct Run {
    /// Waiting state (meaningless when `accepted`).
    state: StateId,
    /// Completed match awaiting its turn (`select first` only).
    accepted: bool,
    start_seq: u64,
    start_ts: i64,
    /// Bound events in order: (variable, seq).
    taken: Vec<(VarId, u64)>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Seq of the partition's first event: end of stream visits partitions in this order.
    first_seq: u64,
    history: VecDeque<StoredEvent>,
    runs: Vec<Run>,
}

/// Bindings of one run (or completed match) over a partition's history.
struct RunBindings<'a> {
    history: &'a VecDeque<StoredEvent>,
    taken: &'a [(VarId, u64)],
    current: usize,
}

impl RunBindings<'_> {
    fn find(&self, seq: u64) -> Option<EventView<'_>> {
        let i = self.history.binary_search_by_key(&seq, |e| e.seq).ok()?;
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
        let (_, seq) = self.taken.iter().filter(|(v, _)| *v == var).nth(i)?;
        self.find(*seq)
    }
    fn prev(&self, n: u32) -> Option<EventView<'_>> {
        let i = self.current.checked_sub(n as usize)?;
        Some(self.history[i].view())
    }
}

/// The reference matcher for one rule.
#[derive(Debug)]
pub struct ReferenceMatcher {
    rule: Rule,
    rule_index: usize,
    config: MatcherConfig,
    keep_prev: usize,
    partitions: HashMap<PartitionKey, Partition>,
    stats: MatcherStats,
}

impl ReferenceMatcher {
    /// A matcher for `rule`, which is rule number `rule_index` of its program (copied into signals).
    pub fn new(rule: Rule, rule_index: usize, config: MatcherConfig) -> Self {
        let keep_prev = rule.max_prev() as usize;
        Self {
            rule,
            rule_index,
            config,
            keep_prev,
            partitions: HashMap::new(),
            stats: MatcherStats::default(),
        }
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Counters so far.
    pub fn stats(&self) -> MatcherStats {
        self.stats
    }

    /// Feeds one event (events must arrive in sequence order); completed signals are appended to `out`.
    pub fn on_event(&mut self, e: EventView<'_>, out: &mut Vec<Signal>) {
        if !self.rule.reads(e.type_id) {
            return;
        }
        self.stats.events += 1;
        let key = self.rule.key_of(&e);
        let part = self.partitions.entry(key).or_insert_with(|| {
            self.stats.partitions += 1;
            Partition {
                first_seq: e.seq,
                ..Partition::default()
            }
        });
        let before = part.runs.len();
        part.history.push_back(StoredEvent {
            seq: e.seq,
            ts: e.ts,
            type_id: e.type_id,
            slots: e.slots.into(),
        });
        let cur = part.history.len() - 1;
        let nfa = &self.rule.nfa;

        if let Some(w) = nfa.within {
            part.runs
                .retain(|r| r.accepted || e.ts.saturating_sub(r.start_ts) <= w);
        }

        let mut next: Vec<Run> = Vec::with_capacity(part.runs.len() + 2);
        let mut completed: Vec<Run> = Vec::new();
        let select_all = nfa.selection == Selection::All;
        let push_target = |next: &mut Vec<Run>, completed: &mut Vec<Run>, t: Target, base: &Run| {
            let mut r = base.clone();
            match t {
                Target::State(s) => {
                    r.state = s;
                    next.push(r);
                }
                Target::Accept => {
                    r.accepted = true;
                    if select_all {
                        completed.push(r)
                    } else {
                        next.push(r)
                    }
                }
            }
        };
        for run in std::mem::take(&mut part.runs) {
            if run.accepted {
                next.push(run);
                continue;
            }
            let st = &nfa.states[run.state as usize];
            let ok = {
                let b = RunBindings {
                    history: &part.history,
                    taken: &run.taken,
                    current: cur,
                };
                nfa.vars[st.var as usize].condition.eval(&b).is_true()
            };
            if ok {
                let mut taken = run.clone();
                taken.taken.push((st.var, e.seq));
                for &t in &st.next {
                    push_target(&mut next, &mut completed, t, &taken);
                }
            }
            let may_skip = match st.contiguity {
                Contiguity::Strict => false,
                Contiguity::Relaxed => !ok,
                Contiguity::Any => true,
            };
            if may_skip {
                next.push(run);
            }
        }
        for &t in &nfa.start {
            let Target::State(s) = t else { continue };
            let st = &nfa.states[s as usize];
            let ok = {
                let b = RunBindings {
                    history: &part.history,
                    taken: &[],
                    current: cur,
                };
                nfa.vars[st.var as usize].condition.eval(&b).is_true()
            };
            if ok {
                let base = Run {
                    state: s,
                    accepted: false,
                    start_seq: e.seq,
                    start_ts: e.ts,
                    taken: vec![(st.var, e.seq)],
                };
                for &t2 in &st.next {
                    push_target(&mut next, &mut completed, t2, &base);
                }
            }
        }
        part.runs = next;

        let mut reporter = Reporter {
            rule: &self.rule,
            rule_index: self.rule_index,
            key,
            out,
            matches: &mut self.stats.matches,
        };
        if select_all {
            let mut pending = completed;
            while !pending.is_empty() {
                let m = pending.remove(0);
                if let Some(drop) = reporter.report(&part.history, &m) {
                    part.runs.retain(|r| !drop.contains(&r.start_seq));
                    pending.retain(|r| !drop.contains(&r.start_seq));
                }
            }
        } else {
            reporter.report_preferred(part);
        }

        let live = part.runs.len();
        if live > self.config.max_runs_per_key {
            // Evict the oldest partial matches; completed matches waiting for their turn stay.
            let mut excess = live - self.config.max_runs_per_key;
            part.runs.retain(|r| {
                if excess > 0 && !r.accepted {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
            self.stats.evictions += (live - part.runs.len()) as u64;
        }
        // Drop history no run can refer to any more.
        let oldest = part
            .runs
            .iter()
            .map(|r| r.start_seq)
            .min()
            .unwrap_or(u64::MAX);
        while part.history.len() > self.keep_prev + 1
            && part.history.front().is_some_and(|h| h.seq < oldest)
        {
            part.history.pop_front();
        }
        self.stats.live_runs = self.stats.live_runs.saturating_sub(before) + part.runs.len();
        self.stats.peak_live_runs = self.stats.peak_live_runs.max(self.stats.live_runs);
    }

    /// Watermark `w`: every event with `ts <= w` has been given. Partial matches that can no longer
    /// complete within `within` expire (timeouts, absences and pending preferred matches report),
    /// also in partitions that receive no further events.
    pub fn on_watermark(&mut self, _w: i64, _out: &mut Vec<Signal>) {}

    /// Ends the stream: every partial match dies, and pending preferred matches whose better
    /// alternatives were still running are reported, partitions in the order of their first event.
    pub fn finish(&mut self, out: &mut Vec<Signal>) {
        let mut keys: Vec<(u64, PartitionKey)> = self
            .partitions
            .iter()
            .map(|(k, p)| (p.first_seq, *k))
            .collect();
        keys.sort_unstable();
        let keys = keys.into_iter().map(|(_, k)| k);
        for key in keys {
            let Some(part) = self.partitions.get_mut(&key) else {
                continue;
            };
            part.runs.retain(|r| r.accepted);
            Reporter {
                rule: &self.rule,
                rule_index: self.rule_index,
                key,
                out,
                matches: &mut self.stats.matches,
            }
            .report_preferred(part);
            part.runs.clear();
        }
        self.stats.live_runs = 0;
    }
}

/// Start sequence numbers whose runs the after-match strategy drops after match `m`.
fn skip_range(strategy: AfterMatch, m: &Run) -> Option<Range<u64>> {
    let first = m.start_seq;
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

/// Turns completed matches of one partition into signals.
struct Reporter<'a> {
    rule: &'a Rule,
    rule_index: usize,
    key: PartitionKey,
    out: &'a mut Vec<Signal>,
    matches: &'a mut u64,
}

impl Reporter<'_> {
    /// Reports `m`; returns the start range the after-match strategy drops.
    fn report(&mut self, history: &VecDeque<StoredEvent>, m: &Run) -> Option<Range<u64>> {
        self.out.push(make_signal(
            self.rule,
            self.rule_index,
            self.key,
            history,
            m,
        ));
        *self.matches += 1;
        skip_range(self.rule.nfa.after_match, m)
    }

    /// Reports, per start event in ascending order, a completed match that no live run is
    /// preferred to; drops the rest of that start's runs and applies the after-match strategy.
    fn report_preferred(&mut self, part: &mut Partition) {
        let mut i = 0;
        while i < part.runs.len() {
            let start = part.runs[i].start_seq;
            if !part.runs[i].accepted {
                // A preferred alternative is still running: skip this start's group.
                while i < part.runs.len() && part.runs[i].start_seq == start {
                    i += 1;
                }
                continue;
            }
            let m = part.runs.remove(i);
            let drop = self.report(&part.history, &m);
            part.runs.retain(|r| {
                r.start_seq != start && !drop.as_ref().is_some_and(|d| d.contains(&r.start_seq))
            });
            // Removals may merge groups before `i`; rescan from the start.
            i = 0;
        }
    }
}

fn make_signal(
    rule: &Rule,
    rule_index: usize,
    key: PartitionKey,
    history: &VecDeque<StoredEvent>,
    m: &Run,
) -> Signal {
    let last_seq = m.taken.last().map_or(m.start_seq, |t| t.1);
    let current = history
        .binary_search_by_key(&last_seq, |e| e.seq)
        .unwrap_or(history.len().saturating_sub(1));
    let b = RunBindings {
        history,
        taken: &m.taken,
        current,
    };
    let fields = rule
        .emit
        .fields
        .iter()
        .map(|f| f.expr.eval(&b))
        .collect::<Vec<Value>>();
    Signal {
        kind: crate::signal::SignalKind::Match,
        rule: rule_index,
        ts: history.get(current).map_or(m.start_ts, |e| e.ts),
        key,
        seq: m.taken.iter().map(|t| t.1).collect(),
        fields,
    }
}
