//! The compiled automaton of one rule's pattern.
//!
//! Input: a pattern tree ([`PatternNode`]: variables with quantifiers, sequences with contiguity
//! operators, alternations, quantified groups and negations) and one condition per variable, given
//! to a [`Builder`]. Output: an immutable [`Nfa`] whose states each take one event for one
//! variable. Next stage: a matcher ([`crate::reference::ReferenceMatcher`]) runs it per partition.
//!
//! Shape: every state *takes* one event that satisfies its variable's condition, then continues
//! along an ordered list of [`Edge`]s to other states or to [`Target::Accept`]. Epsilon moves
//! (optional elements, alternatives, entering and leaving loops) are resolved at build time, so a
//! state's `next` already lists every state reachable without consuming an event, in preference
//! order (SQL:2016): the left alternative before the right one, greedy quantifiers "take another"
//! before "move on", reluctant ones the reverse. The same order is what `select first` picks.
//! Bounded quantifiers (of variables and groups) are unrolled into one copy per repetition.
//!
//! Each state carries the [`Contiguity`] that governs the events *before* it is taken: what a
//! partial match waiting in that state may skip. Negations do not become states: an edge that
//! crosses a negation `!x` carries a [`Guard`] that the matcher checks against the events the
//! partial match skips while it waits at the edge's target, so the same state entered along
//! another edge is not constrained. An edge to `Accept` that carries guards is a timed absence:
//! the match completes when `within` expires with no guarded event seen.

use std::fmt;

use thiserror::Error;

use crate::expr::{Expr, VarId};

/// Index of a state in [`Nfa::states`].
pub type StateId = u32;

/// Most states a pattern may compile to (bounded quantifiers are unrolled).
pub const MAX_STATES: usize = 4096;

/// What a waiting partial match may skip before its next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contiguity {
    /// Juxtaposition `a b`: the very next event of the partition must be taken.
    Strict,
    /// `a -> b` (skip-till-next-match): events that cannot be taken are skipped; an event that can
    /// be taken must be.
    Relaxed,
    /// `a ->> b` (skip-till-any-match): any event may be skipped, even one that could be taken.
    Any,
}

impl Contiguity {
    /// The operator as written between two elements (juxtaposition is a space).
    pub fn operator(self) -> &'static str {
        match self {
            Contiguity::Strict => " ",
            Contiguity::Relaxed => " -> ",
            Contiguity::Any => " ->> ",
        }
    }
}
/// Which matches a rule reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selection {
    /// `select all`: every match (FlinkCEP).
    All,
    /// `select first`: per start event, only the preferred match (SQL:2016 ONE ROW PER MATCH).
    First,
}

/// Where matching resumes after a match (SQL:2016 / FlinkCEP after-match skip strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AfterMatch {
    /// Keep every other partial match.
    NoSkip,
    /// Drop partial matches that started at the match's first event.
    ToNext,
    /// Drop partial matches that started at or after the match's first event (they overlap it).
    PastLast,
    /// Drop partial matches that started from the match's first event up to, excluding, the first
    /// event bound to the variable.
    ToFirst(VarId),
    /// As `ToFirst`, up to the last event bound to the variable.
    ToLast(VarId),
}

/// A quantifier: `{min, max}` repetitions, greedy or reluctant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantifier {
    /// Least repetitions.
    pub min: u32,
    /// Most repetitions; `None` = unbounded.
    pub max: Option<u32>,
    /// Greedy (prefer more) or reluctant (prefer fewer).
    pub greedy: bool,
}

impl Quantifier {
    /// Exactly one.
    pub const ONE: Self = Self {
        min: 1,
        max: Some(1),
        greedy: true,
    };
}

impl fmt::Display for Quantifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (1, Some(1)) => return Ok(()),
            (0, Some(1)) => write!(f, "?")?,
            (0, None) => write!(f, "*")?,
            (1, None) => write!(f, "+")?,
            (n, None) => write!(f, "{{{n},}}")?,
            (n, Some(m)) if n == m => write!(f, "{{{n}}}")?,
            (n, Some(m)) => write!(f, "{{{n},{m}}}")?,
        }
        if !self.greedy {
            write!(f, "?")?;
        }
        Ok(())
    }
}

/// Where an edge leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Another state.
    State(StateId),
    /// The match is complete (at once, or at the `within` deadline when the edge carries guards).
    Accept,
}

