//! Columnar predicate kernels: single-event conditions evaluated over a whole [`EventBatch`].
//!
//! Input: an [`EventBatch`] and a [`KernelSet`] compiled from the single-event conditions of a
//! rule's pattern variables ([`Expr::is_single_event`]). Output: one bitmask per predicate
//! (`Vec<u64>`, bit `i % 64` of word `i / 64` set when row `i` satisfies the condition; bits past
//! the batch length are 0). Next stage: the fast matcher, which steps its automaton from these
//! masks instead of evaluating conditions event by event.
//!
//! # What is compiled
//!
//! A condition holds for a row exactly when [`Expr::eval`] returns `Bool(true)` for that row
//! alone; every path here gives that result bit for bit. The compiler turns into columnar
//! kernels:
//! - type tests ([`Expr::TypeIs`]) over [`EventBatch::type_ids`];
//! - comparisons of a field, `ts` or `seq` with a constant, in either order. A field is read per
//!   event type from its slot ([`FieldAccess`]); rows whose type lacks the field read `Null` and
//!   fail every comparison. Integer and symbol comparisons become one range test on the raw slot
//!   (an integer field against a float constant is turned into the equivalent integer range, so
//!   rounding of `i64 as f64` is honoured); float fields compare as IEEE doubles, and any
//!   comparison with NaN is false (`!=` included), as [`Value::compare`] defines;
//! - a bare boolean field, boolean constants, `and`, `or`, `not` (`not` of a non-boolean, or of
//!   a field the type lacks, is false), and `x in (c1, c2, ...)`, compiled as `x == c1 or ...`.
//!
//! # Fallback
//!
//! Any other sub-expression (arithmetic over fields, field-to-field comparisons, comparisons of
//! computed values...) becomes a fallback node that evaluates [`Expr::eval`] row by row and sets
//! the same bits. Only that sub-expression runs per row; the rest of the predicate stays
//! columnar.
//!
//! # Type tests are narrowed and shared
//!
//! A conjunction whose one side only holds for some event types (`Order and qty >= 5000`)
//! restricts the other side to those types at compile time: leaves of a field that the other
//! types keep in other slots are dropped, and type restrictions that the conjunction already
//! implies are removed. The distinct type sets left in all predicates of a [`KernelSet`] are
//! evaluated at most once per batch and shared by every node that needs them.
//!
//! # Instruction sets
//!
//! [`KernelSet::new`] detects the CPU once and picks AVX-512 (F and BW) where present, else AVX2
//! (x86_64), else scalar code; [`KernelSet::with_isa`] forces a choice (tests and benches compare
//! them). Every path gives identical masks. The only `unsafe` code of the kernels lives in the
//! `simd` submodule.

#[cfg(target_arch = "x86_64")]
mod simd;

use std::cmp::Ordering;

use crate::event::{EventBatch, EventView};
use crate::expr::{CmpOp, CurrentEvent, Expr, FieldAccess};
use crate::schema::{FieldType, TypeId};
use crate::value::Value;

/// Why a condition cannot be compiled into a kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The condition reads more than the current event (variables, `prev`).
    #[error("predicate {index} reads more than the current event")]
    NotSingleEvent {
        /// Index of the predicate in the list given to the builder.
        index: usize,
    },
    /// The requested instruction set is not available on this CPU.
    #[error("instruction set {0:?} is not available on this CPU")]
    IsaUnavailable(Isa),
}

/// Instruction set a [`KernelSet`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code.
    Scalar,
    /// x86_64 AVX2 (4 lanes of 64 bits).
    Avx2,
    /// x86_64 AVX-512 F and BW (8 lanes of 64 bits, 32 of 16, results in mask registers).
    Avx512,
}

