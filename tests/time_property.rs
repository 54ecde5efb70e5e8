//! Property test of the event-time layer through the embedding API (`Engine`, `TimeOptions`,
//! `push`, `watermark_to`, `finish`), against the semantics of `docs/time.md`.
//!
//! One fixed rule file exercises everything that fires on time: a `within` sequence under
//! `select first` and one under `select all` (both with `on timeout emit`), a trailing absence, a
//! relaxed negation, strict contiguity across keys, a tumbling and a session query and rules over
//! their derived streams, plus a rule that reports every delivered input event once (`seen`).
//!
//! Random events (types `A B X`, 2-4 keys, 1-60 events, nondecreasing whole-second times with
//! ties) are pushed in an arrival order in which no event is more than the bound `D` behind the
//! newest time that arrived before it (the exact boundary `D` included). Each event carries a
//! unique `id`; signals are compared with their `seq` lists mapped to those ids, since sequence
//! numbers follow arrival order. The *true order* is the arrival order stably sorted by time:
//! docs/time.md orders events by `(ts, seq)`, and `seq` is the arrival position, so ties keep
//! their arrival order.
//!
//! Properties:
//! 1. Reordering within the bound: the shuffled arrival with max delay `D`, the true order with
//!    `D` and the true order with delay 0 give the same signals, in the same order per rule (an
//!    operator sees the same events in the same order; only the watermark steps differ, and
//!    deadlines fire by deadline). Under allowed lateness (and nothing behind the bound) the
//!    signals are the same, in the same order per rule and key (operators see `W - L`, so other
//!    partitions' deadlines may fire after an event instead of before it).
//! 2. Late events: extra events at or below `W - L` on arrival are `Late`, counted, and change
//!    no signal. Extra events in `(W - L, W]` are `AdmittedLate`; every push is accounted for
//!    exactly once and every admitted event is delivered exactly once.
//! 3. Dedup: exact repeats (same id) that arrive on time are `Duplicate`, counted, and change no
//!    signal.
//! 4. Explicit watermarks that no later arrival is at or below change no signal.
//!
//! For rules over derived streams `seq` lists derived-event numbers, which follow the order in
//! which the queries emit and so depend on the watermark steps; those rules emit the windows'
//! identity (key and window bounds) instead, and their `seq` is compared by length only.
//!
//! The run is deterministic (fixed seed); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` override it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use strix::{Admission, DedupOptions, Engine, EngineConfig, EngineStats, FieldValue, TimeOptions};

mod common;

const RULES: &str = "
event A { id: u64, k: sym, v: i64 }
event B { id: u64, k: sym, v: i64 }
event X { id: u64, k: sym, v: i64 }

# Every delivered input event, exactly once.
rule seen
  pattern e
  select all
  emit seen { id: e.id }

rule first_pair
  from A, B
  partition by k
  pattern a -> b
  define a as A, b as B and v >= a.v
  within 5s
  select first
  emit first_pair { k, a: a.id, b: b.id }
  on timeout emit first_unpaired { k, a: a.id }

rule all_runs
  from A, B, X
  partition by k
  pattern a -> b+ -> x
  define a as A, b as B, x as X
  within 6s
  select all
  after match no skip
  emit all_runs { k, a: a.id, n: count(b), x: x.id }
  on timeout emit all_expired { k, a: a.id, n: count(b) }

rule unanswered
  from A, B
  partition by k
  pattern o -> !p
  define o as A, p as B
  within 4s
  select all
  emit unanswered { k, o: o.id }

rule clean
  from A, B, X
  partition by k
  pattern a -> !x -> b
  define a as A, x as X, b as B
  within 8s
  select all
  emit clean { k, a: a.id, b: b.id }

# Unpartitioned strict contiguity: depends on the (ts, seq) order across keys.
rule adjacent
  from A, B
  pattern a b
  define a as A, b as B
  select all
  emit adjacent { a: a.id, b: b.id }

query bars
  from A, B
  group by k
  window tumbling 4s
  emit bar { k, n: count(*), total: sum(v), last_id: last(id), wend: window_end }

query sessions
  from A
  group by k
  window session gap 3s
  emit session { k, n: count(*), first_id: first(id), start: window_start }

rule busy
  from bar
  partition by k
  pattern x -> y
  define y as n > x.n
  within 12s
  select all
  after match no skip
  emit busy { k, x_end: x.wend, y_end: y.wend, y_n: y.n }

