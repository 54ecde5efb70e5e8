//! A naive backtracking matcher that follows the semantic definitions of `docs/language.md`
//! (contiguity, quantifiers, groups, alternation, negation, `within`, selection and after-match
//! strategies) without an automaton, plus a random rule generator for the property test.
//!
//! Input: a [`Rule`] (this module's own small syntax tree) and a list of [`Ev`]s.
//! Output: the expected signals as seq lists ([`expected`]), and the rule as `.cep` text
//! ([`Rule::text`]) for the real parser, compiler and reference matcher. Next stage: the
//! comparison in `tests/property.rs`.
//!
//! The enumerator walks the pattern tree by recursive descent with explicit continuations. At
//! every choice it tries the options in preference order (take an event before skipping it,
//! greedy: one more repetition before leaving, reluctant: the reverse, left alternative first),
//! so the matches of one start event come out in preference order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Event type names of the generated tapes; rules test the first three, `D` is noise (and
/// invisible to rules with `from A, B, C`).
pub const TYPES: [&str; 4] = ["A", "B", "C", "D"];

/// Declarations shared by every generated rule.
pub const DECLS: &str = "event A { k: i64, v: i64 }\nevent B { k: i64, v: i64 }\n\
                         event C { k: i64, v: i64 }\nevent D { k: i64, v: i64 }\n";

/// One event of a generated tape: type index into [`TYPES`], partition key, value, time in s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ev {
    pub ty: u8,
    pub k: i64,
    pub v: i64,
    pub ts: i64,
}

