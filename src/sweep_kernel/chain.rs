//! Class 1: strict chains of single-event conditions (see the parent module's docs for why the
//! kernel equals the engine).
//!
//! Input: the variants' programs. Output: a [`ChainPlan`] (per-variant chain parameters over the
//! distinct conditions), which turns delivered events into a key-grouped chain tape and runs the
//! chain kernel of `gpu_kernels::sweep` on the GPU or the CPU. Next stage: the sweep report.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cep_core::nfa::{AfterMatch, Contiguity, Nfa, StateId, Target as NfaTarget};
use cep_core::rule::{PartitionKey, Rule};
use gpu_kernels::sweep::{ChainTape, ChainVariant, MAX_CHAIN, chain_cpu};

use super::conditions::{Conditions, target_words};
use super::{DeliveredEvents, NotInClass, SweepDevice, SweepError, Variant, VariantCounts};

/// A strict-chain rule planned for every variant.
#[derive(Debug, Clone)]
pub struct ChainPlan {
    /// The rule as compiled for the first variant (its `from` and partition key are everyone's).
    rule: Rule,
    conditions: Conditions,
    variants: Vec<ChainVariant>,
    /// Partition keys of the last run (for [`Self::describe`]).
    keys: Arc<AtomicUsize>,
}

/// The chain's states in order, or why the automaton is not a strict chain.
fn chain_states(nfa: &Nfa) -> Result<Vec<StateId>, NotInClass> {
    let not = |why: &str| {
        Err(NotInClass(format!(
            "pattern `{}` is not a strict chain: {why}",
            nfa.pattern_text()
        )))
    };
    let mut s = match nfa.start.as_slice() {
        [NfaTarget::State(s)] => *s,
        _ => return not("it has several start states"),
    };
    let mut states = Vec::new();
    loop {
        let Some(state) = nfa.states.get(s as usize) else {
            return not("a state is missing");
        };
        if state.looping {
            return not("an element repeats without bound");
        }
        if !states.is_empty() && state.contiguity != Contiguity::Strict {
            return not("an element waits with `->` or `->>`");
        }
        if states.contains(&s) {
            return not("a state repeats");
        }
        states.push(s);
        if states.len() > MAX_CHAIN {
            return not(&format!("it has more than {MAX_CHAIN} states"));
        }
        match state.next.as_slice() {
            [edge] if !edge.guards.is_empty() => return not("it has a negation or an absence"),
            [edge] => match edge.target {
                NfaTarget::State(t) => s = t,
                NfaTarget::Accept => break,
            },
            _ => return not("an element is optional or has alternatives"),
        }
    }
    if states.len() != nfa.states.len() {
        return not("it has alternatives");
    }
    Ok(states)
}

/// Runs kept after a match in a chain of `k` states (see the parent module's docs).
fn keep_mask(nfa: &Nfa, vars: &[u16]) -> u32 {
    let k = vars.len();
    let all = if k == 32 { u32::MAX } else { (1u32 << k) - 1 };
    let at = |v: u16, last: bool| {
        let mut it = vars
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == v)
            .map(|(i, _)| i);
        if last { it.next_back() } else { it.next() }
    };
    let bound = match nfa.after_match {
        AfterMatch::NoSkip | AfterMatch::ToNext => return all,
        AfterMatch::PastLast => return 0,
        AfterMatch::ToFirst(v) => at(v, false),
        AfterMatch::ToLast(v) => at(v, true),
    };
    match bound {
        // Starts from the match's first event up to (excluding) the event at chain position
        // `i` die: the runs older than `k - 1 - i` events.
        Some(i) if i > 0 => (1u32 << (k - i)) - 1,
        _ => all,
    }
}