rule long_session
  from session
  partition by k
  pattern s
  define s as n >= 3
  select all
  emit long_session { k, start: s.start, n: s.n, first_id: s.first_id }
";

/// Rules that read derived streams: their `seq` lists derived-event numbers.
const DERIVED_RULES: &[&str] = &["busy", "long_session"];

const TYPES: [&str; 3] = ["A", "B", "X"];
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
const SEC: i64 = 1_000_000_000;
/// Time of the first event: far enough from 0 that late events keep positive times.
const BASE: i64 = 1_000 * SEC;
/// Gaps between consecutive true times, seconds (ties frequent).
const GAPS: [i64; 7] = [0, 0, 1, 1, 2, 3, 5];
/// Max delays, seconds.
const DELAYS: [i64; 5] = [0, 1, 2, 3, 6];
/// Allowed lateness, seconds (nonzero: properties 1 and 2 also run with 0).
const LATENESS: [i64; 3] = [1, 2, 4];
/// Dedup horizons, seconds.
const HORIZONS: [i64; 3] = [0, 1, 30];

const CASES: u32 = 96;
const SEED: u64 = 0x7e57_0f71_2300;

/// One input event; `id` is unique per event (repeats share their original's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ev {
    id: u64,
    ty: usize,
    key: usize,
    v: i64,
    ts: i64,
}

/// One step of an arrival script.
#[derive(Debug, Clone, Copy)]
enum Step {
    Push(Ev),
    Watermark(i64),
}

/// A signal as compared: `events` are the ids of its matched events (`None` for derived events).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sig {
    rule: String,
    signal: String,
    ts: i64,
    key: String,
    fields: String,
    events: Vec<Option<u64>>,
}

impl std::fmt::Display for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ev: Vec<String> = self
            .events
            .iter()
            .map(|e| e.map_or("d".into(), |i| i.to_string()))
            .collect();
        write!(
            f,
            "{}/{} ts={} key={} {} [{}]",
            self.rule,
            self.signal,
            secs(self.ts),
            self.key,
            self.fields,
            ev.join(",")
        )
    }
}

/// What one run produced.
#[derive(Debug)]
struct Outcome {
    signals: Vec<Sig>,
    /// Per pushed event, in arrival order: its id and admission.
    admissions: Vec<(u64, Admission)>,
    stats: EngineStats,
}

fn secs(ts: i64) -> String {
    if ts == i64::MAX {
        return "MAX".into();
    }
    let t = ts - BASE;
    if t % SEC == 0 {
        format!("{}s", t / SEC)
    } else {
        format!("{}ns", t)
    }
}

fn time(delay_s: i64, lateness_s: i64, dedup_horizon_s: Option<i64>) -> TimeOptions {
    TimeOptions {
        max_delay: delay_s * SEC,
        max_delay_per_type: Vec::new(),
        allowed_lateness: lateness_s * SEC,
        dedup: dedup_horizon_s.map(|h| DedupOptions {
            field: "id".into(),
            horizon: h * SEC,
        }),
    }
}

/// Runs the script through a fresh engine.
fn run(script: &[Step], time: TimeOptions) -> Outcome {
    let config = EngineConfig {
        time,
        ..EngineConfig::default()
    };
    let mut engine = Engine::build(
        "time_property.cep",
        RULES,
        None,
        strix::cep_core::symbol::SymbolTable::new(),
        config,
    )
    .expect("rules compile");
    // Sequence number -> id (input events are numbered 0, 1, ... in push order).
    let mut ids: Vec<u64> = Vec::new();
    let mut signals = Vec::new();
    let mut admissions = Vec::new();
    let mut collect = |s: strix::Signal<'_>, ids: &[u64]| {
        let j = s.to_json();
        let derived = DERIVED_RULES.contains(&s.rule());
        let events = s
            .raw
            .seq
            .iter()
            .map(|&q| {
                if derived {
                    None
                } else {
                    Some(ids[usize::try_from(q).expect("seq fits")])
                }
            })
            .collect();
        signals.push(Sig {
            rule: s.rule().to_string(),
            signal: s.signal().to_string(),
            ts: s.raw.ts,
            key: s.key(),
            fields: j["fields"].to_string(),
            events,
        });
    };
    for step in script {
        match *step {
            Step::Push(e) => {
                let ev = engine
                    .event(
                        TYPES[e.ty],
                        e.ts,
                        &[
                            ("id", FieldValue::U64(e.id)),
                            ("k", FieldValue::Str(KEYS[e.key])),
                            ("v", FieldValue::I64(e.v)),
                        ],
                    )
                    .expect("event");
                assert_eq!(ev.seq as usize, ids.len(), "seqs follow push order");
                ids.push(e.id);
                let adm = engine.push(&ev, |s| collect(s, &ids));
                admissions.push((e.id, adm));
            }
            Step::Watermark(w) => engine.watermark_to(w, |s| collect(s, &ids)),
        }
    }
    engine.finish(|s| collect(s, &ids));
    Outcome {
        signals,
        admissions,
        stats: engine.engine_stats(),
    }
}

