//! Kernel masks against `Expr::eval`, row by row, on every instruction set this CPU has.

use proptest::prelude::*;

use super::*;
use crate::event::Label;
use crate::value::ArithOp;

/// Types 0..=2 have fields, type 3 is beyond every field's slot table (all fields Null).
const TYPES: u16 = 4;
const SLOTS: usize = 4;

fn field(name: &str, ty: FieldType, slots: &[Option<u8>]) -> FieldAccess {
    FieldAccess {
        name: name.into(),
        ty,
        slots: slots.to_vec(),
    }
}

/// Fields with a different layout per type; `far` uses a slot past the batch's columns.
fn fields() -> Vec<FieldAccess> {
    vec![
        field("qty", FieldType::F64, &[Some(0), Some(2), None]),
        field("px", FieldType::I64, &[Some(1), Some(0), Some(3)]),
        field("vol", FieldType::U64, &[None, Some(1), Some(0)]),
        field("flag", FieldType::Bool, &[Some(2), None, Some(1)]),
        field("sym", FieldType::Sym, &[Some(3), Some(3), None]),
        field("side", FieldType::Enum(0), &[None, Some(2), Some(2)]),
        field("t", FieldType::Ts, &[Some(1), None, Some(3)]),
        field("far", FieldType::I64, &[None, Some(9), None]),
    ]
}

fn raw_values() -> Vec<u64> {
    let f = |x: f64| x.to_bits();
    vec![
        0,
        1,
        2,
        5000,
        4999,
        u64::MAX,
        1 << 63,
        (1 << 63) + 5,
        i64::MIN as u64,
        i64::MAX as u64,
        (-1i64) as u64,
        (-5000i64) as u64,
        (1 << 32) | 7,
        1 << 53,
        (1 << 53) + 1,
        f(0.0),
        f(-0.0),
        f(f64::NAN),
        f(-f64::NAN),
        f(f64::INFINITY),
        f(f64::NEG_INFINITY),
        f(5000.0),
        f(4999.5),
        f(-1.5),
        f(9.223372036854776e18),
        f(1.8446744073709552e19),
        f(f64::MIN_POSITIVE),
    ]
}

fn constants() -> Vec<Value> {
    vec![
        Value::Null,
        Value::I64(0),
        Value::I64(-1),
        Value::I64(5000),
        Value::I64(i64::MIN),
        Value::I64(i64::MAX),
        Value::I64((1 << 53) + 1),
        Value::U64(0),
        Value::U64(5000),
        Value::U64(u64::MAX),
        Value::U64((1 << 63) + 5),
        Value::F64(0.0),
        Value::F64(-0.0),
        Value::F64(f64::NAN),
        Value::F64(5000.0),
        Value::F64(4999.5),
        Value::F64(f64::INFINITY),
        Value::F64(f64::NEG_INFINITY),
        Value::F64(9.223372036854776e18),
        Value::F64(-9.223372036854776e18),
        Value::F64(1.8446744073709552e19),
        Value::F64(-1.5),
        Value::Bool(false),
        Value::Bool(true),
        Value::Sym(7),
        Value::Sym(0),
        Value::Enum(2),
        Value::Enum(7),
    ]
}

const OPS: [CmpOp; 6] = [
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
];

/// A value-producing leaf: a field, `ts`, `seq`, or a computed value (fallback).
fn arb_operand() -> impl Strategy<Value = Expr> {
    let n = fields().len();
    prop_oneof![
        6 => (0..n).prop_map(|i| Expr::Field(fields()[i].clone())),
        1 => Just(Expr::Ts),
        1 => Just(Expr::Seq),
        1 => (0..n, prop::sample::select(constants())).prop_map(|(i, c)| {
            Expr::Arith(
                ArithOp::Add,
                Box::new(Expr::Field(fields()[i].clone())),
                Box::new(Expr::Const(c)),
            )
        }),
    ]
}

fn arb_const() -> impl Strategy<Value = Expr> {
    prop::sample::select(constants()).prop_map(Expr::Const)
}

