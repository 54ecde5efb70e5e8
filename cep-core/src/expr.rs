//! Compiled conditions and emit expressions.
//!
//! Input: typed expressions produced by the rule compiler (`pattern-lang`), with every name already
//! resolved to slots and variable ids. Output: a [`Value`] for one event and one partial match,
//! through [`Expr::eval`]. Used by the matchers (define conditions) and by signal emission.

use crate::event::EventView;
use crate::schema::{FieldType, TypeId};
use crate::value::{ArithOp, Value, arith};

/// Index of a pattern variable in its [`crate::nfa::Nfa`].
pub type VarId = u16;

/// A field resolved per event type: `slots[type_id]` is the slot holding the field in events of
/// that type, or `None` if the type lacks it (the field then reads as `Null`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldAccess {
    /// Field name, for display.
    pub name: String,
    /// Field type (the same in every type that has the field).
    pub ty: FieldType,
    /// Slot by type id.
    pub slots: Vec<Option<u8>>,
}

impl FieldAccess {
    /// Reads the field from an event.
    #[inline]
    pub fn read(&self, e: &EventView<'_>) -> Value {
        match self.slots.get(e.type_id as usize).copied().flatten() {
            Some(s) => Value::from_slot(self.ty, e.slot(s as usize)),
            None => Value::Null,
        }
    }

    /// Reads the raw slot (for keys); `None` if the type lacks the field.
    #[inline]
    pub fn read_raw(&self, e: &EventView<'_>) -> Option<u64> {
        self.slots
            .get(e.type_id as usize)
            .copied()
            .flatten()
            .map(|s| e.slot(s as usize))
    }
}

/// Which event of a variable's bound events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// `first(v)`
    First,
    /// `last(v)` (also plain `v.field`)
    Last,
    /// `v[i]`, 0-based
    Index(u32),
}

/// Aggregates over a variable's bound events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// Sum of the argument.
    Sum,
    /// Mean of the argument.
    Avg,
    /// Minimum of the argument.
    Min,
    /// Maximum of the argument.
    Max,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// Compares two values; a comparison involving Null (or mismatched kinds) is false.
    pub fn apply(self, l: Value, r: Value) -> Value {
        use std::cmp::Ordering::*;
        let Some(ord) = l.compare(r) else {
            return Value::Bool(false);
        };
        Value::Bool(match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
        })
    }
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Const(Value),
    /// A field of the current event.
    Field(FieldAccess),
    /// The current event's time (ns).
    Ts,
    /// The current event's sequence number.
    Seq,
    /// True if the current event's type is one of these.
    TypeIs(Vec<TypeId>),
    /// A field of one of a variable's bound events; `None` field means its `ts`.
    VarField {
        /// Variable.
        var: VarId,
        /// Which bound event.
        pick: Pick,
        /// Field, or `None` for the event time.
        field: Option<FieldAccess>,
    },
    /// Number of events bound to a variable.
    VarCount(VarId),
    /// An aggregate of `arg`, evaluated with each bound event of `var` as the current event.
    VarAgg {
        /// Function.
        func: AggFunc,
        /// Variable.
        var: VarId,
        /// Argument, evaluated per bound event.
        arg: Box<Expr>,
    },
    /// `needle in v.field`: true if any bound event of `var` has `field == needle`.
    InVar {
        /// Left side.
        needle: Box<Expr>,
        /// Variable.
        var: VarId,
        /// Field of the variable's events.
        field: FieldAccess,
    },
    /// `needle in (a, b, ...)`.
    InList {
        /// Left side.
        needle: Box<Expr>,
        /// Candidates.
        list: Vec<Expr>,
    },
    /// `prev(field, n)`: the field of the n-th previous event of the partition (n >= 1).
    Prev {
        /// Field.
        field: FieldAccess,
        /// Distance back.
        n: u32,
    },
    /// Arithmetic.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// Numeric negation.
    Neg(Box<Expr>),
    /// Comparison.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// Boolean and (short-circuit; Null counts as false).
    And(Box<Expr>, Box<Expr>),
    /// Boolean or.
    Or(Box<Expr>, Box<Expr>),
    /// Boolean not (`not Null` is false).
    Not(Box<Expr>),
}

/// What an expression can see: the current event, the events bound so far to each variable of
/// the partial match, and earlier events of the partition.
pub trait Bindings {
    /// The event being tested (or, in emit expressions, the match's last event).
    fn current(&self) -> EventView<'_>;
    /// Number of events bound to `var`.
    fn var_len(&self, var: VarId) -> usize;
    /// The `i`-th event bound to `var` (0-based, `i < var_len`).
    fn var_event(&self, var: VarId, i: usize) -> Option<EventView<'_>>;
    /// The `n`-th event before the current one in the partition (n >= 1).
    fn prev(&self, n: u32) -> Option<EventView<'_>>;
}