/// The admission docs/time.md (sections 2-5) prescribes, tracked independently of the engine.
#[derive(Debug)]
struct Model {
    delay: i64,
    lateness: i64,
    dedup: bool,
    max_ts: Option<i64>,
    max_seen: i64,
    /// Input watermark `W` (`i64::MIN`: none yet).
    w: i64,
    ids: BTreeSet<u64>,
    reordered: u64,
}

impl Model {
    fn new(delay_s: i64, lateness_s: i64, dedup: bool) -> Self {
        Self {
            delay: delay_s * SEC,
            lateness: lateness_s * SEC,
            dedup,
            max_ts: None,
            max_seen: i64::MIN,
            w: i64::MIN,
            ids: BTreeSet::new(),
            reordered: 0,
        }
    }

    /// The operators' watermark `W - L`.
    fn op(&self) -> i64 {
        if self.w == i64::MIN {
            i64::MIN
        } else {
            self.w - self.lateness
        }
    }

    /// The verdict for one push; `Delivered` stands for "delivered now or buffered".
    fn push(&mut self, e: &Ev) -> Admission {
        if self.w != i64::MIN && e.ts <= self.op() {
            return Admission::Late;
        }
        if self.dedup && !self.ids.insert(e.id) {
            return Admission::Duplicate;
        }
        let out_of_order = e.ts < self.max_seen;
        self.max_seen = self.max_seen.max(e.ts);
        if self.w != i64::MIN && e.ts <= self.w {
            return Admission::AdmittedLate;
        }
        if out_of_order {
            self.reordered += 1;
        }
        let m = self.max_ts.map_or(e.ts, |m| m.max(e.ts));
        self.max_ts = Some(m);
        self.w = self.w.max(m - self.delay - 1);
        Admission::Delivered
    }

    fn step(&mut self, s: &Step) -> Option<Admission> {
        match s {
            Step::Push(e) => Some(self.push(e)),
            Step::Watermark(w) => {
                self.w = self.w.max(*w);
                None
            }
        }
    }
}

fn same_kind(got: Admission, want: Admission) -> bool {
    got == want || (want == Admission::Delivered && got == Admission::Buffered)
}

/// Raw random input; [`Scenario::new`] turns it into events and scripts.
#[derive(Debug, Clone)]
struct Raw {
    keys: usize,
    /// Per event: type, key, value, gap index, delay choice, arrival tie-break.
    events: Vec<(usize, usize, i64, usize, u8, u16)>,
    delay: usize,
    lateness: usize,
    horizon: usize,
    /// Extra events: script position, type, key, value, how far behind (choice).
    extras: Vec<(usize, usize, usize, i64, u8)>,
    /// Repeats: which event, how many steps after it.
    repeats: Vec<(usize, usize)>,
    /// Explicit watermarks: script position, how far below the limit (choice).
    marks: Vec<(usize, u8)>,
}

fn raw() -> impl Strategy<Value = Raw> {
    (2usize..=4, 1usize..=60).prop_flat_map(|(keys, n)| {
        (
            Just(keys),
            prop::collection::vec(
                (
                    0usize..3,
                    0..keys,
                    0i64..4,
                    0..GAPS.len(),
                    any::<u8>(),
                    any::<u16>(),
                ),
                n,
            ),
            0..DELAYS.len(),
            0..LATENESS.len(),
            0..HORIZONS.len(),
            prop::collection::vec((0usize..64, 0usize..3, 0..keys, 0i64..4, any::<u8>()), 0..6),
            prop::collection::vec((0usize..60, 0usize..8), 0..6),
            prop::collection::vec((0usize..64, any::<u8>()), 0..6),
        )
            .prop_map(
                |(keys, events, delay, lateness, horizon, extras, repeats, marks)| Raw {
                    keys,
                    events,
                    delay,
                    lateness,
                    horizon,
                    extras,
                    repeats,
                    marks,
                },
            )
    })
}

