//! Runtime values: what a field slot decodes to and what conditions compute.
//!
//! Arithmetic: `+ - *` on two integers stay integer (wrapping i64); anything involving an `f64`,
//! and every `/`, is computed in `f64`. Comparisons between integers are exact. Any operation with
//! [`Value::Null`] yields `Null`, and a condition that is `Null` counts as false (SQL-style).

use std::cmp::Ordering;

use crate::schema::FieldType;

/// A decoded or computed value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Missing: a field the event's type lacks, `prev` past the start of the partition, an
    /// aggregate over no events, a division by zero.
    Null,
    /// Signed integer (also timestamps and durations, in ns).
    I64(i64),
    /// Unsigned integer.
    U64(u64),
    /// Double.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// Interned string id.
    Sym(u32),
    /// Enum variant index.
    Enum(u32),
}

impl Value {
    /// Decodes a slot according to its field type.
    #[inline]
    pub fn from_slot(ty: FieldType, raw: u64) -> Self {
        match ty {
            FieldType::I64 | FieldType::Ts => Self::I64(raw as i64),
            FieldType::U64 => Self::U64(raw),
            FieldType::F64 => Self::F64(f64::from_bits(raw)),
            FieldType::Bool => Self::Bool(raw != 0),
            FieldType::Sym => Self::Sym(raw as u32),
            FieldType::Enum(_) => Self::Enum(raw as u32),
        }
    }

    /// Encodes into a slot (the inverse of [`Value::from_slot`]); `Null` encodes as 0.
    #[inline]
    pub fn to_slot(self) -> u64 {
        match self {
            Self::Null => 0,
            Self::I64(v) => v as u64,
            Self::U64(v) => v,
            Self::F64(v) => v.to_bits(),
            Self::Bool(b) => u64::from(b),
            Self::Sym(s) | Self::Enum(s) => u64::from(s),
        }
    }

    /// The value as `f64`, for numeric values.
    #[inline]
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Self::I64(v) => Some(v as f64),
            Self::U64(v) => Some(v as f64),
            Self::F64(v) => Some(v),
            _ => None,
        }
    }

    /// True only for `Bool(true)`.
    #[inline]
    pub fn is_true(self) -> bool {
        matches!(self, Self::Bool(true))
    }

    /// Total comparison for values of compatible types; `None` when incomparable (Null, NaN,
    /// mismatched kinds).
    pub fn compare(self, other: Self) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (I64(a), I64(b)) => Some(a.cmp(&b)),
            (U64(a), U64(b)) => Some(a.cmp(&b)),
            (I64(a), U64(b)) => Some(if a < 0 {
                Ordering::Less
            } else {
                (a as u64).cmp(&b)
            }),
            (U64(a), I64(b)) => Some(if b < 0 {
                Ordering::Greater
            } else {
                a.cmp(&(b as u64))
            }),
            (Bool(a), Bool(b)) => Some(a.cmp(&b)),
            (Sym(a), Sym(b)) | (Enum(a), Enum(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }

    /// Equality as conditions see it (`Null` equals nothing).
    pub fn equals(self, other: Self) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }
}

/// Binary arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always f64)
    Div,
    /// `%`
    Rem,
}

/// Unary minus: integers wrap, a `u64` beyond `i64` becomes `f64`, anything else is Null.
pub fn negate(v: Value) -> Value {
    match v {
        Value::I64(v) => Value::I64(v.wrapping_neg()),
        Value::U64(v) => i64::try_from(v).map_or(Value::F64(-(v as f64)), |v| Value::I64(-v)),
        Value::F64(v) => Value::F64(-v),
        _ => Value::Null,
    }
}

/// Boolean `not`; `not` of Null (or a non-boolean) is false, like a comparison with Null.
pub fn not(v: Value) -> Value {
    match v {
        Value::Bool(v) => Value::Bool(!v),
        _ => Value::Bool(false),
    }
}

/// Applies arithmetic with the promotion rules of this module.
pub fn arith(op: ArithOp, a: Value, b: Value) -> Value {
    use Value::*;
    let int = |x: Value| match x {
        I64(v) => Some(v),
        U64(v) => i64::try_from(v).ok(),
        _ => None,
    };
    if op != ArithOp::Div
        && !matches!(a, F64(_))
        && !matches!(b, F64(_))
        && let (Some(x), Some(y)) = (int(a), int(b))
    {
        return match op {
            ArithOp::Add => I64(x.wrapping_add(y)),
            ArithOp::Sub => I64(x.wrapping_sub(y)),
            ArithOp::Mul => I64(x.wrapping_mul(y)),
            ArithOp::Rem => {
                if y == 0 {
                    Null
                } else {
                    I64(x.wrapping_rem(y))
                }
            }
            ArithOp::Div => Null,
        };
    }
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return Null;
    };
    match op {
        ArithOp::Add => F64(x + y),
        ArithOp::Sub => F64(x - y),
        ArithOp::Mul => F64(x * y),
        ArithOp::Div | ArithOp::Rem if y == 0.0 => Null,
        ArithOp::Div => F64(x / y),
        ArithOp::Rem => F64(x % y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_and_nulls() {
        assert_eq!(
            arith(ArithOp::Add, Value::I64(2), Value::U64(3)),
            Value::I64(5)
        );
        assert_eq!(
            arith(ArithOp::Div, Value::I64(3), Value::I64(2)),
            Value::F64(1.5)
        );
        assert_eq!(
            arith(ArithOp::Mul, Value::F64(1.5), Value::I64(2)),
            Value::F64(3.0)
        );
        assert_eq!(
            arith(ArithOp::Div, Value::F64(1.0), Value::I64(0)),
            Value::Null
        );
        assert_eq!(arith(ArithOp::Add, Value::Null, Value::I64(0)), Value::Null);
        assert!(Value::I64(-1).compare(Value::U64(0)) == Some(Ordering::Less));
        assert!(!Value::Null.equals(Value::Null));
        assert!(Value::F64(2.0).equals(Value::I64(2)));
        assert_eq!(
            Value::from_slot(FieldType::F64, Value::F64(-2.5).to_slot()),
            Value::F64(-2.5)
        );
    }
}
