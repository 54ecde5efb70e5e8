//! Tape replay: runs a rule file over a tape, as fast as possible or at an offered rate, and
//! measures it.
//!
//! Input: a `.cep` rule file and a `.tape` (events in tape order, which need not be time order:
//! the engine reorders within [`ReplayOptions::time`]'s bound), and how to run it
//! ([`RunOptions`]: matcher, shards, batch size, rate, pinning). Output: signals as JSON Lines to
//! a writer, late events as JSON Lines to an optional second writer (rendered like
//! `strix tape export --format jsonl`), and a [`ReplayReport`] (throughput, end-to-end latency
//! percentiles from hdrhistogram, live runs, evictions, recall/precision against the tape's
//! labels, event-time counters, derived events per query). Used by `strix replay`.
//!
//! Rules with `score using MODEL` go through the scorer stage ([`crate::scoring`]) at the
//! sink: after the shards' signals are merged, those of model-scored rules are held (with every
//! signal after them, so the output order stays that of an unscored replay) until
//! [`ScoreRun::batch`] rows are pending or the stream ends, scored in one call per model, given
//! a `"score"` after their `"fields"`, and dropped (counted per rule) when below the rule's
//! threshold, before they are written or scored against the labels.
//!
//! With `shards == 0` the engine runs inline on the calling thread, one batch at a time;
//! otherwise through [`crate::pipeline`]: a feed thread, one engine per shard on its own thread
//! (each owning a share of the partition keys), and a sink thread that merges the shards'
//! signals by [`SignalOrder`]. Either way the signal lines are the same bytes.

use std::io::Write;
use std::path::PathBuf;

use cep_core::event::{EventBatch, EventView, Label};
use cep_core::reference::{MatcherConfig, MatcherStats};
use feeds::tape::{TapeError, TapeReader};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::pipeline::merge::{SignalLine, merge};
use crate::pipeline::{
    self, Batch, PipelineConfig, PipelineError, RunStats, ShardOutput, SignalBuffer, Sink, Worker,
};
use crate::scoring::{DEFAULT_SCORE_BATCH, FeatureRows, ScoreOptions, ScoringError, SignalScorer};
use crate::{
    Engine, EngineConfig, EngineError, LabelScore, MatcherKind, ShardSpec, Signal, SignalOrder,
    TimeOptions,
};
use gpu_kernels::score::{DEFAULT_MIN_GPU_BATCH, ScoreDevice};

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the rule file failed.
    #[error("cannot read rules {path}")]
    ReadRules {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The rules do not compile against the tape.
    #[error(transparent)]
    Rules(#[from] EngineError),
    /// The tape is unreadable, truncated or corrupt.
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// Writing signals failed.
    #[error("cannot write signals: {0}")]
    Output(std::io::Error),
    /// Writing late events failed.
    #[error("cannot write late events: {0}")]
    LateOutput(std::io::Error),
    /// A model of a `score using` rule cannot be loaded or run, or a signal cannot be scored.
    #[error(transparent)]
    Scoring(Box<ScoringError>),
    /// A pipeline thread panicked (a bug) or the pipeline stopped early.
    #[error("replay pipeline: {0}")]
    Pipeline(String),
}

impl From<ScoringError> for ReplayError {
    fn from(e: ScoringError) -> Self {
        Self::Scoring(Box::new(e))
    }
}

impl ReplayError {
    fn from_pipeline(e: PipelineError<ReplayError>) -> Self {
        match e {
            PipelineError::Tape(e) => Self::Tape(e),
            PipelineError::Sink(e) => e,
            e @ (PipelineError::Panicked(_) | PipelineError::Stopped) => {
                Self::Pipeline(e.to_string())
            }
        }
    }
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Rule file.
    pub rules: PathBuf,
    /// Tape.
    pub tape: PathBuf,
    /// Cap of live partial matches per partition key.
    pub max_runs_per_key: usize,
    /// Event time: reordering bound, allowed lateness, dedup (default: events in time order).
    pub time: TimeOptions,
}

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad duration `{text}`: {why} (write a whole number and a unit: ns, us, ms, s, m, h; e.g. 500ms, 2s, 15m)"
)]
pub struct DurationError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Parses a duration such as `500ms`, `2s`, `15m`, `1h` (also `ns`, `us`, and a bare `0`) into ns.
pub fn parse_duration(text: &str) -> Result<i64, DurationError> {
    let err = |why| DurationError {
        text: text.to_string(),
        why,
    };
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| err("no unit"))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err(if t.starts_with('-') {
            "durations are never negative"
        } else {
            "no number"
        }));
    }
    let mult: i64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(err("unknown unit")),
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| err("too large"))
}

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Maximum.
    pub max_ns: u64,
}

