//! Property test: windowed queries run by the engine (through the real parser, compiler and
//! engine) against a naive oracle that recomputes every window from the full list of events.
//!
//! Input: 1 to 40 events of one or two types (`A`, `B`: the same fields in different slot
//! orders) with a `sym` field `g` and an `i64` field `k` (two or three distinct values each), an
//! `f64` value `p` and an `i64` value `q`; times in whole seconds, nondecreasing, with ties, small
//! steps and gaps that span several windows, sometimes starting below zero. A random query over
//! them: `window tumbling D`, `sliding D every S` or `session gap G`; an optional `where`; an
//! optional `group by g`, `k` or both; an optional `having`; 1 to 6 emit fields drawn from
//! `count(*)`, `count(x)`, `sum avg min max first last stddev`, arithmetic over aggregates (a
//! vwap `sum(p * q) / sum(q)`, divisions by zero, `%`, unary minus), comparisons, `window_start`,
//! `window_end`, `ema(…, n)` and the group-by fields. A rule `from bar pattern x select all`
//! re-emits every derived event with all its fields, so the signals are the derived events.
//!
//! The oracle follows `docs/language.md` section 21: per group (groups exist only through events
//! that pass `where`), every window holding at least one such event gets its aggregates computed
//! directly from those events; `ema`s update per group in window order before `having`, also for
//! windows that `having` drops, a Null argument leaving the average unchanged and giving a Null
//! value; derived events come out in ascending `ts` (window end; session: last event + gap), ties
//! by the group's first appearance among the events that pass `where`; every window closes at the
//! end of the stream.
//!
//! What is compared: the number and order of derived events, each one's `ts` and derived `seq`
//! (0, 1, 2, … in emission order), and every field: integers exactly, floats with a relative
//! tolerance of 1e-9, Nulls exactly (a Null is NaN in an `f64` field, 0 in an integer field).
//! The engine's count of derived events must equal the number of re-emitted ones.
//! [`generator_covers_every_feature`] checks that the default case budget reaches every window
//! kind, `where` and `having` dropping something, shared `ema`s, ties, Nulls and negative times.
//!
//! The run is deterministic (fixed seed); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` override it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proptest::collection::vec;
use proptest::prelude::*;
use strix::{Engine, FieldValue};

mod common;

/// Random cases per run.
const CASES: u32 = 1500;

/// Fixed seed so that every run checks the same cases.
const SEED: u64 = 0x51d3_a77e;

/// Declarations every case uses: two types with the same fields in different slot orders.
const DECLS: &str = "event A { g: sym, k: i64, p: f64, q: i64 }\n\
                     event B { q: i64, p: f64, k: i64, g: sym }\n";

/// Values of `p`, `q`, `g` and `k` the events draw from (`q = 0` makes divisions by zero).
const P_VALUES: [f64; 8] = [-1.5, 0.0, 0.5, 1.0, 2.0, 2.5, 4.0, 10.25];
const Q_VALUES: [i64; 7] = [-2, 0, 1, 1, 2, 3, 5];
const G_VALUES: [&str; 3] = ["s0", "s1", "s2"];
const K_VALUES: [i64; 3] = [0, 1, -3];

const NS: i64 = 1_000_000_000;

/// One input event; `ts` in seconds.
#[derive(Debug, Clone)]
struct Ev {
    ty: u8,
    g: usize,
    k: i64,
    p: f64,
    q: i64,
    ts: i64,
}

/// A value as the oracle computes it.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    I(i64),
    F(f64),
    B(bool),
    S(String),
}

impl V {
    fn as_f64(&self) -> Option<f64> {
        match self {
            V::I(x) => Some(*x as f64),
            V::F(x) => Some(*x),
            _ => None,
        }
    }

    fn is_true(&self) -> bool {
        matches!(self, V::B(true))
    }
}

/// Static type of a per-window expression (`ts` values count as integers).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Int,
    Float,
    Bool,
    Sym,
}

/// A per-event expression: an aggregate's argument.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Arg {
    P,
    Q,
    PTimesQ,
    PDivQ,
    Ts,
}