/// The current event alone as [`Bindings`]: no pattern variables, no earlier events. What
/// single-event conditions (prefilters, kernels' fallback rows) and window queries see.
#[derive(Debug, Clone, Copy)]
pub struct CurrentEvent<'a>(pub EventView<'a>);

impl Bindings for CurrentEvent<'_> {
    fn current(&self) -> EventView<'_> {
        self.0
    }
    fn var_len(&self, _var: VarId) -> usize {
        0
    }
    fn var_event(&self, _var: VarId, _i: usize) -> Option<EventView<'_>> {
        None
    }
    fn prev(&self, _n: u32) -> Option<EventView<'_>> {
        None
    }
}

/// Bindings that replace the current event (used to evaluate aggregate arguments per event).
struct WithCurrent<'a, 'b> {
    inner: &'a dyn Bindings,
    current: EventView<'b>,
}

impl Bindings for WithCurrent<'_, '_> {
    fn current(&self) -> EventView<'_> {
        self.current
    }
    fn var_len(&self, var: VarId) -> usize {
        self.inner.var_len(var)
    }
    fn var_event(&self, var: VarId, i: usize) -> Option<EventView<'_>> {
        self.inner.var_event(var, i)
    }
    fn prev(&self, n: u32) -> Option<EventView<'_>> {
        self.inner.prev(n)
    }
}

impl Expr {
    /// Evaluates against `b`.
    pub fn eval(&self, b: &dyn Bindings) -> Value {
        match self {
            Expr::Const(v) => *v,
            Expr::Field(f) => f.read(&b.current()),
            Expr::Ts => Value::I64(b.current().ts),
            Expr::Seq => Value::U64(b.current().seq),
            Expr::TypeIs(types) => Value::Bool(types.contains(&b.current().type_id)),
            Expr::VarField { var, pick, field } => {
                let n = b.var_len(*var);
                let i = match pick {
                    Pick::First => 0,
                    Pick::Last => n.wrapping_sub(1),
                    Pick::Index(i) => *i as usize,
                };
                if i >= n {
                    return Value::Null;
                }
                match b.var_event(*var, i) {
                    Some(e) => match field {
                        Some(f) => f.read(&e),
                        None => Value::I64(e.ts),
                    },
                    None => Value::Null,
                }
            }
            Expr::VarCount(var) => Value::I64(b.var_len(*var) as i64),
            Expr::VarAgg { func, var, arg } => {
                let n = b.var_len(*var);
                let mut acc = Value::Null;
                let mut count = 0u64;
                for i in 0..n {
                    let Some(e) = b.var_event(*var, i) else {
                        continue;
                    };
                    let v = arg.eval(&WithCurrent {
                        inner: b,
                        current: e,
                    });
                    if v == Value::Null {
                        continue;
                    }
                    count += 1;
                    acc = match (func, acc) {
                        (_, Value::Null) => v,
                        (AggFunc::Sum | AggFunc::Avg, a) => arith(ArithOp::Add, a, v),
                        (AggFunc::Min, a) => {
                            if v.compare(a) == Some(std::cmp::Ordering::Less) {
                                v
                            } else {
                                a
                            }
                        }
                        (AggFunc::Max, a) => {
                            if v.compare(a) == Some(std::cmp::Ordering::Greater) {
                                v
                            } else {
                                a
                            }
                        }
                    };
                }
                match func {
                    AggFunc::Avg if count > 0 => arith(ArithOp::Div, acc, Value::I64(count as i64)),
                    AggFunc::Sum if count == 0 => Value::I64(0),
                    _ => acc,
                }
            }
            Expr::InVar { needle, var, field } => {
                let x = needle.eval(b);
                let n = b.var_len(*var);
                Value::Bool((0..n).any(|i| {
                    b.var_event(*var, i)
                        .is_some_and(|e| field.read(&e).equals(x))
                }))
            }
            Expr::InList { needle, list } => {
                let x = needle.eval(b);
                Value::Bool(list.iter().any(|e| e.eval(b).equals(x)))
            }
            Expr::Prev { field, n } => match b.prev(*n) {
                Some(e) => field.read(&e),
                None => Value::Null,
            },
            Expr::Arith(op, l, r) => arith(*op, l.eval(b), r.eval(b)),
            Expr::Neg(x) => crate::value::negate(x.eval(b)),
            Expr::Cmp(op, l, r) => op.apply(l.eval(b), r.eval(b)),
            Expr::And(l, r) => Value::Bool(l.eval(b).is_true() && r.eval(b).is_true()),
            Expr::Or(l, r) => Value::Bool(l.eval(b).is_true() || r.eval(b).is_true()),
            Expr::Not(x) => crate::value::not(x.eval(b)),
        }
    }