/// One rule's results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleReport {
    /// Rule name.
    pub rule: String,
    /// Signal name.
    pub signal: String,
    /// Signals emitted.
    pub signals: u64,
    /// Events the rule read.
    pub events_read: u64,
    /// Highest number of live partial matches at once.
    pub peak_live_runs: usize,
    /// Partial matches evicted by the per-key cap.
    pub evictions: u64,
    /// Label class the rule was scored against (when the tape has one with its name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Injected instances of that class on the tape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    /// Share of instances found by at least one signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// Share of signals that include an event of the class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// Model-scored rules: signals dropped for scoring below the threshold (not in `signals`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below_threshold: Option<u64>,
}

/// What the scorer stage did with one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoringReport {
    /// Model name (from its document).
    pub model: String,
    /// File it was loaded from.
    pub path: String,
    /// Kind and size.
    pub summary: String,
    /// Rules it scores.
    pub rules: Vec<String>,
    /// Requested device: `auto`, `gpu` or `cpu`.
    pub device: String,
    /// Where large batches ran: the GPU adapter (a CPU driver says so) or `CPU`.
    pub adapter: String,
    /// Why `auto` did not use a GPU, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Rows (signals) scored.
    pub rows: u64,
    /// Scoring calls that ran on the GPU.
    pub gpu_batches: u64,
    /// Scoring calls that ran on the CPU.
    pub cpu_batches: u64,
    /// Time in scoring calls, seconds.
    pub seconds: f64,
}

/// Event-time results of a replay.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimeReport {
    /// Bounded out-of-orderness of the default source, ns.
    pub max_delay_ns: i64,
    /// Per-type bounds, ns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub max_delay_per_type_ns: Vec<(String, i64)>,
    /// Allowed lateness, ns.
    pub allowed_lateness_ns: i64,
    /// Events later than watermark minus allowed lateness (not matched; in the late output).
    pub late: u64,
    /// Events admitted within allowed lateness.
    pub admitted_late: u64,
    /// Duplicates dropped by dedup.
    pub duplicates: u64,
    /// On-time events that arrived after a later event and were put back in time order.
    pub reordered: u64,
    /// Most events held in the reorder buffer at once.
    pub max_buffered: usize,
}

/// One windowed query's results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryReport {
    /// Query name.
    pub query: String,
    /// Name of its output (the derived event type).
    pub output: String,
    /// Events the query read.
    pub events_read: u64,
    /// Derived events it emitted.
    pub derived_events: u64,
}

/// The benchmark report of a replay.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayReport {
    /// Tape path.
    pub tape: String,
    /// Rule file path.
    pub rules_file: String,
    /// Matcher used (`fast` or `reference`).
    pub matcher: String,
    /// Shard threads (0: inline on the calling thread).
    pub shards: u32,
    /// Rows per batch.
    pub batch: usize,
    /// Offered load in events per second; `None`: as fast as possible.
    pub rate: Option<u64>,
    /// Where the pipeline threads ran (pinned or not, and why).
    pub pinning: String,
    /// Events replayed.
    pub events: u64,
    /// Signals emitted over all rules.
    pub signals: u64,
    /// Wall time of the replay (decode + match + signal output, all stages), seconds.
    pub elapsed_s: f64,
    /// Events per second: the maximum throughput when unpaced, about the rate when paced.
    pub events_per_s: f64,
    /// End-to-end latency per event: from its ingest time (its block's decode time, or its due
    /// time when paced) until the results of every shard for it are at the sink.
    pub latency: Latency,
    /// Pipeline sends that found a ring full and waited (backpressure; nothing is dropped).
    pub backpressure_waits: u64,
    /// Sum over rules of each rule's peak live partial matches (sharded: the sum of each
    /// shard's peak, an upper bound of the peak over all shards at once).
    pub peak_live_runs: usize,
    /// Evictions over all rules.
    pub evictions: u64,
    /// Event-time counters.
    pub time: TimeReport,
    /// Derived events over all queries.
    pub derived_events: u64,
    /// Per-query results (file order).
    pub queries: Vec<QueryReport>,
    /// Per-rule results.
    pub rules: Vec<RuleReport>,
    /// Per-model results of the scorer stage (empty without `score using` rules).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scoring: Vec<ScoringReport>,
}