impl Isa {
    /// The best instruction set of this CPU (detected at each call; a [`KernelSet`] calls it
    /// once when built).
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if simd::Avx512::detect().is_some() {
                return Isa::Avx512;
            }
            if simd::Avx2::detect().is_some() {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// True if this CPU can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => simd::Avx2::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => simd::Avx512::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }
}

/// The implementation chosen once at build time.
#[derive(Debug, Clone, Copy)]
enum Engine {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(simd::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(simd::Avx512),
}

/// A range test on a raw slot: `x = ((raw & mask) ^ flip) as i64` passes when
/// `(lo <= x && x <= hi) == inside`. Unsigned tests set `flip` to the sign bit so that one
/// signed comparison serves both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IntTest {
    pub(crate) mask: u64,
    pub(crate) flip: u64,
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    pub(crate) inside: bool,
}

impl IntTest {
    #[inline]
    pub(crate) fn test(&self, raw: u64) -> bool {
        let x = ((raw & self.mask) ^ self.flip) as i64;
        (self.lo <= x && x <= self.hi) == self.inside
    }
}

/// A comparison of a raw slot, read as `f64`, with a constant that is not NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FloatTest {
    pub(crate) op: CmpOp,
    pub(crate) c: f64,
}

impl FloatTest {
    #[inline]
    pub(crate) fn test(&self, raw: u64) -> bool {
        let x = f64::from_bits(raw);
        match self.op {
            CmpOp::Eq => x == self.c,
            // Ordered: NaN is unequal to nothing.
            CmpOp::Ne => matches!(
                x.partial_cmp(&self.c),
                Some(Ordering::Less | Ordering::Greater)
            ),
            CmpOp::Lt => x < self.c,
            CmpOp::Le => x <= self.c,
            CmpOp::Gt => x > self.c,
            CmpOp::Ge => x >= self.c,
        }
    }
}

/// The test applied to a column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Test {
    /// Every row passes.
    All,
    Int(IntTest),
    Float(FloatTest),
}

impl Test {
    fn test(&self, raw: u64) -> bool {
        match self {
            Test::All => true,
            Test::Int(t) => t.test(raw),
            Test::Float(t) => t.test(raw),
        }
    }
}

/// Where a column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Ts,
    Seq,
    Slot(usize),
}

/// A compiled predicate node: the rows where the sub-expression is `Bool(true)`. `S` names a set
/// of event types: a sorted, deduplicated list while compiling ([`Tree`]), an index into the
/// kernel set's shared type sets once built ([`Kernel`]).
#[derive(Debug, Clone, PartialEq)]
enum Node<S> {
    Const(bool),
    /// Rows whose type is in the set.
    Types(S),
    /// A test on a column; `types` restricts it to rows of those types (`None`: every row).
    Leaf {
        column: Column,
        types: Option<S>,
        test: Test,
    },
    And(Box<Node<S>>, Box<Node<S>>),
    Or(Box<Node<S>>, Box<Node<S>>),
    /// Rows not in the inner node.
    Not(Box<Node<S>>),
    /// Evaluated row by row with [`Expr::eval`].
    Fallback(Expr),
}

/// A node being compiled: type sets are sorted, deduplicated lists.
type Tree = Node<Vec<TypeId>>;

/// A node of a built kernel set: type sets are shared, by index.
type Kernel = Node<TypeSet>;

/// Index of a type set in [`KernelSet::type_sets`] (and of its mask in [`Scratch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TypeSet(usize);

/// Reusable buffers for [`KernelSet::eval`] (so that evaluation allocates only while they grow),
/// and the type masks of the batch being evaluated.
#[derive(Debug, Default)]
pub struct Scratch {
    free: Vec<Vec<u64>>,
    slots: Vec<u64>,
    /// One mask per type set of the kernel set, valid where `type_ready` is set.
    type_masks: Vec<Vec<u64>>,
    type_ready: Vec<bool>,
}

impl Scratch {
    /// Empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the type masks of the previous batch; makes room for `sets` of them.
    fn start_batch(&mut self, sets: usize) {
        if self.type_masks.len() < sets {
            self.type_masks.resize_with(sets, Vec::new);
        }
        self.type_ready.clear();
        self.type_ready.resize(sets, false);
    }

    fn take(&mut self, words: usize) -> Vec<u64> {
        let mut v = self.free.pop().unwrap_or_default();
        v.clear();
        v.resize(words, 0);
        v
    }

    fn put(&mut self, v: Vec<u64>) {
        self.free.push(v);
    }
}

/// Compiled single-event predicates evaluated together over batches.
#[derive(Debug, Clone)]
pub struct KernelSet {
    predicates: Vec<Kernel>,
    /// The distinct type sets the predicates test, each evaluated at most once per batch.
    type_sets: Vec<Vec<TypeId>>,
    engine: Engine,
}