impl Arg {
    fn text(self) -> &'static str {
        match self {
            Arg::P => "p",
            Arg::Q => "q",
            Arg::PTimesQ => "p * q",
            Arg::PDivQ => "p / q",
            Arg::Ts => "ts",
        }
    }

    fn ty(self) -> Ty {
        match self {
            Arg::Q | Arg::Ts => Ty::Int,
            _ => Ty::Float,
        }
    }

    fn eval(self, e: &Ev) -> V {
        match self {
            Arg::P => V::F(e.p),
            Arg::Q => V::I(e.q),
            Arg::PTimesQ => V::F(e.p * e.q as f64),
            Arg::PDivQ if e.q == 0 => V::Null,
            Arg::PDivQ => V::F(e.p / e.q as f64),
            Arg::Ts => V::I(e.ts * NS),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Stddev,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A group-by field.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GroupField {
    G,
    K,
}

/// A per-window expression (`having`, `emit`).
#[derive(Debug, Clone, PartialEq)]
enum We {
    /// `count(*)` is `Agg(Count, None)`.
    Agg(Func, Option<Arg>),
    Ema(Box<We>, u32),
    Group(GroupField),
    Start,
    End,
    Int(i64),
    Float(f64),
    Str(&'static str),
    Bin(Op, Box<We>, Box<We>),
    Neg(Box<We>),
    Cmp(CmpOp, Box<We>, Box<We>),
    And(Box<We>, Box<We>),
    Or(Box<We>, Box<We>),
    Not(Box<We>),
}

fn b(x: We) -> Box<We> {
    Box::new(x)
}

fn agg(f: Func, a: Arg) -> We {
    We::Agg(f, Some(a))
}

fn count_star() -> We {
    We::Agg(Func::Count, None)
}

fn bin(op: Op, l: We, r: We) -> We {
    We::Bin(op, b(l), b(r))
}

fn cmp(op: CmpOp, l: We, r: We) -> We {
    We::Cmp(op, b(l), b(r))
}

impl We {
    fn text(&self) -> String {
        match self {
            We::Agg(f, a) => {
                let name = match f {
                    Func::Count => "count",
                    Func::Sum => "sum",
                    Func::Avg => "avg",
                    Func::Min => "min",
                    Func::Max => "max",
                    Func::First => "first",
                    Func::Last => "last",
                    Func::Stddev => "stddev",
                };
                format!("{name}({})", a.map_or("*", Arg::text))
            }
            We::Ema(x, n) => format!("ema({}, {n})", x.text()),
            We::Group(GroupField::G) => "g".into(),
            We::Group(GroupField::K) => "k".into(),
            We::Start => "window_start".into(),
            We::End => "window_end".into(),
            We::Int(x) => x.to_string(),
            We::Float(x) => format!("{x:?}"),
            We::Str(s) => format!("\"{s}\""),
            We::Bin(op, l, r) => {
                let op = match op {
                    Op::Add => "+",
                    Op::Sub => "-",
                    Op::Mul => "*",
                    Op::Div => "/",
                    Op::Rem => "%",
                };
                format!("({} {op} {})", l.text(), r.text())
            }
            We::Neg(x) => format!("-{}", x.text()),
            We::Cmp(op, l, r) => {
                let op = match op {
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                };
                format!("({} {op} {})", l.text(), r.text())
            }
            We::And(l, r) => format!("({} and {})", l.text(), r.text()),
            We::Or(l, r) => format!("({} or {})", l.text(), r.text()),
            We::Not(x) => format!("not {}", x.text()),
        }
    }

    fn ty(&self) -> Ty {
        match self {
            We::Agg(Func::Count, _) | We::Start | We::End | We::Int(_) => Ty::Int,
            We::Agg(Func::Avg | Func::Stddev, _) | We::Ema(..) | We::Float(_) => Ty::Float,
            We::Agg(_, a) => a.map_or(Ty::Int, Arg::ty),
            We::Group(GroupField::G) | We::Str(_) => Ty::Sym,
            We::Group(GroupField::K) => Ty::Int,
            We::Bin(Op::Div, ..) => Ty::Float,
            We::Bin(_, l, r) => {
                if l.ty() == Ty::Int && r.ty() == Ty::Int {
                    Ty::Int
                } else {
                    Ty::Float
                }
            }
            We::Neg(x) => x.ty(),
            We::Cmp(..) | We::And(..) | We::Or(..) | We::Not(..) => Ty::Bool,
        }
    }

    /// Every `ema` call in the expression (outermost first).
    fn emas<'a>(&'a self, out: &mut Vec<&'a We>) {
        match self {
            We::Ema(..) => out.push(self),
            We::Bin(_, l, r) | We::Cmp(_, l, r) | We::And(l, r) | We::Or(l, r) => {
                l.emas(out);
                r.emas(out);
            }
            We::Neg(x) | We::Not(x) => x.emas(out),
            _ => {}
        }
    }

    fn eval(&self, w: &WindowCtx<'_>) -> V {
        match self {
            We::Agg(f, a) => aggregate(*f, *a, w.events),
            We::Ema(..) => w.emas.get(&self.text()).cloned().unwrap_or(V::Null),
            We::Group(GroupField::G) => V::S(G_VALUES[w.group.0].into()),
            We::Group(GroupField::K) => V::I(w.group.1),
            We::Start => V::I(w.start * NS),
            We::End => V::I(w.end * NS),
            We::Int(x) => V::I(*x),
            We::Float(x) => V::F(*x),
            We::Str(s) => V::S((*s).into()),
            We::Bin(op, l, r) => arith(*op, l.eval(w), r.eval(w)),
            We::Neg(x) => match x.eval(w) {
                V::I(x) => V::I(x.wrapping_neg()),
                V::F(x) => V::F(-x),
                _ => V::Null,
            },
            We::Cmp(op, l, r) => {
                let (l, r) = (l.eval(w), r.eval(w));
                let ord = match (&l, &r) {
                    (V::S(a), V::S(b)) => Some(a.cmp(b)),
                    (V::I(a), V::I(b)) => Some(a.cmp(b)),
                    _ => match (l.as_f64(), r.as_f64()) {
                        (Some(a), Some(b)) => a.partial_cmp(&b),
                        _ => None,
                    },
                };
                let Some(ord) = ord else {
                    return V::B(false);
                };
                V::B(match op {
                    CmpOp::Lt => ord.is_lt(),
                    CmpOp::Le => ord.is_le(),
                    CmpOp::Gt => ord.is_gt(),
                    CmpOp::Ge => ord.is_ge(),
                    CmpOp::Eq => ord.is_eq(),
                    CmpOp::Ne => ord.is_ne(),
                })
            }
            We::And(l, r) => V::B(l.eval(w).is_true() && r.eval(w).is_true()),
            We::Or(l, r) => V::B(l.eval(w).is_true() || r.eval(w).is_true()),
            We::Not(x) => match x.eval(w) {
                V::B(v) => V::B(!v),
                _ => V::B(false),
            },
        }
    }
}

/// Section 13.2: integers stay integers (wrapping) except under `/`; division or remainder by
/// zero is Null; Null in, Null out.
fn arith(op: Op, l: V, r: V) -> V {
    if let (V::I(x), V::I(y)) = (&l, &r) {
        let (x, y) = (*x, *y);
        return match op {
            Op::Add => V::I(x.wrapping_add(y)),
            Op::Sub => V::I(x.wrapping_sub(y)),
            Op::Mul => V::I(x.wrapping_mul(y)),
            Op::Rem if y == 0 => V::Null,
            Op::Rem => V::I(x.wrapping_rem(y)),
            Op::Div if y == 0 => V::Null,
            Op::Div => V::F(x as f64 / y as f64),
        };
    }
    let (Some(x), Some(y)) = (l.as_f64(), r.as_f64()) else {
        return V::Null;
    };
    match op {
        Op::Add => V::F(x + y),
        Op::Sub => V::F(x - y),
        Op::Mul => V::F(x * y),
        Op::Div | Op::Rem if y == 0.0 => V::Null,
        Op::Div => V::F(x / y),
        Op::Rem => V::F(x % y),
    }
}

/// An aggregate computed directly from a window's events (in input order, which is `(ts, seq)`
/// order). Nulls are ignored.
fn aggregate(f: Func, arg: Option<Arg>, events: &[&Ev]) -> V {
    let Some(arg) = arg else {
        return V::I(events.len() as i64);
    };
    let vals: Vec<V> = events
        .iter()
        .map(|e| arg.eval(e))
        .filter(|v| *v != V::Null)
        .collect();
    let floats: Vec<f64> = vals.iter().filter_map(V::as_f64).collect();
    let n = vals.len();
    if f == Func::Count {
        return V::I(n as i64);
    }
    if n == 0 {
        return V::Null;
    }
    let int = arg.ty() == Ty::Int;
    let ints = || vals.iter().map(|v| if let V::I(x) = v { *x } else { 0 });
    match f {
        Func::Count => unreachable!("handled above"),
        Func::Sum if int => V::I(ints().fold(0i64, i64::wrapping_add)),
        Func::Sum => V::F(floats.iter().sum()),
        Func::Avg => V::F(floats.iter().sum::<f64>() / n as f64),
        Func::Min if int => V::I(ints().min().unwrap_or(0)),
        Func::Max if int => V::I(ints().max().unwrap_or(0)),
        Func::Min => V::F(floats.iter().copied().fold(f64::INFINITY, f64::min)),
        Func::Max => V::F(floats.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        Func::First => vals[0].clone(),
        Func::Last => vals[n - 1].clone(),
        Func::Stddev if n < 2 => V::Null,
        Func::Stddev => {
            let mean = floats.iter().sum::<f64>() / n as f64;
            let ss: f64 = floats.iter().map(|x| (x - mean) * (x - mean)).sum();
            V::F((ss / (n - 1) as f64).sqrt())
        }
    }
}

/// What a per-window expression sees.
struct WindowCtx<'a> {
    events: &'a [&'a Ev],
    group: (usize, i64),
    start: i64,
    end: i64,
    /// Updated `ema` values by call text.
    emas: &'a BTreeMap<String, V>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum WindowKind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

/// A random query.
#[derive(Debug, Clone)]
struct Query {
    two_types: bool,
    filter: Option<&'static str>,
    group_by: Vec<GroupField>,
    window: WindowKind,
    having: Option<We>,
    /// Emit fields: name and expression. Group-by fields are emitted by bare name.
    emit: Vec<(String, We)>,
}

impl Query {
    /// The program: the query and a rule that re-emits every derived event.
    fn text(&self) -> String {
        let mut s = format!("query w from {}", if self.two_types { "A, B" } else { "A" });
        if let Some(f) = self.filter {
            write!(s, " where {f}").unwrap();
        }
        if !self.group_by.is_empty() {
            let names: Vec<_> = self.group_by.iter().map(|g| We::Group(*g).text()).collect();
            write!(s, " group by {}", names.join(", ")).unwrap();
        }
        match self.window {
            WindowKind::Tumbling(d) => write!(s, " window tumbling {d}s"),
            WindowKind::Sliding(d, e) => write!(s, " window sliding {d}s every {e}s"),
            WindowKind::Session(g) => write!(s, " window session gap {g}s"),
        }
        .unwrap();
        if let Some(h) = &self.having {
            write!(s, " having {}", h.text()).unwrap();
        }
        let fields: Vec<String> = self
            .emit
            .iter()
            .map(|(name, e)| match e {
                We::Group(_) => name.clone(),
                _ => format!("{name}: {}", e.text()),
            })
            .collect();
        writeln!(s, " emit bar {{ {} }}", fields.join(", ")).unwrap();
        let copies: Vec<String> = self
            .emit
            .iter()
            .map(|(name, _)| format!("{name}: x.{name}"))
            .collect();
        write!(
            s,
            "rule out from bar pattern x select all emit bar_out {{ {} }}",
            copies.join(", ")
        )
        .unwrap();
        s
    }

    /// `where`, evaluated on one event.
    fn passes(&self, e: &Ev) -> bool {
        match self.filter {
            None => true,
            Some("p > 0") => e.p > 0.0,
            Some("q != 0") => e.q != 0,
            Some("A and p >= 1") => e.ty == 0 && e.p >= 1.0,
            Some("p < 1 or q == 2") => e.p < 1.0 || e.q == 2,
            Some("g != \"s0\"") => e.g != 0,
            Some("k in (0, 1)") => e.k == 0 || e.k == 1,
            Some(f) => unreachable!("unknown filter {f}"),
        }
    }

    fn key(&self, e: &Ev) -> (usize, i64) {
        let g = if self.group_by.contains(&GroupField::G) {
            e.g
        } else {
            0
        };
        let k = if self.group_by.contains(&GroupField::K) {
            e.k
        } else {
            0
        };
        (g, k)
    }
}

const FILTERS: [&str; 6] = [
    "p > 0",
    "q != 0",
    "A and p >= 1",
    "p < 1 or q == 2",
    "g != \"s0\"",
    "k in (0, 1)",
];

/// Turns random choices into a query; reading past the end yields zeros.
struct Gen<'a> {
    choices: &'a [u8],
    at: usize,
}

impl Gen<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let c = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        c as usize % n
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.pick(100) < percent
    }

    fn arg(&mut self, from: &[Arg]) -> Arg {
        from[self.pick(from.len())]
    }

    fn ema(&mut self) -> We {
        let n = 1 + self.pick(5) as u32;
        let x = match self.pick(4) {
            0 | 1 => agg(Func::Last, Arg::P),
            2 => agg(Func::Sum, Arg::PDivQ),
            _ => bin(
                Op::Div,
                agg(Func::Sum, Arg::PTimesQ),
                agg(Func::Sum, Arg::Q),
            ),
        };
        We::Ema(b(x), n)
    }

    /// One emit expression.
    fn field(&mut self) -> We {
        use Arg::*;
        match self.pick(16) {
            0 => count_star(),
            1 => agg(Func::Count, self.arg(&[PDivQ, P])),
            2 => agg(Func::Sum, self.arg(&[P, Q, PTimesQ, PDivQ])),
            3 => agg(Func::Avg, self.arg(&[P, Q, PDivQ])),
            4 => agg(Func::Min, self.arg(&[P, Q, Ts, PDivQ])),
            5 => agg(Func::Max, self.arg(&[P, Q, Ts, PDivQ])),
            6 => agg(Func::First, self.arg(&[P, Q, Ts, PDivQ])),
            7 => agg(Func::Last, self.arg(&[P, Q, Ts, PDivQ])),
            8 => agg(Func::Stddev, self.arg(&[P, Q, PDivQ])),
            9 => bin(Op::Div, agg(Func::Sum, PTimesQ), agg(Func::Sum, Q)),
            10 => match self.pick(7) {
                0 => bin(Op::Sub, agg(Func::Max, P), agg(Func::Min, P)),
                1 => bin(
                    Op::Add,
                    bin(Op::Mul, count_star(), We::Int(2)),
                    agg(Func::Sum, Q),
                ),
                2 => bin(Op::Div, agg(Func::Sum, Q), count_star()),
                3 => bin(Op::Rem, agg(Func::Sum, Q), We::Int(3)),
                // Null (remainder by zero) for a window of one event: stored as 0.
                5 => bin(
                    Op::Rem,
                    agg(Func::Sum, Q),
                    bin(Op::Sub, count_star(), We::Int(1)),
                ),
                4 => bin(
                    Op::Div,
                    agg(Func::Last, P),
                    bin(Op::Sub, count_star(), We::Int(2)),
                ),
                _ => We::Neg(b(agg(Func::Min, Q))),
            },
            11 => match self.pick(3) {
                0 => We::Start,
                1 => We::End,
                _ => bin(Op::Sub, We::End, We::Start),
            },
            12 | 13 => self.ema(),
            14 => bin(Op::Mul, self.ema(), We::Float(2.0)),
            _ => self.condition(),
        }
    }

    /// A per-window condition (also used for `having`).
    fn condition(&mut self) -> We {
        use Arg::*;
        match self.pick(9) {
            0 => cmp(CmpOp::Ge, count_star(), We::Int(2)),
            1 => cmp(CmpOp::Gt, agg(Func::Sum, Q), We::Int(0)),
            2 => We::Or(
                b(cmp(CmpOp::Gt, agg(Func::Max, P), We::Float(1.0))),
                b(cmp(CmpOp::Eq, count_star(), We::Int(1))),
            ),
            3 => cmp(CmpOp::Gt, self.ema(), We::Float(1.0)),
            4 => cmp(CmpOp::Le, agg(Func::Avg, P), We::Float(2.0)),
            5 => We::Not(b(cmp(CmpOp::Lt, agg(Func::Stddev, P), We::Float(1.0)))),
            6 => We::And(
                b(cmp(CmpOp::Ge, We::Start, We::Int(0))),
                b(cmp(CmpOp::Ne, agg(Func::Sum, PDivQ), We::Float(0.5))),
            ),
            7 => cmp(CmpOp::Gt, agg(Func::Last, P), agg(Func::First, P)),
            _ => cmp(CmpOp::Ne, agg(Func::Min, Q), agg(Func::Max, Q)),
        }
    }

    fn query(&mut self) -> Query {
        let two_types = self.chance(40);
        let filter = if self.chance(40) {
            let f = FILTERS[self.pick(FILTERS.len())];
            Some(if !two_types && f.starts_with('A') {
                "p > 0"
            } else {
                f
            })
        } else {
            None
        };
        let group_by = match self.pick(5) {
            0 => vec![],
            1 | 2 => vec![GroupField::G],
            3 => vec![GroupField::K],
            _ => vec![GroupField::G, GroupField::K],
        };
        let window = match self.pick(3) {
            0 => WindowKind::Tumbling(1 + self.pick(8) as i64),
            1 => {
                let slide = [1, 2, 3, 5][self.pick(4)];
                WindowKind::Sliding(slide * (1 + self.pick(4) as i64), slide)
            }
            _ => WindowKind::Session(1 + self.pick(6) as i64),
        };
        let mut having = self.chance(35).then(|| self.condition());
        if let Some(h) = &mut having
            && self.chance(20)
            && !group_by.is_empty()
        {
            let on_group = match group_by[0] {
                GroupField::G => cmp(CmpOp::Ne, We::Group(GroupField::G), We::Str("s1")),
                GroupField::K => cmp(CmpOp::Ne, We::Group(GroupField::K), We::Int(1)),
            };
            *h = We::And(b(h.clone()), b(on_group));
        }
        let mut emit: Vec<(String, We)> = group_by
            .iter()
            .filter(|_| self.chance(70))
            .map(|g| (We::Group(*g).text(), We::Group(*g)))
            .collect();
        let n = 1 + self.pick(6);
        for i in 0..n {
            // Sometimes the same `ema` as in `having`: one average for both.
            let e = match (&having, self.chance(15)) {
                (Some(h), true) => {
                    let mut calls = Vec::new();
                    h.emas(&mut calls);
                    calls.first().map_or_else(|| self.field(), |c| (*c).clone())
                }
                _ => self.field(),
            };
            emit.push((format!("f{i}"), e));
        }
        Query {
            two_types,
            filter,
            group_by,
            window,
            having,
            emit,
        }
    }
}

