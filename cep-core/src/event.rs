//! Events: one owned row type ([`Event`]), a borrowed row view ([`EventView`]) and the
//! struct-of-arrays [`EventBatch`] that decoders fill and matchers consume.
//!
//! Input: decoded feed records. Output: batches in sequence order. Next stage: a matcher.
//!
//! Every event has a tape sequence number `seq`, an event time `ts` (ns since the UNIX epoch), a
//! type id, optional ground-truth labels (`class`: label class id, 0 = none; `instance`: id of the
//! injected instance, 0 = none) and one 64-bit slot per field of its type (see
//! [`crate::schema::FieldType`] for encodings). Slots past the type's field count are 0.

use crate::schema::TypeId;

/// Ground-truth label of an event (generated tapes, labelled data sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Label {
    /// Label class id (index into the tape's label names; 0 = unlabelled).
    pub class: u16,
    /// Injected-instance id (0 = none). Events of one instance share it.
    pub instance: u32,
}

/// An owned event row.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Tape sequence number.
    pub seq: u64,
    /// Event time, ns since the UNIX epoch.
    pub ts: i64,
    /// Event type id.
    pub type_id: TypeId,
    /// Ground truth.
    pub label: Label,
    /// Field slots in field order.
    pub slots: Vec<u64>,
}

impl Event {
    /// A borrowed view of this event.
    pub fn view(&self) -> EventView<'_> {
        EventView {
            seq: self.seq,
            ts: self.ts,
            type_id: self.type_id,
            slots: &self.slots,
        }
    }
}

/// A borrowed event row; slots are contiguous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventView<'a> {
    /// Tape sequence number.
    pub seq: u64,
    /// Event time, ns.
    pub ts: i64,
    /// Event type id.
    pub type_id: TypeId,
    /// Field slots.
    pub slots: &'a [u64],
}

impl EventView<'_> {
    /// Slot `i`, or 0 past the end.
    #[inline]
    pub fn slot(&self, i: usize) -> u64 {
        self.slots.get(i).copied().unwrap_or(0)
    }
}

/// Struct-of-arrays events: one column per header field and per slot, so the same columns feed
/// row-at-a-time matchers, SIMD kernels and GPU buffers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventBatch {
    seq: Vec<u64>,
    ts: Vec<i64>,
    type_id: Vec<TypeId>,
    class: Vec<u16>,
    instance: Vec<u32>,
    slots: Vec<Vec<u64>>,
}

impl EventBatch {
    /// An empty batch with `slot_count` slot columns.
    pub fn new(slot_count: usize) -> Self {
        Self {
            slots: vec![Vec::new(); slot_count],
            ..Self::default()
        }
    }

    /// An empty batch with room for `capacity` rows.
    pub fn with_capacity(slot_count: usize, capacity: usize) -> Self {
        Self {
            seq: Vec::with_capacity(capacity),
            ts: Vec::with_capacity(capacity),
            type_id: Vec::with_capacity(capacity),
            class: Vec::with_capacity(capacity),
            instance: Vec::with_capacity(capacity),
            slots: (0..slot_count)
                .map(|_| Vec::with_capacity(capacity))
                .collect(),
        }
    }

