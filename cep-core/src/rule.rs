//! A compiled rule: which events it reads, how they are partitioned, its automaton and what it
//! emits. Produced by the rule compiler (`pattern-lang`) or by hand; consumed by matchers.

use crate::event::EventView;
use crate::expr::{Expr, FieldAccess};
use crate::nfa::Nfa;
use crate::query::Query;
use crate::schema::{Catalog, FieldType, TypeId};

/// Most fields in a `partition by`.
pub const MAX_KEY_FIELDS: usize = 4;

/// A partition key: the raw slots of the `partition by` fields (unused entries 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PartitionKey(pub [u64; MAX_KEY_FIELDS]);

/// One emitted field.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitField {
    /// Field name in the signal.
    pub name: String,
    /// Value, evaluated with the match's last event as the current event.
    pub expr: Expr,
    /// Declared type when the value is a field value (renders symbols and enum variants by name);
    /// `None` for computed numbers and booleans.
    pub ty: Option<FieldType>,
}

/// What a rule emits for each match.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitSpec {
    /// Signal name.
    pub signal: String,
    /// Named fields in declaration order.
    pub fields: Vec<EmitField>,
}

/// One compiled pattern rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Rule name.
    pub name: String,
    /// Event types the rule reads (`from`); other events are invisible to it.
    pub from: Vec<TypeId>,
    /// `partition by` fields (resolved for every `from` type).
    pub partition_by: Vec<FieldAccess>,
    /// Automaton.
    pub nfa: Nfa,
    /// Emitted signal.
    pub emit: EmitSpec,
    /// `on timeout emit NAME { ... }`: the signal for partial matches that `within` expires.
    pub timeout: Option<EmitSpec>,
}

impl Rule {
    /// True if the rule reads events of this type.
    #[inline]
    pub fn reads(&self, type_id: TypeId) -> bool {
        self.from.contains(&type_id)
    }

    /// The partition key of an event the rule reads.
    #[inline]
    pub fn key_of(&self, e: &EventView<'_>) -> PartitionKey {
        let mut k = [0u64; MAX_KEY_FIELDS];
        for (slot, f) in k.iter_mut().zip(&self.partition_by) {
            *slot = f.read_raw(e).unwrap_or(0);
        }
        PartitionKey(k)
    }

    /// Largest `prev(_, n)` any condition or emit field uses.
    pub fn max_prev(&self) -> u32 {
        let conds = self.nfa.vars.iter().map(|v| v.condition.max_prev());
        let emits = self.emit.fields.iter().map(|f| f.expr.max_prev());
        conds.chain(emits).max().unwrap_or(0)
    }
}

/// Every rule of a rule file, compiled against one catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Event types and enums the rules were compiled against.
    pub catalog: Catalog,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Windowed queries in file order; a query reads only tape types and earlier queries' outputs.
    pub queries: Vec<Query>,
}