/// One expected or actual derived event: `ts` (ns) and its fields in emit order.
#[derive(Debug, Clone)]
struct Row {
    ts: i64,
    fields: Vec<V>,
}

/// The oracle: every window of every group, recomputed from the full event list.
fn expected(q: &Query, events: &[Ev]) -> Vec<Row> {
    expected_with_windows(q, events).0
}

/// The oracle's derived events and the number of windows before `having`.
fn expected_with_windows(q: &Query, events: &[Ev]) -> (Vec<Row>, usize) {
    let passing: Vec<&Ev> = events.iter().filter(|e| q.passes(e)).collect();
    // Groups in order of first appearance among the events that pass `where`.
    let mut groups: Vec<(usize, i64)> = Vec::new();
    for e in &passing {
        let k = q.key(e);
        if !groups.contains(&k) {
            groups.push(k);
        }
    }
    // (derived ts, group rank, window start, events) for every window with events.
    let mut windows: Vec<(i64, usize, i64, Vec<&Ev>)> = Vec::new();
    for (rank, key) in groups.iter().enumerate() {
        let mine: Vec<&Ev> = passing
            .iter()
            .copied()
            .filter(|e| q.key(e) == *key)
            .collect();
        match q.window {
            WindowKind::Tumbling(_) | WindowKind::Sliding(..) => {
                let (size, slide) = match q.window {
                    WindowKind::Tumbling(d) => (d, d),
                    WindowKind::Sliding(d, s) => (d, s),
                    WindowKind::Session(_) => unreachable!("not a fixed window"),
                };
                // Every window end a multiple of the slide that some event's windows reach.
                let lo = mine[0].ts.div_euclid(slide) * slide;
                let hi = mine[mine.len() - 1].ts + size + slide;
                let mut end = lo;
                while end <= hi {
                    let inside: Vec<&Ev> = mine
                        .iter()
                        .copied()
                        .filter(|e| end - size <= e.ts && e.ts < end)
                        .collect();
                    if !inside.is_empty() {
                        windows.push((end, rank, end - size, inside));
                    }
                    end += slide;
                }
            }
            WindowKind::Session(gap) => {
                let mut current: Vec<&Ev> = Vec::new();
                for e in mine {
                    if let Some(last) = current.last()
                        && e.ts - last.ts > gap
                    {
                        let s = std::mem::take(&mut current);
                        windows.push((s[s.len() - 1].ts + gap, rank, s[0].ts, s));
                    }
                    current.push(e);
                }
                windows.push((
                    current[current.len() - 1].ts + gap,
                    rank,
                    current[0].ts,
                    current,
                ));
            }
        }
    }
    windows.sort_by_key(|w| (w.0, w.1));
    // Distinct `ema` calls of `having` and `emit`, by text.
    let mut calls = Vec::new();
    if let Some(h) = &q.having {
        h.emas(&mut calls);
    }
    for (_, e) in &q.emit {
        e.emas(&mut calls);
    }
    let mut state: BTreeMap<(usize, String), f64> = BTreeMap::new();
    let mut rows = Vec::new();
    for (end, rank, start, evs) in &windows {
        let none = BTreeMap::new();
        let mut ctx = WindowCtx {
            events: evs,
            group: groups[*rank],
            start: *start,
            end: *end,
            emas: &none,
        };
        let mut values = BTreeMap::new();
        for call in &calls {
            let We::Ema(x, n) = call else { continue };
            let text = call.text();
            if values.contains_key(&text) {
                continue;
            }
            let v = match x.eval(&ctx).as_f64() {
                Some(x) => {
                    let prev = state.entry((*rank, text.clone())).or_insert(0.0);
                    let n1 = 1.0 + f64::from(*n);
                    *prev = x * 2.0 / n1 + *prev * (1.0 - 2.0 / n1);
                    V::F(*prev)
                }
                None => V::Null,
            };
            values.insert(text, v);
        }
        ctx.emas = &values;
        if let Some(h) = &q.having
            && !h.eval(&ctx).is_true()
        {
            continue;
        }
        rows.push(Row {
            ts: end * NS,
            fields: q.emit.iter().map(|(_, e)| e.eval(&ctx)).collect(),
        });
    }
    (rows, windows.len())
}

