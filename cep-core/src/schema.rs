//! Event schemas: typed fields, small enums and the [`Catalog`] of every event type in a stream.
//!
//! Input: declarations (from `.cep` files, tape headers or generators). Output: a catalog that maps
//! type and field names to dense ids and value slots; events, tapes and compiled rules refer to it.
//!
//! Every field occupies one 64-bit slot of an event record; slot `i` of an event is field `i` of
//! its type. Encodings are documented on [`FieldType`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Dense id of an event type within a [`Catalog`].
pub type TypeId = u16;
/// Dense id of an enum within a [`Catalog`].
pub type EnumId = u16;

/// Most fields an event type may have (one 64-bit slot each).
pub const MAX_FIELDS: usize = 48;

/// The type of a field and how its value is stored in a 64-bit slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldType {
    /// Signed integer, two's complement.
    I64,
    /// Unsigned integer.
    U64,
    /// IEEE-754 double, stored as its bit pattern. Prices are `f64` in currency units.
    F64,
    /// 0 or 1.
    Bool,
    /// Interned string: a `u32` symbol id.
    Sym,
    /// Timestamp: nanoseconds since the UNIX epoch (i64).
    Ts,
    /// Variant index of a small enum declared in the catalog.
    Enum(EnumId),
}

impl FieldType {
    /// True for numeric types usable in arithmetic.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::I64 | Self::U64 | Self::F64 | Self::Ts)
    }
}

/// A small enum such as `side { buy, sell }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumDef {
    /// Name used in declarations.
    pub name: String,
    /// Variants in index order.
    pub variants: Vec<String>,
}

/// One field of an event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// Field name.
    pub name: String,
    /// Field type.
    pub ty: FieldType,
}

/// An event type: a name and its fields in slot order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventType {
    /// Type name.
    pub name: String,
    /// Fields; field `i` lives in slot `i`.
    pub fields: Vec<FieldDef>,
}

impl EventType {
    /// Slot index of the field called `name`.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// Errors building a catalog.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SchemaError {
    /// Two types or enums share a name.
    #[error("`{0}` is declared twice")]
    Duplicate(String),
    /// A field name repeats within a type.
    #[error("field `{field}` appears twice in `{ty}`")]
    DuplicateField {
        /// Type name.
        ty: String,
        /// Field name.
        field: String,
    },
    /// Too many fields.
    #[error("`{ty}` has {count} fields; at most {MAX_FIELDS} are supported")]
    TooManyFields {
        /// Type name.
        ty: String,
        /// Field count.
        count: usize,
    },
    /// Too many types.
    #[error("at most 65535 event types are supported")]
    TooManyTypes,
    /// Reserved field name.
    #[error("field name `{0}` is reserved (every event has it)")]
    ReservedField(String),
}

/// Name of the built-in enum for order and trade sides.
pub const SIDE_ENUM: &str = "side";

