//! Generators written straight into a tape: the one path behind `strix gen`, the benches and the
//! golden tests.
//!
//! Input: a [`Generator`] and a [`GenSpec`]. Output: a finished `.tape` file and the
//! [`Generated`] description. Next stage: a replay of that tape.

use std::path::Path;

use cep_core::event::Label;
use cep_core::{Catalog, TypeId};

use super::{EventSink, GenError, GenSpec, Generated, cards, market, ticks};
use crate::tape::{TapeError, TapeInfo, TapeWriter};

/// The synthetic streams Strix can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// Orders, cancels and trades with injected layering and momentum (see [`market()`](super::market())).
    Market,
    /// Card transactions with injected card testing and velocity (see [`cards()`](super::cards())).
    Cards,
    /// Last trade prices in the DEBS 2022 Grand Challenge schema (see [`ticks()`](super::ticks())).
    Ticks,
}

impl Generator {
    /// Name as used on the command line (`strix gen market`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Market => "market",
            Self::Cards => "cards",
            Self::Ticks => "ticks",
        }
    }

    /// The stream's event types.
    pub fn catalog(self) -> Catalog {
        match self {
            Self::Market => market::market_catalog(),
            Self::Cards => cards::cards_catalog(),
            Self::Ticks => ticks::ticks_catalog(),
        }
    }

    /// Label class names, indexed by `Label::class` (`[0]` is `"none"`).
    pub fn label_names(self) -> Vec<String> {
        let labels: &[&str] = match self {
            Self::Market => &market::LABELS,
            Self::Cards => &cards::LABELS,
            Self::Ticks => &ticks::LABELS,
        };
        labels.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Runs the generator into `sink`.
    pub fn run<S: EventSink + ?Sized>(
        self,
        spec: &GenSpec,
        sink: &mut S,
    ) -> Result<Generated, GenError<S::Error>> {
        match self {
            Self::Market => market::market(spec, sink),
            Self::Cards => cards::cards(spec, sink),
            Self::Ticks => ticks::ticks(spec, sink),
        }
    }
}

impl EventSink for TapeWriter {
    type Error = TapeError;

    fn push(
        &mut self,
        ts: i64,
        type_id: TypeId,
        label: Label,
        slots: &[u64],
    ) -> Result<(), TapeError> {
        TapeWriter::push(self, ts, type_id, label, slots).map(|_| ())
    }
}

/// Calls `progress(events so far)` every 2^20 events on the way to a tape.
struct ProgressSink<'a> {
    writer: &'a mut TapeWriter,
    progress: &'a mut dyn FnMut(u64),
    events: u64,
}

impl EventSink for ProgressSink<'_> {
    type Error = TapeError;

    fn push(
        &mut self,
        ts: i64,
        type_id: TypeId,
        label: Label,
        slots: &[u64],
    ) -> Result<(), TapeError> {
        self.writer.push(ts, type_id, label, slots)?;
        self.events += 1;
        if self.events.is_multiple_of(1 << 20) {
            (self.progress)(self.events);
        }
        Ok(())
    }
}

/// Generates `spec.events` events into a new tape at `path` (source recorded as
/// `gen NAME events=N seed=S`), calling `progress` every 2^20 events.
pub fn write_tape(
    generator: Generator,
    spec: &GenSpec,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(Generated, TapeInfo), GenError<TapeError>> {
    let source = format!(
        "gen {} events={} seed={}",
        generator.name(),
        spec.events,
        spec.seed
    );
    let mut writer = TapeWriter::create(
        path,
        &generator.catalog(),
        &generator.label_names(),
        &source,
    )
    .map_err(GenError::Sink)?;
    let generated = generator.run(
        spec,
        &mut ProgressSink {
            writer: &mut writer,
            progress,
            events: 0,
        },
    )?;
    let info = writer.finish(&generated.symbols).map_err(GenError::Sink)?;
    progress(info.event_count);
    Ok((generated, info))
}