fn arb_leaf() -> impl Strategy<Value = Expr> {
    let op = prop::sample::select(OPS.to_vec());
    prop_oneof![
        3 => (op.clone(), arb_operand(), arb_const()).prop_map(|(op, x, c)| {
            Expr::Cmp(op, Box::new(x), Box::new(c))
        }),
        2 => (op.clone(), arb_const(), arb_operand()).prop_map(|(op, c, x)| {
            Expr::Cmp(op, Box::new(c), Box::new(x))
        }),
        1 => (op.clone(), arb_operand(), arb_operand()).prop_map(|(op, x, y)| {
            Expr::Cmp(op, Box::new(x), Box::new(y))
        }),
        1 => (op, arb_const(), arb_const()).prop_map(|(op, x, y)| {
            Expr::Cmp(op, Box::new(x), Box::new(y))
        }),
        2 => prop::collection::vec(0..TYPES + 1, 0..3).prop_map(Expr::TypeIs),
        1 => (arb_operand(), prop::collection::vec(arb_const(), 0..4)).prop_map(|(x, list)| {
            Expr::InList { needle: Box::new(x), list }
        }),
        1 => arb_operand(),
        1 => arb_const(),
    ]
}

fn arb_cond() -> impl Strategy<Value = Expr> {
    arb_leaf().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|x| Expr::Not(Box::new(x))),
        ]
    })
}

fn arb_batch(max_rows: usize) -> impl Strategy<Value = EventBatch> {
    let raw = prop::sample::select(raw_values());
    let row = (
        any::<u64>(),
        prop_oneof![
            prop::sample::select(raw_values()).prop_map(|r| r as i64),
            any::<i64>()
        ],
        0..TYPES,
        prop::collection::vec(prop_oneof![3 => raw, 1 => any::<u64>()], SLOTS),
    );
    prop::collection::vec(row, 0..max_rows).prop_map(|rows| {
        let mut b = EventBatch::new(SLOTS);
        for (seq, ts, t, slots) in rows {
            b.push(seq, ts, t, Label::default(), &slots);
        }
        b
    })
}

/// The mask `Expr::eval` gives, row by row.
fn oracle(e: &Expr, batch: &EventBatch) -> Vec<u64> {
    let mut out = vec![0u64; mask_words(batch.len())];
    for row in 0..batch.len() {
        let ev = batch.event(row);
        if e.eval(&CurrentEvent(ev.view())).is_true() {
            out[row / 64] |= 1 << (row % 64);
        }
    }
    out
}

const ALL_ISAS: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

/// Every instruction set this CPU runs (scalar always).
fn isas() -> Vec<Isa> {
    let (have, lack): (Vec<Isa>, Vec<Isa>) = ALL_ISAS.iter().partition(|isa| isa.is_available());
    if !lack.is_empty() {
        eprintln!("note: {lack:?} not available on this CPU; checking {have:?}");
    }
    have
}

/// Every predicate's mask equals the oracle's on every batch, on every instruction set. One
/// scratch and one output serve all batches and instruction sets, and each batch is evaluated
/// twice, with [`KernelSet::eval`] and predicate by predicate with [`KernelSet::eval_one`], so
/// that state left over from an earlier batch (type masks, buffers) would show.
fn check(preds: &[Expr], batches: &[&EventBatch]) -> Result<(), TestCaseError> {
    let mut scratch = Scratch::new();
    let mut masks = Vec::new();
    let mut one = Vec::new();
    for isa in isas() {
        let set =
            KernelSet::with_isa(preds, isa).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(set.isa(), isa);
        for batch in batches {
            let want: Vec<Vec<u64>> = preds.iter().map(|p| oracle(p, batch)).collect();
            set.eval(batch, &mut scratch, &mut masks);
            prop_assert_eq!(masks.len(), preds.len());
            for (p, want) in want.iter().enumerate() {
                prop_assert!(set.eval_one(p, batch, &mut scratch, &mut one));
                for (how, got) in [("eval", &masks[p]), ("eval_one", &one)] {
                    prop_assert_eq!(
                        got,
                        want,
                        "{:?} {} predicate {} over {} rows: {:?}",
                        isa,
                        how,
                        p,
                        batch.len(),
                        preds[p]
                    );
                }
            }
        }
    }
    Ok(())
}

/// 256 cases from a fixed seed, so every run checks the same cases (`PROPTEST_CASES` and
/// `PROPTEST_RNG_SEED` override them), and no failure-persistence files (as the workspace's
/// other property tests).
fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 256;
    }
    if c.rng_seed == proptest::test_runner::RngSeed::Random {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x6b65_726e_656c);
    }
    c.failure_persistence = None;
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn masks_match_eval(
        preds in prop::collection::vec(arb_cond(), 1..4),
        first in arb_batch(200),
        second in arb_batch(200),
    ) {
        check(&preds, &[&first, &second])?;
    }
}

