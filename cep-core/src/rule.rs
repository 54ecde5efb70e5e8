//! A compiled rule: which events it reads, how they are partitioned, its automaton and what it
//! emits. Produced by the rule compiler (`pattern-lang`) or by hand; consumed by matchers.

use crate::event::{EventBatch, EventView};
use crate::expr::{Expr, FieldAccess};
use crate::nfa::Nfa;
use crate::query::Query;
use crate::schema::{Catalog, FieldType, TypeId};

/// Most fields in a `partition by`.
pub const MAX_KEY_FIELDS: usize = 4;

/// A partition key: the raw slots of the `partition by` fields (unused entries 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct PartitionKey(pub [u64; MAX_KEY_FIELDS]);

impl std::hash::Hash for PartitionKey {
    /// One `write_u64` per slot (no length prefix, no byte slice), which word-at-a-time hashers
    /// such as the fast matcher's turn into a few multiplications.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for w in self.0 {
            state.write_u64(w);
        }
    }
}

impl PartitionKey {
    /// The shard (`0..count`) that owns this key: a stable hash of the key's slots modulo
    /// `count`, the same on every platform and in every run. `count` 0 or 1: always 0.
    #[inline]
    pub fn shard(&self, count: u32) -> u32 {
        if count <= 1 {
            return 0;
        }
        let mut h = 0x9e37_79b9_7f4a_7c15u64;
        for w in self.0 {
            h = mix64(h ^ w);
        }
        // The remainder is below `count`, a u32.
        (h % u64::from(count)) as u32
    }
}

/// The splitmix64 finalizer: a bijective mix of 64 bits.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One shard of a matcher's partition keys: shard `index` of `count` owns the keys with
/// [`PartitionKey::shard`]`(count) == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardSpec {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards (at least 1).
    pub count: u32,
}

impl ShardSpec {
    /// True if this shard owns `key`.
    #[inline]
    pub fn owns(&self, key: PartitionKey) -> bool {
        key.shard(self.count) == self.index
    }

    /// True if `index < count` (every key then has exactly one owner among the shards
    /// `0..count`).
    pub fn is_valid(&self) -> bool {
        self.index < self.count
    }
}

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
    /// `score EXPR` or `score using MODEL`, with an optional threshold (only on a rule's match
    /// emit, never on `on timeout emit` or a query's emit).
    pub score: Option<ScoreSpec>,
}

impl EmitSpec {
    /// The score expression, when the score is `score EXPR` (evaluated like an emit field).
    #[inline]
    pub fn score_expr(&self) -> Option<&Expr> {
        match &self.score {
            Some(ScoreSpec {
                source: ScoreSource::Expr(e),
                ..
            }) => Some(e),
            _ => None,
        }
    }

    /// Every expression a matcher evaluates for a signal: the fields, then the score expression.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.fields.iter().map(|f| &f.expr).chain(self.score_expr())
    }

    /// The signal score of a match: the score expression evaluated like an emit field (a number
    /// becomes `f64`, anything else `None`); `None` for a model score, which a scorer stage fills
    /// in later.
    #[inline]
    pub fn eval_score(&self, b: &dyn crate::expr::Bindings) -> Option<f64> {
        self.score_expr().and_then(|e| e.eval(b).as_f64())
    }
}

/// How a rule's signals are scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSpec {
    /// Where the score comes from.
    pub source: ScoreSource,
    /// `threshold X`: signals scoring below it are dropped by the scorer stage (matchers keep
    /// every signal and never apply it).
    pub threshold: Option<f64>,
}

/// The source of a signal's score.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreSource {
    /// `score EXPR`: a numeric expression over the match, computed by the matcher.
    Expr(Expr),
    /// `score using MODEL`: a model applied to the emit fields by a scorer stage.
    Model(ModelRef),
}

/// A model named by `score using NAME` or `score using "path/model.json"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The name or path as written (without quotes).
    pub name: String,
    /// True when written as a string literal (a path, relative to the rules file); false for a
    /// bare name (looked up in a models directory).
    pub is_path: bool,
    /// 1-based line of the model reference in the rules file.
    pub line: u32,
    /// 1-based column (in chars) of the model reference.
    pub col: u32,
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

    /// Per type id (up to the largest the rule reads): whether the rule reads it; a lookup
    /// table for the per-event `from` check.
    pub fn read_table(&self) -> Vec<bool> {
        let mut reads = Vec::new();
        for &t in &self.from {
            let i = usize::from(t);
            if reads.len() <= i {
                reads.resize(i + 1, false);
            }
            reads[i] = true;
        }
        reads
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

    /// The partition key of row `row` of `batch` (an event the rule reads), read from the slot
    /// columns: the same key as [`Self::key_of`] of the row's event.
    #[inline]
    pub fn key_of_row(&self, batch: &EventBatch, row: usize) -> PartitionKey {
        let type_id = batch.type_ids()[row];
        let mut k = [0u64; MAX_KEY_FIELDS];
        for (slot, f) in k.iter_mut().zip(&self.partition_by) {
            *slot = match f.slots.get(usize::from(type_id)).copied().flatten() {
                // A slot past the batch's columns reads as 0, as `EventView::slot` does.
                Some(s) if usize::from(s) < batch.slot_count() => {
                    batch.slot_column(usize::from(s))[row]
                }
                Some(_) | None => 0,
            };
        }
        PartitionKey(k)
    }

    /// Largest `prev(_, n)` any condition or emit field uses.
    pub fn max_prev(&self) -> u32 {
        let conds = self.nfa.vars.iter().map(|v| v.condition.max_prev());
        let emits = self.emit.exprs().map(Expr::max_prev);
        conds.chain(emits).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        let k = PartitionKey([7, 0, 0, 0]);
        // Fixed values: the hash must not change between builds or platforms.
        assert_eq!(k.shard(1), 0);
        assert_eq!(k.shard(0), 0);
        let counts: Vec<u32> = (1..=8).map(|c| k.shard(c)).collect();
        assert_eq!(counts, [0, 0, 0, 2, 4, 0, 0, 2]);
        let first: Vec<u32> = (0..8u64)
            .map(|i| PartitionKey([i, 0, 0, 0]).shard(4))
            .collect();
        assert_eq!(first, [0, 3, 2, 2, 0, 0, 2, 2]);
        let mut per_shard = [0u32; 4];
        for i in 0..4000u64 {
            let s = PartitionKey([i, 0, 0, 0]).shard(4);
            assert!(s < 4);
            per_shard[s as usize] += 1;
        }
        // Consecutive ids spread over every shard.
        assert!(per_shard.iter().all(|&n| n > 800), "{per_shard:?}");
        let spec = ShardSpec { index: 2, count: 4 };
        assert!(spec.is_valid());
        assert!(!ShardSpec { index: 4, count: 4 }.is_valid());
        assert_eq!(spec.owns(k), k.shard(4) == 2);
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