/// Events of one case: true times, the arrival order within the bound, and the options.
#[derive(Debug)]
struct Scenario {
    raw: Raw,
    delay_s: i64,
    lateness_s: i64,
    horizon_s: i64,
    /// Arrival order (every event at most `delay_s` behind the newest time before it).
    arrival: Vec<Ev>,
    /// The true order: arrival stably sorted by time.
    sorted: Vec<Ev>,
}

impl Scenario {
    fn new(raw: Raw) -> Self {
        let delay_s = DELAYS[raw.delay];
        let mut ts = BASE;
        let mut keyed: Vec<(i64, u16, Ev)> = Vec::new();
        for (i, &(ty, key, v, gap, dchoice, tie)) in raw.events.iter().enumerate() {
            if i > 0 {
                ts += GAPS[gap] * SEC;
            }
            // Arrival delay: 0 and exactly the bound are frequent, so the boundary is reached.
            let d = match dchoice % 4 {
                0 => 0,
                1 => delay_s * SEC,
                _ => i64::from(dchoice) * delay_s * SEC / 255,
            };
            let e = Ev {
                id: i as u64,
                ty,
                key: key % raw.keys,
                v,
                ts,
            };
            keyed.push((ts + d, tie, e));
        }
        // Arriving at ts + d with d in [0, D]: an event f before e has ts_f + d_f <= ts_e + d_e,
        // so ts_f <= ts_e + D.
        keyed.sort_by_key(|&(at, tie, _)| (at, tie));
        let arrival: Vec<Ev> = keyed.into_iter().map(|(_, _, e)| e).collect();
        let mut sorted = arrival.clone();
        sorted.sort_by_key(|e| e.ts);
        Self {
            delay_s,
            lateness_s: LATENESS[raw.lateness],
            horizon_s: HORIZONS[raw.horizon],
            raw,
            arrival,
            sorted,
        }
    }

    /// Largest lag behind the newest earlier time in the arrival order, ns.
    fn max_lag(&self) -> i64 {
        let mut newest = i64::MIN;
        let mut lag = 0;
        for e in &self.arrival {
            newest = newest.max(e.ts);
            lag = lag.max(newest - e.ts);
        }
        lag
    }

    /// `events` with the late (`admitted == false`) or admitted-late (`true`) extra events added,
    /// for delay and lateness `lateness_s`. Extra ids start at 1000.
    fn with_extras(&self, events: &[Ev], lateness_s: i64, admitted: bool) -> Vec<Step> {
        let mut model = Model::new(self.delay_s, lateness_s, false);
        let mut out = Vec::new();
        let mut next_id = 1000;
        for pos in 0..=events.len() {
            for &(at, ty, key, v, behind) in &self.raw.extras {
                if at % (events.len() + 1) != pos || model.w == i64::MIN {
                    continue;
                }
                let ts = if admitted {
                    // In (W - L, W]: W itself, W - L + 1ns, or whole seconds in between.
                    match behind % 3 {
                        0 => model.w,
                        1 => model.op() + 1,
                        _ => model.w - i64::from(behind) % lateness_s.max(1) * SEC,
                    }
                } else {
                    // At or below W - L: exactly there, or up to a few seconds further.
                    model.op() - i64::from(behind % 4) * SEC
                };
                if admitted && (ts <= model.op() || lateness_s == 0) {
                    continue;
                }
                let e = Ev {
                    id: next_id,
                    ty,
                    key: key % self.raw.keys,
                    v,
                    ts,
                };
                next_id += 1;
                model.push(&e);
                out.push(Step::Push(e));
            }
            if let Some(e) = events.get(pos) {
                model.push(e);
                out.push(Step::Push(*e));
            }
        }
        out
    }