/// Lengths around the vector width and the 64-row word, with a fixed batch prefix.
#[test]
fn masks_match_eval_at_length_edges() {
    let raws = raw_values();
    let qty = fields()[0].clone();
    let px = fields()[1].clone();
    let vol = fields()[2].clone();
    let flag = fields()[3].clone();
    let cmp = |op, x: &FieldAccess, c| {
        Expr::Cmp(
            op,
            Box::new(Expr::Field(x.clone())),
            Box::new(Expr::Const(c)),
        )
    };
    let preds = vec![
        Expr::And(
            Box::new(Expr::TypeIs(vec![0])),
            Box::new(cmp(CmpOp::Ge, &qty, Value::I64(5000))),
        ),
        Expr::Or(
            Box::new(cmp(CmpOp::Lt, &px, Value::F64(-1.5))),
            Box::new(Expr::Not(Box::new(cmp(CmpOp::Ne, &vol, Value::U64(5000))))),
        ),
        Expr::Not(Box::new(Expr::Field(flag))),
        Expr::InList {
            needle: Box::new(Expr::Ts),
            list: vec![Expr::Const(Value::I64(0)), Expr::Const(Value::I64(5000))],
        },
        Expr::TypeIs(vec![1, 3]),
        Expr::Not(Box::new(Expr::TypeIs(vec![2]))),
        Expr::Const(Value::Bool(true)),
    ];
    // Vector widths: 4 and 8 lanes of 64 bits, 16 and 32 of 16 bits; 64 rows a mask word.
    for len in [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 63, 64, 65, 72, 95, 96, 97, 127,
        128, 129, 191, 192, 193, 255, 256, 257, 1000, 1024,
    ] {
        let mut b = EventBatch::new(SLOTS);
        for i in 0..len {
            let slots: Vec<u64> = (0..SLOTS)
                .map(|s| raws[(i * 7 + s * 3) % raws.len()])
                .collect();
            let ts = if i % 3 == 0 { 5000 } else { i as i64 };
            b.push(
                i as u64,
                ts,
                (i % TYPES as usize) as u16,
                Label::default(),
                &slots,
            );
        }
        if let Err(e) = check(&preds, &[&b]) {
            panic!("length {len}: {e}");
        }
        // Bits past the length stay clear.
        let set = KernelSet::new(&preds).expect("single-event predicates");
        let mut masks = Vec::new();
        set.eval(&b, &mut Scratch::new(), &mut masks);
        let all = &masks[6];
        assert_eq!(all.len(), mask_words(len));
        assert_eq!(
            all.iter().map(|w| w.count_ones() as usize).sum::<usize>(),
            len
        );
    }
}

#[test]
fn rejects_multi_event_conditions_and_reports_index() {
    let ok = Expr::TypeIs(vec![0]);
    let bad = Expr::Cmp(
        CmpOp::Gt,
        Box::new(Expr::VarCount(0)),
        Box::new(Expr::Const(Value::I64(1))),
    );
    assert_eq!(
        KernelSet::new(&[ok.clone(), bad]).err(),
        Some(KernelError::NotSingleEvent { index: 1 })
    );
    let set = KernelSet::with_isa(&[ok], Isa::Scalar).expect("single-event");
    assert_eq!(set.len(), 1);
    let mut out = vec![7];
    assert!(!set.eval_one(3, &EventBatch::new(0), &mut Scratch::new(), &mut out));
    assert_eq!(out, vec![7]);
    assert!(set.eval_one(0, &EventBatch::new(0), &mut Scratch::new(), &mut out));
    assert!(out.is_empty());
}

#[test]
fn detection_picks_an_available_isa() {
    let isa = Isa::detect();
    assert!(isa.is_available());
    let set = KernelSet::new(&[]).expect("no predicates");
    assert_eq!(set.isa(), isa);
    assert!(set.is_empty());
    // The best one is preferred.
    let best = ALL_ISAS.iter().rev().find(|isa| isa.is_available());
    assert_eq!(Some(&isa), best);
    for isa in ALL_ISAS {
        let built = KernelSet::with_isa(&[], isa);
        if isa.is_available() {
            assert_eq!(built.map(|s| s.isa()).ok(), Some(isa));
        } else {
            assert_eq!(built.err(), Some(KernelError::IsaUnavailable(isa)));
        }
    }
}

fn cmp(op: CmpOp, x: &FieldAccess, c: Value) -> Expr {
    Expr::Cmp(
        op,
        Box::new(Expr::Field(x.clone())),
        Box::new(Expr::Const(c)),
    )
}

fn and(l: Expr, r: Expr) -> Expr {
    Expr::And(Box::new(l), Box::new(r))
}