/// Events in the corpus notation (`A k=0 v=1 @0s; ...`).
pub fn events_text(events: &[Ev]) -> String {
    events
        .iter()
        .map(|e| format!("{} k={} v={} @{}s", TYPES[e.ty as usize], e.k, e.v, e.ts))
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contig {
    Strict,
    Relaxed,
    Any,
}

impl Contig {
    fn op(self) -> &'static str {
        match self {
            Contig::Strict => " ",
            Contig::Relaxed => " -> ",
            Contig::Any => " ->> ",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quant {
    pub min: u32,
    pub max: Option<u32>,
    pub greedy: bool,
}

impl Quant {
    pub const ONE: Quant = Quant {
        min: 1,
        max: Some(1),
        greedy: true,
    };

    fn text(self) -> String {
        let mut s = match (self.min, self.max) {
            (1, Some(1)) => return String::new(),
            (0, Some(1)) => "?".to_string(),
            (0, None) => "*".to_string(),
            (1, None) => "+".to_string(),
            (n, None) => format!("{{{n},}}"),
            (n, Some(m)) if n == m => format!("{{{n}}}"),
            (n, Some(m)) => format!("{{{n},{m}}}"),
        };
        if !self.greedy {
            s.push('?');
        }
        s
    }
}

/// A pattern tree. Variables are indices into [`Rule::vars`].
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Var {
        var: usize,
        q: Quant,
    },
    Group {
        body: Box<Node>,
        q: Quant,
    },
    /// `ops[i]` is the operator written before `items[i + 1]`.
    Seq {
        items: Vec<Node>,
        ops: Vec<Contig>,
    },
    Alt(Vec<Node>),
    /// `!x`: only in the top-level sequence, never first.
    Neg {
        var: usize,
    },
}

impl Node {
    fn text(&self, vars: &[VarDef], top: bool) -> String {
        match self {
            Node::Var { var, q } => format!("{}{}", vars[*var].name, q.text()),
            Node::Neg { var } => format!("!{}", vars[*var].name),
            Node::Group { body, q } => match &**body {
                Node::Alt(_) => format!("{}{}", body.text(vars, false), q.text()),
                _ => format!("({}){}", body.text(vars, false), q.text()),
            },
            Node::Seq { items, ops } => {
                let mut s = items[0].text(vars, false);
                for (op, it) in ops.iter().zip(&items[1..]) {
                    s.push_str(op.op());
                    s.push_str(&it.text(vars, false));
                }
                s
            }
            Node::Alt(alts) => {
                let inner = alts
                    .iter()
                    .map(|a| a.text(vars, false))
                    .collect::<Vec<_>>()
                    .join(" | ");
                if top { inner } else { format!("({inner})") }
            }
        }
    }

    /// Fewest events the node can take.
    fn min_len(&self) -> u32 {
        match self {
            Node::Var { q, .. } => q.min,
            Node::Group { body, q } => q.min * body.min_len(),
            Node::Seq { items, .. } => items.iter().map(Node::min_len).sum(),
            Node::Alt(alts) => alts.iter().map(Node::min_len).min().unwrap_or(0),
            Node::Neg { .. } => 0,
        }
    }

    fn quant(&self) -> Quant {
        match self {
            Node::Var { q, .. } | Node::Group { q, .. } => *q,
            _ => Quant::ONE,
        }
    }

    /// Variables in textual order.
    fn walk_vars(&self, out: &mut Vec<usize>) {
        match self {
            Node::Var { var, .. } | Node::Neg { var } => out.push(*var),
            Node::Group { body, .. } => body.walk_vars(out),
            Node::Seq { items, .. } | Node::Alt(items) => {
                items.iter().for_each(|i| i.walk_vars(out))
            }
        }
    }

    fn uses_new_constructs(&self) -> bool {
        match self {
            Node::Var { .. } => false,
            Node::Seq { items, .. } => items.iter().any(Node::uses_new_constructs),
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    const ALL: [CmpOp; 6] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];

    fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// A value in a condition; `None` is Null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// `v` of the current event.
    V,
    Const(i64),
    /// `first(x).v`
    First(usize),
    /// `last(x).v`
    Last(usize),
    /// `count(x)`
    Count(usize),
}

/// A condition over the current event and the events bound so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    True,
    /// `A or B ...`: the event's type is one of these.
    Type(Vec<u8>),
    Cmp(Operand, CmpOp, Operand),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    fn text(&self, vars: &[VarDef]) -> String {
        let operand = |o: &Operand| match o {
            Operand::V => "v".to_string(),
            Operand::Const(c) => c.to_string(),
            Operand::First(x) => format!("first({}).v", vars[*x].name),
            Operand::Last(x) => format!("last({}).v", vars[*x].name),
            Operand::Count(x) => format!("count({})", vars[*x].name),
        };
        match self {
            Cond::True => "true".into(),
            Cond::Type(ts) => {
                let names: Vec<_> = ts.iter().map(|t| TYPES[*t as usize]).collect();
                if names.len() == 1 {
                    names[0].to_string()
                } else {
                    format!("({})", names.join(" or "))
                }
            }
            Cond::Cmp(a, op, b) => format!("{} {} {}", operand(a), op.text(), operand(b)),
            Cond::And(a, b) => format!("{} and {}", a.text_paren(vars), b.text_paren(vars)),
            Cond::Or(a, b) => format!("({} or {})", a.text_paren(vars), b.text_paren(vars)),
            Cond::Not(a) => format!("not ({})", a.text(vars)),
        }
    }

    fn text_paren(&self, vars: &[VarDef]) -> String {
        match self {
            Cond::And(..) => format!("({})", self.text(vars)),
            _ => self.text(vars),
        }
    }

    /// Evaluates the condition for event `cur` with `bound` (variable, event) pairs taken so far.
    fn eval(&self, cur: &Ev, bound: &[(usize, usize)], evs: &[PEv]) -> bool {
        let value = |o: &Operand| -> Option<i64> {
            match *o {
                Operand::V => Some(cur.v),
                Operand::Const(c) => Some(c),
                Operand::First(x) => bound.iter().find(|b| b.0 == x).map(|b| evs[b.1].ev.v),
                Operand::Last(x) => bound.iter().rev().find(|b| b.0 == x).map(|b| evs[b.1].ev.v),
                Operand::Count(x) => Some(bound.iter().filter(|b| b.0 == x).count() as i64),
            }
        };
        match self {
            Cond::True => true,
            Cond::Type(ts) => ts.contains(&cur.ty),
            // A comparison with Null is false.
            Cond::Cmp(a, op, b) => match (value(a), value(b)) {
                (Some(x), Some(y)) => op.holds(x, y),
                _ => false,
            },
            Cond::And(a, b) => a.eval(cur, bound, evs) && b.eval(cur, bound, evs),
            Cond::Or(a, b) => a.eval(cur, bound, evs) || b.eval(cur, bound, evs),
            Cond::Not(a) => !a.eval(cur, bound, evs),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VarDef {
    pub name: String,
    pub cond: Cond,
    pub negated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterMatch {
    NoSkip,
    ToNext,
    PastLast,
    ToFirst(usize),
    ToLast(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub pattern: Node,
    pub vars: Vec<VarDef>,
    /// `from A, B, C` (events of type `D` are invisible).
    pub from_abc: bool,
    /// `partition by k`.
    pub partitioned: bool,
    /// `within` in seconds.
    pub within: Option<i64>,
    pub select_all: bool,
    pub skip: AfterMatch,
}

impl Rule {
    /// The rule as `.cep` text (without the declarations).
    pub fn text(&self) -> String {
        let mut s = String::from("rule r");
        if self.from_abc {
            s.push_str(" from A, B, C");
        }
        if self.partitioned {
            s.push_str(" partition by k");
        }
        let _ = write!(s, " pattern {}", self.pattern.text(&self.vars, true));
        let defs: Vec<String> = self
            .vars
            .iter()
            .filter(|v| v.cond != Cond::True)
            .map(|v| format!("{} as {}", v.name, v.cond.text(&self.vars)))
            .collect();
        if !defs.is_empty() {
            let _ = write!(s, " define {}", defs.join(", "));
        }
        if let Some(w) = self.within {
            let _ = write!(s, " within {w}s");
        }
        s.push_str(if self.select_all {
            " select all"
        } else {
            " select first"
        });
        let name = |v: usize| &self.vars[v].name;
        s.push_str(&match self.skip {
            AfterMatch::NoSkip => " after match no skip".to_string(),
            AfterMatch::ToNext => " after match skip to next".to_string(),
            AfterMatch::PastLast => " after match skip past last".to_string(),
            AfterMatch::ToFirst(v) => format!(" after match skip to first {}", name(v)),
            AfterMatch::ToLast(v) => format!(" after match skip to last {}", name(v)),
        });
        s
    }

    pub fn uses_new_constructs(&self) -> bool {
        self.pattern.uses_new_constructs()
    }

    fn reads(&self, e: &Ev) -> bool {
        !self.from_abc || e.ty < 3
    }
}

// ---------------------------------------------------------------------------------------------
// The enumerator.

/// An event of one partition: the event and its tape seq.
#[derive(Debug, Clone, Copy)]
pub struct PEv {
    pub seq: u64,
    pub ev: Ev,
}

/// A complete match of one start event: bound (variable, partition index) pairs, and for a
/// trailing absence the deadline (s) at which it completes.
#[derive(Debug, Clone)]
pub struct Found {
    pub binds: Vec<(usize, usize)>,
    pub deadline: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct PendingNeg {
    var: usize,
    strict: bool,
    /// Partition index of the last event taken before the negation.
    after: usize,
}

#[derive(Default)]
struct St {
    binds: Vec<(usize, usize)>,
    neg: Option<PendingNeg>,
}

/// What is left to match after the current node.
enum K<'b> {
    Done,
    /// `node` (a variable or group) has matched `count` times, each entered with `entry`.
    Rep {
        node: &'b Node,
        count: u32,
        entry: Contig,
        next: &'b K<'b>,
    },
    /// Items `idx..` of a sequence.
    Seq {
        items: &'b [Node],
        ops: &'b [Contig],
        idx: usize,
        next: &'b K<'b>,
    },
}

struct Cx<'r> {
    rule: &'r Rule,
    evs: &'r [PEv],
    start: usize,
    out: Vec<Found>,
}

impl Cx<'_> {
    fn fits(&self, var: usize, j: usize, binds: &[(usize, usize)]) -> bool {
        self.rule.vars[var]
            .cond
            .eval(&self.evs[j].ev, binds, self.evs)
    }

    fn go<'b>(&mut self, node: &'b Node, entry: Contig, st: &mut St, k: &K<'b>) {
        match node {
            Node::Var { .. } | Node::Group { .. } => self.cont(
                st,
                &K::Rep {
                    node,
                    count: 0,
                    entry,
                    next: k,
                },
            ),
            Node::Seq { items, ops } => self.go(
                &items[0],
                entry,
                st,
                &K::Seq {
                    items,
                    ops,
                    idx: 1,
                    next: k,
                },
            ),
            Node::Alt(alts) => {
                for a in alts {
                    self.go(a, entry, st, k);
                }
            }
            Node::Neg { var } => {
                let Some(&(_, after)) = st.binds.last() else {
                    return; // a negation is never first
                };
                let saved = st.neg.replace(PendingNeg {
                    var: *var,
                    strict: entry == Contig::Strict,
                    after,
                });
                self.cont(st, k);
                st.neg = saved;
            }
        }
    }

    fn cont<'b>(&mut self, st: &mut St, k: &K<'b>) {
        match *k {
            K::Done => self.accept(st),
            K::Seq {
                items,
                ops,
                idx,
                next,
            } => {
                if idx == items.len() {
                    self.cont(st, next);
                } else {
                    self.go(
                        &items[idx],
                        ops[idx - 1],
                        st,
                        &K::Seq {
                            items,
                            ops,
                            idx: idx + 1,
                            next,
                        },
                    );
                }
            }
            K::Rep {
                node,
                count,
                entry,
                next,
            } => {
                let q = node.quant();
                let may_repeat = q.max.is_none_or(|m| count < m);
                let may_leave = count >= q.min;
                let order = if q.greedy {
                    [true, false]
                } else {
                    [false, true]
                };
                for repeat in order {
                    if repeat && may_repeat {
                        let more = K::Rep {
                            node,
                            count: count + 1,
                            entry,
                            next,
                        };
                        match node {
                            Node::Var { var, .. } => self.take(*var, entry, st, &more),
                            Node::Group { body, .. } => self.go(body, entry, st, &more),
                            _ => unreachable!("only variables and groups repeat"),
                        }
                    } else if !repeat && may_leave {
                        self.cont(st, next);
                    }
                }
            }
        }
    }

    /// Takes one event for `var` under contiguity `c` (relative to the last taken event), in
    /// preference order: earlier events first.
    fn take<'b>(&mut self, var: usize, c: Contig, st: &mut St, k: &K<'b>) {
        let n = self.evs.len();
        let candidates: Vec<usize> = match st.binds.last() {
            // Nothing taken yet: only the start event.
            None => vec![self.start]
                .into_iter()
                .filter(|&j| self.fits(var, j, &st.binds))
                .collect(),
            Some(&(_, last)) => match c {
                Contig::Strict => (last + 1..n)
                    .take(1)
                    .filter(|&j| self.fits(var, j, &st.binds))
                    .collect(),
                Contig::Relaxed => (last + 1..n)
                    .find(|&j| self.fits(var, j, &st.binds))
                    .into_iter()
                    .collect(),
                Contig::Any => (last + 1..n)
                    .filter(|&j| self.fits(var, j, &st.binds))
                    .collect(),
            },
        };
        for j in candidates {
            if let Some(w) = self.rule.within
                && self.evs[j].ev.ts - self.evs[self.start].ev.ts > w
            {
                continue;
            }
            if let Some(neg) = st.neg {
                let violated = if neg.strict {
                    j != neg.after + 1 && self.fits(neg.var, neg.after + 1, &st.binds)
                } else {
                    (neg.after + 1..j).any(|i| self.fits(neg.var, i, &st.binds))
                };
                if violated {
                    continue;
                }
            }
            let saved = st.neg.take();
            st.binds.push((var, j));
            self.cont(st, k);
            st.binds.pop();
            st.neg = saved;
        }
    }

    fn accept(&mut self, st: &St) {
        if st.binds.is_empty() {
            return;
        }
        let mut deadline = None;
        if let Some(neg) = st.neg {
            // Trailing absence: no event satisfying the negated variable after the last taken
            // event up to the deadline (inclusive).
            let Some(w) = self.rule.within else { return };
            let d = self.evs[self.start].ev.ts + w;
            let violated = (neg.after + 1..self.evs.len())
                .take_while(|&i| self.evs[i].ev.ts <= d)
                .any(|i| self.fits(neg.var, i, &st.binds));
            if violated {
                return;
            }
            deadline = Some(d);
        }
        self.out.push(Found {
            binds: st.binds.clone(),
            deadline,
        });
    }
}

/// Every match starting at partition index `start`, in preference order.
pub fn matches_from(rule: &Rule, evs: &[PEv], start: usize) -> Vec<Found> {
    let mut cx = Cx {
        rule,
        evs,
        start,
        out: Vec::new(),
    };
    // The first element's loop repeats with the operator written after it (strict if alone).
    let entry = match &rule.pattern {
        Node::Seq { ops, .. } => ops.first().copied().unwrap_or(Contig::Strict),
        _ => Contig::Strict,
    };
    cx.go(&rule.pattern, entry, &mut St::default(), &K::Done);
    cx.out
}

/// Partition index range the after-match strategy skips after match `m`: starts in
/// `first..end` are dropped (`None`: nothing).
fn skip_range(skip: AfterMatch, m: &Found) -> Option<(usize, usize)> {
    let first = m.binds[0].1;
    let last = m.binds.last().map_or(first, |b| b.1);
    let bound = |v: usize, pick_last: bool| {
        let mut it = m.binds.iter().filter(|b| b.0 == v).map(|b| b.1);
        if pick_last { it.next_back() } else { it.next() }
    };
    match skip {
        AfterMatch::NoSkip => None,
        AfterMatch::ToNext => Some((first, first + 1)),
        AfterMatch::PastLast => Some((first, last + 1)),
        AfterMatch::ToFirst(v) => bound(v, false).map(|p| (first, p)),
        AfterMatch::ToLast(v) => bound(v, true).map(|p| (first, p)),
    }
}

/// The events of each partition the rule reads, partitions in order of first appearance.
pub fn partitions(rule: &Rule, events: &[Ev]) -> Vec<(i64, Vec<PEv>)> {
    let mut parts: Vec<(i64, Vec<PEv>)> = Vec::new();
    for (seq, e) in events.iter().enumerate() {
        if !rule.reads(e) {
            continue;
        }
        let key = if rule.partitioned { e.k } else { 0 };
        let pe = PEv {
            seq: seq as u64,
            ev: *e,
        };
        match parts.iter_mut().find(|p| p.0 == key) {
            Some(p) => p.1.push(pe),
            None => parts.push((key, vec![pe])),
        }
    }
    parts
}

fn seqs(evs: &[PEv], m: &Found) -> Vec<u64> {
    m.binds.iter().map(|b| evs[b.1].seq).collect()
}

/// `select all` (FlinkCEP): every match, in emission order over the whole tape.
///
/// A match completed by an event is emitted at that event; one completed by a trailing absence
/// is emitted by the watermark that passes its deadline, i.e. just before the first event (of
/// any type) later than the deadline, or at the end of the stream; ties by deadline, partition
/// first appearance, start, preference. After a match, later matches of its partition whose
/// start lies in its skip range are dropped.
pub fn expected_select_all(rule: &Rule, events: &[Ev]) -> Vec<Vec<u64>> {
    struct Item {
        key: (usize, i64, usize, usize, usize),
        part: usize,
        start: usize,
        m: Found,
    }
    let parts = partitions(rule, events);
    let mut items = Vec::new();
    for (pi, (_, evs)) in parts.iter().enumerate() {
        for s in 0..evs.len() {
            for (pref, m) in matches_from(rule, evs, s).into_iter().enumerate() {
                let (point, dl) = match m.deadline {
                    None => {
                        let last = m.binds.last().map_or(s, |b| b.1);
                        (2 * evs[last].seq as usize + 1, 0)
                    }
                    Some(d) => {
                        let before = events.iter().position(|e| e.ts > d).unwrap_or(events.len());
                        (2 * before, d)
                    }
                };
                items.push(Item {
                    key: (point, dl, pi, s, pref),
                    part: pi,
                    start: s,
                    m,
                });
            }
        }
    }
    items.sort_by_key(|i| i.key);
    let mut dropped = vec![false; items.len()];
    let mut out = Vec::new();
    for i in 0..items.len() {
        if dropped[i] {
            continue;
        }
        let it = &items[i];
        out.push(seqs(&parts[it.part].1, &it.m));
        if let Some((lo, hi)) = skip_range(rule.skip, &it.m) {
            for j in i + 1..items.len() {
                if items[j].part == it.part && (lo..hi).contains(&items[j].start) {
                    dropped[j] = true;
                }
            }
        }
    }
    out
}

/// `select first` (SQL:2016), per partition key: walk start events in order; a start's preferred
/// match (the first valid one in preference order) is reported, then the strategy says where the
/// next start is (at least one event later); starts without a match are passed over.
pub fn expected_select_first(rule: &Rule, events: &[Ev]) -> BTreeMap<i64, Vec<Vec<u64>>> {
    let mut out = BTreeMap::new();
    for (key, evs) in partitions(rule, events) {
        let mut list = Vec::new();
        let mut s = 0;
        while s < evs.len() {
            let Some(m) = matches_from(rule, &evs, s).into_iter().next() else {
                s += 1;
                continue;
            };
            list.push(seqs(&evs, &m));
            s = skip_range(rule.skip, &m).map_or(s + 1, |(_, hi)| hi.max(s + 1));
        }
        if !list.is_empty() {
            out.insert(key, list);
        }
    }
    out
}

/// Per partition key and start seq: the preferred match of that start (whether or not another
/// match's skip would drop the start).
pub fn preferred_per_start(rule: &Rule, events: &[Ev]) -> BTreeMap<(i64, u64), Vec<u64>> {
    let mut out = BTreeMap::new();
    for (key, evs) in partitions(rule, events) {
        for s in 0..evs.len() {
            if let Some(m) = matches_from(rule, &evs, s).into_iter().next() {
                out.insert((key, evs[s].seq), seqs(&evs, &m));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The generator: a rule from a list of choices. Every choice read past the end of the list is 0,
// and 0 always picks the simplest option, so shrinking the list shrinks the rule.

pub struct Gen<'a> {
    bytes: &'a [u8],
    pos: usize,
    new_constructs: bool,
    vars: Vec<VarDef>,
}

/// Variable names (single letters, not the fields `k` and `v` nor the rule's name `r`).
const NAMES: [&str; 20] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "l", "m", "n", "o", "p", "q", "s", "t", "u",
    "x",
];

impl<'a> Gen<'a> {
    pub fn new(bytes: &'a [u8], new_constructs: bool) -> Self {
        Self {
            bytes,
            pos: 0,
            new_constructs,
            vars: Vec::new(),
        }
    }

    fn pick(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b as usize % n
    }

    /// True with about `percent`% probability; false on a 0 choice.
    fn flag(&mut self, percent: usize) -> bool {
        self.pick(100) >= 100 - percent
    }

    fn contig(&mut self) -> Contig {
        [Contig::Strict, Contig::Relaxed, Contig::Any][self.pick(3)]
    }

    fn quant(&mut self) -> Quant {
        let (min, max) = match self.pick(7) {
            0 => return Quant::ONE,
            1 => (0, Some(1)),
            2 => (0, None),
            3 => (1, None),
            4 => {
                let n = 1 + self.pick(3) as u32;
                (n, Some(n))
            }
            5 => (self.pick(3) as u32, None),
            _ => {
                let n = self.pick(3) as u32;
                (n, Some(n.max(1) + self.pick(2) as u32))
            }
        };
        Quant {
            min,
            max,
            greedy: !self.flag(40),
        }
    }

    fn new_var(&mut self, negated: bool) -> usize {
        let i = self.vars.len();
        self.vars.push(VarDef {
            name: NAMES
                .get(i)
                .map_or_else(|| format!("w{i}"), |n| n.to_string()),
            cond: Cond::True,
            negated,
        });
        i
    }

    fn var_node(&mut self, loops_ok: bool) -> Node {
        let mut q = self.quant();
        if !loops_ok {
            q = no_loop(q);
        }
        Node::Var {
            var: self.new_var(false),
            q,
        }
    }

    pub fn rule(mut self) -> Rule {
        let select_all = self.flag(50);
        let partitioned = self.flag(40);
        let from_abc = self.flag(25);
        let within = self.flag(45).then(|| 1 + self.pick(4) as i64);
        let pattern = if self.new_constructs {
            self.new_top(within.is_some())
        } else {
            let n = 1 + self.pick(4);
            let mut items: Vec<Node> = (0..n).map(|_| self.var_node(true)).collect();
            let ops = (1..n).map(|_| self.contig()).collect();
            if items.iter().all(|i| i.min_len() == 0) {
                make_nonempty(&mut items[n - 1]);
            }
            Node::Seq { items, ops }
        };
        let mut order = Vec::new();
        pattern.walk_vars(&mut order);
        for (pos, &v) in order.iter().enumerate() {
            // A condition may refer to variables written before it (and to itself).
            let visible: Vec<usize> = order[..=pos]
                .iter()
                .copied()
                .filter(|&x| !self.vars[x].negated)
                .collect();
            self.vars[v].cond = self.cond(&visible);
        }
        let bound: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&x| !self.vars[x].negated)
            .collect();
        let skip = match self.pick(5) {
            0 => AfterMatch::PastLast,
            1 => AfterMatch::NoSkip,
            2 => AfterMatch::ToNext,
            3 => AfterMatch::ToFirst(bound[self.pick(bound.len())]),
            _ => AfterMatch::ToLast(bound[self.pick(bound.len())]),
        };
        Rule {
            pattern,
            vars: self.vars,
            from_abc,
            partitioned,
            within,
            select_all,
            skip,
        }
    }

    fn operand_ref(&mut self, visible: &[usize]) -> Operand {
        let x = visible[self.pick(visible.len())];
        if self.flag(50) {
            Operand::Last(x)
        } else {
            Operand::First(x)
        }
    }

    fn cmp_const(&mut self) -> Cond {
        let op = CmpOp::ALL[self.pick(6)];
        Cond::Cmp(Operand::V, op, Operand::Const(self.pick(4) as i64))
    }

    fn cond(&mut self, visible: &[usize]) -> Cond {
        let ty = match self.pick(5) {
            0 => None,
            1..=3 => Some(Cond::Type(vec![self.pick(3) as u8])),
            _ => {
                let a = self.pick(3) as u8;
                Some(Cond::Type(vec![a, (a + 1 + self.pick(2) as u8) % 3]))
            }
        };
        let value = match self.pick(7) {
            0 | 1 => None,
            2 => Some(self.cmp_const()),
            3 if !visible.is_empty() => {
                let op = CmpOp::ALL[self.pick(6)];
                Some(Cond::Cmp(Operand::V, op, self.operand_ref(visible)))
            }
            4 if !visible.is_empty() => {
                let x = visible[self.pick(visible.len())];
                let op = [CmpOp::Lt, CmpOp::Le, CmpOp::Eq][self.pick(3)];
                Some(Cond::Cmp(
                    Operand::Count(x),
                    op,
                    Operand::Const(self.pick(3) as i64),
                ))
            }
            5 => Some(Cond::Not(Box::new(self.cmp_const()))),
            _ => Some(Cond::Or(
                Box::new(self.cmp_const()),
                Box::new(self.cmp_const()),
            )),
        };
        match (ty, value) {
            (None, None) => Cond::True,
            (Some(c), None) | (None, Some(c)) => c,
            (Some(t), Some(v)) => Cond::And(Box::new(t), Box::new(v)),
        }
    }

    // --- groups, alternation, negation ---

    fn new_top(&mut self, has_within: bool) -> Node {
        if self.flag(20) {
            // Top-level alternation: no loop at the start of an alternative (where no operator
            // is written before it), no negation.
            let n = 2 + self.pick(2);
            let alts = (0..n).map(|_| self.seq(1, true, false, 2)).collect();
            return Node::Alt(alts);
        }
        let Node::Seq { mut items, mut ops } = self.seq(0, true, true, 3) else {
            unreachable!("seq returns a sequence")
        };
        let mandatory_var = |n: &Node| matches!(n, Node::Var { q, .. } if q.min >= 1);
        if self.flag(30) {
            let spots: Vec<usize> = (1..items.len())
                .filter(|&i| mandatory_var(&items[i - 1]) && mandatory_var(&items[i]))
                .collect();
            if !spots.is_empty() {
                let i = spots[self.pick(spots.len())];
                let before = self.contig();
                let var = self.new_var(true);
                items.insert(i, Node::Neg { var });
                ops.insert(i - 1, before);
            }
        }
        if has_within && self.flag(30) && items.last().is_some_and(mandatory_var) {
            let op = [Contig::Relaxed, Contig::Any][self.pick(2)];
            let var = self.new_var(true);
            items.push(Node::Neg { var });
            ops.push(op);
        }
        Node::Seq { items, ops }
    }

    /// A sequence of 1..=`max_len` items. `at_start`: its first item has no operator written
    /// before it; `first_loops_ok`: that item may still loop (the pattern's first element).
    fn seq(&mut self, depth: u32, at_start: bool, first_loops_ok: bool, max_len: usize) -> Node {
        let n = 1 + self.pick(max_len);
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            let start = at_start && i == 0;
            items.push(self.item(depth, start, !start || first_loops_ok));
        }
        let ops = (1..n).map(|_| self.contig()).collect();
        let mut node = Node::Seq { items, ops };
        if node.min_len() == 0 {
            make_nonempty(&mut node);
        }
        node
    }

    fn item(&mut self, depth: u32, at_start: bool, loops_ok: bool) -> Node {
        if depth >= 2 || !self.flag(30) {
            return self.var_node(loops_ok);
        }
        // Inside the group, the first item is at the start if the group is.
        let body = if self.flag(40) {
            let n = 2 + self.pick(2);
            Node::Alt(
                (0..n)
                    .map(|_| self.seq(depth + 1, at_start, false, 2))
                    .collect(),
            )
        } else {
            self.seq(depth + 1, at_start, false, 2)
        };
        let mut q = self.quant();
        // Repetitions must split a run of events in one way only: each alternative of a
        // repeated body holds a variable taken exactly once.
        if !loops_ok || !unambiguous_body(&body) {
            q = no_loop(q);
        }
        Node::Group {
            body: Box::new(body),
            q,
        }
    }
}

fn no_loop(q: Quant) -> Quant {
    Quant {
        min: q.min.min(1),
        max: Some(1),
        greedy: q.greedy,
    }
}

fn unambiguous_body(body: &Node) -> bool {
    let single = |n: &Node| matches!(n, Node::Var { q, .. } if q.min == 1 && q.max == Some(1));
    let alt_ok = |n: &Node| match n {
        Node::Seq { items, .. } => items.iter().any(single),
        other => single(other),
    };
    match body {
        Node::Alt(alts) => alts.iter().all(alt_ok),
        other => alt_ok(other),
    }
}

/// Makes `node` take at least one event.
fn make_nonempty(node: &mut Node) {
    match node {
        Node::Var { q, .. } => q.min = q.min.max(1),
        Node::Group { body, q } => {
            q.min = q.min.max(1);
            make_nonempty(body);
        }
        Node::Seq { items, .. } => {
            if node_min_len_is_zero(items)
                && let Some(first) = items.iter_mut().find(|i| !matches!(i, Node::Neg { .. }))
            {
                make_nonempty(first);
            }
        }
        Node::Alt(alts) => alts.iter_mut().for_each(make_nonempty),
        Node::Neg { .. } => {}
    }
}

fn node_min_len_is_zero(items: &[Node]) -> bool {
    items.iter().map(Node::min_len).sum::<u32>() == 0
}

/// Names of the constructs a rule uses (to check that the generator reaches every one).
pub fn features(rule: &Rule) -> std::collections::BTreeSet<String> {
    fn quant_name(q: Quant) -> String {
        let shape = match (q.min, q.max) {
            (1, Some(1)) => return "one".into(),
            (0, Some(1)) => "?",
            (0, None) => "*",
            (1, None) => "+",
            (_, None) => "{n,}",
            (n, Some(m)) if n == m => "{n}",
            _ => "{n,m}",
        };
        format!("{shape}{}", if q.greedy { "" } else { " reluctant" })
    }
    fn node(n: &Node, top: bool, out: &mut std::collections::BTreeSet<String>) {
        match n {
            Node::Var { q, .. } => {
                out.insert(format!("var {}", quant_name(*q)));
            }
            Node::Group { body, q } => {
                out.insert(format!("group {}", quant_name(*q)));
                if matches!(**body, Node::Alt(_)) {
                    out.insert("alternation in a group".into());
                }
                node(body, false, out);
            }
            Node::Seq { items, ops } => {
                for (i, it) in items.iter().enumerate() {
                    if let Node::Neg { .. } = it {
                        let before = ops[i - 1];
                        out.insert(if i + 1 == items.len() {
                            format!("trailing absence {before:?}")
                        } else {
                            format!("negation {before:?}")
                        });
                    }
                    node(it, false, out);
                }
                for op in ops {
                    out.insert(format!("contiguity {op:?}"));
                }
            }
            Node::Alt(alts) => {
                if top {
                    out.insert("top-level alternation".into());
                }
                alts.iter().for_each(|a| node(a, false, out));
            }
            Node::Neg { .. } => {}
        }
    }
    fn cond(c: &Cond, out: &mut std::collections::BTreeSet<String>) {
        match c {
            Cond::True => {
                out.insert("undefined variable".into());
            }
            Cond::Type(ts) => {
                out.insert(format!("type test of {}", ts.len()));
            }
            Cond::Cmp(a, _, b) => {
                for o in [a, b] {
                    out.insert(
                        match o {
                            Operand::V | Operand::Const(_) => "compare v",
                            Operand::First(_) => "first(x).v",
                            Operand::Last(_) => "last(x).v",
                            Operand::Count(_) => "count(x)",
                        }
                        .into(),
                    );
                }
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                out.insert(
                    if matches!(c, Cond::And(..)) {
                        "and"
                    } else {
                        "or"
                    }
                    .into(),
                );
                cond(a, out);
                cond(b, out);
            }
            Cond::Not(a) => {
                out.insert("not".into());
                cond(a, out);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    node(&rule.pattern, true, &mut out);
    rule.vars.iter().for_each(|v| cond(&v.cond, &mut out));
    out.insert(
        if rule.select_all {
            "select all"
        } else {
            "select first"
        }
        .into(),
    );
    out.insert(
        match rule.skip {
            AfterMatch::NoSkip => "no skip",
            AfterMatch::ToNext => "skip to next",
            AfterMatch::PastLast => "skip past last",
            AfterMatch::ToFirst(_) => "skip to first",
            AfterMatch::ToLast(_) => "skip to last",
        }
        .into(),
    );
    for (on, name) in [
        (rule.within.is_some(), "within"),
        (rule.partitioned, "partition by"),
        (rule.from_abc, "from"),
    ] {
        if on {
            out.insert(name.into());
        }
    }
    out
}
