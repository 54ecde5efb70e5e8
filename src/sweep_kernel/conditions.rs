//! Distinct single-event conditions of all variants, evaluated once per event into 64-bit masks.
//!
//! Input: condition expressions from every variant (deduplicated by expression equality) and the
//! delivered batch. Output: one `u64` per row (bit `c`: distinct condition `c` holds), computed
//! with the engine's columnar predicate kernels ([`KernelSet`]), or [`Expr::eval`] row by row if
//! they cannot compile a condition. Next stage: the kernel tapes (chain or window).

use cep_core::event::{EventBatch, EventView};
use cep_core::expr::{CurrentEvent, Expr};
use cep_core::kernel::{KernelSet, Scratch};

use super::NotInClass;

/// Most distinct conditions (bits of the per-event mask).
pub const MAX_CONDITIONS: usize = 64;

/// Deduplicated conditions.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    exprs: Vec<Expr>,
}

impl Conditions {
    /// The id of `e`, adding it if new; an error past [`MAX_CONDITIONS`].
    pub fn intern(&mut self, e: &Expr) -> Result<u32, NotInClass> {
        if let Some(i) = self.exprs.iter().position(|x| x == e) {
            return Ok(i as u32);
        }
        if !e.is_single_event() {
            return Err(NotInClass(
                "a condition reads more than the current event (a variable, `prev` or an aggregate)"
                    .into(),
            ));
        }
        if self.exprs.len() == MAX_CONDITIONS {
            return Err(NotInClass(format!(
                "more than {MAX_CONDITIONS} distinct conditions over all variants"
            )));
        }
        self.exprs.push(e.clone());
        Ok((self.exprs.len() - 1) as u32)
    }

    /// Number of distinct conditions.
    pub fn len(&self) -> usize {
        self.exprs.len()
    }

    /// Per row of `batch`: bit `c` set when condition `c` is true.
    pub fn eval(&self, batch: &EventBatch) -> Vec<u64> {
        let mut rows = vec![0u64; batch.len()];
        if self.exprs.is_empty() {
            return rows;
        }
        match KernelSet::new(&self.exprs) {
            Ok(kernels) => {
                let mut masks = Vec::new();
                kernels.eval(batch, &mut Scratch::new(), &mut masks);
                for (c, mask) in masks.iter().enumerate() {
                    for (w, &word) in mask.iter().enumerate() {
                        let mut bits = word;
                        while bits != 0 {
                            let r = w * 64 + bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            if let Some(row) = rows.get_mut(r) {
                                *row |= 1 << c;
                            }
                        }
                    }
                }
            }
            Err(_) => {
                let mut slots = Vec::new();
                for (r, row) in rows.iter_mut().enumerate() {
                    batch.copy_slots(r, &mut slots);
                    let e = EventView {
                        seq: batch.seq()[r],
                        ts: batch.ts()[r],
                        type_id: batch.type_ids()[r],
                        slots: &slots,
                    };
                    for (c, x) in self.exprs.iter().enumerate() {
                        if x.eval(&CurrentEvent(e)).is_true() {
                            *row |= 1 << c;
                        }
                    }
                }
            }
        }
        rows
    }
}

/// Dense ids of the target class's label instances: per row 0, or 1 + the instance's dense id
/// (ids in order of first appearance); also the number of ids.
pub fn target_words(labels: &[cep_core::event::Label], class: Option<u16>) -> (Vec<u32>, u32) {
    let mut ids = std::collections::HashMap::new();
    let words = labels
        .iter()
        .map(|l| match class {
            Some(c) if l.class == c => {
                let next = ids.len() as u32;
                1 + *ids.entry(l.instance).or_insert(next)
            }
            _ => 0,
        })
        .collect();
    (words, ids.len() as u32)
}