/// A negation `!x` that an edge crossed: events satisfying `var`'s condition must not be skipped
/// while the partial match waits at the edge's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guard {
    /// The negated variable (its condition is evaluated over the partial match's bindings).
    pub var: VarId,
    /// `a !x …` (juxtaposition before `!x`): only the first event after the last taken one is
    /// checked. Otherwise (`->` or `->>` before `!x`) every skipped event is.
    pub strict: bool,
}

/// One transition after a state takes an event (or from the start).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edge {
    /// Where it leads.
    pub target: Target,
    /// Negations crossed on the way, in pattern order (empty for most edges).
    pub guards: Vec<Guard>,
}

impl Edge {
    /// An edge without guards.
    pub fn to(target: Target) -> Self {
        Edge {
            target,
            guards: Vec::new(),
        }
    }

    /// True for an edge to `Accept` that waits for the `within` deadline (a trailing absence).
    pub fn is_absence(&self) -> bool {
        self.target == Target::Accept && !self.guards.is_empty()
    }
}

/// A pattern variable: its name and the condition an event must satisfy to bind to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Name as written in the pattern.
    pub name: String,
    /// Condition (already including any event-type test).
    pub condition: Expr,
}

/// One state: takes one event for `var`.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Variable bound by the taken event.
    pub var: VarId,
    /// 1-based repetition of the variable's own quantifier this state takes (the first looping
    /// repetition for loops).
    pub repetition: u32,
    /// True if the state loops on itself (an unbounded variable quantifier).
    pub looping: bool,
    /// What may be skipped while waiting here.
    pub contiguity: Contiguity,
    /// Edges after taking, in preference order.
    pub next: Vec<Edge>,
}

/// A pattern as a tree, as written (operators included), before compilation.
#[derive(Debug, Clone, PartialEq)]
pub enum PatternNode {
    /// A variable with a quantifier.
    Var {
        /// Variable.
        var: VarId,
        /// Repetitions.
        quantifier: Quantifier,
    },
    /// A parenthesized group with a quantifier: `(a b)+`, `(a | b){2}`.
    Group {
        /// What the group contains.
        body: Box<PatternNode>,
        /// Repetitions of the whole body.
        quantifier: Quantifier,
    },
    /// Elements one after the other, each with the operator written before it.
    Seq(Vec<Step>),
    /// Alternatives, most preferred first: `a | b c`.
    Alt(Vec<PatternNode>),
    /// `!x`: an element of a top-level sequence (not the first) that takes no event.
    Not(VarId),
}

/// One element of a [`PatternNode::Seq`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The operator written before the element (ignored for a sequence's first element).
    pub op: Contiguity,
    /// The element.
    pub node: PatternNode,
}

impl PatternNode {
    /// True if the node can match without taking any event.
    pub fn nullable(&self) -> bool {
        match self {
            PatternNode::Var { quantifier, .. } => quantifier.min == 0,
            PatternNode::Group { body, quantifier } => quantifier.min == 0 || body.nullable(),
            PatternNode::Seq(steps) => steps.iter().all(|s| s.node.nullable()),
            PatternNode::Alt(alts) => alts.iter().any(PatternNode::nullable),
            PatternNode::Not(_) => true,
        }
    }

    /// Calls `f` on every variable the node takes events for (not negated ones).
    pub fn for_each_var(&self, f: &mut impl FnMut(VarId, Quantifier)) {
        match self {
            PatternNode::Var { var, quantifier } => f(*var, *quantifier),
            PatternNode::Group { body, .. } => body.for_each_var(f),
            PatternNode::Seq(steps) => steps.iter().for_each(|s| s.node.for_each_var(f)),
            PatternNode::Alt(alts) => alts.iter().for_each(|a| a.for_each_var(f)),
            PatternNode::Not(_) => {}
        }
    }

    /// Calls `f` on every negated variable.
    pub fn for_each_negated(&self, f: &mut impl FnMut(VarId)) {
        match self {
            PatternNode::Var { .. } => {}
            PatternNode::Group { body, .. } => body.for_each_negated(f),
            PatternNode::Seq(steps) => steps.iter().for_each(|s| s.node.for_each_negated(f)),
            PatternNode::Alt(alts) => alts.iter().for_each(|a| a.for_each_negated(f)),
            PatternNode::Not(v) => f(*v),
        }
    }
}