    /// The arrival with exact repeats of some events inserted after them where they are still on
    /// time (above `W - L`); returns the script and the number of repeats.
    fn with_repeats(&self, lateness_s: i64) -> (Vec<Step>, usize) {
        let mut wanted: BTreeMap<usize, Vec<Ev>> = BTreeMap::new();
        for &(which, after) in &self.raw.repeats {
            let i = which % self.arrival.len();
            wanted.entry(i + after).or_default().push(self.arrival[i]);
        }
        let mut model = Model::new(self.delay_s, lateness_s, true);
        let mut out = Vec::new();
        let mut n = 0;
        for (pos, e) in self.arrival.iter().enumerate() {
            model.push(e);
            out.push(Step::Push(*e));
            for r in wanted.get(&pos).into_iter().flatten() {
                if r.ts > model.op() {
                    model.push(r);
                    out.push(Step::Push(*r));
                    n += 1;
                }
            }
        }
        (out, n)
    }

    /// The arrival with explicit watermarks inserted: each below every later arrival's time (so
    /// no event becomes late), at that limit or up to a few seconds under it.
    fn with_marks(&self) -> Vec<Step> {
        let n = self.arrival.len();
        // min_after[i] = smallest time among arrival[i..].
        let mut min_after = vec![i64::MAX; n + 1];
        for i in (0..n).rev() {
            min_after[i] = min_after[i + 1].min(self.arrival[i].ts);
        }
        let mut out = Vec::new();
        for (pos, &min_ts) in min_after.iter().enumerate() {
            for &(at, below) in &self.raw.marks {
                if at % (n + 1) != pos {
                    continue;
                }
                let limit = if pos == n {
                    self.sorted[n - 1].ts + 10 * SEC
                } else {
                    min_ts - 1
                };
                out.push(Step::Watermark(limit - i64::from(below % 4) * SEC));
            }
            if let Some(e) = self.arrival.get(pos) {
                out.push(Step::Push(*e));
            }
        }
        out
    }
}

fn pushes(events: &[Ev]) -> Vec<Step> {
    events.iter().map(|&e| Step::Push(e)).collect()
}

fn describe_script(script: &[Step]) -> String {
    let mut s = String::new();
    for (i, step) in script.iter().enumerate() {
        match step {
            Step::Push(e) => writeln!(
                s,
                "  {i:3}: push id={} {} k={} v={} @{}",
                e.id,
                TYPES[e.ty],
                KEYS[e.key],
                e.v,
                secs(e.ts)
            ),
            Step::Watermark(w) => writeln!(s, "  {i:3}: watermark_to {}", secs(*w)),
        }
        .expect("write to string");
    }
    s
}

fn describe_signals(sigs: &[Sig]) -> String {
    sigs.iter().fold(String::new(), |mut s, g| {
        writeln!(s, "  {g}").expect("write to string");
        s
    })
}

/// Fails with the rule file, both scripts and both signal lists.
fn fail(
    what: &str,
    (name_a, script_a, a): (&str, &[Step], &[Sig]),
    (name_b, script_b, b): (&str, &[Step], &[Sig]),
) -> TestCaseError {
    TestCaseError::fail(format!(
        "{what}\nrules:{RULES}\n{name_a} (arrival order):\n{}{name_b} (arrival order):\n{}\
         signals of {name_a}:\n{}signals of {name_b}:\n{}",
        describe_script(script_a),
        describe_script(script_b),
        describe_signals(a),
        describe_signals(b),
    ))
}

fn sorted(s: &[Sig]) -> Vec<Sig> {
    let mut v = s.to_vec();
    v.sort();
    v
}

fn per_rule(s: &[Sig]) -> BTreeMap<&str, Vec<&Sig>> {
    let mut m: BTreeMap<&str, Vec<&Sig>> = BTreeMap::new();
    for g in s {
        m.entry(g.rule.as_str()).or_default().push(g);
    }
    m
}

fn per_rule_key(s: &[Sig]) -> BTreeMap<(&str, &str), Vec<&Sig>> {
    let mut m: BTreeMap<(&str, &str), Vec<&Sig>> = BTreeMap::new();
    for g in s {
        m.entry((g.rule.as_str(), g.key.as_str()))
            .or_default()
            .push(g);
    }
    m
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Same order within each (rule, key).
    PerRuleKey,
    /// Same order within each rule.
    PerRule,
    /// The same list.
    Exact,
}