/// Number of `u64` words of a mask over `rows` rows.
#[inline]
pub fn mask_words(rows: usize) -> usize {
    rows.div_ceil(64)
}

/// True if bit `row` of `mask` is set (false past the mask).
#[inline]
pub fn mask_bit(mask: &[u64], row: usize) -> bool {
    mask.get(row / 64)
        .is_some_and(|w| (w >> (row % 64)) & 1 == 1)
}

impl KernelSet {
    /// Compiles `predicates` for the best instruction set of this CPU (detected here, once).
    pub fn new(predicates: &[Expr]) -> Result<Self, KernelError> {
        Self::with_isa(predicates, Isa::detect())
    }

    /// Compiles `predicates` for `isa`; an error if this CPU lacks it.
    pub fn with_isa(predicates: &[Expr], isa: Isa) -> Result<Self, KernelError> {
        let engine = match isa {
            Isa::Scalar => Engine::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                Engine::Avx2(simd::Avx2::detect().ok_or(KernelError::IsaUnavailable(isa))?)
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Engine::Avx512(simd::Avx512::detect().ok_or(KernelError::IsaUnavailable(isa))?)
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => return Err(KernelError::IsaUnavailable(isa)),
        };
        let mut type_sets = Vec::new();
        let predicates = predicates
            .iter()
            .enumerate()
            .map(|(index, e)| {
                if e.is_single_event() {
                    Ok(intern(compile(e), &mut type_sets))
                } else {
                    Err(KernelError::NotSingleEvent { index })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            predicates,
            type_sets,
            engine,
        })
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        match self.engine {
            Engine::Scalar => Isa::Scalar,
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(_) => Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) => Isa::Avx512,
        }
    }

    /// Number of predicates.
    pub fn len(&self) -> usize {
        self.predicates.len()
    }

    /// True if there are no predicates.
    pub fn is_empty(&self) -> bool {
        self.predicates.is_empty()
    }

    /// Number of distinct type sets the predicates test (each is evaluated at most once per
    /// [`KernelSet::eval`]).
    pub fn type_set_count(&self) -> usize {
        self.type_sets.len()
    }

    /// Evaluates every predicate over `batch`: `masks[p]` becomes predicate `p`'s bitmask
    /// (`masks` is resized to the number of predicates and each mask to
    /// [`mask_words`]`(batch.len())` words). Type tests are shared by all predicates.
    pub fn eval(&self, batch: &EventBatch, scratch: &mut Scratch, masks: &mut Vec<Vec<u64>>) {
        scratch.start_batch(self.type_sets.len());
        masks.resize_with(self.predicates.len(), Vec::new);
        for (node, out) in self.predicates.iter().zip(masks.iter_mut()) {
            out.clear();
            out.resize(mask_words(batch.len()), 0);
            self.eval_node(node, batch, scratch, out);
        }
    }

    /// Evaluates predicate `index` into `out` (resized to [`mask_words`]`(batch.len())`); returns
    /// false (leaving `out` untouched) if there is no such predicate.
    pub fn eval_one(
        &self,
        index: usize,
        batch: &EventBatch,
        scratch: &mut Scratch,
        out: &mut Vec<u64>,
    ) -> bool {
        let Some(node) = self.predicates.get(index) else {
            return false;
        };
        scratch.start_batch(self.type_sets.len());
        out.clear();
        out.resize(mask_words(batch.len()), 0);
        self.eval_node(node, batch, scratch, out);
        true
    }

