//! Windowed queries: `query NAME from ... where ... group by ... window ... having ... emit NAME { ... }`.
//!
//! Input: events of the query's `from` types in event-time order, and watermarks. Output: derived
//! events of the query's output type (one per closed window and group that passes `having`), which
//! the engine feeds to the rules and queries that read that type. Next stage: those readers.
//!
//! Windows close on watermark progress ([`QueryOperator::on_watermark`]), never on an event:
//! - tumbling windows of size `D` are aligned to multiples of `D` from ts 0 and cover `[s, s + D)`;
//!   sliding windows of size `D` every `S` end at multiples of `S` and cover `[end - D, end)`. Both
//!   close when the watermark reaches `end - 1` and their derived event has `ts = end`;
//! - a session window holds events at most `gap` apart; it closes when the watermark reaches
//!   `last_ts + gap`, which is also its derived event's `ts`.
//!
//! Each open window keeps one accumulator per distinct aggregate of the query (count, integer and
//! float sums, Welford mean and variance, min, max, first, last); nothing else of the events is
//! kept. A group's state (its key and its `ema` values) lives for the whole run; a window's state
//! is freed (its accumulator buffer recycled) when it closes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::event::{Event, EventView, Label};
use crate::expr::{CmpOp, CurrentEvent, Expr, ExprDisplay, FieldAccess};
use crate::rule::MAX_KEY_FIELDS;
use crate::schema::{FieldType, TypeId};
use crate::value::{ArithOp, Value, arith};

/// Most windows one event may fall into (a sliding window's `size / slide`).
pub const MAX_WINDOWS_PER_EVENT: i64 = 1_000;

/// How a query cuts its groups' events into windows. Durations are in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// `window tumbling D`: `[k*D, (k+1)*D)`.
    Tumbling {
        /// Window size.
        size: i64,
    },
    /// `window sliding D every S`: windows `[e - D, e)` for every multiple `e` of `S`.
    Sliding {
        /// Window size.
        size: i64,
        /// Distance between window ends.
        slide: i64,
    },
    /// `window session gap G`: events at most `G` apart share a window.
    Session {
        /// Largest distance between consecutive events of one session.
        gap: i64,
    },
}

/// Formats a duration in ns as the rule language writes it, in the largest unit that divides it
/// exactly: `5m`, `1500ms`, `30s`, `0`.
pub fn format_duration(ns: i64) -> String {
    const UNITS: [(&str, i64); 7] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    if ns == 0 {
        return "0".into();
    }
    let (unit, len) = UNITS
        .into_iter()
        .find(|&(_, len)| ns % len == 0)
        .unwrap_or(("ns", 1));
    format!("{}{unit}", ns / len)
}

/// As written in a query: `tumbling 5m`, `sliding 5m every 1m`, `session gap 30s`.
impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WindowSpec::Tumbling { size } => write!(f, "tumbling {}", format_duration(size)),
            WindowSpec::Sliding { size, slide } => write!(
                f,
                "sliding {} every {}",
                format_duration(size),
                format_duration(slide)
            ),
            WindowSpec::Session { gap } => write!(f, "session gap {}", format_duration(gap)),
        }
    }
}

/// An aggregate function over a window's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunc {
    /// `count(*)` (no argument: every event) or `count(x)` (non-null values).
    Count,
    /// Sum: `i64` (wrapping) over integers, `f64` over floats.
    Sum,
    /// Mean, `f64`.
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Value of the earliest event (by `(ts, seq)`).
    First,
    /// Value of the latest event (by `(ts, seq)`).
    Last,
    /// Sample standard deviation, `f64`; null below two values.
    Stddev,
}

/// One aggregate of a query: a function and its per-event argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Function.
    pub func: WindowFunc,
    /// Argument evaluated per event; `None` only for `count(*)`. Null values are ignored.
    pub arg: Option<Expr>,
}

/// `ema(arg, n)`: exponential moving average per group across its windows,
/// `ema = arg * 2 / (1 + n) + prev * (1 - 2 / (1 + n))` (in `f64`, left to right) with `prev`
/// starting at 0; updated once per closed window of the group, null `arg` leaving it unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Ema {
    /// The smoothed value, over the window's aggregates (never contains an `ema`).
    pub arg: WindowExpr,
    /// Smoothing length (>= 1).
    pub n: u32,
}

/// An expression evaluated once per closed window and group (`having`, `emit`).
#[derive(Debug, Clone, PartialEq)]
pub enum WindowExpr {
    /// A literal.
    Const(Value),
    /// The value of [`Query::aggregates`]`[i]`.
    Agg(usize),
    /// The updated value of [`Query::emas`]`[i]`.
    Ema(usize),
    /// The value of group-by field `i`.
    Group(usize),
    /// The window's start (ns; for sessions the first event's ts).
    WindowStart,
    /// The window's end (ns, exclusive; for sessions `last_ts + gap`).
    WindowEnd,
    /// Arithmetic (see [`crate::value`]).
    Arith(ArithOp, Box<WindowExpr>, Box<WindowExpr>),
    /// Numeric negation.
    Neg(Box<WindowExpr>),
    /// Comparison (false when either side is null).
    Cmp(CmpOp, Box<WindowExpr>, Box<WindowExpr>),
    /// Boolean and.
    And(Box<WindowExpr>, Box<WindowExpr>),
    /// Boolean or.
    Or(Box<WindowExpr>, Box<WindowExpr>),
    /// Boolean not (`not null` is false).
    Not(Box<WindowExpr>),
}

/// What a [`WindowExpr`] sees when a window closes.
struct WindowValues<'a> {
    aggs: &'a [Value],
    emas: &'a [Value],
    group: &'a [Value],
    start: i64,
    end: i64,
}

