//! The feed stage: tape blocks to batches of rows, as fast as possible or paced at a rate.
//!
//! Input: a tape ([`TapeReader`]), decoded block by block with [`TapeReader::read_block`].
//! Output: [`Batch`]es of at most `batch_rows` rows in tape order, each stamped with its ingest
//! time. Next stage: the shards (every shard gets every batch, shared through an `Arc`), or the
//! engine directly when the pipeline runs inline.
//!
//! Unpaced, rows are cut into full batches regardless of block boundaries and a batch's ingest
//! time is the decode time of the block its first row came from (its earliest row). Paced at
//! `rate` events per second, row `i` (counting from 0 over the whole replay) is due at
//! `start + i / rate`, `start` being the first call of [`Feed::next_batch`]; a batch holds only rows
//! already due and is handed on as soon as no further row is due (or it is full), so a slow
//! consumer delays rows past their due time but never their due time itself: latency measured
//! from it has no coordinated omission.
//!
//! Batches are recycled: a batch whose every holder has dropped it is cleared and refilled, so a
//! steady replay allocates no batches.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cep_core::event::EventBatch;
use feeds::tape::{TapeError, TapeReader};

use super::ring::Wait;

/// A batch of rows on its way through the pipeline.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Number of the batch, from 0.
    pub index: u64,
    /// Position of the batch's first row among all rows of the replay, from 0.
    pub first_event: u64,
    /// When the first row entered the pipeline: its block's decode time, or when paced its due
    /// time (later rows are due later, see [`Pacing::due_ns`]).
    pub ingest: Instant,
    /// The rows.
    pub rows: Arc<EventBatch>,
}

/// Offered load: row `i` is due `i / rate` seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Events per second (at least 1).
    pub rate: u64,
}