/// Errors building an automaton.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildError {
    /// No elements.
    #[error("the pattern is empty")]
    Empty,
    /// Every element is optional.
    #[error("the pattern can match no events at all; make at least one element mandatory")]
    MatchesEmpty,
    /// A quantified group whose body can match no events.
    #[error("a quantified group must take at least one event per repetition")]
    GroupMatchesEmpty,
    /// Bad quantifier.
    #[error("quantifier of `{var}`: minimum {min} is larger than maximum {max}")]
    BadQuantifier {
        /// Variable name (or `(group)`).
        var: String,
        /// Minimum.
        min: u32,
        /// Maximum.
        max: u32,
    },
    /// `{0}` or `{0,0}`.
    #[error("quantifier of `{0}` allows zero repetitions only")]
    ZeroQuantifier(String),
    /// Unrolling too large.
    #[error("the pattern needs more than {MAX_STATES} states; use smaller bounded quantifiers")]
    TooManyStates,
    /// Unknown variable id.
    #[error("element refers to undeclared variable #{0}")]
    UnknownVar(VarId),
    /// Skip target is not a (non-negated) variable of the pattern.
    #[error("`after match` names variable #{0}, which is not in the pattern")]
    SkipVar(VarId),
    /// Negative or zero `within`.
    #[error("`within` must be positive")]
    BadWithin,
    /// A negation first in its sequence, or inside a group.
    #[error("a negation must follow another element of the top-level sequence")]
    MisplacedNegation,
    /// `a !x` at the end of the pattern.
    #[error("a pattern cannot end with a strict negation; use `-> !x` for an absence")]
    StrictTrailingNegation,
    /// A trailing absence without `within`.
    #[error("an absence at the end of the pattern needs `within`")]
    AbsenceWithoutWithin,
}

/// Builds an [`Nfa`] from variables and a pattern.
#[derive(Debug, Clone)]
pub struct Builder {
    vars: Vec<Variable>,
    steps: Vec<Step>,
    pattern: Option<PatternNode>,
    within: Option<i64>,
    selection: Selection,
    after_match: AfterMatch,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

/// Build-time graph: takes, epsilon splits (ordered), negation markers, accept.
#[derive(Debug, Clone)]
enum GNode {
    Take(StateId),
    Split(Vec<usize>),
    Guard(Guard, usize),
    Accept,
}

/// Compiles one copy of a repeated body: (graph, repetition, looping, continuation) -> entry.
type CopyBuilder<'a> = dyn FnMut(&mut Graph, u32, bool, usize) -> Result<usize, BuildError> + 'a;

struct Graph {
    nodes: Vec<GNode>,
    states: Vec<State>,
    /// Graph node each state continues at after taking.
    after: Vec<usize>,
}

impl Graph {
    fn node(&mut self, n: GNode) -> Result<usize, BuildError> {
        if self.nodes.len() >= MAX_STATES * 16 {
            return Err(BuildError::TooManyStates);
        }
        self.nodes.push(n);
        Ok(self.nodes.len() - 1)
    }

    fn hole(&mut self) -> Result<usize, BuildError> {
        self.node(GNode::Split(Vec::new()))
    }

    fn fill(&mut self, hole: usize, succ: Vec<usize>) {
        self.nodes[hole] = GNode::Split(succ);
    }