/// How to run a replay: matcher, sharding, batching, pacing.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Matcher of every rule.
    pub matcher: MatcherKind,
    /// Shard threads, each running the engine on its share of the partition keys; 0 runs the
    /// engine inline on the calling thread (no pipeline threads).
    pub shards: u32,
    /// Rows per batch handed to the engine (and per pipeline message), at least 1.
    pub batch: usize,
    /// Offered load in events per second (paced feed); `None`: as fast as possible.
    pub rate: Option<u64>,
    /// Pin pipeline threads to cores when there is a core for each.
    pub pin: bool,
    /// Messages per pipeline ring (at least 1); `None`: by batch size and pacing
    /// ([`crate::pipeline::default_ring_capacity`]).
    pub ring_capacity: Option<usize>,
    /// The scorer stage of `score using` rules.
    pub score: ScoreRun,
}

/// How `score using` rules are scored in a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRun {
    /// Directory of bare model names (default: the rules file's directory).
    pub models_dir: Option<PathBuf>,
    /// Where to score: `Auto` (GPU for large batches on a real GPU), `Gpu` or `Cpu`.
    pub device: ScoreDevice,
    /// Most signals scored per call, and most scored signals held back for one call.
    pub batch: usize,
    /// With `Auto`, smaller calls go to the CPU.
    pub min_gpu_batch: usize,
}

impl Default for ScoreRun {
    fn default() -> Self {
        Self {
            models_dir: None,
            device: ScoreDevice::Auto,
            batch: DEFAULT_SCORE_BATCH,
            min_gpu_batch: DEFAULT_MIN_GPU_BATCH,
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            matcher: MatcherKind::Fast,
            shards: 1,
            batch: 1024,
            rate: None,
            pin: true,
            ring_capacity: None,
            score: ScoreRun::default(),
        }
    }
}

/// The name of a matcher kind, as `strix replay --matcher` takes it.
pub fn matcher_name(kind: MatcherKind) -> &'static str {
    match kind {
        MatcherKind::Fast => "fast",
        MatcherKind::Reference => "reference",
    }
}