/// Compares two runs' signals as multisets and in the given order.
fn same_signals(
    what: &str,
    order: Order,
    a: (&str, &[Step], &Outcome),
    b: (&str, &[Step], &Outcome),
) -> Result<(), TestCaseError> {
    let (sa, sb) = (&a.2.signals, &b.2.signals);
    let pa = (a.0, a.1, sa.as_slice());
    let pb = (b.0, b.1, sb.as_slice());
    if sorted(sa) != sorted(sb) {
        return Err(fail(&format!("{what}: different signals"), pa, pb));
    }
    let ok = match order {
        Order::PerRuleKey => per_rule_key(sa) == per_rule_key(sb),
        Order::PerRule => per_rule(sa) == per_rule(sb),
        Order::Exact => sa == sb,
    };
    if !ok {
        return Err(fail(
            &format!("{what}: same signals in a different order ({order:?})"),
            pa,
            pb,
        ));
    }
    Ok(())
}

/// Every push got the model's verdict; the counters match the verdicts and add up to the pushes;
/// every admitted event was delivered exactly once (one `seen` signal).
fn accounted(
    what: &str,
    script: &[Step],
    out: &Outcome,
    mut model: Model,
) -> Result<(), TestCaseError> {
    let ctx = || {
        format!(
            "{what}\nrules:{RULES}\nscript:\n{}signals:\n{}",
            describe_script(script),
            describe_signals(&out.signals)
        )
    };
    let want: Vec<Admission> = script.iter().filter_map(|s| model.step(s)).collect();
    prop_assert_eq!(want.len(), out.admissions.len(), "{}", ctx());
    for (i, (&w, &(id, got))) in want.iter().zip(&out.admissions).enumerate() {
        prop_assert!(
            same_kind(got, w),
            "push {} (id {}): got {:?}, docs/time.md says {:?}\n{}",
            i,
            id,
            got,
            w,
            ctx()
        );
    }
    let count = |a: Admission| out.admissions.iter().filter(|x| x.1 == a).count() as u64;
    let st = out.stats.time;
    prop_assert_eq!(st.late, count(Admission::Late), "{}", ctx());
    prop_assert_eq!(
        st.admitted_late,
        count(Admission::AdmittedLate),
        "{}",
        ctx()
    );
    prop_assert_eq!(st.duplicates, count(Admission::Duplicate), "{}", ctx());
    prop_assert_eq!(st.reordered, model.reordered, "{}", ctx());
    prop_assert_eq!(st.buffered, 0, "{}", ctx());
    let delivered = count(Admission::Delivered) + count(Admission::Buffered);
    prop_assert_eq!(
        delivered + st.admitted_late + st.late + st.duplicates,
        out.admissions.len() as u64,
        "{}",
        ctx()
    );
    // Delivered exactly once: one `seen` signal per admitted push, none for the others.
    let mut seen: Vec<u64> = out
        .signals
        .iter()
        .filter(|s| s.rule == "seen")
        .map(|s| s.events[0].expect("input event"))
        .collect();
    seen.sort_unstable();
    let mut admitted: Vec<u64> = out
        .admissions
        .iter()
        .filter(|(_, a)| !matches!(a, Admission::Late | Admission::Duplicate))
        .map(|&(id, _)| id)
        .collect();
    admitted.sort_unstable();
    prop_assert_eq!(seen, admitted, "{}", ctx());
    Ok(())
}

