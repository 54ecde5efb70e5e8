//! The compiled automaton of one rule's pattern.
//!
//! Input: pattern elements (variable, quantifier, contiguity) and one condition per variable, given
//! to a [`Builder`]. Output: an immutable [`Nfa`] whose states each take one event for one
//! variable. Next stage: a matcher ([`crate::reference::ReferenceMatcher`]) runs it per partition.
//!
//! Shape: every state *takes* one event that satisfies its variable's condition, then continues to
//! an ordered list of targets (`next`): other states or [`Target::Accept`]. Epsilon moves
//! (optional elements, leaving a loop) are resolved at build time, so `next` already lists every
//! state reachable without consuming an event, in preference order: greedy quantifiers list
//! "take another" before "move on", reluctant ones the reverse. The same order is the SQL:2016
//! preferment order used by `select first`.
//!
//! Each state also carries the [`Contiguity`] that governs the events *before* it is taken: what a
//! partial match waiting in that state may skip.

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

/// Where a state continues after taking an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Another state.
    State(StateId),
    /// The match is complete.
    Accept,
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
    /// Index of the pattern element this state belongs to.
    pub element: u16,
    /// 1-based repetition this state takes (the first looping repetition for loops).
    pub repetition: u32,
    /// True if the state is a loop (may be taken again and again).
    pub looping: bool,
    /// What may be skipped while waiting here.
    pub contiguity: Contiguity,
    /// Targets after taking, in preference order.
    pub next: Vec<Target>,
}

/// A pattern element as given to the builder.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Variable.
    pub var: VarId,
    /// Repetitions.
    pub quantifier: Quantifier,
    /// Contiguity of the events this element takes (relative to the previously taken event).
    pub contiguity: Contiguity,
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
    /// Bad quantifier.
    #[error("quantifier of `{var}`: minimum {min} is larger than maximum {max}")]
    BadQuantifier {
        /// Variable name.
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
    /// Skip target is not in the pattern.
    #[error("`after match` names variable #{0}, which is not in the pattern")]
    SkipVar(VarId),
    /// Negative or zero `within`.
    #[error("`within` must be positive")]
    BadWithin,
}