/// Runs the program over `events`; the re-emitted derived events in signal order.
fn run_engine(q: &Query, events: &[Ev]) -> Result<Vec<Row>, String> {
    let src = format!("{DECLS}{}\n", q.text());
    let mut engine =
        Engine::from_rules("query_property.cep", &src).map_err(|e| format!("compile: {e}"))?;
    let mut out = Vec::new();
    let mut err = None;
    let mut take = |s: strix::Signal<'_>| {
        let json = s.to_json();
        let want_seq = serde_json::json!([out.len()]);
        if json["seq"] != want_seq {
            err.get_or_insert(format!(
                "derived event {} has seq {} (expected {want_seq})",
                out.len(),
                json["seq"]
            ));
        }
        let fields = q
            .emit
            .iter()
            .map(|(name, e)| {
                let v = &json["fields"][name];
                match (e.ty(), v) {
                    (_, serde_json::Value::Null) => V::Null,
                    (Ty::Bool, v) => v.as_bool().map_or(V::Null, V::B),
                    (Ty::Sym, v) => V::S(v.as_str().unwrap_or("?").into()),
                    (Ty::Int, v) => v.as_i64().map_or(V::Null, V::I),
                    (Ty::Float, v) => v.as_f64().map_or(V::Null, V::F),
                }
            })
            .collect();
        out.push(Row {
            ts: json["ts"].as_i64().unwrap_or(i64::MIN),
            fields,
        });
    };
    for e in events {
        let ev = engine
            .event(
                if e.ty == 0 { "A" } else { "B" },
                e.ts * NS,
                &[
                    ("g", FieldValue::Str(G_VALUES[e.g])),
                    ("k", FieldValue::I64(e.k)),
                    ("p", FieldValue::F64(e.p)),
                    ("q", FieldValue::I64(e.q)),
                ],
            )
            .map_err(|e| e.to_string())?;
        engine.push(&ev, &mut take);
    }
    engine.finish(&mut take);
    if let Some(e) = err {
        return Err(e);
    }
    // The rule re-emits every derived event: none is lost on the way.
    if engine.derived_events() != out.len() as u64 {
        return Err(format!(
            "{} derived events but {} re-emitted",
            engine.derived_events(),
            out.len()
        ));
    }
    Ok(out)
}

