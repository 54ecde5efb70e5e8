//! Signals: what a rule reports for a match.
//!
//! Input: a completed match from a matcher. Output: a [`Signal`] with the matched events' tape
//! sequence numbers, evaluated emit fields and a stable id. Next stage: a sink (JSON Lines writer,
//! callback, scorer).

use crate::rule::PartitionKey;
use crate::value::Value;

/// Which emit of a rule produced a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignalKind {
    /// A completed match (`emit`).
    #[default]
    Match,
    /// A partial match that `within` expired (`on timeout emit`).
    Timeout,
}

/// One signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Match or timed-out partial match.
    pub kind: SignalKind,
    /// Index of the rule in its [`crate::rule::Program`].
    pub rule: usize,
    /// Event time of the match's last event (ns).
    pub ts: i64,
    /// Partition key of the match.
    pub key: PartitionKey,
    /// Sequence numbers of the matched events in match order (ascending unless the input was
    /// reordered by event time).
    pub seq: Vec<u64>,
    /// Emit fields in declaration order.
    pub fields: Vec<Value>,
    /// The signal's score: set by the matcher for `score EXPR` (a number; `None` when the
    /// expression is `Null` or not a number), by a scorer stage for `score using MODEL`, `None`
    /// for a rule without a score clause. No threshold is applied here.
    pub score: Option<f64>,
    /// Where the signal stands among those of one matcher call: `(i64::MIN, 0)` when emitted
    /// while an event was processed; `(deadline, tie-break)` of the timer entry that fired it
    /// when emitted by a watermark (the tie-break is the start position of the partition's first
    /// run due at that deadline); `(i64::MIN, smallest run start position)` of its partition in
    /// the final phase of the end of stream. A matcher emits each call's signals in ascending
    /// order, and equal orders come from one partition, which lets outputs of shards (disjoint
    /// key sets) merge deterministically.
    pub order: (i64, u64),
}

impl Signal {
    /// A stable id from the rule name, the rendered key and the matched sequence numbers: the same
    /// match on the same tape always gets the same id, whatever the matcher or shard count.
    pub fn stable_id(rule_name: &str, key: &str, seq: &[u64]) -> u64 {
        let mut buf = Vec::with_capacity(rule_name.len() + key.len() + 2 + seq.len() * 8);
        buf.extend_from_slice(rule_name.as_bytes());
        buf.push(0);
        buf.extend_from_slice(key.as_bytes());
        buf.push(0);
        for s in seq {
            buf.extend_from_slice(&s.to_le_bytes());
        }
        xxhash_rust::xxh3::xxh3_64(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_id_depends_on_every_part() {
        let a = Signal::stable_id("r", "k", &[1, 2]);
        assert_eq!(a, Signal::stable_id("r", "k", &[1, 2]));
        assert_ne!(a, Signal::stable_id("r", "k", &[1, 3]));
        assert_ne!(a, Signal::stable_id("r", "k2", &[1, 2]));
        assert_ne!(a, Signal::stable_id("r2", "k", &[1, 2]));
    }
}