#[test]
fn a_type_test_narrows_the_other_side_of_and() {
    // `qty` is in slot 0 for type 0 and slot 2 for type 1: alone it tests both slots, each
    // restricted to its type.
    let qty = fields()[0].clone();
    let alone = compile(&cmp(CmpOp::Ge, &qty, Value::I64(5000)));
    assert!(matches!(alone, Node::Or(..)), "{alone:?}");
    // With `type 0` on either side, only slot 0 is left, tested without a type restriction.
    let leaf = Node::Leaf {
        column: Column::Slot(0),
        types: None,
        test: Test::Float(FloatTest {
            op: CmpOp::Ge,
            c: 5000.0,
        }),
    };
    let want = Node::And(Box::new(Node::Types(vec![0])), Box::new(leaf.clone()));
    let typed = and(
        Expr::TypeIs(vec![0]),
        cmp(CmpOp::Ge, &qty, Value::I64(5000)),
    );
    assert_eq!(compile(&typed), want);
    let swapped = and(
        cmp(CmpOp::Ge, &qty, Value::I64(5000)),
        Expr::TypeIs(vec![0]),
    );
    assert_eq!(
        compile(&swapped),
        Node::And(Box::new(leaf), Box::new(Node::Types(vec![0])))
    );
    // A type the field lacks (type 2) leaves nothing to test.
    let none = and(
        Expr::TypeIs(vec![2]),
        cmp(CmpOp::Ge, &qty, Value::I64(5000)),
    );
    assert_eq!(compile(&none), Node::Const(false));
    // Under `not`, narrowing keeps `not` exact within the context: type 1 and not (type 1 or
    // qty >= 5000) is false.
    let negated = and(
        Expr::TypeIs(vec![1]),
        Expr::Not(Box::new(Expr::Or(
            Box::new(Expr::TypeIs(vec![1])),
            Box::new(cmp(CmpOp::Ge, &qty, Value::I64(5000))),
        ))),
    );
    assert_eq!(compile(&negated), Node::Const(false));
}

#[test]
fn predicates_of_a_set_share_type_tests() {
    let qty = fields()[0].clone();
    let px = fields()[1].clone();
    let preds = [
        and(
            Expr::TypeIs(vec![0]),
            cmp(CmpOp::Ge, &qty, Value::I64(5000)),
        ),
        and(
            Expr::TypeIs(vec![1]),
            cmp(CmpOp::Ge, &qty, Value::I64(1000)),
        ),
        and(Expr::TypeIs(vec![0]), cmp(CmpOp::Lt, &px, Value::I64(0))),
        Expr::TypeIs(vec![1, 0]),
        // Without a type test, `px` (in every type but 3) tests each slot for its types.
        cmp(CmpOp::Lt, &px, Value::I64(0)),
    ];
    let set = KernelSet::new(&preds).expect("single-event");
    // {0}, {1}, {0, 1}, then px's slots: {0} (slot 1, already there), {1} (slot 0), {2}.
    assert_eq!(set.type_set_count(), 4);
    let mut b = EventBatch::new(SLOTS);
    for i in 0..300u64 {
        let v = [(i * 40) as f64, -(i as f64)].map(f64::to_bits);
        b.push(
            i,
            0,
            (i % 4) as u16,
            Label::default(),
            &[v[0], v[1], v[0], v[1]],
        );
    }
    if let Err(e) = check(&preds, &[&b, &EventBatch::new(SLOTS), &b]) {
        panic!("{e}");
    }
}

#[test]
fn integer_fields_against_float_constants_follow_rounding() {
    // 2^53 + 1 as f64 rounds to 2^53, so it equals 2^53 as a float.
    let px = fields()[1].clone();
    let pred = Expr::Cmp(
        CmpOp::Eq,
        Box::new(Expr::Field(px)),
        Box::new(Expr::Const(Value::F64(9007199254740992.0))),
    );
    let mut b = EventBatch::new(SLOTS);
    for v in [(1u64 << 53) - 1, 1 << 53, (1 << 53) + 1, (1 << 53) + 2] {
        b.push(0, 0, 1, Label::default(), &[v]);
    }
    let mut masks = Vec::new();
    for isa in isas() {
        let set = KernelSet::with_isa(std::slice::from_ref(&pred), isa).expect("compiles");
        assert_eq!(set.isa(), isa);
        set.eval(&b, &mut Scratch::new(), &mut masks);
        assert_eq!(masks[0], vec![0b0110], "{isa:?}");
    }
    assert_eq!(masks[0], oracle(&pred, &b));
}