    /// Compiles `node` so that it continues at `cont`; returns its entry node. `eff` is the
    /// contiguity of the node's first taken event, `top` marks a top-level sequence (whose first
    /// element repeats with the operator written after it).
    fn compile(
        &mut self,
        node: &PatternNode,
        eff: Contiguity,
        top: bool,
        cont: usize,
    ) -> Result<usize, BuildError> {
        match node {
            PatternNode::Var { var, quantifier } => {
                let var = *var;
                let q = *quantifier;
                self.repeat(q, cont, &mut |g, rep, looping, after| {
                    if g.states.len() >= MAX_STATES {
                        return Err(BuildError::TooManyStates);
                    }
                    let id = g.states.len() as StateId;
                    g.states.push(State {
                        var,
                        repetition: rep,
                        looping,
                        contiguity: eff,
                        next: Vec::new(),
                    });
                    g.after.push(after);
                    g.node(GNode::Take(id))
                })
            }
            PatternNode::Group { body, quantifier } => {
                self.repeat(*quantifier, cont, &mut |g, _, _, after| {
                    g.compile(body, eff, false, after)
                })
            }
            PatternNode::Alt(alts) => {
                let mut entries = Vec::with_capacity(alts.len());
                for a in alts {
                    entries.push(self.compile(a, eff, top, cont)?);
                }
                self.node(GNode::Split(entries))
            }
            PatternNode::Not(_) => Err(BuildError::MisplacedNegation),
            PatternNode::Seq(steps) => {
                // Holes stand for the entries of later steps, so states are numbered left to right.
                let holes: Vec<usize> = (1..steps.len())
                    .map(|_| self.hole())
                    .collect::<Result<_, _>>()?;
                let mut entry = cont;
                for (i, s) in steps.iter().enumerate() {
                    let next = holes.get(i).copied().unwrap_or(cont);
                    let e = match &s.node {
                        PatternNode::Not(v) => self.node(GNode::Guard(
                            Guard {
                                var: *v,
                                strict: s.op == Contiguity::Strict,
                            },
                            next,
                        ))?,
                        n => {
                            let c = match i {
                                0 if top => steps.get(1).map_or(eff, |s| s.op),
                                0 => eff,
                                _ => s.op,
                            };
                            self.compile(n, c, false, next)?
                        }
                    };
                    if i == 0 {
                        entry = e;
                    } else {
                        self.fill(holes[i - 1], vec![e]);
                    }
                }
                Ok(entry)
            }
        }
    }

    /// Unrolls `q` repetitions of a body; `body(graph, repetition, looping, continuation)`
    /// compiles one copy and returns its entry.
    fn repeat(
        &mut self,
        q: Quantifier,
        cont: usize,
        body: &mut CopyBuilder<'_>,
    ) -> Result<usize, BuildError> {
        let copies = match q.max {
            Some(m) => m as usize,
            None => q.min.max(1) as usize,
        };
        if copies > MAX_STATES {
            return Err(BuildError::TooManyStates);
        }
        let mut after = Vec::with_capacity(copies);
        let mut entries = Vec::with_capacity(copies);
        for r in 0..copies {
            let hole = self.hole()?;
            let looping = q.max.is_none() && r + 1 == copies;
            entries.push(body(self, r as u32 + 1, looping, hole)?);
            after.push(hole);
        }
        for r in 0..copies {
            let taken = r as u32 + 1;
            let more = if q.max.is_none() && r + 1 == copies {
                Some(entries[r])
            } else {
                entries.get(r + 1).copied()
            };
            let succ = match more {
                Some(m) if taken >= q.min => prefer(q.greedy, m, cont),
                Some(m) => vec![m],
                None => vec![cont],
            };
            self.fill(after[r], succ);
        }
        if q.min == 0 {
            self.node(GNode::Split(prefer(q.greedy, entries[0], cont)))
        } else {
            Ok(entries[0])
        }
    }

    /// Every edge reachable from `from` without taking an event, in preference order; a target
    /// reached twice keeps its first (preferred) path.
    fn closure(&self, from: usize) -> Result<Vec<Edge>, BuildError> {
        let mut out: Vec<Edge> = Vec::new();
        let mut stack: Vec<(usize, Vec<Guard>)> = vec![(from, Vec::new())];
        let mut budget = self.nodes.len() * 8 + 64;
        while let Some((n, guards)) = stack.pop() {
            budget = budget.checked_sub(1).ok_or(BuildError::TooManyStates)?;
            let target = match &self.nodes[n] {
                GNode::Take(s) => Target::State(*s),
                GNode::Accept => Target::Accept,
                GNode::Guard(g, next) => {
                    let mut gs = guards;
                    gs.push(*g);
                    stack.push((*next, gs));
                    continue;
                }
                GNode::Split(succ) => {
                    for &s in succ.iter().rev() {
                        stack.push((s, guards.clone()));
                    }
                    continue;
                }
            };
            if !out.iter().any(|e| e.target == target) {
                out.push(Edge { target, guards });
            }
        }
        Ok(out)
    }
}

fn prefer(greedy: bool, more: usize, leave: usize) -> Vec<usize> {
    if greedy {
        vec![more, leave]
    } else {
        vec![leave, more]
    }
}

impl Builder {
    /// A builder with SQL:2016 defaults: `select first`, `after match skip past last`, no `within`.
    pub fn new() -> Self {
        Self {
            vars: Vec::new(),
            steps: Vec::new(),
            pattern: None,
            within: None,
            selection: Selection::First,
            after_match: AfterMatch::PastLast,
        }
    }