impl Pacing {
    /// Nanoseconds from the start until row `i` is due.
    #[inline]
    pub fn due_ns(&self, i: u64) -> u64 {
        let ns = u128::from(i) * 1_000_000_000 / u128::from(self.rate.max(1));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// How many rows are due `elapsed_ns` after the start: the rows `i` with
    /// `due_ns(i) <= elapsed_ns` (row 0 is due at once).
    #[inline]
    pub fn due_count(&self, elapsed_ns: u64) -> u64 {
        // floor(i * 1e9 / rate) <= e  <=>  i < (e + 1) * rate / 1e9.
        let n =
            ((u128::from(elapsed_ns) + 1) * u128::from(self.rate.max(1))).div_ceil(1_000_000_000);
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// Waits until `deadline`. [`Wait::Spin`]: sleeps while it is far and spins the last stretch,
/// for precision. [`Wait::Sleep`]: sleeps (and may oversleep by the timer's slack: rows then
/// wait in the feed and go out together, but the core is left to the stages that share it).
fn wait_until(deadline: Instant, wait: Wait) {
    const SPIN: Duration = Duration::from_micros(200);
    loop {
        let now = Instant::now();
        let Some(left) = deadline.checked_duration_since(now) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        match wait {
            Wait::Sleep => std::thread::sleep(left),
            Wait::Spin if left > SPIN => std::thread::sleep(left - SPIN / 2),
            Wait::Spin => std::hint::spin_loop(),
        }
    }
}

/// Cuts a tape into batches (see the module docs).
#[derive(Debug)]
pub struct Feed<'t> {
    tape: &'t TapeReader,
    batch_rows: usize,
    pacing: Option<Pacing>,
    wait: Wait,
    start: Option<Instant>,
    /// Next block to decode.
    next_block: usize,
    /// The decoded current block, its next unread row and its decode time.
    block: EventBatch,
    block_row: usize,
    block_time: Instant,
    /// Rows handed out so far, batches handed out so far.
    events: u64,
    batches: u64,
    /// Batches handed out, oldest first, kept to be refilled once nobody else holds them.
    recycle: VecDeque<Arc<EventBatch>>,
    recycle_limit: usize,
}

impl<'t> Feed<'t> {
    /// A feed of batches of at most `batch_rows` rows (at least 1), paced when `pacing` is given
    /// (waiting for due rows as `wait` says); at most `recycle_limit` handed-out batches are kept
    /// for reuse.
    pub fn new(
        tape: &'t TapeReader,
        batch_rows: usize,
        pacing: Option<Pacing>,
        wait: Wait,
        recycle_limit: usize,
    ) -> Self {
        Self {
            tape,
            batch_rows: batch_rows.max(1),
            pacing,
            wait,
            start: None,
            next_block: 0,
            block: EventBatch::new(tape.slot_count()),
            block_row: 0,
            block_time: Instant::now(),
            events: 0,
            batches: 0,
            recycle: VecDeque::new(),
            recycle_limit,
        }
    }

    /// Rows handed out so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// A cleared batch: the oldest handed-out one if nobody holds it any more, else a new one.
    fn fresh(&mut self) -> Arc<EventBatch> {
        let reusable = self
            .recycle
            .front()
            .is_some_and(|b| Arc::strong_count(b) == 1 && Arc::weak_count(b) == 0);
        let mut rows = match reusable.then(|| self.recycle.pop_front()).flatten() {
            Some(rows) => rows,
            // Grows to the rows it gets (paced batches stay small) and keeps that when reused.
            None => Arc::new(EventBatch::new(self.tape.slot_count())),
        };
        // Unique here (checked above, or just made), so this clears in place without cloning.
        Arc::make_mut(&mut rows).clear();
        rows
    }

    /// The next batch, `None` after the last row. Paced, waits until the next row is due.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, TapeError> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let mut rows = self.fresh();
        let first_event = self.events;
        let mut ingest = None;
        loop {
            if self.block_row >= self.block.len() {
                if self.next_block >= self.tape.block_count() {
                    break;
                }
                self.tape.read_block(self.next_block, &mut self.block)?;
                self.block_time = Instant::now();
                self.next_block += 1;
                self.block_row = 0;
                continue;
            }
            let have = rows.len();
            let mut take = (self.batch_rows - have).min(self.block.len() - self.block_row);
            if let Some(p) = self.pacing {
                let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let due = p.due_count(elapsed).saturating_sub(self.events);
                if due == 0 {
                    if have > 0 {
                        // Nothing more is due: hand on what is, do not hold it back.
                        break;
                    }
                    wait_until(
                        start + Duration::from_nanos(p.due_ns(self.events)),
                        self.wait,
                    );
                    continue;
                }
                take = take.min(usize::try_from(due).unwrap_or(usize::MAX));
            }
            if ingest.is_none() {
                ingest = Some(match self.pacing {
                    Some(p) => start + Duration::from_nanos(p.due_ns(self.events)),
                    None => self.block_time,
                });
            }
            Arc::make_mut(&mut rows)
                .extend_from_rows(&self.block, self.block_row..self.block_row + take);
            self.block_row += take;
            self.events += take as u64;
            if rows.len() == self.batch_rows {
                break;
            }
        }
        let Some(ingest) = ingest else {
            return Ok(None);
        };
        if self.recycle.len() >= self.recycle_limit {
            self.recycle.pop_front();
        }
        if self.recycle_limit > 0 {
            self.recycle.push_back(Arc::clone(&rows));
        }
        let batch = Batch {
            index: self.batches,
            first_event,
            ingest,
            rows,
        };
        self.batches += 1;
        Ok(Some(batch))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn pacing_spaces_rows_evenly() {
        let p = Pacing { rate: 1_000_000 };
        assert_eq!(p.due_ns(0), 0);
        assert_eq!(p.due_ns(1), 1_000);
        assert_eq!(p.due_ns(1_000_000), 1_000_000_000);
        assert_eq!(p.due_count(0), 1);
        assert_eq!(p.due_count(999), 1);
        assert_eq!(p.due_count(1_000), 2);
        let slow = Pacing { rate: 3 };
        assert_eq!(slow.due_ns(1), 333_333_333);
        assert_eq!(slow.due_count(333_333_332), 1);
        assert_eq!(slow.due_count(333_333_333), 2);
        for i in [0, 1, 2, 7, 1_000_001] {
            for p in [p, slow, Pacing { rate: 7_777 }] {
                assert_eq!(p.due_count(p.due_ns(i)), i + 1, "{p:?} row {i}");
                if p.due_ns(i) > 0 {
                    assert_eq!(p.due_count(p.due_ns(i) - 1), i, "{p:?} row {i}");
                }
            }
        }
        let fast = Pacing { rate: u64::MAX };
        assert_eq!(fast.due_ns(5), 0);
        assert_eq!(fast.due_count(u64::MAX), u64::MAX);
    }
}
