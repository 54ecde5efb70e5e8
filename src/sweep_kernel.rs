//! Sweep kernels: rules and queries whose variants run as data-parallel kernels (GPU or CPU).
//!
//! Input: the variants of one rule template ([`Variant`]: a parameter vector and the program
//! compiled with it), the target rule or query ([`Target`]) and the tape's events in delivered
//! order ([`DeliveredEvents`]: after the event-time layer, late events dropped). Output: per
//! variant, the number of signals, true-positive signals and label instances found
//! ([`VariantCounts`]), exactly as one [`crate::Engine`] per variant scored by
//! [`crate::LabelScore`] would count them. Next stage: the sweep report (ranking by F1).
//!
//! [`plan`] decides whether the target is in a kernel class and prepares its per-variant
//! parameters ([`KernelPlan`]); [`KernelPlan::run`] evaluates every distinct condition once per
//! event on the CPU with the engine's own predicate kernels into per-event bitmasks, lays the
//! events out by partition key and runs one kernel invocation per (variant, key), on the GPU
//! (`gpu_kernels::sweep`) or with the same algorithm on one CPU thread. The kernels see integers
//! only (bitmasks, times as `u32` pairs, dense label instance ids), so GPU and CPU agree exactly.
//!
//! # Class 1: strict chains
//!
//! The rule's automaton is a chain of `k <= 32` states `q0 → q1 → … → accept`, each with exactly
//! one target, no loops, no optional elements, no negation or absence, every state after the
//! first with strict contiguity (juxtaposition; a bounded `{n}` is unrolled into `n` such
//! states), every condition single-event (no variable references, no `prev`, no aggregates), no
//! `on timeout emit`; any `within`, `select first|all` and after-match strategy. Variants may
//! differ in chain length. Why one word of live runs per key reproduces the engine
//! (docs/language.md §6, §9–§11):
//!
//! - Under strict contiguity a run takes the next event of its partition or dies, so a run is
//!   fixed by its start and the run started `j` events ago has taken `j + 1` events: the live runs
//!   of a key are the word `D` (bit `j`), updated per event with the condition bits `B` of the
//!   states as `D' = ((D & (B >> 1)) << 1) | (B & 1)` (the rule's Shift-And matcher).
//! - At most one run completes per event (the one of age `k - 1`), and it is the oldest live run
//!   of its key: every earlier start has completed or died already. So no earlier start is ever
//!   unresolved and `select first` reports it at once, exactly like `select all`.
//! - After-match strategies drop runs by start: `no skip` and `skip to next` drop none but the
//!   completed one; `skip past last` drops every start from the match's first to its last event,
//!   i.e. every live run of the key; `skip to first|last V` drops the starts before the event
//!   bound to `V`, i.e. the runs older than a fixed age. One "keep" mask per variant.
//! - `within D` kills, before each event `e` of the key, the runs whose first event is more than
//!   `D` older than `e` (`first.ts + D <= e.ts - 1`). Watermarks between events cannot kill a run
//!   earlier than that: every watermark the engine passes before delivering `e` is below `e.ts`,
//!   and nothing in this class fires on a watermark (no timeouts, no absences, nothing pending).
//!   So checking each run against each later event of its key, in delivered order, is exact,
//!   also when late-admitted events arrive out of time order.
//!
//! # Class 2: count-threshold queries
//!
//! `query … from STREAM TYPES where COND group by KEYS window tumbling D | sliding D every S
//! having count(*) >= N` (or `>`, or no `having`), with `COND`, `D`, `S`, `N` free to vary. The
//! engine delivers every event above the watermark and closes a window only when the watermark
//! reaches its end, so every event of a window is counted before it closes and the derived events
//! are exactly the (group, window) pairs holding at least `N` events that pass `where`
//! (docs/language.md §21.2: windows aligned to multiples of the slide, end exclusive, a window
//! exists only with an event in it). A derived event's matched events are the events of its
//! window and group that pass `where`: it is a true positive when one of them carries the target
//! class, and their instances are found.

use cep_core::event::{EventBatch, Label};
use cep_core::rule::Program;

mod chain;
mod conditions;
mod window;

pub use gpu_kernels::context::GpuContext;
pub use pattern_lang::ParamValue;

/// One parameter vector of a sweep and the program compiled with it.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Position in the sweep (cartesian-product order).
    pub index: usize,
    /// Parameter values by name, in flag order.
    pub values: Vec<(String, ParamValue)>,
    /// The rule file compiled with these values.
    pub program: Program,
}

/// What a sweep measures: one rule or one query of the program (the same index in every variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `program.rules[i]`.
    Rule(usize),
    /// `program.queries[i]`.
    Query(usize),
}