    /// Declares a variable; returns its id.
    pub fn var(&mut self, name: &str, condition: Expr) -> VarId {
        self.vars.push(Variable {
            name: name.into(),
            condition,
        });
        (self.vars.len() - 1) as VarId
    }

    /// Appends a variable to a top-level sequence, with the operator written before it (ignored
    /// for the first element, whose repetitions use the operator after it). Ignored once
    /// [`Builder::pattern`] has set a tree.
    pub fn element(
        &mut self,
        var: VarId,
        quantifier: Quantifier,
        contiguity: Contiguity,
    ) -> &mut Self {
        self.steps.push(Step {
            op: contiguity,
            node: PatternNode::Var { var, quantifier },
        });
        self
    }

    /// Sets the whole pattern tree.
    pub fn pattern(&mut self, pattern: PatternNode) -> &mut Self {
        self.pattern = Some(pattern);
        self
    }

    /// Sets the `within` bound in ns (last event time minus first event time must not exceed it).
    pub fn within(&mut self, ns: Option<i64>) -> &mut Self {
        self.within = ns;
        self
    }

    /// Sets the selection mode.
    pub fn selection(&mut self, s: Selection) -> &mut Self {
        self.selection = s;
        self
    }

    /// Sets the after-match skip strategy.
    pub fn after_match(&mut self, a: AfterMatch) -> &mut Self {
        self.after_match = a;
        self
    }