    /// Writes `node`'s mask into `out` (exactly `mask_words(batch.len())` words).
    fn eval_node(&self, node: &Kernel, batch: &EventBatch, scratch: &mut Scratch, out: &mut [u64]) {
        let rows = batch.len();
        match node {
            Node::Const(b) => {
                out.fill(0);
                if *b {
                    fill_ones(out, rows);
                }
            }
            Node::Types(set) => out.copy_from_slice(self.type_mask(*set, batch, scratch)),
            Node::Leaf {
                column,
                types,
                test,
            } => {
                let col: &[u64] = match column {
                    Column::Ts => bytemuck::cast_slice(batch.ts()),
                    Column::Seq => batch.seq(),
                    Column::Slot(s) if *s < batch.slot_count() => batch.slot_column(*s),
                    // A slot past the batch's columns reads as 0 (as `EventView::slot` does).
                    Column::Slot(_) => {
                        out.fill(0);
                        if test.test(0) {
                            self.restrict(batch, *types, scratch, out, true);
                        }
                        return;
                    }
                };
                self.column_test(col, test, out);
                self.restrict(batch, *types, scratch, out, false);
            }
            Node::And(l, r) => {
                self.eval_node(l, batch, scratch, out);
                if out.iter().all(|w| *w == 0) {
                    return;
                }
                let mut tmp = scratch.take(out.len());
                self.eval_node(r, batch, scratch, &mut tmp);
                for (o, t) in out.iter_mut().zip(&tmp) {
                    *o &= t;
                }
                scratch.put(tmp);
            }
            Node::Or(l, r) => {
                self.eval_node(l, batch, scratch, out);
                let mut tmp = scratch.take(out.len());
                self.eval_node(r, batch, scratch, &mut tmp);
                for (o, t) in out.iter_mut().zip(&tmp) {
                    *o |= t;
                }
                scratch.put(tmp);
            }
            Node::Not(x) => {
                self.eval_node(x, batch, scratch, out);
                for o in out.iter_mut() {
                    *o = !*o;
                }
                clear_tail(out, rows);
            }
            Node::Fallback(e) => {
                out.fill(0);
                let mut slots = std::mem::take(&mut scratch.slots);
                for row in 0..rows {
                    batch.copy_slots(row, &mut slots);
                    let cur = CurrentEvent(EventView {
                        seq: batch.seq()[row],
                        ts: batch.ts()[row],
                        type_id: batch.type_ids()[row],
                        slots: &slots,
                    });
                    if e.eval(&cur).is_true() {
                        out[row / 64] |= 1 << (row % 64);
                    }
                }
                scratch.slots = slots;
            }
        }
    }

    /// ANDs `out` with the rows whose type is in `types` (no-op for `None`); with `fill`, `out`
    /// is first treated as all ones.
    fn restrict(
        &self,
        batch: &EventBatch,
        types: Option<TypeSet>,
        scratch: &mut Scratch,
        out: &mut [u64],
        fill: bool,
    ) {
        match types {
            None => {
                if fill {
                    fill_ones(out, batch.len());
                }
            }
            Some(set) if fill => out.copy_from_slice(self.type_mask(set, batch, scratch)),
            Some(set) => {
                for (o, t) in out.iter_mut().zip(self.type_mask(set, batch, scratch)) {
                    *o &= t;
                }
            }
        }
    }

    /// The mask of the rows whose type is in `set`, computed on first use for this batch.
    fn type_mask<'s>(
        &self,
        set: TypeSet,
        batch: &EventBatch,
        scratch: &'s mut Scratch,
    ) -> &'s [u64] {
        let words = mask_words(batch.len());
        // `start_batch` sized the scratch for every set, and sets come from this kernel set's
        // interning: grow anyway rather than index out of bounds.
        if scratch.type_masks.len() <= set.0 {
            scratch.type_masks.resize_with(set.0 + 1, Vec::new);
            scratch.type_ready.resize(set.0 + 1, false);
        }
        let mask = &mut scratch.type_masks[set.0];
        if !scratch.type_ready[set.0] {
            mask.clear();
            mask.resize(words, 0);
            let types = self.type_sets.get(set.0).map_or(&[][..], Vec::as_slice);
            self.types(batch.type_ids(), types, mask);
            scratch.type_ready[set.0] = true;
        }
        mask
    }

    fn types(&self, ids: &[TypeId], types: &[TypeId], out: &mut [u64]) {
        match self.engine {
            Engine::Scalar => scalar::types(ids, types, out),
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(a) => a.types(ids, types, out),
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(a) => a.types(ids, types, out),
        }
    }

    fn column_test(&self, col: &[u64], test: &Test, out: &mut [u64]) {
        match (self.engine, test) {
            (_, Test::All) => {
                out.fill(0);
                fill_ones(out, col.len());
            }
            (Engine::Scalar, Test::Int(t)) => scalar::column(col, |x| t.test(x), out),
            (Engine::Scalar, Test::Float(t)) => scalar::column(col, |x| t.test(x), out),
            #[cfg(target_arch = "x86_64")]
            (Engine::Avx2(a), Test::Int(t)) => a.int(col, t, out),
            #[cfg(target_arch = "x86_64")]
            (Engine::Avx2(a), Test::Float(t)) => a.float(col, t, out),
            #[cfg(target_arch = "x86_64")]
            (Engine::Avx512(a), Test::Int(t)) => a.int(col, t, out),
            #[cfg(target_arch = "x86_64")]
            (Engine::Avx512(a), Test::Float(t)) => a.float(col, t, out),
        }
    }
}