impl WindowExpr {
    fn eval(&self, w: &WindowValues<'_>) -> Value {
        let get = |v: &[Value], i: usize| v.get(i).copied().unwrap_or(Value::Null);
        match self {
            WindowExpr::Const(v) => *v,
            WindowExpr::Agg(i) => get(w.aggs, *i),
            WindowExpr::Ema(i) => get(w.emas, *i),
            WindowExpr::Group(i) => get(w.group, *i),
            WindowExpr::WindowStart => Value::I64(w.start),
            WindowExpr::WindowEnd => Value::I64(w.end),
            WindowExpr::Arith(op, l, r) => arith(*op, l.eval(w), r.eval(w)),
            WindowExpr::Neg(x) => crate::value::negate(x.eval(w)),
            WindowExpr::Cmp(op, l, r) => op.apply(l.eval(w), r.eval(w)),
            WindowExpr::And(l, r) => Value::Bool(l.eval(w).is_true() && r.eval(w).is_true()),
            WindowExpr::Or(l, r) => Value::Bool(l.eval(w).is_true() || r.eval(w).is_true()),
            WindowExpr::Not(x) => crate::value::not(x.eval(w)),
        }
    }
}

/// One field of the derived events.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputField {
    /// Field name (also in the output type of the catalog).
    pub name: String,
    /// Field type; the value is converted to it when stored (null: NaN for `f64`, 0 otherwise).
    pub ty: FieldType,
    /// Value.
    pub expr: WindowExpr,
}

/// One compiled windowed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Query name.
    pub name: String,
    /// Event types the query reads.
    pub from: Vec<TypeId>,
    /// The type of the derived events it emits (registered in the program's catalog).
    pub output: TypeId,
    /// `where`: events for which it is not true are ignored.
    pub filter: Option<Expr>,
    /// `group by` fields (at most [`MAX_KEY_FIELDS`]), resolved for every `from` type.
    pub group_by: Vec<FieldAccess>,
    /// Window kind and sizes.
    pub window: WindowSpec,
    /// Distinct aggregates that `having` and `emit` use.
    pub aggregates: Vec<Aggregate>,
    /// Distinct `ema` calls that `having` and `emit` use.
    pub emas: Vec<Ema>,
    /// `having`: windows for which it is not true emit nothing (their `ema`s still update).
    pub having: Option<WindowExpr>,
    /// Fields of the derived events, in output-type slot order.
    pub emit: Vec<OutputField>,
}

/// Renders a query's per-window expressions (`having`, `emit`) and aggregates as query-language
/// text (for `strix explain`); per-event parts (aggregate arguments) go through [`ExprDisplay`].
#[derive(Debug, Clone, Copy)]
pub struct WindowExprDisplay<'a> {
    /// The query whose aggregates, `ema`s and `group by` fields the expressions refer to.
    pub query: &'a Query,
    /// Renderer of per-event expressions (queries have no pattern variables: `vars` may be empty).
    pub expr: ExprDisplay<'a>,
}