/// Every event type and enum of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    enums: Vec<EnumDef>,
    types: Vec<EventType>,
    /// Types that queries derive (their outputs), not read from a stream; absent when empty so
    /// that stream catalogs serialize as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    derived: Vec<TypeId>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// A catalog holding only the built-in enum `side { buy, sell }` (enum id 0).
    pub fn new() -> Self {
        Self {
            enums: vec![EnumDef {
                name: SIDE_ENUM.into(),
                variants: vec!["buy".into(), "sell".into()],
            }],
            types: Vec::new(),
            derived: Vec::new(),
        }
    }

    /// Adds an enum; returns its id.
    pub fn add_enum(&mut self, name: &str, variants: &[&str]) -> Result<EnumId, SchemaError> {
        if self.enum_by_name(name).is_some() {
            return Err(SchemaError::Duplicate(name.into()));
        }
        self.enums.push(EnumDef {
            name: name.into(),
            variants: variants.iter().map(|v| (*v).to_owned()).collect(),
        });
        Ok((self.enums.len() - 1) as EnumId)
    }

    /// Adds an event type; returns its id.
    pub fn add_type(
        &mut self,
        name: &str,
        fields: &[(&str, FieldType)],
    ) -> Result<TypeId, SchemaError> {
        if self.type_by_name(name).is_some() {
            return Err(SchemaError::Duplicate(name.into()));
        }
        if self.types.len() >= u16::MAX as usize {
            return Err(SchemaError::TooManyTypes);
        }
        if fields.len() > MAX_FIELDS {
            return Err(SchemaError::TooManyFields {
                ty: name.into(),
                count: fields.len(),
            });
        }
        for (i, (f, _)) in fields.iter().enumerate() {
            if RESERVED_FIELDS.contains(f) {
                return Err(SchemaError::ReservedField((*f).into()));
            }
            if fields[..i].iter().any(|(g, _)| g == f) {
                return Err(SchemaError::DuplicateField {
                    ty: name.into(),
                    field: (*f).into(),
                });
            }
        }
        self.types.push(EventType {
            name: name.into(),
            fields: fields
                .iter()
                .map(|(n, t)| FieldDef {
                    name: (*n).into(),
                    ty: *t,
                })
                .collect(),
        });
        Ok((self.types.len() - 1) as TypeId)
    }

    /// Adds the output type of a windowed query (see [`Catalog::is_derived`]); returns its id.
    pub fn add_derived_type(
        &mut self,
        name: &str,
        fields: &[(&str, FieldType)],
    ) -> Result<TypeId, SchemaError> {
        let id = self.add_type(name, fields)?;
        self.derived.push(id);
        Ok(id)
    }

    /// True if events of this type are derived by a query rather than read from the stream.
    pub fn is_derived(&self, id: TypeId) -> bool {
        self.derived.contains(&id)
    }

    /// All event types in id order.
    pub fn types(&self) -> &[EventType] {
        &self.types
    }

    /// All enums in id order.
    pub fn enums(&self) -> &[EnumDef] {
        &self.enums
    }

    /// The type with this id.
    pub fn event_type(&self, id: TypeId) -> Option<&EventType> {
        self.types.get(id as usize)
    }

    /// The id of the type called `name`.
    pub fn type_by_name(&self, name: &str) -> Option<TypeId> {
        self.types
            .iter()
            .position(|t| t.name == name)
            .map(|i| i as TypeId)
    }

    /// The id of the enum called `name`.
    pub fn enum_by_name(&self, name: &str) -> Option<EnumId> {
        self.enums
            .iter()
            .position(|e| e.name == name)
            .map(|i| i as EnumId)
    }

    /// The enum with this id.
    pub fn enum_def(&self, id: EnumId) -> Option<&EnumDef> {
        self.enums.get(id as usize)
    }

    /// Slots every record needs: the largest field count over all types.
    pub fn slot_count(&self) -> usize {
        self.types.iter().map(|t| t.fields.len()).max().unwrap_or(0)
    }

    /// Parses a field type name (`i64 u64 f64 bool sym ts` or an enum name such as `side`).
    pub fn field_type(&self, name: &str) -> Option<FieldType> {
        Some(match name {
            "i64" => FieldType::I64,
            "u64" => FieldType::U64,
            "f64" => FieldType::F64,
            "bool" => FieldType::Bool,
            "sym" => FieldType::Sym,
            "ts" => FieldType::Ts,
            other => FieldType::Enum(self.enum_by_name(other)?),
        })
    }

    /// The name of a field type as written in declarations.
    pub fn type_name(&self, ty: FieldType) -> String {
        match ty {
            FieldType::I64 => "i64".into(),
            FieldType::U64 => "u64".into(),
            FieldType::F64 => "f64".into(),
            FieldType::Bool => "bool".into(),
            FieldType::Sym => "sym".into(),
            FieldType::Ts => "ts".into(),
            FieldType::Enum(e) => self
                .enum_def(e)
                .map_or_else(|| format!("enum#{e}"), |d| d.name.clone()),
        }
    }
}

/// Names every event has implicitly: `ts` (event time, ns) and `seq` (tape sequence number).
pub const RESERVED_FIELDS: &[&str] = &["ts", "seq"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_assigns_dense_ids_and_rejects_duplicates() {
        let mut c = Catalog::new();
        let t = c
            .add_type(
                "Trade",
                &[("price", FieldType::F64), ("side", FieldType::Enum(0))],
            )
            .unwrap();
        assert_eq!(t, 0);
        assert_eq!(
            c.add_type("Trade", &[]),
            Err(SchemaError::Duplicate("Trade".into()))
        );
        assert!(matches!(
            c.add_type("X", &[("a", FieldType::I64), ("a", FieldType::I64)]),
            Err(SchemaError::DuplicateField { .. })
        ));
        assert_eq!(
            c.add_type("Y", &[("ts", FieldType::I64)]),
            Err(SchemaError::ReservedField("ts".into()))
        );
        assert_eq!(c.slot_count(), 2);
        assert_eq!(c.field_type("side"), Some(FieldType::Enum(0)));
        assert_eq!(c.field_type("nope"), None);
        assert_eq!(c.event_type(0).unwrap().slot("side"), Some(1));
    }

    #[test]
    fn derived_types_are_marked() {
        let mut c = Catalog::new();
        let t = c.add_type("Trade", &[("price", FieldType::F64)]).unwrap();
        let bar = c
            .add_derived_type("bar", &[("close", FieldType::F64)])
            .unwrap();
        assert_eq!(bar, 1);
        assert!(!c.is_derived(t));
        assert!(c.is_derived(bar));
        assert_eq!(
            c.add_derived_type("Trade", &[]),
            Err(SchemaError::Duplicate("Trade".into()))
        );
    }
}