impl ChainPlan {
    /// Plans rule `index` of every variant.
    pub fn new(index: usize, variants: &[Variant]) -> Result<Self, NotInClass> {
        fn rule_of(v: &Variant, index: usize) -> Result<&Rule, NotInClass> {
            v.program.rules.get(index).ok_or_else(|| {
                NotInClass(format!("variant {} has no rule number {index}", v.index))
            })
        }
        let first = rule_of(&variants[0], index)?;
        let mut conditions = Conditions::default();
        let mut planned = Vec::with_capacity(variants.len());
        for v in variants {
            let rule = rule_of(v, index)?;
            if rule.from != first.from || rule.partition_by != first.partition_by {
                return Err(NotInClass(
                    "variants differ in the types or partition key the rule reads".into(),
                ));
            }
            if rule
                .from
                .iter()
                .any(|t| v.program.queries.iter().any(|q| q.output == *t))
            {
                return Err(NotInClass(format!(
                    "rule `{}` reads a query's derived events",
                    rule.name
                )));
            }
            if rule.timeout.is_some() {
                return Err(NotInClass(format!(
                    "rule `{}` has `on timeout emit`",
                    rule.name
                )));
            }
            if rule
                .emit
                .score
                .as_ref()
                .is_some_and(|s| s.threshold.is_some())
            {
                return Err(NotInClass(format!(
                    "rule `{}` filters its signals by a score threshold",
                    rule.name
                )));
            }
            let nfa = &rule.nfa;
            let states = chain_states(nfa)?;
            let vars: Vec<u16> = states.iter().map(|&s| nfa.states[s as usize].var).collect();
            let mut cv = ChainVariant {
                len: states.len() as u32,
                keep: keep_mask(nfa, &vars),
                ..ChainVariant::default()
            };
            for (i, &var) in vars.iter().enumerate() {
                let cond = nfa.vars.get(usize::from(var)).ok_or_else(|| {
                    NotInClass(format!("rule `{}`: a state has no variable", rule.name))
                })?;
                cv.set_cond(i, conditions.intern(&cond.condition)?);
            }
            if let Some(w) = nfa.within {
                let w = w.max(0) as u64;
                cv.has_within = 1;
                cv.within_lo = w as u32;
                cv.within_hi = (w >> 32) as u32;
            }
            planned.push(cv);
        }
        Ok(Self {
            rule: first.clone(),
            conditions,
            variants: planned,
            keys: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Signal name and rule name (the label class lookup order).
    pub fn class_names(&self) -> [&str; 2] {
        [&self.rule.emit.signal, &self.rule.name]
    }

    /// One report line.
    pub fn describe(&self) -> String {
        let min = self.variants.iter().map(|v| v.len).min().unwrap_or(0);
        let max = self.variants.iter().map(|v| v.len).max().unwrap_or(0);
        let len = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        let keys = self.keys.load(Ordering::Relaxed);
        let mut s = format!(
            "strict chain of {len} conditions, {} distinct conditions",
            self.conditions.len()
        );
        if keys > 0 {
            s.push_str(&format!(", {keys} keys"));
        }
        s
    }

    /// Builds the chain tape and runs the kernel.
    pub fn run(
        &self,
        events: &DeliveredEvents,
        device: SweepDevice<'_>,
    ) -> Result<Vec<VariantCounts>, SweepError> {
        let batch = &events.batch;
        let reads = self.rule.read_table();
        let types = batch.type_ids();
        // Key ids in order of first appearance; rows of each key in delivered order.
        let mut key_ids: HashMap<PartitionKey, u32> = HashMap::new();
        let mut row_key = Vec::new();
        let mut rows = Vec::new();
        for (r, &t) in types.iter().enumerate() {
            if !reads.get(usize::from(t)).copied().unwrap_or(false) {
                continue;
            }
            let key = self.rule.key_of_row(batch, r);
            let next = key_ids.len() as u32;
            row_key.push(*key_ids.entry(key).or_insert(next));
            rows.push(r);
        }
        let keys = key_ids.len();
        self.keys.store(keys, Ordering::Relaxed);
        let (offsets, order) = super::group_rows(&rows, &row_key, keys)?;
        let cond_rows = self.conditions.eval(batch);
        let class = crate::label_class(&events.label_names, &self.class_names());
        let csr_labels: Vec<_> = order.iter().map(|&r| events.labels[r]).collect();
        let (target, instances) = target_words(&csr_labels, class);
        let t0 = order.iter().map(|&r| batch.ts()[r]).min().unwrap_or(0);
        let mut masks = Vec::with_capacity(2 * order.len());
        let mut ts = Vec::with_capacity(2 * order.len());
        for &r in &order {
            let m = cond_rows[r];
            masks.push(m as u32);
            masks.push((m >> 32) as u32);
            // Rebased to the earliest event: an unsigned offset (the difference of two i64 fits).
            let t = (batch.ts()[r] as u64).wrapping_sub(t0 as u64);
            if t >= 1 << 63 {
                return Err(SweepError::TooLarge(
                    "the tape spans more than 2^63 ns".into(),
                ));
            }
            ts.push(t as u32);
            ts.push((t >> 32) as u32);
        }
        let tape = ChainTape {
            key_offsets: &offsets,
            masks: &masks,
            ts: &ts,
            target: &target,
            instances,
        };
        let counts = match device {
            SweepDevice::Cpu => chain_cpu(&tape, &self.variants),
            SweepDevice::Gpu(ctx) => gpu_kernels::sweep::chain_gpu(ctx, &tape, &self.variants)?,
        };
        Ok(counts
            .into_iter()
            .map(|c| VariantCounts {
                signals: c.signals,
                true_positives: c.true_positives,
                instances_found: c.instances_found,
            })
            .collect())
    }
}