impl WindowExprDisplay<'_> {
    /// Renders `a`: `count(*)`, `sum(price)`, `last(price)`, ...
    pub fn aggregate(&self, a: &Aggregate) -> String {
        let name = match a.func {
            WindowFunc::Count => "count",
            WindowFunc::Sum => "sum",
            WindowFunc::Avg => "avg",
            WindowFunc::Min => "min",
            WindowFunc::Max => "max",
            WindowFunc::First => "first",
            WindowFunc::Last => "last",
            WindowFunc::Stddev => "stddev",
        };
        let arg = a.arg.as_ref().map_or("*".into(), |x| {
            let text = self.expr.render(x);
            // These render wrapped in parentheses; the call's own are enough.
            let wrapped = matches!(
                x,
                Expr::Arith(..) | Expr::Cmp(..) | Expr::Or(..) | Expr::InList { .. }
            );
            match text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
                Some(inner) if wrapped => inner.to_string(),
                _ => text,
            }
        });
        format!("{name}({arg})")
    }

    /// Renders `e`.
    pub fn render(&self, e: &WindowExpr) -> String {
        self.render_hinted(e, None)
    }

    /// The field type of `e` when it is exactly a field's value (to show enum literals by name).
    fn hint(&self, e: &WindowExpr) -> Option<FieldType> {
        match e {
            WindowExpr::Group(i) => self.query.group_by.get(*i).map(|f| f.ty),
            WindowExpr::Agg(i) => {
                let a = self.query.aggregates.get(*i)?;
                match a.func {
                    WindowFunc::Min | WindowFunc::Max | WindowFunc::First | WindowFunc::Last => {
                        a.arg.as_ref().and_then(ExprDisplay::hint)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn render_hinted(&self, e: &WindowExpr, hint: Option<FieldType>) -> String {
        let bin = |op: &str, l: &WindowExpr, r: &WindowExpr| {
            let h = self.hint(l).or(self.hint(r));
            format!(
                "({} {op} {})",
                self.render_hinted(l, h),
                self.render_hinted(r, h)
            )
        };
        match e {
            WindowExpr::Const(v) => self.expr.value(*v, hint),
            WindowExpr::Agg(i) => self
                .query
                .aggregates
                .get(*i)
                .map_or_else(|| format!("aggregate#{i}"), |a| self.aggregate(a)),
            WindowExpr::Ema(i) => self.query.emas.get(*i).map_or_else(
                || format!("ema#{i}"),
                |m| format!("ema({}, {})", self.render(&m.arg), m.n),
            ),
            WindowExpr::Group(i) => self
                .query
                .group_by
                .get(*i)
                .map_or_else(|| format!("group#{i}"), |f| f.name.clone()),
            WindowExpr::WindowStart => "window_start".into(),
            WindowExpr::WindowEnd => "window_end".into(),
            WindowExpr::Arith(op, l, r) => bin(
                match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                    ArithOp::Rem => "%",
                },
                l,
                r,
            ),
            WindowExpr::Neg(x) => format!("-{}", self.render(x)),
            WindowExpr::Cmp(op, l, r) => bin(
                match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                },
                l,
                r,
            ),
            WindowExpr::And(l, r) => format!("{} and {}", self.render(l), self.render(r)),
            WindowExpr::Or(l, r) => format!("({} or {})", self.render(l), self.render(r)),
            WindowExpr::Not(x) => format!("not {}", self.render(x)),
        }
    }
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

/// Running state of one aggregate in one window.
#[derive(Debug, Clone, Copy)]
struct Acc {
    /// Events (`count(*)`) or non-null values seen.
    n: u64,
    sum_int: i64,
    sum_float: f64,
    saw_float: bool,
    /// Welford running mean and sum of squared deviations (for `stddev`).
    mean: f64,
    m2: f64,
    min: Value,
    max: Value,
    /// `(ts, seq, value)` of the earliest and latest contributing event.
    first: (i64, u64, Value),
    last: (i64, u64, Value),
}

impl Acc {
    const EMPTY: Acc = Acc {
        n: 0,
        sum_int: 0,
        sum_float: 0.0,
        saw_float: false,
        mean: 0.0,
        m2: 0.0,
        min: Value::Null,
        max: Value::Null,
        first: (i64::MAX, u64::MAX, Value::Null),
        last: (i64::MIN, 0, Value::Null),
    };

    fn add(&mut self, func: WindowFunc, ts: i64, seq: u64, v: Value) {
        if v == Value::Null {
            return;
        }
        self.n += 1;
        match func {
            WindowFunc::Count => {}
            WindowFunc::Sum | WindowFunc::Avg => match v {
                Value::I64(x) => self.sum_int = self.sum_int.wrapping_add(x),
                Value::U64(x) => self.sum_int = self.sum_int.wrapping_add(x as i64),
                Value::F64(x) => {
                    self.sum_float += x;
                    self.saw_float = true;
                }
                _ => {}
            },
            WindowFunc::Stddev => {
                if let Some(x) = v.as_f64() {
                    let d = x - self.mean;
                    self.mean += d / self.n as f64;
                    self.m2 += d * (x - self.mean);
                }
            }
            WindowFunc::Min => {
                if self.min == Value::Null || v.compare(self.min) == Some(Ordering::Less) {
                    self.min = v;
                }
            }
            WindowFunc::Max => {
                if self.max == Value::Null || v.compare(self.max) == Some(Ordering::Greater) {
                    self.max = v;
                }
            }
            WindowFunc::First => {
                if (ts, seq) < (self.first.0, self.first.1) {
                    self.first = (ts, seq, v);
                }
            }
            WindowFunc::Last => {
                if (ts, seq) >= (self.last.0, self.last.1) {
                    self.last = (ts, seq, v);
                }
            }
        }
    }

    /// Folds `other` (a window merged into this one) in.
    fn merge(&mut self, func: WindowFunc, other: &Acc) {
        if other.n == 0 {
            return;
        }
        let n = self.n + other.n;
        match func {
            WindowFunc::Stddev => {
                let d = other.mean - self.mean;
                let (na, nb) = (self.n as f64, other.n as f64);
                self.mean += d * nb / n as f64;
                self.m2 += other.m2 + d * d * na * nb / n as f64;
            }
            WindowFunc::Min => self.add(func, 0, 0, other.min),
            WindowFunc::Max => self.add(func, 0, 0, other.max),
            WindowFunc::First => self.add(func, other.first.0, other.first.1, other.first.2),
            WindowFunc::Last => self.add(func, other.last.0, other.last.1, other.last.2),
            WindowFunc::Count | WindowFunc::Sum | WindowFunc::Avg => {}
        }
        self.n = n;
        self.sum_int = self.sum_int.wrapping_add(other.sum_int);
        self.sum_float += other.sum_float;
        self.saw_float |= other.saw_float;
    }

    fn value(&self, func: WindowFunc) -> Value {
        if self.n == 0 {
            return if func == WindowFunc::Count {
                Value::I64(0)
            } else {
                Value::Null
            };
        }
        match func {
            WindowFunc::Count => Value::I64(self.n as i64),
            WindowFunc::Sum if self.saw_float => Value::F64(self.sum_float + self.sum_int as f64),
            WindowFunc::Sum => Value::I64(self.sum_int),
            WindowFunc::Avg => Value::F64((self.sum_float + self.sum_int as f64) / self.n as f64),
            WindowFunc::Stddev if self.n < 2 => Value::Null,
            WindowFunc::Stddev => Value::F64((self.m2.max(0.0) / (self.n - 1) as f64).sqrt()),
            WindowFunc::Min => self.min,
            WindowFunc::Max => self.max,
            WindowFunc::First => self.first.2,
            WindowFunc::Last => self.last.2,
        }
    }
}

/// One open window of one group.
#[derive(Debug)]
struct Window {
    start: i64,
    accs: Vec<Acc>,
}

/// State of one group, kept for the whole run (its `ema`s carry across windows).
#[derive(Debug)]
struct Group {
    key: [u64; MAX_KEY_FIELDS],
    /// Current value of each of the query's `ema`s (0 before the group's first window).
    ema: Vec<f64>,
    /// Close times (derived ts) of the group's open session windows, ascending.
    sessions: Vec<i64>,
}

/// The run-time state of one query.
#[derive(Debug)]
pub struct QueryOperator {
    query: Query,
    stats: QueryStats,
    /// Group ids in order of first appearance.
    group_ids: HashMap<[u64; MAX_KEY_FIELDS], u32>,
    groups: Vec<Group>,
    /// Open windows by (derived ts, group id): closing and emission order at once.
    windows: BTreeMap<(i64, u32), Window>,
    /// Accumulator buffers of closed windows, reused for new ones.
    free: Vec<Vec<Acc>>,
    /// Scratch for one closing window's values.
    agg_values: Vec<Value>,
    ema_values: Vec<Value>,
    group_values: Vec<Value>,
    /// Scratch for the sessions an event merges.
    merged: Vec<Window>,
}

impl QueryOperator {
    /// An operator for `query`.
    pub fn new(query: Query) -> Self {
        Self {
            query,
            stats: QueryStats::default(),
            group_ids: HashMap::new(),
            groups: Vec::new(),
            windows: BTreeMap::new(),
            free: Vec::new(),
            agg_values: Vec::new(),
            ema_values: Vec::new(),
            group_values: Vec::new(),
            merged: Vec::new(),
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
        QueryStats {
            open_windows: self.windows.len(),
            ..self.stats
        }
    }

    /// Adds one event (events arrive in event-time order; all have `ts` > the last watermark).
    /// Events of types the query does not read are ignored. Never emits: windows close only on
    /// watermarks. An event whose window the watermark already closed opens that window again;
    /// it is emitted on the next watermark.
    pub fn on_event(&mut self, e: EventView<'_>) {
        if !self.reads(e.type_id) {
            return;
        }
        self.stats.events += 1;
        if let Some(f) = &self.query.filter
            && !f.eval(&CurrentEvent(e)).is_true()
        {
            return;
        }
        let gid = self.group_of(&e);
        match self.query.window {
            WindowSpec::Tumbling { size } => {
                let size = size.max(1);
                let start = e.ts.div_euclid(size).saturating_mul(size);
                self.add_to_window(gid, start, start.saturating_add(size), &e);
            }
            WindowSpec::Sliding { size, slide } => {
                let (size, slide) = (size.max(1), slide.max(1));
                let mut end =
                    e.ts.div_euclid(slide)
                        .saturating_mul(slide)
                        .saturating_add(slide);
                let mut n = 0;
                while end.saturating_sub(size) <= e.ts && n < MAX_WINDOWS_PER_EVENT {
                    self.add_to_window(gid, end.saturating_sub(size), end, &e);
                    if end == i64::MAX {
                        break;
                    }
                    end = end.saturating_add(slide);
                    n += 1;
                }
            }
            WindowSpec::Session { gap } => self.add_to_session(gid, gap.max(0), &e),
        }
    }

    /// Closes every window that watermark `w` completes (all events with `ts <= w` have been
    /// given) and appends the derived events in ascending `ts`, ties by group first appearance.
    /// Their `seq` is 0: the engine numbers derived events. `w = i64::MAX` closes every window.
    pub fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) {
        let session = matches!(self.query.window, WindowSpec::Session { .. });
        while let Some((&(close, _), _)) = self.windows.first_key_value() {
            // Tumbling and sliding windows are complete once `end - 1` is; a session once no
            // event within `gap` of its last one can come.
            let done = if session {
                close <= w
            } else {
                close.saturating_sub(1) <= w
            };
            if !done {
                break;
            }
            let Some(((close, gid), window)) = self.windows.pop_first() else {
                break;
            };
            if session && let Some(g) = self.groups.get_mut(gid as usize) {
                g.sessions.retain(|&c| c != close);
            }
            self.close(gid, close, &window, out);
            self.free.push(window.accs);
        }
    }

    fn group_of(&mut self, e: &EventView<'_>) -> u32 {
        let mut key = [0u64; MAX_KEY_FIELDS];
        for (k, f) in key.iter_mut().zip(&self.query.group_by) {
            *k = f.read_raw(e).unwrap_or(0);
        }
        if let Some(&g) = self.group_ids.get(&key) {
            return g;
        }
        let g = self.groups.len() as u32;
        self.groups.push(Group {
            key,
            ema: vec![0.0; self.query.emas.len()],
            sessions: Vec::new(),
        });
        self.group_ids.insert(key, g);
        g
    }

    fn fresh_accs(&mut self) -> Vec<Acc> {
        let mut accs = self.free.pop().unwrap_or_default();
        accs.clear();
        accs.resize(self.query.aggregates.len(), Acc::EMPTY);
        accs
    }

    fn add_to_window(&mut self, gid: u32, start: i64, end: i64, e: &EventView<'_>) {
        if !self.windows.contains_key(&(end, gid)) {
            let accs = self.fresh_accs();
            self.windows.insert((end, gid), Window { start, accs });
        }
        if let Some(w) = self.windows.get_mut(&(end, gid)) {
            accumulate(&self.query.aggregates, &mut w.accs, e);
        }
    }

    fn add_to_session(&mut self, gid: u32, gap: i64, e: &EventView<'_>) {
        let ts = e.ts;
        let mut start = ts;
        let mut last = ts;
        let Some(group) = self.groups.get_mut(gid as usize) else {
            return;
        };
        // Sessions the event touches: it is within `gap` of their span. They merge into one.
        let mut i = 0;
        while i < group.sessions.len() {
            let close = group.sessions[i];
            let Some(w) = self.windows.get(&(close, gid)) else {
                group.sessions.remove(i);
                continue;
            };
            let s_last = close.saturating_sub(gap);
            if w.start.saturating_sub(gap) <= ts && ts <= close {
                start = start.min(w.start);
                last = last.max(s_last);
                group.sessions.remove(i);
                if let Some(w) = self.windows.remove(&(close, gid)) {
                    self.merged.push(w);
                }
            } else {
                i += 1;
            }
        }
        let mut accs = match self.merged.pop() {
            Some(w) => w.accs,
            None => {
                let mut accs = self.free.pop().unwrap_or_default();
                accs.clear();
                accs.resize(self.query.aggregates.len(), Acc::EMPTY);
                accs
            }
        };
        while let Some(w) = self.merged.pop() {
            for ((acc, other), agg) in accs.iter_mut().zip(&w.accs).zip(&self.query.aggregates) {
                acc.merge(agg.func, other);
            }
            self.free.push(w.accs);
        }
        accumulate(&self.query.aggregates, &mut accs, e);
        let close = last.saturating_add(gap);
        if let Some(group) = self.groups.get_mut(gid as usize) {
            let at = group.sessions.partition_point(|&c| c < close);
            group.sessions.insert(at, close);
        }
        self.windows.insert((close, gid), Window { start, accs });
    }

    /// Evaluates a closed window and appends its derived event unless `having` rejects it.
    fn close(&mut self, gid: u32, end: i64, window: &Window, out: &mut Vec<Event>) {
        let q = &self.query;
        let Some(group) = self.groups.get_mut(gid as usize) else {
            return;
        };
        self.agg_values.clear();
        self.agg_values.extend(
            q.aggregates
                .iter()
                .zip(&window.accs)
                .map(|(a, acc)| acc.value(a.func)),
        );
        self.group_values.clear();
        self.group_values.extend(
            q.group_by
                .iter()
                .zip(group.key)
                .map(|(f, raw)| Value::from_slot(f.ty, raw)),
        );
        self.ema_values.clear();
        {
            let vals = WindowValues {
                aggs: &self.agg_values,
                emas: &[],
                group: &self.group_values,
                start: window.start,
                end,
            };
            for (ema, state) in q.emas.iter().zip(group.ema.iter_mut()) {
                // A null value (e.g. an aggregate over only nulls) leaves the average as it was.
                let v = match ema.arg.eval(&vals).as_f64() {
                    Some(x) => {
                        // Evaluated exactly as written in the docs, left to right, so that an
                        // independent computation of the same formula agrees to the bit.
                        let n1 = 1.0 + f64::from(ema.n.max(1));
                        *state = x * 2.0 / n1 + *state * (1.0 - 2.0 / n1);
                        Value::F64(*state)
                    }
                    None => Value::Null,
                };
                self.ema_values.push(v);
            }
        }
        let vals = WindowValues {
            aggs: &self.agg_values,
            emas: &self.ema_values,
            group: &self.group_values,
            start: window.start,
            end,
        };
        if let Some(h) = &q.having
            && !h.eval(&vals).is_true()
        {
            return;
        }
        let slots = q
            .emit
            .iter()
            .map(|f| encode(f.ty, f.expr.eval(&vals)))
            .collect();
        out.push(Event {
            seq: 0,
            ts: end,
            type_id: q.output,
            label: Label::default(),
            slots,
        });
        self.stats.emitted += 1;
    }
}

/// Adds one event to a window's accumulators.
fn accumulate(aggs: &[Aggregate], accs: &mut [Acc], e: &EventView<'_>) {
    let b = CurrentEvent(*e);
    for (agg, acc) in aggs.iter().zip(accs.iter_mut()) {
        let v = match &agg.arg {
            Some(x) => x.eval(&b),
            // `count(*)` counts every event.
            None => Value::Bool(true),
        };
        acc.add(agg.func, e.ts, e.seq, v);
    }
}

/// Stores a value in a slot of type `ty` (null: NaN for `f64`, 0 otherwise).
fn encode(ty: FieldType, v: Value) -> u64 {
    match ty {
        FieldType::F64 => v.as_f64().unwrap_or(f64::NAN).to_bits(),
        FieldType::I64 | FieldType::Ts => match v {
            Value::I64(x) => x as u64,
            Value::U64(x) => x,
            Value::F64(x) => (x as i64) as u64,
            _ => 0,
        },
        FieldType::U64 => match v {
            Value::I64(x) => x as u64,
            Value::U64(x) => x,
            Value::F64(x) => x as u64,
            _ => 0,
        },
        FieldType::Bool => u64::from(v.is_true()),
        FieldType::Sym | FieldType::Enum(_) => match v {
            Value::Sym(s) | Value::Enum(s) => u64::from(s),
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;

    const TRADE: TypeId = 0;
    const QUOTE: TypeId = 1;
    const OUT: TypeId = 2;

    /// `Trade { symbol: sym, price: f64, qty: i64 }` (type 0) and `Quote { symbol: sym }` (type 1).
    fn field(name: &str) -> FieldAccess {
        let (ty, slots) = match name {
            "symbol" => (FieldType::Sym, vec![Some(0), Some(0)]),
            "price" => (FieldType::F64, vec![Some(1), None]),
            _ => (FieldType::I64, vec![Some(2), None]),
        };
        FieldAccess {
            name: name.into(),
            ty,
            slots,
        }
    }

    fn f(name: &str) -> Option<Expr> {
        Some(Expr::Field(field(name)))
    }

    fn agg(func: WindowFunc, arg: Option<Expr>) -> Aggregate {
        Aggregate { func, arg }
    }

    fn out(name: &str, ty: FieldType, expr: WindowExpr) -> OutputField {
        OutputField {
            name: name.into(),
            ty,
            expr,
        }
    }

    fn query(window: WindowSpec, aggregates: Vec<Aggregate>, emit: Vec<OutputField>) -> Query {
        Query {
            name: "q".into(),
            from: vec![TRADE],
            output: OUT,
            filter: None,
            group_by: vec![field("symbol")],
            window,
            aggregates,
            emas: Vec::new(),
            having: None,
            emit,
        }
    }

    /// Feeds `(ts, symbol, price, qty)` trades with seq = index, as the engine does: watermark
    /// `ts - 1` before each event, `i64::MAX` at the end. Returns the derived events.
    fn run(q: Query, trades: &[(i64, u32, f64, i64)]) -> Vec<Event> {
        let mut op = QueryOperator::new(q);
        let mut out = Vec::new();
        for (seq, &(ts, sym, price, qty)) in trades.iter().enumerate() {
            op.on_watermark(ts - 1, &mut out);
            let slots = [u64::from(sym), price.to_bits(), qty as u64];
            op.on_event(EventView {
                seq: seq as u64,
                ts,
                type_id: TRADE,
                slots: &slots,
            });
        }
        op.on_watermark(i64::MAX, &mut out);
        assert_eq!(op.stats().open_windows, 0);
        assert_eq!(op.stats().emitted, out.len() as u64);
        out
    }

    /// Decodes derived events as `(ts, fields)` using the query's output types.
    fn decode(q: &Query, events: &[Event]) -> Vec<(i64, Vec<Value>)> {
        events
            .iter()
            .map(|e| {
                assert_eq!((e.seq, e.type_id, e.slots.len()), (0, OUT, q.emit.len()));
                let vals = q
                    .emit
                    .iter()
                    .zip(&e.slots)
                    .map(|(f, s)| Value::from_slot(f.ty, *s))
                    .collect();
                (e.ts, vals)
            })
            .collect()
    }

    fn count_query(window: WindowSpec) -> Query {
        query(
            window,
            vec![agg(WindowFunc::Count, None)],
            vec![
                out("symbol", FieldType::Sym, WindowExpr::Group(0)),
                out("n", FieldType::I64, WindowExpr::Agg(0)),
                out("start", FieldType::Ts, WindowExpr::WindowStart),
                out("end", FieldType::Ts, WindowExpr::WindowEnd),
            ],
        )
    }

    fn i(v: i64) -> Value {
        Value::I64(v)
    }

    #[test]
    fn tumbling_windows_per_group_in_time_then_first_appearance_order() {
        let q = count_query(WindowSpec::Tumbling { size: 10 });
        // Symbol 7 appears before symbol 3: on ties it is emitted first.
        let trades = [
            (1, 7, 1.0, 1),
            (3, 3, 1.0, 1),
            (9, 7, 1.0, 1),
            (10, 7, 1.0, 1),
            (25, 3, 1.0, 1),
            (-5, 3, 1.0, 1),
        ];
        let got = decode(&q, &run(q.clone(), &trades[..5]));
        assert_eq!(
            got,
            [
                (10, vec![Value::Sym(7), i(2), i(0), i(10)]),
                (10, vec![Value::Sym(3), i(1), i(0), i(10)]),
                (20, vec![Value::Sym(7), i(1), i(10), i(20)]),
                (30, vec![Value::Sym(3), i(1), i(20), i(30)]),
            ]
        );
        // Negative times align to multiples of the size too.
        let got = decode(&q, &run(q.clone(), &trades[5..]));
        assert_eq!(got, [(0, vec![Value::Sym(3), i(1), i(-10), i(0)])]);
    }

    #[test]
    fn a_window_closes_exactly_when_the_watermark_reaches_end_minus_one() {
        let q = count_query(WindowSpec::Tumbling { size: 10 });
        let mut op = QueryOperator::new(q);
        let slots = [1u64, 0, 0];
        let ev = |ts| EventView {
            seq: 0,
            ts,
            type_id: TRADE,
            slots: &slots,
        };
        let mut out = Vec::new();
        op.on_event(ev(0));
        op.on_event(ev(9));
        op.on_watermark(8, &mut out);
        assert!(out.is_empty());
        assert_eq!(op.stats().open_windows, 1);
        op.on_watermark(9, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ts, 10);
        assert_eq!(op.stats().open_windows, 0);
        // Events of types the query does not read are ignored.
        op.on_event(EventView {
            type_id: QUOTE,
            ..ev(15)
        });
        op.on_watermark(i64::MAX, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(op.stats().events, 2);
    }

    #[test]
    fn sliding_windows_end_at_multiples_of_the_slide() {
        let q = count_query(WindowSpec::Sliding { size: 10, slide: 5 });
        let got = decode(&q, &run(q.clone(), &[(7, 1, 0.0, 0), (12, 1, 0.0, 0)]));
        assert_eq!(
            got,
            [
                (10, vec![Value::Sym(1), i(1), i(0), i(10)]),
                (15, vec![Value::Sym(1), i(2), i(5), i(15)]),
                (20, vec![Value::Sym(1), i(1), i(10), i(20)]),
            ]
        );
        // An event at a window boundary belongs to the window starting there, not the one ending.
        let got = decode(&q, &run(q.clone(), &[(10, 1, 0.0, 0)]));
        let ends: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(ends, [15, 20]);
    }

    #[test]
    fn session_windows_close_at_last_plus_gap() {
        let q = count_query(WindowSpec::Session { gap: 5 });
        // 1, 4, 9 are at most 5 apart: one session; 20 starts another.
        let trades = [
            (1, 1, 0.0, 0),
            (4, 1, 0.0, 0),
            (9, 1, 0.0, 0),
            (20, 1, 0.0, 0),
        ];
        let got = decode(&q, &run(q.clone(), &trades));
        assert_eq!(
            got,
            [
                (14, vec![Value::Sym(1), i(3), i(1), i(14)]),
                (25, vec![Value::Sym(1), i(1), i(20), i(25)]),
            ]
        );
        // Closing is exact: watermark 13 keeps the session open, 14 closes it.
        let mut op = QueryOperator::new(q);
        let slots = [1u64, 0, 0];
        let mut out = Vec::new();
        op.on_event(EventView {
            seq: 0,
            ts: 9,
            type_id: TRADE,
            slots: &slots,
        });
        op.on_watermark(13, &mut out);
        assert!(out.is_empty());
        op.on_watermark(14, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn an_event_between_two_sessions_merges_them() {
        let q = query(
            WindowSpec::Session { gap: 5 },
            vec![
                agg(WindowFunc::Count, None),
                agg(WindowFunc::First, f("qty")),
                agg(WindowFunc::Last, f("qty")),
                agg(WindowFunc::Stddev, f("qty")),
                agg(WindowFunc::Sum, f("qty")),
            ],
            vec![
                out("n", FieldType::I64, WindowExpr::Agg(0)),
                out("first", FieldType::I64, WindowExpr::Agg(1)),
                out("last", FieldType::I64, WindowExpr::Agg(2)),
                out("sd", FieldType::F64, WindowExpr::Agg(3)),
                out("sum", FieldType::I64, WindowExpr::Agg(4)),
                out("start", FieldType::Ts, WindowExpr::WindowStart),
            ],
        );
        let mut op = QueryOperator::new(q.clone());
        let mut out = Vec::new();
        for (seq, (ts, qty)) in [(1i64, 10i64), (11, 30), (6, 20)].into_iter().enumerate() {
            let slots = [1u64, 0, qty as u64];
            op.on_event(EventView {
                seq: seq as u64,
                ts,
                type_id: TRADE,
                slots: &slots,
            });
        }
        assert_eq!(op.stats().open_windows, 1);
        op.on_watermark(i64::MAX, &mut out);
        let got = decode(&q, &out);
        assert_eq!(
            got,
            [(16, vec![i(3), i(10), i(30), Value::F64(10.0), i(60), i(1)])]
        );
    }

    #[test]
    fn every_aggregate_with_nulls_and_types() {
        // price / qty is null when qty = 0.
        let ratio = Expr::Arith(
            ArithOp::Div,
            Box::new(Expr::Field(field("price"))),
            Box::new(Expr::Field(field("qty"))),
        );
        let q = query(
            WindowSpec::Tumbling { size: 100 },
            vec![
                agg(WindowFunc::Count, None),
                agg(WindowFunc::Count, Some(ratio.clone())),
                agg(WindowFunc::Sum, f("qty")),
                agg(WindowFunc::Sum, f("price")),
                agg(WindowFunc::Avg, f("price")),
                agg(WindowFunc::Min, f("price")),
                agg(WindowFunc::Max, f("price")),
                agg(WindowFunc::First, f("price")),
                agg(WindowFunc::Last, f("price")),
                agg(WindowFunc::Stddev, f("price")),
                agg(WindowFunc::Sum, Some(ratio)),
            ],
            (0..11)
                .map(|k| {
                    let ty = match k {
                        0..=2 => FieldType::I64,
                        _ => FieldType::F64,
                    };
                    out(&format!("a{k}"), ty, WindowExpr::Agg(k))
                })
                .collect(),
        );
        let prices = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let trades: Vec<_> = prices
            .iter()
            .enumerate()
            .map(|(k, &p)| (k as i64, 1, p, if k < 2 { 0 } else { 2 }))
            .collect();
        let got = decode(&q, &run(q.clone(), &trades));
        let [(100, v)] = got.as_slice() else {
            panic!("{got:?}")
        };
        assert_eq!(
            &v[..9],
            &[
                i(8),
                i(6),
                i(12),
                Value::F64(40.0),
                Value::F64(5.0),
                Value::F64(2.0),
                Value::F64(9.0),
                Value::F64(2.0),
                Value::F64(9.0),
            ]
        );
        // Sample standard deviation: squared deviations from 5 sum to 32 over n - 1 = 7.
        let Value::F64(sd) = v[9] else { panic!() };
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12, "{sd}");
        // (4 + 4 + 5 + 5 + 7 + 9) / 2
        assert_eq!(v[10], Value::F64(17.0));

        // One value: stddev is null (stored as NaN); a sum over only nulls is null, count(x) 0.
        let got = run(q.clone(), &[(0, 1, 3.0, 0)]);
        let v = &decode(&q, &got)[0].1;
        assert_eq!(v[1], i(0));
        assert!(matches!(v[9], Value::F64(x) if x.is_nan()));
        assert!(matches!(v[10], Value::F64(x) if x.is_nan()));
        assert_eq!(Acc::EMPTY.value(WindowFunc::Sum), Value::Null);
        assert_eq!(Acc::EMPTY.value(WindowFunc::Count), i(0));
    }

    #[test]
    fn where_having_and_window_arithmetic() {
        let mut q = query(
            WindowSpec::Tumbling { size: 10 },
            vec![
                agg(WindowFunc::Count, None),
                agg(
                    WindowFunc::Sum,
                    Some(Expr::Arith(
                        ArithOp::Mul,
                        Box::new(Expr::Field(field("price"))),
                        Box::new(Expr::Field(field("qty"))),
                    )),
                ),
                agg(WindowFunc::Sum, f("qty")),
            ],
            vec![
                out("symbol", FieldType::Sym, WindowExpr::Group(0)),
                out(
                    "vwap",
                    FieldType::F64,
                    WindowExpr::Arith(
                        ArithOp::Div,
                        Box::new(WindowExpr::Agg(1)),
                        Box::new(WindowExpr::Agg(2)),
                    ),
                ),
                out(
                    "wide",
                    FieldType::Bool,
                    WindowExpr::Cmp(
                        CmpOp::Gt,
                        Box::new(WindowExpr::Agg(0)),
                        Box::new(WindowExpr::Const(i(2))),
                    ),
                ),
            ],
        );
        // where price > 0
        q.filter = Some(Expr::Cmp(
            CmpOp::Gt,
            Box::new(Expr::Field(field("price"))),
            Box::new(Expr::Const(Value::F64(0.0))),
        ));
        // having count(*) >= 2
        q.having = Some(WindowExpr::Cmp(
            CmpOp::Ge,
            Box::new(WindowExpr::Agg(0)),
            Box::new(WindowExpr::Const(i(2))),
        ));
        let trades = [
            (1, 1, 10.0, 1),
            (2, 2, 5.0, 1),
            (3, 1, 13.0, 2),
            (4, 1, -1.0, 100),
            (5, 2, 0.0, 1),
            (11, 2, 1.0, 1),
            (12, 2, 2.0, 1),
            (13, 2, 3.0, 1),
        ];
        let got = decode(&q, &run(q.clone(), &trades));
        assert_eq!(
            got,
            [
                (
                    10,
                    vec![Value::Sym(1), Value::F64(12.0), Value::Bool(false)]
                ),
                (20, vec![Value::Sym(2), Value::F64(2.0), Value::Bool(true)]),
            ]
        );
    }

    #[test]
    fn ema_follows_the_recurrence_per_group_and_skips_windows_without_events() {
        // ema(last(price), 3): alpha = 2 / (1 + 3) = 0.5; both groups start at 0.
        let mut q = query(
            WindowSpec::Tumbling { size: 10 },
            vec![agg(WindowFunc::Last, f("price"))],
            vec![
                out("symbol", FieldType::Sym, WindowExpr::Group(0)),
                out("close", FieldType::F64, WindowExpr::Agg(0)),
                out("ema3", FieldType::F64, WindowExpr::Ema(0)),
            ],
        );
        q.emas = vec![Ema {
            arg: WindowExpr::Agg(0),
            n: 3,
        }];
        // Group 1 has no event in [10, 20): its average skips that window.
        let trades = [
            (1, 1, 3.0, 0),
            (5, 1, 4.0, 0),
            (12, 2, 8.0, 0),
            (21, 1, 8.0, 0),
            (25, 2, 2.0, 0),
            (31, 1, 2.0, 0),
        ];
        let got = decode(&q, &run(q.clone(), &trades));
        let f = Value::F64;
        assert_eq!(
            got,
            [
                (10, vec![Value::Sym(1), f(4.0), f(2.0)]), // 4*.5 + 0*.5
                (20, vec![Value::Sym(2), f(8.0), f(4.0)]), // 8*.5 + 0*.5
                (30, vec![Value::Sym(1), f(8.0), f(5.0)]), // 8*.5 + 2*.5
                (30, vec![Value::Sym(2), f(2.0), f(3.0)]), // 2*.5 + 4*.5
                (40, vec![Value::Sym(1), f(2.0), f(3.5)]), // 2*.5 + 5*.5
            ]
        );

        // `having` filters output, not state: the rejected window still updates the average.
        q.having = Some(WindowExpr::Cmp(
            CmpOp::Ne,
            Box::new(WindowExpr::Agg(0)),
            Box::new(WindowExpr::Const(f(8.0))),
        ));
        let got = decode(&q, &run(q.clone(), &trades));
        let emas: Vec<Value> = got.iter().map(|g| g.1[2]).collect();
        assert_eq!(emas, [f(2.0), f(3.0), f(3.5)]);
    }

    #[test]
    fn ema38_matches_a_direct_computation() {
        let mut q = query(
            WindowSpec::Tumbling { size: 300 },
            vec![agg(WindowFunc::Last, f("price"))],
            vec![out("ema38", FieldType::F64, WindowExpr::Ema(0))],
        );
        q.emas = vec![Ema {
            arg: WindowExpr::Agg(0),
            n: 38,
        }];
        let trades: Vec<_> = (0..50)
            .map(|k| (k * 300 + 7, 1, 100.0 + (k % 7) as f64, 0))
            .collect();
        let got = decode(&q, &run(q.clone(), &trades));
        let mut ema = 0.0f64;
        for (k, (_, v)) in got.iter().enumerate() {
            let close = 100.0 + (k % 7) as f64;
            ema = close * 2.0 / 39.0 + ema * (1.0 - 2.0 / 39.0);
            assert_eq!(v[0], Value::F64(ema));
        }
        assert_eq!(got.len(), 50);
    }

    #[test]
    fn the_final_watermark_closes_every_window_and_memory_is_recycled() {
        for window in [
            WindowSpec::Tumbling { size: 1_000 },
            WindowSpec::Sliding {
                size: 1_000,
                slide: 250,
            },
            WindowSpec::Session { gap: 1_000 },
        ] {
            let q = count_query(window);
            let mut op = QueryOperator::new(q);
            let mut out = Vec::new();
            let slots = [1u64, 0, 0];
            let near_max = i64::MAX - 10;
            for ts in [0, 10, near_max] {
                op.on_event(EventView {
                    seq: 0,
                    ts,
                    type_id: TRADE,
                    slots: &slots,
                });
            }
            assert!(op.stats().open_windows > 0);
            op.on_watermark(i64::MAX - 1_000_000, &mut out);
            let before = out.len();
            assert!(before > 0);
            assert!(out.iter().all(|e| e.ts <= i64::MAX - 1_000_000 + 1));
            op.on_watermark(i64::MAX, &mut out);
            assert!(out.len() > before, "{window:?}");
            assert_eq!(op.stats().open_windows, 0);
            assert!(out.windows(2).all(|w| w[0].ts <= w[1].ts));
            // Buffers of closed windows are kept for reuse rather than reallocated.
            assert!(!op.free.is_empty());
        }
    }

    #[test]
    fn durations_and_windows_print_as_written() {
        assert_eq!(format_duration(0), "0");
        assert_eq!(format_duration(1), "1ns");
        assert_eq!(format_duration(1_500_000), "1500us");
        assert_eq!(format_duration(1_500_000_000), "1500ms");
        assert_eq!(format_duration(90_000_000_000), "90s");
        assert_eq!(format_duration(300_000_000_000), "5m");
        assert_eq!(format_duration(3_600_000_000_000), "1h");
        assert_eq!(format_duration(172_800_000_000_000), "2d");
        let m = 60_000_000_000;
        assert_eq!(
            WindowSpec::Tumbling { size: 5 * m }.to_string(),
            "tumbling 5m"
        );
        assert_eq!(
            WindowSpec::Sliding {
                size: 5 * m,
                slide: m
            }
            .to_string(),
            "sliding 5m every 1m"
        );
        assert_eq!(
            WindowSpec::Session {
                gap: 30_000_000_000
            }
            .to_string(),
            "session gap 30s"
        );
    }

    #[test]
    fn window_expressions_render_as_query_text() {
        let mut symbols = crate::symbol::SymbolTable::new();
        let aapl = symbols.intern("AAPL");
        let mut q = query(
            WindowSpec::Tumbling { size: 1_000 },
            vec![
                agg(WindowFunc::Count, None),
                agg(
                    WindowFunc::Sum,
                    Some(Expr::Arith(
                        ArithOp::Mul,
                        Box::new(Expr::Field(field("price"))),
                        Box::new(Expr::Field(field("qty"))),
                    )),
                ),
                agg(WindowFunc::Last, f("price")),
                agg(WindowFunc::Stddev, f("price")),
            ],
            Vec::new(),
        );
        q.emas.push(Ema {
            arg: WindowExpr::Agg(2),
            n: 38,
        });
        let names: Vec<String> = Vec::new();
        let d = WindowExprDisplay {
            query: &q,
            expr: ExprDisplay {
                vars: &names,
                symbols: Some(&symbols),
                catalog: None,
            },
        };
        let b = Box::new;
        assert_eq!(d.render(&WindowExpr::Agg(0)), "count(*)");
        assert_eq!(d.render(&WindowExpr::Agg(1)), "sum(price * qty)");
        assert_eq!(d.render(&WindowExpr::Agg(3)), "stddev(price)");
        assert_eq!(d.render(&WindowExpr::Ema(0)), "ema(last(price), 38)");
        assert_eq!(d.render(&WindowExpr::Group(0)), "symbol");
        let vwap = WindowExpr::Arith(ArithOp::Div, b(WindowExpr::Agg(1)), b(WindowExpr::Agg(0)));
        assert_eq!(d.render(&vwap), "(sum(price * qty) / count(*))");
        let span = WindowExpr::Neg(b(WindowExpr::Arith(
            ArithOp::Sub,
            b(WindowExpr::WindowStart),
            b(WindowExpr::WindowEnd),
        )));
        assert_eq!(d.render(&span), "-(window_start - window_end)");
        // A literal compared with a `sym` group field shows as the symbol's name.
        let having = WindowExpr::And(
            b(WindowExpr::Cmp(
                CmpOp::Ge,
                b(WindowExpr::Agg(0)),
                b(WindowExpr::Const(Value::I64(2))),
            )),
            b(WindowExpr::Not(b(WindowExpr::Or(
                b(WindowExpr::Cmp(
                    CmpOp::Eq,
                    b(WindowExpr::Group(0)),
                    b(WindowExpr::Const(Value::Sym(aapl))),
                )),
                b(WindowExpr::Const(Value::Bool(false))),
            )))),
        );
        assert_eq!(
            d.render(&having),
            "(count(*) >= 2) and not ((symbol == \"AAPL\") or false)"
        );
        // Indices outside the query are shown as such rather than panicking.
        assert_eq!(d.render(&WindowExpr::Agg(9)), "aggregate#9");
        assert_eq!(d.render(&WindowExpr::Ema(9)), "ema#9");
    }
}