/// The tape's events as every variant's engine would see them.
#[derive(Debug, Clone, Default)]
pub struct DeliveredEvents {
    /// Events in delivered order (after the event-time layer; late events dropped); the `seq`
    /// column holds tape sequence numbers.
    pub batch: EventBatch,
    /// Label of each row of `batch`.
    pub labels: Vec<Label>,
    /// Label class names by class id (`[0]` is "none"; empty when the tape has no labels).
    pub label_names: Vec<String>,
}

/// What one variant found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VariantCounts {
    /// Signals (rule matches, or the query's derived events).
    pub signals: u64,
    /// Signals with a matched event of the target class.
    pub true_positives: u64,
    /// Distinct labelled instances of the target class among the matched events.
    pub instances_found: u64,
}

/// Why a target cannot run as a kernel (it runs on the engine path instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotInClass(pub String);

/// Why a planned kernel could not run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// `labels` and `batch` differ in length.
    #[error("{labels} labels for {events} events")]
    Labels {
        /// Rows of the batch.
        events: usize,
        /// Labels given.
        labels: usize,
    },
    /// The tape does not fit the kernels' 32-bit counters or offsets (message says which).
    #[error("tape too large for the sweep kernel: {0}")]
    TooLarge(String),
    /// The GPU failed (device lost, out of memory, mapping failed, a limit too small).
    #[error("GPU sweep kernel: {0}")]
    Gpu(#[from] gpu_kernels::context::GpuError),
}

/// Where [`KernelPlan::run`] runs.
#[derive(Debug, Clone, Copy)]
pub enum SweepDevice<'a> {
    /// On this GPU.
    Gpu(&'a GpuContext),
    /// On one CPU thread, same algorithm (the single-core baseline).
    Cpu,
}

/// A target in a kernel class, ready to run over delivered events.
#[derive(Debug, Clone)]
pub struct KernelPlan {
    kind: PlanKind,
}

#[derive(Debug, Clone)]
enum PlanKind {
    Chain(chain::ChainPlan),
    Window(window::WindowPlan),
}

/// Checks that `target` is in a kernel class in every variant and prepares the kernel.
pub fn plan(target: Target, variants: &[Variant]) -> Result<KernelPlan, NotInClass> {
    if variants.is_empty() {
        return Err(NotInClass("no variants".into()));
    }
    let kind = match target {
        Target::Rule(i) => PlanKind::Chain(chain::ChainPlan::new(i, variants)?),
        Target::Query(i) => PlanKind::Window(window::WindowPlan::new(i, variants)?),
    };
    Ok(KernelPlan { kind })
}

impl KernelPlan {
    /// Runs every variant over `events` on `device`; one [`VariantCounts`] per variant, in the
    /// order of the variants given to [`plan`].
    pub fn run(
        &self,
        events: &DeliveredEvents,
        device: SweepDevice<'_>,
    ) -> Result<Vec<VariantCounts>, SweepError> {
        if events.labels.len() != events.batch.len() {
            return Err(SweepError::Labels {
                events: events.batch.len(),
                labels: events.labels.len(),
            });
        }
        match &self.kind {
            PlanKind::Chain(p) => p.run(events, device),
            PlanKind::Window(p) => p.run(events, device),
        }
    }

    /// One line for the report, e.g. "strict chain of 6 conditions, 10 distinct conditions".
    pub fn describe(&self) -> String {
        match &self.kind {
            PlanKind::Chain(p) => p.describe(),
            PlanKind::Window(p) => p.describe(),
        }
    }

    /// The name of the label class the target is scored against (its signal or emit name, else
    /// its rule or query name), as looked up in [`DeliveredEvents::label_names`].
    pub fn class_names(&self) -> [&str; 2] {
        match &self.kind {
            PlanKind::Chain(p) => p.class_names(),
            PlanKind::Window(p) => p.class_names(),
        }
    }
}

/// Groups `rows` by key: `row_group[i]` is the group (0..`groups`) of `rows[i]`. Returns the
/// CSR offsets (group `g`'s rows are `order[offsets[g]..offsets[g + 1]]`) and the rows in group
/// order, each group's rows in their original (delivery) order. The kernels index events with
/// 32 bits.
fn group_rows(
    rows: &[usize],
    row_group: &[u32],
    groups: usize,
) -> Result<(Vec<u32>, Vec<usize>), SweepError> {
    if rows.len() >= u32::MAX as usize {
        return Err(SweepError::TooLarge(format!(
            "{} events (the kernels index events with 32 bits)",
            rows.len()
        )));
    }
    let mut offsets = vec![0u32; groups + 1];
    for &g in row_group {
        offsets[g as usize + 1] += 1;
    }
    for g in 0..groups {
        offsets[g + 1] += offsets[g];
    }
    let mut order = vec![0usize; rows.len()];
    let mut fill = offsets.clone();
    for (&r, &g) in rows.iter().zip(row_group) {
        order[fill[g as usize] as usize] = r;
        fill[g as usize] += 1;
    }
    Ok((offsets, order))
}