/// Replays `opts.tape` through `opts.rules` with the default [`RunOptions`], writing signals
/// as JSON Lines to `signals`, calling `progress(events_done, events_total)` now and then. Late
/// events are counted only.
pub fn replay(
    opts: &ReplayOptions,
    signals: &mut (dyn Write + Send),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport, ReplayError> {
    replay_run(opts, &RunOptions::default(), signals, None, progress)
}

/// As [`replay`], also writing every late event as one JSON line to `late` (the same object
/// `strix tape export --format jsonl` writes for it).
pub fn replay_with_late(
    opts: &ReplayOptions,
    signals: &mut (dyn Write + Send),
    late: Option<&mut (dyn Write + Send)>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport, ReplayError> {
    replay_run(opts, &RunOptions::default(), signals, late, progress)
}

/// Replays as `run` says: inline (`shards == 0`) or through the sharded pipeline
/// ([`crate::pipeline`]). The signal output is the same byte for byte whatever the matcher,
/// shard count, batch size and rate.
pub fn replay_run(
    opts: &ReplayOptions,
    run: &RunOptions,
    signals: &mut (dyn Write + Send),
    late: Option<&mut (dyn Write + Send)>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport, ReplayError> {
    let source = std::fs::read_to_string(&opts.rules).map_err(|source| ReplayError::ReadRules {
        path: opts.rules.clone(),
        source,
    })?;
    let tape = TapeReader::open(&opts.tape)?;
    let rules_name = opts.rules.display().to_string();
    let shard_count = run.shards;
    let build = |shard: Option<ShardSpec>| {
        Engine::build(
            &rules_name,
            &source,
            Some(tape.catalog()),
            tape.symbols().clone(),
            EngineConfig {
                matcher: MatcherConfig {
                    max_runs_per_key: opts.max_runs_per_key,
                },
                time: opts.time.clone(),
                kind: run.matcher,
                shard,
            },
        )
    };
    let spec = |index: u32| {
        (shard_count > 0).then_some(ShardSpec {
            index,
            count: shard_count,
        })
    };
    let first = build(spec(0))?;
    let label_names = tape.label_names().to_vec();
    let has_labels = tape.has_labels();
    let rule_class: Vec<Option<u16>> = first
        .program()
        .rules
        .iter()
        .map(|r| {
            has_labels
                .then(|| crate::label_class(&label_names, &[&r.emit.signal, &r.name]))
                .flatten()
        })
        .collect();
    let scorer = SignalScorer::new(
        first.program(),
        &ScoreOptions {
            models_dir: run.score.models_dir.clone(),
            device: run.score.device,
            batch: run.score.batch.max(1),
            min_gpu_batch: run.score.min_gpu_batch,
            ..ScoreOptions::for_rules(&opts.rules)
        },
    )?;
    let late_wanted = late.is_some();
    let features = scorer.as_ref().map(SignalScorer::feature_rows);
    let mut sink = ReplaySink {
        signals,
        // A coercion site: the writer's own lifetime shortens to the sink's.
        late: late.map(|w| -> &mut (dyn Write + Send) { w }),
        tape: &tape,
        has_labels,
        rule_class: &rule_class,
        score: LabelScore::default(),
        count: 0,
        late_line: Vec::with_capacity(256),
        held: scorer.map(|scorer| Held::new(scorer, first.program())),
    };
    let config = PipelineConfig {
        batch_rows: run.batch.max(1),
        rate: run.rate,
        ring_capacity: run
            .ring_capacity
            .unwrap_or_else(|| pipeline::default_ring_capacity(run.batch, run.rate.is_some()))
            .max(1),
        pin: run.pin,
    };
    // Every shard's event-time layer sees the same late rows: one shard reports them.
    let worker = |engine: Engine, index: u32| EngineWorker {
        engine,
        report_late: late_wanted && index == 0,
        features: features.clone(),
    };
    let (engines, stats) = if shard_count == 0 {
        let mut w = worker(first, 0);
        let stats = pipeline::run_inline(&tape, &mut w, &mut sink, &config, progress)
            .map_err(ReplayError::from_pipeline)?;
        (vec![w.engine], stats)
    } else {
        let mut workers = vec![worker(first, 0)];
        for i in 1..shard_count {
            workers.push(worker(build(spec(i))?, i));
        }
        let (workers, stats) = pipeline::run_sharded(&tape, workers, &mut sink, &config, progress)
            .map_err(ReplayError::from_pipeline)?;
        (workers.into_iter().map(|w| w.engine).collect(), stats)
    };
    let (score, signal_count, held) = (sink.score, sink.count, sink.held);
    let mut out = report(
        opts,
        run,
        &engines,
        &stats,
        &score,
        signal_count,
        &rule_class,
        &label_names,
    )?;
    if let Some(h) = held {
        for (r, rule) in out.rules.iter_mut().enumerate() {
            if h.scorer.scores_rule(r) {
                rule.below_threshold = Some(h.dropped.get(r).copied().unwrap_or(0));
            }
        }
        out.scoring = h
            .scorer
            .stats()
            .into_iter()
            .map(|m| ScoringReport {
                model: m.name,
                path: m.path.display().to_string(),
                summary: m.summary,
                rules: m.rules,
                device: m.device.to_string(),
                adapter: m.device_name,
                fallback: m.fallback,
                rows: m.stats.rows,
                gpu_batches: m.stats.gpu_batches,
                cpu_batches: m.stats.cpu_batches,
                seconds: m.seconds,
            })
            .collect();
    }
    Ok(out)
}

/// Builds the report from the engines of every shard (one when inline).
#[allow(clippy::too_many_arguments)]
fn report(
    opts: &ReplayOptions,
    run: &RunOptions,
    engines: &[Engine],
    stats: &RunStats,
    score: &LabelScore,
    signal_count: u64,
    rule_class: &[Option<u16>],
    label_names: &[String],
) -> Result<ReplayReport, ReplayError> {
    let Some(lead) = engines.first() else {
        return Err(ReplayError::Pipeline("no engine ran".into()));
    };
    let program = lead.program();
    let per_shard: Vec<Vec<MatcherStats>> = engines.iter().map(Engine::stats).collect();
    let rules: Vec<RuleReport> = program
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (recall, precision, instances) = match rule_class[i] {
                Some(c) => {
                    let (rc, pr, n) = score.result(i, c);
                    (rc, pr, Some(n))
                }
                None => (None, None, None),
            };
            let rule_stats = per_shard.iter().filter_map(|s| s.get(i));
            RuleReport {
                rule: r.name.clone(),
                signal: r.emit.signal.clone(),
                signals: score.counts(i).0,
                // Every shard reads every event (and skips the keys it does not own).
                events_read: per_shard[0].get(i).map_or(0, |s| s.events),
                peak_live_runs: rule_stats.clone().map(|s| s.peak_live_runs).sum(),
                evictions: rule_stats.map(|s| s.evictions).sum(),
                label: rule_class[i].map(|c| label_names[c as usize].clone()),
                instances,
                recall,
                precision,
                below_threshold: None,
            }
        })
        .collect();
    // Queries and the event-time layer run unsharded on every shard: the first tells for all.
    let engine_stats = lead.engine_stats();
    let t = engine_stats.time;
    let catalog = &program.catalog;
    let queries = program
        .queries
        .iter()
        .zip(lead.query_stats())
        .map(|(q, st)| QueryReport {
            query: q.name.clone(),
            output: catalog
                .event_type(q.output)
                .map_or_else(|| format!("type#{}", q.output), |t| t.name.clone()),
            events_read: st.events,
            derived_events: st.emitted,
        })
        .collect();
    let elapsed = stats.elapsed.as_secs_f64();
    let hist = &stats.latency;
    Ok(ReplayReport {
        tape: opts.tape.display().to_string(),
        rules_file: opts.rules.display().to_string(),
        matcher: matcher_name(run.matcher).into(),
        shards: run.shards,
        batch: run.batch.max(1),
        rate: run.rate,
        pinning: stats.placement.note.clone(),
        events: stats.events,
        signals: signal_count,
        elapsed_s: elapsed,
        events_per_s: if elapsed > 0.0 {
            stats.events as f64 / elapsed
        } else {
            0.0
        },
        latency: Latency {
            p50_ns: hist.value_at_quantile(0.5),
            p99_ns: hist.value_at_quantile(0.99),
            p999_ns: hist.value_at_quantile(0.999),
            max_ns: hist.max(),
        },
        backpressure_waits: stats.full_waits,
        peak_live_runs: rules.iter().map(|r| r.peak_live_runs).sum(),
        evictions: rules.iter().map(|r| r.evictions).sum(),
        time: TimeReport {
            max_delay_ns: opts.time.max_delay,
            max_delay_per_type_ns: opts.time.max_delay_per_type.clone(),
            allowed_lateness_ns: opts.time.allowed_lateness,
            late: t.late,
            admitted_late: t.admitted_late,
            duplicates: t.duplicates,
            reordered: t.reordered,
            max_buffered: t.max_buffered,
        },
        derived_events: engine_stats.derived_events,
        queries,
        rules,
        scoring: Vec::new(),
    })
}

/// One shard's engine as a pipeline worker: signals are rendered to their JSON lines here, in
/// the shard thread, so the sink only copies bytes.
#[derive(Debug)]
struct EngineWorker {
    engine: Engine,
    /// This shard reports late rows (one shard does; all see the same ones).
    report_late: bool,
    /// Builds the feature rows of `score using` signals (`None` without such rules).
    features: Option<FeatureRows>,
}

impl Worker for EngineWorker {
    type Order = SignalOrder;

    fn process(&mut self, rows: &EventBatch, out: &mut ShardOutput<SignalOrder>) {
        let ShardOutput { signals, late } = out;
        let report_late = self.report_late;
        let features = self.features.as_ref();
        self.engine.push_batch(
            rows,
            |s| render(signals, &s, features),
            |row| {
                if report_late {
                    late.push(row);
                }
            },
        );
    }

    fn finish(&mut self, out: &mut ShardOutput<SignalOrder>) {
        let signals = &mut out.signals;
        let features = self.features.as_ref();
        self.engine.finish(|s| render(signals, &s, features));
    }
}

/// Appends `s` as its JSON line (the line `strix replay` writes for it), with its model
/// feature row when it is a match signal of a `score using` rule.
fn render(out: &mut SignalBuffer<SignalOrder>, s: &Signal<'_>, features: Option<&FeatureRows>) {
    out.push_with_features(
        s.order(),
        s.raw.rule,
        &s.raw.seq,
        |buf| serde_json::to_writer(buf, &s.to_json()),
        |row| {
            s.raw.kind == cep_core::signal::SignalKind::Match
                && features.is_some_and(|f| f.push(s.raw.rule, &s.raw.fields, row))
        },
    );
}

/// Writes merged signals and late events, and scores signals against the tape's labels.
struct ReplaySink<'a> {
    signals: &'a mut (dyn Write + Send),
    late: Option<&'a mut (dyn Write + Send)>,
    tape: &'a TapeReader,
    has_labels: bool,
    rule_class: &'a [Option<u16>],
    score: LabelScore,
    count: u64,
    late_line: Vec<u8>,
    /// The scorer stage and the signals it holds back (`None` without `score using` rules).
    held: Option<Held>,
}