    /// Checks quantifiers, variables and negation placement.
    fn check(&self, node: &PatternNode, top_seq: bool) -> Result<(), BuildError> {
        let quant = |name: String, q: Quantifier| match q.max {
            Some(max) if max < q.min => Err(BuildError::BadQuantifier {
                var: name,
                min: q.min,
                max,
            }),
            Some(0) => Err(BuildError::ZeroQuantifier(name)),
            _ => Ok(()),
        };
        let name = |v: VarId| {
            self.vars
                .get(v as usize)
                .map(|x| x.name.clone())
                .ok_or(BuildError::UnknownVar(v))
        };
        match node {
            PatternNode::Var { var, quantifier } => quant(name(*var)?, *quantifier),
            PatternNode::Group { body, quantifier } => {
                quant("(group)".into(), *quantifier)?;
                let once = quantifier.min == 1 && quantifier.max == Some(1);
                if body.nullable() && !once {
                    return Err(BuildError::GroupMatchesEmpty);
                }
                self.check(body, false)
            }
            PatternNode::Alt(alts) => {
                if alts.is_empty() {
                    return Err(BuildError::Empty);
                }
                alts.iter().try_for_each(|a| self.check(a, top_seq))
            }
            PatternNode::Not(_) => Err(BuildError::MisplacedNegation),
            PatternNode::Seq(steps) => {
                if steps.is_empty() {
                    return Err(BuildError::Empty);
                }
                for (i, s) in steps.iter().enumerate() {
                    if let PatternNode::Not(v) = s.node {
                        name(v)?;
                        if i == 0 || !top_seq {
                            return Err(BuildError::MisplacedNegation);
                        }
                        if i + 1 == steps.len() && s.op == Contiguity::Strict {
                            return Err(BuildError::StrictTrailingNegation);
                        }
                    } else {
                        self.check(&s.node, false)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Compiles the automaton.
    pub fn build(&self) -> Result<Nfa, BuildError> {
        let pattern = match &self.pattern {
            Some(p) => p.clone(),
            None if self.steps.is_empty() => return Err(BuildError::Empty),
            None => PatternNode::Seq(self.steps.clone()),
        };
        if self.within.is_some_and(|w| w <= 0) {
            return Err(BuildError::BadWithin);
        }
        // A top-level sequence, or each alternative of a top-level alternation, may hold negations.
        self.check(&pattern, true)?;
        if pattern.nullable() {
            return Err(BuildError::MatchesEmpty);
        }
        match self.after_match {
            AfterMatch::ToFirst(v) | AfterMatch::ToLast(v) => {
                let mut found = false;
                pattern.for_each_var(&mut |x, _| found |= x == v);
                if !found {
                    return Err(BuildError::SkipVar(v));
                }
            }
            _ => {}
        }

        let mut g = Graph {
            nodes: Vec::new(),
            states: Vec::new(),
            after: Vec::new(),
        };
        let accept = g.node(GNode::Accept)?;
        let entry = g.compile(&pattern, Contiguity::Strict, true, accept)?;
        for s in 0..g.states.len() {
            let next = g.closure(g.after[s])?;
            g.states[s].next = next;
        }
        let start: Vec<Target> = g.closure(entry)?.into_iter().map(|e| e.target).collect();
        let absence = g.states.iter().any(|s| s.next.iter().any(Edge::is_absence));
        if absence && self.within.is_none() {
            return Err(BuildError::AbsenceWithoutWithin);
        }
        Ok(Nfa {
            vars: self.vars.clone(),
            pattern,
            states: g.states,
            start,
            within: self.within,
            selection: self.selection,
            after_match: self.after_match,
        })
    }
}

/// An immutable automaton (`Send + Sync`); per-partition state lives in the matcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Nfa {
    /// Variables by id.
    pub vars: Vec<Variable>,
    /// The pattern tree as given.
    pub pattern: PatternNode,
    /// States by id.
    pub states: Vec<State>,
    /// Start targets in preference order (never `Accept`; negations before the first taken event
    /// constrain nothing, so start edges carry no guards).
    pub start: Vec<Target>,
    /// `within` bound, ns.
    pub within: Option<i64>,
    /// Selection mode.
    pub selection: Selection,
    /// After-match skip strategy.
    pub after_match: AfterMatch,
}

impl Nfa {
    /// The pattern as text, e.g. `a (b | c)+ -> !x -> d`.
    pub fn pattern_text(&self) -> String {
        let mut s = String::new();
        self.render(&self.pattern, &mut s);
        s
    }

    fn render(&self, node: &PatternNode, s: &mut String) {
        let name = |v: &VarId| self.vars.get(*v as usize).map_or("?", |x| x.name.as_str());
        match node {
            PatternNode::Var { var, quantifier } => {
                s.push_str(name(var));
                s.push_str(&quantifier.to_string());
            }
            PatternNode::Not(var) => {
                s.push('!');
                s.push_str(name(var));
            }
            PatternNode::Group { body, quantifier } => {
                s.push('(');
                self.render(body, s);
                s.push(')');
                s.push_str(&quantifier.to_string());
            }
            PatternNode::Seq(steps) => {
                for (i, st) in steps.iter().enumerate() {
                    if i > 0 {
                        s.push_str(st.op.operator());
                    }
                    // A bare alternation inside a sequence needs parentheses to keep its meaning.
                    if matches!(st.node, PatternNode::Alt(_)) {
                        s.push('(');
                        self.render(&st.node, s);
                        s.push(')');
                    } else {
                        self.render(&st.node, s);
                    }
                }
            }
            PatternNode::Alt(alts) => {
                for (i, a) in alts.iter().enumerate() {
                    if i > 0 {
                        s.push_str(" | ");
                    }
                    self.render(a, s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn t() -> Expr {
        Expr::Const(Value::Bool(true))
    }

    const PLUS: Quantifier = Quantifier {
        min: 1,
        max: None,
        greedy: true,
    };

    fn targets(edges: &[Edge]) -> Vec<Target> {
        edges.iter().map(|e| e.target).collect()
    }

    fn var(var: VarId, quantifier: Quantifier) -> PatternNode {
        PatternNode::Var { var, quantifier }
    }

    fn step(op: Contiguity, node: PatternNode) -> Step {
        Step { op, node }
    }

    #[test]
    fn greedy_and_reluctant_order_targets() {
        let mut b = Builder::new();
        let a = b.var("a", t());
        let x = b.var("b", t());
        let c = b.var("c", t());
        b.element(a, Quantifier::ONE, Contiguity::Strict)
            .element(x, PLUS, Contiguity::Relaxed)
            .element(c, Quantifier::ONE, Contiguity::Relaxed);
        let n = b.build().unwrap();
        assert_eq!(n.states.len(), 3);
        assert_eq!(n.start, vec![Target::State(0)]);
        assert_eq!(
            targets(&n.states[1].next),
            vec![Target::State(1), Target::State(2)]
        );
        assert_eq!(targets(&n.states[2].next), vec![Target::Accept]);
        assert_eq!(n.pattern_text(), "a -> b+ -> c");

        let mut b = Builder::new();
        let a = b.var("a", t());
        let x = b.var("b", t());
        b.element(a, Quantifier::ONE, Contiguity::Strict).element(
            x,
            Quantifier {
                min: 0,
                max: Some(2),
                greedy: false,
            },
            Contiguity::Strict,
        );
        let n = b.build().unwrap();
        // a's next: reluctant optional b -> prefer Accept first.
        assert_eq!(
            targets(&n.states[0].next),
            vec![Target::Accept, Target::State(1)]
        );
        assert_eq!(
            targets(&n.states[1].next),
            vec![Target::Accept, Target::State(2)]
        );
        assert_eq!(targets(&n.states[2].next), vec![Target::Accept]);
        assert_eq!(n.pattern_text(), "a b{0,2}?");
    }

    #[test]
    fn rejects_bad_patterns() {
        let mut b = Builder::new();
        assert_eq!(b.build(), Err(BuildError::Empty));
        let a = b.var("a", t());
        b.element(
            a,
            Quantifier {
                min: 0,
                max: None,
                greedy: true,
            },
            Contiguity::Strict,
        );
        assert_eq!(b.build(), Err(BuildError::MatchesEmpty));
        let mut b = Builder::new();
        let a = b.var("a", t());
        b.element(
            a,
            Quantifier {
                min: 3,
                max: Some(2),
                greedy: true,
            },
            Contiguity::Strict,
        );
        assert!(matches!(b.build(), Err(BuildError::BadQuantifier { .. })));
    }

    #[test]
    fn counted_loops_unroll() {
        let mut b = Builder::new();
        let a = b.var("a", t());
        b.element(
            a,
            Quantifier {
                min: 3,
                max: None,
                greedy: true,
            },
            Contiguity::Relaxed,
        );
        let n = b.build().unwrap();
        assert_eq!(n.states.len(), 3);
        assert_eq!(targets(&n.states[0].next), vec![Target::State(1)]);
        assert_eq!(targets(&n.states[1].next), vec![Target::State(2)]);
        assert_eq!(
            targets(&n.states[2].next),
            vec![Target::State(2), Target::Accept]
        );
        assert!(n.states[2].looping);
    }

    #[test]
    fn groups_and_alternation_in_preference_order() {
        // x -> (a b | c)+ d
        let mut b = Builder::new();
        let x = b.var("x", t());
        let a = b.var("a", t());
        let bb = b.var("b", t());
        let c = b.var("c", t());
        let d = b.var("d", t());
        let body = PatternNode::Alt(vec![
            PatternNode::Seq(vec![
                step(Contiguity::Strict, var(a, Quantifier::ONE)),
                step(Contiguity::Strict, var(bb, Quantifier::ONE)),
            ]),
            var(c, Quantifier::ONE),
        ]);
        b.pattern(PatternNode::Seq(vec![
            step(Contiguity::Strict, var(x, Quantifier::ONE)),
            step(
                Contiguity::Relaxed,
                PatternNode::Group {
                    body: Box::new(body),
                    quantifier: PLUS,
                },
            ),
            step(Contiguity::Strict, var(d, Quantifier::ONE)),
        ]));
        let n = b.build().unwrap();
        // States: x=0, a=1, b=2, c=3, d=4.
        assert_eq!(n.states.len(), 5);
        assert_eq!(
            targets(&n.states[0].next),
            vec![Target::State(1), Target::State(3)]
        );
        // The group's first variables wait with the group's contiguity; b with its own.
        assert_eq!(n.states[1].contiguity, Contiguity::Relaxed);
        assert_eq!(n.states[3].contiguity, Contiguity::Relaxed);
        assert_eq!(n.states[2].contiguity, Contiguity::Strict);
        // After a repetition: another one first (greedy, left alternative first), then d.
        let again = vec![Target::State(1), Target::State(3), Target::State(4)];
        assert_eq!(targets(&n.states[2].next), again);
        assert_eq!(targets(&n.states[3].next), again);
        assert_eq!(n.pattern_text(), "x -> (a b | c)+ d");
    }

    #[test]
    fn bounded_groups_unroll_and_reluctant_groups_leave_first() {
        // (a b){2,3}? -> c
        let mut b = Builder::new();
        let a = b.var("a", t());
        let bb = b.var("b", t());
        let c = b.var("c", t());
        let body = PatternNode::Seq(vec![
            step(Contiguity::Strict, var(a, Quantifier::ONE)),
            step(Contiguity::Relaxed, var(bb, Quantifier::ONE)),
        ]);
        b.pattern(PatternNode::Seq(vec![
            step(
                Contiguity::Strict,
                PatternNode::Group {
                    body: Box::new(body),
                    quantifier: Quantifier {
                        min: 2,
                        max: Some(3),
                        greedy: false,
                    },
                },
            ),
            step(Contiguity::Relaxed, var(c, Quantifier::ONE)),
        ]));
        let n = b.build().unwrap();
        // a1 b1 a2 b2 a3 b3 c
        assert_eq!(n.states.len(), 7);
        assert_eq!(targets(&n.states[1].next), vec![Target::State(2)]);
        assert_eq!(
            targets(&n.states[3].next),
            vec![Target::State(6), Target::State(4)]
        );
        assert_eq!(targets(&n.states[5].next), vec![Target::State(6)]);
        // The first element's repetitions use the operator after it.
        assert_eq!(n.states[2].contiguity, Contiguity::Relaxed);
        assert_eq!(n.pattern_text(), "(a -> b){2,3}? -> c");
    }

    #[test]
    fn negation_guards_edges_not_states() {
        // a -> !x -> b+
        let mut b = Builder::new();
        let a = b.var("a", t());
        let x = b.var("x", t());
        let bb = b.var("b", t());
        b.pattern(PatternNode::Seq(vec![
            step(Contiguity::Strict, var(a, Quantifier::ONE)),
            step(Contiguity::Relaxed, PatternNode::Not(x)),
            step(Contiguity::Relaxed, var(bb, PLUS)),
        ]));
        let n = b.build().unwrap();
        assert_eq!(n.states.len(), 2);
        let guard = Guard {
            var: x,
            strict: false,
        };
        assert_eq!(n.states[0].next[0].guards, vec![guard]);
        // Entering b again from b carries no guard.
        assert!(n.states[1].next.iter().all(|e| e.guards.is_empty()));
        assert_eq!(n.pattern_text(), "a -> !x -> b+");
    }

    #[test]
    fn trailing_absence_needs_within() {
        let mut b = Builder::new();
        let a = b.var("a", t());
        let x = b.var("x", t());
        b.pattern(PatternNode::Seq(vec![
            step(Contiguity::Strict, var(a, Quantifier::ONE)),
            step(Contiguity::Relaxed, PatternNode::Not(x)),
        ]));
        assert_eq!(b.build(), Err(BuildError::AbsenceWithoutWithin));
        b.within(Some(10));
        let n = b.build().unwrap();
        assert!(n.states[0].next[0].is_absence());

        let mut b = Builder::new();
        let a = b.var("a", t());
        let x = b.var("x", t());
        b.within(Some(10));
        b.pattern(PatternNode::Seq(vec![
            step(Contiguity::Strict, var(a, Quantifier::ONE)),
            step(Contiguity::Strict, PatternNode::Not(x)),
        ]));
        assert_eq!(b.build(), Err(BuildError::StrictTrailingNegation));
        b.pattern(PatternNode::Seq(vec![
            step(Contiguity::Strict, PatternNode::Not(x)),
            step(Contiguity::Strict, var(a, Quantifier::ONE)),
        ]));
        assert_eq!(b.build(), Err(BuildError::MisplacedNegation));
    }

    #[test]
    fn quantified_groups_must_take_events() {
        let mut b = Builder::new();
        let a = b.var("a", t());
        let c = b.var("c", t());
        b.pattern(PatternNode::Seq(vec![
            step(Contiguity::Strict, var(c, Quantifier::ONE)),
            step(
                Contiguity::Strict,
                PatternNode::Group {
                    body: Box::new(var(
                        a,
                        Quantifier {
                            min: 0,
                            max: Some(1),
                            greedy: true,
                        },
                    )),
                    quantifier: PLUS,
                },
            ),
        ]));
        assert_eq!(b.build(), Err(BuildError::GroupMatchesEmpty));
    }
}
