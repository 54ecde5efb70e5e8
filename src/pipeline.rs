//! The sharded replay pipeline: feed thread -> rings -> shard threads -> rings -> sink thread.
//!
//! ```text
//! tape --feed (decode, cut, pace)--> Batch (Arc) --ring per shard--> shard i: Worker::process
//!   --ShardOutput (rendered signals, order keys)--> ring per shard --> sink: merge by order key,
//!   write, score, record latency
//! ```
//!
//! - **Feed** ([`feed`]): input a tape; output [`Batch`]es of `batch_rows` rows, every batch sent
//!   to every shard (an `Arc`, not a copy). Paced by [`PipelineConfig::rate`] when given.
//! - **Shards**: input batches; each shard owns a [`Worker`] (in `strix replay` an
//!   [`crate::Engine`] that processes only the partition keys it owns) and outputs one
//!   [`ShardOutput`] per batch, then one for the end of the stream.
//! - **Sink**: input, per batch, one output from every shard; it releases a batch only when
//!   every shard has reported it, merges the signals by order key ([`merge::merge`]) and hands
//!   them to a [`Sink`]. Output: whatever the sink writes, plus the end-to-end latency of every
//!   event: from its ingest time (decode time, or its due time when paced) to the moment the
//!   sink holds every shard's result for it.
//!
//! Rings ([`ring`]) are `rtrb` SPSC ring buffers; a full ring blocks the sender (backpressure:
//! nothing is dropped) and waiting stages spin with `crossbeam_utils::Backoff`. When the machine
//! has a core for every stage thread (feed, each shard, sink), each is pinned to its own core
//! with `core_affinity` (unless turned off) and keeps spinning when idle; otherwise nothing is
//! pinned and idle stages sleep in short steps, so they leave the cores to the busy ones. The
//! calling thread only reports progress. [`run_inline`] runs the same feed, worker and sink on
//! the calling thread with no other thread and no ring.
//!
//! Determinism: every shard sees every batch in the same order, and the sink writes a batch's
//! signals only once every shard has finished that batch, merged by order key with ties kept in
//! shard order. So the output does not depend on thread timing, and with the engine's
//! `SignalOrder` it does not depend on the shard count or batch size either.
//!
//! The ring layer has loom tests (see [`ring`]):
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib pipeline::ring`.

pub mod feed;
pub mod merge;
pub mod ring;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cep_core::event::EventBatch;
use feeds::tape::{TapeError, TapeReader};
use hdrhistogram::Histogram;

pub use self::feed::{Batch, Feed, Pacing};
pub use self::merge::{ShardOutput, SignalBuffer, SignalLine};
use self::ring::{Receiver, Sender, Wait};

/// The work of one shard: turns batches into rendered signals.
pub trait Worker: Send {
    /// Merge key of the signals (ascending within one shard's output).
    type Order: Ord + Copy + Send;
    /// Processes every row of `rows`, in order, appending to `out`.
    fn process(&mut self, rows: &EventBatch, out: &mut ShardOutput<Self::Order>);
    /// Ends the stream (flushes what is pending), appending to `out`.
    fn finish(&mut self, out: &mut ShardOutput<Self::Order>);
}

/// Where merged results go: called in batch order, on one thread.
pub trait Sink<O> {
    /// Error of the sink (writing failed).
    type Error;
    /// Every shard has reported `batch`: `outputs[i]` is shard `i`'s output for it.
    fn batch(&mut self, batch: &Batch, outputs: &[ShardOutput<O>]) -> Result<(), Self::Error>;
    /// The end of the stream: `outputs[i]` is shard `i`'s final output.
    fn finish(&mut self, outputs: &[ShardOutput<O>]) -> Result<(), Self::Error>;
}

/// How to run a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Rows per batch message (at least 1).
    pub batch_rows: usize,
    /// Offered load in events per second; `None`: as fast as possible.
    pub rate: Option<u64>,
    /// Messages per ring (at least 1).
    pub ring_capacity: usize,
    /// Pin stage threads to cores when there is a core for each.
    pub pin: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_rows: 1024,
            rate: None,
            ring_capacity: default_ring_capacity(1024, false),
            pin: true,
        }
    }
}

/// Default messages per ring for `batch_rows`-row batches: room for about 64Ki rows, between
/// 16 and 4096 messages; paced batches hold only the rows due at once, so they get 4096.
pub fn default_ring_capacity(batch_rows: usize, paced: bool) -> usize {
    if paced {
        return 4096;
    }
    (65_536 / batch_rows.max(1)).clamp(16, 4096)
}

/// Errors of a pipeline run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError<E: std::error::Error + 'static> {
    /// Reading the tape failed.
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// The sink failed.
    #[error(transparent)]
    Sink(E),
    /// A stage thread panicked (a bug); the run stopped.
    #[error("the {0} thread of the pipeline panicked")]
    Panicked(&'static str),
    /// A stage stopped without reaching the end of the stream (follows one of the above).
    #[error("the pipeline stopped before the end of the stream")]
    Stopped,
}

/// Where the stage threads ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Every stage thread was pinned to a core of its own.
    pub pinned: bool,
    /// How idle stages waited.
    pub wait: Wait,
    /// What was done and why, in words.
    pub note: String,
}

/// Results of a pipeline run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Events replayed.
    pub events: u64,
    /// Batches sent.
    pub batches: u64,
    /// From the first batch to the end of the sink's work.
    pub elapsed: Duration,
    /// End-to-end latency per event, ns.
    pub latency: Histogram<u64>,
    /// Sends that found a ring full and waited (feed to shards, shards to sink).
    pub full_waits: u64,
    /// Where the threads ran.
    pub placement: Placement,
}

/// Records end-to-end latency per event from batch stamps (one clock read per batch).
#[derive(Debug)]
pub struct LatencyRecorder {
    hist: Histogram<u64>,
    pacing: Option<Pacing>,
}

impl LatencyRecorder {
    /// A recorder for batches stamped by a feed paced by `pacing` (or unpaced).
    pub fn new(pacing: Option<Pacing>) -> Self {
        // 1 ns .. 60 s at 3 significant digits; slower events saturate at 60 s. Cannot fail:
        // the bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // at most 5 significant digits).
        let hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .expect("constant histogram bounds are valid");
        Self { hist, pacing }
    }

    /// Records every row of `batch` as done at `done`.
    pub fn record(&mut self, batch: &Batch, done: Instant) {
        let n = batch.rows.len() as u64;
        let first = duration_ns(done.saturating_duration_since(batch.ingest));
        match self.pacing {
            None => self.hist.saturating_record_n(first, n),
            Some(p) => {
                // Row k of the batch was due due_ns(first_event + k) - due_ns(first_event) later.
                let base = p.due_ns(batch.first_event);
                for k in 0..n {
                    let later = p.due_ns(batch.first_event + k) - base;
                    self.hist.saturating_record(first.saturating_sub(later));
                }
            }
        }
    }

    /// The histogram.
    pub fn into_histogram(self) -> Histogram<u64> {
        self.hist
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Batches a feed keeps for reuse: enough for every message that can be in flight.
fn recycle_limit(ring_capacity: usize, shards: usize) -> usize {
    2 * ring_capacity.max(1) + 2 * shards + 4
}

/// Runs `worker` over `tape` on the calling thread: feed, process and sink one batch at a time.
pub fn run_inline<W: Worker, S: Sink<W::Order>>(
    tape: &TapeReader,
    worker: &mut W,
    sink: &mut S,
    config: &PipelineConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunStats, PipelineError<S::Error>>
where
    S::Error: std::error::Error + 'static,
{
    let pacing = config.rate.map(|rate| Pacing { rate });
    let mut feed = Feed::new(
        tape,
        config.batch_rows,
        pacing,
        Wait::Spin,
        recycle_limit(1, 1),
    );
    let mut recorder = LatencyRecorder::new(pacing);
    let mut outputs = [ShardOutput::default()];
    let total = tape.info().event_count;
    let mut batches = 0u64;
    let started = Instant::now();
    let mut reported = Progress::default();
    while let Some(batch) = feed.next_batch()? {
        let [out] = &mut outputs;
        out.clear();
        worker.process(&batch.rows, out);
        recorder.record(&batch, Instant::now());
        sink.batch(&batch, &outputs).map_err(PipelineError::Sink)?;
        batches += 1;
        reported.update(feed.events(), total, progress);
    }
    let [out] = &mut outputs;
    out.clear();
    worker.finish(out);
    sink.finish(&outputs).map_err(PipelineError::Sink)?;
    let elapsed = started.elapsed();
    progress(feed.events(), total);
    Ok(RunStats {
        events: feed.events(),
        batches,
        elapsed,
        latency: recorder.into_histogram(),
        full_waits: 0,
        placement: Placement {
            pinned: false,
            wait: Wait::Spin,
            note: "inline on the calling thread".into(),
        },
    })
}

/// Calls `progress` at most every 64Ki events.
#[derive(Debug, Default)]
struct Progress {
    last: u64,
}

impl Progress {
    fn update(&mut self, done: u64, total: u64, progress: &mut dyn FnMut(u64, u64)) {
        if done >= self.last + (1 << 16) {
            self.last = done;
            progress(done, total);
        }
    }
}

/// Message from the feed to a shard.
enum ToShard {
    Batch(Batch),
    /// The last batch was sent: finish.
    End,
}

/// Message from a shard to the sink.
enum FromShard<O> {
    Batch(Batch, ShardOutput<O>),
    Finished(ShardOutput<O>),
}

/// Chooses cores and the waiting of `threads` stage threads.
fn place(threads: usize, pin: bool) -> (Option<Vec<core_affinity::CoreId>>, Placement) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let enough = cores.len() >= threads;
    // Stages that would share cores sleep when idle instead of spinning.
    let wait = if enough { Wait::Spin } else { Wait::Sleep };
    let (ids, pinned, note) = if !pin {
        (None, false, "not pinned (pinning turned off)".to_string())
    } else if !enough {
        (
            None,
            false,
            format!(
                "not pinned: {threads} stage threads, {} cores available; idle stages sleep",
                cores.len()
            ),
        )
    } else {
        (Some(cores), true, String::new())
    };
    (ids, Placement { pinned, wait, note })
}

/// Pins the current thread to `core` (when given); counts failures.
fn pin_to(core: Option<core_affinity::CoreId>, failures: &AtomicUsize) {
    if let Some(core) = core
        && !core_affinity::set_for_current(core)
    {
        failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs one worker per shard over `tape` on threads: a feed thread, one thread per worker and a
/// sink thread, joined by rings (see the module docs). Returns the workers (for their
/// statistics) with the run's results.
pub fn run_sharded<W: Worker, S: Sink<W::Order> + Send>(
    tape: &TapeReader,
    workers: Vec<W>,
    sink: &mut S,
    config: &PipelineConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<W>, RunStats), PipelineError<S::Error>>
where
    S::Error: std::error::Error + Send + 'static,
{
    let shards = workers.len();
    let pacing = config.rate.map(|rate| Pacing { rate });
    let (cores, mut placement) = place(shards + 2, config.pin);
    let core = |i: usize| cores.as_ref().and_then(|c| c.get(i).copied());
    let pin_failures = AtomicUsize::new(0);
    let done_events = AtomicU64::new(0);
    let total = tape.info().event_count;

    let mut to_shards = Vec::with_capacity(shards);
    let mut shard_inputs = Vec::with_capacity(shards);
    let mut shard_outputs = Vec::with_capacity(shards);
    let mut from_shards = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = ring::ring::<ToShard>(config.ring_capacity, placement.wait);
        to_shards.push(tx);
        shard_inputs.push(rx);
        let (tx, rx) = ring::ring::<FromShard<W::Order>>(config.ring_capacity, placement.wait);
        shard_outputs.push(tx);
        from_shards.push(rx);
    }

    let started = Instant::now();
    let coordinator = std::thread::current();
    let (feed_result, worker_results, sink_result) = std::thread::scope(|scope| {
        let feed = {
            let (pin_failures, core, wait) = (&pin_failures, core(0), placement.wait);
            std::thread::Builder::new()
                .name("strix-feed".into())
                .spawn_scoped(scope, move || {
                    pin_to(core, pin_failures);
                    feed_stage(tape, config, pacing, shards, to_shards, wait)
                })
        };
        let mut shard_threads = Vec::with_capacity(shards);
        for (i, ((worker, rx), tx)) in workers
            .into_iter()
            .zip(shard_inputs)
            .zip(shard_outputs)
            .enumerate()
        {
            let (pin_failures, core) = (&pin_failures, core(1 + i));
            shard_threads.push(
                std::thread::Builder::new()
                    .name(format!("strix-shard-{i}"))
                    .spawn_scoped(scope, move || {
                        pin_to(core, pin_failures);
                        shard_stage(worker, rx, tx)
                    }),
            );
        }
        let sink_thread = {
            let (pin_failures, core, done_events) = (&pin_failures, core(shards + 1), &done_events);
            let coordinator = coordinator.clone();
            std::thread::Builder::new()
                .name("strix-sink".into())
                .spawn_scoped(scope, move || {
                    pin_to(core, pin_failures);
                    let result = sink_stage(sink, from_shards, pacing, done_events, started);
                    coordinator.unpark();
                    result
                })
        };
        // Reports progress until the sink is done (or could not start).
        if let Ok(sink_thread) = &sink_thread {
            while !sink_thread.is_finished() {
                std::thread::park_timeout(Duration::from_millis(100));
                progress(done_events.load(Ordering::Relaxed), total);
            }
        }
        let feed_result = match feed {
            Ok(h) => h.join().unwrap_or(Err(FeedEnd::Panicked)),
            Err(_) => Err(FeedEnd::Panicked),
        };
        let worker_results: Vec<Option<(W, u64)>> = shard_threads
            .into_iter()
            .map(|h| h.ok().and_then(|h| h.join().ok()))
            .collect();
        let sink_result = match sink_thread {
            Ok(h) => h.join().unwrap_or(Err(SinkEnd::Panicked)),
            Err(_) => Err(SinkEnd::Panicked),
        };
        (feed_result, worker_results, sink_result)
    });
    progress(done_events.load(Ordering::Relaxed), total);

    // The first cause wins: a tape error stops the feed, which stops everything after it.
    let feed = match feed_result {
        Ok(f) => f,
        Err(FeedEnd::Tape(e)) => return Err(PipelineError::Tape(e)),
        Err(FeedEnd::Panicked) => return Err(PipelineError::Panicked("feed")),
        Err(FeedEnd::Stopped) => FeedDone::default(),
    };
    let sink = match sink_result {
        Ok(s) => s,
        Err(SinkEnd::Sink(e)) => return Err(PipelineError::Sink(e)),
        Err(SinkEnd::Panicked) => return Err(PipelineError::Panicked("sink")),
        Err(SinkEnd::Stopped) => {
            return Err(if worker_results.iter().any(Option::is_none) {
                PipelineError::Panicked("shard")
            } else {
                PipelineError::Stopped
            });
        }
    };
    let Some(workers) = worker_results
        .into_iter()
        .collect::<Option<Vec<(W, u64)>>>()
    else {
        return Err(PipelineError::Panicked("shard"));
    };
    let shard_full_waits: u64 = workers.iter().map(|(_, n)| n).sum();
    let workers: Vec<W> = workers.into_iter().map(|(w, _)| w).collect();
    let failures = pin_failures.load(Ordering::Relaxed);
    if placement.pinned {
        placement.note = if failures == 0 {
            format!(
                "pinned: feed, {shards} shard{} and sink on cores of their own",
                if shards == 1 { "" } else { "s" }
            )
        } else {
            placement.pinned = false;
            format!(
                "pinning failed for {failures} of {} stage threads",
                shards + 2
            )
        };
    }
    Ok((
        workers,
        RunStats {
            events: feed.events,
            batches: feed.batches,
            elapsed: sink.elapsed,
            latency: sink.latency,
            full_waits: feed.full_waits + shard_full_waits,
            placement,
        },
    ))
}

#[derive(Debug, Default)]
struct FeedDone {
    events: u64,
    batches: u64,
    full_waits: u64,
}

enum FeedEnd {
    Tape(TapeError),
    Panicked,
    /// A shard went away (the sink failed or a shard panicked).
    Stopped,
}

fn feed_stage(
    tape: &TapeReader,
    config: &PipelineConfig,
    pacing: Option<Pacing>,
    shards: usize,
    mut to_shards: Vec<Sender<ToShard>>,
    wait: Wait,
) -> Result<FeedDone, FeedEnd> {
    let mut feed = Feed::new(
        tape,
        config.batch_rows,
        pacing,
        wait,
        recycle_limit(config.ring_capacity, shards),
    );
    let mut batches = 0u64;
    // On a tape error the senders are dropped without `End`: the shards stop without finishing.
    while let Some(batch) = feed.next_batch().map_err(FeedEnd::Tape)? {
        batches += 1;
        let Some((last, others)) = to_shards.split_last_mut() else {
            return Err(FeedEnd::Stopped);
        };
        for tx in others {
            tx.send(ToShard::Batch(batch.clone()))
                .map_err(|_| FeedEnd::Stopped)?;
        }
        last.send(ToShard::Batch(batch))
            .map_err(|_| FeedEnd::Stopped)?;
    }
    for tx in &mut to_shards {
        tx.send(ToShard::End).map_err(|_| FeedEnd::Stopped)?;
    }
    Ok(FeedDone {
        events: feed.events(),
        batches,
        full_waits: to_shards.iter().map(Sender::full_waits).sum(),
    })
}

/// Processes batches until the end of the stream; returns the worker either way, with the
/// number of sends that waited on a full ring.
fn shard_stage<W: Worker>(
    mut worker: W,
    mut rx: Receiver<ToShard>,
    mut tx: Sender<FromShard<W::Order>>,
) -> (W, u64) {
    while let Some(msg) = rx.recv() {
        match msg {
            ToShard::Batch(batch) => {
                let mut out = ShardOutput::default();
                worker.process(&batch.rows, &mut out);
                if tx.send(FromShard::Batch(batch, out)).is_err() {
                    // The sink is gone: stop; dropping `rx` stops the feed.
                    break;
                }
            }
            ToShard::End => {
                let mut out = ShardOutput::default();
                worker.finish(&mut out);
                // Nothing more to do if the sink is gone.
                let _ = tx.send(FromShard::Finished(out));
                break;
            }
        }
    }
    (worker, tx.full_waits())
}

struct SinkDone {
    elapsed: Duration,
    latency: Histogram<u64>,
}

enum SinkEnd<E> {
    Sink(E),
    Panicked,
    Stopped,
}

fn sink_stage<O: Ord + Copy, S: Sink<O>>(
    sink: &mut S,
    mut from_shards: Vec<Receiver<FromShard<O>>>,
    pacing: Option<Pacing>,
    done_events: &AtomicU64,
    started: Instant,
) -> Result<SinkDone, SinkEnd<S::Error>> {
    let shards = from_shards.len();
    let mut recorder = LatencyRecorder::new(pacing);
    let mut outputs: Vec<ShardOutput<O>> = Vec::with_capacity(shards);
    let mut done = 0u64;
    loop {
        outputs.clear();
        let mut batch = None;
        let mut finished = 0;
        for rx in &mut from_shards {
            match rx.recv() {
                Some(FromShard::Batch(b, out)) => {
                    batch.get_or_insert(b);
                    outputs.push(out);
                }
                Some(FromShard::Finished(out)) => {
                    finished += 1;
                    outputs.push(out);
                }
                // A shard stopped early (the feed failed, or it panicked).
                None => return Err(SinkEnd::Stopped),
            }
        }
        let now = Instant::now();
        match (batch, finished) {
            (None, n) if n == shards => {
                sink.finish(&outputs).map_err(SinkEnd::Sink)?;
                break;
            }
            (Some(batch), 0) => {
                recorder.record(&batch, now);
                sink.batch(&batch, &outputs).map_err(SinkEnd::Sink)?;
                done += batch.rows.len() as u64;
                done_events.store(done, Ordering::Relaxed);
            }
            // Shards see the same stream, so they end together; anything else is a bug.
            _ => return Err(SinkEnd::Stopped),
        }
    }
    Ok(SinkDone {
        elapsed: started.elapsed(),
        latency: recorder.into_histogram(),
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The pipeline with a toy worker: shard `i` of `n` "emits" every row whose seq is `i`
    //! modulo `n`, keyed by seq, so the merged output must list every seq once, in order.

    use std::path::PathBuf;

    use super::*;
    use feeds::r#gen::{GenSpec, Generator, write_tape};

    struct TempTape(PathBuf);

    impl Drop for TempTape {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn market_tape(name: &str, events: u64) -> (TempTape, TapeReader) {
        let path =
            std::env::temp_dir().join(format!("strix-pipeline-{name}-{}.tape", std::process::id()));
        write_tape(
            Generator::Market,
            &GenSpec::new(events, 3),
            &path,
            &mut |_| {},
        )
        .expect("generate tape");
        let tape = TapeReader::open(&path).expect("open tape");
        (TempTape(path), tape)
    }

    #[derive(Debug)]
    struct Modulo {
        index: u64,
        count: u64,
        finished: bool,
    }

    impl Worker for Modulo {
        type Order = u64;
        fn process(&mut self, rows: &EventBatch, out: &mut ShardOutput<u64>) {
            for &seq in rows.seq() {
                if seq % self.count == self.index {
                    out.signals.push(seq, 0, &[seq], |buf| {
                        use std::io::Write as _;
                        write!(buf, "{seq}")
                    });
                }
            }
        }
        fn finish(&mut self, out: &mut ShardOutput<u64>) {
            self.finished = true;
            out.signals.push(u64::MAX - self.index, 0, &[], |buf| {
                use std::io::Write as _;
                write!(buf, "end {}", self.index)
            });
        }
    }

    fn modulo(count: usize) -> Vec<Modulo> {
        (0..count as u64)
            .map(|index| Modulo {
                index,
                count: count as u64,
                finished: false,
            })
            .collect()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("sink refused batch {0}")]
    struct Refused(u64);

    #[derive(Default)]
    struct Collect {
        text: String,
        batches: Vec<(u64, u64, usize)>,
        fail_at: Option<u64>,
    }

    impl Sink<u64> for Collect {
        type Error = Refused;
        fn batch(&mut self, batch: &Batch, outputs: &[ShardOutput<u64>]) -> Result<(), Refused> {
            if self.fail_at == Some(batch.index) {
                return Err(Refused(batch.index));
            }
            self.batches
                .push((batch.index, batch.first_event, batch.rows.len()));
            merge::merge(outputs, |l| {
                self.text
                    .push_str(std::str::from_utf8(l.line).unwrap_or("?"))
            });
            Ok(())
        }
        fn finish(&mut self, outputs: &[ShardOutput<u64>]) -> Result<(), Refused> {
            merge::merge(outputs, |l| {
                self.text
                    .push_str(std::str::from_utf8(l.line).unwrap_or("?"))
            });
            Ok(())
        }
    }

    fn expected(events: u64, shards: u64) -> String {
        let mut s: String = (0..events).map(|i| format!("{i}\n")).collect();
        for i in (0..shards).rev() {
            s.push_str(&format!("end {i}\n"));
        }
        s
    }

    /// Batches cover the tape in order, without gaps, each at most `rows` long.
    fn check_batches(batches: &[(u64, u64, usize)], events: u64, rows: usize) {
        let mut next = 0;
        for (i, &(index, first, len)) in batches.iter().enumerate() {
            assert_eq!(index, i as u64);
            assert_eq!(first, next);
            assert!(len >= 1 && len <= rows, "batch {index} has {len} rows");
            next += len as u64;
        }
        assert_eq!(next, events);
    }

    #[test]
    fn every_row_reaches_the_sink_once_in_order_for_any_shard_count_batch_and_ring() {
        let (_tmp, tape) = market_tape("order", 9_000);
        for shards in 1..=4 {
            for (batch_rows, ring_capacity) in [(1, 1), (7, 2), (1024, 64), (5000, 1)] {
                let config = PipelineConfig {
                    batch_rows,
                    rate: None,
                    ring_capacity,
                    pin: false,
                };
                let mut sink = Collect::default();
                let (workers, stats) =
                    run_sharded(&tape, modulo(shards), &mut sink, &config, &mut |_, _| {})
                        .expect("pipeline run");
                assert_eq!(
                    sink.text,
                    expected(9_000, shards as u64),
                    "{shards} {batch_rows}"
                );
                check_batches(&sink.batches, 9_000, batch_rows);
                assert_eq!(stats.events, 9_000);
                assert_eq!(stats.batches, sink.batches.len() as u64);
                assert_eq!(stats.latency.len(), 9_000);
                assert!(workers.iter().all(|w| w.finished));
                assert_eq!(workers.len(), shards);
            }
        }
    }

    #[test]
    fn inline_gives_the_same_output() {
        let (_tmp, tape) = market_tape("inline", 5_000);
        for batch_rows in [1, 7, 4096] {
            let mut sink = Collect::default();
            let mut worker = Modulo {
                index: 0,
                count: 1,
                finished: false,
            };
            let config = PipelineConfig {
                batch_rows,
                ..PipelineConfig::default()
            };
            let mut calls = Vec::new();
            let stats = run_inline(&tape, &mut worker, &mut sink, &config, &mut |d, t| {
                calls.push((d, t))
            })
            .expect("inline run");
            assert_eq!(sink.text, expected(5_000, 1));
            check_batches(&sink.batches, 5_000, batch_rows);
            assert_eq!(stats.events, 5_000);
            assert_eq!(stats.latency.len(), 5_000);
            assert_eq!(calls.last(), Some(&(5_000, 5_000)));
        }
    }

    #[test]
    fn a_paced_feed_sends_partial_batches_and_measures_from_due_times() {
        let (_tmp, tape) = market_tape("paced", 3_000);
        // 3000 events at 200k events/s: 15 ms of offered load.
        let config = PipelineConfig {
            batch_rows: 1024,
            rate: Some(200_000),
            ring_capacity: 4,
            pin: false,
        };
        let mut sink = Collect::default();
        let (_, stats) =
            run_sharded(&tape, modulo(2), &mut sink, &config, &mut |_, _| {}).expect("paced run");
        assert_eq!(sink.text, expected(3_000, 2));
        check_batches(&sink.batches, 3_000, 1024);
        assert_eq!(stats.latency.len(), 3_000);
        // Not a speed claim: the feed holds the last row until it is due, 15 ms after the start.
        assert!(stats.elapsed >= Duration::from_nanos(Pacing { rate: 200_000 }.due_ns(2_999)));
    }

    #[test]
    fn a_paced_feed_hands_on_only_rows_that_are_due() {
        let (_tmp, tape) = market_tape("due", 50);
        // One row every 2 ms: the first call returns row 0 alone (row 1 is not due yet) instead
        // of waiting to fill the batch.
        let pacing = Pacing { rate: 500 };
        let mut feed = Feed::new(&tape, 1024, Some(pacing), Wait::Spin, 0);
        let started = Instant::now();
        let first = feed.next_batch().expect("read").expect("a batch");
        assert_eq!((first.index, first.first_event), (0, 0));
        assert!(first.rows.len() < 50);
        let mut rows = first.rows.len() as u64;
        while let Some(b) = feed.next_batch().expect("read") {
            assert_eq!(b.first_event, rows);
            rows += b.rows.len() as u64;
            // Every row of the batch was due when the batch was handed on.
            let due = Duration::from_nanos(pacing.due_ns(rows - 1));
            assert!(started.elapsed() >= due, "row {} handed on early", rows - 1);
        }
        assert_eq!(rows, 50);
    }

    #[test]
    fn a_failing_sink_stops_every_stage_with_its_error() {
        let (_tmp, tape) = market_tape("fail", 20_000);
        let config = PipelineConfig {
            batch_rows: 16,
            rate: None,
            ring_capacity: 1,
            pin: true,
        };
        let mut sink = Collect {
            fail_at: Some(3),
            ..Collect::default()
        };
        let err = run_sharded(&tape, modulo(3), &mut sink, &config, &mut |_, _| {})
            .expect_err("the sink fails");
        assert!(matches!(err, PipelineError::Sink(Refused(3))), "{err}");
    }

    #[test]
    fn a_corrupt_block_stops_the_pipeline_with_the_tape_error() {
        let (tmp, tape) = market_tape("corrupt", 10_000);
        let offset = tape.block_offset(1).expect("a second block") as usize;
        drop(tape);
        let mut bytes = std::fs::read(&tmp.0).expect("read tape");
        // A payload byte of block 1 (past its 32-byte header): its checksum no longer matches.
        bytes[offset + 40] ^= 0xff;
        std::fs::write(&tmp.0, &bytes).expect("write tape");
        let tape = TapeReader::open(&tmp.0).expect("headers are intact");
        let mut sink = Collect::default();
        let config = PipelineConfig {
            batch_rows: 100,
            ring_capacity: 2,
            ..PipelineConfig::default()
        };
        let err = run_sharded(&tape, modulo(2), &mut sink, &config, &mut |_, _| {})
            .expect_err("the tape is corrupt");
        assert!(matches!(err, PipelineError::Tape(_)), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
        // Nothing of the end of the stream was written: the shards did not finish.
        assert!(!sink.text.contains("end"));
    }
}