/// Where signals that are let through go: the writer, counted and scored against the labels.
struct Emit<'a, 'w> {
    w: &'a mut (dyn Write + Send + 'w),
    score: &'a mut LabelScore,
    count: &'a mut u64,
    rule_class: &'a [Option<u16>],
}

impl Emit<'_, '_> {
    fn write(&mut self, rule: usize, seq: &[u64], line: &[u8]) -> Result<(), ReplayError> {
        *self.count += 1;
        self.score
            .score(rule, self.rule_class.get(rule).copied().flatten(), seq);
        self.w.write_all(line).map_err(ReplayError::Output)
    }
}

/// A held signal: its rule, where its line and seqs end in [`Held`]'s buffers, and its row
/// `(model, index)` when it is model-scored.
#[derive(Debug, Clone, Copy)]
struct HeldEntry {
    rule: usize,
    line_end: usize,
    seq_end: usize,
    row: Option<(usize, usize)>,
}

/// The scorer stage at the sink: signals in output order, held from the first model-scored one
/// until a batch of rows is pending or the stream ends.
struct Held {
    scorer: SignalScorer,
    lines: Vec<u8>,
    seqs: Vec<u64>,
    entries: Vec<HeldEntry>,
    /// Per model: pending feature rows (row-major) and their scores.
    rows: Vec<Vec<f32>>,
    scores: Vec<Vec<f32>>,
    pending: usize,
    /// Per rule: signals dropped below the threshold.
    dropped: Vec<u64>,
    line: Vec<u8>,
}