/// Sets bits `0..rows` of `out`.
fn fill_ones(out: &mut [u64], rows: usize) {
    for (i, w) in out.iter_mut().enumerate() {
        let start = i * 64;
        *w = if rows >= start + 64 {
            u64::MAX
        } else if rows > start {
            (1u64 << (rows - start)) - 1
        } else {
            0
        };
    }
}

/// Clears bits `rows..` of `out`.
fn clear_tail(out: &mut [u64], rows: usize) {
    if !rows.is_multiple_of(64)
        && let Some(w) = out.get_mut(rows / 64)
    {
        *w &= (1u64 << (rows % 64)) - 1;
    }
    for w in out.iter_mut().skip(rows.div_ceil(64)) {
        *w = 0;
    }
}

/// Portable kernels; the SIMD ones use them for the rows past the last full 64-row word.
pub(crate) mod scalar {
    use crate::schema::TypeId;

    /// `out` word `i` gets bit `j` set when `f(col[64 * i + j])`.
    #[inline]
    pub(crate) fn column(col: &[u64], f: impl Fn(u64) -> bool, out: &mut [u64]) {
        bits(col, |x| f(*x), out);
    }

    /// Rows whose type is in `types`.
    pub(crate) fn types(ids: &[TypeId], types: &[TypeId], out: &mut [u64]) {
        match types {
            [] => out
                .iter_mut()
                .take(ids.len().div_ceil(64))
                .for_each(|w| *w = 0),
            [a] => bits(ids, |t| t == a, out),
            [a, b] => bits(ids, |t| t == a || t == b, out),
            _ => bits(ids, |t| types.contains(t), out),
        }
    }

