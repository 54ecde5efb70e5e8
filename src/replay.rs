//! Tape replay: runs a rule file over a tape as fast as possible and measures it.
//!
//! Input: a `.cep` rule file and a `.tape` (events in tape order, which need not be time order:
//! the engine reorders within [`ReplayOptions::time`]'s bound). Output: signals as JSON Lines to a
//! writer, late events as JSON Lines to an optional second writer (rendered like
//! `strix tape export --format jsonl`), and a [`ReplayReport`] (throughput, per-event latency
//! percentiles from hdrhistogram, live runs, evictions, recall/precision against the tape's
//! labels, event-time counters, derived events per query). Used by `strix replay`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use cep_core::event::{EventBatch, EventView, Label};
use cep_core::reference::MatcherConfig;
use feeds::tape::{TapeError, TapeReader};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::{Admission, Engine, EngineConfig, EngineError, LabelScore, TimeOptions};

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
    /// Matcher used.
    pub matcher: String,
    /// Events replayed.
    pub events: u64,
    /// Signals emitted over all rules.
    pub signals: u64,
    /// Wall time of the replay loop (decode + match + signal output), seconds.
    pub elapsed_s: f64,
    /// Events per second.
    pub events_per_s: f64,
    /// Per-event processing latency (matching and signal output of that event).
    pub latency: Latency,
    /// Sum over rules of each rule's peak live partial matches.
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
}