impl Held {
    fn new(scorer: SignalScorer, program: &cep_core::rule::Program) -> Held {
        let models = scorer.model_count();
        Held {
            lines: Vec::new(),
            seqs: Vec::new(),
            entries: Vec::new(),
            rows: vec![Vec::new(); models],
            scores: vec![Vec::new(); models],
            pending: 0,
            dropped: vec![0; program.rules.len()],
            line: Vec::new(),
            scorer,
        }
    }

    /// Takes one merged signal: written at once when nothing is held and it needs no score,
    /// else held (and the held signals flushed when a batch of rows is pending).
    fn take(
        &mut self,
        s: SignalLine<'_, SignalOrder>,
        out: &mut Emit<'_, '_>,
    ) -> Result<(), ReplayError> {
        let model = self.scorer.model_of(s.rule);
        if model.is_none() && self.entries.is_empty() {
            return out.write(s.rule, s.seq, s.line);
        }
        let mut row = None;
        if let (Some(m), Some(features)) = (model, s.features) {
            let rows = &mut self.rows[m];
            rows.extend_from_slice(features);
            row = Some((m, rows.len() / self.scorer.feature_count(m).max(1) - 1));
            self.pending += 1;
        }
        self.lines.extend_from_slice(s.line);
        self.seqs.extend_from_slice(s.seq);
        self.entries.push(HeldEntry {
            rule: s.rule,
            line_end: self.lines.len(),
            seq_end: self.seqs.len(),
            row,
        });
        if self.pending >= self.scorer.batch() {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Scores every pending row (one call per model) and lets the held signals through in
    /// order: scored ones with their score, below-threshold ones dropped and counted.
    fn flush(&mut self, out: &mut Emit<'_, '_>) -> Result<(), ReplayError> {
        for m in 0..self.rows.len() {
            let n = self.scorer.feature_count(m).max(1);
            let rows = std::mem::take(&mut self.rows[m]);
            let scores = &mut self.scores[m];
            scores.clear();
            scores.resize(rows.len() / n, 0.0);
            let result = self.scorer.score_rows(m, &rows, scores);
            self.rows[m] = rows;
            self.rows[m].clear();
            result?;
        }
        let (mut line_start, mut seq_start) = (0, 0);
        for e in std::mem::take(&mut self.entries) {
            let line = &self.lines[line_start..e.line_end];
            let seq = &self.seqs[seq_start..e.seq_end];
            (line_start, seq_start) = (e.line_end, e.seq_end);
            match e.row {
                None => out.write(e.rule, seq, line)?,
                Some((m, i)) => {
                    let score = f64::from(self.scores[m][i]);
                    if !self.scorer.passes_score(e.rule, Some(score)) {
                        self.dropped[e.rule] += 1;
                        continue;
                    }
                    splice_score(line, score, &mut self.line);
                    out.write(e.rule, seq, &self.line)?;
                }
            }
        }
        self.lines.clear();
        self.seqs.clear();
        self.pending = 0;
        Ok(())
    }
}

/// Writes `line` (a signal's JSON line) to `out` with `"score":x` after its `"fields"`, that is
/// before the final `"id"` (which [`Signal::to_json`] always writes last).
fn splice_score(line: &[u8], score: f64, out: &mut Vec<u8>) {
    const ID: &[u8] = b",\"id\":\"";
    out.clear();
    let at = line
        .windows(ID.len())
        .rposition(|w| w == ID)
        .or_else(|| line.iter().rposition(|&b| b == b'}'))
        .unwrap_or(line.len());
    out.extend_from_slice(&line[..at]);
    out.extend_from_slice(b",\"score\":");
    match serde_json::Number::from_f64(score) {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(&line[at..]);
}

impl ReplaySink<'_> {
    fn write_signals(&mut self, outputs: &[ShardOutput<SignalOrder>]) -> Result<(), ReplayError> {
        if let Some(e) = outputs.iter().find_map(|o| o.signals.error()) {
            return Err(ReplayError::Output(std::io::Error::other(e.to_string())));
        }
        let mut result = Ok(());
        let mut out = Emit {
            w: &mut *self.signals,
            score: &mut self.score,
            count: &mut self.count,
            rule_class: self.rule_class,
        };
        let held = &mut self.held;
        merge(outputs, |s| {
            if result.is_ok() {
                result = match held {
                    None => out.write(s.rule, s.seq, s.line),
                    Some(h) => h.take(s, &mut out),
                };
            }
        });
        result
    }

    /// Lets every held signal through (end of stream).
    fn flush_held(&mut self) -> Result<(), ReplayError> {
        let Some(h) = self.held.as_mut() else {
            return Ok(());
        };
        let mut out = Emit {
            w: &mut *self.signals,
            score: &mut self.score,
            count: &mut self.count,
            rule_class: self.rule_class,
        };
        h.flush(&mut out)
    }
}

impl Sink<SignalOrder> for ReplaySink<'_> {
    type Error = ReplayError;

    fn batch(
        &mut self,
        batch: &Batch,
        outputs: &[ShardOutput<SignalOrder>],
    ) -> Result<(), ReplayError> {
        let rows = &*batch.rows;
        // Labels of this batch's events before any signal that may include them is scored.
        if self.has_labels {
            for (i, &seq) in rows.seq().iter().enumerate() {
                self.score.observe(seq, rows.label(i));
            }
        }
        if let Some(w) = self.late.as_deref_mut() {
            let mut slots = Vec::with_capacity(rows.slot_count());
            for &row in outputs.iter().flat_map(|o| &o.late) {
                rows.copy_slots(row, &mut slots);
                let view = EventView {
                    seq: rows.seq()[row],
                    ts: rows.ts()[row],
                    type_id: rows.type_ids()[row],
                    slots: &slots,
                };
                let label = self.has_labels.then(|| rows.label(row));
                self.late_line.clear();
                write_late(&mut self.late_line, self.tape, view, label)
                    .map_err(|e| ReplayError::LateOutput(std::io::Error::other(e)))?;
                self.late_line.push(b'\n');
                w.write_all(&self.late_line)
                    .map_err(ReplayError::LateOutput)?;
            }
        }
        self.write_signals(outputs)
    }

    fn finish(&mut self, outputs: &[ShardOutput<SignalOrder>]) -> Result<(), ReplayError> {
        self.write_signals(outputs)?;
        self.flush_held()?;
        self.signals.flush().map_err(ReplayError::Output)?;
        if let Some(w) = self.late.as_deref_mut() {
            w.flush().map_err(ReplayError::LateOutput)?;
        }
        Ok(())
    }
}

/// Writes one late event as the JSON object `strix tape export --format jsonl` writes:
/// `{"seq","type","ts","fields":{...}}` plus `"label"` and `"instance"` on labelled tapes.
fn write_late(
    buf: &mut Vec<u8>,
    tape: &TapeReader,
    e: EventView<'_>,
    label: Option<Label>,
) -> Result<(), serde_json::Error> {
    let catalog = tape.catalog();
    let symbols = tape.symbols();
    let ty = catalog.event_type(e.type_id);
    let mut ser = serde_json::Serializer::new(buf);
    let mut map = ser.serialize_map(None)?;
    map.serialize_entry("seq", &e.seq)?;
    match ty {
        Some(t) => map.serialize_entry("type", &t.name)?,
        None => map.serialize_entry("type", &format!("type#{}", e.type_id))?,
    }
    map.serialize_entry("ts", &e.ts)?;
    let mut fields = serde_json::Map::new();
    for (f, &raw) in ty.map_or(&[][..], |t| &t.fields).iter().zip(e.slots) {
        fields.insert(
            f.name.clone(),
            feeds::export::render_value(catalog, symbols, f.ty, raw),
        );
    }
    map.serialize_entry("fields", &fields)?;
    if let Some(l) = label {
        let name = tape
            .label_names()
            .get(usize::from(l.class))
            .cloned()
            .unwrap_or_else(|| l.class.to_string());
        map.serialize_entry("label", &name)?;
        map.serialize_entry("instance", &l.instance)?;
    }
    map.end()
}

impl ReplayReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "replay {} with {} ({} matcher)",
            self.tape, self.rules_file, self.matcher
        );
        let shards = match self.shards {
            0 => "inline (no pipeline threads)".to_string(),
            1 => "1 shard".to_string(),
            n => format!("{n} shards"),
        };
        let rate = self
            .rate
            .map_or("unpaced".to_string(), |r| format!("offered {r} events/s"));
        let _ = writeln!(
            s,
            "  pipeline    {shards}   batch {}   {rate}   {}",
            self.batch, self.pinning
        );
        let _ = writeln!(
            s,
            "  events      {:>14}   elapsed {:.3} s   {:.0} events/s{}",
            self.events,
            self.elapsed_s,
            self.events_per_s,
            if self.rate.is_none() {
                " (max throughput)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  latency     p50 {} ns   p99 {} ns   p99.9 {} ns   max {} ns   (end to end: ingest to results at the sink)",
            self.latency.p50_ns, self.latency.p99_ns, self.latency.p999_ns, self.latency.max_ns
        );
        if self.shards > 0 {
            let _ = writeln!(
                s,
                "  backpressure {} waits on a full ring (nothing dropped)",
                self.backpressure_waits
            );
        }
        let _ = writeln!(
            s,
            "  live runs   peak {}   evictions {}",
            self.peak_live_runs, self.evictions
        );
        let t = &self.time;
        let _ = writeln!(
            s,
            "  time        late {}   admitted late {}   duplicates {}   reordered {}   max buffered {}",
            t.late, t.admitted_late, t.duplicates, t.reordered, t.max_buffered
        );
        for q in &self.queries {
            let _ = writeln!(
                s,
                "    query {:<14} {:>10} derived `{}` events from {} read",
                q.query, q.derived_events, q.output, q.events_read
            );
        }
        let _ = writeln!(s, "  signals     {}", self.signals);
        for r in &self.rules {
            let _ = write!(s, "    {:<20} {:>10} signals", r.rule, r.signals);
            if let (Some(label), Some(n)) = (&r.label, r.instances) {
                let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
                let _ = write!(
                    s,
                    "   label {label}: {n} instances, recall {}, precision {}",
                    f(r.recall),
                    f(r.precision)
                );
            }
            if let Some(n) = r.below_threshold {
                let _ = write!(s, "   ({n} below the score threshold, dropped)");
            }
            if r.evictions > 0 {
                let _ = write!(s, "   ({} evictions)", r.evictions);
            }
            s.push('\n');
        }
        for m in &self.scoring {
            let rate = if m.seconds > 0.0 {
                format!("{:.0} rows/s", m.rows as f64 / m.seconds)
            } else {
                "n/a rows/s".to_string()
            };
            let _ = writeln!(
                s,
                "  scoring     model {} ({}) for {}: {} rows, {} GPU batches, {} CPU batches, {:.3} s in scoring ({rate})",
                m.model,
                m.summary,
                m.rules.join(", "),
                m.rows,
                m.gpu_batches,
                m.cpu_batches,
                m.seconds
            );
            let _ = write!(s, "              device {} on {}", m.device, m.adapter);
            if let Some(why) = &m.fallback {
                let _ = write!(s, " ({why})");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration("15m"), Ok(900_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("7ns"), Ok(7));
        assert_eq!(parse_duration("3us"), Ok(3_000));
        assert_eq!(parse_duration("0"), Ok(0));
        for bad in ["", "5", "ms", "-1s", "1.5s", "2 s", "3d", "99999999999999h"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }
}
