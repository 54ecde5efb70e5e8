//! Criterion bench of the columnar predicate kernels: scalar against SIMD (AVX2, AVX-512), one
//! predicate or a set of three evaluated together, over a 1M-row batch (`kernels`: columns
//! streamed from memory) and over one 4096-row batch, a tape block, evaluated again and again
//! (`kernels_block`: columns in cache, as right after decoding).
//! Run with `cargo bench --bench kernels`.

use cep_core::event::{EventBatch, Label};
use cep_core::expr::{CmpOp, Expr, FieldAccess};
use cep_core::kernel::{Isa, KernelSet, Scratch};
use cep_core::{FieldType, Value};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 1_000_000;
/// Rows of a tape block (`feeds::tape::RECORDS_PER_BLOCK`).
const BLOCK_ROWS: usize = 4096;
const ORDER: u16 = 0;
const TRADE: u16 = 1;
const QUOTE: u16 = 2;

/// Orders: `qty` (f64) in slot 0, `px` (i64, fixed-point) in slot 1, `side` (enum) in slot 2.
/// Trades: `px` in slot 0, `qty` in slot 1. Quotes: `px` in slot 0.
fn batch(rows: usize) -> EventBatch {
    let mut b = EventBatch::with_capacity(3, rows);
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for i in 0..rows {
        let r = next();
        let ty = [ORDER, TRADE, QUOTE][(r % 3) as usize];
        let qty = ((r >> 8) % 10_000) as f64;
        let px = 10_000 + ((r >> 24) % 100) as i64;
        let side = (r >> 40) & 1;
        let slots = match ty {
            ORDER => [qty.to_bits(), px as u64, side],
            TRADE => [px as u64, qty.to_bits(), 0],
            _ => [px as u64, 0, 0],
        };
        b.push(i as u64, i as i64 * 1_000, ty, Label::default(), &slots);
    }
    b
}

fn field(name: &str, ty: FieldType, slots: &[Option<u8>]) -> Expr {
    Expr::Field(FieldAccess {
        name: name.into(),
        ty,
        slots: slots.to_vec(),
    })
}

fn cmp(op: CmpOp, x: Expr, c: Value) -> Expr {
    Expr::Cmp(op, Box::new(x), Box::new(Expr::Const(c)))
}

fn and(l: Expr, r: Expr) -> Expr {
    Expr::And(Box::new(l), Box::new(r))
}

fn kernels(c: &mut Criterion) {
    let qty = field("qty", FieldType::F64, &[Some(0), Some(1), None]);
    let px = field("px", FieldType::I64, &[Some(1), Some(0), Some(0)]);
    let side = field("side", FieldType::Enum(0), &[Some(2), None, None]);
    let order = Expr::TypeIs(vec![ORDER]);
    let predicates = [
        (
            "order_qty_ge_5000",
            and(order.clone(), cmp(CmpOp::Ge, qty.clone(), Value::I64(5000))),
        ),
        (
            "order_qty_px_side",
            and(
                and(order, cmp(CmpOp::Ge, qty.clone(), Value::I64(5000))),
                and(
                    cmp(CmpOp::Lt, px.clone(), Value::I64(10_050)),
                    Expr::InList {
                        needle: Box::new(side),
                        list: vec![Expr::Const(Value::Enum(1))],
                    },
                ),
            ),
        ),
    ];
    // One kernel set with several predicates, as a rule set's start conditions: `Order` and
    // `Trade` type tests are shared between them.
    let trade = Expr::TypeIs(vec![TRADE]);
    let order = Expr::TypeIs(vec![ORDER]);
    let set_of_three = vec![
        and(order.clone(), cmp(CmpOp::Ge, qty.clone(), Value::I64(5000))),
        and(trade, cmp(CmpOp::Ge, qty.clone(), Value::I64(1000))),
        and(order, cmp(CmpOp::Lt, px.clone(), Value::I64(10_050))),
    ];
    let mut sets: Vec<(&str, Vec<Expr>)> = predicates
        .iter()
        .map(|(name, pred)| (*name, vec![pred.clone()]))
        .collect();
    sets.push(("three_predicates", set_of_three));
    let isas: Vec<Isa> = [Isa::Scalar, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|isa| isa.is_available())
        .collect();
    for (group_name, rows) in [("kernels", ROWS), ("kernels_block", BLOCK_ROWS)] {
        let b = batch(rows);
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(rows as u64));
        group.sample_size(20);
        for (name, preds) in &sets {
            for isa in &isas {
                let set = KernelSet::with_isa(preds, *isa).expect("compiles");
                let mut scratch = Scratch::new();
                let mut masks = Vec::new();
                let id = BenchmarkId::new(*name, format!("{isa:?}"));
                group.bench_with_input(id, &b, |bch, b| {
                    bch.iter(|| {
                        set.eval(b, &mut scratch, &mut masks);
                        masks[0][0]
                    });
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
