//! Class 2: count-threshold windowed queries (see the parent module's docs).
//!
//! Input: the variants' programs. Output: a [`WindowPlan`] (per-variant `where` condition,
//! window size and slide, count threshold), which turns delivered events into a group-sorted
//! window tape (times in units of the gcd of every variant's slide) and runs the window kernel of
//! `gpu_kernels::sweep` on the GPU or the CPU. Next stage: the sweep report.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cep_core::expr::{CmpOp, FieldAccess};
use cep_core::query::{Query, WindowExpr, WindowFunc, WindowSpec};
use cep_core::rule::MAX_KEY_FIELDS;
use cep_core::value::Value;
use gpu_kernels::sweep::{ALWAYS, WindowTape, WindowVariant, window_cpu};

use super::conditions::{Conditions, target_words};
use super::{DeliveredEvents, NotInClass, SweepDevice, SweepError, Variant, VariantCounts};

/// One variant's window in ns.
#[derive(Debug, Clone, Copy)]
struct Spec {
    cond: u32,
    size: i64,
    slide: i64,
    threshold: u32,
}

/// A count-threshold query planned for every variant.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    query: Query,
    /// The query's emit (output type) name.
    emit: String,
    conditions: Conditions,
    specs: Vec<Spec>,
    /// Greatest common divisor of every slide (the time unit of the tape).
    unit: i64,
    keys: Arc<AtomicUsize>,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The least window count that passes `count(*) OP c`.
fn threshold(op: CmpOp, c: Value) -> Option<u32> {
    let clamp = |x: f64| x.clamp(1.0, f64::from(u32::MAX)) as u32;
    let x = c.as_f64()?;
    if x.is_nan() {
        // A comparison with NaN is false: nothing passes.
        return Some(u32::MAX);
    }
    match op {
        CmpOp::Ge => Some(clamp(x.ceil())),
        CmpOp::Gt => Some(clamp(x.floor() + 1.0)),
        _ => None,
    }
}

/// The count threshold of `having`, or why it is not `count(*) >= N` / `> N`.
fn having_threshold(q: &Query) -> Result<u32, NotInClass> {
    let Some(h) = &q.having else { return Ok(1) };
    let is_count = |e: &WindowExpr| match e {
        WindowExpr::Agg(i) => q
            .aggregates
            .get(*i)
            .is_some_and(|a| a.func == WindowFunc::Count && a.arg.is_none()),
        _ => false,
    };
    let found = match h {
        WindowExpr::Cmp(op, l, r) => match (&**l, &**r) {
            (l, WindowExpr::Const(c)) if is_count(l) => threshold(*op, *c),
            (WindowExpr::Const(c), r) if is_count(r) => {
                let flipped = match op {
                    CmpOp::Le => CmpOp::Ge,
                    CmpOp::Lt => CmpOp::Gt,
                    _ => CmpOp::Eq,
                };
                threshold(flipped, *c)
            }
            _ => None,
        },
        _ => None,
    };
    found.ok_or_else(|| {
        NotInClass(format!(
            "query `{}`: `having` is not `count(*) >= N` or `count(*) > N`",
            q.name
        ))
    })
}

/// The group key of row `row` (as the query operator reads it: missing fields are 0).
fn group_key(
    group_by: &[FieldAccess],
    batch: &cep_core::event::EventBatch,
    row: usize,
) -> [u64; MAX_KEY_FIELDS] {
    let t = usize::from(batch.type_ids()[row]);
    let mut k = [0u64; MAX_KEY_FIELDS];
    for (slot, f) in k.iter_mut().zip(group_by) {
        *slot = match f.slots.get(t).copied().flatten() {
            Some(s) if usize::from(s) < batch.slot_count() => {
                batch.slot_column(usize::from(s))[row]
            }
            _ => 0,
        };
    }
    k
}