    /// True if the expression reads only the current event (no variables, no `prev`): it can
    /// then be evaluated for an event in isolation, e.g. by a columnar kernel.
    pub fn is_single_event(&self) -> bool {
        match self {
            Expr::Const(_) | Expr::Field(_) | Expr::Ts | Expr::Seq | Expr::TypeIs(_) => true,
            Expr::VarField { .. }
            | Expr::VarCount(_)
            | Expr::VarAgg { .. }
            | Expr::InVar { .. }
            | Expr::Prev { .. } => false,
            Expr::InList { needle, list } => {
                needle.is_single_event() && list.iter().all(Expr::is_single_event)
            }
            Expr::Arith(_, l, r) | Expr::Cmp(_, l, r) | Expr::And(l, r) | Expr::Or(l, r) => {
                l.is_single_event() && r.is_single_event()
            }
            Expr::Neg(x) | Expr::Not(x) => x.is_single_event(),
        }
    }

    /// The largest `n` of any `prev(_, n)` inside (0 if none).
    pub fn max_prev(&self) -> u32 {
        match self {
            Expr::Prev { n, .. } => *n,
            Expr::VarAgg { arg, .. } => arg.max_prev(),
            Expr::InVar { needle, .. } | Expr::Neg(needle) | Expr::Not(needle) => needle.max_prev(),
            Expr::InList { needle, list } => list
                .iter()
                .map(Expr::max_prev)
                .fold(needle.max_prev(), u32::max),
            Expr::Arith(_, l, r) | Expr::Cmp(_, l, r) | Expr::And(l, r) | Expr::Or(l, r) => {
                l.max_prev().max(r.max_prev())
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One<'a>(EventView<'a>, Vec<Vec<EventView<'a>>>);
    impl Bindings for One<'_> {
        fn current(&self) -> EventView<'_> {
            self.0
        }
        fn var_len(&self, var: VarId) -> usize {
            self.1.get(var as usize).map_or(0, Vec::len)
        }
        fn var_event(&self, var: VarId, i: usize) -> Option<EventView<'_>> {
            self.1.get(var as usize)?.get(i).copied()
        }
        fn prev(&self, _n: u32) -> Option<EventView<'_>> {
            None
        }
    }

    fn qty() -> FieldAccess {
        FieldAccess {
            name: "qty".into(),
            ty: FieldType::F64,
            slots: vec![Some(0), None],
        }
    }

    #[test]
    fn evaluates_fields_aggregates_and_nulls() {
        let s1 = [2.0f64.to_bits()];
        let s2 = [4.0f64.to_bits()];
        let e1 = EventView {
            seq: 1,
            ts: 10,
            type_id: 0,
            slots: &s1,
        };
        let e2 = EventView {
            seq: 2,
            ts: 20,
            type_id: 0,
            slots: &s2,
        };
        let other = EventView {
            seq: 3,
            ts: 30,
            type_id: 1,
            slots: &s2,
        };
        let b = One(e2, vec![vec![e1, e2]]);
        let avg = Expr::VarAgg {
            func: AggFunc::Avg,
            var: 0,
            arg: Box::new(Expr::Field(qty())),
        };
        assert_eq!(avg.eval(&b), Value::F64(3.0));
        let max = Expr::VarAgg {
            func: AggFunc::Max,
            var: 0,
            arg: Box::new(Expr::Field(qty())),
        };
        assert_eq!(max.eval(&b), Value::F64(4.0));
        assert_eq!(Expr::VarCount(0).eval(&b), Value::I64(2));
        let first = Expr::VarField {
            var: 0,
            pick: Pick::First,
            field: Some(qty()),
        };
        assert_eq!(first.eval(&b), Value::F64(2.0));
        let out_of_range = Expr::VarField {
            var: 0,
            pick: Pick::Index(5),
            field: Some(qty()),
        };
        assert_eq!(out_of_range.eval(&b), Value::Null);
        // A type without the field reads Null, and comparisons with Null are false both ways.
        let b2 = One(other, vec![]);
        let gt = Expr::Cmp(
            CmpOp::Gt,
            Box::new(Expr::Field(qty())),
            Box::new(Expr::Const(Value::I64(0))),
        );
        assert_eq!(gt.eval(&b2), Value::Bool(false));
        assert_eq!(Expr::Not(Box::new(gt.clone())).eval(&b2), Value::Bool(true));
        assert!(gt.is_single_event());
        assert!(!avg.is_single_event());
    }
}

