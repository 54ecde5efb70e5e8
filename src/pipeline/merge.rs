//! What a shard reports for one batch, and the deterministic merge of all shards' reports.
//!
//! Input: one [`ShardOutput`] per shard for the same batch (or for the end of the stream), each
//! holding its signals already rendered as JSON lines, in the order the shard emitted them, with
//! their order keys. Output: every signal line once, in ascending order key, ties kept in shard
//! emission order and then in shard order ([`merge`]). Next stage: the sink's writer.
//!
//! The order key is the engine's [`crate::SignalOrder`]: shards run the same control flow and
//! each emits in ascending order, so merging by it gives the unsharded engine's output whatever
//! the shard count. Rendering happens in the shard threads; the sink only copies bytes.

/// A signal as the sink sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalLine<'a, O> {
    /// Merge key.
    pub order: O,
    /// Index of the rule that emitted it.
    pub rule: usize,
    /// Matched sequence numbers (for scoring against labels).
    pub seq: &'a [u64],
    /// The rendered line, newline included.
    pub line: &'a [u8],
    /// The signal's model feature row, when the shard built one (`score using` rules).
    pub features: Option<&'a [f32]>,
}

#[derive(Debug, Clone, Copy)]
struct Entry<O> {
    order: O,
    rule: usize,
    line_end: usize,
    seq_end: usize,
    /// End of this signal's feature row in `features` (its start without one).
    features_end: usize,
    /// True when the shard built a feature row for it.
    scored: bool,
}

/// Signals of one shard for one batch, rendered, with their order keys; nothing is allocated
/// while there are none.
#[derive(Debug, Clone)]
pub struct SignalBuffer<O> {
    lines: Vec<u8>,
    seqs: Vec<u64>,
    features: Vec<f32>,
    entries: Vec<Entry<O>>,
    error: Option<String>,
}

impl<O> Default for SignalBuffer<O> {
    fn default() -> Self {
        Self {
            lines: Vec::new(),
            seqs: Vec::new(),
            features: Vec::new(),
            entries: Vec::new(),
            error: None,
        }
    }
}

impl<O: Copy> SignalBuffer<O> {
    /// Appends a signal: `render` writes its line (without the newline); the first rendering
    /// error is kept (see [`SignalBuffer::error`]) and the line is kept as far as it got.
    pub fn push<E: std::fmt::Display>(
        &mut self,
        order: O,
        rule: usize,
        seq: &[u64],
        render: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) {
        self.push_with_features(order, rule, seq, render, |_| false);
    }

    /// As [`SignalBuffer::push`], and `features` may append the signal's model feature row
    /// (returning true when it did), so the sink scores it without reading the line back.
    pub fn push_with_features<E: std::fmt::Display>(
        &mut self,
        order: O,
        rule: usize,
        seq: &[u64],
        render: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        features: impl FnOnce(&mut Vec<f32>) -> bool,
    ) {
        if let Err(e) = render(&mut self.lines) {
            self.error.get_or_insert_with(|| e.to_string());
        }
        self.lines.push(b'\n');
        self.seqs.extend_from_slice(seq);
        let scored = features(&mut self.features);
        self.entries.push(Entry {
            order,
            rule,
            line_end: self.lines.len(),
            seq_end: self.seqs.len(),
            features_end: self.features.len(),
            scored,
        });
    }

    /// Number of signals.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without signals.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first rendering error, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Signal `i` in emission order.
    fn get(&self, i: usize) -> Option<SignalLine<'_, O>> {
        let e = self.entries.get(i)?;
        let prev = i.checked_sub(1).and_then(|p| self.entries.get(p));
        let (line_start, seq_start, features_start) =
            prev.map_or((0, 0, 0), |p| (p.line_end, p.seq_end, p.features_end));
        Some(SignalLine {
            order: e.order,
            rule: e.rule,
            seq: self.seqs.get(seq_start..e.seq_end).unwrap_or(&[]),
            line: self.lines.get(line_start..e.line_end).unwrap_or(&[]),
            features: e
                .scored
                .then(|| self.features.get(features_start..e.features_end))
                .flatten(),
        })
    }

    /// The signals in emission order.
    pub fn iter(&self) -> impl Iterator<Item = SignalLine<'_, O>> {
        (0..self.entries.len()).filter_map(|i| self.get(i))
    }

    /// Removes every signal and the error, keeping capacity.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.seqs.clear();
        self.features.clear();
        self.entries.clear();
        self.error = None;
    }
}

/// What one shard reports for one batch (or for the end of the stream).
#[derive(Debug, Clone)]
pub struct ShardOutput<O> {
    /// Signals in emission order.
    pub signals: SignalBuffer<O>,
    /// Rows of the batch that were late (reported by one shard only).
    pub late: Vec<usize>,
}

impl<O> Default for ShardOutput<O> {
    fn default() -> Self {
        Self {
            signals: SignalBuffer::default(),
            late: Vec::new(),
        }
    }
}

impl<O: Copy> ShardOutput<O> {
    /// Removes everything, keeping capacity.
    pub fn clear(&mut self) {
        self.signals.clear();
        self.late.clear();
    }
}