/// Equal as the test means it: floats within a relative 1e-9, Null only as Null. A Null in an
/// integer field reads back as 0 (fields cannot hold Null).
fn same(ty: Ty, want: &V, got: &V) -> bool {
    match (ty, want, got) {
        (Ty::Int, V::Null, V::I(0)) => true,
        (Ty::Float, V::F(a), V::F(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (Ty::Float, V::I(a), V::F(b)) => (*a as f64 - b).abs() <= 1e-9 * b.abs().max(1.0),
        _ => want == got,
    }
}

fn events_text(events: &[Ev]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{} g={} k={} p={} q={} @{}s",
                if e.ty == 0 { "A" } else { "B" },
                G_VALUES[e.g],
                e.k,
                e.p,
                e.q,
                e.ts
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn rows_text(q: &Query, rows: &[Row]) -> String {
    rows.iter()
        .map(|r| {
            let fields: Vec<String> = q
                .emit
                .iter()
                .zip(&r.fields)
                .map(|((name, _), v)| format!("{name}={v:?}"))
                .collect();
            format!("\n    ts={}s {}", r.ts as f64 / NS as f64, fields.join(" "))
        })
        .collect()
}

fn check(q: &Query, events: &[Ev]) -> Result<(), String> {
    let describe = |what: String| {
        format!(
            "{what}\n  rules:\n{DECLS}{}\n  events: {}",
            q.text(),
            events_text(events)
        )
    };
    let got = run_engine(q, events).map_err(describe)?;
    let want = expected(q, events);
    let differs = |what: &str| {
        describe(format!(
            "{what}\n  expected:{}\n  actual:{}",
            rows_text(q, &want),
            rows_text(q, &got)
        ))
    };
    if got.len() != want.len() {
        return Err(differs("different number of derived events"));
    }
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        if w.ts != g.ts {
            return Err(differs(&format!("derived event {i}: ts differs")));
        }
        for (((name, e), wv), gv) in q.emit.iter().zip(&w.fields).zip(&g.fields) {
            if !same(e.ty(), wv, gv) {
                return Err(differs(&format!(
                    "derived event {i}: field {name} = {}: expected {wv:?}, got {gv:?}",
                    e.text()
                )));
            }
        }
    }
    Ok(())
}

/// A raw event: type, g, k, p, q (indices), time step kind, step size.
type RawEvent = (u8, u8, u8, u8, u8, u8, u8);

/// The random inputs: query choices, raw events, number of groups, first time (s).
fn inputs() -> impl Strategy<Value = (Vec<u8>, Vec<RawEvent>, usize, i64)> {
    (
        vec(any::<u8>(), 0..64),
        vec(
            (
                0u8..2,
                any::<u8>(),
                any::<u8>(),
                0u8..P_VALUES.len() as u8,
                0u8..Q_VALUES.len() as u8,
                0u8..10,
                any::<u8>(),
            ),
            1..=40,
        ),
        2usize..=3,
        prop_oneof![Just(0i64), -40i64..40],
    )
}

/// Events from raw tuples: ties (30%), steps of 1 to 3 s (50%), gaps of 5 to 34 s (20%).
fn make_events(raw: &[RawEvent], two_types: bool, n_groups: usize, t0: i64) -> Vec<Ev> {
    let mut ts = t0;
    raw.iter()
        .enumerate()
        .map(|(i, &(ty, g, k, p, q, step_kind, step))| {
            if i > 0 {
                ts += match step_kind {
                    0..=2 => 0,
                    3..=7 => 1 + i64::from(step % 3),
                    _ => 5 + i64::from(step % 30),
                };
            }
            Ev {
                ty: if two_types { ty } else { 0 },
                g: g as usize % n_groups,
                k: K_VALUES[k as usize % n_groups],
                p: P_VALUES[p as usize],
                q: Q_VALUES[q as usize],
                ts,
            }
        })
        .collect()
}

fn config() -> ProptestConfig {
    common::proptest_config(CASES, SEED)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn windowed_queries_agree_with_naive_recomputation(
        (choices, raw, n_groups, t0) in inputs(),
    ) {
        let q = Gen { choices: &choices, at: 0 }.query();
        let events = make_events(&raw, q.two_types, n_groups, t0);
        if let Err(msg) = check(&q, &events) {
            return Err(TestCaseError::fail(msg));
        }
    }
}

/// What one case exercises, for [`generator_covers_every_feature`].
fn features(q: &Query, events: &[Ev]) -> Vec<&'static str> {
    let (rows, windows) = expected_with_windows(q, events);
    let mut f = vec![match q.window {
        WindowKind::Tumbling(_) => "tumbling",
        WindowKind::Sliding(d, s) if d > s => "sliding, several windows per event",
        WindowKind::Sliding(..) => "sliding, one window per event",
        WindowKind::Session(_) => "session",
    }];
    let mut calls = Vec::new();
    for (_, e) in &q.emit {
        e.emas(&mut calls);
    }
    if let Some(h) = &q.having {
        f.push("having");
        if rows.len() < windows {
            f.push("having drops a window");
        }
        let mut in_having = Vec::new();
        h.emas(&mut in_having);
        if in_having.iter().any(|c| calls.contains(c)) {
            f.push("one ema in having and emit");
        }
    }
    if !calls.is_empty() && rows.len() >= 3 {
        f.push("ema over several windows");
    }
    if q.filter.is_some() && events.iter().any(|e| !q.passes(e)) {
        f.push("where drops an event");
    }
    f.extend(q.group_by.iter().map(|g| match g {
        GroupField::G => "group by sym",
        GroupField::K => "group by int",
    }));
    if q.two_types {
        f.push("two types");
    }
    if events[0].ts < 0 {
        f.push("negative times");
    }
    if rows.windows(2).any(|w| w[0].ts == w[1].ts) {
        f.push("derived events at equal ts");
    }
    if rows.len() >= 5 {
        f.push("five or more derived events");
    }
    for (i, (_, e)) in q.emit.iter().enumerate() {
        if rows.iter().any(|r| r.fields[i] == V::Null) {
            f.push(match e.ty() {
                Ty::Float => "null in an f64 field",
                _ => "null in an integer field",
            });
        }
    }
    if rows
        .iter()
        .flat_map(|r| &r.fields)
        .any(|v| matches!(v, V::F(x) if x.fract() != 0.0))
    {
        f.push("fractional value");
    }
    f
}

/// The generator reaches every feature within the default case budget, so a passing run means
/// something.
#[test]
fn generator_covers_every_feature() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(config());
    let mut seen = BTreeMap::new();
    for _ in 0..CASES {
        let (choices, raw, n_groups, t0) = inputs()
            .new_tree(&mut runner)
            .expect("strategy without filters")
            .current();
        let q = Gen {
            choices: &choices,
            at: 0,
        }
        .query();
        let events = make_events(&raw, q.two_types, n_groups, t0);
        for f in features(&q, &events) {
            *seen.entry(f).or_insert(0) += 1;
        }
    }
    let want = [
        "tumbling",
        "sliding, several windows per event",
        "sliding, one window per event",
        "session",
        "having",
        "having drops a window",
        "one ema in having and emit",
        "ema over several windows",
        "where drops an event",
        "group by sym",
        "group by int",
        "two types",
        "negative times",
        "derived events at equal ts",
        "five or more derived events",
        "null in an f64 field",
        "null in an integer field",
        "fractional value",
    ];
    let missing: Vec<_> = want.iter().filter(|f| !seen.contains_key(*f)).collect();
    assert!(
        missing.is_empty(),
        "never generated: {missing:?} (seen: {seen:?})"
    );
}