    /// Number of rows.
    #[inline]
    pub fn len(&self) -> usize {
        self.seq.len()
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// Number of slot columns.
    #[inline]
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Removes all rows, keeping capacity.
    pub fn clear(&mut self) {
        self.seq.clear();
        self.ts.clear();
        self.type_id.clear();
        self.class.clear();
        self.instance.clear();
        for c in &mut self.slots {
            c.clear();
        }
    }

    /// Appends a row. Missing slots are 0; extra slots beyond the batch's columns are ignored.
    pub fn push(&mut self, seq: u64, ts: i64, type_id: TypeId, label: Label, slots: &[u64]) {
        self.seq.push(seq);
        self.ts.push(ts);
        self.type_id.push(type_id);
        self.class.push(label.class);
        self.instance.push(label.instance);
        for (i, col) in self.slots.iter_mut().enumerate() {
            col.push(slots.get(i).copied().unwrap_or(0));
        }
    }

    /// Appends rows `rows` of `src`, column by column. Slot columns missing from `src` are 0;
    /// columns of `src` beyond this batch's are ignored (as in [`EventBatch::push`]). A range
    /// reaching past `src`'s rows is cut at its end.
    pub fn extend_from_rows(&mut self, src: &EventBatch, rows: std::ops::Range<usize>) {
        let end = rows.end.min(src.len());
        let start = rows.start.min(end);
        let n = end - start;
        self.seq.extend_from_slice(&src.seq[start..end]);
        self.ts.extend_from_slice(&src.ts[start..end]);
        self.type_id.extend_from_slice(&src.type_id[start..end]);
        self.class.extend_from_slice(&src.class[start..end]);
        self.instance.extend_from_slice(&src.instance[start..end]);
        for (i, col) in self.slots.iter_mut().enumerate() {
            match src.slots.get(i) {
                Some(from) => col.extend_from_slice(&from[start..end]),
                None => col.resize(col.len() + n, 0),
            }
        }
    }

    /// Appends an owned event.
    pub fn push_event(&mut self, e: &Event) {
        self.push(e.seq, e.ts, e.type_id, e.label, &e.slots);
    }

    /// Sequence numbers.
    pub fn seq(&self) -> &[u64] {
        &self.seq
    }
    /// Event times.
    pub fn ts(&self) -> &[i64] {
        &self.ts
    }
    /// Type ids.
    pub fn type_ids(&self) -> &[TypeId] {
        &self.type_id
    }
    /// Label classes.
    pub fn classes(&self) -> &[u16] {
        &self.class
    }
    /// Label instances.
    pub fn instances(&self) -> &[u32] {
        &self.instance
    }
    /// Slot column `i`.
    pub fn slot_column(&self, i: usize) -> &[u64] {
        &self.slots[i]
    }

    /// The label of row `row`.
    pub fn label(&self, row: usize) -> Label {
        Label {
            class: self.class[row],
            instance: self.instance[row],
        }
    }

    /// Copies row `row`'s slots into `out` (resized to the slot count).
    #[inline]
    pub fn copy_slots(&self, row: usize, out: &mut Vec<u64>) {
        out.clear();
        out.extend(self.slots.iter().map(|c| c[row]));
    }

    /// Row `row` as an owned event.
    pub fn event(&self, row: usize) -> Event {
        let mut slots = Vec::with_capacity(self.slots.len());
        self.copy_slots(row, &mut slots);
        Event {
            seq: self.seq[row],
            ts: self.ts[row],
            type_id: self.type_id[row],
            label: self.label(row),
            slots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_from_rows_copies_a_range_of_rows() {
        let mut src = EventBatch::new(2);
        for i in 0..5u64 {
            src.push(
                i,
                i as i64 * 10,
                (i % 2) as TypeId,
                Label {
                    class: i as u16,
                    instance: i as u32 + 100,
                },
                &[i, i * i],
            );
        }
        let mut dst = EventBatch::new(2);
        dst.push_event(&src.event(4));
        dst.extend_from_rows(&src, 1..3);
        dst.extend_from_rows(&src, 4..9);
        let rows: Vec<Event> = (0..dst.len()).map(|r| dst.event(r)).collect();
        let want: Vec<Event> = [4, 1, 2, 4].iter().map(|&r| src.event(r)).collect();
        assert_eq!(rows, want);
        // Fewer slot columns in the source: the missing ones are zero.
        let mut wide = EventBatch::new(3);
        wide.extend_from_rows(&src, 3..4);
        assert_eq!(wide.event(0).slots, vec![3, 9, 0]);
        let mut narrow = EventBatch::new(1);
        narrow.extend_from_rows(&src, 2..3);
        assert_eq!(narrow.event(0).slots, vec![2]);
    }

    #[test]
    fn batch_round_trips_rows() {
        let mut b = EventBatch::new(2);
        b.push(
            7,
            100,
            1,
            Label {
                class: 2,
                instance: 9,
            },
            &[5],
        );
        b.push(8, 101, 0, Label::default(), &[1, 2, 3]);
        assert_eq!(b.len(), 2);
        let e = b.event(0);
        assert_eq!(
            (e.seq, e.ts, e.type_id, e.slots.clone()),
            (7, 100, 1, vec![5, 0])
        );
        assert_eq!(
            e.label,
            Label {
                class: 2,
                instance: 9
            }
        );
        assert_eq!(b.event(1).slots, vec![1, 2]);
        assert_eq!(e.view().slot(5), 0);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.slot_count(), 2);
    }
}