/// Calls `f` with every signal of `outputs` in ascending order key; equal keys keep each
/// shard's emission order and then the order of `outputs`. Each shard's signals must already be
/// in ascending order (as the engine emits them).
pub fn merge<'a, O: Ord + Copy>(
    outputs: &'a [ShardOutput<O>],
    mut f: impl FnMut(SignalLine<'a, O>),
) {
    let mut busy = outputs.iter().filter(|o| !o.signals.is_empty());
    let (Some(first), None) = (busy.next(), busy.next()) else {
        merge_many(outputs, f);
        return;
    };
    // Common case: one shard (or none) has signals for this batch.
    for s in first.signals.iter() {
        f(s);
    }
}

fn merge_many<'a, O: Ord + Copy>(
    outputs: &'a [ShardOutput<O>],
    mut f: impl FnMut(SignalLine<'a, O>),
) {
    let mut cursors = vec![0usize; outputs.len()];
    loop {
        let mut best: Option<(usize, SignalLine<'a, O>)> = None;
        for (shard, (out, &at)) in outputs.iter().zip(&cursors).enumerate() {
            let Some(s) = out.signals.get(at) else {
                continue;
            };
            // Strictly smaller only: on ties the earlier shard wins.
            if best.as_ref().is_none_or(|(_, b)| s.order < b.order) {
                best = Some((shard, s));
            }
        }
        let Some((shard, s)) = best else {
            return;
        };
        cursors[shard] += 1;
        f(s);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn output(signals: &[(u32, &str)]) -> ShardOutput<u32> {
        let mut out = ShardOutput::default();
        for &(order, text) in signals {
            out.signals
                .push(order, order as usize % 3, &[u64::from(order)], |buf| {
                    buf.extend_from_slice(text.as_bytes());
                    Ok::<(), std::fmt::Error>(())
                });
        }
        out
    }

    fn merged(outputs: &[ShardOutput<u32>]) -> String {
        let mut s = Vec::new();
        merge(outputs, |l| s.extend_from_slice(l.line));
        String::from_utf8(s).expect("test lines are UTF-8")
    }

    #[test]
    fn lines_merge_by_order_with_ties_in_shard_then_emission_order() {
        let a = output(&[(1, "a1"), (4, "a4"), (4, "a4bis"), (9, "a9")]);
        let b = output(&[(2, "b2"), (4, "b4"), (10, "b10")]);
        let c = output(&[]);
        let d = output(&[(0, "d0")]);
        assert_eq!(
            merged(&[a, b, c, d]),
            "d0\na1\nb2\na4\na4bis\nb4\na9\nb10\n"
        );
    }

    #[test]
    fn one_busy_shard_passes_through_and_lines_carry_rule_and_seq() {
        let outs = [output(&[]), output(&[(5, "x"), (7, "y")]), output(&[])];
        assert_eq!(merged(&outs), "x\ny\n");
        let mut got = Vec::new();
        merge(&outs, |l| got.push((l.order, l.rule, l.seq.to_vec())));
        assert_eq!(got, vec![(5, 2, vec![5]), (7, 1, vec![7])]);
        assert_eq!(merged(&[output(&[]), output(&[])]), "");
        assert_eq!(merged(&[]), "");
    }

    #[test]
    fn feature_rows_travel_with_their_lines() {
        let mut out = ShardOutput::<u32>::default();
        let ok = |buf: &mut Vec<u8>| {
            buf.push(b'x');
            Ok::<(), std::fmt::Error>(())
        };
        out.signals.push_with_features(1, 0, &[1], ok, |row| {
            row.extend([1.0, 2.0]);
            true
        });
        out.signals.push(2, 0, &[2], ok);
        out.signals.push_with_features(3, 0, &[3], ok, |_| true);
        out.signals.push_with_features(4, 0, &[4], ok, |_| false);
        out.signals.push_with_features(5, 0, &[5], ok, |row| {
            row.push(5.0);
            true
        });
        let rows: Vec<Option<Vec<f32>>> = out
            .signals
            .iter()
            .map(|l| l.features.map(<[f32]>::to_vec))
            .collect();
        assert_eq!(
            rows,
            vec![
                Some(vec![1.0, 2.0]),
                None,
                Some(vec![]),
                None,
                Some(vec![5.0])
            ]
        );
        out.clear();
        out.signals.push(6, 0, &[6], ok);
        assert_eq!(out.signals.iter().next().and_then(|l| l.features), None);
    }

    #[test]
    fn a_rendering_error_is_kept_and_clear_resets() {
        let mut out = ShardOutput::<u32>::default();
        out.signals.push(1, 0, &[], |buf| {
            buf.extend_from_slice(b"{\"half");
            Err("no more room")
        });
        out.signals.push(2, 0, &[], |_| Err("second"));
        assert_eq!(out.signals.error(), Some("no more room"));
        assert_eq!(out.signals.len(), 2);
        out.late.push(3);
        out.clear();
        assert!(out.signals.is_empty() && out.late.is_empty());
        assert_eq!(out.signals.error(), None);
    }
}