/// Widens `into` by `other`, the same `group by` as another variant resolved it: a `where` that
/// tests types (`where A and …`) resolves the key only for those types, and rows of the other
/// types never pass that variant's `where`, so one key function (any slot a variant resolved for
/// a type) groups every variant's passing rows as its own would.
fn merge_keys(into: &mut [FieldAccess], other: &[FieldAccess]) -> Result<(), NotInClass> {
    let differ = || NotInClass("variants differ in the group key the query reads".into());
    if into.len() != other.len() {
        return Err(differ());
    }
    for (a, b) in into.iter_mut().zip(other) {
        if a.name != b.name || a.ty != b.ty {
            return Err(differ());
        }
        if a.slots.len() < b.slots.len() {
            a.slots.resize(b.slots.len(), None);
        }
        for (x, y) in a.slots.iter_mut().zip(&b.slots) {
            match (*x, *y) {
                (Some(p), Some(q)) if p != q => return Err(differ()),
                (None, Some(q)) => *x = Some(q),
                _ => {}
            }
        }
    }
    Ok(())
}

impl WindowPlan {
    /// Plans query `index` of every variant.
    pub fn new(index: usize, variants: &[Variant]) -> Result<Self, NotInClass> {
        fn query_of(v: &Variant, index: usize) -> Result<&Query, NotInClass> {
            v.program.queries.get(index).ok_or_else(|| {
                NotInClass(format!("variant {} has no query number {index}", v.index))
            })
        }
        let first = query_of(&variants[0], index)?;
        let mut group_by = first.group_by.clone();
        let mut conditions = Conditions::default();
        let mut specs = Vec::with_capacity(variants.len());
        for v in variants {
            let q = query_of(v, index)?;
            if q.from != first.from {
                return Err(NotInClass(
                    "variants differ in the types the query reads".into(),
                ));
            }
            merge_keys(&mut group_by, &q.group_by)?;
            if q.from
                .iter()
                .any(|t| v.program.queries.iter().any(|o| o.output == *t))
            {
                return Err(NotInClass(format!(
                    "query `{}` reads another query's derived events",
                    q.name
                )));
            }
            let (size, slide) = match q.window {
                WindowSpec::Tumbling { size } => (size, size),
                WindowSpec::Sliding { size, slide } => (size, slide),
                WindowSpec::Session { .. } => {
                    return Err(NotInClass(format!(
                        "query `{}` has session windows",
                        q.name
                    )));
                }
            };
            if size <= 0 || slide <= 0 || size % slide != 0 || size / slide > 1000 {
                return Err(NotInClass(format!(
                    "query `{}`: window size is not a multiple of the slide",
                    q.name
                )));
            }
            let cond = match &q.filter {
                Some(f) => conditions.intern(f)?,
                None => ALWAYS,
            };
            specs.push(Spec {
                cond,
                size,
                slide,
                threshold: having_threshold(q)?,
            });
        }
        let unit = specs.iter().fold(0, |g, s| gcd(s.slide, g));
        let catalog = &variants[0].program.catalog;
        let emit = catalog
            .event_type(first.output)
            .map_or_else(|| first.name.clone(), |t| t.name.clone());
        let mut query = first.clone();
        query.group_by = group_by;
        Ok(Self {
            query,
            emit,
            conditions,
            specs,
            unit: unit.max(1),
            keys: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Emit name and query name (the label class lookup order).
    pub fn class_names(&self) -> [&str; 2] {
        [&self.emit, &self.query.name]
    }

    /// One report line.
    pub fn describe(&self) -> String {
        let keys = self.keys.load(Ordering::Relaxed);
        let mut s = format!(
            "count-threshold windows ({}), {} distinct conditions",
            self.query.window,
            self.conditions.len()
        );
        if keys > 0 {
            s.push_str(&format!(", {keys} groups"));
        }
        s
    }

    /// Builds the window tape and runs the kernel.
    pub fn run(
        &self,
        events: &DeliveredEvents,
        device: SweepDevice<'_>,
    ) -> Result<Vec<VariantCounts>, SweepError> {
        let batch = &events.batch;
        let types = batch.type_ids();
        let reads = |t: u16| self.query.from.contains(&t);
        let mut group_ids: HashMap<[u64; MAX_KEY_FIELDS], u32> = HashMap::new();
        let mut rows = Vec::new();
        let mut row_group = Vec::new();
        for (r, &t) in types.iter().enumerate() {
            if !reads(t) {
                continue;
            }
            let key = group_key(&self.query.group_by, batch, r);
            let next = group_ids.len() as u32;
            row_group.push(*group_ids.entry(key).or_insert(next));
            rows.push(r);
        }
        let groups = group_ids.len();
        self.keys.store(groups, Ordering::Relaxed);
        let (offsets, mut order) = super::group_rows(&rows, &row_group, groups)?;
        // Window counts do not depend on the order of a window's events: sort each group by time.
        let ts = batch.ts();
        for g in 0..groups {
            order[offsets[g] as usize..offsets[g + 1] as usize].sort_by_key(|&r| ts[r]);
        }
        let unit_of = |t: i64| t.div_euclid(self.unit);
        let base = order.iter().map(|&r| unit_of(ts[r])).min().unwrap_or(0);
        let top = order.iter().map(|&r| unit_of(ts[r])).max().unwrap_or(0);
        let max_slide = self
            .specs
            .iter()
            .map(|s| s.slide / self.unit)
            .max()
            .unwrap_or(1);
        let max_n = self
            .specs
            .iter()
            .map(|s| s.size / s.slide)
            .max()
            .unwrap_or(1);
        let span = (i128::from(top) - i128::from(base)) + i128::from(max_slide) + i128::from(max_n);
        if span + 2 >= i128::from(u32::MAX) {
            return Err(SweepError::TooLarge(format!(
                "the tape spans {span} windows of {} ns (at most 2^32)",
                self.unit
            )));
        }
        let variants: Vec<WindowVariant> = self
            .specs
            .iter()
            .map(|s| {
                let slide = s.slide / self.unit;
                WindowVariant {
                    cond: s.cond,
                    slide: slide as u32,
                    // base = q * slide + offset: floor((u + base) / slide) = q + floor((u +
                    // offset) / slide), and only differences of window indices matter.
                    offset: base.rem_euclid(slide) as u32,
                    per_event: (s.size / s.slide) as u32,
                    threshold: s.threshold,
                    pad: [0; 3],
                }
            })
            .collect();
        let cond_rows = self.conditions.eval(batch);
        let class = crate::label_class(&events.label_names, &self.class_names());
        let csr_labels: Vec<_> = order.iter().map(|&r| events.labels[r]).collect();
        let (target, instances) = target_words(&csr_labels, class);
        let mut masks = Vec::with_capacity(2 * order.len());
        let mut units = Vec::with_capacity(order.len());
        for &r in &order {
            let m = cond_rows[r];
            masks.push(m as u32);
            masks.push((m >> 32) as u32);
            // Below 2^32 by the span check above.
            units.push((unit_of(ts[r]) - base) as u32);
        }
        let tape = WindowTape {
            key_offsets: &offsets,
            masks: &masks,
            units: &units,
            target: &target,
            instances,
        };
        let counts = match device {
            SweepDevice::Cpu => window_cpu(&tape, &variants),
            SweepDevice::Gpu(ctx) => gpu_kernels::sweep::window_gpu(ctx, &tape, &variants)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_kernel_thresholds_follow_the_comparison() {
        assert_eq!(threshold(CmpOp::Ge, Value::I64(3)), Some(3));
        assert_eq!(threshold(CmpOp::Gt, Value::I64(3)), Some(4));
        assert_eq!(threshold(CmpOp::Ge, Value::F64(2.5)), Some(3));
        assert_eq!(threshold(CmpOp::Gt, Value::F64(2.5)), Some(3));
        assert_eq!(threshold(CmpOp::Gt, Value::F64(3.0)), Some(4));
        // Every window has an event: `>= 0` and `> -1` keep them all.
        assert_eq!(threshold(CmpOp::Ge, Value::I64(0)), Some(1));
        assert_eq!(threshold(CmpOp::Gt, Value::I64(-5)), Some(1));
        assert_eq!(threshold(CmpOp::Ge, Value::F64(f64::NAN)), Some(u32::MAX));
        assert_eq!(threshold(CmpOp::Lt, Value::I64(3)), None);
        assert_eq!(gcd(60, 90), 30);
    }
}