/// Replays `opts.tape` through `opts.rules`, writing signals as JSON Lines to `signals`, calling
/// `progress(events_done, events_total)` after every block. Late events are counted only.
pub fn replay(
    opts: &ReplayOptions,
    signals: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport, ReplayError> {
    replay_with_late(opts, signals, None, progress)
}

/// As [`replay`], also writing every late event as one JSON line to `late` (the same object
/// `strix tape export --format jsonl` writes for it).
pub fn replay_with_late(
    opts: &ReplayOptions,
    signals: &mut dyn Write,
    mut late: Option<&mut dyn Write>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport, ReplayError> {
    let source = std::fs::read_to_string(&opts.rules).map_err(|source| ReplayError::ReadRules {
        path: opts.rules.clone(),
        source,
    })?;
    let tape = TapeReader::open(&opts.tape)?;
    let config = EngineConfig {
        matcher: MatcherConfig {
            max_runs_per_key: opts.max_runs_per_key,
        },
        time: opts.time.clone(),
        ..EngineConfig::default()
    };
    let mut engine = Engine::build(
        &opts.rules.display().to_string(),
        &source,
        Some(tape.catalog()),
        tape.symbols().clone(),
        config,
    )?;
    let label_names = tape.label_names().to_vec();
    let has_labels = tape.has_labels();
    let rule_class: Vec<Option<u16>> = engine
        .program()
        .rules
        .iter()
        .map(|r| {
            if !has_labels {
                return None;
            }
            let pos = |n: &str| {
                label_names
                    .iter()
                    .position(|l| l == n)
                    .filter(|&i| i > 0)
                    .map(|i| i as u16)
            };
            pos(&r.emit.signal).or_else(|| pos(&r.name))
        })
        .collect();
    // 1 ns .. 60 s at 3 significant digits; slower events saturate at 60 s.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| ReplayError::Output(std::io::Error::other(e.to_string())))?;
    let total = tape.info().event_count;
    let mut batch = EventBatch::new(tape.catalog().slot_count());
    let mut row = Vec::with_capacity(batch.slot_count());
    let mut events = 0u64;
    let mut out = SignalWriter {
        out: signals,
        line: Vec::with_capacity(256),
        error: None,
        count: 0,
        score: LabelScore::default(),
        rule_class: &rule_class,
    };
    let mut late_line = Vec::with_capacity(256);
    let mut late_error = None;
    let started = Instant::now();
    for b in 0..tape.block_count() {
        tape.read_block(b, &mut batch)?;
        if has_labels {
            for i in 0..batch.len() {
                out.score.observe(batch.seq()[i], batch.label(i));
            }
        }
        for i in 0..batch.len() {
            batch.copy_slots(i, &mut row);
            let view = EventView {
                seq: batch.seq()[i],
                ts: batch.ts()[i],
                type_id: batch.type_ids()[i],
                slots: &row,
            };
            let t0 = Instant::now();
            let admission = engine.push_view(view, |s| out.write(&s));
            hist.saturating_record(t0.elapsed().as_nanos() as u64);
            if admission == Admission::Late
                && let Some(w) = late.as_deref_mut()
            {
                let label = has_labels.then(|| batch.label(i));
                late_line.clear();
                if let Err(e) = write_late(&mut late_line, &tape, view, label) {
                    late_error.get_or_insert(std::io::Error::other(e));
                }
                late_line.push(b'\n');
                if let Err(e) = w.write_all(&late_line) {
                    late_error.get_or_insert(e);
                }
            }
        }
        events += batch.len() as u64;
        if let Some(e) = out.error.take() {
            return Err(ReplayError::Output(e));
        }
        if let Some(e) = late_error.take() {
            return Err(ReplayError::LateOutput(e));
        }
        progress(events, total);
    }
    engine.finish(|s| out.write(&s));
    if let Some(e) = out.error.take() {
        return Err(ReplayError::Output(e));
    }
    out.out.flush().map_err(ReplayError::Output)?;
    if let Some(w) = late {
        w.flush().map_err(ReplayError::LateOutput)?;
    }
    let (score, signal_count) = (out.score, out.count);
    let elapsed = started.elapsed().as_secs_f64();

    let mut signals_per_rule = vec![0u64; engine.program().rules.len()];
    for (rule, (n, _, _)) in score_counts(&score, engine.program().rules.len()) {
        signals_per_rule[rule] = n;
    }
    let stats = engine.stats();
    let rules: Vec<RuleReport> = engine
        .program()
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
            RuleReport {
                rule: r.name.clone(),
                signal: r.emit.signal.clone(),
                signals: signals_per_rule[i],
                events_read: stats[i].events,
                peak_live_runs: stats[i].peak_live_runs,
                evictions: stats[i].evictions,
                label: rule_class[i].map(|c| label_names[c as usize].clone()),
                instances,
                recall,
                precision,
            }
        })
        .collect();
    let engine_stats = engine.engine_stats();
    let t = engine_stats.time;
    let catalog = &engine.program().catalog;
    let queries = engine
        .program()
        .queries
        .iter()
        .zip(engine.query_stats())
        .map(|(q, st)| QueryReport {
            query: q.name.clone(),
            output: catalog
                .event_type(q.output)
                .map_or_else(|| format!("type#{}", q.output), |t| t.name.clone()),
            events_read: st.events,
            derived_events: st.emitted,
        })
        .collect();
    Ok(ReplayReport {
        tape: opts.tape.display().to_string(),
        rules_file: opts.rules.display().to_string(),
        matcher: "reference".into(),
        events,
        signals: signal_count,
        elapsed_s: elapsed,
        events_per_s: if elapsed > 0.0 {
            events as f64 / elapsed
        } else {
            0.0
        },
        latency: Latency {
            p50_ns: hist.value_at_quantile(0.5),
            p99_ns: hist.value_at_quantile(0.99),
            p999_ns: hist.value_at_quantile(0.999),
            max_ns: hist.max(),
        },
        peak_live_runs: stats.iter().map(|s| s.peak_live_runs).sum(),
        evictions: stats.iter().map(|s| s.evictions).sum(),
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
    })
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

/// Scores each signal against the labels and writes it as one JSON line; keeps the first error.
struct SignalWriter<'a> {
    out: &'a mut dyn Write,
    line: Vec<u8>,
    error: Option<std::io::Error>,
    count: u64,
    score: LabelScore,
    rule_class: &'a [Option<u16>],
}

impl SignalWriter<'_> {
    fn write(&mut self, s: &crate::Signal<'_>) {
        self.count += 1;
        self.score
            .score(s.raw.rule, self.rule_class[s.raw.rule], &s.raw.seq);
        self.line.clear();
        if let Err(e) = serde_json::to_writer(&mut self.line, &s.to_json()) {
            self.error.get_or_insert(std::io::Error::other(e));
        }
        self.line.push(b'\n');
        if let Err(e) = self.out.write_all(&self.line) {
            self.error.get_or_insert(e);
        }
    }
}

fn score_counts(score: &LabelScore, rules: usize) -> Vec<(usize, (u64, u64, usize))> {
    (0..rules).map(|r| (r, score.counts(r))).collect()
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
        let _ = writeln!(
            s,
            "  events      {:>14}   elapsed {:.3} s   {:.0} events/s",
            self.events, self.elapsed_s, self.events_per_s
        );
        let _ = writeln!(
            s,
            "  latency     p50 {} ns   p99 {} ns   p99.9 {} ns   max {} ns",
            self.latency.p50_ns, self.latency.p99_ns, self.latency.p999_ns, self.latency.max_ns
        );
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
            if r.evictions > 0 {
                let _ = write!(s, "   ({} evictions)", r.evictions);
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