    /// Packs `f` of each element into bits, 64 to a word; full words use a fixed-size inner
    /// loop the compiler can unroll and vectorise.
    #[inline(always)]
    fn bits<T>(xs: &[T], f: impl Fn(&T) -> bool, out: &mut [u64]) {
        let mut words = out.iter_mut();
        let mut chunks = xs.chunks_exact(64);
        for (chunk, o) in chunks.by_ref().zip(words.by_ref()) {
            let mut w = 0u64;
            for (j, x) in chunk.iter().enumerate() {
                w |= u64::from(f(x)) << j;
            }
            *o = w;
        }
        let rest = chunks.remainder();
        if !rest.is_empty()
            && let Some(o) = words.next()
        {
            let mut w = 0u64;
            for (j, x) in rest.iter().enumerate() {
                w |= u64::from(f(x)) << j;
            }
            *o = w;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiler.

/// Rows where `e` evaluates to `Bool(true)`.
fn compile(e: &Expr) -> Tree {
    match e {
        Expr::Const(v) => Node::Const(v.is_true()),
        Expr::TypeIs(types) => {
            let mut t = types.clone();
            t.sort_unstable();
            t.dedup();
            Node::Types(t)
        }
        Expr::Field(f) if f.ty == FieldType::Bool => bool_field(f, true),
        // Values that are never booleans.
        Expr::Field(_) | Expr::Ts | Expr::Seq | Expr::Arith(..) | Expr::Neg(_) => {
            Node::Const(false)
        }
        Expr::And(l, r) => and(compile(l), compile(r)),
        Expr::Or(l, r) => or(compile(l), compile(r)),
        Expr::Not(x) => compile_false(x),
        Expr::InList { needle, list } => list
            .iter()
            .map(|item| compile_cmp(CmpOp::Eq, needle, item))
            .reduce(or)
            .unwrap_or(Node::Const(false)),
        Expr::Cmp(op, l, r) => compile_cmp(*op, l, r),
        // Not single-event; the builder rejects these before compiling.
        Expr::VarField { .. }
        | Expr::VarCount(_)
        | Expr::VarAgg { .. }
        | Expr::InVar { .. }
        | Expr::Prev { .. } => Node::Fallback(e.clone()),
    }
}

/// Rows where `e` evaluates to `Bool(false)` (what `not e` accepts).
fn compile_false(e: &Expr) -> Tree {
    match e {
        Expr::Const(v) => Node::Const(*v == Value::Bool(false)),
        Expr::Field(f) if f.ty == FieldType::Bool => bool_field(f, false),
        Expr::Field(_) | Expr::Ts | Expr::Seq | Expr::Arith(..) | Expr::Neg(_) => {
            Node::Const(false)
        }
        // Always a boolean: false exactly where not true.
        Expr::TypeIs(_)
        | Expr::And(..)
        | Expr::Or(..)
        | Expr::Not(_)
        | Expr::InList { .. }
        | Expr::Cmp(..)
        | Expr::InVar { .. } => not(compile(e)),
        Expr::VarField { .. } | Expr::VarCount(_) | Expr::VarAgg { .. } | Expr::Prev { .. } => {
            Node::Fallback(Expr::Not(Box::new(e.clone())))
        }
    }
}

/// `l and r`, each side narrowed to the types the other implies (see [`narrow`]).
fn and(l: Tree, r: Tree) -> Tree {
    // r' equals r wherever l can hold; l' equals l wherever r' can hold. So l' and r' hold
    // exactly where l and r do: outside implied(r') both r' and r are false, and inside it l'
    // is l.
    let r = match implied(&l) {
        Some(ctx) => narrow(r, &ctx),
        None => r,
    };
    let l = match implied(&r) {
        Some(ctx) => narrow(l, &ctx),
        None => l,
    };
    fold_and(l, r)
}

/// `l and r` with constants folded.
fn fold_and(l: Tree, r: Tree) -> Tree {
    match (l, r) {
        (Node::Const(false), _) | (_, Node::Const(false)) => Node::Const(false),
        (Node::Const(true), x) | (x, Node::Const(true)) => x,
        (l, r) => Node::And(Box::new(l), Box::new(r)),
    }
}

fn or(l: Tree, r: Tree) -> Tree {
    match (l, r) {
        (Node::Const(true), _) | (_, Node::Const(true)) => Node::Const(true),
        (Node::Const(false), x) | (x, Node::Const(false)) => x,
        (l, r) => Node::Or(Box::new(l), Box::new(r)),
    }
}

fn not(x: Tree) -> Tree {
    match x {
        Node::Const(b) => Node::Const(!b),
        Node::Not(x) => *x,
        x => Node::Not(Box::new(x)),
    }
}

/// The event types outside which `node` never holds (sorted), or `None` if it may hold for any.
fn implied(node: &Tree) -> Option<Vec<TypeId>> {
    match node {
        Node::Const(false) => Some(Vec::new()),
        Node::Types(types)
        | Node::Leaf {
            types: Some(types), ..
        } => Some(types.clone()),
        Node::And(l, r) => match (implied(l), implied(r)) {
            (Some(a), Some(b)) => Some(intersect(&a, &b)),
            (a, b) => a.or(b),
        },
        Node::Or(l, r) => {
            let (a, b) = (implied(l)?, implied(r)?);
            let mut u = [a, b].concat();
            u.sort_unstable();
            u.dedup();
            Some(u)
        }
        Node::Const(true) | Node::Leaf { types: None, .. } | Node::Not(_) | Node::Fallback(_) => {
            None
        }
    }
}

/// Elements of both sorted lists.
fn intersect(a: &[TypeId], b: &[TypeId]) -> Vec<TypeId> {
    a.iter()
        .filter(|t| b.binary_search(t).is_ok())
        .copied()
        .collect()
}

/// `node` for rows of the types in `ctx` (sorted) only: the result equals `node` on every row
/// whose type is in `ctx` and is arbitrary elsewhere. Type sets shrink to their part in `ctx`;
/// one that covers `ctx` is dropped (a leaf then tests every row), one disjoint from it is false.
fn narrow(node: Tree, ctx: &[TypeId]) -> Tree {
    match node {
        Node::Types(types) => {
            let kept = intersect(&types, ctx);
            if kept.is_empty() {
                Node::Const(false)
            } else if kept.len() == ctx.len() {
                Node::Const(true)
            } else {
                Node::Types(kept)
            }
        }
        Node::Leaf {
            column,
            types: Some(types),
            test,
        } => {
            let kept = intersect(&types, ctx);
            if kept.is_empty() {
                Node::Const(false)
            } else {
                let types = (kept.len() < ctx.len()).then_some(kept);
                Node::Leaf {
                    column,
                    types,
                    test,
                }
            }
        }
        Node::And(l, r) => fold_and(narrow(*l, ctx), narrow(*r, ctx)),
        Node::Or(l, r) => or(narrow(*l, ctx), narrow(*r, ctx)),
        Node::Not(x) => not(narrow(*x, ctx)),
        Node::Const(_) | Node::Leaf { types: None, .. } | Node::Fallback(_) => node,
    }
}

/// Replaces the type lists of `node` by indices into `sets`, adding the lists not there yet.
fn intern(node: Tree, sets: &mut Vec<Vec<TypeId>>) -> Kernel {
    let mut set = |types: Vec<TypeId>| {
        TypeSet(match sets.iter().position(|s| *s == types) {
            Some(i) => i,
            None => {
                sets.push(types);
                sets.len() - 1
            }
        })
    };
    match node {
        Node::Const(b) => Node::Const(b),
        Node::Types(types) => Node::Types(set(types)),
        Node::Leaf {
            column,
            types,
            test,
        } => Node::Leaf {
            column,
            types: types.map(set),
            test,
        },
        Node::And(l, r) => Node::And(Box::new(intern(*l, sets)), Box::new(intern(*r, sets))),
        Node::Or(l, r) => Node::Or(Box::new(intern(*l, sets)), Box::new(intern(*r, sets))),
        Node::Not(x) => Node::Not(Box::new(intern(*x, sets))),
        Node::Fallback(e) => Node::Fallback(e),
    }
}

/// A boolean field is `want`: present and `(raw != 0) == want`.
fn bool_field(f: &FieldAccess, want: bool) -> Tree {
    let test = if want {
        // raw != 0: unsigned raw outside [0, 0].
        int_test(u64::MAX, true, 0, 0, false)
    } else {
        int_test(u64::MAX, true, 0, 0, true)
    };
    field_leaf(f, test)
}

/// An `IntTest` over unsigned (`unsigned`) or signed values `lo..=hi` given as i128.
fn int_test(mask: u64, unsigned: bool, lo: i128, hi: i128, inside: bool) -> Test {
    let flip = if unsigned { 1u64 << 63 } else { 0 };
    let conv = |v: i128| -> i64 {
        if unsigned {
            // `v` is within u64 here; flipping the sign bit maps unsigned order to signed.
            ((v as u64) ^ flip) as i64
        } else {
            v as i64
        }
    };
    if lo > hi {
        // Empty range: inside never holds.
        return if inside {
            Test::Int(IntTest {
                mask,
                flip,
                lo: 1,
                hi: 0,
                inside: true,
            })
        } else {
            Test::All
        };
    }
    Test::Int(IntTest {
        mask,
        flip,
        lo: conv(lo),
        hi: conv(hi),
        inside,
    })
}

/// A test on a field: for every slot the field uses, the rows of the types that put it there.
fn field_leaf(f: &FieldAccess, test: Test) -> Tree {
    let mut by_slot: Vec<(u8, Vec<TypeId>)> = Vec::new();
    for (t, s) in f.slots.iter().enumerate() {
        let (Some(s), Ok(t)) = (s, TypeId::try_from(t)) else {
            continue;
        };
        match by_slot.iter_mut().find(|(x, _)| x == s) {
            Some((_, ts)) => ts.push(t),
            None => by_slot.push((*s, vec![t])),
        }
    }
    by_slot
        .into_iter()
        .map(|(s, types)| Node::Leaf {
            column: Column::Slot(s as usize),
            types: Some(types),
            test,
        })
        .reduce(or)
        .unwrap_or(Node::Const(false))
}

/// `l op r`.
fn compile_cmp(op: CmpOp, l: &Expr, r: &Expr) -> Tree {
    let fallback = || Node::Fallback(Expr::Cmp(op, Box::new(l.clone()), Box::new(r.clone())));
    match (l, r) {
        (Expr::Const(a), Expr::Const(b)) => Node::Const(op.apply(*a, *b).is_true()),
        (x, Expr::Const(c)) => column_cmp(op, x, *c).unwrap_or_else(fallback),
        (Expr::Const(c), x) => column_cmp(swap(op), x, *c).unwrap_or_else(fallback),
        _ => fallback(),
    }
}

/// `c op x` is `x swap(op) c`.
fn swap(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Eq => CmpOp::Eq,
        CmpOp::Ne => CmpOp::Ne,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
    }
}

/// `x op c` for a column `x` (field, `ts`, `seq`); `None` if `x` is not a column.
fn column_cmp(op: CmpOp, x: &Expr, c: Value) -> Option<Tree> {
    let (ty, column) = match x {
        Expr::Field(f) => (f.ty, None),
        Expr::Ts => (FieldType::I64, Some(Column::Ts)),
        Expr::Seq => (FieldType::U64, Some(Column::Seq)),
        _ => return None,
    };
    let test = match value_test(op, ty, c) {
        None => return Some(Node::Const(false)),
        Some(t) => t,
    };
    Some(match (x, column) {
        (Expr::Field(f), _) => field_leaf(f, test),
        (_, Some(column)) => Node::Leaf {
            column,
            types: None,
            test,
        },
        // `column` is set for every non-field arm above.
        _ => return None,
    })
}

/// The test on a raw slot of type `ty` equivalent to `Value::from_slot(ty, raw) op c`, or
/// `None` if no slot value passes.
fn value_test(op: CmpOp, ty: FieldType, c: Value) -> Option<Test> {
    match ty {
        FieldType::F64 => {
            let c = match c {
                Value::F64(c) => c,
                Value::I64(c) => c as f64,
                Value::U64(c) => c as f64,
                _ => return None,
            };
            if c.is_nan() {
                return None;
            }
            Some(Test::Float(FloatTest { op, c }))
        }
        FieldType::Bool => {
            let f = op.apply(Value::Bool(false), c).is_true();
            let t = op.apply(Value::Bool(true), c).is_true();
            match (f, t) {
                (false, false) => None,
                (true, true) => Some(Test::All),
                // raw == 0 / raw != 0
                (true, false) => Some(int_test(u64::MAX, true, 0, 0, true)),
                (false, true) => Some(int_test(u64::MAX, true, 0, 0, false)),
            }
        }
        FieldType::I64 | FieldType::Ts => range_test(
            op,
            c,
            u64::MAX,
            false,
            i64::MIN as i128,
            i64::MAX as i128,
            |v| Value::I64(v as i64),
        ),
        FieldType::U64 => range_test(op, c, u64::MAX, true, 0, u64::MAX as i128, |v| {
            Value::U64(v as u64)
        }),
        FieldType::Sym => range_test(op, c, u32::MAX as u64, true, 0, u32::MAX as i128, |v| {
            Value::Sym(v as u32)
        }),
        FieldType::Enum(_) => range_test(op, c, u32::MAX as u64, true, 0, u32::MAX as i128, |v| {
            Value::Enum(v as u32)
        }),
    }
}

/// For a field whose value `val(v)` is monotone in `v` over `min..=max`: the range test
/// equivalent to `val(v) op c`. Thresholds are found by binary search with [`Value::compare`]
/// itself, so rounding in mixed integer/float comparisons matches exactly.
fn range_test(
    op: CmpOp,
    c: Value,
    mask: u64,
    unsigned: bool,
    min: i128,
    max: i128,
    val: impl Fn(i128) -> Value,
) -> Option<Test> {
    // Incomparable (Null, NaN, another kind): every comparison is false. For these kinds
    // comparability does not depend on the value, so one probe decides.
    val(min).compare(c)?;
    // Smallest v with pred(v), or max + 1; pred must be monotone (false..true).
    let first = |pred: &dyn Fn(i128) -> bool| {
        let (mut lo, mut hi) = (min, max + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    };
    let ge = first(&|v| val(v).compare(c) != Some(Ordering::Less));
    let gt = first(&|v| val(v).compare(c) == Some(Ordering::Greater));
    let t = |lo, hi, inside| Some(int_test(mask, unsigned, lo, hi, inside));
    match op {
        CmpOp::Ge => t(ge, max, true),
        CmpOp::Gt => t(gt, max, true),
        CmpOp::Lt => t(min, ge - 1, true),
        CmpOp::Le => t(min, gt - 1, true),
        CmpOp::Eq => t(ge, gt - 1, true),
        CmpOp::Ne => t(ge, gt - 1, false),
    }
}

#[cfg(test)]
mod tests;