/// Renders expressions as rule-language text (for `strix explain`).
#[derive(Debug, Clone, Copy)]
pub struct ExprDisplay<'a> {
    /// Variable names by id.
    pub vars: &'a [String],
    /// Symbol names, to show interned literals as strings.
    pub symbols: Option<&'a crate::symbol::SymbolTable>,
    /// Catalog, to show type tests and enum variants by name.
    pub catalog: Option<&'a crate::schema::Catalog>,
}

impl ExprDisplay<'_> {
    fn var(&self, v: VarId) -> String {
        self.vars
            .get(v as usize)
            .cloned()
            .unwrap_or_else(|| format!("var#{v}"))
    }

    pub(crate) fn value(&self, v: Value, hint: Option<FieldType>) -> String {
        match (v, hint) {
            (Value::Sym(s), _) => match self.symbols.and_then(|t| t.name(s)) {
                Some(n) => format!("{n:?}"),
                None => format!("sym#{s}"),
            },
            (Value::Enum(i), Some(FieldType::Enum(e))) => {
                match self
                    .catalog
                    .and_then(|c| c.enum_def(e))
                    .and_then(|d| d.variants.get(i as usize))
                {
                    Some(n) => format!("{n:?}"),
                    None => format!("variant#{i}"),
                }
            }
            (Value::Enum(i), _) => format!("variant#{i}"),
            (Value::Null, _) => "null".into(),
            (Value::I64(x), _) => x.to_string(),
            (Value::U64(x), _) => x.to_string(),
            (Value::F64(x), _) => format!("{x:?}"),
            (Value::Bool(b), _) => b.to_string(),
        }
    }

    pub(crate) fn hint(e: &Expr) -> Option<FieldType> {
        match e {
            Expr::Field(f) | Expr::Prev { field: f, .. } | Expr::InVar { field: f, .. } => {
                Some(f.ty)
            }
            Expr::VarField { field: Some(f), .. } => Some(f.ty),
            _ => None,
        }
    }

    /// Renders `e`.
    pub fn render(&self, e: &Expr) -> String {
        self.render_hinted(e, None)
    }

    fn render_hinted(&self, e: &Expr, hint: Option<FieldType>) -> String {
        let bin = |op: &str, l: &Expr, r: &Expr| {
            let h = Self::hint(l).or(Self::hint(r));
            format!(
                "({} {op} {})",
                self.render_hinted(l, h),
                self.render_hinted(r, h)
            )
        };
        match e {
            Expr::Const(v) => self.value(*v, hint),
            Expr::Field(f) => f.name.clone(),
            Expr::Ts => "ts".into(),
            Expr::Seq => "seq".into(),
            Expr::TypeIs(types) => {
                let names: Vec<String> = types
                    .iter()
                    .map(|t| {
                        self.catalog
                            .and_then(|c| c.event_type(*t))
                            .map_or_else(|| format!("type#{t}"), |t| t.name.clone())
                    })
                    .collect();
                if names.len() == 1 {
                    names[0].clone()
                } else {
                    format!("({})", names.join(" or "))
                }
            }
            Expr::VarField { var, pick, field } => {
                let f = field.as_ref().map_or("ts", |f| f.name.as_str());
                match pick {
                    Pick::First => format!("first({}).{f}", self.var(*var)),
                    Pick::Last => format!("last({}).{f}", self.var(*var)),
                    Pick::Index(i) => format!("{}[{i}].{f}", self.var(*var)),
                }
            }
            Expr::VarCount(v) => format!("count({})", self.var(*v)),
            Expr::VarAgg { func, var, arg } => {
                let f = match func {
                    AggFunc::Sum => "sum",
                    AggFunc::Avg => "avg",
                    AggFunc::Min => "min",
                    AggFunc::Max => "max",
                };
                format!("{f}({} over {})", self.render(arg), self.var(*var))
            }
            Expr::InVar { needle, var, field } => {
                format!(
                    "({} in {}.{})",
                    self.render(needle),
                    self.var(*var),
                    field.name
                )
            }
            Expr::InList { needle, list } => {
                let h = Self::hint(needle);
                let items: Vec<String> = list.iter().map(|x| self.render_hinted(x, h)).collect();
                format!("({} in ({}))", self.render(needle), items.join(", "))
            }
            Expr::Prev { field, n } => format!("prev({}, {n})", field.name),
            Expr::Arith(op, l, r) => {
                let s = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                    ArithOp::Rem => "%",
                };
                bin(s, l, r)
            }
            Expr::Neg(x) => format!("-{}", self.render(x)),
            Expr::Cmp(op, l, r) => {
                let s = match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                bin(s, l, r)
            }
            Expr::And(l, r) => format!("{} and {}", self.render(l), self.render(r)),
            Expr::Or(l, r) => format!("({} or {})", self.render(l), self.render(r)),
            Expr::Not(x) => format!("not {}", self.render(x)),
        }
    }
}