/// Builds an [`Nfa`] from variables and a sequence of elements.
#[derive(Debug, Clone)]
pub struct Builder {
    vars: Vec<Variable>,
    elements: Vec<Element>,
    within: Option<i64>,
    selection: Selection,
    after_match: AfterMatch,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with SQL:2016 defaults: `select first`, `after match skip past last`, no `within`.
    pub fn new() -> Self {
        Self {
            vars: Vec::new(),
            elements: Vec::new(),
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

    /// Appends a pattern element.
    pub fn element(
        &mut self,
        var: VarId,
        quantifier: Quantifier,
        contiguity: Contiguity,
    ) -> &mut Self {
        self.elements.push(Element {
            var,
            quantifier,
            contiguity,
        });
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

    /// Compiles the automaton.
    pub fn build(&self) -> Result<Nfa, BuildError> {
        if self.elements.is_empty() {
            return Err(BuildError::Empty);
        }
        if self.within.is_some_and(|w| w <= 0) {
            return Err(BuildError::BadWithin);
        }
        let name = |v: VarId| {
            self.vars
                .get(v as usize)
                .map(|x| x.name.clone())
                .ok_or(BuildError::UnknownVar(v))
        };
        for e in &self.elements {
            let n = name(e.var)?;
            if let Some(max) = e.quantifier.max {
                if max < e.quantifier.min {
                    return Err(BuildError::BadQuantifier {
                        var: n,
                        min: e.quantifier.min,
                        max,
                    });
                }
                if max == 0 {
                    return Err(BuildError::ZeroQuantifier(n));
                }
            }
        }
        if self.elements.iter().all(|e| e.quantifier.min == 0) {
            return Err(BuildError::MatchesEmpty);
        }
        match self.after_match {
            AfterMatch::ToFirst(v) | AfterMatch::ToLast(v)
                if !self.elements.iter().any(|e| e.var == v) =>
            {
                return Err(BuildError::SkipVar(v));
            }
            _ => {}
        }

        // Allocate states per element: `min` mandatory repetitions (the last of them looping when
        // unbounded), then optional repetitions up to `max`, or one optional loop when min == 0.
        let mut states: Vec<State> = Vec::new();
        let mut element_states: Vec<Vec<StateId>> = Vec::with_capacity(self.elements.len());
        for (ei, e) in self.elements.iter().enumerate() {
            let q = e.quantifier;
            let count = match q.max {
                Some(m) => m as usize,
                None => q.min.max(1) as usize,
            };
            if states.len() + count > MAX_STATES {
                return Err(BuildError::TooManyStates);
            }
            let mut ids = Vec::with_capacity(count);
            for r in 0..count {
                ids.push(states.len() as StateId);
                states.push(State {
                    var: e.var,
                    element: ei as u16,
                    repetition: r as u32 + 1,
                    looping: q.max.is_none() && r + 1 == count,
                    contiguity: e.contiguity,
                    next: Vec::new(),
                });
            }
            element_states.push(ids);
        }

        // entry[i]: targets that begin element i (and, through optional elements, later ones).
        let k = self.elements.len();
        let mut entry: Vec<Vec<Target>> = vec![Vec::new(); k + 1];
        entry[k] = vec![Target::Accept];
        for i in (0..k).rev() {
            let q = self.elements[i].quantifier;
            let first = Target::State(element_states[i][0]);
            entry[i] = if q.min == 0 {
                prefer(q.greedy, vec![first], entry[i + 1].clone())
            } else {
                vec![first]
            };
        }
        for i in 0..k {
            let q = self.elements[i].quantifier;
            let ids = &element_states[i];
            for (r, &sid) in ids.iter().enumerate() {
                let taken = r as u32 + 1; // repetitions taken after this state
                let more = if states[sid as usize].looping {
                    Some(Target::State(sid))
                } else {
                    ids.get(r + 1).map(|&n| Target::State(n))
                };
                let next = match more {
                    Some(m) if taken >= q.min => prefer(q.greedy, vec![m], entry[i + 1].clone()),
                    Some(m) => vec![m],
                    None => entry[i + 1].clone(),
                };
                states[sid as usize].next = next;
            }
        }
        Ok(Nfa {
            vars: self.vars.clone(),
            elements: self.elements.clone(),
            states,
            start: entry[0].clone(),
            within: self.within,
            selection: self.selection,
            after_match: self.after_match,
        })
    }
}

fn prefer(greedy: bool, more: Vec<Target>, leave: Vec<Target>) -> Vec<Target> {
    let (a, b) = if greedy { (more, leave) } else { (leave, more) };
    a.into_iter().chain(b).collect()
}

/// An immutable automaton (`Send + Sync`); per-partition state lives in the matcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Nfa {
    /// Variables by id.
    pub vars: Vec<Variable>,
    /// Elements as given.
    pub elements: Vec<Element>,
    /// States by id.
    pub states: Vec<State>,
    /// Start targets in preference order (never `Accept`).
    pub start: Vec<Target>,
    /// `within` bound, ns.
    pub within: Option<i64>,
    /// Selection mode.
    pub selection: Selection,
    /// After-match skip strategy.
    pub after_match: AfterMatch,
}

impl Nfa {
    /// The pattern as text, e.g. `a b+ -> c`.
    pub fn pattern_text(&self) -> String {
        let mut s = String::new();
        for (i, e) in self.elements.iter().enumerate() {
            if i > 0 {
                s.push_str(match e.contiguity {
                    Contiguity::Strict => " ",
                    Contiguity::Relaxed => " -> ",
                    Contiguity::Any => " ->> ",
                });
            }
            s.push_str(&self.vars[e.var as usize].name);
            s.push_str(&e.quantifier.to_string());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn t() -> Expr {
        Expr::Const(Value::Bool(true))
    }

    #[test]
    fn greedy_and_reluctant_order_targets() {
        let mut b = Builder::new();
        let a = b.var("a", t());
        let x = b.var("b", t());
        let c = b.var("c", t());
        b.element(a, Quantifier::ONE, Contiguity::Strict)
            .element(
                x,
                Quantifier {
                    min: 1,
                    max: None,
                    greedy: true,
                },
                Contiguity::Relaxed,
            )
            .element(c, Quantifier::ONE, Contiguity::Relaxed);
        let n = b.build().unwrap();
        assert_eq!(n.states.len(), 3);
        assert_eq!(n.start, vec![Target::State(0)]);
        assert_eq!(n.states[1].next, vec![Target::State(1), Target::State(2)]);
        assert_eq!(n.states[2].next, vec![Target::Accept]);
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
        assert_eq!(n.states[0].next, vec![Target::Accept, Target::State(1)]);
        assert_eq!(n.states[1].next, vec![Target::Accept, Target::State(2)]);
        assert_eq!(n.states[2].next, vec![Target::Accept]);
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
        assert_eq!(n.states[0].next, vec![Target::State(1)]);
        assert_eq!(n.states[1].next, vec![Target::State(2)]);
        assert_eq!(n.states[2].next, vec![Target::State(2), Target::Accept]);
        assert!(n.states[2].looping);
    }
}