fn check(sc: &Scenario) -> Result<(), TestCaseError> {
    let d = sc.delay_s;
    let l = sc.lateness_s;
    prop_assert!(sc.max_lag() <= d * SEC, "generator: lag beyond the bound");
    let arrival = pushes(&sc.arrival);
    let truth = pushes(&sc.sorted);

    // 1. Reordering within the bound.
    let shuffled = run(&arrival, time(d, 0, None));
    let sorted_d = run(&truth, time(d, 0, None));
    let sorted_0 = run(&truth, time(0, 0, None));
    accounted(
        "shuffled arrival within the bound",
        &arrival,
        &shuffled,
        Model::new(d, 0, false),
    )?;
    accounted(
        "true order, delay 0",
        &truth,
        &sorted_0,
        Model::new(0, 0, false),
    )?;
    let base = ("true order, delay 0", truth.as_slice(), &sorted_0);
    same_signals(
        "reordering within the bound",
        Order::PerRule,
        ("shuffled, max delay D", &arrival, &shuffled),
        base,
    )?;
    same_signals(
        "max delay on in-order input",
        Order::PerRule,
        ("true order, max delay D", &truth, &sorted_d),
        base,
    )?;
    let lateness = run(&arrival, time(d, l, None));
    accounted(
        "shuffled arrival with allowed lateness",
        &arrival,
        &lateness,
        Model::new(d, l, false),
    )?;
    same_signals(
        "allowed lateness without late events",
        Order::PerRuleKey,
        ("shuffled, max delay D, lateness L", &arrival, &lateness),
        base,
    )?;

    // 2. Late events: without and with allowed lateness.
    for l in [0, l] {
        let script = sc.with_extras(&sc.arrival, l, false);
        let without = if l == 0 { &shuffled } else { &lateness };
        let with = run(&script, time(d, l, None));
        accounted("late events", &script, &with, Model::new(d, l, false))?;
        prop_assert!(
            with.admissions
                .iter()
                .all(|&(id, a)| id < 1000 || a == Admission::Late),
            "every extra event is late"
        );
        same_signals(
            "late events change nothing",
            Order::Exact,
            ("with late events", &script, &with),
            ("without them", &arrival, without),
        )?;
    }
    let script = sc.with_extras(&sc.arrival, l, true);
    let with = run(&script, time(d, l, None));
    accounted(
        "events admitted under allowed lateness",
        &script,
        &with,
        Model::new(d, l, false),
    )?;

    // 3. Dedup.
    for l in [0, l] {
        let (script, n) = sc.with_repeats(l);
        let h = Some(sc.horizon_s);
        let with = run(&script, time(d, l, h));
        accounted("repeats", &script, &with, Model::new(d, l, true))?;
        prop_assert_eq!(with.stats.time.duplicates, n as u64);
        let without = run(&arrival, time(d, l, h));
        same_signals(
            "repeats change nothing",
            Order::Exact,
            ("with repeats", &script, &with),
            ("without them", &arrival, &without),
        )?;
        let plain = if l == 0 { &shuffled } else { &lateness };
        same_signals(
            "dedup without repeats changes nothing",
            Order::Exact,
            ("dedup on", &arrival, &without),
            ("dedup off", &arrival, plain),
        )?;
    }

    // 4. Explicit watermarks.
    let script = sc.with_marks();
    let marked = run(&script, time(d, 0, None));
    accounted(
        "explicit watermarks",
        &script,
        &marked,
        Model::new(d, 0, false),
    )?;
    same_signals(
        "explicit watermarks",
        Order::PerRule,
        ("with watermarks", &script, &marked),
        ("without", &arrival, &shuffled),
    )?;
    Ok(())
}

fn config() -> ProptestConfig {
    common::proptest_config(CASES, SEED)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn event_time_keeps_signals_under_reordering_lateness_dedup_and_watermarks(raw in raw()) {
        check(&Scenario::new(raw))?;
    }
}

/// The generator reaches what the properties are about: the exact bound, late and admitted-late
/// extras, repeats, explicit watermarks, and signals of every rule.
#[test]
fn generator_reaches_the_boundaries() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(config());
    let mut at_bound = 0;
    let mut rules = BTreeSet::new();
    let (mut late, mut admitted, mut repeats, mut marks) = (0, 0, 0, 0);
    for _ in 0..CASES {
        let sc = Scenario::new(raw().new_tree(&mut runner).expect("tree").current());
        if sc.delay_s > 0 && sc.max_lag() == sc.delay_s * SEC {
            at_bound += 1;
        }
        let extras = |s: &[Step]| s.len() - sc.arrival.len();
        late += extras(&sc.with_extras(&sc.arrival, sc.lateness_s, false));
        admitted += extras(&sc.with_extras(&sc.arrival, sc.lateness_s, true));
        repeats += sc.with_repeats(sc.lateness_s).1;
        marks += extras(&sc.with_marks());
        for s in run(&pushes(&sc.sorted), time(0, 0, None)).signals {
            rules.insert(s.signal);
        }
    }
    assert!(
        at_bound >= CASES as usize / 10,
        "exact bound in {at_bound} cases"
    );
    for (what, n) in [
        ("late", late),
        ("admitted late", admitted),
        ("repeats", repeats),
        ("watermarks", marks),
    ] {
        assert!(n >= CASES as usize / 2, "{n} {what}");
    }
    let all: BTreeSet<String> = [
        "seen",
        "first_pair",
        "first_unpaired",
        "all_runs",
        "all_expired",
        "unanswered",
        "clean",
        "adjacent",
        "busy",
        "long_session",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(rules, all, "signals seen");
}
